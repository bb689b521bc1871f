//! The sans-I/O follower: a bounded cache of the best chain's last headers, fork detection by parent
//! hash, and the ordered events that move a consumer from the old best chain to the new one.
//!
//! The core never talks to a node. [`Follower::plan`] says what to fetch given a source's tip,
//! [`Follower::is_known`] tells the fetcher where a branch joins the followed chain, and
//! [`Follower::apply`] turns a complete [`Update`] into events, all or nothing.

use std::collections::VecDeque;

use bitcoin::{Block, BlockHash};

use super::source::{ChainTip, HeaderInfo};

/// The fewest headers a follower keeps (one week of blocks).
pub const MIN_HEADER_CAPACITY: usize = 1_008;

/// How a [`Follower`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerConfig {
    /// The first height to follow (its block is the first connected).
    pub start_height: u32,
    /// Headers kept in memory; at least [`MIN_HEADER_CAPACITY`]. Older ones are evicted.
    pub header_capacity: usize,
    /// A reorg that disconnects more than this many blocks is reported as
    /// [`ChainEvent::ReorgBeyondFinality`].
    pub finality_depth: u32,
    /// Blocks connected per update at most (catch-up proceeds in steps of this size).
    pub max_blocks_per_update: u32,
}

impl FollowerConfig {
    /// A configuration with the defaults: 1,008 headers, finality depth 6, 100 blocks per update.
    pub fn new(start_height: u32) -> Self {
        Self { start_height, header_capacity: MIN_HEADER_CAPACITY, finality_depth: 6, max_blocks_per_update: 100 }
    }

    fn validate(&self) -> Result<(), FollowError> {
        if self.header_capacity < MIN_HEADER_CAPACITY {
            return Err(FollowError::Config(format!(
                "header_capacity {} is below the minimum {MIN_HEADER_CAPACITY}",
                self.header_capacity
            )));
        }
        if self.finality_depth as usize >= self.header_capacity {
            return Err(FollowError::Config(format!(
                "finality_depth {} must be below header_capacity {}",
                self.finality_depth, self.header_capacity
            )));
        }
        if self.max_blocks_per_update == 0 {
            return Err(FollowError::Config("max_blocks_per_update must be at least 1".into()));
        }
        Ok(())
    }
}

/// One step in moving a consumer to the new best chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    /// A reorg disconnects more blocks than the finality depth. Comes before that reorg's
    /// disconnections; following continues, acting should stop.
    ReorgBeyondFinality {
        /// Height of the last block common to both branches.
        fork_height: u32,
        /// Blocks disconnected.
        depth: u32,
        /// The tip that is being abandoned.
        old_tip: BlockHash,
        /// The new tip.
        new_tip: BlockHash,
    },
    /// A block leaves the best chain (tip first).
    Disconnected {
        /// Its height.
        height: u32,
        /// Its hash.
        hash: BlockHash,
    },
    /// A block joins the best chain (ascending).
    Connected {
        /// Its height.
        height: u32,
        /// Its hash.
        hash: BlockHash,
        /// The block.
        block: Block,
    },
}

/// What a follower wants next, given a source's tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The followed tip is the source's tip.
    UpToDate,
    /// The source knows headers it has no validated blocks for: it lags the network, do not judge.
    Lagging {
        /// The source's block height.
        blocks: u32,
        /// The source's best header height.
        headers: u32,
    },
    /// The source's chain has not reached the start height yet.
    BeforeStart {
        /// The source's tip height.
        tip: u32,
    },
    /// Fetch the source's header at `target_height` and walk back by parent hash until
    /// [`Follower::is_known`] (or [`Follower::is_branch_root`]), then fetch the blocks.
    Fetch {
        /// The height to fetch up to (capped by `max_blocks_per_update`).
        target_height: u32,
    },
}

/// A branch to switch to: the last common block and the blocks above it, ascending.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The last block the branch shares with the followed chain (`None`: the branch starts at the
    /// start height on an empty follower).
    pub base: Option<(u32, BlockHash)>,
    /// The new blocks above `base`, ascending, each with its height.
    pub blocks: Vec<(u32, Block)>,
}

/// Errors of the follower core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The configuration is invalid.
    #[error("invalid follower configuration: {0}")]
    Config(String),
    /// Stored headers do not form a chain.
    #[error("stored headers are not a chain: {0}")]
    BadStoredHeaders(String),
    /// The update is not a chain linked to a known block.
    #[error("update does not connect: {0}")]
    Disconnected(String),
    /// The fork point is older than every cached header: the reorg is deeper than the cache.
    #[error("reorg below the header cache (oldest cached height {oldest}); restart from the store")]
    ReorgBeyondCache {
        /// The oldest cached height.
        oldest: u32,
    },
}

/// The sans-I/O chain follower.
#[derive(Debug, Clone)]
pub struct Follower {
    config: FollowerConfig,
    /// Contiguous ascending headers of the followed chain, at most `header_capacity`.
    headers: VecDeque<HeaderInfo>,
}

impl Follower {
    /// A fresh follower that will connect `config.start_height` first.
    pub fn new(config: FollowerConfig) -> Result<Self, FollowError> {
        config.validate()?;
        Ok(Self { config, headers: VecDeque::new() })
    }

    /// A follower resuming from stored headers (ascending and linked by parent hash; only the
    /// newest `header_capacity` are kept). The next update may disconnect some of them.
    pub fn from_headers(config: FollowerConfig, stored: Vec<HeaderInfo>) -> Result<Self, FollowError> {
        config.validate()?;
        for pair in stored.windows(2) {
            if pair[1].height != pair[0].height + 1 || pair[1].prev_hash != pair[0].hash {
                return Err(FollowError::BadStoredHeaders(format!(
                    "{} at {} does not follow {} at {}",
                    pair[1].hash, pair[1].height, pair[0].hash, pair[0].height
                )));
            }
        }
        let skip = stored.len().saturating_sub(config.header_capacity);
        let headers: VecDeque<HeaderInfo> = stored.into_iter().skip(skip).collect();
        Ok(Self { config, headers })
    }

    /// The configuration.
    pub fn config(&self) -> &FollowerConfig {
        &self.config
    }

    /// The followed tip, if any block was connected.
    pub fn tip(&self) -> Option<HeaderInfo> {
        self.headers.back().copied()
    }

    /// The cached headers, oldest first.
    pub fn headers(&self) -> impl Iterator<Item = &HeaderInfo> + '_ {
        self.headers.iter()
    }

    /// How many headers are cached.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    fn cached_at(&self, height: u32) -> Option<&HeaderInfo> {
        let oldest = self.headers.front()?.height;
        let index = usize::try_from(height.checked_sub(oldest)?).ok()?;
        self.headers.get(index)
    }

    /// True when `hash` at `height` is on the followed chain (within the cache).
    pub fn is_known(&self, height: u32, hash: &BlockHash) -> bool {
        self.cached_at(height).is_some_and(|h| h.hash == *hash)
    }

    /// True when a walk back has reached the bottom of what can be followed: an empty follower's
    /// start height. The branch then starts there with no base.
    pub fn is_branch_root(&self, header: &HeaderInfo) -> bool {
        self.headers.is_empty() && header.height <= self.config.start_height
    }

    /// The lowest height a walk back may reach; a branch that is still unknown below it forks deeper
    /// than the cache ([`FollowError::ReorgBeyondCache`]).
    pub fn walk_floor(&self) -> u32 {
        self.headers.front().map_or(self.config.start_height, |h| h.height)
    }

    /// What to fetch for the source's `tip`.
    pub fn plan(&self, tip: &ChainTip) -> Plan {
        if tip.headers > tip.height {
            return Plan::Lagging { blocks: tip.height, headers: tip.headers };
        }
        if tip.height < self.config.start_height {
            return Plan::BeforeStart { tip: tip.height };
        }
        match self.tip() {
            Some(ours) if ours.hash == tip.hash => Plan::UpToDate,
            Some(ours) => {
                let cap = ours.height.saturating_add(self.config.max_blocks_per_update);
                Plan::Fetch { target_height: tip.height.min(cap) }
            }
            None => {
                let cap = self.config.start_height.saturating_add(self.config.max_blocks_per_update - 1);
                Plan::Fetch { target_height: tip.height.min(cap) }
            }
        }
    }

    /// Switches to the branch in `update`, returning the events in order (a deep-reorg notice, then
    /// disconnections tip first, then connections ascending). Checks the whole update before
    /// changing anything: on error nothing changed and no event is produced.
    pub fn apply(&mut self, update: Update) -> Result<Vec<ChainEvent>, FollowError> {
        let (base_height, mut prev) = match update.base {
            Some((height, hash)) => {
                if !self.is_known(height, &hash) {
                    if self.headers.front().is_some_and(|h| height < h.height) {
                        return Err(FollowError::ReorgBeyondCache { oldest: self.walk_floor() });
                    }
                    return Err(FollowError::Disconnected(format!("base {hash} at {height} is not followed")));
                }
                (Some(height), Some(hash))
            }
            None => {
                if !self.headers.is_empty() {
                    return Err(FollowError::Disconnected("an update without base on a non-empty follower".into()));
                }
                (None, None)
            }
        };
        let first_height = base_height.map_or(self.config.start_height, |h| h + 1);
        let mut new_headers = Vec::with_capacity(update.blocks.len());
        for (expected_height, (height, block)) in (first_height..).zip(&update.blocks) {
            let hash = block.block_hash();
            let parent = block.header.prev_blockhash;
            if *height != expected_height {
                return Err(FollowError::Disconnected(format!("block {hash} at {height}, expected {expected_height}")));
            }
            if let Some(prev) = prev {
                if parent != prev {
                    return Err(FollowError::Disconnected(format!("block {hash} at {height} has parent {parent}")));
                }
            }
            new_headers.push(HeaderInfo { height: *height, hash, prev_hash: parent });
            prev = Some(hash);
        }

        let mut events = Vec::new();
        let keep = match base_height {
            Some(b) => self.headers.iter().take_while(|h| h.height <= b).count(),
            None => 0,
        };
        let depth = u32::try_from(self.headers.len() - keep).unwrap_or(u32::MAX);
        if depth > self.config.finality_depth {
            if let (Some(old), Some(new_tip)) = (self.tip(), new_headers.last().map(|h| h.hash).or(prev)) {
                let fork_height = base_height.unwrap_or(old.height.saturating_sub(depth));
                tracing::warn!(fork_height, depth, old_tip = %old.hash, %new_tip, "reorg deeper than the finality depth");
                events.push(ChainEvent::ReorgBeyondFinality { fork_height, depth, old_tip: old.hash, new_tip });
            }
        }
        while self.headers.len() > keep {
            if let Some(gone) = self.headers.pop_back() {
                tracing::info!(height = gone.height, hash = %gone.hash, "block disconnected");
                events.push(ChainEvent::Disconnected { height: gone.height, hash: gone.hash });
            }
        }
        for ((height, block), header) in update.blocks.into_iter().zip(new_headers) {
            tracing::debug!(height, hash = %header.hash, "block connected");
            events.push(ChainEvent::Connected { height, hash: header.hash, block });
            self.headers.push_back(header);
            if self.headers.len() > self.config.header_capacity {
                self.headers.pop_front();
            }
        }
        Ok(events)
    }
}
