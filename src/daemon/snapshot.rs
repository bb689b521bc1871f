//! What the daemon knows after its last tick, shared read-only with the HTTP API.

use std::collections::BTreeMap;
use std::sync::Arc;

use kray_watcher::judge::{AnchorReport, BridgeReport};
use kray_watcher::store::Finding;
use serde::Serialize;

use super::replay_stage::Results;

/// Progress of one pipeline stage.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StageStatus {
    /// Height reached (L1 height, or batch id for L2 stages).
    pub height: u64,
    /// Unix time of the last successful step (0 = never).
    pub last_success: i64,
    /// Why the stage cannot go on right now, if it cannot.
    pub blocked: Option<String>,
}

/// What the profile says about the bridge.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeInfo {
    /// Its address.
    pub address: String,
    /// Its scriptPubKey, hex.
    pub script_pubkey: String,
    /// The descriptor audit (§19).
    pub audit: kray_replayer::bridge::BridgeAudit,
}

/// The daemon's view after its last tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// `watch`, `challenge` or `full`.
    pub mode: String,
    /// Unix time the daemon started.
    pub started_at: i64,
    /// True once the first catch-up is done (before it, verdicts are "not synced").
    pub synced: bool,
    /// L1 headers followed.
    pub l1_headers: StageStatus,
    /// L1 blocks indexed.
    pub l1_blocks: StageStatus,
    /// Batches mirrored (highest id stored).
    pub mirrored: StageStatus,
    /// Batches replayed (highest id judged).
    pub replayed: StageStatus,
    /// Open `deep-reorg` findings: while > 0 the guardian watches but does not act (no proofs, no
    /// anchors) until an operator resolves them.
    pub deep_reorgs: u32,
    /// Deep reorgs seen by this process's L1 index.
    #[serde(skip)]
    pub deep_reorgs_seen: u32,
    /// Every judged batch copy, by id (shared with the replay stage: publishing costs no copy).
    #[serde(skip)]
    pub batches: Results,
    /// Anchor status of every batch copy.
    #[serde(skip)]
    pub anchors: Arc<AnchorReport>,
    /// Bridge judgement, when the profile names a bridge and a rune.
    #[serde(skip)]
    pub bridge: Option<BridgeReport>,
    /// The bridge: its address, scriptPubKey (hex) and descriptor audit, when the profile names one.
    #[serde(skip)]
    pub bridge_descriptor: Option<BridgeInfo>,
    /// Challenge markers on the best chain (anyone's).
    #[serde(skip)]
    pub challenges: Vec<kray_watcher::store::ChallengeMarker>,
    /// Open findings.
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// Fraud proofs by batch id (JSON text).
    #[serde(skip)]
    pub proofs: Arc<BTreeMap<u64, String>>,
    /// User-facing views (withdrawal safety, account proofs).
    #[serde(skip)]
    pub views: super::views::Views,
}
