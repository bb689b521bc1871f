//! [`ScriptedChain`]: an in-memory [`ChainSource`] for tests that can grow, fork, drop blocks, lag
//! and go unreachable on command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut,
    Witness,
};

use super::source::{ChainError, ChainSource, ChainTip, HeaderInfo};

/// Salts every block made in this process, so no two scripted chains share a block.
static BLOCK_SALT: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default)]
struct Inner {
    /// The best chain, index = height.
    chain: Vec<Block>,
    /// Every block ever made (stale ones too), with its height.
    known: HashMap<BlockHash, (u32, Block)>,
    unreachable: bool,
    headers_ahead: u32,
}

/// An in-memory chain. Clones share the same chain, so a test keeps one handle to script it while
/// the follower reads another.
#[derive(Debug, Clone)]
pub struct ScriptedChain {
    inner: Arc<Mutex<Inner>>,
}

impl Default for ScriptedChain {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedChain {
    /// A chain holding only a genesis block at height 0.
    pub fn new() -> Self {
        let chain = Self { inner: Arc::new(Mutex::new(Inner::default())) };
        {
            let mut inner = chain.lock();
            inner.push(Vec::new());
        }
        chain
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another test thread must not hide this chain's state.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mines `n` empty blocks (coinbase only) on the tip; returns their hashes.
    pub fn extend(&self, n: u32) -> Vec<BlockHash> {
        let mut inner = self.lock();
        (0..n).map(|_| inner.push(Vec::new())).collect()
    }

    /// Mines one block holding `txs` after its coinbase; returns its hash.
    pub fn extend_with(&self, txs: Vec<Transaction>) -> BlockHash {
        self.lock().push(txs)
    }

    /// Replaces the top `k` blocks with `n` new ones (a reorg of depth `k`); returns the new hashes.
    pub fn fork(&self, k: u32, n: u32) -> Vec<BlockHash> {
        let mut inner = self.lock();
        inner.truncate(k);
        (0..n).map(|_| inner.push(Vec::new())).collect()
    }

    /// Removes the top `k` blocks from the best chain (the genesis block stays).
    pub fn drop_blocks(&self, k: u32) {
        self.lock().truncate(k);
    }

    /// Makes every call fail with [`ChainError::Unreachable`] (or work again).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// Claims `n` headers beyond the best block, as a node still syncing does.
    pub fn set_headers_ahead(&self, n: u32) {
        self.lock().headers_ahead = n;
    }

    /// The best height.
    pub fn height(&self) -> u32 {
        self.lock().height()
    }

    /// The hash at `height` on the best chain.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.lock().chain.get(height as usize).map(Block::block_hash)
    }

    /// The headers of the best chain from `from` to the tip, ascending.
    pub fn headers_from(&self, from: u32) -> Vec<HeaderInfo> {
        let inner = self.lock();
        (from..=inner.height()).filter_map(|h| inner.chain.get(h as usize).map(|b| info(h, b))).collect()
    }

    fn reachable(&self) -> Result<MutexGuard<'_, Inner>, ChainError> {
        let inner = self.lock();
        if inner.unreachable {
            return Err(ChainError::Unreachable("scripted chain set unreachable".into()));
        }
        Ok(inner)
    }
}

impl Inner {
    fn height(&self) -> u32 {
        u32::try_from(self.chain.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    fn truncate(&mut self, k: u32) {
        let keep = self.chain.len().saturating_sub(k as usize).max(1);
        self.chain.truncate(keep);
    }

    fn push(&mut self, txs: Vec<Transaction>) -> BlockHash {
        let salt = BLOCK_SALT.fetch_add(1, Ordering::Relaxed);
        let height = u32::try_from(self.chain.len()).unwrap_or(u32::MAX);
        let prev = self.chain.last().map_or(BlockHash::all_zeros(), Block::block_hash);
        let mut script = height.to_le_bytes().to_vec();
        script.extend_from_slice(&salt.to_le_bytes());
        let coinbase = Transaction {
            version: TxVersion::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(script),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(50), script_pubkey: ScriptBuf::new() }],
        };
        let mut txdata = vec![coinbase];
        txdata.extend(txs);
        let mut block = Block {
            header: Header {
                version: Version::ONE,
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::all_zeros(),
                time: 1_700_000_000 + height,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            },
            txdata,
        };
        if let Some(root) = block.compute_merkle_root() {
            block.header.merkle_root = root;
        }
        let hash = block.block_hash();
        self.known.insert(hash, (height, block.clone()));
        self.chain.push(block);
        hash
    }
}

fn info(height: u32, block: &Block) -> HeaderInfo {
    HeaderInfo { height, hash: block.block_hash(), prev_hash: block.header.prev_blockhash }
}

impl ChainSource for ScriptedChain {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let inner = self.reachable()?;
        let height = inner.height();
        let hash = inner.chain.last().map_or(BlockHash::all_zeros(), Block::block_hash);
        Ok(ChainTip { height, hash, headers: height + inner.headers_ahead })
    }

    async fn header_at(&self, height: u32) -> Result<HeaderInfo, ChainError> {
        let inner = self.reachable()?;
        inner.chain.get(height as usize).map(|b| info(height, b)).ok_or(ChainError::HeightNotFound(height))
    }

    async fn header(&self, hash: BlockHash) -> Result<HeaderInfo, ChainError> {
        let inner = self.reachable()?;
        inner.known.get(&hash).map(|(h, b)| info(*h, b)).ok_or(ChainError::BlockNotFound(hash))
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, ChainError> {
        let inner = self.reachable()?;
        inner.known.get(&hash).map(|(_, b)| b.clone()).ok_or(ChainError::BlockNotFound(hash))
    }
}
