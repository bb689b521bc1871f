//! End-to-end: the guardian acting on a devnet (real regtest bitcoind), as separate processes.
//! - `challenge` mode: a faulty batch's proof reaches the sequencer's `POST /l2/challenges` (which
//!   freezes withdrawals) and its challenge marker confirms on L1 inside the challenge window.
//! - `full` mode, two guardians: when the sequencer stops anchoring, every abandoned valid batch is
//!   anchored on L1 exactly once, by one of them.
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bitcoin::Amount;
use kray_devnet::bitcoind::free_port;
use kray_devnet::guardian::guardian_toml;
use kray_devnet::l1tx::{kray_payloads, KrayPayload};
use kray_devnet::runner::{Devnet, DevnetConfig};
use serde_json::Value;

mod support;

use support::{key_file, transfers, Guardian};

fn skip() -> bool {
    support::skip("the guardian acting test")
}

fn start(dir: &Path, d: &Devnet, name: &str, mode: &str, key: &Path, peers: &[String]) -> Guardian {
    let port = free_port().expect("port");
    let home = dir.join(name);
    std::fs::create_dir_all(&home).expect("dir");
    let mut text = guardian_toml(&d.info, mode, &home.join("data"), &format!("127.0.0.1:{port}"));
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    text.push_str(&format!(
        "\n[anchoring]\nkey_file = \"{}\"\nfee_floor_sat_vb = 2\npeers = [{}]\nturn_step_blocks = 2\n",
        key.display(),
        peers.join(", ")
    ));
    let config = home.join("guardian.toml");
    std::fs::write(&config, text).expect("config");
    Guardian::spawn(&config, port, &home.join("guardian.log"), &[])
}

async fn status(client: &reqwest::Client, g: &Guardian) -> Option<Value> {
    client.get(format!("{}/v1/status", g.url)).send().await.ok()?.json().await.ok()
}

/// Waits until the guardian has acted at L1 height `h` (its status is published after acting).
async fn wait_height(client: &reqwest::Client, g: &Guardian, h: u32) {
    for _ in 0..200 {
        if let Some(s) = status(client, g).await {
            if s["l1_blocks"]["height"].as_u64().unwrap_or(0) >= u64::from(h) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("guardian never reached L1 height {h}:\n{}", g.log_tail());
}

/// Every KRAY payload on the best chain from `from` to the tip, with its height.
async fn payloads(d: &Devnet, from: u32) -> Vec<(u32, KrayPayload)> {
    let mut out = Vec::new();
    for h in from..=d.height() {
        let hash = d.rpc().get_block_hash(u64::from(h)).await.expect("hash");
        let block = d.rpc().get_block(&hash).await.expect("block");
        for tx in &block.txdata {
            for (_, p) in kray_payloads(tx) {
                out.push((h, p));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_mode_submits_the_proof_and_commits_it_on_l1_inside_the_window() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 21,
        faults: vec!["wrong-gas@3".parse().expect("fault")],
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let (key, _, addr) = key_file(dir.path(), 7);
    d.fund_script(addr.script_pubkey(), Amount::from_sat(1_000_000)).await.expect("fund");
    let start_height = d.height();
    let client = reqwest::Client::new();
    let g = start(dir.path(), &d, "g", "challenge", &key, &[]);
    d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    for _ in 0..3 {
        transfers(&d, &client, 3).await;
        d.tick().await.expect("tick");
        d.mine(1).await.expect("mine");
    }
    // Blocks keep coming; the guardian acts within them.
    let mut marker = None;
    let mut accepted = false;
    for _ in 0..60 {
        d.mine(1).await.expect("mine");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let w: Value = client
            .get(format!("{}/l2/withdrawals", d.info.api_url))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        accepted = w["challenges"].as_array().is_some_and(|c| c.iter().any(|c| c["batch_id"] == 3));
        marker = payloads(&d, start_height).await.into_iter().find_map(|(h, p)| match p {
            KrayPayload::Challenge { batch_id: 3, proof_hash } => Some((h, proof_hash)),
            _ => None,
        });
        if accepted && marker.is_some() {
            break;
        }
    }
    assert!(accepted, "the sequencer never accepted the proof; guardian log:\n{}", g.log_tail());
    let (marker_height, proof_hash) = marker.unwrap_or_else(|| panic!("no challenge marker on L1:\n{}", g.log_tail()));
    // Inside the window: at or before anchor_height(3) + challenge_window_blocks.
    let anchor_height = payloads(&d, start_height)
        .await
        .into_iter()
        .filter_map(|(h, p)| matches!(p, KrayPayload::Anchor(_)).then_some(h))
        .nth(2)
        .expect("batch 3 anchored");
    let window = d.profile().challenge_window_blocks;
    assert!(marker_height <= anchor_height + window, "marker at {marker_height}, anchor {anchor_height}");
    // The committed hash is the hash of the proof the guardian serves.
    let proof = client.get(format!("{}/v1/proofs/3", g.url)).send().await.expect("GET").text().await.expect("body");
    let parsed = kray_replayer::proof::FraudProof::from_json(&proof).expect("proof");
    assert_eq!(parsed.proof_hash(), proof_hash);
    let s = status(&client, &g).await.expect("status");
    assert_eq!(s["mode"], "challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_full_guardians_anchor_each_abandoned_batch_exactly_once() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 22,
        faults: vec!["stop-anchoring@3".parse().expect("fault")],
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let (k1, p1, a1) = key_file(dir.path(), 8);
    let (k2, p2, a2) = key_file(dir.path(), 9);
    d.fund_script(a1.script_pubkey(), Amount::from_sat(1_000_000)).await.expect("fund");
    d.fund_script(a2.script_pubkey(), Amount::from_sat(1_000_000)).await.expect("fund");
    let start_height = d.height();
    let client = reqwest::Client::new();
    let g1 = start(dir.path(), &d, "g1", "full", &k1, std::slice::from_ref(&p2));
    let g2 = start(dir.path(), &d, "g2", "full", &k2, std::slice::from_ref(&p1));
    let mut last = d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    for _ in 0..3 {
        transfers(&d, &client, 3).await;
        last = d.tick().await.expect("tick");
        d.mine(1).await.expect("mine");
    }
    // Batches 3..=last are sealed and published but not anchored by the sequencer.
    let published: Vec<String> = {
        let mut roots = Vec::new();
        for id in 1..=last {
            let b: Value = client
                .get(format!("{}/l2/batches/{id}", d.info.api_url))
                .send()
                .await
                .expect("GET")
                .json()
                .await
                .expect("json");
            let text = serde_json::to_string(&b).expect("json");
            let batch = kray_replayer::batch::Batch::from_json(&text, 100_000).expect("batch");
            roots.push(hex::encode(batch.signed.header.hash()));
        }
        roots
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    // One block at a time, each seen by both guardians before the next (as with 10-minute blocks): the
    // turn order decides who anchors, not who happens to poll first.
    for _ in 0..60 {
        d.mine(1).await.expect("mine");
        wait_height(&client, &g1, d.height()).await;
        wait_height(&client, &g2, d.height()).await;
        counts.clear();
        for (_, p) in payloads(&d, start_height).await {
            if let KrayPayload::Anchor(root) = p {
                *counts.entry(hex::encode(root)).or_default() += 1;
            }
        }
        if published.iter().all(|r| counts.contains_key(r)) {
            break;
        }
    }
    // A few more blocks: nobody anchors anything a second time.
    for _ in 0..6 {
        d.mine(1).await.expect("mine");
        wait_height(&client, &g1, d.height()).await;
        wait_height(&client, &g2, d.height()).await;
    }
    counts.clear();
    for (_, p) in payloads(&d, start_height).await {
        if let KrayPayload::Anchor(root) = p {
            *counts.entry(hex::encode(root)).or_default() += 1;
        }
    }
    // The sequencer stopped anchoring from batch 3: the guardians anchored those.
    let logs = format!("{}{}", g1.log(), g2.log());
    assert!(logs.contains("anchoring an abandoned batch"), "no guardian anchored anything:\n{logs}");
    for (i, root) in published.iter().enumerate() {
        assert_eq!(
            counts.get(root).copied().unwrap_or(0),
            1,
            "batch {} anchored {:?} times\ng1:\n{}\ng2:\n{}",
            i + 1,
            counts.get(root),
            g1.log_tail(),
            g2.log_tail()
        );
    }
}
