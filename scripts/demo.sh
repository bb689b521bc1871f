#!/usr/bin/env bash
# The local demo: builds everything (bitcoind from source on first run, ~10 min, then cached), proves the
# real regtest bitcoind and the KRAY L1 transactions work (anchor, rune etching, bridge deposit and 2-of-3
# payout), then runs a KRAY L2 workload through the guardian: an honest chain replays valid, a chain with
# an injected fault is caught, a fraud proof is written and verified offline.
set -euo pipefail
cd "$(dirname "$0")/.."

bitcoind_dir=$(bash scripts/install-bitcoind.sh)
export BITCOIND_EXE="$bitcoind_dir/bitcoind"
cargo build --release --quiet
bin=target/release/kray-guardian
work=$(mktemp -d -t kray-demo-XXXX)

echo "== 1. real regtest bitcoind: anchors, rune, bridge deposit and 2-of-3 payout"
cargo test --release --quiet -p kray-devnet --test l1_regtest -- --nocapture 2>&1 | grep -E "test result|passed|ok$" || true

echo "== 2. an honest KRAY L2 chain: 12 batches of signed transfers, withdrawals and deposits"
$bin gen-workload --profile regtest --accounts 200 --txs 1200 --batch-size 100 --seed 42 --out "$work/honest"
$bin replay --profile regtest --genesis "$work/honest/genesis.json" --batches "$work/honest/batches"

echo "== 3. the same chain, but the sequencer mints on self-transfers in batch 5"
$bin gen-workload --profile regtest --accounts 200 --txs 1200 --batch-size 100 --seed 42 --out "$work/faulty" \
  --fault self-transfer-inflation@5
set +e
$bin replay --profile regtest --genesis "$work/faulty/genesis.json" --batches "$work/faulty/batches" --proofs "$work/proofs"
echo "(replay exit code $? = fault found)"
set -e

echo "== 4. anyone verifies the fraud proof with nothing but the file"
for p in "$work"/proofs/*.json; do
  ls -l "$p"
  $bin verify-proof "$p"
done
echo "demo files are in $work"
