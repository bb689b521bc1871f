//! A small async JSON-RPC client for bitcoind (basic auth over HTTP), with typed helpers for the
//! calls the devnet makes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Amount, Block, BlockHash, FeeRate, ScriptBuf, Transaction, Txid};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// bitcoind's error code while it is still starting ("Loading block index…").
pub const RPC_IN_WARMUP: i64 = -28;

/// Errors of [`RpcClient`].
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The HTTP request failed (connection refused, timeout, …).
    #[error("HTTP transport error calling {method}: {source}")]
    Transport {
        /// The RPC method.
        method: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// bitcoind answered with a non-JSON body and an HTTP error status (e.g. 401 bad credentials).
    #[error("HTTP status {status} calling {method}: {body}")]
    Status {
        /// The RPC method.
        method: String,
        /// The HTTP status code.
        status: u16,
        /// The response body (possibly empty).
        body: String,
    },
    /// bitcoind returned a JSON-RPC error object.
    #[error("RPC error {code} calling {method}: {message}")]
    Rpc {
        /// The RPC method.
        method: String,
        /// bitcoind's error code (e.g. -28 warming up, -25 verify error, -26 rejected).
        code: i64,
        /// bitcoind's error message.
        message: String,
    },
    /// The result did not have the expected shape.
    #[error("cannot decode the result of {method}: {reason}")]
    Decode {
        /// The RPC method.
        method: String,
        /// What went wrong.
        reason: String,
    },
}

impl RpcError {
    /// The bitcoind error code, when this is a JSON-RPC error.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One entry of `testmempoolaccept`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MempoolAcceptResult {
    /// The transaction id.
    pub txid: Txid,
    /// Whether the transaction would be accepted.
    pub allowed: Option<bool>,
    /// The reason for rejection, when rejected.
    #[serde(rename = "reject-reason")]
    pub reject_reason: Option<String>,
    /// Virtual size, when accepted.
    pub vsize: Option<u64>,
}

/// The fee part of a `getmempoolentry` answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MempoolFees {
    /// The transaction's own fee.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub base: Amount,
}

/// The fields of `getmempoolentry` the devnet uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MempoolEntry {
    /// Virtual size in vbytes.
    pub vsize: u64,
    /// Weight in weight units.
    pub weight: u64,
    /// Chain height when the transaction entered the mempool.
    pub height: u64,
    /// Fees.
    pub fees: MempoolFees,
}

/// One unspent output found by `scantxoutset`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScanUnspent {
    /// Transaction id.
    pub txid: Txid,
    /// Output index.
    pub vout: u32,
    /// The output script.
    #[serde(rename = "scriptPubKey")]
    pub script_pubkey: ScriptBuf,
    /// The output value.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub amount: Amount,
    /// Whether it is a coinbase output.
    #[serde(default)]
    pub coinbase: bool,
    /// Height of the block holding it.
    pub height: u32,
}

/// The result of `scantxoutset start`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScanResult {
    /// Chain height of the scanned UTXO set.
    pub height: u32,
    /// The unspent outputs found.
    pub unspents: Vec<ScanUnspent>,
    /// Sum of their values.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub total_amount: Amount,
}

/// A JSON-RPC client for one bitcoind.
#[derive(Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
    next_id: AtomicU64,
}

impl RpcClient {
    /// A client for `url` (e.g. `http://127.0.0.1:18443`) with HTTP basic auth.
    pub fn new(url: impl Into<String>, user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_timeout(url, user, password, Duration::from_secs(60))
    }

    /// Like [`RpcClient::new`] with a per-request timeout.
    pub fn with_timeout(
        url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        // Building a client with only a timeout does not fail in practice; fall back to the
        // default client (no timeout) rather than panicking if it ever does.
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { http, url: url.into(), user: user.into(), password: password.into(), next_id: AtomicU64::new(1) }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params` (a JSON array) and decodes the result as `T`.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        tracing::trace!(method, %params, "bitcoind rpc call");
        let resp = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .json(&body)
            .send()
            .await
            .map_err(|source| RpcError::Transport { method: method.to_string(), source })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| RpcError::Transport { method: method.to_string(), source })?;
        let reply: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return Err(RpcError::Status { method: method.to_string(), status: status.as_u16(), body: text }),
        };
        if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Rpc {
                method: method.to_string(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            });
        }
        if !status.is_success() {
            return Err(RpcError::Status { method: method.to_string(), status: status.as_u16(), body: text });
        }
        let result = reply.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result)
            .map_err(|e| RpcError::Decode { method: method.to_string(), reason: e.to_string() })
    }

    /// `getblockchaininfo`, undecoded.
    pub async fn get_blockchain_info(&self) -> Result<Value, RpcError> {
        self.call("getblockchaininfo", json!([])).await
    }

    /// `getblockcount`: the height of the tip.
    pub async fn get_block_count(&self) -> Result<u64, RpcError> {
        self.call("getblockcount", json!([])).await
    }

    /// `getblockhash height`.
    pub async fn get_block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        self.call("getblockhash", json!([height])).await
    }

    /// `getblock hash 0`: the raw block, decoded.
    pub async fn get_block(&self, hash: &BlockHash) -> Result<Block, RpcError> {
        let hex: String = self.call("getblock", json!([hash, 0])).await?;
        decode_hex("getblock", &hex)
    }

    /// `getblock hash 2`: the block as JSON with decoded transactions.
    pub async fn get_block_verbose(&self, hash: &BlockHash) -> Result<Value, RpcError> {
        self.call("getblock", json!([hash, 2])).await
    }

    /// `getrawtransaction txid false`: the raw transaction, decoded (needs `-txindex` for
    /// confirmed transactions not in the wallet's or mempool's view).
    pub async fn get_raw_transaction(&self, txid: &Txid) -> Result<Transaction, RpcError> {
        let hex: String = self.call("getrawtransaction", json!([txid, false])).await?;
        decode_hex("getrawtransaction", &hex)
    }

    /// `getrawtransaction txid true`: the verbose JSON (includes `blockhash` and `confirmations`
    /// once mined).
    pub async fn get_raw_transaction_verbose(&self, txid: &Txid) -> Result<Value, RpcError> {
        self.call("getrawtransaction", json!([txid, true])).await
    }

    /// `sendrawtransaction hex`, returning the txid.
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        self.call("sendrawtransaction", json!([serialize_hex(tx)])).await
    }

    /// `testmempoolaccept [hex…]`.
    pub async fn test_mempool_accept(&self, txs: &[Transaction]) -> Result<Vec<MempoolAcceptResult>, RpcError> {
        let hexes: Vec<String> = txs.iter().map(serialize_hex).collect();
        self.call("testmempoolaccept", json!([hexes])).await
    }

    /// `getmempoolentry txid`.
    pub async fn get_mempool_entry(&self, txid: &Txid) -> Result<MempoolEntry, RpcError> {
        self.call("getmempoolentry", json!([txid])).await
    }

    /// `generatetoaddress n address`: mines `n` blocks paying the coinbase to `address`.
    pub async fn generate_to_address(&self, n: u64, address: &Address) -> Result<Vec<BlockHash>, RpcError> {
        self.call("generatetoaddress", json!([n, address.to_string()])).await
    }

    /// `invalidateblock hash`.
    pub async fn invalidate_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        let _: Value = self.call("invalidateblock", json!([hash])).await?;
        Ok(())
    }

    /// `reconsiderblock hash`.
    pub async fn reconsider_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        let _: Value = self.call("reconsiderblock", json!([hash])).await?;
        Ok(())
    }

    /// `estimatesmartfee conf_target`: `None` when bitcoind has no estimate (always so on a fresh
    /// regtest chain).
    pub async fn estimate_smart_fee(&self, conf_target: u16) -> Result<Option<FeeRate>, RpcError> {
        let v: Value = self.call("estimatesmartfee", json!([conf_target])).await?;
        Ok(v.get("feerate").and_then(Value::as_f64).and_then(|btc_per_kvb| {
            let sat_per_kvb = (btc_per_kvb * 100_000_000.0).round();
            if sat_per_kvb.is_finite() && sat_per_kvb >= 0.0 {
                // FeeRate counts sat per 1000 weight units = sat/kvB / 4.
                Some(FeeRate::from_sat_per_kwu(sat_per_kvb as u64 / 4))
            } else {
                None
            }
        }))
    }

    /// `scantxoutset start [descriptors…]`, e.g. `addr(bcrt1p…)` or `raw(5120…)`.
    pub async fn scan_tx_out_set(&self, descriptors: &[String]) -> Result<ScanResult, RpcError> {
        self.call("scantxoutset", json!(["start", descriptors])).await
    }
}

fn decode_hex<T: bitcoin::consensus::Decodable>(method: &str, hex: &str) -> Result<T, RpcError> {
    deserialize_hex(hex).map_err(|e| RpcError::Decode { method: method.to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_error_is_typed() {
        // Port 9 (discard) on localhost is not an HTTP server: the call must fail without panic.
        let c = RpcClient::with_timeout("http://127.0.0.1:9", "u", "p", Duration::from_secs(2));
        let err = c.get_block_count().await.expect_err("no server");
        assert!(matches!(err, RpcError::Transport { .. }), "{err:?}");
        assert_eq!(err.code(), None);
    }

    #[test]
    fn decodes_mempool_accept_and_scan() {
        let v = json!([{"txid": "0000000000000000000000000000000000000000000000000000000000000001",
                        "allowed": false, "reject-reason": "min relay fee not met"}]);
        let r: Vec<MempoolAcceptResult> = serde_json::from_value(v).expect("decode");
        assert_eq!(r[0].allowed, Some(false));
        assert_eq!(r[0].reject_reason.as_deref(), Some("min relay fee not met"));
        let s = json!({"success": true, "txouts": 1, "height": 101, "bestblock": "00",
            "unspents": [{"txid": "0000000000000000000000000000000000000000000000000000000000000002",
              "vout": 0, "scriptPubKey": "51200000000000000000000000000000000000000000000000000000000000000000",
              "desc": "raw()", "amount": 50.0, "coinbase": true, "height": 1, "blockhash": "00", "confirmations": 101}],
            "total_amount": 50.0});
        let s: ScanResult = serde_json::from_value(s).expect("decode");
        assert_eq!(s.unspents[0].amount, Amount::from_btc(50.0).expect("amount"));
        assert!(s.unspents[0].coinbase);
        assert_eq!(s.total_amount.to_sat(), 5_000_000_000);
    }
}
