//! The sink trait and the log sink.

use std::future::Future;
use std::pin::Pin;

use crate::error::SinkError;
use crate::model::{AlertEvent, Notification, Severity};

/// A boxed, sendable future (what [`Sink::send`] returns, so sinks can be trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Somewhere notifications go. One attempt per call: the alerter retries, rate-limits and counts.
pub trait Sink: Send + Sync + 'static {
    /// The kind, for logs and metrics (`"smtp"`, `"slack"`, …).
    fn kind(&self) -> &'static str;

    /// Delivers one notification once.
    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// Writes each notification to the log through `tracing` (target `kray_alerts::log_sink`): P0/P1 at
/// error level, P2 at warn, P3 and every "resolved" at info.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl Sink for LogSink {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let a = &n.alert;
            let headline = n.headline();
            macro_rules! emit {
                ($level:ident) => {
                    tracing::$level!(
                        target: "kray_alerts::log_sink",
                        event = n.event.as_str(),
                        key = %a.key,
                        kind = a.kind.as_str(),
                        severity = a.severity.as_str(),
                        batch_id = a.batch_id,
                        outpoint = a.outpoint.as_deref(),
                        evidence_url = a.evidence_url.as_deref(),
                        deadline_height = a.deadline_height,
                        deadline_unix = a.deadline_unix,
                        first_seen = a.first_seen,
                        summary = %a.summary,
                        "{headline}"
                    )
                };
            }
            match (n.event, a.severity) {
                (AlertEvent::Resolved, _) | (AlertEvent::Fired, Severity::P3) => emit!(info),
                (AlertEvent::Fired, Severity::P2) => emit!(warn),
                (AlertEvent::Fired, Severity::P0 | Severity::P1) => emit!(error),
            }
            Ok(())
        })
    }
}
