//! A single-key P2TR wallet held in memory (BIP-86 key path, no script tree).
//!
//! It tracks its UTXOs by scanning the blocks it is told about (or the node's UTXO set with
//! `scantxoutset`), selects coins largest-first, and builds and signs transactions with the
//! `bitcoin` crate (key-path Schnorr, `SIGHASH_DEFAULT`), with change back to itself. It is funded
//! by mining to its own address: coinbase outputs mature after 100 blocks.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::key::{Keypair, TapTweak, XOnlyPublicKey};
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{
    taproot, Address, Amount, Block, BlockHash, FeeRate, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Witness,
};

use crate::rpc::{RpcClient, RpcError};

/// Blocks a coinbase output must wait before it can be spent.
pub const COINBASE_MATURITY: u32 = 100;

/// Smallest change output kept (the P2TR dust limit); less goes to the fee.
pub const P2TR_DUST: Amount = Amount::from_sat(330);

/// Default fee rate for devnet transactions: 2 sat/vB.
pub const DEFAULT_FEE_RATE: FeeRate = FeeRate::from_sat_per_kwu(500);

/// Errors of the wallet.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The seed hashed to an invalid secret key (probability ~2^-128).
    #[error("seed does not give a valid secret key")]
    InvalidSeed,
    /// Not enough spendable coins for the outputs plus the fee.
    #[error("insufficient funds: need {needed}, have {available} spendable")]
    InsufficientFunds {
        /// Outputs plus the fee at the point selection gave up.
        needed: Amount,
        /// Sum of the inputs that could be used.
        available: Amount,
    },
    /// A UTXO the caller asked to spend is not in the wallet.
    #[error("outpoint {0} is not a known wallet UTXO")]
    UnknownUtxo(OutPoint),
    /// Amount arithmetic overflowed.
    #[error("amount overflow")]
    AmountOverflow,
    /// The sighash could not be computed.
    #[error("sighash of input {index}: {reason}")]
    Sighash {
        /// Input index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The node reported a block height beyond `u32`.
    #[error("block height {0} out of range")]
    Height(u64),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// One unspent output of the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Its value and script.
    pub txout: TxOut,
    /// Height of the block holding it; `None` while unconfirmed.
    pub height: Option<u32>,
    /// Whether it is a coinbase output (subject to maturity).
    pub coinbase: bool,
}

impl Utxo {
    /// Whether it can go into a transaction for the next block when the tip is at `tip`.
    pub fn is_spendable(&self, tip: u32) -> bool {
        if !self.coinbase {
            return true;
        }
        match self.height {
            Some(h) => tip.saturating_add(1) >= h.saturating_add(COINBASE_MATURITY),
            None => false,
        }
    }
}

/// An input the caller will sign itself (e.g. a bridge script-path spend).
#[derive(Debug, Clone)]
pub struct ExternalInput {
    /// The outpoint spent.
    pub outpoint: OutPoint,
    /// The output spent (needed for Taproot sighashes and the fee).
    pub txout: TxOut,
    /// The input's sequence.
    pub sequence: Sequence,
    /// A witness of the final size, used only to compute the fee.
    pub placeholder_witness: Witness,
}

/// What to build: outputs, inputs that must be spent, and coins not to touch.
#[derive(Debug, Clone)]
pub struct TxRequest {
    /// Inputs signed by the caller; they come first, in this order.
    pub external_inputs: Vec<ExternalInput>,
    /// Wallet UTXOs that must be spent (e.g. rune holders); they follow the external inputs.
    pub must_spend: Vec<OutPoint>,
    /// Outputs, in order; change (if any) is appended after them.
    pub outputs: Vec<TxOut>,
    /// Fee rate.
    pub fee_rate: FeeRate,
    /// Wallet UTXOs that coin selection must not add (e.g. outputs holding runes).
    pub exclude: BTreeSet<OutPoint>,
}

impl TxRequest {
    /// A plain payment to `outputs` at `fee_rate`.
    pub fn pay(outputs: Vec<TxOut>, fee_rate: FeeRate) -> Self {
        Self { external_inputs: Vec::new(), must_spend: Vec::new(), outputs, fee_rate, exclude: BTreeSet::new() }
    }
}

/// A funded, not yet (fully) signed transaction.
#[derive(Debug, Clone)]
pub struct FundedTx {
    /// The transaction; wallet inputs are unsigned until [`Wallet::sign`], external inputs have
    /// empty witnesses for the caller to fill.
    pub tx: Transaction,
    /// The outputs spent, one per input (for sighashes).
    pub prevouts: Vec<TxOut>,
    /// Indices of the inputs the wallet signs.
    pub wallet_inputs: Vec<usize>,
    /// Index of the change output, if one was added.
    pub change_index: Option<usize>,
    /// The fee paid.
    pub fee: Amount,
}

/// The in-memory single-key P2TR wallet.
#[derive(Debug, Clone)]
pub struct Wallet {
    secp: Secp256k1<All>,
    keypair: Keypair,
    network: Network,
    address: Address,
    script_pubkey: ScriptBuf,
    utxos: BTreeMap<OutPoint, Utxo>,
    tip_height: u32,
}

impl Wallet {
    /// The wallet whose secret key is `sha256("kray-devnet/wallet" || seed)`.
    pub fn from_seed(seed: &[u8], network: Network) -> Result<Self, WalletError> {
        let mut data = b"kray-devnet/wallet".to_vec();
        data.extend_from_slice(seed);
        let digest = sha256::Hash::hash(&data);
        let sk = SecretKey::from_slice(digest.as_byte_array()).map_err(|_| WalletError::InvalidSeed)?;
        Ok(Self::from_secret_key(sk, network))
    }

    /// The wallet of secret key `sk`.
    pub fn from_secret_key(sk: SecretKey, network: Network) -> Self {
        let secp = Secp256k1::new();
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let (internal, _) = keypair.x_only_public_key();
        let address = Address::p2tr(&secp, internal, None, network);
        let script_pubkey = address.script_pubkey();
        Self { secp, keypair, network, address, script_pubkey, utxos: BTreeMap::new(), tip_height: 0 }
    }

    /// The BIP-86 address (P2TR of the key, no script tree).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The wallet's scriptPubKey.
    pub fn script_pubkey(&self) -> &ScriptBuf {
        &self.script_pubkey
    }

    /// The untweaked x-only public key (the BIP-86 internal key).
    pub fn public_key(&self) -> XOnlyPublicKey {
        self.keypair.x_only_public_key().0
    }

    /// The key pair (untweaked).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The network of the address.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The highest block height the wallet has seen.
    pub fn tip_height(&self) -> u32 {
        self.tip_height
    }

    /// All known UTXOs.
    pub fn utxos(&self) -> impl Iterator<Item = &Utxo> {
        self.utxos.values()
    }

    /// One UTXO by outpoint.
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&Utxo> {
        self.utxos.get(outpoint)
    }

    /// Sum of all known UTXOs (mature or not).
    pub fn balance(&self) -> Amount {
        self.utxos.values().map(|u| u.txout.value).sum()
    }

    /// Sum of the UTXOs spendable in the next block.
    pub fn spendable_balance(&self) -> Amount {
        self.utxos.values().filter(|u| u.is_spendable(self.tip_height)).map(|u| u.txout.value).sum()
    }

    /// Applies a block at `height`: removes spent UTXOs, adds (or confirms) outputs paying the
    /// wallet. Returns how many wallet UTXOs were added or removed.
    pub fn scan_block(&mut self, block: &Block, height: u32) -> usize {
        let mut changed = 0;
        for (i, tx) in block.txdata.iter().enumerate() {
            changed += self.apply_tx(tx, Some(height), i == 0);
        }
        self.tip_height = self.tip_height.max(height);
        changed
    }

    /// Applies a transaction the wallet broadcast (or saw) before it is mined.
    pub fn apply_unconfirmed(&mut self, tx: &Transaction) -> usize {
        self.apply_tx(tx, None, false)
    }

    fn apply_tx(&mut self, tx: &Transaction, height: Option<u32>, coinbase: bool) -> usize {
        let mut changed = 0;
        if !coinbase {
            for input in &tx.input {
                if self.utxos.remove(&input.previous_output).is_some() {
                    changed += 1;
                }
            }
        }
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            if out.script_pubkey != self.script_pubkey {
                continue;
            }
            let Ok(vout) = u32::try_from(vout) else {
                continue;
            };
            let outpoint = OutPoint { txid, vout };
            let entry = self.utxos.entry(outpoint).or_insert_with(|| {
                changed += 1;
                Utxo { outpoint, txout: out.clone(), height, coinbase }
            });
            if height.is_some() {
                entry.height = height;
            }
        }
        changed
    }

    /// Fetches and scans the blocks at heights `from..=to`.
    pub async fn scan_range(&mut self, rpc: &RpcClient, from: u32, to: u32) -> Result<(), WalletError> {
        for height in from..=to {
            let hash = rpc.get_block_hash(u64::from(height)).await?;
            let block = rpc.get_block(&hash).await?;
            self.scan_block(&block, height);
        }
        Ok(())
    }

    /// Mines `n` blocks to the wallet's address and scans them. Returns their hashes.
    pub async fn mine(&mut self, rpc: &RpcClient, n: u32) -> Result<Vec<BlockHash>, WalletError> {
        let hashes = rpc.generate_to_address(u64::from(n), &self.address).await?;
        let tip = rpc.get_block_count().await?;
        let tip = u32::try_from(tip).map_err(|_| WalletError::Height(tip))?;
        let first = tip.saturating_sub(u32::try_from(hashes.len()).unwrap_or(u32::MAX)) + 1;
        self.scan_range(rpc, first.min(tip), tip).await?;
        Ok(hashes)
    }

    /// Funds the wallet: mines 101 blocks to its address, so the first coinbase is mature.
    pub async fn fund(&mut self, rpc: &RpcClient) -> Result<Amount, WalletError> {
        self.mine(rpc, COINBASE_MATURITY + 1).await?;
        tracing::info!(address = %self.address, spendable = %self.spendable_balance(), "devnet wallet funded");
        Ok(self.spendable_balance())
    }

    /// Replaces the UTXO set with the node's view (`scantxoutset` on the wallet's script):
    /// confirmed outputs only.
    pub async fn sync_utxo_set(&mut self, rpc: &RpcClient) -> Result<(), WalletError> {
        let desc = format!("raw({})", hex::encode(self.script_pubkey.as_bytes()));
        let scan = rpc.scan_tx_out_set(&[desc]).await?;
        self.utxos = scan
            .unspents
            .into_iter()
            .map(|u| {
                let outpoint = OutPoint { txid: u.txid, vout: u.vout };
                let utxo = Utxo {
                    outpoint,
                    txout: TxOut { value: u.amount, script_pubkey: u.script_pubkey },
                    height: Some(u.height),
                    coinbase: u.coinbase,
                };
                (outpoint, utxo)
            })
            .collect();
        self.tip_height = scan.height;
        Ok(())
    }

    /// Selects inputs and adds change for `req`. Wallet inputs are left unsigned.
    pub fn fund_tx(&self, req: &TxRequest) -> Result<FundedTx, WalletError> {
        let out_sum = sum(req.outputs.iter().map(|o| o.value))?;
        let mut inputs: Vec<(TxIn, TxOut, bool)> = Vec::new();
        for ext in &req.external_inputs {
            let txin = TxIn {
                previous_output: ext.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: ext.sequence,
                witness: ext.placeholder_witness.clone(),
            };
            inputs.push((txin, ext.txout.clone(), false));
        }
        for op in &req.must_spend {
            let utxo = self.utxos.get(op).ok_or(WalletError::UnknownUtxo(*op))?;
            inputs.push((self.wallet_txin(*op), utxo.txout.clone(), true));
        }
        let used: BTreeSet<OutPoint> = inputs.iter().map(|(i, _, _)| i.previous_output).collect();
        let mut candidates: Vec<&Utxo> = self
            .utxos
            .values()
            .filter(|u| u.is_spendable(self.tip_height))
            .filter(|u| !used.contains(&u.outpoint) && !req.exclude.contains(&u.outpoint))
            .collect();
        candidates.sort_by_key(|u| std::cmp::Reverse(u.txout.value));
        let mut candidates = candidates.into_iter();

        loop {
            let in_sum = sum(inputs.iter().map(|(_, o, _)| o.value))?;
            let change_out = TxOut { value: Amount::ZERO, script_pubkey: self.script_pubkey.clone() };
            let mut tx = Transaction {
                version: Version::TWO,
                lock_time: LockTime::ZERO,
                input: inputs.iter().map(|(i, _, _)| i.clone()).collect(),
                output: req.outputs.clone(),
            };
            let fee_no_change = fee_for(&tx, req.fee_rate)?;
            tx.output.push(change_out);
            let fee_with_change = fee_for(&tx, req.fee_rate)?;

            let need_change = out_sum
                .checked_add(fee_with_change)
                .and_then(|a| a.checked_add(P2TR_DUST))
                .ok_or(WalletError::AmountOverflow)?;
            let need_plain = out_sum.checked_add(fee_no_change).ok_or(WalletError::AmountOverflow)?;
            let (change_index, fee) = if in_sum >= need_change {
                let idx = tx.output.len() - 1;
                tx.output[idx].value = in_sum - out_sum - fee_with_change;
                (Some(idx), fee_with_change)
            } else if in_sum >= need_plain {
                tx.output.pop();
                (None, in_sum - out_sum)
            } else {
                match candidates.next() {
                    Some(u) => {
                        inputs.push((self.wallet_txin(u.outpoint), u.txout.clone(), true));
                        continue;
                    }
                    None => return Err(WalletError::InsufficientFunds { needed: need_plain, available: in_sum }),
                }
            };
            let mut wallet_inputs = Vec::new();
            for (i, (_, _, mine)) in inputs.iter().enumerate() {
                if *mine {
                    wallet_inputs.push(i);
                }
            }
            // Placeholders only served the fee estimate.
            for txin in &mut tx.input {
                txin.witness = Witness::new();
            }
            tracing::debug!(inputs = tx.input.len(), outputs = tx.output.len(), %fee, "funded tx");
            return Ok(FundedTx {
                tx,
                prevouts: inputs.into_iter().map(|(_, o, _)| o).collect(),
                wallet_inputs,
                change_index,
                fee,
            });
        }
    }

    fn wallet_txin(&self, outpoint: OutPoint) -> TxIn {
        let mut witness = Witness::new();
        witness.push([0u8; 64]);
        TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness,
        }
    }

    /// Signs the wallet's inputs of `funded` (key path, `SIGHASH_DEFAULT`).
    pub fn sign(&self, funded: &mut FundedTx) -> Result<(), WalletError> {
        let tweaked = self.keypair.tap_tweak(&self.secp, None).to_keypair();
        for &index in &funded.wallet_inputs {
            let sighash = {
                let mut cache = SighashCache::new(&funded.tx);
                cache
                    .taproot_key_spend_signature_hash(index, &Prevouts::All(&funded.prevouts), TapSighashType::Default)
                    .map_err(|e| WalletError::Sighash { index, reason: e.to_string() })?
            };
            let msg = Message::from_digest(sighash.to_byte_array());
            let signature = self.secp.sign_schnorr(&msg, &tweaked);
            let sig = taproot::Signature { signature, sighash_type: TapSighashType::Default };
            if let Some(input) = funded.tx.input.get_mut(index) {
                input.witness = Witness::p2tr_key_spend(&sig);
            }
        }
        Ok(())
    }

    /// Funds and signs a transaction that has no external inputs.
    pub fn build(&self, req: &TxRequest) -> Result<Transaction, WalletError> {
        let mut funded = self.fund_tx(req)?;
        self.sign(&mut funded)?;
        Ok(funded.tx)
    }

    /// Pays `amount` to `script_pubkey` (plus change), signed.
    pub fn pay_to(
        &self,
        script_pubkey: ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        self.build(&TxRequest::pay(vec![TxOut { value: amount, script_pubkey }], fee_rate))
    }
}

fn sum(amounts: impl Iterator<Item = Amount>) -> Result<Amount, WalletError> {
    amounts.into_iter().try_fold(Amount::ZERO, |acc, a| acc.checked_add(a)).ok_or(WalletError::AmountOverflow)
}

fn fee_for(tx: &Transaction, rate: FeeRate) -> Result<Amount, WalletError> {
    rate.fee_vb(tx.vsize() as u64).ok_or(WalletError::AmountOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Txid;

    fn wallet() -> Wallet {
        Wallet::from_seed(b"unit", Network::Regtest).expect("wallet")
    }

    fn credit(w: &mut Wallet, n: u8, sats: u64, coinbase: bool, height: u32) -> OutPoint {
        let outpoint = OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 };
        w.utxos.insert(
            outpoint,
            Utxo {
                outpoint,
                txout: TxOut { value: Amount::from_sat(sats), script_pubkey: w.script_pubkey.clone() },
                height: Some(height),
                coinbase,
            },
        );
        outpoint
    }

    #[test]
    fn seed_is_deterministic_and_address_is_bip86() {
        let a = wallet();
        let b = wallet();
        assert_eq!(a.address(), b.address());
        assert_ne!(a.address(), Wallet::from_seed(b"other", Network::Regtest).expect("w").address());
        assert!(a.address().to_string().starts_with("bcrt1p"));
        let expected = Address::p2tr(&Secp256k1::new(), a.public_key(), None, Network::Regtest);
        assert_eq!(a.address(), &expected);
    }

    #[test]
    fn coinbase_maturity() {
        let u = Utxo { outpoint: OutPoint::null(), txout: TxOut::NULL, height: Some(1), coinbase: true };
        assert!(!u.is_spendable(99));
        assert!(u.is_spendable(100));
        assert!(!Utxo { height: None, ..u.clone() }.is_spendable(1000));
        assert!(Utxo { coinbase: false, height: None, ..u }.is_spendable(0));
    }

    #[test]
    fn builds_signed_payment_with_change_and_valid_signature() {
        let mut w = wallet();
        w.tip_height = 200;
        credit(&mut w, 1, 100_000, false, 10);
        let dest = ScriptBuf::new_op_return([1u8; 4]);
        let req = TxRequest::pay(vec![TxOut { value: Amount::from_sat(0), script_pubkey: dest }], DEFAULT_FEE_RATE);
        let mut funded = w.fund_tx(&req).expect("fund");
        assert_eq!(funded.change_index, Some(1));
        let change = funded.tx.output[1].value;
        assert_eq!(change + funded.fee, Amount::from_sat(100_000));
        w.sign(&mut funded).expect("sign");
        let tx = &funded.tx;
        // Fee covers at least 2 sat/vB of the signed transaction.
        assert!(funded.fee.to_sat() >= 2 * tx.vsize() as u64);
        // Verify the Schnorr signature against the tweaked output key.
        let sig = taproot::Signature::from_slice(&tx.input[0].witness[0]).expect("sig");
        let sighash = SighashCache::new(tx)
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&funded.prevouts), TapSighashType::Default)
            .expect("sighash");
        let (out_key, _) = w.public_key().tap_tweak(&w.secp, None);
        w.secp
            .verify_schnorr(
                &sig.signature,
                &Message::from_digest(sighash.to_byte_array()),
                &out_key.to_x_only_public_key(),
            )
            .expect("valid signature");
    }

    #[test]
    fn selection_respects_exclude_maturity_and_funds() {
        let mut w = wallet();
        w.tip_height = 150;
        let immature = credit(&mut w, 1, 5_000_000_000, true, 100);
        let excluded = credit(&mut w, 2, 1_000_000, false, 10);
        let ok = credit(&mut w, 3, 20_000, false, 10);
        let mut req = TxRequest::pay(
            vec![TxOut { value: Amount::from_sat(10_000), script_pubkey: w.script_pubkey.clone() }],
            DEFAULT_FEE_RATE,
        );
        req.exclude.insert(excluded);
        let f = w.fund_tx(&req).expect("fund");
        let spent: Vec<OutPoint> = f.tx.input.iter().map(|i| i.previous_output).collect();
        assert_eq!(spent, vec![ok]);
        assert!(!spent.contains(&immature));
        req.outputs[0].value = Amount::from_sat(50_000);
        assert!(matches!(w.fund_tx(&req), Err(WalletError::InsufficientFunds { .. })));
        req.must_spend.push(OutPoint::null());
        assert!(matches!(w.fund_tx(&req), Err(WalletError::UnknownUtxo(_))));
    }

    #[test]
    fn dust_change_goes_to_fee() {
        let mut w = wallet();
        w.tip_height = 10;
        credit(&mut w, 1, 10_400, false, 1);
        let req = TxRequest::pay(
            vec![TxOut { value: Amount::from_sat(10_000), script_pubkey: w.script_pubkey.clone() }],
            DEFAULT_FEE_RATE,
        );
        let f = w.fund_tx(&req).expect("fund");
        assert_eq!(f.change_index, None);
        assert_eq!(f.fee, Amount::from_sat(400));
    }

    #[test]
    fn scanning_tracks_spends_and_receipts() {
        let mut w = wallet();
        w.tip_height = 300;
        let op = credit(&mut w, 1, 100_000, false, 1);
        let tx = w.pay_to(w.script_pubkey.clone(), Amount::from_sat(40_000), DEFAULT_FEE_RATE).expect("tx");
        assert_eq!(w.apply_unconfirmed(&tx), 3);
        assert!(w.utxo(&op).is_none());
        assert_eq!(w.utxos().count(), 2);
        assert!(w.utxos().all(|u| u.height.is_none()));
        let block = Block {
            header: bitcoin::block::Header {
                version: bitcoin::block::Version::TWO,
                prev_blockhash: BlockHash::all_zeros(),
                merkle_root: bitcoin::TxMerkleNode::all_zeros(),
                time: 0,
                bits: bitcoin::CompactTarget::from_consensus(0),
                nonce: 0,
            },
            txdata: vec![tx],
        };
        // Index 0 is treated as the coinbase: it must not spend anything, but it pays us.
        w.scan_block(&block, 301);
        assert_eq!(w.tip_height(), 301);
        assert!(w.utxos().all(|u| u.height == Some(301)));
    }
}
