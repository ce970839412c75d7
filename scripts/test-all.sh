#!/usr/bin/env bash
# Every test of both editions (property tests included, with fixed case counts), the
# supply-chain check and the community-binary check. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/supply-chain.sh
cargo test --all-targets
# Right after the community tests: it checks the community binary they built.
scripts/check-community-binary.sh
cargo test --all-targets --features commercial
