//! End-to-end tests of the devnet's L1 side on a real `bitcoind -regtest`.
//!
//! They need the bitcoind built by `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`). They skip,
//! with a message, only when `KRAY_SKIP_BITCOIND=1`; otherwise a missing binary fails them.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::key::Keypair;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{BlockHash, Network, OutPoint, ScriptBuf, Transaction, Txid};
use kray_devnet::bitcoind::BitcoindProcess;
use kray_devnet::l1tx::{self, KrayPayload};
use kray_devnet::rpc::RpcClient;
use kray_devnet::runes::{self, DepositSpec, PayoutSpec, RuneLedger, RunesError};
use kray_devnet::wallet::{Wallet, DEFAULT_FEE_RATE};
use kray_replayer::bridge::{BridgeDescriptor, BridgeError, InternalKey, InternalKeyKind};
use ordinals::{Artifact, Edict, RuneId, Runestone};

/// A node, the devnet wallet and the rune ledger, kept in step block by block.
struct Devnet {
    _node: BitcoindProcess,
    rpc: RpcClient,
    wallet: Wallet,
    ledger: RuneLedger,
    scanned: u32,
}

impl Devnet {
    /// Starts bitcoind and funds the wallet; `None` (after a message) when skipping.
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
        let wallet = Wallet::from_seed(b"l1-regtest", Network::Regtest).expect("wallet");
        let mut devnet = Self { _node: node, rpc, wallet, ledger: RuneLedger::new(), scanned: 0 };
        devnet.mine(101).await;
        assert!(devnet.wallet.spendable_balance().to_sat() >= 50 * 100_000_000);
        Some(devnet)
    }

    async fn mine(&mut self, n: u64) -> Vec<BlockHash> {
        let hashes = self.rpc.generate_to_address(n, self.wallet.address()).await.expect("generatetoaddress");
        let tip = self.rpc.get_block_count().await.expect("count") as u32;
        for height in self.scanned + 1..=tip {
            let hash = self.rpc.get_block_hash(height.into()).await.expect("hash");
            let block = self.rpc.get_block(&hash).await.expect("block");
            self.wallet.scan_block(&block, height);
            self.ledger.apply_block(&block, height.into());
        }
        self.scanned = tip;
        hashes
    }

    async fn broadcast(&mut self, tx: &Transaction) -> Txid {
        let accept = self.rpc.test_mempool_accept(std::slice::from_ref(tx)).await.expect("testmempoolaccept");
        assert_eq!(accept[0].allowed, Some(true), "rejected: {:?}", accept[0].reject_reason);
        let txid = self.rpc.send_raw_transaction(tx).await.expect("send");
        assert_eq!(txid, tx.compute_txid());
        self.wallet.apply_unconfirmed(tx);
        txid
    }

    /// Broadcasts, mines one block, and checks the tx is in it. Returns (height, index in block).
    async fn confirm(&mut self, tx: &Transaction) -> (u64, u32) {
        let txid = self.broadcast(tx).await;
        let hash = self.mine(1).await[0];
        let block = self.rpc.get_block(&hash).await.expect("block");
        let index = block.txdata.iter().position(|t| t.compute_txid() == txid).expect("tx mined in the next block");
        (u64::from(self.scanned), index as u32)
    }

    async fn etch(&mut self, premine: u128) -> RuneId {
        let tx =
            runes::build_etch_tx(&self.wallet, &self.ledger, premine, Some('K'), DEFAULT_FEE_RATE).expect("etch tx");
        let (height, index) = self.confirm(&tx).await;
        let etched = self.ledger.etched_by(&tx.compute_txid()).expect("etched").clone();
        assert_eq!(etched.id, RuneId { block: height, tx: index });
        assert!(etched.rune.is_reserved());
        assert_eq!(etched.premine, premine);
        assert_eq!(self.ledger.balance_of_script(self.wallet.script_pubkey(), etched.id), premine);
        etched.id
    }
}

fn federation() -> Vec<Keypair> {
    let secp = Secp256k1::new();
    (0u8..3)
        .map(|i| {
            let digest = sha256::Hash::hash(&[b'f', b'e', b'd', i]);
            let sk = SecretKey::from_slice(digest.as_byte_array()).expect("sk");
            Keypair::from_secret_key(&secp, &sk)
        })
        .collect()
}

/// The federation key pairs in the bridge's sorted order.
fn sorted_signers(bridge: &BridgeDescriptor, fed: &[Keypair]) -> Vec<Keypair> {
    bridge.keys().iter().map(|k| *fed.iter().find(|kp| kp.public_key() == *k).expect("member")).collect()
}

fn bridge(internal: InternalKey) -> (BridgeDescriptor, Vec<Keypair>) {
    let fed = federation();
    let keys: Vec<PublicKey> = fed.iter().map(Keypair::public_key).collect();
    let bridge = BridgeDescriptor::new(&keys, internal).expect("bridge");
    let signers = sorted_signers(&bridge, &fed);
    (bridge, signers)
}

fn other(seed: &[u8]) -> ScriptBuf {
    Wallet::from_seed(seed, Network::Regtest).expect("wallet").script_pubkey().clone()
}

async fn runestone_of(rpc: &RpcClient, txid: &Txid) -> Runestone {
    let tx = rpc.get_raw_transaction(txid).await.expect("getrawtransaction");
    match Runestone::decipher(&tx) {
        Some(Artifact::Runestone(r)) => r,
        other => panic!("expected a valid runestone, got {other:?}"),
    }
}

#[tokio::test]
async fn anchor_and_challenge_are_mined_and_found() {
    let Some(mut d) = Devnet::start().await else {
        return;
    };
    let root = *sha256::Hash::hash(b"state root").as_byte_array();
    let tx = l1tx::build_anchor_tx(&d.wallet, &root, DEFAULT_FEE_RATE, &d.ledger.rune_outpoints()).expect("anchor tx");
    let txid = d.broadcast(&tx).await;
    let entry = d.rpc.get_mempool_entry(&txid).await.expect("mempool entry");
    assert!(entry.fees.base.to_sat() >= entry.vsize, "pays at least 1 sat/vB");
    let hash = d.mine(1).await[0];

    let block = d.rpc.get_block(&hash).await.expect("block");
    let mined = block.txdata.iter().find(|t| t.compute_txid() == txid).expect("anchor in block");
    assert_eq!(l1tx::kray_payloads(mined), vec![(0, KrayPayload::Anchor(root))]);
    assert_eq!(mined.output[0].script_pubkey.as_bytes()[1], 36);
    let verbose = d.rpc.get_raw_transaction_verbose(&txid).await.expect("verbose");
    assert_eq!(verbose["blockhash"].as_str(), Some(hash.to_string().as_str()));
    let json_block = d.rpc.get_block_verbose(&hash).await.expect("getblock 2");
    assert!(json_block["tx"]
        .as_array()
        .expect("txs")
        .iter()
        .any(|t| t["txid"].as_str() == Some(txid.to_string().as_str())));

    let proof = *sha256::Hash::hash(b"fraud proof").as_byte_array();
    let ch = l1tx::build_challenge_tx(&d.wallet, 42, &proof, DEFAULT_FEE_RATE, &d.ledger.rune_outpoints())
        .expect("challenge tx");
    d.confirm(&ch).await;
    let got = d.rpc.get_raw_transaction(&ch.compute_txid()).await.expect("raw");
    assert_eq!(l1tx::kray_payloads(&got), vec![(0, KrayPayload::Challenge { batch_id: 42, proof_hash: proof })]);
}

#[tokio::test]
async fn runes_deposit_to_nums_bridge_and_two_of_three_payout() {
    let Some(mut d) = Devnet::start().await else {
        return;
    };
    let rune = d.etch(1_000_000).await;

    // Send runes to two addresses.
    let (alice, bob) = (other(b"alice"), other(b"bob"));
    let tx = runes::build_transfer_tx(
        &d.wallet,
        &d.ledger,
        rune,
        &[(alice.clone(), 1_000), (bob.clone(), 2_500)],
        DEFAULT_FEE_RATE,
    )
    .expect("transfer");
    d.confirm(&tx).await;
    let stone = runestone_of(&d.rpc, &tx.compute_txid()).await;
    assert_eq!(
        stone.edicts,
        vec![Edict { id: rune, amount: 1_000, output: 0 }, Edict { id: rune, amount: 2_500, output: 1 },]
    );
    assert_eq!(stone.pointer, Some(2));
    assert_eq!(d.ledger.balance_of_script(&alice, rune), 1_000);
    assert_eq!(d.ledger.balance_of_script(&bob, rune), 2_500);
    assert_eq!(d.ledger.balance_of_script(d.wallet.script_pubkey(), rune), 996_500);

    // Deposit to the NUMS bridge for an L2 account.
    let (bridge, signers) = bridge(InternalKey::Nums);
    assert_eq!(bridge.audit().internal_key_kind, InternalKeyKind::Nums);
    let account = [0x5au8; 32];
    let spec = DepositSpec { rune, amount: 40_000, l2_account: account, bridge_value: runes::RUNE_OUTPUT_VALUE };
    let dep = runes::build_deposit_tx(&d.wallet, &d.ledger, &bridge, &spec, DEFAULT_FEE_RATE).expect("deposit");
    d.confirm(&dep).await;
    let dep_txid = dep.compute_txid();
    let fetched = d.rpc.get_raw_transaction(&dep_txid).await.expect("raw deposit");
    assert_eq!(fetched.output[0].script_pubkey, bridge.script_pubkey());
    assert_eq!(l1tx::parse_kray_payload(&fetched.output[1].script_pubkey), Some(KrayPayload::Deposit(account)));
    let stone = runestone_of(&d.rpc, &dep_txid).await;
    assert_eq!(stone.edicts, vec![Edict { id: rune, amount: 40_000, output: 0 }]);
    assert_eq!(stone.pointer, Some(runes::DEPOSIT_RUNE_CHANGE_VOUT));
    let bridge_utxo = OutPoint { txid: dep_txid, vout: runes::DEPOSIT_BRIDGE_VOUT };
    assert_eq!(d.ledger.balance(&bridge_utxo, rune), 40_000);

    // The NUMS bridge has no usable key path, not even for the first signer.
    assert!(matches!(
        runes::build_key_path_sweep_tx(
            &d.wallet,
            &d.ledger,
            &bridge,
            bridge_utxo,
            &signers[0],
            other(b"thief"),
            DEFAULT_FEE_RATE
        ),
        Err(RunesError::KeyPathNotSpendable(_))
    ));

    // One signature is not enough.
    let carol = other(b"carol");
    let payout = PayoutSpec { bridge_utxo, rune, amount: 15_000, destination: carol.clone() };
    assert!(matches!(
        runes::build_bridge_payout_tx(&d.wallet, &d.ledger, &bridge, &signers[..1], &payout, DEFAULT_FEE_RATE),
        Err(RunesError::Bridge(BridgeError::NotEnoughSignatures(1)))
    ));

    // Signers 0 and 2 (the middle one absent): the node accepts it; swapping the two
    // signatures (wrong BIP-342 order) is rejected by the node's script check.
    let pay = runes::build_bridge_payout_tx(
        &d.wallet,
        &d.ledger,
        &bridge,
        &[signers[2], signers[0]],
        &payout,
        DEFAULT_FEE_RATE,
    )
    .expect("payout");
    assert_eq!(pay.input[0].previous_output, bridge_utxo);
    assert_eq!(pay.input[0].witness.len(), 5);
    assert!(pay.input[0].witness.nth(1).expect("slot").is_empty());
    let mut swapped = pay.clone();
    let w: Vec<Vec<u8>> = swapped.input[0].witness.iter().map(<[u8]>::to_vec).collect();
    swapped.input[0].witness =
        bitcoin::Witness::from_slice(&[w[2].clone(), w[1].clone(), w[0].clone(), w[3].clone(), w[4].clone()]);
    let rejected = d.rpc.test_mempool_accept(&[swapped]).await.expect("testmempoolaccept");
    assert_eq!(rejected[0].allowed, Some(false), "{rejected:?}");

    let (height, _) = d.confirm(&pay).await;
    let verbose = d.rpc.get_raw_transaction_verbose(&pay.compute_txid()).await.expect("verbose");
    assert_eq!(verbose["confirmations"].as_u64(), Some(1));
    assert!(height > 0);
    let stone = runestone_of(&d.rpc, &pay.compute_txid()).await;
    assert_eq!(stone.edicts, vec![Edict { id: rune, amount: 15_000, output: 0 }]);
    assert_eq!(stone.pointer, Some(1));
    assert_eq!(d.ledger.balance_of_script(&carol, rune), 15_000);
    assert_eq!(d.ledger.balance_of_script(&bridge.script_pubkey(), rune), 25_000);
    assert_eq!(d.ledger.burned(rune), 0);
}

#[tokio::test]
async fn legacy_bridge_key_path_spend_by_one_key_confirms() {
    let Some(mut d) = Devnet::start().await else {
        return;
    };
    let rune = d.etch(10_000).await;
    let (bridge, signers) = bridge(InternalKey::Legacy);
    let audit = bridge.audit();
    assert_eq!(audit.internal_key_kind, InternalKeyKind::KeyOfSigner(0));
    assert!(audit.key_path_spendable_by_single_party);

    let spec = DepositSpec { rune, amount: 7_000, l2_account: [1u8; 32], bridge_value: runes::RUNE_OUTPUT_VALUE };
    let dep = runes::build_deposit_tx(&d.wallet, &d.ledger, &bridge, &spec, DEFAULT_FEE_RATE).expect("deposit");
    d.confirm(&dep).await;
    let bridge_utxo = OutPoint { txid: dep.compute_txid(), vout: runes::DEPOSIT_BRIDGE_VOUT };

    // Only the first sorted signer (the internal key) can use the key path.
    let thief = other(b"thief");
    assert!(matches!(
        runes::build_key_path_sweep_tx(
            &d.wallet,
            &d.ledger,
            &bridge,
            bridge_utxo,
            &signers[1],
            thief.clone(),
            DEFAULT_FEE_RATE
        ),
        Err(RunesError::KeyPathNotSpendable(_))
    ));
    let sweep = runes::build_key_path_sweep_tx(
        &d.wallet,
        &d.ledger,
        &bridge,
        bridge_utxo,
        &signers[0],
        thief.clone(),
        DEFAULT_FEE_RATE,
    )
    .expect("sweep");
    // A key-path spend: one 64-byte signature, no script, no control block.
    assert_eq!(sweep.input[0].witness.len(), 1);
    assert_eq!(sweep.input[0].witness.nth(0).map(<[u8]>::len), Some(64));
    d.confirm(&sweep).await;
    let verbose = d.rpc.get_raw_transaction_verbose(&sweep.compute_txid()).await.expect("verbose");
    assert_eq!(verbose["confirmations"].as_u64(), Some(1));
    // Every rune of the bridge output went to the single signer's destination.
    assert_eq!(d.ledger.balance_of_script(&thief, rune), 7_000);
    assert_eq!(d.ledger.balance_of_script(&bridge.script_pubkey(), rune), 0);
}
