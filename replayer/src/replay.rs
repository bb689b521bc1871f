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
use crate::tx::{tx_id, AddressCache, CheckedTx, Tx, TxFormatError};
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
    let decoded: Vec<Result<PreparedTx, TxCheckFault>> =
        txs.par_iter().map(|bytes| check_static(bytes, profile, None).result).collect();
    resolve_keys(keys, &decoded);
    let keys = &*keys;
    decoded
        .into_par_iter()
        .map(|p| {
            let p = p?;
            authenticate(keys, &p)?;
            Ok(p)
        })
        .collect()
}

/// What [`check_static`] found about one tx.
struct StaticCheck {
    /// The tx's declared gas, 0 when it does not decode (what the header's gas total sums).
    gas: u64,
    /// The tx passed and one of its L2 addresses was not in the address cache.
    fresh: bool,
    /// The tx, or its stateless fault.
    result: Result<PreparedTx, TxCheckFault>,
}

/// Decode, statically validate and check the gas of one tx: every stateless check except the
/// pubkey↔address binding and the signature. L2 addresses are looked up in `addresses` when given.
fn check_static(bytes: &[u8], profile: &Profile, addresses: Option<&AddressCache>) -> StaticCheck {
    let tx = match Tx::decode(bytes) {
        Ok(tx) => tx,
        Err(e) => {
            let result = Err((FaultClass::MalformedTx, TxFormatError::from(e).to_string()));
            return StaticCheck { gas: 0, fresh: false, result };
        }
    };
    let gas = tx.gas_fee;
    let checked = match addresses {
        None => tx.check(profile).map(|c| (c, false)),
        Some(cache) => tx.check_cached(profile, cache),
    };
    let (checked, fresh) = match checked {
        Ok(c) => c,
        Err(e) => return StaticCheck { gas, fresh: false, result: Err((FaultClass::MalformedTx, e.to_string())) },
    };
    let want = expected_gas(checked.kind, profile);
    if tx.gas_fee != want {
        let reason = format!("declares gas {} but the profile's gas is {want}", tx.gas_fee);
        return StaticCheck { gas, fresh: false, result: Err((FaultClass::WrongGas, reason)) };
    }
    StaticCheck { gas, fresh, result: Ok(PreparedTx { id: tx_id(bytes), tx, checked }) }
}

/// Parse (and tweak) the pubkeys of the statically valid signed txs that `keys` lacks.
fn resolve_keys(keys: &mut KeyCache, prepared: &[Result<PreparedTx, TxCheckFault>]) {
    keys.resolve(
        prepared.iter().filter_map(|p| p.as_ref().ok()).filter(|p| p.checked.from_key.is_some()).map(|p| &p.tx.pubkey),
    );
}

/// The pubkey↔address binding and the signature of a statically valid tx (pubkeys resolved in `keys`).
fn authenticate(keys: &KeyCache, p: &PreparedTx) -> Result<(), TxCheckFault> {
    let Some(from_key) = p.checked.from_key else {
        return Ok(());
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
    Ok(())
}

/// The stateless checks of a batch's txs without authentication, with what the header checks need.
struct StaticBatch {
    /// Per tx: the tx, or its stateless fault (format, gas).
    prepared: Vec<Result<PreparedTx, TxCheckFault>>,
    /// Sum of the declared gas (0 for txs that do not decode); `None` on overflow.
    total_gas: Option<u64>,
}

/// [`check_static`] on every tx in parallel, then (serially) resolve the signing pubkeys into `keys`
/// and remember the new valid L2 addresses in `addresses`.
fn check_batch_static(
    txs: &[Vec<u8>],
    profile: &Profile,
    keys: &mut KeyCache,
    addresses: &mut AddressCache,
) -> StaticBatch {
    let (meta, prepared): (Vec<(u64, bool)>, Vec<_>) = txs
        .par_iter()
        .map(|bytes| {
            let c = check_static(bytes, profile, Some(addresses));
            ((c.gas, c.fresh), c.result)
        })
        .unzip();
    let total_gas = meta.iter().try_fold(0u64, |acc, (g, _)| acc.checked_add(*g));
    for ((_, fresh), p) in meta.iter().zip(&prepared) {
        if let (true, Ok(p)) = (fresh, p) {
            addresses.learn(profile.network, &p.tx, &p.checked);
        }
    }
    resolve_keys(keys, &prepared);
    StaticBatch { prepared, total_gas }
}

/// The first (lowest index) tx of `prepared` whose pubkey↔address binding or signature fails;
/// signatures are verified in parallel.
fn first_auth_fault(keys: &KeyCache, prepared: &[Result<PreparedTx, TxCheckFault>]) -> Option<(usize, TxCheckFault)> {
    prepared.par_iter().enumerate().find_map_first(|(i, p)| authenticate(keys, p.as_ref().ok()?).err().map(|e| (i, e)))
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

/// The header's gas total fault, given the sum of the txs' declared gas (`None` on overflow).
fn gas_total_fault(batch: &Batch, total: Option<u64>) -> Option<Fault> {
    let h = &batch.signed.header;
    (total != Some(h.total_gas)).then(|| Fault {
        class: FaultClass::WrongGas,
        batch_id: h.batch_id,
        tx_index: None,
        reason: format!("total_gas {} is not the sum of the txs' gas ({total:?})", h.total_gas),
    })
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
    /// Already replayed, but its header was pruned ([`Replayer::prune_headers`], or a resume from a
    /// checkpoint that kept only recent headers): a copy cannot be told from an equivocation here,
    /// so it is not judged (the store's evidence of that batch is).
    #[error("batch {batch_id} is older than the oldest header kept ({oldest}); it is not judged again")]
    Pruned {
        /// Batch id.
        batch_id: u64,
        /// The oldest batch id whose header is kept.
        oldest: u64,
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
    /// `chain.chain_id()`, computed once.
    pub(crate) chain_id: Hash32,
    /// The producer keys `chain.is_producer` accepts, decoded once.
    producers: Vec<[u8; 32]>,
    treasury: AccountKey,
    pub(crate) state: State,
    pub(crate) tip: Tip,
    /// The headers of the valid batches `headers_from..=tip` and of the faulty batch, if any.
    pub(crate) headers: HashMap<u64, SignedHeader>,
    /// The oldest valid batch whose header is kept (1 until [`Replayer::prune_headers`] drops some).
    pub(crate) headers_from: u64,
    keys: KeyCache,
    addresses: AddressCache,
    pub(crate) faulty: Option<u64>,
}

impl Replayer {
    /// Start from a genesis state.
    pub fn new(chain: Chain, state: State) -> Result<Self, ReplayError> {
        let treasury = chain.profile.treasury_key().map_err(|e| ReplayError::Internal(e.to_string()))?;
        let chain_id = chain.chain_id();
        // Exactly the keys `Chain::is_producer` accepts: lowercase hex of 32 bytes.
        let producers =
            chain.producers.iter().filter_map(|p| crate::hash::hex32(p).filter(|k| hex::encode(k) == *p)).collect();
        let tip = Tip { batch_id: 0, batch_hash: chain_id, state_root: state.state_root() };
        Ok(Self {
            chain,
            chain_id,
            producers,
            treasury,
            state,
            tip,
            headers: HashMap::new(),
            headers_from: 1,
            keys: KeyCache::default(),
            addresses: AddressCache::default(),
            faulty: None,
        })
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

    /// The faulty batch that stopped the chain, if any.
    pub fn faulty(&self) -> Option<u64> {
        self.faulty
    }

    /// The oldest valid batch whose header would be kept by keeping the most recent `keep` (at least
    /// the tip's): `max(1, tip + 1 - keep)`, never below what is already pruned.
    pub(crate) fn keep_from(&self, keep: usize) -> u64 {
        let keep = u64::try_from(keep.max(1)).unwrap_or(u64::MAX);
        (self.tip.batch_id.saturating_add(1).saturating_sub(keep)).max(1).max(self.headers_from)
    }

    /// Drop the headers of the valid batches older than the most recent `keep` (the tip's header is
    /// always kept, as is the faulty batch's), so memory does not grow with history. What is lost: a
    /// batch id below the kept ones is no longer judged here; it gets [`ReplayError::Pruned`] where it
    /// got `Duplicate` (same header) or an `equivocation` fault (different header). An equivocation
    /// of such an old batch is judged only from the store's evidence.
    pub fn prune_headers(&mut self, keep: usize) {
        let from = self.keep_from(keep);
        let faulty = self.faulty;
        self.headers.retain(|id, _| *id >= from || Some(*id) == faulty);
        self.headers_from = from;
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
        let total = batch
            .txs
            .iter()
            .map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0))
            .try_fold(0u64, |acc, g| acc.checked_add(g));
        self.check_header_links(batch).or_else(|| gas_total_fault(batch, total))
    }

    /// [`Replayer::check_header`] up to the gas total: chain link, tx count and tx root.
    fn check_header_links(&self, batch: &Batch) -> Option<Fault> {
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
        None
    }

    /// Replay one batch. On a fault the state is unchanged and later batches are refused.
    pub fn replay(&mut self, batch: &Batch, facts: &dyn L1Facts) -> Result<Verdict, ReplayError> {
        let h = &batch.signed.header;
        let id = h.batch_id;
        // The producer's header signature is checked first (one verification); the data signature,
        // which hashes every tx, is checked in `judge` beside the tx checks. Any failure is
        // `NotSigned`, which takes precedence over every other outcome.
        if h.chain_id != self.chain_id || !self.producers.contains(&h.producer) || !batch.signed.signature_valid() {
            return Err(ReplayError::NotSigned { batch_id: id });
        }
        if let Some(early) = self.before_judging(batch) {
            if !batch.data_signature_valid() {
                return Err(ReplayError::NotSigned { batch_id: id });
            }
            return early;
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

    /// What a signed batch gets without being judged: duplicate, equivocation, after a fault, gap.
    fn before_judging(&self, batch: &Batch) -> Option<Result<Verdict, ReplayError>> {
        let h = &batch.signed.header;
        let id = h.batch_id;
        if let Some(seen) = self.headers.get(&id) {
            if seen.header == *h {
                return Some(Err(ReplayError::Duplicate(id)));
            }
            return Some(Ok(Verdict::Fault(Fault {
                class: FaultClass::Equivocation,
                batch_id: id,
                tx_index: None,
                reason: format!("two different signed headers for batch {id}"),
            })));
        }
        if (1..self.headers_from).contains(&id) {
            return Some(Err(ReplayError::Pruned { batch_id: id, oldest: self.headers_from }));
        }
        if let Some(faulty) = self.faulty {
            return Some(Err(ReplayError::AfterFault { batch_id: id, faulty }));
        }
        if id > self.tip.batch_id + 1 && h.prev_batch_hash != self.tip.batch_hash {
            return Some(Err(ReplayError::Gap { batch_id: id, have: self.tip.batch_id }));
        }
        None
    }

    /// Judge a batch whose header signature is valid. The outcome is the one of the plain sequence:
    /// data signature (`NotSigned`); header checks (chain link, tx count, tx root, gas total); then
    /// per tx in order: format, gas, pubkey↔address, signature, state rules; then the state root.
    /// Two pairs of stages overlap, and their results are merged in that order:
    /// - the data signature and the header checks run beside the txs' static checks (decode, format,
    ///   gas), whose decoded gas gives the header's gas total;
    /// - execution runs beside the signature checks. Execution needs no signature, so the first
    ///   fault is the one with the lowest tx index among both, and at the same index the signature
    ///   check's (it comes first in protocol order). When a signature fails, the executed changes are
    ///   dropped (execution may have read L1 facts for txs after it; reads have no effect on state).
    fn judge(&mut self, batch: &Batch, facts: &dyn L1Facts) -> Result<Verdict, ReplayError> {
        let h = &batch.signed.header;
        let mut keys = std::mem::take(&mut self.keys);
        let mut addresses = std::mem::take(&mut self.addresses);
        let this = &*self;
        let ((data_signed, header_fault), stat) = rayon::join(
            || (batch.data_signature_valid(), this.check_header_links(batch)),
            || check_batch_static(&batch.txs, &this.chain.profile, &mut keys, &mut addresses),
        );
        self.keys = keys;
        self.addresses = addresses;
        if !data_signed {
            return Err(ReplayError::NotSigned { batch_id: h.batch_id });
        }
        if let Some(f) = header_fault.or_else(|| gas_total_fault(batch, stat.total_gas)) {
            return Ok(Verdict::Fault(f));
        }
        let prepared = stat.prepared;
        let this = &*self;
        let (auth, exec) = rayon::join(
            || first_auth_fault(&this.keys, &prepared),
            || this.run(batch, &prepared, Semantics::Reference, DepositCheck::Facts(facts)),
        );
        let tx_fault = |i: usize, class, reason| {
            Ok(Verdict::Fault(Fault { class, batch_id: h.batch_id, tx_index: Some(i as u32), reason }))
        };
        if let Some((i, (class, reason))) = auth {
            // Execution stopped before `i` only on an earlier fault (or L1 error), which comes first.
            if !matches!(exec, Err((j, _)) if j < i) {
                return tx_fault(i, class, reason);
            }
        }
        let changes = match exec {
            Ok(c) => c,
            Err((i, ExecError::Fault { class, reason })) => return tx_fault(i, class, reason),
            Err((_, ExecError::L1(reason))) => return Ok(Verdict::CannotVerify { batch_id: h.batch_id, reason }),
            Err((i, e)) => return Err(ReplayError::Internal(format!("tx {i}: {e}"))),
        };
        // No signature failed, so `prepared` is what `prepare_txs` returns.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{address_of_pubkey, secp};
    use crate::genesis::{Genesis, GenesisAccount};
    use crate::hash::sha256_parts;
    use crate::l1facts::{FileFacts, L1FactsFile};
    use crate::merkle::root_of;
    use crate::seal::Sealer;
    use crate::tx::tx_leaf;
    use bitcoin::key::Keypair;
    use bitcoin::secp256k1::SecretKey;

    const USERS: usize = 6;
    const TXS: usize = 10;

    fn keypair(label: &str, i: u64) -> Keypair {
        let h = sha256_parts(&[b"kray-replay-test", label.as_bytes(), &i.to_be_bytes()]);
        Keypair::from_secret_key(secp(), &SecretKey::from_slice(&h).unwrap())
    }

    struct Fixture {
        chain: Chain,
        state: State,
        sealer: Sealer,
        batches: Vec<Batch>,
        facts: FileFacts,
    }

    /// A genesis of `USERS` users and two honest batches of `TXS` transfers.
    fn fixture() -> Fixture {
        let profile = Profile::load("regtest").unwrap();
        let users: Vec<Keypair> = (0..USERS as u64).map(|i| keypair("user", i)).collect();
        let addrs: Vec<String> =
            users.iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, profile.network)).collect();
        let producer = keypair("producer", 0);
        let mut accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
        accounts.extend(addrs.iter().map(|a| GenesisAccount { address: a.clone(), balance: 1_000_000_000 }));
        let genesis =
            Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
        let (chain, state) = genesis.build(&profile).unwrap();
        let facts = FileFacts::from(L1FactsFile { tip_height: 1_000, deposits: vec![] });
        let mut sealer = Sealer::new(chain.clone(), state.clone(), None, producer).unwrap();
        let mut nonces = [0u64; USERS];
        let mut batches = Vec::new();
        for b in 0..2 {
            let candidates = (0..TXS)
                .map(|i| {
                    let from = (i + b) % USERS;
                    let to = (i * 7 + 1 + from) % USERS;
                    let to = if to == from { (to + 1) % USERS } else { to };
                    let mut tx = Tx::unsigned(
                        "transfer",
                        addrs[from].clone(),
                        addrs[to].clone(),
                        1_000 + i as u64,
                        nonces[from],
                    );
                    nonces[from] += 1;
                    tx.sign(&users[from]);
                    tx
                })
                .collect();
            let (batch, rejected) = sealer.seal(candidates, 100, &facts, Semantics::Reference);
            assert!(rejected.is_empty(), "{rejected:?}");
            batches.push(batch);
        }
        Fixture { chain, state, sealer, batches, facts }
    }

    /// The plain sequential judgement (the replayer before stages overlapped), for a batch that
    /// extends the replayer's tip: every check in protocol order, one after the other. `None` when
    /// the state root does not match (the diagnosis that follows is shared code).
    fn reference(r: &Replayer, batch: &Batch, facts: &dyn L1Facts) -> Option<Result<Verdict, ReplayError>> {
        let h = &batch.signed.header;
        if h.chain_id != r.chain.chain_id()
            || !r.chain.is_producer(&h.producer)
            || !batch.signed.signature_valid()
            || !batch.data_signature_valid()
        {
            return Some(Err(ReplayError::NotSigned { batch_id: h.batch_id }));
        }
        if let Some(f) = r.check_header(batch) {
            return Some(Ok(Verdict::Fault(f)));
        }
        let prepared = prepare_txs(&batch.txs, &r.chain.profile, &mut KeyCache::default());
        let ctx = r.ctx(batch, Semantics::Reference, DepositCheck::Facts(facts));
        let mut ov = Overlay::new(&r.state);
        match execute_all(&mut ov, &ctx, &prepared) {
            Ok(()) => {}
            Err((i, ExecError::Fault { class, reason })) => {
                return Some(Ok(Verdict::Fault(Fault {
                    class,
                    batch_id: h.batch_id,
                    tx_index: Some(i as u32),
                    reason,
                })))
            }
            Err((_, ExecError::L1(reason))) => return Some(Ok(Verdict::CannotVerify { batch_id: h.batch_id, reason })),
            Err((i, e)) => return Some(Err(ReplayError::Internal(format!("tx {i}: {e}")))),
        }
        let mut state = r.state.clone();
        state.apply(ov.into_changes());
        let root = state.state_root();
        (root == h.new_state_root)
            .then(|| Ok(Verdict::Valid { batch_id: h.batch_id, state_root: hex::encode(root), tx_count: h.tx_count }))
    }

    /// How one tx is tampered with.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Tamper {
        /// Signature no longer verifies (stateless).
        Signature,
        /// Pubkey of another user (stateless).
        Pubkey,
        /// Wrong declared gas (stateless, before authentication).
        Gas,
        /// Bytes that do not decode (stateless).
        Garbage,
        /// `from_index` names another account (state rule; the signature still verifies).
        FromIndex,
        /// `to_index` beyond the accounts (state rule).
        ToIndex,
    }

    fn tamper(bytes: &mut Vec<u8>, how: Tamper) {
        if how == Tamper::Garbage {
            *bytes = vec![1, 2, 3];
            return;
        }
        let mut tx = Tx::decode(bytes).unwrap();
        match how {
            Tamper::Signature => tx.signature[5] ^= 1,
            Tamper::Pubkey => tx.pubkey = keypair("user", USERS as u64 + 1).x_only_public_key().0.serialize(),
            Tamper::Gas => tx.gas_fee += 1,
            Tamper::FromIndex => tx.from_index = Some(tx.from_index.unwrap() % USERS as u64 + 1),
            Tamper::ToIndex => tx.to_index = Some(10_000),
            Tamper::Garbage => unreachable!(),
        }
        *bytes = tx.encode().unwrap();
    }

    /// Re-seal a tampered batch: tx count, tx root and gas total recomputed, header and data re-signed.
    fn reseal(sealer: &Sealer, batch: &mut Batch) {
        let h = &mut batch.signed.header;
        h.tx_count = batch.txs.len() as u32;
        h.tx_root = root_of(&batch.txs.iter().map(|t| tx_leaf(t)).collect::<Vec<_>>());
        h.total_gas = batch.txs.iter().map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0)).sum();
        sealer.resign_batch(batch);
    }

    /// Replay batch 1, then `second` with `r` and with the reference, and compare.
    fn compare(f: &Fixture, second: &Batch, what: &str) -> Result<Verdict, ReplayError> {
        let mut r = Replayer::new(f.chain.clone(), f.state.clone()).unwrap();
        assert!(matches!(r.replay(&f.batches[0], &f.facts), Ok(Verdict::Valid { .. })));
        let want = reference(&r, second, &f.facts);
        let got = r.replay(second, &f.facts);
        match want {
            Some(want) => assert_eq!(got, want, "{what}"),
            None => assert!(
                matches!(&got, Ok(Verdict::Fault(Fault { tx_index: None, .. }))),
                "{what}: the root does not match, got {got:?}"
            ),
        }
        got
    }

    #[test]
    fn first_fault_is_the_sequential_one() {
        let f = fixture();
        assert!(matches!(compare(&f, &f.batches[1], "honest"), Ok(Verdict::Valid { .. })));
        let stateless = [Tamper::Signature, Tamper::Pubkey, Tamper::Gas, Tamper::Garbage];
        let stateful = [Tamper::FromIndex, Tamper::ToIndex];
        let spots = [0, 1, 4, TXS - 1];
        // One tamper, then pairs of a stateless and a stateful one at every combination of spots
        // (the same tx included, where the stateless fault must win).
        for how in stateless.iter().chain(&stateful) {
            for &i in &spots {
                let mut b = f.batches[1].clone();
                tamper(&mut b.txs[i], *how);
                reseal(&f.sealer, &mut b);
                let got = compare(&f, &b, &format!("{how:?} at {i}"));
                assert!(matches!(got, Ok(Verdict::Fault(Fault { tx_index: Some(t), .. })) if t == i as u32));
            }
        }
        for s in stateless {
            for x in stateful {
                for &i in &spots {
                    for &j in &spots {
                        let mut b = f.batches[1].clone();
                        tamper(&mut b.txs[j], x);
                        if s != Tamper::Garbage || i != j {
                            tamper(&mut b.txs[i], s);
                        }
                        reseal(&f.sealer, &mut b);
                        let got = compare(&f, &b, &format!("{s:?} at {i}, {x:?} at {j}"));
                        let Ok(Verdict::Fault(Fault { tx_index: Some(t), class, .. })) = got else {
                            panic!("{s:?} at {i}, {x:?} at {j}: {got:?}")
                        };
                        assert_eq!(t as usize, i.min(j));
                        if i <= j {
                            let want = match s {
                                Tamper::Signature => FaultClass::InvalidSignature,
                                Tamper::Pubkey => FaultClass::PubkeyAddressMismatch,
                                Tamper::Gas => FaultClass::WrongGas,
                                _ => FaultClass::MalformedTx,
                            };
                            assert_eq!(class, want, "{s:?} at {i}, {x:?} at {j}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn header_faults_and_signatures_come_first() {
        let f = fixture();
        let mut bad_tx = f.batches[1].clone();
        tamper(&mut bad_tx.txs[3], Tamper::Signature);
        reseal(&f.sealer, &mut bad_tx);
        // Wrong gas total with a bad tx: the header fault.
        let mut b = bad_tx.clone();
        b.signed.header.total_gas += 1;
        f.sealer.resign_batch(&mut b);
        assert!(matches!(
            compare(&f, &b, "gas total"),
            Ok(Verdict::Fault(Fault { class: FaultClass::WrongGas, tx_index: None, .. }))
        ));
        // Gas total overflow.
        let mut b = bad_tx.clone();
        let mut tx = Tx::decode(&b.txs[0]).unwrap();
        tx.gas_fee = u64::MAX;
        b.txs[0] = tx.encode().unwrap();
        reseal_overflowing(&f.sealer, &mut b);
        let got = compare(&f, &b, "gas overflow");
        assert!(matches!(got, Ok(Verdict::Fault(Fault { class: FaultClass::WrongGas, tx_index: None, .. }))));
        // Wrong tx root, wrong count, broken links.
        for k in 0..4 {
            let mut b = bad_tx.clone();
            match k {
                0 => b.signed.header.tx_root[0] ^= 1,
                1 => b.signed.header.tx_count += 1,
                2 => b.signed.header.prev_state_root[0] ^= 1,
                _ => b.signed.header.prev_batch_hash[0] ^= 1,
            }
            f.sealer.resign_batch(&mut b);
            let got = compare(&f, &b, &format!("header {k}"));
            assert!(matches!(got, Ok(Verdict::Fault(Fault { tx_index: None, .. })) | Err(ReplayError::Gap { .. })));
        }
        // Data signature broken on a batch with header and tx faults: not signed.
        let mut b = bad_tx.clone();
        b.signed.header.total_gas += 1;
        f.sealer.resign_batch(&mut b);
        b.data_signature[0] ^= 1;
        assert!(matches!(compare(&f, &b, "data signature"), Err(ReplayError::NotSigned { .. })));
        // Header signature broken.
        let mut b = bad_tx.clone();
        b.signed.signature[0] ^= 1;
        assert!(matches!(compare(&f, &b, "header signature"), Err(ReplayError::NotSigned { .. })));
    }

    /// `reseal` with a wrapping gas total (the sum overflows; the header cannot state it).
    fn reseal_overflowing(sealer: &Sealer, batch: &mut Batch) {
        reseal_with(sealer, batch, |txs| {
            txs.iter().map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0)).fold(0u64, |a, g| a.wrapping_add(g))
        });
    }

    fn reseal_with(sealer: &Sealer, batch: &mut Batch, gas: impl Fn(&[Vec<u8>]) -> u64) {
        let h = &mut batch.signed.header;
        h.tx_count = batch.txs.len() as u32;
        h.tx_root = root_of(&batch.txs.iter().map(|t| tx_leaf(t)).collect::<Vec<_>>());
        h.total_gas = gas(&batch.txs);
        sealer.resign_batch(batch);
    }

    #[test]
    fn later_batches_and_refusals_are_unchanged() {
        let f = fixture();
        let mut r = Replayer::new(f.chain.clone(), f.state.clone()).unwrap();
        // Gap: batch 2 before batch 1, also with a broken data signature (not signed comes first).
        assert!(matches!(r.replay(&f.batches[1], &f.facts), Err(ReplayError::Gap { .. })));
        let mut b = f.batches[1].clone();
        b.data_signature[0] ^= 1;
        assert!(matches!(r.replay(&b, &f.facts), Err(ReplayError::NotSigned { .. })));
        assert!(matches!(r.replay(&f.batches[0], &f.facts), Ok(Verdict::Valid { .. })));
        assert!(matches!(r.replay(&f.batches[0], &f.facts), Err(ReplayError::Duplicate(1))));
        let mut b = f.batches[0].clone();
        b.data_signature[0] ^= 1;
        assert!(matches!(r.replay(&b, &f.facts), Err(ReplayError::NotSigned { .. })));
        assert!(matches!(r.replay(&f.batches[1], &f.facts), Ok(Verdict::Valid { .. })));
        assert_eq!(r.tip().batch_id, 2);
        assert!(r.addresses.len() >= USERS && r.addresses.len() <= USERS + 1);
    }
}
