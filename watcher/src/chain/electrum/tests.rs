//! [`ElectrumSource`] against a scripted fake of the Electrum API: partial blocks, proof checks,
//! reorg races, header lookups by hash, and the L1 index end to end.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut,
    Txid, Witness,
};

use super::merkle::{branch_for, MerkleProof};
use super::*;
use crate::anchors::anchor_effects;
use crate::chain::{ChainError, ChainSource, FollowStatus, FollowerConfig};
use crate::l1_index::L1Index;
use crate::store::{Effect, Outpoint, Store};

/// A hook run inside the fake's history call (to move the chain mid-read).
type Hook = Box<dyn FnMut(&mut FakeInner) + Send>;

#[derive(Default)]
struct FakeInner {
    /// The best chain, index = height.
    chain: Vec<Block>,
    mempool: Vec<Transaction>,
    /// Index `OP_RETURN` outputs too (Fulcrum does, electrs does not).
    index_op_return: bool,
    unreachable: bool,
    tamper_branch: Option<Txid>,
    shift_pos: Option<Txid>,
    substitute: Option<(Txid, Transaction)>,
    /// Serve this header instead of the real one at its height.
    fake_header: Option<(u32, Header)>,
    on_histories: Option<Hook>,
    calls: HashMap<&'static str, usize>,
    salt: u32,
}

/// A scripted Electrum server over an in-memory chain.
#[derive(Default)]
struct Fake {
    inner: Mutex<FakeInner>,
}

fn fake_block(prev: BlockHash, salt: u32, txs: Vec<Transaction>) -> Block {
    let coinbase = Transaction {
        version: TxVersion::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(salt.to_le_bytes().to_vec()),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(50), script_pubkey: ScriptBuf::from_bytes(vec![0x51]) }],
    };
    let mut txdata = vec![coinbase];
    txdata.extend(txs);
    let mut block = Block {
        header: Header {
            version: Version::TWO,
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_700_000_000 + salt,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().expect("root");
    // Regtest difficulty: about one nonce in two is valid.
    while block.header.validate_pow(block.header.target()).is_err() {
        block.header.nonce += 1;
    }
    block
}

impl FakeInner {
    fn push(&mut self, txs: Vec<Transaction>) -> BlockHash {
        self.salt += 1;
        let prev = self.chain.last().map_or(BlockHash::all_zeros(), Block::block_hash);
        let block = fake_block(prev, self.salt, txs);
        let hash = block.block_hash();
        self.mempool.retain(|m| !block.txdata.iter().any(|t| t.compute_txid() == m.compute_txid()));
        self.chain.push(block);
        hash
    }

    fn count(&mut self, call: &'static str) -> Result<(), ApiError> {
        *self.calls.entry(call).or_default() += 1;
        if self.unreachable {
            return Err(ApiError::Transport("fake set unreachable".into()));
        }
        Ok(())
    }

    fn header_at(&self, height: u32) -> Option<Header> {
        if let Some((h, header)) = self.fake_header {
            if h == height {
                return Some(header);
            }
        }
        self.chain.get(height as usize).map(|b| b.header)
    }

    fn touches(&self, tx: &Transaction, script: &ScriptBuf, prevouts: &HashMap<OutPoint, ScriptBuf>) -> bool {
        let pays = tx
            .output
            .iter()
            .any(|o| &o.script_pubkey == script && (self.index_op_return || !o.script_pubkey.is_op_return()));
        let spends = tx.input.iter().any(|i| prevouts.get(&i.previous_output) == Some(script));
        pays || spends
    }
}

impl Fake {
    fn new(blocks: u32) -> Self {
        let fake = Self::default();
        {
            let mut inner = fake.lock();
            for _ in 0..=blocks {
                inner.push(Vec::new());
            }
        }
        fake
    }

    fn lock(&self) -> MutexGuard<'_, FakeInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ElectrumApi for Fake {
    fn tip(&self) -> Result<(u32, Header), ApiError> {
        let mut inner = self.lock();
        inner.count("tip")?;
        let height = u32::try_from(inner.chain.len() - 1).expect("height");
        let header = inner.header_at(height).expect("tip");
        Ok((height, header))
    }

    fn header(&self, height: u32) -> Result<Header, ApiError> {
        let mut inner = self.lock();
        inner.count("header")?;
        inner.header_at(height).ok_or_else(|| ApiError::Server(format!("height {height} out of range")))
    }

    fn histories(&self, scripts: &[ScriptBuf]) -> Result<Vec<Vec<HistoryEntry>>, ApiError> {
        let mut inner = self.lock();
        inner.count("histories")?;
        if let Some(mut hook) = inner.on_histories.take() {
            hook(&mut inner);
        }
        let mut prevouts = HashMap::new();
        for tx in inner.chain.iter().flat_map(|b| &b.txdata).chain(&inner.mempool) {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                prevouts.insert(OutPoint { txid, vout: vout as u32 }, out.script_pubkey.clone());
            }
        }
        Ok(scripts
            .iter()
            .map(|script| {
                let confirmed = inner.chain.iter().enumerate().flat_map(|(h, b)| b.txdata.iter().map(move |t| (h, t)));
                let mut entries: Vec<HistoryEntry> = confirmed
                    .filter(|(_, t)| inner.touches(t, script, &prevouts))
                    .map(|(h, t)| HistoryEntry { height: h as i32, txid: t.compute_txid() })
                    .collect();
                entries.extend(
                    inner
                        .mempool
                        .iter()
                        .filter(|t| inner.touches(t, script, &prevouts))
                        .map(|t| HistoryEntry { height: 0, txid: t.compute_txid() }),
                );
                entries
            })
            .collect())
    }

    fn transactions(&self, txids: &[Txid]) -> Result<Vec<Transaction>, ApiError> {
        let mut inner = self.lock();
        inner.count("transactions")?;
        txids
            .iter()
            .map(|txid| {
                if let Some((t, tx)) = &inner.substitute {
                    if t == txid {
                        return Ok(tx.clone());
                    }
                }
                inner
                    .chain
                    .iter()
                    .flat_map(|b| &b.txdata)
                    .chain(&inner.mempool)
                    .find(|t| t.compute_txid() == *txid)
                    .cloned()
                    .ok_or_else(|| ApiError::Server(format!("no transaction {txid}")))
            })
            .collect()
    }

    fn merkle_proofs(&self, txids: &[Txid], height: u32) -> Result<Vec<MerkleProof>, ApiError> {
        let mut inner = self.lock();
        inner.count("merkle_proofs")?;
        let block = inner.chain.get(height as usize).ok_or_else(|| ApiError::Server("bad height".into()))?;
        let ids: Vec<Txid> = block.txdata.iter().map(Transaction::compute_txid).collect();
        txids
            .iter()
            .map(|txid| {
                let pos = ids.iter().position(|t| t == txid).ok_or_else(|| ApiError::Server("not in block".into()))?;
                let mut proof = MerkleProof { block_height: height, pos: pos as u32, branch: branch_for(&ids, pos) };
                if inner.tamper_branch == Some(*txid) {
                    let mut bytes = proof.branch[0].to_byte_array();
                    bytes[31] ^= 0x80;
                    proof.branch[0] = TxMerkleNode::from_byte_array(bytes);
                }
                if inner.shift_pos == Some(*txid) {
                    proof.pos ^= 1;
                }
                Ok(proof)
            })
            .collect()
    }
}

const FUND: [u8; 3] = [0x51, 0x52, 0x53];
const BRIDGE: [u8; 3] = [0x54, 0x55, 0x56];
const OTHER: [u8; 3] = [0x57, 0x58, 0x59];

fn script(bytes: [u8; 3]) -> ScriptBuf {
    ScriptBuf::from_bytes(bytes.to_vec())
}

fn tx(inputs: Vec<OutPoint>, outputs: Vec<ScriptBuf>) -> Transaction {
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: inputs
            .into_iter()
            .map(|o| TxIn {
                previous_output: o,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs.into_iter().map(|s| TxOut { value: Amount::from_sat(1_000), script_pubkey: s }).collect(),
    }
}

/// An outpoint nobody watches, distinct per `n`.
fn foreign(n: u8) -> OutPoint {
    OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }
}

fn anchor(root: [u8; 32]) -> ScriptBuf {
    kray_replayer::l1payload::anchor_script(&root)
}

fn source(fake: Fake, watch: &[ScriptBuf]) -> ElectrumSource<Fake> {
    ElectrumSource::with_api(fake, WatchSet::from_scripts(watch.iter().cloned()), ElectrumConfig::default())
}

fn calls(source: &ElectrumSource<Fake>, call: &str) -> usize {
    source.api().lock().calls.get(call).copied().unwrap_or(0)
}

fn anchor_roots(block: &Block) -> Vec<String> {
    anchor_effects(block, 0, block.block_hash())
        .into_iter()
        .map(|e| match e {
            Effect::Anchor { root, .. } => root,
            other => panic!("not an anchor: {other:?}"),
        })
        .collect()
}

/// A block with: a funding tx (pays FUND), an unwatched anchor, the watched anchor (spends the
/// funding output, change to FUND), an unwatched payment, and a bridge deposit.
fn mixed_block(fake: &Fake) -> (BlockHash, Vec<Transaction>) {
    let fund = tx(vec![foreign(1)], vec![script(FUND)]);
    let foreign_anchor = tx(vec![foreign(2)], vec![anchor([2; 32]), script(OTHER)]);
    let watched_anchor = tx(vec![OutPoint { txid: fund.compute_txid(), vout: 0 }], vec![anchor([1; 32]), script(FUND)]);
    let unrelated = tx(vec![foreign(3)], vec![script(OTHER)]);
    let deposit = tx(vec![foreign(4)], vec![script(BRIDGE)]);
    let txs = vec![fund, foreign_anchor, watched_anchor, unrelated, deposit];
    let hash = fake.lock().push(txs.clone());
    fake.lock().push(Vec::new());
    (hash, txs)
}

#[tokio::test]
async fn a_partial_block_holds_exactly_the_watched_transactions_in_block_order() {
    let fake = Fake::new(3);
    let (hash, txs) = mixed_block(&fake);
    let src = source(fake, &[script(FUND), script(BRIDGE)]);
    let tip = src.tip().await.expect("tip");
    assert_eq!((tip.height, tip.headers), (5, 5));
    let header = src.header_at(4).await.expect("header");
    assert_eq!(header.hash, hash);

    let block = src.block(hash).await.expect("block");
    assert_eq!(block.block_hash(), hash, "the real header");
    let want: Vec<Txid> = [&txs[0], &txs[2], &txs[4]].iter().map(|t| t.compute_txid()).collect();
    assert_eq!(block.txdata.iter().map(Transaction::compute_txid).collect::<Vec<_>>(), want);
    assert!(!block.check_merkle_root(), "partial by design");
    // anchor_effects sees the watched anchor only.
    assert_eq!(anchor_roots(&block), vec![hex::encode([1u8; 32])]);

    // A block without watched transactions is header-only.
    let empty = src.header_at(5).await.expect("header");
    let block = src.block(empty.hash).await.expect("block");
    assert_eq!((block.block_hash(), block.txdata.len()), (empty.hash, 0));
}

#[tokio::test]
async fn the_watch_set_changes_at_run_time_and_op_return_scripts_need_a_server_that_indexes_them() {
    // electrs-like: OP_RETURN outputs are not indexed.
    let fake = Fake::new(1);
    let (hash, _) = mixed_block(&fake);
    let src = source(fake, &[]);
    src.header_at(2).await.expect("header");
    assert!(src.block(hash).await.expect("block").txdata.is_empty());
    assert!(src.watch_set().add_anchor_root(&[2; 32]));
    assert!(!src.watch_set().add_anchor_root(&[2; 32]), "already watched");
    assert!(src.block(hash).await.expect("block").txdata.is_empty(), "electrs does not index OP_RETURN");
    // Watching the funding script finds the anchor that spends from it, at once.
    src.watch_set().add_script(script(FUND));
    assert_eq!(anchor_roots(&src.block(hash).await.expect("block")), vec![hex::encode([1u8; 32])]);

    // Fulcrum-like: the exact anchor script finds the unwatched anchor.
    let fake = Fake::new(1);
    fake.lock().index_op_return = true;
    let (hash, _) = mixed_block(&fake);
    let src = source(fake, &[]);
    src.header_at(2).await.expect("header");
    src.watch_set().add_anchor_root(&[2; 32]);
    assert_eq!(anchor_roots(&src.block(hash).await.expect("block")), vec![hex::encode([2u8; 32])]);
    assert!(src.watch_set().remove_script(&anchor([2; 32])));
    assert!(src.block(hash).await.expect("block").txdata.is_empty());
}

#[tokio::test]
async fn a_tampered_branch_a_wrong_position_or_a_substituted_tx_is_invalid() {
    for case in 0..3 {
        let fake = Fake::new(2);
        let (hash, txs) = mixed_block(&fake);
        let target = txs[2].compute_txid();
        match case {
            0 => fake.lock().tamper_branch = Some(target),
            1 => fake.lock().shift_pos = Some(target),
            _ => fake.lock().substitute = Some((target, txs[1].clone())),
        }
        let src = source(fake, &[script(FUND)]);
        src.header_at(3).await.expect("header");
        let err = src.block(hash).await.expect_err("must be rejected");
        assert!(matches!(err, ChainError::Invalid(_)), "case {case}: {err:?}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn a_header_without_proof_of_work_is_invalid() {
    let fake = Fake::new(3);
    let mut header = fake.lock().chain[2].header;
    // Find a nonce whose hash misses the regtest target.
    while header.validate_pow(header.target()).is_ok() {
        header.nonce += 1;
    }
    fake.lock().fake_header = Some((2, header));
    let src = source(fake, &[]);
    assert!(matches!(src.header_at(2).await, Err(ChainError::Invalid(_))));
    assert!(src.header_at(1).await.is_ok());
}

#[tokio::test]
async fn a_block_reorged_out_is_a_transient_not_found() {
    let fake = Fake::new(2);
    let (hash, _) = mixed_block(&fake);
    let src = source(fake, &[script(FUND)]);
    src.header_at(3).await.expect("header");
    {
        let mut inner = src.api().lock();
        inner.chain.truncate(3);
        inner.push(Vec::new());
        inner.push(Vec::new());
    }
    let err = src.block(hash).await.expect_err("reorged out");
    assert_eq!(err, ChainError::BlockNotFound(hash));
    assert!(err.is_transient());
    // A hash it never served is unknown too.
    let unknown = BlockHash::from_byte_array([9; 32]);
    assert_eq!(src.block(unknown).await, Err(ChainError::BlockNotFound(unknown)));
}

#[tokio::test]
async fn the_tip_moving_while_histories_are_read_is_transient_and_the_retry_succeeds() {
    let fake = Fake::new(2);
    let (hash, txs) = mixed_block(&fake);
    fake.lock().on_histories = Some(Box::new(|inner: &mut FakeInner| {
        inner.push(Vec::new());
    }));
    let src = source(fake, &[script(FUND)]);
    src.header_at(3).await.expect("header");
    let err = src.block(hash).await.expect_err("moved");
    assert_eq!(err, ChainError::BlockNotFound(hash));
    let block = src.block(hash).await.expect("retry");
    assert_eq!(block.txdata.len(), 2);
    assert_eq!(block.txdata[1], txs[2]);
}

#[tokio::test]
async fn histories_are_read_once_per_tip_and_transactions_once() {
    let fake = Fake::new(2);
    let (hash, _) = mixed_block(&fake);
    let src = source(fake, &[script(FUND)]);
    for h in 0..=4 {
        let header = src.header_at(h).await.expect("header");
        src.block(header.hash).await.expect("block");
    }
    assert_eq!(calls(&src, "histories"), 1);
    assert_eq!(calls(&src, "transactions"), 1);
    src.block(hash).await.expect("again");
    assert_eq!(calls(&src, "transactions"), 1, "cached by txid");
    // A new tip reads histories again.
    src.api().lock().push(Vec::new());
    src.block(hash).await.expect("after a new block");
    assert_eq!(calls(&src, "histories"), 2);
}

#[tokio::test]
async fn mempool_transactions_are_in_no_block() {
    let fake = Fake::new(2);
    let pending = tx(vec![foreign(8)], vec![script(FUND)]);
    fake.lock().mempool.push(pending.clone());
    let src = source(fake, &[script(FUND)]);
    let tip = src.tip().await.expect("tip");
    assert!(src.block(tip.hash).await.expect("block").txdata.is_empty());
    let mined = src.api().lock().push(vec![pending.clone()]);
    src.header_at(3).await.expect("header");
    assert_eq!(src.block(mined).await.expect("block").txdata, vec![pending]);
}

#[tokio::test]
async fn headers_by_hash_come_from_the_cache_or_the_child_link() {
    let fake = Fake::new(5);
    let src = source(fake, &[]);
    let h4 = src.header_at(4).await.expect("header");
    assert_eq!(src.header(h4.hash).await, Ok(h4));
    // The parent of a served header: read at height 3 and checked.
    let h3 = src.header(h4.prev_hash).await.expect("parent");
    assert_eq!((h3.height, h3.hash), (3, h4.prev_hash));
    let h2 = src.header(h3.prev_hash).await.expect("grandparent");
    assert_eq!(h2.height, 2);
    let unknown = BlockHash::from_byte_array([7; 32]);
    assert_eq!(src.header(unknown).await, Err(ChainError::BlockNotFound(unknown)));
    // Beyond the tip.
    assert_eq!(src.header_at(9).await, Err(ChainError::HeightNotFound(9)));
}

#[tokio::test]
async fn the_header_cache_is_bounded() {
    let fake = Fake::new(10);
    let config = ElectrumConfig { header_cache: 3, ..ElectrumConfig::default() };
    let src = ElectrumSource::with_api(fake, WatchSet::new(), config);
    let mut served = Vec::new();
    for h in 0..=10 {
        served.push(src.header_at(h).await.expect("header"));
    }
    assert_eq!(src.cache().headers.len(), 3);
    // Evicted and no cached child: unknown.
    assert_eq!(src.header(served[2].hash).await, Err(ChainError::BlockNotFound(served[2].hash)));
    // Evicted but its child is cached: recovered through the child link.
    assert_eq!(src.header(served[7].hash).await, Ok(served[7]));
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_recovers() {
    let fake = Fake::new(2);
    fake.lock().unreachable = true;
    let src = source(fake, &[]);
    let err = src.tip().await.expect_err("down");
    assert!(matches!(err, ChainError::Unreachable(_)) && err.is_transient(), "{err:?}");
    src.api().lock().unreachable = false;
    assert_eq!(src.tip().await.expect("up").height, 2);
}

#[tokio::test]
async fn the_l1_index_follows_anchors_through_a_reorg_on_the_electrum_source() {
    let fake = Fake::new(3);
    let src = source(fake, &[script(FUND)]);
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let mut index = L1Index::open(src.clone(), store, FollowerConfig::new(1)).await.expect("open");
    let (hash, txs) = mixed_block(src.api());
    let status = index.sync(10).await.expect("sync");
    assert!(matches!(status, FollowStatus::Synced { height: 5, .. }), "{status:?}");
    let anchors = index.store().anchors().await.expect("anchors");
    assert_eq!(anchors.len(), 1, "only the watched anchor");
    assert_eq!((anchors[0].height, &anchors[0].block_hash), (4, &hash.to_string()));
    assert_eq!(anchors[0].outpoint, Outpoint { txid: txs[2].compute_txid().to_string(), vout: 0 });

    // A reorg of depth 2 drops it; mining it again re-finds it.
    {
        let mut inner = src.api().lock();
        inner.chain.truncate(4);
        for _ in 0..3 {
            inner.push(Vec::new());
        }
    }
    let status = index.sync(10).await.expect("sync");
    assert!(matches!(status, FollowStatus::Synced { height: 6, .. }), "{status:?}");
    assert_eq!(index.store().anchors().await.expect("anchors"), vec![]);
    let again = src.api().lock().push(vec![txs[0].clone(), txs[2].clone()]);
    index.sync(10).await.expect("sync");
    let anchors = index.store().anchors().await.expect("anchors");
    assert_eq!(anchors.len(), 1);
    assert_eq!((anchors[0].height, &anchors[0].block_hash), (7, &again.to_string()));
}
