//! Checkpoints: a replayer's state at a tip as bytes, so a guardian restarts from its last
//! checkpoint instead of replaying from genesis.
//!
//! A checkpoint holds the tip, the faulty batch (if any), the whole state (accounts, withdrawal queue,
//! credited deposits, each in merkle order) and the signed headers of the most recent valid batches
//! (the tip's always) plus the faulty batch's. It holds no Merkle nodes: [`Replayer::resume`] rebuilds
//! the trees from the leaves and refuses the checkpoint unless the rebuilt state root is the tip's.
//!
//! Encoding (version 1), integers big-endian:
//!
//! ```text
//! "KRAYCKPT" | u8 version | chain_id 32
//! tip: u64 batch_id | batch_hash 32 | state_root 32
//! faulty: u8 0 | u8 1 u64 batch_id
//! u64 n | n × account     (key 32 | balance u64 | nonce u64)
//! u64 n | n × withdrawal  (tx_id 32 | batch_id u64 | from 32 | u32 len | l1_address | amount u64)
//! u64 n | n × deposit     (txid 32 | vout u32 | to 32 | amount u64 | batch_id u64)
//! u32 n | n × header      (217 canonical header bytes | signature 64), ascending batch id
//! sha256 of every byte above (32)
//! ```
//!
//! Decoding never trusts a length: every count is checked against the bytes left before anything
//! is allocated, so hostile input allocates at most a small multiple of its own size.

use crate::address::AccountKey;
use crate::batch::{BatchHeader, SignedHeader, HEADER_LEN};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::genesis::Chain;
use crate::hash::{sha256, Hash32};
use crate::replay::{ReplayError, Replayer, Tip};
use crate::state::{Account, BuildError, DepositEntry, State, WithdrawalEntry};
use crate::tx::OutPointRef;
use thiserror::Error;

/// The first bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"KRAYCKPT";
/// The encoding version this crate writes and reads.
pub const VERSION: u8 = 1;

/// Bytes before the body: magic, version, chain id.
const PREFIX_LEN: usize = 8 + 1 + 32;
/// Bytes of the trailing checksum.
const CHECKSUM_LEN: usize = 32;
/// Encoded size of one account.
const ACCOUNT_LEN: usize = 32 + 8 + 8;
/// Smallest encoded size of one withdrawal (an empty address).
const WITHDRAWAL_MIN_LEN: usize = 32 + 8 + 32 + 4 + 8;
/// Encoded size of one deposit.
const DEPOSIT_LEN: usize = 32 + 4 + 32 + 8 + 8;
/// Encoded size of one signed header.
const SIGNED_HEADER_LEN: usize = HEADER_LEN + 64;

/// Why a checkpoint cannot be decoded or resumed from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// Too short to hold even the prefix and the checksum (a torn write).
    #[error("checkpoint is {len} bytes, shorter than the {min} of an empty one")]
    Truncated {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Does not start with the magic bytes: not a checkpoint.
    #[error("not a kray checkpoint (bad magic bytes)")]
    Magic,
    /// A version this build cannot read.
    #[error("checkpoint version {0} is not supported (this build reads version {VERSION})")]
    Version(u8),
    /// The checksum does not match: the bytes were torn or corrupted.
    #[error("checkpoint checksum mismatch: the bytes are torn or corrupted")]
    Checksum,
    /// The checksum matches but the body does not decode (not written by this encoder).
    #[error("checkpoint body is malformed: {0}")]
    Malformed(#[from] DecodeError),
    /// The checkpoint is of another chain.
    #[error("checkpoint is of chain {found}, not of this chain {expected}")]
    WrongChain {
        /// This chain's id (hex).
        expected: String,
        /// The checkpoint's (hex).
        found: String,
    },
    /// The state cannot be built (a duplicate account or deposit).
    #[error("checkpoint state: {0}")]
    State(#[from] BuildError),
    /// The rebuilt state root is not the tip's.
    #[error("the rebuilt state root {rebuilt} is not the checkpoint tip's state root {expected}")]
    StateRoot {
        /// The tip's state root (hex).
        expected: String,
        /// The root of the rebuilt state (hex).
        rebuilt: String,
    },
    /// Tip, headers and faulty batch do not fit together.
    #[error("checkpoint is inconsistent: {0}")]
    Inconsistent(String),
    /// The replayer cannot be set up on this chain.
    #[error("replayer: {0}")]
    Replayer(#[from] ReplayError),
}

/// A replayer's state at a tip (see the module documentation for what it holds and its encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain's id.
    chain_id: Hash32,
    /// The last valid batch.
    tip: Tip,
    /// The faulty batch that stopped the chain, if any.
    faulty: Option<u64>,
    /// Accounts in merkle order.
    accounts: Vec<Account>,
    /// The withdrawal queue in merkle order.
    withdrawals: Vec<WithdrawalEntry>,
    /// Credited deposits in merkle order.
    deposits: Vec<DepositEntry>,
    /// Signed headers: the valid batches `first..=tip` in ascending order, then the faulty batch's.
    headers: Vec<SignedHeader>,
}

impl Checkpoint {
    /// The last valid batch id.
    pub fn batch_id(&self) -> u64 {
        self.tip.batch_id
    }
    /// The state root after it.
    pub fn state_root(&self) -> Hash32 {
        self.tip.state_root
    }
    /// The tip (batch id, batch hash, state root).
    pub fn tip(&self) -> Tip {
        self.tip
    }
    /// The chain id the checkpoint is of.
    pub fn chain_id(&self) -> Hash32 {
        self.chain_id
    }
    /// The faulty batch that stopped the chain, if any.
    pub fn faulty(&self) -> Option<u64> {
        self.faulty
    }
    /// The signed headers kept.
    pub fn headers(&self) -> &[SignedHeader] {
        &self.headers
    }

    /// The encoding (module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let wd_bytes: usize = self.withdrawals.iter().map(|w| WITHDRAWAL_MIN_LEN + w.l1_address.len()).sum();
        let size = PREFIX_LEN
            + 8
            + 64
            + 9
            + 8
            + self.accounts.len() * ACCOUNT_LEN
            + 8
            + wd_bytes
            + 8
            + self.deposits.len() * DEPOSIT_LEN
            + 4
            + self.headers.len() * SIGNED_HEADER_LEN
            + CHECKSUM_LEN;
        let mut w = Writer::with_capacity(size);
        w.raw(MAGIC).u8(VERSION).raw(&self.chain_id);
        w.u64(self.tip.batch_id).raw(&self.tip.batch_hash).raw(&self.tip.state_root);
        match self.faulty {
            None => w.u8(0),
            Some(f) => w.u8(1).u64(f),
        };
        w.u64(self.accounts.len() as u64);
        for a in &self.accounts {
            w.raw(&a.key.0).u64(a.balance).u64(a.nonce);
        }
        w.u64(self.withdrawals.len() as u64);
        for e in &self.withdrawals {
            let addr = e.l1_address.as_bytes();
            // Addresses are at most 90 bytes (static validation); a String never exceeds u32 here.
            w.raw(&e.tx_id).u64(e.batch_id).raw(&e.from.0).u32(addr.len() as u32).raw(addr).u64(e.amount);
        }
        w.u64(self.deposits.len() as u64);
        for d in &self.deposits {
            w.raw(&d.outpoint.txid).u32(d.outpoint.vout).raw(&d.to.0).u64(d.amount).u64(d.batch_id);
        }
        w.u32(self.headers.len() as u32);
        for h in &self.headers {
            w.raw(&h.header.encode()).raw(&h.signature);
        }
        let mut bytes = w.finish();
        let sum = sha256(&bytes);
        bytes.extend_from_slice(&sum);
        bytes
    }

    /// Decode [`Checkpoint::to_bytes`]. Torn, corrupted or foreign bytes are a typed error; the chain
    /// id and the state root are checked by [`Replayer::resume`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, CheckpointError> {
        let min = PREFIX_LEN + CHECKSUM_LEN;
        if b.len() < min {
            return Err(CheckpointError::Truncated { len: b.len(), min });
        }
        if &b[..8] != MAGIC {
            return Err(CheckpointError::Magic);
        }
        if b[8] != VERSION {
            return Err(CheckpointError::Version(b[8]));
        }
        let (signed, sum) = b.split_at(b.len() - CHECKSUM_LEN);
        if sha256(signed) != sum {
            return Err(CheckpointError::Checksum);
        }
        let mut r = Reader::new(signed);
        r.array::<9>("magic and version")?;
        let chain_id = r.array("chain_id")?;
        let tip = Tip {
            batch_id: r.u64("tip batch_id")?,
            batch_hash: r.array("tip batch_hash")?,
            state_root: r.array("tip state_root")?,
        };
        let faulty = if r.flag("faulty")? { Some(r.u64("faulty batch_id")?) } else { None };
        let n = count(&mut r, "accounts", ACCOUNT_LEN, true)?;
        let mut accounts = Vec::with_capacity(n);
        for _ in 0..n {
            accounts.push(Account {
                key: AccountKey(r.array("account key")?),
                balance: r.u64("account balance")?,
                nonce: r.u64("account nonce")?,
            });
        }
        let n = count(&mut r, "withdrawals", WITHDRAWAL_MIN_LEN, true)?;
        let mut withdrawals = Vec::with_capacity(n);
        for _ in 0..n {
            let tx_id = r.array("withdrawal tx_id")?;
            let batch_id = r.u64("withdrawal batch_id")?;
            let from = AccountKey(r.array("withdrawal from")?);
            let len = r.u32("withdrawal l1_address length")? as usize;
            let addr = r.array_vec(len, "withdrawal l1_address")?;
            let l1_address = String::from_utf8(addr).map_err(|_| r.error("a withdrawal l1_address is not UTF-8"))?;
            withdrawals.push(WithdrawalEntry {
                tx_id,
                batch_id,
                from,
                l1_address,
                amount: r.u64("withdrawal amount")?,
            });
        }
        let n = count(&mut r, "deposits", DEPOSIT_LEN, true)?;
        let mut deposits = Vec::with_capacity(n);
        for _ in 0..n {
            deposits.push(DepositEntry {
                outpoint: OutPointRef { txid: r.array("deposit txid")?, vout: r.u32("deposit vout")? },
                to: AccountKey(r.array("deposit to")?),
                amount: r.u64("deposit amount")?,
                batch_id: r.u64("deposit batch_id")?,
            });
        }
        let n = count(&mut r, "headers", SIGNED_HEADER_LEN, false)?;
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            let header = BatchHeader::read(&mut r)?;
            headers.push(SignedHeader { header, signature: r.array("header signature")? });
        }
        r.end()?;
        Ok(Self { chain_id, tip, faulty, accounts, withdrawals, deposits, headers })
    }
}

/// Read a count (u64 when `wide`, else u32) of entries of at least `each` bytes; refuse it unless
/// that many entries fit in the bytes left.
fn count(r: &mut Reader<'_>, what: &str, each: usize, wide: bool) -> Result<usize, DecodeError> {
    let n = if wide { r.u64(what)? } else { u64::from(r.u32(what)?) };
    let left = r.remaining();
    usize::try_from(n)
        .ok()
        .filter(|n| n.checked_mul(each).is_some_and(|b| b <= left))
        .ok_or_else(|| r.error(format!("{n} {what} cannot fit in the {left} bytes left")))
}

impl Replayer {
    /// A checkpoint of the replayer at its tip, keeping the headers of the most recent `keep_headers`
    /// valid batches (at least the tip's, which the next fraud proof needs; more let an equivocation
    /// of a recent batch be judged after a resume) and the faulty batch's.
    pub fn checkpoint(&self, keep_headers: usize) -> Checkpoint {
        let from = self.keep_from(keep_headers);
        let mut headers: Vec<SignedHeader> =
            (from..=self.tip.batch_id).filter_map(|id| self.headers.get(&id).cloned()).collect();
        if let Some(h) = self.faulty.and_then(|f| self.headers.get(&f)) {
            headers.push(h.clone());
        }
        Checkpoint {
            chain_id: self.chain_id,
            tip: self.tip,
            faulty: self.faulty,
            accounts: self.state.accounts().to_vec(),
            withdrawals: self.state.withdrawals().to_vec(),
            deposits: self.state.deposits().to_vec(),
            headers,
        }
    }

    /// Rebuild a replayer from a checkpoint of `chain`: state trees rebuilt from the leaves, indices
    /// rebuilt. Refused unless the checkpoint is of this chain, the rebuilt state root is the tip's,
    /// and the kept headers chain up to the tip (the faulty batch's header present when there is
    /// one). The resumed replayer judges later batches as one that replayed from genesis would,
    /// except that batches older than the kept headers get [`ReplayError::Pruned`].
    pub fn resume(chain: Chain, cp: Checkpoint) -> Result<Replayer, CheckpointError> {
        let chain_id = chain.chain_id();
        if cp.chain_id != chain_id {
            return Err(CheckpointError::WrongChain {
                expected: hex::encode(chain_id),
                found: hex::encode(cp.chain_id),
            });
        }
        let tip = cp.tip;
        let inconsistent = |m: String| Err(CheckpointError::Inconsistent(m));
        let mut headers = cp.headers;
        let faulty_header = match cp.faulty {
            Some(f) => match headers.iter().position(|h| h.header.batch_id == f) {
                Some(i) => Some(headers.remove(i)),
                None => return inconsistent(format!("the header of faulty batch {f} is missing")),
            },
            None => None,
        };
        if let Some(f) = cp.faulty.filter(|f| (1..=tip.batch_id).contains(f)) {
            return inconsistent(format!("faulty batch {f} is not after the tip {}", tip.batch_id));
        }
        if tip.batch_id == 0 {
            if tip.batch_hash != chain_id || tip.state_root != chain.genesis_state_root {
                return inconsistent("a tip at genesis must be the chain id and the genesis state root".into());
            }
            if !headers.is_empty() {
                return inconsistent("a tip at genesis has no valid headers".into());
            }
        }
        for h in headers.iter().chain(&faulty_header) {
            if h.header.chain_id != chain_id {
                return inconsistent(format!("header {} is of another chain", h.header.batch_id));
            }
        }
        // The valid headers: consecutive, each linking to the one before, the last one the tip.
        for pair in headers.windows(2) {
            let (a, b) = (&pair[0].header, &pair[1].header);
            if b.batch_id != a.batch_id + 1 || b.prev_batch_hash != a.hash() || b.prev_state_root != a.new_state_root {
                return inconsistent(format!("header {} does not follow header {}", b.batch_id, a.batch_id));
            }
        }
        if let Some(last) = headers.last() {
            let h = &last.header;
            if h.batch_id != tip.batch_id || h.hash() != tip.batch_hash || h.new_state_root != tip.state_root {
                return inconsistent(format!("the last header kept ({}) is not the tip's", h.batch_id));
            }
        } else if tip.batch_id > 0 {
            return inconsistent(format!("the tip's header (batch {}) is missing", tip.batch_id));
        }
        if let Some(first) = headers.first().map(|h| &h.header) {
            if first.batch_id == 0
                || (first.batch_id == 1
                    && (first.prev_batch_hash != chain_id || first.prev_state_root != chain.genesis_state_root))
            {
                return inconsistent("the first header kept does not follow genesis".into());
            }
        }
        let headers_from = headers.first().map_or(1, |h| h.header.batch_id);
        let state = State::from_parts(cp.accounts, cp.withdrawals, cp.deposits)?;
        let rebuilt = state.state_root();
        if rebuilt != tip.state_root {
            return Err(CheckpointError::StateRoot {
                expected: hex::encode(tip.state_root),
                rebuilt: hex::encode(rebuilt),
            });
        }
        let mut r = Replayer::new(chain, state)?;
        r.tip = tip;
        r.faulty = cp.faulty;
        r.headers_from = headers_from;
        r.headers = headers.into_iter().chain(faulty_header).map(|h| (h.header.batch_id, h)).collect();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{account_key_of, address_of_pubkey, secp};
    use crate::batch::Batch;
    use crate::execute::Semantics;
    use crate::fault::{Fault, FaultClass};
    use crate::genesis::{Genesis, GenesisAccount};
    use crate::hash::sha256_parts;
    use crate::l1facts::{DepositFact, FileFacts, L1FactsFile};
    use crate::merkle::root_of;
    use crate::profile::Profile;
    use crate::replay::Verdict;
    use crate::seal::Sealer;
    use crate::tx::{tx_leaf, Tx};
    use bitcoin::key::Keypair;
    use bitcoin::secp256k1::SecretKey;

    const USERS: usize = 8;
    const BATCHES: usize = 7;
    const TXS: usize = 12;
    const DEPOSIT_UNITS: u64 = 5_000;

    fn keypair(label: &str, i: u64) -> Keypair {
        let h = sha256_parts(&[b"kray-checkpoint-test", label.as_bytes(), &i.to_be_bytes()]);
        Keypair::from_secret_key(secp(), &SecretKey::from_slice(&h).expect("valid key"))
    }

    struct Workload {
        chain: Chain,
        state: State,
        facts: FileFacts,
        sealer: Sealer,
        /// Honest batches 1..=BATCHES.
        batches: Vec<Batch>,
        /// A self-transfer sealed with the inflating bug on top of the honest batches (batch BATCHES+1).
        inflating: Batch,
    }

    /// A genesis of `USERS` users and `BATCHES` honest batches of transfers (some to fresh accounts),
    /// withdrawals and deposits (two in batch 1, one in batch 4).
    fn workload() -> Workload {
        let profile = Profile::load("regtest").expect("profile");
        let unit = profile.credits_per_rune_unit();
        let users: Vec<Keypair> = (0..USERS as u64).map(|i| keypair("user", i)).collect();
        let addrs: Vec<String> =
            users.iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, profile.network)).collect();
        let producer = keypair("producer", 0);
        let mut accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
        accounts.extend(addrs.iter().map(|a| GenesisAccount { address: a.clone(), balance: 1_000_000_000 }));
        let genesis =
            Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
        let (chain, state) = genesis.build(&profile).expect("genesis");
        let deposits: Vec<DepositFact> = (0..3u64)
            .map(|j| DepositFact {
                outpoint: OutPointRef { txid: sha256_parts(&[b"deposit", &j.to_be_bytes()]), vout: j as u32 },
                to_bridge: true,
                rune_amount: DEPOSIT_UNITS,
                recipient: Some(account_key_of(&users[j as usize].x_only_public_key().0)),
                height: 1,
            })
            .collect();
        let facts = FileFacts::from(L1FactsFile { tip_height: 1_000, deposits: deposits.clone() });
        let deposit_tx = |j: usize| {
            Tx::unsigned("deposit", deposits[j].outpoint.to_string(), addrs[j].clone(), DEPOSIT_UNITS * unit, 0)
        };
        let mut sealer = Sealer::new(chain.clone(), state.clone(), None, producer).expect("sealer");
        let mut nonces = [0u64; USERS];
        let mut batches = Vec::new();
        let signed = |from: usize, kind: &str, to: String, amount: u64, nonces: &mut [u64; USERS]| {
            let mut tx = Tx::unsigned(kind, addrs[from].clone(), to, amount, nonces[from]);
            nonces[from] += 1;
            tx.sign(&users[from]);
            tx
        };
        for b in 0..BATCHES {
            let mut candidates = match b {
                0 => vec![deposit_tx(0), deposit_tx(1)],
                3 => vec![deposit_tx(2)],
                _ => vec![],
            };
            for i in 0..TXS {
                let from = (i + b) % USERS;
                let tx = match i % 4 {
                    3 => signed(from, "withdrawal", addrs[from].clone(), unit, &mut nonces),
                    2 => {
                        let fresh = keypair("fresh", (b * TXS + i) as u64).x_only_public_key().0;
                        signed(from, "transfer", address_of_pubkey(&fresh, profile.network), 500, &mut nonces)
                    }
                    _ => signed(from, "transfer", addrs[(from + 1 + i) % USERS].clone(), 1_000 + i as u64, &mut nonces),
                };
                candidates.push(tx);
            }
            let (batch, rejected) = sealer.seal(candidates, 100 + b as u32, &facts, Semantics::Reference);
            assert!(rejected.is_empty(), "batch {b}: {rejected:?}");
            batches.push(batch);
        }
        let tx = signed(0, "transfer", addrs[0].clone(), 700, &mut nonces);
        let (inflating, rejected) = sealer.seal(vec![tx], 200, &facts, Semantics::SelfTransferMints);
        assert!(rejected.is_empty(), "{rejected:?}");
        Workload { chain, state, facts, sealer, batches, inflating }
    }

    /// Re-seal a tampered batch: tx count, tx root and gas total recomputed, header and data re-signed.
    fn reseal(sealer: &Sealer, batch: &mut Batch) {
        let h = &mut batch.signed.header;
        h.tx_count = batch.txs.len() as u32;
        h.tx_root = root_of(&batch.txs.iter().map(|t| tx_leaf(t)).collect::<Vec<_>>());
        h.total_gas = batch.txs.iter().map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0)).sum();
        sealer.resign_batch(batch);
    }

    /// Batch `id` (1-based) with a header tampered by `f`, re-signed.
    fn tampered(w: &Workload, id: usize, f: impl Fn(&mut Batch)) -> Batch {
        let mut b = w.batches[id - 1].clone();
        f(&mut b);
        reseal(&w.sealer, &mut b);
        b
    }

    /// Everything a replayer says about one batch: the verdict (or refusal), the proof of a fault,
    /// and the tip and faulty batch after it.
    type Outcome = (Result<Verdict, ReplayError>, Option<String>, Tip, Option<u64>);

    fn judge(r: &mut Replayer, b: &Batch, facts: &FileFacts) -> Outcome {
        let v = r.replay(b, facts);
        let proof = match &v {
            Ok(Verdict::Fault(f)) => Some(r.build_proof(b, f).map(|p| p.to_json()).unwrap_or_else(|e| e.to_string())),
            _ => None,
        };
        (v, proof, r.tip(), r.faulty())
    }

    /// Scenarios: honest history with copies and equivocations, a tx fault, a broken chain, a wrong
    /// state root, a gap, and a known-bug root.
    fn scenarios(w: &Workload) -> Vec<(&'static str, Vec<Batch>)> {
        let b = |id: usize| w.batches[id - 1].clone();
        let bad_sig = tampered(w, 5, |b| {
            let mut tx = Tx::decode(&b.txs[3]).expect("tx");
            tx.signature[7] ^= 1;
            b.txs[3] = tx.encode().expect("encode");
        });
        let equivocation_2 = tampered(w, 2, |b| b.signed.header.l1_height += 1);
        let broken = tampered(w, 4, |b| b.signed.header.prev_batch_hash[0] ^= 1);
        let wrong_root = tampered(w, 4, |b| b.signed.header.new_state_root[0] ^= 1);
        let equivocation_5 = tampered(w, 5, |b| b.signed.header.l1_height += 7);
        vec![
            ("honest, copies, equivocation, tx fault", {
                vec![b(1), b(2), b(3), b(3), equivocation_2, b(4), bad_sig, b(6), b(5), equivocation_5, b(2)]
            }),
            ("broken chain then the honest batch", vec![b(1), b(2), b(3), broken, b(4), b(5)]),
            ("wrong state root", vec![b(1), b(2), b(3), wrong_root, b(4)]),
            ("gaps, then the rest", vec![b(1), b(2), b(4), b(3), b(4), b(6), b(5), b(6), b(7)]),
            ("known bug", {
                let mut v: Vec<Batch> = w.batches.clone();
                v.push(w.inflating.clone());
                v
            }),
        ]
    }

    #[test]
    fn a_resumed_replayer_judges_as_one_from_genesis() {
        let w = workload();
        let mut classes = Vec::new();
        for (name, events) in scenarios(&w) {
            let mut genesis = Replayer::new(w.chain.clone(), w.state.clone()).expect("replayer");
            let want: Vec<Outcome> = events.iter().map(|b| judge(&mut genesis, b, &w.facts)).collect();
            for (i, o) in want.iter().enumerate() {
                assert!(o.1.as_ref().is_none_or(|p| p.starts_with('{')), "{name}, event {i}: proof failed: {o:?}");
            }
            classes.extend(want.iter().filter_map(|o| match &o.0 {
                Ok(Verdict::Fault(f)) => Some(f.class),
                _ => None,
            }));
            for k in 0..=events.len() {
                let mut first = Replayer::new(w.chain.clone(), w.state.clone()).expect("replayer");
                for (i, b) in events[..k].iter().enumerate() {
                    assert_eq!(judge(&mut first, b, &w.facts), want[i], "{name}: event {i}");
                }
                let bytes = first.checkpoint(64).to_bytes();
                let cp = Checkpoint::from_bytes(&bytes).expect("decode");
                assert_eq!(cp, first.checkpoint(64), "{name}, k={k}");
                let mut resumed = Replayer::resume(w.chain.clone(), cp).expect("resume");
                assert_eq!(resumed.state_root_and_counts(), first.state_root_and_counts(), "{name}, k={k}");
                for (i, b) in events.iter().enumerate().skip(k) {
                    assert_eq!(judge(&mut resumed, b, &w.facts), want[i], "{name}: checkpoint after {k}, event {i}");
                }
                assert_eq!(resumed.state().accounts(), genesis.state().accounts(), "{name}, k={k}");
                assert_eq!(resumed.state().withdrawals(), genesis.state().withdrawals(), "{name}, k={k}");
                assert_eq!(resumed.state().deposits(), genesis.state().deposits(), "{name}, k={k}");
            }
        }
        // The scenarios exercise what they claim to.
        for c in [
            FaultClass::Equivocation,
            FaultClass::InvalidSignature,
            FaultClass::BrokenChain,
            FaultClass::WrongStateRoot,
            FaultClass::SelfTransferInflation,
        ] {
            assert!(classes.contains(&c), "no {c} among {classes:?}");
        }
    }

    impl Replayer {
        fn state_root_and_counts(&self) -> (Hash32, crate::state::Roots) {
            (self.state().state_root(), self.state().roots())
        }
    }

    /// A replayer after every honest batch, with withdrawals, deposits and new accounts.
    fn replayed(w: &Workload) -> Replayer {
        let mut r = Replayer::new(w.chain.clone(), w.state.clone()).expect("replayer");
        for b in &w.batches {
            assert!(matches!(r.replay(b, &w.facts), Ok(Verdict::Valid { .. })));
        }
        assert!(!r.state().withdrawals().is_empty() && r.state().deposits().len() == 3);
        r
    }

    #[test]
    fn round_trip_keeps_the_recent_headers() {
        let w = workload();
        let r = replayed(&w);
        for (keep, want) in [(0, vec![7]), (1, vec![7]), (3, vec![5, 6, 7]), (100, (1..=7).collect())] {
            let cp = r.checkpoint(keep);
            let ids: Vec<u64> = cp.headers().iter().map(|h| h.header.batch_id).collect();
            assert_eq!(ids, want, "keep {keep}");
            let back = Checkpoint::from_bytes(&cp.to_bytes()).expect("decode");
            assert_eq!(back, cp);
            assert_eq!((back.batch_id(), back.state_root()), (7, r.tip().state_root));
            assert_eq!(back.chain_id(), w.chain.chain_id());
            let resumed = Replayer::resume(w.chain.clone(), back).expect("resume");
            assert_eq!(resumed.tip(), r.tip());
            assert_eq!(resumed.checkpoint(keep), cp);
        }
        // At genesis: no headers.
        let g = Replayer::new(w.chain.clone(), w.state.clone()).expect("replayer");
        let cp = Checkpoint::from_bytes(&g.checkpoint(10).to_bytes()).expect("decode");
        assert!(cp.headers().is_empty());
        assert_eq!(Replayer::resume(w.chain.clone(), cp).expect("resume").tip(), g.tip());
    }

    #[test]
    fn any_corrupt_byte_or_truncation_is_an_error() {
        let w = workload();
        let mut r = Replayer::new(w.chain.clone(), w.state.clone()).expect("replayer");
        for b in &w.batches[..2] {
            r.replay(b, &w.facts).expect("replay");
        }
        let bytes = r.checkpoint(2).to_bytes();
        assert!(Checkpoint::from_bytes(&bytes).is_ok());
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                let e = Checkpoint::from_bytes(&bad).expect_err("corrupt byte accepted");
                let want = match i {
                    0..=7 => CheckpointError::Magic,
                    8 => CheckpointError::Version(bytes[8] ^ bit),
                    _ => CheckpointError::Checksum,
                };
                assert_eq!(e, want, "byte {i}");
            }
        }
        for n in 0..bytes.len() {
            assert!(Checkpoint::from_bytes(&bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Checkpoint::from_bytes(&longer), Err(CheckpointError::Checksum));
    }

    /// Replace the checksum of (hand-edited) bytes, as a hostile or buggy writer would.
    fn rechecksum(bytes: &mut [u8]) {
        let n = bytes.len() - CHECKSUM_LEN;
        let sum = sha256(&bytes[..n]);
        bytes[n..].copy_from_slice(&sum);
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        let w = workload();
        let r = Replayer::new(w.chain.clone(), w.state.clone()).expect("replayer");
        let good = r.checkpoint(1).to_bytes();
        // The account count sits right after the prefix, the tip (72) and the faulty flag (1).
        let at = PREFIX_LEN + 72 + 1;
        for n in [u64::MAX, u64::MAX / 48 + 1, 1 << 40, (good.len() as u64) / 48 + 1] {
            let mut bad = good.clone();
            bad[at..at + 8].copy_from_slice(&n.to_be_bytes());
            rechecksum(&mut bad);
            let e = Checkpoint::from_bytes(&bad).expect_err("hostile count accepted");
            assert!(matches!(&e, CheckpointError::Malformed(d) if d.what.contains("cannot fit")), "{n}: {e}");
        }
        // A bad faulty flag and trailing bytes are malformed, never a panic.
        let mut bad = good.clone();
        bad[at - 1] = 2;
        rechecksum(&mut bad);
        assert!(matches!(Checkpoint::from_bytes(&bad), Err(CheckpointError::Malformed(_))));
        let mut bad = good.clone();
        bad.insert(good.len() - CHECKSUM_LEN, 0);
        rechecksum(&mut bad);
        assert!(matches!(Checkpoint::from_bytes(&bad), Err(CheckpointError::Malformed(_))));
    }

    #[test]
    fn another_chain_is_refused() {
        let w = workload();
        let cp = replayed(&w).checkpoint(4);
        let mut other = w.chain.clone();
        other.producers = vec![hex::encode(keypair("producer", 1).x_only_public_key().0.serialize())];
        assert!(matches!(Replayer::resume(other, cp), Err(CheckpointError::WrongChain { .. })));
    }

    #[test]
    fn a_state_that_is_not_the_tips_is_refused() {
        let w = workload();
        let r = replayed(&w);
        let good = r.checkpoint(4).to_bytes();
        // A balance changed, checksum recomputed: decodes, but the rebuilt root is not the tip's.
        let balance_of_account_3 = PREFIX_LEN + 72 + 1 + 8 + 3 * ACCOUNT_LEN + 32;
        let mut bad = good.clone();
        bad[balance_of_account_3 + 7] ^= 1;
        rechecksum(&mut bad);
        let cp = Checkpoint::from_bytes(&bad).expect("decodes");
        assert!(matches!(Replayer::resume(w.chain.clone(), cp), Err(CheckpointError::StateRoot { .. })));
        // One account dropped.
        let mut cp = Checkpoint::from_bytes(&good).expect("decodes");
        cp.accounts.pop();
        assert!(matches!(Replayer::resume(w.chain.clone(), cp), Err(CheckpointError::StateRoot { .. })));
        // Two equal accounts.
        let mut cp = Checkpoint::from_bytes(&good).expect("decodes");
        cp.accounts[2] = cp.accounts[1];
        assert!(matches!(
            Replayer::resume(w.chain.clone(), cp),
            Err(CheckpointError::State(BuildError::DuplicateAccount(_)))
        ));
        // A state of an earlier tip.
        let mut cp = Checkpoint::from_bytes(&good).expect("decodes");
        cp.withdrawals.pop();
        assert!(matches!(Replayer::resume(w.chain.clone(), cp), Err(CheckpointError::StateRoot { .. })));
    }

    #[test]
    fn headers_that_do_not_reach_the_tip_are_refused() {
        let w = workload();
        let r = replayed(&w);
        let good = Checkpoint::from_bytes(&r.checkpoint(3).to_bytes()).expect("decode");
        let refused =
            |cp: Checkpoint| matches!(Replayer::resume(w.chain.clone(), cp), Err(CheckpointError::Inconsistent(_)));
        let mut cp = good.clone();
        cp.headers.pop();
        assert!(refused(cp), "tip header missing");
        let mut cp = good.clone();
        cp.headers.remove(1);
        assert!(refused(cp), "hole");
        let mut cp = good.clone();
        cp.headers.swap(0, 1);
        assert!(refused(cp), "order");
        let mut cp = good.clone();
        cp.faulty = Some(8);
        assert!(refused(cp), "faulty header missing");
        let mut cp = good.clone();
        cp.tip.batch_hash[0] ^= 1;
        assert!(refused(cp), "tip hash");
    }

    #[test]
    fn pruned_headers_bound_memory_and_old_batches_are_not_judged() {
        let w = workload();
        let mut r = replayed(&w);
        r.prune_headers(3);
        assert_eq!(r.headers.len(), 3);
        assert!(r.header(4).is_none() && r.header(5).is_some());
        // Old: not judged (a copy or an equivocation alike); recent: as before.
        assert_eq!(r.replay(&w.batches[1], &w.facts), Err(ReplayError::Pruned { batch_id: 2, oldest: 5 }));
        let eq2 = tampered(&w, 2, |b| b.signed.header.l1_height += 1);
        assert_eq!(r.replay(&eq2, &w.facts), Err(ReplayError::Pruned { batch_id: 2, oldest: 5 }));
        assert_eq!(r.replay(&w.batches[4], &w.facts), Err(ReplayError::Duplicate(5)));
        let eq6 = tampered(&w, 6, |b| b.signed.header.l1_height += 1);
        assert!(matches!(r.replay(&eq6, &w.facts), Ok(Verdict::Fault(Fault { class: FaultClass::Equivocation, .. }))));
        // Keeping more later does not bring pruned headers back; zero keeps the tip's.
        r.prune_headers(10);
        assert_eq!(r.headers.len(), 3);
        r.prune_headers(0);
        assert_eq!(r.headers.keys().copied().collect::<Vec<_>>(), vec![7]);
        assert_eq!(r.checkpoint(5).headers().len(), 1);
        // The faulty batch's header stays, and the next proof still has the tip's header.
        let broken = tampered(&w, 7, |b| b.signed.header.batch_id = 8);
        let v = r.replay(&broken, &w.facts);
        let Ok(Verdict::Fault(f)) = v else { panic!("{v:?}") };
        assert!(r.build_proof(&broken, &f).is_ok());
        r.prune_headers(0);
        assert!(r.header(8).is_some() && r.header(7).is_some());
        let cp = Checkpoint::from_bytes(&r.checkpoint(0).to_bytes()).expect("decode");
        assert_eq!(cp.faulty(), Some(8));
        let mut resumed = Replayer::resume(w.chain.clone(), cp).expect("resume");
        assert_eq!(resumed.replay(&broken, &w.facts), Err(ReplayError::Duplicate(8)));
        assert_eq!(resumed.replay(&w.batches[0], &w.facts), Err(ReplayError::Pruned { batch_id: 1, oldest: 7 }));
    }
}
