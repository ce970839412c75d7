//! Clavitor Vault: a credential vault for teams and their AI agents.
//!
//! Layout (dependencies point down this list, never up):
//! - `cli`: clap commands; `serve`/`init`, and the client commands over ureq (http/https).
//! - `server`: builds the pieces from a `ServeConfig` and runs them until a signal.
//! - `api`: axum routes, extractors, JSON DTOs, the one error shape.
//! - `edition`: the Community/Commercial seam; the only `cfg(feature = "commercial")`.
//! - `service`: use cases: authenticate, authorise, seal/open, ask the store.
//! - `audit`: the audit trail's events (recorded in the same transaction as the change).
//! - `datadir`: the data directory's files (`vault.db`, `master.key`, its lock); no token.
//! - `store`: SQLite; group-commit writer thread and reader pool. Rows, not meanings.
//! - `vault`: domain types and validation rules. No IO, no serde.
//! - `crypto`: keys, AES-256-GCM sealing, tokens. Pure; the only holder of key bytes.
//! - `transport`: HTTP/1.1 and HTTP/2 serving, plain or TLS, with timeouts and a connection cap.
//! - `egress`: the proxy's outbound HTTP client (off unless `serve --enable-proxy`), SSRF-guarded.
//! - `mask`: masking secret values (in every usual encoding) in text going back to agents.
//! - `import`: other vaults' export files (and our own) read into drafts, for the CLI. No HTTP.
//! - `files`, `metrics`, `shutdown`: small shared utilities.

pub mod api;
pub mod audit;
pub mod cli;
pub mod crypto;
pub mod datadir;
pub mod edition;
pub mod egress;
pub mod files;
pub mod import;
pub mod mask;
pub mod metrics;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod transport;
pub mod vault;
