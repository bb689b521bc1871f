//! The L1 index: chain following wired to the store, so every anchor of the best chain is a row and a
//! restart resumes exactly where the last run stopped.
//!
//! - [`StoreSink`] is the [`BlockSink`]: `connect` derives the block's effects (anchors, see
//!   [`crate::anchors`]; with a [`BridgeConfig`], the rune outputs, deposits and bridge spends, see
//!   [`crate::bridge`], whose input balances come from the store in one bulk lookup) and hands them
//!   with the header to [`Store::apply_block`] (one SQL transaction: header, effects, cursor);
//!   `disconnect(height, ..)` is [`Store::rollback_above`]`(height - 1)` (one SQL transaction).
//! - [`follower_from_store`] rebuilds a [`Follower`] from the store's headers
//!   ([`Follower::from_headers`]), so the follower and the store agree on the followed chain.
//! - [`L1Index`] owns a [`ChainDriver`] and a [`StoreSink`] and enforces the driver's rule: **after a
//!   sink error the follower has already moved past what the store holds, so it is rebuilt from the
//!   store before the next poll** ([`DriverError::Sink`]). Since each sink call is one transaction, the
//!   store is always at a block boundary, and the next poll re-fetches whatever the store lacks.
//!
//! A reorg whose fork point is below the oldest stored header cannot be applied, because
//! [`Store::rollback_above`] needs the fork point's header ([`StoreError::UnknownForkPoint`]). The
//! follower refuses such a reorg first ([`FollowError::ReorgBeyondCache`]) as long as its
//! `header_capacity` is not above the store's kept headers (both default to 1,008): keep it so.

use bitcoin::{Block, BlockHash};

use crate::anchors::anchor_effects;
use crate::bridge::{block_effects, block_input_txids, held_from_rows, BridgeConfig, Held};
use crate::chain::{
    BlockSink, ChainDriver, ChainError, ChainSource, DriverError, FollowError, FollowStatus, Follower, FollowerConfig,
    HeaderInfo,
};
use crate::store::{Effect, L1Header, Store, StoreError, CHAIN_STAGE};

/// Errors of the L1 index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The store failed (the failed block or rollback was not applied).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The follower core refused an update or the stored headers.
    #[error("follower: {0}")]
    Follow(#[from] FollowError),
    /// The chain source failed in a way retrying will not fix.
    #[error("chain source: {0}")]
    Source(ChainError),
    /// A stored header does not hold a valid block hash.
    #[error("stored header at {height}: bad hash {hash:?}")]
    BadStoredHash {
        /// The header's height.
        height: u64,
        /// The stored text.
        hash: String,
    },
    /// The store and the chain events disagree (e.g. disconnecting a block the store does not hold at
    /// its tip, or a cursor that is not the stored tip).
    #[error("store out of step with the chain: {0}")]
    Inconsistent(String),
}

/// The [`BlockSink`] writing each block's effects to the [`Store`].
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Store,
    bridge: Option<BridgeConfig>,
    /// Whether the checkpoint question is settled (seeded, or the store was not empty).
    seeded: bool,
}

impl StoreSink {
    /// A sink writing to `store` (anchors only).
    pub fn new(store: Store) -> Self {
        Self { store, bridge: None, seeded: false }
    }

    /// A sink that also tracks the rune and the bridge of `bridge` (`None`: anchors only). Its
    /// checkpoint, if any, is seeded with the first block applied to an empty store.
    pub fn with_bridge(store: Store, bridge: Option<BridgeConfig>) -> Self {
        Self { store, bridge, seeded: false }
    }

    /// The rune and bridge tracking configuration, if any.
    pub fn bridge(&self) -> Option<&BridgeConfig> {
        self.bridge.as_ref()
    }

    /// The bridge effects of `block`, preceded by the checkpoint's when the store is empty.
    async fn bridge_effects(
        &self,
        config: &BridgeConfig,
        height: u32,
        block: &Block,
    ) -> Result<Vec<Effect>, IndexError> {
        let mut effects = Vec::new();
        let rows = self.store.unspent_rune_outputs_of_txids(&block_input_txids(block)).await?;
        let mut held = held_from_rows(&rows);
        if !self.seeded && !config.checkpoint.is_empty() && self.store.tip_header().await?.is_none() {
            tracing::info!(height, outputs = config.checkpoint.len(), "seeding the rune checkpoint");
            effects.extend(config.checkpoint_effects());
            for c in &config.checkpoint {
                held.insert(c.outpoint, Held { script_pubkey: c.script_pubkey.clone(), amount: c.amount });
            }
        }
        effects.extend(block_effects(config, block, height, &held));
        Ok(effects)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl BlockSink for StoreSink {
    type Error = IndexError;

    async fn connect(&mut self, height: u32, hash: BlockHash, block: &Block) -> Result<(), IndexError> {
        let header = L1Header {
            height: u64::from(height),
            hash: hash.to_string(),
            prev_hash: block.header.prev_blockhash.to_string(),
        };
        let mut effects = anchor_effects(block, height, hash);
        if let Some(config) = &self.bridge {
            effects.extend(self.bridge_effects(config, height, block).await?);
        }
        self.store.apply_block(&header, &effects).await?;
        self.seeded = true;
        tracing::debug!(height, %hash, effects = effects.len(), "block indexed");
        Ok(())
    }

    async fn disconnect(&mut self, height: u32, hash: BlockHash) -> Result<(), IndexError> {
        let tip = self.store.tip_header().await?;
        let hash_text = hash.to_string();
        match tip {
            Some(tip) if tip.height == u64::from(height) && tip.hash == hash_text => {}
            other => {
                return Err(IndexError::Inconsistent(format!(
                    "disconnecting {hash} at {height}, but the stored tip is {other:?}"
                )))
            }
        }
        let fork = height
            .checked_sub(1)
            .ok_or_else(|| IndexError::Inconsistent("cannot disconnect the genesis block".into()))?;
        let undone = self.store.rollback_above(u64::from(fork)).await?;
        tracing::info!(height, %hash, anchors = undone.anchors, "block un-indexed");
        Ok(())
    }

    async fn reorg_beyond_finality(&mut self, fork_height: u32, depth: u32) -> Result<(), IndexError> {
        tracing::error!(fork_height, depth, "L1 reorg deeper than the finality depth: stop acting, keep watching");
        Ok(())
    }
}

fn parse_hash(height: u64, hash: &str) -> Result<BlockHash, IndexError> {
    hash.parse().map_err(|_| IndexError::BadStoredHash { height, hash: hash.to_string() })
}

/// A [`Follower`] for `config` that resumes from the store's headers: empty store, a fresh follower;
/// otherwise the stored headers (at most the store's kept window), whose tip must be the
/// [`CHAIN_STAGE`] cursor.
pub async fn follower_from_store(store: &Store, config: FollowerConfig) -> Result<Follower, IndexError> {
    let stored = store.headers_from(0).await?;
    let cursor = store.cursor(CHAIN_STAGE).await?;
    match (stored.last(), &cursor) {
        (None, None) => {
            tracing::info!(start_height = config.start_height, "empty store: following from the start height");
            return Ok(Follower::new(config)?);
        }
        (Some(tip), Some(c)) if tip.height == c.height && tip.hash == c.hash => {}
        (tip, c) => {
            return Err(IndexError::Inconsistent(format!("stored tip {tip:?} is not the chain cursor {c:?}")));
        }
    }
    let headers = stored
        .iter()
        .map(|h| {
            let height = u32::try_from(h.height)
                .map_err(|_| IndexError::Inconsistent(format!("stored height {} above u32", h.height)))?;
            Ok(HeaderInfo {
                height,
                hash: parse_hash(h.height, &h.hash)?,
                prev_hash: parse_hash(h.height, &h.prev_hash)?,
            })
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    let follower = Follower::from_headers(config, headers)?;
    if let Some(tip) = follower.tip() {
        let headers = follower.header_count();
        tracing::info!(height = tip.height, hash = %tip.hash, headers, "follower resumed from the store");
    }
    Ok(follower)
}

/// Chain following into the store, with the rebuild-after-sink-error rule applied.
#[derive(Debug)]
pub struct L1Index<S> {
    driver: ChainDriver<S>,
    sink: StoreSink,
    config: FollowerConfig,
    /// Deep reorgs counted by drivers replaced in rebuilds.
    earlier_deep_reorgs: u32,
}

impl<S: ChainSource + Clone> L1Index<S> {
    /// Opens the index on `store`, resuming from its headers ([`follower_from_store`]).
    pub async fn open(source: S, store: Store, config: FollowerConfig) -> Result<Self, IndexError> {
        Self::open_with_bridge(source, store, config, None).await
    }

    /// [`L1Index::open`], also tracking the rune and bridge of `bridge` (when `Some`). Start the
    /// follower (`config.start_height`) at the rune's etching height, or just above the checkpoint.
    pub async fn open_with_bridge(
        source: S,
        store: Store,
        config: FollowerConfig,
        bridge: Option<BridgeConfig>,
    ) -> Result<Self, IndexError> {
        let follower = follower_from_store(&store, config).await?;
        Ok(Self {
            driver: ChainDriver::new(source, follower),
            sink: StoreSink::with_bridge(store, bridge),
            config,
            earlier_deep_reorgs: 0,
        })
    }

    /// The follower core.
    pub fn follower(&self) -> &Follower {
        self.driver.follower()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.sink.store()
    }

    /// Reorgs deeper than the finality depth seen since opening.
    pub fn deep_reorgs(&self) -> u32 {
        self.earlier_deep_reorgs + self.driver.deep_reorgs()
    }

    /// Replaces the follower with one rebuilt from the store ([`follower_from_store`]).
    pub async fn rebuild(&mut self) -> Result<(), IndexError> {
        let follower = follower_from_store(self.sink.store(), self.config).await?;
        self.earlier_deep_reorgs += self.driver.deep_reorgs();
        self.driver = ChainDriver::new(self.driver.source().clone(), follower);
        Ok(())
    }

    /// One poll ([`ChainDriver::poll_once`]). On a sink error the follower is rebuilt from the store
    /// before the error is returned, so the next poll resumes from what the store holds.
    pub async fn poll_once(&mut self) -> Result<FollowStatus, IndexError> {
        let result = self.driver.poll_once(&mut self.sink).await;
        self.map(result).await
    }

    /// Polls until no longer catching up ([`ChainDriver::sync`]), with the same rebuild rule.
    pub async fn sync(&mut self, max_polls: u32) -> Result<FollowStatus, IndexError> {
        let result = self.driver.sync(&mut self.sink, max_polls).await;
        self.map(result).await
    }

    async fn map(&mut self, result: Result<FollowStatus, DriverError<IndexError>>) -> Result<FollowStatus, IndexError> {
        match result {
            Ok(status) => Ok(status),
            Err(DriverError::Source(e)) => Err(IndexError::Source(e)),
            Err(DriverError::Follow(e)) => Err(IndexError::Follow(e)),
            Err(DriverError::Sink(e)) => {
                tracing::error!(error = %e, "block sink failed; rebuilding the follower from the store");
                self.rebuild().await?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, Transaction, TxOut};

    use super::*;
    use crate::chain::ScriptedChain;

    fn anchor_tx(root: [u8; 32]) -> Transaction {
        let mut script = vec![0x6a, 36];
        script.extend_from_slice(b"KRAY");
        script.extend_from_slice(&root);
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: vec![TxOut { value: Amount::ZERO, script_pubkey: bitcoin::ScriptBuf::from_bytes(script) }],
        }
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open_sqlite(dir.path()).await.expect("store")
    }

    async fn cursor_height(store: &Store) -> Option<u64> {
        store.cursor(CHAIN_STAGE).await.expect("cursor").map(|c| c.height)
    }

    #[tokio::test]
    async fn a_sink_error_rebuilds_the_follower_from_the_store() {
        let chain = ScriptedChain::new();
        chain.extend(10);
        let dir = tempfile::tempdir().expect("dir");
        let store = store(&dir).await;
        let mut index = L1Index::open(chain.clone(), store.clone(), FollowerConfig::new(1)).await.expect("open");
        index.sync(10).await.expect("sync");
        assert_eq!(cursor_height(&store).await, Some(10));

        // The store loses blocks 8..10 behind the follower's back: the next connect does not extend.
        store.rollback_above(7).await.expect("rollback");
        chain.extend(1);
        let err = index.poll_once().await.expect_err("connect 11 on a store at 7");
        assert!(matches!(err, IndexError::Store(StoreError::NotExtending { .. })), "{err:?}");
        // Rebuilt: the follower is where the store is, and the next poll re-fetches what it lacks.
        assert_eq!(index.follower().tip().map(|t| t.height), Some(7));
        let status = index.sync(10).await.expect("sync");
        assert_eq!(status, FollowStatus::Synced { height: 11, hash: chain.hash_at(11).expect("hash") });
        assert_eq!(cursor_height(&store).await, Some(11));
        assert_eq!(store.header_count().await.expect("count"), 11);
    }

    #[tokio::test]
    async fn anchors_follow_reorgs_and_restarts_on_a_scripted_chain() {
        let chain = ScriptedChain::new();
        chain.extend(2);
        let dir = tempfile::tempdir().expect("dir");
        let mut index = L1Index::open(chain.clone(), store(&dir).await, FollowerConfig::new(1)).await.expect("open");
        let tx = anchor_tx([7; 32]);
        let in_block = chain.extend_with(vec![tx.clone()]);
        chain.extend(2);
        index.sync(10).await.expect("sync");
        let anchors = index.store().anchors().await.expect("anchors");
        assert_eq!(anchors.len(), 1);
        assert_eq!((anchors[0].height, &anchors[0].block_hash), (3, &in_block.to_string()));
        assert_eq!(anchors[0].outpoint, crate::store::Outpoint { txid: tx.compute_txid().to_string(), vout: 0 });

        // A 3-block reorg removes it.
        chain.fork(3, 4);
        index.sync(10).await.expect("sync");
        assert_eq!(index.store().anchors().await.expect("anchors"), vec![]);
        assert_eq!(cursor_height(index.store()).await, Some(6));

        // Restart from the same file, then the anchor is mined again.
        index.store().close().await;
        drop(index);
        let mut index = L1Index::open(chain.clone(), store(&dir).await, FollowerConfig::new(1)).await.expect("reopen");
        assert_eq!(index.follower().tip().map(|t| (t.height, t.hash)), Some((6, chain.hash_at(6).expect("hash"))));
        assert_eq!(index.follower().header_count(), 6);
        let again = chain.extend_with(vec![tx]);
        index.sync(10).await.expect("sync");
        let anchors = index.store().anchors().await.expect("anchors");
        assert_eq!(anchors.len(), 1);
        assert_eq!((anchors[0].height, &anchors[0].block_hash), (7, &again.to_string()));
        assert_eq!(cursor_height(index.store()).await, Some(7));
    }

    #[tokio::test]
    async fn a_checkpoint_is_seeded_once_and_deposits_follow_reorgs() {
        use bitcoin::hashes::Hash;
        use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
        use bitcoin::{Network, OutPoint, ScriptBuf, TxIn, Txid};
        use kray_replayer::bridge::{BridgeDescriptor, InternalKey};
        use kray_replayer::l1payload::deposit_tag_script;

        use crate::bridge::CheckpointOutput;

        let secp = Secp256k1::new();
        let keys: Vec<PublicKey> = (1u8..=3)
            .map(|i| {
                let mut b = [0u8; 32];
                b[31] = i;
                PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&b).expect("sk"))
            })
            .collect();
        let bridge = BridgeDescriptor::new(&keys, InternalKey::Nums).expect("bridge");
        let user = ScriptBuf::from_bytes([0x51, 0x20].into_iter().chain([9u8; 32]).collect());
        let seeded = OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 1 };
        let config = BridgeConfig::new(ordinals::RuneId { block: 1, tx: 1 }, &bridge, Network::Regtest)
            .with_checkpoint(vec![CheckpointOutput {
                outpoint: seeded,
                script_pubkey: user.clone(),
                value: Amount::from_sat(546),
                amount: 50,
            }]);
        let chain = ScriptedChain::new();
        chain.extend(2);
        let dir = tempfile::tempdir().expect("dir");
        let open = |store: Store| {
            L1Index::open_with_bridge(chain.clone(), store, FollowerConfig::new(1), Some(config.clone()))
        };
        let mut index = open(store(&dir).await).await.expect("open");
        index.sync(10).await.expect("sync");
        let seed_op = crate::store::Outpoint { txid: seeded.txid.to_string(), vout: 1 };
        let seed_row = index.store().rune_output(&seed_op).await.expect("row");
        assert_eq!(seed_row.map(|r| (r.height, r.amount)), Some((1, 50)));

        // A deposit of the seeded runes (no runestone: all to output 0, the bridge).
        let account = [0x11u8; 32];
        let deposit = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn { previous_output: seeded, ..TxIn::default() }],
            output: vec![
                TxOut { value: Amount::from_sat(546), script_pubkey: bridge.script_pubkey() },
                TxOut { value: Amount::ZERO, script_pubkey: deposit_tag_script(&account) },
            ],
        };
        chain.extend_with(vec![deposit.clone()]);
        index.sync(10).await.expect("sync");
        let deposits = index.store().bridge_deposits().await.expect("deposits");
        assert_eq!(deposits.len(), 1);
        assert_eq!(
            (deposits[0].0.amount, deposits[0].0.recipient.clone(), deposits[0].1),
            (50, Some(hex::encode(account)), 1)
        );

        // A 2-block reorg removes it and un-spends the seeded output; a restart does not seed again.
        chain.fork(2, 3);
        index.sync(10).await.expect("sync");
        assert_eq!(index.store().bridge_deposits().await.expect("deposits"), vec![]);
        let seed_row = index.store().rune_output(&seed_op).await.expect("row").expect("seed kept");
        assert_eq!((seed_row.spent_by, seed_row.height), (None, 1));
        index.store().close().await;
        drop(index);
        let mut index = open(store(&dir).await).await.expect("reopen");
        chain.extend_with(vec![deposit]);
        index.sync(10).await.expect("sync after restart: the seed is not inserted twice");
        let script = hex::encode(bridge.script_pubkey().as_bytes());
        assert_eq!(index.store().rune_balance_of_script(&script).await.expect("balance"), 50);
        assert_eq!(index.store().rune_balance_of_script(&hex::encode(user.as_bytes())).await.expect("balance"), 0);
    }

    #[tokio::test]
    async fn an_empty_store_starts_at_the_start_height() {
        let chain = ScriptedChain::new();
        chain.extend(5);
        let dir = tempfile::tempdir().expect("dir");
        let mut index = L1Index::open(chain.clone(), store(&dir).await, FollowerConfig::new(3)).await.expect("open");
        assert!(index.follower().tip().is_none());
        index.sync(10).await.expect("sync");
        let first = index.store().headers_from(0).await.expect("headers");
        assert_eq!(first.iter().map(|h| h.height).collect::<Vec<_>>(), vec![3, 4, 5]);
    }
}
