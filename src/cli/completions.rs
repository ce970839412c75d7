//! `clavitor completions SHELL`: the shell's completion script on stdout, made from the same
//! clap definition the binary parses with, so it always knows every subcommand and flag of
//! this build's edition.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;

#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.:\n  \
    bash: clavitor completions bash > ~/.local/share/bash-completion/completions/clavitor\n  \
    zsh:  clavitor completions zsh > ~/.zfunc/_clavitor   (with fpath+=~/.zfunc before compinit)\n  \
    fish: clavitor completions fish > ~/.config/fish/completions/clavitor.fish")]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn completions(a: CompletionsArgs) -> Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "clavitor", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to stdout")
}
