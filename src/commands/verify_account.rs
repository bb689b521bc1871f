//! `kray-guardian verify-account FILE`: checks an account proof (from `GET /v1/accounts/{address}`)
//! offline: the account leaf (its canonical encoding) and its Merkle path give the account root; with
//! the withdrawal and deposit roots that gives a state root (protocol §9.5) that must equal the
//! `new_state_root` of the signed batch header in the file, whose producer signature must verify and
//! whose batch hash must be the anchored root the file names. Whether that root really is in the named
//! L1 anchor tx (`OP_RETURN "KRAY" || batch hash`) can be checked on any block explorer or node.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use kray_replayer::address::{format_l2_address, parse_l2_address};
use kray_replayer::state::{Leaf, Roots};

use crate::daemon::views::{AccountProof, ACCOUNT_PROOF_FORMAT};

/// Arguments of `verify-account`.
#[derive(clap::Args, Debug)]
pub struct VerifyAccountArgs {
    /// The account proof file.
    pub file: PathBuf,
    /// Also require this chain id (hex), e.g. from your own genesis (`kray-guardian replay` prints it).
    #[arg(long)]
    pub chain_id: Option<String>,
    /// Also check on this bitcoind (JSON-RPC URL with credentials, e.g. http://user:pass@127.0.0.1:18443)
    /// that the named anchor output is `OP_RETURN "KRAY" || batch hash` in its block on the best chain.
    #[arg(long)]
    pub bitcoind: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a valid account proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedAccount {
    /// The L2 address.
    pub address: String,
    /// Its balance (credits).
    pub balance: u64,
    /// Its next nonce.
    pub nonce: u64,
    /// The batch whose state it is.
    pub batch_id: u64,
    /// That batch's hash (the anchored root).
    pub batch_hash: String,
    /// The state root.
    pub state_root: String,
    /// The chain id.
    pub chain_id: String,
    /// The producer who signed the header.
    pub producer: String,
    /// The anchor tx and height named by the file.
    pub anchor_txid: String,
    /// The anchor output index.
    pub anchor_vout: u32,
    /// Anchor height.
    pub anchor_height: u64,
    /// Confirmations of the anchor on the node given with `--bitcoind` (checked there), if any.
    pub anchor_confirmations_on_l1: Option<u64>,
}

/// Checks an account proof; `Err` says why it does not prove anything.
pub fn verify(p: &AccountProof, chain_id: Option<&str>) -> Result<VerifiedAccount, String> {
    if p.format != ACCOUNT_PROOF_FORMAT || p.version != 1 {
        return Err(format!("not a {ACCOUNT_PROOF_FORMAT} version 1 file"));
    }
    let key = parse_l2_address(&p.address, p.network).map_err(|e| format!("address {}: {e}", p.address))?;
    if key != p.account.key {
        return Err(format!("the account leaf's key is not the key of {}", p.address));
    }
    if p.account_proof.leaf_count != p.account_count {
        return Err("the account proof is for another tree size".into());
    }
    let leaves: BTreeMap<u64, _> = [(p.index, p.account.leaf_hash())].into();
    let account_root = p.account_proof.root(&leaves, p.account_count).map_err(|e| format!("account proof: {e}"))?;
    let roots = Roots {
        accounts: (account_root, p.account_count),
        withdrawals: (p.withdrawals.root, p.withdrawals.count),
        deposits: (p.deposits.root, p.deposits.count),
    };
    let header = &p.batch.header;
    if roots.state_root() != header.new_state_root {
        return Err(format!(
            "the proven state root {} is not batch {}'s new_state_root {}",
            hex::encode(roots.state_root()),
            header.batch_id,
            hex::encode(header.new_state_root)
        ));
    }
    if !p.batch.signature_valid() {
        return Err(format!("batch {}'s producer signature does not verify", header.batch_id));
    }
    if let Some(want) = chain_id {
        if !want.trim().eq_ignore_ascii_case(&hex::encode(header.chain_id)) {
            return Err(format!("the batch is of chain {}, not {}", hex::encode(header.chain_id), want.trim()));
        }
    }
    let batch_hash = hex::encode(header.hash());
    let Some(anchor) = &p.anchor else {
        return Err(format!("batch {} ({batch_hash}) was not anchored on L1 when the proof was made", header.batch_id));
    };
    if !anchor.batch_hash.eq_ignore_ascii_case(&batch_hash) {
        return Err(format!("the anchored root {} is not the batch hash {batch_hash}", anchor.batch_hash));
    }
    Ok(VerifiedAccount {
        address: format_l2_address(&key, p.network),
        balance: p.account.balance,
        nonce: p.account.nonce,
        batch_id: header.batch_id,
        batch_hash,
        state_root: hex::encode(header.new_state_root),
        chain_id: hex::encode(header.chain_id),
        producer: hex::encode(header.producer),
        anchor_txid: anchor.txid.clone(),
        anchor_vout: anchor.vout,
        anchor_height: anchor.height,
        anchor_confirmations_on_l1: None,
    })
}

/// Checks on bitcoind that output `anchor_vout` of tx `anchor_txid` in the best-chain block at
/// `anchor_height` is `OP_RETURN "KRAY" || batch hash`; `Ok(Ok(confirmations))` when it is,
/// `Ok(Err(why))` when it is not, `Err` when the node cannot be asked.
async fn anchor_on_l1(url: &str, v: &VerifiedAccount) -> anyhow::Result<Result<u64, String>> {
    let (url, user, password) = kray_devnet::guardian::split_credentials(url);
    let rpc = kray_devnet::rpc::RpcClient::new(url, user, password);
    let tip = rpc.get_block_count().await.context("asking bitcoind for its height")?;
    if v.anchor_height > tip {
        return Ok(Err(format!("the node is at height {tip}, below the anchor height {}", v.anchor_height)));
    }
    let hash = rpc.get_block_hash(v.anchor_height).await.context("asking bitcoind for the anchor block")?;
    let block = rpc.get_block(&hash).await.context("reading the anchor block")?;
    let Some(tx) = block.txdata.iter().find(|t| t.compute_txid().to_string() == v.anchor_txid) else {
        return Ok(Err(format!("tx {} is not in the best-chain block at height {}", v.anchor_txid, v.anchor_height)));
    };
    let root = kray_replayer::hash::hex32(&v.batch_hash).unwrap_or_default();
    let want = kray_replayer::l1payload::anchor_script(&root);
    match tx.output.get(v.anchor_vout as usize) {
        Some(out) if out.script_pubkey == want => Ok(Ok(tip - v.anchor_height + 1)),
        _ => Ok(Err(format!(
            "output {} of tx {} is not OP_RETURN \"KRAY\" || {}",
            v.anchor_vout, v.anchor_txid, v.batch_hash
        ))),
    }
}

/// Run `verify-account`; exit 0 proven, 4 not proven, 1 error (unreadable file, node unreachable).
pub fn run(a: &VerifyAccountArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let mut result = serde_json::from_str::<AccountProof>(&text)
        .map_err(|e| format!("{} is not a valid account proof file: {e}", a.file.display()))
        .and_then(|p| verify(&p, a.chain_id.as_deref()));
    if let (Ok(v), Some(url)) = (&mut result, &a.bitcoind) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
        match rt.block_on(anchor_on_l1(url, v))? {
            Ok(confirmations) => v.anchor_confirmations_on_l1 = Some(confirmations),
            Err(why) => result = Err(why),
        }
    }
    match result {
        Ok(v) => {
            if a.json {
                println!("{}", serde_json::json!({"result": "proven", "proven": v}));
            } else {
                println!(
                    "PROVEN: account {} has balance {} (nonce {}) in the state after batch {} (state root {}), \
                     signed by producer {} (chain {}); batch hash {} anchored in L1 tx {} at height {} \
                     {}",
                    v.address,
                    v.balance,
                    v.nonce,
                    v.batch_id,
                    v.state_root,
                    v.producer,
                    v.chain_id,
                    v.batch_hash,
                    v.anchor_txid,
                    v.anchor_height,
                    match v.anchor_confirmations_on_l1 {
                        Some(c) => format!("(checked on bitcoind: {c} confirmations)"),
                        None => "(check that tx's OP_RETURN is \"KRAY\" || batch hash on any Bitcoin node or \
                                 explorer, or pass --bitcoind URL)"
                            .to_string(),
                    }
                );
            }
            Ok(0)
        }
        Err(why) => {
            if a.json {
                println!("{}", serde_json::json!({"result": "not-proven", "detail": why}));
            } else {
                println!("NOT PROVEN: {why}");
            }
            Ok(4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::views::account_proof;
    use crate::daemon::views::tests::{snapshot, user_key};
    use kray_replayer::profile::L1Network;

    fn proof() -> AccountProof {
        let (snap, _) = snapshot(105);
        account_proof(&snap, &format_l2_address(&user_key(7), L1Network::Regtest)).expect("proof")
    }

    #[test]
    fn a_served_proof_verifies_and_survives_json() {
        let p = proof();
        let text = serde_json::to_string_pretty(&p).expect("json");
        let back: AccountProof = serde_json::from_str(&text).expect("parse");
        let v = verify(&back, None).expect("proven");
        assert_eq!(v.balance, 7000);
        assert_eq!(v.anchor_height, 100);
        assert!(verify(&back, Some(&hex::encode([1u8; 32]))).is_ok());
        assert!(verify(&back, Some(&hex::encode([2u8; 32]))).unwrap_err().contains("chain"));
    }

    #[test]
    fn tampering_is_not_proven() {
        let mut p = proof();
        p.account.balance += 1;
        assert!(verify(&p, None).unwrap_err().contains("new_state_root"));
        let mut p = proof();
        p.index = 0;
        assert!(verify(&p, None).is_err());
        let mut p = proof();
        p.address = format_l2_address(&user_key(8), L1Network::Regtest);
        assert!(verify(&p, None).unwrap_err().contains("key"));
        let mut p = proof();
        p.batch.header.total_gas += 1;
        assert!(verify(&p, None).is_err(), "a re-hashed header breaks the signature or the anchor");
        let mut p = proof();
        p.anchor = None;
        assert!(verify(&p, None).unwrap_err().contains("not anchored"));
        let mut p = proof();
        if let Some(a) = p.anchor.as_mut() {
            a.batch_hash = "00".repeat(32);
        }
        assert!(verify(&p, None).unwrap_err().contains("anchored root"));
        let mut p = proof();
        p.withdrawals.count += 1;
        assert!(verify(&p, None).is_err());
    }
}
