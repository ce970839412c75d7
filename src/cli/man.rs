//! `clavitor man`: the manual page clavitor(1) in roff on stdout, or with `--out-dir` one page
//! per command (`clavitor.1`, `clavitor-entry.1`, `clavitor-entry-add.1`, ...), made from the
//! clap definition the binary parses with.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Read it with: clavitor man | man -l -\n\
    Install the pages: clavitor man --out-dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write a page per command into DIR (created if missing) instead of clavitor(1) on stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub fn man(a: ManArgs) -> Result<()> {
    let cmd = super::Cli::command();
    match a.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            println!("wrote the manual pages into {}", dir.display());
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("cannot render the manual page")?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)
                .and_then(|()| out.flush())
                .context("cannot write the manual page to stdout")
        }
    }
}
