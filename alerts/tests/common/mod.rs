//! A real local HTTP server (axum on 127.0.0.1:0) that records what the webhook sinks post.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use kray_alerts::{RateLimitConfig, RetryConfig, SinkConfig, SinkKind, WebhookConfig};
use serde_json::Value;
use tokio::sync::mpsc;

/// What the server received, by route name, in order.
#[derive(Clone)]
pub struct Recorder {
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
    hits: Arc<Mutex<HashMap<String, u32>>>,
    arrivals: mpsc::UnboundedSender<(String, Value)>,
}

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What it received.
    pub recorder: Recorder,
    /// Each recorded post as it arrives.
    pub arrivals: mpsc::UnboundedReceiver<(String, Value)>,
}

impl TestServer {
    /// Starts the server. Routes (all POST, JSON bodies):
    /// - `/hook/{name}`: records, answers 200 (202 for names starting with `pagerduty`, as PagerDuty does);
    /// - `/flaky/{name}`: answers 500 twice, then records and answers 200;
    /// - `/status/{code}`: answers `code` and records nothing;
    /// - `/hang/{name}`: never answers.
    pub async fn start() -> TestServer {
        let (tx, rx) = mpsc::unbounded_channel();
        let recorder = Recorder { bodies: Arc::default(), hits: Arc::default(), arrivals: tx };
        let app = Router::new()
            .route("/hook/{name}", post(hook))
            .route("/flaky/{name}", post(flaky))
            .route("/status/{code}", post(status))
            .route("/hang/{name}", post(hang))
            .with_state(recorder.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestServer { base, recorder, arrivals: rx }
    }

    /// The URL of `route` (e.g. `"hook/slack"`).
    pub fn url(&self, route: &str) -> String {
        format!("{}/{route}", self.base)
    }

    /// The bodies recorded under `name`, in order.
    pub fn bodies(&self, name: &str) -> Vec<Value> {
        self.recorder.bodies.lock().unwrap().iter().filter(|(n, _)| n == name).map(|(_, b)| b.clone()).collect()
    }

    /// Every body recorded, with its name.
    pub fn all(&self) -> Vec<(String, Value)> {
        self.recorder.bodies.lock().unwrap().clone()
    }

    /// How many requests `route/name` got (recorded or not).
    pub fn hits(&self, key: &str) -> u32 {
        self.recorder.hits.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl Recorder {
    fn hit(&self, key: String) -> u32 {
        let mut hits = self.hits.lock().unwrap();
        let n = hits.entry(key).or_insert(0);
        *n += 1;
        *n
    }

    fn record(&self, name: String, body: Value) {
        self.bodies.lock().unwrap().push((name.clone(), body.clone()));
        let _ = self.arrivals.send((name, body));
    }
}

async fn hook(State(r): State<Recorder>, Path(name): Path<String>, Json(body): Json<Value>) -> StatusCode {
    r.hit(format!("hook/{name}"));
    let pagerduty = name.starts_with("pagerduty");
    r.record(name, body);
    if pagerduty {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    }
}

async fn flaky(State(r): State<Recorder>, Path(name): Path<String>, Json(body): Json<Value>) -> StatusCode {
    if r.hit(format!("flaky/{name}")) <= 2 {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.record(name, body);
    StatusCode::OK
}

async fn status(State(r): State<Recorder>, Path(code): Path<u16>) -> StatusCode {
    r.hit(format!("status/{code}"));
    StatusCode::from_u16(code).unwrap()
}

async fn hang(State(r): State<Recorder>, Path(name): Path<String>) -> StatusCode {
    r.hit(format!("hang/{name}"));
    std::future::pending::<()>().await;
    StatusCode::OK
}

/// Fast retries, no rate limit to speak of.
pub fn fast_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig { max_attempts, initial_backoff_ms: 10, max_backoff_ms: 40 }
}

/// A sink of `kind` named `name` with fast retries and a generous rate limit.
pub fn sink(name: &str, kind: SinkKind) -> SinkConfig {
    let mut config = SinkConfig::new(kind);
    config.name = Some(name.to_string());
    config.retry = fast_retry(5);
    config.rate_limit = RateLimitConfig { burst: 1000, per_minute: 0.0 };
    config
}

/// A webhook-style config posting to `url`.
pub fn webhook(url: String) -> WebhookConfig {
    WebhookConfig::url(url)
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/dead")
}
