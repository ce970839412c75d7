//! The control plane (Commercial): the real `clavitor control-plane` binary over HTTPS with
//! rcgen certificates, fed by POP stand-ins that send what POPs send, and its dashboard in a
//! real headless Chromium.

// Shared with the other suites, which use parts this one does not.
mod browser;
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod config;
mod dashboard;
mod failover;
mod helpers;
mod pop_api;
mod process;
