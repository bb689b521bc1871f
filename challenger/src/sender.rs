//! One sender for the guardian's anchors and challenge markers.
//!
//! Order of every action: select coins (confirmed, unreserved), sign by key path, **persist to the
//! journal (fsync)**, then broadcast. On each new block ([`Sender::on_block`]) it settles what
//! confirmed (a confirmation of an original or of any of its replacements settles the purpose; the
//! rest are dropped), re-broadcasts every live transaction the node does not hold, and RBF-bumps a live
//! transaction that has been waiting `stuck_blocks` blocks once its deadline nears (BIP-125 checked
//! locally first, never above the fee cap). A restart builds a new sender over the same journal: the
//! live transaction is re-broadcast as is, replaced ones are never re-sent, reserved inputs are never
//! spent by a new transaction.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid};
use thiserror::Error;

use crate::coins::{select_coins, spendable_total, typical_action_fee, CoinError, GuardianKey, P2TR_DUST};
use crate::deadline::Deadline;
use crate::fees::{check_replacement, Bip125Violation, FeePolicy};
use crate::journal::{Journal, JournalError, Purpose, TxRecord, TxStatus};
use crate::l1::{ChainTxState, L1Client, L1Error, RPC_ALREADY_IN_CHAIN};

/// Sender settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Fee floor, cap, target, incremental relay fee, bump step.
    pub fees: FeePolicy,
    /// Blocks a broadcast transaction may wait unconfirmed before it is considered stuck.
    pub stuck_blocks: u64,
    /// Confirmations below which a settled transaction is re-checked on every block (a reorg that
    /// drops it makes it live again, and it is re-broadcast): the finality depth. Deeper settled
    /// purposes are folded by the journal compaction ([`Journal::compact_settled`]).
    pub reorg_depth: u64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self { fees: FeePolicy::default(), stuck_blocks: 2, reorg_depth: 6 }
    }
}

/// Sender errors.
#[derive(Debug, Error)]
pub enum SenderError {
    /// The L1 node failed.
    #[error(transparent)]
    L1(#[from] L1Error),
    /// The journal failed (nothing is broadcast without it).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Coin selection or signing failed (e.g. insufficient funds).
    #[error(transparent)]
    Coins(#[from] CoinError),
    /// The node rejected a new transaction.
    #[error("the L1 node rejected {txid} ({purpose}): {reason}")]
    Rejected {
        /// The transaction.
        txid: Txid,
        /// What it was for.
        purpose: Purpose,
        /// The node's message.
        reason: String,
    },
}

/// The result of [`Sender::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// A new transaction was signed, persisted and accepted by the node.
    Broadcast(Txid),
    /// A new transaction was signed and persisted but the node was unreachable: it goes out on the
    /// next block.
    Persisted(Txid),
    /// A transaction for this purpose is already live (nothing new was signed).
    Pending(Txid),
    /// The purpose is settled by this confirmed transaction.
    Settled {
        /// The confirmed transaction.
        txid: Txid,
        /// Its block height.
        height: u64,
    },
}

/// Whether the guardian can afford its next action at the fee cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceStatus {
    /// Enough.
    Ok {
        /// Spendable, unreserved coins.
        spendable: Amount,
    },
    /// Not enough for one more transaction at the cap: the daemon raises an alert.
    Low {
        /// Spendable, unreserved coins.
        spendable: Amount,
        /// What the next action may cost at the cap.
        needed: Amount,
    },
}

/// What one [`Sender::on_block`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockReport {
    /// Tip height seen.
    pub tip: u64,
    /// Purposes settled in this call: the confirmed transaction and its height.
    pub settled: Vec<(Purpose, Txid, u64)>,
    /// Live transactions re-sent because the node did not hold them.
    pub rebroadcast: Vec<Txid>,
    /// RBF bumps sent: (replaced, replacement).
    pub bumped: Vec<(Txid, Txid)>,
    /// Stuck transactions that cannot be bumped because they already pay the cap.
    pub at_cap: Vec<Purpose>,
    /// Settled transactions that a reorg took out of the chain: live again.
    pub reorged: Vec<Txid>,
    /// Problems that did not stop the pass (logged as well).
    pub problems: Vec<String>,
}

/// The guardian's transaction sender.
#[derive(Debug)]
pub struct Sender<C> {
    client: C,
    key: GuardianKey,
    journal: Journal,
    cfg: SenderConfig,
    deadlines: BTreeMap<Purpose, Deadline>,
    /// Whether the journal was compacted since this sender started.
    compacted: bool,
}

impl<C: L1Client> Sender<C> {
    /// A sender over an opened journal (a restart passes the same journal file).
    pub fn new(client: C, key: GuardianKey, journal: Journal, cfg: SenderConfig) -> Self {
        Self { client, key, journal, cfg, deadlines: BTreeMap::new(), compacted: false }
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The L1 client.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// Sets (or moves, after a reorg) the deadline that governs bumping for `purpose`.
    pub fn set_deadline(&mut self, purpose: Purpose, deadline: Deadline) {
        self.deadlines.insert(purpose, deadline);
    }

    /// Sends the transaction for `purpose`, unless one is already live or confirmed (idempotent).
    pub async fn send(&mut self, purpose: Purpose, deadline: Option<Deadline>) -> Result<SendOutcome, SenderError> {
        if let Some(d) = deadline {
            self.deadlines.insert(purpose, d);
        }
        if let Some(s) = self.journal.settlement(&purpose) {
            return Ok(SendOutcome::Settled { txid: s.txid, height: s.height });
        }
        if let Some(r) = self.journal.live(&purpose) {
            return Ok(SendOutcome::Pending(r.txid));
        }
        let tip = self.client.tip_height().await?;
        let estimate = self.client.estimate_fee_rate(self.cfg.fees.conf_target).await?;
        let rate = self.cfg.fees.clamp(estimate);
        let coins = self.client.utxos(&self.key.script_pubkey()).await?;
        let reserved = self.journal.reserved_inputs();
        let outputs = [TxOut { value: Amount::ZERO, script_pubkey: purpose.script() }];
        let mut funded = select_coins(&coins, &reserved, &[], &outputs, &self.key.script_pubkey(), rate, tip)?;
        self.key.sign(&mut funded.tx, &funded.prevouts)?;
        let rec = TxRecord::signed(&funded.tx, purpose, funded.fee, rate, None, tip);
        let txid = rec.txid;
        self.journal.put(rec)?;
        tracing::info!(%purpose, %txid, fee = %funded.fee, fee_rate = %rate, "signed and journaled");
        match self.client.send_raw_transaction(&funded.tx).await {
            Ok(_) => {
                self.journal.set_status(&txid, TxStatus::Broadcast { height: tip })?;
                tracing::info!(%purpose, %txid, "broadcast");
                Ok(SendOutcome::Broadcast(txid))
            }
            Err(L1Error::Rpc { message, .. }) => {
                self.journal
                    .set_status(&txid, TxStatus::Dropped { reason: format!("rejected: {message}"), released: true })?;
                tracing::warn!(%purpose, %txid, reason = %message, "broadcast rejected");
                Err(SenderError::Rejected { txid, purpose, reason: message })
            }
            Err(e) => {
                tracing::warn!(%purpose, %txid, error = %e, "broadcast failed; retrying on the next block");
                Ok(SendOutcome::Persisted(txid))
            }
        }
    }

    /// Gives up `purpose` (e.g. another guardian's anchor for the batch confirmed): live transactions
    /// are dropped, never re-sent or bumped. Returns the dropped txids.
    pub fn abandon(&mut self, purpose: &Purpose, reason: &str) -> Result<Vec<Txid>, SenderError> {
        let live: Vec<Txid> =
            self.journal.for_purpose(purpose).iter().filter(|r| r.is_live()).map(|r| r.txid).collect();
        for txid in &live {
            self.journal.set_status(txid, TxStatus::Dropped { reason: reason.to_string(), released: false })?;
            tracing::info!(%purpose, %txid, reason, "dropped our pending transaction");
        }
        self.deadlines.remove(purpose);
        Ok(live)
    }

    /// The per-block pass: compact, settle, re-broadcast, bump, release. Call once per new tip (and at
    /// start).
    pub async fn on_block(&mut self) -> Result<BlockReport, SenderError> {
        let tip = self.client.tip_height().await?;
        let mut report = BlockReport { tip, ..BlockReport::default() };
        self.compact(tip, &mut report);
        self.recheck_recent(tip, &mut report).await?;
        self.settle(tip, &mut report).await?;
        self.release_dropped().await?;
        let live: Vec<TxRecord> = self.journal.records().filter(|r| r.is_live()).cloned().collect();
        for rec in live {
            if let Err(e) = self.tend(&rec, tip, &mut report).await {
                tracing::warn!(purpose = %rec.purpose, txid = %rec.txid, error = %e, "tending a live transaction");
                report.problems.push(format!("{}: {e}", rec.txid));
            }
        }
        Ok(report)
    }

    /// Compacts the journal on the first pass after start (when it has superseded lines or purposes
    /// settled deeper than the finality depth) and whenever it has grown [`COMPACT_REDUNDANT_LINES`](crate::journal::COMPACT_REDUNDANT_LINES)
    /// superseded lines. Runs before this pass settles anything, so a purpose settled in this pass keeps
    /// its full record until the next compaction. A failed compaction leaves the journal as it was and
    /// is reported, never fatal.
    fn compact(&mut self, tip: u64, report: &mut BlockReport) {
        let depth = self.cfg.reorg_depth;
        let first = !self.compacted;
        let due = self.journal.needs_compaction()
            || (first && (self.journal.redundant_lines() > 0 || !self.journal.foldable(tip, depth).is_empty()));
        self.compacted = true;
        if !due {
            return;
        }
        match self.journal.compact_settled(tip, depth) {
            Ok(folded) => {
                tracing::info!(
                    tip,
                    depth,
                    folded = folded.len(),
                    lines = self.journal.line_count(),
                    "journal compacted"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal compaction failed; the journal is unchanged");
                report.problems.push(format!("journal compaction: {e}"));
            }
        }
    }

    /// Whether the spendable, unreserved coins pay for one more action at the fee cap.
    pub async fn balance(&self) -> Result<BalanceStatus, SenderError> {
        let tip = self.client.tip_height().await?;
        let coins = self.client.utxos(&self.key.script_pubkey()).await?;
        let spendable = spendable_total(&coins, &self.journal.reserved_inputs(), tip);
        let needed = typical_action_fee(self.cfg.fees.cap).checked_add(P2TR_DUST).unwrap_or(Amount::MAX);
        Ok(if spendable < needed { BalanceStatus::Low { spendable, needed } } else { BalanceStatus::Ok { spendable } })
    }

    /// Re-checks settled transactions with fewer than `reorg_depth` confirmations: one a reorg removed
    /// becomes live again (and is re-broadcast by the pass), one that moved gets its new height.
    async fn recheck_recent(&mut self, tip: u64, report: &mut BlockReport) -> Result<(), SenderError> {
        let recent: Vec<(Txid, u64)> = self
            .journal
            .records()
            .filter_map(|r| match r.status {
                TxStatus::Confirmed { height } if height.saturating_add(self.cfg.reorg_depth) > tip => {
                    Some((r.txid, height))
                }
                _ => None,
            })
            .collect();
        for (txid, old_height) in recent {
            match self.client.tx_state(&txid).await? {
                ChainTxState::Confirmed { height } if height == old_height => {}
                ChainTxState::Confirmed { height } => {
                    self.journal.set_status(&txid, TxStatus::Confirmed { height })?;
                }
                ChainTxState::InMempool | ChainTxState::Unknown => {
                    tracing::warn!(%txid, old_height, tip, "reorged out: live again");
                    self.journal.set_status(&txid, TxStatus::Broadcast { height: tip })?;
                    report.reorged.push(txid);
                }
            }
        }
        Ok(())
    }

    /// Marks confirmed every unsettled record (live or replaced) the node has in a block.
    async fn settle(&mut self, tip: u64, report: &mut BlockReport) -> Result<(), SenderError> {
        let open: Vec<TxRecord> = self
            .journal
            .records()
            .filter(|r| r.is_live() || matches!(r.status, TxStatus::Replaced { .. }))
            .filter(|r| self.journal.confirmed(&r.purpose).is_none())
            .cloned()
            .collect();
        for rec in open {
            if self.journal.confirmed(&rec.purpose).is_some() {
                continue;
            }
            if let ChainTxState::Confirmed { height } = self.client.tx_state(&rec.txid).await? {
                self.journal.set_status(&rec.txid, TxStatus::Confirmed { height })?;
                let others: Vec<Txid> =
                    self.journal.for_purpose(&rec.purpose).iter().filter(|r| r.is_live()).map(|r| r.txid).collect();
                for other in others {
                    let reason = format!("conflicts with confirmed {}", rec.txid);
                    self.journal.set_status(&other, TxStatus::Dropped { reason, released: true })?;
                }
                // The deadline is kept: a reorg may make the purpose live again.
                tracing::info!(purpose = %rec.purpose, txid = %rec.txid, height, tip, "confirmed: purpose settled");
                report.settled.push((rec.purpose, rec.txid, height));
            }
        }
        Ok(())
    }

    /// Releases the inputs of dropped transactions the node no longer holds.
    async fn release_dropped(&mut self) -> Result<(), SenderError> {
        let held: Vec<(Txid, String)> = self
            .journal
            .records()
            .filter_map(|r| match &r.status {
                TxStatus::Dropped { reason, released: false } => Some((r.txid, reason.clone())),
                _ => None,
            })
            .collect();
        for (txid, reason) in held {
            match self.client.tx_state(&txid).await? {
                ChainTxState::InMempool => {}
                ChainTxState::Unknown => {
                    self.journal.set_status(&txid, TxStatus::Dropped { reason, released: true })?
                }
                ChainTxState::Confirmed { height } => self.journal.set_status(&txid, TxStatus::Confirmed { height })?,
            }
        }
        Ok(())
    }

    /// Re-broadcasts `rec` if the node lacks it, and bumps it when stuck near its deadline.
    async fn tend(&mut self, rec: &TxRecord, tip: u64, report: &mut BlockReport) -> Result<(), SenderError> {
        let tx = rec.tx()?;
        match self.client.tx_state(&rec.txid).await? {
            ChainTxState::Confirmed { .. } => return Ok(()),
            ChainTxState::InMempool => {
                if rec.status == TxStatus::Signed {
                    self.journal.set_status(&rec.txid, TxStatus::Broadcast { height: tip })?;
                }
            }
            ChainTxState::Unknown => match self.client.send_raw_transaction(&tx).await {
                Ok(_) => {
                    tracing::info!(purpose = %rec.purpose, txid = %rec.txid, "re-broadcast");
                    report.rebroadcast.push(rec.txid);
                    if rec.status == TxStatus::Signed {
                        self.journal.set_status(&rec.txid, TxStatus::Broadcast { height: tip })?;
                    }
                }
                Err(L1Error::Rpc { code: RPC_ALREADY_IN_CHAIN, .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        }
        let Some(TxStatus::Broadcast { height }) = self.journal.get(&rec.txid).map(|r| r.status.clone()) else {
            return Ok(());
        };
        let Some(deadline) = self.deadlines.get(&rec.purpose).cloned() else {
            return Ok(());
        };
        if tip.saturating_sub(height) < self.cfg.stuck_blocks || !deadline.should_act(tip) {
            return Ok(());
        }
        self.bump(rec, &tx, tip, report).await
    }

    async fn bump(
        &mut self,
        rec: &TxRecord,
        old_tx: &Transaction,
        tip: u64,
        report: &mut BlockReport,
    ) -> Result<(), SenderError> {
        let estimate = self.client.estimate_fee_rate(self.cfg.fees.conf_target).await?;
        let Some(rate) = self.cfg.fees.bump_rate(rec.fee_rate(), estimate) else {
            tracing::warn!(purpose = %rec.purpose, txid = %rec.txid, cap = %self.cfg.fees.cap, "stuck at the fee cap");
            report.at_cap.push(rec.purpose);
            return Ok(());
        };
        let coins = self.client.utxos(&self.key.script_pubkey()).await?;
        let confirmed: BTreeSet<OutPoint> = coins.iter().map(|c| c.outpoint).collect();
        let reserved = self.journal.reserved_inputs();
        let outputs = [TxOut { value: Amount::ZERO, script_pubkey: rec.purpose.script() }];
        let mut funded = select_coins(&coins, &reserved, &rec.inputs, &outputs, &self.key.script_pubkey(), rate, tip)?;
        self.key.sign(&mut funded.tx, &funded.prevouts)?;
        if let Err(v) =
            check_replacement(old_tx, rec.fee(), &funded.tx, funded.fee, self.cfg.fees.incremental_relay, &confirmed)
        {
            return Err(bip125(rec, v));
        }
        let new = TxRecord::signed(&funded.tx, rec.purpose, funded.fee, rate, Some(rec.txid), tip);
        let new_txid = new.txid;
        self.journal.put(new)?;
        match self.client.send_raw_transaction(&funded.tx).await {
            Ok(_) => {
                self.journal.set_status(&rec.txid, TxStatus::Replaced { by: new_txid })?;
                self.journal.set_status(&new_txid, TxStatus::Broadcast { height: tip })?;
            }
            Err(L1Error::Rpc { message, .. }) => {
                let reason = format!("bump rejected: {message}");
                self.journal.set_status(&new_txid, TxStatus::Dropped { reason, released: true })?;
                return Err(SenderError::Rejected { txid: new_txid, purpose: rec.purpose, reason: message });
            }
            Err(e) => {
                // The node may or may not have it; the replacement is the live one from now on.
                self.journal.set_status(&rec.txid, TxStatus::Replaced { by: new_txid })?;
                tracing::warn!(txid = %new_txid, error = %e, "bump not broadcast; retrying on the next block");
            }
        }
        let (purpose, old, fee) = (rec.purpose, rec.txid, funded.fee);
        tracing::info!(%purpose, %old, new = %new_txid, %fee, fee_rate = %rate, "RBF bump");
        report.bumped.push((rec.txid, new_txid));
        Ok(())
    }
}

fn bip125(rec: &TxRecord, v: Bip125Violation) -> SenderError {
    SenderError::Rejected { txid: rec.txid, purpose: rec.purpose, reason: format!("local BIP-125 check: {v}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::DeadlineKind;
    use crate::scripted::ScriptedL1;
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::{FeeRate, Network};
    use std::path::Path;

    fn key() -> GuardianKey {
        GuardianKey::from_secret_key(SecretKey::from_slice(&[9u8; 32]).expect("sk"), Network::Regtest)
    }

    fn cfg() -> SenderConfig {
        SenderConfig {
            fees: FeePolicy {
                floor: FeeRate::from_sat_per_vb_u32(2),
                cap: FeeRate::from_sat_per_vb_u32(20),
                conf_target: 3,
                incremental_relay: FeeRate::from_sat_per_vb_u32(1),
                bump_percent: 150,
            },
            stuck_blocks: 2,
            reorg_depth: 6,
        }
    }

    fn anchor(n: u64) -> Purpose {
        Purpose::Anchor { batch_id: n, batch_hash: [n as u8; 32] }
    }

    fn chain(coins: &[u64]) -> ScriptedL1 {
        let l1 = ScriptedL1::new(500);
        for (i, sats) in coins.iter().enumerate() {
            let op = OutPoint { txid: Txid::from_byte_array([i as u8 + 1; 32]), vout: 0 };
            l1.fund(op, TxOut { value: Amount::from_sat(*sats), script_pubkey: key().script_pubkey() }, 100);
        }
        l1
    }

    fn sender(l1: ScriptedL1, path: &Path) -> Sender<ScriptedL1> {
        Sender::new(l1, key(), Journal::open(path).expect("journal"), cfg())
    }

    fn urgent(n: u64) -> Deadline {
        Deadline::new(DeadlineKind::AnchorGrace { batch_id: n }, 600, 200)
    }

    #[tokio::test]
    async fn sends_once_at_the_clamped_rate_and_settles() {
        let dir = tempfile::tempdir().expect("tmp");
        let l1 = chain(&[100_000]);
        l1.state().estimate = Some(FeeRate::from_sat_per_vb_u32(500));
        let mut s = sender(l1, &dir.path().join("j"));
        let SendOutcome::Broadcast(txid) = s.send(anchor(1), None).await.expect("send") else { panic!("not sent") };
        let rec = s.journal().get(&txid).expect("journaled").clone();
        assert_eq!(rec.fee_rate(), FeeRate::from_sat_per_vb_u32(20), "estimate clamped to the cap");
        assert_eq!(rec.tx().expect("tx").output[0].script_pubkey, anchor(1).script());
        // Idempotent while pending.
        assert_eq!(s.send(anchor(1), None).await.expect("again"), SendOutcome::Pending(txid));
        assert_eq!(s.client().state().sent, vec![txid]);
        s.client().mine();
        let r = s.on_block().await.expect("block");
        assert_eq!(r.settled, vec![(anchor(1), txid, 501)]);
        assert_eq!(s.send(anchor(1), None).await.expect("again"), SendOutcome::Settled { txid, height: 501 });
    }

    #[tokio::test]
    async fn no_estimate_uses_the_floor_and_second_purpose_uses_other_coins() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = sender(chain(&[100_000, 90_000]), &dir.path().join("j"));
        let SendOutcome::Broadcast(a) = s.send(anchor(1), None).await.expect("send") else { panic!() };
        let SendOutcome::Broadcast(b) = s.send(anchor(2), None).await.expect("send") else { panic!() };
        let ra = s.journal().get(&a).expect("a").clone();
        let rb = s.journal().get(&b).expect("b").clone();
        assert_eq!(ra.fee_rate(), FeeRate::from_sat_per_vb_u32(2));
        assert!(ra.inputs.iter().all(|i| !rb.inputs.contains(i)), "an input is never spent twice");
        // A third purpose finds no unreserved coin (change is unconfirmed).
        assert!(matches!(s.send(anchor(3), None).await, Err(SenderError::Coins(CoinError::InsufficientFunds { .. }))));
    }

    #[tokio::test]
    async fn crash_after_persist_rebroadcasts_the_same_tx_after_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let l1 = chain(&[100_000, 100_000]);
        l1.state().fail_sends = true;
        let mut s = sender(l1, &path);
        let SendOutcome::Persisted(txid) = s.send(anchor(1), None).await.expect("send") else { panic!() };
        let l1 = s.client;
        l1.state().fail_sends = false;
        assert!(l1.state().sent.is_empty());
        // Restart over the same journal.
        let mut s = sender(l1, &path);
        assert_eq!(s.send(anchor(1), None).await.expect("send"), SendOutcome::Pending(txid), "no second spend");
        let r = s.on_block().await.expect("block");
        assert_eq!(r.rebroadcast, vec![txid]);
        assert_eq!(s.client().state().sent, vec![txid]);
        assert_eq!(s.journal().get(&txid).map(|r| r.status.clone()), Some(TxStatus::Broadcast { height: 500 }));
        // Already in the mempool: not re-sent.
        let r = s.on_block().await.expect("block");
        assert!(r.rebroadcast.is_empty());
        s.client().mine();
        assert_eq!(s.on_block().await.expect("block").settled.len(), 1);
    }

    #[tokio::test]
    async fn stuck_tx_is_bumped_per_bip125_and_the_replaced_one_never_resent() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let mut s = sender(chain(&[100_000, 50_000]), &path);
        let SendOutcome::Broadcast(old) = s.send(anchor(1), Some(urgent(1))).await.expect("send") else { panic!() };
        s.client().state().stuck.insert(old);
        s.client().mine();
        assert!(s.on_block().await.expect("block").bumped.is_empty(), "1 block is not stuck yet");
        s.client().mine();
        let r = s.on_block().await.expect("block");
        let [(replaced, new)] = r.bumped[..] else { panic!("expected one bump: {r:?}") };
        assert_eq!(replaced, old);
        let (o, n) = (s.journal().get(&old).expect("old").clone(), s.journal().get(&new).expect("new").clone());
        assert_eq!(o.status, TxStatus::Replaced { by: new });
        assert_eq!(n.replaces, Some(old));
        assert_eq!(n.inputs[0], o.inputs[0], "same input: a replacement, not a second spend");
        assert!(n.fee_sat >= o.fee_sat + n.vsize, "rule 4");
        assert_eq!(n.fee_rate(), FeeRate::from_sat_per_vb_u32(3));
        // Restart: the replaced tx is never re-sent; the new one is live.
        let l1 = s.client;
        l1.state().mempool.clear();
        let mut s = sender(l1, &path);
        let r = s.on_block().await.expect("block");
        assert_eq!(r.rebroadcast, vec![new]);
        assert!(!s.client().state().sent[2..].contains(&old));
        s.client().mine();
        let r = s.on_block().await.expect("block");
        assert_eq!(r.settled, vec![(anchor(1), new, 503)]);
    }

    #[tokio::test]
    async fn confirmation_of_the_replaced_original_settles_and_drops_the_bump() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = sender(chain(&[100_000]), &dir.path().join("j"));
        let SendOutcome::Broadcast(old) = s.send(anchor(1), Some(urgent(1))).await.expect("send") else { panic!() };
        let old_tx = s.journal().get(&old).expect("old").tx().expect("tx");
        s.client().state().stuck.insert(old);
        s.client().mine();
        s.client().mine();
        let r = s.on_block().await.expect("block");
        let new = r.bumped[0].1;
        // A miner kept the original.
        s.client().mine_tx(&old_tx);
        let r = s.on_block().await.expect("block");
        assert_eq!(r.settled, vec![(anchor(1), old, 503)]);
        assert!(matches!(s.journal().get(&new).map(|r| &r.status), Some(TxStatus::Dropped { released: true, .. })));
        assert!(r.bumped.is_empty() && r.rebroadcast.is_empty());
    }

    #[tokio::test]
    async fn no_bump_without_near_deadline_and_none_above_the_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = sender(chain(&[100_000]), &dir.path().join("j"));
        let far = Deadline::new(DeadlineKind::AnchorGrace { batch_id: 1 }, 900, 10);
        let SendOutcome::Broadcast(old) = s.send(anchor(1), Some(far)).await.expect("send") else { panic!() };
        s.client().state().stuck.insert(old);
        for _ in 0..5 {
            s.client().mine();
            assert!(s.on_block().await.expect("block").bumped.is_empty(), "deadline far away");
        }
        s.set_deadline(anchor(1), urgent(1));
        let mut last = old;
        let mut bumps = 0;
        for _ in 0..20 {
            let r = s.on_block().await.expect("block");
            if let Some((_, n)) = r.bumped.first() {
                s.client().state().stuck.insert(*n);
                last = *n;
                bumps += 1;
            }
            if !r.at_cap.is_empty() {
                break;
            }
            s.client().mine();
            s.client().mine();
        }
        let rec = s.journal().get(&last).expect("last");
        assert_eq!(rec.fee_rate(), FeeRate::from_sat_per_vb_u32(20), "stops at the cap");
        assert!(bumps >= 3, "bumped {bumps} times");
    }

    #[tokio::test]
    async fn another_guardians_anchor_drops_ours() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = sender(chain(&[100_000]), &dir.path().join("j"));
        let SendOutcome::Broadcast(ours) = s.send(anchor(1), Some(urgent(1))).await.expect("send") else { panic!() };
        s.client().state().stuck.insert(ours);
        assert_eq!(s.abandon(&anchor(1), "anchored by another guardian").expect("abandon"), vec![ours]);
        s.client().mine();
        s.client().mine();
        s.client().mine();
        let r = s.on_block().await.expect("block");
        assert!(r.bumped.is_empty() && r.rebroadcast.is_empty(), "dropped: never bumped or re-sent");
        // Its input stays reserved while the node holds it, then is released.
        let input = s.journal().get(&ours).expect("rec").inputs[0];
        assert!(s.journal().reserved_inputs().contains(&input));
        s.client().state().mempool.clear();
        s.on_block().await.expect("block");
        assert!(!s.journal().reserved_inputs().contains(&input));
    }

    #[tokio::test]
    async fn a_reorged_out_confirmation_is_live_again_and_resent() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = sender(chain(&[100_000]), &dir.path().join("j"));
        let SendOutcome::Broadcast(txid) = s.send(anchor(1), None).await.expect("send") else { panic!() };
        s.client().mine();
        assert_eq!(s.on_block().await.expect("block").settled.len(), 1);
        assert!(s.client().reorg_out(&txid));
        let r = s.on_block().await.expect("block");
        assert_eq!(r.reorged, vec![txid]);
        assert_eq!(r.rebroadcast, vec![txid], "the same tx goes out again");
        assert_eq!(s.send(anchor(1), None).await.expect("send"), SendOutcome::Pending(txid));
        s.client().mine();
        assert_eq!(s.on_block().await.expect("block").settled, vec![(anchor(1), txid, 502)]);
        // Deep enough: no longer re-checked.
        for _ in 0..6 {
            s.client().mine();
        }
        assert!(s.client().reorg_out(&txid));
        assert!(s.on_block().await.expect("block").reorged.is_empty());
    }

    #[tokio::test]
    async fn deep_settlements_are_folded_at_the_first_pass_and_never_resent() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let mut s = sender(chain(&[100_000, 100_000]), &path);
        let SendOutcome::Broadcast(a) = s.send(anchor(1), None).await.expect("send") else { panic!() };
        s.client().mine();
        assert_eq!(s.on_block().await.expect("block").settled, vec![(anchor(1), a, 501)]);
        let SendOutcome::Broadcast(b) = s.send(anchor(2), None).await.expect("send") else { panic!() };
        for _ in 0..6 {
            s.client().mine();
        }
        // Tip 507: the confirmation at 501 is 7 deep, beyond the finality depth 6. A restart folds it.
        let l1 = s.client;
        let mut s = sender(l1, &path);
        let r = s.on_block().await.expect("block");
        assert!(r.problems.is_empty(), "{r:?}");
        assert!(s.journal().get(&a).is_none(), "folded");
        assert_eq!(s.journal().settlements().map(|x| x.txid).collect::<Vec<_>>(), vec![a]);
        assert_eq!(s.send(anchor(1), None).await.expect("send"), SendOutcome::Settled { txid: a, height: 501 });
        // The other purpose (confirmed at 502 in this pass, not deep) keeps its record.
        assert!(s.journal().get(&b).is_some());
        assert_eq!(s.client().state().sent, vec![a, b], "nothing sent again");
        let lines = std::fs::read_to_string(&path).expect("read").lines().count();
        assert_eq!(lines, s.journal().line_count());
    }

    #[tokio::test]
    async fn low_balance_is_reported() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = sender(chain(&[3_000]), &dir.path().join("j"));
        assert!(matches!(s.balance().await.expect("balance"), BalanceStatus::Low { .. }));
        let s = sender(chain(&[300_000]), &dir.path().join("k"));
        assert_eq!(s.balance().await.expect("balance"), BalanceStatus::Ok { spendable: Amount::from_sat(300_000) });
    }
}
