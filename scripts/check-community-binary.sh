#!/usr/bin/env bash
# Proves the Community build carries no Commercial code: no tell-tale strings in the release
# binary, and no HTTP client crate (or hyper's client half) in its dependency graph.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin clavitor
bin=target/release/clavitor
"$bin" --version | grep -q '(community)' || { echo "FAIL: $bin is not a community build"; exit 1; }
fail=0
for word in tarpit replicat telemetry control_plane /v1/alerts; do
  if strings "$bin" | grep -qi -- "$word"; then
    echo "FAIL: community binary contains '$word':"
    strings "$bin" | grep -i -- "$word" | head -3 | cut -c1-160
    fail=1
  fi
done
tree=$(cargo tree -e normal,features --prefix none)
for crate in reqwest ureq isahc curl surf hyper-rustls hyper-tls 'hyper feature "client"' 'hyper-util feature "client'; do
  if grep -q -- "^$crate" <<<"$tree"; then
    echo "FAIL: community dependency graph contains $crate"
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "ok: community binary has no commercial strings and no HTTP client"
exit "$fail"
