//! [`BitcoindSource`]: a [`ChainSource`] over bitcoind's JSON-RPC with `corepc-client`'s async client.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{Block, BlockHash};
use corepc_client::{Auth, Client};

use super::source::{ChainError, ChainSource, ChainTip, HeaderInfo};

/// bitcoind's `RPC_INVALID_ADDRESS_OR_KEY` (unknown block hash).
const RPC_NOT_FOUND: i64 = -5;
/// bitcoind's `RPC_INVALID_PARAMETER` (e.g. "Block height out of range").
const RPC_INVALID_PARAMETER: i64 = -8;

/// A bitcoind JSON-RPC chain source. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct BitcoindSource {
    client: Arc<Client>,
    timeout: Duration,
}

/// What went wrong in one call, before mapping to [`ChainError`].
struct CallError {
    transport: bool,
    code: Option<i64>,
    message: String,
}

macro_rules! call_error {
    ($e:expr) => {{
        let e = $e;
        CallError { transport: e.is_transport_error(), code: e.rpc_code(), message: format!("{e:?}") }
    }};
}

impl BitcoindSource {
    /// A source for the node at `url` (e.g. `http://127.0.0.1:18443`) with user and password;
    /// each call fails as unreachable after `timeout`.
    pub fn new(url: &str, user: &str, password: &str, timeout: Duration) -> Result<Self, ChainError> {
        let client = Client::new_with_auth(url, Auth::UserPass(user.to_owned(), password.to_owned()))
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        Ok(Self { client: Arc::new(client), timeout })
    }

    /// The underlying `corepc-client` client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn timed<T>(
        &self,
        what: impl Display,
        call: impl Future<Output = Result<T, CallError>>,
        not_found: ChainError,
    ) -> Result<T, ChainError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(ChainError::Unreachable(format!("{what}: no answer within {:?}", self.timeout))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.transport => Err(ChainError::Unreachable(format!("{what}: {}", e.message))),
            Ok(Err(e)) if matches!(e.code, Some(RPC_NOT_FOUND | RPC_INVALID_PARAMETER)) => Err(not_found),
            Ok(Err(e)) => Err(ChainError::Rpc(format!("{what}: {}", e.message))),
        }
    }
}

impl ChainSource for BitcoindSource {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let info = self
            .timed(
                "getblockchaininfo",
                async { self.client.get_blockchain_info().await.map_err(|e| call_error!(e)) },
                ChainError::Rpc("getblockchaininfo: not found".into()),
            )
            .await?;
        Ok(ChainTip { height: info.blocks, hash: info.best_block_hash, headers: info.headers })
    }

    async fn header_at(&self, height: u32) -> Result<HeaderInfo, ChainError> {
        let hash = self
            .timed(
                format!("getblockhash {height}"),
                async { self.client.get_block_hash(height).await.map_err(|e| call_error!(e)) },
                ChainError::HeightNotFound(height),
            )
            .await?;
        let header = self.header(hash).await?;
        if header.height != height {
            // The chain moved between the two calls.
            return Err(ChainError::HeightNotFound(height));
        }
        Ok(header)
    }

    async fn header(&self, hash: BlockHash) -> Result<HeaderInfo, ChainError> {
        let verbose = self
            .timed(
                format!("getblockheader {hash}"),
                async { self.client.get_block_header_verbose(&hash).await.map_err(|e| call_error!(e)) },
                ChainError::BlockNotFound(hash),
            )
            .await?;
        if verbose.hash != hash {
            return Err(ChainError::Invalid(format!("asked for header {hash}, got {}", verbose.hash)));
        }
        let prev_hash = match verbose.previous_block_hash {
            Some(prev) => prev,
            None if verbose.height == 0 => {
                use bitcoin::hashes::Hash;
                BlockHash::all_zeros()
            }
            None => return Err(ChainError::Invalid(format!("header {hash} at {} has no parent", verbose.height))),
        };
        Ok(HeaderInfo { height: verbose.height, hash, prev_hash })
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, ChainError> {
        let block = self
            .timed(
                format!("getblock {hash}"),
                async { self.client.get_block(&hash).await.map_err(|e| call_error!(e)) },
                ChainError::BlockNotFound(hash),
            )
            .await?;
        if block.block_hash() != hash {
            return Err(ChainError::Invalid(format!("asked for block {hash}, got {}", block.block_hash())));
        }
        Ok(block)
    }
}
