//! Commercial edition tests: replication.yaml, roles, SIGHUP, alerts, TLS. Real binaries,
//! real certificates (rcgen), a real control-plane stand-in.

// Shared with the other suites, which use parts this one does not.
mod audit;
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod control_plane;
mod helpers;
mod pop_auth;
mod pop_token;
mod reload;
mod roles;
mod scim;
mod siem;
mod signals;
mod startup;
mod tarpit;
mod transport;
mod validation;
