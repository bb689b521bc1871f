//! The judge stage: replay verdicts, anchors and (later) the bridge turned into findings, stored
//! once each (the store de-duplicates by key) and resolved when they stop holding.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use kray_replayer::Profile;
use kray_watcher::judge::{match_anchors, reorged_batches, AnchorParams, AnchorReport, BatchRef};
use kray_watcher::store::{Finding, Severity, Store};
use serde_json::json;

use super::replay_stage::{Outcome, Replayed};

/// Kinds this stage decides (an open finding of one of these kinds that no longer holds is resolved).
/// `anchor-reorged` is resolved when its batch is anchored again.
const JUDGED_KINDS: [&str; 7] = [
    "abandoned-batch",
    "late-anchor",
    "duplicate-anchor",
    "conflicting-anchor",
    "unknown-anchor",
    "missing-credit",
    "bridge-insolvent",
];

/// What one judge pass changed.
#[derive(Debug, Default)]
pub struct Judged {
    /// The anchor report.
    pub anchors: AnchorReport,
    /// Findings stored for the first time.
    pub new: Vec<Finding>,
    /// Findings resolved now.
    pub resolved: Vec<Finding>,
    /// Open findings after this pass.
    pub open: Vec<Finding>,
}

/// The anchor parameters of `profile`.
pub fn anchor_params(profile: &Profile) -> AnchorParams {
    AnchorParams {
        confirmations: u64::from(profile.confirmations),
        anchor_grace_blocks: u64::from(profile.anchor_grace_blocks),
    }
}

/// Findings for the faults among `batches`, with the challenge deadline when the batch is anchored.
pub fn fault_findings(
    batches: &BTreeMap<u64, Vec<Replayed>>,
    anchors: &AnchorReport,
    window: u64,
    now: i64,
) -> Vec<Finding> {
    let anchored = anchors.anchored();
    let mut out = Vec::new();
    for copies in batches.values() {
        for c in copies {
            let Outcome::Fault { class, reason, .. } = &c.outcome else { continue };
            let deadline = anchored.get(&c.batch_id).map(|h| h.saturating_add(window));
            out.push(Finding {
                id: Finding::key(class, Some(c.batch_id), None),
                kind: class.as_str().into(),
                severity: Severity::Critical,
                batch_id: Some(c.batch_id),
                outpoint: None,
                first_seen: now,
                resolved_at: None,
                deadline_height: deadline,
                evidence: json!({"reason": reason, "batch_hash": c.batch_hash, "proof": format!("/v1/proofs/{}", c.batch_id)}),
                height: None,
                block_hash: None,
            });
        }
    }
    out
}

/// Matches the stored anchors with the judged batches at L1 height `tip`.
pub async fn anchor_report(
    store: &Store,
    profile: &Profile,
    batches: &BTreeMap<u64, Vec<Replayed>>,
    tip: u64,
    now: i64,
) -> anyhow::Result<AnchorReport> {
    let refs: Vec<BatchRef> = batches
        .values()
        .flatten()
        .map(|r| BatchRef { batch_id: r.batch_id, batch_hash: r.batch_hash.clone(), l1_height: r.l1_height })
        .collect();
    let anchors = store.anchors().await.context("reading anchors")?;
    Ok(match_anchors(&refs, &anchors, tip, &anchor_params(profile), now))
}

/// Reconciles the store's findings with what holds now: the anchor `report`, anchors reorged out
/// since `previous`, the faults among `batches`, and `extra` (e.g. the bridge judge's).
pub async fn judge(
    store: &Store,
    profile: &Profile,
    batches: &BTreeMap<u64, Vec<Replayed>>,
    report: AnchorReport,
    previous: &AnchorReport,
    extra: Vec<Finding>,
    now: i64,
) -> anyhow::Result<Judged> {
    let mut holding = report.findings.clone();
    holding.extend(reorged_batches(previous, &report, now));
    holding.extend(fault_findings(batches, &report, u64::from(profile.challenge_window_blocks), now));
    holding.extend(extra);

    let mut judged = Judged { anchors: report, ..Judged::default() };
    for f in &holding {
        if store.insert_finding(f).await.context("storing a finding")? {
            tracing::warn!(kind = %f.kind, batch_id = f.batch_id, outpoint = f.outpoint.as_ref().map(tracing::field::display), "new finding");
            judged.new.push(f.clone());
        } else if let Some(d) = f.deadline_height {
            // Found before its batch's anchor was seen: the deadline is known now (or moved with a reorg).
            if store.set_finding_deadline(&f.id, d).await.context("updating a deadline")? {
                tracing::info!(kind = %f.kind, batch_id = f.batch_id, deadline = d, "finding deadline set");
            }
        }
    }
    let holding_ids: BTreeSet<&str> = holding.iter().map(|f| f.id.as_str()).collect();
    let anchored = judged.anchors.anchored();
    for f in store.findings(true).await.context("reading open findings")? {
        let clears = (JUDGED_KINDS.contains(&f.kind.as_str()) && !holding_ids.contains(f.id.as_str()))
            || (f.kind == "anchor-reorged" && f.batch_id.is_some_and(|b| anchored.contains_key(&b)));
        if clears {
            store.resolve_finding(&f.id, now).await.context("resolving a finding")?;
            tracing::info!(kind = %f.kind, batch_id = f.batch_id, "finding resolved");
            judged.resolved.push(Finding { resolved_at: Some(now), ..f });
        } else {
            judged.open.push(f);
        }
    }
    Ok(judged)
}
