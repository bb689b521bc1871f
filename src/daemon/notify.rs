//! Findings as operator alerts: which alert kind and severity (P0–P3) each finding kind raises.

use kray_alerts::{Alert, AlertKind, Severity};
use kray_watcher::store::Finding;
use kray_watcher::FindingKind;

/// The alert kind and severity of a finding kind; `None` for informational kinds that page nobody.
/// Exhaustive: a new kind must be decided here.
pub fn classify(kind: &FindingKind) -> Option<(AlertKind, Severity)> {
    use FindingKind as K;
    Some(match kind {
        K::KeyPathSpend | K::BridgeKeyPath => (AlertKind::KeyPathSpend, Severity::P0),
        K::UnknownPayout | K::BridgeInsolvent => (AlertKind::UnbackedRelease, Severity::P0),
        K::EarlyPayout => (AlertKind::PrematurePayout, Severity::P0),
        K::ConflictingAnchor | K::DoubleCredit => (AlertKind::BatchFault, Severity::P0),
        K::Fault(_) => (AlertKind::BatchFault, Severity::P0),
        K::DataWithheld => (AlertKind::UnavailableData, Severity::P1),
        K::AbandonedBatch => (AlertKind::MissingAnchor, Severity::P1),
        K::MissingCredit => (AlertKind::UncreditedDeposit, Severity::P1),
        K::DeepReorg => (AlertKind::DeepReorg, Severity::P1),
        K::UnknownAnchor | K::BatchGap => (AlertKind::UnavailableData, Severity::P2),
        K::AnchorReorged => (AlertKind::CannotVerify, Severity::P2),
        K::LateAnchor => (AlertKind::MissingAnchor, Severity::P3),
        K::DuplicateAnchor => return None,
        K::Other(_) => (AlertKind::GuardianError, Severity::P2),
    })
}

/// The alert for `f` (key = the finding's id), with an evidence link under `api_base` when it has a
/// batch; `None` when the kind pages nobody.
pub fn alert_of(f: &Finding, api_base: &str) -> Option<Alert> {
    let (kind, severity) = classify(&f.kind)?;
    let title = match (f.batch_id, &f.outpoint) {
        (Some(b), _) => format!("{} in batch {b}", f.kind),
        (None, Some(o)) => format!("{} at {o}", f.kind),
        (None, None) => f.kind.to_string(),
    };
    let summary =
        f.evidence.get("reason").and_then(|r| r.as_str()).map(str::to_string).unwrap_or_else(|| f.evidence.to_string());
    let mut a = Alert::new(f.id.clone(), kind, severity, title, summary);
    a.batch_id = f.batch_id;
    a.outpoint = f.outpoint.as_ref().map(ToString::to_string);
    a.first_seen = f.first_seen;
    a.deadline_height = f.deadline_height;
    a.evidence_url = match (kind, f.batch_id) {
        (AlertKind::BatchFault, Some(b)) => Some(format!("{api_base}/v1/proofs/{b}")),
        (_, Some(b)) => Some(format!("{api_base}/v1/batches/{b}")),
        _ => Some(format!("{api_base}/v1/findings")),
    };
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_theft_and_faults_page_informational_kinds_do_not() {
        let c = |name: &str| classify(&FindingKind::parse(name));
        assert_eq!(c("key-path-spend"), Some((AlertKind::KeyPathSpend, Severity::P0)));
        assert_eq!(c("wrong-gas"), Some((AlertKind::BatchFault, Severity::P0)));
        assert_eq!(c("abandoned-batch").map(|c| c.1), Some(Severity::P1));
        assert_eq!(c("duplicate-anchor"), None);
    }
}
