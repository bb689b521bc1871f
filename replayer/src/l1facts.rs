//! L1 facts the replayer needs about Bitcoin (deposit outpoints, confirmations): an interface, so the
//! pure replayer can be fed by a node (the binary) or by a facts file (offline replay and tests).

use crate::address::AccountKey;
use crate::tx::OutPointRef;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use thiserror::Error;

/// What L1 says about one bridge deposit output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositFact {
    /// The outpoint.
    pub outpoint: OutPointRef,
    /// True when the output's scriptPubKey is the bridge's.
    pub to_bridge: bool,
    /// Rune amount (smallest units) the runestone assigns to this output.
    pub rune_amount: u64,
    /// The L2 account named by the deposit's `KRAY D` tag output.
    pub recipient: Option<AccountKey>,
    /// Height of the block that confirmed it.
    pub height: u32,
}

/// An L1 source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("L1 facts unavailable: {0}")]
pub struct L1Error(pub String);

/// A source of L1 facts.
pub trait L1Facts: Sync {
    /// Height of the source's best block: facts above it cannot be judged yet.
    fn tip_height(&self) -> Result<u32, L1Error>;
    /// The deposit fact for an outpoint, or `None` when L1 has no such output paying the rune.
    fn deposit(&self, outpoint: &OutPointRef) -> Result<Option<DepositFact>, L1Error>;
}

/// The L1 facts file (`l1-facts.json` beside a genesis), written by `gen-workload` and the devnet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L1FactsFile {
    /// Best block height the facts were read at.
    pub tip_height: u32,
    /// Bridge deposit outputs.
    #[serde(default)]
    pub deposits: Vec<DepositFact>,
}

/// An [`L1FactsFile`] indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct FileFacts {
    tip: u32,
    deposits: HashMap<OutPointRef, DepositFact>,
}

impl From<L1FactsFile> for FileFacts {
    fn from(f: L1FactsFile) -> Self {
        Self { tip: f.tip_height, deposits: f.deposits.into_iter().map(|d| (d.outpoint, d)).collect() }
    }
}

impl L1Facts for FileFacts {
    fn tip_height(&self) -> Result<u32, L1Error> {
        Ok(self.tip)
    }
    fn deposit(&self, outpoint: &OutPointRef) -> Result<Option<DepositFact>, L1Error> {
        Ok(self.deposits.get(outpoint).cloned())
    }
}
