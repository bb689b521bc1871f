//! Prometheus metrics of the guardian: one `kray_guardian_` namespace, bounded labels only.
//!
//! Every label is one of the fixed enums below (a stage, a verdict, a finding class, a sink, ...), never a
//! batch id, an address, a URL or a txid, so the number of series is fixed at start-up: [`Metrics::new`]
//! creates every label combination with value 0, which also lets `increase()` see the very first event.
//! The daemon (issue #5) owns one [`Metrics`], calls the typed setters, and serves [`Metrics::encode`] as
//! `GET /metrics` (OpenMetrics text). Dashboards and alert rules in `dashboards/` use these names; the test
//! `tests/dashboards.rs` checks that every name they use is in the encoding.
// Wired by the run daemon (issue #5); until then only the tests call most of this module.
#![allow(dead_code)]

use std::fmt::{self, Write as _};
use std::sync::atomic::AtomicU64;

use kray_replayer::FaultClass;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The prefix of every metric name.
pub const NAMESPACE: &str = "kray_guardian";

/// Defines a label enum with a fixed set of kebab-case values.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $value:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }

            /// Parses a label value.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// A stage of the guardian's pipeline (label `stage`).
    pub enum Stage {
        /// L1 block headers followed (height of the best header).
        L1Headers => "l1-headers",
        /// L1 blocks scanned for anchors, deposits and payouts (height of the last block applied).
        L1Blocks => "l1-blocks",
        /// L2 batches copied from the publication sources (id of the last batch mirrored).
        BatchesMirrored => "batches-mirrored",
        /// L2 batches replayed with the reference state machine (id of the last batch replayed).
        BatchesReplayed => "batches-replayed",
    }
}

label_enum! {
    /// The verdict of one replayed batch (label `verdict`).
    pub enum BatchVerdict {
        /// The batch follows the protocol.
        Valid => "valid",
        /// The batch breaks the protocol (a fraud proof exists).
        Fault => "fault",
        /// The batch cannot be judged yet (L1 source behind or unreachable); not fraud.
        CannotVerify => "cannot-verify",
    }
}

impl BatchVerdict {
    /// The label of a replayer verdict.
    pub fn of(verdict: &kray_replayer::Verdict) -> Self {
        match verdict {
            kray_replayer::Verdict::Valid { .. } => BatchVerdict::Valid,
            kray_replayer::Verdict::Fault(_) => BatchVerdict::Fault,
            kray_replayer::Verdict::CannotVerify { .. } => BatchVerdict::CannotVerify,
        }
    }
}

label_enum! {
    /// How bad a finding is (label `severity`); the same three values as the store's severity.
    pub enum Severity {
        /// Informational.
        Info => "info",
        /// Needs attention.
        Warning => "warning",
        /// Funds or safety at stake.
        Critical => "critical",
    }
}

impl From<kray_watcher::store::Severity> for Severity {
    fn from(s: kray_watcher::store::Severity) -> Self {
        match s {
            kray_watcher::store::Severity::Info => Severity::Info,
            kray_watcher::store::Severity::Warning => Severity::Warning,
            kray_watcher::store::Severity::Critical => Severity::Critical,
        }
    }
}

label_enum! {
    /// A finding that comes from watching L1 and the publication sources rather than from replaying a batch.
    /// `equivocation` is not here: it is the replayer's [`FaultClass::Equivocation`].
    pub enum WatchKind {
        /// A batch was sealed but never anchored, or its anchoring stopped.
        AbandonedBatch => "abandoned-batch",
        /// An anchor on L1 whose root matches no published batch.
        UnknownAnchor => "unknown-anchor",
        /// Two anchors for one batch with different roots.
        ConflictingAnchor => "conflicting-anchor",
        /// The same root anchored twice.
        DuplicateAnchor => "duplicate-anchor",
        /// An anchor left the best chain in a reorg.
        AnchorReorged => "anchor-reorged",
        /// A confirmed deposit into the bridge that no batch credits.
        MissingCredit => "missing-credit",
        /// A deposit credited twice on L2.
        DoubleCredit => "double-credit",
        /// A withdrawal paid before its challenge window ended.
        EarlyPayout => "early-payout",
        /// The bridge output spent through the Taproot key path (bypassing the 2-of-3 script).
        KeyPathSpend => "key-path-spend",
        /// A bridge spend that pays no queued withdrawal.
        UnknownPayout => "unknown-payout",
        /// An anchored batch whose data is not published.
        DataWithheld => "data-withheld",
        /// A missing batch id between two published batches.
        BatchGap => "batch-gap",
        /// An L1 reorg deeper than the guardian's safety depth.
        DeepReorg => "deep-reorg",
        /// A challenge deadline is close and the challenge is not confirmed.
        DeadlineAtRisk => "deadline-at-risk",
        /// The guardian's wallet is below its configured minimum.
        LowBalance => "low-balance",
    }
}

label_enum! {
    /// Where a finding comes from (label `origin`), derived from its class.
    pub enum Origin {
        /// A replayer fault class: the batch itself is fraudulent (a fraud proof exists).
        Replay => "replay",
        /// An L1 or publication-source finding.
        L1 => "l1",
        /// A finding kind this build does not know.
        Other => "other",
    }
}

/// The class of a finding (label `class`): the 15 replayer fault classes, the L1 and watcher kinds, or
/// `other` for a kind this build does not know (keeps the label bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingClass {
    /// A replayer fault class.
    Fault(FaultClass),
    /// An L1 or watcher finding.
    Watch(WatchKind),
    /// Any other kind.
    Other,
}

impl FindingClass {
    /// Every class: the fault classes, then the watcher kinds, then `other`.
    pub fn all() -> Vec<FindingClass> {
        let faults = FaultClass::ALL.iter().map(|c| FindingClass::Fault(*c));
        let watch = WatchKind::ALL.iter().map(|k| FindingClass::Watch(*k));
        faults.chain(watch).chain(std::iter::once(FindingClass::Other)).collect()
    }

    /// The class of a stored finding kind (a kebab-case name); unknown kinds are [`FindingClass::Other`].
    pub fn from_kind(kind: &str) -> Self {
        if let Some(c) = FaultClass::parse(kind) {
            FindingClass::Fault(c)
        } else if let Some(k) = WatchKind::parse(kind) {
            FindingClass::Watch(k)
        } else {
            FindingClass::Other
        }
    }

    /// The label value (the kebab-case kind name).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingClass::Fault(c) => c.as_str(),
            FindingClass::Watch(k) => k.as_str(),
            FindingClass::Other => "other",
        }
    }

    /// Where findings of this class come from.
    pub fn origin(self) -> Origin {
        match self {
            FindingClass::Fault(_) => Origin::Replay,
            FindingClass::Watch(_) => Origin::L1,
            FindingClass::Other => Origin::Other,
        }
    }
}

impl fmt::Display for FindingClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for FindingClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

label_enum! {
    /// An alert sink (label `sink`).
    pub enum Sink {
        /// E-mail over SMTP.
        Smtp => "smtp",
        /// An HTTP webhook.
        Webhook => "webhook",
        /// The guardian's own log.
        Log => "log",
    }
}

label_enum! {
    /// The outcome of one alert delivery (label `result`).
    pub enum DeliveryResult {
        /// The sink accepted the alert.
        Success => "success",
        /// The sink refused it or could not be reached.
        Failure => "failure",
    }
}

label_enum! {
    /// What two data sources disagree about (label `subject`).
    pub enum Subject {
        /// The L1 chain tip (e.g. bitcoind and Electrum report different best blocks).
        L1Tip => "l1-tip",
        /// An L1 block at one height.
        L1Block => "l1-block",
        /// The content of an L2 batch (two publication sources serve different copies).
        Batch => "batch",
    }
}

label_enum! {
    /// A kind of L2 batch source of the mirror (label `source`): the kind, never the URL.
    pub enum MirrorSource {
        /// The federation's publication API.
        PublicationApi => "publication-api",
        /// Another guardian or mirror.
        Peer => "peer",
        /// Batch files on disk.
        File => "file",
    }
}

/// Labels `{stage}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    stage: Stage,
}

/// Labels `{verdict}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerdictLabels {
    verdict: BatchVerdict,
}

/// Labels `{class, severity, origin}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FindingLabels {
    class: FindingClass,
    severity: Severity,
    origin: Origin,
}

impl FindingLabels {
    fn new(class: FindingClass, severity: Severity) -> Self {
        FindingLabels { class, severity, origin: class.origin() }
    }
}

/// Labels `{sink, result}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabels {
    sink: Sink,
    result: DeliveryResult,
}

/// Labels `{subject}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SubjectLabels {
    subject: Subject,
}

/// Labels `{source}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: MirrorSource,
}

/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

/// The time left until the nearest open challenge deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeadlineEta {
    /// L1 blocks left (deadline height minus the current L1 height; 0 when due).
    pub blocks: u64,
    /// Estimated seconds left (the daemon's estimate, e.g. blocks × 600).
    pub seconds: f64,
}

/// Encoding the registry failed (a label or value could not be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(fmt::Error);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "encoding the metrics failed: {}", self.0)
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Metric names (as in `# TYPE` lines; counters gain `_total` and the info `_info` in samples).
mod name {
    pub const UP: &str = "kray_guardian_up";
    pub const BUILD: &str = "kray_guardian_build";
    pub const SYNC_HEIGHT: &str = "kray_guardian_sync_height";
    pub const LAST_SUCCESS: &str = "kray_guardian_last_success_timestamp_seconds";
    pub const L1_NODE_LAG: &str = "kray_guardian_l1_node_lag_blocks";
    pub const REORGS: &str = "kray_guardian_reorgs";
    pub const LAST_REORG_DEPTH: &str = "kray_guardian_last_reorg_depth_blocks";
    pub const DEEP_REORG_STOPPED: &str = "kray_guardian_deep_reorg_stopped";
    pub const BATCHES: &str = "kray_guardian_batches";
    pub const FINDINGS_OPEN: &str = "kray_guardian_findings_open";
    pub const FINDINGS: &str = "kray_guardian_findings";
    pub const OLDEST_FINDING_AGE: &str = "kray_guardian_oldest_open_finding_age_seconds";
    pub const OPEN_DEADLINES: &str = "kray_guardian_open_deadlines";
    pub const NEAREST_DEADLINE_BLOCKS: &str = "kray_guardian_nearest_deadline_blocks";
    pub const NEAREST_DEADLINE_SECONDS: &str = "kray_guardian_nearest_deadline_seconds";
    pub const OWN_ANCHORS_PENDING: &str = "kray_guardian_own_anchors_pending";
    pub const OWN_ANCHORS_CONFIRMED: &str = "kray_guardian_own_anchors_confirmed";
    pub const OWN_ANCHOR_BUMPS: &str = "kray_guardian_own_anchor_bumps";
    pub const OWN_ANCHOR_FEES: &str = "kray_guardian_own_anchor_fees_sats";
    pub const REPLAYED_TXS: &str = "kray_guardian_replayed_txs";
    pub const REPLAY_DURATION: &str = "kray_guardian_replay_duration_seconds";
    pub const BRIDGE_BALANCE: &str = "kray_guardian_bridge_balance_base_units";
    pub const L2_LIABILITIES: &str = "kray_guardian_l2_liabilities_base_units";
    pub const SOLVENCY_RATIO: &str = "kray_guardian_solvency_ratio";
    pub const WALLET_BALANCE: &str = "kray_guardian_wallet_balance_sats";
    pub const WALLET_MIN_BALANCE: &str = "kray_guardian_wallet_min_balance_sats";
    pub const ALERT_DELIVERIES: &str = "kray_guardian_alert_deliveries";
    pub const SOURCE_DISAGREEMENT: &str = "kray_guardian_source_disagreement";
    pub const SOURCE_DISAGREEMENTS: &str = "kray_guardian_source_disagreements";
    pub const MIRROR_ERRORS: &str = "kray_guardian_mirror_errors";
}

/// A `u64` as a gauge value, saturating at `i64::MAX`.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The guardian's metrics: a registry and a typed handle on every family in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    names: Vec<&'static str>,
    up: Gauge,
    sync_height: Family<StageLabels, Gauge>,
    last_success: Family<StageLabels, Gauge>,
    l1_node_lag: Gauge,
    reorgs: Counter,
    last_reorg_depth: Gauge,
    deep_reorg_stopped: Gauge,
    batches: Family<VerdictLabels, Counter>,
    findings_open: Family<FindingLabels, Gauge>,
    findings: Family<FindingLabels, Counter>,
    oldest_finding_age: Gauge,
    open_deadlines: Gauge,
    nearest_deadline_blocks: Gauge,
    nearest_deadline_seconds: FloatGauge,
    own_anchors_pending: Gauge,
    own_anchors_confirmed: Counter,
    own_anchor_bumps: Counter,
    own_anchor_fees: Counter,
    replayed_txs: Counter,
    replay_duration: Histogram,
    bridge_balance: FloatGauge,
    l2_liabilities: FloatGauge,
    solvency_ratio: FloatGauge,
    wallet_balance: Gauge,
    wallet_min_balance: Gauge,
    alert_deliveries: Family<DeliveryLabels, Counter>,
    source_disagreement: Family<SubjectLabels, Gauge>,
    source_disagreements: Family<SubjectLabels, Counter>,
    mirror_errors: Family<SourceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and every label combination present (value 0), `up` 1,
    /// the build info of this binary, and a solvency ratio of 1 (no liabilities).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut names = Vec::new();
        // Register clones: every metric type shares its value between clones.
        macro_rules! add {
            ($name:expr, $help:expr, $metric:expr) => {{
                let m = $metric;
                registry.register($name, $help, m.clone());
                names.push($name);
                m
            }};
        }

        let up = add!(name::UP, "1 while the guardian daemon runs.", Gauge::default());
        let build = Info::new(vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]);
        registry.register(name::BUILD, "Build of the guardian (label version).", build);
        names.push(name::BUILD);
        let sync_height = add!(
            name::SYNC_HEIGHT,
            "Progress per stage: L1 height for l1-*, batch id for batches-*.",
            Family::<StageLabels, Gauge>::default()
        );
        let last_success = add!(
            name::LAST_SUCCESS,
            "Unix time of the last successful run of each stage.",
            Family::<StageLabels, Gauge>::default()
        );
        let l1_node_lag =
            add!(name::L1_NODE_LAG, "Blocks the L1 node is behind the best header it knows of.", Gauge::default());
        let reorgs = add!(name::REORGS, "L1 reorgs handled.", Counter::default());
        let last_reorg_depth = add!(name::LAST_REORG_DEPTH, "Depth of the last L1 reorg, in blocks.", Gauge::default());
        let deep_reorg_stopped = add!(
            name::DEEP_REORG_STOPPED,
            "1 while the guardian has stopped acting after a reorg deeper than its safety depth.",
            Gauge::default()
        );
        let batches = add!(name::BATCHES, "Batches replayed, by verdict.", Family::<VerdictLabels, Counter>::default());
        let findings_open = add!(
            name::FINDINGS_OPEN,
            "Open (unresolved) findings, by class, severity and origin.",
            Family::<FindingLabels, Gauge>::default()
        );
        let findings = add!(
            name::FINDINGS,
            "Findings detected, by class, severity and origin.",
            Family::<FindingLabels, Counter>::default()
        );
        let oldest_finding_age = add!(
            name::OLDEST_FINDING_AGE,
            "Age of the oldest open finding in seconds (0 when none is open).",
            Gauge::default()
        );
        let open_deadlines = add!(name::OPEN_DEADLINES, "Open findings with a challenge deadline.", Gauge::default());
        let nearest_deadline_blocks = add!(
            name::NEAREST_DEADLINE_BLOCKS,
            "L1 blocks until the nearest open challenge deadline (0 when none; see open_deadlines).",
            Gauge::default()
        );
        let nearest_deadline_seconds = add!(
            name::NEAREST_DEADLINE_SECONDS,
            "Estimated seconds until the nearest open challenge deadline (0 when none; see open_deadlines).",
            FloatGauge::default()
        );
        let own_anchors_pending = add!(
            name::OWN_ANCHORS_PENDING,
            "The guardian's own L1 transactions (challenges) broadcast and not yet confirmed.",
            Gauge::default()
        );
        let own_anchors_confirmed =
            add!(name::OWN_ANCHORS_CONFIRMED, "The guardian's own L1 transactions confirmed.", Counter::default());
        let own_anchor_bumps = add!(
            name::OWN_ANCHOR_BUMPS,
            "Fee bumps (RBF/CPFP) of the guardian's own transactions.",
            Counter::default()
        );
        let own_anchor_fees = add!(
            name::OWN_ANCHOR_FEES,
            "Fees paid by the guardian's confirmed transactions, in sats.",
            Counter::default()
        );
        let replayed_txs = add!(name::REPLAYED_TXS, "L2 transactions replayed.", Counter::default());
        let replay_duration = add!(
            name::REPLAY_DURATION,
            "Time to replay one batch, in seconds.",
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        );
        let bridge_balance = add!(
            name::BRIDGE_BALANCE,
            "KRAY rune held by the bridge multisig on L1, in base units.",
            FloatGauge::default()
        );
        let l2_liabilities = add!(
            name::L2_LIABILITIES,
            "KRAY owed on L2 (balances plus queued withdrawals), in base units.",
            FloatGauge::default()
        );
        let solvency_ratio = add!(
            name::SOLVENCY_RATIO,
            "Bridge balance divided by L2 liabilities (1 when there are no liabilities).",
            FloatGauge::default()
        );
        let wallet_balance =
            add!(name::WALLET_BALANCE, "Balance of the guardian's fee wallet, in sats.", Gauge::default());
        let wallet_min_balance = add!(
            name::WALLET_MIN_BALANCE,
            "Configured minimum balance of the guardian's fee wallet, in sats.",
            Gauge::default()
        );
        let alert_deliveries = add!(
            name::ALERT_DELIVERIES,
            "Alert deliveries, by sink and result.",
            Family::<DeliveryLabels, Counter>::default()
        );
        let source_disagreement = add!(
            name::SOURCE_DISAGREEMENT,
            "1 while two data sources disagree about the subject.",
            Family::<SubjectLabels, Gauge>::default()
        );
        let source_disagreements = add!(
            name::SOURCE_DISAGREEMENTS,
            "Times two data sources started to disagree, by subject.",
            Family::<SubjectLabels, Counter>::default()
        );
        let mirror_errors = add!(
            name::MIRROR_ERRORS,
            "Failed fetches of the batch mirror, by kind of source.",
            Family::<SourceLabels, Counter>::default()
        );

        let m = Metrics {
            registry,
            names,
            up,
            sync_height,
            last_success,
            l1_node_lag,
            reorgs,
            last_reorg_depth,
            deep_reorg_stopped,
            batches,
            findings_open,
            findings,
            oldest_finding_age,
            open_deadlines,
            nearest_deadline_blocks,
            nearest_deadline_seconds,
            own_anchors_pending,
            own_anchors_confirmed,
            own_anchor_bumps,
            own_anchor_fees,
            replayed_txs,
            replay_duration,
            bridge_balance,
            l2_liabilities,
            solvency_ratio,
            wallet_balance,
            wallet_min_balance,
            alert_deliveries,
            source_disagreement,
            source_disagreements,
            mirror_errors,
        };
        m.populate();
        m
    }

    /// Creates every label combination (value 0) so each series exists from the first scrape.
    fn populate(&self) {
        self.up.set(1);
        for &stage in Stage::ALL {
            let _ = self.sync_height.get_or_create(&StageLabels { stage });
            let _ = self.last_success.get_or_create(&StageLabels { stage });
        }
        for &verdict in BatchVerdict::ALL {
            let _ = self.batches.get_or_create(&VerdictLabels { verdict });
        }
        for class in FindingClass::all() {
            for &severity in Severity::ALL {
                let _ = self.findings_open.get_or_create(&FindingLabels::new(class, severity));
                let _ = self.findings.get_or_create(&FindingLabels::new(class, severity));
            }
        }
        for &sink in Sink::ALL {
            for &result in DeliveryResult::ALL {
                let _ = self.alert_deliveries.get_or_create(&DeliveryLabels { sink, result });
            }
        }
        for &subject in Subject::ALL {
            let _ = self.source_disagreement.get_or_create(&SubjectLabels { subject });
            let _ = self.source_disagreements.get_or_create(&SubjectLabels { subject });
        }
        for &source in MirrorSource::ALL {
            let _ = self.mirror_errors.get_or_create(&SourceLabels { source });
        }
        self.solvency_ratio.set(1.0);
    }

    /// The registered family names, as in the `# TYPE` lines. Samples of a counter end in `_total`, of the
    /// build info in `_info`, of the histogram in `_bucket`, `_sum` and `_count`.
    pub fn family_names(&self) -> Vec<&'static str> {
        self.names.clone()
    }

    /// The registry, for a server that encodes it itself.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The OpenMetrics text exposition of every family (the body of `GET /metrics`, content type
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`).
    pub fn encode(&self) -> Result<String, EncodeError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(EncodeError)?;
        Ok(out)
    }

    /// Sets `kray_guardian_up` (1 while running; the daemon may set 0 while shutting down).
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Sets a stage's progress: the L1 height for L1 stages, the batch id for batch stages.
    pub fn set_stage_height(&self, stage: Stage, height: u64) {
        self.sync_height.get_or_create(&StageLabels { stage }).set(to_i64(height));
    }

    /// Records that a stage ran successfully at `unix_seconds` (even if it found nothing new).
    pub fn set_stage_success(&self, stage: Stage, unix_seconds: i64) {
        self.last_success.get_or_create(&StageLabels { stage }).set(unix_seconds);
    }

    /// Sets how many blocks the L1 node is behind the best header it knows of.
    pub fn set_l1_node_lag(&self, blocks: u64) {
        self.l1_node_lag.set(to_i64(blocks));
    }

    /// Records one L1 reorg of `depth` blocks.
    pub fn record_reorg(&self, depth: u64) {
        self.reorgs.inc();
        self.last_reorg_depth.set(to_i64(depth));
    }

    /// Sets whether the guardian has stopped acting after a reorg deeper than its safety depth.
    pub fn set_deep_reorg_stopped(&self, stopped: bool) {
        self.deep_reorg_stopped.set(i64::from(stopped));
    }

    /// Counts one replayed batch by verdict.
    pub fn record_batch(&self, verdict: BatchVerdict) {
        self.batches.get_or_create(&VerdictLabels { verdict }).inc();
    }

    /// Counts one newly detected finding.
    pub fn record_finding(&self, class: FindingClass, severity: Severity) {
        self.findings.get_or_create(&FindingLabels::new(class, severity)).inc();
    }

    /// Replaces the open-finding counts: every (class, severity) not listed becomes 0; repeated pairs add up.
    pub fn set_finding_counts(&self, counts: &[(FindingClass, Severity, u64)]) {
        let mut totals = std::collections::HashMap::new();
        for &(class, severity, n) in counts {
            *totals.entry((class, severity)).or_insert(0u64) += n;
        }
        for class in FindingClass::all() {
            for &severity in Severity::ALL {
                let n = totals.get(&(class, severity)).copied().unwrap_or(0);
                self.findings_open.get_or_create(&FindingLabels::new(class, severity)).set(to_i64(n));
            }
        }
    }

    /// Sets the age of the oldest open finding (`None`: no open finding, exported as 0).
    pub fn set_oldest_open_finding_age(&self, seconds: Option<u64>) {
        self.oldest_finding_age.set(to_i64(seconds.unwrap_or(0)));
    }

    /// Sets the number of open challenge deadlines and the time to the nearest (`None`: exported as 0).
    pub fn set_deadlines(&self, open: u64, nearest: Option<DeadlineEta>) {
        self.open_deadlines.set(to_i64(open));
        let eta = nearest.unwrap_or(DeadlineEta { blocks: 0, seconds: 0.0 });
        self.nearest_deadline_blocks.set(to_i64(eta.blocks));
        self.nearest_deadline_seconds.set(eta.seconds.max(0.0));
    }

    /// Sets how many of the guardian's own transactions are broadcast and unconfirmed.
    pub fn set_own_anchors_pending(&self, pending: u64) {
        self.own_anchors_pending.set(to_i64(pending));
    }

    /// Records that one of the guardian's own transactions confirmed, having paid `fee_sats`.
    pub fn record_own_anchor_confirmed(&self, fee_sats: u64) {
        self.own_anchors_confirmed.inc();
        self.own_anchor_fees.inc_by(fee_sats);
    }

    /// Records one fee bump of one of the guardian's own transactions.
    pub fn record_own_anchor_bump(&self) {
        self.own_anchor_bumps.inc();
    }

    /// Records the replay of one batch of `batch_txs` transactions that took `seconds`.
    pub fn observe_replay(&self, batch_txs: u64, seconds: f64) {
        self.replayed_txs.inc_by(batch_txs);
        self.replay_duration.observe(seconds);
    }

    /// Sets the bridge balance and the L2 liabilities (rune base units) and the solvency ratio from them
    /// (1 when there are no liabilities). Exported as floats: exact up to 2^53 base units.
    pub fn set_bridge(&self, balance: u128, liabilities: u128) {
        let (b, l) = (balance as f64, liabilities as f64);
        self.bridge_balance.set(b);
        self.l2_liabilities.set(l);
        self.solvency_ratio.set(if liabilities == 0 { 1.0 } else { b / l });
    }

    /// Sets the guardian's fee wallet balance, in sats.
    pub fn set_wallet_balance(&self, sats: u64) {
        self.wallet_balance.set(to_i64(sats));
    }

    /// Sets the configured minimum fee wallet balance (the `LowWalletBalance` alert threshold), in sats.
    pub fn set_wallet_min_balance(&self, sats: u64) {
        self.wallet_min_balance.set(to_i64(sats));
    }

    /// Counts one alert delivery attempt.
    pub fn record_alert_delivery(&self, sink: Sink, result: DeliveryResult) {
        self.alert_deliveries.get_or_create(&DeliveryLabels { sink, result }).inc();
    }

    /// Sets whether sources disagree about `subject`; a change from agreeing to disagreeing is counted.
    pub fn set_source_disagreement(&self, subject: Subject, disagree: bool) {
        let labels = SubjectLabels { subject };
        let before = self.source_disagreement.get_or_create(&labels).set(i64::from(disagree));
        if disagree && before == 0 {
            self.source_disagreements.get_or_create(&labels).inc();
        }
    }

    /// Counts one failed fetch of the batch mirror from a kind of source.
    pub fn record_mirror_error(&self, source: MirrorSource) {
        self.mirror_errors.get_or_create(&SourceLabels { source }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name and labels exactly as encoded), if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn enc(m: &Metrics) -> String {
        m.encode().expect("encode")
    }

    #[test]
    fn encoding_has_every_family_and_ends_with_eof() {
        let m = Metrics::new();
        let text = enc(&m);
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        let names = m.family_names();
        assert!(names.len() >= 30, "{names:?}");
        for n in &names {
            assert!(n.starts_with("kray_guardian_"), "{n} is outside the namespace");
            assert!(text.contains(&format!("# TYPE {n} ")), "{n} missing from:\n{text}");
        }
        let mut dedup = names.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len(), "duplicate family names");
        assert!(text.contains(&format!("kray_guardian_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
        assert_eq!(sample(&text, "kray_guardian_up"), Some(1.0));
        assert_eq!(sample(&text, "kray_guardian_solvency_ratio"), Some(1.0));
    }

    #[test]
    fn every_label_combination_exists_at_zero() {
        let text = enc(&Metrics::new());
        assert_eq!(sample(&text, "kray_guardian_sync_height{stage=\"batches-replayed\"}"), Some(0.0));
        assert_eq!(sample(&text, "kray_guardian_batches_total{verdict=\"cannot-verify\"}"), Some(0.0));
        assert_eq!(
            sample(&text, "kray_guardian_findings_total{class=\"key-path-spend\",severity=\"critical\",origin=\"l1\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "kray_guardian_alert_deliveries_total{sink=\"webhook\",result=\"failure\"}"),
            Some(0.0)
        );
        let open = text.lines().filter(|l| l.starts_with("kray_guardian_findings_open{")).count();
        assert_eq!(open, (15 + WatchKind::ALL.len() + 1) * 3);
    }

    #[test]
    fn finding_classes_are_bounded_and_distinct() {
        let all = FindingClass::all();
        assert_eq!(all.len(), 15 + 15 + 1);
        let mut labels: Vec<_> = all.iter().map(|c| c.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len(), "two classes share a label value");
        for c in &all {
            assert_eq!(FindingClass::from_kind(c.as_str()), *c);
        }
        assert_eq!(FindingClass::from_kind("equivocation"), FindingClass::Fault(FaultClass::Equivocation));
        assert_eq!(FindingClass::from_kind("bc1q-some-address"), FindingClass::Other);
        assert_eq!(FindingClass::from_kind("wrong-state-root").origin(), Origin::Replay);
        assert_eq!(FindingClass::from_kind("low-balance").origin(), Origin::L1);
    }

    #[test]
    fn setters_move_values() {
        let m = Metrics::new();
        m.set_stage_height(Stage::L1Blocks, 840_123);
        m.set_stage_success(Stage::L1Blocks, 1_700_000_000);
        m.set_l1_node_lag(4);
        m.record_reorg(2);
        m.record_reorg(3);
        m.set_deep_reorg_stopped(true);
        m.record_batch(BatchVerdict::Fault);
        m.record_batch(BatchVerdict::Fault);
        m.record_finding(FindingClass::Fault(FaultClass::BadNonce), Severity::Critical);
        m.set_oldest_open_finding_age(Some(90));
        m.set_deadlines(2, Some(DeadlineEta { blocks: 12, seconds: 7200.0 }));
        m.set_own_anchors_pending(1);
        m.record_own_anchor_confirmed(1_500);
        m.record_own_anchor_confirmed(500);
        m.record_own_anchor_bump();
        m.observe_replay(100, 0.25);
        m.observe_replay(50, 0.75);
        m.set_bridge(900, 1_000);
        m.set_wallet_balance(250_000);
        m.set_wallet_min_balance(100_000);
        m.record_alert_delivery(Sink::Smtp, DeliveryResult::Failure);
        m.record_mirror_error(MirrorSource::Peer);
        m.set_up(false);
        let t = enc(&m);
        assert_eq!(sample(&t, "kray_guardian_sync_height{stage=\"l1-blocks\"}"), Some(840_123.0));
        assert_eq!(sample(&t, "kray_guardian_sync_height{stage=\"l1-headers\"}"), Some(0.0));
        assert_eq!(sample(&t, "kray_guardian_last_success_timestamp_seconds{stage=\"l1-blocks\"}"), Some(1.7e9));
        assert_eq!(sample(&t, "kray_guardian_l1_node_lag_blocks"), Some(4.0));
        assert_eq!(sample(&t, "kray_guardian_reorgs_total"), Some(2.0));
        assert_eq!(sample(&t, "kray_guardian_last_reorg_depth_blocks"), Some(3.0));
        assert_eq!(sample(&t, "kray_guardian_deep_reorg_stopped"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_batches_total{verdict=\"fault\"}"), Some(2.0));
        assert_eq!(sample(&t, "kray_guardian_batches_total{verdict=\"valid\"}"), Some(0.0));
        assert_eq!(
            sample(&t, "kray_guardian_findings_total{class=\"bad-nonce\",severity=\"critical\",origin=\"replay\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&t, "kray_guardian_oldest_open_finding_age_seconds"), Some(90.0));
        assert_eq!(sample(&t, "kray_guardian_open_deadlines"), Some(2.0));
        assert_eq!(sample(&t, "kray_guardian_nearest_deadline_blocks"), Some(12.0));
        assert_eq!(sample(&t, "kray_guardian_nearest_deadline_seconds"), Some(7200.0));
        assert_eq!(sample(&t, "kray_guardian_own_anchors_pending"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_own_anchors_confirmed_total"), Some(2.0));
        assert_eq!(sample(&t, "kray_guardian_own_anchor_bumps_total"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_own_anchor_fees_sats_total"), Some(2_000.0));
        assert_eq!(sample(&t, "kray_guardian_replayed_txs_total"), Some(150.0));
        assert_eq!(sample(&t, "kray_guardian_replay_duration_seconds_count"), Some(2.0));
        assert_eq!(sample(&t, "kray_guardian_replay_duration_seconds_sum"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_replay_duration_seconds_bucket{le=\"0.512\"}"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_bridge_balance_base_units"), Some(900.0));
        assert_eq!(sample(&t, "kray_guardian_l2_liabilities_base_units"), Some(1_000.0));
        assert_eq!(sample(&t, "kray_guardian_solvency_ratio"), Some(0.9));
        assert_eq!(sample(&t, "kray_guardian_wallet_balance_sats"), Some(250_000.0));
        assert_eq!(sample(&t, "kray_guardian_wallet_min_balance_sats"), Some(100_000.0));
        assert_eq!(sample(&t, "kray_guardian_alert_deliveries_total{sink=\"smtp\",result=\"failure\"}"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_mirror_errors_total{source=\"peer\"}"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_up"), Some(0.0));

        m.set_deadlines(0, None);
        m.set_oldest_open_finding_age(None);
        m.set_bridge(5, 0);
        let t = enc(&m);
        assert_eq!(sample(&t, "kray_guardian_nearest_deadline_blocks"), Some(0.0));
        assert_eq!(sample(&t, "kray_guardian_open_deadlines"), Some(0.0));
        assert_eq!(sample(&t, "kray_guardian_oldest_open_finding_age_seconds"), Some(0.0));
        assert_eq!(sample(&t, "kray_guardian_solvency_ratio"), Some(1.0));
    }

    #[test]
    fn finding_counts_replace_previous_counts() {
        let m = Metrics::new();
        let theft = FindingClass::Watch(WatchKind::KeyPathSpend);
        let root = FindingClass::Fault(FaultClass::WrongStateRoot);
        m.set_finding_counts(&[
            (theft, Severity::Critical, 1),
            (root, Severity::Critical, 2),
            (root, Severity::Critical, 1),
        ]);
        let t = enc(&m);
        let theft_series = "kray_guardian_findings_open{class=\"key-path-spend\",severity=\"critical\",origin=\"l1\"}";
        let root_series =
            "kray_guardian_findings_open{class=\"wrong-state-root\",severity=\"critical\",origin=\"replay\"}";
        assert_eq!(sample(&t, theft_series), Some(1.0));
        assert_eq!(sample(&t, root_series), Some(3.0));
        m.set_finding_counts(&[(root, Severity::Critical, 1)]);
        let t = enc(&m);
        assert_eq!(sample(&t, theft_series), Some(0.0), "a resolved class drops to 0");
        assert_eq!(sample(&t, root_series), Some(1.0));
    }

    #[test]
    fn source_disagreement_counts_transitions() {
        let m = Metrics::new();
        m.set_source_disagreement(Subject::L1Tip, true);
        m.set_source_disagreement(Subject::L1Tip, true);
        m.set_source_disagreement(Subject::L1Tip, false);
        m.set_source_disagreement(Subject::L1Tip, true);
        let t = enc(&m);
        assert_eq!(sample(&t, "kray_guardian_source_disagreement{subject=\"l1-tip\"}"), Some(1.0));
        assert_eq!(sample(&t, "kray_guardian_source_disagreements_total{subject=\"l1-tip\"}"), Some(2.0));
        assert_eq!(sample(&t, "kray_guardian_source_disagreements_total{subject=\"batch\"}"), Some(0.0));
    }

    #[test]
    fn batch_verdict_of_replayer_verdict() {
        let v = kray_replayer::Verdict::CannotVerify { batch_id: 7, reason: "l1 behind".into() };
        assert_eq!(BatchVerdict::of(&v), BatchVerdict::CannotVerify);
        let v = kray_replayer::Verdict::Valid { batch_id: 7, state_root: String::new(), tx_count: 3 };
        assert_eq!(BatchVerdict::of(&v), BatchVerdict::Valid);
    }

    #[test]
    fn severity_from_store() {
        assert_eq!(Severity::from(kray_watcher::store::Severity::Critical), Severity::Critical);
        assert_eq!(Severity::parse("warning"), Some(Severity::Warning));
        assert_eq!(Severity::parse("fatal"), None);
    }
}
