//! The webhook, Slack, Discord and PagerDuty sinks against a real local HTTP server, and the alerter's
//! de-duplication, resolution, retries, isolation of a dead sink and rate limits.

mod common;

use std::sync::Once;
use std::time::Duration;

use common::{fast_retry, refused_url, sink, webhook, TestServer};
use kray_alerts::{
    Alert, AlertKind, Alerter, AlertsConfig, PagerDutyConfig, RateLimitConfig, RetryConfig, Severity, SinkKind,
};
use kray_replayer::FaultClass;
use serde_json::{json, Value};

const FIRST_SEEN: i64 = 1_795_386_557; // 2026-11-22T22:29:17Z
const PD_KEY_ENV: &str = "KRAY_ALERTS_TEST_PD_ROUTING_KEY";
const PD_KEY: &str = "R0UT1NGKEY0000000000000000000000";

fn set_env() {
    static ONCE: Once = Once::new();
    // Set once, before any sink reads it, so no thread reads the environment while it changes.
    ONCE.call_once(|| std::env::set_var(PD_KEY_ENV, PD_KEY));
}

fn config(sinks: Vec<kray_alerts::SinkConfig>) -> AlertsConfig {
    AlertsConfig { source: "kray-test".to_string(), queue_capacity: 1024, sinks }
}

fn pagerduty(url: String) -> SinkKind {
    set_env();
    SinkKind::Pagerduty(PagerDutyConfig { routing_key_env: PD_KEY_ENV.to_string(), url, timeout_secs: 10 })
}

fn fault_alert() -> Alert {
    Alert::batch_fault(42, FaultClass::BadNonce, Some("https://guardian.example/proofs/42.json".into()))
        .with_first_seen(FIRST_SEEN)
        .with_deadline_height(1234)
}

fn p2(key: &str) -> Alert {
    Alert::new(key, AlertKind::SourceDisagreement, Severity::P2, format!("{key} disagrees"), "Sources differ.")
        .with_first_seen(FIRST_SEEN)
}

/// Waits (a generous safety net, not a timing assertion) for the next recorded post.
async fn next_arrival(server: &mut TestServer) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(60), server.arrivals.recv())
        .await
        .expect("no post arrived within 60 s")
        .expect("server stopped")
}

#[tokio::test]
async fn every_format_arrives_with_its_exact_shape() {
    let server = TestServer::start().await;
    let alerter = Alerter::start(&config(vec![
        sink("webhook", SinkKind::Webhook(webhook(server.url("hook/webhook")))),
        sink("slack", SinkKind::Slack(webhook(server.url("hook/slack")))),
        sink("discord", SinkKind::Discord(webhook(server.url("hook/discord")))),
        sink("pagerduty", pagerduty(server.url("hook/pagerduty"))),
        sink("log", SinkKind::Log),
    ]))
    .unwrap();
    let alert = fault_alert();
    alerter.raise(alert.clone());
    alerter.flush().await;

    // Generic webhook: the notification serialized.
    let bodies = server.bodies("webhook");
    assert_eq!(bodies.len(), 1);
    let at = bodies[0]["at"].as_i64().expect("at is an integer");
    assert!(at >= FIRST_SEEN - 86_400 * 365, "at {at} is the send time");
    assert_eq!(
        bodies[0],
        json!({
            "event": "fired",
            "at": at,
            "alert": {
                "key": "batch-fault:42",
                "kind": "batch-fault",
                "severity": "P0",
                "title": "Batch 42 is faulty: bad-nonce",
                "summary": alert.summary,
                "batch_id": 42,
                "outpoint": null,
                "evidence_url": "https://guardian.example/proofs/42.json",
                "first_seen": FIRST_SEEN,
                "deadline_height": 1234,
                "deadline_unix": null,
            },
        })
    );
    let at_text = kray_alerts::model::rfc3339(at);

    // Slack: text fallback and Block Kit blocks.
    let bodies = server.bodies("slack");
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0],
        json!({
            "text": "[P0 FIRING] Batch 42 is faulty: bad-nonce",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "[P0 FIRING] Batch 42 is faulty: bad-nonce"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": alert.summary}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*Severity*\nP0"},
                    {"type": "mrkdwn", "text": "*Kind*\nbatch-fault"},
                    {"type": "mrkdwn", "text": "*Batch*\n42"},
                    {"type": "mrkdwn", "text": "*Evidence*\nhttps://guardian.example/proofs/42.json"},
                    {"type": "mrkdwn", "text": "*First seen*\n2026-11-22T22:29:17Z"},
                    {"type": "mrkdwn", "text": "*Deadline height*\n1234"},
                    {"type": "mrkdwn", "text": "*Key*\nbatch-fault:42"},
                ]},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": format!("kray-test · fired at {at_text}")},
                ]},
            ],
        })
    );

    // Discord: content plus one embed, mentions disabled.
    let bodies = server.bodies("discord");
    assert_eq!(bodies.len(), 1);
    let field = |name: &str, value: &str| json!({"name": name, "value": value, "inline": true});
    assert_eq!(
        bodies[0],
        json!({
            "content": "[P0 FIRING] Batch 42 is faulty: bad-nonce",
            "embeds": [{
                "title": "Batch 42 is faulty: bad-nonce",
                "description": alert.summary,
                "url": "https://guardian.example/proofs/42.json",
                "color": 0xE01E5A,
                "fields": [
                    field("Severity", "P0"),
                    field("Kind", "batch-fault"),
                    field("Batch", "42"),
                    field("Evidence", "https://guardian.example/proofs/42.json"),
                    field("First seen", "2026-11-22T22:29:17Z"),
                    field("Deadline height", "1234"),
                    field("Key", "batch-fault:42"),
                ],
                "timestamp": at_text,
                "footer": {"text": "kray-test · fired"},
            }],
            "allowed_mentions": {"parse": []},
        })
    );

    // PagerDuty Events v2 trigger.
    let bodies = server.bodies("pagerduty");
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0],
        json!({
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": "batch-fault:42",
            "payload": {
                "summary": "[P0] Batch 42 is faulty: bad-nonce",
                "source": "kray-test",
                "severity": "critical",
                "timestamp": "2026-11-22T22:29:17Z",
                "component": "kray-l2",
                "class": "batch-fault",
                "custom_details": {
                    "alert_severity": "P0",
                    "summary": alert.summary,
                    "first_seen": "2026-11-22T22:29:17Z",
                    "batch_id": 42,
                    "deadline_height": 1234,
                },
            },
            "links": [{"href": "https://guardian.example/proofs/42.json", "text": "Evidence"}],
            "client": "kray-test",
        })
    );

    let snapshot = alerter.snapshot();
    assert_eq!(snapshot.fired, 1);
    assert_eq!(snapshot.open, 1);
    let names: Vec<&str> = snapshot.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["webhook", "slack", "discord", "pagerduty", "log"]);
    for s in &snapshot.sinks {
        assert_eq!((s.delivered, s.failed, s.dropped()), (1, 0, 0), "sink {}", s.name);
    }
}

#[tokio::test]
async fn same_key_sends_once_and_resolve_closes_it_on_pagerduty() {
    let server = TestServer::start().await;
    let alerter = Alerter::start(&config(vec![
        sink("pagerduty", pagerduty(server.url("hook/pagerduty"))),
        sink("webhook", SinkKind::Webhook(webhook(server.url("hook/webhook")))),
    ]))
    .unwrap();
    alerter.raise(fault_alert());
    alerter.raise(fault_alert());
    alerter.raise(fault_alert().with_first_seen(FIRST_SEEN + 600));
    alerter.flush().await;
    assert_eq!(server.bodies("pagerduty").len(), 1);
    assert_eq!(server.bodies("webhook").len(), 1);
    assert_eq!(alerter.open_alerts().len(), 1);

    alerter.resolve("batch-fault:42");
    alerter.resolve("batch-fault:42");
    alerter.resolve("never-raised");
    alerter.flush().await;
    let pd = server.bodies("pagerduty");
    assert_eq!(pd.len(), 2);
    assert_eq!(pd[1], json!({"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": "batch-fault:42"}));
    let hooks = server.bodies("webhook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[1]["event"], "resolved");
    assert_eq!(hooks[1]["alert"]["key"], "batch-fault:42");
    assert_eq!(hooks[1]["alert"]["first_seen"], FIRST_SEEN);
    assert!(alerter.open_alerts().is_empty());

    // Once resolved, the same key fires again.
    alerter.raise(fault_alert());
    alerter.flush().await;
    assert_eq!(server.bodies("pagerduty").len(), 3);

    let s = alerter.snapshot();
    assert_eq!((s.fired, s.deduplicated, s.resolved, s.resolve_unknown), (2, 2, 1, 2));
    assert_eq!(s.sinks[0].delivered, 3);
}

#[tokio::test]
async fn a_higher_severity_on_an_open_key_notifies_again() {
    let server = TestServer::start().await;
    let alerter =
        Alerter::start(&config(vec![sink("webhook", SinkKind::Webhook(webhook(server.url("hook/webhook"))))])).unwrap();
    alerter.raise(p2("lag"));
    alerter.raise(p2("lag"));
    let mut worse = p2("lag").with_first_seen(FIRST_SEEN + 60);
    worse.severity = Severity::P0;
    alerter.raise(worse);
    alerter.raise(p2("lag"));
    alerter.flush().await;
    let bodies = server.bodies("webhook");
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["alert"]["severity"], "P2");
    assert_eq!(bodies[1]["alert"]["severity"], "P0");
    // The escalated alert keeps when it was first seen.
    assert_eq!(bodies[1]["alert"]["first_seen"], FIRST_SEEN);
    let s = alerter.snapshot();
    assert_eq!((s.fired, s.escalated, s.deduplicated), (1, 1, 2));
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_accepts() {
    let server = TestServer::start().await;
    let alerter =
        Alerter::start(&config(vec![sink("flaky", SinkKind::Webhook(webhook(server.url("flaky/flaky"))))])).unwrap();
    alerter.raise(fault_alert());
    alerter.flush().await;
    assert_eq!(server.hits("flaky/flaky"), 3, "500, 500, then 200");
    assert_eq!(server.bodies("flaky").len(), 1, "delivered once");
    let s = &alerter.snapshot().sinks[0];
    assert_eq!((s.delivered, s.retried, s.failed), (1, 2, 0));
}

#[tokio::test]
async fn retries_stop_at_max_attempts_and_client_errors_are_not_retried() {
    let server = TestServer::start().await;
    let mut five_hundred = sink("500", SinkKind::Webhook(webhook(server.url("status/500"))));
    five_hundred.retry = fast_retry(3);
    let bad_request = sink("400", SinkKind::Webhook(webhook(server.url("status/400"))));
    let alerter = Alerter::start(&config(vec![five_hundred, bad_request])).unwrap();
    alerter.raise(fault_alert());
    alerter.flush().await;
    assert_eq!(server.hits("status/500"), 3);
    assert_eq!(server.hits("status/400"), 1);
    let s = alerter.snapshot();
    assert_eq!((s.sinks[0].delivered, s.sinks[0].retried, s.sinks[0].failed), (0, 2, 1));
    assert_eq!((s.sinks[1].delivered, s.sinks[1].retried, s.sinks[1].failed), (0, 0, 1));
}

#[tokio::test]
async fn a_dead_or_hanging_sink_does_not_delay_a_healthy_one() {
    let mut server = TestServer::start().await;
    // Listed first, so a dispatcher that waited on sinks in order would be stuck behind them.
    let mut dead = sink("dead", SinkKind::Webhook(webhook(refused_url())));
    dead.retry = RetryConfig { max_attempts: 5, initial_backoff_ms: 3_600_000, max_backoff_ms: 3_600_000 };
    let mut hanging = sink("hanging", SinkKind::Webhook(webhook(server.url("hang/hanging"))));
    if let SinkKind::Webhook(w) = &mut hanging.kind {
        w.timeout_secs = 3600;
    }
    let healthy = sink("healthy", SinkKind::Webhook(webhook(server.url("hook/healthy"))));
    let alerter = Alerter::start(&config(vec![dead, hanging, healthy])).unwrap();

    alerter.raise(fault_alert());
    let (name, body) = next_arrival(&mut server).await;
    assert_eq!(name, "healthy");
    assert_eq!(body["alert"]["key"], "batch-fault:42");
    // The next alert also goes through while the dead sink waits an hour to retry the first.
    alerter.raise(p2("second"));
    let (name, body) = next_arrival(&mut server).await;
    assert_eq!(name, "healthy");
    assert_eq!(body["alert"]["key"], "second");
    alerter.resolve("second");
    let (_, body) = next_arrival(&mut server).await;
    assert_eq!(body["event"], "resolved");

    assert_eq!(server.bodies("healthy").len(), 3);
    let s = alerter.snapshot();
    // The dead and hanging sinks are still on their first notification: nothing delivered, nothing given up.
    assert_eq!((s.sinks[0].delivered, s.sinks[0].failed), (0, 0));
    assert_eq!((s.sinks[1].delivered, s.sinks[1].failed), (0, 0));
}

#[tokio::test]
async fn raise_never_blocks_and_a_flood_keeps_the_p0() {
    // A current-thread runtime: the dispatcher cannot run while this test raises, so the intake fills.
    let mut dead = sink("dead", SinkKind::Webhook(webhook(refused_url())));
    dead.retry = fast_retry(1);
    let alerter = Alerter::start(&AlertsConfig { queue_capacity: 4, ..config(vec![dead]) }).unwrap();
    alerter.raise(fault_alert());
    for i in 0..999 {
        alerter.raise(Alert::new(format!("noise:{i}"), AlertKind::Test, Severity::P3, "noise", ""));
    }
    alerter.flush().await;
    let s = alerter.snapshot();
    assert_eq!(s.intake_dropped, 996);
    assert_eq!(s.fired, 4);
    assert!(alerter.open_alerts().iter().any(|a| a.key == "batch-fault:42"), "the P0 survived the flood");
    let dead = &s.sinks[0];
    assert_eq!(dead.failed + dead.delivered + dead.dropped(), 4);
    assert_eq!(dead.failed, 4);
}

#[tokio::test]
async fn the_rate_limit_drops_and_counts_excess_but_never_p0() {
    let server = TestServer::start().await;
    let mut limited = sink("limited", SinkKind::Webhook(webhook(server.url("hook/limited"))));
    limited.rate_limit = RateLimitConfig { burst: 2, per_minute: 0.0 };
    let alerter = Alerter::start(&config(vec![limited])).unwrap();
    for i in 0..5 {
        alerter.raise(p2(&format!("p2:{i}")));
    }
    alerter.raise(fault_alert());
    alerter.flush().await;
    let keys: Vec<Value> = server.bodies("limited").iter().map(|b| b["alert"]["key"].clone()).collect();
    assert_eq!(keys, [json!("p2:0"), json!("p2:1"), json!("batch-fault:42")]);
    assert_eq!(alerter.snapshot().sinks[0].rate_limited, 3);

    // Resolutions are not rate-limited, and only go where the alert was sent.
    for i in 0..5 {
        alerter.resolve(format!("p2:{i}"));
    }
    alerter.resolve("batch-fault:42");
    alerter.flush().await;
    let resolved: Vec<Value> = server
        .bodies("limited")
        .iter()
        .filter(|b| b["event"] == "resolved")
        .map(|b| b["alert"]["key"].clone())
        .collect();
    assert_eq!(resolved, [json!("p2:0"), json!("p2:1"), json!("batch-fault:42")]);
    let s = alerter.snapshot();
    assert_eq!((s.sinks[0].delivered, s.sinks[0].rate_limited, s.resolved), (6, 3, 6));
}

#[tokio::test]
async fn min_severity_filters_a_sink() {
    let server = TestServer::start().await;
    let mut pd = sink("pagerduty", pagerduty(server.url("hook/pagerduty")));
    pd.min_severity = Severity::P1;
    let alerter =
        Alerter::start(&config(vec![pd, sink("all", SinkKind::Webhook(webhook(server.url("hook/all"))))])).unwrap();
    alerter.raise(p2("minor"));
    alerter.raise(fault_alert());
    alerter.resolve("minor");
    alerter.flush().await;
    let pd = server.bodies("pagerduty");
    assert_eq!(pd.len(), 1);
    assert_eq!(pd[0]["dedup_key"], "batch-fault:42");
    assert_eq!(server.bodies("all").len(), 3);
}

#[tokio::test]
async fn shutdown_delivers_what_was_queued() {
    let server = TestServer::start().await;
    let alerter =
        Alerter::start(&config(vec![sink("webhook", SinkKind::Webhook(webhook(server.url("hook/webhook"))))])).unwrap();
    alerter.raise(fault_alert());
    alerter.raise(p2("other"));
    alerter.shutdown().await;
    assert_eq!(server.bodies("webhook").len(), 2);
}
