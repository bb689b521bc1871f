//! Rows of the store, as typed values. Hashes, txids and roots are lowercase hex strings (display
//! order for Bitcoin hashes), so the store does not depend on any Bitcoin library.

use std::fmt;
use std::str::FromStr;

use super::error::StoreError;

/// The name of the cursor that [`Store::apply_block`](super::Store::apply_block) moves.
pub const CHAIN_STAGE: &str = "l1";

/// The minimum number of L1 headers kept for fork detection (one week of blocks).
pub const MIN_HEADERS_KEPT: u64 = 1_008;

/// An L1 block header as the follower sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L1Header {
    /// Block height.
    pub height: u64,
    /// Block hash (hex).
    pub hash: String,
    /// Hash of the parent block (hex).
    pub prev_hash: String,
}

/// Progress of one pipeline stage: the last L1 block whose effects are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Stage name (e.g. [`CHAIN_STAGE`]).
    pub stage: String,
    /// Height of the last applied block.
    pub height: u64,
    /// Hash of the last applied block.
    pub hash: String,
}

/// A transaction output reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Outpoint {
    /// Txid (hex, display order).
    pub txid: String,
    /// Output index.
    pub vout: u32,
}

impl fmt::Display for Outpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.txid, self.vout)
    }
}

impl FromStr for Outpoint {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (txid, vout) = s.rsplit_once(':').ok_or_else(|| StoreError::Corrupt(format!("outpoint {s:?}")))?;
        let vout = vout.parse().map_err(|_| StoreError::Corrupt(format!("outpoint {s:?}")))?;
        Ok(Outpoint { txid: txid.to_string(), vout })
    }
}

/// A KRAY anchor found on L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The `OP_RETURN` output.
    pub outpoint: Outpoint,
    /// Height of the block holding it.
    pub height: u64,
    /// Hash of that block.
    pub block_hash: String,
    /// The anchored 32-byte root (hex).
    pub root: String,
}

/// A bridge outpoint (a deposit into the 2-of-3 bridge) and its spend, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    /// The bridge output.
    pub outpoint: Outpoint,
    /// Height of the block that created it.
    pub height: u64,
    /// Hash of that block.
    pub block_hash: String,
    /// Rune amount in base units (stored as decimal text: it may exceed `i64`).
    pub amount: u128,
    /// Txid of the spending transaction, if spent.
    pub spent_by: Option<String>,
    /// Height of the block holding the spend, if spent.
    pub spent_height: Option<u64>,
    /// Hash of the block holding the spend, if spent.
    pub spent_block_hash: Option<String>,
    /// The L2 recipient (32-byte account key, hex) named by the `KRAY D` tag of the creating
    /// transaction; `None` when it has none (a payout's change, a deposit without a tag).
    pub recipient: Option<String>,
    /// Whether the creating transaction itself spent a bridge outpoint (bridge change, not a deposit).
    pub from_bridge: bool,
}

impl Deposit {
    /// Confirmations at chain tip `tip_height` (1 when created in the tip block; 0 if above it).
    pub fn confirmations(&self, tip_height: u64) -> u64 {
        confirmations(self.height, tip_height)
    }
}

/// Confirmations of a row created at `height` when the tip is at `tip_height`.
pub fn confirmations(height: u64, tip_height: u64) -> u64 {
    tip_height.checked_sub(height).map_or(0, |d| d.saturating_add(1))
}

/// An outpoint holding the tracked rune (any owner), or a bridge outpoint (possibly holding none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuneOutput {
    /// The output.
    pub outpoint: Outpoint,
    /// Height of the block that created it (for checkpoint rows: the first indexed block).
    pub height: u64,
    /// Hash of that block.
    pub block_hash: String,
    /// Its `scriptPubKey` (hex).
    pub script_pubkey: String,
    /// Its value in sats.
    pub value: u64,
    /// Amount of the tracked rune, in base units.
    pub amount: u128,
    /// Txid of the spending transaction, if spent.
    pub spent_by: Option<String>,
    /// Height of the block holding the spend, if spent.
    pub spent_height: Option<u64>,
    /// Hash of the block holding the spend, if spent.
    pub spent_block_hash: Option<String>,
}

/// How a bridge outpoint was spent (BIP 341 witness shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpendPath {
    /// Key path: a single 64- or 65-byte signature (plus an optional annex). On a bridge whose
    /// internal key is the NUMS point this is impossible; on a LEGACY bridge it is one key alone.
    KeyPath,
    /// Script path: a leaf script and a control block (the 2-of-3 leaf for honest payouts).
    ScriptPath,
    /// Anything else (cannot be valid for a taproot output; kept for evidence).
    Other,
}

impl SpendPath {
    /// The stored name: `key`, `script` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendPath::KeyPath => "key",
            SpendPath::ScriptPath => "script",
            SpendPath::Other => "other",
        }
    }
}

impl FromStr for SpendPath {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "key" => Ok(SpendPath::KeyPath),
            "script" => Ok(SpendPath::ScriptPath),
            "other" => Ok(SpendPath::Other),
            other => Err(StoreError::Corrupt(format!("spend path {other:?}"))),
        }
    }
}

/// An output of a transaction that spends a bridge outpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutOutput {
    /// The output.
    pub outpoint: Outpoint,
    /// Its `scriptPubKey` (hex).
    pub script_pubkey: String,
    /// Its address on the configured network, when the script has one.
    pub address: Option<String>,
    /// Its value in sats.
    pub value: u64,
    /// Amount of the tracked rune it received (0 for `OP_RETURN` and BTC-only outputs).
    pub amount: u128,
}

/// A spend of a bridge outpoint, as stored, with the spending transaction's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpend {
    /// The bridge outpoint spent.
    pub outpoint: Outpoint,
    /// Its tracked-rune amount.
    pub amount: u128,
    /// The spending transaction.
    pub spent_by: String,
    /// Index of the spending input in that transaction.
    pub input_index: u32,
    /// The spend path.
    pub path: SpendPath,
    /// The revealed leaf script (hex) of a script-path spend.
    pub leaf_script: Option<String>,
    /// Height of the block holding the spend.
    pub height: u64,
    /// Hash of that block.
    pub block_hash: String,
    /// Every output of the spending transaction, by index (shared by all bridge inputs of one tx).
    pub outputs: Vec<PayoutOutput>,
}

/// One copy of a batch as received from a publication source. Two different copies for one
/// `batch_id` are both kept (evidence of equivocation); an identical copy is stored once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCopy {
    /// Batch id (`batch_id` of the header).
    pub batch_id: u64,
    /// Where it came from (publication API URL, peer, file).
    pub source: String,
    /// Hash of `raw` (hex), the copy's identity.
    pub content_hash: String,
    /// The raw bytes as received.
    pub raw: Vec<u8>,
    /// When it was first received (unix seconds).
    pub received_at: i64,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs attention.
    Warning,
    /// Funds or safety at stake.
    Critical,
}

impl Severity {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(StoreError::Corrupt(format!("severity {other:?}"))),
        }
    }
}

/// A finding (a detected fault or anomaly). `id` is the de-duplication key: inserting a finding
/// whose `id` is stored already changes nothing, so re-detecting after a restart never repeats it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// De-duplication key, e.g. from [`Finding::key`].
    pub id: String,
    /// What it is about.
    pub kind: crate::finding_kind::FindingKind,
    /// Severity.
    pub severity: Severity,
    /// The batch concerned, if any.
    pub batch_id: Option<u64>,
    /// The outpoint concerned, if any.
    pub outpoint: Option<Outpoint>,
    /// When first seen (unix seconds).
    pub first_seen: i64,
    /// When resolved (unix seconds), if resolved.
    pub resolved_at: Option<i64>,
    /// L1 height by which it must be acted on (challenge deadline), if any.
    pub deadline_height: Option<u64>,
    /// Evidence (stored as JSON text).
    pub evidence: serde_json::Value,
    /// Height of the L1 block that produced the finding; `None` for findings from L2 data alone.
    /// Set by `apply_block` for findings passed as block effects.
    pub height: Option<u64>,
    /// Hash of that L1 block.
    pub block_hash: Option<String>,
}

impl Finding {
    /// The canonical de-duplication key: `kind`, then the batch id and/or the outpoint.
    pub fn key(kind: &str, batch_id: Option<u64>, outpoint: Option<&Outpoint>) -> String {
        let batch = batch_id.map(|b| b.to_string()).unwrap_or_default();
        let out = outpoint.map(|o| o.to_string()).unwrap_or_default();
        format!("{kind}/{batch}/{out}")
    }
}

/// What one L1 block changes in the store, applied with the block by
/// [`Store::apply_block`](super::Store::apply_block). Height and block hash come from the block.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A KRAY anchor output in the block.
    Anchor {
        /// The `OP_RETURN` output.
        outpoint: Outpoint,
        /// The anchored root (hex).
        root: String,
    },
    /// A challenge marker output in the block (§13.3).
    Challenge {
        /// The `OP_RETURN` output.
        outpoint: Outpoint,
        /// The challenged batch.
        batch_id: u64,
        /// The proof hash it commits to (hex).
        proof_hash: String,
    },
    /// A new bridge outpoint (deposit) in the block.
    Deposit {
        /// The bridge output.
        outpoint: Outpoint,
        /// Rune amount in base units.
        amount: u128,
        /// The L2 recipient (hex) of the creating transaction's `KRAY D` tag, if any.
        recipient: Option<String>,
        /// Whether the creating transaction spent a bridge outpoint (bridge change).
        from_bridge: bool,
    },
    /// A transaction in the block spends a stored, unspent bridge outpoint.
    Spend {
        /// The bridge output spent.
        outpoint: Outpoint,
        /// Txid of the spending transaction.
        spent_by: String,
    },
    /// A finding produced by the block (de-duplicated by id).
    Finding(Finding),
    /// A new output holding the tracked rune, or a new bridge outpoint (stored in `rune_outputs`).
    RuneOutput {
        /// The output.
        outpoint: Outpoint,
        /// Its `scriptPubKey` (hex).
        script_pubkey: String,
        /// Its value in sats.
        value: u64,
        /// Amount of the tracked rune.
        amount: u128,
    },
    /// A transaction in the block spends a stored, unspent rune output.
    RuneSpend {
        /// The output spent.
        outpoint: Outpoint,
        /// Txid of the spending transaction.
        spent_by: String,
    },
    /// How a bridge outpoint was spent (stored in `bridge_spends`; the deposit row's spend is
    /// [`Effect::Spend`]).
    BridgeSpend {
        /// The bridge outpoint spent.
        outpoint: Outpoint,
        /// Txid of the spending transaction.
        spent_by: String,
        /// Index of the spending input.
        input_index: u32,
        /// The spend path.
        path: SpendPath,
        /// The revealed leaf script (hex) of a script-path spend.
        leaf_script: Option<String>,
    },
    /// An output of a transaction spending a bridge outpoint (stored in `payout_outputs`).
    PayoutOutput(PayoutOutput),
}

/// A challenge marker on the best chain (anyone's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeMarker {
    /// The `OP_RETURN` output.
    pub outpoint: Outpoint,
    /// Height of its block.
    pub height: u64,
    /// Hash of its block.
    pub block_hash: String,
    /// The challenged batch.
    pub batch_id: u64,
    /// The proof hash (hex).
    pub proof_hash: String,
}

/// Row counts removed or reverted by [`Store::rollback_above`](super::Store::rollback_above).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollback {
    /// Headers deleted.
    pub headers: u64,
    /// Anchors deleted.
    pub anchors: u64,
    /// Challenge markers deleted.
    pub challenges: u64,
    /// Deposits deleted.
    pub deposits: u64,
    /// Deposits whose spend was reverted to unspent.
    pub unspent: u64,
    /// Findings deleted.
    pub findings: u64,
    /// Rune outputs deleted.
    pub rune_outputs: u64,
    /// Rune outputs whose spend was reverted to unspent.
    pub rune_unspent: u64,
    /// Bridge spends deleted.
    pub bridge_spends: u64,
    /// Payout outputs deleted.
    pub payout_outputs: u64,
    /// Cursors moved back to the fork point.
    pub cursors: u64,
}

/// Where a stored batch copy stands in arrival order, without its body: what the replay stage reads
/// to learn what is new since its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRef {
    /// Batch id.
    pub batch_id: u64,
    /// The copy's content hash (hex).
    pub content_hash: String,
    /// Arrival number (the store's `seq`): increases with every stored copy.
    pub seq: u64,
    /// Size of the raw body in bytes.
    pub size: u64,
}

/// A judged batch copy as stored (`verdicts` table): what a restart loads instead of replaying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRow {
    /// Batch id.
    pub batch_id: u64,
    /// The judged copy's content hash (hex).
    pub content_hash: String,
    /// The copy's arrival number.
    pub seq: u64,
    /// The copy's batch hash (hex), the root anchored on L1.
    pub batch_hash: String,
    /// The L1 height the header declares.
    pub l1_height: u64,
    /// Txs the header declares.
    pub tx_count: u64,
    /// The verdict as JSON text (the caller's encoding).
    pub outcome: String,
    /// The signed header as JSON text.
    pub header: String,
    /// The producer's signature (hex).
    pub signature: String,
    /// The fraud proof (JSON text) of a fault.
    pub proof: Option<String>,
    /// When it was judged (unix seconds).
    pub judged_at: i64,
}

/// A stored replayer checkpoint (`replay_checkpoints` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCheckpointRow {
    /// The replayer's tip batch id in this state.
    pub batch_id: u64,
    /// Every batch copy with `seq <= seq_floor` is reflected in the state.
    pub seq_floor: u64,
    /// The state root (hex), for logs and checks.
    pub state_root: String,
    /// The replayer's checkpoint encoding.
    pub bytes: Vec<u8>,
    /// When it was written (unix seconds).
    pub created_at: i64,
}

/// The first bytes of a stored batch copy (its header), without the rest of the body: what the
/// mirror's index needs at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyHead {
    /// Batch id.
    pub batch_id: u64,
    /// The copy's content hash (hex).
    pub content_hash: String,
    /// The source it was first stored from.
    pub source: String,
    /// Its first bytes (at most the length asked for).
    pub head: Vec<u8>,
}
