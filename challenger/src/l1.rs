//! The sender's view of the L1 node: a small trait ([`L1Client`]) so unit tests can script it, and its
//! bitcoind implementation ([`BitcoindL1`]) over the guardian's one bitcoind JSON-RPC client
//! ([`BitcoindRpc`], shared with the watcher's chain source: same logins, same login status).
//!
//! The guardian's coins come from `scantxoutset` on its own output script: the project's bitcoind is
//! built without the wallet, `scantxoutset` needs no wallet state, no import and no rescan, and it sees
//! exactly the confirmed UTXO set. Unconfirmed change is never spent, which also keeps every RBF bump
//! inside BIP-125 rule 2 (no new unconfirmed inputs). Transaction states come from
//! `getrawtransaction txid true`, which needs `-txindex` for confirmed transactions.

use std::future::Future;
use std::time::Duration;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Amount, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use kray_watcher::chain::{BitcoindAuth, BitcoindRpc, RpcError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::coins::Utxo;

/// bitcoind's "not found" error code (`RPC_INVALID_ADDRESS_OR_KEY`).
pub const RPC_NOT_FOUND: i64 = -5;
/// bitcoind's "already in the chain" error code (`RPC_VERIFY_ALREADY_IN_CHAIN`).
pub const RPC_ALREADY_IN_CHAIN: i64 = -27;

/// Where one of our transactions is, as the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainTxState {
    /// Mined in the best chain at this height.
    Confirmed {
        /// Block height.
        height: u64,
    },
    /// In the node's mempool.
    InMempool,
    /// Neither (never received, evicted, replaced, or reorged out and not re-accepted).
    Unknown,
}

/// L1 errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum L1Error {
    /// The node could not be reached or answered garbage: retry later.
    #[error("L1 node unreachable: {0}")]
    Transport(String),
    /// The node refused the login (HTTP 401 or an unusable cookie file): the operator must fix the
    /// credentials; see [`BitcoindRpc::auth_status`].
    #[error("L1 node rejected the credentials: {0}")]
    Unauthorized(String),
    /// The node answered with an error (e.g. a transaction rejected by policy).
    #[error("L1 node error {code}: {message}")]
    Rpc {
        /// bitcoind's error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer had an unexpected shape.
    #[error("cannot decode the L1 node's answer to {method}: {reason}")]
    Decode {
        /// The call.
        method: String,
        /// Why.
        reason: String,
    },
}

/// What the sender needs from an L1 node.
pub trait L1Client {
    /// Height of the best chain's tip.
    fn tip_height(&self) -> impl Future<Output = Result<u64, L1Error>> + Send;
    /// `estimatesmartfee`; `None` when the node has no estimate (always so on regtest).
    fn estimate_fee_rate(&self, conf_target: u16) -> impl Future<Output = Result<Option<FeeRate>, L1Error>> + Send;
    /// The confirmed unspent outputs paying `script`.
    fn utxos(&self, script: &ScriptBuf) -> impl Future<Output = Result<Vec<Utxo>, L1Error>> + Send;
    /// Broadcasts a signed transaction.
    fn send_raw_transaction(&self, tx: &Transaction) -> impl Future<Output = Result<Txid, L1Error>> + Send;
    /// Where a transaction is.
    fn tx_state(&self, txid: &Txid) -> impl Future<Output = Result<ChainTxState, L1Error>> + Send;
}

/// [`L1Client`] over bitcoind's JSON-RPC: the guardian's one bitcoind client
/// ([`BitcoindRpc`](kray_watcher::chain::BitcoindRpc)), with its logins (cookie file, user and password,
/// credentials in the URL) and its login status.
#[derive(Debug, Clone)]
pub struct BitcoindL1 {
    rpc: BitcoindRpc,
}

#[derive(Deserialize)]
struct ScanUnspent {
    txid: Txid,
    vout: u32,
    #[serde(rename = "scriptPubKey")]
    script_pubkey: ScriptBuf,
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    amount: Amount,
    #[serde(default)]
    coinbase: bool,
    height: u64,
}

#[derive(Deserialize)]
struct ScanResult {
    unspents: Vec<ScanUnspent>,
}

impl From<RpcError> for L1Error {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Transport(m) => L1Error::Transport(m),
            RpcError::Config(m) => L1Error::Transport(m),
            RpcError::Unauthorized { method, reason } => L1Error::Unauthorized(format!("{method}: {reason}")),
            RpcError::Rpc { code, message } => L1Error::Rpc { code, message },
            RpcError::Decode { method, reason } => L1Error::Decode { method, reason },
        }
    }
}

impl BitcoindL1 {
    /// A client for `url` with user and password and a per-request `timeout` (the password is never
    /// logged).
    pub fn new(url: &str, user: &str, password: &str, timeout: Duration) -> Result<Self, L1Error> {
        let auth = BitcoindAuth::UserPass { user: user.to_owned(), password: password.to_owned() };
        Ok(Self::from_rpc(BitcoindRpc::new(url, Some(auth), timeout)?))
    }

    /// A sender's client over an existing bitcoind client (shared with the chain source or not).
    pub fn from_rpc(rpc: BitcoindRpc) -> Self {
        Self { rpc }
    }

    /// The underlying client (its [`auth_status`](BitcoindRpc::auth_status) says whether bitcoind accepts
    /// the login).
    pub fn rpc(&self) -> &BitcoindRpc {
        &self.rpc
    }

    async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, L1Error> {
        Ok(self.rpc.call(method, params).await?)
    }
}

impl L1Client for BitcoindL1 {
    async fn tip_height(&self) -> Result<u64, L1Error> {
        self.call("getblockcount", json!([])).await
    }

    async fn estimate_fee_rate(&self, conf_target: u16) -> Result<Option<FeeRate>, L1Error> {
        let v: Value = self.call("estimatesmartfee", json!([conf_target])).await?;
        Ok(v.get("feerate").and_then(Value::as_f64).and_then(btc_per_kvb_to_rate))
    }

    async fn utxos(&self, script: &ScriptBuf) -> Result<Vec<Utxo>, L1Error> {
        let desc = format!("raw({})", hex::encode(script.as_bytes()));
        let scan: ScanResult = self.call("scantxoutset", json!(["start", [desc]])).await?;
        Ok(scan
            .unspents
            .into_iter()
            .map(|u| Utxo {
                outpoint: OutPoint { txid: u.txid, vout: u.vout },
                txout: TxOut { value: u.amount, script_pubkey: u.script_pubkey },
                height: u.height,
                coinbase: u.coinbase,
            })
            .collect())
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, L1Error> {
        self.call("sendrawtransaction", json!([serialize_hex(tx)])).await
    }

    async fn tx_state(&self, txid: &Txid) -> Result<ChainTxState, L1Error> {
        let v: Value = match self.call("getrawtransaction", json!([txid, true])).await {
            Ok(v) => v,
            Err(L1Error::Rpc { code: RPC_NOT_FOUND, .. }) => return Ok(ChainTxState::Unknown),
            Err(e) => return Err(e),
        };
        let confirmations = v.get("confirmations").and_then(Value::as_u64).unwrap_or(0);
        let Some(hash) = v.get("blockhash").and_then(Value::as_str).filter(|_| confirmations > 0) else {
            return Ok(ChainTxState::InMempool);
        };
        let hash: BlockHash = hash.parse().map_err(|e: bitcoin::hex::HexToArrayError| L1Error::Decode {
            method: "getrawtransaction".into(),
            reason: e.to_string(),
        })?;
        let header: Value = self.call("getblockheader", json!([hash, true])).await?;
        let height = header
            .get("height")
            .and_then(Value::as_u64)
            .ok_or_else(|| L1Error::Decode { method: "getblockheader".into(), reason: "no height".into() })?;
        Ok(ChainTxState::Confirmed { height })
    }
}

/// bitcoind's BTC/kvB fee rate as a [`FeeRate`] (sat per 1000 weight units = sat/kvB / 4).
pub fn btc_per_kvb_to_rate(btc_per_kvb: f64) -> Option<FeeRate> {
    let sat_per_kvb = (btc_per_kvb * 100_000_000.0).round();
    (sat_per_kvb.is_finite() && sat_per_kvb > 0.0).then(|| FeeRate::from_sat_per_kwu((sat_per_kvb as u64).div_ceil(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_estimates() {
        assert_eq!(btc_per_kvb_to_rate(0.00001), Some(FeeRate::from_sat_per_vb_u32(1)));
        assert_eq!(btc_per_kvb_to_rate(0.0002), Some(FeeRate::from_sat_per_vb_u32(20)));
        assert_eq!(btc_per_kvb_to_rate(-1.0), None);
        assert_eq!(btc_per_kvb_to_rate(f64::NAN), None);
    }

    #[tokio::test]
    async fn unreachable_node_is_a_transport_error() {
        let c = BitcoindL1::new("http://127.0.0.1:9", "u", "s3cret-pw", Duration::from_secs(2)).unwrap();
        assert!(!format!("{c:?}").contains("s3cret-pw"), "password never in Debug");
        assert!(matches!(c.tip_height().await, Err(L1Error::Transport(_))));
    }

    #[tokio::test]
    async fn a_refused_login_is_unauthorized() {
        // A node that refuses every login, as bitcoind does with a wrong password.
        let app =
            axum::Router::new().route("/", axum::routing::post(|| async { axum::http::StatusCode::UNAUTHORIZED }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let c = BitcoindL1::new(&format!("http://{addr}"), "u", "bad", Duration::from_secs(5)).unwrap();
        assert!(matches!(c.tip_height().await, Err(L1Error::Unauthorized(m)) if m.contains("user \"u\"")));
        assert!(c.rpc().auth_status().problem().is_some());
        // Credentials in the URL are used (and taken out of it).
        let c = BitcoindL1::from_rpc(
            BitcoindRpc::new(&format!("http://al:pw@{addr}"), None, Duration::from_secs(5)).unwrap(),
        );
        assert!(matches!(c.tip_height().await, Err(L1Error::Unauthorized(m)) if m.contains("from bitcoind.url")));
    }
}
