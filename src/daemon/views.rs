//! User-facing views computed after each tick for the HTTP API and the web page: "is my withdrawal
//! safe?" (the evidence chain and a plain verdict) and account balance proofs against the latest
//! anchored state root.
//!
//! The daemon calls [`update`] once per tick; it copies the replayer's state only when a new batch was
//! replayed, so a tick without new batches costs nothing. Verdicts are computed per request by
//! [`withdrawal_report`] from the snapshot (anchors, findings, bridge), so they always reflect the
//! last tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kray_replayer::address::{format_l2_address, AccountKey};
use kray_replayer::batch::SignedHeader;
use kray_replayer::genesis::Chain;
use kray_replayer::hash::Hash32;
use kray_replayer::merkle::{IncrementalTree, MultiProof};
use kray_replayer::profile::L1Network;
use kray_replayer::state::{Account, WithdrawalEntry};
use kray_watcher::judge::AnchorState;
use serde::{Deserialize, Serialize};

use super::replay_stage::{Outcome, ReplayStage};
use super::Snapshot;

/// How many replayed states are kept for account proofs (the latest anchored one and the newer,
/// not yet anchored ones). Each holds a copy of the account tree.
const MAX_STATES: usize = 4;

/// Most batches after the first faulty one that [`scan_blocked`] reads.
pub const MAX_BLOCKED_BATCHES: u64 = 32;
/// Most blocked withdrawals kept.
pub const MAX_BLOCKED: usize = 10_000;

/// Expected seconds per L1 block, for "≈ time" estimates.
pub const BLOCK_SECONDS: i64 = 600;

/// Profile values the views need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The L1 network (address formats).
    pub network: L1Network,
    /// Blocks of the challenge window after the anchor.
    pub challenge_window_blocks: u64,
    /// Confirmations an anchor needs.
    pub confirmations: u64,
    /// Credits per whole KRAY (`10^decimals`).
    pub unit: u64,
    /// Most txs a batch may hold (for decoding stored batches).
    pub max_batch_txs: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { network: L1Network::Regtest, challenge_window_blocks: 0, confirmations: 1, unit: 1, max_batch_txs: 0 }
    }
}

/// The L2 state after one valid batch, kept for proofs and lookups.
#[derive(Debug, Clone)]
pub struct StateView {
    /// The batch after which this is the state.
    pub batch_id: u64,
    /// Its signed header (its `new_state_root` is this state's root).
    pub header: SignedHeader,
    /// Accounts in merkle order.
    pub accounts: Vec<Account>,
    /// Account index by key.
    pub index: HashMap<AccountKey, u64>,
    /// The account tree.
    pub account_tree: IncrementalTree,
    /// Withdrawal tree root and size.
    pub withdrawals_root: (Hash32, u64),
    /// Deposit tree root and size.
    pub deposits_root: (Hash32, u64),
    /// The withdrawal queue.
    pub withdrawals: Vec<WithdrawalEntry>,
}

/// Views served to users.
#[derive(Debug, Clone, Default)]
pub struct Views {
    /// Profile values.
    pub params: Params,
    /// L1 height of the last update.
    pub tip: u64,
    /// Recent states by batch id (the newest is the replayer's tip).
    pub states: BTreeMap<u64, Arc<StateView>>,
    /// Withdrawals of the first faulty batch and the batches after it (never executed by a valid
    /// chain), found by [`scan_blocked`]; at most [`MAX_BLOCKED`].
    pub blocked: Arc<Vec<WithdrawalEntry>>,
    /// The first faulty batch the blocked list was scanned from, and the batch copies scanned.
    blocked_scan: Option<(u64, BTreeSet<String>)>,
    /// The chain's identity (profile, producers, genesis root), copied once: account proofs carry it.
    pub chain: Option<Arc<Chain>>,
}

impl Views {
    /// The newest replayed state, if any batch was replayed.
    pub fn latest(&self) -> Option<&Arc<StateView>> {
        self.states.values().next_back()
    }
}

/// Recomputes the views from the replay stage and the snapshot at L1 height `tip`.
pub fn update(snap: &mut Snapshot, replay: &ReplayStage, tip: u64) {
    let replayer = replay.replayer();
    let profile = &replayer.chain().profile;
    let mut views = std::mem::take(&mut snap.views);
    views.params = Params {
        network: profile.network,
        challenge_window_blocks: u64::from(profile.challenge_window_blocks),
        confirmations: u64::from(profile.confirmations),
        unit: 10u64.checked_pow(u32::from(profile.decimals)).unwrap_or(1),
        max_batch_txs: profile.max_batch_txs,
    };
    views.tip = tip;
    if views.chain.is_none() {
        views.chain = Some(Arc::new(replayer.chain().clone()));
    }
    let t = replayer.tip();
    if t.batch_id > 0 && !views.states.contains_key(&t.batch_id) {
        if let Some(header) = replayer.header(t.batch_id) {
            let state = replayer.state();
            let (at, _, _) = state.trees();
            let roots = state.roots();
            let accounts = state.accounts().to_vec();
            let index = accounts.iter().enumerate().map(|(i, a)| (a.key, i as u64)).collect();
            views.states.insert(
                t.batch_id,
                Arc::new(StateView {
                    batch_id: t.batch_id,
                    header: header.clone(),
                    accounts,
                    index,
                    account_tree: at.clone(),
                    withdrawals_root: roots.withdrawals,
                    deposits_root: roots.deposits,
                    withdrawals: state.withdrawals().to_vec(),
                }),
            );
        }
    }
    // Keep the latest anchored state and everything newer, at most MAX_STATES.
    if let Some(anchored) = latest_anchored(snap, &views) {
        views.states = views.states.split_off(&anchored);
    }
    while views.states.len() > MAX_STATES {
        views.states.pop_first();
    }
    snap.views = views;
}

/// The newest kept state whose exact batch hash is anchored on L1.
fn latest_anchored(snap: &Snapshot, views: &Views) -> Option<u64> {
    views
        .states
        .values()
        .rev()
        .find(|s| anchor_of(snap, &hex::encode(s.header.header.hash())).is_some())
        .map(|s| s.batch_id)
}

/// The anchor of a batch hash: (outpoint, height, confirmations, confirmed).
fn anchor_of(snap: &Snapshot, batch_hash: &str) -> Option<(String, String, u32, u64, u64, bool)> {
    snap.anchors.batches.iter().filter(|a| a.batch_hash == batch_hash).find_map(|a| match &a.state {
        AnchorState::Anchored { outpoint, height, confirmations, confirmed } => {
            Some((outpoint.to_string(), outpoint.txid.clone(), outpoint.vout, *height, *confirmations, *confirmed))
        }
        AnchorState::Unanchored { .. } => None,
    })
}

/// The plain verdict on a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Paid on L1 by a matching payout.
    #[serde(rename = "SAFE")]
    Safe,
    /// Everything checks so far; waiting for something (named in the reason).
    #[serde(rename = "PENDING")]
    Pending,
    /// Something is wrong (named in the reason).
    #[serde(rename = "AT RISK")]
    AtRisk,
    /// The guardian is not synced: it cannot tell.
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

/// Status of one link of the evidence chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Holds.
    Ok,
    /// Not yet.
    Waiting,
    /// Broken.
    Bad,
    /// Cannot be told.
    Unknown,
}

/// One link of the evidence chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What is checked (`included`, `replayed`, `anchored`, `window`, `challenges`, `bridge`, `payout`).
    pub check: String,
    /// Its status.
    pub status: StepStatus,
    /// A plain sentence.
    pub detail: String,
}

/// The evidence chain and verdict of one withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalReport {
    /// The withdrawal tx id (hex).
    pub id: String,
    /// The batch that executed it.
    pub batch_id: u64,
    /// The L2 address that burned the credits.
    pub from: String,
    /// The L1 destination.
    pub l1_address: String,
    /// Credits withdrawn.
    pub amount: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why (what it waits for, what is wrong).
    pub reason: String,
    /// The L1 block at which the challenge window ends, once anchored.
    pub window_ends_at: Option<u64>,
    /// Estimated unix time of that block.
    pub window_ends_approx: Option<i64>,
    /// The chain of evidence, in order.
    pub evidence: Vec<Step>,
}

fn step(check: &str, status: StepStatus, detail: impl Into<String>) -> Step {
    Step { check: check.into(), status, detail: detail.into() }
}

/// Finding kinds that put every withdrawal at risk (bridge theft, key-path sweep, insolvency).
const BRIDGE_RISK_KINDS: &[&str] = &["key-path-spend", "unknown-payout", "bridge-insolvent"];

/// The evidence chain and verdict of withdrawal `w`, at the snapshot's last tick, with `now` (unix
/// seconds) for time estimates.
pub fn withdrawal_report(snap: &Snapshot, w: &WithdrawalEntry, now: i64) -> WithdrawalReport {
    let p = snap.views.params;
    let tip = snap.views.tip;
    let id = hex::encode(w.tx_id);
    let mut ev = Vec::new();
    let mut risks: Vec<String> = Vec::new();
    let mut waits: Vec<String> = Vec::new();
    let mut window_ends_at = None;

    ev.push(step("included", StepStatus::Ok, format!("included in batch {}", w.batch_id)));
    // Replayed valid?
    let copies = snap.batches.get(&w.batch_id).map(Vec::as_slice).unwrap_or(&[]);
    let valid = copies.iter().find(|c| matches!(c.outcome, Outcome::Valid { .. }));
    let faulty_copy = copies.iter().find(|c| matches!(c.outcome, Outcome::Fault { .. }));
    match (valid, faulty_copy) {
        (Some(_), None) => {
            ev.push(step("replayed", StepStatus::Ok, format!("batch {} replayed valid by this guardian", w.batch_id)))
        }
        (_, Some(f)) => {
            let why = format!("batch {} has a faulty copy ({})", w.batch_id, fault_class(&f.outcome));
            ev.push(step("replayed", StepStatus::Bad, why.clone()));
            risks.push(why);
        }
        (None, None) => match copies.iter().find_map(|c| match &c.outcome {
            Outcome::NotReplayed { reason } => Some(reason.clone()),
            _ => None,
        }) {
            Some(reason) => {
                let why = format!("batch {} was not executed by a valid chain: {reason}", w.batch_id);
                ev.push(step("replayed", StepStatus::Bad, why.clone()));
                risks.push(why);
            }
            None => {
                ev.push(step("replayed", StepStatus::Waiting, format!("batch {} not replayed yet", w.batch_id)));
                waits.push("replay".into());
            }
        },
    }
    // Anchored?
    let hash = valid.or(faulty_copy).or(copies.first()).map(|c| c.batch_hash.clone()).unwrap_or_default();
    let anchor = anchor_of(snap, &hash);
    match &anchor {
        Some((_, txid, vout, height, confirmations, confirmed)) => {
            let detail = format!(
                "batch anchored in L1 tx {txid} output {vout} at height {height} with {confirmations} confirmation(s)"
            );
            if *confirmed {
                ev.push(step("anchored", StepStatus::Ok, detail));
            } else {
                ev.push(step("anchored", StepStatus::Waiting, format!("{detail}; {} needed", p.confirmations)));
                waits.push(format!("{} anchor confirmations", p.confirmations));
            }
            let end = height.saturating_add(p.challenge_window_blocks);
            window_ends_at = Some(end);
            if tip >= end {
                ev.push(step("window", StepStatus::Ok, format!("challenge window ended at block {end}")));
            } else {
                let eta = now.saturating_add((end - tip) as i64 * BLOCK_SECONDS);
                ev.push(step(
                    "window",
                    StepStatus::Waiting,
                    format!("challenge window ends at block {end} (≈ {} blocks, unix time ≈ {eta})", end - tip),
                ));
                waits.push(format!("challenge window end at block {end}"));
            }
        }
        None => {
            let grace = snap.anchors.batches.iter().filter(|a| a.batch_hash == hash).find_map(|a| match a.state {
                AnchorState::Unanchored { grace_ends } => Some(grace_ends),
                AnchorState::Anchored { .. } => None,
            });
            match grace {
                Some(g) if tip > g => {
                    let why = format!("batch {} is not anchored on L1, past its anchor grace (block {g})", w.batch_id);
                    ev.push(step("anchored", StepStatus::Bad, why.clone()));
                    risks.push(why);
                }
                Some(g) => {
                    ev.push(step("anchored", StepStatus::Waiting, format!("not anchored yet (grace ends at {g})")));
                    waits.push("anchor".into());
                }
                None => {
                    ev.push(step("anchored", StepStatus::Waiting, "not anchored yet"));
                    waits.push("anchor".into());
                }
            }
            ev.push(step("window", StepStatus::Waiting, "the challenge window starts at the anchor"));
        }
    }
    // Challenges: faulty batches and open findings against this batch or an earlier one, and any
    // proven fault later in the chain (the federation that pays out signed a fraudulent batch).
    let faulty: Vec<(u64, String)> = snap
        .batches
        .iter()
        .filter_map(|(id, cs)| {
            cs.iter().find(|c| matches!(c.outcome, Outcome::Fault { .. })).map(|c| (*id, fault_class(&c.outcome)))
        })
        .collect();
    let mut challenge_notes = Vec::new();
    for (b, class) in &faulty {
        if *b <= w.batch_id {
            challenge_notes
                .push(format!("batch {b} is faulty ({class}): withdrawals of batch {b} and later are blocked"));
        } else {
            challenge_notes.push(format!(
                "later batch {b} is faulty ({class}): the federation that must pay this withdrawal signed a \
                 fraudulent batch"
            ));
        }
    }
    for f in &snap.findings {
        let Some(b) = f.batch_id else { continue };
        if b <= w.batch_id && f.kind == "abandoned-batch" {
            challenge_notes.push(format!("open finding {} against batch {b}", f.kind));
        }
    }
    if challenge_notes.is_empty() {
        ev.push(step("challenges", StepStatus::Ok, "no open challenge against this batch or any other"));
    } else {
        ev.push(step("challenges", StepStatus::Bad, challenge_notes.join("; ")));
        risks.extend(challenge_notes);
    }
    // Bridge.
    let paid = snap.bridge.as_ref().is_some_and(|b| b.paid.contains(&id));
    match &snap.bridge {
        Some(b) => {
            let bridge_findings: Vec<&str> = snap
                .findings
                .iter()
                .filter(|f| BRIDGE_RISK_KINDS.contains(&f.kind.as_str()))
                .map(|f| f.kind.as_str())
                .collect();
            let solvent = b.balance >= b.liabilities;
            let amounts = format!("holds {} units, owes {}", b.balance, b.liabilities);
            if !solvent || !bridge_findings.is_empty() {
                let mut why = Vec::new();
                if !solvent {
                    why.push(format!("bridge insolvent: {amounts}"));
                }
                if !bridge_findings.is_empty() {
                    why.push(format!("open bridge findings: {}", bridge_findings.join(", ")));
                }
                let why = why.join("; ");
                ev.push(step("bridge", StepStatus::Bad, why.clone()));
                risks.push(why);
            } else {
                ev.push(step("bridge", StepStatus::Ok, format!("bridge holds enough KRAY to pay: {amounts}")));
            }
        }
        None => ev.push(step("bridge", StepStatus::Unknown, "this guardian does not watch the bridge")),
    }
    if paid {
        ev.push(step("payout", StepStatus::Ok, "payout to the L1 destination seen on the L1 best chain"));
    } else {
        ev.push(step("payout", StepStatus::Waiting, "no payout seen on L1 yet"));
        waits.push("payout".into());
    }

    let (verdict, reason) = if !snap.synced {
        (Verdict::Unknown, "the guardian is not synced with L1 and the L2 yet".to_string())
    } else if paid {
        (Verdict::Safe, "paid on L1".to_string())
    } else if !risks.is_empty() {
        (Verdict::AtRisk, risks.join("; "))
    } else {
        (Verdict::Pending, format!("waiting for: {}", waits.join(", ")))
    };
    WithdrawalReport {
        id,
        batch_id: w.batch_id,
        from: format_l2_address(&w.from, p.network),
        l1_address: w.l1_address.clone(),
        amount: w.amount.to_string(),
        verdict,
        reason,
        window_ends_at,
        window_ends_approx: window_ends_at.map(|e| now.saturating_add(e.saturating_sub(tip) as i64 * BLOCK_SECONDS)),
        evidence: ev,
    }
}

fn fault_class(o: &Outcome) -> String {
    match o {
        Outcome::Fault { class, .. } => class.clone(),
        _ => String::new(),
    }
}

/// The withdrawals matching a query: a tx id (hex), an L2 address (the sender) or an L1 destination.
/// At most `limit`, newest first.
pub fn find_withdrawals<'a>(views: &'a Views, query: &str, limit: usize) -> Vec<&'a WithdrawalEntry> {
    let q = query.trim();
    let by_id = kray_replayer::hash::hex32(&q.to_ascii_lowercase());
    let key = kray_replayer::address::parse_l2_address(q, views.params.network).ok();
    let valid = views.latest().map(|s| s.withdrawals.as_slice()).unwrap_or(&[]);
    views
        .blocked
        .iter()
        .rev()
        .chain(valid.iter().rev())
        .filter(|w| by_id == Some(w.tx_id) || key == Some(w.from) || w.l1_address == q)
        .take(limit)
        .collect()
}

/// Finds the withdrawals of the first faulty batch and of the (at most [`MAX_BLOCKED_BATCHES`])
/// batches after it in the store: the replayer never executes them, yet their users must learn they
/// are AT RISK. Each stored copy is decoded once; the daemon calls this after [`update`].
pub async fn scan_blocked(snap: &mut Snapshot, first_fault: Option<u64>, store: &kray_watcher::store::Store) {
    let Some(first) = first_fault else {
        if snap.views.blocked_scan.is_some() {
            snap.views.blocked = Arc::default();
            snap.views.blocked_scan = None;
        }
        return;
    };
    let views = &mut snap.views;
    if views.blocked_scan.as_ref().is_none_or(|(f, _)| *f != first) {
        views.blocked = Arc::default();
        views.blocked_scan = Some((first, BTreeSet::new()));
    }
    let top = match store.max_batch_id().await {
        Ok(Some(m)) => m.min(first.saturating_add(MAX_BLOCKED_BATCHES - 1)),
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the store for blocked withdrawals");
            return;
        }
    };
    let network = views.params.network;
    let max_txs = views.params.max_batch_txs;
    let mut found = Vec::new();
    let mut scanned = Vec::new();
    for id in first..=top {
        let copies = match store.batch_copies(id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(batch_id = id, error = %e, "reading a batch for blocked withdrawals");
                return;
            }
        };
        for copy in copies {
            if views.blocked_scan.as_ref().is_some_and(|(_, seen)| seen.contains(&copy.content_hash)) {
                continue;
            }
            scanned.push(copy.content_hash.clone());
            let Ok(batch) = kray_replayer::batch::Batch::from_raw(&copy.raw, max_txs) else { continue };
            for bytes in &batch.txs {
                let Ok(tx) = kray_replayer::tx::Tx::decode(bytes) else { continue };
                if tx.tx_type != "withdrawal" {
                    continue;
                }
                let Ok(from) = kray_replayer::address::parse_l2_address(&tx.from, network) else { continue };
                found.push(WithdrawalEntry {
                    tx_id: kray_replayer::tx::tx_id(bytes),
                    batch_id: id,
                    from,
                    l1_address: tx.to.clone(),
                    amount: tx.amount,
                });
            }
        }
    }
    if let Some((_, seen)) = views.blocked_scan.as_mut() {
        seen.extend(scanned);
    }
    if !found.is_empty() {
        let mut all: Vec<WithdrawalEntry> = views.blocked.as_ref().clone();
        for w in found {
            if all.len() >= MAX_BLOCKED {
                break;
            }
            if !all.iter().any(|x| x.tx_id == w.tx_id && x.batch_id == w.batch_id) {
                all.push(w);
            }
        }
        views.blocked = Arc::new(all);
    }
}

/// The format tag of an account proof file.
pub const ACCOUNT_PROOF_FORMAT: &str = "kray-account-proof";
/// The account proof format version written and read: 2 carries the chain identity (version 1 did not,
/// so its signer could not be checked against the chain's producers).
pub const ACCOUNT_PROOF_VERSION: u32 = 2;

/// Where the proven state root is anchored on L1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRef {
    /// The anchored root: the batch hash (hex).
    pub batch_hash: String,
    /// The anchor tx.
    pub txid: String,
    /// The anchor output.
    pub vout: u32,
    /// Its height.
    pub height: u64,
    /// Confirmations when the proof was made.
    pub confirmations: u64,
}

/// A tree's root and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRoot {
    /// Root (hex).
    #[serde(with = "kray_replayer::hash::hexser")]
    pub root: Hash32,
    /// Leaf count.
    pub count: u64,
}

/// A Merkle proof of one account's balance against a signed, anchored state root, checkable offline
/// with `kray-guardian verify-account FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountProof {
    /// Always `kray-account-proof`.
    pub format: String,
    /// Format version ([`ACCOUNT_PROOF_VERSION`]).
    pub version: u32,
    /// The chain's identity: profile, producers and genesis state root. Its chain id must be the one in
    /// the signed header, and the header's signer one of its producers.
    pub chain: Chain,
    /// The network of the address.
    pub network: L1Network,
    /// The account's L2 address.
    pub address: String,
    /// The account leaf.
    pub account: Account,
    /// Its merkle index.
    pub index: u64,
    /// Account tree size.
    pub account_count: u64,
    /// Inclusion proof of the account leaf in the account tree.
    pub account_proof: MultiProof,
    /// The withdrawal tree's root and size.
    pub withdrawals: TreeRoot,
    /// The deposit tree's root and size.
    pub deposits: TreeRoot,
    /// The signed header whose `new_state_root` the proof reaches.
    pub batch: SignedHeader,
    /// Where that batch hash is anchored on L1 (absent when the newest state is not anchored yet).
    pub anchor: Option<AnchorRef>,
}

/// Why no account proof can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountProofError {
    /// Not an L2 address of this network.
    BadAddress(String),
    /// No batch replayed yet.
    NoState,
    /// The account does not exist in the state (address, batch id).
    NoAccount(String, u64),
}

impl std::fmt::Display for AccountProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountProofError::BadAddress(a) => write!(f, "not an L2 address of this network: {a}"),
            AccountProofError::NoState => write!(f, "no batch replayed yet"),
            AccountProofError::NoAccount(a, b) => write!(f, "no account {a} in the state after batch {b}"),
        }
    }
}

/// The proof of `address`'s account against the latest anchored state (the newest replayed state
/// when none of the kept ones is anchored yet; `anchor` is then absent).
pub fn account_proof(snap: &Snapshot, address: &str) -> Result<AccountProof, AccountProofError> {
    let views = &snap.views;
    let key = kray_replayer::address::parse_l2_address(address.trim(), views.params.network)
        .map_err(|_| AccountProofError::BadAddress(address.chars().take(100).collect()))?;
    let anchored = latest_anchored(snap, views).and_then(|id| views.states.get(&id));
    let state = anchored.or_else(|| views.latest()).ok_or(AccountProofError::NoState)?;
    let chain = views.chain.as_deref().ok_or(AccountProofError::NoState)?;
    let index = *state
        .index
        .get(&key)
        .ok_or_else(|| AccountProofError::NoAccount(format_l2_address(&key, views.params.network), state.batch_id))?;
    let account = state.accounts[index as usize];
    let batch_hash = hex::encode(state.header.header.hash());
    let anchor = anchor_of(snap, &batch_hash).map(|(_, txid, vout, height, confirmations, _)| AnchorRef {
        batch_hash: batch_hash.clone(),
        txid,
        vout,
        height,
        confirmations,
    });
    Ok(AccountProof {
        format: ACCOUNT_PROOF_FORMAT.into(),
        version: ACCOUNT_PROOF_VERSION,
        chain: chain.clone(),
        network: views.params.network,
        address: format_l2_address(&key, views.params.network),
        account,
        index,
        account_count: state.account_tree.len(),
        account_proof: state.account_tree.prove(&[index]),
        withdrawals: TreeRoot { root: state.withdrawals_root.0, count: state.withdrawals_root.1 },
        deposits: TreeRoot { root: state.deposits_root.0, count: state.deposits_root.1 },
        batch: state.header.clone(),
        anchor,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::replay_stage::Replayed;
    use kray_replayer::batch::BatchHeader;
    use kray_replayer::state::State;
    use kray_watcher::judge::{AnchorReport, BatchAnchor, BridgeReport};
    use kray_watcher::store::Outpoint;

    /// A keypair from a test secret.
    pub(crate) fn keypair(k: u8) -> bitcoin::key::Keypair {
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[k; 32]).expect("key");
        bitcoin::key::Keypair::from_secret_key(kray_replayer::address::secp(), &sk)
    }

    /// The account key of test secret `k`.
    pub(crate) fn user_key(k: u8) -> AccountKey {
        kray_replayer::address::account_key_of(&keypair(k).x_only_public_key().0)
    }

    /// The chain of [`snapshot`]: the regtest profile, test key 1 as the only producer.
    pub(crate) fn test_chain() -> Chain {
        Chain {
            profile: kray_replayer::Profile::load("regtest").expect("regtest profile"),
            producers: vec![hex::encode(keypair(1).x_only_public_key().0.serialize())],
            genesis_state_root: [2; 32],
        }
    }

    /// A snapshot after batch 1 (valid, holding one withdrawal of user 5), anchored at height 100
    /// with a 20-block window, at L1 height `tip`.
    pub(crate) fn snapshot(tip: u64) -> (Snapshot, WithdrawalEntry) {
        let accounts = (5..9).map(|k| Account { key: user_key(k), balance: 1000 * u64::from(k), nonce: 1 }).collect();
        let state = State::from_accounts(accounts).expect("state");
        let w = WithdrawalEntry {
            tx_id: [7; 32],
            batch_id: 1,
            from: user_key(5),
            l1_address: "bcrt1qdestination".into(),
            amount: 2000,
        };
        let roots = state.roots();
        let chain = test_chain();
        let header = BatchHeader {
            chain_id: chain.chain_id(),
            batch_id: 1,
            prev_batch_hash: chain.chain_id(),
            prev_state_root: [2; 32],
            new_state_root: roots.state_root(),
            tx_root: [3; 32],
            tx_count: 1,
            total_gas: 1000,
            l1_height: 99,
            producer: keypair(1).x_only_public_key().0.serialize(),
        };
        let signed = SignedHeader::sign(header, &keypair(1));
        let hash = hex::encode(signed.header.hash());
        let (at, _, _) = state.trees();
        let view = StateView {
            batch_id: 1,
            header: signed,
            accounts: state.accounts().to_vec(),
            index: state.accounts().iter().enumerate().map(|(i, a)| (a.key, i as u64)).collect(),
            account_tree: at.clone(),
            withdrawals_root: roots.withdrawals,
            deposits_root: roots.deposits,
            withdrawals: vec![w.clone()],
        };
        let mut snap = Snapshot { synced: true, ..Snapshot::default() };
        snap.views = Views {
            params: Params {
                network: L1Network::Regtest,
                challenge_window_blocks: 20,
                confirmations: 3,
                unit: 1000,
                max_batch_txs: 100,
            },
            tip,
            states: [(1, Arc::new(view))].into(),
            chain: Some(Arc::new(chain)),
            ..Views::default()
        };
        Arc::make_mut(&mut snap.batches).insert(
            1,
            vec![Replayed {
                batch_id: 1,
                batch_hash: hash.clone(),
                content_hash: String::new(),
                l1_height: 99,
                tx_count: 1,
                header: serde_json::Value::Null,
                signature: String::new(),
                outcome: Outcome::Valid { state_root: String::new(), tx_count: 1 },
            }],
        );
        snap.anchors = Arc::new(AnchorReport {
            batches: vec![BatchAnchor {
                batch_id: 1,
                batch_hash: hash,
                state: AnchorState::Anchored {
                    outpoint: Outpoint { txid: "aa".repeat(32), vout: 0 },
                    height: 100,
                    confirmations: tip.saturating_sub(99),
                    confirmed: tip >= 102,
                },
                anchor_count: 1,
            }],
            findings: vec![],
        });
        snap.bridge = Some(BridgeReport { findings: vec![], balance: 30_000, liabilities: 29_000, paid: vec![] });
        (snap, w)
    }

    fn fault(snap: &mut Snapshot, batch_id: u64) {
        Arc::make_mut(&mut snap.batches).insert(
            batch_id,
            vec![Replayed {
                batch_id,
                batch_hash: "bb".repeat(32),
                content_hash: String::new(),
                l1_height: 110,
                tx_count: 1,
                header: serde_json::Value::Null,
                signature: String::new(),
                outcome: Outcome::Fault {
                    class: "wrong-gas".into(),
                    reason: "x".into(),
                    proof: String::new(),
                    proof_hash: String::new(),
                },
            }],
        );
    }

    #[test]
    fn pending_until_the_window_ends_then_pending_payout_then_safe() {
        let (snap, w) = snapshot(105);
        let r = withdrawal_report(&snap, &w, 1_000);
        assert_eq!(r.verdict, Verdict::Pending, "{r:#?}");
        assert!(r.reason.contains("challenge window end at block 120"), "{}", r.reason);
        assert_eq!(r.window_ends_at, Some(120));
        assert_eq!(r.window_ends_approx, Some(1_000 + 15 * BLOCK_SECONDS));
        let (snap, w) = snapshot(125);
        let r = withdrawal_report(&snap, &w, 1_000);
        assert_eq!(r.verdict, Verdict::Pending);
        assert_eq!(r.reason, "waiting for: payout");
        let (mut snap, w) = snapshot(125);
        if let Some(b) = snap.bridge.as_mut() {
            b.paid.push(hex::encode([7u8; 32]));
        }
        let r = withdrawal_report(&snap, &w, 1_000);
        assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
    }

    #[test]
    fn unconfirmed_anchor_is_pending_and_says_so() {
        let (snap, w) = snapshot(100);
        let r = withdrawal_report(&snap, &w, 0);
        assert_eq!(r.verdict, Verdict::Pending);
        assert!(r.reason.contains("3 anchor confirmations"), "{}", r.reason);
    }

    #[test]
    fn faults_insolvency_and_theft_put_it_at_risk() {
        let (mut snap, w) = snapshot(105);
        fault(&mut snap, 2);
        let r = withdrawal_report(&snap, &w, 0);
        assert_eq!(r.verdict, Verdict::AtRisk);
        assert!(r.reason.contains("later batch 2 is faulty"), "{}", r.reason);
        let (mut snap, w) = snapshot(105);
        fault(&mut snap, 1);
        assert_eq!(withdrawal_report(&snap, &w, 0).verdict, Verdict::AtRisk);
        let (mut snap, w) = snapshot(105);
        if let Some(b) = snap.bridge.as_mut() {
            b.liabilities = 40_000;
        }
        let r = withdrawal_report(&snap, &w, 0);
        assert_eq!(r.verdict, Verdict::AtRisk);
        assert!(r.reason.contains("bridge insolvent"), "{}", r.reason);
        let (mut snap, w) = snapshot(105);
        snap.findings.push(kray_watcher::store::Finding {
            id: "key-path-spend//x:0".into(),
            kind: "key-path-spend".into(),
            severity: kray_watcher::store::Severity::Critical,
            batch_id: None,
            outpoint: None,
            first_seen: 0,
            resolved_at: None,
            deadline_height: None,
            evidence: serde_json::Value::Null,
            height: None,
            block_hash: None,
        });
        assert_eq!(withdrawal_report(&snap, &w, 0).verdict, Verdict::AtRisk);
    }

    #[test]
    fn not_synced_is_unknown_and_unanchored_past_grace_is_at_risk() {
        let (mut snap, w) = snapshot(105);
        snap.synced = false;
        assert_eq!(withdrawal_report(&snap, &w, 0).verdict, Verdict::Unknown);
        let (mut snap, w) = snapshot(105);
        Arc::make_mut(&mut snap.anchors).batches[0].state = AnchorState::Unanchored { grace_ends: 102 };
        let r = withdrawal_report(&snap, &w, 0);
        assert_eq!(r.verdict, Verdict::AtRisk);
        assert!(r.reason.contains("past its anchor grace"), "{}", r.reason);
        Arc::make_mut(&mut snap.anchors).batches[0].state = AnchorState::Unanchored { grace_ends: 110 };
        let r = withdrawal_report(&snap, &w, 0);
        assert_eq!(r.verdict, Verdict::Pending);
        assert!(r.reason.contains("anchor"), "{}", r.reason);
    }

    #[test]
    fn a_withdrawal_of_a_faulty_batch_or_one_after_it_is_at_risk_and_found() {
        let (mut snap, _) = snapshot(105);
        fault(&mut snap, 2);
        Arc::make_mut(&mut snap.batches).insert(
            3,
            vec![Replayed {
                batch_id: 3,
                batch_hash: "cc".repeat(32),
                content_hash: String::new(),
                l1_height: 111,
                tx_count: 1,
                header: serde_json::Value::Null,
                signature: String::new(),
                outcome: Outcome::NotReplayed { reason: "after the fault of batch 2".into() },
            }],
        );
        for batch_id in [2, 3] {
            let w = WithdrawalEntry {
                tx_id: [batch_id as u8; 32],
                batch_id,
                from: user_key(6),
                l1_address: "bcrt1qelsewhere".into(),
                amount: 5,
            };
            snap.views.blocked = Arc::new(vec![w.clone()]);
            assert_eq!(find_withdrawals(&snap.views, &hex::encode([batch_id as u8; 32]), 5).len(), 1);
            let r = withdrawal_report(&snap, &w, 0);
            assert_eq!(r.verdict, Verdict::AtRisk, "{r:#?}");
            assert!(r.reason.contains("batch 2 is faulty"), "{}", r.reason);
            assert_eq!(r.evidence[1].status, StepStatus::Bad, "{r:#?}");
        }
    }

    #[test]
    fn withdrawals_are_found_by_id_sender_and_destination() {
        let (snap, _) = snapshot(105);
        let v = &snap.views;
        assert_eq!(find_withdrawals(v, &hex::encode([7u8; 32]), 5).len(), 1);
        assert_eq!(find_withdrawals(v, &hex::encode([7u8; 32]).to_uppercase(), 5).len(), 1);
        assert_eq!(find_withdrawals(v, &format_l2_address(&user_key(5), L1Network::Regtest), 5).len(), 1);
        assert_eq!(find_withdrawals(v, "bcrt1qdestination", 5).len(), 1);
        assert!(find_withdrawals(v, &format_l2_address(&user_key(6), L1Network::Regtest), 5).is_empty());
        assert!(find_withdrawals(v, &hex::encode([8u8; 32]), 5).is_empty());
    }

    #[test]
    fn account_proofs_name_the_anchor_and_reject_unknown_accounts() {
        let (snap, _) = snapshot(105);
        let addr = format_l2_address(&user_key(6), L1Network::Regtest);
        let p = account_proof(&snap, &addr).expect("proof");
        assert_eq!(p.account.balance, 6000);
        assert_eq!(p.chain.chain_id(), p.batch.header.chain_id, "the proof carries the chain it is signed for");
        assert_eq!(p.index, 1);
        assert_eq!(p.anchor.as_ref().map(|a| a.height), Some(100));
        assert_eq!(p.anchor.as_ref().map(|a| a.batch_hash.clone()), Some(hex::encode(p.batch.header.hash())));
        let stranger = format_l2_address(&user_key(40), L1Network::Regtest);
        assert!(matches!(account_proof(&snap, &stranger), Err(AccountProofError::NoAccount(..))));
        assert!(matches!(account_proof(&snap, "not-an-address"), Err(AccountProofError::BadAddress(_))));
    }
}
