//! Runes on regtest for the devnet: etch a premined rune, transfer it with edicts, deposit it to
//! the KRAY bridge, and pay it out of the bridge (2-of-3 script path, or — for a LEGACY bridge —
//! the single signer's key path, the fault the guardian audits).
//!
//! Runestones are built with [`ordinals::Runestone::encipher`]. A [`RuneLedger`] follows rune
//! balances per outpoint over the blocks it is given, with the allocation rules of `ord`
//! (edicts in order, `output == n` splits between non-`OP_RETURN` outputs, the rest to the pointer
//! or the first non-`OP_RETURN` output, cenotaphs burn), which live in the pure
//! [`kray_replayer::runes::allocate`] shared with the watcher. It covers what the devnet does: premined
//! etchings without a name (reserved names, so no commit-reveal); named etchings and mints are
//! not followed.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{self, TapNodeHash};
use bitcoin::{Amount, Block, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxOut, Txid, Witness};
use kray_replayer::bridge::{BridgeDescriptor, BridgeError, SIGNERS};
use kray_replayer::runes::{allocate_artifact, Balances, TxContext};
use ordinals::{Artifact, Edict, Etching, RuneId, Runestone};

use crate::l1tx::KrayPayload;
use crate::wallet::{ExternalInput, FundedTx, TxRequest, Wallet, WalletError};

/// Value of every output created to hold runes (the conventional 546 sats).
pub const RUNE_OUTPUT_VALUE: Amount = Amount::from_sat(546);

/// Output layout of a deposit transaction: the bridge output receiving the runes.
pub const DEPOSIT_BRIDGE_VOUT: u32 = 0;
/// Output layout of a deposit transaction: the `KRAY D` tag naming the L2 recipient.
pub const DEPOSIT_TAG_VOUT: u32 = 1;
/// Output layout of a deposit transaction: the runestone.
pub const DEPOSIT_RUNESTONE_VOUT: u32 = 2;
/// Output layout of a deposit transaction: the depositor's rune change (the pointer).
pub const DEPOSIT_RUNE_CHANGE_VOUT: u32 = 3;

/// Errors building rune transactions.
#[derive(Debug, thiserror::Error)]
pub enum RunesError {
    /// The wallet could not fund or sign.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The bridge descriptor refused (e.g. fewer than two signatures).
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// Not enough of the rune where it was needed.
    #[error("insufficient {rune}: need {needed}, have {available}")]
    InsufficientRunes {
        /// The rune.
        rune: RuneId,
        /// Amount asked for.
        needed: u128,
        /// Amount available.
        available: u128,
    },
    /// The outpoint is not one the ledger knows as holding runes.
    #[error("outpoint {0} holds no runes known to the ledger")]
    UnknownRuneOutput(OutPoint),
    /// The outpoint is not an output of this bridge.
    #[error("outpoint {0} is not an output of the bridge")]
    NotBridgeOutput(OutPoint),
    /// A signer key is not one of the bridge's federation keys.
    #[error("key {0} is not a federation key of the bridge")]
    NotAFederationKey(String),
    /// The key cannot spend the bridge by the key path (it is not the internal key).
    #[error("the bridge's key path is not spendable with key {0}")]
    KeyPathNotSpendable(String),
    /// An output value is below the 546-sat rune output minimum.
    #[error("output value {0} is below {RUNE_OUTPUT_VALUE}")]
    DustOutput(Amount),
    /// A sighash could not be computed.
    #[error("sighash: {0}")]
    Sighash(String),
}

pub use kray_replayer::runes::EtchedRune;

/// Runes held by one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuneOutput {
    /// The output itself.
    pub txout: TxOut,
    /// Amount per rune.
    pub balances: BTreeMap<RuneId, u128>,
}

/// Rune balances per outpoint, following the blocks applied to it.
#[derive(Debug, Clone, Default)]
pub struct RuneLedger {
    outputs: BTreeMap<OutPoint, RuneOutput>,
    etched: BTreeMap<RuneId, EtchedRune>,
    burned: BTreeMap<RuneId, u128>,
    applied: HashSet<Txid>,
}

impl RuneLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies every transaction of the block at `height`, in order.
    pub fn apply_block(&mut self, block: &Block, height: u64) {
        for (index, tx) in block.txdata.iter().enumerate() {
            match u32::try_from(index) {
                Ok(index) => self.apply_tx(tx, height, index),
                Err(_) => tracing::warn!(height, "block has more than 2^32 transactions"),
            }
        }
    }

    /// Applies one confirmed transaction (`tx_index` is its position in the block at `height`).
    /// A transaction already applied is ignored.
    pub fn apply_tx(&mut self, tx: &Transaction, height: u64, tx_index: u32) {
        let txid = tx.compute_txid();
        if !self.applied.insert(txid) {
            return;
        }
        let inputs: Vec<Balances> = tx
            .input
            .iter()
            .map(|input| self.outputs.remove(&input.previous_output).map(|o| o.balances).unwrap_or_default())
            .collect();
        let ctx = TxContext { height, tx_index, ..TxContext::default() };
        let artifact = Runestone::decipher(tx);
        if artifact.as_ref().and_then(Artifact::mint).is_some() {
            tracing::debug!(%txid, "rune mints are not followed by the devnet ledger");
        }
        let allocation = allocate_artifact(tx, artifact.as_ref(), &inputs, &ctx);
        for (id, amount) in allocation.burned {
            add(self.burned.entry(id).or_default(), amount);
        }
        for (vout, balances) in allocation.outputs {
            let Some(txout) = tx.output.get(vout as usize) else {
                continue;
            };
            self.outputs.insert(OutPoint { txid, vout }, RuneOutput { txout: txout.clone(), balances });
        }
        if let Some(e) = allocation.etched {
            tracing::info!(id = %e.id, rune = %e.rune, premine = e.premine, "rune etched");
            self.etched.insert(e.id, e);
        }
    }

    /// The runes held by `outpoint`.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&RuneOutput> {
        self.outputs.get(outpoint)
    }

    /// The amount of `rune` held by `outpoint`.
    pub fn balance(&self, outpoint: &OutPoint, rune: RuneId) -> u128 {
        self.outputs.get(outpoint).and_then(|o| o.balances.get(&rune)).copied().unwrap_or(0)
    }

    /// The outpoints paying `script_pubkey` that hold `rune`, with the amounts.
    pub fn outputs_of_script(&self, script_pubkey: &ScriptBuf, rune: RuneId) -> Vec<(OutPoint, u128)> {
        self.outputs
            .iter()
            .filter(|(_, o)| &o.txout.script_pubkey == script_pubkey)
            .filter_map(|(op, o)| o.balances.get(&rune).map(|a| (*op, *a)))
            .filter(|(_, a)| *a > 0)
            .collect()
    }

    /// Total `rune` held by outputs paying `script_pubkey`.
    pub fn balance_of_script(&self, script_pubkey: &ScriptBuf, rune: RuneId) -> u128 {
        self.outputs_of_script(script_pubkey, rune).iter().map(|(_, a)| *a).fold(0u128, u128::saturating_add)
    }

    /// Every outpoint holding runes (for coin selection to leave alone).
    pub fn rune_outpoints(&self) -> BTreeSet<OutPoint> {
        self.outputs.keys().copied().collect()
    }

    /// A rune the ledger saw etched.
    pub fn etched(&self, id: RuneId) -> Option<&EtchedRune> {
        self.etched.get(&id)
    }

    /// The rune etched by transaction `txid`, if any.
    pub fn etched_by(&self, txid: &Txid) -> Option<&EtchedRune> {
        self.etched.values().find(|e| &e.txid == txid)
    }

    /// Amount of `rune` burned (cenotaphs, `OP_RETURN` allocations, no eligible output).
    pub fn burned(&self, rune: RuneId) -> u128 {
        self.burned.get(&rune).copied().unwrap_or(0)
    }
}

fn add(slot: &mut u128, amount: u128) {
    *slot = slot.saturating_add(amount);
}

fn rune_txout(script_pubkey: ScriptBuf) -> TxOut {
    TxOut { value: RUNE_OUTPUT_VALUE, script_pubkey }
}

fn runestone_txout(stone: &Runestone) -> TxOut {
    TxOut { value: Amount::ZERO, script_pubkey: stone.encipher() }
}

/// Picks wallet outpoints holding `rune` until they add up to `amount`.
fn select_rune_inputs(
    wallet: &Wallet,
    ledger: &RuneLedger,
    rune: RuneId,
    amount: u128,
) -> Result<Vec<OutPoint>, RunesError> {
    let mut held: Vec<(OutPoint, u128)> = ledger
        .outputs_of_script(wallet.script_pubkey(), rune)
        .into_iter()
        .filter(|(op, _)| wallet.utxo(op).is_some())
        .collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.1));
    let mut picked = Vec::new();
    let mut total = 0u128;
    for (op, a) in &held {
        if total >= amount {
            break;
        }
        picked.push(*op);
        total = total.saturating_add(*a);
    }
    if total < amount || amount == 0 {
        return Err(RunesError::InsufficientRunes { rune, needed: amount, available: total });
    }
    Ok(picked)
}

fn rune_request(ledger: &RuneLedger, must_spend: Vec<OutPoint>, outputs: Vec<TxOut>, fee_rate: FeeRate) -> TxRequest {
    TxRequest { external_inputs: Vec::new(), must_spend, outputs, fee_rate, exclude: ledger.rune_outpoints() }
}

/// Builds and signs an etching: output 0 (the wallet, 546 sats) receives the whole premine via the
/// pointer, output 1 is the runestone (no rune name: a reserved name, so no commit-reveal;
/// divisibility 0), then BTC change. The rune id is known once mined: see
/// [`RuneLedger::etched_by`].
pub fn build_etch_tx(
    wallet: &Wallet,
    ledger: &RuneLedger,
    premine: u128,
    symbol: Option<char>,
    fee_rate: FeeRate,
) -> Result<Transaction, RunesError> {
    let stone = Runestone {
        edicts: Vec::new(),
        etching: Some(Etching {
            divisibility: Some(0),
            premine: Some(premine),
            rune: None,
            spacers: None,
            symbol,
            terms: None,
            turbo: false,
        }),
        mint: None,
        pointer: Some(0),
    };
    let outputs = vec![rune_txout(wallet.script_pubkey().clone()), runestone_txout(&stone)];
    let tx = wallet.build(&rune_request(ledger, Vec::new(), outputs, fee_rate))?;
    tracing::info!(txid = %tx.compute_txid(), premine, "built rune etching");
    Ok(tx)
}

/// Builds and signs a transfer of `rune` from the wallet: output `i` (546 sats) pays
/// `transfers[i].0` and receives `transfers[i].1` by an edict; output `n` is the wallet's rune
/// change (the pointer); output `n + 1` is the runestone; then BTC change.
pub fn build_transfer_tx(
    wallet: &Wallet,
    ledger: &RuneLedger,
    rune: RuneId,
    transfers: &[(ScriptBuf, u128)],
    fee_rate: FeeRate,
) -> Result<Transaction, RunesError> {
    let total = transfers.iter().map(|(_, a)| *a).fold(0u128, u128::saturating_add);
    let inputs = select_rune_inputs(wallet, ledger, rune, total)?;
    let mut outputs: Vec<TxOut> = transfers.iter().map(|(spk, _)| rune_txout(spk.clone())).collect();
    let edicts = transfers
        .iter()
        .enumerate()
        .map(|(i, (_, amount))| Edict { id: rune, amount: *amount, output: u32::try_from(i).unwrap_or(u32::MAX) })
        .collect();
    let change_vout = u32::try_from(outputs.len()).unwrap_or(u32::MAX);
    outputs.push(rune_txout(wallet.script_pubkey().clone()));
    outputs.push(runestone_txout(&Runestone { edicts, etching: None, mint: None, pointer: Some(change_vout) }));
    let tx = wallet.build(&rune_request(ledger, inputs, outputs, fee_rate))?;
    tracing::info!(txid = %tx.compute_txid(), %rune, total, "built rune transfer");
    Ok(tx)
}

/// What a deposit sends where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositSpec {
    /// The rune deposited.
    pub rune: RuneId,
    /// The amount deposited (L1 units; divisibility 0).
    pub amount: u128,
    /// The 32-byte L2 account key credited (the `KRAY D` tag).
    pub l2_account: [u8; 32],
    /// Value of the bridge output, at least [`RUNE_OUTPUT_VALUE`].
    pub bridge_value: Amount,
}

/// What a bridge payout pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutSpec {
    /// The bridge output spent.
    pub bridge_utxo: OutPoint,
    /// The rune paid out.
    pub rune: RuneId,
    /// The amount paid out.
    pub amount: u128,
    /// Who receives it.
    pub destination: ScriptBuf,
}

/// Builds and signs a deposit of `spec.amount` of `spec.rune` to `bridge` for the L2 account
/// `spec.l2_account`. Layout: output 0 the bridge (P2TR of the descriptor, `spec.bridge_value`
/// ≥ 546 sats) receiving the amount by an edict, output 1 the `KRAY D` tag, output 2 the
/// runestone, output 3 the depositor's rune change (pointer), then BTC change.
pub fn build_deposit_tx(
    wallet: &Wallet,
    ledger: &RuneLedger,
    bridge: &BridgeDescriptor,
    spec: &DepositSpec,
    fee_rate: FeeRate,
) -> Result<Transaction, RunesError> {
    let DepositSpec { rune, amount, l2_account, bridge_value } = *spec;
    if bridge_value < RUNE_OUTPUT_VALUE {
        return Err(RunesError::DustOutput(bridge_value));
    }
    let inputs = select_rune_inputs(wallet, ledger, rune, amount)?;
    let stone = Runestone {
        edicts: vec![Edict { id: rune, amount, output: DEPOSIT_BRIDGE_VOUT }],
        etching: None,
        mint: None,
        pointer: Some(DEPOSIT_RUNE_CHANGE_VOUT),
    };
    let outputs = vec![
        TxOut { value: bridge_value, script_pubkey: bridge.script_pubkey() },
        KrayPayload::Deposit(l2_account).to_txout(),
        runestone_txout(&stone),
        rune_txout(wallet.script_pubkey().clone()),
    ];
    let tx = wallet.build(&rune_request(ledger, inputs, outputs, fee_rate))?;
    tracing::info!(txid = %tx.compute_txid(), %rune, amount, account = %hex::encode(l2_account), "built bridge deposit");
    Ok(tx)
}

fn bridge_input(
    ledger: &RuneLedger,
    bridge: &BridgeDescriptor,
    outpoint: OutPoint,
    placeholder_witness: Witness,
) -> Result<(ExternalInput, BTreeMap<RuneId, u128>), RunesError> {
    let out = ledger.output(&outpoint).ok_or(RunesError::UnknownRuneOutput(outpoint))?;
    if out.txout.script_pubkey != bridge.script_pubkey() {
        return Err(RunesError::NotBridgeOutput(outpoint));
    }
    Ok((
        ExternalInput {
            outpoint,
            txout: out.txout.clone(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            placeholder_witness,
        },
        out.balances.clone(),
    ))
}

/// Builds and signs a payout from the bridge by the 2-of-3 script path: input 0 spends
/// `spec.bridge_utxo`, signed by `signers` (two or three federation key pairs); the wallet adds
/// fee inputs and change. Output 0 (546 sats) pays `spec.destination` and receives `spec.amount`
/// of `spec.rune` by an edict; whatever else the bridge output held goes back to a new bridge output (the
/// pointer); then the runestone and BTC change.
pub fn build_bridge_payout_tx(
    wallet: &Wallet,
    ledger: &RuneLedger,
    bridge: &BridgeDescriptor,
    signers: &[Keypair],
    spec: &PayoutSpec,
    fee_rate: FeeRate,
) -> Result<Transaction, RunesError> {
    let PayoutSpec { bridge_utxo, rune, amount, ref destination } = *spec;
    let secp = Secp256k1::new();
    let keys = bridge.xonly_keys();
    let mut positions = Vec::with_capacity(signers.len());
    for kp in signers {
        let x = kp.x_only_public_key().0;
        let i = keys.iter().position(|k| *k == x).ok_or_else(|| RunesError::NotAFederationKey(x.to_string()))?;
        positions.push((i, kp));
    }
    let dummy = taproot::Signature {
        signature: bitcoin::secp256k1::schnorr::Signature::from_slice(&[1u8; 64])
            .map_err(|e| RunesError::Sighash(e.to_string()))?,
        sighash_type: TapSighashType::Default,
    };
    let mut placeholder_sigs: [Option<taproot::Signature>; SIGNERS] = [None; SIGNERS];
    for (i, _) in &positions {
        if let Some(slot) = placeholder_sigs.get_mut(*i) {
            *slot = Some(dummy);
        }
    }
    let placeholder = bridge.script_path_witness(&placeholder_sigs)?;
    let (input, balances) = bridge_input(ledger, bridge, bridge_utxo, placeholder)?;
    let available = balances.get(&rune).copied().unwrap_or(0);
    if amount == 0 || amount > available {
        return Err(RunesError::InsufficientRunes { rune, needed: amount, available });
    }
    let leftover = balances.iter().any(|(id, a)| *a > 0 && (*id != rune || *a > amount));
    let mut outputs = vec![rune_txout(destination.clone())];
    let pointer = if leftover {
        outputs.push(rune_txout(bridge.script_pubkey()));
        1
    } else {
        0
    };
    outputs.push(runestone_txout(&Runestone {
        edicts: vec![Edict { id: rune, amount, output: 0 }],
        etching: None,
        mint: None,
        pointer: Some(pointer),
    }));
    let mut req = rune_request(ledger, Vec::new(), outputs, fee_rate);
    req.external_inputs.push(input);
    let mut funded = wallet.fund_tx(&req)?;
    wallet.sign(&mut funded)?;

    let sighash = script_path_sighash(&funded, bridge)?;
    let msg = Message::from_digest(sighash);
    let mut sigs: [Option<taproot::Signature>; SIGNERS] = [None; SIGNERS];
    for (i, kp) in positions {
        if let Some(slot) = sigs.get_mut(i) {
            *slot = Some(taproot::Signature {
                signature: secp.sign_schnorr(&msg, kp),
                sighash_type: TapSighashType::Default,
            });
        }
    }
    let witness = bridge.script_path_witness(&sigs)?;
    if let Some(txin) = funded.tx.input.get_mut(0) {
        txin.witness = witness;
    }
    tracing::info!(txid = %funded.tx.compute_txid(), %rune, amount, "built 2-of-3 bridge payout");
    Ok(funded.tx)
}

fn script_path_sighash(funded: &FundedTx, bridge: &BridgeDescriptor) -> Result<[u8; 32], RunesError> {
    let mut cache = SighashCache::new(&funded.tx);
    cache
        .taproot_script_spend_signature_hash(
            0,
            &Prevouts::All(&funded.prevouts),
            bridge.leaf_hash(),
            TapSighashType::Default,
        )
        .map(|h| h.to_byte_array())
        .map_err(|e| RunesError::Sighash(e.to_string()))
}

/// Builds and signs a key-path sweep of a bridge output by ONE key — possible only when that
/// key is the bridge's internal key (the LEGACY bridge of the KRAY JavaScript). Input 0 spends
/// `bridge_utxo` by the key path with the tweaked key; output 0 (546 sats) pays `destination`
/// and, with no runestone, receives every rune of the input; the wallet adds fee inputs and
/// change. This is the fault the guardian must raise its highest alert on.
pub fn build_key_path_sweep_tx(
    wallet: &Wallet,
    ledger: &RuneLedger,
    bridge: &BridgeDescriptor,
    bridge_utxo: OutPoint,
    signer: &Keypair,
    destination: ScriptBuf,
    fee_rate: FeeRate,
) -> Result<Transaction, RunesError> {
    let secp = Secp256k1::new();
    let root = TapNodeHash::from_byte_array(bridge.leaf_hash().to_byte_array());
    let tweaked = signer.tap_tweak(&secp, Some(root)).to_keypair();
    let x = signer.x_only_public_key().0;
    if tweaked.x_only_public_key().0 != bridge.output_key().to_x_only_public_key() {
        return Err(RunesError::KeyPathNotSpendable(x.to_string()));
    }
    let mut placeholder = Witness::new();
    placeholder.push([0u8; 64]);
    let (input, _) = bridge_input(ledger, bridge, bridge_utxo, placeholder)?;
    let mut req = rune_request(ledger, Vec::new(), vec![rune_txout(destination)], fee_rate);
    req.external_inputs.push(input);
    let mut funded = wallet.fund_tx(&req)?;
    wallet.sign(&mut funded)?;
    let sighash = {
        let mut cache = SighashCache::new(&funded.tx);
        cache
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&funded.prevouts), TapSighashType::Default)
            .map_err(|e| RunesError::Sighash(e.to_string()))?
    };
    let sig = taproot::Signature {
        signature: secp.sign_schnorr(&Message::from_digest(sighash.to_byte_array()), &tweaked),
        sighash_type: TapSighashType::Default,
    };
    if let Some(txin) = funded.tx.input.get_mut(0) {
        txin.witness = Witness::p2tr_key_spend(&sig);
    }
    tracing::warn!(txid = %funded.tx.compute_txid(), key = %x, "built single-key KEY-PATH sweep of the bridge");
    Ok(funded.tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::transaction::Version;
    use bitcoin::{Network, TxIn};
    use kray_replayer::bridge::InternalKey;
    use ordinals::Rune;

    fn tx(inputs: Vec<OutPoint>, outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs.into_iter().map(|previous_output| TxIn { previous_output, ..TxIn::default() }).collect(),
            output: outputs,
        }
    }

    fn spk(n: u8) -> ScriptBuf {
        ScriptBuf::from_bytes(vec![0x51, 0x20].into_iter().chain([n; 32]).collect())
    }

    fn etch(ledger: &mut RuneLedger, premine: u128) -> (RuneId, OutPoint) {
        let stone = Runestone {
            etching: Some(Etching { divisibility: Some(0), premine: Some(premine), ..Etching::default() }),
            pointer: Some(0),
            ..Runestone::default()
        };
        let t = tx(vec![OutPoint::null()], vec![rune_txout(spk(1)), runestone_txout(&stone)]);
        ledger.apply_tx(&t, 840, 7);
        let id = RuneId { block: 840, tx: 7 };
        (id, OutPoint { txid: t.compute_txid(), vout: 0 })
    }

    #[test]
    fn etching_credits_premine_with_reserved_name() {
        let mut l = RuneLedger::new();
        let (id, op) = etch(&mut l, 1_000);
        assert_eq!(l.balance(&op, id), 1_000);
        let e = l.etched(id).expect("etched");
        assert_eq!(e.rune, Rune::reserved(840, 7));
        assert!(e.rune.is_reserved());
        assert_eq!(l.etched_by(&op.txid).map(|e| e.id), Some(id));
    }

    #[test]
    fn edicts_pointer_and_default_output() {
        let mut l = RuneLedger::new();
        let (id, op) = etch(&mut l, 1_000);
        let stone = Runestone {
            edicts: vec![Edict { id, amount: 100, output: 0 }, Edict { id, amount: 50, output: 1 }],
            pointer: Some(2),
            ..Runestone::default()
        };
        let t = tx(vec![op], vec![rune_txout(spk(2)), rune_txout(spk(3)), rune_txout(spk(1)), runestone_txout(&stone)]);
        l.apply_tx(&t, 841, 1);
        let txid = t.compute_txid();
        assert_eq!(l.balance(&op, id), 0, "input is spent");
        assert_eq!(l.balance(&OutPoint { txid, vout: 0 }, id), 100);
        assert_eq!(l.balance(&OutPoint { txid, vout: 1 }, id), 50);
        assert_eq!(l.balance(&OutPoint { txid, vout: 2 }, id), 850);
        assert_eq!(l.balance_of_script(&spk(1), id), 850);
        // No runestone: everything to the first non-OP_RETURN output.
        let t2 = tx(
            vec![OutPoint { txid, vout: 2 }],
            vec![TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new_op_return([1u8; 2]) }, rune_txout(spk(4))],
        );
        l.apply_tx(&t2, 842, 1);
        assert_eq!(l.balance_of_script(&spk(4), id), 850);
    }

    #[test]
    fn split_edict_and_cenotaph_burn() {
        let mut l = RuneLedger::new();
        let (id, op) = etch(&mut l, 10);
        let stone = Runestone { edicts: vec![Edict { id, amount: 0, output: 3 }], ..Runestone::default() };
        // Outputs: 3 with the runestone at index 2, so output 3 == n splits among 0 and 1.
        let t = tx(vec![op], vec![rune_txout(spk(2)), rune_txout(spk(3)), runestone_txout(&stone)]);
        l.apply_tx(&t, 841, 1);
        let txid = t.compute_txid();
        assert_eq!(l.balance(&OutPoint { txid, vout: 0 }, id), 5);
        assert_eq!(l.balance(&OutPoint { txid, vout: 1 }, id), 5);
        // A runestone with an unknown even tag is a cenotaph: inputs burn.
        let bad = ScriptBuf::from_bytes(vec![0x6a, 0x5d, 0x02, 0x7e, 0x01]);
        let t2 = tx(
            vec![OutPoint { txid, vout: 0 }],
            vec![rune_txout(spk(5)), TxOut { value: Amount::ZERO, script_pubkey: bad }],
        );
        assert!(matches!(Runestone::decipher(&t2), Some(Artifact::Cenotaph(_))));
        l.apply_tx(&t2, 842, 1);
        assert_eq!(l.burned(id), 5);
        assert_eq!(l.balance_of_script(&spk(5), id), 0);
    }

    #[test]
    fn deposit_layout_and_runestone_decode() {
        let mut l = RuneLedger::new();
        let mut w = Wallet::from_seed(b"runes-unit", Network::Regtest).expect("w");
        // Fund the wallet and give it runes via a synthetic etching to its own script.
        let fund = tx(
            vec![OutPoint::null()],
            vec![TxOut { value: Amount::from_sat(100_000), script_pubkey: w.script_pubkey().clone() }],
        );
        let stone = Runestone {
            etching: Some(Etching { divisibility: Some(0), premine: Some(500), ..Etching::default() }),
            pointer: Some(0),
            ..Runestone::default()
        };
        let etch_tx = tx(
            vec![OutPoint { txid: fund.compute_txid(), vout: 9 }],
            vec![rune_txout(w.script_pubkey().clone()), runestone_txout(&stone)],
        );
        w.apply_unconfirmed(&fund);
        w.apply_unconfirmed(&etch_tx);
        l.apply_tx(&etch_tx, 200, 1);
        let id = RuneId { block: 200, tx: 1 };
        let keys: Vec<_> = (1u8..=3)
            .map(|i| {
                let mut b = [0u8; 32];
                b[31] = i;
                bitcoin::secp256k1::PublicKey::from_secret_key(
                    &Secp256k1::new(),
                    &SecretKey::from_slice(&b).expect("sk"),
                )
            })
            .collect();
        let bridge = BridgeDescriptor::new(&keys, InternalKey::Nums).expect("bridge");
        let account = [0x42u8; 32];
        let mut spec = DepositSpec { rune: id, amount: 120, l2_account: account, bridge_value: RUNE_OUTPUT_VALUE };
        let fee = FeeRate::from_sat_per_vb_u32(2);
        let d = build_deposit_tx(&w, &l, &bridge, &spec, fee).expect("deposit");
        assert_eq!(d.output[0].script_pubkey, bridge.script_pubkey());
        assert_eq!(crate::l1tx::parse_kray_payload(&d.output[1].script_pubkey), Some(KrayPayload::Deposit(account)));
        assert_eq!(d.output[3].script_pubkey, *w.script_pubkey());
        let Some(Artifact::Runestone(rs)) = Runestone::decipher(&d) else { panic!("no runestone") };
        assert_eq!(rs.edicts, vec![Edict { id, amount: 120, output: 0 }]);
        assert_eq!(rs.pointer, Some(DEPOSIT_RUNE_CHANGE_VOUT));
        // The rune-holding input is spent, the 100k coin pays the fee.
        assert!(d.input.iter().any(|i| i.previous_output == OutPoint { txid: etch_tx.compute_txid(), vout: 0 }));
        l.apply_tx(&d, 201, 1);
        assert_eq!(l.balance(&OutPoint { txid: d.compute_txid(), vout: 0 }, id), 120);
        assert_eq!(l.balance(&OutPoint { txid: d.compute_txid(), vout: 3 }, id), 380);
        // Too much is refused, and so is a dust bridge output.
        spec.amount = 10_000;
        assert!(matches!(build_deposit_tx(&w, &l, &bridge, &spec, fee), Err(RunesError::InsufficientRunes { .. })));
        spec.amount = 1;
        spec.bridge_value = Amount::from_sat(330);
        assert!(matches!(build_deposit_tx(&w, &l, &bridge, &spec, fee), Err(RunesError::DustOutput(_))));
    }
}
