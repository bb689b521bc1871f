//! Judges: pure functions from what the watcher observed (anchors, mirrored batches, bridge outpoints,
//! replayed L2 data) and the L1 tip to the findings that hold now (docs/protocol.md §13, §15).
//!
//! Each judge returns the **complete** set of findings of its kinds that hold at this tip, so the
//! caller can store new ones (the store de-duplicates by [`Finding::key`](crate::store::Finding::key))
//! and resolve open ones that no longer appear. No I/O, no clock: the caller passes `now`.

pub mod anchors;
pub mod bridge;

pub use anchors::{match_anchors, reorged_batches, AnchorParams, AnchorReport, AnchorState, BatchAnchor, BatchRef};
pub use bridge::{
    judge_bridge, BridgeInputs, BridgeParams, BridgeReport, BridgeSpend, Credit, DepositSeen, Payout, SpendPath,
    Withdrawal,
};

use crate::store::{Finding, Outpoint, Severity};

/// A finding with no L1 block attached (the judges' findings depend on the tip, not on one block;
/// they are resolved by the caller when they stop holding).
pub(crate) fn finding(
    kind: &str,
    severity: Severity,
    batch_id: Option<u64>,
    outpoint: Option<Outpoint>,
    deadline_height: Option<u64>,
    evidence: serde_json::Value,
    now: i64,
) -> Finding {
    Finding {
        id: Finding::key(kind, batch_id, outpoint.as_ref()),
        kind: kind.into(),
        severity,
        batch_id,
        outpoint,
        first_seen: now,
        resolved_at: None,
        deadline_height,
        evidence,
        height: None,
        block_hash: None,
    }
}
