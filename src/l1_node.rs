//! L1 facts read from a bitcoind node over JSON-RPC (for `replay --bitcoind` and
//! `verify-proof --bitcoind`). A deposit fact: the outpoint's scriptPubKey is the profile's bridge,
//! the amount is what the tx's runestone edicts assign to that output for the profile's rune, the
//! recipient is the tx's `KRAY D` tag, and the height is the confirming block's.
//!
//! Limit (until the watcher's rune index lands, issue #4): edict amounts are taken as assigned; the
//! inputs' rune balances are not traced, so a runestone whose inputs hold too little is not caught here.

use anyhow::{anyhow, Context};
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{ScriptBuf, Transaction, Txid};
use kray_devnet::l1tx::{kray_payloads, KrayPayload};
use kray_devnet::rpc::RpcClient;
use kray_replayer::address::AccountKey;
use kray_replayer::bridge::{BridgeDescriptor, InternalKey};
use kray_replayer::l1facts::{DepositFact, L1Error, L1Facts};
use kray_replayer::profile::InternalKeyKind;
use kray_replayer::tx::OutPointRef;
use kray_replayer::Profile;
use ordinals::{Artifact, RuneId, Runestone};
use serde_json::{json, Value};
use std::str::FromStr;

/// L1 facts from a node.
pub struct NodeFacts {
    rt: tokio::runtime::Runtime,
    rpc: RpcClient,
    bridge: Option<ScriptBuf>,
    rune: Option<RuneId>,
}

impl NodeFacts {
    /// Connect to `url` (`http://user:pass@host:port`) for `profile`.
    pub fn connect(url: &str, profile: &Profile) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--bitcoind {url:?} is not a URL"))?;
        let user = parsed.username().to_string();
        let pass = parsed.password().unwrap_or("").to_string();
        let mut bare = parsed.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let bridge = match &profile.bridge {
            Some(b) => {
                let internal = match b.internal_key {
                    InternalKeyKind::Nums => InternalKey::Nums,
                    InternalKeyKind::Legacy => InternalKey::Legacy,
                };
                Some(
                    BridgeDescriptor::from_hex_keys(&b.pubkeys, internal)
                        .map_err(|e| anyhow!("bridge: {e}"))?
                        .script_pubkey(),
                )
            }
            None => None,
        };
        let rune = if profile.rune_id.is_empty() {
            None
        } else {
            Some(RuneId::from_str(&profile.rune_id).map_err(|e| anyhow!("rune id {:?}: {e}", profile.rune_id))?)
        };
        Ok(Self { rt, rpc: RpcClient::new(bare.as_str(), user, pass), bridge, rune })
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, L1Error> {
        self.rt.block_on(self.rpc.call::<Value>(method, params)).map_err(|e| L1Error(format!("{method}: {e}")))
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
