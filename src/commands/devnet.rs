//! `kray-guardian devnet`: a local KRAY L2 on a throwaway regtest bitcoind, with the reference
//! sequencer, the publication API, a traffic generator and fault injection.

use anyhow::Context;
use kray_devnet::faults::FaultSpec;
use kray_devnet::runner::{Devnet, DevnetConfig};
use kray_devnet::traffic::{self, TrafficConfig, TrafficStats};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of `kray-guardian devnet`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevnetArgs {
    /// Data dir: profile.toml, genesis.json and batches/ are written here.
    #[arg(long, default_value = "devnet-data")]
    pub data: PathBuf,
    /// Users funded with the rune on L1, each depositing to the bridge.
    #[arg(long, default_value_t = 3)]
    pub users: usize,
    /// Seed of the producer and user keys.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Milliseconds between batches.
    #[arg(long, default_value_t = 2000)]
    pub batch_interval_ms: u64,
    /// Seal early as soon as this many user txs wait (0: only on the interval).
    #[arg(long, default_value_t = 0)]
    pub batch_max_txs: usize,
    /// Mine one block after every batch (otherwise mine with bitcoin-cli yourself).
    #[arg(long)]
    pub auto_mine: bool,
    /// Public API port (0: a free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Admin API port (0: a free port).
    #[arg(long, default_value_t = 0)]
    pub admin_port: u16,
    /// Transfers per second the users send (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub traffic_rate: f64,
    /// A fault to commit, NAME[@BATCH] (repeatable): a replayer fault class, or stop-anchoring,
    /// withhold, wrong-anchor, credit-deposit-twice, pay-early, theft, key-path-sweep.
    #[arg(long = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Bridge internal key = the first signer's key (key-path spendable, as the JavaScript).
    #[arg(long)]
    pub legacy_internal_key: bool,
    /// Stop after N seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub for_seconds: Option<u64>,
    /// Also run a guardian (`kray-guardian run`, a separate process) watching this devnet, in this
    /// mode (`watch`, `challenge` or `full`); its API listens on `--guardian-port`.
    #[arg(long)]
    pub guardian: Option<String>,
    /// Port of the guardian's HTTP API (with `--guardian`).
    #[arg(long, default_value_t = 8420)]
    pub guardian_port: u16,
}

/// How long a child (the guardian, bitcoind) has to exit after SIGTERM before it is killed.
const CHILD_STOP_GRACE: Duration = Duration::from_secs(15);

/// SIGINT (Ctrl-C) and SIGTERM (systemd, Docker, test harnesses), listened to from the start, so
/// either one stops the devnet and everything it started.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// The name of the next stop signal.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Run the devnet until Ctrl-C, SIGTERM or `--for-seconds`; its bitcoind and guardian stop with it.
pub fn run(args: &DevnetArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: &DevnetArgs) -> anyhow::Result<u8> {
    let config = DevnetConfig {
        data_dir: args.data.clone(),
        users: args.users,
        seed: args.seed,
        batch_interval: Duration::from_millis(args.batch_interval_ms.max(50)),
        batch_max_txs: args.batch_max_txs,
        auto_mine: args.auto_mine,
        port: args.port,
        admin_port: args.admin_port,
        faults: args.faults.clone(),
        legacy_internal_key: args.legacy_internal_key,
        ..DevnetConfig::default()
    };
    let mut signals = StopSignals::new()?;
    // A signal during the start drops the half-started devnet, which kills its bitcoind.
    let mut devnet = tokio::select! {
        d = Devnet::start(config) => d.context("starting the devnet")?,
        sig = signals.recv() => {
            println!("devnet: {sig} during startup; stopped");
            return Ok(0);
        }
    };
    let info = devnet.info.clone();
    println!("devnet up");
    println!("  API:      {}", info.api_url);
    println!("  admin:    {}", info.admin_url);
    println!("  bitcoind: {}", info.bitcoind_url);
    println!("  data:     {}", info.data_dir.display());
    if let Some(pid) = devnet.bitcoind_pid() {
        println!("  bitcoind pid: {pid}");
    }
    println!("  rune:     {}   bridge: {}", info.rune_id, info.bridge_address);
    for (i, a) in info.user_addresses.iter().enumerate() {
        println!("  user {i}:   {a}");
    }
    println!("  replay (while the devnet runs; its bitcoind stops with it, on Ctrl-C or SIGTERM):");
    println!("    {}", info.replay_command());
    let mut guardian = match &args.guardian {
        Some(mode) => match start_guardian(&info, mode, args.guardian_port) {
            Ok(g) => Some(g),
            Err(e) => {
                devnet.stop_bitcoind(CHILD_STOP_GRACE);
                return Err(e);
            }
        },
        None => None,
    };
    let stats = Arc::new(TrafficStats::default());
    let traffic = (args.traffic_rate > 0.0).then(|| {
        tokio::spawn(traffic::run(
            TrafficConfig {
                api_url: info.api_url.clone(),
                seed: args.seed,
                users: args.users,
                rate: args.traffic_rate,
                network: devnet.profile().network,
            },
            stats.clone(),
        ))
    });
    let secs = args.for_seconds;
    let stop = async move {
        let why = match secs {
            Some(s) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(s)) => "--for-seconds elapsed",
                sig = signals.recv() => sig,
            },
            None => signals.recv().await,
        };
        println!("devnet stopping ({why})");
    };
    let result = devnet.run(stop).await;
    if let Some(t) = traffic {
        t.abort();
    }
    // The guardian first (it talks to bitcoind), then bitcoind; each gets SIGTERM and a bounded wait.
    if let Some(g) = guardian.as_mut() {
        match kray_devnet::process::terminate(g, CHILD_STOP_GRACE) {
            Ok(status) => tracing::info!(pid = g.id(), %status, "guardian stopped"),
            Err(e) => tracing::warn!(pid = g.id(), error = %e, "stopping the guardian"),
        }
    }
    devnet.stop_bitcoind(CHILD_STOP_GRACE);
    result.context("devnet")?;
    println!(
        "devnet stopped at height {}; transfers accepted {}, refused {}",
        devnet.height(),
        stats.accepted.load(std::sync::atomic::Ordering::Relaxed),
        stats.refused.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(0)
}

/// Starts `kray-guardian run` watching the devnet, with a config written beside the devnet's data.
fn start_guardian(
    info: &kray_devnet::runner::DevnetInfo,
    mode: &str,
    port: u16,
) -> anyhow::Result<std::process::Child> {
    let dir = info.data_dir.join("guardian");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("guardian.toml");
    let text = kray_devnet::guardian::guardian_toml(info, mode, &dir.join("data"), &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    let log = dir.join("guardian.log");
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("log file")?;
    let exe = std::env::current_exe().context("locating kray-guardian")?;
    let mut cmd = std::process::Command::new(exe);
    // Even a `kill -9` of the devnet stops its guardian (Linux parent-death signal).
    kray_devnet::process::die_with_parent(&mut cmd);
    let child =
        cmd.args(["run", "--config"]).arg(&config).stdout(out).stderr(err).spawn().context("starting the guardian")?;
    println!(
        "  guardian: http://127.0.0.1:{port}/v1/status  ({mode} mode; config {}, log {})",
        config.display(),
        log.display()
    );
    println!("  guardian pid: {}", child.id());
    Ok(child)
}
