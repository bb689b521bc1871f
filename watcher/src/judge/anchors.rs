//! Anchor matching (docs/protocol.md §13.1, §15.4): every KRAY anchor on the best chain against the
//! mirrored batches.
//!
//! - A batch's **anchor height** is the lowest height of a best-chain anchor of its batch hash; it is
//!   **confirmed** once it has `confirmations` confirmations.
//! - `abandoned-batch`: no anchor by `l1_height + anchor_grace_blocks` (any guardian may anchor it).
//! - `late-anchor`: anchored, but above `l1_height + anchor_grace_blocks`.
//! - `duplicate-anchor`: one batch hash anchored by more than one transaction (harmless, counted).
//! - `conflicting-anchor`: two different copies of one batch id are both anchored (L1 records two
//!   histories: equivocation endorsed on Bitcoin).
//! - `unknown-anchor`: an anchored root that no mirrored batch has once the anchor is
//!   `anchor_grace_blocks` deep (before that the batch may simply not be mirrored yet; the mirror's
//!   `data-withheld` finding covers the data deadline).
//! - `anchor-reorged`: a batch that was anchored is no longer (its anchor left the best chain); it
//!   holds until the batch is anchored again ([`reorged_batches`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::finding;
use crate::store::{Anchor, Finding, Outpoint, Severity};

/// One mirrored copy of a batch, reduced to what anchor matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    /// The batch id.
    pub batch_id: u64,
    /// The batch hash (= the anchored root), lowercase hex.
    pub batch_hash: String,
    /// The L1 height the batch declares.
    pub l1_height: u64,
}

/// The profile's numbers anchor matching uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorParams {
    /// Confirmations for an anchor to count as confirmed.
    pub confirmations: u64,
    /// Blocks after a batch's `l1_height` within which it must be anchored.
    pub anchor_grace_blocks: u64,
}

/// Where a batch copy stands on L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorState {
    /// No anchor of its hash on the best chain.
    Unanchored {
        /// The last height at which anchoring is on time (`l1_height + anchor_grace_blocks`).
        grace_ends: u64,
    },
    /// Anchored; the lowest anchor is named.
    Anchored {
        /// The lowest anchor output.
        outpoint: Outpoint,
        /// Its height (the batch's anchor height).
        height: u64,
        /// Confirmations at the tip (`tip - height + 1`).
        confirmations: u64,
        /// Whether it has the profile's confirmations.
        confirmed: bool,
    },
}

/// Anchor status of one batch copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAnchor {
    /// The batch id.
    pub batch_id: u64,
    /// The copy's batch hash.
    pub batch_hash: String,
    /// Its anchor state.
    pub state: AnchorState,
    /// Number of distinct anchor outputs of its hash on the best chain.
    pub anchor_count: usize,
}

impl BatchAnchor {
    /// The anchor height, if anchored.
    pub fn anchor_height(&self) -> Option<u64> {
        match &self.state {
            AnchorState::Anchored { height, .. } => Some(*height),
            AnchorState::Unanchored { .. } => None,
        }
    }
}

/// The result of [`match_anchors`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnchorReport {
    /// Every batch copy, by batch id then hash.
    pub batches: Vec<BatchAnchor>,
    /// Every anchor finding that holds at this tip.
    pub findings: Vec<Finding>,
}

impl AnchorReport {
    /// The anchored batch ids (any copy) and their anchor heights.
    pub fn anchored(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for b in &self.batches {
            if let Some(h) = b.anchor_height() {
                let e = out.entry(b.batch_id).or_insert(h);
                *e = (*e).min(h);
            }
        }
        out
    }
}

/// Matches `anchors` (the best chain's, as stored) with the mirrored `batches` at L1 height `tip`.
pub fn match_anchors(
    batches: &[BatchRef],
    anchors: &[Anchor],
    tip: u64,
    params: &AnchorParams,
    now: i64,
) -> AnchorReport {
    let mut by_root: BTreeMap<&str, Vec<&Anchor>> = BTreeMap::new();
    for a in anchors {
        by_root.entry(a.root.as_str()).or_default().push(a);
    }
    for list in by_root.values_mut() {
        list.sort_by(|a, b| {
            (a.height, &a.outpoint.txid, a.outpoint.vout).cmp(&(b.height, &b.outpoint.txid, b.outpoint.vout))
        });
    }
    let mut sorted: Vec<&BatchRef> = batches.iter().collect();
    sorted.sort_by(|a, b| (a.batch_id, &a.batch_hash).cmp(&(b.batch_id, &b.batch_hash)));
    sorted.dedup_by(|a, b| a.batch_id == b.batch_id && a.batch_hash == b.batch_hash);

    let mut report = AnchorReport::default();
    let mut anchored_copies: BTreeMap<u64, Vec<(&str, &Anchor)>> = BTreeMap::new();
    for b in &sorted {
        let grace_ends = b.l1_height.saturating_add(params.anchor_grace_blocks);
        let found = by_root.get(b.batch_hash.as_str());
        let state = match found.and_then(|l| l.first()) {
            None => {
                if tip > grace_ends {
                    report.findings.push(finding(
                        "abandoned-batch",
                        Severity::Warning,
                        Some(b.batch_id),
                        None,
                        None,
                        json!({"batch_hash": b.batch_hash, "l1_height": b.l1_height, "grace_ends": grace_ends,
                               "tip": tip}),
                        now,
                    ));
                }
                AnchorState::Unanchored { grace_ends }
            }
            Some(first) => {
                anchored_copies.entry(b.batch_id).or_default().push((b.batch_hash.as_str(), first));
                let confirmations = tip.saturating_sub(first.height).saturating_add(1);
                if first.height > grace_ends {
                    report.findings.push(finding(
                        "late-anchor",
                        Severity::Info,
                        Some(b.batch_id),
                        None,
                        None,
                        json!({"batch_hash": b.batch_hash, "anchor": first.outpoint.to_string(),
                               "anchor_height": first.height, "grace_ends": grace_ends}),
                        now,
                    ));
                }
                AnchorState::Anchored {
                    outpoint: first.outpoint.clone(),
                    height: first.height,
                    confirmations: if tip >= first.height { confirmations } else { 0 },
                    confirmed: tip >= first.height && confirmations >= params.confirmations,
                }
            }
        };
        let list = found.map(Vec::as_slice).unwrap_or_default();
        let txids: BTreeSet<&str> = list.iter().map(|a| a.outpoint.txid.as_str()).collect();
        if txids.len() > 1 {
            report.findings.push(finding(
                "duplicate-anchor",
                Severity::Info,
                Some(b.batch_id),
                None,
                None,
                json!({"batch_hash": b.batch_hash,
                       "anchors": list.iter().map(|a| json!({"outpoint": a.outpoint.to_string(), "height": a.height}))
                           .collect::<Vec<_>>()}),
                now,
            ));
        }
        report.batches.push(BatchAnchor {
            batch_id: b.batch_id,
            batch_hash: b.batch_hash.clone(),
            state,
            anchor_count: list.len(),
        });
    }
    for (batch_id, copies) in &anchored_copies {
        if copies.len() > 1 {
            report.findings.push(finding(
                "conflicting-anchor",
                Severity::Critical,
                Some(*batch_id),
                None,
                None,
                json!({"anchored_copies": copies.iter().map(|(hash, a)| json!({"batch_hash": hash,
                       "anchor": a.outpoint.to_string(), "height": a.height})).collect::<Vec<_>>()}),
                now,
            ));
        }
    }
    let known: BTreeSet<&str> = sorted.iter().map(|b| b.batch_hash.as_str()).collect();
    for (root, list) in &by_root {
        if known.contains(root) {
            continue;
        }
        for a in list.iter().filter(|a| tip >= a.height.saturating_add(params.anchor_grace_blocks)) {
            report.findings.push(finding(
                "unknown-anchor",
                Severity::Warning,
                None,
                Some(a.outpoint.clone()),
                None,
                json!({"root": root, "height": a.height, "block_hash": a.block_hash}),
                now,
            ));
        }
    }
    report
}

/// Batch ids anchored in `previous` that have no anchor in `current` (their anchors were reorged out),
/// as `anchor-reorged` findings.
pub fn reorged_batches(previous: &AnchorReport, current: &AnchorReport, now: i64) -> Vec<Finding> {
    let now_anchored = current.anchored();
    previous
        .anchored()
        .into_iter()
        .filter(|(id, _)| !now_anchored.contains_key(id))
        .map(|(id, height)| {
            finding(
                "anchor-reorged",
                Severity::Warning,
                Some(id),
                None,
                None,
                json!({"previous_anchor_height": height}),
                now,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: AnchorParams = AnchorParams { confirmations: 3, anchor_grace_blocks: 3 };

    fn batch(id: u64, hash: &str, l1: u64) -> BatchRef {
        BatchRef { batch_id: id, batch_hash: hash.into(), l1_height: l1 }
    }

    fn anchor(txid: &str, height: u64, root: &str) -> Anchor {
        Anchor {
            outpoint: Outpoint { txid: txid.into(), vout: 0 },
            height,
            block_hash: format!("b{height}"),
            root: root.into(),
        }
    }

    fn kinds(r: &AnchorReport) -> Vec<(String, Option<u64>)> {
        r.findings.iter().map(|f| (f.kind.to_string(), f.batch_id)).collect()
    }

    #[test]
    fn anchored_batches_count_confirmations_from_the_lowest_anchor() {
        let r = match_anchors(
            &[batch(1, "aa", 100), batch(2, "bb", 101)],
            &[anchor("t1", 101, "aa"), anchor("t2", 103, "bb")],
            103,
            &P,
            0,
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(
            r.batches[0].state,
            AnchorState::Anchored {
                outpoint: Outpoint { txid: "t1".into(), vout: 0 },
                height: 101,
                confirmations: 3,
                confirmed: true
            }
        );
        assert!(matches!(r.batches[1].state, AnchorState::Anchored { confirmations: 1, confirmed: false, .. }));
        assert_eq!(r.anchored(), BTreeMap::from([(1, 101), (2, 103)]));
    }

    #[test]
    fn a_batch_unanchored_past_the_grace_is_abandoned_not_before() {
        let b = [batch(1, "aa", 100)];
        assert!(match_anchors(&b, &[], 103, &P, 0).findings.is_empty(), "grace ends at 103 inclusive");
        let r = match_anchors(&b, &[], 104, &P, 0);
        assert_eq!(kinds(&r), vec![("abandoned-batch".to_string(), Some(1))]);
        assert_eq!(r.batches[0].state, AnchorState::Unanchored { grace_ends: 103 });
    }

    #[test]
    fn late_duplicate_conflicting_and_unknown_anchors_are_named() {
        let batches = [batch(1, "aa", 100), batch(2, "bb", 100), batch(2, "b2", 100)];
        let anchors = [
            anchor("t1", 105, "aa"),
            anchor("t2", 101, "bb"),
            anchor("t3", 102, "bb"),
            anchor("t4", 102, "b2"),
            anchor("t5", 102, "ff"),
            anchor("t6", 108, "fe"),
        ];
        let r = match_anchors(&batches, &anchors, 110, &P, 7);
        let mut k = kinds(&r);
        k.sort();
        assert_eq!(
            k,
            vec![
                ("conflicting-anchor".to_string(), Some(2)),
                ("duplicate-anchor".to_string(), Some(2)),
                ("late-anchor".to_string(), Some(1)),
                ("unknown-anchor".to_string(), None),
            ]
        );
        let unknown = r.findings.iter().find(|f| f.kind == "unknown-anchor").expect("unknown");
        assert_eq!(unknown.outpoint, Some(Outpoint { txid: "t5".into(), vout: 0 }));
        assert_eq!(unknown.first_seen, 7);
        assert!(r.findings.iter().all(|f| f.height.is_none()));
    }

    #[test]
    fn the_same_copy_mirrored_twice_is_one_batch() {
        let r = match_anchors(&[batch(1, "aa", 100), batch(1, "aa", 100)], &[anchor("t", 100, "aa")], 100, &P, 0);
        assert_eq!(r.batches.len(), 1);
        assert!(r.findings.is_empty());
    }

    #[test]
    fn an_anchor_that_leaves_the_chain_is_reported_reorged() {
        let b = [batch(1, "aa", 100), batch(2, "bb", 100)];
        let before = match_anchors(&b, &[anchor("t1", 101, "aa"), anchor("t2", 101, "bb")], 101, &P, 0);
        let after = match_anchors(&b, &[anchor("t1", 101, "aa")], 101, &P, 0);
        let f = reorged_batches(&before, &after, 9);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].kind.as_str(), f[0].batch_id), ("anchor-reorged", Some(2)));
        assert!(reorged_batches(&before, &before, 9).is_empty());
    }
}
