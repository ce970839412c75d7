#!/usr/bin/env bash
# Every test of both editions, then the community-binary check. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
cargo test --all-targets --features commercial
scripts/check-community-binary.sh
