//! Commercial edition tests: replication.yaml, roles, SIGHUP, alerts, TLS. Real binaries,
//! real certificates (rcgen), a real control-plane stand-in.
