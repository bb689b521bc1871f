//! Replay: judge a batch against the state it claims to extend, returning the first fault in protocol
//! order, or the new state. Order of checks: producer signature; equivocation; chain link; tx count
//! and tx root; header gas total; then per tx in order: format, gas, pubkey↔address, signature,
//! state rules; finally the new state root (a mismatch is attributed to a known bug when one of the
//! diagnostic semantics reproduces the claimed root).

use crate::address::AccountKey;
use crate::batch::{Batch, SignedHeader};
use crate::execute::{execute, expected_gas, DepositCheck, ExecContext, ExecError, Semantics};
use crate::fault::{Fault, FaultClass};
use crate::genesis::Chain;
use crate::hash::Hash32;
use crate::l1facts::L1Facts;
use crate::profile::Profile;
use crate::signature::{verify, KeyCache};
use crate::state::{Changes, Overlay, ReadLedger, State};
use crate::tx::{tx_id, CheckedTx, Tx, TxFormatError};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use thiserror::Error;

/// A tx that passed every check that needs no state.
#[derive(Debug, Clone)]
pub struct PreparedTx {
    /// Decoded tx.
    pub tx: Tx,
    /// Parsed fields.
    pub checked: CheckedTx,
    /// Tx id.
    pub id: Hash32,
}

/// A stateless check failed: (class, reason).
pub type TxCheckFault = (FaultClass, String);

/// Decode, statically validate, check gas and authenticate every tx (signatures in parallel).
pub fn prepare_txs(txs: &[Vec<u8>], profile: &Profile, keys: &mut KeyCache) -> Vec<Result<PreparedTx, TxCheckFault>> {
    let decoded: Vec<Result<PreparedTx, TxCheckFault>> = txs
        .par_iter()
        .map(|bytes| {
            let tx = Tx::decode(bytes).map_err(|e| (FaultClass::MalformedTx, TxFormatError::from(e).to_string()))?;
            let checked = tx.check(profile).map_err(|e| (FaultClass::MalformedTx, e.to_string()))?;
            let want = expected_gas(checked.kind, profile);
            if tx.gas_fee != want {
                return Err((
                    FaultClass::WrongGas,
                    format!("declares gas {} but the profile's gas is {want}", tx.gas_fee),
                ));
            }
            Ok(PreparedTx { id: tx_id(bytes), tx, checked })
        })
        .collect();
    keys.resolve(
        decoded.iter().filter_map(|p| p.as_ref().ok()).filter(|p| p.checked.from_key.is_some()).map(|p| &p.tx.pubkey),
    );
    let keys = &*keys;
    decoded
        .into_par_iter()
        .map(|p| {
            let p = p?;
            let Some(from_key) = p.checked.from_key else {
                return Ok(p);
            };
            let Some((pk, derived)) = keys.get(&p.tx.pubkey) else {
                return Err((
                    FaultClass::InvalidSignature,
                    format!("pubkey {} is not a valid x-only key", hex::encode(p.tx.pubkey)),
                ));
            };
            if derived != from_key {
                return Err((
                    FaultClass::PubkeyAddressMismatch,
                    format!("from {} is not the Taproot address of pubkey {}", p.tx.from, hex::encode(p.tx.pubkey)),
                ));
            }
            if !verify(&pk, &p.tx.signing_hash(), &p.tx.signature) {
                return Err((
                    FaultClass::InvalidSignature,
                    format!("signature does not verify for {:?}", p.tx.signing_message()),
                ));
            }
            Ok(p)
        })
        .collect()
}

/// Execute prepared txs `0..n` in order over `ov`; on failure, the index and error.
pub fn execute_all<L: ReadLedger>(
    ov: &mut Overlay<'_, L>,
    ctx: &ExecContext<'_>,
    prepared: &[Result<PreparedTx, TxCheckFault>],
) -> Result<(), (usize, ExecError)> {
    for (i, p) in prepared.iter().enumerate() {
        let r = match p {
            Err((class, reason)) => Err(ExecError::Fault { class: *class, reason: reason.clone() }),
            Ok(p) => execute(ov, ctx, &p.tx, &p.checked, &p.id),
        };
        r.map_err(|e| (i, e))?;
    }
    Ok(())
}

/// The result of replaying one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The batch follows the protocol; the state advanced.
    Valid {
        /// Batch id.
        batch_id: u64,
        /// New state root (hex).
        state_root: String,
        /// Txs executed.
        tx_count: u32,
    },
    /// The first fault.
    Fault(Fault),
    /// Cannot be judged yet (L1 source behind the batch's L1 height or unreachable): not fraud.
    CannotVerify {
        /// Batch id.
        batch_id: u64,
        /// Why.
        reason: String,
    },
}

/// Replay could not judge the input at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// Not signed by a producer of this chain for this chain id: not a batch of this chain.
    #[error("batch {batch_id} is not a batch of this chain (chain id, producer key, header or data signature)")]
    NotSigned {
        /// Batch id.
        batch_id: u64,
    },
    /// Already replayed (identical header).
    #[error("batch {0} was already replayed")]
    Duplicate(u64),
    /// Follows a faulty batch, so there is no valid state to replay it on.
    #[error("batch {batch_id} follows faulty batch {faulty}; it cannot be replayed")]
    AfterFault {
        /// Batch id.
        batch_id: u64,
        /// The faulty batch.
        faulty: u64,
    },
    /// Earlier batches are missing (not a fault: their data has not arrived).
    #[error("batch {batch_id} cannot be replayed yet: batches {have}+1..{batch_id} are missing")]
    Gap {
        /// Batch id.
        batch_id: u64,
        /// Last replayed batch.
        have: u64,
    },
    /// Internal inconsistency (a bug): the full state lacked data.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where the chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Last valid batch id (0 = genesis).
    pub batch_id: u64,
    /// Its batch hash (the genesis hash at 0).
    pub batch_hash: Hash32,
    /// State root after it.
    pub state_root: Hash32,
}

/// Replays batches in order over a full state.
pub struct Replayer {
    chain: Chain,
    treasury: AccountKey,
    state: State,
    tip: Tip,
    headers: HashMap<u64, SignedHeader>,
    keys: KeyCache,
    faulty: Option<u64>,
}

impl Replayer {
    /// Start from a genesis state.
    pub fn new(chain: Chain, state: State) -> Result<Self, ReplayError> {
        let treasury = chain.profile.treasury_key().map_err(|e| ReplayError::Internal(e.to_string()))?;
        let tip = Tip { batch_id: 0, batch_hash: chain.chain_id(), state_root: state.state_root() };
        Ok(Self { chain, treasury, state, tip, headers: HashMap::new(), keys: KeyCache::default(), faulty: None })
    }

    /// The chain identity.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }
    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }
    /// The tip.
    pub fn tip(&self) -> Tip {
        self.tip
    }
    /// Build the fraud proof of a fault that [`Replayer::replay`] just returned for `batch`.
    pub fn build_proof(
        &self,
        batch: &Batch,
        fault: &Fault,
    ) -> Result<crate::proof::FraudProof, crate::proof::ProofBuildError> {
        let previous = self.headers.get(&self.tip.batch_id).filter(|_| self.tip.batch_id > 0);
        let other = self.headers.get(&batch.signed.header.batch_id).filter(|o| o.header != batch.signed.header);
        crate::proof::build_proof(&self.chain, &self.state, previous, other, batch, fault)
    }

    /// A header seen for `batch_id`.
    pub fn header(&self, batch_id: u64) -> Option<&SignedHeader> {
        self.headers.get(&batch_id)
    }

    fn ctx<'a>(&'a self, batch: &Batch, semantics: Semantics, deposits: DepositCheck<'a>) -> ExecContext<'a> {
        ExecContext {
            profile: &self.chain.profile,
            treasury: self.treasury,
            batch_id: batch.signed.header.batch_id,
            l1_height: batch.signed.header.l1_height,
            semantics,
            deposits,
        }
    }

    /// Judge the header alone against the tip: chain link, tx count and root, gas total.
    pub fn check_header(&self, batch: &Batch) -> Option<Fault> {
        let h = &batch.signed.header;
        let f = |class, reason: String| Some(Fault { class, batch_id: h.batch_id, tx_index: None, reason });
        if h.batch_id != self.tip.batch_id + 1 {
            return f(
                FaultClass::BrokenChain,
                format!("batch id {} does not follow {}", h.batch_id, self.tip.batch_id),
            );
        }
        if h.prev_batch_hash != self.tip.batch_hash {
            return f(
                FaultClass::BrokenChain,
                format!("prev_batch_hash is not the hash of batch {}", self.tip.batch_id),
            );
        }
        if h.prev_state_root != self.tip.state_root {
            return f(
                FaultClass::BrokenChain,
                format!("prev_state_root is not the state root after batch {}", self.tip.batch_id),
            );
        }
        if h.tx_count as usize != batch.txs.len() {
            return f(
                FaultClass::WrongTxRoot,
                format!("header declares {} txs, the batch has {}", h.tx_count, batch.txs.len()),
            );
        }
        if h.tx_root != batch.compute_tx_root() {
            return f(FaultClass::WrongTxRoot, "tx_root is not the Merkle root of the batch's txs".into());
        }
        let total = batch
            .txs
            .iter()
            .map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0))
            .try_fold(0u64, |acc, g| acc.checked_add(g));
        if total != Some(h.total_gas) {
            return f(
                FaultClass::WrongGas,
                format!("total_gas {} is not the sum of the txs' gas ({total:?})", h.total_gas),
            );
        }
        None
    }

    /// Replay one batch. On a fault the state is unchanged and later batches are refused.
    pub fn replay(&mut self, batch: &Batch, facts: &dyn L1Facts) -> Result<Verdict, ReplayError> {
        let h = &batch.signed.header;
        let id = h.batch_id;
        if h.chain_id != self.chain.chain_id()
            || !self.chain.is_producer(&h.producer)
            || !batch.signed.signature_valid()
            || !batch.data_signature_valid()
        {
            return Err(ReplayError::NotSigned { batch_id: id });
        }
        if let Some(seen) = self.headers.get(&id) {
            if seen.header == *h {
                return Err(ReplayError::Duplicate(id));
            }
            return Ok(Verdict::Fault(Fault {
                class: FaultClass::Equivocation,
                batch_id: id,
                tx_index: None,
                reason: format!("two different signed headers for batch {id}"),
            }));
        }
        if let Some(faulty) = self.faulty {
            return Err(ReplayError::AfterFault { batch_id: id, faulty });
        }
        if id > self.tip.batch_id + 1 && h.prev_batch_hash != self.tip.batch_hash {
            return Err(ReplayError::Gap { batch_id: id, have: self.tip.batch_id });
        }
        let verdict = self.judge(batch, facts)?;
        if !matches!(verdict, Verdict::CannotVerify { .. }) {
            self.headers.insert(id, batch.signed.clone());
        }
        if matches!(verdict, Verdict::Fault(_)) {
            self.faulty = Some(id);
        }
        Ok(verdict)
    }

    fn judge(&mut self, batch: &Batch, facts: &dyn L1Facts) -> Result<Verdict, ReplayError> {
        if let Some(f) = self.check_header(batch) {
            return Ok(Verdict::Fault(f));
        }
        let h = batch.signed.header.clone();
        let prepared = prepare_txs(&batch.txs, &self.chain.profile, &mut self.keys);
        let changes = match self.run(batch, &prepared, Semantics::Reference, DepositCheck::Facts(facts)) {
            Ok(c) => c,
            Err((i, ExecError::Fault { class, reason })) => {
                return Ok(Verdict::Fault(Fault { class, batch_id: h.batch_id, tx_index: Some(i as u32), reason }))
            }
            Err((_, ExecError::L1(reason))) => return Ok(Verdict::CannotVerify { batch_id: h.batch_id, reason }),
            Err((i, e)) => return Err(ReplayError::Internal(format!("tx {i}: {e}"))),
        };
        let undo = self.state.apply(changes);
        let root = self.state.state_root();
        if root == h.new_state_root {
            self.tip = Tip { batch_id: h.batch_id, batch_hash: h.hash(), state_root: root };
            return Ok(Verdict::Valid { batch_id: h.batch_id, state_root: hex::encode(root), tx_count: h.tx_count });
        }
        self.state.revert(undo);
        let (class, why) = match self.diagnose(batch, &prepared) {
            Some(class) => (class, format!("the claimed root is what the {class} bug produces")),
            None => (FaultClass::WrongStateRoot, "no known bug reproduces it".to_string()),
        };
        Ok(Verdict::Fault(Fault {
            class,
            batch_id: h.batch_id,
            tx_index: None,
            reason: format!(
                "new_state_root {} is not the executed root {}; {why}",
                hex::encode(h.new_state_root),
                hex::encode(root)
            ),
        }))
    }

    fn run(
        &self,
        batch: &Batch,
        prepared: &[Result<PreparedTx, TxCheckFault>],
        semantics: Semantics,
        deposits: DepositCheck<'_>,
    ) -> Result<Changes, (usize, ExecError)> {
        let ctx = self.ctx(batch, semantics, deposits);
        let mut ov = Overlay::new(&self.state);
        execute_all(&mut ov, &ctx, prepared)?;
        Ok(ov.into_changes())
    }

    /// Which known bug reproduces the header's claimed root, if any.
    fn diagnose(&mut self, batch: &Batch, prepared: &[Result<PreparedTx, TxCheckFault>]) -> Option<FaultClass> {
        for (sem, class) in Semantics::DIAGNOSES {
            let Ok(changes) = self.run(batch, prepared, sem, DepositCheck::Skip) else {
                continue;
            };
            let undo = self.state.apply(changes);
            let hit = self.state.state_root() == batch.signed.header.new_state_root;
            self.state.revert(undo);
            if hit {
                return Some(class);
            }
        }
        None
    }
}
