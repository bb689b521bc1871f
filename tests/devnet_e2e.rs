//! End-to-end test of the devnet on a real regtest bitcoind: deposits credited, 200+ transfers over
//! several batches, a withdrawal paid after the challenge window with a valid runestone, every batch
//! anchored and found on L1, `kray-guardian replay` says all valid; then injected faults are reported
//! as exactly themselves (replay for batch faults, the test's own L1 queries for L1 faults).
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips.

use bitcoin::{Address, Network, OutPoint, Txid};
use kray_devnet::l1tx::{kray_payloads, KrayPayload};
use kray_devnet::runner::{Devnet, DevnetConfig, DevnetInfo};
use kray_devnet::sequencer::WithdrawalState;
use kray_devnet::traffic::{self, user_tx, TrafficConfig, TrafficStats};
use ordinals::{Artifact, Runestone};
use serde_json::Value;
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn skip() -> bool {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the devnet end-to-end test");
        return true;
    }
    false
}

fn config(dir: &std::path::Path, faults: &[&str]) -> DevnetConfig {
    DevnetConfig {
        data_dir: dir.to_path_buf(),
        users: 3,
        seed: 5,
        faults: faults.iter().map(|f| f.parse().expect("fault spec")).collect(),
        ..DevnetConfig::default()
    }
}

fn replay(info: &DevnetInfo, proofs: Option<&std::path::Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kray-guardian"));
    cmd.args(["replay", "--json", "--profile"])
        .arg(&info.profile_path)
        .arg("--genesis")
        .arg(&info.genesis_path)
        .arg("--batches")
        .arg(&info.batches_dir)
        .args(["--bitcoind", &info.bitcoind_url]);
    if let Some(p) = proofs {
        cmd.arg("--proofs").arg(p);
    }
    cmd.output().expect("replay runs")
}

fn verdicts(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn submit_transfers(d: &Devnet, client: &reqwest::Client, n: usize) {
    let net = d.profile().network;
    for k in 0..n {
        let from = k % 3;
        let to = &d.info.user_addresses[(from + 1) % 3];
        let acct = traffic::account(client, &d.info.api_url, &d.info.user_addresses[from]).await.expect("account");
        let tx = user_tx(d.user(from).expect("user"), net, "transfer", to, 10 + k as u64, acct.next_nonce);
        traffic::submit(client, &d.info.api_url, &tx).await.expect("transfer accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_honest_run_is_anchored_paid_and_replays_valid() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Devnet::start(config(dir.path(), &[])).await.expect("devnet starts");
    let client = reqwest::Client::new();
    let api = d.info.api_url.clone();

    // Batch 1 credits the three deposits.
    assert_eq!(d.tick().await.expect("tick"), 1);
    let unit = d.profile().credits_per_rune_unit();
    for a in &d.info.user_addresses {
        let (s, v) = get(&client, format!("{api}/l2/accounts/{a}")).await;
        assert_eq!(s, 200);
        assert_eq!(v["balance"].as_u64(), Some(10_000 * unit), "{v}");
        assert!(v["merkle_index"].as_u64().is_some());
    }

    // 200+ transfers over several batches.
    let stats = Arc::new(TrafficStats::default());
    let cfg = TrafficConfig { api_url: api.clone(), seed: 5, users: 3, rate: 400.0, network: d.profile().network };
    let traffic = tokio::spawn(traffic::run(cfg, stats.clone()));
    let mut batches = 1;
    while stats.accepted.load(Ordering::Relaxed) < 220 || batches < 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        batches = d.tick().await.expect("tick");
        assert!(batches < 60, "traffic too slow: {stats:?}");
    }
    traffic.abort();
    d.tick().await.expect("tick drains the mempool");

    // A withdrawal by user 0 to its own L1 address.
    let addr0 = d.info.user_addresses[0].clone();
    let acct = traffic::account(&client, &api, &addr0).await.expect("account");
    let w = user_tx(d.user(0).expect("user 0"), d.profile().network, "withdrawal", &addr0, 2 * unit, acct.next_nonce);
    traffic::submit(&client, &api, &w).await.expect("withdrawal accepted");
    let wbatch = d.tick().await.expect("tick");
    let window = d.profile().challenge_window_blocks;
    let mut paid = None;
    for _ in 0..window + 5 {
        d.tick().await.expect("tick");
        let p = d.state.published.read().expect("lock").withdrawals.clone();
        assert_eq!(p.len(), 1);
        if p[0].status == WithdrawalState::Paid {
            paid = Some(p[0].clone());
            break;
        }
    }
    let paid = paid.expect("withdrawal paid after the window");
    assert_eq!(paid.batch_id, wbatch);
    d.tick().await.expect("tick mines the payout");

    // The payout on L1: a 2-of-3 script-path spend of a bridge output, runestone paying user 0.
    let rpc = d.rpc();
    let ptxid = Txid::from_str(paid.payout_txid.as_deref().expect("txid")).expect("txid");
    let ptx = rpc.get_raw_transaction(&ptxid).await.expect("payout tx");
    let Some(Artifact::Runestone(stone)) = Runestone::decipher(&ptx) else { panic!("payout has no valid runestone") };
    assert_eq!(stone.edicts.len(), 1);
    assert_eq!(stone.edicts[0].id, d.rune());
    assert_eq!(stone.edicts[0].amount, 2);
    let dest = Address::from_str(&addr0).expect("addr").require_network(Network::Regtest).expect("regtest");
    assert_eq!(ptx.output[stone.edicts[0].output as usize].script_pubkey, dest.script_pubkey());
    assert_eq!(ptx.input[0].witness.len(), 5, "script-path 2-of-3 witness");
    let prev: OutPoint = ptx.input[0].previous_output;
    let prev_tx = rpc.get_raw_transaction(&prev.txid).await.expect("prev");
    assert_eq!(prev_tx.output[prev.vout as usize].script_pubkey, d.bridge().script_pubkey());
    let pv = rpc.get_raw_transaction_verbose(&ptxid).await.expect("verbose");
    let bh = pv["blockhash"].as_str().expect("payout confirmed");
    let ph = rpc.call::<Value>("getblockheader", serde_json::json!([bh])).await.expect("header")["height"]
        .as_u64()
        .expect("height");
    let anchors = d.state.published.read().expect("lock").anchors.clone();
    let ah = u64::from(anchors[&wbatch].height.expect("withdrawal batch anchored"));
    assert!(ph > ah + u64::from(window), "payout at {ph} must be after anchor {ah} + window {window}");

    // Every batch anchored: found on L1 by txid, payload = batch hash.
    let published = d.state.published.read().expect("lock").batches.clone();
    assert!(published.len() >= 7);
    let txs: usize = published.values().map(|b| b.txs.len()).sum();
    assert!(txs >= 200 + 3, "{txs} txs");
    for (id, b) in &published {
        let a = anchors.get(id).unwrap_or_else(|| panic!("batch {id} not anchored"));
        let tx = rpc.get_raw_transaction(&Txid::from_str(&a.txid).expect("txid")).await.expect("anchor tx");
        assert_eq!(kray_payloads(&tx), vec![(0, KrayPayload::Anchor(b.signed.header.hash()))], "batch {id}");
        assert!(a.height.is_some(), "batch {id} anchor confirmed");
    }

    // The publication API.
    let (s, latest) = get(&client, format!("{api}/l2/batches/latest")).await;
    assert_eq!(s, 200);
    let last = *published.keys().last().expect("batches");
    assert_eq!(latest["batch_id"].as_u64(), Some(last));
    let (s, list) = get(&client, format!("{api}/l2/batches?from=2&limit=3")).await;
    assert_eq!(s, 200);
    let ids: Vec<u64> =
        list["batches"].as_array().expect("list").iter().filter_map(|h| h["batch_id"].as_u64()).collect();
    assert_eq!(ids, vec![2, 3, 4]);
    assert_eq!(list["next"].as_u64(), Some(5));
    assert_eq!(get(&client, format!("{api}/l2/batches?limit=101")).await.0, 400);
    assert_eq!(get(&client, format!("{api}/l2/batches?from=x")).await.0, 400);
    assert_eq!(get(&client, format!("{api}/l2/batches/99999")).await.0, 404);
    assert_eq!(get(&client, format!("{api}/l2/batches/abc")).await.0, 400);
    assert_eq!(get(&client, format!("{api}/l2/accounts/notanaddress")).await.0, 400);
    let r = client.get(format!("{api}/l2/batches/2")).send().await.expect("GET");
    let etag = r.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string).expect("etag");
    assert_eq!(etag, format!("\"{}\"", hex::encode(published[&2].content_hash())));
    assert_eq!(r.text().await.expect("body"), published[&2].to_json());
    let raw = client
        .get(format!("{api}/l2/batches/2"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("GET raw")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(raw.to_vec(), published[&2].to_raw());
    let raw2 = client.get(format!("{api}/l2/batches/2/raw")).send().await.expect("raw").bytes().await.expect("b");
    assert_eq!(raw2, raw);
    let r = client.post(format!("{api}/l2/txs")).body("{nope").send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    let stale = user_tx(d.user(1).expect("user"), d.profile().network, "transfer", &addr0, 5, 0);
    let r = client.post(format!("{api}/l2/txs")).json(&stale).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 422);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"].as_str().expect("error").contains("nonce"), "{v}");
    let r = client.post(format!("{api}/l2/txs")).body(vec![b' '; 100_000]).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 413);
    let r = client.post(format!("{api}/l2/challenges")).body("{}").send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 400);

    // The guardian's replay over the published batches and the node: all valid.
    let o = replay(&d.info, None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v = verdicts(&o);
    assert_eq!(v.len(), published.len());
    assert!(v.iter().all(|l| l["verdict"] == "valid"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_faults_are_reported_as_themselves() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Devnet::start(config(dir.path(), &["bad-nonce@2", "theft@3", "stop-anchoring@4"]))
        .await
        .expect("devnet starts");
    let client = reqwest::Client::new();
    d.tick().await.expect("batch 1");
    for _ in 2..=5 {
        submit_transfers(&d, &client, 6).await;
        d.tick().await.expect("tick");
    }
    let committed = d.state.faults.lock().expect("lock").committed.clone();
    let names: Vec<(&str, u64)> = committed.iter().map(|c| (c.fault.as_str(), c.batch_id)).collect();
    assert_eq!(names, vec![("bad-nonce", 2), ("theft", 3), ("stop-anchoring", 4)]);

    // Replay names exactly the batch fault, and its proof is accepted as a challenge.
    let proofs = dir.path().join("proofs");
    let o = replay(&d.info, Some(&proofs));
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
    let v = verdicts(&o);
    let faults: Vec<_> = v.iter().filter(|l| l["verdict"] == "fault").collect();
    assert_eq!(faults.len(), 1, "{v:?}");
    assert_eq!(faults[0]["fault"], "bad-nonce");
    assert_eq!(faults[0]["batch_id"], 2);
    let proof = std::fs::read_to_string(faults[0]["proof"].as_str().expect("proof path")).expect("proof");
    let api = d.info.api_url.clone();
    let r = client.post(format!("{api}/l2/challenges")).body(proof).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    let (_, w) = get(&client, format!("{api}/l2/withdrawals")).await;
    assert_eq!(w["frozen_from"].as_u64(), Some(2));

    // Theft: a bridge output spent to an address no withdrawal names.
    let rpc = d.rpc();
    let theft = Txid::from_str(committed[1].txid.as_deref().expect("theft txid")).expect("txid");
    let tx = rpc.get_raw_transaction(&theft).await.expect("theft tx");
    let prev = tx.input[0].previous_output;
    let prev_tx = rpc.get_raw_transaction(&prev.txid).await.expect("prev");
    assert_eq!(prev_tx.output[prev.vout as usize].script_pubkey, d.bridge().script_pubkey());
    let paid_to = &tx.output[0].script_pubkey;
    assert!(d.info.user_addresses.iter().all(|a| {
        Address::from_str(a).expect("a").require_network(Network::Regtest).expect("net").script_pubkey() != *paid_to
    }));
    assert!(d.state.published.read().expect("lock").withdrawals.is_empty(), "no withdrawal backs it");

    // Stop anchoring: batches 4 and 5 are published but no block holds their anchor.
    let published = d.state.published.read().expect("lock").batches.clone();
    let mut anchored = std::collections::HashSet::new();
    for h in 1..=d.height() {
        let hash = rpc.get_block_hash(h.into()).await.expect("hash");
        for t in rpc.get_block(&hash).await.expect("block").txdata {
            for (_, p) in kray_payloads(&t) {
                if let KrayPayload::Anchor(root) = p {
                    anchored.insert(root);
                }
            }
        }
    }
    for (id, b) in &published {
        assert_eq!(anchored.contains(&b.signed.header.hash()), *id < 4, "batch {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_fault_class_injected_by_the_devnet_is_replayed_as_itself() {
    if skip() {
        return;
    }
    let client = reqwest::Client::new();
    for class in kray_replayer::FaultClass::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = format!("{class}@2");
        let mut d = Devnet::start(config(dir.path(), &[&spec])).await.expect("devnet starts");
        d.tick().await.expect("batch 1");
        for _ in 2..=3 {
            submit_transfers(&d, &client, 4).await;
            d.tick().await.expect("tick");
        }
        let committed = d.state.faults.lock().expect("lock").committed.clone();
        assert_eq!(committed.len(), 1, "{class}: {committed:?}");
        assert_eq!((committed[0].fault.as_str(), committed[0].batch_id), (class.as_str(), 2));
        let o = replay(&d.info, None);
        assert_eq!(o.status.code(), Some(3), "{class}: {}", String::from_utf8_lossy(&o.stdout));
        let v = verdicts(&o);
        let faults: Vec<_> = v.iter().filter(|l| l["verdict"] == "fault").collect();
        assert_eq!(faults.len(), 1, "{class}: {v:?}");
        assert_eq!(faults[0]["fault"], class.as_str(), "{class}: {v:?}");
        assert_eq!(faults[0]["batch_id"], 2, "{class}: {v:?}");
    }
}

async fn block_height_of(rpc: &kray_devnet::rpc::RpcClient, txid: &Txid) -> u64 {
    let v = rpc.get_raw_transaction_verbose(txid).await.expect("verbose");
    let bh = v["blockhash"].as_str().expect("confirmed").to_string();
    rpc.call::<Value>("getblockheader", serde_json::json!([bh])).await.expect("header")["height"]
        .as_u64()
        .expect("height")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_faults_withhold_wrong_anchor_pay_early_and_key_path_sweep() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &["withhold@2", "wrong-anchor@3", "pay-early@3", "key-path-sweep@4"]);
    cfg.legacy_internal_key = true;
    let mut d = Devnet::start(cfg).await.expect("devnet starts");
    let client = reqwest::Client::new();
    let api = d.info.api_url.clone();
    d.tick().await.expect("batch 1");
    let unit = d.profile().credits_per_rune_unit();
    let addr1 = d.info.user_addresses[1].clone();
    let acct = traffic::account(&client, &api, &addr1).await.expect("account");
    let w = user_tx(d.user(1).expect("user"), d.profile().network, "withdrawal", &addr1, 3 * unit, acct.next_nonce);
    traffic::submit(&client, &api, &w).await.expect("withdrawal accepted");
    for _ in 2..=5 {
        d.tick().await.expect("tick");
    }
    let committed = d.state.faults.lock().expect("lock").committed.clone();
    let names: Vec<(&str, u64)> = committed.iter().map(|c| (c.fault.as_str(), c.batch_id)).collect();
    assert_eq!(names, vec![("withhold", 2), ("wrong-anchor", 3), ("pay-early", 3), ("key-path-sweep", 4)]);
    let rpc = d.rpc();
    let published = d.state.published.read().expect("lock").batches.clone();
    let anchors = d.state.published.read().expect("lock").anchors.clone();
    let anchored_payload = |txid: &str| {
        let txid = Txid::from_str(txid).expect("txid");
        async move { kray_payloads(&rpc.get_raw_transaction(&txid).await.expect("anchor tx")) }
    };

    // Withheld: batch 2 is anchored on L1 but its data is not published (404, no file).
    assert_eq!(get(&client, format!("{api}/l2/batches/2")).await.0, 404);
    assert!(!d.info.batches_dir.join("batch-000002.json").exists());
    assert!(d.info.batches_dir.join("batch-000003.json").exists());
    let h2 = published[&2].signed.header.hash();
    assert_eq!(anchored_payload(&anchors[&2].txid).await, vec![(0, KrayPayload::Anchor(h2))]);

    // Wrong anchor: batch 3's anchor carries 32 bytes that are not its hash.
    let h3 = published[&3].signed.header.hash();
    let p3 = anchored_payload(&anchors[&3].txid).await;
    assert_eq!(p3.len(), 1);
    assert_ne!(p3[0].1, KrayPayload::Anchor(h3));

    // Pay early: the withdrawal of batch 2 was paid before its window ended.
    let wd = d.state.published.read().expect("lock").withdrawals.clone();
    assert_eq!(wd.len(), 1);
    assert_eq!(wd[0].batch_id, 2);
    let ptxid = Txid::from_str(committed[2].txid.as_deref().expect("txid")).expect("txid");
    assert_eq!(wd[0].payout_txid.as_deref(), Some(ptxid.to_string().as_str()));
    let paid_at = block_height_of(rpc, &ptxid).await;
    let anchor2 = u64::from(anchors[&2].height.expect("anchored"));
    assert!(paid_at <= anchor2 + u64::from(d.profile().challenge_window_blocks), "premature payout");

    // Key-path sweep of a bridge output by one key (legacy bridge).
    let stxid = Txid::from_str(committed[3].txid.as_deref().expect("txid")).expect("txid");
    let sweep = rpc.get_raw_transaction(&stxid).await.expect("sweep");
    assert_eq!(sweep.input[0].witness.len(), 1, "key-path spend");
    let prev = sweep.input[0].previous_output;
    let prev_tx = rpc.get_raw_transaction(&prev.txid).await.expect("prev");
    assert_eq!(prev_tx.output[prev.vout as usize].script_pubkey, d.bridge().script_pubkey());
    block_height_of(rpc, &stxid).await;

    // Faults switch at run time over the admin endpoint.
    let admin = d.info.admin_url.clone();
    let r = client.post(format!("{admin}/admin/faults")).body(r#"{"fault":"nope"}"#).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    let r =
        client.post(format!("{admin}/admin/faults")).body(r#"{"fault":"stop-anchoring"}"#).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(get(&client, format!("{api}/admin/faults")).await.0, 404, "admin is not on the public listener");
    let id = d.tick().await.expect("tick");
    assert!(!d.state.published.read().expect("lock").anchors.contains_key(&id));
    let (_, f) = get(&client, format!("{admin}/admin/faults")).await;
    assert_eq!(f["committed"].as_array().map(Vec::len), Some(5), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_seals_early_when_batch_max_txs_wait() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &[]);
    cfg.batch_interval = Duration::from_secs(3600);
    cfg.batch_max_txs = 6;
    let mut d = Devnet::start(cfg).await.expect("devnet starts");
    let client = reqwest::Client::new();
    let api = d.info.api_url.clone();
    let addrs = d.info.user_addresses.clone();
    let keys: Vec<_> = (0..3).map(|i| *d.user(i).expect("user")).collect();
    let net = d.profile().network;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(async move {
        d.run(async {
            let _ = stop_rx.await;
        })
        .await
    });
    // The interval's first tick seals batch 1 (the deposits) at once; the next is an hour away.
    let latest = |c: reqwest::Client, api: String| async move { get(&c, format!("{api}/l2/batches/latest")).await };
    for _ in 0..100 {
        if latest(client.clone(), api.clone()).await.1["batch_id"].as_u64() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in 0..6 {
        let from = k % 3;
        let acct = traffic::account(&client, &api, &addrs[from]).await.expect("account");
        let tx = user_tx(&keys[from], net, "transfer", &addrs[(from + 1) % 3], 10, acct.next_nonce);
        traffic::submit(&client, &api, &tx).await.expect("transfer accepted");
    }
    let mut sealed = None;
    for _ in 0..100 {
        let (_, v) = latest(client.clone(), api.clone()).await;
        if v["batch_id"].as_u64() == Some(2) {
            sealed = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = sealed.expect("batch 2 sealed long before the hour-long interval");
    assert_eq!(v["signed_header"]["header"]["tx_count"].as_u64(), Some(6), "{v}");
    let _ = stop_tx.send(());
    runner.await.expect("runner task").expect("runner stops cleanly");
}
