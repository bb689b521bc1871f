//! A local KRAY L2 for demos and tests.
pub mod api;
pub mod bitcoind;
pub mod faults;
pub mod flood;
pub mod guardian;
pub mod l1tx;
pub mod node_facts;
pub mod process;
pub mod rpc;
pub mod runes;
pub mod runner;
pub mod sequencer;
pub mod traffic;
pub mod wallet;
pub mod workload;
