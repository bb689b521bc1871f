//! Fault classes: every way a batch can break the protocol, each provable by a fraud proof.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A class of protocol violation. The kebab-case names are part of the command line and proof format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultClass {
    /// A user tx whose BIP-340 signature does not verify (or whose pubkey is not a curve point).
    InvalidSignature,
    /// The `from` address is not the BIP-86 Taproot address of the signing pubkey.
    PubkeyAddressMismatch,
    /// The nonce is not the account's next nonce.
    BadNonce,
    /// The sender cannot pay `amount + gas`.
    InsufficientBalance,
    /// An amount or balance would exceed 2^64-1.
    Overflow,
    /// A tx's gas is not the profile's, the header's total gas is not the sum, or the Treasury was not
    /// credited the gas.
    WrongGas,
    /// A transfer to oneself created credits.
    SelfTransferInflation,
    /// A deposit credit for an outpoint that does not pay the rune to the bridge as claimed, or is not
    /// confirmed enough at the batch's L1 height.
    BadDeposit,
    /// A deposit outpoint credited a second time.
    DoubleDeposit,
    /// A withdrawal queued without burning `amount` from the sender.
    WithdrawalNotBurned,
    /// The header's new state root is not the result of executing the batch.
    WrongStateRoot,
    /// The header's tx root or tx count does not match the txs.
    WrongTxRoot,
    /// The batch does not extend the previous one (batch hash, state root or id).
    BrokenChain,
    /// Two different signed headers for one batch id.
    Equivocation,
    /// A tx that does not decode, has invalid fields or annotations, or has an unsupported type.
    MalformedTx,
}

impl FaultClass {
    /// Every class, in documentation order.
    pub const ALL: [FaultClass; 15] = [
        FaultClass::InvalidSignature,
        FaultClass::PubkeyAddressMismatch,
        FaultClass::BadNonce,
        FaultClass::InsufficientBalance,
        FaultClass::Overflow,
        FaultClass::WrongGas,
        FaultClass::SelfTransferInflation,
        FaultClass::BadDeposit,
        FaultClass::DoubleDeposit,
        FaultClass::WithdrawalNotBurned,
        FaultClass::WrongStateRoot,
        FaultClass::WrongTxRoot,
        FaultClass::BrokenChain,
        FaultClass::Equivocation,
        FaultClass::MalformedTx,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultClass::InvalidSignature => "invalid-signature",
            FaultClass::PubkeyAddressMismatch => "pubkey-address-mismatch",
            FaultClass::BadNonce => "bad-nonce",
            FaultClass::InsufficientBalance => "insufficient-balance",
            FaultClass::Overflow => "overflow",
            FaultClass::WrongGas => "wrong-gas",
            FaultClass::SelfTransferInflation => "self-transfer-inflation",
            FaultClass::BadDeposit => "bad-deposit",
            FaultClass::DoubleDeposit => "double-deposit",
            FaultClass::WithdrawalNotBurned => "withdrawal-not-burned",
            FaultClass::WrongStateRoot => "wrong-state-root",
            FaultClass::WrongTxRoot => "wrong-tx-root",
            FaultClass::BrokenChain => "broken-chain",
            FaultClass::Equivocation => "equivocation",
            FaultClass::MalformedTx => "malformed-tx",
        }
    }

    /// Parse a kebab-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault found in a batch: the first violation in protocol order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Class.
    pub class: FaultClass,
    /// The faulty batch.
    pub batch_id: u64,
    /// The faulty tx's position in the batch, for tx-level faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_index: Option<u32>,
    /// Human-readable explanation.
    pub reason: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tx_index {
            Some(i) => write!(f, "{} in batch {} tx {}: {}", self.class, self.batch_id, i, self.reason),
            None => write!(f, "{} in batch {}: {}", self.class, self.batch_id, self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for c in FaultClass::ALL {
            assert_eq!(FaultClass::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.as_str()));
        }
        assert_eq!(FaultClass::parse("nope"), None);
    }
}
