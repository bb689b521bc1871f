//! A traffic generator: the devnet's users (keys from the seed) sign transfers to each other and
//! submit them over the publication API at a rate.

use crate::sequencer::AccountView;
use crate::workload::user_key;
use bitcoin::key::Keypair;
use kray_replayer::address::address_of_pubkey;
use kray_replayer::profile::L1Network;
use kray_replayer::tx::Tx;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// A submission failed at the HTTP level.
#[derive(Debug, Error)]
pub enum TrafficError {
    /// Transport.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The API refused the tx.
    #[error("refused ({status}): {body}")]
    Refused {
        /// Status.
        status: u16,
        /// Body.
        body: String,
    },
}

/// What to send.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// API base URL.
    pub api_url: String,
    /// Seed of the user keys (the devnet's).
    pub seed: u64,
    /// Users.
    pub users: usize,
    /// Transfers per second.
    pub rate: f64,
    /// Network of the addresses.
    pub network: L1Network,
}

/// Counters.
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// Accepted by the API.
    pub accepted: AtomicU64,
    /// Refused by the API (e.g. a nonce raced a seal).
    pub refused: AtomicU64,
}

/// A signed user tx.
pub fn user_tx(kp: &Keypair, network: L1Network, tx_type: &str, to: &str, amount: u64, nonce: u64) -> Tx {
    let mut tx =
        Tx::unsigned(tx_type, address_of_pubkey(&kp.x_only_public_key().0, network), to.to_string(), amount, nonce);
    tx.sign(kp);
    tx
}

/// Submit a tx to `POST /l2/txs`.
pub async fn submit(client: &reqwest::Client, api_url: &str, tx: &Tx) -> Result<(), TrafficError> {
    let resp = client.post(format!("{api_url}/l2/txs")).json(tx).send().await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    Err(TrafficError::Refused { status: status.as_u16(), body: resp.text().await.unwrap_or_default() })
}

/// The account view from `GET /l2/accounts/{address}`.
pub async fn account(client: &reqwest::Client, api_url: &str, address: &str) -> Result<AccountView, TrafficError> {
    Ok(client.get(format!("{api_url}/l2/accounts/{address}")).send().await?.error_for_status()?.json().await?)
}

/// Send transfers forever at the configured rate (abort the task to stop).
pub async fn run(cfg: TrafficConfig, stats: Arc<TrafficStats>) {
    let client = reqwest::Client::new();
    let keys: Vec<Keypair> = (0..cfg.users as u64).map(|i| user_key(cfg.seed, i)).collect();
    let addrs: Vec<String> = keys.iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, cfg.network)).collect();
    let mut nonces: Vec<Option<u64>> = vec![None; keys.len()];
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0x7aff1c);
    let pause = Duration::from_secs_f64(1.0 / cfg.rate.max(0.001));
    let n = keys.len();
    if n < 2 {
        return;
    }
    let mut k = 0usize;
    loop {
        tokio::time::sleep(pause).await;
        let from = k % n;
        k += 1;
        let to = (from + rng.gen_range(1..n)) % n;
        let nonce = match nonces[from] {
            Some(x) => x,
            None => match account(&client, &cfg.api_url, &addrs[from]).await {
                Ok(v) if v.balance > 0 => v.next_nonce,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "traffic: account unavailable");
                    continue;
                }
            },
        };
        let tx = user_tx(&keys[from], cfg.network, "transfer", &addrs[to], rng.gen_range(1..=1_000u64), nonce);
        match submit(&client, &cfg.api_url, &tx).await {
            Ok(()) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                nonces[from] = Some(nonce + 1);
            }
            Err(e) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "traffic: refused");
                nonces[from] = None;
            }
        }
    }
}
