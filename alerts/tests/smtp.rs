//! The SMTP sink against a real local SMTP server: Python `aiosmtpd`, started by the test on a free port,
//! writing each received message as a JSON line. Needs `python3` with `aiosmtpd`
//! (`python3 -m pip install --user aiosmtpd`); `KRAY_PYTHON` names another interpreter. Only with
//! `KRAY_SKIP_SMTP=1` does a missing `aiosmtpd` skip these tests; otherwise it fails them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;

use kray_alerts::{Alert, Alerter, AlertsConfig, RetryConfig, SinkConfig, SinkKind, SmtpConfig, SmtpTls};
use kray_replayer::FaultClass;
use serde_json::Value;

const USER_ENV: &str = "KRAY_ALERTS_TEST_SMTP_USER";
const PASS_ENV: &str = "KRAY_ALERTS_TEST_SMTP_PASSWORD";
const WRONG_PASS_ENV: &str = "KRAY_ALERTS_TEST_SMTP_WRONG_PASSWORD";
const USER: &str = "guardian";
const PASSWORD: &str = "s3cret-pass";

fn set_env() {
    static ONCE: Once = Once::new();
    // Set once, before any sink reads them, so no thread reads the environment while it changes.
    ONCE.call_once(|| {
        std::env::set_var(USER_ENV, USER);
        std::env::set_var(PASS_ENV, PASSWORD);
        std::env::set_var(WRONG_PASS_ENV, "not-the-password");
    });
}

/// The aiosmtpd server process; stopped when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    out: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Every message received so far.
    fn messages(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

fn python() -> String {
    std::env::var("KRAY_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// A private CA (`ca.pem`) and a server certificate for 127.0.0.1 (`server.pem`, `server.key`) in `dir`,
/// made with the `openssl` command.
fn make_certificates(dir: &Path) {
    let run = |args: &str| {
        let args: Vec<&str> = args.split(' ').collect();
        let out = Command::new("openssl").args(&args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kray-test-CA");
    run("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1");
    let extensions = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("ext.cnf"), extensions).unwrap();
    run("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf");
}

/// Starts a plain-text server, or returns `None` (skip) when aiosmtpd is missing and `KRAY_SKIP_SMTP=1`.
fn start_server() -> Option<SmtpServer> {
    start_server_in_mode(SmtpTls::None)
}

/// Starts a server in `mode` (with certificates from [`make_certificates`] for the TLS modes).
fn start_server_in_mode(mode: SmtpTls) -> Option<SmtpServer> {
    let python = python();
    let available = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !available {
        if std::env::var("KRAY_SKIP_SMTP").as_deref() == Ok("1") {
            eprintln!("SKIPPED: `{python}` with aiosmtpd is not available and KRAY_SKIP_SMTP=1");
            return None;
        }
        panic!(
            "the SMTP tests need `{python}` with aiosmtpd: run `python3 -m pip install --user aiosmtpd` \
             (or set KRAY_SKIP_SMTP=1 to skip them)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
    let mut command = Command::new(&python);
    command.arg(&script).arg(&out).arg(USER).arg(PASSWORD);
    match mode {
        SmtpTls::None => {}
        SmtpTls::Starttls | SmtpTls::Tls => {
            make_certificates(dir.path());
            command.arg(if mode == SmtpTls::Tls { "tls" } else { "starttls" });
            command.arg(dir.path().join("server.pem")).arg(dir.path().join("server.key"));
        }
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the SMTP server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("the SMTP server printed {line:?}, not a port"));
    Some(SmtpServer { child, port, out, dir })
}

fn smtp_sink(port: u16, password_env: &str) -> SinkConfig {
    set_env();
    let mut sink = SinkConfig::new(SinkKind::Smtp(SmtpConfig {
        host: "127.0.0.1".to_string(),
        port: Some(port),
        tls: SmtpTls::None,
        ca_file: None,
        username_env: Some(USER_ENV.to_string()),
        password_env: Some(password_env.to_string()),
        from: "KRAY guardian <guardian@kray.test>".to_string(),
        to: vec!["ops@kray.test".to_string(), "Oncall <oncall@kray.test>".to_string()],
        subject_prefix: "[kray-guardian]".to_string(),
        timeout_secs: 30,
    }));
    sink.name = Some("mail".to_string());
    sink.retry = RetryConfig { max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 40 };
    sink
}

fn config(sink: SinkConfig) -> AlertsConfig {
    AlertsConfig { source: "kray-test".to_string(), queue_capacity: 64, sinks: vec![sink] }
}

#[tokio::test]
async fn fired_and_resolved_emails_arrive_with_the_facts() {
    let Some(server) = start_server() else { return };
    let alerter = Alerter::start(&config(smtp_sink(server.port, PASS_ENV))).unwrap();
    let alert = Alert::batch_fault(42, FaultClass::BadNonce, Some("https://guardian.example/proofs/42.json".into()))
        .with_deadline_height(1234);
    alerter.raise(alert.clone());
    alerter.raise(alert.clone());
    alerter.flush().await;
    alerter.resolve("batch-fault:42");
    alerter.flush().await;

    let messages = server.messages();
    assert_eq!(messages.len(), 2, "one fired and one resolved email, the duplicate raise sent nothing");
    let fired = &messages[0];
    assert_eq!(fired["mail_from"], "guardian@kray.test");
    let mut rcpts: Vec<String> =
        fired["rcpt_tos"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["oncall@kray.test", "ops@kray.test"]);
    assert_eq!(fired["login"], USER, "authenticated with the credentials from the environment");
    assert_eq!(fired["subject"], "[kray-guardian] [P0 FIRING] Batch 42 is faulty: bad-nonce");
    let to = fired["to"].as_str().unwrap();
    assert!(to.contains("ops@kray.test") && to.contains("oncall@kray.test"), "To: {to}");
    let body = fired["body"].as_str().unwrap();
    for needle in [
        "Severity: P0",
        "Kind: batch-fault",
        "Batch: 42",
        "Evidence: https://guardian.example/proofs/42.json",
        "Deadline height: 1234",
        "Key: batch-fault:42",
        "bad-nonce",
        "Event: fired at ",
        "Sent by kray-test",
    ] {
        assert!(body.contains(needle), "body lacks {needle:?}:\n{body}");
    }
    assert!(!fired["data"].as_str().unwrap().contains(PASSWORD), "the password never appears in a message");

    let resolved = &messages[1];
    assert_eq!(resolved["subject"], "[kray-guardian] [P0 RESOLVED] Batch 42 is faulty: bad-nonce");
    assert!(resolved["body"].as_str().unwrap().contains("Event: resolved at "));

    let s = &alerter.snapshot().sinks[0];
    assert_eq!((s.kind.as_str(), s.delivered, s.failed, s.retried), ("smtp", 2, 0, 0));
}

#[tokio::test]
async fn a_rejected_login_fails_without_retrying() {
    let Some(server) = start_server() else { return };
    let alerter = Alerter::start(&config(smtp_sink(server.port, WRONG_PASS_ENV))).unwrap();
    alerter.raise(Alert::batch_fault(7, FaultClass::Overflow, None));
    alerter.flush().await;
    assert!(server.messages().is_empty());
    let s = &alerter.snapshot().sinks[0];
    // 535 authentication failed is permanent: one attempt, counted as a failure.
    assert_eq!((s.delivered, s.failed, s.retried), (0, 1, 0));
}

fn tls_sink(server: &SmtpServer, tls: SmtpTls, trust_ca: bool) -> SinkConfig {
    let mut sink = smtp_sink(server.port, PASS_ENV);
    if let SinkKind::Smtp(smtp) = &mut sink.kind {
        smtp.tls = tls;
        smtp.ca_file = trust_ca.then(|| server.dir.path().join("ca.pem"));
    }
    sink
}

async fn delivers_over_tls(mode: SmtpTls) {
    let Some(server) = start_server_in_mode(mode) else { return };
    let alerter = Alerter::start(&config(tls_sink(&server, mode, true))).unwrap();
    alerter.raise(Alert::batch_fault(9, FaultClass::WrongGas, None));
    alerter.flush().await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{:?}", alerter.snapshot());
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["login"], USER);
    assert_eq!(messages[0]["subject"], "[kray-guardian] [P0 FIRING] Batch 9 is faulty: wrong-gas");
}

#[tokio::test]
async fn starttls_delivers_over_the_upgraded_connection() {
    delivers_over_tls(SmtpTls::Starttls).await;
}

#[tokio::test]
async fn implicit_tls_delivers() {
    delivers_over_tls(SmtpTls::Tls).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let Some(server) = start_server_in_mode(SmtpTls::Starttls) else { return };
    // Without the private CA, the server's certificate does not verify: nothing is sent.
    let alerter = Alerter::start(&config(tls_sink(&server, SmtpTls::Starttls, false))).unwrap();
    alerter.raise(Alert::batch_fault(9, FaultClass::WrongGas, None));
    alerter.flush().await;
    assert!(server.messages().is_empty());
    let s = &alerter.snapshot().sinks[0];
    assert_eq!((s.delivered, s.failed), (0, 1));
}
