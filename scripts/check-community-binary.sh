#!/usr/bin/env bash
# Proves the Community build carries no Commercial code: no tell-tale strings in the binary.
# (That the community *server* opens no connection of its own is proved at run time by
# tests/process/no_outbound.rs, which audits its sockets through a full workload; the CLI in the
# same binary has an HTTP client, used only for the server its user names.)
#
# It checks the unoptimised build that `cargo test` (community) has just made, stripped of
# symbols as the release binary is: an unoptimised build keeps every string its code names (the
# optimiser can only drop some), so it is the stricter check, and CI saves a whole release build.
# `--release` checks the shipped binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--release" ]; then
  cargo build --release --bin clavitor
  built=target/release/clavitor
else
  # The binary the integration tests run: after `cargo test` this builds nothing (a plain
  # `cargo build` would, as the tests' dev-dependencies enable more features of shared crates).
  cargo test --all-targets --no-run --quiet 2>/dev/null || cargo test --all-targets --no-run
  built=target/debug/clavitor
fi
"$built" --version | grep -q '(community)' || { echo "FAIL: $built is not a community build"; exit 1; }
bin=target/community-check/clavitor
mkdir -p "$(dirname "$bin")"
cp "$built" "$bin"
strip --strip-all "$bin"
fail=0
for word in tarpit replicat telemetry control_plane /v1/alerts scim siem; do
  if strings "$bin" | grep -qi -- "$word"; then
    echo "FAIL: community binary ($built) contains '$word':"
    strings "$bin" | grep -i -- "$word" | head -3 | cut -c1-160
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "ok: community binary ($built) has no commercial strings"
exit "$fail"
