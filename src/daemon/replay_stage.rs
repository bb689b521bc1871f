//! The replay stage: every mirrored batch copy through the reference state machine, touching only
//! what is new.
//!
//! - **Cursor.** The store numbers copies in arrival order (`seq`). The stage reads the references
//!   (id, content hash, size) of copies that arrived after its cursor, a bounded page at a time, into a
//!   small pending set, and judges them in batch id order, loading one body at a time. A tick with
//!   nothing new costs one indexed query, whatever the history.
//! - **Verdicts** are stored as they are made (`verdicts`), so a restart loads them instead of
//!   recomputing them.
//! - **Checkpoints.** The replayer's state is saved with the cursor it belongs to
//!   ([`ReplayStage::save_checkpoint`]); a restart resumes from it and replays only newer copies. Their
//!   verdicts are already stored: re-judging them rebuilds the state and is not news.
//! - Deposit facts come from the watcher's own L1 index (the store's bridge rows, with the full `ord`
//!   allocation), prefetched per batch into a [`FileFacts`], so replay itself stays synchronous and
//!   pure. A batch whose `l1_height` is above the indexed L1 tip is "cannot verify yet" and is retried
//!   when L1 moves; nothing after it is replayed until then.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use kray_replayer::batch::Batch;
use kray_replayer::checkpoint::Checkpoint;
use kray_replayer::genesis::Chain;
use kray_replayer::l1facts::{DepositFact, FileFacts, L1FactsFile};
use kray_replayer::replay::{ReplayError, Replayer};
use kray_replayer::state::State;
use kray_replayer::tx::{OutPointRef, Tx};
use kray_replayer::{Profile, Verdict};
use kray_watcher::store::{CopyRef, Outpoint, ReplayCheckpointRow, Store, VerdictRow};
use serde::{Deserialize, Serialize};

/// Name of the replayer checkpoint row in the store.
pub const CHECKPOINT_NAME: &str = "replay";

/// Arrival numbers read per page of new copy references.
const PAGE_SPAN: u64 = 512;

/// Most copy references held pending (read, not judged) at once; reading stops there until some are
/// judged, so a huge backlog is read in bounded steps.
const MAX_PENDING: usize = 4_096;

/// Signed headers kept in memory and in checkpoints (equivocation evidence for recent batches; the
/// previous header a broken-chain proof needs).
pub const KEEP_HEADERS: usize = 1_024;

/// What the guardian concluded about one batch copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Outcome {
    /// Replayed valid.
    Valid {
        /// State root after it (hex).
        state_root: String,
        /// Txs executed.
        tx_count: u32,
    },
    /// A fault, with its fraud proof (JSON).
    Fault {
        /// The fault class (kebab-case).
        class: String,
        /// What is wrong.
        reason: String,
        /// The fraud proof, as JSON text (stored in its own column).
        #[serde(skip)]
        proof: String,
        /// The proof hash (§17.6), hex; empty when the proof could not be built.
        proof_hash: String,
    },
    /// Not judged (after a fault, not a batch of this chain, duplicate).
    NotReplayed {
        /// Why.
        reason: String,
    },
}

/// One replayed batch copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    /// Batch id.
    pub batch_id: u64,
    /// The copy's batch hash (hex), the root anchored on L1.
    pub batch_hash: String,
    /// The copy's content hash (hex), its identity in the store.
    #[serde(skip)]
    pub content_hash: String,
    /// The L1 height it declares.
    pub l1_height: u64,
    /// Txs in it.
    pub tx_count: u32,
    /// The signed header (JSON form, docs/protocol.md §12).
    #[serde(skip)]
    pub header: serde_json::Value,
    /// The producer's signature over the batch hash (hex).
    #[serde(skip)]
    pub signature: String,
    /// The verdict.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Replayed {
    /// The stored form of this verdict.
    fn to_row(&self, seq: u64, now: i64) -> VerdictRow {
        VerdictRow {
            batch_id: self.batch_id,
            content_hash: self.content_hash.clone(),
            seq,
            batch_hash: self.batch_hash.clone(),
            l1_height: self.l1_height,
            tx_count: u64::from(self.tx_count),
            outcome: serde_json::to_string(&self.outcome).unwrap_or_default(),
            header: self.header.to_string(),
            signature: self.signature.clone(),
            proof: match &self.outcome {
                Outcome::Fault { proof, .. } => Some(proof.clone()),
                _ => None,
            },
            judged_at: now,
        }
    }

    /// A verdict loaded from the store.
    fn from_row(row: VerdictRow) -> anyhow::Result<Replayed> {
        let mut outcome: Outcome = serde_json::from_str(&row.outcome)
            .with_context(|| format!("stored verdict of batch {} is not a verdict", row.batch_id))?;
        if let (Outcome::Fault { proof, .. }, Some(stored)) = (&mut outcome, row.proof) {
            *proof = stored;
        }
        Ok(Replayed {
            batch_id: row.batch_id,
            batch_hash: row.batch_hash,
            content_hash: row.content_hash,
            l1_height: row.l1_height,
            tx_count: u32::try_from(row.tx_count).unwrap_or(u32::MAX),
            header: serde_json::from_str(&row.header).unwrap_or_default(),
            signature: row.signature,
            outcome,
        })
    }
}

/// Every judged batch copy, by batch id (shared with the snapshot, copied only when it changes while
/// the snapshot holds it).
pub type Results = Arc<BTreeMap<u64, Vec<Replayed>>>;

/// What one [`ReplayStage::advance`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advance {
    /// Batch copies judged now for the first time.
    pub judged: Vec<Replayed>,
    /// Txs executed in valid batches now (re-executions after a restart included).
    pub txs: u64,
    /// Set when a batch waits (for L1, or for an earlier batch), with the reason.
    pub waiting: Option<String>,
    /// True when the time budget ended the advance with copies left to judge (call again soon).
    pub more: bool,
}

/// Where a restarted stage resumed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumedFrom {
    /// No usable checkpoint: from genesis.
    Genesis,
    /// From the stored checkpoint at this batch id.
    Checkpoint {
        /// The checkpoint's tip batch id.
        batch_id: u64,
    },
}

/// Why the stage stopped last time: nothing is retried until the L1 tip or the cursor moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blocked {
    l1_tip: u64,
    read_cursor: u64,
}

/// The replay stage's state.
pub struct ReplayStage {
    replayer: Replayer,
    profile: Profile,
    /// Copies with an arrival number up to this were read (into `pending` or judged).
    read_cursor: u64,
    /// Copies read and not judged yet, by (batch id, arrival number, content hash).
    pending: BTreeMap<(u64, u64, String), ()>,
    /// Every judged copy, by batch id.
    results: Results,
    /// Copies whose verdict is stored already (loaded at restart): judging them again rebuilds the
    /// state but is not news.
    known: HashSet<(u64, String)>,
    /// The first faulty batch id, if any.
    first_fault: Option<u64>,
    /// The highest L1 height a valid batch declared.
    valid_l1_height: Option<u64>,
    /// The fraud proof of the first faulty copy of each batch id (JSON text), shared with the snapshot.
    proofs: Arc<BTreeMap<u64, String>>,
    /// Where the last advance stopped, if it stopped waiting.
    blocked: Option<(Blocked, String)>,
    /// The replayer tip and first fault at the last checkpoint.
    checkpointed: (u64, Option<u64>),
    /// Batch bodies read from the store by this stage (the measure of its work).
    bodies_read: u64,
    /// True while the lowest pending batch waits for an earlier batch that has not arrived.
    gap_blocked: bool,
    /// Most copy references held pending while nothing waits for a gap ([`MAX_PENDING`]).
    max_pending: usize,
    /// Longest one advance goes on judging before it returns (the rest on the next call), so the
    /// other stages of the loop never wait behind a long catch-up.
    budget: std::time::Duration,
}

/// Default of [`ReplayStage::with_budget`].
pub const DEFAULT_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

impl ReplayStage {
    /// A stage replaying from `replayer` (built from the genesis), reading copies from arrival 0.
    pub fn new(replayer: Replayer, profile: Profile) -> Self {
        Self {
            replayer,
            profile,
            read_cursor: 0,
            pending: BTreeMap::new(),
            results: Arc::new(BTreeMap::new()),
            known: HashSet::new(),
            first_fault: None,
            valid_l1_height: None,
            proofs: Arc::new(BTreeMap::new()),
            blocked: None,
            checkpointed: (0, None),
            bodies_read: 0,
            gap_blocked: false,
            max_pending: MAX_PENDING,
            budget: DEFAULT_BUDGET,
        }
    }

    /// The same stage holding at most `max` pending copy references (outside a gap).
    #[cfg(test)]
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// The same stage with another time budget per advance.
    pub fn with_budget(mut self, budget: std::time::Duration) -> Self {
        self.budget = budget;
        self
    }

    /// The stage as the store left it: the stored verdicts, and the replayer from the stored
    /// checkpoint (or from `genesis` when there is none or it cannot be used; the reason is logged).
    pub async fn resume(
        store: &Store,
        chain: Chain,
        genesis: State,
        profile: Profile,
    ) -> anyhow::Result<(Self, ResumedFrom)> {
        let mut results: BTreeMap<u64, Vec<Replayed>> = BTreeMap::new();
        let mut known = HashSet::new();
        for row in store.verdicts().await.context("reading stored verdicts")? {
            let r = Replayed::from_row(row)?;
            known.insert((r.batch_id, r.content_hash.clone()));
            results.entry(r.batch_id).or_default().push(r);
        }
        let valid_l1_height = results
            .values()
            .flatten()
            .filter(|r| matches!(r.outcome, Outcome::Valid { .. }))
            .map(|r| r.l1_height)
            .max();
        let proofs: BTreeMap<u64, String> = results
            .iter()
            .filter_map(|(id, copies)| {
                copies.iter().find_map(|c| match &c.outcome {
                    Outcome::Fault { proof, .. } => Some((*id, proof.clone())),
                    _ => None,
                })
            })
            .collect();
        let first_fault = results
            .iter()
            .find(|(_, copies)| copies.iter().any(|c| matches!(c.outcome, Outcome::Fault { .. })))
            .map(|(id, _)| *id);
        let stored = store.replay_checkpoint(CHECKPOINT_NAME).await.context("reading the replay checkpoint")?;
        let (replayer, read_cursor, from) = match stored {
            Some(row) => match Checkpoint::from_bytes(&row.bytes)
                .map_err(anyhow::Error::from)
                .and_then(|cp| Ok(Replayer::resume(chain.clone(), cp)?))
            {
                Ok(replayer) => {
                    let batch_id = replayer.tip().batch_id;
                    (replayer, row.seq_floor, ResumedFrom::Checkpoint { batch_id })
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), batch_id = row.batch_id,
                        "the stored replay checkpoint cannot be used: replaying from genesis");
                    (Replayer::new(chain, genesis)?, 0, ResumedFrom::Genesis)
                }
            },
            None => (Replayer::new(chain, genesis)?, 0, ResumedFrom::Genesis),
        };
        let tip = replayer.tip().batch_id;
        let stage = Self {
            replayer,
            profile,
            read_cursor,
            pending: BTreeMap::new(),
            results: Arc::new(results),
            known,
            first_fault,
            valid_l1_height,
            proofs: Arc::new(proofs),
            blocked: None,
            checkpointed: (tip, first_fault),
            bodies_read: 0,
            gap_blocked: false,
            max_pending: MAX_PENDING,
            budget: DEFAULT_BUDGET,
        };
        Ok((stage, from))
    }

    /// The replayer (state, tip, headers).
    pub fn replayer(&self) -> &Replayer {
        &self.replayer
    }

    /// Every judged batch copy, by batch id (a cheap handle).
    pub fn results(&self) -> Results {
        self.results.clone()
    }

    /// The highest batch id judged (0 before any).
    pub fn judged_height(&self) -> u64 {
        self.results.keys().next_back().copied().unwrap_or(0)
    }

    /// The first faulty batch id, if any.
    pub fn first_fault(&self) -> Option<u64> {
        self.first_fault
    }

    /// The fraud proof of the first faulty copy of each batch id (a cheap handle).
    pub fn proofs(&self) -> Arc<BTreeMap<u64, String>> {
        self.proofs.clone()
    }

    /// The highest L1 height a valid batch declared (what the bridge judge compares deposits with).
    pub fn valid_l1_height(&self) -> Option<u64> {
        self.valid_l1_height
    }

    /// Batch bodies this stage has read from the store since it was made.
    pub fn bodies_read(&self) -> u64 {
        self.bodies_read
    }

    /// Copies read but not judged yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Every copy with an arrival number up to this is reflected in the replayer's state.
    pub fn seq_floor(&self) -> u64 {
        self.pending.keys().map(|(_, seq, _)| *seq).min().map_or(self.read_cursor, |s| s.saturating_sub(1))
    }

    /// True when the replayer moved (tip or fault) since the last checkpoint.
    pub fn checkpoint_stale(&self) -> bool {
        self.checkpointed != (self.replayer.tip().batch_id, self.first_fault)
    }

    /// Saves the replayer's state with the cursor it belongs to (one row, replaced atomically).
    pub async fn save_checkpoint(&mut self, store: &Store, now: i64) -> anyhow::Result<usize> {
        let cp = self.replayer.checkpoint(KEEP_HEADERS);
        let row = ReplayCheckpointRow {
            batch_id: cp.batch_id(),
            seq_floor: self.seq_floor(),
            state_root: hex::encode(cp.state_root()),
            bytes: cp.to_bytes(),
            created_at: now,
        };
        store.save_replay_checkpoint(CHECKPOINT_NAME, &row).await.context("saving the replay checkpoint")?;
        self.checkpointed = (self.replayer.tip().batch_id, self.first_fault);
        Ok(row.bytes.len())
    }

    /// Reads the references of newly arrived copies into the pending set: bounded, except while the
    /// lowest pending batch waits for an earlier one (a gap), whose copy may come after the bound.
    async fn read_new(&mut self, store: &Store) -> anyhow::Result<()> {
        while self.pending.len() < self.max_pending || self.gap_blocked {
            let page = store.copies_after(self.read_cursor, PAGE_SPAN).await.context("reading new batch copies")?;
            let Some(last) = page.last().map(|c| c.seq) else { break };
            for CopyRef { batch_id, content_hash, seq, .. } in page {
                self.pending.insert((batch_id, seq, content_hash), ());
            }
            self.read_cursor = last;
        }
        Ok(())
    }

    /// Judges the stored batch copies not judged yet, in batch id order (copies of one id in arrival
    /// order: a second, different copy is the equivocation fault), with deposits checked against the
    /// store's bridge index at L1 height `l1_tip`. Work is proportional to the new copies.
    pub async fn advance(&mut self, store: &Store, l1_tip: u64) -> anyhow::Result<Advance> {
        let mut out = Advance::default();
        if let Some((b, why)) = &self.blocked {
            let latest = store.copies_after(self.read_cursor, 1).await.context("reading new batch copies")?;
            if b.l1_tip == l1_tip && latest.is_empty() {
                out.waiting = Some(why.clone());
                return Ok(out);
            }
        }
        self.blocked = None;
        let now = super::unix_now();
        let started = std::time::Instant::now();
        loop {
            if started.elapsed() >= self.budget {
                out.more = !self.pending.is_empty()
                    || !store.copies_after(self.read_cursor, 1).await.context("reading new batch copies")?.is_empty();
                break;
            }
            self.read_new(store).await?;
            let Some(((id, seq, content_hash), ())) = self.pending.first_key_value() else { break };
            let (id, seq, content_hash) = (*id, *seq, content_hash.clone());
            match self.judge_copy(store, id, seq, &content_hash, l1_tip, &mut out).await? {
                Step::Judged(r) => {
                    self.gap_blocked = false;
                    self.pending.remove(&(id, seq, content_hash.clone()));
                    if matches!(r.outcome, Outcome::Valid { .. }) {
                        self.valid_l1_height = self.valid_l1_height.max(Some(r.l1_height));
                    }
                    if matches!(r.outcome, Outcome::Fault { .. }) && self.first_fault.is_none_or(|f| id < f) {
                        self.first_fault = Some(id);
                    }
                    let fresh = !self.known.contains(&(id, content_hash));
                    if fresh {
                        store.insert_verdict(&r.to_row(seq, now)).await.context("storing a verdict")?;
                        tracing::info!(batch_id = id, verdict = ?r.outcome, "batch judged");
                        if let Outcome::Fault { proof, .. } = &r.outcome {
                            if !self.proofs.contains_key(&id) {
                                Arc::make_mut(&mut self.proofs).insert(id, proof.clone());
                            }
                        }
                        let results = Arc::make_mut(&mut self.results);
                        results.entry(id).or_default().push(r.clone());
                        out.judged.push(r);
                    }
                }
                Step::Skipped => {
                    self.pending.remove(&(id, seq, content_hash));
                }
                Step::Wait(why) => {
                    self.blocked = Some((Blocked { l1_tip, read_cursor: self.read_cursor }, why.clone()));
                    out.waiting = Some(why);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Judges one copy.
    async fn judge_copy(
        &mut self,
        store: &Store,
        id: u64,
        seq: u64,
        content_hash: &str,
        l1_tip: u64,
        out: &mut Advance,
    ) -> anyhow::Result<Step> {
        let Some(copy) = store.batch_copy(id, content_hash).await.with_context(|| format!("reading batch {id}"))?
        else {
            tracing::warn!(batch_id = id, seq, "a batch copy listed in the store is gone");
            return Ok(Step::Skipped);
        };
        self.bodies_read += 1;
        let batch = match Batch::from_raw(&copy.raw, self.profile.max_batch_txs) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(batch_id = id, source = %copy.source, error = %e, "stored batch does not decode");
                return Ok(Step::Skipped);
            }
        };
        drop(copy);
        let header = &batch.signed.header;
        if u64::from(header.l1_height) > l1_tip {
            return Ok(Step::Wait(format!(
                "batch {id} declares L1 height {} but the L1 index is at {l1_tip}: cannot verify yet",
                header.l1_height
            )));
        }
        let facts = deposit_facts(&batch, store, l1_tip).await?;
        let verdict = self.replayer.replay(&batch, &facts);
        let outcome = match verdict {
            Ok(Verdict::Valid { state_root, tx_count, .. }) => {
                out.txs += u64::from(tx_count);
                self.replayer.prune_headers(KEEP_HEADERS);
                Outcome::Valid { state_root, tx_count }
            }
            Ok(Verdict::CannotVerify { reason, .. }) => return Ok(Step::Wait(format!("batch {id}: {reason}"))),
            Ok(Verdict::Fault(fault)) => {
                let (proof, proof_hash) = match self.replayer.build_proof(&batch, &fault) {
                    Ok(p) => (p.to_json(), hex::encode(p.proof_hash())),
                    Err(e) => {
                        tracing::error!(batch_id = id, error = %e, "building the fraud proof failed");
                        (format!("{{\"error\":\"building the proof failed: {e}\"}}"), String::new())
                    }
                };
                Outcome::Fault { class: fault.class.to_string(), reason: fault.reason.clone(), proof, proof_hash }
            }
            Err(
                e @ (ReplayError::AfterFault { .. }
                | ReplayError::NotSigned { .. }
                | ReplayError::Duplicate(_)
                | ReplayError::Pruned { .. }),
            ) => Outcome::NotReplayed { reason: e.to_string() },
            Err(ReplayError::Gap { .. }) => {
                self.gap_blocked = true;
                return Ok(Step::Wait(format!("batch {id}: earlier batches are missing")));
            }
            Err(e) => return Err(anyhow::anyhow!("replaying batch {id}: {e}")),
        };
        Ok(Step::Judged(Replayed {
            batch_id: id,
            batch_hash: hex::encode(header.hash()),
            content_hash: content_hash.to_string(),
            l1_height: u64::from(header.l1_height),
            tx_count: header.tx_count,
            header: serde_json::to_value(header).unwrap_or_default(),
            signature: hex::encode(batch.signed.signature),
            outcome,
        }))
    }
}

/// What judging one copy came to.
enum Step {
    /// A verdict.
    Judged(Replayed),
    /// Not a batch (does not decode) or gone: dropped without a verdict.
    Skipped,
    /// Cannot be judged yet; nothing after it is judged until then.
    Wait(String),
}

/// The deposit facts `batch` needs, from the store's bridge index, with `l1_tip` as the tip.
async fn deposit_facts(batch: &Batch, store: &Store, l1_tip: u64) -> anyhow::Result<FileFacts> {
    let mut deposits = Vec::new();
    for bytes in &batch.txs {
        let Ok(tx) = Tx::decode(bytes) else { continue };
        if tx.tx_type != "deposit" {
            continue;
        }
        let Some(op) = OutPointRef::parse(&tx.from) else { continue };
        let key = Outpoint { txid: hex::encode(op.txid), vout: op.vout };
        if let Some(d) = store.deposit(&key).await.context("reading a deposit")? {
            deposits.push(DepositFact {
                outpoint: op,
                to_bridge: true,
                rune_amount: u64::try_from(d.amount).unwrap_or(u64::MAX),
                recipient: d.recipient.as_deref().and_then(parse_key),
                height: u32::try_from(d.height).unwrap_or(u32::MAX),
            });
        }
    }
    let tip_height = u32::try_from(l1_tip).unwrap_or(u32::MAX);
    Ok(FileFacts::from(L1FactsFile { tip_height, deposits }))
}

/// An account key from hex.
fn parse_key(text: &str) -> Option<kray_replayer::address::AccountKey> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(kray_replayer::address::AccountKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_history::copy_of;
    use kray_devnet::workload::{generate, WorkloadSpec};
    use kray_replayer::FaultClass;
    use kray_watcher::store::{BatchCopy, L1Header};

    /// A store holding `batches` and the workload's two deposits (in block 1), and the stage at genesis.
    async fn setup(fault: Option<(FaultClass, u64)>) -> (tempfile::TempDir, Store, ReplayStage, Vec<Batch>) {
        let profile = Profile::load("regtest").expect("profile");
        let spec = WorkloadSpec { accounts: 20, txs: 60, batch_size: 20, seed: 3, fault };
        let w = generate(&profile, &spec).expect("workload");
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_sqlite(dir.path()).await.expect("store");
        let h = |n: u64| format!("{n:064x}");
        let effects = crate::bench_history::deposit_effects(&w.facts);
        store.apply_block(&L1Header { height: 1, hash: h(1), prev_hash: h(0) }, &effects).await.expect("block 1");
        let batches: Vec<Batch> = w.batches.into_iter().map(|(_, b)| b).collect();
        let copies: Vec<BatchCopy> = batches.iter().map(copy_of).collect();
        store.insert_batches(&copies).await.expect("insert");
        let (chain, state) = w.genesis.build(&profile).expect("genesis");
        let stage = ReplayStage::new(Replayer::new(chain, state).expect("replayer"), profile);
        (dir, store, stage, batches)
    }

    #[tokio::test]
    async fn a_batch_above_the_indexed_l1_tip_waits_and_is_judged_once_l1_catches_up() {
        let (_dir, store, mut stage, batches) = setup(None).await;
        let first_l1 = u64::from(batches[0].signed.header.l1_height);
        let adv = stage.advance(&store, first_l1 - 1).await.expect("advance");
        assert!(adv.judged.is_empty());
        assert!(adv.waiting.as_deref().is_some_and(|w| w.contains("cannot verify yet")), "{adv:?}");
        assert_eq!(stage.judged_height(), 0);
        let last_l1 = batches.iter().map(|b| u64::from(b.signed.header.l1_height)).max().expect("batches");
        let adv = stage.advance(&store, last_l1).await.expect("advance");
        assert_eq!(adv.judged.len(), batches.len());
        assert!(adv.judged.iter().all(|r| matches!(r.outcome, Outcome::Valid { .. })), "{:?}", adv.judged);
        assert!(adv.waiting.is_none());
        assert_eq!(adv.txs, batches.iter().map(|b| u64::from(b.signed.header.tx_count)).sum::<u64>());
        // Nothing new: nothing judged twice.
        assert!(stage.advance(&store, last_l1).await.expect("again").judged.is_empty());
    }

    /// A different, producer-signed copy of `b` (another header: equivocation evidence).
    fn second_copy(b: &Batch) -> Batch {
        let kp = kray_devnet::workload::producer_key(3);
        let mut header = b.signed.header.clone();
        header.l1_height = header.l1_height.saturating_sub(1);
        let signed = kray_replayer::batch::SignedHeader::sign(header, &kp);
        Batch::new(signed, b.txs.clone(), &kp)
    }

    #[tokio::test]
    async fn a_tick_with_nothing_new_reads_no_batch_body_and_a_late_copy_is_read_alone() {
        let (_dir, store, mut stage, batches) = setup(None).await;
        stage.advance(&store, 10_000).await.expect("advance");
        assert_eq!(stage.bodies_read(), batches.len() as u64);
        for _ in 0..3 {
            assert!(stage.advance(&store, 10_000).await.expect("idle").judged.is_empty());
        }
        assert_eq!(stage.bodies_read(), batches.len() as u64, "an idle advance reads no stored batch");
        // A second, different signed copy of batch 1 arrives late: only it is read, and it is the
        // equivocation fault.
        store.insert_batches(&[copy_of(&second_copy(&batches[0]))]).await.expect("insert");
        let adv = stage.advance(&store, 10_000).await.expect("late copy");
        assert_eq!(stage.bodies_read(), batches.len() as u64 + 1);
        assert_eq!(adv.judged.len(), 1, "{:?}", adv.judged);
        assert_eq!(adv.judged[0].batch_id, 1);
        assert!(
            matches!(&adv.judged[0].outcome, Outcome::Fault { class, .. } if class == "equivocation"),
            "{:?}",
            adv.judged[0]
        );
        assert_eq!(stage.first_fault(), Some(1));
        assert!(stage.proofs().contains_key(&1), "the equivocation's proof is kept for the snapshot");
    }

    #[tokio::test]
    async fn a_restart_loads_verdicts_and_the_checkpoint_and_replays_only_newer_copies() {
        let (_dir, store, mut stage, batches) = setup(None).await;
        let profile = Profile::load("regtest").expect("profile");
        let spec = WorkloadSpec { accounts: 20, txs: 60, batch_size: 20, seed: 3, fault: None };
        let w = generate(&profile, &spec).expect("workload");
        let fresh = || w.genesis.build(&profile).expect("genesis");

        // Judge the first two batches only (the third waits for L1), then checkpoint.
        let l1_of = |i: usize| u64::from(batches[i].signed.header.l1_height);
        assert!(l1_of(2) > l1_of(1), "the workload's batches declare rising L1 heights");
        stage.advance(&store, l1_of(1)).await.expect("advance");
        assert_eq!(stage.judged_height(), 2);
        stage.save_checkpoint(&store, 1).await.expect("checkpoint");
        let root_after_2 = stage.replayer().tip().state_root;

        // A restart: the verdicts come from the store and the state from the checkpoint.
        let (chain, state) = fresh();
        let (mut resumed, from) = ReplayStage::resume(&store, chain, state, profile.clone()).await.expect("resume");
        assert_eq!(from, ResumedFrom::Checkpoint { batch_id: 2 });
        assert_eq!(resumed.replayer().tip().state_root, root_after_2);
        assert_eq!(resumed.results().len(), 2);
        assert_eq!(*resumed.results(), *stage.results());
        assert_eq!(resumed.valid_l1_height(), Some(l1_of(1)), "rebuilt from the stored verdicts");
        let adv = resumed.advance(&store, 10_000).await.expect("advance");
        assert_eq!(resumed.bodies_read(), 1, "only the batch newer than the checkpoint is read");
        assert_eq!(adv.judged.len(), 1);
        assert_eq!(adv.judged[0].batch_id, 3);

        // Without a checkpoint the restart replays from genesis, re-judging silently what is stored.
        let (_dir2, store2, _, _) = setup(None).await;
        let (chain, state) = fresh();
        let (mut a, from) = ReplayStage::resume(&store2, chain, state, profile.clone()).await.expect("resume");
        assert_eq!(from, ResumedFrom::Genesis);
        assert_eq!(a.advance(&store2, 0).await.expect("waits").judged.len(), 0);
        let (chain, state) = fresh();
        let (mut b, _) = ReplayStage::resume(&store2, chain, state, profile.clone()).await.expect("resume");
        drop(a);
        let first = b.advance(&store2, 10_000).await.expect("advance");
        assert_eq!(first.judged.len(), 3);
        assert!(first.judged.iter().all(|r| matches!(r.outcome, Outcome::Valid { .. })), "{:?}", first.judged);
        let (chain, state) = fresh();
        let (mut c, _) = ReplayStage::resume(&store2, chain, state, profile).await.expect("resume");
        let again = c.advance(&store2, 10_000).await.expect("advance");
        assert!(again.judged.is_empty(), "stored verdicts are not news: {:?}", again.judged);
        assert_eq!(c.replayer().tip(), b.replayer().tip());
        assert_eq!(c.results().len(), 3);
    }

    #[tokio::test]
    async fn a_missing_batch_that_arrives_after_the_pending_bound_is_still_read() {
        let profile = Profile::load("regtest").expect("profile");
        let spec = WorkloadSpec { accounts: 20, txs: 60, batch_size: 20, seed: 3, fault: None };
        let w = generate(&profile, &spec).expect("workload");
        let batches: Vec<Batch> = w.batches.into_iter().map(|(_, b)| b).collect();
        // A store that receives batches 2 and 3 first; batch 1 arrives later.
        let dir = tempfile::tempdir().expect("tmp");
        let late = Store::open_sqlite(dir.path()).await.expect("store");
        let (chain, state) = w.genesis.build(&profile).expect("genesis");
        let mut stage = ReplayStage::new(Replayer::new(chain, state).expect("replayer"), profile).with_max_pending(1);
        late.insert_batches(&[copy_of(&batches[1]), copy_of(&batches[2])]).await.expect("2 and 3");
        let adv = stage.advance(&late, 10_000).await.expect("advance");
        assert!(adv.waiting.as_deref().is_some_and(|w| w.contains("earlier batches are missing")), "{adv:?}");
        late.insert_batches(&[copy_of(&batches[0])]).await.expect("1");
        let adv = stage.advance(&late, 10_000).await.expect("advance");
        assert_eq!(adv.judged.iter().map(|r| r.batch_id).collect::<Vec<_>>(), vec![1, 2, 3], "{adv:?}");
    }

    #[tokio::test]
    async fn a_corrupt_checkpoint_falls_back_to_genesis() {
        let (_dir, store, mut stage, _) = setup(None).await;
        stage.advance(&store, 10_000).await.expect("advance");
        let profile = Profile::load("regtest").expect("profile");
        let row = ReplayCheckpointRow {
            batch_id: 3,
            seq_floor: 3,
            state_root: String::new(),
            bytes: b"not a checkpoint".to_vec(),
            created_at: 0,
        };
        store.save_replay_checkpoint(CHECKPOINT_NAME, &row).await.expect("save");
        let spec = WorkloadSpec { accounts: 20, txs: 60, batch_size: 20, seed: 3, fault: None };
        let w = generate(&profile, &spec).expect("workload");
        let (chain, state) = w.genesis.build(&profile).expect("genesis");
        let (mut resumed, from) = ReplayStage::resume(&store, chain, state, profile).await.expect("resume");
        assert_eq!(from, ResumedFrom::Genesis);
        resumed.advance(&store, 10_000).await.expect("advance");
        assert_eq!(resumed.replayer().tip(), stage.replayer().tip());
    }

    #[tokio::test]
    async fn a_fault_carries_its_proof_and_hash_and_later_batches_are_not_replayed() {
        let (_dir, store, mut stage, _) = setup(Some((FaultClass::BadNonce, 2))).await;
        let adv = stage.advance(&store, 10_000).await.expect("advance");
        assert_eq!(stage.first_fault(), Some(2));
        let Outcome::Fault { class, proof, proof_hash, .. } = &adv.judged[1].outcome else {
            panic!("{:?}", adv.judged[1])
        };
        assert_eq!(class, "bad-nonce");
        assert_eq!(stage.proofs().get(&2), Some(proof));
        let p = kray_replayer::proof::FraudProof::from_json(proof).expect("proof");
        assert_eq!(hex::encode(p.proof_hash()), *proof_hash);
        assert!(adv.judged[2..].iter().all(|r| matches!(r.outcome, Outcome::NotReplayed { .. })));
    }
}
