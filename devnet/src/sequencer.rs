//! The devnet's reference sequencer: a mempool of signed user txs (checked on submission so users get
//! an answer), sealing into signed batches with [`Sealer`] (optionally committing a fault), and the
//! published record the API serves (batches, anchors, withdrawals, challenges).

use crate::faults::{exercising_tx, inject, semantics_for};
use bitcoin::key::Keypair;
use kray_replayer::address::{address_of_pubkey, parse_l2_address, AccountKey};
use kray_replayer::batch::Batch;
use kray_replayer::fault::FaultClass;
use kray_replayer::l1facts::L1Facts;
use kray_replayer::profile::Profile;
use kray_replayer::seal::{Rejected, Sealer};
use kray_replayer::signature::verify;
use kray_replayer::tx::{Tx, TxKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// Most txs waiting in the mempool.
pub const MAX_MEMPOOL: usize = 50_000;

/// Why a submitted tx was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    /// Only `transfer` and `withdrawal` are user txs.
    #[error("tx_type {0:?} cannot be submitted (only transfer and withdrawal)")]
    Type(String),
    /// The tx is malformed (addresses, amount, fields).
    #[error("malformed tx: {0}")]
    Malformed(String),
    /// The signature does not verify, or the pubkey is not the sender's.
    #[error("invalid signature: {0}")]
    Signature(String),
    /// The sender has no account.
    #[error("unknown sender {0}")]
    UnknownSender(String),
    /// The nonce is not the next one (counting the sender's txs already in the mempool).
    #[error("bad nonce: {got}, the next nonce is {expected}")]
    Nonce {
        /// Expected.
        expected: u64,
        /// Given.
        got: u64,
    },
    /// Balance (less what the mempool already spends) is below amount + gas.
    #[error("insufficient balance: {available} available, {needed} needed")]
    Balance {
        /// Available.
        available: u64,
        /// Needed.
        needed: u64,
    },
    /// The mempool is full.
    #[error("the mempool is full, try again later")]
    Full,
}

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// L2 address.
    pub address: String,
    /// Balance in credits after the last sealed batch.
    pub balance: u64,
    /// Nonce after the last sealed batch.
    pub nonce: u64,
    /// The nonce the next submitted tx must carry (counts the sender's txs in the mempool).
    pub next_nonce: u64,
    /// Merkle index of the account (`null` when it does not exist yet).
    pub merkle_index: Option<u64>,
}

/// What one seal produced.
pub struct Sealed {
    /// The batch as published (possibly tampered with).
    pub batch: Batch,
    /// The conflicting second batch of an equivocation.
    pub extra: Option<Batch>,
    /// Candidates the sealer refused.
    pub rejected: Vec<Rejected>,
    /// The batch fault committed, if one was asked for and could be.
    pub committed: Option<FaultClass>,
    /// Why an asked-for batch fault could not be committed in this batch.
    pub not_committed: Option<String>,
}

/// The sequencer state machine (mempool + sealer).
pub struct Sequencer {
    sealer: Sealer,
    profile: Profile,
    mempool: Vec<Tx>,
    next_nonce: HashMap<AccountKey, u64>,
    spending: HashMap<AccountKey, u64>,
    keys: Vec<Keypair>,
    addrs: Vec<String>,
    first_deposit: Option<Vec<u8>>,
}

impl Sequencer {
    /// A sequencer over `sealer`; `users` are the keys it may sign with when committing faults.
    pub fn new(sealer: Sealer, users: Vec<Keypair>) -> Self {
        let profile = sealer.chain().profile.clone();
        let addrs = users.iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, profile.network)).collect();
        Self {
            sealer,
            profile,
            mempool: Vec::new(),
            next_nonce: HashMap::new(),
            spending: HashMap::new(),
            keys: users,
            addrs,
            first_deposit: None,
        }
    }

    /// The sealer (chain, state, tip).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Txs waiting.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    fn stored(&self, key: &AccountKey) -> Option<(u64, u64, u64)> {
        let state = self.sealer.state();
        state
            .accounts()
            .iter()
            .position(|a| a.key == *key)
            .map(|i| (i as u64, state.accounts()[i].balance, state.accounts()[i].nonce))
    }

    /// The account at `address`, or an error message when the address is invalid.
    pub fn account(&self, address: &str) -> Result<AccountView, String> {
        let key = parse_l2_address(address, self.profile.network).map_err(|e| e.to_string())?;
        let (index, balance, nonce) = match self.stored(&key) {
            Some((i, b, n)) => (Some(i), b, n),
            None => (None, 0, 0),
        };
        let next_nonce = self.next_nonce.get(&key).copied().unwrap_or(nonce);
        Ok(AccountView { address: address.to_string(), balance, nonce, next_nonce, merkle_index: index })
    }

    /// Check and queue a signed user tx (annotations, if any, are ignored: the sealer sets them).
    /// Returns the tx's signing hash (hex) as its submission id.
    pub fn submit(&mut self, mut tx: Tx) -> Result<String, SubmitError> {
        let kind = TxKind::parse(&tx.tx_type).ok_or_else(|| SubmitError::Type(tx.tx_type.clone()))?;
        if kind == TxKind::Deposit {
            return Err(SubmitError::Type(tx.tx_type.clone()));
        }
        if self.mempool.len() >= MAX_MEMPOOL {
            return Err(SubmitError::Full);
        }
        tx.gas_fee = self.profile.gas_per_tx;
        tx.from_index = None;
        tx.to_index = None;
        // Static checks need the annotations' presence; the sealer sets their real values.
        let mut probe = tx.clone();
        probe.from_index = Some(0);
        probe.to_index = (kind == TxKind::Transfer).then_some(0);
        let checked = probe.check(&self.profile).map_err(|e| SubmitError::Malformed(e.to_string()))?;
        let from = checked.from_key.ok_or_else(|| SubmitError::Malformed("no sender".into()))?;
        let pk = kray_replayer::address::parse_xonly(&tx.pubkey)
            .map_err(|e| SubmitError::Signature(format!("pubkey: {e}")))?;
        if address_of_pubkey(&pk, self.profile.network) != tx.from {
            return Err(SubmitError::Signature(format!("the pubkey is not the key of {}", tx.from)));
        }
        if !verify(&pk, &tx.signing_hash(), &tx.signature) {
            return Err(SubmitError::Signature("the BIP-340 signature does not verify".into()));
        }
        let (_, balance, nonce) = self.stored(&from).ok_or_else(|| SubmitError::UnknownSender(tx.from.clone()))?;
        let expected = self.next_nonce.get(&from).copied().unwrap_or(nonce);
        if tx.nonce != expected {
            return Err(SubmitError::Nonce { expected, got: tx.nonce });
        }
        let needed =
            tx.amount.checked_add(tx.gas_fee).ok_or(SubmitError::Balance { available: balance, needed: u64::MAX })?;
        let spent = self.spending.get(&from).copied().unwrap_or(0);
        let available = balance.saturating_sub(spent);
        if available < needed {
            return Err(SubmitError::Balance { available, needed });
        }
        self.next_nonce.insert(from, expected + 1);
        self.spending.insert(from, spent + needed);
        let id = hex::encode(tx.signing_hash());
        self.mempool.push(tx);
        Ok(id)
    }

    /// Seal the next batch on L1 view `l1_height` from `deposits` (first) and the whole mempool,
    /// committing `fault` if asked and possible in this batch.
    pub fn seal(
        &mut self,
        deposits: Vec<Tx>,
        l1_height: u32,
        facts: &dyn L1Facts,
        fault: Option<FaultClass>,
    ) -> Sealed {
        let mut candidates = deposits;
        candidates.append(&mut self.mempool);
        self.next_nonce.clear();
        self.spending.clear();
        let mut not_committed = None;
        let mut semantic_fault = None;
        if let Some(class) = fault.filter(|c| semantics_for(Some(*c)) != kray_replayer::execute::Semantics::Reference) {
            // The bug needs a tx that exercises it: user 0 sends one after its queued txs.
            match (self.keys.first(), self.addrs.first()) {
                (Some(kp), Some(addr)) => {
                    let key = parse_l2_address(addr, self.profile.network).ok();
                    let base = key.and_then(|k| self.stored(&k)).map(|(_, _, n)| n);
                    match base {
                        Some(n) => {
                            let queued = candidates.iter().filter(|t| &t.from == addr).count() as u64;
                            let unit = self.profile.credits_per_rune_unit();
                            if let Some(tx) = exercising_tx(class, kp, addr, n + queued, unit) {
                                candidates.push(tx);
                                semantic_fault = Some(class);
                            }
                        }
                        None => not_committed = Some("user 0 has no L2 account yet".to_string()),
                    }
                }
                _ => not_committed = Some("no users".to_string()),
            }
        }
        let semantics = semantics_for(semantic_fault);
        let (mut batch, rejected) = self.sealer.seal(candidates, l1_height, facts, semantics);
        if self.first_deposit.is_none() {
            self.first_deposit =
                batch.txs.iter().find(|b| Tx::decode(b).map(|t| t.tx_type == "deposit").unwrap_or(false)).cloned();
        }
        let mut committed = semantic_fault;
        let mut extra = None;
        if let Some(class) = fault.filter(|_| semantic_fault.is_none() && not_committed.is_none()) {
            let before = batch.clone();
            match inject(class, &mut batch, &self.sealer, &self.keys, &self.addrs, self.first_deposit.as_deref()) {
                Ok(e) => {
                    extra = e;
                    committed = Some(class);
                    if class != FaultClass::Equivocation {
                        self.sealer.adopt_tip(&batch.signed.header);
                    }
                }
                Err(why) => {
                    batch = before;
                    not_committed = Some(why);
                }
            }
        }
        if committed.is_some_and(|c| semantics_for(Some(c)) != kray_replayer::execute::Semantics::Reference) {
            self.sealer.adopt_tip(&batch.signed.header);
        }
        Sealed { batch, extra, rejected, committed, not_committed }
    }
}

/// Where a withdrawal stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithdrawalState {
    /// Waiting for its batch's anchor and challenge window.
    Queued,
    /// Blocked by a challenge against its batch or an earlier one.
    Frozen,
    /// Paid out on L1.
    Paid,
}

/// A queued withdrawal and its payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalStatus {
    /// L2 tx id (hex).
    pub tx_id: String,
    /// Batch that executed it.
    pub batch_id: u64,
    /// L1 destination.
    pub l1_address: String,
    /// Credits withdrawn.
    pub amount: u64,
    /// State.
    pub status: WithdrawalState,
    /// L1 height from which it may be paid (anchor height + challenge window + 1), once anchored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payable_at: Option<u32>,
    /// The payout txid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_txid: Option<String>,
}

/// A batch's anchor on L1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorInfo {
    /// Anchor txid.
    pub txid: String,
    /// The 32 bytes anchored (hex).
    pub root: String,
    /// Height of the confirming block.
    pub height: Option<u32>,
}

/// An accepted challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// Challenged batch.
    pub batch_id: u64,
    /// Fault class proven.
    pub fault: String,
    /// Proof hash (hex).
    pub proof_hash: String,
}

/// What the publication API serves.
#[derive(Debug, Default)]
pub struct Published {
    /// Published batches by id.
    pub batches: BTreeMap<u64, Batch>,
    /// Conflicting second batches (equivocation), by id. The API serves the original and this copy on
    /// alternate requests, as an equivocating sequencer shows different batches to different mirrors.
    pub equivocations: BTreeMap<u64, Batch>,
    /// Requests served for equivocated ids (alternates the copy served).
    pub equivocation_reads: std::sync::atomic::AtomicU64,
    /// Batch ids whose data is withheld (fault).
    pub withheld: std::collections::BTreeSet<u64>,
    /// Anchors by batch id.
    pub anchors: BTreeMap<u64, AnchorInfo>,
    /// Withdrawals in queue order.
    pub withdrawals: Vec<WithdrawalStatus>,
    /// Withdrawals of this batch and later are frozen by a challenge.
    pub frozen_from: Option<u64>,
    /// Accepted challenges.
    pub challenges: Vec<ChallengeRecord>,
}

impl Published {
    /// Freeze withdrawals of batch `batch_id` and later.
    pub fn freeze_from(&mut self, batch_id: u64) {
        let from = self.frozen_from.map_or(batch_id, |f| f.min(batch_id));
        self.frozen_from = Some(from);
        for w in &mut self.withdrawals {
            if w.batch_id >= from && w.status == WithdrawalState::Queued {
                w.status = WithdrawalState::Frozen;
            }
        }
    }
}
