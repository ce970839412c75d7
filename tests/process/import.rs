//! `clavitor import` and `clavitor export` through the real binary against a real server:
//! each format's fixture becomes entries a user can list and read, with secrets in the
//! credential tier; bad files are refused naming the file and the position, importing
//! nothing; an export imports back into a fresh vault unchanged.

use crate::helpers::{Output, Scratch, Vault, chmod, command_for, mode, run, serve, server_args};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> String {
    format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// A vault and the data dir whose config home holds its owner token.
struct Setup {
    _tmp: Scratch,
    data: PathBuf,
    vault: Vault,
}

impl Setup {
    fn new() -> Self {
        let tmp = Scratch::new();
        let data = tmp.data();
        let vault = serve(&data);
        Self {
            _tmp: tmp,
            data,
            vault,
        }
    }

    fn dir(&self) -> &Path {
        self.data.parent().expect("scratch dir")
    }

    /// `clavitor ARGS --server URL` as the owner.
    fn cli(&self, args: &[&str]) -> Output {
        run(command_for(&self.data, args).args(server_args(&self.vault.url)))
    }

    /// Every entry's metadata, by title (titles are unique in these tests).
    fn entries(&self) -> BTreeMap<String, Value> {
        self.cli(&["entry", "list", "--json"]).ok().json()["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| (e["title"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    }

    fn read(&self, entry: &Value, field: &str) -> String {
        let reference = format!("clavitor://{}/{field}", entry["id"].as_str().unwrap());
        self.cli(&["read", &reference, "-n"]).ok().stdout
    }
}

/// `(tier, scope)` of `field` in a listed entry.
#[track_caller]
fn placed(entry: &Value, field: &str) -> (String, Option<String>) {
    let f = entry["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == field)
        .unwrap_or_else(|| panic!("no field {field:?} in {entry}"));
    (
        f["tier"].as_str().unwrap().to_owned(),
        f["scope"].as_str().map(str::to_owned),
    )
}

fn credential() -> (String, Option<String>) {
    ("credential".into(), Some("imported".into()))
}

fn vault_tier() -> (String, Option<String>) {
    ("vault".into(), None)
}

#[track_caller]
fn says(out: &Output, needle: &str) {
    assert!(
        out.stdout.contains(needle),
        "stdout lacks {needle:?}: {out}"
    );
}

#[test]
fn bitwarden_export_becomes_entries_with_secrets_in_the_credential_tier() {
    let s = Setup::new();
    let out = s
        .cli(&["import", "bitwarden", &fixture("bitwarden/export.json")])
        .ok();
    says(&out, "Imported 6 entries");
    says(&out, "in one transaction");
    says(&out, "1 attachment (");
    says(&out, "2 password history values (");
    says(&out, "1 passkey (");
    says(&out, "1 linked custom field (");

    let e = s.entries();
    let titles: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(
        titles,
        [
            "Example Mail",
            "Jane Doe",
            "Personal/Banking/Visa test card",
            "Work/Deploy SSH key",
            "Work/GitHub",
            "Work/Office wifi"
        ]
    );
    let gh = &e["Work/GitHub"];
    assert_eq!(gh["url"], "https://github.com/login");
    assert_eq!(gh["username"], "jane.doe@example.com");
    for f in ["password", "totp", "Recovery codes", "Deploy API key"] {
        assert_eq!(placed(gh, f), credential(), "{f}");
    }
    for f in ["notes", "Team", "2FA enabled", "url 2"] {
        assert_eq!(placed(gh, f), vault_tier(), "{f}");
    }
    assert_eq!(s.read(gh, "password"), "correct-horse-battery-staple-1");
    assert_eq!(s.read(gh, "Recovery codes"), "1a2b3-4c5d6 7e8f9-0a1b2");
    assert_eq!(s.read(gh, "Team"), "platform");
    assert_eq!(s.read(gh, "url 2"), "https://gist.github.com");

    let card = &e["Personal/Banking/Visa test card"];
    assert_eq!(placed(card, "number"), credential());
    assert_eq!(placed(card, "code"), credential());
    assert_eq!(placed(card, "cardholder"), vault_tier());
    assert_eq!(s.read(card, "number"), "4111111111111111");
    let id = &e["Jane Doe"];
    assert_eq!(id["username"], "jdoe");
    assert_eq!(placed(id, "ssn"), credential());
    assert_eq!(placed(id, "city"), vault_tier());
    let key = &e["Work/Deploy SSH key"];
    assert_eq!(placed(key, "private_key"), credential());
    assert!(
        s.read(key, "private_key")
            .contains("EXAMPLE-NOT-A-REAL-KEY")
    );
    assert_eq!(
        s.read(&e["Work/Office wifi"], "notes"),
        "SSID: example-office\nAsk reception for the guest network."
    );
}

#[test]
fn keepass_xml_becomes_entries_with_groups_protected_strings_and_skips() {
    let s = Setup::new();
    let out = s
        .cli(&["import", "keepass", &fixture("keepass/export.xml")])
        .ok();
    says(&out, "Imported 2 entries");
    says(&out, "1 attachment (");
    says(&out, "1 password history value (");
    says(&out, "1 item in the trash or recycle bin (");

    let e = s.entries();
    let titles: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(titles, ["Internet/Email/Example Mail", "Prod database"]);
    let db = &e["Prod database"];
    assert_eq!(db["username"], "app");
    assert_eq!(db["url"], "postgres://db.example.com:5432/app");
    // Protected strings are secret whatever their name; the others by name.
    for f in ["password", "Replication secret", "Region"] {
        assert_eq!(placed(db, f), credential(), "{f}");
    }
    assert_eq!(placed(db, "Port"), vault_tier());
    assert_eq!(s.read(db, "password"), "example-db-password-\u{263A}");
    assert_eq!(
        s.read(db, "notes"),
        "Primary database & replica; see the runbook <db-ops>."
    );
    let mail = &e["Internet/Email/Example Mail"];
    assert_eq!(placed(mail, "otp"), credential());
    assert!(
        s.read(mail, "otp")
            .contains("secret=JBSWY3DPEHPK3PXP&period=30")
    );
    assert_eq!(s.read(mail, "notes"), "Line one\nLine <two> & three");
}

#[test]
fn onepux_becomes_entries_per_vault_with_concealed_values_secret() {
    let s = Setup::new();
    let out = s
        .cli(&["import", "1pux", &fixture("1pux/sample.1pux")])
        .ok();
    says(&out, "Imported 4 entries");
    says(&out, "1 attachment (");
    says(&out, "2 password history values (");
    says(&out, "1 item in the trash or recycle bin (");

    let e = s.entries();
    let titles: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(
        titles,
        [
            "Personal/GitHub",
            "Personal/Passport scan",
            "Personal/Visa test card",
            "Work/CI API credential"
        ]
    );
    let gh = &e["Personal/GitHub"];
    assert_eq!(gh["username"], "jane.doe@example.com");
    assert_eq!(gh["url"], "https://github.com/login");
    assert_eq!(placed(gh, "password"), credential());
    assert_eq!(placed(gh, "one-time password"), credential());
    assert_eq!(placed(gh, "recovery email"), vault_tier());
    assert_eq!(s.read(gh, "password"), "example-github-password");
    assert_eq!(s.read(gh, "recovery email"), "recovery@example.com");
    let card = &e["Personal/Visa test card"];
    assert_eq!(placed(card, "number"), credential());
    assert_eq!(placed(card, "verification number"), credential());
    assert_eq!(s.read(card, "expiry date"), "2030-12");
    let api = &e["Work/CI API credential"];
    assert_eq!(placed(api, "credential"), credential());
    assert_eq!(s.read(api, "credential"), "example-api-credential-0000");
    assert_eq!(s.read(api, "expires"), "2026-01-01");
}

#[test]
fn csv_imports_by_header_names_and_by_map() {
    let s = Setup::new();
    let out = s
        .cli(&["import", "csv", &fixture("csv/bitwarden.csv")])
        .ok();
    says(&out, "Imported 3 entries");
    let out = s
        .cli(&[
            "import",
            "csv",
            &fixture("csv/custom.csv"),
            "--map",
            "title=Service,username=Login,password=Secret Word",
        ])
        .ok();
    says(&out, "Imported 2 entries");

    let e = s.entries();
    let gh = &e["Work/GitHub"];
    assert_eq!(gh["url"], "https://github.com/login");
    assert_eq!(gh["username"], "jane.doe@example.com");
    assert_eq!(placed(gh, "password"), credential());
    assert_eq!(placed(gh, "totp"), credential());
    assert_eq!(
        s.read(gh, "notes"),
        "Work account, SSO via the IdP.\nSecond line of notes."
    );
    assert!(e.contains_key("Personal/Banking/Safe combination"));

    let bank = &e["Bank"];
    assert_eq!(bank["username"], "jdoe");
    assert_eq!(bank["url"], "https://bank.example.com");
    assert_eq!(placed(bank, "password"), credential());
    assert_eq!(placed(bank, "PIN"), credential());
    assert_eq!(s.read(bank, "password"), "example-bank-password");
    let router = &e["Router"];
    assert_eq!(placed(router, "Comment"), vault_tier());
    assert_eq!(s.read(router, "Comment"), "Basement cupboard");
}

#[test]
fn dry_run_sends_nothing_and_needs_no_server() {
    let s = Setup::new();
    let out = s
        .cli(&[
            "import",
            "bitwarden",
            &fixture("bitwarden/export.json"),
            "--dry-run",
        ])
        .ok();
    says(&out, "Dry run: 6 entries");
    says(&out, "nothing was sent");
    says(&out, "2 password history values (");
    assert!(s.entries().is_empty(), "a dry run imported something");
    // No server and no token needed: it only reads the file.
    let out = run(&mut crate::helpers::command(&[
        "import",
        "keepass",
        &fixture("keepass/export.xml"),
        "--dry-run",
        "--json",
        "--server",
        "http://127.0.0.1:9",
    ]))
    .ok();
    let v = out.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["entries"], 2);
    assert_eq!(v["fields"]["credential"], 5);
    assert_eq!(v["scopes"], serde_json::json!(["imported"]));
    let skipped: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["what"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["attachment", "password_history", "trashed"]);
}

#[test]
fn tier_and_scope_choose_where_secrets_go() {
    let s = Setup::new();
    let file = fixture("csv/bitwarden.csv");
    s.cli(&["import", "csv", &file, "--scope", "team.import"])
        .ok();
    s.cli(&["import", "csv", &file, "--tier", "vault", "--dry-run"])
        .ok();
    let e = s.entries();
    assert_eq!(
        placed(&e["Work/GitHub"], "password"),
        ("credential".into(), Some("team.import".into()))
    );
    let s2 = Setup::new();
    s2.cli(&[
        "import",
        "keepass",
        &fixture("keepass/export.xml"),
        "--tier",
        "vault",
    ])
    .ok();
    for entry in s2.entries().values() {
        for f in entry["fields"].as_array().unwrap() {
            assert_eq!(f["tier"], "vault", "{entry}");
        }
    }
    assert_eq!(
        s2.read(&s2.entries()["Prod database"], "password"),
        "example-db-password-\u{263A}"
    );
}

#[test]
fn bad_files_name_the_file_and_position_and_import_nothing() {
    let s = Setup::new();
    s.cli(&["entry", "add", "before", "-f", "k=v"]).ok();
    let before = s.entries();
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["bitwarden"],
            "bitwarden/truncated.json",
            "line 35, column 51: the JSON ends too early",
        ),
        (
            &["bitwarden"],
            "bitwarden/encrypted.json",
            "this is an encrypted Bitwarden export",
        ),
        (
            &["bitwarden"],
            "keepass/export.xml",
            "line 1, column 1: not valid JSON",
        ),
        (
            &["keepass"],
            "keepass/mismatched.xml",
            "line 86, column 31: not well-formed XML",
        ),
        (
            &["keepass"],
            "bitwarden/export.json",
            "line 1, column 1: not XML",
        ),
        (
            &["1pux"],
            "1pux/no-export-data.1pux",
            "not a 1Password export: the zip has no export.data",
        ),
        (
            &["1pux"],
            "1pux/bad-export-data.1pux",
            "export.data line 94, column 40",
        ),
        (&["1pux"], "csv/custom.csv", "not a zip archive"),
        (
            &["csv"],
            "csv/too-many-columns.csv",
            "line 3, column 5: this row has 5 columns, but the header has 4",
        ),
        (
            &["csv", "--map", "password=pass"],
            "csv/custom.csv",
            "line 1: --map password=pass: the header has no column \"pass\"",
        ),
    ];
    for (args, rel, needle) in cases {
        let path = fixture(rel);
        let mut all = vec!["import", args[0], path.as_str()];
        all.extend(&args[1..]);
        let out = s.cli(&all);
        assert_eq!(out.code(), Some(1), "{out}");
        let want = format!("error: {path}: {needle}");
        assert!(out.stderr.contains(&want), "wanted {want:?}: {out}");
        assert!(out.stdout.is_empty(), "{out}");
    }
    let after = s.entries();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "a refused import changed the vault"
    );
}

/// Every entry with every value, as a plain export of this vault shows them.
fn plain_export(s: &Setup, name: &str) -> Vec<Value> {
    let out = s.dir().join(name);
    s.cli(&["export", "--out", out.to_str().unwrap(), "--plaintext"])
        .ok();
    assert_eq!(mode(&out), 0o600);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    v["entries"].as_array().unwrap().clone()
}

#[test]
fn an_export_imports_into_a_fresh_vault_unchanged() {
    let a = Setup::new();
    a.cli(&["import", "bitwarden", &fixture("bitwarden/export.json")])
        .ok();
    a.cli(&["import", "keepass", &fixture("keepass/export.xml")])
        .ok();
    a.cli(&[
        "entry",
        "add",
        "Deploy",
        "--url",
        "https://deploy.example.com",
        "-f",
        "api_key:credential:deploy=sk-example-deploy",
        "-f",
        "blob:identity=q83vEjRz",
        "-f",
        "region=eu",
    ])
    .ok();
    let pass = a.dir().join("passphrase");
    std::fs::write(&pass, "an example export passphrase\n").unwrap();
    chmod(&pass, 0o644);
    let exported = a.dir().join("vault-export.json");
    let args = [
        "export",
        "--out",
        exported.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ];
    let out = a.cli(&args);
    assert_eq!(
        out.code(),
        Some(1),
        "a readable passphrase file is refused: {out}"
    );
    assert!(!exported.exists());
    chmod(&pass, 0o600);
    let out = a.cli(&args).ok();
    says(&out, "Exported 9 entries");
    says(&out, "encrypted with the passphrase");
    assert_eq!(mode(&exported), 0o600);
    let bytes = std::fs::read(&exported).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for secret in [
        "correct-horse-battery-staple-1",
        "sk-example-deploy",
        "Prod database",
    ] {
        assert!(
            !text.contains(secret),
            "the encrypted export shows {secret:?}"
        );
    }

    let b = Setup::new();
    let wrong = b.dir().join("wrong");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    chmod(&wrong, 0o600);
    let out = b.cli(&[
        "import",
        "clavitor",
        exported.to_str().unwrap(),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("wrong passphrase"), "{out}");
    assert!(b.entries().is_empty());
    let out = b
        .cli(&[
            "import",
            "clavitor",
            exported.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ])
        .ok();
    says(&out, "Imported 9 entries");
    says(&out, "1 identity");

    // Metadata: titles, URLs, usernames, field names, tiers and scopes.
    let strip = |mut e: Value| {
        for k in ["id", "created_at", "updated_at", "version"] {
            e.as_object_mut().unwrap().remove(k);
        }
        e
    };
    let meta_a: Vec<Value> = a.entries().into_values().map(strip).collect();
    let meta_b: Vec<Value> = b.entries().into_values().map(strip).collect();
    assert_eq!(meta_a, meta_b);
    // Every value, read from each vault.
    assert_eq!(plain_export(&a, "a.json"), plain_export(&b, "b.json"));
    let deploy = &b.entries()["Deploy"];
    assert_eq!(
        placed(deploy, "api_key"),
        ("credential".into(), Some("deploy".into()))
    );
    assert_eq!(placed(deploy, "blob"), ("identity".into(), None));
    assert_eq!(b.read(deploy, "api_key"), "sk-example-deploy");
    assert_eq!(b.read(deploy, "blob"), "q83vEjRz");

    // The plain form reads back too.
    let c = Setup::new();
    let plain = a.dir().join("a.json");
    c.cli(&["import", "clavitor", plain.to_str().unwrap()]).ok();
    assert_eq!(plain_export(&c, "c.json"), plain_export(&a, "a2.json"));
}
