//! The challenger's transaction sender on a real `bitcoind -regtest`: anchors and challenge markers
//! from the guardian key confirm, a stuck transaction is RBF-bumped and the bump confirms, a restart
//! from the journal mid-send sends nothing twice; and proof submission to a real local HTTP server.
//!
//! They need the bitcoind built by `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`). They skip, with a
//! message, only when `KRAY_SKIP_BITCOIND=1`; otherwise a missing binary fails them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
