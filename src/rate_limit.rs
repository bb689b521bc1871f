//! Per-client rate limiting of the public listener: a token bucket per IP address (`limit` requests per
//! minute, bursts up to `limit`), answering `429 Too Many Requests` with `Retry-After` beyond it.
//! The table is bounded: when it holds [`MAX_CLIENTS`] addresses, idle full buckets are dropped first,
//! and if none is idle the new client shares a single overflow bucket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Most client addresses tracked at once.
pub const MAX_CLIENTS: usize = 10_000;

/// The shared limiter.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_minute: f64,
    buckets: Arc<Mutex<Buckets>>,
}

/// Tokens left and when they were counted, per client (`None`: the shared overflow bucket).
type Buckets = HashMap<Option<IpAddr>, (f64, Instant)>;

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per client per minute (0 = unlimited).
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute: f64::from(per_minute), buckets: Arc::default() }
    }

    /// Takes a token for `ip` at `now`; `Err(seconds to wait)` when none is left.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_minute <= 0.0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let per_sec = self.per_minute / 60.0;
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&Some(ip)) {
            let cap = self.per_minute;
            buckets
                .retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < cap);
        }
        let key = if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&Some(ip)) { None } else { Some(ip) };
        let (tokens, at) = buckets.entry(key).or_insert((self.per_minute, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(self.per_minute);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_sec).ceil() as u64)
        }
    }
}

/// The middleware: `429` with `Retry-After` when the client's bucket is empty.
pub async fn limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = ip {
        if let Err(wait) = limiter.check(ip, Instant::now()) {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                axum::Json(serde_json::json!({"error": format!("rate limit: retry in {wait} s")})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_affected() {
        let l = RateLimiter::new(60);
        let t = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..60 {
            assert!(l.check(a, t).is_ok());
        }
        assert_eq!(l.check(a, t), Err(1));
        assert!(l.check(b, t).is_ok(), "another client has its own bucket");
        assert!(l.check(a, t + Duration::from_secs(1)).is_ok(), "one token per second comes back");
        assert!(l.check(a, t + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::new(0);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!((0..10_000).all(|_| l.check(ip, Instant::now()).is_ok()));
    }
}
