//! Fills a stopped primary's vault with real entries through the `clavitor` library (the same
//! `Vault::create_entry` the API calls: sealed with the vault key, one version each, owed to
//! the backup), far faster than the same number of HTTPS requests would.

use anyhow::{Context, Result, anyhow};
use clavitor::datadir::DataDir;
use clavitor::service::Vault;
use clavitor::vault::{EntryDraft, FieldDraft, FieldValue, RawField};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Writes in flight at once: enough to fill the store's group commits (up to 512 writes each).
const IN_FLIGHT: usize = 2048;

pub struct Filled {
    /// `(entry id, field value)` of the first, a middle and the last entry, to check on the
    /// backup afterwards.
    pub samples: Vec<(String, String)>,
    pub seconds: f64,
}

pub fn value(i: u64) -> String {
    format!("secret-{i}-0123456789abcdef")
}

fn draft(i: u64) -> Result<EntryDraft> {
    let field = FieldDraft::parse(RawField {
        name: "password",
        value: FieldValue::new(value(i)),
        tier: Some("vault"),
        scope: None,
    })?;
    Ok(EntryDraft::parse(
        &format!("catch-up-{i}"),
        Some("https://example.com"),
        Some("bench"),
        vec![field],
    )?)
}

/// Creates `n` entries as the owner of the (not running) vault in `data_dir`.
pub async fn fill(data_dir: &Path, owner_token: &str, n: u64) -> Result<Filled> {
    let opened = DataDir::new(data_dir)
        .open(None)
        .await
        .with_context(|| format!("cannot open the vault in {}", data_dir.display()))?;
    // Held until the function returns, after the store is closed.
    let _lock = opened.lock;
    let vault = Vault::open(opened.store, &opened.master).await?;
    let caller = vault
        .authenticate(Some(owner_token), IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await?;
    let want = [0, n / 2, n - 1];
    let mut samples = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    let mut next = 0u64;
    let mut outcome: Result<()> = Ok(());
    while next < n || !tasks.is_empty() {
        while next < n && tasks.len() < IN_FLIGHT {
            let (vault, caller, i) = (Arc::clone(&vault), caller.clone(), next);
            let d = draft(i)?;
            tasks.spawn(async move { (i, vault.create_entry(&caller, d).await) });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined.map_err(|e| anyhow!("a fill task failed: {e}")) {
            Ok((i, Ok((id, _)))) => {
                if want.contains(&i) {
                    samples.push((id.to_string(), value(i)));
                }
            }
            Ok((i, Err(e))) => {
                outcome = Err(anyhow!("creating entry {i}: {e}"));
                break;
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let seconds = t0.elapsed().as_secs_f64();
    // Closing waits for the writer thread, so everything is on disk before the primary opens it.
    vault.store().close().await;
    outcome?;
    Ok(Filled { samples, seconds })
}
