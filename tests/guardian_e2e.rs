//! End-to-end: `kray-guardian run` as a separate process watching a devnet on a real regtest bitcoind.
//! The honest devnet yields no finding; injected faults yield exactly their findings, with fraud
//! proofs served that verify offline; a `kill -9` and restart neither loses nor repeats a finding.
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kray_devnet::bitcoind::free_port;
use kray_devnet::guardian::guardian_toml;
use kray_devnet::runner::{Devnet, DevnetConfig};
use kray_devnet::traffic::{self, user_tx};
use serde_json::Value;

mod support;

use support::{get_json, transfers, Guardian};

/// The SMTP credentials every guardian of these tests reads (see `smtp_server`).
const SMTP_ENV: [(&str, &str); 2] = [("KRAY_E2E_SMTP_USER", "guardian"), ("KRAY_E2E_SMTP_PASS", "s3cret-pass")];

fn skip() -> bool {
    support::skip("the guardian end-to-end test")
}

/// Waits until the guardian has replayed `batch_id` with its L1 index at `l1_height` or above.
async fn wait_synced(client: &reqwest::Client, g: &Guardian, batch_id: u64, l1_height: u64) -> Value {
    for _ in 0..240 {
        if let Some(s) = get_json(client, &format!("{}/v1/status", g.url)).await {
            let replayed = s["replayed"]["height"].as_u64().unwrap_or(0);
            let l1 = s["l1_blocks"]["height"].as_u64().unwrap_or(0);
            if replayed >= batch_id && l1 >= l1_height {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("guardian did not reach batch {batch_id} / L1 {l1_height}; log:\n{}", g.log_tail());
}

async fn findings(client: &reqwest::Client, g: &Guardian) -> Vec<Value> {
    let v = get_json(client, &format!("{}/v1/findings", g.url)).await.expect("findings");
    v["findings"].as_array().cloned().unwrap_or_default()
}

fn kinds(f: &[Value]) -> Vec<(String, Option<u64>)> {
    let mut k: Vec<_> =
        f.iter().map(|f| (f["kind"].as_str().unwrap_or("").to_string(), f["batch_id"].as_u64())).collect();
    k.sort();
    k
}

/// A real local SMTP server (aiosmtpd, the alerts crate's test server) writing each message it receives
/// as a JSON line to the returned file; it stops when this process ends (its stdin closes).
fn smtp_server(dir: &Path) -> (Child, u16, PathBuf) {
    use std::io::BufRead;
    let out = dir.join("mail.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/tests/smtp_server.py");
    let python = std::env::var("KRAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(&script)
        .arg(&out)
        .args(["guardian", "s3cret-pass"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the SMTP test server starts (python3 -m pip install --user aiosmtpd)");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout).read_line(&mut line).expect("port line");
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the SMTP server printed {line:?}, not a port"));
    (child, port, out)
}

/// A real local HTTP server receiving webhook posts.
async fn webhook_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, got)
}

fn start_guardian(dir: &Path, d: &Devnet, mode: &str) -> Guardian {
    start_guardian_with(dir, d, mode, "")
}

fn start_guardian_with(dir: &Path, d: &Devnet, mode: &str, extra: &str) -> Guardian {
    let port = free_port().expect("port");
    let config = dir.join("guardian.toml");
    let mut text = guardian_toml(&d.info, mode, &dir.join("guardian-data"), &format!("127.0.0.1:{port}"));
    text.push_str(extra);
    std::fs::write(&config, text).expect("config");
    Guardian::spawn(&config, port, &dir.join("guardian.log"), &SMTP_ENV)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_watches_an_honest_devnet_without_findings() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig { data_dir: dir.path().join("devnet"), users: 3, seed: 11, ..DevnetConfig::default() };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let g = start_guardian(dir.path(), &d, "watch");
    // Batch 1 credits the users' deposits.
    let mut last = d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    for _ in 0..3 {
        transfers(&d, &client, 5).await;
        last = d.tick().await.expect("tick");
        d.mine(1).await.expect("mine");
    }
    d.mine(4).await.expect("mine");
    let status = wait_synced(&client, &g, last, u64::from(d.height())).await;
    assert_eq!(status["synced"], true, "{status}");
    let f = findings(&client, &g).await;
    assert!(f.is_empty(), "honest devnet, findings: {f:#?}\n{}", g.log_tail());
    let batches = get_json(&client, &format!("{}/v1/batches", g.url)).await.expect("batches");
    let list = batches["batches"].as_array().expect("list");
    assert_eq!(list.len() as u64, last);
    assert!(list.iter().all(|b| b["verdict"] == "valid"), "{batches}");
    assert!(list.iter().all(|b| b["anchor"]["confirmed"] == true), "{batches}");
    // Pages are bounded; a batch shows its signed header.
    let page = get_json(&client, &format!("{}/v1/batches?from=2&limit=2", g.url)).await.expect("page");
    assert_eq!(page["batches"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(page["next"], 4, "{page}");
    let bad = client.get(format!("{}/v1/batches?limit=1000", g.url)).send().await.expect("GET");
    assert_eq!(bad.status().as_u16(), 400);
    let one = get_json(&client, &format!("{}/v1/batches/2", g.url)).await.expect("batch");
    assert_eq!(one["copies"][0]["header"]["batch_id"], 2, "{one}");
    assert_eq!(one["copies"][0]["verdict"], "valid", "{one}");
    // The bridge: NUMS internal key, the users' deposits, solvent (balances + pending = the bridge's runes).
    let bridge = get_json(&client, &format!("{}/v1/bridge", g.url)).await.expect("bridge");
    assert_eq!(bridge["audit"]["key_path_possibly_spendable"], false, "{bridge}");
    assert!(bridge["utxo_count"].as_u64().unwrap_or(0) >= 3, "{bridge}");
    assert_eq!(bridge["solvency"]["solvent"], true, "{bridge}");
    assert_eq!(bridge["solvency"]["ratio"], 1.0, "{bridge}");
    // The guardian serves its mirror byte-identical to the sequencer.
    let ours =
        client.get(format!("{}/l2/batches/{last}/raw", g.url)).send().await.expect("GET").bytes().await.expect("b");
    let theirs = client
        .get(format!("{}/l2/batches/{last}/raw", d.info.api_url))
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("b");
    assert_eq!(ours, theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_reports_faults_serves_proofs_and_survives_kill_9() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 12,
        faults: vec!["wrong-gas@3".parse().expect("fault"), "wrong-anchor@2".parse().expect("fault")],
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let (hook, received) = webhook_server().await;
    let (mut smtp, smtp_port, mail) = smtp_server(dir.path());
    let sinks = format!(
        "\n[[alerts.sinks]]\ntype = \"webhook\"\nurl = \"{hook}\"\n\
         \n[[alerts.sinks]]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\
         username_env = \"KRAY_E2E_SMTP_USER\"\npassword_env = \"KRAY_E2E_SMTP_PASS\"\n\
         from = \"KRAY guardian <guardian@kray.test>\"\nto = [\"ops@kray.test\"]\n"
    );
    let mut g = start_guardian_with(dir.path(), &d, "watch", &sinks);
    let mut last = d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    for i in 0..3 {
        transfers(&d, &client, 3).await;
        last = d.tick().await.expect("tick");
        d.mine(1).await.expect("mine");
        if i == 0 {
            // Kill -9 mid-run; the restarted guardian resumes from its store.
            tokio::time::sleep(Duration::from_millis(700)).await;
            g.kill9();
            let (config, port) = (g.config.clone(), g.port);
            g = Guardian::spawn(&config, port, &dir.path().join("guardian2.log"), &SMTP_ENV);
        }
    }
    d.mine(6).await.expect("mine");
    wait_synced(&client, &g, last, u64::from(d.height())).await;
    // Findings settle once the wrong anchor is grace-deep and batch 2 is past its anchor grace.
    let mut f = Vec::new();
    for _ in 0..40 {
        f = findings(&client, &g).await;
        if kinds(&f).iter().any(|(k, _)| k == "abandoned-batch") && kinds(&f).iter().any(|(k, _)| k == "wrong-gas") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let k = kinds(&f);
    assert!(k.contains(&("wrong-gas".to_string(), Some(3))), "{k:?}\n{}", g.log_tail());
    assert!(k.contains(&("abandoned-batch".to_string(), Some(2))), "{k:?}");
    assert!(k.iter().any(|(kind, _)| kind == "unknown-anchor"), "{k:?}");
    // Each finding once, across the kill -9.
    let ids: Vec<&str> = f.iter().filter_map(|x| x["id"].as_str()).collect();
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(ids.len(), dedup.len(), "{ids:?}");
    // The operator's webhook received the P0 fault alert once, with its evidence link.
    let mut posts = Vec::new();
    for _ in 0..40 {
        posts = received.lock().expect("lock").clone();
        if posts.iter().any(|p| p.to_string().contains("wrong-gas")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fault_posts: Vec<&Value> = posts.iter().filter(|p| p.to_string().contains("wrong-gas/3/")).collect();
    assert_eq!(fault_posts.len(), 1, "{posts:#?}");
    assert!(fault_posts[0].to_string().contains("/v1/proofs/3"), "{:#}", fault_posts[0]);
    // The operator's mailbox received it too, over a real SMTP conversation.
    let mut mails = String::new();
    for _ in 0..40 {
        mails = std::fs::read_to_string(&mail).unwrap_or_default();
        if mails.contains("wrong-gas") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fault_mail: Vec<Value> = mails
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m.to_string().contains("wrong-gas"))
        .collect();
    assert_eq!(fault_mail.len(), 1, "{mails}");
    assert_eq!(fault_mail[0]["rcpt_tos"], serde_json::json!(["ops@kray.test"]), "{}", fault_mail[0]);
    assert!(fault_mail[0]["body"].as_str().unwrap_or("").contains("/v1/proofs/3"), "{}", fault_mail[0]);
    let _ = smtp.kill();
    // A watch-mode guardian cannot challenge: as the deadline nears, that is itself a (P0) alert.
    let mut due = None;
    for _ in 0..40 {
        let now = findings(&client, &g).await;
        due = now.iter().find(|x| x["kind"] == "wrong-gas").and_then(|x| x["deadline_height"].as_u64());
        if due.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let due = due.unwrap_or_else(|| panic!("the wrong-gas finding never got its deadline:\n{}", g.log_tail()));
    while u64::from(d.height()) + 3 < due {
        d.mine(1).await.expect("mine");
    }
    let mut at_risk = false;
    for _ in 0..40 {
        at_risk =
            received.lock().expect("lock").iter().any(|p| p.to_string().contains("deadline-at-risk:wrong-gas/3/"));
        if at_risk {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(at_risk, "no deadline alert before {due}:\n{}", g.log_tail());
    // The operator's CLI reads the same store while the daemon runs, and resolves by id.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
            .args(["findings", "--config"])
            .arg(&g.config)
            .args(args)
            .output()
            .expect("findings cli")
    };
    let listed = cli(&["list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"wrong-gas/3/\""));
    assert_eq!(cli(&["resolve", "late-anchor/999/"]).status.code(), Some(4));
    // The proof is served and verifies offline.
    let proof = client.get(format!("{}/v1/proofs/3", g.url)).send().await.expect("GET").text().await.expect("proof");
    let path = dir.path().join("proof.json");
    std::fs::write(&path, proof).expect("write proof");
    let o = Command::new(env!("CARGO_BIN_EXE_kray-guardian")).arg("verify-proof").arg(&path).output().expect("verify");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // The guardian also keeps its own copy in its data dir.
    let stored: Vec<_> = std::fs::read_dir(dir.path().join("guardian-data").join("proofs"))
        .expect("proofs dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("proof-batch-000003-wrong-gas"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::read_to_string(&stored[0]).expect("read"), std::fs::read_to_string(&path).expect("read"));
}

async fn post_fault(admin: &str, fault: &str) {
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/faults"))
        .body(serde_json::json!({ "fault": fault }).to_string())
        .send()
        .await
        .expect("POST /admin/faults");
    assert_eq!(r.status().as_u16(), 202, "{fault}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_reports_early_payout_theft_and_key_path_spend() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 13,
        legacy_internal_key: true,
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let g = start_guardian(dir.path(), &d, "watch");
    d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    // A withdrawal by user 0 to its own L1 address, then the sequencer pays it at once.
    let unit = d.profile().credits_per_rune_unit();
    let addr0 = d.info.user_addresses[0].clone();
    let acct = traffic::account(&client, &d.info.api_url, &addr0).await.expect("account");
    let w = user_tx(d.user(0).expect("user 0"), d.profile().network, "withdrawal", &addr0, 2 * unit, acct.next_nonce);
    traffic::submit(&client, &d.info.api_url, &w).await.expect("withdrawal accepted");
    d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    for fault in ["pay-early", "theft", "key-path-sweep"] {
        post_fault(&d.info.admin_url, fault).await;
        d.tick().await.expect("tick");
        d.mine(1).await.expect("mine");
    }
    let mut k = Vec::new();
    for _ in 0..60 {
        d.mine(1).await.expect("mine");
        k = kinds(&findings(&client, &g).await);
        let has = |name: &str| k.iter().any(|(kind, _)| kind == name);
        if has("early-payout") && has("unknown-payout") && has("key-path-spend") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let has = |name: &str| k.iter().any(|(kind, _)| kind == name);
    assert!(has("early-payout"), "{k:?}\n{}", g.log_tail());
    assert!(has("unknown-payout"), "{k:?}");
    assert!(has("key-path-spend"), "{k:?}");
    // The LEGACY bridge itself is audited at start: one signer can spend it alone.
    assert!(has("bridge-key-path"), "{k:?}");
    // No false accusation of the honest parts: no batch fault, no missing credit.
    assert!(!k.iter().any(|(kind, _)| kind == "missing-credit" || kind == "bad-deposit"), "{k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_reports_a_double_credit_and_withheld_data() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 14,
        faults: vec!["credit-deposit-twice@2".parse().expect("fault"), "withhold@4".parse().expect("fault")],
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let g = start_guardian(dir.path(), &d, "watch");
    d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    for _ in 0..4 {
        transfers(&d, &client, 2).await;
        d.tick().await.expect("tick");
        d.mine(1).await.expect("mine");
    }
    let mut k = Vec::new();
    for _ in 0..60 {
        d.mine(1).await.expect("mine");
        k = kinds(&findings(&client, &g).await);
        if k.iter().any(|(kind, _)| kind == "double-deposit") && k.iter().any(|(kind, _)| kind == "data-withheld") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(k.contains(&("double-deposit".to_string(), Some(2))), "{k:?}\n{}", g.log_tail());
    assert!(k.iter().any(|(kind, _)| kind == "data-withheld"), "{k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_deeper_than_finality_stops_acting_until_an_operator_resolves_it() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig { data_dir: dir.path().join("devnet"), users: 3, seed: 15, ..DevnetConfig::default() };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let port = free_port().expect("port");
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, guardian_toml(&d.info, "watch", &dir.path().join("data"), &format!("127.0.0.1:{port}")))
        .expect("config");
    let g = Guardian::spawn(&config, port, &dir.path().join("g.log"), &[("KRAY_GUARDIAN_FINALITY_DEPTH", "2")]);
    let last = d.tick().await.expect("tick");
    d.mine(2).await.expect("mine");
    wait_synced(&client, &g, last, u64::from(d.height())).await;
    let health = client.get(format!("{}/health", g.url)).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 200);
    // Replace the last 3 blocks (depth 3 > finality depth 2) with 4 others.
    let tip = d.height();
    let fork = d.rpc().get_block_hash(u64::from(tip) - 2).await.expect("hash");
    d.rpc().invalidate_block(&fork).await.expect("invalidate");
    d.rpc()
        .generate_to_address(4, &bitcoin::Address::from_str(&d.info.user_addresses[0]).expect("addr").assume_checked())
        .await
        .expect("mine");
    let mut status = 0;
    for _ in 0..80 {
        status = client.get(format!("{}/health", g.url)).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 503, "the guardian did not stop acting:\n{}", g.log_tail());
    let f = findings(&client, &g).await;
    let id = f.iter().find(|x| x["kind"] == "deep-reorg").and_then(|x| x["id"].as_str()).expect("deep-reorg finding");
    // The operator resolves it; the guardian acts again.
    let o = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
        .args(["findings", "--config"])
        .arg(&config)
        .args(["resolve", id])
        .output()
        .expect("resolve");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for _ in 0..80 {
        status = client.get(format!("{}/health", g.url)).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_api_is_rate_limited_per_client() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig { data_dir: dir.path().join("devnet"), users: 3, seed: 16, ..DevnetConfig::default() };
    let d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let port = free_port().expect("port");
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, guardian_toml(&d.info, "watch", &dir.path().join("data"), &format!("127.0.0.1:{port}")))
        .expect("config");
    let g = Guardian::spawn(
        &config,
        port,
        &dir.path().join("g.log"),
        &[("KRAY_GUARDIAN_HTTP_RATE_LIMIT_PER_IP_PER_MINUTE", "5")],
    );
    let mut codes = Vec::new();
    for _ in 0..200 {
        match client.get(format!("{}/health", g.url)).send().await {
            Ok(r) => {
                codes.push(r.status().as_u16());
                if r.status().as_u16() == 429 {
                    assert!(r.headers().get("retry-after").is_some());
                    break;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // still starting
        }
    }
    assert_eq!(codes.iter().filter(|c| **c != 429).count(), 5, "{codes:?}\n{}", g.log_tail());
    assert_eq!(codes.last(), Some(&429));
}
