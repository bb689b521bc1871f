//! [`ElectrumSource`]: a [`ChainSource`] over an Electrum server (electrs, Fulcrum, ...).
//!
//! An Electrum server serves headers, transactions by txid, script histories and merkle branches, not
//! whole blocks. So this source's blocks are **partial**:
//!
//! - [`ChainSource::block`] returns the block's real header plus **only the transactions of the watch
//!   set** ([`WatchSet`]: the scripts whose histories are read, e.g. the federation's anchor-funding
//!   address, the bridge address, and the exact `OP_RETURN "KRAY" || root` scripts of roots the
//!   guardian expects), confirmed at that height, in block order. Everything else is missing, the
//!   coinbase included, so `block.check_merkle_root()` fails on it by design, and
//!   [`anchor_effects`](crate::anchors::anchor_effects) on it finds exactly the anchors of watched
//!   transactions. Each transaction is fetched by txid, its id checked, and its inclusion proven with
//!   `blockchain.transaction.get_merkle`: the root is computed here from the branch and compared with
//!   the header's merkle root ([`merkle::verify_inclusion`]); a mismatch is [`ChainError::Invalid`]
//!   (or a transient [`ChainError::BlockNotFound`] when the server's chain moved meanwhile).
//! - Completeness (no watched transaction left out) rests on the server's histories. The source reads
//!   them between two tip reads that must agree, and checks the block is at its height on that tip,
//!   so histories and block belong to one chain state.
//! - electrs does not index `OP_RETURN` outputs (they are unspendable), so on electrs an anchor is
//!   found only through a watched script of the same transaction, in practice the funding address
//!   its inputs spend from or its change pays to. Servers that index every output (Fulcrum) also find
//!   it through the exact anchor script.
//! - The watch set can change at run time; a change applies to blocks fetched afterwards. Blocks the
//!   follower already connected are not fetched again: to index a newly watched script's past, rebuild
//!   the index from an earlier height.
//! - [`ChainSource::header`] by hash: Electrum looks headers up by height only. The source answers from
//!   a bounded cache of the headers it has served, and for the parent of a cached header (what the
//!   follower asks when it walks back a branch) it reads the height below and checks the hash. Any
//!   other hash is [`ChainError::BlockNotFound`]; in particular stale-branch blocks are not available.
//! - Every header served is checked for proof of work against its own `bits` (the difficulty itself
//!   is not checked against the network's rules).
//! - [`ChainTip::headers`] is the tip height: an Electrum server reports only what it has indexed.
//!
//! All Electrum calls block: each runs on tokio's blocking pool under the configured timeout (the
//! socket has the same timeout, so a stuck call frees its thread), and a broken connection is
//! reopened by the next call ([`TcpElectrum`]).

mod api;
pub mod merkle;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::{Address, Block, BlockHash, Script, ScriptBuf, Transaction, Txid};

pub use api::{ApiError, ElectrumApi, HistoryEntry, TcpElectrum};
pub use merkle::{MerkleError, MerkleProof};

use super::source::{ChainError, ChainSource, ChainTip, HeaderInfo};

/// Settings of an [`ElectrumSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectrumConfig {
    /// Each Electrum call fails as [`ChainError::Unreachable`] after this long.
    pub timeout: Duration,
    /// Headers kept for lookups by hash (oldest evicted first).
    pub header_cache: usize,
    /// Transactions kept by txid (oldest evicted first).
    pub tx_cache: usize,
}

impl Default for ElectrumConfig {
    /// 30 s per call, 2,016 headers, 10,000 transactions.
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), header_cache: 2_016, tx_cache: 10_000 }
    }
}

#[derive(Debug, Default)]
struct WatchInner {
    scripts: BTreeSet<ScriptBuf>,
    generation: u64,
}

/// The scripts whose transactions an [`ElectrumSource`] puts in its partial blocks. Clones share one
/// set, so the guardian can add the root of each mirrored batch while the follower runs.
#[derive(Debug, Clone, Default)]
pub struct WatchSet {
    inner: Arc<RwLock<WatchInner>>,
}

impl WatchSet {
    /// An empty watch set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A watch set holding `scripts`.
    pub fn from_scripts(scripts: impl IntoIterator<Item = ScriptBuf>) -> Self {
        let set = Self::new();
        for s in scripts {
            set.add_script(s);
        }
        set
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, WatchInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, WatchInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches `script`; false if it was already watched.
    pub fn add_script(&self, script: ScriptBuf) -> bool {
        let mut inner = self.write();
        let added = inner.scripts.insert(script);
        if added {
            inner.generation += 1;
        }
        added
    }

    /// Watches the output script of `address` (e.g. the anchor-funding or the bridge address).
    pub fn add_address(&self, address: &Address) -> bool {
        self.add_script(address.script_pubkey())
    }

    /// Watches the exact anchor script `OP_RETURN "KRAY" || root` (found only on servers that index
    /// `OP_RETURN` outputs; electrs does not).
    pub fn add_anchor_root(&self, root: &[u8; 32]) -> bool {
        self.add_script(kray_replayer::l1payload::anchor_script(root))
    }

    /// Stops watching `script`; false if it was not watched.
    pub fn remove_script(&self, script: &Script) -> bool {
        let mut inner = self.write();
        let removed = inner.scripts.remove(script);
        if removed {
            inner.generation += 1;
        }
        removed
    }

    /// The watched scripts, sorted.
    pub fn scripts(&self) -> Vec<ScriptBuf> {
        self.read().scripts.iter().cloned().collect()
    }

    /// How many scripts are watched.
    pub fn len(&self) -> usize {
        self.read().scripts.len()
    }

    /// True when nothing is watched (every partial block is then header-only).
    pub fn is_empty(&self) -> bool {
        self.read().scripts.is_empty()
    }

    /// The scripts and a counter that changes with every edit.
    fn snapshot(&self) -> (u64, Vec<ScriptBuf>) {
        let inner = self.read();
        (inner.generation, inner.scripts.iter().cloned().collect())
    }
}

/// Histories of the watch set as read at one tip: confirmed txids by height.
#[derive(Debug)]
struct Histories {
    tip: BlockHash,
    generation: u64,
    by_height: BTreeMap<u32, BTreeSet<Txid>>,
}

#[derive(Debug)]
struct Cache {
    headers: HashMap<BlockHash, (u32, Header)>,
    /// Parent hash -> child hash, for the headers in `headers`.
    children: HashMap<BlockHash, BlockHash>,
    header_order: VecDeque<BlockHash>,
    header_cap: usize,
    txs: HashMap<Txid, Transaction>,
    tx_order: VecDeque<Txid>,
    tx_cap: usize,
    histories: Option<Histories>,
}

impl Cache {
    fn new(config: &ElectrumConfig) -> Self {
        Self {
            headers: HashMap::new(),
            children: HashMap::new(),
            header_order: VecDeque::new(),
            header_cap: config.header_cache.max(1),
            txs: HashMap::new(),
            tx_order: VecDeque::new(),
            tx_cap: config.tx_cache.max(1),
            histories: None,
        }
    }

    fn remember_header(&mut self, height: u32, header: Header) {
        let hash = header.block_hash();
        if self.headers.insert(hash, (height, header)).is_none() {
            self.header_order.push_back(hash);
        }
        self.children.insert(header.prev_blockhash, hash);
        while self.header_order.len() > self.header_cap {
            if let Some(old) = self.header_order.pop_front() {
                if let Some((_, h)) = self.headers.remove(&old) {
                    if self.children.get(&h.prev_blockhash) == Some(&old) {
                        self.children.remove(&h.prev_blockhash);
                    }
                }
            }
        }
    }

    fn remember_tx(&mut self, txid: Txid, tx: Transaction) {
        if self.txs.insert(txid, tx).is_none() {
            self.tx_order.push_back(txid);
        }
        while self.tx_order.len() > self.tx_cap {
            if let Some(old) = self.tx_order.pop_front() {
                self.txs.remove(&old);
            }
        }
    }
}

/// A [`ChainSource`] over an Electrum server whose blocks hold only watched transactions (see the
/// module documentation). Cheap to clone: clones share the connection, the caches and the watch set.
#[derive(Debug)]
pub struct ElectrumSource<A = TcpElectrum> {
    api: Arc<A>,
    watch: WatchSet,
    config: ElectrumConfig,
    cache: Arc<Mutex<Cache>>,
}

impl<A> Clone for ElectrumSource<A> {
    fn clone(&self) -> Self {
        Self { api: self.api.clone(), watch: self.watch.clone(), config: self.config, cache: self.cache.clone() }
    }
}

impl ElectrumSource<TcpElectrum> {
    /// A source for the Electrum server at `url` (`tcp://host:port` or `host:port`) watching `watch`.
    /// Connects on the first call, and again after a connection failure.
    pub fn new(url: &str, watch: WatchSet, config: ElectrumConfig) -> Result<Self, ChainError> {
        let api = TcpElectrum::new(url, config.timeout).map_err(|e| map_api("electrum url", e))?;
        Ok(Self::with_api(api, watch, config))
    }
}

fn map_api(what: &str, e: ApiError) -> ChainError {
    match e {
        ApiError::Transport(m) => ChainError::Unreachable(format!("{what}: {m}")),
        ApiError::Server(m) => ChainError::Rpc(format!("{what}: {m}")),
        ApiError::Invalid(m) => ChainError::Invalid(format!("{what}: {m}")),
    }
}

fn info(height: u32, header: &Header) -> HeaderInfo {
    HeaderInfo { height, hash: header.block_hash(), prev_hash: header.prev_blockhash }
}

fn check_pow(height: u32, header: &Header) -> Result<(), ChainError> {
    header
        .validate_pow(header.target())
        .map(|_| ())
        .map_err(|e| ChainError::Invalid(format!("header at {height} ({}): {e}", header.block_hash())))
}

impl<A: ElectrumApi> ElectrumSource<A> {
    /// A source over `api` (a [`TcpElectrum`], or a scripted fake in tests).
    pub fn with_api(api: A, watch: WatchSet, config: ElectrumConfig) -> Self {
        let cache = Arc::new(Mutex::new(Cache::new(&config)));
        Self { api: Arc::new(api), watch, config, cache }
    }

    /// The watch set (shared: edits apply to blocks fetched afterwards).
    pub fn watch_set(&self) -> &WatchSet {
        &self.watch
    }

    /// The Electrum API this source calls.
    pub fn api(&self) -> &A {
        &self.api
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a blocking call on the blocking pool under the timeout; the outer error is the runtime's
    /// (timeout, failed task), the inner one the call's.
    async fn call_raw<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&A) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<Result<T, ApiError>, ChainError> {
        let api = self.api.clone();
        let task = tokio::task::spawn_blocking(move || f(&api));
        match tokio::time::timeout(self.config.timeout, task).await {
            Err(_) => Err(ChainError::Unreachable(format!("{what}: no answer within {:?}", self.config.timeout))),
            Ok(Err(join)) => Err(ChainError::Rpc(format!("{what}: call failed: {join}"))),
            Ok(Ok(result)) => Ok(result),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&A) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ChainError> {
        self.call_raw(what, f).await?.map_err(|e| map_api(what, e))
    }

    async fn fetch_tip(&self) -> Result<(u32, Header), ChainError> {
        let (height, header) = self.call("blockchain.headers.subscribe", |a| a.tip()).await?;
        check_pow(height, &header)?;
        self.cache().remember_header(height, header);
        Ok((height, header))
    }

    /// The header at `height`; a server error (a height beyond its tip) is `HeightNotFound`.
    async fn fetch_header(&self, height: u32) -> Result<Header, ChainError> {
        let header = match self.call_raw("blockchain.block.header", move |a| a.header(height)).await? {
            Ok(header) => header,
            Err(ApiError::Server(why)) => {
                tracing::debug!(height, %why, "no header at this height");
                return Err(ChainError::HeightNotFound(height));
            }
            Err(e) => return Err(map_api("blockchain.block.header", e)),
        };
        check_pow(height, &header)?;
        self.cache().remember_header(height, header);
        Ok(header)
    }

    /// The txids of watched transactions confirmed in block `hash` at `height`, read from histories
    /// that belong to one tip on which `hash` is at `height`.
    async fn watched_txids(&self, height: u32, hash: BlockHash) -> Result<(BlockHash, BTreeSet<Txid>), ChainError> {
        let (generation, scripts) = self.watch.snapshot();
        let (tip_height, tip_header) = self.fetch_tip().await?;
        let tip = tip_header.block_hash();
        if tip_height < height {
            return Err(ChainError::BlockNotFound(hash));
        }
        let at = if tip_height == height { tip_header } else { self.fetch_header(height).await? };
        if at.block_hash() != hash {
            tracing::debug!(height, %hash, "block no longer on the server's best chain");
            return Err(ChainError::BlockNotFound(hash));
        }
        let cached = {
            let cache = self.cache();
            cache
                .histories
                .as_ref()
                .filter(|h| h.tip == tip && h.generation == generation)
                .map(|h| h.by_height.get(&height).cloned().unwrap_or_default())
        };
        let txids = match cached {
            Some(txids) => txids,
            None => {
                let histories = self.call("blockchain.scripthash.get_history", move |a| a.histories(&scripts)).await?;
                let mut by_height: BTreeMap<u32, BTreeSet<Txid>> = BTreeMap::new();
                for entry in histories.into_iter().flatten() {
                    // Mempool entries (0, -1) are not in any block.
                    if let Ok(h) = u32::try_from(entry.height) {
                        if h > 0 {
                            by_height.entry(h).or_default().insert(entry.txid);
                        }
                    }
                }
                let txids = by_height.get(&height).cloned().unwrap_or_default();
                self.cache().histories = Some(Histories { tip, generation, by_height });
                txids
            }
        };
        // The block check (and perhaps the histories) came after the first tip read: the tip must not
        // have moved, or they may describe another chain.
        let (_, again) = self.fetch_tip().await?;
        if again.block_hash() != tip {
            tracing::debug!(height, %hash, "the server's tip moved while reading; retry");
            return Err(ChainError::BlockNotFound(hash));
        }
        Ok((tip, txids))
    }

    /// A proof failed: transient if the server's tip moved since `tip` (a reorg under our feet),
    /// otherwise the server is lying or broken.
    async fn proof_failure(&self, hash: BlockHash, tip: BlockHash, why: String) -> ChainError {
        match self.fetch_tip().await {
            Ok((_, now)) if now.block_hash() == tip => ChainError::Invalid(format!("block {hash}: {why}")),
            Ok(_) => {
                tracing::info!(%hash, %why, "proof failed while the chain moved; retry");
                ChainError::BlockNotFound(hash)
            }
            Err(e) => e,
        }
    }
}

impl<A: ElectrumApi> ChainSource for ElectrumSource<A> {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let (height, header) = self.fetch_tip().await?;
        Ok(ChainTip { height, hash: header.block_hash(), headers: height })
    }

    async fn header_at(&self, height: u32) -> Result<HeaderInfo, ChainError> {
        let header = self.fetch_header(height).await?;
        Ok(info(height, &header))
    }

    async fn header(&self, hash: BlockHash) -> Result<HeaderInfo, ChainError> {
        let child_height = {
            let cache = self.cache();
            if let Some((height, header)) = cache.headers.get(&hash) {
                return Ok(info(*height, header));
            }
            cache.children.get(&hash).and_then(|child| cache.headers.get(child)).map(|(h, _)| *h)
        };
        // The parent of a header we served: read the height below and check it is this block.
        match child_height.and_then(|h| h.checked_sub(1)) {
            Some(height) => {
                let header = self.fetch_header(height).await?;
                if header.block_hash() == hash {
                    Ok(info(height, &header))
                } else {
                    Err(ChainError::BlockNotFound(hash))
                }
            }
            None => Err(ChainError::BlockNotFound(hash)),
        }
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, ChainError> {
        let known = self.cache().headers.get(&hash).copied();
        let Some((height, header)) = known else {
            return Err(ChainError::BlockNotFound(hash));
        };
        let (tip, txids) = self.watched_txids(height, hash).await?;
        let txids: Vec<Txid> = txids.into_iter().collect();
        if txids.is_empty() {
            return Ok(Block { header, txdata: Vec::new() });
        }

        let missing: Vec<Txid> = {
            let cache = self.cache();
            txids.iter().filter(|t| !cache.txs.contains_key(*t)).copied().collect()
        };
        if !missing.is_empty() {
            let wanted = missing.clone();
            let fetched = self.call("blockchain.transaction.get", move |a| a.transactions(&wanted)).await?;
            let mut cache = self.cache();
            for (txid, tx) in missing.into_iter().zip(fetched) {
                let got = tx.compute_txid();
                if got != txid {
                    return Err(ChainError::Invalid(format!("asked for transaction {txid}, got {got}")));
                }
                cache.remember_tx(txid, tx);
            }
        }
        let txs: Vec<Transaction> = {
            let cache = self.cache();
            txids
                .iter()
                .map(|t| {
                    cache.txs.get(t).cloned().ok_or_else(|| ChainError::Rpc(format!("transaction {t} left the cache")))
                })
                .collect::<Result<_, _>>()?
        };

        let wanted = txids.clone();
        let proofs = self.call("blockchain.transaction.get_merkle", move |a| a.merkle_proofs(&wanted, height)).await?;
        if proofs.len() != txs.len() {
            return Err(ChainError::Invalid(format!("{} merkle proofs for {} transactions", proofs.len(), txs.len())));
        }
        let mut placed: BTreeMap<u32, Transaction> = BTreeMap::new();
        for (tx, proof) in txs.into_iter().zip(proofs) {
            let txid = tx.compute_txid();
            let checked = if proof.block_height != height {
                Err(format!("transaction {txid} proven at height {} instead of {height}", proof.block_height))
            } else {
                merkle::verify_inclusion(&tx, &proof, &header.merkle_root)
                    .map_err(|e| format!("transaction {txid}: {e}"))
            };
            if let Err(why) = checked {
                return Err(self.proof_failure(hash, tip, why).await);
            }
            if placed.insert(proof.pos, tx).is_some() {
                return Err(ChainError::Invalid(format!("block {hash}: two transactions at position {}", proof.pos)));
            }
        }
        tracing::debug!(height, %hash, txs = placed.len(), "partial block built from watched transactions");
        Ok(Block { header, txdata: placed.into_values().collect() })
    }
}
