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
                    header: serde_json::to_value(header).unwrap_or_default(),
                    signature: hex::encode(batch.signed.signature),
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

#[cfg(test)]
mod tests {
    use super::*;
    use kray_devnet::workload::{generate, WorkloadSpec};
    use kray_replayer::FaultClass;
    use kray_watcher::store::{BatchCopy, Effect, L1Header};

    /// A store holding `batches` and the workload's two deposits (in block 1), and the stage at genesis.
    async fn setup(fault: Option<(FaultClass, u64)>) -> (tempfile::TempDir, Store, ReplayStage, Vec<Batch>) {
        let profile = Profile::load("regtest").expect("profile");
        let spec = WorkloadSpec { accounts: 20, txs: 60, batch_size: 20, seed: 3, fault };
        let w = generate(&profile, &spec).expect("workload");
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_sqlite(dir.path()).await.expect("store");
        let h = |n: u64| format!("{n:064x}");
        let effects: Vec<Effect> = w
            .facts
            .deposits
            .iter()
            .map(|d| Effect::Deposit {
                outpoint: Outpoint { txid: hex::encode(d.outpoint.txid), vout: d.outpoint.vout },
                amount: u128::from(d.rune_amount),
                recipient: d.recipient.map(|k| hex::encode(k.0)),
                from_bridge: false,
            })
            .collect();
        store.apply_block(&L1Header { height: 1, hash: h(1), prev_hash: h(0) }, &effects).await.expect("block 1");
        let batches: Vec<Batch> = w.batches.into_iter().map(|(_, b)| b).collect();
        let copies: Vec<BatchCopy> = batches
            .iter()
            .map(|b| BatchCopy {
                batch_id: b.signed.header.batch_id,
                source: "test".into(),
                content_hash: hex::encode(b.content_hash()),
                raw: b.to_raw(),
                received_at: 0,
            })
            .collect();
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

    #[tokio::test]
    async fn a_fault_carries_its_proof_and_hash_and_later_batches_are_not_replayed() {
        let (_dir, store, mut stage, _) = setup(Some((FaultClass::BadNonce, 2))).await;
        let adv = stage.advance(&store, 10_000).await.expect("advance");
        assert_eq!(stage.first_fault(), Some(2));
        let Outcome::Fault { class, proof, proof_hash, .. } = &adv.judged[1].outcome else {
            panic!("{:?}", adv.judged[1])
        };
        assert_eq!(class, "bad-nonce");
        let p = kray_replayer::proof::FraudProof::from_json(proof).expect("proof");
        assert_eq!(hex::encode(p.proof_hash()), *proof_hash);
        assert!(adv.judged[2..].iter().all(|r| matches!(r.outcome, Outcome::NotReplayed { .. })));
    }
}
