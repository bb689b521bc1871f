//! The few Electrum calls the chain source makes, behind [`ElectrumApi`] so tests can script them,
//! and [`TcpElectrum`], the implementation over `electrum-client`'s plaintext TCP client.
//!
//! Every method blocks; [`super::ElectrumSource`] runs them on tokio's blocking pool.

use std::net::TcpStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::{ScriptBuf, Transaction, TxMerkleNode, Txid};
use electrum_client::raw_client::RawClient;
use electrum_client::ElectrumApi as _;

use super::merkle::MerkleProof;

/// One entry of a script's history (`blockchain.scripthash.get_history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Confirmation height; 0 or -1 for a mempool transaction.
    pub height: i32,
    /// The transaction.
    pub txid: Txid,
}

/// How an Electrum call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No connection, a broken one, or no answer in time: try again later.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with an error (e.g. a height beyond its tip).
    #[error("server error: {0}")]
    Server(String),
    /// The server answered with something that does not decode.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

/// The Electrum protocol calls the chain source needs. Implementations block.
pub trait ElectrumApi: Send + Sync + 'static {
    /// The server's best height and header (`blockchain.headers.subscribe`).
    fn tip(&self) -> Result<(u32, Header), ApiError>;

    /// The header at `height` on the server's best chain (`blockchain.block.header`).
    fn header(&self, height: u32) -> Result<Header, ApiError>;

    /// The confirmed and mempool history of each script, in the order given
    /// (`blockchain.scripthash.get_history`, batched).
    fn histories(&self, scripts: &[ScriptBuf]) -> Result<Vec<Vec<HistoryEntry>>, ApiError>;

    /// The transactions, in the order given (`blockchain.transaction.get`, batched).
    fn transactions(&self, txids: &[Txid]) -> Result<Vec<Transaction>, ApiError>;

    /// Merkle branches of the transactions confirmed at `height`, in the order given
    /// (`blockchain.transaction.get_merkle`, batched).
    fn merkle_proofs(&self, txids: &[Txid], height: u32) -> Result<Vec<MerkleProof>, ApiError>;
}

/// [`ElectrumApi`] over one plaintext TCP connection (`tcp://host:port` or `host:port`), opened
/// lazily and dropped after a transport error so that the next call reconnects. TLS is not compiled
/// in: run the guardian next to its Electrum server, or tunnel.
pub struct TcpElectrum {
    addr: String,
    timeout: Duration,
    client: Mutex<Option<Arc<RawClient<TcpStream>>>>,
}

impl std::fmt::Debug for TcpElectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpElectrum").field("addr", &self.addr).field("timeout", &self.timeout).finish()
    }
}

impl TcpElectrum {
    /// A client for `url` whose socket reads and writes give up after `timeout`. Does not connect yet.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ApiError> {
        if url.starts_with("ssl://") {
            return Err(ApiError::Server(format!("{url}: TLS is not supported, use tcp://")));
        }
        let addr = url.strip_prefix("tcp://").unwrap_or(url).to_owned();
        if addr.is_empty() {
            return Err(ApiError::Server("empty Electrum server address".into()));
        }
        Ok(Self { addr, timeout, client: Mutex::new(None) })
    }

    fn connection(&self) -> Result<Arc<RawClient<TcpStream>>, ApiError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = RawClient::new(self.addr.as_str(), Some(self.timeout))
            .map_err(|e| ApiError::Transport(format!("connecting to {}: {e}", self.addr)))?;
        let client = Arc::new(client);
        tracing::info!(addr = %self.addr, "connected to the Electrum server");
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `call` on the connection; a transport failure drops the connection.
    fn with<T>(
        &self,
        what: &str,
        call: impl FnOnce(&RawClient<TcpStream>) -> Result<T, electrum_client::Error>,
    ) -> Result<T, ApiError> {
        let client = self.connection()?;
        match call(&client) {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = classify(e);
                if matches!(e, ApiError::Transport(_)) {
                    let addr = &self.addr;
                    tracing::warn!(%addr, call = what, error = %e, "Electrum connection lost; next call reconnects");
                    *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(e)
            }
        }
    }
}

/// Maps an `electrum-client` error. A connection closed mid-answer surfaces as a JSON "EOF" error:
/// that is the transport failing, not the server answering nonsense.
fn classify(e: electrum_client::Error) -> ApiError {
    use electrum_client::Error as E;
    match e {
        E::Protocol(v) => ApiError::Server(v.to_string()),
        E::JSON(j) if j.is_eof() || j.is_io() => ApiError::Transport(j.to_string()),
        E::JSON(_) | E::Hex(_) | E::Bitcoin(_) | E::InvalidResponse(_) => ApiError::Invalid(e.to_string()),
        E::IOError(_) | E::SharedIOError(_) | E::AllAttemptsErrored(_) | E::CouldntLockReader | E::Mpsc => {
            ApiError::Transport(e.to_string())
        }
        other => ApiError::Server(other.to_string()),
    }
}

fn height_usize(height: u32) -> usize {
    usize::try_from(height).unwrap_or(usize::MAX)
}

impl ElectrumApi for TcpElectrum {
    fn tip(&self) -> Result<(u32, Header), ApiError> {
        let note = self.with("blockchain.headers.subscribe", |c| {
            let note = c.block_headers_subscribe()?;
            // Drain the notifications the subscription queues, so they do not pile up.
            while c.block_headers_pop()?.is_some() {}
            Ok(note)
        })?;
        let height = u32::try_from(note.height)
            .map_err(|_| ApiError::Invalid(format!("tip height {} above u32", note.height)))?;
        Ok((height, note.header))
    }

    fn header(&self, height: u32) -> Result<Header, ApiError> {
        self.with("blockchain.block.header", |c| c.block_header(height_usize(height)))
    }

    fn histories(&self, scripts: &[ScriptBuf]) -> Result<Vec<Vec<HistoryEntry>>, ApiError> {
        if scripts.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.with("blockchain.scripthash.get_history", |c| {
            c.batch_script_get_history(scripts.iter().map(ScriptBuf::as_script))
        })?;
        if answers.len() != scripts.len() {
            return Err(ApiError::Invalid(format!("{} histories for {} scripts", answers.len(), scripts.len())));
        }
        Ok(answers
            .into_iter()
            .map(|h| h.into_iter().map(|e| HistoryEntry { height: e.height, txid: e.tx_hash }).collect())
            .collect())
    }

    fn transactions(&self, txids: &[Txid]) -> Result<Vec<Transaction>, ApiError> {
        if txids.is_empty() {
            return Ok(Vec::new());
        }
        let txs = self.with("blockchain.transaction.get", |c| c.batch_transaction_get(txids.iter()))?;
        if txs.len() != txids.len() {
            return Err(ApiError::Invalid(format!("{} transactions for {} txids", txs.len(), txids.len())));
        }
        Ok(txs)
    }

    fn merkle_proofs(&self, txids: &[Txid], height: u32) -> Result<Vec<MerkleProof>, ApiError> {
        if txids.is_empty() {
            return Ok(Vec::new());
        }
        let h = height_usize(height);
        let answers = self.with("blockchain.transaction.get_merkle", |c| {
            c.batch_transaction_get_merkle(txids.iter().map(|t| (*t, h)))
        })?;
        if answers.len() != txids.len() {
            return Err(ApiError::Invalid(format!("{} merkle proofs for {} txids", answers.len(), txids.len())));
        }
        answers
            .into_iter()
            .map(|m| {
                let block_height = u32::try_from(m.block_height)
                    .map_err(|_| ApiError::Invalid(format!("merkle block height {} above u32", m.block_height)))?;
                let pos = u32::try_from(m.pos)
                    .map_err(|_| ApiError::Invalid(format!("merkle position {} above u32", m.pos)))?;
                // Electrum writes branch hashes as reversed hex, like txids.
                let branch = m
                    .merkle
                    .into_iter()
                    .map(|mut bytes| {
                        bytes.reverse();
                        <TxMerkleNode as bitcoin::hashes::Hash>::from_byte_array(bytes)
                    })
                    .collect();
                Ok(MerkleProof { block_height, pos, branch })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_as_transport_server_or_invalid() {
        let eof = serde_json::from_str::<serde_json::Value>("").expect_err("eof");
        assert!(matches!(classify(electrum_client::Error::JSON(eof)), ApiError::Transport(_)));
        let garbage = serde_json::from_str::<serde_json::Value>("{]").expect_err("syntax");
        assert!(matches!(classify(electrum_client::Error::JSON(garbage)), ApiError::Invalid(_)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(classify(electrum_client::Error::IOError(refused)), ApiError::Transport(_)));
        let answer = serde_json::json!({"code": 1, "message": "height out of range"});
        assert!(matches!(classify(electrum_client::Error::Protocol(answer)), ApiError::Server(_)));
    }

    #[test]
    fn a_closed_port_is_a_transport_error_and_tls_urls_are_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        // The listener is dropped: nothing listens on `port` any more.
        let api = TcpElectrum::new(&format!("tcp://127.0.0.1:{port}"), Duration::from_secs(5)).expect("client");
        assert!(matches!(api.tip(), Err(ApiError::Transport(_))));
        assert!(matches!(api.header(0), Err(ApiError::Transport(_))));
        assert!(TcpElectrum::new("ssl://electrum.example:50002", Duration::from_secs(5)).is_err());
        assert!(TcpElectrum::new("tcp://", Duration::from_secs(5)).is_err());
    }
}
