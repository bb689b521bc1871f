//! The kinds of finding, typed. Every place that makes, matches, stores or alerts on a finding names
//! one of these, so a new kind is a compile error wherever a decision about it is needed (its
//! severity, its alert, whether a judge resolves it). Stored and served as the kebab-case name.

use std::fmt;
use std::str::FromStr;

use kray_replayer::fault::FaultClass;

/// What a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// A fault of a batch, proven by a fraud proof (docs/protocol.md §14); `equivocation` is also
    /// what the mirror reports when it holds two signed headers for one id.
    Fault(FaultClass),
    /// A batch not anchored within the anchor grace period.
    AbandonedBatch,
    /// A batch anchored after its grace period.
    LateAnchor,
    /// A batch anchored more than once.
    DuplicateAnchor,
    /// An anchor for another copy of a batch than the one judged.
    ConflictingAnchor,
    /// A KRAY anchor of a root no source has served.
    UnknownAnchor,
    /// An anchor that was reorged out of the best chain.
    AnchorReorged,
    /// Anchored batch data no source serves.
    DataWithheld,
    /// Batch ids missing from every source.
    BatchGap,
    /// A bridge deposit the L2 never credited.
    MissingCredit,
    /// A bridge deposit credited twice.
    DoubleCredit,
    /// A bridge payout before its withdrawal matured.
    EarlyPayout,
    /// A bridge spend that pays no queued withdrawal (theft, burn).
    UnknownPayout,
    /// A bridge output spent by the key path.
    KeyPathSpend,
    /// The bridge holds less than the L2 owes.
    BridgeInsolvent,
    /// The bridge descriptor's key path is spendable by one party.
    BridgeKeyPath,
    /// A reorg deeper than the finality depth: acting stops until an operator resolves it.
    DeepReorg,
    /// A kind this version does not know (a row written by a newer version): kept, never dropped.
    Other(String),
}

/// The kinds that are not fault classes, with their names.
const NAMED: [(FindingKind, &str); 16] = [
    (FindingKind::AbandonedBatch, "abandoned-batch"),
    (FindingKind::LateAnchor, "late-anchor"),
    (FindingKind::DuplicateAnchor, "duplicate-anchor"),
    (FindingKind::ConflictingAnchor, "conflicting-anchor"),
    (FindingKind::UnknownAnchor, "unknown-anchor"),
    (FindingKind::AnchorReorged, "anchor-reorged"),
    (FindingKind::DataWithheld, "data-withheld"),
    (FindingKind::BatchGap, "batch-gap"),
    (FindingKind::MissingCredit, "missing-credit"),
    (FindingKind::DoubleCredit, "double-credit"),
    (FindingKind::EarlyPayout, "early-payout"),
    (FindingKind::UnknownPayout, "unknown-payout"),
    (FindingKind::KeyPathSpend, "key-path-spend"),
    (FindingKind::BridgeInsolvent, "bridge-insolvent"),
    (FindingKind::BridgeKeyPath, "bridge-key-path"),
    (FindingKind::DeepReorg, "deep-reorg"),
];

impl FindingKind {
    /// The kebab-case name (stored, served, alerted).
    pub fn as_str(&self) -> &str {
        match self {
            FindingKind::Fault(c) => c.as_str(),
            FindingKind::Other(s) => s,
            known => NAMED.iter().find(|(k, _)| k == known).map_or("unknown", |(_, n)| n),
        }
    }

    /// The kind named `name`; never fails (an unknown name is [`FindingKind::Other`]).
    pub fn parse(name: &str) -> FindingKind {
        if let Some(c) = FaultClass::parse(name) {
            return FindingKind::Fault(c);
        }
        NAMED.iter().find(|(_, n)| *n == name).map_or_else(|| FindingKind::Other(name.to_string()), |(k, _)| k.clone())
    }

    /// Every known kind (the fault classes first).
    pub fn all() -> Vec<FindingKind> {
        FaultClass::ALL.iter().map(|c| FindingKind::Fault(*c)).chain(NAMED.iter().map(|(k, _)| k.clone())).collect()
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FindingKind {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(FindingKind::parse(s))
    }
}

impl From<&str> for FindingKind {
    fn from(name: &str) -> Self {
        FindingKind::parse(name)
    }
}

impl From<FaultClass> for FindingKind {
    fn from(c: FaultClass) -> Self {
        FindingKind::Fault(c)
    }
}

impl PartialEq<str> for FindingKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FindingKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for FindingKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FindingKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(FindingKind::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name_and_names_are_unique() {
        let all = FindingKind::all();
        let mut names: Vec<&str> = all.iter().map(FindingKind::as_str).collect();
        for k in &all {
            assert_eq!(FindingKind::parse(k.as_str()), *k);
            assert_ne!(k.as_str(), "unknown");
        }
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "two kinds share a name");
        assert_eq!(FindingKind::parse("from-a-newer-version"), FindingKind::Other("from-a-newer-version".into()));
        assert_eq!(FindingKind::parse("wrong-gas"), FindingKind::Fault(FaultClass::WrongGas));
    }
}
