//! Bridge judge (docs/protocol.md §15.1–15.4, §19.5): deposits credited once and in time, every bridge
//! spend a payout of a mature, unpaid withdrawal, the bridge solvent.
//!
//! Findings:
//! - `missing-credit` — a tagged deposit confirmed at height `c` (its `confirmations`-th block) is not
//!   credited, and the L2 has moved past it: a replayed batch declares `l1_height > c +
//!   deposit_grace_blocks`. Judged on the batches' declared heights, so a lagging L2 is not blamed for
//!   blocks it has not seen.
//! - `double-credit` — one outpoint credited by more than one deposit tx (the replayer also proves
//!   this as the `double-deposit` fault).
//! - `key-path-spend` — a bridge output spent by the key path: the highest alert, whatever it pays.
//! - `early-payout` — a payout matching an unpaid withdrawal (same scriptPubKey, same rune amount)
//!   confirmed at or before `anchor_height(B) + challenge_window_blocks`, for an unanchored batch, or
//!   for a batch at or after the first faulty one.
//! - `unknown-payout` — rune value leaving the bridge that matches no unpaid withdrawal (theft).
//! - `bridge-insolvent` — the bridge holds fewer rune units than the L2 owes.

use std::collections::BTreeMap;

use serde_json::json;

use super::finding;
pub use crate::store::SpendPath;
use crate::store::{Finding, Outpoint, Severity};

/// A bridge deposit output seen on L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositSeen {
    /// The bridge output.
    pub outpoint: Outpoint,
    /// Height of its block.
    pub height: u64,
    /// Rune units it holds.
    pub amount: u128,
    /// The L2 recipient from its `KRAY D` tag (hex account key); `None`: untagged, not creditable.
    pub recipient: Option<String>,
}

/// A deposit credited on L2 by a replayed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    /// The outpoint the deposit tx names.
    pub outpoint: Outpoint,
    /// The crediting batch.
    pub batch_id: u64,
}

/// A withdrawal executed on L2 (queued for payout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// The withdrawal tx id (hex).
    pub tx_id: String,
    /// The batch that executed it.
    pub batch_id: u64,
    /// The destination scriptPubKey (hex).
    pub script: String,
    /// The rune units to pay.
    pub amount: u128,
}

/// One output of a bridge-spending transaction that carries runes away from the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// Output index in the spending tx.
    pub vout: u32,
    /// Its scriptPubKey (hex).
    pub script: String,
    /// Rune units allocated to it.
    pub amount: u128,
}

/// A transaction spending bridge outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpend {
    /// The spending txid.
    pub txid: String,
    /// Its height.
    pub height: u64,
    /// The bridge outputs it spends, with how each was spent.
    pub inputs: Vec<(Outpoint, SpendPath)>,
    /// Its outputs carrying runes to other scripts than the bridge's.
    pub payouts: Vec<Payout>,
    /// Rune units its inputs carried that no output received (a cenotaph or an edict to nowhere).
    pub burned: u128,
}

/// The numbers and L2 context the bridge judge needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeParams {
    /// Deposit confirmations (profile).
    pub confirmations: u64,
    /// Deposit-credit grace (profile).
    pub deposit_grace_blocks: u64,
    /// Challenge window (profile).
    pub challenge_window_blocks: u64,
    /// Anchor height of each anchored batch.
    pub anchored: BTreeMap<u64, u64>,
    /// The first batch that is faulty or validly challenged: its withdrawals and all later ones are
    /// never mature.
    pub first_bad_batch: Option<u64>,
    /// The highest `l1_height` declared by a replayed batch.
    pub l2_l1_height: Option<u64>,
    /// Rune units the L2 owes in balances (converted to rune units); the judge adds the withdrawals
    /// not yet paid.
    pub liabilities: u128,
}

/// The result of [`judge_bridge`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BridgeReport {
    /// Findings that hold now.
    pub findings: Vec<Finding>,
    /// Rune units in unspent bridge outputs.
    pub balance: u128,
    /// Rune units owed by the L2: balances plus unpaid withdrawals.
    pub liabilities: u128,
    /// Withdrawal tx ids paid by a matching payout (mature or not), in payout order.
    pub paid: Vec<String>,
}

impl BridgeReport {
    /// Balance ÷ liabilities (`None` when nothing is owed).
    pub fn solvency_ratio(&self) -> Option<f64> {
        (self.liabilities > 0).then(|| self.balance as f64 / self.liabilities as f64)
    }
}

/// The block at which withdrawals of `batch_id` mature (payouts must be above it), if they can.
fn maturity(batch_id: u64, p: &BridgeParams) -> Option<u64> {
    if p.first_bad_batch.is_some_and(|bad| batch_id >= bad) {
        return None;
    }
    p.anchored.get(&batch_id).map(|a| a.saturating_add(p.challenge_window_blocks))
}

/// What the bridge judge looks at.
#[derive(Debug, Clone, Copy)]
pub struct BridgeInputs<'a> {
    /// Bridge deposits from the L1 index.
    pub deposits: &'a [DepositSeen],
    /// Rune units per unspent bridge output, from the L1 index.
    pub unspent: &'a [(Outpoint, u128)],
    /// Deposits credited by replayed batches.
    pub credits: &'a [Credit],
    /// Withdrawals executed by replayed batches.
    pub withdrawals: &'a [Withdrawal],
    /// Bridge spends from the L1 index.
    pub spends: &'a [BridgeSpend],
}

/// Judges the bridge at L1 height `tip`.
pub fn judge_bridge(inputs: BridgeInputs<'_>, tip: u64, p: &BridgeParams, now: i64) -> BridgeReport {
    let BridgeInputs { deposits, unspent, credits, withdrawals, spends } = inputs;
    let mut r = BridgeReport {
        balance: unspent.iter().map(|(_, a)| *a).sum(),
        liabilities: p.liabilities,
        ..BridgeReport::default()
    };
    let mut credited: BTreeMap<&Outpoint, Vec<u64>> = BTreeMap::new();
    for c in credits {
        credited.entry(&c.outpoint).or_default().push(c.batch_id);
    }
    for d in deposits {
        if d.recipient.is_none() {
            continue;
        }
        let confirmed_at = d.height.saturating_add(p.confirmations.saturating_sub(1));
        let by = credited.get(&d.outpoint).map(Vec::as_slice).unwrap_or_default();
        let due = confirmed_at.saturating_add(p.deposit_grace_blocks);
        if by.is_empty() && tip >= confirmed_at && p.l2_l1_height.is_some_and(|h| h > due) {
            r.findings.push(finding(
                "missing-credit",
                Severity::Warning,
                None,
                Some(d.outpoint.clone()),
                Some(due),
                json!({"amount": d.amount.to_string(), "recipient": d.recipient, "confirmed_at": confirmed_at,
                       "credit_due_by_l1_height": due, "l2_l1_height": p.l2_l1_height}),
                now,
            ));
        }
    }
    for (outpoint, by) in &credited {
        if by.len() > 1 {
            r.findings.push(finding(
                "double-credit",
                Severity::Critical,
                by.get(1).copied(),
                Some((*outpoint).clone()),
                None,
                json!({"credited_by_batches": by}),
                now,
            ));
        }
    }

    let mut unpaid: Vec<&Withdrawal> = withdrawals.iter().collect();
    let mut ordered: Vec<&BridgeSpend> = spends.iter().collect();
    ordered.sort_by(|a, b| (a.height, &a.txid).cmp(&(b.height, &b.txid)));
    for s in ordered {
        for (outpoint, path) in &s.inputs {
            if *path == SpendPath::KeyPath {
                r.findings.push(finding(
                    "key-path-spend",
                    Severity::Critical,
                    None,
                    Some(outpoint.clone()),
                    None,
                    json!({"spent_by": s.txid, "height": s.height}),
                    now,
                ));
            }
        }
        let script_path = s.inputs.iter().all(|(_, p)| *p == SpendPath::ScriptPath);
        for out in &s.payouts {
            let payout_outpoint = Outpoint { txid: s.txid.clone(), vout: out.vout };
            let matched = unpaid.iter().position(|w| w.script == out.script && w.amount == out.amount);
            let Some(i) = matched else {
                r.findings.push(finding(
                    "unknown-payout",
                    Severity::Critical,
                    None,
                    Some(payout_outpoint),
                    None,
                    json!({"script": out.script, "amount": out.amount.to_string(), "height": s.height,
                           "reason": "no unpaid withdrawal to this scriptPubKey for this amount"}),
                    now,
                ));
                continue;
            };
            let w = unpaid.remove(i);
            r.paid.push(w.tx_id.clone());
            let mature_after = maturity(w.batch_id, p);
            if !script_path || mature_after.is_none_or(|m| s.height <= m) {
                r.findings.push(finding(
                    "early-payout",
                    Severity::Critical,
                    Some(w.batch_id),
                    Some(payout_outpoint),
                    None,
                    json!({"withdrawal": w.tx_id, "height": s.height, "matures_after": mature_after,
                           "anchor_height": p.anchored.get(&w.batch_id), "script_path": script_path}),
                    now,
                ));
            }
        }
        if s.burned > 0 {
            r.findings.push(finding(
                "unknown-payout",
                Severity::Critical,
                None,
                Some(Outpoint { txid: s.txid.clone(), vout: u32::MAX }),
                None,
                json!({"burned": s.burned.to_string(), "height": s.height,
                       "reason": "bridge runes burned (cenotaph or edict to an OP_RETURN)"}),
                now,
            ));
        }
    }
    r.liabilities = p.liabilities.saturating_add(unpaid.iter().map(|w| w.amount).sum::<u128>());
    if r.balance < r.liabilities {
        r.findings.push(finding(
            "bridge-insolvent",
            Severity::Critical,
            None,
            None,
            None,
            json!({"balance": r.balance.to_string(), "liabilities": r.liabilities.to_string()}),
            now,
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(t: &str, v: u32) -> Outpoint {
        Outpoint { txid: t.into(), vout: v }
    }

    fn params() -> BridgeParams {
        BridgeParams {
            confirmations: 3,
            deposit_grace_blocks: 6,
            challenge_window_blocks: 20,
            anchored: BTreeMap::from([(1, 110), (2, 120)]),
            first_bad_batch: None,
            l2_l1_height: Some(100),
            liabilities: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        deposits: &[DepositSeen],
        unspent: &[(Outpoint, u128)],
        credits: &[Credit],
        withdrawals: &[Withdrawal],
        spends: &[BridgeSpend],
        tip: u64,
        p: &BridgeParams,
        now: i64,
    ) -> BridgeReport {
        judge_bridge(BridgeInputs { deposits, unspent, credits, withdrawals, spends }, tip, p, now)
    }

    fn kinds(r: &BridgeReport) -> Vec<&str> {
        let mut k: Vec<&str> = r.findings.iter().map(|f| f.kind.as_str()).collect();
        k.sort();
        k
    }

    fn deposit(t: &str, height: u64) -> DepositSeen {
        DepositSeen { outpoint: op(t, 0), height, amount: 500, recipient: Some("ab".into()) }
    }

    #[test]
    fn a_deposit_is_missing_only_once_the_l2_declares_a_height_past_its_grace() {
        // Confirmed at 100 + 2 = 102; due by l1_height 108.
        let d = [deposit("d", 100)];
        let mut p = params();
        p.l2_l1_height = Some(108);
        assert!(judge(&d, &[], &[], &[], &[], 200, &p, 0).findings.is_empty());
        p.l2_l1_height = Some(109);
        let r = judge(&d, &[], &[], &[], &[], 200, &p, 0);
        assert_eq!(kinds(&r), vec!["missing-credit"]);
        assert_eq!(r.findings[0].deadline_height, Some(108));
        let credit = [Credit { outpoint: op("d", 0), batch_id: 3 }];
        assert!(judge(&d, &[], &credit, &[], &[], 200, &p, 0).findings.is_empty());
        let untagged = [DepositSeen { recipient: None, ..deposit("d", 100) }];
        assert!(judge(&untagged, &[], &[], &[], &[], 200, &p, 0).findings.is_empty());
    }

    #[test]
    fn a_deposit_credited_twice_is_a_double_credit() {
        let c = [Credit { outpoint: op("d", 0), batch_id: 1 }, Credit { outpoint: op("d", 0), batch_id: 4 }];
        let r = judge(&[deposit("d", 90)], &[], &c, &[], &[], 200, &params(), 0);
        assert_eq!(kinds(&r), vec!["double-credit"]);
        assert_eq!(r.findings[0].batch_id, Some(4));
    }

    fn spend(t: &str, height: u64, path: SpendPath, payouts: Vec<Payout>) -> BridgeSpend {
        BridgeSpend { txid: t.into(), height, inputs: vec![(op("b", 0), path)], payouts, burned: 0 }
    }

    fn w(id: &str, batch: u64) -> Withdrawal {
        Withdrawal { tx_id: id.into(), batch_id: batch, script: "5120aa".into(), amount: 40 }
    }

    fn pay() -> Vec<Payout> {
        vec![Payout { vout: 0, script: "5120aa".into(), amount: 40 }]
    }

    #[test]
    fn a_payout_after_the_window_of_an_anchored_good_batch_is_fine() {
        // Batch 1 anchored at 110: matures after 130.
        let r =
            judge(&[], &[], &[], &[w("w1", 1)], &[spend("s", 131, SpendPath::ScriptPath, pay())], 131, &params(), 0);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.paid, vec!["w1".to_string()]);
    }

    #[test]
    fn early_unanchored_and_after_a_faulty_batch_payouts_are_early() {
        let early =
            judge(&[], &[], &[], &[w("w1", 1)], &[spend("s", 130, SpendPath::ScriptPath, pay())], 131, &params(), 0);
        assert_eq!(kinds(&early), vec!["early-payout"]);
        let unanchored =
            judge(&[], &[], &[], &[w("w1", 7)], &[spend("s", 500, SpendPath::ScriptPath, pay())], 500, &params(), 0);
        assert_eq!(kinds(&unanchored), vec!["early-payout"]);
        let mut p = params();
        p.first_bad_batch = Some(1);
        let bad = judge(&[], &[], &[], &[w("w1", 1)], &[spend("s", 500, SpendPath::ScriptPath, pay())], 500, &p, 0);
        assert_eq!(kinds(&bad), vec!["early-payout"]);
    }

    #[test]
    fn theft_key_path_burns_and_a_second_payout_of_one_withdrawal_are_caught() {
        let theft = judge(&[], &[], &[], &[], &[spend("s", 500, SpendPath::ScriptPath, pay())], 500, &params(), 0);
        assert_eq!(kinds(&theft), vec!["unknown-payout"]);
        let sweep =
            judge(&[], &[], &[], &[w("w1", 1)], &[spend("s", 500, SpendPath::KeyPath, pay())], 500, &params(), 0);
        assert_eq!(kinds(&sweep), vec!["early-payout", "key-path-spend"]);
        let twice = judge(
            &[],
            &[],
            &[],
            &[w("w1", 1)],
            &[spend("s1", 200, SpendPath::ScriptPath, pay()), spend("s2", 201, SpendPath::ScriptPath, pay())],
            500,
            &params(),
            0,
        );
        assert_eq!(kinds(&twice), vec!["unknown-payout"]);
        assert_eq!(twice.findings[0].outpoint, Some(op("s2", 0)));
        let mut burn = spend("s", 500, SpendPath::ScriptPath, vec![]);
        burn.burned = 9;
        assert_eq!(kinds(&judge(&[], &[], &[], &[], &[burn], 500, &params(), 0)), vec!["unknown-payout"]);
    }

    #[test]
    fn solvency_compares_bridge_units_with_liabilities() {
        let mut p = params();
        p.liabilities = 1_000;
        let ok = judge(&[], &[(op("a", 0), 600), (op("b", 1), 400)], &[], &[], &[], 1, &p, 0);
        assert!(ok.findings.is_empty());
        assert_eq!(ok.solvency_ratio(), Some(1.0));
        let short = judge(&[], &[(op("a", 0), 600)], &[], &[], &[], 1, &p, 0);
        assert_eq!(kinds(&short), vec!["bridge-insolvent"]);
    }
}
