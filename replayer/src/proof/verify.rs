//! Verifying a fraud proof with nothing but the file (and, for a deposit's L1 side, an L1 source).

use super::witness::PartialState;
use super::{Evidence, FraudProof, TxAt, PROOF_FORMAT, PROOF_VERSION};
use crate::batch::SignedHeader;
use crate::execute::{DepositCheck, ExecContext, ExecError, Semantics};
use crate::fault::FaultClass;
use crate::genesis::Chain;
use crate::hash::Hash32;
use crate::l1facts::L1Facts;
use crate::merkle::{root_of, MultiProof};
use crate::replay::{execute_all, prepare_txs};
use crate::signature::KeyCache;
use crate::state::Overlay;
use crate::tx::{tx_leaf, Tx};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// What a valid proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proven {
    /// Fault class.
    pub fault: FaultClass,
    /// Faulty batch.
    pub batch_id: u64,
    /// Faulty tx, for tx-level faults.
    pub tx_index: Option<u32>,
    /// The producer that signed the batch.
    pub producer: String,
    /// The chain id the batch was signed under.
    pub chain_id: String,
    /// What the verifier found, in words.
    pub finding: String,
}

/// Why a proof does not prove its fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The proof is invalid or does not show the fault.
    #[error("proof rejected: {0}")]
    Rejected(String),
    /// The fault needs an L1 fact and no L1 source was given.
    #[error("the proof needs an L1 node for: {0}")]
    NeedsL1(String),
    /// The L1 source failed.
    #[error("L1 source failed: {0}")]
    L1(String),
}

fn reject<T>(m: impl Into<String>) -> Result<T, VerifyError> {
    Err(VerifyError::Rejected(m.into()))
}

fn check_signed(chain: &Chain, s: &SignedHeader, what: &str) -> Result<(), VerifyError> {
    if s.header.chain_id != chain.chain_id() {
        return reject(format!("{what} was not signed for this chain (chain_id differs)"));
    }
    if !chain.is_producer(&s.header.producer) {
        return reject(format!("{what} is signed by a key that is not a producer of the chain"));
    }
    if !s.signature_valid() {
        return reject(format!("{what}'s producer signature does not verify"));
    }
    Ok(())
}

fn check_inclusion(txs: &[TxAt], proof: &MultiProof, tx_count: u32, tx_root: &Hash32) -> Result<(), VerifyError> {
    if proof.leaf_count != u64::from(tx_count) {
        return reject(format!("tx proof is for {} txs, the header has {tx_count}", proof.leaf_count));
    }
    let leaves: BTreeMap<u64, Hash32> = txs.iter().map(|t| (u64::from(t.index), tx_leaf(&t.bytes))).collect();
    if leaves.len() != txs.len() {
        return reject("a tx position appears twice");
    }
    match proof.root(&leaves, u64::from(tx_count)) {
        Ok(r) if r == *tx_root => Ok(()),
        Ok(_) => reject("the txs are not in the batch (tx root mismatch)"),
        Err(e) => reject(format!("tx inclusion proof: {e}")),
    }
}

fn in_order(txs: &[TxAt]) -> Result<(), VerifyError> {
    if txs.iter().enumerate().any(|(i, t)| t.index as usize != i) {
        return reject("txs must be given from position 0 in order");
    }
    Ok(())
}

/// Verify a proof. `l1` is needed only for deposit facts.
pub fn verify_proof(p: &FraudProof, l1: Option<&dyn L1Facts>) -> Result<Proven, VerifyError> {
    if p.format != PROOF_FORMAT || p.version != PROOF_VERSION {
        return reject(format!(
            "format {:?} version {} is not {PROOF_FORMAT:?} version {PROOF_VERSION}",
            p.format, p.version
        ));
    }
    p.chain.profile.validate().map_err(|e| VerifyError::Rejected(e.to_string()))?;
    check_signed(&p.chain, &p.batch, "the batch header")?;
    let h = &p.batch.header;
    let class = p.fault;
    let done = |tx_index: Option<u32>, finding: String| {
        Ok(Proven {
            fault: class,
            batch_id: h.batch_id,
            tx_index,
            producer: hex::encode(h.producer),
            chain_id: hex::encode(h.chain_id),
            finding,
        })
    };
    match &p.evidence {
        Evidence::Equivocation { other } => {
            if class != FaultClass::Equivocation {
                return reject("equivocation evidence proves only equivocation");
            }
            check_signed(&p.chain, other, "the other header")?;
            if other.header.batch_id != h.batch_id || other.header == *h {
                return reject("the two headers are not different headers of one batch id");
            }
            done(None, format!("two different signed headers for batch {}", h.batch_id))
        }
        Evidence::Chain { previous } => {
            if class != FaultClass::BrokenChain {
                return reject("chain evidence proves only broken-chain");
            }
            let (pid, phash, proot) = match previous {
                Some(prev) => {
                    check_signed(&p.chain, prev, "the previous header")?;
                    (prev.header.batch_id, prev.header.hash(), prev.header.new_state_root)
                }
                None => (0, p.chain.chain_id(), p.chain.genesis_state_root),
            };
            let links = h.prev_batch_hash == phash;
            let broken =
                (links && (h.batch_id != pid + 1 || h.prev_state_root != proot)) || (h.batch_id == pid + 1 && !links);
            if !broken {
                return reject(format!("batch {} does extend batch {pid}", h.batch_id));
            }
            done(None, format!("batch {} does not extend batch {pid}", h.batch_id))
        }
        Evidence::AllTxs { txs, data_signature } => {
            in_order(txs)?;
            let bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.bytes.clone()).collect();
            let published =
                crate::batch::Batch { signed: p.batch.clone(), txs: bytes, data_signature: *data_signature };
            if !published.data_signature_valid() {
                return reject("the producer did not sign these txs as the batch's data");
            }
            let leaves: Vec<Hash32> = txs.iter().map(|t| tx_leaf(&t.bytes)).collect();
            let root_ok = txs.len() == h.tx_count as usize && root_of(&leaves) == h.tx_root;
            match class {
                FaultClass::WrongTxRoot if !root_ok => done(None, "tx root or count does not match the txs".into()),
                FaultClass::WrongGas if root_ok => {
                    let sum = txs
                        .iter()
                        .map(|t| Tx::decode(&t.bytes).map(|t| t.gas_fee).unwrap_or(0))
                        .try_fold(0u64, |a, g| a.checked_add(g));
                    if sum == Some(h.total_gas) {
                        return reject("total_gas equals the sum of the txs' gas");
                    }
                    done(None, format!("total_gas {} is not the txs' sum {sum:?}", h.total_gas))
                }
                _ => reject(format!("all-txs evidence does not show {class}")),
            }
        }
        Evidence::Tx { tx, tx_proof } => {
            check_inclusion(std::slice::from_ref(tx), tx_proof, h.tx_count, &h.tx_root)?;
            let mut keys = KeyCache::default();
            let r = prepare_txs(std::slice::from_ref(&tx.bytes), &p.chain.profile, &mut keys);
            match r.into_iter().next() {
                Some(Err((c, why))) if c == class => done(Some(tx.index), why),
                Some(Err((c, _))) => reject(format!("tx {} shows {c}, not {class}", tx.index)),
                _ => reject(format!("tx {} is valid on its own", tx.index)),
            }
        }
        Evidence::Execution { txs, tx_proof, witness } => {
            in_order(txs)?;
            if txs.is_empty() {
                return reject("execution evidence has no txs");
            }
            check_inclusion(txs, tx_proof, h.tx_count, &h.tx_root)?;
            let partial = PartialState::verify(witness.clone(), &h.prev_state_root)
                .map_err(|e| VerifyError::Rejected(e.to_string()))?;
            let bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.bytes.clone()).collect();
            let mut keys = KeyCache::default();
            let prepared = prepare_txs(&bytes, &p.chain.profile, &mut keys);
            let treasury = p.chain.profile.treasury_key().map_err(|e| VerifyError::Rejected(e.to_string()))?;
            // Deposits' L1 side is judged whenever it can change the outcome: for bad-deposit, and for
            // the state-root family over a batch holding deposits (else a bad deposit could be relabelled
            // as a wrong root). Other tx-level claims need no L1: an earlier deposit cannot make the
            // last tx's state fault disappear.
            let state_root_family = matches!(
                class,
                FaultClass::WrongStateRoot
                    | FaultClass::SelfTransferInflation
                    | FaultClass::WithdrawalNotBurned
                    | FaultClass::WrongGas
            );
            let has_deposit =
                prepared.iter().any(|p| matches!(p, Ok(p) if p.checked.kind == crate::tx::TxKind::Deposit));
            let deposits = if class == FaultClass::BadDeposit || (state_root_family && has_deposit) {
                match l1 {
                    Some(f) => DepositCheck::Facts(f),
                    None => {
                        return Err(VerifyError::NeedsL1(format!(
                            "the deposits of batch {} (L1 outpoints, amounts, confirmations)",
                            h.batch_id
                        )))
                    }
                }
            } else {
                DepositCheck::Skip
            };
            let run = |semantics| {
                let ctx = ExecContext {
                    profile: &p.chain.profile,
                    treasury,
                    batch_id: h.batch_id,
                    l1_height: h.l1_height,
                    semantics,
                    deposits,
                };
                let mut ov = Overlay::new(&partial);
                execute_all(&mut ov, &ctx, &prepared).map(|()| ov.into_changes())
            };
            let last = txs.len() - 1;
            match class {
                FaultClass::WrongStateRoot
                | FaultClass::SelfTransferInflation
                | FaultClass::WithdrawalNotBurned
                | FaultClass::WrongGas => {
                    if txs.len() != h.tx_count as usize {
                        return reject("a state-root proof must carry every tx of the batch");
                    }
                    let changes = run(Semantics::Reference).map_err(|(i, e)| exec_reject(i, e))?;
                    let root = partial.root_after(&changes).map_err(|e| VerifyError::Rejected(e.to_string()))?;
                    if root == h.new_state_root {
                        return reject("the batch's new_state_root is correct");
                    }
                    // The class must be the one the replayer names: the first known bug that reproduces
                    // the claimed root, or wrong-state-root when none does.
                    let mut named = FaultClass::WrongStateRoot;
                    for (sem, c) in Semantics::DIAGNOSES {
                        let Ok(ch) = run(sem) else { continue };
                        let vroot = partial.root_after(&ch).map_err(|e| VerifyError::Rejected(e.to_string()))?;
                        if vroot == h.new_state_root {
                            named = c;
                            break;
                        }
                    }
                    if named != class {
                        return reject(format!("the claimed root is wrong, but the fault is {named}, not {class}"));
                    }
                    done(None, format!("new_state_root should be {}", hex::encode(root)))
                }
                _ => match run(Semantics::Reference) {
                    Ok(_) => reject(format!("tx {last} executes without fault")),
                    Err((i, ExecError::Fault { class: c, reason })) if i == last && c == class => {
                        done(Some(i as u32), reason)
                    }
                    Err((i, ExecError::L1(m))) => Err(VerifyError::L1(format!("tx {i}: {m}"))),
                    Err((i, e)) => Err(exec_reject(i, e)),
                },
            }
        }
    }
}

fn exec_reject(i: usize, e: ExecError) -> VerifyError {
    match e {
        ExecError::L1(m) => VerifyError::L1(format!("tx {i}: {m}")),
        other => VerifyError::Rejected(format!("tx {i}: {other}")),
    }
}
