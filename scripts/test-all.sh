#!/usr/bin/env bash
# Every test of both editions (property tests included, with fixed case counts), the
# supply-chain check and the community-binary check. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/supply-chain.sh
cargo test --all-targets
cargo test --all-targets --features commercial
scripts/check-community-binary.sh
