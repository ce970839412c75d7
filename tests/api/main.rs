//! In-process API tests: one binary, real SQLite file, real HTTP on 127.0.0.1 port 0.
//!
//! Black-box: every test goes through `spawn_app()` and speaks HTTP; only the tests about
//! what is on disk (`stolen_db`, `tiers`, `forget`) open the files.
//!
//! Both editions run every test: `spawn_app()` starts this build's edition (Commercial: a
//! primary POP over HTTPS with full mTLS config), and `edition.rs` holds what differs.

mod agent_access;
mod agents;
mod audit;
mod bad_input;
mod bulk;
mod changes;
// Shared with the process-spawning suites; this one uses only the Commercial POP files.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod datadir;
mod edition;
mod entries;
mod forget;
mod fuzz;
mod grants;
mod group_scopes;
mod health;
mod helpers;
mod http_edge;
mod invites;
mod openapi;
mod owner;
mod people;
mod proxy;
mod read_cache;
mod request_id;
mod stolen_db;
mod tiers;
mod transport;
