//! Builders of the KRAY L1 transactions (anchor, challenge) from the devnet wallet. The payloads and
//! their parser are the replayer's (`kray_replayer::l1payload`), re-exported here.

pub use kray_replayer::l1payload::*;

use crate::wallet::{TxRequest, Wallet, WalletError};
use bitcoin::{FeeRate, Transaction};

/// Builds and signs an anchor transaction: output 0 is the anchor `OP_RETURN`, then change.
/// Coins in `exclude` (e.g. rune holders) are not spent.
pub fn build_anchor_tx(
    wallet: &Wallet,
    root: &[u8; 32],
    fee_rate: FeeRate,
    exclude: &std::collections::BTreeSet<bitcoin::OutPoint>,
) -> Result<Transaction, WalletError> {
    build_payload_tx(wallet, KrayPayload::Anchor(*root), fee_rate, exclude)
}

/// Builds and signs a challenge-marker transaction: output 0 is the marker, then change.
pub fn build_challenge_tx(
    wallet: &Wallet,
    batch_id: u64,
    proof_hash: &[u8; 32],
    fee_rate: FeeRate,
    exclude: &std::collections::BTreeSet<bitcoin::OutPoint>,
) -> Result<Transaction, WalletError> {
    build_payload_tx(wallet, KrayPayload::Challenge { batch_id, proof_hash: *proof_hash }, fee_rate, exclude)
}

fn build_payload_tx(
    wallet: &Wallet,
    payload: KrayPayload,
    fee_rate: FeeRate,
    exclude: &std::collections::BTreeSet<bitcoin::OutPoint>,
) -> Result<Transaction, WalletError> {
    let mut req = TxRequest::pay(vec![payload.to_txout()], fee_rate);
    req.exclude = exclude.clone();
    let tx = wallet.build(&req)?;
    tracing::info!(txid = %tx.compute_txid(), ?payload, "built KRAY payload tx");
    Ok(tx)
}
