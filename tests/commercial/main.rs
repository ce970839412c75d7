//! Commercial edition tests: replication.yaml, roles, SIGHUP, alerts, TLS. Real binaries,
//! real certificates (rcgen), a real control-plane stand-in.

mod control_plane;
mod helpers;
mod pop_auth;
mod pop_token;
mod reload;
mod roles;
mod signals;
mod startup;
mod tarpit;
mod validation;
