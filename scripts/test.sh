#!/usr/bin/env bash
# The whole test suite: builds (or reuses the cached) regtest bitcoind, then format, lint, and every
# unit and end-to-end test of the workspace on real bitcoind, electrs, PostgreSQL, SMTP and promtool. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bitcoind_dir=$(bash scripts/install-bitcoind.sh)
export BITCOIND_EXE="$bitcoind_dir/bitcoind"
echo "test: using $BITCOIND_EXE"
# electrs (the Electrum backend's end-to-end test), cached outside the clone like bitcoind.
electrs_dir=$(bash scripts/install-electrs.sh | tail -1)
export ELECTRS_EXE="$electrs_dir/electrs"
echo "test: using $ELECTRS_EXE"
# promtool checks the alert rules and the dashboards' PromQL (Debian's prometheus package).
bash scripts/install-promtool.sh >/dev/null
# Headless Chromium for the web page test (Debian's chromium).
bash scripts/install-chromium.sh >/dev/null
# aiosmtpd: the real SMTP server the alert tests talk to.
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet --user aiosmtpd

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked 2>&1 | tee /tmp/kray-guardian-test.log
# One closing line for CI with the totals of every test binary.
awk '/^test result:/ {p+=$4; f+=$6; i+=$8} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}' /tmp/kray-guardian-test.log
