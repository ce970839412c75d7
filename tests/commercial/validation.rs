//! A bad replication.yaml stops `serve` before anything is created on disk, and the message
//! names the file, the key and the fix.

use crate::helpers::*;
use std::path::Path;

/// Runs `serve` with `pop`'s config and asserts a refusal that names the config file, each of
/// `keys`, each of `also`, and a `Fix:`; and that no data dir was created.
#[track_caller]
fn refused(pop: &Pop, keys: &[&str], also: &[&str]) -> String {
    let out = run(&mut pop.serve_cmd());
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "expected a non-zero exit: {out}"
    );
    let err = &out.stderr;
    let path = pop.config.to_str().unwrap();
    assert!(err.contains(path), "stderr does not name {path}: {out}");
    for k in keys.iter().chain(also) {
        assert!(err.contains(k), "stderr does not mention {k:?}: {out}");
    }
    assert!(err.contains("Fix:"), "stderr has no Fix: {out}");
    assert!(
        !out.stdout.contains("listening on"),
        "it must not listen: {out}"
    );
    assert!(
        !pop.data.exists(),
        "a refused start created the data dir {}",
        pop.data.display()
    );
    err.clone()
}

fn backup(pop: &Pop) -> String {
    config_yaml(pop, "backup", &Opts::default())
}

fn primary(pop: &Pop) -> String {
    config_yaml(pop, "primary", &Opts::default())
}

/// A fresh POP whose config is `base` with `from` replaced by `to`: refused, naming `keys` and
/// `also` (see [`refused`]). Returns the stderr.
#[track_caller]
fn refused_edit(
    base: fn(&Pop) -> String,
    from: &str,
    to: &str,
    keys: &[&str],
    also: &[&str],
) -> String {
    let pop = Pop::new();
    let good = base(&pop);
    let y = good.replace(from, to);
    assert_ne!(y, good, "{from:?} is not in the config");
    pop.write_config(&y);
    refused(&pop, keys, also)
}

/// Every README section `err` names (`section "X"`) is a heading of README.md; at least one.
#[track_caller]
fn readme_sections_exist(err: &str) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let sections: Vec<&str> = err
        .split("section \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(!sections.is_empty(), "no README section named in: {err}");
    for section in sections {
        assert!(
            readme
                .lines()
                .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == section),
            "README.md has no heading {section:?} (named in: {err})"
        );
    }
}

/// The message sends the operator to a README section; that section exists.
#[test]
fn missing_file_points_at_a_readme_section_that_exists() {
    let pop = Pop::new();
    let err = refused(&pop, &[], &["--replication-config"]);
    assert!(err.contains("replication config"), "{err}");
    readme_sections_exist(&err);
}

#[test]
fn unknown_key() {
    let pop = Pop::new();
    pop.write_config(&format!("{}replica_count: 3\n", backup(&pop)));
    refused(&pop, &["replica_count"], &[]);
}

#[test]
fn unknown_nested_key() {
    let err = refused_edit(
        backup,
        "auth:\n",
        "auth:\n  tokenfile: \"x\"\n",
        &["tokenfile"],
        &["token_file"],
    );
    // The fix must not claim that only the top-level keys are allowed inside auth.
    let fix = &err[err.find("Fix:").unwrap()..];
    assert!(!fix.contains("the keys allowed are pop_id"), "{err}");
}

#[test]
fn misspelled_role() {
    refused_edit(
        backup,
        "role: \"backup\"",
        "role: \"primari\"",
        &["role"],
        &["primari"],
    );
}

#[test]
fn primary_without_backup_pop() {
    refused_edit(
        backup,
        "role: \"backup\"",
        "role: \"primary\"",
        &["backup_pop"],
        &[],
    );
}

#[test]
fn primary_without_backup_url() {
    refused_edit(
        primary,
        "  url: \"https://zurich-01.example.com\"\n",
        "",
        &["backup_pop.url"],
        &[],
    );
}

#[test]
fn plain_http_backup_url() {
    refused_edit(
        primary,
        "https://zurich",
        "http://zurich",
        &["backup_pop.url"],
        &["https://"],
    );
}

#[test]
fn backup_with_backup_pop_is_a_cascade() {
    refused_edit(
        primary,
        "role: \"primary\"",
        "role: \"backup\"",
        &["backup_pop"],
        &["cascade"],
    );
}

#[test]
fn token_file_readable_by_others() {
    let pop = Pop::new();
    write_file(&pop.token_file, &format!("{}\n", pop.token), 0o644);
    pop.write_config(&backup(&pop));
    let chmod = format!("chmod 600 {}", pop.token_file.display());
    refused(&pop, &["auth.token_file"], &[&chmod]);
}

#[test]
fn token_of_128_bits() {
    let pop = Pop::new();
    write_file(&pop.token_file, &format!("{}\n", token_text(16)), 0o600);
    pop.write_config(&backup(&pop));
    refused(&pop, &["auth.token_file"], &["128 bits", "pop-token"]);
}

#[test]
fn token_file_holding_a_pem_key() {
    let pop = Pop::new();
    let leaf = Ca::new("test CA").leaf("pop");
    write_file(&pop.token_file, &leaf.key_pem, 0o600);
    pop.write_config(&backup(&pop));
    refused(&pop, &["auth.token_file"], &["PEM"]);
}

/// The spec's own first example points auth.token_file and auth.mtls_key at the same file.
#[test]
fn token_file_same_as_mtls_key_as_in_the_spec_example() {
    let pop = Pop::new();
    let ca = Ca::new("test CA");
    let tls = pop.write_tls(&ca);
    let key = q(&tls.key);
    let y = format!(
        "pop_id: \"calgary-01\"\nregion: \"north-america\"\nrole: \"primary\"\n\
         backup_pop:\n  id: \"zurich-01\"\n  url: \"https://zurich-01.clavitor.ai\"\n  auth_token_file: {key}\n\
         auth:\n  token_file: {key}\n  mtls_cert: {}\n  mtls_key: {key}\n  mtls_ca: {}\n\
         replication:\n  batch_size: 100\n  max_retries: 5\n",
        q(&tls.cert),
        q(&tls.ca),
    );
    pop.write_config(&y);
    let err = refused(&pop, &["auth.token_file"], &["auth.mtls_key"]);
    assert!(err.contains(tls.key.to_str().unwrap()), "{err}");
}

/// `role`'s baseline config without the `auth.KEY` line: refused, naming `auth.KEY`.
#[track_caller]
fn without_mtls_line(role: &str, key: &str) {
    let pop = Pop::new();
    let path = match key {
        "mtls_cert" => &pop.tls.cert,
        "mtls_key" => &pop.tls.key,
        _ => &pop.tls.ca,
    };
    let good = config_yaml(&pop, role, &Opts::default());
    let y = good.replace(&format!("  {key}: {}\n", q(path)), "");
    assert_ne!(y, good);
    pop.write_config(&y);
    let err = refused(&pop, &[&format!("auth.{key}")], &["Certificates"]);
    assert!(err.contains("1 problem)"), "{err}");
    readme_sections_exist(&err);
}

/// Every Commercial POP serves HTTPS and proves who it is: each mTLS key is required.
#[test]
fn each_mtls_key_is_required_on_both_roles() {
    for role in ["primary", "backup"] {
        for key in ["mtls_cert", "mtls_key", "mtls_ca"] {
            without_mtls_line(role, key);
        }
    }
}

#[test]
fn no_mtls_at_all_names_all_three() {
    let pop = Pop::new();
    let y = config_yaml(&pop, "primary", &Opts::default()).replace(&pop.tls.yaml(), "");
    pop.write_config(&y);
    refused(
        &pop,
        &["auth.mtls_cert", "auth.mtls_key", "auth.mtls_ca"],
        &["3 problems"],
    );
}

/// A backup must say which POP may push to it.
#[test]
fn backup_without_primary_pop_id() {
    refused_edit(
        backup,
        "primary_pop:\n  id: \"calgary-01\"\n",
        "",
        &["primary_pop.id"],
        &["certificate"],
    );
    refused_edit(
        backup,
        "  id: \"calgary-01\"\n",
        "  url: \"https://calgary-01.example.com\"\n",
        &["primary_pop.id"],
        &[],
    );
}

#[test]
fn batch_size_over_100() {
    refused_edit(
        backup,
        "batch_size: 100",
        "batch_size: 101",
        &["replication.batch_size"],
        &["101"],
    );
}

#[test]
fn heartbeat_interval_zero() {
    let pop = Pop::new();
    let cp_token = pop.path("control-plane.token");
    write_token(&cp_token);
    let y = format!(
        "{}control_plane:\n  url: \"https://control.example.com\"\n  token_file: {}\n  heartbeat_interval: 0\n",
        backup(&pop),
        q(&cp_token)
    );
    pop.write_config(&y);
    refused(&pop, &["control_plane.heartbeat_interval"], &[]);
}

/// A backup the control plane may promote must know where and how to push once promoted.
#[test]
fn a_managed_backup_needs_its_primarys_url_and_token_file() {
    let pop = Pop::new();
    let cp_token = pop.path("control-plane.token");
    write_token(&cp_token);
    let y = format!(
        "{}control_plane:\n  url: \"https://control.example.com\"\n  token_file: {}\n",
        backup(&pop),
        q(&cp_token)
    );
    pop.write_config(&y);
    let err = refused(
        &pop,
        &["primary_pop.url", "primary_pop.auth_token_file"],
        &["promoted", "remove control_plane"],
    );
    assert!(!err.contains("primary_pop.id"), "{err}");
}

#[test]
fn three_problems_reported_at_once() {
    let pop = Pop::new();
    write_file(&pop.token_file, &format!("{}\n", pop.token), 0o644);
    let y = backup(&pop)
        .replace("role: \"backup\"", "role: \"primari\"")
        .replace("batch_size: 100", "batch_size: 0");
    pop.write_config(&y);
    let err = refused(
        &pop,
        &["role", "auth.token_file", "replication.batch_size"],
        &["3 problems"],
    );
    assert_eq!(err.matches("Fix:").count(), 3, "{err}");
}

/// Sanity check for every case above: the unmodified configs start.
#[test]
fn the_baseline_configs_are_valid() {
    for role in ["primary", "backup"] {
        let pop = Pop::new();
        pop.configure(role, &Opts::default());
        let v = pop.start();
        assert!(v.url.starts_with("https://127.0.0.1:"), "{}", v.url);
        assert!(Path::new(&pop.data).join("vault.db").exists());
    }
}

#[test]
fn mtls_key_readable_by_others() {
    let pop = Pop::new();
    let tls = pop.write_tls(&Ca::new("test CA"));
    std::fs::set_permissions(
        &tls.key,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    pop.configure("backup", &Opts::with_tls(&tls));
    let chmod = format!("chmod 600 {}", tls.key.display());
    refused(&pop, &["auth.mtls_key"], &[&chmod]);
}

#[test]
fn mtls_key_of_another_certificate() {
    let pop = Pop::new();
    let ca = Ca::new("test CA");
    let tls = pop.write_tls(&ca);
    write_file(&tls.key, &ca.leaf("other").key_pem, 0o600);
    pop.configure("backup", &Opts::with_tls(&tls));
    refused(&pop, &["auth.mtls_cert", "auth.mtls_key"], &[]);
}

#[test]
fn mtls_ca_not_a_certificate() {
    let pop = Pop::new();
    let tls = pop.write_tls(&Ca::new("test CA"));
    write_file(&tls.ca, "not a certificate\n", 0o644);
    pop.configure("backup", &Opts::with_tls(&tls));
    refused(&pop, &["auth.mtls_ca"], &[]);
}

#[test]
fn plain_http_control_plane() {
    let pop = Pop::new();
    let y = format!(
        "{}control_plane:\n  url: \"http://control.example.com\"\n  token_file: {}\n",
        backup(&pop),
        q(&pop.token_file)
    );
    pop.write_config(&y);
    refused(&pop, &["control_plane.url"], &["https://"]);
}

/// The offending line and a caret under the column, each on its own line.
#[test]
fn yaml_syntax_error_shows_the_line_and_a_caret() {
    let pop = Pop::new();
    pop.write_config("pop_id: \"zurich-01\"\nrole: [backup\n");
    let err = refused(&pop, &[], &["line 2, column 7"]);
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with("2 | role: [backup"))
        .unwrap_or_else(|| panic!("the offending line is not on a line of its own:\n{err}"));
    let caret = lines.get(at + 1).copied().unwrap_or_default();
    assert!(caret.trim_end().ends_with('^'), "no caret line:\n{err}");
    assert_eq!(
        caret.find('^'),
        lines[at].find('['),
        "the caret is not under the bracket:\n{err}"
    );
}

#[test]
fn empty_file_lists_what_is_missing() {
    let pop = Pop::new();
    pop.write_config("");
    refused(
        &pop,
        &[
            "pop_id",
            "role",
            "auth.token_file",
            "auth.mtls_cert",
            "auth.mtls_key",
            "auth.mtls_ca",
        ],
        &["6 problems"],
    );
}

/// Files named in the config are found next to the config file, whatever the working
/// directory.
#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let pop = Pop::new();
    let y = backup(&pop).replace(&q(&pop.token_file), "\"replication.token\"");
    assert!(y.contains("token_file: \"replication.token\""), "{y}");
    pop.write_config(&y);
    let v = pop.start();
    assert!(v.url.starts_with("https://"));
    // The same relative name, with the token missing next to the config: refused.
    drop(v);
    std::fs::remove_file(&pop.token_file).unwrap();
    std::fs::remove_dir_all(&pop.data).unwrap();
    let err = refused(&pop, &["auth.token_file"], &[]);
    assert!(err.contains(pop.token_file.to_str().unwrap()), "{err}");
}
