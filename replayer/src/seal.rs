//! Sealing: how a sequencer turns candidate txs into a signed batch under the protocol (annotating
//! gas and account indices, executing, computing roots, signing the header). The devnet's reference
//! sequencer and `gen-workload` use it; fault injection starts from its honest output.

use crate::address::{parse_l2_address, AccountKey};
use crate::batch::{Batch, BatchHeader, SignedHeader};
use crate::execute::{execute, expected_gas, DepositCheck, ExecContext, Semantics};
use crate::genesis::Chain;
use crate::l1facts::L1Facts;
use crate::merkle::root_of;
use crate::replay::{prepare_txs, Tip};
use crate::signature::KeyCache;
use crate::state::{Overlay, State};
use crate::tx::{tx_leaf, Tx, TxKind};
use bitcoin::key::Keypair;
use thiserror::Error;

/// Why a sealer cannot be set up.
#[derive(Debug, Error)]
pub enum SealError {
    /// The producer key is not a producer of the chain.
    #[error("the producer key is not a producer of this chain")]
    NotProducer,
    /// The profile's Treasury is invalid.
    #[error("profile treasury: {0}")]
    Treasury(String),
}

/// A candidate the sealer refused, with the reason (the sequencer's answer to the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position among the candidates.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// The honest sequencer state machine.
pub struct Sealer {
    chain: Chain,
    treasury: AccountKey,
    state: State,
    tip: Tip,
    producer: Keypair,
    keys: KeyCache,
}

impl Sealer {
    /// Start sealing on `state` (the genesis state, or the state after `tip`).
    pub fn new(chain: Chain, state: State, tip: Option<Tip>, producer: Keypair) -> Result<Self, SealError> {
        let (x, _) = producer.x_only_public_key();
        if !chain.is_producer(&x.serialize()) {
            return Err(SealError::NotProducer);
        }
        let treasury = chain.profile.treasury_key().map_err(|e| SealError::Treasury(e.to_string()))?;
        let tip = tip.unwrap_or(Tip { batch_id: 0, batch_hash: chain.chain_id(), state_root: state.state_root() });
        Ok(Self { chain, treasury, state, tip, producer, keys: KeyCache::default() })
    }

    /// The chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }
    /// Current state.
    pub fn state(&self) -> &State {
        &self.state
    }
    /// Current tip.
    pub fn tip(&self) -> Tip {
        self.tip
    }

    /// Fill in gas and account indices for a candidate, given the current overlay.
    fn annotate(&self, ov: &mut Overlay<'_, State>, tx: &mut Tx) -> Result<(), String> {
        let kind = TxKind::parse(&tx.tx_type).ok_or_else(|| format!("unsupported tx type {:?}", tx.tx_type))?;
        let net = self.chain.profile.network;
        tx.gas_fee = expected_gas(kind, &self.chain.profile);
        tx.from_index = None;
        tx.to_index = None;
        if kind != TxKind::Deposit {
            let from = parse_l2_address(&tx.from, net).map_err(|e| e.to_string())?;
            tx.from_index = Some(ov.find_account(&from).ok_or_else(|| format!("unknown sender {}", tx.from))?);
        }
        if kind != TxKind::Withdrawal {
            let to = parse_l2_address(&tx.to, net).map_err(|e| e.to_string())?;
            tx.to_index = Some(ov.find_account(&to).unwrap_or_else(|| ov.account_count()));
        }
        Ok(())
    }

    /// Seal the candidates that execute into a batch on L1 view `l1_height`; return it with the
    /// refused candidates. With `semantics` other than `Reference` the sealer reproduces a known bug
    /// (fault injection). An empty batch is still sealed.
    pub fn seal(
        &mut self,
        candidates: Vec<Tx>,
        l1_height: u32,
        facts: &dyn L1Facts,
        semantics: Semantics,
    ) -> (Batch, Vec<Rejected>) {
        let batch_id = self.tip.batch_id + 1;
        let ctx = ExecContext {
            profile: &self.chain.profile,
            treasury: self.treasury,
            batch_id,
            l1_height,
            semantics,
            deposits: DepositCheck::Facts(facts),
        };
        let mut ov = Overlay::new(&self.state);
        let mut txs = Vec::new();
        let mut rejected = Vec::new();
        let mut total_gas = 0u64;
        for (index, mut tx) in candidates.into_iter().enumerate() {
            let mut refuse = |reason: String| rejected.push(Rejected { index, reason });
            if let Err(r) = self.annotate(&mut ov, &mut tx) {
                refuse(r);
                continue;
            }
            let bytes = match tx.encode() {
                Ok(b) => b,
                Err(e) => {
                    refuse(e.to_string());
                    continue;
                }
            };
            let prepared = match prepare_txs(std::slice::from_ref(&bytes), &self.chain.profile, &mut self.keys).pop() {
                Some(Ok(p)) => p,
                Some(Err((class, why))) => {
                    refuse(format!("{class}: {why}"));
                    continue;
                }
                None => continue,
            };
            let cp = ov.checkpoint();
            if let Err(e) = execute(&mut ov, &ctx, &prepared.tx, &prepared.checked, &prepared.id) {
                ov.rollback(cp);
                refuse(e.to_string());
                continue;
            }
            total_gas = total_gas.saturating_add(tx.gas_fee);
            txs.push(bytes);
        }
        let changes = ov.into_changes();
        self.state.apply(changes);
        let leaves: Vec<_> = txs.iter().map(|t| tx_leaf(t)).collect();
        let header = BatchHeader {
            chain_id: self.chain.chain_id(),
            batch_id,
            prev_batch_hash: self.tip.batch_hash,
            prev_state_root: self.tip.state_root,
            new_state_root: self.state.state_root(),
            tx_root: root_of(&leaves),
            tx_count: txs.len() as u32,
            total_gas,
            l1_height,
            producer: self.producer.x_only_public_key().0.serialize(),
        };
        let signed = SignedHeader::sign(header, &self.producer);
        self.tip = Tip { batch_id, batch_hash: signed.header.hash(), state_root: signed.header.new_state_root };
        (Batch::new(signed, txs, &self.producer), rejected)
    }

    /// Re-sign a header after fault injection changed it (the producer signs whatever it publishes).
    pub fn resign(&self, header: BatchHeader) -> SignedHeader {
        SignedHeader::sign(header, &self.producer)
    }

    /// Re-sign a whole batch (header and data) after fault injection changed it.
    pub fn resign_batch(&self, batch: &mut Batch) {
        batch.signed = self.resign(batch.signed.header.clone());
        *batch = Batch::new(batch.signed.clone(), std::mem::take(&mut batch.txs), &self.producer);
    }

    /// After publishing a tampered copy of the last batch, continue the chain from it (the sequencer's
    /// own view), so later batches link to what was published.
    pub fn adopt_tip(&mut self, header: &BatchHeader) {
        self.tip = Tip { batch_id: header.batch_id, batch_hash: header.hash(), state_root: header.new_state_root };
    }
}
