//! The thin async driver: polls a [`ChainSource`], feeds the [`Follower`] core and hands its events
//! to a [`BlockSink`].

use std::future::Future;

use bitcoin::{Block, BlockHash};

use super::follower::{ChainEvent, FollowError, Follower, Plan, Update};
use super::source::{ChainError, ChainSource, HeaderInfo};

/// Where the driver delivers chain events; the store applies each one atomically (a block's effects
/// and the cursor in one transaction).
pub trait BlockSink: Send {
    /// The sink's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Block `hash` at `height` joins the best chain (called in ascending order).
    fn connect(
        &mut self,
        height: u32,
        hash: BlockHash,
        block: &Block,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Block `hash` at `height` leaves the best chain (called tip first).
    fn disconnect(&mut self, height: u32, hash: BlockHash) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A reorg deeper than the finality depth is about to be applied ([`ChainEvent::ReorgBeyondFinality`]).
    /// The default does nothing beyond the driver's own log line.
    fn reorg_beyond_finality(
        &mut self,
        fork_height: u32,
        depth: u32,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (fork_height, depth);
        async { Ok(()) }
    }
}

/// Why the follower cannot trust the source right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagReason {
    /// The source is unreachable.
    Unreachable(String),
    /// The source knows more headers than it has validated blocks.
    HeadersAhead {
        /// Its block height.
        blocks: u32,
        /// Its header height.
        headers: u32,
    },
}

/// The outcome of one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowStatus {
    /// The followed tip equals the source's tip.
    Synced {
        /// The tip height.
        height: u32,
        /// The tip hash.
        hash: BlockHash,
    },
    /// Blocks were applied but the source is further ahead; poll again.
    CatchingUp {
        /// The followed height.
        height: u32,
        /// The source's height.
        target: u32,
    },
    /// The source lags or is unreachable: no events, "cannot verify yet".
    Lagging(LagReason),
    /// The source's chain is below the configured start height.
    BeforeStart {
        /// The source's height.
        tip: u32,
    },
    /// The source's chain changed while fetching; nothing was applied, poll again.
    Retry(String),
}

/// Errors of the driver (lagging and unreachable sources are statuses, not errors).
#[derive(Debug, thiserror::Error)]
pub enum DriverError<E: std::error::Error + 'static> {
    /// The source failed in a way retrying will not fix.
    #[error(transparent)]
    Source(ChainError),
    /// The follower core refused the update (e.g. a reorg below the header cache).
    #[error(transparent)]
    Follow(#[from] FollowError),
    /// The sink failed. The follower has already moved; rebuild it from the store's headers
    /// ([`Follower::from_headers`]) before polling again.
    #[error("block sink: {0}")]
    Sink(#[source] E),
}

/// Polls a source and drives a [`Follower`].
#[derive(Debug)]
pub struct ChainDriver<S> {
    source: S,
    follower: Follower,
    deep_reorgs: u32,
}

impl<S: ChainSource> ChainDriver<S> {
    /// A driver for `follower` reading `source`.
    pub fn new(source: S, follower: Follower) -> Self {
        Self { source, follower, deep_reorgs: 0 }
    }

    /// The follower core.
    pub fn follower(&self) -> &Follower {
        &self.follower
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// How many reorgs deeper than the finality depth were seen (acting should stop after one).
    pub fn deep_reorgs(&self) -> u32 {
        self.deep_reorgs
    }

    /// One poll: reads the source's tip, fetches at most `max_blocks_per_update` blocks of the new
    /// branch and hands the events to `sink`, all or nothing as far as the source is concerned.
    pub async fn poll_once<K: BlockSink>(&mut self, sink: &mut K) -> Result<FollowStatus, DriverError<K::Error>> {
        let tip = match self.source.tip().await {
            Ok(tip) => tip,
            Err(ChainError::Unreachable(why)) => {
                tracing::warn!(%why, "chain source unreachable");
                return Ok(FollowStatus::Lagging(LagReason::Unreachable(why)));
            }
            Err(e) => return Err(DriverError::Source(e)),
        };
        let target_height = match self.follower.plan(&tip) {
            Plan::UpToDate => return Ok(FollowStatus::Synced { height: tip.height, hash: tip.hash }),
            Plan::Lagging { blocks, headers } => {
                tracing::warn!(blocks, headers, "chain source lags its headers: cannot verify yet");
                return Ok(FollowStatus::Lagging(LagReason::HeadersAhead { blocks, headers }));
            }
            Plan::BeforeStart { tip } => return Ok(FollowStatus::BeforeStart { tip }),
            Plan::Fetch { target_height } => target_height,
        };
        let update = match self.fetch(target_height).await {
            Ok(update) => update,
            Err(FetchError::Follow(e)) => return Err(DriverError::Follow(e)),
            Err(FetchError::Source(ChainError::Unreachable(why))) => {
                tracing::warn!(%why, "chain source unreachable while fetching");
                return Ok(FollowStatus::Lagging(LagReason::Unreachable(why)));
            }
            Err(FetchError::Source(e)) if e.is_transient() => {
                tracing::info!(error = %e, "chain changed while fetching; retrying");
                return Ok(FollowStatus::Retry(e.to_string()));
            }
            Err(FetchError::Source(e)) => return Err(DriverError::Source(e)),
        };
        let events = self.follower.apply(update)?;
        for event in events {
            match event {
                ChainEvent::ReorgBeyondFinality { fork_height, depth, .. } => {
                    self.deep_reorgs += 1;
                    sink.reorg_beyond_finality(fork_height, depth).await.map_err(DriverError::Sink)?;
                }
                ChainEvent::Disconnected { height, hash } => {
                    sink.disconnect(height, hash).await.map_err(DriverError::Sink)?;
                }
                ChainEvent::Connected { height, hash, block } => {
                    sink.connect(height, hash, &block).await.map_err(DriverError::Sink)?;
                }
            }
        }
        match self.follower.tip() {
            Some(ours) if ours.hash == tip.hash => Ok(FollowStatus::Synced { height: ours.height, hash: ours.hash }),
            Some(ours) => Ok(FollowStatus::CatchingUp { height: ours.height, target: tip.height }),
            None => Ok(FollowStatus::Retry("nothing connected".into())),
        }
    }

    /// Polls until the status is no longer [`FollowStatus::CatchingUp`] (or `max_polls` polls).
    pub async fn sync<K: BlockSink>(
        &mut self,
        sink: &mut K,
        max_polls: u32,
    ) -> Result<FollowStatus, DriverError<K::Error>> {
        let mut status = FollowStatus::Retry("not polled".into());
        for _ in 0..max_polls {
            status = self.poll_once(sink).await?;
            if !matches!(status, FollowStatus::CatchingUp { .. }) {
                break;
            }
        }
        Ok(status)
    }

    /// Walks back from the source's header at `target_height` to the followed chain, then fetches
    /// the new blocks.
    async fn fetch(&self, target_height: u32) -> Result<Update, FetchError> {
        let mut header = self.source.header_at(target_height).await?;
        let mut branch: Vec<HeaderInfo> = Vec::new();
        let base = loop {
            if self.follower.is_known(header.height, &header.hash) {
                break Some((header.height, header.hash));
            }
            if self.follower.tip().is_some() && header.height < self.follower.walk_floor() {
                return Err(FetchError::Follow(FollowError::ReorgBeyondCache { oldest: self.follower.walk_floor() }));
            }
            branch.push(header);
            if self.follower.is_branch_root(&header) {
                break None;
            }
            header = self.source.header(header.prev_hash).await?;
        };
        let mut blocks = Vec::with_capacity(branch.len());
        for header in branch.iter().rev() {
            let block = self.source.block(header.hash).await?;
            if block.block_hash() != header.hash {
                return Err(FetchError::Source(ChainError::Invalid(format!(
                    "asked for block {}, got {}",
                    header.hash,
                    block.block_hash()
                ))));
            }
            blocks.push((header.height, block));
        }
        Ok(Update { base, blocks })
    }
}

enum FetchError {
    Source(ChainError),
    Follow(FollowError),
}

impl From<ChainError> for FetchError {
    fn from(e: ChainError) -> Self {
        Self::Source(e)
    }
}
