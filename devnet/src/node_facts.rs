//! L1 facts read from a bitcoind node over JSON-RPC (for `replay --bitcoind`, `verify-proof --bitcoind`
//! and the devnet's own sequencer). A deposit fact: the outpoint's scriptPubKey is the profile's bridge,
//! the amount is what the tx's runestone edicts assign to that output for the profile's rune, the
//! recipient is the tx's `KRAY D` tag, and the height is the confirming block's.
//!
//! Limit (until the watcher's rune index lands, issue #4): edict amounts are taken as assigned; the
//! inputs' rune balances are not traced, so a runestone whose inputs hold too little is not caught here.
//!
//! [`NodeFacts`] is synchronous (the replayer's [`L1Facts`] is). It owns a small runtime; called from
//! inside an async runtime it runs the request on a scoped helper thread, so it never blocks a runtime
//! from within itself.

use crate::l1tx::{kray_payloads, KrayPayload};
use crate::rpc::RpcClient;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{ScriptBuf, Transaction, Txid};
use kray_replayer::address::AccountKey;
use kray_replayer::bridge::{BridgeDescriptor, InternalKey};
use kray_replayer::l1facts::{DepositFact, L1Error, L1Facts};
use kray_replayer::profile::InternalKeyKind;
use kray_replayer::tx::OutPointRef;
use kray_replayer::Profile;
use ordinals::{Artifact, RuneId, Runestone};
use serde_json::{json, Value};
use std::str::FromStr;
use thiserror::Error;

/// Why a node source cannot be set up.
#[derive(Debug, Error)]
pub enum NodeFactsError {
    /// The URL does not parse.
    #[error("--bitcoind {0:?} is not a URL: {1}")]
    Url(String, String),
    /// The profile's bridge keys are invalid.
    #[error("bridge: {0}")]
    Bridge(String),
    /// The profile's rune id is invalid.
    #[error("rune id {0:?}: {1}")]
    RuneId(String, String),
    /// The runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// L1 facts from a node.
pub struct NodeFacts {
    rt: Option<tokio::runtime::Runtime>,
    rpc: RpcClient,
    bridge: Option<ScriptBuf>,
    rune: Option<RuneId>,
}

impl Drop for NodeFacts {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime; shut it down in the background.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The bridge scriptPubKey a profile names, if it names bridge keys.
pub fn profile_bridge(profile: &Profile) -> Result<Option<BridgeDescriptor>, NodeFactsError> {
    match &profile.bridge {
        Some(b) => {
            let internal = match b.internal_key {
                InternalKeyKind::Nums => InternalKey::Nums,
                InternalKeyKind::Legacy => InternalKey::Legacy,
            };
            Ok(Some(
                BridgeDescriptor::from_hex_keys(&b.pubkeys, internal)
                    .map_err(|e| NodeFactsError::Bridge(e.to_string()))?,
            ))
        }
        None => Ok(None),
    }
}

impl NodeFacts {
    /// Connect to `url` (`http://user:pass@host:port`) for `profile`.
    pub fn connect(url: &str, profile: &Profile) -> Result<Self, NodeFactsError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| NodeFactsError::Url(url.to_string(), e.to_string()))?;
        let user = parsed.username().to_string();
        let pass = parsed.password().unwrap_or("").to_string();
        let mut bare = parsed.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let bridge = profile_bridge(profile)?.map(|b| b.script_pubkey());
        let rune = if profile.rune_id.is_empty() {
            None
        } else {
            Some(
                RuneId::from_str(&profile.rune_id)
                    .map_err(|e| NodeFactsError::RuneId(profile.rune_id.clone(), e.to_string()))?,
            )
        };
        Ok(Self { rt: Some(rt), rpc: RpcClient::new(bare.as_str(), user, pass), bridge, rune })
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, L1Error> {
        let rt = self.rt.as_ref().ok_or_else(|| L1Error("runtime shut down".into()))?;
        let run = || rt.block_on(self.rpc.call::<Value>(method, params));
        let res = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(run).join())
                .map_err(|_| L1Error(format!("{method}: helper thread panicked")))?
        } else {
            run()
        };
        res.map_err(|e| L1Error(format!("{method}: {e}")))
    }
}

impl L1Facts for NodeFacts {
    fn tip_height(&self) -> Result<u32, L1Error> {
        let v = self.call("getblockcount", json!([]))?;
        v.as_u64().and_then(|h| u32::try_from(h).ok()).ok_or_else(|| L1Error("getblockcount: not a height".into()))
    }

    fn deposit(&self, op: &OutPointRef) -> Result<Option<DepositFact>, L1Error> {
        // Without the bridge keys or the rune id no deposit can be judged: that is "cannot verify",
        // never a false bad-deposit.
        if self.bridge.is_none() || self.rune.is_none() {
            return Err(L1Error("the profile names no bridge keys or rune id, so deposits cannot be judged".into()));
        }
        let txid = Txid::from_str(&hex::encode(op.txid)).map_err(|e| L1Error(e.to_string()))?;
        let v = match self.call("getrawtransaction", json!([txid.to_string(), true])) {
            Ok(v) => v,
            // -5: no such transaction: the outpoint does not exist on L1.
            Err(e) if e.0.contains("-5") || e.0.contains("No such") => return Ok(None),
            Err(e) => return Err(e),
        };
        let hexstr = v.get("hex").and_then(Value::as_str).ok_or_else(|| L1Error("getrawtransaction: no hex".into()))?;
        let tx: Transaction = deserialize_hex(hexstr).map_err(|e| L1Error(format!("tx {txid}: {e}")))?;
        let Some(out) = tx.output.get(op.vout as usize) else { return Ok(None) };
        let height = match v.get("blockhash").and_then(Value::as_str) {
            Some(bh) => {
                let hdr = self.call("getblockheader", json!([bh]))?;
                hdr.get("height").and_then(Value::as_u64).and_then(|h| u32::try_from(h).ok()).unwrap_or(0)
            }
            None => 0,
        };
        let mut rune_amount: u128 = 0;
        if let (Some(Artifact::Runestone(rs)), Some(rune)) = (Runestone::decipher(&tx), self.rune) {
            for e in rs.edicts.iter().filter(|e| e.id == rune && e.output == op.vout) {
                rune_amount = rune_amount.saturating_add(e.amount);
            }
        }
        let recipient = kray_payloads(&tx).into_iter().find_map(|(_, p)| match p {
            KrayPayload::Deposit(k) => Some(AccountKey(k)),
            _ => None,
        });
        Ok(Some(DepositFact {
            outpoint: *op,
            to_bridge: self.bridge.as_ref().is_some_and(|b| *b == out.script_pubkey),
            rune_amount: u64::try_from(rune_amount).unwrap_or(u64::MAX),
            recipient,
            height,
        }))
    }
}
