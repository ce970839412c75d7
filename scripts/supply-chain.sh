#!/usr/bin/env bash
# Supply chain: `cargo deny` checks licenses, bans (duplicate versions warn), sources
# (crates.io only) and advisories, against deny.toml. Advisories come from the offline RustSec
# copy in ../shared/advisory-db (this machine cannot fetch the database): it is copied into
# target/advisory-dbs under the folder name cargo-deny derives from the default database URL,
# as a git repository on branch main (the recipe in ../shared/advisory-db/SNAPSHOT).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null; then
  echo "FAIL: cargo-deny is not installed. Fix: cargo install cargo-deny --locked --version 0.20.2" >&2
  exit 1
fi
src=../shared/advisory-db
if [ ! -f "$src/SNAPSHOT" ] || [ ! -d "$src/crates" ]; then
  echo "FAIL: no RustSec advisory copy at $src (expected SNAPSHOT and crates/ beside this repo)" >&2
  exit 1
fi

db=target/advisory-dbs/advisory-db-3157b0e258782691
# Rebuilt from scratch each run: the snapshot may have changed, and a stale copy would hide it.
if [ -d "$db" ]; then chmod -R u+w "$db"; rm -rf "$db"; fi
mkdir -p "$db"
cp -R "$src"/. "$db"/
chmod -R u+w "$db" # shared/ may be laid out without write bits
(
  cd "$db"
  git init -q
  git add -A
  git -c user.name=supply-chain -c user.email=supply-chain@localhost commit -qm "RustSec snapshot"
  git branch -M main
)

# cargo metadata must not need the network inside `cargo deny --offline`.
cargo fetch --locked --quiet
cargo deny --all-features --offline check --hide-inclusion-graph
echo "ok: supply chain (licenses, bans, sources; advisories from RustSec snapshot $(grep -o "[0-9a-f]\{40\}" "$src/SNAPSHOT" | head -1))"
