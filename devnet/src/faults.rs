//! Fault injection: every fault class of the replayer (applied to an honestly sealed batch, or by a
//! buggy sealer semantics) and the devnet's L1 faults, switchable at startup (`--fault NAME[@BATCH]`)
//! and at run time over the admin endpoint.

use bitcoin::key::Keypair;
use kray_replayer::batch::Batch;
use kray_replayer::execute::Semantics;
use kray_replayer::fault::FaultClass;
use kray_replayer::hash::Hash32;
use kray_replayer::merkle::root_of;
use kray_replayer::seal::Sealer;
use kray_replayer::tx::{tx_leaf, OutPointRef, Tx};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Amount an `insufficient-balance` injection claims (more than any devnet or workload balance).
const HUGE_AMOUNT: u64 = 1_000_000_000_000;

/// A fault the devnet can commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// A replayer fault class, injected into a batch (`credit-deposit-twice` is `double-deposit`).
    Batch(FaultClass),
    /// Stop anchoring batches from this one on (abandoned batches).
    StopAnchoring,
    /// Withhold a batch's data: anchored, but `404` on the API and no batch file.
    Withhold,
    /// Anchor a root that is not the batch's hash.
    WrongAnchor,
    /// Pay the next queued withdrawal at once, before its challenge window ends.
    PayEarly,
    /// Spend a bridge output to an unknown address with the federation's 2-of-3 (theft).
    Theft,
    /// Sweep a bridge output by the key path with one key (only with `--legacy-internal-key`).
    KeyPathSweep,
}

impl FaultKind {
    /// Every L1 fault name (the batch ones are the replayer's class names).
    pub const L1_NAMES: [&'static str; 7] =
        ["stop-anchoring", "withhold", "wrong-anchor", "credit-deposit-twice", "pay-early", "theft", "key-path-sweep"];

    /// Parse a fault name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop-anchoring" => FaultKind::StopAnchoring,
            "withhold" | "withhold-data" => FaultKind::Withhold,
            "wrong-anchor" | "anchor-wrong-root" => FaultKind::WrongAnchor,
            "credit-deposit-twice" => FaultKind::Batch(FaultClass::DoubleDeposit),
            "pay-early" => FaultKind::PayEarly,
            "theft" => FaultKind::Theft,
            "key-path-sweep" => FaultKind::KeyPathSweep,
            other => FaultKind::Batch(FaultClass::parse(other)?),
        })
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Batch(c) => c.as_str(),
            FaultKind::StopAnchoring => "stop-anchoring",
            FaultKind::Withhold => "withhold",
            FaultKind::WrongAnchor => "wrong-anchor",
            FaultKind::PayEarly => "pay-early",
            FaultKind::Theft => "theft",
            FaultKind::KeyPathSweep => "key-path-sweep",
        }
    }
}

/// A fault to commit: what, and at which batch (`None`: the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What.
    pub kind: FaultKind,
    /// Batch id (the first batch it applies to); `None` for the next batch.
    pub batch: Option<u64>,
}

/// A `--fault` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown fault {0:?} (use a replayer fault class or one of {names}, optionally @BATCH)", names = FaultKind::L1_NAMES.join(", "))]
pub struct FaultParseError(pub String);

impl std::str::FromStr for FaultSpec {
    type Err = FaultParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, at) = match s.split_once('@') {
            Some((n, b)) => {
                (n, Some(b.parse::<u64>().ok().filter(|b| *b > 0).ok_or_else(|| FaultParseError(s.into()))?))
            }
            None => (s, None),
        };
        let kind = FaultKind::parse(name.trim()).ok_or_else(|| FaultParseError(s.into()))?;
        Ok(FaultSpec { kind, batch: at })
    }
}

impl std::fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.batch {
            Some(b) => write!(f, "{}@{b}", self.kind.name()),
            None => write!(f, "{}", self.kind.name()),
        }
    }
}

/// A fault the devnet committed (for tests and the admin endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Fault name.
    pub fault: String,
    /// Batch it was committed in (or the last batch when it was an L1 action).
    pub batch_id: u64,
    /// An L1 txid, for L1 faults that broadcast one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txid: Option<String>,
}

/// Faults switched on, and those committed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Pending faults (a batch fault is removed once committed; `stop-anchoring` stays).
    pub pending: Vec<FaultSpec>,
    /// Committed faults, in order.
    pub committed: Vec<Committed>,
}

impl FaultPlan {
    /// Switch a fault on.
    pub fn add(&mut self, spec: FaultSpec) {
        self.pending.push(spec);
    }

    /// Whether `spec` is due at batch `batch_id`.
    fn due(spec: &FaultSpec, batch_id: u64) -> bool {
        spec.batch.is_none_or(|b| b <= batch_id)
    }

    /// The batch fault class due at `batch_id`, if any (not removed: call [`FaultPlan::commit`]).
    pub fn batch_fault(&self, batch_id: u64) -> Option<FaultClass> {
        self.pending.iter().filter(|s| Self::due(s, batch_id)).find_map(|s| match s.kind {
            FaultKind::Batch(c) => Some(c),
            _ => None,
        })
    }

    /// True when a fault of `kind` is due at `batch_id` (kept pending).
    pub fn is_due(&self, kind: FaultKind, batch_id: u64) -> bool {
        self.pending.iter().any(|s| s.kind == kind && Self::due(s, batch_id))
    }

    /// Record that `kind` was committed at `batch_id` and drop it from the pending list (except
    /// `stop-anchoring`, which is a state).
    pub fn commit(&mut self, kind: FaultKind, batch_id: u64, txid: Option<String>) {
        if kind != FaultKind::StopAnchoring {
            if let Some(i) = self.pending.iter().position(|s| s.kind == kind && Self::due(s, batch_id)) {
                self.pending.remove(i);
            }
        }
        if !self.committed.iter().any(|c| c.fault == kind.name() && kind == FaultKind::StopAnchoring) {
            self.committed.push(Committed { fault: kind.name().to_string(), batch_id, txid });
        }
    }
}

/// The sealer semantics that commits `class` (a known sequencer bug), or `Reference`.
pub fn semantics_for(class: Option<FaultClass>) -> Semantics {
    match class {
        Some(FaultClass::SelfTransferInflation) => Semantics::SelfTransferMints,
        Some(FaultClass::WithdrawalNotBurned) => Semantics::WithdrawalNotDebited,
        _ => Semantics::Reference,
    }
}

/// The tx a semantic fault needs in its batch (a self-transfer or a withdrawal by `addr`), signed.
pub fn exercising_tx(class: FaultClass, kp: &Keypair, addr: &str, nonce: u64, amount: u64) -> Option<Tx> {
    let tx_type = match class {
        FaultClass::SelfTransferInflation => "transfer",
        FaultClass::WithdrawalNotBurned => "withdrawal",
        _ => return None,
    };
    let mut tx = Tx::unsigned(tx_type, addr.to_string(), addr.to_string(), amount, nonce);
    tx.sign(kp);
    Some(tx)
}

/// Recompute the header's tx root, count and gas from the batch's txs and re-sign it.
pub fn reseal(batch: &mut Batch, sealer: &Sealer) {
    let mut h = batch.signed.header.clone();
    let leaves: Vec<Hash32> = batch.txs.iter().map(|t| tx_leaf(t)).collect();
    h.tx_root = root_of(&leaves);
    h.tx_count = batch.txs.len() as u32;
    h.total_gas = batch.txs.iter().map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0)).sum();
    batch.signed.header = h;
    sealer.resign_batch(batch);
}

/// Index of a user transfer in the batch to tamper with (the middle one).
fn victim(batch: &Batch) -> Option<(usize, Tx)> {
    let user: Vec<(usize, Tx)> = batch
        .txs
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Tx::decode(b).ok().map(|t| (i, t)))
        .filter(|(_, t)| t.tx_type == "transfer" && t.from != t.to)
        .collect();
    user.get(user.len() / 2).cloned()
}

/// Tamper with the honestly sealed `batch` so that it carries `class`, re-signing what the
/// producer publishes. `keys`/`addrs` are the users the sequencer can sign for; `first_deposit` is an
/// already credited deposit tx (for the deposit faults). Returns a second, conflicting batch for
/// `equivocation`. The semantic classes are committed by the sealer (see [`semantics_for`]), so they
/// change nothing here. Errors say why this batch cannot carry the fault (e.g. no user transfer).
pub fn inject(
    class: FaultClass,
    batch: &mut Batch,
    sealer: &Sealer,
    keys: &[Keypair],
    addrs: &[String],
    first_deposit: Option<&[u8]>,
) -> Result<Option<Batch>, String> {
    let err = |m: &str| m.to_string();
    let key_of = |addr: &str| addrs.iter().position(|a| a == addr).and_then(|i| keys.get(i).copied());
    let mut retx = |f: &mut dyn FnMut(&mut Tx) -> Result<(), String>| -> Result<(), String> {
        let (i, mut tx) = victim(batch).ok_or_else(|| err("the batch has no user transfer"))?;
        f(&mut tx)?;
        batch.txs[i] = tx.encode().map_err(|e| err(&e.to_string()))?;
        Ok(())
    };
    match class {
        FaultClass::InvalidSignature => retx(&mut |tx| {
            tx.signature[10] ^= 1;
            Ok(())
        })?,
        FaultClass::PubkeyAddressMismatch => retx(&mut |tx| {
            let other = keys.iter().find(|k| Some(**k) != key_of(&tx.from)).copied().ok_or_else(|| err("one user"))?;
            tx.sign(&other);
            Ok(())
        })?,
        FaultClass::BadNonce => retx(&mut |tx| {
            tx.nonce += 1;
            tx.sign(&key_of(&tx.from).ok_or_else(|| err("unknown sender"))?);
            Ok(())
        })?,
        FaultClass::InsufficientBalance => retx(&mut |tx| {
            tx.amount = HUGE_AMOUNT;
            tx.sign(&key_of(&tx.from).ok_or_else(|| err("unknown sender"))?);
            Ok(())
        })?,
        FaultClass::Overflow => retx(&mut |tx| {
            tx.amount = u64::MAX - tx.gas_fee + 1;
            tx.sign(&key_of(&tx.from).ok_or_else(|| err("unknown sender"))?);
            Ok(())
        })?,
        FaultClass::WrongGas => retx(&mut |tx| {
            tx.gas_fee = 0;
            Ok(())
        })?,
        FaultClass::MalformedTx => {
            let (i, _) = victim(batch).ok_or_else(|| err("the batch has no user transfer"))?;
            batch.txs[i].pop();
        }
        FaultClass::BadDeposit | FaultClass::DoubleDeposit => {
            let first = first_deposit.ok_or_else(|| err("no deposit was credited yet"))?;
            let mut tx = Tx::decode(first).map_err(|e| err(&e.to_string()))?;
            if class == FaultClass::BadDeposit {
                tx.from = OutPointRef { txid: [0xee; 32], vout: 7 }.to_string();
            }
            batch.txs.push(tx.encode().map_err(|e| err(&e.to_string()))?);
        }
        FaultClass::SelfTransferInflation | FaultClass::WithdrawalNotBurned => return Ok(None),
        FaultClass::WrongStateRoot => {
            let mut h = batch.signed.header.clone();
            h.new_state_root[0] ^= 1;
            batch.signed.header = h;
            sealer.resign_batch(batch);
            return Ok(None);
        }
        FaultClass::WrongTxRoot => {
            let mut h = batch.signed.header.clone();
            h.tx_root[0] ^= 1;
            batch.signed.header = h;
            sealer.resign_batch(batch);
            return Ok(None);
        }
        FaultClass::BrokenChain => {
            let mut h = batch.signed.header.clone();
            h.prev_batch_hash[0] ^= 1;
            batch.signed.header = h;
            sealer.resign_batch(batch);
            return Ok(None);
        }
        FaultClass::Equivocation => {
            let mut other = batch.clone();
            let mut h = other.signed.header.clone();
            h.l1_height += 1;
            other.signed.header = h;
            sealer.resign_batch(&mut other);
            return Ok(Some(other));
        }
    }
    reseal(batch, sealer);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse() {
        let s: FaultSpec = "bad-nonce@2".parse().unwrap();
        assert_eq!(s, FaultSpec { kind: FaultKind::Batch(FaultClass::BadNonce), batch: Some(2) });
        let s: FaultSpec = "theft".parse().unwrap();
        assert_eq!(s.kind, FaultKind::Theft);
        assert_eq!(s.to_string(), "theft");
        assert!("nope".parse::<FaultSpec>().is_err());
        assert!("bad-nonce@0".parse::<FaultSpec>().is_err());
        assert!("bad-nonce@x".parse::<FaultSpec>().is_err());
        let d: FaultSpec = "credit-deposit-twice@3".parse().unwrap();
        assert_eq!(d.kind, FaultKind::Batch(FaultClass::DoubleDeposit));
    }

    #[test]
    fn plan_commits_once() {
        let mut p = FaultPlan::default();
        p.add("stop-anchoring@4".parse().unwrap());
        p.add("bad-nonce@2".parse().unwrap());
        p.add("wrong-gas@6".parse().unwrap());
        assert_eq!(p.batch_fault(1), None);
        assert_eq!(p.batch_fault(2), Some(FaultClass::BadNonce));
        p.commit(FaultKind::Batch(FaultClass::BadNonce), 2, None);
        assert_eq!(p.batch_fault(3), None);
        assert!(!p.is_due(FaultKind::StopAnchoring, 3));
        assert!(p.is_due(FaultKind::StopAnchoring, 5));
        p.commit(FaultKind::StopAnchoring, 5, None);
        p.commit(FaultKind::StopAnchoring, 6, None);
        assert!(p.is_due(FaultKind::StopAnchoring, 7));
        assert_eq!(p.batch_fault(7), Some(FaultClass::WrongGas), "an L1 fault does not hide a batch fault");
        assert_eq!(p.committed.len(), 2);
    }
}
