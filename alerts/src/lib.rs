//! Alerts of the KRAY guardian: the alert model (severity P0–P3, kind, batch/outpoint, evidence link,
//! first seen, deadline), an [`Alerter`] that de-duplicates by key, rate-limits per sink, sends "resolved"
//! when a condition clears and retries each sink with backoff without ever blocking detection, and the
//! sinks: email over SMTP ([`SmtpSink`]), a generic JSON webhook, Slack, Discord, PagerDuty Events v2 and
//! the log.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kray_alerts::AlertsError> {
//! use kray_alerts::{Alert, AlertKind, Alerter, AlertsConfig, Severity};
//!
//! let alerter = Alerter::start(&AlertsConfig::default())?;
//! alerter.raise(Alert::new("anchor:7", AlertKind::MissingAnchor, Severity::P1, "Batch 7 not anchored", "…"));
//! alerter.resolve("anchor:7");
//! # Ok(()) }
//! ```

pub mod alerter;
pub mod config;
pub mod error;
pub mod http;
pub mod model;
pub mod sink;
pub mod smtp;

pub use alerter::{build_sinks, Alerter, AlertsSnapshot, SinkEntry, SinkPolicy, SinkSnapshot};
pub use config::{
    AlertsConfig, PagerDutyConfig, RateLimitConfig, RetryConfig, SinkConfig, SinkKind, SmtpConfig, SmtpTls,
    WebhookConfig, PAGERDUTY_EVENTS_URL,
};
pub use error::{AlertsError, SinkError};
pub use http::{DiscordSink, PagerDutySink, SlackSink, WebhookSink};
pub use model::{Alert, AlertEvent, AlertKind, Notification, Severity};
pub use sink::{BoxFuture, LogSink, Sink};
pub use smtp::SmtpSink;
