//! The alerter: a non-blocking handle in front of a dispatcher task (de-duplication, escalation,
//! resolution, per-sink rate limits) and one worker task per sink (retries with exponential backoff).
//!
//! ```text
//! raise()/resolve()  --intake (bounded, evicts least urgent)-->  dispatcher  --queue per sink-->  worker
//!   never block                                                  open alerts                      retry/backoff
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::config::{AlertsConfig, RateLimitConfig, RetryConfig, SinkConfig, SinkKind, WebhookConfig};
use crate::error::AlertsError;
use crate::http::{DiscordSink, PagerDutySink, SlackSink, WebhookSink};
use crate::model::{now_unix, Alert, AlertEvent, Notification, Severity};
use crate::sink::{LogSink, Sink};
use crate::smtp::SmtpSink;

/// The delivery policy of one sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkPolicy {
    /// The least urgent severity delivered.
    pub min_severity: Severity,
    /// Retries with backoff.
    pub retry: RetryConfig,
    /// The token bucket for P1–P3 notifications.
    pub rate_limit: RateLimitConfig,
    /// The sink's queue length.
    pub queue_capacity: usize,
}

impl Default for SinkPolicy {
    fn default() -> Self {
        let c = SinkConfig::new(SinkKind::Log);
        SinkPolicy {
            min_severity: c.min_severity,
            retry: c.retry,
            rate_limit: c.rate_limit,
            queue_capacity: c.queue_capacity,
        }
    }
}

/// A named sink with its policy, ready for [`Alerter::with_sinks`].
pub struct SinkEntry {
    /// The unique name (logs, metrics).
    pub name: String,
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// Its policy.
    pub policy: SinkPolicy,
}

impl SinkEntry {
    /// A sink named `name` with `policy`.
    pub fn new(name: impl Into<String>, sink: Arc<dyn Sink>, policy: SinkPolicy) -> SinkEntry {
        SinkEntry { name: name.into(), sink, policy }
    }
}

/// Builds every sink of `config` (reading the secrets the configuration names from the environment).
pub fn build_sinks(config: &AlertsConfig) -> Result<Vec<SinkEntry>, AlertsError> {
    let client = reqwest::Client::builder().build().map_err(AlertsError::Http)?;
    let mut entries: Vec<SinkEntry> = Vec::with_capacity(config.sinks.len());
    for (index, sink_config) in config.sinks.iter().enumerate() {
        let type_name = sink_config.kind.type_name();
        let name = match &sink_config.name {
            Some(name) => name.clone(),
            None if config.sinks.iter().filter(|s| s.kind.type_name() == type_name).count() > 1 => {
                format!("{type_name}-{index}")
            }
            None => type_name.to_string(),
        };
        if entries.iter().any(|e| e.name == name) {
            return Err(AlertsError::InvalidConfig { sink: name, reason: "the name is used twice".to_string() });
        }
        if sink_config.retry.max_attempts == 0 {
            return Err(AlertsError::InvalidConfig { sink: name, reason: "retry.max_attempts is 0".to_string() });
        }
        let rate = sink_config.rate_limit.per_minute;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(AlertsError::InvalidConfig {
                sink: name,
                reason: "rate_limit.per_minute must be a finite number ≥ 0".to_string(),
            });
        }
        let source = config.source.as_str();
        let sink: Arc<dyn Sink> = match &sink_config.kind {
            SinkKind::Smtp(smtp) => Arc::new(SmtpSink::new(&name, smtp, source)?),
            SinkKind::Webhook(w) => {
                Arc::new(WebhookSink::new(client.clone(), webhook_url(&name, w)?, secs(w.timeout_secs)))
            }
            SinkKind::Slack(w) => {
                Arc::new(SlackSink::new(client.clone(), webhook_url(&name, w)?, secs(w.timeout_secs), source))
            }
            SinkKind::Discord(w) => {
                Arc::new(DiscordSink::new(client.clone(), webhook_url(&name, w)?, secs(w.timeout_secs), source))
            }
            SinkKind::Pagerduty(pd) => {
                let key = std::env::var(&pd.routing_key_env)
                    .map_err(|_| AlertsError::MissingEnv { sink: name.clone(), var: pd.routing_key_env.clone() })?;
                Arc::new(PagerDutySink::new(client.clone(), pd.url.clone(), secs(pd.timeout_secs), key, source))
            }
            SinkKind::Log => Arc::new(LogSink),
        };
        let policy = SinkPolicy {
            min_severity: sink_config.min_severity,
            retry: sink_config.retry,
            rate_limit: sink_config.rate_limit,
            queue_capacity: sink_config.queue_capacity.max(1),
        };
        entries.push(SinkEntry { name, sink, policy });
    }
    Ok(entries)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s.max(1))
}

fn webhook_url(name: &str, w: &WebhookConfig) -> Result<String, AlertsError> {
    match (&w.url, &w.url_env) {
        (Some(url), None) => Ok(url.clone()),
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| AlertsError::MissingEnv { sink: name.to_string(), var: var.clone() })
        }
        _ => Err(AlertsError::InvalidConfig {
            sink: name.to_string(),
            reason: "give exactly one of `url` and `url_env`".to_string(),
        }),
    }
}

/// Counters of the alerter as a whole, read by [`Alerter::snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertsSnapshot {
    /// Alerts that opened (a key not open before).
    pub fired: u64,
    /// Raises of an open key with a higher severity (notified again).
    pub escalated: u64,
    /// Raises of an open key that sent nothing.
    pub deduplicated: u64,
    /// Alerts resolved.
    pub resolved: u64,
    /// Resolves of a key that was not open (ignored).
    pub resolve_unknown: u64,
    /// Raise/resolve commands dropped because the intake queue was full.
    pub intake_dropped: u64,
    /// Alerts open now.
    pub open: u64,
    /// Per sink, in configuration order.
    pub sinks: Vec<SinkSnapshot>,
}

/// Delivery outcomes of one sink. For metrics: result `success` = `delivered`, `failure` = `failed`,
/// `dropped` = `rate_limited + queue_dropped`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// The sink's name.
    pub name: String,
    /// The sink's kind (`smtp`, `slack`, …).
    pub kind: String,
    /// Notifications delivered.
    pub delivered: u64,
    /// Notifications given up after the last attempt (or a permanent error).
    pub failed: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Notifications not sent because the sink's token bucket was empty.
    pub rate_limited: u64,
    /// Notifications dropped because the sink's queue was full.
    pub queue_dropped: u64,
}

impl SinkSnapshot {
    /// Notifications dropped before any attempt (rate limit or full queue).
    pub fn dropped(&self) -> u64 {
        self.rate_limited + self.queue_dropped
    }
}

#[derive(Debug, Default)]
struct SinkCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    rate_limited: AtomicU64,
    queue_dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    fired: AtomicU64,
    escalated: AtomicU64,
    deduplicated: AtomicU64,
    resolved: AtomicU64,
    resolve_unknown: AtomicU64,
    intake_dropped: AtomicU64,
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

enum Command {
    Raise(Alert),
    Resolve { key: String, at: i64 },
    Flush(oneshot::Sender<()>),
}

impl Command {
    /// Larger is dropped first when the intake is full; `None` is never dropped.
    fn drop_rank(&self) -> Option<u8> {
        match self {
            Command::Raise(a) => Some(match a.severity {
                Severity::P0 => 0,
                Severity::P1 => 1,
                Severity::P2 => 3,
                Severity::P3 => 4,
            }),
            Command::Resolve { .. } => Some(2),
            Command::Flush(_) => None,
        }
    }
}

struct Intake {
    items: VecDeque<Command>,
    closed: bool,
}

struct Shared {
    intake: Mutex<Intake>,
    wake: Notify,
    capacity: usize,
    counters: Counters,
    sinks: Vec<(String, &'static str, Arc<SinkCounters>)>,
    open: Mutex<BTreeMap<String, Alert>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain pushes and pops).
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Queues `command`; when full, evicts the oldest of the least urgent queued commands, or drops the new
    /// one if it is less urgent than all of them. Urgency: P0 and P1 raises, then resolves, then P2 and P3
    /// raises (a lost resolve leaves a stale open alert; a lost P0 loses a page). Flushes always enter.
    fn push(&self, command: Command) {
        let mut intake = lock(&self.intake);
        if intake.closed {
            return;
        }
        if let Some(incoming) = command.drop_rank() {
            if intake.items.iter().filter(|c| c.drop_rank().is_some()).count() >= self.capacity {
                // The least urgent; among equals the oldest (max_by_key keeps the last max, hence rev).
                let victim = intake
                    .items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.drop_rank().map(|rank| (i, rank)))
                    .rev()
                    .max_by_key(|(_, rank)| *rank)
                    .filter(|(_, rank)| *rank >= incoming);
                let dropped = bump(&self.counters.intake_dropped);
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, capacity = self.capacity, "alert intake full: dropping the least urgent");
                }
                match victim {
                    Some((i, _)) => {
                        intake.items.remove(i);
                    }
                    None => return,
                }
            }
        }
        intake.items.push_back(command);
        drop(intake);
        self.wake.notify_one();
    }

    fn close(&self) {
        lock(&self.intake).closed = true;
        self.wake.notify_one();
    }
}

/// Closes the intake when the last [`Alerter`] clone is dropped.
struct Handle {
    shared: Arc<Shared>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// The alerting front end. Cheap to clone; `raise` and `resolve` never block and never fail (overload is
/// counted). Dropping the last clone lets the tasks finish what is queued and stop.
#[derive(Clone)]
pub struct Alerter {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.handle.shared.sinks.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("Alerter").field("sinks", &names).finish_non_exhaustive()
    }
}

impl Alerter {
    /// Builds the sinks of `config` and starts the tasks. Must run inside a tokio runtime.
    pub fn start(config: &AlertsConfig) -> Result<Alerter, AlertsError> {
        let sinks = build_sinks(config)?;
        Alerter::with_sinks(sinks, config.queue_capacity)
    }

    /// Starts the tasks for ready-made sinks (custom ones included), with an intake of `queue_capacity`.
    pub fn with_sinks(sinks: Vec<SinkEntry>, queue_capacity: usize) -> Result<Alerter, AlertsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AlertsError::NoRuntime)?;
        let mut workers = Vec::with_capacity(sinks.len());
        let mut counters = Vec::with_capacity(sinks.len());
        let now = Instant::now();
        for entry in sinks {
            let sink_counters = Arc::new(SinkCounters::default());
            let (tx, rx) = mpsc::channel(entry.policy.queue_capacity.max(1));
            counters.push((entry.name.clone(), entry.sink.kind(), sink_counters.clone()));
            let bucket = TokenBucket::new(entry.policy.rate_limit, now);
            let worker =
                Worker { name: entry.name, sink: entry.sink, retry: entry.policy.retry, counters: sink_counters };
            let task = runtime.spawn(worker.run(rx));
            workers.push(SinkLane { tx, bucket, min_severity: entry.policy.min_severity, task: Some(task) });
        }
        let shared = Arc::new(Shared {
            intake: Mutex::new(Intake { items: VecDeque::new(), closed: false }),
            wake: Notify::new(),
            capacity: queue_capacity.max(1),
            counters: Counters::default(),
            sinks: counters,
            open: Mutex::new(BTreeMap::new()),
        });
        let dispatcher = Dispatcher { shared: shared.clone(), lanes: workers, open: BTreeMap::new() };
        let task = runtime.spawn(dispatcher.run());
        Ok(Alerter { handle: Arc::new(Handle { shared, dispatcher: Mutex::new(Some(task)) }) })
    }

    /// Opens `alert` (or, if its key is open, does nothing unless the severity rose). Never blocks.
    pub fn raise(&self, alert: Alert) {
        self.handle.shared.push(Command::Raise(alert));
    }

    /// Resolves the alert with `key` if it is open: sinks that were told it fired are told it resolved.
    /// Never blocks.
    pub fn resolve(&self, key: impl Into<String>) {
        self.handle.shared.push(Command::Resolve { key: key.into(), at: now_unix() });
    }

    /// Waits until everything raised or resolved before this call has been dispatched and every sink has
    /// finished with it (delivered or given up after its retries). For tests and orderly shutdown.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.handle.shared.push(Command::Flush(tx));
        // An error means the dispatcher is gone: nothing is left to wait for.
        let _ = rx.await;
    }

    /// The alerts open now, by key.
    pub fn open_alerts(&self) -> Vec<Alert> {
        lock(&self.handle.shared.open).values().cloned().collect()
    }

    /// The counters now.
    pub fn snapshot(&self) -> AlertsSnapshot {
        let shared = &self.handle.shared;
        let c = &shared.counters;
        AlertsSnapshot {
            fired: read(&c.fired),
            escalated: read(&c.escalated),
            deduplicated: read(&c.deduplicated),
            resolved: read(&c.resolved),
            resolve_unknown: read(&c.resolve_unknown),
            intake_dropped: read(&c.intake_dropped),
            open: lock(&shared.open).len() as u64,
            sinks: shared
                .sinks
                .iter()
                .map(|(name, kind, s)| SinkSnapshot {
                    name: name.clone(),
                    kind: (*kind).to_string(),
                    delivered: read(&s.delivered),
                    failed: read(&s.failed),
                    retried: read(&s.retried),
                    rate_limited: read(&s.rate_limited),
                    queue_dropped: read(&s.queue_dropped),
                })
                .collect(),
        }
    }

    /// Stops taking commands, lets the dispatcher hand out what is queued and waits until every sink has
    /// finished (including retries: wrap in a timeout if a sink may be down).
    pub async fn shutdown(self) {
        self.handle.shared.close();
        let task = lock(&self.handle.dispatcher).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "alert dispatcher task failed");
            }
        }
    }
}

/// A token bucket: `capacity` tokens, refilled continuously at `per_sec`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(config: RateLimitConfig, now: Instant) -> TokenBucket {
        let capacity = f64::from(config.burst);
        let per_sec = if config.per_minute.is_finite() { config.per_minute.max(0.0) / 60.0 } else { 0.0 };
        TokenBucket { capacity, tokens: capacity, per_sec, last: now }
    }

    /// Takes a token if one is there at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum Job {
    Deliver(Arc<Notification>),
    Flush(oneshot::Sender<()>),
}

struct SinkLane {
    tx: mpsc::Sender<Job>,
    bucket: TokenBucket,
    min_severity: Severity,
    task: Option<JoinHandle<()>>,
}

struct OpenAlert {
    alert: Alert,
    /// Per sink: whether it was handed a "fired" notification (so it gets the "resolved" one).
    notified: Vec<bool>,
}

struct Dispatcher {
    shared: Arc<Shared>,
    lanes: Vec<SinkLane>,
    open: BTreeMap<String, OpenAlert>,
}

impl Dispatcher {
    async fn run(mut self) {
        loop {
            let batch = {
                let mut intake = lock(&self.shared.intake);
                if intake.items.is_empty() {
                    if intake.closed {
                        break;
                    }
                    None
                } else {
                    Some(std::mem::take(&mut intake.items))
                }
            };
            match batch {
                Some(commands) => {
                    for command in commands {
                        self.handle(command);
                    }
                }
                None => self.shared.wake.notified().await,
            }
        }
        // Closing the lanes lets each worker finish its queue and stop.
        let tasks: Vec<JoinHandle<()>> = self.lanes.iter_mut().filter_map(|lane| lane.task.take()).collect();
        self.lanes.clear();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "alert sink task failed");
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Raise(alert) => self.raise(alert),
            Command::Resolve { key, at } => self.resolve(&key, at),
            Command::Flush(reply) => {
                let senders: Vec<mpsc::Sender<Job>> = self.lanes.iter().map(|l| l.tx.clone()).collect();
                // Waiting for the workers happens in its own task: the dispatcher never waits on a sink.
                tokio::spawn(async move {
                    let mut acks = Vec::with_capacity(senders.len());
                    for tx in senders {
                        let (ack_tx, ack_rx) = oneshot::channel();
                        if tx.send(Job::Flush(ack_tx)).await.is_ok() {
                            acks.push(ack_rx);
                        }
                    }
                    for ack in acks {
                        let _ = ack.await;
                    }
                    let _ = reply.send(());
                });
            }
        }
    }

    fn raise(&mut self, alert: Alert) {
        let now = Instant::now();
        let at = now_unix();
        let n_lanes = self.lanes.len();
        let (notification, mut notified) = match self.open.remove(&alert.key) {
            None => {
                bump(&self.shared.counters.fired);
                tracing::debug!(key = %alert.key, severity = %alert.severity, "alert fired");
                (Notification { event: AlertEvent::Fired, alert, at }, vec![false; n_lanes])
            }
            Some(open) if alert.severity.more_urgent_than(open.alert.severity) => {
                bump(&self.shared.counters.escalated);
                tracing::debug!(key = %alert.key, from = %open.alert.severity, to = %alert.severity, "alert escalated");
                let escalated = Alert { first_seen: open.alert.first_seen, ..alert };
                (Notification { event: AlertEvent::Fired, alert: escalated, at }, open.notified)
            }
            Some(open) => {
                bump(&self.shared.counters.deduplicated);
                self.open.insert(open.alert.key.clone(), open);
                return;
            }
        };
        let notification = Arc::new(notification);
        let severity = notification.alert.severity;
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if !severity.at_least(lane.min_severity) {
                continue;
            }
            let counters = &self.shared.sinks[i].2;
            // P0 is never rate-limited and spends no token.
            if severity != Severity::P0 && !lane.bucket.try_take(now) {
                bump(&counters.rate_limited);
                tracing::debug!(sink = %self.shared.sinks[i].0, key = %notification.alert.key, "rate-limited");
                continue;
            }
            if offer(lane, &self.shared.sinks[i], notification.clone()) {
                notified[i] = true;
            }
        }
        let alert = notification.alert.clone();
        lock(&self.shared.open).insert(alert.key.clone(), alert.clone());
        self.open.insert(alert.key.clone(), OpenAlert { alert, notified });
    }

    fn resolve(&mut self, key: &str, at: i64) {
        let Some(open) = self.open.remove(key) else {
            bump(&self.shared.counters.resolve_unknown);
            return;
        };
        lock(&self.shared.open).remove(key);
        bump(&self.shared.counters.resolved);
        tracing::debug!(key, "alert resolved");
        let notification = Arc::new(Notification { event: AlertEvent::Resolved, alert: open.alert, at });
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if open.notified.get(i).copied().unwrap_or(false) {
                offer(lane, &self.shared.sinks[i], notification.clone());
            }
        }
    }
}

/// Hands `n` to a sink's queue without waiting; a full queue drops it (counted).
fn offer(lane: &SinkLane, sink: &(String, &'static str, Arc<SinkCounters>), n: Arc<Notification>) -> bool {
    match lane.tx.try_send(Job::Deliver(n)) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            let dropped = bump(&sink.2.queue_dropped);
            tracing::warn!(sink = %sink.0, dropped, "alert sink queue full: notification dropped");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            bump(&sink.2.queue_dropped);
            tracing::error!(sink = %sink.0, "alert sink task is gone: notification dropped");
            false
        }
    }
}

struct Worker {
    name: String,
    sink: Arc<dyn Sink>,
    retry: RetryConfig,
    counters: Arc<SinkCounters>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Deliver(n) => self.deliver(&n).await,
                Job::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }

    async fn deliver(&self, n: &Notification) {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.sink.send(n).await {
                Ok(()) => {
                    bump(&self.counters.delivered);
                    let (sink, key, event) = (&self.name, &n.alert.key, n.event.as_str());
                    tracing::debug!(sink = %sink, key = %key, event, attempt, "delivered");
                    return;
                }
                Err(e) if e.is_retryable() && attempt < max_attempts => {
                    bump(&self.counters.retried);
                    let wait = self.retry.backoff_ms(attempt);
                    let (sink, key) = (&self.name, &n.alert.key);
                    tracing::info!(sink = %sink, key = %key, attempt, wait_ms = wait, error = %e, "retrying");
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    attempt += 1;
                }
                Err(e) => {
                    bump(&self.counters.failed);
                    tracing::warn!(sink = %self.name, key = %n.alert.key, attempt, error = %e, "delivery failed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_spends_and_refills() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(RateLimitConfig { burst: 2, per_minute: 60.0 }, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + Duration::from_millis(500)));
        assert!(bucket.try_take(t0 + Duration::from_millis(1000)));
        // Refill stops at the burst size.
        let later = t0 + Duration::from_secs(3600);
        assert!(bucket.try_take(later));
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn token_bucket_without_refill() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(RateLimitConfig { burst: 1, per_minute: 0.0 }, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + Duration::from_secs(86_400)));
    }

    fn shared(capacity: usize) -> Shared {
        Shared {
            intake: Mutex::new(Intake { items: VecDeque::new(), closed: false }),
            wake: Notify::new(),
            capacity,
            counters: Counters::default(),
            sinks: Vec::new(),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    fn raise(key: &str, severity: Severity) -> Command {
        Command::Raise(Alert::new(key, crate::AlertKind::Test, severity, key, ""))
    }

    fn queued(s: &Shared) -> Vec<String> {
        lock(&s.intake)
            .items
            .iter()
            .map(|c| match c {
                Command::Raise(a) => a.key.clone(),
                Command::Resolve { key, .. } => format!("-{key}"),
                Command::Flush(_) => "flush".to_string(),
            })
            .collect()
    }

    #[test]
    fn full_intake_evicts_the_oldest_least_urgent() {
        let s = shared(3);
        s.push(raise("a", Severity::P3));
        s.push(raise("b", Severity::P0));
        s.push(raise("c", Severity::P3));
        s.push(raise("d", Severity::P1));
        assert_eq!(queued(&s), vec!["b", "c", "d"]);
        // A new P3 evicts the remaining P3 (equal urgency, older).
        s.push(raise("e", Severity::P3));
        assert_eq!(queued(&s), vec!["b", "d", "e"]);
        // A resolve evicts a P2/P3 raise.
        s.push(Command::Resolve { key: "x".into(), at: 0 });
        assert_eq!(queued(&s), vec!["b", "d", "-x"]);
        // A P2 is less urgent than everything queued: it is the one dropped.
        s.push(raise("f", Severity::P2));
        assert_eq!(queued(&s), vec!["b", "d", "-x"]);
        // A P0 evicts the resolve.
        s.push(raise("g", Severity::P0));
        assert_eq!(queued(&s), vec!["b", "d", "g"]);
        // A P1 evicts the oldest P1; a resolve is now the least urgent and is dropped.
        s.push(raise("h", Severity::P1));
        assert_eq!(queued(&s), vec!["b", "g", "h"]);
        s.push(Command::Resolve { key: "y".into(), at: 0 });
        assert_eq!(queued(&s), vec!["b", "g", "h"]);
        assert_eq!(read(&s.counters.intake_dropped), 7);
        // A flush always enters.
        let (tx, _rx) = oneshot::channel();
        s.push(Command::Flush(tx));
        assert_eq!(queued(&s).len(), 4);
    }
}
