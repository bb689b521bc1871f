//! Anchoring turn order (pure). When a sealed batch is left unanchored (seed 002: "if one validator
//! doesn't anchor, another can"), several guardians may pay to anchor it. To avoid everyone paying for
//! the same 36 bytes, each guardian derives the same order from public data:
//!
//! `score = sha256("kray-anchor-turn" || ref_block_hash || batch_id (u64 BE) || guardian x-only key)`,
//! ranks sorted by ascending score (ties by key), where `ref_block_hash` is the hash of the block at
//! the reference height (the first height at which the batch counts as abandoned) so every guardian
//! uses the same block whatever its current tip. Rank `r` may anchor from `ref_height + r × step`.
//! Another guardian's anchor confirming counts as success: our pending transaction is dropped.

use bitcoin::hashes::{sha256, Hash, HashEngine};

/// Domain tag of the turn score.
pub const TURN_TAG: &[u8] = b"kray-anchor-turn";

/// The turn score of one guardian for one batch.
pub fn turn_score(ref_block_hash: &[u8; 32], batch_id: u64, guardian: &[u8; 32]) -> [u8; 32] {
    let mut e = sha256::Hash::engine();
    e.input(TURN_TAG);
    e.input(ref_block_hash);
    e.input(&batch_id.to_be_bytes());
    e.input(guardian);
    sha256::Hash::from_engine(e).to_byte_array()
}

/// The guardians in turn order for `batch_id` (duplicates removed).
pub fn turn_order(ref_block_hash: &[u8; 32], batch_id: u64, guardians: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut scored: Vec<([u8; 32], [u8; 32])> =
        guardians.iter().map(|g| (turn_score(ref_block_hash, batch_id, g), *g)).collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, g)| g).collect()
}

/// The rank of `me` (0 = first), `None` if `me` is not among `guardians`.
pub fn rank_of(ref_block_hash: &[u8; 32], batch_id: u64, guardians: &[[u8; 32]], me: &[u8; 32]) -> Option<usize> {
    turn_order(ref_block_hash, batch_id, guardians).iter().position(|g| g == me)
}

/// What to do about an abandoned batch at the current tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnDecision {
    /// Someone's anchor for the batch confirmed: done (drop any pending anchor of ours).
    Done,
    /// Not our turn yet: wait until the tip reaches this height.
    Wait {
        /// First tip height at which we may anchor.
        until: u64,
    },
    /// Our turn: anchor now (the sender makes it idempotent).
    Act,
}

/// The turn plan of one guardian for one abandoned batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnPlan {
    /// Our rank.
    pub rank: usize,
    /// The height from which rank 0 may anchor.
    pub ref_height: u64,
    /// Blocks each later rank waits.
    pub step_blocks: u64,
}

impl TurnPlan {
    /// The plan for `me`, `None` if `me` is not a listed guardian.
    pub fn new(
        ref_height: u64,
        ref_block_hash: &[u8; 32],
        batch_id: u64,
        guardians: &[[u8; 32]],
        me: &[u8; 32],
        step_blocks: u64,
    ) -> Option<Self> {
        rank_of(ref_block_hash, batch_id, guardians, me).map(|rank| Self { rank, ref_height, step_blocks })
    }

    /// The first tip height at which we may anchor.
    pub fn our_height(&self) -> u64 {
        self.ref_height.saturating_add((self.rank as u64).saturating_mul(self.step_blocks))
    }

    /// The decision at `tip`, given whether an anchor of the batch (anyone's) has confirmed.
    pub fn decide(&self, tip: u64, anchored: bool) -> TurnDecision {
        if anchored {
            TurnDecision::Done
        } else if tip >= self.our_height() {
            TurnDecision::Act
        } else {
            TurnDecision::Wait { until: self.our_height() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn order_is_a_deterministic_permutation_independent_of_input_order() {
        let hash = [0xaa; 32];
        let gs = [g(1), g(2), g(3), g(4)];
        let order = turn_order(&hash, 7, &gs);
        let mut rev = gs;
        rev.reverse();
        assert_eq!(order, turn_order(&hash, 7, &rev));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, gs.to_vec());
        // Each guardian has a distinct rank.
        let ranks: Vec<usize> = gs.iter().map(|me| rank_of(&hash, 7, &gs, me).expect("listed")).collect();
        let mut r = ranks.clone();
        r.sort();
        assert_eq!(r, vec![0, 1, 2, 3]);
        assert_eq!(rank_of(&hash, 7, &gs, &g(9)), None);
        assert_eq!(turn_order(&hash, 7, &[g(1), g(1)]).len(), 1);
    }

    #[test]
    fn order_rotates_with_block_and_batch() {
        let gs: Vec<[u8; 32]> = (1..=8).map(g).collect();
        let firsts: std::collections::BTreeSet<[u8; 32]> = (0u8..32)
            .flat_map(|b| [turn_order(&[b; 32], 1, &gs)[0], turn_order(&[0; 32], u64::from(b), &gs)[0]])
            .collect();
        assert!(firsts.len() >= 4, "first place rotates: {}", firsts.len());
    }

    #[test]
    fn later_ranks_wait_a_step_each_and_a_confirmed_anchor_ends_it() {
        let hash = [0x11; 32];
        let gs = [g(1), g(2), g(3)];
        let order = turn_order(&hash, 5, &gs);
        let second = TurnPlan::new(100, &hash, 5, &gs, &order[1], 3).expect("plan");
        assert_eq!(second.rank, 1);
        assert_eq!(second.decide(100, false), TurnDecision::Wait { until: 103 });
        assert_eq!(second.decide(103, false), TurnDecision::Act);
        assert_eq!(second.decide(103, true), TurnDecision::Done);
        let first = TurnPlan::new(100, &hash, 5, &gs, &order[0], 3).expect("plan");
        assert_eq!(first.decide(100, false), TurnDecision::Act);
        let third = TurnPlan::new(100, &hash, 5, &gs, &order[2], 3).expect("plan");
        assert_eq!(third.our_height(), 106);
    }
}
