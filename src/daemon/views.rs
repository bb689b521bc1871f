//! User-facing views computed after each tick (withdrawal safety, account proofs) for the HTTP API
//! and the web page (in progress).

use super::replay_stage::ReplayStage;
use super::Snapshot;

/// Views served to users.
#[derive(Debug, Clone, Default)]
pub struct Views {}

/// Recomputes the views from the replay stage and the snapshot at L1 height `tip`.
pub fn update(snap: &mut Snapshot, replay: &ReplayStage, tip: u64) {
    let _ = (replay, tip);
    snap.views = Views::default();
}
