//! Fraud proofs: self-contained, versioned JSON documents that prove one fault of one batch to
//! anyone holding only the file (plus an L1 node for deposit facts). Size is O(txs × log accounts):
//! the proof carries the batch header, the txs it needs with Merkle inclusion against the header's
//! tx root, and inclusion proofs of only the touched state entries against the previous state root.

mod build;
mod verify;
mod witness;

pub use build::{build_proof, ProofBuildError};
pub use verify::{verify_proof, Proven, VerifyError};
pub use witness::{PartialState, StateWitness, TreeWitness};

use crate::batch::SignedHeader;
use crate::fault::FaultClass;
use crate::genesis::Chain;
use crate::hash::hexser;
use crate::merkle::MultiProof;
use serde::{Deserialize, Serialize};

/// The `format` tag of a proof file.
pub const PROOF_FORMAT: &str = "kray-fraud-proof";
/// The proof format version this code writes and reads.
pub const PROOF_VERSION: u32 = 1;

/// A fraud proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudProof {
    /// Always `kray-fraud-proof`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The fault proven.
    pub fault: FaultClass,
    /// The chain (its id is in the signed header, so it cannot be altered).
    pub chain: Chain,
    /// The faulty batch's signed header.
    pub batch: SignedHeader,
    /// What proves the fault.
    pub evidence: Evidence,
}

/// Canonical bytes of a tx, hex, at a position of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxAt {
    /// Position in the batch.
    pub index: u32,
    /// Canonical bytes.
    #[serde(with = "hexser::vec")]
    pub bytes: Vec<u8>,
}

/// The evidence, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Evidence {
    /// One tx that is faulty on its own (malformed, unsupported, wrong declared gas, pubkey/address
    /// mismatch, invalid signature), with its inclusion proof.
    Tx {
        /// The tx.
        tx: TxAt,
        /// Inclusion proof against the header's tx root.
        tx_proof: MultiProof,
    },
    /// Every tx of the batch as published, with the producer's data signature (wrong tx root or
    /// count; header gas total).
    AllTxs {
        /// All txs' canonical bytes, hex, in order.
        txs: Vec<TxAt>,
        /// The producer's signature over the data commitment of these txs.
        #[serde(with = "hexser")]
        data_signature: [u8; 64],
    },
    /// Txs `0..=k` and the pre-state entries they touch: re-execution shows the fault at tx `k`, or
    /// (when all txs are given and no tx faults) a wrong new state root.
    Execution {
        /// Txs from position 0, in order.
        txs: Vec<TxAt>,
        /// Their inclusion proof against the header's tx root.
        tx_proof: MultiProof,
        /// Inclusion proofs of the touched state entries against the header's previous state root.
        witness: StateWitness,
    },
    /// The previous signed header (absent for batch 1, whose predecessor is the genesis).
    Chain {
        /// The previous header.
        previous: Option<SignedHeader>,
    },
    /// A second signed header for the same batch id.
    Equivocation {
        /// The other header.
        other: SignedHeader,
    },
}

impl FraudProof {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
    /// Parse JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
    /// `sha256` of the compact JSON: the id under which the proof is stored, served and committed on L1.
    pub fn proof_hash(&self) -> crate::hash::Hash32 {
        crate::hash::sha256(&serde_json::to_vec(self).unwrap_or_default())
    }
}
