//! A local KRAY L2 for demos and tests.
pub mod bitcoind;
pub mod l1tx;
pub mod rpc;
pub mod runes;
pub mod wallet;
pub mod workload;
