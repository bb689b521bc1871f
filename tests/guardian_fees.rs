//! End-to-end: the guardian's anchor of an abandoned batch under a fee spike, and a `kill -9` mid-send.
//! Real regtest bitcoind with small blocks (`-blockmaxweight=16000`), the devnet, and the guardian as a
//! separate process (`kray-guardian run --config`, mode `full`, a funded 0600 key file).
//! - The sequencer stops anchoring; the devnet floods the mempool at 20 sat/vB; the guardian's anchor
//!   (floor 1 sat/vB) waits, is RBF-bumped block after block and confirms; the batch hash is anchored
//!   exactly once on the best chain.
//! - The guardian is killed (SIGKILL) while its anchor is pending and already bumped once, and restarted
//!   over the same data dir: the batch ends anchored exactly once and the journal holds one original
//!   transaction and only RBF replacements of it (no second spend), one of them confirmed. Each kill
//!   also tears the journal write in flight (half a line, no newline): the first restart truncates it
//!   away, and two more kill -9 + torn write + restart rounds still open the journal and follow L1.
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::{Amount, FeeRate, OutPoint, Txid};
use kray_challenger::journal::{Purpose, TxRecord, TxStatus};
use kray_devnet::bitcoind::free_port;
use kray_devnet::guardian::guardian_toml;
use kray_devnet::l1tx::{kray_payloads, KrayPayload};
use kray_devnet::runner::{Devnet, DevnetConfig};
use serde_json::{json, Value};

/// Blocks of 16,000 WU: 8,000 WU reserved by Core, about 2,000 vB of transactions (18 flood txs).
const BLOCK_MAX_WEIGHT: u64 = 16_000;
/// The flood's fee rate (sat/vB): well above the guardian's floor (1), well below its cap (200).
const FLOOD_SAT_VB: u32 = 20;
/// The batch the sequencer stops anchoring at.
const ABANDONED: u64 = 2;

mod support;

use support::{transfers, Guardian};

fn skip() -> bool {
    support::skip("the guardian fee test")
}

/// A guardian's files: its config and data dir.
struct Home {
    config: PathBuf,
    data: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl Home {
    fn journal(&self) -> PathBuf {
        self.data.join("l1-sends.jsonl")
    }

    /// Starts `kray-guardian run --config` with its output in `<home>/<log>`.
    fn spawn(&self, log: &str) -> Guardian {
        Guardian::spawn(&self.config, self.port, &self.dir.join(log), &[])
    }
}

/// A mode-`full` guardian config alone in the turn order: floor 1 sat/vB, cap 200, bump after 1 block.
fn home(dir: &Path, d: &Devnet, key: &Path) -> Home {
    let port = free_port().expect("port");
    let home = dir.join("guardian");
    std::fs::create_dir_all(&home).expect("dir");
    let data = home.join("data");
    let mut text = guardian_toml(&d.info, "full", &data, &format!("127.0.0.1:{port}"));
    text.push_str(&format!(
        "\n[anchoring]\nkey_file = \"{}\"\nfee_floor_sat_vb = 1\nfee_cap_sat_vb = 200\nbump_after_blocks = 1\n\
         turn_step_blocks = 1\n",
        key.display()
    ));
    let config = home.join("guardian.toml");
    std::fs::write(&config, text).expect("config");
    Home { config, data, port, dir: home }
}

/// Every anchor on the best chain from `from` to the tip: (height, txid, root).
async fn anchors(d: &Devnet, from: u32) -> Vec<(u32, Txid, [u8; 32])> {
    let mut out = Vec::new();
    for h in from..=d.height() {
        let hash = d.rpc().get_block_hash(u64::from(h)).await.expect("hash");
        let block = d.rpc().get_block(&hash).await.expect("block");
        for tx in &block.txdata {
            for (_, p) in kray_payloads(tx) {
                if let KrayPayload::Anchor(root) = p {
                    out.push((h, tx.compute_txid(), root));
                }
            }
        }
    }
    out
}

/// The journal's current records (the last line of a txid wins; a torn last line is skipped), in
/// first-written order.
fn journal(path: &Path) -> Vec<TxRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut order = Vec::new();
    let mut by: BTreeMap<Txid, TxRecord> = BTreeMap::new();
    for line in text.lines() {
        let Ok(rec) = serde_json::from_str::<TxRecord>(line) else { continue };
        if !by.contains_key(&rec.txid) {
            order.push(rec.txid);
        }
        by.insert(rec.txid, rec);
    }
    order.into_iter().filter_map(|t| by.remove(&t)).collect()
}

/// Appends the first half of the journal's last line, without its newline: a write torn by a crash.
fn tear_last_line(path: &Path) {
    let bytes = std::fs::read(path).expect("journal");
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let half = &body[start..start + (body.len() - start) / 2];
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("append");
    std::io::Write::write_all(&mut f, half).expect("torn write");
}

/// One line per record, for the test output.
fn summary(recs: &[TxRecord]) -> String {
    recs.iter()
        .map(|r| format!("{} replaces={:?} rate={} fee={} {:?}", r.txid, r.replaces, r.fee_rate(), r.fee_sat, r.status))
        .collect::<Vec<_>>()
        .join("\n")
}

fn for_purpose(records: &[TxRecord], purpose: &Purpose) -> Vec<TxRecord> {
    records.iter().filter(|r| r.purpose == *purpose).cloned().collect()
}

/// The hash of published batch `id`.
async fn batch_hash(d: &Devnet, client: &reqwest::Client, id: u64) -> [u8; 32] {
    let b: Value = client
        .get(format!("{}/l2/batches/{id}", d.info.api_url))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let batch = kray_replayer::batch::Batch::from_json(&b.to_string(), 100_000).expect("batch");
    batch.signed.header.hash()
}

async fn mempool_size(d: &Devnet) -> u64 {
    let info: Value = d.rpc().call("getmempoolinfo", json!([])).await.expect("getmempoolinfo");
    info["size"].as_u64().expect("size")
}

/// Mines one block and waits until the guardian has followed it (its status names the new height),
/// then gives its acting stage a moment.
async fn mine_and_follow(d: &mut Devnet, client: &reqwest::Client, g: &Guardian) {
    d.mine(1).await.expect("mine");
    let tip = u64::from(d.height());
    for _ in 0..100 {
        let s: Option<Value> = match client.get(format!("{}/v1/status", g.url)).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if s.is_some_and(|s| s["l1_height"].as_u64().is_some_and(|h| h >= tip)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// The guardian's `grace_ends` of batch `id` while it is unanchored (from `/v1/batches/{id}`).
async fn grace_ends(client: &reqwest::Client, g: &Guardian, id: u64) -> Option<u64> {
    let v: Value = client.get(format!("{}/v1/batches/{id}", g.url)).send().await.ok()?.json().await.ok()?;
    v["copies"].as_array()?.iter().find_map(|c| c["anchor"]["grace_ends"].as_u64())
}

/// Mines block by block until the guardian has broadcast its anchor for `purpose`. Once the batch is
/// due (the tip past its grace) it waits for the send before mining again, so no block can take the
/// anchor before the test floods the mempool.
async fn until_sent(
    d: &mut Devnet,
    client: &reqwest::Client,
    g: &Guardian,
    h: &Home,
    purpose: &Purpose,
) -> Vec<TxRecord> {
    for _ in 0..40 {
        mine_and_follow(d, client, g).await;
        let tip = u64::from(d.height());
        let polls = match grace_ends(client, g, ABANDONED).await {
            Some(ends) if tip <= ends => 1,
            _ => 100,
        };
        for _ in 0..polls {
            let recs = for_purpose(&journal(&h.journal()), purpose);
            if recs.iter().any(|r| matches!(r.status, TxStatus::Broadcast { .. })) {
                return recs;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("the guardian never anchored batch {ABANDONED}:\n{}", g.log_tail());
}

/// Keeps at least two blocks' worth of flood in the mempool.
async fn keep_flooded(d: &mut Devnet) {
    if mempool_size(d).await < 40 {
        let r = d.flood_mempool(200, FeeRate::from_sat_per_vb_u32(FLOOD_SAT_VB)).await.expect("flood");
        assert_eq!(r.txids.len(), 200);
    }
}

/// A devnet with small blocks where the sequencer abandons batch [`ABANDONED`], a funded guardian
/// key, and batches 1 (anchored) and 2 (abandoned) sealed. Returns the devnet, the key, the start
/// height and batch 2's hash.
async fn setup(dir: &Path, seed: u64, client: &reqwest::Client) -> (Devnet, PathBuf, u32, [u8; 32]) {
    let cfg = DevnetConfig {
        data_dir: dir.join("devnet"),
        users: 3,
        seed,
        faults: vec![format!("stop-anchoring@{ABANDONED}").parse().expect("fault")],
        block_max_weight: Some(BLOCK_MAX_WEIGHT),
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    let (key, _, addr) = support::key_file(dir, 5);
    d.fund_script(addr.script_pubkey(), Amount::from_sat(1_000_000)).await.expect("fund");
    let start = d.height();
    assert_eq!(d.tick().await.expect("tick"), 1);
    transfers(&d, client, 3).await;
    assert_eq!(d.tick().await.expect("tick"), ABANDONED);
    let hash = batch_hash(&d, client, ABANDONED).await;
    (d, key, start, hash)
}

/// Asserts the flood really crowds blocks: a block mined now is full and leaves flood txs waiting.
async fn assert_blocks_full(d: &mut Devnet) {
    let before = mempool_size(d).await;
    d.mine(1).await.expect("mine");
    let after = mempool_size(d).await;
    let hash = d.rpc().get_block_hash(u64::from(d.height())).await.expect("hash");
    let block = d.rpc().get_block(&hash).await.expect("block");
    let weight = block.weight().to_wu();
    assert!(weight <= BLOCK_MAX_WEIGHT && weight > BLOCK_MAX_WEIGHT - 8_000 - 1_000, "block weight {weight}");
    assert!(after > 0 && after < before, "mempool {before} -> {after}: the block took some of the flood, not all");
}

/// Checks the journal of one purpose: one original, every other record an RBF replacement of a record
/// of the purpose that shares the original's inputs, at most one confirmed.
fn assert_no_double_spend(recs: &[TxRecord]) -> Option<TxRecord> {
    let originals: Vec<&TxRecord> = recs.iter().filter(|r| r.replaces.is_none()).collect();
    assert_eq!(originals.len(), 1, "one original send, not a second spend: {recs:#?}");
    let first = originals[0];
    for r in recs.iter().filter(|r| r.replaces.is_some()) {
        let old = r.replaces.expect("replaces");
        assert!(recs.iter().any(|o| o.txid == old), "{} replaces a tx of this purpose", r.txid);
        let shared: Vec<&OutPoint> = r.inputs.iter().filter(|i| first.inputs.contains(i)).collect();
        assert!(!shared.is_empty(), "{} spends none of the original's inputs: a double spend", r.txid);
    }
    let confirmed: Vec<&TxRecord> = recs.iter().filter(|r| matches!(r.status, TxStatus::Confirmed { .. })).collect();
    assert!(confirmed.len() <= 1, "at most one confirmed tx per purpose: {confirmed:#?}");
    confirmed.first().map(|r| (*r).clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchor_is_bumped_through_a_fee_spike_and_confirms_once() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let client = reqwest::Client::new();
    let (mut d, key, start, hash) = setup(dir.path(), 23, &client).await;
    let purpose = Purpose::Anchor { batch_id: ABANDONED, batch_hash: hash };
    let h = home(dir.path(), &d, &key);
    let g = h.spawn("guardian.log");
    // The guardian anchors the abandoned batch at normal fees; then fees spike.
    let sent = until_sent(&mut d, &client, &g, &h, &purpose).await;
    let flood = d.flood_mempool(300, FeeRate::from_sat_per_vb_u32(FLOOD_SAT_VB)).await.expect("flood");
    assert_eq!(flood.txids.len(), 300);
    assert!(mempool_size(&d).await > 300, "the flood and our anchor wait");
    assert_blocks_full(&mut d).await;
    let still = for_purpose(&journal(&h.journal()), &purpose);
    assert!(!still.iter().any(|r| matches!(r.status, TxStatus::Confirmed { .. })), "{}", summary(&still));

    let mut confirmed = None;
    for _ in 0..80 {
        keep_flooded(&mut d).await;
        mine_and_follow(&mut d, &client, &g).await;
        let recs = for_purpose(&journal(&h.journal()), &purpose);
        if let Some(c) = recs.iter().find(|r| matches!(r.status, TxStatus::Confirmed { .. })) {
            confirmed = Some(c.clone());
            break;
        }
    }
    let confirmed = confirmed.unwrap_or_else(|| panic!("the guardian's anchor never confirmed:\n{}", g.log_tail()));
    for _ in 0..3 {
        mine_and_follow(&mut d, &client, &g).await;
    }
    let recs = for_purpose(&journal(&h.journal()), &purpose);
    eprintln!("journal of the anchor of batch {ABANDONED}:\n{}", summary(&recs));
    let settled = assert_no_double_spend(&recs).expect("one confirmed");
    assert_eq!(settled.txid, confirmed.txid);
    // It was bumped: the original was replaced, and what confirmed pays a higher rate than the original.
    let original = recs.iter().find(|r| r.replaces.is_none()).expect("original");
    assert!(matches!(original.status, TxStatus::Replaced { .. }), "original not replaced: {recs:#?}");
    assert!(settled.replaces.is_some(), "a replacement confirmed: {recs:#?}");
    assert!(settled.fee_rate() > original.fee_rate(), "{} > {}", settled.fee_rate(), original.fee_rate());
    assert!(settled.fee_sat > original.fee_sat);
    assert_eq!(original.txid, sent[0].txid);
    let flood_rate = FeeRate::from_sat_per_vb_u32(FLOOD_SAT_VB);
    assert!(original.fee_rate() < flood_rate, "sent below the spike: {}", original.fee_rate());
    // At least the spike's rate (a bump to the node's estimate may tie with the flood and win the tie).
    assert!(settled.fee_rate() >= flood_rate, "confirmed at the spike's rate or above: {}", settled.fee_rate());
    // Every replacement pays more than what it replaced.
    for r in recs.iter().filter(|r| r.replaces.is_some()) {
        let old = recs.iter().find(|o| Some(o.txid) == r.replaces).expect("replaced");
        assert!(r.fee_rate() > old.fee_rate() && r.fee_sat > old.fee_sat, "{r:#?} vs {old:#?}");
    }
    // Exactly one anchor of the batch hash on the best chain, and it is the journal's confirmed tx.
    let ours: Vec<(u32, Txid, [u8; 32])> = anchors(&d, start).await.into_iter().filter(|a| a.2 == hash).collect();
    assert_eq!(ours.len(), 1, "anchors of batch {ABANDONED}: {ours:?}\n{}", g.log_tail());
    assert_eq!(ours[0].1, settled.txid);
    let log = g.log();
    assert!(log.contains("RBF bump"), "no bump in the guardian log:\n{}", g.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_send_and_restart_sends_nothing_twice() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let client = reqwest::Client::new();
    let (mut d, key, start, hash) = setup(dir.path(), 24, &client).await;
    let purpose = Purpose::Anchor { batch_id: ABANDONED, batch_hash: hash };
    let h = home(dir.path(), &d, &key);
    let mut g = h.spawn("guardian.log");
    until_sent(&mut d, &client, &g, &h, &purpose).await;
    d.flood_mempool(300, FeeRate::from_sat_per_vb_u32(FLOOD_SAT_VB)).await.expect("flood");

    // Mid-send: the anchor is signed and broadcast, bumped once, and still unconfirmed. Kill -9 there.
    let mut killed_with = None;
    for _ in 0..60 {
        keep_flooded(&mut d).await;
        mine_and_follow(&mut d, &client, &g).await;
        let recs = for_purpose(&journal(&h.journal()), &purpose);
        assert!(
            !recs.iter().any(|r| matches!(r.status, TxStatus::Confirmed { .. })),
            "confirmed before the kill: {recs:#?}"
        );
        let replaced = recs.iter().any(|r| matches!(r.status, TxStatus::Replaced { .. }));
        if replaced && recs.iter().any(TxRecord::is_live) {
            g.kill9();
            killed_with = Some(recs);
            break;
        }
    }
    let before = killed_with.unwrap_or_else(|| panic!("never caught the anchor mid-send:\n{}", g.log_tail()));
    let first_log = g.log();
    drop(g);
    // The kill also tore the write in flight: half a line, no newline, at the end of the journal.
    tear_last_line(&h.journal());
    // A block while it is down, then restart over the same data dir and config.
    keep_flooded(&mut d).await;
    d.mine(1).await.expect("mine");
    let g = h.spawn("guardian-restarted.log");
    let mut confirmed = None;
    for _ in 0..60 {
        keep_flooded(&mut d).await;
        mine_and_follow(&mut d, &client, &g).await;
        let recs = for_purpose(&journal(&h.journal()), &purpose);
        if let Some(c) = recs.iter().find(|r| matches!(r.status, TxStatus::Confirmed { .. })) {
            confirmed = Some(c.clone());
            break;
        }
    }
    let confirmed = confirmed.unwrap_or_else(|| panic!("never confirmed after the restart:\n{}", g.log_tail()));
    for _ in 0..3 {
        mine_and_follow(&mut d, &client, &g).await;
    }
    let recs = for_purpose(&journal(&h.journal()), &purpose);
    // Nothing written before the kill was lost or re-signed as a new original.
    for b in &before {
        assert!(recs.iter().any(|r| r.txid == b.txid), "{} vanished from the journal", b.txid);
    }
    eprintln!("killed with:\n{}\njournal at the end:\n{}", summary(&before), summary(&recs));
    let settled = assert_no_double_spend(&recs).expect("one confirmed");
    assert_eq!(settled.txid, confirmed.txid);
    let ours: Vec<(u32, Txid, [u8; 32])> = anchors(&d, start).await.into_iter().filter(|a| a.2 == hash).collect();
    assert_eq!(
        ours.len(),
        1,
        "anchors of batch {ABANDONED}: {ours:?}\nbefore the kill:\n{}\nafter:\n{}",
        first_log,
        g.log_tail()
    );
    assert_eq!(ours[0].1, settled.txid);
    assert!(g.log().contains("truncated a torn last line"), "{}", g.log_tail());
    // A second and a third start over the journal (the torn line would now be a torn middle line had
    // the first restart only skipped it): another kill -9 with a torn write, twice.
    drop(g);
    for round in 0..2 {
        tear_last_line(&h.journal());
        let g = h.spawn(&format!("guardian-again-{round}.log"));
        let mut opened = false;
        for _ in 0..240 {
            let log = g.log();
            assert!(!log.contains("is corrupt"), "restart {round} refused the journal:\n{log}");
            if log.contains("journal opened") {
                opened = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(opened, "restart {round} never opened the journal:\n{}", g.log_tail());
        mine_and_follow(&mut d, &client, &g).await;
        assert!(!g.log().contains("is corrupt"), "{}", g.log_tail());
    }
    let recs = for_purpose(&journal(&h.journal()), &purpose);
    assert_eq!(assert_no_double_spend(&recs).map(|r| r.txid), Some(settled.txid), "{}", summary(&recs));
    // Every KRAY transaction on chain from the guardian's key is in the journal (no unjournaled send).
    let journaled: Vec<Txid> = journal(&h.journal()).iter().map(|r| r.txid).collect();
    for (_, txid, _) in anchors(&d, start).await {
        let tx = d.rpc().get_raw_transaction(&txid).await.expect("tx");
        let from_guardian = tx.input.iter().any(|i| settled.inputs.contains(&i.previous_output));
        assert!(!from_guardian || journaled.contains(&txid), "{txid} spends the guardian's coin unjournaled");
    }
}
