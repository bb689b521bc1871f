//! What the mirror finds, as pure functions of its index (and, for withheld data, of the anchored
//! roots and the L1 height): `equivocation`, `batch-gap`, `data-withheld`, and per-source
//! disagreement counts.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::index::{BatchIndex, CopyMeta};
use crate::store::{Anchor, Finding, Severity};

/// Kind of the finding: two different producer-signed copies of one batch id.
pub const EQUIVOCATION: &str = "equivocation";
/// Kind of the finding: batch ids missing below the highest one seen.
pub const BATCH_GAP: &str = "batch-gap";
/// Kind of the finding: a root anchored on L1 whose batch no source served by the deadline.
pub const DATA_WITHHELD: &str = "data-withheld";

fn finding(kind: &str, severity: Severity, batch_id: Option<u64>, now: i64, evidence: serde_json::Value) -> Finding {
    Finding {
        id: Finding::key(kind, batch_id, None),
        kind: kind.into(),
        severity,
        batch_id,
        outpoint: None,
        first_seen: now,
        resolved_at: None,
        deadline_height: None,
        evidence,
        height: None,
        block_hash: None,
    }
}

/// The `equivocation` finding for `batch_id` if it has two or more distinct copies: evidence names
/// every copy's content hash, header hash and sources. Critical when the signed headers differ (the
/// protocol's equivocation fault); a warning when only the data differs (same signed header, so the
/// replayer will find at most one copy's txs consistent with it).
pub fn equivocation(batch_id: u64, copies: &[CopyMeta], now: i64) -> Option<Finding> {
    if copies.len() < 2 {
        return None;
    }
    let headers: BTreeSet<&str> = copies.iter().map(|c| c.header_hash.as_str()).collect();
    let headers_differ = headers.len() > 1;
    let evidence = json!({
        "batch_id": batch_id,
        "headers_differ": headers_differ,
        "copies": copies.iter().map(|c| json!({
            "content_hash": c.content_hash,
            "header_hash": c.header_hash,
            "sources": c.sources,
        })).collect::<Vec<_>>(),
    });
    let severity = if headers_differ { Severity::Critical } else { Severity::Warning };
    Some(finding(EQUIVOCATION, severity, Some(batch_id), now, evidence))
}

/// Every equivocation in the index.
pub fn equivocations(index: &BatchIndex, now: i64) -> Vec<Finding> {
    index.iter().filter_map(|(id, copies)| equivocation(id, copies, now)).collect()
}

/// The ranges (inclusive) of ids in `1..max` missing from `ids` (ascending, duplicates allowed).
pub fn gaps(ids: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut expect = 1u64;
    for id in ids {
        if id > expect {
            out.push((expect, id - 1));
        }
        expect = expect.max(id.saturating_add(1));
    }
    out
}

/// One `batch-gap` finding per missing range, keyed by its first id; evidence `{from, to, missing}`.
pub fn gap_findings(ranges: &[(u64, u64)], now: i64) -> Vec<Finding> {
    ranges
        .iter()
        .map(|&(from, to)| {
            let evidence = json!({ "from": from, "to": to, "missing": to - from + 1 });
            finding(BATCH_GAP, Severity::Warning, Some(from), now, evidence)
        })
        .collect()
}

/// When anchored data counts as withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithheldRule {
    /// Blocks after the anchor's block by which some source must serve the batch.
    pub deadline_blocks: u64,
    /// The challenge window (the finding's `deadline_height` is anchor height + window).
    pub challenge_window_blocks: u64,
}

/// `data-withheld` findings: for each anchored root (its lowest anchor) with no stored copy whose
/// header hash is that root, once `l1_height ≥ anchor height + deadline_blocks`. Keyed by the anchor
/// outpoint, carrying the anchor's block (so an L1 reorg that removes the anchor removes the finding).
/// Critical: without the data nobody can check or challenge the batch.
pub fn withheld(
    anchors: &[Anchor],
    served_roots: &BTreeSet<String>,
    l1_height: u64,
    rule: WithheldRule,
    now: i64,
) -> Vec<Finding> {
    let mut lowest: BTreeMap<&str, &Anchor> = BTreeMap::new();
    for a in anchors {
        let e = lowest.entry(a.root.as_str()).or_insert(a);
        if a.height < e.height {
            *e = a;
        }
    }
    lowest
        .into_values()
        .filter(|a| !served_roots.contains(&a.root.to_ascii_lowercase()))
        .filter(|a| l1_height >= a.height.saturating_add(rule.deadline_blocks))
        .map(|a| {
            let evidence = json!({
                "root": a.root,
                "anchor": a.outpoint.to_string(),
                "anchor_height": a.height,
                "anchor_block": a.block_hash,
                "l1_height": l1_height,
                "deadline_blocks": rule.deadline_blocks,
            });
            Finding {
                id: Finding::key(DATA_WITHHELD, None, Some(&a.outpoint)),
                kind: DATA_WITHHELD.into(),
                severity: Severity::Critical,
                batch_id: None,
                outpoint: Some(a.outpoint.clone()),
                first_seen: now,
                resolved_at: None,
                deadline_height: Some(a.height.saturating_add(rule.challenge_window_blocks)),
                evidence,
                height: Some(a.height),
                block_hash: Some(a.block_hash.clone()),
            }
        })
        .collect()
}

/// Per source, the number of batch ids for which it served a copy that differs from another copy
/// of that id (served by another source, or by itself at another time). Sources without any are
/// absent.
pub fn source_disagreements(index: &BatchIndex) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (_, copies) in index.iter().filter(|(_, c)| c.len() > 1) {
        let sources: BTreeSet<&String> = copies.iter().flat_map(|c| &c.sources).collect();
        for s in sources {
            *out.entry(s.clone()).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outpoint;

    fn index(entries: &[(u64, &str, &str, &str)]) -> BatchIndex {
        let mut i = BatchIndex::default();
        for (id, content, header, source) in entries {
            i.add(*id, content, header, source);
        }
        i
    }

    #[test]
    fn gaps_are_the_missing_ranges_below_the_highest_id() {
        assert_eq!(gaps([]), vec![]);
        assert_eq!(gaps([1, 2, 3]), vec![]);
        assert_eq!(gaps([3]), vec![(1, 2)]);
        assert_eq!(gaps([1, 2, 2, 5, 6, 9]), vec![(3, 4), (7, 8)]);
        let f = gap_findings(&gaps([1, 4]), 7);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].id.as_str(), f[0].batch_id, f[0].severity), ("batch-gap/2/", Some(2), Severity::Warning));
        assert_eq!(f[0].evidence["missing"], 2);
    }

    #[test]
    fn equivocation_needs_two_distinct_copies_and_names_both() {
        let one = index(&[(1, "c1", "h1", "seq"), (1, "c1", "h1", "peer")]);
        assert!(equivocations(&one, 0).is_empty());
        assert_eq!(one.copies(1)[0].sources.len(), 2);
        let two = index(&[(1, "c1", "h1", "seq"), (2, "c2", "h2", "seq"), (2, "c3", "h3", "peer")]);
        let f = equivocations(&two, 5);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].id.as_str(), f[0].severity, f[0].batch_id), ("equivocation/2/", Severity::Critical, Some(2)));
        assert_eq!(f[0].evidence["copies"][0]["content_hash"], "c2");
        assert_eq!(f[0].evidence["copies"][1]["sources"][0], "peer");
        // Same signed header, different data: still two copies, but only a warning.
        let data_only = index(&[(3, "c1", "h", "seq"), (3, "c2", "h", "seq")]);
        assert_eq!(equivocations(&data_only, 0)[0].severity, Severity::Warning);
        assert_eq!(equivocations(&data_only, 0)[0].evidence["headers_differ"], false);
    }

    #[test]
    fn disagreements_count_ids_per_source() {
        let i = index(&[
            (1, "a", "h", "seq"),
            (1, "b", "h2", "seq"),
            (2, "c", "h3", "seq"),
            (2, "c", "h3", "peer1"),
            (2, "d", "h4", "peer2"),
            (3, "e", "h5", "peer1"),
        ]);
        let d = source_disagreements(&i);
        assert_eq!(d.get("seq"), Some(&2));
        assert_eq!(d.get("peer1"), Some(&1));
        assert_eq!(d.get("peer2"), Some(&1));
    }

    fn anchor(txid: &str, height: u64, root: &str) -> Anchor {
        Anchor {
            outpoint: Outpoint { txid: txid.into(), vout: 0 },
            height,
            block_hash: format!("block{height}"),
            root: root.into(),
        }
    }

    #[test]
    fn withheld_after_the_deadline_only_and_once_per_root() {
        let rule = WithheldRule { deadline_blocks: 6, challenge_window_blocks: 20 };
        let anchors =
            vec![anchor("t1", 100, "r1"), anchor("t2", 103, "r2"), anchor("t0", 99, "r2"), anchor("t3", 100, "r3")];
        let served = BTreeSet::from(["r3".to_string()]);
        assert!(withheld(&anchors, &served, 104, rule, 0).is_empty());
        let f = withheld(&anchors, &served, 105, rule, 9);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].evidence["root"], "r2");
        assert_eq!(f[0].outpoint.as_ref().map(|o| o.txid.as_str()), Some("t0"));
        assert_eq!((f[0].deadline_height, f[0].height, f[0].severity), (Some(119), Some(99), Severity::Critical));
        assert_eq!(f[0].id, "data-withheld//t0:0");
        let f = withheld(&anchors, &served, 106, rule, 9);
        assert_eq!(f.iter().map(|f| f.evidence["root"].as_str().unwrap_or("")).collect::<Vec<_>>(), vec!["r1", "r2"]);
    }
}
