//! Two real POP processes replicating over mTLS (rcgen certificates), bounded in time: steady
//! state, outages (backup down, primary SIGKILLed, partitions, lost acknowledgements), the
//! wire (duplicates, reordering, tombstones, batch size), POP authentication, and failover.

mod audit;
mod auth;
mod batches;
mod contrib;
// Shared with the other suites, which use parts this one does not.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
// The control-plane suite's helpers: the real control plane's files and process.
#[allow(dead_code)]
#[path = "../control_plane/helpers.rs"]
mod cp;
mod failover;
mod helpers;
mod hostile;
mod lease;
mod outage;
mod people;
mod proxy;
mod recovery_point;
mod rotation;
mod steady;
