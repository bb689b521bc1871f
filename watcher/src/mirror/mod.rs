//! The L2 batch mirror (issue #4): follows several publication sources (the sequencer and peer
//! guardians' mirrors, `docs/publication-api.md`), stores every batch copy byte-exact with its
//! recomputed content hash, finds equivocation, gaps and withheld data, and serves what it holds over
//! the same API.
//!
//! - [`source`]: the HTTP client of one source (timeouts, bounded bodies, strict parsing, hashes and
//!   signatures recomputed; claims only compared).
//! - [`poller`]: per-source cursor, exponential backoff with a cap, re-validation, health.
//! - [`findings`]: the pure finding functions.
//! - [`index`]: the in-memory index of stored copies.
//! - [`serve`]: the read-only batch endpoints over the store.
//!
//! Only copies signed (header and data) by a producer of the configured chain are stored, so every
//! stored copy — and every pair of conflicting copies — is the producer's own signed statement: a peer
//! cannot fabricate equivocation evidence. Bad input from a source never panics and never stops the
//! mirror: it is an error in the [`MirrorReport`] that names the source and what was wrong.

pub mod findings;
pub mod index;
pub mod poller;
pub mod serve;
pub mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::task::JoinSet;

pub use findings::{WithheldRule, BATCH_GAP, DATA_WITHHELD, EQUIVOCATION};
pub use index::{BatchIndex, CopyMeta};
pub use poller::{backoff_delay, PollSettings, SourceHealth};
pub use source::{ChainIdentity, SourceClient, SourceError, SourceSpec};

use crate::store::{BatchCopy, Finding, Store, StoreError};
use poller::SourceState;

/// Why the mirror could not be set up or a store step failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A source is unusable (bad URL).
    #[error("source {name}: {error}")]
    Source {
        /// The source's name.
        name: String,
        /// What is wrong.
        error: SourceError,
    },
    /// Two sources have the same name.
    #[error("two sources are named {0:?}")]
    DuplicateSource(String),
}

/// How the mirror works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The chain whose batches are kept.
    pub chain: ChainIdentity,
    /// Polling, backoff and re-validation.
    pub poll: PollSettings,
    /// A gap is reported once it has been seen after this many polls in a row (≥ 1): a gap that a
    /// lagging source fills on its next poll is not a finding.
    pub gap_grace_polls: u32,
    /// When anchored data counts as withheld.
    pub withheld: WithheldRule,
}

impl MirrorConfig {
    /// Defaults for `chain`: [`PollSettings::default`], gaps after 3 polls, data withheld 6 blocks
    /// after its anchor, a 144-block challenge window (set it from the profile).
    pub fn new(chain: ChainIdentity) -> Self {
        MirrorConfig {
            chain,
            poll: PollSettings::default(),
            gap_grace_polls: 3,
            withheld: WithheldRule { deadline_blocks: 6, challenge_window_blocks: 144 },
        }
    }
}

/// A copy stored by a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCopy {
    /// The batch id.
    pub batch_id: u64,
    /// Its content hash (hex).
    pub content_hash: String,
    /// The source that served it.
    pub source: String,
}

/// An error of one source in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// The source's name.
    pub source: String,
    /// What was wrong.
    pub error: SourceError,
}

/// What one [`Mirror::poll_once`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MirrorReport {
    /// Copies new to the store (distinct content for their id).
    pub new_copies: Vec<NewCopy>,
    /// Errors, per source.
    pub errors: Vec<SourceFailure>,
    /// Sources not polled (in backoff or polled too recently).
    pub skipped: Vec<String>,
    /// Findings stored by this poll (new ones only: a finding already stored is not repeated).
    pub findings: Vec<Finding>,
    /// Store failures (the poll's copies are fetched again next time).
    pub store_errors: Vec<String>,
}

impl MirrorReport {
    /// The errors of one source.
    pub fn errors_of<'a>(&'a self, source: &'a str) -> impl Iterator<Item = &'a SourceError> + 'a {
        self.errors.iter().filter(move |f| f.source == source).map(|f| &f.error)
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The batch mirror.
pub struct Mirror {
    store: Store,
    config: MirrorConfig,
    sources: Vec<SourceState>,
    index: Arc<RwLock<BatchIndex>>,
    /// Gap ranges seen by the last poll, by first id, with how many polls in a row saw them.
    pending_gaps: BTreeMap<u64, u32>,
}

impl Mirror {
    /// A mirror over `store` following `sources`. Loads the index of stored copies; every source's
    /// cursor starts at the first batch id the store lacks.
    pub async fn new(store: Store, sources: Vec<SourceSpec>, config: MirrorConfig) -> Result<Mirror, MirrorError> {
        let index = BatchIndex::load(&store).await?;
        let start = index.first_missing();
        let mut names = BTreeSet::new();
        let mut states = Vec::with_capacity(sources.len());
        for spec in sources {
            if !names.insert(spec.name.clone()) {
                return Err(MirrorError::DuplicateSource(spec.name));
            }
            let name = spec.name.clone();
            let client = SourceClient::new(spec).map_err(|error| MirrorError::Source { name, error })?;
            states.push(SourceState::new(client, start));
        }
        tracing::info!(stored = index.len(), start, sources = states.len(), "batch mirror ready");
        Ok(Mirror {
            store,
            config,
            sources: states,
            index: Arc::new(RwLock::new(index)),
            pending_gaps: BTreeMap::new(),
        })
    }

    /// The shared index of stored copies (what [`serve::router`] lists).
    pub fn index(&self) -> Arc<RwLock<BatchIndex>> {
        self.index.clone()
    }

    /// The read-only publication API over this mirror's store.
    pub fn router(&self) -> Router {
        serve::router(self.store.clone(), self.index.clone())
    }

    /// Every source's health.
    pub fn sources(&self) -> Vec<SourceHealth> {
        self.sources.iter().map(|s| s.health(&self.config.poll)).collect()
    }

    /// Per source, the number of batch ids for which it served a copy that conflicts with another
    /// copy (see [`findings::source_disagreements`]).
    pub fn source_disagreements(&self) -> BTreeMap<String, u64> {
        self.index.read().map(|i| findings::source_disagreements(&i)).unwrap_or_default()
    }

    /// Polls every due source concurrently, stores the verified copies in one bulk insert, and
    /// stores the findings they lead to (equivocation, gaps). Never fails: errors are in the report.
    pub async fn poll_once(&mut self) -> MirrorReport {
        let mut report = MirrorReport::default();
        let mut tasks = JoinSet::new();
        for (i, mut state) in std::mem::take(&mut self.sources).into_iter().enumerate() {
            let index = self.index.clone();
            let chain = self.config.chain.clone();
            let settings = self.config.poll;
            tasks.spawn(async move {
                let poll = state.poll(&index, &chain, &settings).await;
                (i, state, poll)
            });
        }
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => done.push(r),
                // A panicking poll is a bug; its source is lost until restart, the mirror goes on.
                Err(e) => tracing::error!(error = %e, "a source poll task failed"),
            }
        }
        done.sort_by_key(|(i, _, _)| *i);
        let now = unix_now();
        let mut copies = Vec::new();
        let mut polls = Vec::new();
        for (_, state, mut poll) in done {
            if poll.skipped {
                report.skipped.push(poll.source.clone());
            }
            report
                .errors
                .extend(poll.errors.iter().map(|e| SourceFailure { source: poll.source.clone(), error: e.clone() }));
            // The bodies move to the insert (one copy in memory, not two).
            for f in &mut poll.copies {
                copies.push(BatchCopy {
                    batch_id: f.batch_id,
                    source: poll.source.clone(),
                    content_hash: hex::encode(f.content_hash),
                    raw: std::mem::take(&mut f.raw),
                    received_at: now,
                });
            }
            polls.push(poll);
            self.sources.push(state);
        }
        if !copies.is_empty() {
            let stored = self.store.insert_batches(&copies).await;
            drop(copies);
            if let Err(e) = stored {
                let n: usize = polls.iter().map(|p| p.copies.len()).sum();
                tracing::error!(error = %e, copies = n, "storing batch copies failed");
                report.store_errors.push(format!("storing {n} batch copies: {e}"));
                // Fetch them again on the next poll.
                for p in &polls {
                    if let Some(min) = p.copies.iter().map(|f| f.batch_id).min() {
                        if let Some(s) = self.sources.iter_mut().find(|s| s.name() == p.source) {
                            s.rewind_to(min);
                        }
                    }
                }
                return report;
            }
        }
        let mut touched = BTreeSet::new();
        if let Ok(mut index) = self.index.write() {
            for p in &polls {
                for f in &p.copies {
                    let hash = hex::encode(f.content_hash);
                    if index.add(f.batch_id, &hash, &hex::encode(f.header_hash), &p.source) {
                        touched.insert(f.batch_id);
                        report.new_copies.push(NewCopy {
                            batch_id: f.batch_id,
                            content_hash: hash,
                            source: p.source.clone(),
                        });
                    }
                }
            }
        }
        self.record_findings(&touched, now, &mut report).await;
        report
    }

    /// Equivocations among `touched` ids and gaps that outlived the grace polls; resolves gap findings
    /// that are filled.
    async fn record_findings(&mut self, touched: &BTreeSet<u64>, now: i64, report: &mut MirrorReport) {
        // Gaps only change when copies arrive; open ones age by polls until reported.
        if touched.is_empty() && self.pending_gaps.is_empty() {
            return;
        }
        let (equivocations, gaps) = match self.index.read() {
            Ok(index) => {
                let eq: Vec<Finding> =
                    touched.iter().filter_map(|id| findings::equivocation(*id, index.copies(*id), now)).collect();
                (eq, findings::gaps(index.ids()))
            }
            Err(_) => return,
        };
        let grace = self.config.gap_grace_polls.max(1);
        let mut pending = BTreeMap::new();
        let mut due = Vec::new();
        for range in gaps {
            let seen = self.pending_gaps.get(&range.0).copied().unwrap_or(0).saturating_add(1);
            pending.insert(range.0, seen);
            if seen >= grace {
                due.push(range);
            }
        }
        self.pending_gaps = pending;
        for f in equivocations.into_iter().chain(findings::gap_findings(&due, now)) {
            match self.store.insert_finding(&f).await {
                Ok(true) => {
                    tracing::warn!(kind = %f.kind, batch_id = f.batch_id, evidence = %f.evidence, "mirror finding");
                    report.findings.push(f);
                }
                Ok(false) => {}
                Err(e) => report.store_errors.push(format!("storing finding {}: {e}", f.id)),
            }
        }
        if !touched.is_empty() {
            self.resolve_filled_gaps(now, report).await;
        }
    }

    async fn resolve_filled_gaps(&self, now: i64, report: &mut MirrorReport) {
        let open = match self.store.findings(true).await {
            Ok(f) => f,
            Err(e) => return report.store_errors.push(format!("reading findings: {e}")),
        };
        for f in open.iter().filter(|f| f.kind == BATCH_GAP) {
            let to = f.evidence["to"].as_u64().unwrap_or(0);
            let filled = match (self.index.read(), f.batch_id) {
                (Ok(i), Some(from)) => (from..=to).all(|id| i.contains(id)),
                _ => false,
            };
            if filled {
                if let Err(e) = self.store.resolve_finding(&f.id, now).await {
                    report.store_errors.push(format!("resolving {}: {e}", f.id));
                }
            }
        }
    }

    /// Stores `data-withheld` findings for roots anchored on L1 (the store's anchors) whose batch no
    /// source has served by `l1_height`, and resolves those whose data has arrived since. Returns the
    /// new findings.
    pub async fn check_withheld(&mut self, l1_height: u64) -> Result<Vec<Finding>, MirrorError> {
        let anchors = self.store.anchors().await?;
        let served = self.index.read().map(|i| i.header_hashes()).unwrap_or_default();
        let now = unix_now();
        let mut new = Vec::new();
        for f in findings::withheld(&anchors, &served, l1_height, self.config.withheld, now) {
            if self.store.insert_finding(&f).await? {
                tracing::warn!(root = %f.evidence["root"], "anchored batch data withheld");
                new.push(f);
            }
        }
        for f in self.store.findings(true).await?.iter().filter(|f| f.kind == DATA_WITHHELD) {
            if f.evidence["root"].as_str().is_some_and(|r| served.contains(&r.to_ascii_lowercase())) {
                self.store.resolve_finding(&f.id, now).await?;
            }
        }
        Ok(new)
    }
}
