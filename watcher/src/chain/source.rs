//! The [`ChainSource`] trait: what the follower needs from an L1 backend.

use std::future::Future;

use bitcoin::{Block, BlockHash};

/// The best chain as a source sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip {
    /// Height of the best fully validated block.
    pub height: u32,
    /// Hash of the best fully validated block.
    pub hash: BlockHash,
    /// Height of the best header the source knows; above `height` the source is still downloading or
    /// validating blocks (it lags the network).
    pub headers: u32,
}

/// A block header reduced to what chain following needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderInfo {
    /// The block's height.
    pub height: u32,
    /// The block's hash.
    pub hash: BlockHash,
    /// The parent block's hash.
    pub prev_hash: BlockHash,
}

/// Errors of a [`ChainSource`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The source cannot be reached (connection refused, timeout, transport failure).
    #[error("chain source unreachable: {0}")]
    Unreachable(String),
    /// No block at this height on the source's best chain.
    #[error("no block at height {0} on the best chain")]
    HeightNotFound(u32),
    /// The source does not know this block (or no longer has its data).
    #[error("block {0} not found")]
    BlockNotFound(BlockHash),
    /// The source answered with an error.
    #[error("chain source error: {0}")]
    Rpc(String),
    /// The source refused the login (bitcoind's HTTP 401, or an unusable cookie file): not transient,
    /// the operator must fix the credentials (or bitcoind must rewrite its cookie).
    #[error("chain source rejected the credentials: {0}")]
    Unauthorized(String),
    /// The source answered with data that does not make sense (wrong hash, bad encoding).
    #[error("chain source returned invalid data: {0}")]
    Invalid(String),
}

impl ChainError {
    /// True for errors that mean "try again later" rather than a broken source: unreachable, or data
    /// that vanished in a reorg between two calls.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::HeightNotFound(_) | Self::BlockNotFound(_))
    }
}

/// A source of L1 chain data (bitcoind, a scripted chain for tests, later Electrum).
///
/// Implementations must be cheap to call repeatedly; the follower asks for the tip on every poll.
pub trait ChainSource: Send + Sync {
    /// The best chain tip and the best known header height.
    fn tip(&self) -> impl Future<Output = Result<ChainTip, ChainError>> + Send;

    /// The header at `height` on the source's best chain.
    fn header_at(&self, height: u32) -> impl Future<Output = Result<HeaderInfo, ChainError>> + Send;

    /// The header of block `hash` (which may be on a stale branch).
    fn header(&self, hash: BlockHash) -> impl Future<Output = Result<HeaderInfo, ChainError>> + Send;

    /// The full block `hash`.
    fn block(&self, hash: BlockHash) -> impl Future<Output = Result<Block, ChainError>> + Send;
}
