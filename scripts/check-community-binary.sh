#!/usr/bin/env bash
# Proves the Community build carries no Commercial code: no tell-tale strings in the release
# binary. (That the community *server* opens no connection of its own is proved at run time
# by tests/process/no_outbound.rs, which audits its sockets through a full workload; the CLI
# in the same binary has an HTTP client, used only for the server its user names.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin clavitor
bin=target/release/clavitor
"$bin" --version | grep -q '(community)' || { echo "FAIL: $bin is not a community build"; exit 1; }
fail=0
for word in tarpit replicat telemetry control_plane /v1/alerts scim siem; do
  if strings "$bin" | grep -qi -- "$word"; then
    echo "FAIL: community binary contains '$word':"
    strings "$bin" | grep -i -- "$word" | head -3 | cut -c1-160
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "ok: community binary has no commercial strings"
exit "$fail"
