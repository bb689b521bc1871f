#!/usr/bin/env bash
# The whole test suite: builds (or reuses the cached) regtest bitcoind, then format, lint, and every
# unit and end-to-end test of the workspace on real bitcoind. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bitcoind_dir=$(bash scripts/install-bitcoind.sh)
export BITCOIND_EXE="$bitcoind_dir/bitcoind"
echo "test: using $BITCOIND_EXE"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked 2>&1 | tee /tmp/kray-guardian-test.log
# One closing line for CI with the totals of every test binary.
awk '/^test result:/ {p+=$4; f+=$6; i+=$8} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}' /tmp/kray-guardian-test.log
