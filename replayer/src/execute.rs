//! The execution rules of one tx over an [`Overlay`]. The same code runs in full replay, in the
//! reference sequencer, and in fraud-proof verification over a proof's partial state.

use crate::address::AccountKey;
use crate::fault::FaultClass;
use crate::hash::Hash32;
use crate::l1facts::L1Facts;
use crate::profile::Profile;
use crate::state::{Account, DepositEntry, Overlay, ReadLedger, StateError, WithdrawalEntry};
use crate::tx::{CheckedTx, Tx, TxKind};
use thiserror::Error;

/// Which rules to run. Only `Reference` is the protocol; the others reproduce known sequencer bugs so
/// that a wrong state root can be attributed to its cause (and the attribution proven).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// The protocol.
    Reference,
    /// The JavaScript's self-transfer: the sender's debit is lost, the recipient (itself) gets `amount`.
    SelfTransferMints,
    /// Gas is taken from the sender but never credited to the Treasury.
    TreasuryNotCredited,
    /// A withdrawal is queued but only the gas is taken from the sender.
    WithdrawalNotDebited,
}

impl Semantics {
    /// The buggy variants, with the fault class each proves.
    pub const DIAGNOSES: [(Semantics, FaultClass); 3] = [
        (Semantics::SelfTransferMints, FaultClass::SelfTransferInflation),
        (Semantics::TreasuryNotCredited, FaultClass::WrongGas),
        (Semantics::WithdrawalNotDebited, FaultClass::WithdrawalNotBurned),
    ];
}

/// How deposits are checked against L1.
#[derive(Clone, Copy)]
pub enum DepositCheck<'a> {
    /// Against these facts.
    Facts(&'a dyn L1Facts),
    /// Not checked (fraud-proof verification of a fault that is not about a deposit's L1 side).
    Skip,
}

/// Per-batch context.
pub struct ExecContext<'a> {
    /// Profile.
    pub profile: &'a Profile,
    /// The Treasury's key.
    pub treasury: AccountKey,
    /// The batch.
    pub batch_id: u64,
    /// The batch's declared L1 height.
    pub l1_height: u32,
    /// Rules to run.
    pub semantics: Semantics,
    /// Deposit checking.
    pub deposits: DepositCheck<'a>,
}

/// Why a tx did not execute.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    /// The tx breaks the protocol.
    #[error("{class}: {reason}")]
    Fault {
        /// Class.
        class: FaultClass,
        /// Explanation.
        reason: String,
    },
    /// The ledger lacks data (a proof's witness is incomplete).
    #[error(transparent)]
    State(#[from] StateError),
    /// The Treasury account is not in the ledger.
    #[error("the Treasury account is not in the state (or the proof's witness)")]
    NoTreasury,
    /// L1 could not be asked: the batch cannot be judged yet.
    #[error("{0}")]
    L1(String),
}

fn fault(class: FaultClass, reason: impl Into<String>) -> ExecError {
    ExecError::Fault { class, reason: reason.into() }
}

/// The gas a tx must declare under `profile`.
pub fn expected_gas(kind: TxKind, profile: &Profile) -> u64 {
    match kind {
        TxKind::Transfer | TxKind::Withdrawal => profile.gas_per_tx,
        TxKind::Deposit => 0,
    }
}

/// Resolve the sender from its declared index.
fn sender<L: ReadLedger>(ov: &mut Overlay<'_, L>, tx: &Tx, key: &AccountKey) -> Result<(u64, Account), ExecError> {
    let i = tx.from_index.ok_or_else(|| fault(FaultClass::MalformedTx, "from_index missing"))?;
    if i >= ov.account_count() {
        return Err(fault(
            FaultClass::MalformedTx,
            format!("from_index {i} is beyond the {} accounts", ov.account_count()),
        ));
    }
    let a = ov.account(i)?;
    if a.key != *key {
        return Err(fault(FaultClass::MalformedTx, format!("from_index {i} holds another account than {}", tx.from)));
    }
    Ok((i, a))
}

/// Resolve the recipient from its declared index: an existing account, or a new one appended at the
/// account count (which must not already exist).
fn recipient<L: ReadLedger>(
    ov: &mut Overlay<'_, L>,
    tx: &Tx,
    key: &AccountKey,
) -> Result<(u64, Account, bool), ExecError> {
    let i = tx.to_index.ok_or_else(|| fault(FaultClass::MalformedTx, "to_index missing"))?;
    let count = ov.account_count();
    if i < count {
        let a = ov.account(i)?;
        if a.key != *key {
            return Err(fault(FaultClass::MalformedTx, format!("to_index {i} holds another account than {}", tx.to)));
        }
        Ok((i, a, false))
    } else if i == count {
        if let Some(j) = ov.find_account(key) {
            return Err(fault(
                FaultClass::MalformedTx,
                format!("to_index {i} declares {} as a new account, but it exists at index {j}", tx.to),
            ));
        }
        Ok((i, Account { key: *key, balance: 0, nonce: 0 }, true))
    } else {
        Err(fault(FaultClass::MalformedTx, format!("to_index {i} is beyond the {count} accounts")))
    }
}

fn store<L: ReadLedger>(ov: &mut Overlay<'_, L>, i: u64, a: Account, new: bool) {
    if new {
        ov.push_account(a);
    } else {
        ov.set_account(i, a);
    }
}

fn credit_treasury<L: ReadLedger>(ov: &mut Overlay<'_, L>, ctx: &ExecContext<'_>, gas: u64) -> Result<(), ExecError> {
    if ctx.semantics == Semantics::TreasuryNotCredited {
        return Ok(());
    }
    let ti = ov.find_account(&ctx.treasury).ok_or(ExecError::NoTreasury)?;
    let mut t = ov.account(ti)?;
    t.balance = t
        .balance
        .checked_add(gas)
        .ok_or_else(|| fault(FaultClass::Overflow, format!("Treasury balance {} + gas {gas} overflows", t.balance)))?;
    ov.set_account(ti, t);
    Ok(())
}

/// Execute one statically checked, authenticated tx. Gas declaration and authentication are checked
/// by the caller before (see `replay`), so this judges only what needs state.
pub fn execute<L: ReadLedger>(
    ov: &mut Overlay<'_, L>,
    ctx: &ExecContext<'_>,
    tx: &Tx,
    checked: &CheckedTx,
    tx_id: &Hash32,
) -> Result<(), ExecError> {
    let gas = tx.gas_fee;
    match checked.kind {
        TxKind::Transfer | TxKind::Withdrawal => {
            let from_key = checked.from_key.ok_or_else(|| fault(FaultClass::MalformedTx, "no sender"))?;
            let (fi, mut a) = sender(ov, tx, &from_key)?;
            if tx.nonce != a.nonce {
                return Err(fault(
                    FaultClass::BadNonce,
                    format!("nonce {} but the account's next nonce is {}", tx.nonce, a.nonce),
                ));
            }
            let need = tx
                .amount
                .checked_add(gas)
                .ok_or_else(|| fault(FaultClass::Overflow, format!("amount {} + gas {gas} overflows", tx.amount)))?;
            if a.balance < need {
                return Err(fault(
                    FaultClass::InsufficientBalance,
                    format!("balance {} is less than amount + gas = {need}", a.balance),
                ));
            }
            a.nonce = a.nonce.checked_add(1).ok_or_else(|| fault(FaultClass::Overflow, "nonce overflows"))?;
            if checked.kind == TxKind::Withdrawal {
                a.balance -= if ctx.semantics == Semantics::WithdrawalNotDebited { gas } else { need };
                ov.set_account(fi, a);
                ov.push_withdrawal(WithdrawalEntry {
                    tx_id: *tx_id,
                    batch_id: ctx.batch_id,
                    from: from_key,
                    l1_address: tx.to.clone(),
                    amount: tx.amount,
                });
            } else {
                let to_key = checked.to_key.ok_or_else(|| fault(FaultClass::MalformedTx, "no recipient"))?;
                if to_key == from_key {
                    if tx.to_index != Some(fi) {
                        return Err(fault(
                            FaultClass::MalformedTx,
                            "a self-transfer's to_index must equal its from_index",
                        ));
                    }
                    a.balance -= gas;
                    if ctx.semantics == Semantics::SelfTransferMints {
                        a.balance = a.balance.saturating_add(tx.amount);
                    }
                    ov.set_account(fi, a);
                } else {
                    a.balance -= need;
                    ov.set_account(fi, a);
                    let (ti, mut b, new) = recipient(ov, tx, &to_key)?;
                    b.balance = b.balance.checked_add(tx.amount).ok_or_else(|| {
                        fault(
                            FaultClass::Overflow,
                            format!("recipient balance {} + amount {} overflows", b.balance, tx.amount),
                        )
                    })?;
                    store(ov, ti, b, new);
                }
            }
            credit_treasury(ov, ctx, gas)
        }
        TxKind::Deposit => {
            let op = checked.outpoint.ok_or_else(|| fault(FaultClass::MalformedTx, "no outpoint"))?;
            let to_key = checked.to_key.ok_or_else(|| fault(FaultClass::MalformedTx, "no recipient"))?;
            if let Some(j) = ov.find_deposit(&op) {
                return Err(fault(
                    FaultClass::DoubleDeposit,
                    format!("outpoint {op} was already credited (deposit #{j})"),
                ));
            }
            if let DepositCheck::Facts(facts) = ctx.deposits {
                check_deposit_on_l1(facts, ctx, tx, &op, &to_key)?;
            }
            let (ti, mut b, new) = recipient(ov, tx, &to_key)?;
            b.balance = b.balance.checked_add(tx.amount).ok_or_else(|| {
                fault(
                    FaultClass::Overflow,
                    format!("recipient balance {} + deposit {} overflows", b.balance, tx.amount),
                )
            })?;
            store(ov, ti, b, new);
            ov.push_deposit(DepositEntry { outpoint: op, to: to_key, amount: tx.amount, batch_id: ctx.batch_id });
            Ok(())
        }
    }
}

/// Judge a deposit against L1: the outpoint pays the rune to the bridge, names this recipient,
/// carries exactly this amount, and has the profile's confirmations at the batch's L1 height.
pub fn check_deposit_on_l1(
    facts: &dyn L1Facts,
    ctx: &ExecContext<'_>,
    tx: &Tx,
    op: &crate::tx::OutPointRef,
    to_key: &AccountKey,
) -> Result<(), ExecError> {
    let bad = |r: String| fault(FaultClass::BadDeposit, r);
    let tip = facts.tip_height().map_err(|e| ExecError::L1(e.to_string()))?;
    if tip < ctx.l1_height {
        return Err(ExecError::L1(format!(
            "the L1 source is at height {tip}, behind the batch's L1 height {}",
            ctx.l1_height
        )));
    }
    let f = facts
        .deposit(op)
        .map_err(|e| ExecError::L1(e.to_string()))?
        .ok_or_else(|| bad(format!("outpoint {op} does not exist on L1 or carries no rune")))?;
    if !f.to_bridge {
        return Err(bad(format!("outpoint {op} does not pay the bridge")));
    }
    if f.recipient != Some(*to_key) {
        return Err(bad(format!("outpoint {op} names another L2 recipient than {}", tx.to)));
    }
    let credits = f.rune_amount.checked_mul(ctx.profile.credits_per_rune_unit());
    if credits != Some(tx.amount) {
        return Err(bad(format!(
            "outpoint {op} carries {} rune units, not the {} credits claimed",
            f.rune_amount, tx.amount
        )));
    }
    let confs = if f.height == 0 || f.height > ctx.l1_height { 0 } else { ctx.l1_height - f.height + 1 };
    if confs < ctx.profile.confirmations {
        return Err(bad(format!(
            "outpoint {op} has {confs} confirmations at L1 height {}, {} needed",
            ctx.l1_height, ctx.profile.confirmations
        )));
    }
    Ok(())
}
