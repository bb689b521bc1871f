//! L1 facts from a bitcoind node: moved to `kray_devnet::node_facts` (the devnet's sequencer uses it too).
pub use kray_devnet::node_facts::NodeFacts;
