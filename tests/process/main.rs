//! Tests that run the real `clavitor` binary: CLI, start-up refusals, signals, crashes.
//!
//! Community build only: the Commercial edition prints other start-up lines and answers
//! unknown paths differently, so its process tests live in `tests/commercial`.
#![cfg(not(feature = "commercial"))]

mod cli;
mod connections;
// Shared with the other suites, which use parts this one does not.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod crash;
mod edition;
mod helpers;
mod quickstart;
mod signals;
mod startup;
mod tls;
