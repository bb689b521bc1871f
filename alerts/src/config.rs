//! Serde configuration of the alerter and its sinks; the daemon's TOML embeds [`AlertsConfig`] as `[alerts]`.
//!
//! ```toml
//! [alerts]
//! source = "guardian-eu-1"
//!
//! [[alerts.sinks]]
//! type = "smtp"
//! host = "smtp.example.com"
//! tls = "starttls"
//! username_env = "KRAY_SMTP_USER"
//! password_env = "KRAY_SMTP_PASSWORD"
//! from = "guardian@example.com"
//! to = ["ops@example.com"]
//!
//! [[alerts.sinks]]
//! type = "pagerduty"
//! routing_key_env = "KRAY_PAGERDUTY_KEY"
//! min_severity = "P1"
//!
//! [[alerts.sinks]]
//! type = "slack"
//! url_env = "KRAY_SLACK_WEBHOOK"
//! rate_limit = { burst = 5, per_minute = 1 }
//! ```
//!
//! Secrets (SMTP credentials, the PagerDuty routing key, chat webhook URLs) are given as the *names* of
//! environment variables, read once at start-up and never logged.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Severity;

/// The alerter's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// The name of this guardian in notifications (PagerDuty `source`, email footer). Default `kray-guardian`.
    pub source: String,
    /// How many raise/resolve commands may wait for the dispatcher; beyond it the oldest, least urgent
    /// notification is dropped (and counted). Default 1024.
    pub queue_capacity: usize,
    /// The sinks. With none, alerts are only kept open and counted.
    pub sinks: Vec<SinkConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { source: "kray-guardian".to_string(), queue_capacity: 1024, sinks: Vec::new() }
    }
}

/// One sink: what it is plus the delivery policy shared by every kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkConfig {
    /// A unique name for logs and metrics; default the type (`smtp`, `slack`, …), numbered if repeated.
    #[serde(default)]
    pub name: Option<String>,
    /// The least urgent severity this sink receives. Default `P3` (everything).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Retries of a failed delivery.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The token bucket limiting non-P0 notifications.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// How many notifications may wait for this sink; beyond it new ones are dropped (and counted).
    /// Default 256.
    #[serde(default = "default_sink_queue")]
    pub queue_capacity: usize,
    /// The kind of sink and its own settings (`type = "…"`).
    #[serde(flatten)]
    pub kind: SinkKind,
}

impl SinkConfig {
    /// A sink of `kind` with the default policy.
    pub fn new(kind: SinkKind) -> SinkConfig {
        SinkConfig {
            name: None,
            min_severity: default_min_severity(),
            retry: RetryConfig::default(),
            rate_limit: RateLimitConfig::default(),
            queue_capacity: default_sink_queue(),
            kind,
        }
    }
}

fn default_min_severity() -> Severity {
    Severity::P3
}

fn default_sink_queue() -> usize {
    256
}

/// The kind of a sink, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// Email over SMTP.
    Smtp(SmtpConfig),
    /// A generic JSON webhook: the [`Notification`](crate::Notification) serialized.
    Webhook(WebhookConfig),
    /// A Slack incoming webhook.
    Slack(WebhookConfig),
    /// A Discord webhook.
    Discord(WebhookConfig),
    /// PagerDuty Events API v2.
    Pagerduty(PagerDutyConfig),
    /// The guardian's own log (`tracing`).
    Log,
}

impl SinkKind {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Smtp(_) => "smtp",
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Slack(_) => "slack",
            SinkKind::Discord(_) => "discord",
            SinkKind::Pagerduty(_) => "pagerduty",
            SinkKind::Log => "log",
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: only for a trusted local relay (and tests). Default port 25.
    None,
    /// Plain text upgraded with STARTTLS, which is required. Default port 587.
    Starttls,
    /// Implicit TLS from the first byte (SMTPS). Default port 465.
    Tls,
}

/// An SMTP sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The port; default by `tls`: 25, 587 or 465.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is secured. Default `starttls`.
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// A PEM CA certificate to trust besides the built-in roots (a private relay).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The environment variable holding the user name (with `password_env`; both or neither).
    #[serde(default)]
    pub username_env: Option<String>,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The sender, e.g. `"KRAY guardian <guardian@example.com>"`.
    pub from: String,
    /// The recipients (at least one).
    pub to: Vec<String>,
    /// The subject's prefix. Default `[kray-guardian]`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Seconds an SMTP command may take. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_subject_prefix() -> String {
    "[kray-guardian]".to_string()
}

fn default_timeout() -> u64 {
    30
}

/// A webhook sink (generic, Slack or Discord): the URL given directly or, since chat webhook URLs carry a
/// token, by the name of an environment variable (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Seconds a request may take. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl WebhookConfig {
    /// A webhook posting to `url`.
    pub fn url(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig { url: Some(url.into()), url_env: None, timeout_secs: default_timeout() }
    }
}

/// A PagerDuty Events API v2 sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The environment variable holding the integration's routing key.
    pub routing_key_env: String,
    /// The events endpoint. Default `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// Seconds a request may take. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn default_pagerduty_url() -> String {
    PAGERDUTY_EVENTS_URL.to_string()
}

/// Retries of a failed delivery: exponential backoff from `initial_backoff_ms`, doubling up to
/// `max_backoff_ms`, at most `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, including the first (at least 1). Default 5.
    pub max_attempts: u32,
    /// The wait after the first failure, in milliseconds. Default 1000.
    pub initial_backoff_ms: u64,
    /// The longest wait, in milliseconds. Default 60000.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 5, initial_backoff_ms: 1000, max_backoff_ms: 60_000 }
    }
}

impl RetryConfig {
    /// The wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(32);
        self.initial_backoff_ms.saturating_mul(1u64 << shift).min(self.max_backoff_ms)
    }
}

/// A token bucket per sink for P1–P3 notifications: `burst` at once, refilled at `per_minute`. P0
/// notifications and "resolved" notifications are never rate-limited (see `docs/decisions.md`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The bucket's size. Default 10.
    pub burst: u32,
    /// Tokens added per minute (may be fractional; 0 never refills). Default 6.
    pub per_minute: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { burst: 10, per_minute: 6.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryConfig { max_attempts: 10, initial_backoff_ms: 100, max_backoff_ms: 1000 };
        let waits: Vec<u64> = (1..=6).map(|a| retry.backoff_ms(a)).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry.backoff_ms(200), 1000);
    }
}
