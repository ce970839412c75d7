//! What operators install around the binary: the systemd unit (checked by `systemd-analyze
//! verify`, and its `ExecReload`, a SIGHUP, must not stop the service), shell completions and
//! the manual page, each naming every subcommand this build has.

use crate::common::process::bin;
use crate::edition;
use crate::helpers::{Scratch, clavitor, runtime, serve};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const UNIT: &str = include_str!("../../contrib/clavitor.service");

/// The subcommands `clavitor --help` lists (this build's, whatever the edition adds).
fn subcommands() -> Vec<String> {
    let help = clavitor(&["--help"]).ok().stdout;
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n != "help")
        .collect();
    for must in ["init", "serve", "entry", "agent", "completions", "man"] {
        assert!(names.iter().any(|n| n == must), "{must} in {names:?}");
    }
    names
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn sighup_as_the_units_exec_reload_sends_it_leaves_the_server_serving() {
    let tmp = Scratch::new();
    let mut server = serve(&tmp.data());
    let rt = runtime();
    let api = server.api();
    let before = rt.block_on(api.create("before-hup")).unwrap().expect("201");
    assert!(UNIT.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    server.sighup();
    assert!(
        server.wait_stderr(edition::SIGHUP_LINE, Duration::from_secs(5)),
        "a line says what the SIGHUP did: {}",
        server.stderr()
    );
    assert!(
        server.is_running(),
        "SIGHUP stopped the server: {}",
        server.stderr()
    );
    let after = rt.block_on(api.create("after-hup")).unwrap().expect("201");
    for w in [&before, &after] {
        rt.block_on(api.verify(w));
    }
    server.stop(Duration::from_secs(2));
}

/// The unit as installed, with `ExecStart` pointing at this build's binary (verify checks
/// that the command exists).
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = UNIT.replace(
        "/usr/local/bin/clavitor",
        bin().to_str().expect("UTF-8 path"),
    );
    assert_ne!(unit, UNIT, "ExecStart names /usr/local/bin/clavitor");
    let path = dir.join("clavitor.service");
    std::fs::write(&path, unit).expect("write the unit");
    path
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    for needed in [
        "User=clavitor",
        "StateDirectory=clavitor",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "AssertPathExists=/var/lib/clavitor/master.key",
        " serve --data-dir /var/lib/clavitor ",
    ] {
        assert!(UNIT.contains(needed), "the unit lacks {needed:?}");
    }
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let tmp = Scratch::new();
    let unit = unit_for_this_build(tmp.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("clavitor")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        out.status
    );

    // The same check catches a mistake in the unit.
    let broken = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("ProtectSystem=strict", "ProtectSystem=strictest");
    std::fs::write(&unit, broken).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("protect system"),
        "a bad value is reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    let names = subcommands();
    let tmp = Scratch::new();
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let script = clavitor(&["completions", shell]).ok().stdout;
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell}: no {name}");
        }
        let file = tmp.path().join(format!("clavitor.{shell}"));
        std::fs::write(&file, &script).unwrap();
        if have(checker) {
            let out = Command::new(checker)
                .arg("-n")
                .arg(&file)
                .output()
                .expect("run the shell");
            assert!(
                out.status.success(),
                "{checker} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            eprintln!("{checker} is not installed: the {shell} script was not syntax-checked");
        }
    }

    // Bash completes for real: `clavitor en<TAB>` offers `entry`, `clavitor entry <TAB>` its
    // subcommands.
    let file = tmp.path().join("clavitor.bash");
    let complete = |words: &str| -> String {
        let script = format!(
            "source {f}\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}}-1))\n\
             COMP_LINE='{words}'\nCOMP_POINT=${{#COMP_LINE}}\n\
             _clavitor clavitor \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            f = file.display()
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let offered = complete("clavitor en");
    assert_eq!(
        offered.split_whitespace().collect::<Vec<_>>(),
        ["entry"],
        "{offered}"
    );
    let offered = complete("clavitor entry ''");
    for sub in ["add", "get", "list", "rm"] {
        assert!(
            offered.split_whitespace().any(|w| w == sub),
            "{sub} in {offered}"
        );
    }

    let bad = clavitor(&["completions", "tcsh"]);
    assert_eq!(bad.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand_and_writes_a_page_per_command() {
    let names = subcommands();
    let page = clavitor(&["man"]).ok().stdout;
    assert!(page.contains(".TH clavitor 1"), "{page}");
    // roff writes a hyphen in a name as `\-`.
    let unescaped = page.replace("\\-", "-");
    for name in &names {
        assert!(
            unescaped.contains(&format!("clavitor-{name}(1)")),
            "no clavitor-{name}(1) in:\n{page}"
        );
    }
    if have("groff") {
        let mut child = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run groff");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let tmp = Scratch::new();
    let dir = tmp.path().join("man1");
    clavitor(&["man", "--out-dir", dir.to_str().unwrap()]).ok();
    for page in [
        "clavitor.1",
        "clavitor-entry.1",
        "clavitor-entry-add.1",
        "clavitor-serve.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH "), "{page}");
    }
}
