//! The daemon's state as Prometheus metrics ([`crate::metrics::Metrics`]), set after every tick.

use std::collections::BTreeMap;

use kray_watcher::store::Finding;

use super::replay_stage::{Outcome, Replayed};
use super::Snapshot;
use crate::metrics::{BatchVerdict, DeadlineEta, DeliveryResult, FindingClass, Metrics, Severity, Sink, Stage};

/// Seconds per L1 block for deadline estimates.
pub const SECONDS_PER_BLOCK: f64 = 600.0;

/// Delivery totals already exported, per sink index (to turn the alerter's totals into increments).
#[derive(Debug, Default)]
pub struct DeliveryCursor {
    seen: Vec<(u64, u64)>,
}

/// Records newly judged batches.
pub fn judged(metrics: &Metrics, judged: &[Replayed]) {
    for r in judged {
        metrics.record_batch(match r.outcome {
            Outcome::Valid { .. } => BatchVerdict::Valid,
            Outcome::Fault { .. } => BatchVerdict::Fault,
            Outcome::NotReplayed { .. } => continue,
        });
    }
}

/// Records findings stored for the first time.
pub fn new_findings(metrics: &Metrics, new: &[Finding]) {
    for f in new {
        metrics.record_finding(FindingClass::from_kind(f.kind.as_str()), Severity::from(f.severity));
    }
}

/// Sets every gauge from the snapshot at L1 height `tip`, now `now`.
pub fn snapshot(metrics: &Metrics, s: &Snapshot, tip: u64, now: i64) {
    metrics.set_up(true);
    for (stage, st) in [
        (Stage::L1Headers, &s.l1_headers),
        (Stage::L1Blocks, &s.l1_blocks),
        (Stage::BatchesMirrored, &s.mirrored),
        (Stage::BatchesReplayed, &s.replayed),
    ] {
        metrics.set_stage_height(stage, st.height);
        if st.last_success > 0 {
            metrics.set_stage_success(stage, st.last_success);
        }
    }
    metrics.set_l1_node_lag(s.l1_headers.height.saturating_sub(s.l1_blocks.height));
    metrics.set_deep_reorg_stopped(s.deep_reorgs > 0);
    let mut counts: BTreeMap<(String, &'static str), (FindingClass, Severity, u64)> = BTreeMap::new();
    for f in &s.findings {
        let class = FindingClass::from_kind(f.kind.as_str());
        let sev = Severity::from(f.severity);
        counts.entry((class.as_str().to_string(), sev.as_str())).or_insert((class, sev, 0)).2 += 1;
    }
    metrics.set_finding_counts(&counts.into_values().collect::<Vec<_>>());
    let oldest = s.findings.iter().map(|f| f.first_seen).min();
    metrics.set_oldest_open_finding_age(oldest.map(|t| u64::try_from(now.saturating_sub(t)).unwrap_or(0)));
    let deadlines: Vec<u64> = s.findings.iter().filter_map(|f| f.deadline_height).collect();
    let nearest = deadlines.iter().min().map(|d| {
        let blocks = d.saturating_sub(tip);
        DeadlineEta { blocks, seconds: blocks as f64 * SECONDS_PER_BLOCK }
    });
    metrics.set_deadlines(deadlines.len() as u64, nearest);
    if let Some(b) = &s.bridge {
        metrics.set_bridge(b.balance, b.liabilities);
    }
}

/// Exports the alerter's delivery outcomes since the last call.
pub fn deliveries(metrics: &Metrics, snap: &kray_alerts::AlertsSnapshot, cursor: &mut DeliveryCursor) {
    cursor.seen.resize(snap.sinks.len(), (0, 0));
    for (sink, seen) in snap.sinks.iter().zip(cursor.seen.iter_mut()) {
        let label = match sink.kind.as_str() {
            "smtp" => Sink::Smtp,
            "log" => Sink::Log,
            _ => Sink::Webhook,
        };
        for _ in seen.0..sink.delivered {
            metrics.record_alert_delivery(label, DeliveryResult::Success);
        }
        for _ in seen.1..sink.failed {
            metrics.record_alert_delivery(label, DeliveryResult::Failure);
        }
        *seen = (sink.delivered, sink.failed);
    }
}
