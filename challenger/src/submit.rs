//! Fraud-proof submission: POST the proof JSON to every configured challenge endpoint (the devnet's
//! `POST /l2/challenges`, docs/publication-api.md) concurrently, each with retries and exponential
//! backoff until it acknowledges (2xx), rejects for good (a 4xx other than 408/425/429) or the deadline
//! passes. Idempotent: an endpoint that acknowledged a proof hash is not posted to again.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

/// Submission settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitConfig {
    /// Full URLs of the challenge endpoints, e.g. `http://127.0.0.1:8080/l2/challenges`.
    pub endpoints: Vec<String>,
    /// Wait after the first failure; doubled after each further one.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl Default for SubmitConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How one endpoint ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointOutcome {
    /// It answered 2xx.
    Acknowledged {
        /// The status.
        status: u16,
        /// Attempts made in this call.
        attempts: u32,
        /// The response body (first 1,000 characters).
        body: String,
    },
    /// It acknowledged this proof in an earlier call: not posted again.
    AlreadyAcknowledged,
    /// It refused the proof for good (e.g. 400, 422): retrying cannot help.
    Rejected {
        /// The status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The response body (first 1,000 characters).
        body: String,
    },
    /// The deadline passed before an acknowledgement.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
}

/// The outcome per endpoint, in configuration order.
pub type SubmitReport = Vec<(String, EndpointOutcome)>;

/// Submits proofs; remembers which endpoint acknowledged which proof hash.
#[derive(Debug)]
pub struct Submitter {
    http: reqwest::Client,
    cfg: SubmitConfig,
    acknowledged: BTreeSet<(String, [u8; 32])>,
}

impl Submitter {
    /// A submitter for `cfg`.
    pub fn new(cfg: SubmitConfig) -> Self {
        let http = reqwest::Client::builder().timeout(cfg.request_timeout).build().unwrap_or_default();
        Self { http, cfg, acknowledged: BTreeSet::new() }
    }

    /// Whether `endpoint` has acknowledged `proof_hash`.
    pub fn is_acknowledged(&self, endpoint: &str, proof_hash: &[u8; 32]) -> bool {
        self.acknowledged.contains(&(endpoint.to_string(), *proof_hash))
    }

    /// Posts `proof_json` (the proof whose hash is `proof_hash`) to every endpoint that has not
    /// acknowledged it yet, until each acknowledges, rejects, or `deadline` passes.
    pub async fn submit(&mut self, proof_hash: [u8; 32], proof_json: &str, deadline: Instant) -> SubmitReport {
        let mut tasks = JoinSet::new();
        let mut report: SubmitReport = Vec::new();
        for (i, endpoint) in self.cfg.endpoints.iter().enumerate() {
            if self.is_acknowledged(endpoint, &proof_hash) {
                report.push((endpoint.clone(), EndpointOutcome::AlreadyAcknowledged));
                continue;
            }
            report.push((endpoint.clone(), EndpointOutcome::GaveUp { attempts: 0, last_error: String::new() }));
            let (http, url, body, cfg) =
                (self.http.clone(), endpoint.clone(), proof_json.to_string(), self.cfg.clone());
            tasks.spawn(async move { (i, post_until_done(&http, &url, body, &cfg, deadline).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, outcome)) => {
                    // A slot was pushed for every endpoint, so `i` is the configuration index.
                    if let Some(slot) = report.get_mut(i) {
                        if matches!(outcome, EndpointOutcome::Acknowledged { .. }) {
                            self.acknowledged.insert((slot.0.clone(), proof_hash));
                        }
                        slot.1 = outcome;
                    }
                }
                Err(e) => tracing::error!(error = %e, "proof submission task failed"),
            }
        }
        report
    }
}

async fn post_until_done(
    http: &reqwest::Client,
    url: &str,
    body: String,
    cfg: &SubmitConfig,
    deadline: Instant,
) -> EndpointOutcome {
    let mut attempts = 0u32;
    let mut backoff = cfg.initial_backoff;
    let mut last_error = String::from("deadline passed before the first attempt");
    while Instant::now() < deadline {
        attempts += 1;
        let sent =
            http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone()).send().await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let text: String = resp.text().await.unwrap_or_default().chars().take(1000).collect();
                if status.is_success() {
                    tracing::info!(endpoint = url, status = status.as_u16(), attempts, "fraud proof acknowledged");
                    return EndpointOutcome::Acknowledged { status: status.as_u16(), attempts, body: text };
                }
                if status.is_client_error() && !matches!(status.as_u16(), 408 | 425 | 429) {
                    tracing::warn!(endpoint = url, status = status.as_u16(), body = %text, "fraud proof rejected");
                    return EndpointOutcome::Rejected { status: status.as_u16(), attempts, body: text };
                }
                last_error = format!("HTTP {status}: {text}");
            }
            Err(e) => last_error = e.to_string(),
        }
        let retry_in = backoff;
        tracing::warn!(endpoint = url, attempts, error = %last_error, ?retry_in, "fraud proof not delivered yet");
        if Instant::now() + backoff >= deadline {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.max_backoff);
    }
    EndpointOutcome::GaveUp { attempts, last_error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    /// A server answering the scripted statuses in order (then the last one forever); returns its URL
    /// and the bodies it received.
    async fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let calls = Arc::new(AtomicU32::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        let app = Router::new().route(
            "/l2/challenges",
            post(move |body: String| {
                let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
                let code = statuses[n.min(statuses.len() - 1)];
                b.lock().expect("lock").push(body);
                async move { (StatusCode::from_u16(code).expect("status"), format!("{{\"n\":{n}}}")) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/l2/challenges"), bodies)
    }

    fn cfg(endpoints: Vec<String>) -> SubmitConfig {
        SubmitConfig {
            endpoints,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            request_timeout: Duration::from_secs(10),
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(300)
    }

    #[tokio::test]
    async fn retries_until_acknowledged_then_never_again() {
        let (url, bodies) = server(vec![500, 500, 202]).await;
        let mut s = Submitter::new(cfg(vec![url.clone()]));
        let r = s.submit([1; 32], "{\"proof\":1}", far()).await;
        assert_eq!(r.len(), 1);
        assert!(matches!(&r[0].1, EndpointOutcome::Acknowledged { status: 202, attempts: 3, .. }), "{r:?}");
        assert_eq!(bodies.lock().expect("lock").len(), 3);
        assert_eq!(bodies.lock().expect("lock")[2], "{\"proof\":1}");
        // Idempotent: the same proof is not posted again.
        let r = s.submit([1; 32], "{\"proof\":1}", far()).await;
        assert_eq!(r[0].1, EndpointOutcome::AlreadyAcknowledged);
        assert_eq!(bodies.lock().expect("lock").len(), 3);
        assert!(s.is_acknowledged(&url, &[1; 32]));
    }

    #[tokio::test]
    async fn per_endpoint_outcomes_rejection_and_deadline() {
        let (ok, _) = server(vec![200]).await;
        let (bad, bad_bodies) = server(vec![422]).await;
        let (down, down_bodies) = server(vec![503]).await;
        let mut s = Submitter::new(cfg(vec![ok.clone(), bad.clone(), down.clone()]));
        // The deadline: a few attempts at most for the failing endpoint.
        let r = s.submit([2; 32], "{}", Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(r.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), vec![ok, bad, down]);
        assert!(matches!(r[0].1, EndpointOutcome::Acknowledged { status: 200, attempts: 1, .. }));
        assert!(matches!(r[1].1, EndpointOutcome::Rejected { status: 422, attempts: 1, .. }), "{r:?}");
        assert_eq!(bad_bodies.lock().expect("lock").len(), 1, "a rejection is not retried");
        match &r[2].1 {
            EndpointOutcome::GaveUp { attempts, last_error } => {
                assert!(*attempts >= 1);
                assert!(last_error.contains("503"), "{last_error}");
                assert_eq!(down_bodies.lock().expect("lock").len() as u32, *attempts);
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
        // A past deadline makes no attempt at all.
        let (fresh, fresh_bodies) = server(vec![200]).await;
        let mut s = Submitter::new(cfg(vec![fresh]));
        let r = s.submit([3; 32], "{}", Instant::now()).await;
        assert!(matches!(r[0].1, EndpointOutcome::GaveUp { attempts: 0, .. }));
        assert!(fresh_bodies.lock().expect("lock").is_empty());
    }
}
