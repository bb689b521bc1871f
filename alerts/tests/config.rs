//! The TOML shape of `[alerts]` and the start-up checks of `Alerter::start`.

use kray_alerts::{
    Alerter, AlertsConfig, AlertsError, PagerDutyConfig, RateLimitConfig, Severity, SinkConfig, SinkKind, SmtpTls,
    PAGERDUTY_EVENTS_URL,
};

#[derive(serde::Deserialize)]
struct Daemon {
    alerts: AlertsConfig,
}

const TOML: &str = r#"
[alerts]
source = "guardian-eu-1"

[[alerts.sinks]]
type = "smtp"
host = "smtp.example.com"
tls = "tls"
username_env = "KRAY_SMTP_USER"
password_env = "KRAY_SMTP_PASSWORD"
from = "guardian@example.com"
to = ["ops@example.com", "oncall@example.com"]

[[alerts.sinks]]
type = "pagerduty"
name = "pager"
routing_key_env = "KRAY_PAGERDUTY_KEY"
min_severity = "P1"
retry = { max_attempts = 8 }

[[alerts.sinks]]
type = "slack"
url_env = "KRAY_SLACK_WEBHOOK"
rate_limit = { burst = 5, per_minute = 0.5 }

[[alerts.sinks]]
type = "discord"
url = "https://discord.example/api/webhooks/1/abc"

[[alerts.sinks]]
type = "webhook"
url = "https://hooks.example/kray"
timeout_secs = 5

[[alerts.sinks]]
type = "log"
"#;

#[test]
fn the_daemon_toml_parses_with_defaults() {
    let config = toml::from_str::<Daemon>(TOML).unwrap().alerts;
    assert_eq!(config.source, "guardian-eu-1");
    assert_eq!(config.queue_capacity, 1024);
    let types: Vec<&str> = config.sinks.iter().map(|s| s.kind.type_name()).collect();
    assert_eq!(types, ["smtp", "pagerduty", "slack", "discord", "webhook", "log"]);

    let SinkKind::Smtp(smtp) = &config.sinks[0].kind else { panic!("not smtp") };
    assert_eq!(smtp.tls, SmtpTls::Tls);
    assert_eq!(smtp.port, None);
    assert_eq!(smtp.to.len(), 2);
    assert_eq!(smtp.subject_prefix, "[kray-guardian]");
    assert_eq!(config.sinks[0].min_severity, Severity::P3);

    let pager = &config.sinks[1];
    assert_eq!(pager.name.as_deref(), Some("pager"));
    assert_eq!(pager.min_severity, Severity::P1);
    assert_eq!(pager.retry.max_attempts, 8);
    assert_eq!(pager.retry.initial_backoff_ms, 1000, "unset retry fields keep their defaults");
    assert_eq!(
        pager.kind,
        SinkKind::Pagerduty(PagerDutyConfig {
            routing_key_env: "KRAY_PAGERDUTY_KEY".into(),
            url: PAGERDUTY_EVENTS_URL.into(),
            timeout_secs: 30,
        })
    );
    assert_eq!(config.sinks[2].rate_limit, RateLimitConfig { burst: 5, per_minute: 0.5 });
    assert_eq!(config.sinks[3].rate_limit, RateLimitConfig::default());
    assert_eq!(config.sinks[5].kind, SinkKind::Log);

    // And back: the serialized form parses to the same config.
    let again: AlertsConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn typos_and_unknown_types_are_rejected() {
    let typo = TOML.replace("password_env", "pasword_env");
    assert!(toml::from_str::<Daemon>(&typo).is_err(), "a misspelt smtp field");
    let unknown = TOML.replace("type = \"log\"", "type = \"carrier-pigeon\"");
    assert!(toml::from_str::<Daemon>(&unknown).is_err());
    let bad_severity = TOML.replace("\"P1\"", "\"P7\"");
    assert!(toml::from_str::<Daemon>(&bad_severity).is_err());
}

#[tokio::test]
async fn a_missing_secret_fails_at_start_naming_the_variable() {
    let config = AlertsConfig {
        sinks: vec![SinkConfig::new(SinkKind::Pagerduty(PagerDutyConfig {
            routing_key_env: "KRAY_ALERTS_TEST_UNSET_VARIABLE".into(),
            url: PAGERDUTY_EVENTS_URL.into(),
            timeout_secs: 30,
        }))],
        ..AlertsConfig::default()
    };
    let err = Alerter::start(&config).unwrap_err();
    assert!(matches!(&err, AlertsError::MissingEnv { var, .. } if var == "KRAY_ALERTS_TEST_UNSET_VARIABLE"));
    assert!(err.to_string().contains("pagerduty"), "{err}");
}

#[tokio::test]
async fn bad_sink_settings_fail_at_start() {
    let mut both = toml::from_str::<Daemon>(TOML).unwrap().alerts;
    both.sinks.retain(|s| s.kind.type_name() == "webhook");
    if let SinkKind::Webhook(w) = &mut both.sinks[0].kind {
        w.url_env = Some("X".into());
    }
    assert!(matches!(Alerter::start(&both), Err(AlertsError::InvalidConfig { .. })));

    let mut twice = toml::from_str::<Daemon>(TOML).unwrap().alerts;
    twice.sinks.retain(|s| s.kind.type_name() == "log");
    twice.sinks.push(twice.sinks[0].clone());
    twice.sinks[0].name = Some("same".into());
    twice.sinks[1].name = Some("same".into());
    assert!(matches!(Alerter::start(&twice), Err(AlertsError::InvalidConfig { .. })), "duplicate names");

    let mut smtp = toml::from_str::<Daemon>(TOML).unwrap().alerts;
    smtp.sinks.retain(|s| s.kind.type_name() == "smtp");
    if let SinkKind::Smtp(c) = &mut smtp.sinks[0].kind {
        c.username_env = None;
        c.password_env = None;
        c.to = vec!["not an address".into()];
    }
    assert!(matches!(Alerter::start(&smtp), Err(AlertsError::InvalidConfig { .. })));
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    assert!(matches!(Alerter::start(&AlertsConfig::default()), Err(AlertsError::NoRuntime)));
}

#[tokio::test]
async fn unnamed_sinks_of_one_type_are_numbered() {
    let mut config = toml::from_str::<Daemon>(TOML).unwrap().alerts;
    config.sinks.retain(|s| s.kind.type_name() == "log");
    config.sinks.push(config.sinks[0].clone());
    let alerter = Alerter::start(&config).unwrap();
    let names: Vec<String> = alerter.snapshot().sinks.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["log-0", "log-1"]);
}
