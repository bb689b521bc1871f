//! Deadlines in L1 blocks (pure): the challenge window of a batch, the anchoring grace and the
//! deposit-credit grace (docs/protocol.md §15.3, §15.4), each with a safety margin, and a ledger of the
//! open ones that names the nearest.
//!
//! Heights are inclusive: `due_height` is the **last** L1 block in which the thing (our challenge
//! marker, an anchor, a crediting batch) may still confirm. A transaction broadcast when the tip is
//! `t` can confirm at `t + 1` at the earliest, so a deadline is missed once the tip reaches
//! `due_height` without it.

use std::collections::BTreeMap;

use kray_replayer::Profile;
use serde::{Deserialize, Serialize};

/// Mainnet's average block interval, the default for converting blocks to seconds.
pub const DEFAULT_SECONDS_PER_BLOCK: u64 = 600;

/// What a deadline is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DeadlineKind {
    /// Our challenge marker against `batch_id` must confirm inside the batch's challenge window.
    ChallengeWindow {
        /// The faulty batch.
        batch_id: u64,
    },
    /// Batch `batch_id` must be anchored within the anchoring grace (we may anchor it ourselves).
    AnchorGrace {
        /// The sealed batch.
        batch_id: u64,
    },
    /// A bridge deposit must be credited by a batch within the deposit grace.
    DepositGrace {
        /// The deposit outpoint `txid:vout`.
        outpoint: String,
    },
}

/// One deadline: the last height that counts and the height from which we must act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// What it is about.
    pub kind: DeadlineKind,
    /// The last L1 height at which the awaited transaction may confirm.
    pub due_height: u64,
    /// `due_height` minus the safety margin: from this tip on we must act (send, bump).
    pub act_by_height: u64,
}

impl Deadline {
    /// A deadline due at `due_height` with `margin` blocks of safety.
    pub fn new(kind: DeadlineKind, due_height: u64, margin: u64) -> Self {
        Self { kind, due_height, act_by_height: due_height.saturating_sub(margin) }
    }

    /// The challenge window of a batch anchored at `anchor_height` (the height of the lowest block
    /// holding its anchor): a challenge marker must confirm at `anchor_height + challenge_window_blocks`
    /// at the latest (§15.3; the devnet pays withdrawals from one block later).
    pub fn challenge_window(profile: &Profile, batch_id: u64, anchor_height: u64, margin: u64) -> Self {
        let due = anchor_height.saturating_add(u64::from(profile.challenge_window_blocks));
        Self::new(DeadlineKind::ChallengeWindow { batch_id }, due, margin)
    }

    /// The anchoring grace of a batch sealed with `l1_height`: its anchor must confirm at
    /// `l1_height + anchor_grace_blocks` at the latest (§15.4).
    pub fn anchor_grace(profile: &Profile, batch_id: u64, batch_l1_height: u64, margin: u64) -> Self {
        let due = batch_l1_height.saturating_add(u64::from(profile.anchor_grace_blocks));
        Self::new(DeadlineKind::AnchorGrace { batch_id }, due, margin)
    }

    /// The deposit-credit grace of a deposit confirmed in the block at `deposit_height`: it reaches
    /// `confirmations` at `c = deposit_height + confirmations - 1` and must be credited by a batch with
    /// `l1_height <= c + deposit_grace_blocks` (§15.4).
    pub fn deposit_grace(profile: &Profile, outpoint: impl Into<String>, deposit_height: u64, margin: u64) -> Self {
        let confirmed_at = deposit_height.saturating_add(u64::from(profile.confirmations)).saturating_sub(1);
        let due = confirmed_at.saturating_add(u64::from(profile.deposit_grace_blocks));
        Self::new(DeadlineKind::DepositGrace { outpoint: outpoint.into() }, due, margin)
    }

    /// Blocks still to be mined that count, with the tip at `tip` (0 once missed).
    pub fn blocks_left(&self, tip: u64) -> u64 {
        self.due_height.saturating_sub(tip)
    }

    /// Whether the tip has reached the act-by height while the deadline can still be met.
    pub fn should_act(&self, tip: u64) -> bool {
        tip >= self.act_by_height && !self.missed(tip)
    }

    /// Whether the deadline is missed: the block at `due_height` is mined, nothing later counts.
    pub fn missed(&self, tip: u64) -> bool {
        tip >= self.due_height
    }
}

/// The open deadlines, keyed by kind (one per kind).
#[derive(Debug, Clone, Default)]
pub struct DeadlineLedger {
    open: BTreeMap<DeadlineKind, Deadline>,
}

impl DeadlineLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens (or replaces, e.g. after a reorg moved an anchor) a deadline.
    pub fn open(&mut self, deadline: Deadline) {
        self.open.insert(deadline.kind.clone(), deadline);
    }

    /// Closes a deadline (met or no longer relevant); returns it if it was open.
    pub fn close(&mut self, kind: &DeadlineKind) -> Option<Deadline> {
        self.open.remove(kind)
    }

    /// The deadline of `kind`, if open.
    pub fn get(&self, kind: &DeadlineKind) -> Option<&Deadline> {
        self.open.get(kind)
    }

    /// Number of open deadlines.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no deadline is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// All open deadlines, in kind order.
    pub fn iter(&self) -> impl Iterator<Item = &Deadline> {
        self.open.values()
    }

    /// The open deadline with the lowest due height that is not yet missed at `tip`.
    pub fn nearest(&self, tip: u64) -> Option<&Deadline> {
        self.open.values().filter(|d| !d.missed(tip)).min_by_key(|d| (d.due_height, d.act_by_height))
    }

    /// Open deadlines already missed at `tip` (the daemon alerts on them).
    pub fn missed(&self, tip: u64) -> Vec<&Deadline> {
        self.open.values().filter(|d| d.missed(tip)).collect()
    }

    /// Seconds to the nearest deadline at `seconds_per_block` (the metric), `None` when none is open.
    pub fn seconds_to_nearest(&self, tip: u64, seconds_per_block: u64) -> Option<u64> {
        self.nearest(tip).map(|d| d.blocks_left(tip).saturating_mul(seconds_per_block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regtest() -> Profile {
        // challenge_window_blocks 20, anchor_grace_blocks 3, deposit_grace_blocks 6, confirmations 3.
        Profile::load("regtest").expect("shipped profile")
    }

    #[test]
    fn windows_follow_the_profile() {
        let p = regtest();
        let c = Deadline::challenge_window(&p, 7, 150, 5);
        assert_eq!(c.kind, DeadlineKind::ChallengeWindow { batch_id: 7 });
        assert_eq!((c.due_height, c.act_by_height), (170, 165));
        let a = Deadline::anchor_grace(&p, 8, 200, 1);
        assert_eq!((a.due_height, a.act_by_height), (203, 202));
        // Confirmed at 300, three confirmations at 302, credited by 308 at the latest.
        let d = Deadline::deposit_grace(&p, "ab:1", 300, 0);
        assert_eq!((d.due_height, d.act_by_height), (308, 308));
    }

    #[test]
    fn blocks_left_act_and_missed() {
        let d = Deadline::new(DeadlineKind::AnchorGrace { batch_id: 1 }, 100, 4);
        assert_eq!(d.blocks_left(90), 10);
        assert!(!d.should_act(95));
        assert!(d.should_act(96));
        assert!(d.should_act(99));
        assert!(!d.missed(99));
        assert_eq!(d.blocks_left(99), 1);
        assert!(d.missed(100));
        assert!(!d.should_act(100), "too late to act");
        assert_eq!(d.blocks_left(120), 0);
        // A margin larger than the height saturates at 0.
        assert_eq!(Deadline::new(DeadlineKind::AnchorGrace { batch_id: 1 }, 3, 10).act_by_height, 0);
    }

    #[test]
    fn ledger_names_the_nearest_unmissed_deadline() {
        let mut l = DeadlineLedger::new();
        assert_eq!(l.seconds_to_nearest(0, DEFAULT_SECONDS_PER_BLOCK), None);
        l.open(Deadline::new(DeadlineKind::ChallengeWindow { batch_id: 1 }, 120, 5));
        l.open(Deadline::new(DeadlineKind::AnchorGrace { batch_id: 2 }, 105, 1));
        l.open(Deadline::new(DeadlineKind::DepositGrace { outpoint: "x:0".into() }, 110, 0));
        assert_eq!(l.len(), 3);
        assert_eq!(l.nearest(100).map(|d| d.due_height), Some(105));
        assert_eq!(l.seconds_to_nearest(100, 600), Some(3000));
        // Once 105 is missed, the next one is nearest and the missed one is listed.
        assert_eq!(l.nearest(106).map(|d| d.due_height), Some(110));
        assert_eq!(l.missed(106).len(), 1);
        assert_eq!(l.seconds_to_nearest(106, 60), Some(240));
        assert!(l.close(&DeadlineKind::DepositGrace { outpoint: "x:0".into() }).is_some());
        assert_eq!(l.nearest(106).map(|d| d.due_height), Some(120));
        // Re-opening a kind replaces it (a reorg moved the anchor).
        l.open(Deadline::new(DeadlineKind::ChallengeWindow { batch_id: 1 }, 130, 5));
        assert_eq!(l.len(), 2);
        assert_eq!(l.get(&DeadlineKind::ChallengeWindow { batch_id: 1 }).map(|d| d.due_height), Some(130));
    }
}
