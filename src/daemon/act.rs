//! The acting stage, by mode: `challenge` submits every fraud proof to the challenge endpoints and
//! commits its hash on L1 (`OP_RETURN "KRAY" "C" …`); `full` also anchors valid batches the sequencer
//! abandoned, in turn order with the other guardians. Nothing acts while the guardian is not synced or
//! a deep reorg is open (still watching).
//!
//! Proof submission runs in background tasks (it retries until acknowledged or the deadline passes),
//! so a dead endpoint never delays detection. L1 transactions go through the challenger's [`Sender`]:
//! persisted before broadcast, re-broadcast and RBF-bumped on each block, restart-safe.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use bitcoin::FeeRate;
use kray_challenger::coins::GuardianKey;
use kray_challenger::deadline::Deadline;
use kray_challenger::fees::FeePolicy;
use kray_challenger::journal::{Journal, Purpose};
use kray_challenger::l1::BitcoindL1;
use kray_challenger::sender::{BalanceStatus, SendOutcome, Sender, SenderConfig};
use kray_challenger::submit::{EndpointOutcome, SubmitConfig, Submitter};
use kray_challenger::turns::{TurnDecision, TurnPlan};
use kray_replayer::Profile;
use kray_watcher::judge::{AnchorReport, AnchorState};
use kray_watcher::store::Store;

use super::replay_stage::{Outcome, Replayed};
use crate::config::{GuardianConfig, Mode};

/// File name of the sender's journal in the data dir.
pub const JOURNAL_FILE: &str = "l1-sends.jsonl";

/// What the acting stage did in one tick (for logs, metrics and alerts).
#[derive(Debug, Default)]
pub struct Acted {
    /// Proof submissions started (batch id).
    pub submissions: Vec<u64>,
    /// L1 transactions sent or pending, by purpose.
    pub sends: Vec<(Purpose, SendOutcome)>,
    /// RBF bumps sent.
    pub bumped: u64,
    /// Our anchors confirmed, with the fee paid (sats).
    pub anchors_confirmed: Vec<u64>,
    /// Our anchors broadcast and not yet confirmed.
    pub pending_anchors: u64,
    /// Wallet status, when checked.
    pub balance: Option<BalanceStatus>,
    /// Problems that did not stop the stage.
    pub problems: Vec<String>,
}

/// The acting stage.
pub struct Actor {
    mode: Mode,
    profile: Profile,
    endpoints: Vec<String>,
    sender: Option<Sender<BitcoindL1>>,
    key: Option<[u8; 32]>,
    peers: Vec<[u8; 32]>,
    turn_step: u64,
    grace_steps: u64,
    margin: u64,
    submitted: BTreeSet<String>,
    last_tip: u64,
}

impl Actor {
    /// The stage for `cfg`: the sender when an anchoring key is configured (mode `full` requires one,
    /// mode `challenge` uses it for L1 challenge commitments).
    pub fn new(cfg: &GuardianConfig, profile: &Profile) -> anyhow::Result<Actor> {
        let mut sender = None;
        let mut key = None;
        if cfg.mode >= Mode::Challenge {
            if let Some(path) = &cfg.anchoring.key_file {
                let k = GuardianKey::load(path, profile.network.to_bitcoin())
                    .with_context(|| format!("anchoring.key_file {}", path.display()))?;
                key = Some(k.public_key().serialize());
                tracing::info!(address = %k.address(), key = %k.public_key(), "guardian wallet (fund this address)");
                let journal = Journal::open(&cfg.data_dir.join(JOURNAL_FILE)).context("opening the L1 send journal")?;
                let client = BitcoindL1::from_rpc(cfg.bitcoind.rpc()?);
                let fees = FeePolicy {
                    floor: FeeRate::from_sat_per_vb(cfg.anchoring.fee_floor_sat_vb).unwrap_or(FeeRate::BROADCAST_MIN),
                    cap: FeeRate::from_sat_per_vb(cfg.anchoring.fee_cap_sat_vb).unwrap_or(FeeRate::BROADCAST_MIN),
                    ..FeePolicy::default()
                };
                let sc = SenderConfig {
                    fees,
                    stuck_blocks: u64::from(cfg.anchoring.bump_after_blocks),
                    // Settled sends are re-checked for reorgs, and kept in full in the journal, this deep.
                    reorg_depth: u64::from(cfg.finality_depth),
                };
                sender = Some(Sender::new(client, k, journal, sc));
            }
        }
        let mut peers = Vec::new();
        for (i, p) in cfg.anchoring.peers.iter().enumerate() {
            let bytes: [u8; 32] = hex::decode(p)
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("anchoring.peers[{i}] {p:?} is not a 32-byte x-only key in hex"))?;
            peers.push(bytes);
        }
        Ok(Actor {
            mode: cfg.mode,
            profile: profile.clone(),
            endpoints: cfg.challenge.endpoints.clone(),
            sender,
            key,
            peers,
            turn_step: u64::from(cfg.anchoring.turn_step_blocks),
            grace_steps: u64::from(cfg.anchoring.grace_steps.max(1)),
            margin: u64::from(cfg.challenge.safety_margin_blocks),
            submitted: BTreeSet::new(),
            last_tip: 0,
        })
    }

    /// One pass at L1 height `tip`.
    pub async fn act(
        &mut self,
        store: &Store,
        batches: &BTreeMap<u64, Vec<Replayed>>,
        anchors: &AnchorReport,
        markers: &[kray_watcher::store::ChallengeMarker],
        tip: u64,
    ) -> Acted {
        let mut acted = Acted::default();
        if self.mode < Mode::Challenge {
            return acted;
        }
        let anchored = anchors.anchored();
        // Fraud proofs: submit off-chain, commit on L1.
        for copies in batches.values() {
            for c in copies {
                let Outcome::Fault { proof, proof_hash, class, .. } = &c.outcome else { continue };
                let Some(hash) = hex32(proof_hash) else { continue };
                let due = anchored.get(&c.batch_id).map(|a| a + u64::from(self.profile.challenge_window_blocks));
                if due.is_some_and(|d| tip > d) {
                    continue; // the window closed: nothing we send can count any more
                }
                if self.submitted.insert(proof_hash.clone()) {
                    acted.submissions.push(c.batch_id);
                    self.spawn_submission(
                        c.batch_id,
                        class.clone(),
                        hash,
                        proof.clone(),
                        due.map(|d| d.saturating_sub(tip)),
                    );
                }
                // Re-check before paying: the same proof already committed on L1 (by anyone) is enough.
                let committed = markers.iter().any(|m| m.batch_id == c.batch_id && m.proof_hash == *proof_hash);
                if let Some(sender) = self.sender.as_mut() {
                    let purpose = Purpose::Challenge { batch_id: c.batch_id, proof_hash: hash };
                    if committed && sender.journal().live(&purpose).is_none() {
                        continue;
                    }
                    let deadline = anchored
                        .get(&c.batch_id)
                        .map(|a| Deadline::challenge_window(&self.profile, c.batch_id, *a, self.margin));
                    match sender.send(purpose, deadline).await {
                        Ok(o) => acted.sends.push((purpose, o)),
                        Err(e) => acted.problems.push(format!("challenge commitment for batch {}: {e}", c.batch_id)),
                    }
                }
            }
        }
        // Abandoned valid batches (mode full), oldest first.
        if self.mode == Mode::Full {
            if let (Some(me), true) = (self.key, self.sender.is_some()) {
                self.anchor_abandoned(store, batches, anchors, tip, me, &mut acted).await;
            }
        }
        // Each new block: settle, re-broadcast, bump; drop our anchors that someone else's made moot.
        if let Some(sender) = self.sender.as_mut() {
            if tip != self.last_tip {
                self.last_tip = tip;
                let pending: Vec<Purpose> = sender
                    .journal()
                    .records()
                    .filter(|r| r.is_live())
                    .map(|r| r.purpose)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                for p in pending {
                    if let Purpose::Anchor { batch_id, batch_hash } = p {
                        let ours = sender.journal().live(&p).map(|r| r.txid.to_string());
                        let theirs = anchors
                            .batches
                            .iter()
                            .find(|b| b.batch_id == batch_id && b.batch_hash == hex::encode(batch_hash));
                        if let Some(AnchorState::Anchored { outpoint, confirmed: true, .. }) = theirs.map(|b| &b.state)
                        {
                            if ours.as_deref() != Some(outpoint.txid.as_str()) {
                                if let Err(e) = sender.abandon(&p, "another guardian's anchor confirmed") {
                                    acted.problems.push(format!("dropping our anchor of batch {batch_id}: {e}"));
                                }
                            }
                        }
                    }
                }
                match sender.on_block().await {
                    Ok(r) => {
                        acted.bumped += r.bumped.len() as u64;
                        for (p, txid, _) in &r.settled {
                            if matches!(p, Purpose::Anchor { .. }) {
                                let fee = sender.journal().get(txid).map(|t| t.fee().to_sat()).unwrap_or(0);
                                acted.anchors_confirmed.push(fee);
                            }
                        }
                        acted.problems.extend(r.problems);
                        for p in r.at_cap {
                            acted.problems.push(format!("{p} is stuck at the fee cap"));
                        }
                    }
                    Err(e) => acted.problems.push(format!("sender: {e}")),
                }
                acted.pending_anchors = sender
                    .journal()
                    .records()
                    .filter(|r| r.is_live() && matches!(r.purpose, Purpose::Anchor { .. }))
                    .map(|r| r.purpose)
                    .collect::<BTreeSet<_>>()
                    .len() as u64;
                match sender.balance().await {
                    Ok(b) => acted.balance = Some(b),
                    Err(e) => acted.problems.push(format!("wallet balance: {e}")),
                }
            }
        }
        acted
    }

    /// Anchors every valid, abandoned batch whose turn it is for us.
    async fn anchor_abandoned(
        &mut self,
        store: &Store,
        batches: &BTreeMap<u64, Vec<Replayed>>,
        anchors: &AnchorReport,
        tip: u64,
        me: [u8; 32],
        acted: &mut Acted,
    ) {
        let mut guardians = self.peers.clone();
        guardians.push(me);
        for b in &anchors.batches {
            let AnchorState::Unanchored { grace_ends } = b.state else { continue };
            // `grace_steps` anchor-grace periods after the batch's L1 height (the first is `grace_ends`).
            let grace = u64::from(self.profile.anchor_grace_blocks);
            let abandoned_after = grace_ends.saturating_add(grace.saturating_mul(self.grace_steps - 1));
            if tip <= abandoned_after {
                continue;
            }
            // Never anchor an invalid batch: only a copy replayed valid.
            let valid = batches.get(&b.batch_id).is_some_and(|copies| {
                copies.iter().any(|c| c.batch_hash == b.batch_hash && matches!(c.outcome, Outcome::Valid { .. }))
            });
            if !valid {
                continue;
            }
            let Some(batch_hash) = hex32(&b.batch_hash) else { continue };
            let ref_height = abandoned_after + 1;
            let ref_hash = match store.header_at(ref_height).await {
                Ok(Some(h)) => match h.hash.parse::<bitcoin::BlockHash>() {
                    Ok(hash) => bitcoin::hashes::Hash::to_byte_array(hash),
                    Err(_) => continue,
                },
                _ => continue,
            };
            let Some(plan) = TurnPlan::new(ref_height, &ref_hash, b.batch_id, &guardians, &me, self.turn_step) else {
                continue;
            };
            if plan.decide(tip, false) != TurnDecision::Act {
                continue;
            }
            let Some(sender) = self.sender.as_mut() else { return };
            let purpose = Purpose::Anchor { batch_id: b.batch_id, batch_hash };
            // Past its grace the anchor is overdue: bump as soon as it is stuck, for up to one
            // challenge window (its withdrawals cannot mature before it confirms).
            let window = u64::from(self.profile.challenge_window_blocks);
            let deadline = Deadline::new(
                kray_challenger::deadline::DeadlineKind::AnchorGrace { batch_id: b.batch_id },
                ref_height.saturating_add(window),
                window,
            );
            match sender.send(purpose, Some(deadline)).await {
                Ok(o) => {
                    if matches!(o, SendOutcome::Broadcast(_) | SendOutcome::Persisted(_)) {
                        tracing::warn!(batch_id = b.batch_id, outcome = ?o, "anchoring an abandoned batch");
                    }
                    acted.sends.push((purpose, o));
                }
                Err(e) => acted.problems.push(format!("anchoring batch {}: {e}", b.batch_id)),
            }
        }
    }

    /// Posts a proof to every endpoint in the background, retrying until acknowledged or the
    /// challenge window (at ~10 minutes per block, at least an hour) runs out.
    fn spawn_submission(&self, batch_id: u64, class: String, hash: [u8; 32], proof: String, blocks_left: Option<u64>) {
        if self.endpoints.is_empty() {
            return;
        }
        let cfg = SubmitConfig { endpoints: self.endpoints.clone(), ..SubmitConfig::default() };
        let secs = blocks_left.map(|b| b.saturating_mul(600)).unwrap_or(0).max(3_600);
        tokio::spawn(async move {
            let mut submitter = Submitter::new(cfg);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            let report = submitter.submit(hash, &proof, deadline).await;
            for (endpoint, outcome) in report {
                match outcome {
                    EndpointOutcome::Acknowledged { status, attempts, .. } => {
                        tracing::info!(batch_id, %class, %endpoint, status, attempts, "fraud proof acknowledged")
                    }
                    other => {
                        tracing::error!(batch_id, %class, %endpoint, outcome = ?other, "fraud proof not acknowledged")
                    }
                }
            }
        });
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}
