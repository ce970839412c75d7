//! The control plane. `client` is the POP's side of it (alerts, heartbeats and telemetry a
//! POP sends); the rest is the service `clavitor control-plane --config FILE` runs:
//!
//! - `settings`: the YAML config, validated (file, key and fix for every problem).
//! - `failover`: the failover state machine (no IO; time is passed in).
//! - `store`: its own SQLite file (WAL, synchronous=FULL).
//! - `core`: use cases over the store and the machine, under one mutex.
//! - `api`: the JSON API for POPs and operators.
//! - `dashboard`: the operators' web page (askama templates, sessions, CSRF, CSP).
//! - `server`: start-up, HTTPS serving, SIGTERM and SIGHUP.
//!
//! Architecture invariant: nothing here is compiled into the Community binary, and the
//! service never talks to POPs: they call it, and its answers are its only commands.

mod api;
mod client;
mod core;
mod dashboard;
mod failover;
mod server;
mod settings;
mod store;

pub use client::{Alert, Alerts, ControlClient, Report, spawn_reporter};
pub use server::{Error, run};

// `client` reaches its neighbours in `commercial` through these, as it did one level up.
use super::{Commercial, Live, config, lease, tls};
