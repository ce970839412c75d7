//! Machinery shared by the integration suites. Each suite is its own crate and includes this
//! directory with `#[path = "../common/mod.rs"] mod common;`, re-exporting what it uses from
//! its own `helpers.rs`.
//!
//! - [`process`]: the real `clavitor` binary (a private copy checked to be this build's
//!   edition), one-shot commands with a deadline, `serve` children.
//! - [`poll`]: bounded waiting.
//! - [`http`]: JSON calls with a bearer token, `/healthz`.
//! - [`files`]: files with exact modes, paths as YAML scalars.
//! - [`metrics`]: `/metrics` parsed as OpenMetrics; the families the sample dashboard charts.
//! - [`pki`]: an rcgen CA, leaf certificates, the TLS files a server or POP config names, TLS
//!   clients, POP tokens.
//! - [`raw`]: raw bytes to a server, over plain TCP or TLS (async and blocking).
//! - `primary` (Commercial suites only): a primary POP's files with full mTLS, for suites that
//!   run the vault in either edition.
//! - `stand_in` (Commercial suites only): a control-plane stand-in that records what POPs send
//!   and answers heartbeats (a manual control plane without leases).

pub mod files;
pub mod http;
pub mod metrics;
pub mod pki;
pub mod poll;
#[cfg(feature = "commercial")]
pub mod primary;
pub mod process;
pub mod raw;
#[cfg(feature = "commercial")]
pub mod stand_in;
pub mod upstream;
