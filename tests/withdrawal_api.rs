//! End-to-end: "is my withdrawal safe?" against a devnet on a real regtest bitcoind, with
//! `kray-guardian run` as a separate process. A withdrawal is PENDING right after inclusion and SAFE
//! after the challenge window and the payout; one in a batch followed by a faulty batch is AT RISK; an
//! account proof from `/v1/accounts/{address}` verifies offline with `verify-account` and a tampered
//! one does not. `tests/web_page.rs` runs the same scenario and checks the web page at each step.
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kray_devnet::bitcoind::free_port;
use kray_devnet::guardian::guardian_toml;
use kray_devnet::runner::{Devnet, DevnetConfig};
use kray_devnet::sequencer::WithdrawalState;
use kray_devnet::traffic::{self, user_tx};
use serde_json::Value;

/// True when the bitcoind end-to-end tests are switched off.
pub fn skip() -> bool {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the withdrawal end-to-end test");
        return true;
    }
    false
}

/// A guardian process, killed on drop.
pub struct Guardian {
    child: Child,
    /// Its public API.
    pub url: String,
    log: PathBuf,
}

impl Guardian {
    fn start(dir: &Path, d: &Devnet) -> Guardian {
        let port = free_port().expect("port");
        let config = dir.join("guardian.toml");
        let text = guardian_toml(&d.info, "watch", &dir.join("guardian-data"), &format!("127.0.0.1:{port}"));
        std::fs::write(&config, text).expect("config");
        let log = dir.join("guardian.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log clone");
        let child = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("guardian starts");
        Guardian { child, url: format!("http://127.0.0.1:{port}"), log }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = client.get(url).send().await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().await.ok()?))
}

/// Polls the guardian until withdrawal `id` has `verdict` (the guardian works at its own pace).
async fn wait_verdict(client: &reqwest::Client, g: &Guardian, id: &str, verdict: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..240 {
        if let Some((200, v)) = get_json(client, &format!("{}/v1/withdrawals/{id}", g.url)).await {
            if v["verdict"] == verdict {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("withdrawal {id} never became {verdict}; last answer {last:#}\nlog:\n{}", g.log_tail());
}

/// Runs the `withdrawal` CLI against the guardian; returns its exit code and output.
fn cli_withdrawal(g: &Guardian, query: &str) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
        .args(["withdrawal", query, "--guardian", &g.url])
        .output()
        .expect("withdrawal cli");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Runs `verify-account FILE [extra…]`; returns its exit code and output.
fn cli_verify_account(file: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
        .arg("verify-account")
        .arg(file)
        .args(extra)
        .output()
        .expect("cli");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Submits a withdrawal of `units` rune units by user `i` to its own L1 address; returns the batch
/// that executed it and its tx id.
async fn withdraw(d: &mut Devnet, client: &reqwest::Client, i: usize, units: u64) -> (u64, String) {
    submit_withdrawal(d, client, i, units).await;
    let batch = d.tick().await.expect("tick");
    (batch, sealed_withdrawal(d, batch, i))
}

/// Submits a withdrawal of `units` rune units by user `i` to its own L1 address.
async fn submit_withdrawal(d: &Devnet, client: &reqwest::Client, i: usize, units: u64) {
    let unit = d.profile().credits_per_rune_unit();
    let addr = d.info.user_addresses[i].clone();
    let acct = traffic::account(client, &d.info.api_url, &addr).await.expect("account");
    let w = user_tx(d.user(i).expect("user"), d.profile().network, "withdrawal", &addr, units * unit, acct.next_nonce);
    traffic::submit(client, &d.info.api_url, &w).await.expect("withdrawal accepted");
}

/// The tx id of user `i`'s withdrawal sealed in `batch`.
fn sealed_withdrawal(d: &Devnet, batch: u64, i: usize) -> String {
    let published = d.state.published.read().expect("lock").withdrawals.clone();
    let addr = &d.info.user_addresses[i];
    published
        .iter()
        .find(|w| w.batch_id == batch && &w.l1_address == addr)
        .map(|w| w.tx_id.clone())
        .expect("withdrawal sealed")
}

/// One transfer per user, so the next batch has txs to fault.
async fn transfers(d: &Devnet, client: &reqwest::Client) {
    let net = d.profile().network;
    for from in 0..3 {
        let to = &d.info.user_addresses[(from + 1) % 3];
        let acct = traffic::account(client, &d.info.api_url, &d.info.user_addresses[from]).await.expect("account");
        let tx = user_tx(d.user(from).expect("user"), net, "transfer", to, 10, acct.next_nonce);
        traffic::submit(client, &d.info.api_url, &tx).await.expect("transfer accepted");
    }
}

/// A step of the scenario at which an observer (the web page test) checks what a user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The withdrawal is PENDING.
    Pending,
    /// The withdrawal is SAFE.
    Safe,
    /// The withdrawal is AT RISK.
    AtRisk,
}

/// The scenario; `observe(guardian URL, withdrawal id, what the API says it is)` runs at each step.
pub async fn scenario(dir: &Path, observe: &dyn Fn(&str, &str, Seen)) {
    let cfg = DevnetConfig { data_dir: dir.join("devnet"), users: 3, seed: 31, ..DevnetConfig::default() };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let client = reqwest::Client::new();
    let g = Guardian::start(dir, &d);
    // Batch 1 credits the users' deposits.
    d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");

    // W1: PENDING right after inclusion.
    let (b1, w1) = withdraw(&mut d, &client, 0, 2).await;
    d.mine(1).await.expect("mine");
    let v = wait_verdict(&client, &g, &w1, "PENDING").await;
    assert_eq!(v["batch_id"].as_u64(), Some(b1), "{v:#}");
    assert_eq!(v["evidence"][0]["detail"], format!("included in batch {b1}"), "{v:#}");
    let (code, out) = cli_withdrawal(&g, &w1);
    assert_eq!(code, 10, "PENDING exits 10: {out}");
    assert!(out.contains("verdict: PENDING"), "{out}");
    observe(&g.url, &w1, Seen::Pending);

    // The account proof of user 1 against the latest anchored state root verifies offline.
    let addr1 = d.info.user_addresses[1].clone();
    let mut proof = Value::Null;
    for _ in 0..240 {
        if let Some((200, p)) = get_json(&client, &format!("{}/v1/accounts/{addr1}", g.url)).await {
            if !p["anchor"].is_null() {
                proof = p;
                break;
            }
        }
        d.mine(1).await.expect("mine");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!proof.is_null(), "no anchored account proof\n{}", g.log_tail());
    let file = dir.join("account-proof.json");
    std::fs::write(&file, serde_json::to_string_pretty(&proof).expect("json")).expect("write");
    let (code, out) = cli_verify_account(&file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("PROVEN"), "{out}");
    // The anchor itself, checked on the L1 node: the named output is OP_RETURN "KRAY" || batch hash.
    let (code, out) = cli_verify_account(&file, &["--bitcoind", &d.info.bitcoind_url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked on bitcoind"), "{out}");
    let mut wrong_anchor = proof.clone();
    wrong_anchor["anchor"]["vout"] = Value::from(5);
    std::fs::write(&file, serde_json::to_string_pretty(&wrong_anchor).expect("json")).expect("write");
    let (code, out) = cli_verify_account(&file, &["--bitcoind", &d.info.bitcoind_url]);
    assert_eq!(code, 4, "a wrong anchor output is not proven: {out}");
    let mut tampered = proof.clone();
    let balance: u64 = proof["account"]["balance"].as_str().and_then(|b| b.parse().ok()).expect("balance");
    tampered["account"]["balance"] = Value::String((balance + 1_000).to_string());
    std::fs::write(&file, serde_json::to_string_pretty(&tampered).expect("json")).expect("write");
    let (code, out) = cli_verify_account(&file, &[]);
    assert_eq!(code, 4, "a tampered balance is not proven: {out}");
    assert!(out.starts_with("NOT PROVEN"), "{out}");
    // Bad requests are refused, not guessed.
    let (code, _) = get_json(&client, &format!("{}/v1/accounts/not-an-address", g.url)).await.expect("answer");
    assert_eq!(code, 400);
    let (code, _) = get_json(&client, &format!("{}/v1/withdrawals/{}", g.url, "ab".repeat(32))).await.expect("answer");
    assert_eq!(code, 404);

    // After the window the devnet pays W1; once the guardian sees the payout it is SAFE.
    let window = d.profile().challenge_window_blocks;
    let mut paid = false;
    for _ in 0..window + 10 {
        d.tick().await.expect("tick");
        let p = d.state.published.read().expect("lock").withdrawals.clone();
        if p.iter().any(|w| w.tx_id == w1 && w.status == WithdrawalState::Paid) {
            paid = true;
            break;
        }
    }
    assert!(paid, "the devnet did not pay the withdrawal after the window");
    d.tick().await.expect("tick mines the payout");
    d.mine(1).await.expect("mine");
    let v = wait_verdict(&client, &g, &w1, "SAFE").await;
    assert!(v["evidence"].as_array().expect("steps").iter().all(|s| s["status"] == "ok"), "{v:#}");
    let (code, out) = cli_withdrawal(&g, &w1);
    assert_eq!(code, 0, "SAFE exits 0: {out}");
    observe(&g.url, &w1, Seen::Safe);

    // W2 sits in a batch followed by a faulty one (wrong gas), W3 in the faulty batch: both AT RISK.
    let (b2, w2) = withdraw(&mut d, &client, 1, 3).await;
    d.state.faults.lock().expect("lock").add(format!("wrong-gas@{}", b2 + 1).parse().expect("fault"));
    transfers(&d, &client).await;
    submit_withdrawal(&d, &client, 2, 1).await;
    let bad = d.tick().await.expect("tick");
    assert_eq!(bad, b2 + 1);
    let w3 = sealed_withdrawal(&d, bad, 2);
    d.mine(2).await.expect("mine");
    let v = wait_verdict(&client, &g, &w2, "AT RISK").await;
    assert!(v["reason"].as_str().unwrap_or("").contains(&format!("batch {bad} is faulty")), "{v:#}");
    let (code, out) = cli_withdrawal(&g, &w2);
    assert_eq!(code, 11, "AT RISK exits 11: {out}");
    observe(&g.url, &w2, Seen::AtRisk);
    let v = wait_verdict(&client, &g, &w3, "AT RISK").await;
    assert_eq!(v["batch_id"].as_u64(), Some(bad), "{v:#}");
    observe(&g.url, &w3, Seen::AtRisk);
    // Paid stays paid; the address lookup lists the user's withdrawals.
    wait_verdict(&client, &g, &w1, "SAFE").await;
    let addr0 = d.info.user_addresses[0].clone();
    let (code, list) = get_json(&client, &format!("{}/v1/withdrawals?address={addr0}", g.url)).await.expect("answer");
    assert_eq!(code, 200);
    let ids: Vec<&str> =
        list["withdrawals"].as_array().expect("list").iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, vec![w1.as_str()], "{list:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_are_pending_then_safe_or_at_risk_and_account_proofs_verify() {
    // tests/web_page.rs includes this file for the scenario; it runs its own test.
    if skip() || module_path!() != "withdrawal_api" {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    scenario(dir.path(), &|_, _, _| {}).await;
}
