//! Fee policy (pure): the fee rate clamped between a floor and a cap, the next rate of an RBF bump,
//! and the local check of the BIP-125 replacement rules before a bump is sent.

use std::collections::BTreeSet;

use bitcoin::{Amount, FeeRate, OutPoint, Sequence, Transaction};
use thiserror::Error;

/// The fee settings of the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// Never pay less (also the rate used when bitcoind has no estimate, e.g. on regtest).
    pub floor: FeeRate,
    /// Never pay more, not even for a bump near a deadline.
    pub cap: FeeRate,
    /// `estimatesmartfee` confirmation target.
    pub conf_target: u16,
    /// The node's incremental relay fee (BIP-125 rule 4); Core's default is 1 sat/vB before v29.1.
    pub incremental_relay: FeeRate,
    /// A bump multiplies the old rate by this many percent at least (e.g. 150).
    pub bump_percent: u64,
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self {
            floor: FeeRate::from_sat_per_vb_u32(1),
            cap: FeeRate::from_sat_per_vb_u32(200),
            conf_target: 3,
            incremental_relay: FeeRate::from_sat_per_vb_u32(1),
            bump_percent: 150,
        }
    }
}

impl FeePolicy {
    /// The rate for a new transaction: the estimate clamped to `[floor, cap]`, the floor without one.
    pub fn clamp(&self, estimate: Option<FeeRate>) -> FeeRate {
        match estimate {
            None => self.floor,
            Some(rate) => rate.max(self.floor).min(self.cap.max(self.floor)),
        }
    }

    /// The rate of a bump of a tx paying `old_rate`: at least `bump_percent` of it, the old rate plus
    /// the incremental relay fee, and the current (clamped) estimate; never above the cap. `None`
    /// when the old rate is already at the cap (nothing left to bump).
    pub fn bump_rate(&self, old_rate: FeeRate, estimate: Option<FeeRate>) -> Option<FeeRate> {
        let kwu = old_rate.to_sat_per_kwu();
        let scaled = FeeRate::from_sat_per_kwu(kwu.saturating_mul(self.bump_percent) / 100);
        let plus_incr = FeeRate::from_sat_per_kwu(kwu.saturating_add(self.incremental_relay.to_sat_per_kwu()));
        let want = scaled.max(plus_incr).max(self.clamp(estimate));
        let new = want.min(self.cap);
        (new > old_rate).then_some(new)
    }
}

/// A BIP-125 replacement rule the candidate breaks (checked locally before sending).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Bip125Violation {
    /// The original has an input that does not signal replaceability (rule 1).
    #[error("input {0} of the original does not signal RBF")]
    OriginalNotSignaling(usize),
    /// The replacement does not signal, so it could not be bumped again.
    #[error("input {0} of the replacement does not signal RBF")]
    ReplacementNotSignaling(usize),
    /// The replacement spends none of the original's inputs: it replaces nothing.
    #[error("the replacement does not conflict with the original")]
    NoConflict,
    /// The replacement adds an input that is not confirmed (rule 2).
    #[error("the replacement adds the unconfirmed input {0}")]
    NewUnconfirmedInput(OutPoint),
    /// The absolute fee does not exceed the old one by the incremental relay fee × new vsize (rules 3, 4).
    #[error("absolute fee {new} must be at least {required} (old fee plus incremental relay fee for the new size)")]
    FeeTooLow {
        /// The replacement's fee.
        new: Amount,
        /// The minimum.
        required: Amount,
    },
    /// The fee rate does not exceed the original's (rule 6).
    #[error("fee rate must exceed the original's")]
    RateNotHigher,
}

/// Whether an input signals BIP-125 replaceability.
pub fn signals_rbf(sequence: Sequence) -> bool {
    sequence.is_rbf()
}

/// Checks that `new` (paying `new_fee`) may replace `old` (paying `old_fee`) under BIP-125, where
/// `confirmed` holds the outpoints known to be confirmed UTXOs (any input of `new` that `old` did not
/// spend must be one of them). Vsizes are those of the signed transactions.
pub fn check_replacement(
    old: &Transaction,
    old_fee: Amount,
    new: &Transaction,
    new_fee: Amount,
    incremental_relay: FeeRate,
    confirmed: &BTreeSet<OutPoint>,
) -> Result<(), Bip125Violation> {
    if let Some(i) = old.input.iter().position(|i| !signals_rbf(i.sequence)) {
        return Err(Bip125Violation::OriginalNotSignaling(i));
    }
    if let Some(i) = new.input.iter().position(|i| !signals_rbf(i.sequence)) {
        return Err(Bip125Violation::ReplacementNotSignaling(i));
    }
    let old_inputs: BTreeSet<OutPoint> = old.input.iter().map(|i| i.previous_output).collect();
    if !new.input.iter().any(|i| old_inputs.contains(&i.previous_output)) {
        return Err(Bip125Violation::NoConflict);
    }
    if let Some(i) =
        new.input.iter().find(|i| !old_inputs.contains(&i.previous_output) && !confirmed.contains(&i.previous_output))
    {
        return Err(Bip125Violation::NewUnconfirmedInput(i.previous_output));
    }
    let new_vsize = new.vsize() as u64;
    let incr = incremental_relay.fee_vb(new_vsize).unwrap_or(Amount::MAX);
    let required = old_fee.checked_add(incr).unwrap_or(Amount::MAX);
    if new_fee < required {
        return Err(Bip125Violation::FeeTooLow { new: new_fee, required });
    }
    // new_fee / new_vsize > old_fee / old_vsize, in integers.
    let old_vsize = old.vsize() as u128;
    if u128::from(new_fee.to_sat()) * old_vsize <= u128::from(old_fee.to_sat()) * u128::from(new_vsize) {
        return Err(Bip125Violation::RateNotHigher);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{ScriptBuf, TxIn, TxOut, Txid, Witness};

    fn vb(n: u32) -> FeeRate {
        FeeRate::from_sat_per_vb_u32(n)
    }

    fn policy() -> FeePolicy {
        FeePolicy { floor: vb(2), cap: vb(50), conf_target: 3, incremental_relay: vb(1), bump_percent: 150 }
    }

    fn op(n: u8) -> OutPoint {
        OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }
    }

    fn tx(inputs: &[OutPoint], seq: Sequence) -> Transaction {
        let mut w = Witness::new();
        w.push([0u8; 64]);
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .iter()
                .map(|o| TxIn { previous_output: *o, script_sig: ScriptBuf::new(), sequence: seq, witness: w.clone() })
                .collect(),
            output: vec![TxOut { value: Amount::from_sat(10_000), script_pubkey: ScriptBuf::new_op_return([1u8; 4]) }],
        }
    }

    #[test]
    fn clamp_uses_floor_without_estimate_and_caps() {
        let p = policy();
        assert_eq!(p.clamp(None), vb(2));
        assert_eq!(p.clamp(Some(vb(1))), vb(2));
        assert_eq!(p.clamp(Some(vb(7))), vb(7));
        assert_eq!(p.clamp(Some(vb(500))), vb(50));
    }

    #[test]
    fn bump_rate_grows_and_stops_at_cap() {
        let p = policy();
        assert_eq!(p.bump_rate(vb(2), None), Some(vb(3)));
        assert_eq!(p.bump_rate(vb(10), None), Some(vb(15)));
        assert_eq!(p.bump_rate(vb(10), Some(vb(30))), Some(vb(30)));
        assert_eq!(p.bump_rate(vb(40), None), Some(vb(50)));
        assert_eq!(p.bump_rate(vb(50), Some(vb(900))), None);
    }

    #[test]
    fn replacement_rules_are_checked() {
        let rbf = Sequence::ENABLE_RBF_NO_LOCKTIME;
        let old = tx(&[op(1)], rbf);
        let new = tx(&[op(1)], rbf);
        let size = new.vsize() as u64;
        let none = BTreeSet::new();
        let old_fee = Amount::from_sat(2 * size);
        // Enough: old fee + 1 sat/vB × size, higher rate.
        assert_eq!(check_replacement(&old, old_fee, &new, Amount::from_sat(3 * size), vb(1), &none), Ok(()));
        // Rule 4: one sat short.
        assert!(matches!(
            check_replacement(&old, old_fee, &new, Amount::from_sat(3 * size - 1), vb(1), &none),
            Err(Bip125Violation::FeeTooLow { .. })
        ));
        // Rule 1: the original does not signal.
        let final_seq = tx(&[op(1)], Sequence::MAX);
        assert_eq!(
            check_replacement(&final_seq, old_fee, &new, Amount::from_sat(9 * size), vb(1), &none),
            Err(Bip125Violation::OriginalNotSignaling(0))
        );
        assert_eq!(
            check_replacement(&old, old_fee, &final_seq, Amount::from_sat(9 * size), vb(1), &none),
            Err(Bip125Violation::ReplacementNotSignaling(0))
        );
        // No shared input.
        assert_eq!(
            check_replacement(&old, old_fee, &tx(&[op(2)], rbf), Amount::from_sat(9 * size), vb(1), &none),
            Err(Bip125Violation::NoConflict)
        );
        // Rule 2: a new input must be confirmed.
        let bigger = tx(&[op(1), op(3)], rbf);
        let fee = Amount::from_sat(9 * bigger.vsize() as u64);
        assert_eq!(
            check_replacement(&old, old_fee, &bigger, fee, vb(1), &none),
            Err(Bip125Violation::NewUnconfirmedInput(op(3)))
        );
        let confirmed: BTreeSet<OutPoint> = [op(3)].into_iter().collect();
        assert_eq!(check_replacement(&old, old_fee, &bigger, fee, vb(1), &confirmed), Ok(()));
        // Rule 6: a larger tx can pay more in total yet at a lower rate.
        let huge_old_fee = Amount::from_sat(40 * size);
        let fee6 = Amount::from_sat(40 * size + bigger.vsize() as u64);
        assert_eq!(
            check_replacement(&old, huge_old_fee, &bigger, fee6, vb(1), &confirmed),
            Err(Bip125Violation::RateNotHigher)
        );
    }
}
