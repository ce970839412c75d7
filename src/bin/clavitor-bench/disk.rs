//! The disk ceiling for durable writes: raw rusqlite inserts of entry-like rows into a fresh
//! SQLite file with the same durability settings as the vault (WAL, `synchronous=FULL`),
//! committed in batches. No HTTP, no JSON, no crypto, one thread: what the disk allows.

use anyhow::{Context, Result};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A cut-down copy of the vault's `entries`, `fields` and `sequence` tables, so a "row" here
/// costs what an entry with one field costs the vault's store: a version bump, an entry row
/// and a field row, with ciphertext-sized blobs.
const SCHEMA: &str = r#"
    PRAGMA journal_mode=WAL;
    PRAGMA synchronous=FULL;
    PRAGMA foreign_keys=ON;
    CREATE TABLE sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
    INSERT INTO sequence (name, value) VALUES ('version', 0);
    CREATE TABLE entries (
        id TEXT PRIMARY KEY, meta BLOB NOT NULL, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0, replicated_at INTEGER
    ) STRICT;
    CREATE INDEX entries_unreplicated ON entries (version) WHERE replicated_at IS NULL;
    CREATE TABLE fields (
        entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
        position INTEGER NOT NULL, name TEXT NOT NULL, tier TEXT NOT NULL,
        scope TEXT, ciphertext BLOB NOT NULL,
        PRIMARY KEY (entry_id, name)
    ) STRICT, WITHOUT ROWID;
"#;

pub struct DiskResult {
    pub rows: u64,
    pub transactions: u64,
    pub seconds: f64,
}

impl DiskResult {
    pub fn per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// Inserts rows in transactions of `batch` for `warmup` (not counted) plus `duration`.
pub fn run(dir: &Path, batch: usize, warmup: Duration, duration: Duration) -> Result<DiskResult> {
    let path = dir.join("raw.db");
    let mut conn =
        Connection::open(&path).with_context(|| format!("cannot create {}", path.display()))?;
    conn.execute_batch(SCHEMA)
        .context("cannot set up the raw SQLite file")?;
    let meta = [0x5au8; 80];
    let ciphertext = [0xa5u8; 72];
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let measure_from = Instant::now() + warmup;
    let until = measure_from + duration;
    let mut out = DiskResult {
        rows: 0,
        transactions: 0,
        seconds: duration.as_secs_f64(),
    };
    loop {
        let t0 = Instant::now();
        if t0 >= until {
            break;
        }
        let tx = conn.transaction()?;
        {
            let mut bump = tx.prepare_cached(
                "UPDATE sequence SET value = value + 1 WHERE name = 'version' RETURNING value",
            )?;
            let mut entry = tx.prepare_cached(
                "INSERT INTO entries (id, meta, created_at, updated_at, version) VALUES (?1, ?2, ?3, ?3, ?4)",
            )?;
            let mut field = tx.prepare_cached(
                "INSERT INTO fields (entry_id, position, name, tier, scope, ciphertext) VALUES (?1, 0, 'password', 'vault', NULL, ?2)",
            )?;
            for _ in 0..batch {
                // Time-ordered UUIDs, as the vault generates them: same index locality.
                let id = uuid::Uuid::now_v7().to_string();
                let version: i64 = bump.query_row([], |r| r.get(0))?;
                entry.execute(params![id, &meta[..], stamp, version])?;
                field.execute(params![id, &ciphertext[..]])?;
            }
        }
        tx.commit()?;
        if t0 >= measure_from && Instant::now() <= until {
            out.rows += batch as u64;
            out.transactions += 1;
        }
    }
    Ok(out)
}
