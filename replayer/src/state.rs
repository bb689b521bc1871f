//! L2 state: accounts in `merkle_index` order, the withdrawal queue and the credited deposit
//! outpoints, each in its own Merkle tree; the state root commits to all three with their sizes.
//! Execution reads and writes through [`Overlay`], over either the full [`State`] or the partial
//! state a fraud proof carries (`proof::witness`), so both run the very same rules.

use crate::address::AccountKey;
use crate::encoding::Writer;
use crate::hash::{leaf_hash, sha256_parts, Hash32, TAG_STATE};
use crate::merkle::IncrementalTree;
use crate::tx::OutPointRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use thiserror::Error;

/// An L2 account (a leaf of the account tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Identity: the Taproot output key of the account's address.
    pub key: AccountKey,
    /// Balance in credits.
    #[serde(with = "crate::hash::hexser::u64str")]
    pub balance: u64,
    /// Next expected nonce.
    #[serde(with = "crate::hash::hexser::u64str")]
    pub nonce: u64,
}

/// A queued withdrawal (a leaf of the withdrawal tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalEntry {
    /// Id of the withdrawal tx.
    #[serde(with = "crate::hash::hexser")]
    pub tx_id: Hash32,
    /// Batch that queued it.
    pub batch_id: u64,
    /// The account that burned the credits.
    pub from: AccountKey,
    /// L1 destination address.
    pub l1_address: String,
    /// Credits to pay out (in whole rune units).
    #[serde(with = "crate::hash::hexser::u64str")]
    pub amount: u64,
}

/// A credited deposit (a leaf of the deposit tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositEntry {
    /// The L1 outpoint that paid the rune to the bridge.
    pub outpoint: OutPointRef,
    /// The credited account.
    pub to: AccountKey,
    /// Credits.
    #[serde(with = "crate::hash::hexser::u64str")]
    pub amount: u64,
    /// Batch that credited it.
    pub batch_id: u64,
}

/// Leaf encodings of the three trees.
pub trait Leaf {
    /// Canonical leaf bytes.
    fn leaf_bytes(&self) -> Vec<u8>;
    /// `sha256(0x00 || leaf bytes)`.
    fn leaf_hash(&self) -> Hash32 {
        leaf_hash(&self.leaf_bytes())
    }
}

impl Leaf for Account {
    fn leaf_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(48);
        w.raw(&self.key.0).u64(self.balance).u64(self.nonce);
        w.finish()
    }
}

impl Leaf for WithdrawalEntry {
    fn leaf_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.raw(&self.tx_id).u64(self.batch_id).raw(&self.from.0);
        // Addresses are at most 90 characters; a longer string cannot pass static validation.
        let addr = self.l1_address.as_bytes();
        w.u8(addr.len().min(255) as u8).raw(&addr[..addr.len().min(255)]).u64(self.amount);
        w.finish()
    }
}

impl Leaf for DepositEntry {
    fn leaf_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(84);
        w.raw(&self.outpoint.txid).u32(self.outpoint.vout).raw(&self.to.0).u64(self.amount).u64(self.batch_id);
        w.finish()
    }
}

/// Sizes and roots of the three trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roots {
    /// Account tree root and size.
    pub accounts: (Hash32, u64),
    /// Withdrawal tree root and size.
    pub withdrawals: (Hash32, u64),
    /// Deposit tree root and size.
    pub deposits: (Hash32, u64),
}

impl Roots {
    /// The state root: `sha256(0x03 || acc_root || acc_count || wd_root || wd_count || dep_root || dep_count)`.
    pub fn state_root(&self) -> Hash32 {
        sha256_parts(&[
            &[TAG_STATE],
            &self.accounts.0,
            &self.accounts.1.to_be_bytes(),
            &self.withdrawals.0,
            &self.withdrawals.1.to_be_bytes(),
            &self.deposits.0,
            &self.deposits.1.to_be_bytes(),
        ])
    }
}

/// A read failure of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// Index beyond the account tree.
    #[error("account index {index} is beyond the {count} accounts")]
    NoSuchAccount {
        /// Index.
        index: u64,
        /// Account count.
        count: u64,
    },
    /// A partial (proof) state lacks an account execution needs.
    #[error("the proof's state witness does not contain account index {0}")]
    NotInWitness(u64),
}

/// Read access to a ledger (full state or a proof's partial state).
pub trait ReadLedger {
    /// Number of accounts.
    fn account_count(&self) -> u64;
    /// The account at `index`.
    fn account(&self, index: u64) -> Result<Account, StateError>;
    /// The index of `key`, if known to exist.
    fn find_account(&self, key: &AccountKey) -> Option<u64>;
    /// Number of queued withdrawals.
    fn withdrawal_count(&self) -> u64;
    /// Number of credited deposits.
    fn deposit_count(&self) -> u64;
    /// The index of a credited outpoint, if known to be credited.
    fn find_deposit(&self, op: &OutPointRef) -> Option<u64>;
}

/// A hasher for keys that are already uniform hashes (account keys, txids): uses their first 8 bytes.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
        self.0 = self.0.rotate_left(5) ^ bytes.len() as u64;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PrehashedHasher>>;

/// The full L2 state held by a guardian.
#[derive(Debug, Clone, Default)]
pub struct State {
    accounts: Vec<Account>,
    index: FastMap<AccountKey, u32>,
    account_tree: IncrementalTree,
    withdrawals: Vec<WithdrawalEntry>,
    withdrawal_tree: IncrementalTree,
    deposits: Vec<DepositEntry>,
    deposit_index: FastMap<OutPointRef, u32>,
    deposit_tree: IncrementalTree,
}

/// Why a state cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The same account key twice.
    #[error("account {0} appears twice")]
    DuplicateAccount(String),
    /// More accounts (or credited deposits) than indices.
    #[error("more than 2^32 accounts or deposits")]
    TooMany,
    /// The same deposit outpoint credited twice.
    #[error("deposit outpoint {0} appears twice")]
    DuplicateDeposit(String),
}

impl State {
    /// A state holding `accounts` in the given order (their merkle indices), no withdrawals or deposits.
    pub fn from_accounts(accounts: Vec<Account>) -> Result<Self, BuildError> {
        let mut index = FastMap::default();
        index.reserve(accounts.len());
        for (i, a) in accounts.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| BuildError::TooMany)?;
            if index.insert(a.key, i).is_some() {
                return Err(BuildError::DuplicateAccount(hex::encode(a.key.0)));
            }
        }
        let leaves = accounts.iter().map(Leaf::leaf_hash).collect();
        Ok(Self { account_tree: IncrementalTree::from_leaves(leaves), accounts, index, ..Default::default() })
    }

    /// A state holding `accounts`, the withdrawal queue and the credited deposits, each in merkle
    /// order (a checkpoint's contents): indices and the three trees are rebuilt from the leaves,
    /// whose hashes are computed in parallel.
    pub fn from_parts(
        accounts: Vec<Account>,
        withdrawals: Vec<WithdrawalEntry>,
        deposits: Vec<DepositEntry>,
    ) -> Result<Self, BuildError> {
        use rayon::prelude::*;
        let mut index = FastMap::default();
        index.reserve(accounts.len());
        for (i, a) in accounts.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| BuildError::TooMany)?;
            if index.insert(a.key, i).is_some() {
                return Err(BuildError::DuplicateAccount(hex::encode(a.key.0)));
            }
        }
        let mut deposit_index = FastMap::default();
        deposit_index.reserve(deposits.len());
        for (i, d) in deposits.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| BuildError::TooMany)?;
            if deposit_index.insert(d.outpoint, i).is_some() {
                return Err(BuildError::DuplicateDeposit(d.outpoint.to_string()));
            }
        }
        let tree = |leaves: Vec<Hash32>| IncrementalTree::from_leaves_par(leaves);
        let account_tree = tree(accounts.par_iter().map(Leaf::leaf_hash).collect());
        let withdrawal_tree = tree(withdrawals.par_iter().map(Leaf::leaf_hash).collect());
        let deposit_tree = tree(deposits.par_iter().map(Leaf::leaf_hash).collect());
        Ok(Self { accounts, index, account_tree, withdrawals, withdrawal_tree, deposits, deposit_index, deposit_tree })
    }

    /// Sizes and roots.
    pub fn roots(&self) -> Roots {
        Roots {
            accounts: (self.account_tree.root(), self.account_tree.len()),
            withdrawals: (self.withdrawal_tree.root(), self.withdrawal_tree.len()),
            deposits: (self.deposit_tree.root(), self.deposit_tree.len()),
        }
    }

    /// The state root.
    pub fn state_root(&self) -> Hash32 {
        self.roots().state_root()
    }

    /// All accounts in merkle order.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The withdrawal queue.
    pub fn withdrawals(&self) -> &[WithdrawalEntry] {
        &self.withdrawals
    }

    /// Credited deposits.
    pub fn deposits(&self) -> &[DepositEntry] {
        &self.deposits
    }

    /// The account trees (for proofs).
    pub fn trees(&self) -> (&IncrementalTree, &IncrementalTree, &IncrementalTree) {
        (&self.account_tree, &self.withdrawal_tree, &self.deposit_tree)
    }

    /// Apply the changes an [`Overlay`] collected; returns what [`State::revert`] needs to undo them.
    pub fn apply(&mut self, changes: Changes) -> Undo {
        let undo = Undo {
            old: changes
                .accounts
                .keys()
                .filter(|i| **i < self.accounts.len() as u64)
                .map(|i| (*i, self.accounts[*i as usize]))
                .collect(),
            counts: (self.accounts.len() as u64, self.withdrawals.len() as u64, self.deposits.len() as u64),
        };
        let mut updates = Vec::with_capacity(changes.accounts.len());
        let mut appends = Vec::new();
        for (i, a) in changes.accounts {
            let h = a.leaf_hash();
            if i < self.accounts.len() as u64 {
                self.accounts[i as usize] = a;
                updates.push((i, h));
            } else {
                // Overlay assigns new indices densely from the count, so this is a push.
                self.index.insert(a.key, self.accounts.len() as u32);
                self.accounts.push(a);
                appends.push(h);
            }
        }
        self.account_tree.update(&updates, &appends);
        let wl: Vec<Hash32> = changes.withdrawals.iter().map(Leaf::leaf_hash).collect();
        self.withdrawals.extend(changes.withdrawals);
        self.withdrawal_tree.update(&[], &wl);
        let dl: Vec<Hash32> = changes.deposits.iter().map(Leaf::leaf_hash).collect();
        for d in changes.deposits {
            self.deposit_index.insert(d.outpoint, self.deposits.len() as u32);
            self.deposits.push(d);
        }
        self.deposit_tree.update(&[], &dl);
        undo
    }

    /// Undo an [`State::apply`].
    pub fn revert(&mut self, undo: Undo) {
        let (na, nw, nd) = undo.counts;
        for a in self.accounts.drain(na as usize..) {
            self.index.remove(&a.key);
        }
        self.account_tree.truncate(na);
        let mut updates = Vec::with_capacity(undo.old.len());
        for (i, a) in undo.old {
            self.accounts[i as usize] = a;
            updates.push((i, a.leaf_hash()));
        }
        self.account_tree.update(&updates, &[]);
        self.withdrawals.truncate(nw as usize);
        self.withdrawal_tree.truncate(nw);
        for d in self.deposits.drain(nd as usize..) {
            self.deposit_index.remove(&d.outpoint);
        }
        self.deposit_tree.truncate(nd);
    }

    /// Approximate heap bytes (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let (a, w, d) = self.trees();
        self.accounts.capacity() * std::mem::size_of::<Account>()
            + self.index.capacity() * (std::mem::size_of::<(AccountKey, u32)>() + 1)
            + a.heap_bytes()
            + w.heap_bytes()
            + d.heap_bytes()
            + self.withdrawals.capacity() * std::mem::size_of::<WithdrawalEntry>()
            + self.deposits.capacity() * std::mem::size_of::<DepositEntry>()
    }
}

impl ReadLedger for State {
    fn account_count(&self) -> u64 {
        self.accounts.len() as u64
    }
    fn account(&self, index: u64) -> Result<Account, StateError> {
        self.accounts
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .copied()
            .ok_or(StateError::NoSuchAccount { index, count: self.accounts.len() as u64 })
    }
    fn find_account(&self, key: &AccountKey) -> Option<u64> {
        self.index.get(key).map(|i| u64::from(*i))
    }
    fn withdrawal_count(&self) -> u64 {
        self.withdrawals.len() as u64
    }
    fn deposit_count(&self) -> u64 {
        self.deposits.len() as u64
    }
    fn find_deposit(&self, op: &OutPointRef) -> Option<u64> {
        self.deposit_index.get(op).map(|i| u64::from(*i))
    }
}

/// What [`State::revert`] needs.
#[derive(Debug)]
pub struct Undo {
    old: Vec<(u64, Account)>,
    counts: (u64, u64, u64),
}

/// The writes of a batch, collected by an [`Overlay`].
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Updated and new accounts by index (new ones are dense from the old count).
    pub accounts: BTreeMap<u64, Account>,
    /// Appended withdrawals.
    pub withdrawals: Vec<WithdrawalEntry>,
    /// Appended deposits.
    pub deposits: Vec<DepositEntry>,
}

/// One write recorded for rollback.
#[derive(Debug)]
enum Logged {
    Set(u64, Option<Account>),
    NewKey(AccountKey),
    NewDeposit(OutPointRef),
}

/// A point an [`Overlay`] can roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    log: usize,
    withdrawals: usize,
    deposits: usize,
}

/// Copy-on-write view of a ledger during execution; records which base entries were read so a
/// fraud proof can carry exactly those.
pub struct Overlay<'a, L: ReadLedger> {
    base: &'a L,
    changes: Changes,
    log: Vec<Logged>,
    new_keys: HashMap<AccountKey, u64>,
    new_deposits: HashMap<OutPointRef, u64>,
    /// Base account indices read.
    pub touched_accounts: BTreeSet<u64>,
    /// Base deposit indices found.
    pub touched_deposits: BTreeSet<u64>,
}

impl<'a, L: ReadLedger> Overlay<'a, L> {
    /// An overlay with no writes yet.
    pub fn new(base: &'a L) -> Self {
        Self {
            base,
            changes: Changes::default(),
            log: Vec::new(),
            new_keys: HashMap::new(),
            new_deposits: HashMap::new(),
            touched_accounts: BTreeSet::new(),
            touched_deposits: BTreeSet::new(),
        }
    }
    /// Current number of accounts.
    pub fn account_count(&self) -> u64 {
        self.base.account_count() + self.new_keys.len() as u64
    }
    /// Read an account.
    pub fn account(&mut self, index: u64) -> Result<Account, StateError> {
        if let Some(a) = self.changes.accounts.get(&index) {
            return Ok(*a);
        }
        self.touched_accounts.insert(index);
        self.base.account(index)
    }
    /// Find an account by key.
    pub fn find_account(&mut self, key: &AccountKey) -> Option<u64> {
        if let Some(i) = self.new_keys.get(key) {
            return Some(*i);
        }
        let i = self.base.find_account(key)?;
        self.touched_accounts.insert(i);
        Some(i)
    }
    /// Write an existing account.
    pub fn set_account(&mut self, index: u64, a: Account) {
        let prev = self.changes.accounts.insert(index, a);
        self.log.push(Logged::Set(index, prev));
    }
    /// Append a new account; returns its index.
    pub fn push_account(&mut self, a: Account) -> u64 {
        let i = self.account_count();
        self.new_keys.insert(a.key, i);
        self.log.push(Logged::NewKey(a.key));
        self.set_account(i, a);
        i
    }
    /// A point to roll back to.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            log: self.log.len(),
            withdrawals: self.changes.withdrawals.len(),
            deposits: self.changes.deposits.len(),
        }
    }
    /// Undo every write since `cp` (a sequencer rejecting a tx that failed midway).
    pub fn rollback(&mut self, cp: Checkpoint) {
        while self.log.len() > cp.log {
            match self.log.pop() {
                Some(Logged::Set(i, Some(prev))) => {
                    self.changes.accounts.insert(i, prev);
                }
                Some(Logged::Set(i, None)) => {
                    self.changes.accounts.remove(&i);
                }
                Some(Logged::NewKey(k)) => {
                    self.new_keys.remove(&k);
                }
                Some(Logged::NewDeposit(op)) => {
                    self.new_deposits.remove(&op);
                }
                None => break,
            }
        }
        self.changes.withdrawals.truncate(cp.withdrawals);
        self.changes.deposits.truncate(cp.deposits);
    }
    /// Queue a withdrawal.
    pub fn push_withdrawal(&mut self, w: WithdrawalEntry) {
        self.changes.withdrawals.push(w);
    }
    /// Is this outpoint already credited (in the base or earlier in this batch)?
    pub fn find_deposit(&mut self, op: &OutPointRef) -> Option<u64> {
        if let Some(i) = self.new_deposits.get(op) {
            return Some(*i);
        }
        let i = self.base.find_deposit(op)?;
        self.touched_deposits.insert(i);
        Some(i)
    }
    /// Record a credited deposit.
    pub fn push_deposit(&mut self, d: DepositEntry) {
        let i = self.base.deposit_count() + self.changes.deposits.len() as u64;
        self.new_deposits.insert(d.outpoint, i);
        self.log.push(Logged::NewDeposit(d.outpoint));
        self.changes.deposits.push(d);
    }
    /// The collected writes.
    pub fn into_changes(self) -> Changes {
        self.changes
    }
    /// The collected writes, by reference.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(i: u8, bal: u64) -> Account {
        Account { key: AccountKey([i; 32]), balance: bal, nonce: 0 }
    }

    #[test]
    fn apply_and_revert_restore_the_root() {
        let mut s = State::from_accounts((1..=10).map(|i| acct(i, 100)).collect()).unwrap();
        let before = s.state_root();
        let mut o = Overlay::new(&s);
        let mut a = o.account(3).unwrap();
        a.balance = 5;
        o.set_account(3, a);
        o.push_account(acct(50, 7));
        o.push_deposit(DepositEntry {
            outpoint: OutPointRef { txid: [9; 32], vout: 1 },
            to: AccountKey([50; 32]),
            amount: 7,
            batch_id: 1,
        });
        let ch = o.into_changes();
        let undo = s.apply(ch);
        assert_ne!(s.state_root(), before);
        assert_eq!(s.find_account(&AccountKey([50; 32])), Some(10));
        assert!(s.find_deposit(&OutPointRef { txid: [9; 32], vout: 1 }).is_some());
        s.revert(undo);
        assert_eq!(s.state_root(), before);
        assert_eq!(s.find_account(&AccountKey([50; 32])), None);
        assert_eq!(s.account_count(), 10);
    }

    #[test]
    fn duplicate_accounts_rejected() {
        assert!(State::from_accounts(vec![acct(1, 1), acct(1, 2)]).is_err());
    }
}
