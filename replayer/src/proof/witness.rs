//! The partial state a fraud proof carries: the touched entries of each tree with a multi-proof,
//! verified against the previous state root, and able to compute the root after re-execution.

use crate::address::AccountKey;
use crate::hash::{hexser, Hash32};
use crate::merkle::{MultiProof, ProofError};
use crate::state::{Account, Changes, DepositEntry, Leaf, ReadLedger, Roots, State, StateError};
use crate::tx::OutPointRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use thiserror::Error;

/// An entry at an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indexed<T> {
    /// Leaf index.
    pub index: u64,
    /// The entry.
    pub entry: T,
}

/// A leaf hash at an index (entries whose content the verifier does not need).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedHash {
    /// Leaf index.
    pub index: u64,
    /// Leaf hash.
    #[serde(with = "hexser")]
    pub hash: Hash32,
}

/// Part of one tree: some entries, some opaque leaves (always including the last leaf, so appends
/// can be computed), and the multi-proof of all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeWitness<T> {
    /// Number of leaves.
    pub count: u64,
    /// Entries with content.
    pub entries: Vec<Indexed<T>>,
    /// Opaque leaves.
    pub leaves: Vec<IndexedHash>,
    /// Multi-proof of every index above.
    pub proof: MultiProof,
}

/// The pre-state witness of a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateWitness {
    /// Touched accounts.
    pub accounts: TreeWitness<Account>,
    /// The withdrawal tree's last leaf.
    pub withdrawals: TreeWitness<()>,
    /// Deposits found credited, plus the last leaf.
    pub deposits: TreeWitness<DepositEntry>,
}

/// Why a witness does not check out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WitnessError {
    /// A tree's proof does not compute.
    #[error("{tree} witness: {source}")]
    Proof {
        /// Tree.
        tree: &'static str,
        /// Cause.
        source: ProofError,
    },
    /// Proof made for another size.
    #[error("{tree} witness: proof is for {proof} leaves, the witness says {count}")]
    Count {
        /// Tree.
        tree: &'static str,
        /// Proof's count.
        proof: u64,
        /// Witness's count.
        count: u64,
    },
    /// The last leaf is missing.
    #[error("{0} witness lacks its last leaf")]
    NoLastLeaf(&'static str),
    /// One index twice.
    #[error("{0} witness names an index twice")]
    Duplicate(&'static str),
    /// One account key at two indices.
    #[error("accounts witness holds one account at two indices")]
    DuplicateKey,
    /// The roots do not give the previous state root.
    #[error("the witness does not match the header's prev_state_root")]
    RootMismatch,
}

fn known_leaves<T: Leaf>(t: &TreeWitness<T>, tree: &'static str) -> Result<BTreeMap<u64, Hash32>, WitnessError> {
    let mut known = BTreeMap::new();
    for e in &t.entries {
        if known.insert(e.index, e.entry.leaf_hash()).is_some() {
            return Err(WitnessError::Duplicate(tree));
        }
    }
    for l in &t.leaves {
        if known.insert(l.index, l.hash).is_some() {
            return Err(WitnessError::Duplicate(tree));
        }
    }
    if t.proof.leaf_count != t.count {
        return Err(WitnessError::Count { tree, proof: t.proof.leaf_count, count: t.count });
    }
    if t.count > 0 && !known.contains_key(&(t.count - 1)) {
        return Err(WitnessError::NoLastLeaf(tree));
    }
    Ok(known)
}

impl Leaf for () {
    fn leaf_bytes(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// A verified partial state: implements [`ReadLedger`] over the witnessed entries only.
#[derive(Debug, Clone)]
pub struct PartialState {
    witness: StateWitness,
    accounts: BTreeMap<u64, Account>,
    keys: HashMap<AccountKey, u64>,
    deposits: HashMap<OutPointRef, u64>,
    known: [BTreeMap<u64, Hash32>; 3],
}

impl PartialState {
    /// Check the witness against `prev_state_root`.
    pub fn verify(witness: StateWitness, prev_state_root: &Hash32) -> Result<Self, WitnessError> {
        let ka = known_leaves(&witness.accounts, "accounts")?;
        let kw = known_leaves(&witness.withdrawals, "withdrawals")?;
        let kd = known_leaves(&witness.deposits, "deposits")?;
        let root = |k: &BTreeMap<u64, Hash32>, p: &MultiProof, n: u64, tree| {
            p.root(k, n).map_err(|source| WitnessError::Proof { tree, source })
        };
        let roots = Roots {
            accounts: (root(&ka, &witness.accounts.proof, witness.accounts.count, "accounts")?, witness.accounts.count),
            withdrawals: (
                root(&kw, &witness.withdrawals.proof, witness.withdrawals.count, "withdrawals")?,
                witness.withdrawals.count,
            ),
            deposits: (root(&kd, &witness.deposits.proof, witness.deposits.count, "deposits")?, witness.deposits.count),
        };
        if roots.state_root() != *prev_state_root {
            return Err(WitnessError::RootMismatch);
        }
        let accounts: BTreeMap<u64, Account> = witness.accounts.entries.iter().map(|e| (e.index, e.entry)).collect();
        let mut keys = HashMap::new();
        for (i, a) in &accounts {
            if keys.insert(a.key, *i).is_some() {
                return Err(WitnessError::DuplicateKey);
            }
        }
        let deposits = witness.deposits.entries.iter().map(|e| (e.entry.outpoint, e.index)).collect();
        Ok(Self { witness, accounts, keys, deposits, known: [ka, kw, kd] })
    }

    /// The state root after applying `changes` (computed from the witness alone).
    pub fn root_after(&self, changes: &Changes) -> Result<Hash32, WitnessError> {
        let w = &self.witness;
        let mut ka = self.known[0].clone();
        for (i, a) in &changes.accounts {
            ka.insert(*i, a.leaf_hash());
        }
        let na = w.accounts.count.max(changes.accounts.keys().next_back().map_or(0, |i| i + 1));
        let mut kw = self.known[1].clone();
        for (k, e) in changes.withdrawals.iter().enumerate() {
            kw.insert(w.withdrawals.count + k as u64, e.leaf_hash());
        }
        let nw = w.withdrawals.count + changes.withdrawals.len() as u64;
        let mut kd = self.known[2].clone();
        for (k, e) in changes.deposits.iter().enumerate() {
            kd.insert(w.deposits.count + k as u64, e.leaf_hash());
        }
        let nd = w.deposits.count + changes.deposits.len() as u64;
        let root = |k: &BTreeMap<u64, Hash32>, p: &MultiProof, n: u64, tree| {
            p.root(k, n).map_err(|source| WitnessError::Proof { tree, source })
        };
        Ok(Roots {
            accounts: (root(&ka, &w.accounts.proof, na, "accounts")?, na),
            withdrawals: (root(&kw, &w.withdrawals.proof, nw, "withdrawals")?, nw),
            deposits: (root(&kd, &w.deposits.proof, nd, "deposits")?, nd),
        }
        .state_root())
    }
}

impl ReadLedger for PartialState {
    fn account_count(&self) -> u64 {
        self.witness.accounts.count
    }
    fn account(&self, index: u64) -> Result<Account, StateError> {
        if index >= self.witness.accounts.count {
            return Err(StateError::NoSuchAccount { index, count: self.witness.accounts.count });
        }
        self.accounts.get(&index).copied().ok_or(StateError::NotInWitness(index))
    }
    fn find_account(&self, key: &AccountKey) -> Option<u64> {
        self.keys.get(key).copied()
    }
    fn withdrawal_count(&self) -> u64 {
        self.witness.withdrawals.count
    }
    fn deposit_count(&self) -> u64 {
        self.witness.deposits.count
    }
    fn find_deposit(&self, op: &OutPointRef) -> Option<u64> {
        self.deposits.get(op).copied()
    }
}

/// Build a witness from a full state for the touched account and deposit indices.
pub fn witness_of(state: &State, accounts: &BTreeSet<u64>, deposits: &BTreeSet<u64>) -> StateWitness {
    let (at, wt, dt) = state.trees();
    let with_last = |set: &BTreeSet<u64>, n: u64| -> Vec<u64> {
        let mut v: BTreeSet<u64> = set.iter().copied().filter(|i| *i < n).collect();
        if n > 0 {
            v.insert(n - 1);
        }
        v.into_iter().collect()
    };
    let ai = with_last(accounts, at.len());
    let accounts = TreeWitness {
        count: at.len(),
        entries: ai.iter().map(|i| Indexed { index: *i, entry: state.accounts()[*i as usize] }).collect(),
        leaves: vec![],
        proof: at.prove(&ai),
    };
    let wi = with_last(&BTreeSet::new(), wt.len());
    let withdrawals = TreeWitness {
        count: wt.len(),
        entries: vec![],
        leaves: wi.iter().filter_map(|i| wt.leaf(*i).map(|h| IndexedHash { index: *i, hash: *h })).collect(),
        proof: wt.prove(&wi),
    };
    let di = with_last(deposits, dt.len());
    let deposits = TreeWitness {
        count: dt.len(),
        entries: di
            .iter()
            .filter(|i| deposits.contains(i))
            .map(|i| Indexed { index: *i, entry: state.deposits()[*i as usize].clone() })
            .collect(),
        leaves: di
            .iter()
            .filter(|i| !deposits.contains(i))
            .filter_map(|i| dt.leaf(*i).map(|h| IndexedHash { index: *i, hash: *h }))
            .collect(),
        proof: dt.prove(&di),
    };
    StateWitness { accounts, withdrawals, deposits }
}
