//! Tests that run the real `clavitor` binary: CLI, signals, crashes.
