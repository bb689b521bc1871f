//! `kray-guardian run`: the daemon. One loop, one tick at a time, in pipeline order:
//!
//! 1. **L1**: follow bitcoind into the store (anchors, bridge outputs), reorg- and restart-safe;
//! 2. **mirror**: poll the publication sources, store every copy byte-exact;
//! 3. **replay**: judge every new batch copy with the reference state machine;
//! 4. **judge**: anchors, faults (and the bridge) → findings, stored once, resolved when cleared;
//! 5. **act**: alerts, fraud proofs, anchoring, by mode;
//! 6. publish the [`Snapshot`] the HTTP API serves.
//!
//! A sequential loop keeps every stage's input consistent (no stage sees half of another's work) and
//! makes restarts simple: all state is in the store or rebuilt from it (the replayer re-runs the stored
//! batches from genesis at start).

pub mod act;
pub mod bridge_stage;
pub mod judge_stage;
pub mod notify;
pub mod observe;
pub mod replay_stage;
pub mod rune_checkpoint;
pub mod snapshot;
pub mod views;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kray_replayer::genesis::Chain;
use kray_replayer::genesis::Genesis;
use kray_replayer::state::State;
use kray_replayer::Profile;
use kray_watcher::chain::{BitcoindSource, FollowStatus, FollowerConfig, LagReason};
use kray_watcher::l1_index::L1Index;
use kray_watcher::mirror::{ChainIdentity, Mirror, MirrorConfig, SourceSpec};
use kray_watcher::store::Store;

use crate::config::GuardianConfig;
use replay_stage::ReplayStage;
pub use snapshot::Snapshot;

/// The shared, read-only view for the HTTP API.
pub type Shared = Arc<RwLock<Snapshot>>;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Loads the profile named by the config, with its overrides applied.
pub fn load_profile(cfg: &GuardianConfig) -> anyhow::Result<Profile> {
    let mut profile = Profile::load(&cfg.profile).with_context(|| format!("profile {:?}", cfg.profile))?;
    if let Some(r) = &cfg.rune_id {
        profile.rune_id = r.clone();
    }
    if let Some(c) = cfg.confirmations {
        profile.confirmations = c;
    }
    profile.validate().with_context(|| format!("profile {:?} with the config's overrides", cfg.profile))?;
    Ok(profile)
}

/// The chain and its genesis state.
fn genesis(cfg: &GuardianConfig, profile: &Profile) -> anyhow::Result<(Chain, State)> {
    let path = cfg.genesis.as_ref().context("genesis: a genesis file is required")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading genesis {}", path.display()))?;
    let genesis = Genesis::from_json(&text).with_context(|| format!("genesis {}", path.display()))?;
    genesis.build(profile).with_context(|| format!("genesis {}", path.display()))
}

/// The bitcoind chain source named by the config.
fn bitcoind_source(cfg: &GuardianConfig) -> anyhow::Result<BitcoindSource> {
    Ok(BitcoindSource::from_rpc(cfg.bitcoind.rpc()?))
}

/// The daemon.
pub struct Daemon {
    cfg: GuardianConfig,
    profile: Profile,
    store: Store,
    l1: L1Index<BitcoindSource>,
    mirror: Mirror,
    replay: ReplayStage,
    actor: act::Actor,
    bridge_script: Option<bitcoin::ScriptBuf>,
    alerter: Arc<kray_alerts::Alerter>,
    api_base: String,
    metrics: Arc<crate::metrics::Metrics>,
    deliveries: observe::DeliveryCursor,
    /// The last followed headers (height → hash), to measure reorgs.
    recent: std::collections::BTreeMap<u32, bitcoin::BlockHash>,
    shared: Shared,
    work: WorkState,
}

/// The alerter for the config's `[alerts]` sinks.
fn alerter(cfg: &GuardianConfig) -> anyhow::Result<kray_alerts::Alerter> {
    let config: kray_alerts::AlertsConfig =
        toml::Value::Table(cfg.alerts.clone()).try_into().context("the [alerts] section is not valid")?;
    Ok(kray_alerts::Alerter::start(&config)?)
}

impl Daemon {
    /// Opens the store, the L1 index and the replayer (resuming from the store).
    pub async fn open(cfg: GuardianConfig) -> anyhow::Result<Daemon> {
        let profile = load_profile(&cfg)?;
        let (chain, genesis_state) = genesis(&cfg, &profile)?;
        let store = Store::open(&cfg.data_dir, cfg.database_url.as_ref().map(|s| s.expose()))
            .await
            .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
        let identity = ChainIdentity::of(&chain);
        let started = std::time::Instant::now();
        let (replay, from) = ReplayStage::resume(&store, chain, genesis_state, profile.clone()).await?;
        tracing::info!(
            resumed_from = ?from,
            judged = replay.judged_height(),
            millis = started.elapsed().as_millis() as u64,
            "replay state loaded"
        );
        let source = bitcoind_source(&cfg)?;
        let start = match cfg.start_height {
            Some(h) => h,
            None => {
                use kray_watcher::chain::ChainSource;
                let tip = source.tip().await.context("asking bitcoind for its tip (start_height is unset)")?;
                if store.tip_header().await?.is_none() {
                    tracing::warn!(
                        height = tip.height,
                        "start_height is unset: following from the node's tip; deposits and anchors before it are not \
                         indexed (set start_height to the rune's etching height for a complete bridge audit)"
                    );
                }
                tip.height
            }
        };
        let mut follow = FollowerConfig::new(start);
        follow.finality_depth = cfg.finality_depth;
        let bridge = match (&profile.bridge, profile.rune_id.is_empty()) {
            (Some(_), false) => {
                let config = kray_watcher::bridge::BridgeConfig::from_profile(&profile)?;
                Some(match &cfg.rune_checkpoint {
                    Some(path) => config.with_checkpoint(rune_checkpoint::load(path)?),
                    None => config,
                })
            }
            _ => {
                tracing::warn!("the profile names no bridge or no rune id: deposits and payouts are not watched");
                None
            }
        };
        let bridge_script = bridge.as_ref().map(|b| b.bridge_script.clone());
        let l1 = L1Index::open_with_bridge(source, store.clone(), follow, bridge).await?;
        let actor = act::Actor::new(&cfg, &profile)?;
        let shared = Arc::new(RwLock::new(Snapshot {
            mode: cfg.mode.to_string(),
            started_at: unix_now(),
            ..Snapshot::default()
        }));
        let mut mirror_cfg = MirrorConfig::new(identity);
        mirror_cfg.withheld.challenge_window_blocks = u64::from(profile.challenge_window_blocks);
        mirror_cfg.withheld.deadline_blocks = u64::from(profile.anchor_grace_blocks);
        let specs = cfg
            .sources
            .iter()
            .map(|s| {
                let mut spec = SourceSpec::new(s.name.clone(), s.url.clone());
                spec.timeout = Duration::from_millis(s.timeout_ms);
                spec.poll_interval = Duration::from_millis(s.poll_interval_ms);
                spec.max_body_bytes = s.max_body_bytes;
                spec
            })
            .collect();
        let mirror = Mirror::new(store.clone(), specs, mirror_cfg).await?;
        let alerter = Arc::new(alerter(&cfg)?);
        let api_base = format!("http://{}", cfg.http.listen);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Ok(Daemon {
            cfg,
            profile,
            store,
            l1,
            mirror,
            replay,
            actor,
            bridge_script,
            alerter,
            api_base,
            metrics,
            deliveries: observe::DeliveryCursor::default(),
            recent: std::collections::BTreeMap::new(),
            shared,
            work: WorkState::default(),
        })
    }

    /// The shared snapshot.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
    }

    /// The mirror's read-only publication API (served beside ours).
    pub fn mirror_router(&self) -> axum::Router {
        self.mirror.router()
    }

    /// Saves the replay checkpoint, delivers queued alerts (waiting at most 10 s), stops the alerter
    /// and closes the store.
    pub async fn shutdown(mut self) {
        if self.replay.checkpoint_stale() {
            self.save_checkpoint(unix_now()).await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.alerter.flush()).await.is_err() {
            tracing::warn!("alert sinks still retrying after 10 s: stopping anyway (unsent ones are re-sent at start)");
        }
        match Arc::try_unwrap(self.alerter) {
            Ok(alerter) => alerter.shutdown().await,
            Err(_) => tracing::warn!("alert notifications still in flight at shutdown"),
        }
        self.store.close().await;
    }

    /// Hands `findings` to the alerter and records them as notified, so a restart notifies exactly
    /// the ones the last run stored but never handed over.
    async fn notify(&mut self, findings: &[kray_watcher::store::Finding], now: i64) {
        if findings.is_empty() {
            return;
        }
        for f in findings {
            if let Some(a) = notify::alert_of(f, &self.api_base) {
                self.alerter.raise(a);
            }
        }
        // Marked once every sink has finished with them (delivered or given up), in the background:
        // a slow sink never delays detection.
        let (alerter, store) = (self.alerter.clone(), self.store.clone());
        let ids: Vec<String> = findings.iter().map(|f| f.id.clone()).collect();
        tokio::spawn(async move {
            alerter.flush().await;
            for id in ids {
                if let Err(e) = store.mark_notified(&id, now).await {
                    tracing::error!(error = %e, %id, "recording a notification");
                }
            }
        });
    }

    /// Audits the profile's bridge descriptor (docs/protocol.md §19): a key path one signer can use
    /// alone is a critical finding, one whose internal key is not provably unspendable a warning.
    pub async fn audit_bridge(&mut self) -> anyhow::Result<()> {
        let Some(descriptor) = kray_watcher::bridge::profile_descriptor(&self.profile)? else { return Ok(()) };
        let audit = descriptor.audit();
        tracing::info!(audit = ?audit, "bridge descriptor");
        if let Ok(mut snap) = self.shared.write() {
            snap.bridge_descriptor = Some(snapshot::BridgeInfo {
                address: descriptor.address(self.profile.network.to_bitcoin()).to_string(),
                script_pubkey: hex::encode(descriptor.script_pubkey().as_bytes()),
                audit: audit.clone(),
            });
        }
        if !audit.key_path_possibly_spendable {
            return Ok(());
        }
        let severity = if audit.key_path_spendable_by_single_party {
            kray_watcher::store::Severity::Critical
        } else {
            kray_watcher::store::Severity::Warning
        };
        let f = kray_watcher::store::Finding {
            id: kray_watcher::store::Finding::key("bridge-key-path", None, None),
            kind: "bridge-key-path".into(),
            severity,
            batch_id: None,
            outpoint: None,
            first_seen: unix_now(),
            resolved_at: None,
            deadline_height: None,
            evidence: serde_json::json!({"reason": if audit.key_path_spendable_by_single_party {
                    "the bridge's internal key is a federation signer's key: that signer can spend the bridge alone"
                } else {
                    "the bridge's internal key is not the NUMS point: whoever holds it can spend the bridge alone"
                }, "audit": audit}),
            height: None,
            block_hash: None,
        };
        if self.store.insert_finding(&f).await? {
            self.notify(std::slice::from_ref(&f), f.first_seen).await;
        }
        Ok(())
    }

    /// Notifies the open findings a previous run stored but never notified (call once at start).
    pub async fn notify_pending(&mut self) {
        match self.store.unnotified_findings().await {
            Ok(pending) => {
                if !pending.is_empty() {
                    tracing::warn!(count = pending.len(), "notifying findings the last run stored but did not notify");
                }
                self.notify(&pending, unix_now()).await;
            }
            Err(e) => tracing::error!(error = %e, "reading unnotified findings"),
        }
    }

    /// A finding whose deadline is within the safety margin while this guardian cannot act on it
    /// (not synced, acting stopped by a deep reorg, or a mode that does not challenge) is itself an
    /// alert: someone else must act.
    fn deadline_alerts(&mut self, snap: &Snapshot, tip: u64) {
        let margin = u64::from(self.cfg.challenge.safety_margin_blocks);
        let can_act = snap.synced && snap.deep_reorgs == 0 && self.cfg.mode >= crate::config::Mode::Challenge;
        for f in &snap.findings {
            let Some(due) = f.deadline_height else { continue };
            let key = format!("deadline-at-risk:{}", f.id);
            if !can_act && tip < due && due - tip <= margin {
                let mut a = kray_alerts::Alert::new(
                    key,
                    kray_alerts::AlertKind::ChallengeDeadline,
                    kray_alerts::Severity::P0,
                    format!("{} deadline in {} blocks and this guardian cannot act", f.kind, due - tip),
                    format!(
                        "finding {} is due at L1 height {due}; this guardian is {} — another guardian must act",
                        f.id,
                        if !snap.synced {
                            "not synced"
                        } else if snap.deep_reorgs > 0 {
                            "stopped by a deep reorg"
                        } else {
                            "in watch mode"
                        }
                    ),
                );
                a.batch_id = f.batch_id;
                a.deadline_height = Some(due);
                a.evidence_url = Some(format!("{}/v1/findings", self.api_base));
                self.alerter.raise(a);
            } else {
                self.alerter.resolve(key);
            }
        }
    }

    /// Writes each new fraud proof to `<data_dir>/proofs/` (temp file, then rename): the operator's
    /// copy, kept whatever happens to the sequencer or the store.
    fn store_proofs(&self, judged: &[replay_stage::Replayed]) {
        for r in judged {
            let replay_stage::Outcome::Fault { class, proof, .. } = &r.outcome else { continue };
            let dir = self.cfg.data_dir.join("proofs");
            let path = dir.join(format!(
                "proof-batch-{:06}-{class}-{}.json",
                r.batch_id,
                &r.batch_hash[..16.min(r.batch_hash.len())]
            ));
            let tmp = path.with_extension("json.tmp");
            let written = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&tmp, proof))
                .and_then(|()| std::fs::rename(&tmp, &path));
            match written {
                Ok(()) => tracing::warn!(batch_id = r.batch_id, %class, path = %path.display(), "fraud proof stored"),
                Err(e) => {
                    tracing::error!(batch_id = r.batch_id, error = %e, path = %path.display(), "storing the fraud proof")
                }
            }
        }
    }

    /// Compares the followed chain with the headers seen last tick: blocks no longer on it were
    /// reorged out (the depth is recorded).
    fn measure_reorg(&mut self) {
        let now: std::collections::BTreeMap<u32, bitcoin::BlockHash> =
            self.l1.follower().headers().map(|h| (h.height, h.hash)).collect();
        let floor = now.keys().next().copied().unwrap_or(0);
        let depth =
            self.recent.iter().filter(|(height, hash)| **height >= floor && now.get(height) != Some(hash)).count()
                as u64;
        if depth > 0 {
            tracing::warn!(depth, "L1 reorg");
            self.metrics.record_reorg(depth);
        }
        let keep = now.len().saturating_sub(100);
        self.recent = now.into_iter().skip(keep).collect();
    }

    /// Low balance is an alert (raised once, resolved when funded again).
    fn wallet_alert(&mut self, b: kray_challenger::sender::BalanceStatus) {
        use kray_challenger::sender::BalanceStatus;
        match b {
            BalanceStatus::Ok { spendable } => {
                self.metrics.set_wallet_balance(spendable.to_sat());
                self.alerter.resolve("low-balance");
            }
            BalanceStatus::Low { spendable, needed } => {
                self.metrics.set_wallet_balance(spendable.to_sat());
                self.metrics.set_wallet_min_balance(needed.to_sat());
                let mut a = kray_alerts::Alert::new(
                    "low-balance",
                    kray_alerts::AlertKind::GuardianError,
                    kray_alerts::Severity::P1,
                    "guardian wallet balance is low",
                    format!("{spendable} spendable, the next action may cost {needed} at the fee cap"),
                );
                a.evidence_url = Some(format!("{}/v1/status", self.api_base));
                self.alerter.raise(a);
            }
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One pass through the pipeline. Errors of one stage are logged and leave the stage for the
    /// next tick; nothing here stops the daemon. Returns true when the replay stage has more to do
    /// now (its time budget ended the pass), so the caller ticks again without pausing.
    pub async fn tick(&mut self) -> bool {
        let now = unix_now();
        let mut snap = self.shared.read().map(|s| s.clone()).unwrap_or_default();
        match self.l1.sync(50).await {
            Ok(FollowStatus::Synced { height, .. }) => {
                snap.l1_blocks = stage(u64::from(height), now, None);
                snap.l1_headers = stage(u64::from(height), now, None);
            }
            Ok(FollowStatus::CatchingUp { height, target }) => {
                snap.l1_blocks = stage(u64::from(height), now, None);
                snap.l1_headers = stage(u64::from(target), now, None);
            }
            Ok(FollowStatus::Lagging(reason)) => {
                let why = match reason {
                    LagReason::Unreachable(e) => format!("bitcoind unreachable: {e}"),
                    LagReason::HeadersAhead { blocks, headers } => {
                        snap.l1_headers.height = u64::from(headers);
                        format!("bitcoind has headers to {headers} but blocks to {blocks}: cannot verify yet")
                    }
                };
                snap.l1_blocks.blocked = Some(why);
            }
            Ok(FollowStatus::BeforeStart { tip }) => {
                snap.l1_blocks.blocked = Some(format!("bitcoind is at {tip}, below the start height"));
            }
            Ok(FollowStatus::Retry(why)) => snap.l1_blocks.blocked = Some(why),
            Err(e) => {
                // A refused login is logged once by the client (with the fix) and backed off there.
                if !matches!(
                    e,
                    kray_watcher::l1_index::IndexError::Source(kray_watcher::chain::ChainError::Unauthorized(_))
                ) {
                    tracing::error!(error = %e, "L1 index");
                }
                snap.l1_blocks.blocked = Some(e.to_string());
            }
        }
        self.measure_reorg();
        if self.l1.deep_reorgs() > snap.deep_reorgs_seen {
            snap.deep_reorgs_seen = self.l1.deep_reorgs();
            let tip = self.l1.follower().tip().map(|t| u64::from(t.height)).unwrap_or(0);
            let f = kray_watcher::store::Finding {
                id: format!("deep-reorg//at-{tip}"),
                kind: "deep-reorg".into(),
                severity: kray_watcher::store::Severity::Critical,
                batch_id: None,
                outpoint: None,
                first_seen: now,
                resolved_at: None,
                deadline_height: None,
                evidence: serde_json::json!({"tip": tip, "finality_depth": self.cfg.finality_depth,
                    "action": "acting stopped (still watching) until an operator resolves this finding"}),
                height: None,
                block_hash: None,
            };
            match self.store.insert_finding(&f).await {
                Ok(true) => {
                    tracing::error!(tip, "reorg deeper than the finality depth: acting stops, watching goes on");
                    self.notify(std::slice::from_ref(&f), now).await;
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "storing the deep-reorg finding"),
            }
        }
        let l1_tip = self.l1.follower().tip().map(|t| u64::from(t.height)).unwrap_or(0);
        let l1_hash = self.l1.follower().tip().map(|t| t.hash);
        let l1_moved = l1_hash != self.work.last_l1;
        self.work.last_l1 = l1_hash;
        if l1_moved {
            match self.store.challenges().await {
                Ok(c) => snap.challenges = c,
                Err(e) => tracing::error!(error = %e, "reading challenge markers"),
            }
        }

        let report = self.mirror.poll_once().await;
        for f in &report.errors {
            tracing::warn!(source = %f.source, error = %f.error, "batch source");
            let sequencer =
                self.cfg.sources.iter().any(|s| s.name == f.source && s.role == crate::config::SourceRole::Sequencer);
            self.metrics.record_mirror_error(if sequencer {
                crate::metrics::MirrorSource::PublicationApi
            } else {
                crate::metrics::MirrorSource::Peer
            });
        }
        let disagree = self.mirror.source_disagreements().values().any(|n| *n > 0);
        self.metrics.set_source_disagreement(crate::metrics::Subject::Batch, disagree);
        for e in &report.store_errors {
            tracing::error!(error = %e, "mirror store");
        }
        let mut mirror_findings = report.findings.clone();
        let mirror_moved = !report.new_copies.is_empty() || !report.findings.is_empty();
        if l1_moved || mirror_moved {
            match self.mirror.check_withheld(l1_tip).await {
                Ok(new) => mirror_findings.extend(new),
                Err(e) => tracing::error!(error = %e, "mirror withheld check"),
            }
        }
        if !mirror_findings.is_empty() {
            observe::new_findings(&self.metrics, &mirror_findings);
            self.notify(&mirror_findings, now).await;
        }
        let mirrored = self.mirror.index().read().ok().and_then(|i| i.max_id()).unwrap_or(0);
        snap.mirrored = stage(mirrored, now, None);

        let started = std::time::Instant::now();
        let mut judged_now = false;
        let mut more = false;
        match self.replay.advance(&self.store, l1_tip).await {
            Ok(adv) => {
                more = adv.more;
                if !adv.judged.is_empty() || adv.txs > 0 {
                    self.metrics.observe_replay(adv.txs, started.elapsed().as_secs_f64());
                }
                judged_now = !adv.judged.is_empty();
                observe::judged(&self.metrics, &adv.judged);
                self.store_proofs(&adv.judged);
                let blocked = match (adv.waiting, adv.more) {
                    (Some(w), _) => Some(w),
                    // Not synced until caught up: nothing acts on a partial view.
                    (None, true) => Some(format!("catching up: {} batch copies pending", self.replay.pending())),
                    (None, false) => None,
                };
                snap.replayed = stage(self.replay.judged_height(), now, blocked);
            }
            Err(e) => {
                tracing::error!(error = %e, "replay");
                snap.replayed.blocked = Some(format!("{e:#}"));
            }
        }
        self.checkpoint(now).await;

        // The judges and the views run when their inputs moved (a new L1 tip, new verdicts, new
        // mirror findings), and at least every JUDGE_EVERY_SECS for what ages with time.
        let due = now.saturating_sub(self.work.last_judged) >= JUDGE_EVERY_SECS;
        let changed = l1_moved || judged_now || mirror_moved || due;
        if changed {
            self.work.last_judged = now;
            self.judge(&mut snap, l1_tip, now).await;
        }
        snap.synced = snap.l1_blocks.blocked.is_none() && snap.replayed.blocked.is_none();
        let act_due = now.saturating_sub(self.work.last_acted) >= ACT_EVERY_SECS;
        if snap.synced && snap.deep_reorgs == 0 && (changed || act_due) {
            self.work.last_acted = now;
            let acted = self.actor.act(&self.store, &snap.batches, &snap.anchors, &snap.challenges, l1_tip).await;
            for p in &acted.problems {
                tracing::warn!(problem = %p, "acting");
            }
            for _ in 0..acted.bumped {
                self.metrics.record_own_anchor_bump();
            }
            self.metrics.set_own_anchors_pending(acted.pending_anchors);
            for fee in &acted.anchors_confirmed {
                self.metrics.record_own_anchor_confirmed(*fee);
            }
            if let Some(b) = acted.balance {
                self.wallet_alert(b);
            }
        }
        self.deadline_alerts(&snap, l1_tip);
        observe::snapshot(&self.metrics, &snap, l1_tip, now);
        observe::deliveries(&self.metrics, &self.alerter.snapshot(), &mut self.deliveries);
        if let Ok(mut s) = self.shared.write() {
            *s = snap;
        }
        more
    }

    /// The judges (anchors, bridge, faults) and the user views, over the replay stage's verdicts.
    async fn judge(&mut self, snap: &mut Snapshot, l1_tip: u64, now: i64) {
        let batches = self.replay.results();
        let report = match judge_stage::anchor_report(&self.store, &self.profile, &batches, l1_tip, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "anchor matching");
                (*snap.anchors).clone()
            }
        };
        let mut extra = Vec::new();
        if let Some(script) = &self.bridge_script {
            let view = bridge_stage::L2View {
                state: self.replay.replayer().state(),
                first_bad_batch: self.replay.first_fault(),
                l2_l1_height: self.replay.valid_l1_height(),
            };
            match bridge_stage::judge(&self.store, &self.profile, script, view, &report, l1_tip, now).await {
                Ok(b) => {
                    extra.extend(b.findings.iter().cloned());
                    snap.bridge = Some(b);
                }
                Err(e) => tracing::error!(error = %e, "bridge judge"),
            }
        }
        let previous = snap.anchors.clone();
        match judge_stage::judge(&self.store, &self.profile, &batches, report, &previous, extra, now).await {
            Ok(j) => {
                observe::new_findings(&self.metrics, &j.new);
                self.notify(&j.new, now).await;
                for f in &j.resolved {
                    self.alerter.resolve(f.id.clone());
                }
                snap.anchors = Arc::new(j.anchors);
                snap.deep_reorgs = j.open.iter().filter(|f| f.kind == "deep-reorg").count() as u32;
                snap.findings = j.open;
            }
            Err(e) => tracing::error!(error = %e, "judge"),
        }
        snap.proofs = self.replay.proofs();
        snap.batches = batches;
        views::update(snap, &self.replay, l1_tip);
        views::scan_blocked(snap, self.replay.first_fault(), &self.store).await;
    }

    /// Saves the replayer's state when it moved and the last save is old enough (or many batches
    /// ago): a restart then replays only what is newer.
    async fn checkpoint(&mut self, now: i64) {
        if !self.replay.checkpoint_stale() {
            return;
        }
        let batches_since = self.replay.replayer().tip().batch_id.saturating_sub(self.work.checkpoint_batch);
        if now.saturating_sub(self.work.last_checkpoint) < CHECKPOINT_EVERY_SECS
            && batches_since < CHECKPOINT_EVERY_BATCHES
        {
            return;
        }
        self.save_checkpoint(now).await;
    }

    /// Saves the replayer's state now (also at shutdown).
    async fn save_checkpoint(&mut self, now: i64) {
        let started = std::time::Instant::now();
        match self.replay.save_checkpoint(&self.store, now).await {
            Ok(bytes) => {
                self.work.last_checkpoint = now;
                self.work.checkpoint_batch = self.replay.replayer().tip().batch_id;
                tracing::info!(
                    batch_id = self.work.checkpoint_batch,
                    bytes,
                    millis = started.elapsed().as_millis() as u64,
                    "replay checkpoint saved"
                );
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "saving the replay checkpoint"),
        }
    }
}

/// Seconds after which the judges run even when nothing moved: findings that age with time, and
/// findings an operator resolved from another process (`findings resolve`).
const JUDGE_EVERY_SECS: i64 = 5;
/// Seconds after which the acting stage runs even when nothing moved (submission retries).
const ACT_EVERY_SECS: i64 = 5;
/// Seconds between two replay checkpoints while batches keep coming.
const CHECKPOINT_EVERY_SECS: i64 = 60;
/// Batches after which a checkpoint is saved even within [`CHECKPOINT_EVERY_SECS`].
const CHECKPOINT_EVERY_BATCHES: u64 = 1_000;

/// What the daemon remembers between ticks to run each stage only when its input moved.
#[derive(Debug, Default)]
struct WorkState {
    /// The L1 tip hash at the last tick.
    last_l1: Option<bitcoin::BlockHash>,
    /// When the judges last ran.
    last_judged: i64,
    /// When the acting stage last ran.
    last_acted: i64,
    /// When the last replay checkpoint was saved.
    last_checkpoint: i64,
    /// The replayer tip at the last checkpoint.
    checkpoint_batch: u64,
}

fn stage(height: u64, now: i64, blocked: Option<String>) -> snapshot::StageStatus {
    snapshot::StageStatus { height, last_success: now, blocked }
}
