//! A mempool flood for fee tests: many independent high-fee transactions, so that with small blocks
//! (`DevnetConfig::block_max_weight`) the next blocks are full of them and a low-fee transaction waits
//! until it is bumped above the flood's rate.
//!
//! How: one split transaction from the devnet wallet pays `n` equal coins to a separate flood key
//! ([`FLOOD_SEED`]) and is mined alone (`generateblock`, so its size does not matter); then every coin
//! is spent by its own one-input, one-output transaction at the flood's fee rate. The flood
//! transactions do not depend on each other (no chains, no package or cluster limits) and are smaller
//! than a KRAY anchor (≈111 vB against ≈158 vB), so the gap a full block leaves never fits an anchor.
//! Their outputs pay the flood key, never the devnet wallet, so the devnet's own coin selection never
//! builds on an unconfirmed flood transaction.

use std::collections::BTreeSet;

use bitcoin::{Amount, FeeRate, OutPoint, Transaction, TxOut, Txid};
use thiserror::Error;

use crate::wallet::{TxRequest, Wallet, WalletError, P2TR_DUST};

/// Seed of the flood key (`Wallet::from_seed`): its coins are the flood's and nobody else's.
pub const FLOOD_SEED: &[u8] = b"kray-devnet-flood";

/// Most transactions one flood may broadcast (the split transaction stays under the standard weight).
pub const MAX_FLOOD_TXS: usize = 2_000;

/// Virtual size of one flood transaction: one P2TR key-path input, one P2TR output.
pub const FLOOD_TX_VSIZE: u64 = 111;

/// Why a flood could not be built.
#[derive(Debug, Error)]
pub enum FloodError {
    /// Zero transactions, or more than [`MAX_FLOOD_TXS`].
    #[error("a flood needs between 1 and {MAX_FLOOD_TXS} transactions, not {0}")]
    Count(usize),
    /// The fee of one flood transaction overflows.
    #[error("fee rate {0} is too high for a flood transaction")]
    FeeRate(FeeRate),
    /// The devnet wallet cannot fund the split, or signing failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A flood transaction did not come out as one input and one output.
    #[error("flood transaction for {0} is not one input and one output")]
    Shape(OutPoint),
}

/// What [`crate::runner::Devnet::flood_mempool`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodReport {
    /// The split transaction (mined in its own block).
    pub split_txid: Txid,
    /// Height of the block that mined the split.
    pub split_height: u32,
    /// The flood transactions, all accepted by the node.
    pub txids: Vec<Txid>,
    /// Their target fee rate.
    pub fee_rate: FeeRate,
    /// Their total virtual size.
    pub vsize: u64,
}

/// The flood key's wallet.
pub fn flood_wallet(network: bitcoin::Network) -> Result<Wallet, FloodError> {
    Ok(Wallet::from_seed(FLOOD_SEED, network)?)
}

/// Value of each split coin: the flood transaction's fee at `fee_rate`, a change above dust, and a
/// margin.
pub fn coin_value(fee_rate: FeeRate) -> Result<Amount, FloodError> {
    let fee = fee_rate.fee_vb(FLOOD_TX_VSIZE + 10).ok_or(FloodError::FeeRate(fee_rate))?;
    fee.checked_add(P2TR_DUST).and_then(|a| a.checked_add(Amount::from_sat(1_000))).ok_or(FloodError::FeeRate(fee_rate))
}

/// The split: `n` coins of [`coin_value`] to the flood key, funded by `funder` at `split_rate` from
/// coins not in `exclude` (change back to `funder`). Unsigned inputs are signed.
pub fn build_split(
    funder: &Wallet,
    flood: &Wallet,
    n: usize,
    fee_rate: FeeRate,
    split_rate: FeeRate,
    exclude: &BTreeSet<OutPoint>,
) -> Result<Transaction, FloodError> {
    if n == 0 || n > MAX_FLOOD_TXS {
        return Err(FloodError::Count(n));
    }
    let value = coin_value(fee_rate)?;
    let outputs = vec![TxOut { value, script_pubkey: flood.script_pubkey().clone() }; n];
    let mut req = TxRequest::pay(outputs, split_rate);
    req.exclude = exclude.clone();
    Ok(funder.build(&req)?)
}

/// One flood transaction per output of `split` that pays the flood key: spends it whole, pays
/// `fee_rate` and returns the rest to the flood key.
pub fn build_flood_txs(flood: &Wallet, split: &Transaction, fee_rate: FeeRate) -> Result<Vec<Transaction>, FloodError> {
    let mut w = flood.clone();
    w.apply_unconfirmed(split);
    let split_txid = split.compute_txid();
    let coins: Vec<OutPoint> = w.utxos().map(|u| u.outpoint).filter(|o| o.txid == split_txid).collect();
    let all: BTreeSet<OutPoint> = coins.iter().copied().collect();
    let mut txs = Vec::with_capacity(coins.len());
    for op in coins {
        let mut req = TxRequest::pay(Vec::new(), fee_rate);
        req.must_spend = vec![op];
        req.exclude = all.iter().copied().filter(|o| *o != op).collect();
        let tx = w.build(&req)?;
        if tx.input.len() != 1 || tx.output.len() != 1 {
            return Err(FloodError::Shape(op));
        }
        txs.push(tx);
    }
    Ok(txs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::Network;

    fn funded() -> Wallet {
        let mut w = Wallet::from_seed(b"flood-test-funder", Network::Regtest).expect("wallet");
        // A confirmed, non-coinbase coin of 1 BTC.
        let coin = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 0 },
                ..Default::default()
            }],
            output: vec![TxOut { value: Amount::from_sat(100_000_000), script_pubkey: w.script_pubkey().clone() }],
        };
        let block = bitcoin::Block {
            header: bitcoin::block::Header {
                version: bitcoin::block::Version::TWO,
                prev_blockhash: bitcoin::BlockHash::all_zeros(),
                merkle_root: bitcoin::TxMerkleNode::all_zeros(),
                time: 0,
                bits: bitcoin::CompactTarget::from_consensus(0),
                nonce: 0,
            },
            txdata: vec![Transaction { input: vec![], output: vec![], ..coin.clone() }, coin],
        };
        w.scan_block(&block, 200);
        w
    }

    #[test]
    fn flood_txs_are_independent_small_and_pay_the_rate() {
        let funder = funded();
        let flood = flood_wallet(Network::Regtest).expect("flood");
        let rate = FeeRate::from_sat_per_vb_u32(10);
        let split =
            build_split(&funder, &flood, 25, rate, FeeRate::from_sat_per_vb_u32(2), &BTreeSet::new()).expect("split");
        let to_flood = split.output.iter().filter(|o| o.script_pubkey == *flood.script_pubkey()).count();
        assert_eq!(to_flood, 25);
        assert!(split
            .output
            .iter()
            .all(|o| o.script_pubkey != *flood.script_pubkey() || o.value == coin_value(rate).expect("v")));
        let txs = build_flood_txs(&flood, &split, rate).expect("flood");
        assert_eq!(txs.len(), 25);
        let split_txid = split.compute_txid();
        let mut spent = BTreeSet::new();
        for tx in &txs {
            let input = tx.input[0].previous_output;
            assert_eq!(input.txid, split_txid, "spends a split coin, not another flood tx");
            assert!(spent.insert(input), "each coin spent once");
            assert_eq!(tx.output[0].script_pubkey, *flood.script_pubkey(), "change stays with the flood key");
            assert!(!tx.input[0].witness.is_empty(), "signed");
            let vsize = tx.vsize() as u64;
            assert!(vsize <= FLOOD_TX_VSIZE, "{vsize} vB");
            let fee = coin_value(rate).expect("v") - tx.output[0].value;
            assert!(fee >= rate.fee_vb(vsize).expect("fee"), "pays at least the flood's rate");
            assert!(fee < FeeRate::from_sat_per_vb_u32(11).fee_vb(vsize).expect("fee"));
        }
    }

    #[test]
    fn bad_counts_and_rates_are_errors() {
        let funder = funded();
        let flood = flood_wallet(Network::Regtest).expect("flood");
        let rate = FeeRate::from_sat_per_vb_u32(10);
        let none = BTreeSet::new();
        assert!(matches!(build_split(&funder, &flood, 0, rate, rate, &none), Err(FloodError::Count(0))));
        assert!(matches!(
            build_split(&funder, &flood, MAX_FLOOD_TXS + 1, rate, rate, &none),
            Err(FloodError::Count(_))
        ));
        assert!(matches!(coin_value(FeeRate::MAX), Err(FloodError::FeeRate(_))));
        // The funder's only coin is excluded: nothing to fund the split with.
        let all: BTreeSet<OutPoint> = funder.utxos().map(|u| u.outpoint).collect();
        assert!(matches!(build_split(&funder, &flood, 3, rate, rate, &all), Err(FloodError::Wallet(_))));
    }
}
