//! `kray-guardian bench`: the figures behind the guardian's performance targets, measured on this
//! machine (see docs/benchmarks.md for the targets, results and how to reproduce them).
//!
//! Two sections, each optional (`--only`):
//! - `root`: a [`State`] of `--root-accounts` random accounts ([`State::from_accounts`]); its memory
//!   per account ([`State::heap_bytes`] and the process RSS delta from `/proc/self/statm`); then the
//!   time to execute a batch of `--root-batch` transfers (2 accounts + Treasury each, 1 in 50 to a
//!   new account) through an [`Overlay`], [`State::apply`] it and take [`State::state_root`].
//! - `replay`: a signed workload from [`kray_devnet::workload::generate`] (generation timed apart);
//!   the raw BIP-340 verification rate of its tx signatures on the rayon pool; the throughput and
//!   total time of [`Replayer::replay`] over its batches; optionally (`--breakdown`) the same
//!   pipeline re-run stage by stage to show where replay time goes.
//!
//! The `root` section runs first, in a fresh process, so that its RSS delta is not blurred by memory
//! the allocator kept from the workload.

use anyhow::{anyhow, bail, ensure, Context, Result};
use kray_devnet::workload::{generate, Workload, WorkloadSpec};
use kray_replayer::address::AccountKey;
use kray_replayer::execute::{execute, expected_gas, DepositCheck, ExecContext, Semantics};
use kray_replayer::fault::FaultClass;
use kray_replayer::hash::Hash32;
use kray_replayer::l1facts::FileFacts;
use kray_replayer::replay::{execute_all, PreparedTx, Replayer, TxCheckFault};
use kray_replayer::signature::{verify, verify_all, KeyCache};
use kray_replayer::state::{Account, Overlay, ReadLedger, State};
use kray_replayer::tx::{tx_id, CheckedTx, Tx, TxKind};
use kray_replayer::{Profile, Verdict};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Replay throughput must reach this share of the raw parallel verification rate.
const TARGET_RATIO: f64 = 0.80;
/// A 10,000-tx batch on a 1,000,000-account state must update the root within this (ms).
const TARGET_ROOT_MS: f64 = 100.0;
/// State memory per account (bytes).
const TARGET_BYTES_PER_ACCOUNT: f64 = 300.0;
/// Replaying 1,000,000 txs must take less than this (s).
const TARGET_E2E_S: f64 = 60.0;
/// The sizes the targets are stated for.
const TARGET_ROOT_ACCOUNTS: u64 = 1_000_000;
const TARGET_ROOT_BATCH: u64 = 10_000;
const TARGET_E2E_TXS: u64 = 1_000_000;
/// Starting balance of the root section's accounts.
const ROOT_BALANCE: u64 = 1_000_000_000;
/// One root-section tx in this many pays a new account.
const ROOT_APPEND_EVERY: u64 = 50;
/// Rough peak memory per account of the root section and per tx of the replay section (bytes), to
/// refuse sizes this machine cannot hold instead of being killed halfway.
const EST_BYTES_PER_ROOT_ACCOUNT: u64 = 400;
const EST_BYTES_PER_WORKLOAD_TX: u64 = 900;

/// Which part to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// State root update time and memory per account.
    Root,
    /// Signature verification rate, replay throughput and end-to-end replay time.
    Replay,
}

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Genesis users of the replay workload.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=100_000_000))]
    pub accounts: u64,
    /// User txs of the replay workload (all replayed; generation is timed apart).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub txs: u64,
    /// User txs per batch of the replay workload (at most the profile's max_batch_txs).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    pub batch_size: u64,
    /// Accounts of the state the root section updates (the Treasury is one of them).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(3..=1_000_000_000))]
    pub root_accounts: u64,
    /// Txs per batch in the root section.
    #[arg(long, visible_alias = "root-batch-tx", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub root_batch: u64,
    /// Batches applied in turn in the root section (each is timed).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub root_rounds: u32,
    /// Seed of the workload and of the root section's accounts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Profile name or TOML path.
    #[arg(long, default_value = "regtest")]
    pub profile: String,
    /// Threads of the rayon pool (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Run one section only.
    #[arg(long, value_enum)]
    pub only: Option<Section>,
    /// Also re-run the replay pipeline stage by stage (doubles the replay section's time).
    #[arg(long)]
    pub breakdown: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The history benchmark (`--history`): does the daemon's work stay flat as history grows?
    #[command(flatten)]
    pub history: crate::bench_history::HistoryArgs,
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Serialize, Debug)]
struct Report {
    machine: Machine,
    root: Option<RootReport>,
    replay: Option<ReplayReport>,
    targets: Vec<TargetCheck>,
}

#[derive(Serialize, Debug)]
struct Machine {
    nproc: usize,
    cpu_model: String,
    rayon_threads: usize,
    mem_total_bytes: Option<u64>,
    /// `/proc/loadavg` before and after the run (other work on the machine skews the figures).
    loadavg_before: String,
    loadavg_after: String,
    release_build: bool,
    peak_rss_bytes: Option<u64>,
}

#[derive(Serialize, Debug)]
struct RootReport {
    accounts: u64,
    batch_txs: u64,
    appends_per_batch: u64,
    build_s: f64,
    heap_bytes: u64,
    heap_bytes_per_account: f64,
    rss_delta_bytes: Option<u64>,
    rss_bytes_per_account: Option<f64>,
    heap_bytes_per_account_after_rounds: f64,
    rss_bytes_per_account_after_rounds: Option<f64>,
    rounds: Vec<RootRound>,
    median_ms: f64,
    max_ms: f64,
}

#[derive(Serialize, Debug, Clone)]
struct RootRound {
    /// Executing the batch's txs through an Overlay (reads, checks, writes).
    execute_ms: f64,
    /// State::apply: leaf hashes, account writes, Merkle path rehash, undo record.
    apply_ms: f64,
    /// State::state_root after apply.
    root_ms: f64,
    total_ms: f64,
    changed_accounts: usize,
}

#[derive(Serialize, Debug)]
struct ReplayReport {
    accounts: u64,
    user_txs: u64,
    batch_size: u64,
    batches: usize,
    /// Txs in the batches (user txs plus the workload's 2 deposits).
    txs: u64,
    generation_s: f64,
    verify: VerifyReport,
    replay_s: f64,
    replay_tx_per_s: f64,
    batch_ms_min: f64,
    batch_ms_median: f64,
    batch_ms_max: f64,
    /// replay_tx_per_s / verify.sigs_per_s.
    ratio: f64,
    breakdown: Option<Breakdown>,
}

#[derive(Serialize, Debug)]
struct VerifyReport {
    signatures: u64,
    seconds: f64,
    sigs_per_s: f64,
}

/// Seconds spent in each replay stage over all batches (stage-by-stage re-run).
#[derive(Serialize, Debug, Default)]
struct Breakdown {
    /// Producer's header and data signatures (data hash over all tx bytes): serial.
    batch_signatures_s: f64,
    /// tx root: leaf hashes (parallel) and rs_merkle tree (serial).
    tx_root_s: f64,
    /// Header gas total: decodes every tx again (serial).
    gas_total_s: f64,
    /// Decode and tx id (parallel).
    decode_s: f64,
    /// Static checks: address parsing, gas (parallel).
    static_check_s: f64,
    /// Pubkey cache lookups and parsing (serial scan, parallel parse).
    key_resolve_s: f64,
    /// Signing hash and BIP-340 verification (parallel).
    tx_verify_s: f64,
    /// Executing through the Overlay (serial).
    execute_s: f64,
    /// State::apply and state_root (serial).
    apply_root_s: f64,
    /// Freeing the batch's decoded txs and undo record (serial).
    drop_s: f64,
    /// Sum of the stages.
    total_s: f64,
}

#[derive(Serialize, Debug)]
struct TargetCheck {
    name: String,
    measured: f64,
    unit: String,
    goal: String,
    /// `pass`, `miss`, or `not-at-target-size` (run at other sizes than the target is stated for).
    status: String,
}

// ---------------------------------------------------------------------------------------------
// Entry

/// Run `bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let profile = Profile::load(&args.profile)?;
    if args.history.history {
        return crate::bench_history::run(&args.history, &profile, args.json);
    }
    validate(args, &profile)?;
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        builder = builder.num_threads(t as usize);
    }
    let pool = builder.build().context("starting the rayon pool")?;
    let report = pool.install(|| collect(args, &profile))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(args, &report);
    }
    Ok(())
}

fn validate(a: &BenchArgs, profile: &Profile) -> Result<()> {
    if a.batch_size > u64::from(profile.max_batch_txs) {
        bail!(
            "--batch-size {} exceeds the {} profile's max_batch_txs {}",
            a.batch_size,
            profile.name,
            profile.max_batch_txs
        );
    }
    let appends = (a.root_batch / ROOT_APPEND_EVERY) * u64::from(a.root_rounds);
    if a.root_accounts + appends > u64::from(u32::MAX) {
        bail!("--root-accounts plus the accounts the rounds append exceeds the 2^32 account indices");
    }
    let avail = mem_available();
    let check = |what: &str, need: u64| -> Result<()> {
        match avail {
            Some(have) if need > have => bail!(
                "{what} would need about {} MB of memory, this machine has {} MB available; choose a smaller size",
                need >> 20,
                have >> 20
            ),
            _ => Ok(()),
        }
    };
    if a.only != Some(Section::Replay) {
        check("--root-accounts", a.root_accounts.saturating_mul(EST_BYTES_PER_ROOT_ACCOUNT))?;
    }
    if a.only != Some(Section::Root) {
        check("--txs", a.txs.saturating_mul(EST_BYTES_PER_WORKLOAD_TX))?;
    }
    Ok(())
}

fn collect(a: &BenchArgs, profile: &Profile) -> Result<Report> {
    let loadavg_before = loadavg();
    // Root first: its RSS delta is only meaningful before the workload has passed through the heap.
    let root = if a.only != Some(Section::Replay) { Some(bench_root(a, profile)?) } else { None };
    let replay = if a.only != Some(Section::Root) { Some(bench_replay(a, profile)?) } else { None };
    let machine = Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model: cpu_model(),
        rayon_threads: rayon::current_num_threads(),
        mem_total_bytes: meminfo("MemTotal:"),
        loadavg_before,
        loadavg_after: loadavg(),
        release_build: !cfg!(debug_assertions),
        peak_rss_bytes: status_kb("VmHWM:"),
    };
    let targets = checks(a, root.as_ref(), replay.as_ref());
    Ok(Report { machine, root, replay, targets })
}

fn checks(a: &BenchArgs, root: Option<&RootReport>, replay: Option<&ReplayReport>) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let mut push = |name: String, measured: f64, unit: &str, goal: String, ok: bool, at_size: bool| {
        let status = match (at_size, ok) {
            (false, _) => "not-at-target-size",
            (true, true) => "pass",
            (true, false) => "miss",
        };
        out.push(TargetCheck { name, measured, unit: unit.into(), goal, status: status.into() });
    };
    if let Some(r) = replay {
        push(
            "replay throughput / raw parallel verification".into(),
            r.ratio * 100.0,
            "%",
            format!(">= {:.0} %", TARGET_RATIO * 100.0),
            r.ratio >= TARGET_RATIO,
            true,
        );
    }
    if let Some(r) = root {
        push(
            format!(
                "state root update, {} accounts x {} txs (worst of {} rounds)",
                r.accounts,
                r.batch_txs,
                r.rounds.len()
            ),
            r.max_ms,
            "ms",
            format!("< {TARGET_ROOT_MS:.0} ms at {TARGET_ROOT_ACCOUNTS} x {TARGET_ROOT_BATCH}"),
            r.max_ms < TARGET_ROOT_MS,
            a.root_accounts >= TARGET_ROOT_ACCOUNTS && a.root_batch >= TARGET_ROOT_BATCH,
        );
        push(
            "state memory per account, State::heap_bytes".into(),
            r.heap_bytes_per_account,
            "B",
            format!("<= {TARGET_BYTES_PER_ACCOUNT:.0} B"),
            r.heap_bytes_per_account <= TARGET_BYTES_PER_ACCOUNT,
            true,
        );
        if let Some(rss) = r.rss_bytes_per_account {
            push(
                "state memory per account, RSS delta".into(),
                rss,
                "B",
                format!("<= {TARGET_BYTES_PER_ACCOUNT:.0} B"),
                rss <= TARGET_BYTES_PER_ACCOUNT,
                true,
            );
        }
    }
    if let Some(r) = replay {
        push(
            format!("end-to-end replay of {} txs (replay only)", r.txs),
            r.replay_s,
            "s",
            format!("< {TARGET_E2E_S:.0} s for {TARGET_E2E_TXS} txs"),
            r.replay_s < TARGET_E2E_S,
            a.txs >= TARGET_E2E_TXS,
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Root section

/// SplitMix64: a small seeded generator (the root section needs random bytes, not real keys).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        b
    }
}

fn bench_root(a: &BenchArgs, profile: &Profile) -> Result<RootReport> {
    let treasury = profile.treasury_key().context("the profile's Treasury")?;
    let n = a.root_accounts;
    let mut rng = SplitMix(a.seed ^ 0x726f_6f74_2d62_656e);
    progress(format!("root: building a state of {} accounts", thousands(n)));
    let rss0 = rss_bytes();
    let t = Instant::now();
    let accounts: Vec<Account> = (0..n)
        .map(|i| {
            if i == 0 {
                Account { key: treasury, balance: 0, nonce: 0 }
            } else {
                Account { key: AccountKey(rng.bytes32()), balance: ROOT_BALANCE, nonce: 0 }
            }
        })
        .collect();
    let mut state = State::from_accounts(accounts).context("building the root-section state")?;
    let build_s = t.elapsed().as_secs_f64();
    let rss1 = rss_bytes();
    let heap = state.heap_bytes() as u64;
    let rss_delta = rss0.zip(rss1).map(|(b, a)| a.saturating_sub(b));

    let mut rounds = Vec::new();
    for round in 0..a.root_rounds {
        progress(format!("root: round {}/{}: {} txs", round + 1, a.root_rounds, thousands(a.root_batch)));
        let txs = root_batch(&state, &mut rng, a.root_batch, n, profile)?;
        let ctx = ExecContext {
            profile,
            treasury,
            batch_id: u64::from(round) + 1,
            l1_height: 0,
            semantics: Semantics::Reference,
            deposits: DepositCheck::Skip,
        };
        let t0 = Instant::now();
        let mut ov = Overlay::new(&state);
        for (i, (tx, checked, id)) in txs.iter().enumerate() {
            execute(&mut ov, &ctx, tx, checked, id)
                .map_err(|e| anyhow!("root section: tx {i} did not execute: {e}"))?;
        }
        let changes = ov.into_changes();
        let t1 = Instant::now();
        let changed_accounts = changes.accounts.len();
        let undo = state.apply(changes);
        let t2 = Instant::now();
        let root = state.state_root();
        let t3 = Instant::now();
        std::hint::black_box((root, undo));
        rounds.push(RootRound {
            execute_ms: ms(t1 - t0),
            apply_ms: ms(t2 - t1),
            root_ms: ms(t3 - t2),
            total_ms: ms(t3 - t0),
            changed_accounts,
        });
    }
    let heap_after = state.heap_bytes() as u64;
    let rss2 = rss_bytes();
    let count = state.account_count();
    drop(state);
    let mut totals: Vec<f64> = rounds.iter().map(|r| r.total_ms).collect();
    totals.sort_by(f64::total_cmp);
    Ok(RootReport {
        accounts: n,
        batch_txs: a.root_batch,
        appends_per_batch: a.root_batch / ROOT_APPEND_EVERY,
        build_s,
        heap_bytes: heap,
        heap_bytes_per_account: heap as f64 / n as f64,
        rss_delta_bytes: rss_delta,
        rss_bytes_per_account: rss_delta.map(|d| d as f64 / n as f64),
        heap_bytes_per_account_after_rounds: heap_after as f64 / count as f64,
        rss_bytes_per_account_after_rounds: rss0.zip(rss2).map(|(b, a)| a.saturating_sub(b) as f64 / count as f64),
        median_ms: median(&totals),
        max_ms: totals.last().copied().unwrap_or(0.0),
        rounds,
    })
}

/// A batch of `m` transfers on `state`: senders among the first `senders` accounts (the funded ones,
/// never the Treasury at 0), recipients any other account, every 50th a new account.
fn root_batch(
    state: &State,
    rng: &mut SplitMix,
    m: u64,
    senders: u64,
    profile: &Profile,
) -> Result<Vec<(Tx, CheckedTx, Hash32)>> {
    let count = state.account_count();
    let gas = expected_gas(TxKind::Transfer, profile);
    let mut nonces: HashMap<u64, u64> = HashMap::new();
    let mut appended = 0u64;
    let mut out = Vec::with_capacity(m as usize);
    for k in 0..m {
        let from = 1 + rng.below(senders - 1);
        let from_acc = state.account(from)?;
        let nonce = nonces.entry(from).or_insert(from_acc.nonce);
        let (to_index, to_key) = if k % ROOT_APPEND_EVERY == ROOT_APPEND_EVERY - 1 {
            appended += 1;
            (count + appended - 1, AccountKey(rng.bytes32()))
        } else {
            let mut to = 1 + rng.below(count - 1);
            if to == from {
                to = if to + 1 < count { to + 1 } else { 1 };
            }
            (to, state.account(to)?.key)
        };
        let tx = Tx {
            tx_type: TxKind::Transfer.as_str().into(),
            from: String::new(),
            to: String::new(),
            amount: 1 + rng.below(10_000),
            nonce: *nonce,
            gas_fee: gas,
            from_index: Some(from),
            to_index: Some(to_index),
            pubkey: [0; 32],
            signature: [0; 64],
            memo: None,
            data: None,
        };
        *nonce += 1;
        let checked =
            CheckedTx { kind: TxKind::Transfer, from_key: Some(from_acc.key), to_key: Some(to_key), outpoint: None };
        out.push((tx, checked, rng.bytes32()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Replay section

fn bench_replay(a: &BenchArgs, profile: &Profile) -> Result<ReplayReport> {
    let spec = WorkloadSpec {
        accounts: usize::try_from(a.accounts)?,
        txs: usize::try_from(a.txs)?,
        batch_size: usize::try_from(a.batch_size)?,
        seed: a.seed,
        fault: None,
    };
    progress(format!(
        "replay: generating {} txs for {} accounts in batches of {} (not timed as replay)",
        thousands(a.txs),
        thousands(a.accounts),
        thousands(a.batch_size)
    ));
    let t = Instant::now();
    let w = generate(profile, &spec).context("generating the workload")?;
    let generation_s = t.elapsed().as_secs_f64();
    let txs: u64 = w.batches.iter().map(|(_, b)| b.txs.len() as u64).sum();

    // Each batch: first the raw parallel verification of its tx signatures (keys parsed and messages
    // hashed beforehand, untimed), then `Replayer::replay` of the batch. Interleaving the two keeps
    // their ratio fair when other work shares the machine.
    progress(format!(
        "replay: {} batches, each verified raw then replayed, on {} threads",
        w.batches.len(),
        rayon::current_num_threads()
    ));
    let (chain, state) = w.genesis.build(profile).context("building the workload genesis")?;
    let facts = FileFacts::from(w.facts.clone());
    let mut replayer = Replayer::new(chain, state)?;
    let mut keys = KeyCache::default();
    let mut per_batch = Vec::with_capacity(w.batches.len());
    let mut verify_s = 0.0;
    let mut signatures = 0u64;
    for (i, (name, b)) in w.batches.iter().enumerate() {
        let decoded: Vec<Tx> = b
            .txs
            .par_iter()
            .map(|bytes| Tx::decode(bytes))
            .collect::<Result<_, _>>()
            .with_context(|| format!("{name}: a tx does not decode"))?;
        let signed: Vec<&Tx> = decoded.iter().filter(|t| t.tx_type != TxKind::Deposit.as_str()).collect();
        keys.resolve(signed.iter().map(|t| &t.pubkey));
        let items: Vec<_> =
            signed.par_iter().map(|t| (keys.get(&t.pubkey).map(|(pk, _)| pk), t.signing_hash(), t.signature)).collect();
        if i == 0 {
            if let Some((Some(pk), m, s)) = items.first() {
                std::hint::black_box(verify(pk, m, s)); // context tables built outside the timing
            }
        }
        let t = Instant::now();
        let ok = verify_all(&items);
        verify_s += t.elapsed().as_secs_f64();
        let bad = ok.iter().filter(|v| !**v).count();
        ensure!(bad == 0, "{name}: {bad} signatures did not verify (generator or bench bug)");
        signatures += items.len() as u64;
        drop(items);
        drop(signed);
        drop(decoded);

        let t = Instant::now();
        let v = replayer.replay(b, &facts).with_context(|| format!("replaying {name}"))?;
        per_batch.push(ms(t.elapsed()));
        if !matches!(v, Verdict::Valid { .. }) {
            bail!("{name} did not replay as valid: {v:?}");
        }
    }
    drop(replayer);
    let replay_s = per_batch.iter().sum::<f64>() / 1000.0;
    per_batch.sort_by(f64::total_cmp);
    let sigs_per_s = signatures as f64 / verify_s;
    let replay_tx_per_s = txs as f64 / replay_s;
    let breakdown = if a.breakdown {
        progress("replay: stage-by-stage breakdown".to_string());
        Some(breakdown(profile, &w, &facts)?)
    } else {
        None
    };
    Ok(ReplayReport {
        accounts: a.accounts,
        user_txs: a.txs,
        batch_size: a.batch_size,
        batches: w.batches.len(),
        txs,
        generation_s,
        verify: VerifyReport { signatures, seconds: verify_s, sigs_per_s },
        replay_s,
        replay_tx_per_s,
        batch_ms_min: per_batch.first().copied().unwrap_or(0.0),
        batch_ms_median: median(&per_batch),
        batch_ms_max: per_batch.last().copied().unwrap_or(0.0),
        ratio: replay_tx_per_s / sigs_per_s,
        breakdown,
    })
}

/// The replay pipeline of `Replayer::judge`, stage by stage (same calls, same order), timed.
fn breakdown(profile: &Profile, w: &Workload, facts: &FileFacts) -> Result<Breakdown> {
    let (_, mut state) = w.genesis.build(profile).context("building the workload genesis")?;
    let treasury = profile.treasury_key()?;
    let mut keys = KeyCache::default();
    let mut s = [Duration::ZERO; 10];
    let mut lap = |i: usize, t: &mut Instant| {
        let now = Instant::now();
        s[i] += now - *t;
        *t = now;
    };
    for (name, b) in &w.batches {
        let h = &b.signed.header;
        let mut t = Instant::now();
        ensure!(b.signed.signature_valid() && b.data_signature_valid(), "{name}: producer signature");
        lap(0, &mut t);
        ensure!(b.compute_tx_root() == h.tx_root, "{name}: tx root");
        lap(1, &mut t);
        let gas =
            b.txs.iter().map(|x| Tx::decode(x).map(|t| t.gas_fee).unwrap_or(0)).try_fold(0u64, |a, g| a.checked_add(g));
        ensure!(gas == Some(h.total_gas), "{name}: total gas");
        lap(2, &mut t);
        let decoded: Vec<Result<(Tx, Hash32), TxCheckFault>> = b
            .txs
            .par_iter()
            .map(|bytes| {
                Tx::decode(bytes).map(|tx| (tx, tx_id(bytes))).map_err(|e| (FaultClass::MalformedTx, e.to_string()))
            })
            .collect();
        lap(3, &mut t);
        let checked: Vec<Result<PreparedTx, TxCheckFault>> = decoded
            .into_par_iter()
            .map(|d| {
                let (tx, id) = d?;
                let checked = tx.check(profile).map_err(|e| (FaultClass::MalformedTx, e.to_string()))?;
                if tx.gas_fee != expected_gas(checked.kind, profile) {
                    return Err((FaultClass::WrongGas, "gas".to_string()));
                }
                Ok(PreparedTx { tx, checked, id })
            })
            .collect();
        lap(4, &mut t);
        keys.resolve(
            checked
                .iter()
                .filter_map(|p| p.as_ref().ok())
                .filter(|p| p.checked.from_key.is_some())
                .map(|p| &p.tx.pubkey),
        );
        lap(5, &mut t);
        let keys_ref = &keys;
        let prepared: Vec<Result<PreparedTx, TxCheckFault>> = checked
            .into_par_iter()
            .map(|p| {
                let p = p?;
                let Some(from_key) = p.checked.from_key else { return Ok(p) };
                let Some((pk, derived)) = keys_ref.get(&p.tx.pubkey) else {
                    return Err((FaultClass::InvalidSignature, "pubkey".to_string()));
                };
                if derived != from_key || !verify(&pk, &p.tx.signing_hash(), &p.tx.signature) {
                    return Err((FaultClass::InvalidSignature, "signature".to_string()));
                }
                Ok(p)
            })
            .collect();
        lap(6, &mut t);
        let ctx = ExecContext {
            profile,
            treasury,
            batch_id: h.batch_id,
            l1_height: h.l1_height,
            semantics: Semantics::Reference,
            deposits: DepositCheck::Facts(facts),
        };
        let mut ov = Overlay::new(&state);
        execute_all(&mut ov, &ctx, &prepared).map_err(|(i, e)| anyhow!("{name}: tx {i}: {e}"))?;
        let changes = ov.into_changes();
        lap(7, &mut t);
        let undo = state.apply(changes);
        let root = state.state_root();
        lap(8, &mut t);
        drop(undo);
        drop(prepared);
        lap(9, &mut t);
        ensure!(root == h.new_state_root, "{name}: the stage-by-stage replay reached another state root");
    }
    let f = |d: Duration| d.as_secs_f64();
    Ok(Breakdown {
        batch_signatures_s: f(s[0]),
        tx_root_s: f(s[1]),
        gas_total_s: f(s[2]),
        decode_s: f(s[3]),
        static_check_s: f(s[4]),
        key_resolve_s: f(s[5]),
        tx_verify_s: f(s[6]),
        execute_s: f(s[7]),
        apply_root_s: f(s[8]),
        drop_s: f(s[9]),
        total_s: s.iter().map(|d| d.as_secs_f64()).sum(),
    })
}

// ---------------------------------------------------------------------------------------------
// Output

fn print_table(a: &BenchArgs, r: &Report) {
    let m = &r.machine;
    println!("kray-guardian bench");
    println!(
        "machine: {} cores ({}), rayon pool {} threads, {} memory{}",
        m.nproc,
        m.cpu_model,
        m.rayon_threads,
        m.mem_total_bytes.map(mib).unwrap_or_else(|| "unknown".into()),
        if m.release_build { "" } else { "  [DEBUG BUILD: figures are not meaningful, use --release]" }
    );
    println!("load average before / after: {} / {}", m.loadavg_before, m.loadavg_after);
    if let Some(x) = &r.root {
        println!();
        println!(
            "State root update: {} accounts, batches of {} transfers ({} new accounts each), seed {}",
            thousands(x.accounts),
            thousands(x.batch_txs),
            x.appends_per_batch,
            a.seed
        );
        row("build (State::from_accounts)", format!("{:.2} s", x.build_s));
        row("memory, State::heap_bytes", format!("{:.1} B/account ({})", x.heap_bytes_per_account, mib(x.heap_bytes)));
        match (x.rss_bytes_per_account, x.rss_delta_bytes) {
            (Some(p), Some(d)) => row("memory, RSS delta (/proc/self/statm)", format!("{p:.1} B/account ({})", mib(d))),
            _ => row("memory, RSS delta", "unavailable (no /proc/self/statm)".into()),
        }
        row(
            "memory after the rounds, heap / RSS",
            format!(
                "{:.1} / {} B/account",
                x.heap_bytes_per_account_after_rounds,
                x.rss_bytes_per_account_after_rounds.map(|v| format!("{v:.1}")).unwrap_or_else(|| "?".into())
            ),
        );
        println!(
            "  {:<5} {:>11} {:>11} {:>11} {:>11} {:>9}",
            "round", "execute ms", "apply ms", "root ms", "total ms", "accounts"
        );
        for (i, rd) in x.rounds.iter().enumerate() {
            println!(
                "  {:<5} {:>11.1} {:>11.1} {:>11.3} {:>11.1} {:>9}",
                i + 1,
                rd.execute_ms,
                rd.apply_ms,
                rd.root_ms,
                rd.total_ms,
                rd.changed_accounts
            );
        }
        row("update time, median / worst", format!("{:.1} / {:.1} ms", x.median_ms, x.max_ms));
    }
    if let Some(x) = &r.replay {
        println!();
        println!(
            "Replay: {} user txs, {} accounts, batches of {} ({} batches, {} txs with deposits), seed {}",
            thousands(x.user_txs),
            thousands(x.accounts),
            thousands(x.batch_size),
            x.batches,
            thousands(x.txs),
            a.seed
        );
        row("workload generation (not replay)", format!("{:.1} s", x.generation_s));
        row(
            "raw parallel BIP-340 verification",
            format!(
                "{} sigs/s ({} sigs in {:.2} s)",
                thousands(x.verify.sigs_per_s as u64),
                thousands(x.verify.signatures),
                x.verify.seconds
            ),
        );
        row("replay throughput (Replayer::replay)", format!("{} tx/s", thousands(x.replay_tx_per_s as u64)));
        row("replay / raw verification", format!("{:.1} %", x.ratio * 100.0));
        row(
            "end-to-end replay, replay only",
            format!(
                "{:.2} s (= {:.1} s per {} txs)",
                x.replay_s,
                x.replay_s * TARGET_E2E_TXS as f64 / x.txs as f64,
                thousands(TARGET_E2E_TXS)
            ),
        );
        row(
            "per batch, min / median / max",
            format!("{:.1} / {:.1} / {:.1} ms", x.batch_ms_min, x.batch_ms_median, x.batch_ms_max),
        );
        if let Some(b) = &x.breakdown {
            println!("  stage-by-stage re-run (same calls as Replayer::replay), seconds over all batches:");
            let stages = [
                ("producer header + data signatures (serial)", b.batch_signatures_s),
                ("tx root (leaves parallel, tree serial)", b.tx_root_s),
                ("header gas total, decodes every tx (serial)", b.gas_total_s),
                ("decode + tx id (parallel)", b.decode_s),
                ("static checks: address parsing (parallel)", b.static_check_s),
                ("pubkey cache (serial)", b.key_resolve_s),
                ("signing hash + BIP-340 verify (parallel)", b.tx_verify_s),
                ("execute through the Overlay (serial)", b.execute_s),
                ("State::apply + state_root (serial)", b.apply_root_s),
                ("freeing decoded txs + undo record (serial)", b.drop_s),
            ];
            for (name, v) in stages {
                println!("    {:<48} {:>8.3} s {:>6.1} %", name, v, 100.0 * v / b.total_s.max(f64::MIN_POSITIVE));
            }
            println!("    {:<48} {:>8.3} s", "total", b.total_s);
        }
    }
    if !r.targets.is_empty() {
        println!();
        println!("Targets");
        println!("  {:<66} {:>12}  {:<30} status", "figure", "measured", "goal");
        for t in &r.targets {
            let status = match t.status.as_str() {
                "pass" => "PASS".to_string(),
                "miss" => "MISS".to_string(),
                other => other.to_string(),
            };
            println!("  {:<66} {:>9.2} {:<2}  {:<30} {}", t.name, t.measured, t.unit, t.goal, status);
        }
    }
    if let Some(p) = m.peak_rss_bytes {
        println!();
        println!("peak RSS of this run: {}", mib(p));
    }
}

fn row(name: &str, value: String) {
    println!("  {name:<40} {value}");
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn progress(msg: String) {
    eprintln!("bench: {msg}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The page size, from the auxiliary vector (AT_PAGESZ); 4096 when unreadable.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    if let Ok(b) = std::fs::read("/proc/self/auxv") {
        for pair in b.chunks_exact(16) {
            let k = u64::from_ne_bytes(pair[..8].try_into().unwrap_or([0; 8]));
            let v = u64::from_ne_bytes(pair[8..].try_into().unwrap_or([0; 8]));
            if k == AT_PAGESZ && v > 0 {
                return v;
            }
        }
    }
    4096
}

/// Resident set size from `/proc/self/statm` (second field, in pages).
fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn status_kb(field: &str) -> Option<u64> {
    kb_field("/proc/self/status", field)
}

fn meminfo(field: &str) -> Option<u64> {
    kb_field("/proc/meminfo", field)
}

fn mem_available() -> Option<u64> {
    meminfo("MemAvailable:")
}

fn kb_field(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}
