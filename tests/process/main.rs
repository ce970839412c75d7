//! Tests that run the real `clavitor` binary: CLI, start-up refusals, signals, crashes.
//!
//! Both editions run every test: `serve` children are this build's edition (Commercial: a
//! primary POP over HTTPS with full mTLS config), and `edition.rs` holds what differs.

mod audit;
mod cli;
mod client_transport;
mod connections;
// Shared with the other suites, which use parts this one does not.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod crash;
mod datadir;
mod edition;
mod helpers;
mod human_output;
mod identity;
mod import;
mod mcp;
mod metrics;
mod no_outbound;
mod owner;
mod packaging;
mod people;
mod proxy;
mod quickstart;
mod run_inject;
mod signals;
mod startup;
mod tls;
