//! L1 chain following: a [`ChainSource`] trait with a bitcoind JSON-RPC backend
//! ([`BitcoindSource`]) and an in-memory one for tests ([`ScriptedChain`]); a sans-I/O [`Follower`]
//! that turns the source's best chain into ordered [`ChainEvent`]s (disconnections tip first, then
//! connections ascending, never half a reorg); and a thin async [`ChainDriver`] that polls the
//! source and hands the events to a [`BlockSink`].

pub mod bitcoind;
pub mod driver;
pub mod electrum;
pub mod follower;
pub mod scripted;
pub mod source;

pub use bitcoind::{AuthError, AuthStatus, BitcoindAuth, BitcoindRpc, BitcoindSource, RpcError};
pub use driver::{BlockSink, ChainDriver, DriverError, FollowStatus, LagReason};
pub use electrum::{ElectrumSource, WatchSet};
pub use follower::{ChainEvent, FollowError, Follower, FollowerConfig, Plan, Update, MIN_HEADER_CAPACITY};
pub use scripted::ScriptedChain;
pub use source::{ChainError, ChainSource, ChainTip, HeaderInfo};

#[cfg(test)]
mod tests;
