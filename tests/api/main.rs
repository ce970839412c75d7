//! In-process API tests: one binary, real SQLite file, real HTTP on 127.0.0.1 port 0.
//!
//! Black-box: every test goes through `spawn_app()` and speaks HTTP; only the tests about
//! what is on disk (`stolen_db`, `tiers`) open the files, with the server stopped.

// Commercial needs a replication config; its API tests live in tests/commercial.
#![cfg(not(feature = "commercial"))]

mod agents;
mod bad_input;
mod concurrency;
mod entries;
mod fuzz;
mod health;
mod helpers;
mod http_edge;
mod read_cache;
mod request_id;
mod stolen_db;
mod tiers;
mod transport;
