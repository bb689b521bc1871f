//! `kray-guardian bench --history`: does the daemon's replay work stay flat as history grows?
//!
//! One signed workload is generated for the largest size; each history size is a prefix of its batches
//! (a prefix of a valid chain is a valid chain), stored in a fresh SQLite store the way the mirror
//! stores copies, with the workload's deposits in the L1 index. For each size it measures, on the
//! daemon's own replay stage ([`ReplayStage`]) and store:
//!
//! - **catch-up**: the first replay of the whole history from genesis (throughput);
//! - **checkpoint**: saving the replayer state (time, bytes);
//! - **idle tick**: [`ReplayStage::advance`] with nothing new (wall and CPU time, median of many);
//! - **restart**: [`ReplayStage::resume`] (stored verdicts + checkpoint) and the first advance after it
//!   — the time before a restarted guardian is caught up when nothing newer arrived;
//! - **publication to verdict**: storing one new batch and judging it;
//! - **store bytes per tx**.
//!
//! Targets (issue #12, docs/benchmarks.md): idle tick and restart independent of history (within
//! 20 % from the smallest to the largest size).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kray_devnet::workload::{generate, WorkloadSpec};
use kray_replayer::batch::Batch;
use kray_replayer::Profile;
use kray_watcher::store::{BatchCopy, Effect, L1Header, Outpoint, Store};
use serde::Serialize;

use crate::daemon::replay_stage::ReplayStage;

/// Arguments of `bench --history`.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Run the history benchmark (instead of the root and replay sections).
    #[arg(long)]
    pub history: bool,
    /// History sizes in txs, comma-separated (each a prefix of one workload).
    #[arg(long, value_delimiter = ',', default_values_t = vec![100_000u64, 400_000, 1_600_000])]
    pub history_sizes: Vec<u64>,
    /// Txs per batch of the history.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history_batch_size: u64,
    /// Genesis accounts of the history workload.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    pub history_accounts: u64,
    /// Idle advances timed per size (the median is reported).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub idle_rounds: u32,
}

/// Figures for one history size.
#[derive(Serialize, Debug)]
pub struct HistoryRow {
    /// Txs in the stored history.
    pub txs: u64,
    /// Batches in the stored history.
    pub batches: u64,
    /// First replay of the whole history from genesis (s).
    pub catch_up_s: f64,
    /// Its throughput (tx/s).
    pub catch_up_tx_per_s: f64,
    /// Saving the replayer checkpoint (ms).
    pub checkpoint_ms: f64,
    /// Its size (bytes).
    pub checkpoint_bytes: u64,
    /// One advance with nothing new, median wall time (ms).
    pub idle_advance_ms: f64,
    /// One advance with nothing new, mean CPU time of the process (ms).
    pub idle_advance_cpu_ms: f64,
    /// Batch bodies read by the idle advances (0 when work is proportional to what is new).
    pub idle_bodies_read: u64,
    /// Loading the stored verdicts and the checkpoint at restart (ms).
    pub restart_load_ms: f64,
    /// The first advance after the restart, nothing newer stored (ms).
    pub restart_catch_up_ms: f64,
    /// Storing one new batch and judging it (ms).
    pub publication_to_verdict_ms: f64,
    /// Size of the store's files over the txs stored (bytes per tx).
    pub store_bytes_per_tx: f64,
}

/// The whole report.
#[derive(Serialize, Debug)]
pub struct HistoryReport {
    /// Workload generation (s, not part of any figure).
    pub generation_s: f64,
    /// One row per size, smallest first.
    pub rows: Vec<HistoryRow>,
    /// Largest over smallest idle advance (target ≤ 1.2).
    pub idle_growth: f64,
    /// Largest over smallest restart load + catch-up (target ≤ 1.2).
    pub restart_growth: f64,
}

/// Runs the history benchmark and prints its table (or JSON).
pub fn run(args: &HistoryArgs, profile: &Profile, json: bool) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = rt.block_on(collect(args, profile))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(())
}

async fn collect(args: &HistoryArgs, profile: &Profile) -> Result<HistoryReport> {
    let mut sizes = args.history_sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let largest = *sizes.last().context("--history-sizes is empty")?;
    ensure!(
        args.history_batch_size <= u64::from(profile.max_batch_txs),
        "--history-batch-size exceeds the profile's max_batch_txs {}",
        profile.max_batch_txs
    );
    // One batch more than the largest history: the "new publication".
    let spec = WorkloadSpec {
        accounts: usize::try_from(args.history_accounts)?,
        txs: usize::try_from(largest + args.history_batch_size)?,
        batch_size: usize::try_from(args.history_batch_size)?,
        seed: 7,
        fault: None,
    };
    eprintln!("history: generating {} txs (not timed)", largest + args.history_batch_size);
    let t = Instant::now();
    let w = generate(profile, &spec).context("generating the history workload")?;
    let generation_s = t.elapsed().as_secs_f64();
    let batches: Vec<Batch> = w.batches.into_iter().map(|(_, b)| b).collect();
    let deposits = deposit_effects(&w.facts);
    let mut rows = Vec::new();
    for size in sizes {
        // The prefix holding `size` txs (at least one batch), and the batch after it.
        let mut n = 0usize;
        let mut txs = 0u64;
        while n + 1 < batches.len() && txs < size {
            txs += batches[n].txs.len() as u64;
            n += 1;
        }
        eprintln!("history: {} txs in {n} batches", txs);
        let (genesis_chain, genesis_state) = w.genesis.build(profile).context("building the genesis")?;
        let dir = tempfile::tempdir().context("a temp dir for the store")?;
        let store = Store::open_sqlite(dir.path()).await?;
        let h = |n: u64| format!("{n:064x}");
        store.apply_block(&L1Header { height: 1, hash: h(1), prev_hash: h(0) }, &deposits).await?;
        for chunk in batches[..n].chunks(64) {
            store.insert_batches(&chunk.iter().map(copy_of).collect::<Vec<_>>()).await?;
        }
        let tip = u64::MAX >> 2;

        let mut stage = ReplayStage::new(
            kray_replayer::replay::Replayer::new(genesis_chain.clone(), genesis_state.clone())?,
            profile.clone(),
        )
        .with_budget(Duration::MAX);
        let t = Instant::now();
        let adv = stage.advance(&store, tip).await?;
        let catch_up_s = t.elapsed().as_secs_f64();
        ensure!(adv.judged.len() == n, "catch-up judged {} of {n} batches", adv.judged.len());

        let t = Instant::now();
        let checkpoint_bytes = stage.save_checkpoint(&store, 0).await? as u64;
        let checkpoint_ms = ms(t.elapsed());

        let before = stage.bodies_read();
        let mut idle = Vec::new();
        let cpu0 = cpu_time();
        for _ in 0..args.idle_rounds {
            let t = Instant::now();
            let a = stage.advance(&store, tip).await?;
            idle.push(ms(t.elapsed()));
            ensure!(a.judged.is_empty(), "an idle advance judged something");
        }
        let idle_advance_cpu_ms = ms(cpu_time().saturating_sub(cpu0)) / f64::from(args.idle_rounds);
        let idle_bodies_read = stage.bodies_read() - before;
        drop(stage);

        let t = Instant::now();
        let (resumed, _) = ReplayStage::resume(&store, genesis_chain, genesis_state, profile.clone()).await?;
        let mut resumed = resumed.with_budget(Duration::MAX);
        let restart_load_ms = ms(t.elapsed());
        let t = Instant::now();
        resumed.advance(&store, tip).await?;
        let restart_catch_up_ms = ms(t.elapsed());

        let t = Instant::now();
        store.insert_batches(&[copy_of(&batches[n])]).await?;
        let adv = resumed.advance(&store, tip).await?;
        let publication_to_verdict_ms = ms(t.elapsed());
        ensure!(adv.judged.len() == 1, "the new batch was not judged");

        let store_bytes: u64 = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        rows.push(HistoryRow {
            txs,
            batches: n as u64,
            catch_up_s,
            catch_up_tx_per_s: txs as f64 / catch_up_s.max(1e-9),
            checkpoint_ms,
            checkpoint_bytes,
            idle_advance_ms: median(&mut idle),
            idle_advance_cpu_ms,
            idle_bodies_read,
            restart_load_ms,
            restart_catch_up_ms,
            publication_to_verdict_ms,
            store_bytes_per_tx: store_bytes as f64 / txs.max(1) as f64,
        });
        store.close().await;
    }
    let growth = |f: fn(&HistoryRow) -> f64| match (rows.first(), rows.last()) {
        (Some(a), Some(b)) if f(a) > 0.0 => f(b) / f(a),
        _ => 1.0,
    };
    let idle_growth = growth(|r| r.idle_advance_ms);
    let restart_growth = growth(|r| r.restart_load_ms + r.restart_catch_up_ms);
    Ok(HistoryReport { generation_s, rows, idle_growth, restart_growth })
}

/// The deposits of a workload's L1 facts as the L1 index stores them (bridge deposits of one block).
pub fn deposit_effects(facts: &kray_replayer::l1facts::L1FactsFile) -> Vec<Effect> {
    facts
        .deposits
        .iter()
        .map(|d| Effect::Deposit {
            outpoint: Outpoint { txid: hex::encode(d.outpoint.txid), vout: d.outpoint.vout },
            amount: u128::from(d.rune_amount),
            recipient: d.recipient.map(|k| hex::encode(k.0)),
            from_bridge: false,
        })
        .collect()
}

/// A batch as the mirror stores it.
pub fn copy_of(b: &Batch) -> BatchCopy {
    BatchCopy {
        batch_id: b.signed.header.batch_id,
        source: "bench".into(),
        content_hash: hex::encode(b.content_hash()),
        raw: b.to_raw(),
        received_at: 0,
    }
}

fn print(r: &HistoryReport) {
    println!("history benchmark (workload generated in {:.1} s, not counted)", r.generation_s);
    println!(
        "{:>10} {:>7} {:>11} {:>11} {:>9} {:>10} {:>9} {:>6} {:>10} {:>11} {:>9} {:>8}",
        "txs",
        "batches",
        "catch-up s",
        "tx/s",
        "ckpt ms",
        "ckpt KiB",
        "idle ms",
        "bodies",
        "restart ms",
        "+caught ms",
        "pub→v ms",
        "B/tx"
    );
    for x in &r.rows {
        println!(
            "{:>10} {:>7} {:>11.2} {:>11.0} {:>9.1} {:>10} {:>9.3} {:>6} {:>10.1} {:>11.2} {:>9.1} {:>8.0}",
            x.txs,
            x.batches,
            x.catch_up_s,
            x.catch_up_tx_per_s,
            x.checkpoint_ms,
            x.checkpoint_bytes >> 10,
            x.idle_advance_ms,
            x.idle_bodies_read,
            x.restart_load_ms,
            x.restart_catch_up_ms,
            x.publication_to_verdict_ms,
            x.store_bytes_per_tx
        );
    }
    let verdict = |g: f64| if g <= 1.2 { "pass" } else { "miss" };
    println!(
        "idle advance, largest / smallest history: {:.2} ({}, target ≤ 1.20); restart: {:.2} ({}, target ≤ 1.20)",
        r.idle_growth,
        verdict(r.idle_growth),
        r.restart_growth,
        verdict(r.restart_growth)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
