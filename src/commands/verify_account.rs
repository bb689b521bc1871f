//! `kray-guardian verify-account FILE`: checks an account proof (from `GET /v1/accounts/{address}`)
//! offline: the account leaf (its canonical encoding) and its Merkle path give the account root; with
//! the withdrawal and deposit roots that gives a state root (protocol §9.5) that must equal the
//! `new_state_root` of the signed batch header in the file, whose batch hash must be the anchored root
//! the file names. The file carries the chain's identity (profile, producers, genesis state root): the
//! chain id is recomputed from it and must be the header's, and the header must be signed by one of
//! those producers. `--chain-id` or `--genesis`/`--profile` pin the chain; unpinned, the command says
//! so on stderr (a file describing a chain of its own maker's is self-consistent). Whether the root
//! really is in the named L1 anchor tx (`OP_RETURN "KRAY" || batch hash`) can be checked on any block
//! explorer or node (`--bitcoind`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use kray_replayer::address::{format_l2_address, parse_l2_address};
use kray_replayer::hash::Hash32;
use kray_replayer::state::{Leaf, Roots};

use super::verify_proof::{not_pinned_notice, ChainPinArgs};
use crate::daemon::views::{AccountProof, ACCOUNT_PROOF_FORMAT, ACCOUNT_PROOF_VERSION};

/// Arguments of `verify-account`.
#[derive(clap::Args, Debug)]
pub struct VerifyAccountArgs {
    /// The account proof file.
    pub file: PathBuf,
    #[command(flatten)]
    pub pin: ChainPinArgs,
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
    /// The chain id, recomputed from the chain identity the file carries.
    pub chain_id: String,
    /// True when the chain id was pinned by `--chain-id` or `--genesis`.
    pub pinned: bool,
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

/// The format and version of a file, read before the rest so that an old format gets a clear answer.
#[derive(serde::Deserialize)]
struct FormatTag {
    format: Option<String>,
    version: Option<u32>,
}

/// Why a file of another format or version proves nothing, if it is one.
fn unsupported(text: &str) -> Option<String> {
    let tag: FormatTag = serde_json::from_str(text).ok()?;
    match (tag.format.as_deref(), tag.version) {
        (Some(ACCOUNT_PROOF_FORMAT), Some(ACCOUNT_PROOF_VERSION)) => None,
        (Some(ACCOUNT_PROOF_FORMAT), Some(1)) => Some(format!(
            "{ACCOUNT_PROOF_FORMAT} version 1 is no longer accepted: it does not carry the chain's identity \
             (profile, producers, genesis root), so its signer cannot be checked against the chain's producers; \
             fetch a new proof (version {ACCOUNT_PROOF_VERSION}) from a guardian"
        )),
        (f, v) => Some(format!(
            "not a {ACCOUNT_PROOF_FORMAT} version {ACCOUNT_PROOF_VERSION} file (format {f:?}, version {v:?})"
        )),
    }
}

/// Checks an account proof, against the pinned chain id when one is given; `Err` says why it does
/// not prove anything.
pub fn verify(p: &AccountProof, pin: Option<&Hash32>) -> Result<VerifiedAccount, String> {
    if p.format != ACCOUNT_PROOF_FORMAT || p.version != ACCOUNT_PROOF_VERSION {
        return Err(format!("not a {ACCOUNT_PROOF_FORMAT} version {ACCOUNT_PROOF_VERSION} file"));
    }
    // Who may sign: the chain id is recomputed from the identity the file carries, the header must
    // name it, and its signer must be one of that chain's producers.
    p.chain.profile.validate().map_err(|e| format!("the file's chain profile: {e}"))?;
    if p.chain.profile.network != p.network {
        return Err(format!("the file's network {} is not its chain's network {}", p.network, p.chain.profile.network));
    }
    let chain_id = p.chain.chain_id();
    let header = &p.batch.header;
    if header.chain_id != chain_id {
        return Err(format!(
            "batch {} is signed for chain {}, but the chain identity in the file gives chain {}",
            header.batch_id,
            hex::encode(header.chain_id),
            hex::encode(chain_id)
        ));
    }
    if !p.chain.is_producer(&header.producer) {
        return Err(format!(
            "batch {} is signed by {}, which is not a producer of chain {}",
            header.batch_id,
            hex::encode(header.producer),
            hex::encode(chain_id)
        ));
    }
    if !p.batch.signature_valid() {
        return Err(format!("batch {}'s producer signature does not verify", header.batch_id));
    }
    if let Some(want) = pin {
        if *want != chain_id {
            return Err(format!(
                "the file is of chain {}, not the pinned chain {}",
                hex::encode(chain_id),
                hex::encode(want)
            ));
        }
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
    if roots.state_root() != header.new_state_root {
        return Err(format!(
            "the proven state root {} is not batch {}'s new_state_root {}",
            hex::encode(roots.state_root()),
            header.batch_id,
            hex::encode(header.new_state_root)
        ));
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
        chain_id: hex::encode(chain_id),
        pinned: pin.is_some(),
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
    let pin = a.pin.resolve()?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let mut result = match unsupported(&text) {
        Some(why) => Err(format!("{}: {why}", a.file.display())),
        None => serde_json::from_str::<AccountProof>(&text)
            .map_err(|e| format!("{} is not a valid account proof file: {e}", a.file.display()))
            .and_then(|p| verify(&p, pin.as_ref())),
    };
    if let (Ok(v), None) = (&result, pin) {
        if let Some(id) = kray_replayer::hash::hex32(&v.chain_id) {
            not_pinned_notice("the account proof", &id);
        }
    }
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
                println!("{}", serde_json::json!({"result": "proven", "pinned": v.pinned, "proven": v}));
            } else {
                println!(
                    "PROVEN: account {} has balance {} (nonce {}) in the state after batch {} (state root {}), \
                     signed by producer {} (chain {}, {}); batch hash {} anchored in L1 tx {} at height {} \
                     {}",
                    v.address,
                    v.balance,
                    v.nonce,
                    v.batch_id,
                    v.state_root,
                    v.producer,
                    v.chain_id,
                    if v.pinned { "pinned" } else { "not pinned" },
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
    use crate::daemon::views::tests::{keypair, snapshot, test_chain, user_key};
    use kray_replayer::batch::SignedHeader;
    use kray_replayer::profile::L1Network;
    use kray_replayer::state::{Account, State};

    fn proof() -> AccountProof {
        let (snap, _) = snapshot(105);
        account_proof(&snap, &format_l2_address(&user_key(7), L1Network::Regtest)).expect("proof")
    }

    /// `p` rewritten to a one-account state where user 7 holds `u64::MAX`, its header re-signed by
    /// test key `signer` and anchored under its new hash.
    fn forged(mut p: AccountProof, signer: u8) -> AccountProof {
        let state =
            State::from_accounts(vec![Account { key: user_key(7), balance: u64::MAX, nonce: 0 }]).expect("state");
        let roots = state.roots();
        p.account = state.accounts()[0];
        p.index = 0;
        p.account_count = 1;
        p.account_proof = state.trees().0.prove(&[0]);
        p.withdrawals = crate::daemon::views::TreeRoot { root: roots.withdrawals.0, count: roots.withdrawals.1 };
        p.deposits = crate::daemon::views::TreeRoot { root: roots.deposits.0, count: roots.deposits.1 };
        let mut h = p.batch.header.clone();
        h.new_state_root = roots.state_root();
        h.producer = keypair(signer).x_only_public_key().0.serialize();
        p.batch = SignedHeader::sign(h, &keypair(signer));
        if let Some(a) = p.anchor.as_mut() {
            a.batch_hash = hex::encode(p.batch.header.hash());
        }
        p
    }

    #[test]
    fn a_served_proof_verifies_survives_json_and_pins() {
        let p = proof();
        let text = serde_json::to_string_pretty(&p).expect("json");
        assert!(unsupported(&text).is_none());
        let back: AccountProof = serde_json::from_str(&text).expect("parse");
        let v = verify(&back, None).expect("proven");
        assert_eq!(v.balance, 7000);
        assert_eq!(v.anchor_height, 100);
        assert!(!v.pinned);
        assert_eq!(v.chain_id, hex::encode(test_chain().chain_id()));
        assert!(verify(&back, Some(&test_chain().chain_id())).expect("pinned").pinned);
        assert!(verify(&back, Some(&[2u8; 32])).unwrap_err().contains("not the pinned chain"));
    }

    #[test]
    fn a_forged_balance_signed_by_an_outside_key_is_not_proven() {
        // The forger keeps the real chain identity: its key is not a producer of it.
        let f = forged(proof(), 9);
        assert!(verify(&f, None).unwrap_err().contains("not a producer"), "{:?}", verify(&f, None));
        // The forger describes a chain of its own (its key the producer) but keeps the real chain id in
        // the header: the id recomputed from the file's identity differs.
        let mut f = forged(proof(), 9);
        f.chain.producers = vec![hex::encode(keypair(9).x_only_public_key().0.serialize())];
        assert!(verify(&f, None).unwrap_err().contains("chain identity in the file"));
        // A chain entirely of the forger's is self-consistent: only the pin tells it apart.
        let mut own = proof();
        own.chain.producers = vec![hex::encode(keypair(9).x_only_public_key().0.serialize())];
        own.batch.header.chain_id = own.chain.chain_id();
        let f = forged(own, 9);
        assert_eq!(verify(&f, None).expect("self-consistent").balance, u64::MAX);
        assert!(verify(&f, Some(&test_chain().chain_id())).unwrap_err().contains("not the pinned chain"));
        // A file whose network is not its chain's.
        let mut p = proof();
        p.network = L1Network::Mainnet;
        assert!(verify(&p, None).unwrap_err().contains("network"));
    }

    #[test]
    fn an_old_format_file_is_refused_with_its_reason() {
        let mut j = serde_json::to_value(proof()).expect("json");
        j["version"] = 1.into();
        if let Some(o) = j.as_object_mut() {
            o.remove("chain");
        }
        let why = unsupported(&j.to_string()).expect("refused");
        assert!(why.contains("version 1") && why.contains("chain's identity"), "{why}");
        assert!(unsupported("{\"format\": \"kray-fraud-proof\", \"version\": 1}").is_some());
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
