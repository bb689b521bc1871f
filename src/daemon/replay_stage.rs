//! The replay stage: every mirrored batch, in id order, through the reference state machine.
//!
//! Deposit facts come from the watcher's own L1 index (the store's bridge rows, with the full `ord`
//! allocation), prefetched per batch into a [`FileFacts`], so replay itself stays synchronous and pure.
//! A batch whose `l1_height` is above the indexed L1 tip is "cannot verify yet" and is retried on the
//! next tick; nothing after it is replayed until then.

use std::collections::BTreeMap;

use anyhow::Context;
use kray_replayer::batch::Batch;
use kray_replayer::l1facts::{DepositFact, FileFacts, L1FactsFile};
use kray_replayer::replay::{ReplayError, Replayer};
use kray_replayer::tx::{OutPointRef, Tx};
use kray_replayer::{Profile, Verdict};
use kray_watcher::store::{Outpoint, Store};
use serde::Serialize;

/// What the guardian concluded about one batch copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        /// The fraud proof, as JSON text.
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
    /// The L1 height it declares.
    pub l1_height: u64,
    /// Txs in it.
    pub tx_count: u32,
    /// The verdict.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What one [`ReplayStage::advance`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advance {
    /// Batch copies judged now.
    pub judged: Vec<Replayed>,
    /// Txs executed in valid batches now.
    pub txs: u64,
    /// Set when a batch waits for L1 (`l1_height` above the indexed tip), with the reason.
    pub waiting: Option<String>,
}

/// The replay stage's state.
pub struct ReplayStage {
    replayer: Replayer,
    profile: Profile,
    /// Next batch id to look at.
    next_id: u64,
    /// Content hashes of copies already judged, per batch id.
    judged_copies: BTreeMap<u64, Vec<String>>,
    /// Every judged copy, by batch id.
    results: BTreeMap<u64, Vec<Replayed>>,
}

impl ReplayStage {
    /// A stage replaying from `replayer` (built from the genesis).
    pub fn new(replayer: Replayer, profile: Profile) -> Self {
        Self { replayer, profile, next_id: 1, judged_copies: BTreeMap::new(), results: BTreeMap::new() }
    }

    /// The replayer (state, tip, headers).
    pub fn replayer(&self) -> &Replayer {
        &self.replayer
    }

    /// Every judged batch copy, by batch id.
    pub fn results(&self) -> &BTreeMap<u64, Vec<Replayed>> {
        &self.results
    }

    /// The highest batch id judged (0 before any).
    pub fn judged_height(&self) -> u64 {
        self.results.keys().next_back().copied().unwrap_or(0)
    }

    /// The first faulty batch id, if any.
    pub fn first_fault(&self) -> Option<u64> {
        self.results
            .iter()
            .find(|(_, copies)| copies.iter().any(|c| matches!(c.outcome, Outcome::Fault { .. })))
            .map(|(id, _)| *id)
    }

    /// Judges every stored batch copy not judged yet, in id order (copies of one id in arrival
    /// order: a second, different copy is the equivocation fault), with deposits checked against the
    /// store's bridge index at L1 height `l1_tip`.
    pub async fn advance(&mut self, store: &Store, l1_tip: u64) -> anyhow::Result<Advance> {
        let mut out = Advance::default();
        // Re-check ids already seen for late-arriving second copies (equivocation evidence).
        let mut id = self.judged_copies.keys().next().copied().unwrap_or(1).min(self.next_id);
        loop {
            let copies = store.batch_copies(id).await.with_context(|| format!("reading batch {id}"))?;
            if copies.is_empty() {
                if id >= self.next_id {
                    break;
                }
                id += 1;
                continue;
            }
            for copy in copies {
                if self.judged_copies.get(&id).is_some_and(|seen| seen.contains(&copy.content_hash)) {
                    continue;
                }
                let batch = match Batch::from_raw(&copy.raw, self.profile.max_batch_txs) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(batch_id = id, source = %copy.source, error = %e, "stored batch does not decode");
                        self.judged_copies.entry(id).or_default().push(copy.content_hash.clone());
                        continue;
                    }
                };
                let header = &batch.signed.header;
                if u64::from(header.l1_height) > l1_tip {
                    out.waiting = Some(format!(
                        "batch {id} declares L1 height {} but the L1 index is at {l1_tip}: cannot verify yet",
                        header.l1_height
                    ));
                    return Ok(out);
                }
                let facts = deposit_facts(&batch, store, l1_tip).await?;
                let verdict = self.replayer.replay(&batch, &facts);
                let outcome = match verdict {
                    Ok(Verdict::Valid { state_root, tx_count, .. }) => {
                        out.txs += u64::from(tx_count);
                        Outcome::Valid { state_root, tx_count }
                    }
                    Ok(Verdict::CannotVerify { reason, .. }) => {
                        out.waiting = Some(format!("batch {id}: {reason}"));
                        return Ok(out);
                    }
                    Ok(Verdict::Fault(fault)) => {
                        let (proof, proof_hash) = match self.replayer.build_proof(&batch, &fault) {
                            Ok(p) => (p.to_json(), hex::encode(p.proof_hash())),
                            Err(e) => {
                                tracing::error!(batch_id = id, error = %e, "building the fraud proof failed");
                                (format!("{{\"error\":\"building the proof failed: {e}\"}}"), String::new())
                            }
                        };
                        Outcome::Fault {
                            class: fault.class.to_string(),
                            reason: fault.reason.clone(),
                            proof,
                            proof_hash,
                        }
                    }
                    Err(
                        e
                        @ (ReplayError::AfterFault { .. } | ReplayError::NotSigned { .. } | ReplayError::Duplicate(_)),
                    ) => Outcome::NotReplayed { reason: e.to_string() },
                    Err(ReplayError::Gap { .. }) => {
                        out.waiting = Some(format!("batch {id}: earlier batches are missing"));
                        return Ok(out);
                    }
                    Err(e) => return Err(anyhow::anyhow!("replaying batch {id}: {e}")),
                };
                let r = Replayed {
                    batch_id: id,
                    batch_hash: hex::encode(header.hash()),
                    l1_height: u64::from(header.l1_height),
                    tx_count: header.tx_count,
                    outcome,
                };
                tracing::info!(batch_id = id, verdict = ?r.outcome, "batch judged");
                self.judged_copies.entry(id).or_default().push(copy.content_hash.clone());
                self.results.entry(id).or_default().push(r.clone());
                out.judged.push(r);
            }
            if id >= self.next_id {
                self.next_id = id + 1;
            }
            id += 1;
        }
        Ok(out)
    }
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
