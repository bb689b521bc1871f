//! HTTP sinks: a generic JSON webhook, Slack, Discord and PagerDuty Events API v2. The body builders are
//! public functions so the formats are documented by code and tested exactly.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::SinkError;
use crate::model::{rfc3339, AlertEvent, Notification, Severity};
use crate::sink::{BoxFuture, Sink};

/// Posts JSON to one URL with a timeout; any 2xx is success.
#[derive(Clone)]
struct Poster {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token (Slack, Discord): never print it.
        f.debug_struct("Poster").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Poster {
    async fn post(&self, body: &Value) -> Result<(), SinkError> {
        let response =
            self.client.post(&self.url).timeout(self.timeout).json(body).send().await.map_err(SinkError::transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(SinkError::Status { status: status.as_u16(), body: truncate(&text, 200) })
    }
}

/// A generic JSON webhook: the body is the [`Notification`] serialized (`{"event", "alert", "at"}`).
#[derive(Debug, Clone)]
pub struct WebhookSink {
    poster: Poster,
}

impl WebhookSink {
    /// A webhook posting to `url` with `client`, each request limited to `timeout`.
    pub fn new(client: reqwest::Client, url: impl Into<String>, timeout: Duration) -> WebhookSink {
        WebhookSink { poster: Poster { client, url: url.into(), timeout } }
    }
}

impl Sink for WebhookSink {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let body = serde_json::to_value(n).map_err(|e| SinkError::Message(e.to_string()))?;
            self.poster.post(&body).await
        })
    }
}

/// A Slack incoming webhook: `{"text": headline, "blocks": [header, summary, facts, context]}`.
#[derive(Debug, Clone)]
pub struct SlackSink {
    poster: Poster,
    source: String,
}

impl SlackSink {
    /// A Slack sink posting to `url`; `source` names this guardian in the context line.
    pub fn new(client: reqwest::Client, url: impl Into<String>, timeout: Duration, source: &str) -> SlackSink {
        SlackSink { poster: Poster { client, url: url.into(), timeout }, source: source.to_string() }
    }
}

impl Sink for SlackSink {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.poster.post(&slack_body(n, &self.source)).await })
    }
}

/// Slack's message: a `text` fallback plus Block Kit blocks (header ≤150 chars, section ≤3000, ≤10 fields).
pub fn slack_body(n: &Notification, source: &str) -> Value {
    let headline = n.headline();
    let fields: Vec<Value> = n
        .alert
        .facts()
        .into_iter()
        .take(10)
        .map(|(label, value)| {
            let text = truncate(&format!("*{label}*\n{}", slack_escape(&value)), 2000);
            json!({"type": "mrkdwn", "text": text})
        })
        .collect();
    let context = slack_escape(&format!("{source} · {} at {}", n.event.as_str(), rfc3339(n.at)));
    let summary = truncate(&slack_escape(&n.alert.summary), 3000);
    json!({
        "text": slack_escape(&headline),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&headline, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Discord webhook: `{"content": headline, "embeds": [one embed], "allowed_mentions": {"parse": []}}`.
#[derive(Debug, Clone)]
pub struct DiscordSink {
    poster: Poster,
    source: String,
}

impl DiscordSink {
    /// A Discord sink posting to `url`; `source` names this guardian in the footer.
    pub fn new(client: reqwest::Client, url: impl Into<String>, timeout: Duration, source: &str) -> DiscordSink {
        DiscordSink { poster: Poster { client, url: url.into(), timeout }, source: source.to_string() }
    }
}

impl Sink for DiscordSink {
    fn kind(&self) -> &'static str {
        "discord"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.poster.post(&discord_body(n, &self.source)).await })
    }
}

/// The embed colour: red P0, orange P1, yellow P2, blue P3, green when resolved.
pub fn discord_color(n: &Notification) -> u32 {
    match (n.event, n.alert.severity) {
        (AlertEvent::Resolved, _) => 0x2E_B8_86,
        (AlertEvent::Fired, Severity::P0) => 0xE0_1E_5A,
        (AlertEvent::Fired, Severity::P1) => 0xF2_84_1F,
        (AlertEvent::Fired, Severity::P2) => 0xEC_B2_2E,
        (AlertEvent::Fired, Severity::P3) => 0x36_C5_F0,
    }
}

/// Discord's message (content ≤2000 chars, embed title ≤256, description ≤4096, mentions disabled).
pub fn discord_body(n: &Notification, source: &str) -> Value {
    let fields: Vec<Value> = n
        .alert
        .facts()
        .into_iter()
        .map(|(label, value)| json!({"name": label, "value": truncate(&value, 1024), "inline": true}))
        .collect();
    let mut embed = json!({
        "title": truncate(&n.alert.title, 256),
        "description": truncate(&n.alert.summary, 4096),
        "color": discord_color(n),
        "fields": fields,
        "timestamp": rfc3339(n.at),
        "footer": {"text": format!("{source} · {}", n.event.as_str())},
    });
    if let (Some(url), Some(obj)) = (&n.alert.evidence_url, embed.as_object_mut()) {
        obj.insert("url".to_string(), Value::String(url.clone()));
    }
    json!({
        "content": truncate(&n.headline(), 2000),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

/// PagerDuty Events API v2: `trigger` when fired, `resolve` when resolved, `dedup_key` = the alert's key.
#[derive(Clone)]
pub struct PagerDutySink {
    poster: Poster,
    routing_key: String,
    source: String,
}

impl std::fmt::Debug for PagerDutySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The routing key is a secret: never print it.
        f.debug_struct("PagerDutySink").field("source", &self.source).finish_non_exhaustive()
    }
}

impl PagerDutySink {
    /// A PagerDuty sink posting to `url` (normally [`crate::PAGERDUTY_EVENTS_URL`]) with `routing_key`.
    pub fn new(
        client: reqwest::Client,
        url: impl Into<String>,
        timeout: Duration,
        routing_key: String,
        source: &str,
    ) -> PagerDutySink {
        PagerDutySink { poster: Poster { client, url: url.into(), timeout }, routing_key, source: source.to_string() }
    }
}

impl Sink for PagerDutySink {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.poster.post(&pagerduty_body(n, &self.routing_key, &self.source)).await })
    }
}

/// PagerDuty's severity for ours: P0 critical, P1 error, P2 warning, P3 info.
pub fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::P0 => "critical",
        Severity::P1 => "error",
        Severity::P2 => "warning",
        Severity::P3 => "info",
    }
}

/// The Events API v2 body. A trigger carries `payload` (summary ≤1024 chars, source, severity, timestamp,
/// class = kind, custom details) and the evidence link; a resolve carries only the routing and dedup keys.
pub fn pagerduty_body(n: &Notification, routing_key: &str, source: &str) -> Value {
    let a = &n.alert;
    match n.event {
        AlertEvent::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": a.key,
        }),
        AlertEvent::Fired => {
            let mut details = Map::new();
            details.insert("alert_severity".into(), json!(a.severity));
            details.insert("summary".into(), json!(a.summary));
            details.insert("first_seen".into(), json!(rfc3339(a.first_seen)));
            if let Some(batch) = a.batch_id {
                details.insert("batch_id".into(), json!(batch));
            }
            if let Some(outpoint) = &a.outpoint {
                details.insert("outpoint".into(), json!(outpoint));
            }
            if let Some(height) = a.deadline_height {
                details.insert("deadline_height".into(), json!(height));
            }
            if let Some(unix) = a.deadline_unix {
                details.insert("deadline".into(), json!(rfc3339(unix)));
            }
            let mut body = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": a.key,
                "payload": {
                    "summary": truncate(&format!("[{}] {}", a.severity, a.title), 1024),
                    "source": source,
                    "severity": pagerduty_severity(a.severity),
                    "timestamp": rfc3339(a.first_seen),
                    "component": "kray-l2",
                    "class": a.kind.as_str(),
                    "custom_details": details,
                },
                "client": source,
            });
            if let (Some(url), Some(obj)) = (&a.evidence_url, body.as_object_mut()) {
                obj.insert("links".to_string(), json!([{"href": url, "text": "Evidence"}]));
            }
            body
        }
    }
}

/// At most `max` characters of `text` (an ellipsis marks a cut).
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alert, AlertKind};

    fn fired(alert: Alert) -> Notification {
        Notification { event: AlertEvent::Fired, at: alert.first_seen, alert }
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééé", 2), "é…");
    }

    #[test]
    fn pagerduty_severity_mapping() {
        let mapped: Vec<&str> = Severity::ALL.iter().map(|s| pagerduty_severity(*s)).collect();
        assert_eq!(mapped, vec!["critical", "error", "warning", "info"]);
    }

    #[test]
    fn slack_escapes_and_limits_the_header() {
        let alert = Alert::new("k", AlertKind::Test, Severity::P3, "x".repeat(300), "a <b> & c").with_first_seen(0);
        let body = slack_body(&fired(alert), "g");
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), 150);
        assert_eq!(body["blocks"][1]["text"]["text"], "a &lt;b&gt; &amp; c");
    }

    #[test]
    fn pagerduty_trigger_omits_absent_links() {
        let alert = Alert::new("k", AlertKind::Test, Severity::P2, "t", "s").with_first_seen(0);
        let body = pagerduty_body(&fired(alert), "rk", "g");
        assert!(body.get("links").is_none());
        assert_eq!(body["payload"]["severity"], "warning");
        assert_eq!(body["payload"]["custom_details"]["alert_severity"], "P2");
    }
}
