//! The alert model: severity, kind, the alert itself and the notifications sinks receive.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use kray_replayer::FaultClass;
use serde::{Deserialize, Serialize};

/// How urgent an alert is. `P0` is the most urgent (funds at risk now), `P3` the least (informational).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Funds at risk or a fraud to challenge now: page someone.
    #[serde(rename = "P0", alias = "p0")]
    P0,
    /// Serious and time-bound, but not yet a loss (e.g. the guardian cannot verify).
    #[serde(rename = "P1", alias = "p1")]
    P1,
    /// Something to look at today (a liveness window slipping, a source disagreeing).
    #[serde(rename = "P2", alias = "p2")]
    P2,
    /// Informational.
    #[serde(rename = "P3", alias = "p3")]
    P3,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

    /// 0 for `P0` … 3 for `P3`: smaller is more urgent.
    pub fn rank(self) -> u8 {
        match self {
            Severity::P0 => 0,
            Severity::P1 => 1,
            Severity::P2 => 2,
            Severity::P3 => 3,
        }
    }

    /// `true` when `self` is as urgent as `min` or more (`P0.at_least(P2)` is `true`).
    pub fn at_least(self, min: Severity) -> bool {
        self.rank() <= min.rank()
    }

    /// `true` when `self` is strictly more urgent than `other`.
    pub fn more_urgent_than(self, other: Severity) -> bool {
        self.rank() < other.rank()
    }

    /// `"P0"` … `"P3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of condition an alert reports. The kebab-case names are part of the webhook format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A replayed batch is faulty; a fraud proof exists (the fault class is in the title).
    BatchFault,
    /// A batch hash is anchored on L1 but its batch is not published (§15.4).
    UnavailableData,
    /// A batch was not anchored within the anchor grace (§15.4).
    MissingAnchor,
    /// A bridge deposit was not credited within the deposit grace (§15.4).
    UncreditedDeposit,
    /// A withdrawal was paid before its challenge window closed (§15.2).
    PrematurePayout,
    /// A bridge output was spent other than by a payout of a mature withdrawal (§15.2).
    UnbackedRelease,
    /// A key-path spend of a bridge output: the highest-severity finding (§19.5).
    KeyPathSpend,
    /// A challenge must be confirmed before a deadline that is getting close.
    ChallengeDeadline,
    /// Publishing or confirming a challenge failed.
    ChallengeFailed,
    /// The guardian's L1 node or data source lags what it must judge: it cannot verify yet.
    CannotVerify,
    /// Two data sources (e.g. bitcoind and Electrum) disagree.
    SourceDisagreement,
    /// A reorg deeper than expected.
    DeepReorg,
    /// The guardian itself is failing (store, configuration, a stage stalled).
    GuardianError,
    /// An operator's test alert.
    Test,
}

impl AlertKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BatchFault => "batch-fault",
            AlertKind::UnavailableData => "unavailable-data",
            AlertKind::MissingAnchor => "missing-anchor",
            AlertKind::UncreditedDeposit => "uncredited-deposit",
            AlertKind::PrematurePayout => "premature-payout",
            AlertKind::UnbackedRelease => "unbacked-release",
            AlertKind::KeyPathSpend => "key-path-spend",
            AlertKind::ChallengeDeadline => "challenge-deadline",
            AlertKind::ChallengeFailed => "challenge-failed",
            AlertKind::CannotVerify => "cannot-verify",
            AlertKind::SourceDisagreement => "source-disagreement",
            AlertKind::DeepReorg => "deep-reorg",
            AlertKind::GuardianError => "guardian-error",
            AlertKind::Test => "test",
        }
    }

    /// The severity this kind usually carries; callers may choose another.
    pub fn default_severity(self) -> Severity {
        match self {
            AlertKind::BatchFault
            | AlertKind::UnavailableData
            | AlertKind::PrematurePayout
            | AlertKind::UnbackedRelease
            | AlertKind::KeyPathSpend
            | AlertKind::ChallengeDeadline
            | AlertKind::ChallengeFailed => Severity::P0,
            AlertKind::CannotVerify | AlertKind::MissingAnchor | AlertKind::GuardianError => Severity::P1,
            AlertKind::UncreditedDeposit | AlertKind::SourceDisagreement | AlertKind::DeepReorg => Severity::P2,
            AlertKind::Test => Severity::P3,
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: a condition that is true now and stays open until it is resolved by its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The de-duplication key: stable for one condition (e.g. `"batch-fault:42"`). Raising an open key again
    /// sends nothing new (unless the severity rises); resolving it sends a "resolved" notification.
    pub key: String,
    /// What the condition is.
    pub kind: AlertKind,
    /// How urgent it is.
    pub severity: Severity,
    /// One line, e.g. `"Batch 42 is faulty: bad-nonce"`.
    pub title: String,
    /// A few sentences for a human.
    pub summary: String,
    /// The batch concerned, if any.
    pub batch_id: Option<u64>,
    /// The L1 outpoint concerned (`txid:vout`), if any.
    pub outpoint: Option<String>,
    /// Where the evidence is (a fraud proof, an explorer page), if anywhere.
    pub evidence_url: Option<String>,
    /// When the condition was first seen, in Unix seconds.
    pub first_seen: i64,
    /// The L1 height by which something must happen (e.g. the end of a challenge window), if any.
    pub deadline_height: Option<u64>,
    /// The Unix time by which something must happen, if any.
    pub deadline_unix: Option<i64>,
}

impl Alert {
    /// A new alert first seen now, with no batch, outpoint, evidence or deadline.
    pub fn new(
        key: impl Into<String>,
        kind: AlertKind,
        severity: Severity,
        title: impl Into<String>,
        summary: impl Into<String>,
    ) -> Alert {
        Alert {
            key: key.into(),
            kind,
            severity,
            title: title.into(),
            summary: summary.into(),
            batch_id: None,
            outpoint: None,
            evidence_url: None,
            first_seen: now_unix(),
            deadline_height: None,
            deadline_unix: None,
        }
    }

    /// The P0 alert for a faulty batch: key `batch-fault:<batch id>`, the fault class in the title.
    pub fn batch_fault(batch_id: u64, class: FaultClass, evidence_url: Option<String>) -> Alert {
        let mut alert = Alert::new(
            format!("batch-fault:{batch_id}"),
            AlertKind::BatchFault,
            Severity::P0,
            format!("Batch {batch_id} is faulty: {}", class.as_str()),
            format!(
                "Replaying batch {batch_id} found a `{}` fault. A fraud proof was built; challenge the batch \
                 before its window closes.",
                class.as_str()
            ),
        );
        alert.batch_id = Some(batch_id);
        alert.evidence_url = evidence_url;
        alert
    }

    /// The same alert with a batch id.
    pub fn with_batch(mut self, batch_id: u64) -> Alert {
        self.batch_id = Some(batch_id);
        self
    }

    /// The same alert with an L1 outpoint (`txid:vout`).
    pub fn with_outpoint(mut self, outpoint: impl Into<String>) -> Alert {
        self.outpoint = Some(outpoint.into());
        self
    }

    /// The same alert with an evidence link.
    pub fn with_evidence_url(mut self, url: impl Into<String>) -> Alert {
        self.evidence_url = Some(url.into());
        self
    }

    /// The same alert with an L1 deadline height.
    pub fn with_deadline_height(mut self, height: u64) -> Alert {
        self.deadline_height = Some(height);
        self
    }

    /// The same alert with a Unix-time deadline.
    pub fn with_deadline_unix(mut self, unix: i64) -> Alert {
        self.deadline_unix = Some(unix);
        self
    }

    /// The same alert, first seen at `unix` instead of now.
    pub fn with_first_seen(mut self, unix: i64) -> Alert {
        self.first_seen = unix;
        self
    }

    /// `(label, value)` pairs of the optional and time facts, in display order, for human-readable sinks.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![("Severity", self.severity.to_string()), ("Kind", self.kind.to_string())];
        if let Some(batch) = self.batch_id {
            facts.push(("Batch", batch.to_string()));
        }
        if let Some(outpoint) = &self.outpoint {
            facts.push(("Outpoint", outpoint.clone()));
        }
        if let Some(url) = &self.evidence_url {
            facts.push(("Evidence", url.clone()));
        }
        facts.push(("First seen", rfc3339(self.first_seen)));
        if let Some(height) = self.deadline_height {
            facts.push(("Deadline height", height.to_string()));
        }
        if let Some(unix) = self.deadline_unix {
            facts.push(("Deadline", rfc3339(unix)));
        }
        facts.push(("Key", self.key.clone()));
        facts
    }
}

/// Whether a notification opens or closes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    /// The condition is true (newly, or more urgent than before).
    Fired,
    /// The condition cleared.
    Resolved,
}

impl AlertEvent {
    /// `"fired"` or `"resolved"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Fired => "fired",
            AlertEvent::Resolved => "resolved",
        }
    }
}

/// What a sink delivers: an event about an alert. Serialized as the generic webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Fired or resolved.
    pub event: AlertEvent,
    /// The alert (for `Resolved`, as it was when it fired).
    pub alert: Alert,
    /// When the event happened, in Unix seconds.
    pub at: i64,
}

impl Notification {
    /// One line for subjects and chat messages, e.g. `"[P0 FIRING] Batch 42 is faulty: bad-nonce"`.
    pub fn headline(&self) -> String {
        let state = match self.event {
            AlertEvent::Fired => "FIRING",
            AlertEvent::Resolved => "RESOLVED",
        };
        format!("[{} {state}] {}", self.alert.severity, self.alert.title)
    }
}

/// The current Unix time in seconds (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-21T22:29:17Z`).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_386_557), "2026-11-22T22:29:17Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn severity_order_and_names() {
        assert!(Severity::P0.at_least(Severity::P2));
        assert!(Severity::P2.at_least(Severity::P2));
        assert!(!Severity::P3.at_least(Severity::P2));
        assert!(Severity::P1.more_urgent_than(Severity::P3));
        assert!(!Severity::P1.more_urgent_than(Severity::P1));
        let json = serde_json::to_string(&Severity::ALL).unwrap();
        assert_eq!(json, r#"["P0","P1","P2","P3"]"#);
        let back: Severity = serde_json::from_str(r#""p1""#).unwrap();
        assert_eq!(back, Severity::P1);
    }

    #[test]
    fn kind_names_match_serde() {
        for kind in [AlertKind::BatchFault, AlertKind::KeyPathSpend, AlertKind::CannotVerify, AlertKind::Test] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn batch_fault_alert() {
        let alert = Alert::batch_fault(42, FaultClass::BadNonce, Some("https://g/proofs/42.json".into()));
        assert_eq!(alert.key, "batch-fault:42");
        assert_eq!(alert.severity, Severity::P0);
        assert_eq!(alert.batch_id, Some(42));
        assert!(alert.title.contains("bad-nonce"));
        let facts = alert.facts();
        assert!(facts.contains(&("Batch", "42".to_string())));
        assert!(facts.contains(&("Evidence", "https://g/proofs/42.json".to_string())));
    }
}
