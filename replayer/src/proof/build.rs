//! Building a fraud proof from the guardian's full pre-state.

use super::witness::witness_of;
use super::{Evidence, FraudProof, TxAt, PROOF_FORMAT, PROOF_VERSION};
use crate::batch::{Batch, SignedHeader};
use crate::execute::{DepositCheck, ExecContext, Semantics};
use crate::fault::{Fault, FaultClass};
use crate::genesis::Chain;
use crate::merkle::IncrementalTree;
use crate::replay::{execute_all, prepare_txs};
use crate::signature::KeyCache;
use crate::state::{Overlay, State};
use std::collections::BTreeSet;
use thiserror::Error;

/// Why a proof could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofBuildError {
    /// The evidence needed was not supplied (e.g. the other header of an equivocation).
    #[error("cannot build a {0} proof: {1}")]
    Missing(FaultClass, String),
    /// The profile's Treasury is invalid.
    #[error("profile: {0}")]
    Profile(String),
}

fn txs_at(batch: &Batch, n: usize) -> Vec<TxAt> {
    batch.txs.iter().take(n).enumerate().map(|(i, b)| TxAt { index: i as u32, bytes: b.clone() }).collect()
}

/// Build the proof of `fault` in `batch`. `pre_state` is the full state the batch claims to extend;
/// `previous` the last valid header (none at genesis); `other` the conflicting header of an
/// equivocation.
pub fn build_proof(
    chain: &Chain,
    pre_state: &State,
    previous: Option<&SignedHeader>,
    other: Option<&SignedHeader>,
    batch: &Batch,
    fault: &Fault,
) -> Result<FraudProof, ProofBuildError> {
    let class = fault.class;
    let evidence = match class {
        FaultClass::Equivocation => Evidence::Equivocation {
            other: other
                .cloned()
                .ok_or_else(|| ProofBuildError::Missing(class, "the other header is needed".into()))?,
        },
        FaultClass::BrokenChain => Evidence::Chain { previous: previous.cloned() },
        FaultClass::WrongTxRoot => {
            Evidence::AllTxs { txs: txs_at(batch, batch.txs.len()), data_signature: batch.data_signature }
        }
        FaultClass::WrongGas if fault.tx_index.is_none() && is_header_gas_fault(batch) => {
            Evidence::AllTxs { txs: txs_at(batch, batch.txs.len()), data_signature: batch.data_signature }
        }
        _ => {
            let mut keys = KeyCache::default();
            let stateless = fault.tx_index.and_then(|k| {
                let bytes = batch.txs.get(k as usize)?;
                let r = prepare_txs(std::slice::from_ref(bytes), &chain.profile, &mut keys);
                matches!(r.first(), Some(Err((c, _))) if *c == class).then_some(k)
            });
            match stateless {
                Some(k) => {
                    let tree = IncrementalTree::from_leaves(batch.tx_leaves());
                    Evidence::Tx {
                        tx: TxAt { index: k, bytes: batch.txs[k as usize].clone() },
                        tx_proof: tree.prove(&[u64::from(k)]),
                    }
                }
                None => execution_evidence(chain, pre_state, batch, fault, &mut keys)?,
            }
        }
    };
    Ok(FraudProof {
        format: PROOF_FORMAT.into(),
        version: PROOF_VERSION,
        fault: class,
        chain: chain.clone(),
        batch: batch.signed.clone(),
        evidence,
    })
}

fn is_header_gas_fault(batch: &Batch) -> bool {
    let h = &batch.signed.header;
    let sum = batch
        .txs
        .iter()
        .map(|b| crate::tx::Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0))
        .try_fold(0u64, |a, g| a.checked_add(g));
    h.tx_count as usize == batch.txs.len() && h.tx_root == batch.compute_tx_root() && sum != Some(h.total_gas)
}

fn execution_evidence(
    chain: &Chain,
    pre_state: &State,
    batch: &Batch,
    fault: &Fault,
    keys: &mut KeyCache,
) -> Result<Evidence, ProofBuildError> {
    let n = match fault.tx_index {
        Some(k) => k as usize + 1,
        None => batch.txs.len(),
    };
    let prepared = prepare_txs(&batch.txs[..n.min(batch.txs.len())], &chain.profile, keys);
    let treasury = chain.profile.treasury_key().map_err(|e| ProofBuildError::Profile(e.to_string()))?;
    let mut accounts = BTreeSet::new();
    let mut deposits = BTreeSet::new();
    let sems: &[Semantics] = match fault.class {
        FaultClass::SelfTransferInflation => &[Semantics::Reference, Semantics::SelfTransferMints],
        FaultClass::WithdrawalNotBurned => &[Semantics::Reference, Semantics::WithdrawalNotDebited],
        FaultClass::WrongGas => &[Semantics::Reference, Semantics::TreasuryNotCredited],
        _ => &[Semantics::Reference],
    };
    for sem in sems {
        let ctx = ExecContext {
            profile: &chain.profile,
            treasury,
            batch_id: batch.signed.header.batch_id,
            l1_height: batch.signed.header.l1_height,
            semantics: *sem,
            deposits: DepositCheck::Skip,
        };
        let mut ov = Overlay::new(pre_state);
        // The fault at the last tx (if any) is expected; only the reads matter here.
        let _ = execute_all(&mut ov, &ctx, &prepared);
        accounts.extend(ov.touched_accounts.iter().copied());
        deposits.extend(ov.touched_deposits.iter().copied());
    }
    if let Some(ti) = crate::state::ReadLedger::find_account(pre_state, &treasury) {
        accounts.insert(ti);
    }
    let tree = IncrementalTree::from_leaves(batch.tx_leaves());
    let idx: Vec<u64> = (0..n as u64).collect();
    Ok(Evidence::Execution {
        txs: txs_at(batch, n),
        tx_proof: tree.prove(&idx),
        witness: witness_of(pre_state, &accounts, &deposits),
    })
}
