#!/usr/bin/env bash
# The local demo: builds everything (bitcoind from source on first run, ~10 min, then cached), starts the
# devnet (regtest bitcoind, rune, bridge, sequencer anchoring batches, users trading), lets the guardian
# replay what the sequencer published against L1, catches the injected fault and verifies its proof.
set -euo pipefail
cd "$(dirname "$0")/.."

bitcoind_dir=$(bash scripts/install-bitcoind.sh)
export BITCOIND_EXE="$bitcoind_dir/bitcoind"
cargo build --release --quiet
bin=target/release/kray-guardian
work=$(mktemp -d -t kray-demo-XXXX)

echo "== 1. the devnet: regtest bitcoind, a rune on L1, the 2-of-3 bridge, 3 users depositing, a sequencer"
echo "   sealing and anchoring batches while users sign transfers; the sequencer skips a nonce check in batch 6"
$bin devnet --data "$work/devnet" --users 3 --auto-mine --batch-interval-ms 1000 --traffic-rate 30 \
  --fault bad-nonce@6 --for-seconds 25 > "$work/devnet.log" 2>&1 &
devnet_pid=$!
# The devnet prints its API and bitcoind URLs; the guardian replays what it published, against the
# devnet's own bitcoind, while both are still running.
for _ in $(seq 1 60); do grep -q "bitcoind" "$work/devnet.log" 2>/dev/null && break; sleep 1; done
cat "$work/devnet.log"
sleep 18
btc_url=$(grep -oE 'http://[^ ]*:[^ ]*@127\.0\.0\.1:[0-9]+' "$work/devnet.log" | head -1)

echo "== 2. the guardian replays every published batch against L1: valid until the injected fault"
set +e
$bin replay --profile "$work/devnet/profile.toml" --genesis "$work/devnet/genesis.json" \
  --batches "$work/devnet/batches" --bitcoind "$btc_url" --proofs "$work/proofs"
echo "(replay exit code $? : 3 = fault found)"
set -e
wait "$devnet_pid" || true

echo "== 3. anyone verifies the fraud proof with nothing but the file"
for p in "$work"/proofs/*.json; do
  ls -l "$p"
  $bin verify-proof "$p"
done

echo "== 4. an offline workload: the sequencer mints on self-transfers, caught and proven"
$bin gen-workload --profile regtest --accounts 200 --txs 1200 --batch-size 100 --seed 42 --out "$work/faulty" \
  --fault self-transfer-inflation@5
set +e
$bin replay --profile regtest --genesis "$work/faulty/genesis.json" --batches "$work/faulty/batches" --proofs "$work/proofs2"
set -e
for p in "$work"/proofs2/*.json; do $bin verify-proof "$p"; done
echo "demo files are in $work"
