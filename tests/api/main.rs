//! In-process API tests: one binary, real SQLite file, real HTTP on 127.0.0.1 port 0.
