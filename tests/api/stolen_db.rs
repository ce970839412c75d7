//! A thief holds `vault.db` and `master.key` but no token: vault-tier fields fall, credential
//! fields must not.

use crate::helpers::{contains_bytes, db_files, distinctive, spawn_app};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clavitor::crypto::{MasterKey, ScopeKey, Token, field_aad, scope_key_aad};
use serde_json::json;

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
    let fields: Vec<Field> = conn
        .prepare("SELECT entry_id, name, tier, ciphertext FROM fields")
        .unwrap()
        .query_map([], |r| {
            Ok(Field {
                entry: r.get(0)?,
                name: r.get(1)?,
                tier: r.get(2)?,
                ciphertext: r.get(3)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let wrapped: Vec<Wrapped> = conn
        .prepare("SELECT scope, agent_id, wrapped FROM scope_keys")
        .unwrap()
        .query_map([], |r| {
            Ok(Wrapped {
                scope: r.get(0)?,
                agent_id: r.get(1)?,
                wrapped: r.get(2)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let hashes: Vec<Vec<u8>> = conn
        .prepare("SELECT token_hash FROM agents")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
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

    // (c) The credential field does not open with the vault key...
    let aad = field_aad(&cred_field.entry, &cred_field.name);
    assert!(sealer.open(&aad, &cred_field.ciphertext).is_err());

    // ...nor with any key the thief can make from the database and master.key: the stored
    // token hashes and the master key, as tokens in every usual text form, and as raw keys.
    let mut raw_candidates: Vec<Vec<u8>> = hashes.clone();
    raw_candidates.push(raw_key.clone());
    let mut texts = Vec::new();
    for raw in &raw_candidates {
        texts.push(hex(raw));
        texts.push(STANDARD.encode(raw));
        texts.push(URL_SAFE_NO_PAD.encode(raw));
        texts.push(format!("clv_{}", URL_SAFE_NO_PAD.encode(raw)));
    }
    for w in &wrapped {
        let key_aad = scope_key_aad(&w.scope, &w.agent_id);
        assert!(
            sealer.open(&key_aad, &w.wrapped).is_err(),
            "wrapped key opens with the vault key"
        );
        for text in &texts {
            assert!(
                ScopeKey::unwrap(&Token::from_text(text), &key_aad, &w.wrapped).is_err(),
                "a scope key unwraps with a token made from the database"
            );
        }
        for raw in &raw_candidates {
            let as_master = MasterKey::from_bytes(raw).unwrap().vault_sealer();
            assert!(as_master.open(&key_aad, &w.wrapped).is_err());
            assert!(as_master.open(&aad, &cred_field.ciphertext).is_err());
        }
    }

    // Control for (c): with a real token the same procedure does open the field, so the
    // failures above are the keys' doing, not the test's.
    for (token, holder) in [(&owner_token, "owner"), (&agent_token, "agent")] {
        let opened = wrapped.iter().find_map(|w| {
            let key = ScopeKey::unwrap(
                &Token::from_text(token),
                &scope_key_aad(&w.scope, &w.agent_id),
                &w.wrapped,
            )
            .ok()?;
            key.sealer().open(&aad, &cred_field.ciphertext).ok()
        });
        let opened = opened.unwrap_or_else(|| panic!("the {holder} token opens its scope key"));
        assert_eq!(&opened[..], cred.as_bytes());
    }
}
