#!/usr/bin/env bash
# The local demo: builds everything (bitcoind from source on first run, ~13 min, then cached), starts the
# devnet (regtest bitcoind, rune, bridge, sequencer anchoring batches, users trading) with a guardian
# (`kray-guardian run`, a separate process) watching it in `challenge` mode. The sequencer skips a nonce
# check in batch 6; the guardian catches it, serves the fraud proof, submits it to the sequencer's
# challenge endpoint (which freezes withdrawals) — and anyone verifies the proof with nothing but the file.
set -euo pipefail
cd "$(dirname "$0")/.."

bitcoind_dir=$(bash scripts/install-bitcoind.sh)
export BITCOIND_EXE="$bitcoind_dir/bitcoind"
cargo build --release --quiet
bin=target/release/kray-guardian
work=$(mktemp -d -t kray-demo-XXXX)
port=${KRAY_DEMO_GUARDIAN_PORT:-8420}
guardian="http://127.0.0.1:$port"

echo "== 1. the devnet and a guardian watching it"
echo "   regtest bitcoind, a rune on L1, the 2-of-3 bridge, 3 users depositing, a sequencer sealing and"
echo "   anchoring batches while users sign transfers; the sequencer skips a nonce check in batch 6"
$bin devnet --data "$work/devnet" --users 3 --auto-mine --batch-interval-ms 1000 --traffic-rate 30 \
  --fault bad-nonce@6 --guardian challenge --guardian-port "$port" --for-seconds 30 > "$work/devnet.log" 2>&1 &
devnet_pid=$!
for _ in $(seq 1 60); do grep -q "guardian:" "$work/devnet.log" 2>/dev/null && break; sleep 1; done
cat "$work/devnet.log"
api=$(grep -oE 'API: +http://[0-9.:]+' "$work/devnet.log" | awk '{print $2}')

echo "== 2. the guardian follows L1, mirrors and replays every batch, matches anchors, audits the bridge"
for _ in $(seq 1 20); do
  curl -fsS "$guardian/v1/findings" 2>/dev/null | grep -q bad-nonce && break
  sleep 1
done
echo "-- $guardian/v1/status"
curl -fsS "$guardian/v1/status"; echo
echo "-- $guardian/v1/findings"
curl -fsS "$guardian/v1/findings"; echo

echo "== 3. the fraud proof it serves, and the sequencer's answer to its challenge"
curl -fsS "$guardian/v1/proofs/6" -o "$work/proof-batch-6.json"
ls -l "$work/proof-batch-6.json"
curl -fsS "$api/l2/withdrawals" | head -c 400; echo
echo "-- the guardian's metrics (a few lines)"
curl -fsS "$guardian/metrics" | grep -E '^kray_guardian_(sync_height|batches_total|findings_open)\{' | grep -v ' 0$' | head -12
wait "$devnet_pid" || true

echo "== 4. anyone verifies the fraud proof with nothing but the file"
$bin verify-proof "$work/proof-batch-6.json"

echo "== 5. an offline workload: the sequencer mints on self-transfers, caught and proven"
$bin gen-workload --profile regtest --accounts 200 --txs 1200 --batch-size 100 --seed 42 --out "$work/faulty" \
  --fault self-transfer-inflation@5
set +e
$bin replay --profile regtest --genesis "$work/faulty/genesis.json" --batches "$work/faulty/batches" --proofs "$work/proofs2"
set -e
for p in "$work"/proofs2/*.json; do $bin verify-proof "$p"; done
echo "demo files are in $work (guardian config and log in $work/devnet/guardian)"
