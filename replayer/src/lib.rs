//! The KRAY L2 reference state machine: protocol types, canonical encoding, signatures, execution,
//! state and batch roots, and fraud proofs (build and verify). Pure: no I/O, no async runtime.
//!
//! The protocol is specified in `docs/protocol.md`; this crate is its reference implementation.

pub mod address;
pub mod batch;
pub mod bridge;
pub mod checkpoint;
pub mod encoding;
pub mod execute;
pub mod fault;
pub mod genesis;
pub mod hash;
pub mod l1facts;
pub mod l1payload;
pub mod merkle;
pub mod profile;
pub mod proof;
pub mod replay;
pub mod runes;
pub mod seal;
pub mod signature;
pub mod state;
pub mod tx;

pub use batch::{Batch, BatchHeader, SignedHeader};
pub use fault::{Fault, FaultClass};
pub use genesis::{Chain, Genesis};
pub use profile::Profile;
pub use replay::{Replayer, Verdict};
pub use state::State;
pub use tx::Tx;
