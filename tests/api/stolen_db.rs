//! A thief holds `vault.db` and `master.key` (or a copy of the whole data dir) but no token:
//! vault-tier fields fall, credential fields must not. Scope keys are wrapped to principals'
//! public keys, whose private keys are sealed under their tokens: the thief tries every value
//! in the files as a token, as a raw AES key and as an X25519 private key.

use crate::helpers::{contains_bytes, db_files, distinctive, spawn_app};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clavitor::crypto::{MasterKey, PrivateKey, ScopeKey, Sealer, Token, field_aad, scope_key_aad};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every row of `sql`, each made by `row`.
fn rows<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    row: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> Vec<T> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], row)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The fields whose rows match `filter` (an SQL condition), ciphertexts as stored.
fn stored_fields(conn: &rusqlite::Connection, filter: &str) -> Vec<Field> {
    let sql = format!("SELECT entry_id, name, tier, ciphertext FROM fields WHERE {filter}");
    rows(conn, &sql, |r| {
        Ok(Field {
            entry: r.get(0)?,
            name: r.get(1)?,
            tier: r.get(2)?,
            ciphertext: r.get(3)?,
        })
    })
}

/// The text forms a token made from `raw` could take: hex, base64 and base64url, and a
/// `clv_` token of its base64url.
fn text_forms(raw: &[u8]) -> [String; 4] {
    [
        hex(raw),
        STANDARD.encode(raw),
        URL_SAFE_NO_PAD.encode(raw),
        format!("clv_{}", URL_SAFE_NO_PAD.encode(raw)),
    ]
}

/// Each principal's sealed private key, by id, as the thief reads them.
fn sealed_keys(conn: &rusqlite::Connection) -> HashMap<String, Vec<u8>> {
    rows(
        conn,
        "SELECT id, sealed_private_key FROM agents WHERE sealed_private_key IS NOT NULL",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .into_iter()
    .collect()
}

/// Live wrapped scope keys (dropped copies are empty).
fn wrapped_keys(conn: &rusqlite::Connection) -> Vec<Wrapped> {
    rows(
        conn,
        "SELECT scope, agent_id, wrapped FROM scope_keys WHERE length(wrapped) > 0",
        |r| {
            Ok(Wrapped {
                scope: r.get(0)?,
                agent_id: r.get(1)?,
                wrapped: r.get(2)?,
            })
        },
    )
}

/// The server's procedure with `token`: its holder's private key unsealed with it (or, for a
/// wrap of the format before key pairs, the token itself), then the wrap opened.
fn open_with_token(
    w: &Wrapped,
    token: &str,
    sealed: &HashMap<String, Vec<u8>>,
) -> Option<ScopeKey> {
    let token = Token::from_text(token);
    ScopeKey::unwrap_stored(&w.wrapped, &w.scope, &w.agent_id, &token, || {
        let s = sealed
            .get(&w.agent_id)
            .ok_or(clavitor::crypto::Error::Format)?;
        PrivateKey::unseal(&token, &w.agent_id, s)
    })
    .ok()
}

/// HPKE (as the server uses it) with `raw` taken as an X25519 private key: what a thief does
/// with public keys and any other 32 bytes found in the files.
fn opens_as_private_key(w: &Wrapped, raw: &[u8]) -> bool {
    use hpke::kem::X25519HkdfSha256 as Kem;
    use hpke::{Deserializable, OpModeR};
    if raw.len() != 32 || w.wrapped.first() != Some(&2) || w.wrapped.len() < 33 {
        return false;
    }
    let Ok(sk) = <Kem as hpke::Kem>::PrivateKey::from_bytes(raw) else {
        return false;
    };
    let (enc, ct) = w.wrapped[1..].split_at(32);
    let Ok(enc) = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc) else {
        return false;
    };
    let mut info = b"clavitor/v1/scope-key-hpke".to_vec();
    for part in [w.scope.as_bytes(), w.agent_id.as_bytes()] {
        info.push(0);
        info.extend_from_slice(part);
    }
    hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        &info,
        ct,
        &info,
    )
    .is_ok()
}

/// Asserts the wrapped scope key `w` opens with nothing a thief holds: not the vault key
/// `vault`, none of `texts` as a token, none of `raws` as a vault key or an X25519 private key.
fn assert_wrap_holds(
    w: &Wrapped,
    vault: &Sealer,
    sealed: &HashMap<String, Vec<u8>>,
    texts: &[String],
    raws: &[impl AsRef<[u8]>],
) {
    let aad = scope_key_aad(&w.scope, &w.agent_id);
    assert!(
        vault.open(&aad, &w.wrapped).is_err(),
        "a scope key opens with the vault key"
    );
    for t in texts {
        assert!(
            open_with_token(w, t, sealed).is_none(),
            "a scope key unwraps with a token made from the thief's files"
        );
    }
    for raw in raws {
        let as_vault = MasterKey::from_bytes(raw.as_ref()).unwrap().vault_sealer();
        assert!(as_vault.open(&aad, &w.wrapped).is_err());
        assert!(!opens_as_private_key(w, raw.as_ref()));
    }
}

/// Asserts a credential field (sealed under `aad`) opens neither with the vault key `vault`
/// nor with any of `raws` as one.
fn assert_field_holds(aad: &[u8], ciphertext: &[u8], vault: &Sealer, raws: &[impl AsRef<[u8]>]) {
    assert!(vault.open(aad, ciphertext).is_err());
    for raw in raws {
        let as_vault = MasterKey::from_bytes(raw.as_ref()).unwrap().vault_sealer();
        assert!(as_vault.open(aad, ciphertext).is_err());
    }
}

struct Field {
    entry: String,
    name: String,
    tier: String,
    ciphertext: Vec<u8>,
}

struct Wrapped {
    scope: String,
    agent_id: String,
    wrapped: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_db_and_master_key_do_not_reveal_credential_fields() {
    let app = spawn_app().await;
    let cred = distinctive("STOLEN-CREDENTIAL");
    let vault = distinctive("stolen-vault");
    let entry = app
        .create_entry(&json!({"title": "prod", "fields": [
            {"name": "db_password", "value": cred, "tier": "credential", "scope": "deploy"},
            {"name": "note", "value": vault, "tier": "vault"}
        ]}))
        .await;
    // An agent too, so `scope_keys` holds more than the owner's copy.
    let (_, agent_token) = app
        .create_agent(&json!({"name": "ci", "scopes": ["deploy"]}))
        .await;
    assert_eq!(
        app.field_value(&agent_token, &entry, "db_password").await,
        cred
    );
    let stopped = app.stop().await;
    let owner_token = stopped.owner_token.clone();
    let db = stopped.db_path();

    // (a) No plaintext, and no token, anywhere in the database files.
    let files = db_files(&db);
    assert!(!files.is_empty());
    // Control: field names are stored in the clear, so the scan does find what is there.
    assert!(
        files
            .iter()
            .any(|p| contains_bytes(&std::fs::read(p).unwrap(), b"db_password")),
        "the byte scan finds a field name"
    );
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for (what, needle) in [
            ("credential value", &cred),
            ("vault value", &vault),
            ("owner token", &owner_token),
            ("agent token", &agent_token),
        ] {
            assert!(
                !contains_bytes(&bytes, needle.as_bytes()),
                "{what} found in plain in {}",
                path.display()
            );
        }
    }

    // What the thief reads.
    let raw_key = std::fs::read(stopped.data_dir().join("master.key")).unwrap();
    let master = MasterKey::from_bytes(&raw_key).expect("master.key is a key");
    let sealer = master.vault_sealer();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let fields = stored_fields(&conn, "true");
    let wrapped = wrapped_keys(&conn);
    let sealed = sealed_keys(&conn);
    assert_eq!(
        sealed.len(),
        2,
        "the owner's and the agent's private keys, sealed"
    );
    let hashes: Vec<Vec<u8>> = rows(&conn, "SELECT token_hash FROM agents", |r| r.get(0));
    assert_eq!(
        wrapped.len(),
        2,
        "owner's and agent's copies of the deploy key"
    );
    assert_eq!(hashes.len(), 2);

    let field = |name: &str| fields.iter().find(|f| f.name == name).unwrap();
    let cred_field = field("db_password");
    let vault_field = field("note");
    assert_eq!(cred_field.tier, "credential");
    assert_eq!(vault_field.tier, "vault");

    // (b) The attack works where it should: a vault-tier field opens with the master key.
    let opened = sealer
        .open(
            &field_aad(&vault_field.entry, &vault_field.name),
            &vault_field.ciphertext,
        )
        .expect("vault tier opens with master.key");
    assert_eq!(&opened[..], vault.as_bytes());

    // (c) The credential field does not open with the vault key, nor with any key the thief
    // can make from the database and master.key: the stored token hashes and the master key,
    // as tokens in every usual text form, and as raw keys.
    let aad = field_aad(&cred_field.entry, &cred_field.name);
    let mut raw_candidates: Vec<Vec<u8>> = hashes.clone();
    raw_candidates.push(raw_key.clone());
    assert_field_holds(&aad, &cred_field.ciphertext, &sealer, &raw_candidates);
    let texts: Vec<String> = raw_candidates.iter().flat_map(|r| text_forms(r)).collect();
    for w in &wrapped {
        assert_wrap_holds(w, &sealer, &sealed, &texts, &raw_candidates);
    }

    // Control for (c): with a real token the same procedure does open the field, so the
    // failures above are the keys' doing, not the test's.
    for (token, holder) in [(&owner_token, "owner"), (&agent_token, "agent")] {
        let opened = wrapped.iter().find_map(|w| {
            let key = open_with_token(w, token, &sealed)?;
            key.sealer().open(&aad, &cred_field.ciphertext).ok()
        });
        let opened = opened.unwrap_or_else(|| panic!("the {holder} token opens its scope key"));
        assert_eq!(&opened[..], cred.as_bytes());
    }
}

/// Every file under `dir`, recursively, with its bytes.
fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(read_tree(&p));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out
}

/// Copies `from` (files and subdirectories) to `to`, as a backup tool or a thief would.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

/// Every TEXT and BLOB value in every table of the database in `dir` (its WAL applied).
fn every_stored_value(db: &Path) -> Vec<Vec<u8>> {
    use rusqlite::types::ValueRef;
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = rows(
        &conn,
        "SELECT name FROM sqlite_master WHERE type = 'table'",
        |r| r.get(0),
    );
    let mut out = Vec::new();
    for t in &tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                match row.get_ref(i).unwrap() {
                    ValueRef::Text(b) | ValueRef::Blob(b) if !b.is_empty() => out.push(b.to_vec()),
                    _ => {}
                }
            }
        }
    }
    out
}

/// Every `clv_` + 43 base64url characters in `bytes`: anything shaped like one of our tokens.
fn token_shaped(bytes: &[u8]) -> Vec<String> {
    let ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let mut out = Vec::new();
    for (i, w) in bytes.windows(4).enumerate() {
        if w == b"clv_" {
            let rest = &bytes[i + 4..];
            let n = rest.iter().take_while(|b| ok(b)).count();
            if n >= 43 {
                out.push(String::from_utf8_lossy(&bytes[i..i + 4 + 43]).into_owned());
            }
        }
    }
    out
}

/// The thief's key candidates as token texts: every stored value and every file's content,
/// as is and in every usual text form of its bytes.
fn token_candidates(values: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        out.push(String::from_utf8_lossy(v).trim().to_owned());
        out.extend(text_forms(v));
        out.extend(token_shaped(v));
    }
    out.sort();
    out.dedup();
    out
}

/// A copy of the WHOLE data dir after realistic use (several scopes, agents, a revocation, an
/// owner rotation, updates and a deletion; an admin and members in groups, members' agents and
/// a member's own entry, a user's token rotation, a deactivated member and a member removed
/// from its group) opens no credential field with anything in it or derivable from it, and
/// holds no token. Taken twice: while the server runs (a hot backup,
/// WAL and lock file included) and after it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_whole_data_dir_opens_no_credential_field() {
    let mut app = spawn_app().await;
    let mut creds = Vec::new();
    let mut ids = Vec::new();
    for (i, scope) in ["deploy", "ci", "billing", "deploy"].iter().enumerate() {
        let cred = distinctive(&format!("DIR-CREDENTIAL-{scope}"));
        let id = app
            .create_entry(&json!({"title": format!("e{i}"), "fields": [
                {"name": "secret", "value": cred, "tier": "credential", "scope": scope},
                {"name": "note", "value": distinctive("dir-vault"), "tier": "vault"},
                {"name": "blob", "value": STANDARD.encode(distinctive("id")), "tier": "identity"}
            ]}))
            .await;
        creds.push((id.clone(), cred));
        ids.push(id);
    }
    let (_, deployer) = app
        .create_agent(&json!({"name": "deployer", "scopes": ["deploy"]}))
        .await;
    let (_, ops) = app
        .create_agent(&json!({"name": "ops", "scopes": ["ci", "billing"]}))
        .await;
    let (gone_id, gone) = app
        .create_agent(&json!({"name": "temp", "scopes": ["deploy", "ci"]}))
        .await;
    assert_eq!(app.revoke_agent(&gone_id).await.status(), 204);
    // An update and a deletion.
    let cred = distinctive("DIR-CREDENTIAL-updated");
    let res = app
        .put_entry(
            &app.owner_token,
            &ids[0],
            &json!({"title": "e0", "fields": [
                {"name": "secret", "value": cred, "tier": "credential", "scope": "deploy"}
            ]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    creds[0].1 = cred;
    assert_eq!(
        app.delete_entry(&app.owner_token, &ids[3]).await.status(),
        204
    );
    creds.pop();

    // People: an admin, members in two groups, their agents, a member's own entry.
    let (_, admin) = app.create_user("adm", "admin").await;
    let (alice_id, alice) = app.create_user("alice", "member").await;
    let (bob_id, bob_old) = app.create_user("bob", "member").await;
    let (carol_id, carol) = app.create_user("carol", "member").await;
    let (dave_id, dave) = app.create_user("dave", "member").await;
    let deployers = app.create_group_as(&admin, "deployers", &["deploy"]).await;
    let opsg = app.create_group_as(&admin, "ops", &["ci", "billing"]).await;
    // The owner holds the keys: it grants them.
    app.add_member(&deployers, &alice_id).await;
    app.add_member(&deployers, &carol_id).await;
    app.add_member(&opsg, &bob_id).await;
    app.add_member(&opsg, &dave_id).await;
    let (_, alice_bot) = app
        .create_agent_as(&alice, &json!({"name": "alice-bot", "scopes": ["deploy"]}))
        .await;
    let (_, bob_bot) = app
        .create_agent_as(&bob_old, &json!({"name": "bob-bot", "scopes": ["ci"]}))
        .await;
    let (_, carol_bot) = app
        .create_agent_as(&carol, &json!({"name": "carol-bot", "scopes": ["deploy"]}))
        .await;
    let cred = distinctive("DIR-CREDENTIAL-by-alice");
    let by_alice = app
        .create_entry_as(
            &alice,
            &json!({"title": "alice's", "fields": [
                {"name": "secret", "value": cred, "tier": "credential", "scope": "deploy"}
            ]}),
        )
        .await;
    creds.push((by_alice, cred));
    // Bob rotates his token; carol is deactivated (her agent with her); dave leaves ops.
    let res =
        crate::helpers::send(app.request(reqwest::Method::POST, "/v1/token/rotate", &bob_old))
            .await;
    assert_eq!(res.status(), 200);
    let bob = res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .patch_user(&app.owner_token, &carol_id, &json!({"active": false}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app.remove_member_as(&admin, &opsg, &dave_id).await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.field_value(&bob_bot, &creds[1].0, "secret").await,
        creds[1].1
    );

    // The owner rotates; the old token is now one more a thief must not find or use.
    let old_owner = app.owner_token.clone();
    let res = app
        .owner(reqwest::Method::POST, "/v1/owner/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    app.owner_token = v["token"].as_str().unwrap().to_owned();
    let owner = app.owner_token.clone();
    assert_eq!(
        app.field_value(&ops, &creds[1].0, "secret").await,
        creds[1].1
    );

    let thief = tempfile::tempdir().unwrap();
    let hot = thief.path().join("hot");
    copy_tree(&app.dir().join("data"), &hot);
    let stopped = app.stop().await;
    let cold = thief.path().join("cold");
    copy_tree(&stopped.data_dir(), &cold);
    // The token file lives beside the data dir, not in it.
    assert!(stopped.dir().join("owner.token").exists());

    let all_tokens = [
        ("the owner token", &owner),
        ("the rotated-away owner token", &old_owner),
        ("an agent token", &deployer),
        ("an agent token", &ops),
        ("a revoked agent's token", &gone),
        ("an admin's token", &admin),
        ("a member's token", &alice),
        ("a member's token", &bob),
        ("a member's rotated-away token", &bob_old),
        ("a deactivated member's token", &carol),
        ("a removed member's token", &dave),
        ("a member's agent's token", &alice_bot),
        ("a member's agent's token", &bob_bot),
        ("a deactivated member's agent's token", &carol_bot),
    ];
    for copy in [&hot, &cold] {
        let files = read_tree(copy);
        let names: Vec<String> = files
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("vault.db") || n == "master.key" || n == "clavitor.lock"),
            "unexpected files in the data dir: {names:?}"
        );
        // (a) No token (text or its secret bytes) and no credential value, in any file.
        for (path, bytes) in &files {
            for (what, token) in &all_tokens {
                let raw = URL_SAFE_NO_PAD
                    .decode(token.strip_prefix("clv_").unwrap())
                    .unwrap();
                assert!(
                    !contains_bytes(bytes, token.as_bytes()) && !contains_bytes(bytes, &raw),
                    "{what} is in {}",
                    path.display()
                );
            }
            for (_, c) in &creds {
                assert!(
                    !contains_bytes(bytes, c.as_bytes()),
                    "a credential in {}",
                    path.display()
                );
            }
            assert!(
                token_shaped(bytes).is_empty(),
                "a token-shaped string in {}",
                path.display()
            );
        }

        // (b) What the thief derives: every stored value and every file, as tokens and keys.
        let db = copy.join("vault.db");
        let mut values = every_stored_value(&db);
        values.extend(files.iter().map(|(_, b)| b.clone()));
        let texts = token_candidates(&values);
        let raw_keys: Vec<&Vec<u8>> = values.iter().filter(|v| v.len() == 32).collect();
        let master = MasterKey::from_bytes(&std::fs::read(copy.join("master.key")).unwrap())
            .unwrap()
            .vault_sealer();
        let conn = rusqlite::Connection::open(&db).unwrap();
        let wrapped = wrapped_keys(&conn);
        let sealed = sealed_keys(&conn);
        let fields = stored_fields(&conn, "tier = 'credential'");
        // Four live entries' credential fields. Copies of keys (the revoked agent's, the
        // deactivated member's and its agent's, the removed member's are gone): deploy: the
        // owner, deployer, alice, alice-bot; ci: the owner, ops, bob, bob-bot; billing: the
        // owner, ops, bob.
        assert_eq!(fields.len(), 4);
        assert_eq!(wrapped.len(), 11, "scope key copies");
        // Every principal's private key is sealed; none opens with anything in the files.
        assert_eq!(
            sealed.len(),
            12,
            "the owner, 3 agents, 5 users, 3 members' agents"
        );
        for (id, blob) in &sealed {
            assert!(master.open(&scope_key_aad("", id), blob).is_err());
            for t in &texts {
                assert!(
                    PrivateKey::unseal(&Token::from_text(t), id, blob).is_err(),
                    "a private key unseals with a value from the data dir"
                );
            }
        }
        assert!(texts.len() > 50, "only {} candidates", texts.len());
        // Public keys (and every other 32 bytes) as private keys open nothing either.
        for w in &wrapped {
            assert_wrap_holds(w, &master, &sealed, &texts, &raw_keys);
        }
        for f in &fields {
            assert_eq!(f.tier, "credential");
            let aad = field_aad(&f.entry, &f.name);
            assert_field_holds(&aad, &f.ciphertext, &master, &raw_keys);
        }

        // (c) Control: the same procedure opens every credential field with the owner's
        // token, and the ones in its scopes with a live agent's; not with the old owner token
        // or the revoked agent's.
        let open_with = |token: &str| -> Vec<String> {
            fields
                .iter()
                .filter_map(|f| {
                    let aad = field_aad(&f.entry, &f.name);
                    wrapped.iter().find_map(|w| {
                        let key = open_with_token(w, token, &sealed)?;
                        let plain = key.sealer().open(&aad, &f.ciphertext).ok()?;
                        Some(String::from_utf8(plain.to_vec()).unwrap())
                    })
                })
                .collect()
        };
        let mut want: Vec<String> = creds.iter().map(|(_, c)| c.clone()).collect();
        want.sort();
        let mut got = open_with(&owner);
        got.sort();
        assert_eq!(got, want, "the owner token opens every credential field");
        let deploy = vec![creds[0].1.clone(), creds[3].1.clone()];
        assert_eq!(open_with(&deployer), deploy);
        assert_eq!(open_with(&ops).len(), 2);
        assert_eq!(
            open_with(&alice),
            deploy,
            "a member opens its group's scope"
        );
        assert_eq!(open_with(&alice_bot), deploy);
        assert_eq!(open_with(&bob).len(), 2);
        assert_eq!(open_with(&bob_bot), vec![creds[1].1.clone()]);
        assert!(
            open_with(&admin).is_empty(),
            "an admin reads no scope it is not granted"
        );
        for (what, t) in [
            ("the old owner token", &old_owner),
            ("a revoked token", &gone),
            ("a rotated-away user token", &bob_old),
            ("a deactivated member's token", &carol),
            ("a deactivated member's agent's token", &carol_bot),
            ("a removed member's token", &dave),
        ] {
            assert!(open_with(t).is_empty(), "{what} opens a field");
        }
    }
}
