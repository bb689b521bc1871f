//! The challenger's transaction sender on a real `bitcoind -regtest`: anchors and challenge markers
//! from the guardian key confirm, a stuck transaction is RBF-bumped and the bump confirms, a restart
//! from the journal mid-send sends nothing twice, a crash (with a torn journal write) at every step of
//! a send restarts and settles it exactly once, deep settlements are compacted and never re-sent; and
//! proof submission to a real local HTTP server.
//!
//! They need the bitcoind built by `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`). They skip, with a
//! message, only when `KRAY_SKIP_BITCOIND=1`; otherwise a missing binary fails them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bitcoin::secp256k1::SecretKey;
use bitcoin::{FeeRate, Network, Transaction, Txid};
use kray_challenger::coins::GuardianKey;
use kray_challenger::deadline::{Deadline, DeadlineKind};
use kray_challenger::fees::FeePolicy;
use kray_challenger::journal::{Journal, Purpose, TxStatus};
use kray_challenger::l1::{BitcoindL1, ChainTxState, L1Client, L1Error};
use kray_challenger::sender::{SendOutcome, Sender, SenderConfig};
use kray_challenger::submit::{EndpointOutcome, SubmitConfig, Submitter};
use kray_devnet::bitcoind::BitcoindProcess;
use kray_devnet::rpc::RpcClient;
use kray_replayer::l1payload::{kray_payloads, KrayPayload};
use serde_json::json;

struct Node {
    node: BitcoindProcess,
    rpc: RpcClient,
    key: GuardianKey,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts bitcoind and funds the guardian key with mature coinbase coins; `None` when skipping.
    async fn start() -> Option<Self> {
        if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
            eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest bitcoind test");
            return None;
        }
        let node = match BitcoindProcess::start().await {
            Ok(node) => node,
            Err(e) => panic!("cannot start bitcoind: {e}"),
        };
        let rpc = node.rpc_client();
        let dir = tempfile::tempdir().expect("tmp");
        let key_path = dir.path().join("guardian.key");
        std::fs::write(&key_path, hex::encode([0x42u8; 32])).expect("write key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let key = GuardianKey::load(&key_path, Network::Regtest).expect("0600 key");
        // Coinbases at heights 1..=5 are mature at tip 105.
        rpc.generate_to_address(105, &key.address()).await.expect("fund");
        Some(Self { node, rpc, key, dir })
    }

    fn l1(&self) -> BitcoindL1 {
        BitcoindL1::new(&self.node.rpc_url(), self.node.rpc_user(), self.node.rpc_password(), Duration::from_secs(30))
            .expect("client")
    }

    fn journal_path(&self) -> std::path::PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    fn sender<C: L1Client>(&self, client: C) -> Sender<C> {
        sender_at(client, &self.key, &self.journal_path())
    }

    /// Mines one block to an address that is not the guardian's.
    async fn mine(&self) {
        let other = GuardianKey::from_secret_key(SecretKey::from_slice(&[0x43; 32]).expect("sk"), Network::Regtest);
        self.rpc.generate_to_address(1, &other.address()).await.expect("mine");
    }

    async fn tx(&self, txid: &Txid) -> Transaction {
        self.rpc.get_raw_transaction(txid).await.expect("getrawtransaction")
    }
}

fn config() -> SenderConfig {
    SenderConfig {
        fees: FeePolicy {
            floor: FeeRate::from_sat_per_vb_u32(1),
            cap: FeeRate::from_sat_per_vb_u32(50),
            conf_target: 2,
            incremental_relay: FeeRate::from_sat_per_vb_u32(1),
            bump_percent: 150,
        },
        stuck_blocks: 2,
        reorg_depth: 6,
    }
}

fn sender_at<C: L1Client>(client: C, key: &GuardianKey, journal: &Path) -> Sender<C> {
    Sender::new(client, key.clone(), Journal::open(journal).expect("journal"), config())
}

fn anchor(n: u8) -> Purpose {
    Purpose::Anchor { batch_id: u64::from(n), batch_hash: [n; 32] }
}

fn challenge(n: u8) -> Purpose {
    Purpose::Challenge { batch_id: u64::from(n), proof_hash: [0xc0 | n; 32] }
}

fn urgent(n: u8) -> Deadline {
    Deadline::new(DeadlineKind::ChallengeWindow { batch_id: u64::from(n) }, 10_000, 10_000)
}

/// A client whose broadcast "crashes": before sending (`send_first` false) or after (`true`).
struct Crashing {
    inner: BitcoindL1,
    send_first: bool,
}

impl L1Client for Crashing {
    async fn tip_height(&self) -> Result<u64, L1Error> {
        self.inner.tip_height().await
    }
    async fn estimate_fee_rate(&self, conf_target: u16) -> Result<Option<FeeRate>, L1Error> {
        self.inner.estimate_fee_rate(conf_target).await
    }
    async fn utxos(&self, script: &bitcoin::ScriptBuf) -> Result<Vec<kray_challenger::coins::Utxo>, L1Error> {
        self.inner.utxos(script).await
    }
    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, L1Error> {
        if self.send_first {
            self.inner.send_raw_transaction(tx).await?;
        }
        Err(L1Error::Transport("crash".into()))
    }
    async fn tx_state(&self, txid: &Txid) -> Result<ChainTxState, L1Error> {
        self.inner.tx_state(txid).await
    }
}

#[tokio::test]
async fn anchor_and_challenge_from_the_guardian_key_confirm() {
    let Some(n) = Node::start().await else { return };
    let mut s = n.sender(n.l1());
    let SendOutcome::Broadcast(a) = s.send(anchor(1), None).await.expect("anchor") else { panic!("not broadcast") };
    let SendOutcome::Broadcast(c) = s.send(challenge(1), None).await.expect("challenge") else { panic!() };
    assert_eq!(s.client().tx_state(&a).await.expect("state"), ChainTxState::InMempool);
    n.mine().await;
    let r = s.on_block().await.expect("block");
    assert_eq!(r.settled.len(), 2, "{r:?}");
    assert!(r.settled.iter().all(|(_, _, h)| *h == 106));
    assert_eq!(kray_payloads(&n.tx(&a).await), vec![(0, KrayPayload::Anchor([1; 32]))]);
    assert_eq!(
        kray_payloads(&n.tx(&c).await),
        vec![(0, KrayPayload::Challenge { batch_id: 1, proof_hash: [0xc1; 32] })]
    );
    // Change went back to the guardian key.
    let tx = n.tx(&a).await;
    assert_eq!(tx.output[1].script_pubkey, n.key.script_pubkey());
    assert_eq!(s.send(anchor(1), None).await.expect("again"), SendOutcome::Settled { txid: a, height: 106 });
}

#[tokio::test]
async fn stuck_tx_is_bumped_by_rbf_and_the_bump_confirms() {
    let Some(n) = Node::start().await else { return };
    let mut s = n.sender(n.l1());
    let SendOutcome::Broadcast(old) = s.send(challenge(2), Some(urgent(2))).await.expect("send") else { panic!() };
    // Miners ignore it: a large negative fee delta takes it out of block templates.
    let ok: bool = n.rpc.call("prioritisetransaction", json!([old, 0, -1_000_000])).await.expect("prioritise");
    assert!(ok);
    n.mine().await;
    let r = s.on_block().await.expect("block");
    assert!(r.bumped.is_empty() && r.settled.is_empty(), "{r:?}");
    assert_eq!(s.client().tx_state(&old).await.expect("state"), ChainTxState::InMempool, "stuck");
    n.mine().await;
    let r = s.on_block().await.expect("block");
    let [(replaced, new)] = r.bumped[..] else { panic!("expected a bump: {r:?}") };
    assert_eq!(replaced, old);
    assert_eq!(s.client().tx_state(&old).await.expect("state"), ChainTxState::Unknown, "replaced in the mempool");
    let (o, b) = (s.journal().get(&old).expect("old").clone(), s.journal().get(&new).expect("new").clone());
    assert_eq!(b.inputs, o.inputs);
    assert!(b.fee_sat >= o.fee_sat + b.vsize);
    n.mine().await;
    let r = s.on_block().await.expect("block");
    assert_eq!(r.settled, vec![(challenge(2), new, 108)]);
    assert_eq!(s.journal().get(&old).map(|r| r.status.clone()), Some(TxStatus::Replaced { by: new }));
    let mined = n.tx(&new).await;
    assert_eq!(kray_payloads(&mined), vec![(0, KrayPayload::Challenge { batch_id: 2, proof_hash: [0xc2; 32] })]);
    // A restart re-sends nothing: the purpose is settled.
    let mut s = n.sender(n.l1());
    let r = s.on_block().await.expect("block");
    assert!(r.rebroadcast.is_empty() && r.bumped.is_empty());
}

#[tokio::test]
async fn restart_from_the_journal_mid_send_sends_nothing_twice() {
    let Some(n) = Node::start().await else { return };
    // Crash before the broadcast reached the node.
    let mut s = n.sender(Crashing { inner: n.l1(), send_first: false });
    let SendOutcome::Persisted(a) = s.send(anchor(3), None).await.expect("send") else { panic!() };
    assert_eq!(s.client().tx_state(&a).await.expect("state"), ChainTxState::Unknown);
    drop(s);
    // Crash after the node accepted it, before the journal recorded the broadcast.
    let mut s = n.sender(Crashing { inner: n.l1(), send_first: true });
    let SendOutcome::Persisted(c) = s.send(challenge(3), None).await.expect("send") else { panic!() };
    assert_eq!(s.client().tx_state(&c).await.expect("state"), ChainTxState::InMempool);
    drop(s);

    // Restart with a working client.
    let mut s = n.sender(n.l1());
    assert_eq!(s.send(anchor(3), None).await.expect("send"), SendOutcome::Pending(a), "no second spend");
    assert_eq!(s.send(challenge(3), None).await.expect("send"), SendOutcome::Pending(c));
    let r = s.on_block().await.expect("block");
    assert_eq!(r.rebroadcast, vec![a], "only the tx the node lacked is re-sent");
    assert_eq!(s.client().tx_state(&a).await.expect("state"), ChainTxState::InMempool);
    let (ra, rc) = (s.journal().get(&a).expect("a").clone(), s.journal().get(&c).expect("c").clone());
    assert!(ra.inputs.iter().all(|i| !rc.inputs.contains(i)));
    n.mine().await;
    let r = s.on_block().await.expect("block");
    assert_eq!(r.settled.len(), 2);
    // Exactly one anchor and one challenge for these purposes in the chain.
    let hash = n.rpc.get_block_hash(106).await.expect("hash");
    let block = n.rpc.get_block(&hash).await.expect("block");
    let payloads: Vec<KrayPayload> =
        block.txdata.iter().flat_map(|t| kray_payloads(t).into_iter().map(|p| p.1)).collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert!(payloads.contains(&KrayPayload::Anchor([3; 32])));
    // Another restart: nothing to do.
    let mut s = n.sender(n.l1());
    let r = s.on_block().await.expect("block");
    assert!(r.rebroadcast.is_empty() && r.settled.is_empty() && r.bumped.is_empty());
}

#[tokio::test]
async fn a_reorg_that_drops_our_anchor_makes_it_live_and_it_confirms_again() {
    let Some(n) = Node::start().await else { return };
    let mut s = n.sender(n.l1());
    let SendOutcome::Broadcast(a) = s.send(anchor(4), None).await.expect("send") else { panic!() };
    n.mine().await;
    assert_eq!(s.on_block().await.expect("block").settled, vec![(anchor(4), a, 106)]);
    let hash = n.rpc.get_block_hash(106).await.expect("hash");
    n.rpc.invalidate_block(&hash).await.expect("invalidateblock");
    let r = s.on_block().await.expect("block");
    assert_eq!(r.reorged, vec![a]);
    assert_eq!(s.journal().get(&a).map(|r| r.status.clone()), Some(TxStatus::Broadcast { height: 105 }));
    // A different coinbase, so the new block is not the invalidated one again.
    n.rpc.generate_to_address(1, &n.key.address()).await.expect("mine");
    let r = s.on_block().await.expect("block");
    assert_eq!(r.settled, vec![(anchor(4), a, 106)], "the same tx, re-mined");
    assert_ne!(n.rpc.get_block_hash(106).await.expect("hash"), hash);
}

/// A client over the real node whose process "dies" at its `crash_at`-th call (0-based): that call
/// never reaches the node, and it and every later one fail. It notes the journal's length at each call,
/// so the test knows which journal bytes were written after the last call that reached the node (only
/// those can be torn by the crash: everything the node saw was persisted before it).
struct DiesAt {
    inner: BitcoindL1,
    crash_at: usize,
    journal: PathBuf,
    lens: Mutex<Vec<u64>>,
}

impl DiesAt {
    fn gate(&self) -> Result<(), L1Error> {
        let len = std::fs::metadata(&self.journal).map(|m| m.len()).unwrap_or(0);
        let mut lens = self.lens.lock().expect("lock");
        lens.push(len);
        if lens.len() > self.crash_at {
            return Err(L1Error::Transport("the process died here".into()));
        }
        Ok(())
    }
}

impl L1Client for DiesAt {
    async fn tip_height(&self) -> Result<u64, L1Error> {
        self.gate()?;
        self.inner.tip_height().await
    }
    async fn estimate_fee_rate(&self, conf_target: u16) -> Result<Option<FeeRate>, L1Error> {
        self.gate()?;
        self.inner.estimate_fee_rate(conf_target).await
    }
    async fn utxos(&self, script: &bitcoin::ScriptBuf) -> Result<Vec<kray_challenger::coins::Utxo>, L1Error> {
        self.gate()?;
        self.inner.utxos(script).await
    }
    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, L1Error> {
        self.gate()?;
        self.inner.send_raw_transaction(tx).await
    }
    async fn tx_state(&self, txid: &Txid) -> Result<ChainTxState, L1Error> {
        self.gate()?;
        self.inner.tx_state(txid).await
    }
}

/// Anchors of `hash` in blocks above `from`.
async fn anchors_of(n: &Node, from: u64, hash: [u8; 32]) -> usize {
    let tip = n.rpc.get_block_count().await.expect("tip");
    let mut count = 0;
    for h in from + 1..=tip {
        let block = n.rpc.get_block(&n.rpc.get_block_hash(h).await.expect("hash")).await.expect("block");
        count += block.txdata.iter().flat_map(kray_payloads).filter(|(_, p)| *p == KrayPayload::Anchor(hash)).count();
    }
    count
}

#[tokio::test]
async fn a_crash_and_a_torn_journal_write_at_every_step_settle_exactly_once() {
    let Some(n) = Node::start().await else { return };
    let mut runs = 0;
    for crash_at in 0.. {
        // `None`: the journal as the crash left it; `Some(k)`: its last line torn at its start, after
        // one byte, in its middle, before its newline (k = 0, 1, 2, 3).
        let mut tears: Vec<Option<usize>> = vec![None];
        let mut tear = 0;
        let mut finished = false;
        while tear < tears.len() {
            runs += 1;
            let hash = [runs as u8; 32];
            let purpose = Purpose::Anchor { batch_id: 1000 + runs, batch_hash: hash };
            let path = n.dir.path().join(format!("crash-{runs}.jsonl"));
            let from = n.rpc.get_block_count().await.expect("tip");
            let client = DiesAt { inner: n.l1(), crash_at, journal: path.clone(), lens: Mutex::new(Vec::new()) };
            // The scenario: send, a block, the per-block pass, another block, the pass again.
            let mut s = sender_at(client, &n.key, &path);
            let _ = s.send(purpose, None).await;
            n.mine().await;
            let _ = s.on_block().await;
            n.mine().await;
            let _ = s.on_block().await;
            let lens = s.client().lens.lock().expect("lock").clone();
            drop(s);
            let bytes = std::fs::read(&path).unwrap_or_default();
            if lens.len() <= crash_at {
                finished = true; // the scenario ran to its end without reaching this call
            } else {
                assert_eq!(bytes.len() as u64, lens[crash_at], "nothing is written after the process died");
                let since = if crash_at == 0 { 0 } else { lens[crash_at - 1] as usize };
                // Only a line written after the last call that reached the node can be torn.
                let tearable = bytes.len() > since;
                if tear == 0 && tearable {
                    tears.extend((0..4).map(Some));
                }
                if let Some(Some(k)) = tears.get(tear) {
                    assert!(tearable, "the same crash point tears the same line");
                    let start = bytes[..bytes.len() - 1].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    let len = bytes.len() - start;
                    let cut = start + [0, 1, len / 2, len - 1][*k];
                    std::fs::write(&path, &bytes[..cut]).expect("torn write");
                }
            }
            // Restart over the journal: it opens, the purpose settles, exactly one anchor is on chain.
            let mut settled = None;
            for _ in 0..4 {
                let mut s = sender_at(n.l1(), &n.key, &path);
                s.on_block().await.expect("block");
                match s.send(purpose, None).await.expect("send") {
                    SendOutcome::Settled { txid, .. } => {
                        settled = Some(txid);
                        break;
                    }
                    _ => n.mine().await,
                }
            }
            let txid =
                settled.unwrap_or_else(|| panic!("crash at call {crash_at}, tear {:?}: never settled", tears[tear]));
            assert_eq!(anchors_of(&n, from, hash).await, 1, "crash at call {crash_at}, tear {:?}", tears[tear]);
            let j = Journal::open(&path).expect("reopen");
            assert_eq!(j.settlement(&purpose).map(|s| s.txid), Some(txid));
            assert_eq!(j.for_purpose(&purpose).iter().filter(|r| r.replaces.is_none()).count(), 1, "one original");
            tear += 1;
        }
        if finished {
            break;
        }
    }
    assert!(runs > 12, "{runs} runs");
}

#[tokio::test]
async fn deep_settlements_are_compacted_and_never_sent_again() {
    let Some(n) = Node::start().await else { return };
    let mut s = n.sender(n.l1());
    let SendOutcome::Broadcast(a) = s.send(anchor(5), None).await.expect("anchor") else { panic!() };
    let SendOutcome::Broadcast(c) = s.send(challenge(5), None).await.expect("challenge") else { panic!() };
    n.mine().await;
    assert_eq!(s.on_block().await.expect("block").settled.len(), 2);
    let SendOutcome::Broadcast(b) = s.send(anchor(6), None).await.expect("anchor") else { panic!() };
    // Six confirmations: the two settlements are at the finality depth (6), not beyond it.
    for _ in 0..5 {
        n.mine().await;
    }
    drop(s);
    let mut s = n.sender(n.l1());
    s.on_block().await.expect("block");
    assert!(s.journal().get(&a).is_some(), "not deeper than the finality depth yet");
    n.mine().await;
    // A restart compacts on its first pass: both folded, the unrelated anchor kept in full.
    drop(s);
    let mut s = n.sender(n.l1());
    s.on_block().await.expect("block");
    assert!(s.journal().get(&a).is_none() && s.journal().get(&c).is_none(), "deep settlements folded");
    assert!(s.journal().get(&b).is_some());
    let text = std::fs::read_to_string(n.journal_path()).expect("journal");
    assert_eq!(text.lines().filter(|l| l.starts_with("{\"settled\":")).count(), 2, "{text}");
    // Never sent again, also after another restart.
    drop(s);
    let mut s = n.sender(n.l1());
    assert_eq!(s.send(anchor(5), None).await.expect("again"), SendOutcome::Settled { txid: a, height: 106 });
    assert_eq!(s.send(challenge(5), None).await.expect("again"), SendOutcome::Settled { txid: c, height: 106 });
    assert_eq!(s.send(anchor(6), None).await.expect("again"), SendOutcome::Settled { txid: b, height: 107 });
    assert_eq!(anchors_of(&n, 105, [5; 32]).await, 1);
}

#[tokio::test]
async fn proof_is_delivered_once_after_two_server_errors() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/l2/challenges",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "busy")
                } else {
                    (StatusCode::OK, "{\"accepted\":true}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/l2/challenges", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut sub = Submitter::new(SubmitConfig {
        endpoints: vec![url],
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(10),
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let r = sub.submit([9; 32], "{}", deadline).await;
    assert!(matches!(r[0].1, EndpointOutcome::Acknowledged { status: 200, attempts: 3, .. }), "{r:?}");
    let r = sub.submit([9; 32], "{}", deadline).await;
    assert_eq!(r[0].1, EndpointOutcome::AlreadyAcknowledged);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "delivered once, after two 500s");
}
