//! `kray-guardian init`: write a commented example configuration (every key, its meaning and default),
//! or with `--check FILE` load and validate a configuration and print it with secrets masked.

use crate::config::{CliOverrides, GuardianConfig};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The network an example configuration is written for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleNetwork {
    /// Bitcoin mainnet: the `mainnet` profile, bitcoind on port 8332.
    Mainnet,
    /// Local regtest (the devnet): the `regtest` profile, bitcoind on port 18443.
    Regtest,
}

/// Arguments of `init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Where to write the example.
    #[arg(long, short, default_value = "guardian.toml")]
    pub output: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// The network the example is for.
    #[arg(long, value_enum, default_value = "mainnet")]
    pub network: ExampleNetwork,
    /// Instead of writing: load FILE with the KRAY_GUARDIAN_* environment, validate it and print it
    /// with secrets masked (exit 0 valid, 1 invalid).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["force", "output", "network"])]
    pub check: Option<PathBuf>,
}

/// Runs `init`.
pub fn run(args: &InitArgs) -> anyhow::Result<u8> {
    if let Some(path) = &args.check {
        let env = crate::config::process_env()?;
        let cfg = GuardianConfig::load(Some(path), env.into_iter(), &CliOverrides::default())?;
        print!("{}", cfg.masked());
        eprintln!("{} is valid (mode {})", path.display(), cfg.mode);
        return Ok(0);
    }
    let text = example(args.network);
    // The example must always parse; a failure here is a bug in this file, caught before writing.
    GuardianConfig::from_toml_str(&text, "the built-in example")?;
    write_new(&args.output, &text, args.force)?;
    println!(
        "wrote {} ({} example, mode watch). Set genesis, [bitcoind] and [[sources]], then check it with \
         `kray-guardian init --check {}`.",
        args.output.display(),
        match args.network {
            ExampleNetwork::Mainnet => "mainnet",
            ExampleNetwork::Regtest => "regtest",
        },
        args.output.display()
    );
    Ok(0)
}

/// Write `text` to `path` (mode 0600: the file may come to hold secrets), refusing to replace an
/// existing file unless `force`.
fn write_new(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("{} already exists; pass --force to overwrite it", path.display())
        }
        other => other.with_context(|| format!("cannot create {}", path.display()))?,
    };
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The commented example configuration for `network`. It loads and validates as written once
/// `genesis.json` is next to it (mode `watch`; bitcoind through its cookie file).
pub fn example(network: ExampleNetwork) -> String {
    let (profile, port, cookie, source) = match network {
        ExampleNetwork::Mainnet => ("mainnet", 8332, "/var/lib/bitcoind/.cookie", "https://sequencer.example"),
        ExampleNetwork::Regtest => ("regtest", 18443, "/var/lib/bitcoind/regtest/.cookie", "http://127.0.0.1:18080"),
    };
    TEMPLATE
        .replace("@PROFILE@", profile)
        .replace("@PORT@", &port.to_string())
        .replace("@COOKIE@", cookie)
        .replace("@SOURCE@", source)
}

const TEMPLATE: &str = r##"# kray-guardian configuration (written by `kray-guardian init`; reference: docs/config.md).
#
# Layers, lowest first: built-in defaults < this file < environment variables < command-line flags.
# Every key below can also be set as KRAY_GUARDIAN_<SECTION>_<KEY> (e.g. KRAY_GUARDIAN_BITCOIND_URL,
# KRAY_GUARDIAN_MODE) except [[sources]] and [alerts]; an unknown KRAY_GUARDIAN_* variable is an error.
# Relative paths in this file are relative to this file's directory.
# Lines starting with "# key =" are optional keys, shown with an example value.

# What the guardian does: "watch" (replay and alert only), "challenge" (also POST fraud proofs to
# [challenge].endpoints) or "full" (also anchor batches the federation abandoned; needs
# [anchoring].key_file). Default: "watch".
mode = "watch"

# State directory (SQLite store, mirrored batches); created if missing. Default: "guardian-data".
data_dir = "guardian-data"

# PostgreSQL instead of SQLite in data_dir. Secret (masked in logs); prefer the environment variable
# KRAY_GUARDIAN_DATABASE_URL. Default: unset (SQLite).
# database_url = "postgres://guardian:PASSWORD@127.0.0.1/guardian"

# Protocol profile: a shipped name ("mainnet", "regtest") or a path to a profile TOML. Default: "mainnet".
profile = "@PROFILE@"

# The L2 genesis file (JSON) the federation publishes; checked against the profile. Required.
genesis = "genesis.json"

# Override the profile's rune id (BLOCK:TX). Default: the profile's.
# rune_id = "925516:1550"

# L1 height to start following from. Default: where the store left off, else the chain tip.
# start_height = 840000

# The rune outputs unspent just below start_height, when start_height is above the rune's etching
# (JSON: [{"outpoint": "txid:vout", "script_pubkey": "hex", "value_sats": 546, "amount": "1000"}]).
# Default: unset (index the rune from start_height, which should then be at or below its etching).
# rune_checkpoint = "rune-checkpoint.json"

# Reorgs deeper than this many blocks are alerted as beyond finality (1..=1007). Default: 6.
finality_depth = 6

# Override the profile's deposit confirmations (at least 1). Default: the profile's.
# confirmations = 6

# The bitcoind JSON-RPC backend. Authenticate with cookie_file, or with user and password (or
# password_env), or with credentials in the URL.
[bitcoind]
# JSON-RPC URL, optionally with credentials: http://USER:PASSWORD@HOST:PORT. Required.
url = "http://127.0.0.1:@PORT@"
# bitcoind's .cookie file, read again whenever bitcoind restarts (it writes a new cookie at each
# start); the guardian's user must be able to read it. Default: unset.
cookie_file = "@COOKIE@"
# RPC user. Default: unset.
# user = "guardian"
# RPC password. Secret (masked in logs). Default: unset.
# password = "CHANGE-ME"
# Name of an environment variable holding the RPC password (instead of password). Default: unset.
# password_env = "BITCOIND_RPC_PASSWORD"
# Seconds before an RPC call counts as unreachable. Default: 30.
timeout_secs = 30

# An Electrum server (not yet used by `run`, which needs bitcoind.url).
[electrum]
# tcp://HOST:PORT or ssl://HOST:PORT. Default: unset.
# url = "ssl://electrum.example:50002"
# Seconds before a call counts as unreachable. Default: 30.
timeout_secs = 30

# Publication APIs to mirror batches from (docs/publication-api.md): the sequencer and any peer
# mirrors. At least one is required; names are unique; at most one has role = "sequencer".
[[sources]]
# Name used in logs and alerts. Required.
name = "sequencer"
# Base URL of the publication API. Required. Replace with the federation's.
url = "@SOURCE@"
# "sequencer" or "mirror". Default: "mirror".
role = "sequencer"
# Milliseconds between polls. Default: 5000.
poll_interval_ms = 5000
# Milliseconds before a request fails. Default: 10000.
timeout_ms = 10000
# Largest response body accepted, in bytes. Default: 67108864 (64 MiB).
max_body_bytes = 67108864

# A peer mirror, same keys:
# [[sources]]
# name = "peer-1"
# url = "https://guardian-peer.example"

# Fraud-proof submission (modes "challenge" and "full").
[challenge]
# URLs to POST proofs to; at least one in modes "challenge" and "full". Default: [].
endpoints = []
# endpoints = ["@SOURCE@/l2/challenges"]
# Submit at least this many blocks before the challenge window closes (below the profile's
# challenge_window_blocks). Default: 6.
safety_margin_blocks = 6
# First retry delay in milliseconds, doubled per attempt. Default: 1000.
retry_initial_ms = 1000
# Longest retry delay in milliseconds (at least retry_initial_ms). Default: 60000.
retry_max_ms = 60000
# Attempts per endpoint before alerting that submission failed. Default: 20.
max_attempts = 20

# The guardian's own anchor transactions for abandoned batches (mode "full").
[anchoring]
# File holding the anchoring key; must have permissions 0600. Required in mode "full". Default: unset.
# key_file = "anchor.key"
# Lowest fee rate in sat/vB (at least 1). Default: 2.
fee_floor_sat_vb = 2
# Highest fee rate in sat/vB after bumps (at least fee_floor_sat_vb). Default: 200.
fee_cap_sat_vb = 200
# Bump the fee (RBF) when still unconfirmed after this many blocks. Default: 3.
bump_after_blocks = 3
# Anchor a batch left unanchored for this many of the profile's anchor_grace_blocks periods. Default: 2.
grace_steps = 2
# The other guardians that anchor abandoned batches (x-only public keys, hex): with this guardian's key
# they form the turn order, so one anchors and the others wait. Default: [] (no peers).
peers = []
# Blocks each later guardian in the turn order waits before anchoring. Default: 2.
turn_step_blocks = 2

# The HTTP API.
[http]
# Public, read-only API listen address. Default: "0.0.0.0:8080".
listen = "0.0.0.0:8080"
# Admin API listen address; loopback only. Default: unset (no admin API).
# admin_listen = "127.0.0.1:8081"
# Requests per minute per client IP on the public API. Default: 120.
rate_limit_per_ip_per_minute = 120

# Alerts: the alerts component's own settings (alerts/src/config.rs), checked at start. Secrets are
# given as names of environment variables (*_env keys). In logs, keys containing "password", "secret",
# "token" or "key" (except *_file and *_env) and URL paths and queries are masked.
[alerts]
# This guardian's name in notifications. Default: "kray-guardian".
source = "kray-guardian"
# Notifications that may wait for delivery before the least urgent are dropped. Default: 1024.
queue_capacity = 1024
# One table per sink (smtp, webhook, slack, discord, pagerduty, log). Default: [] (alerts are only
# kept open and counted).
sinks = []
# [[alerts.sinks]]
# type = "slack"
# url_env = "KRAY_SLACK_WEBHOOK"
# min_severity = "P1"

[log]
# A level (error, warn, info, debug, trace, off) or directives such as "info,kray_watcher=debug"
# (a bare word must be a level: a module is written NAME=LEVEL). Default: "info".
level = "info"
# "text" or "json". Default: "text".
format = "text"
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, ENV_KEYS};

    #[test]
    fn examples_load_and_validate() {
        for network in [ExampleNetwork::Mainnet, ExampleNetwork::Regtest] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("guardian.toml");
            write_new(&path, &example(network), false).unwrap();
            let env = std::iter::empty();
            let e = GuardianConfig::load(Some(&path), env, &CliOverrides::default()).unwrap_err().to_string();
            assert!(e.contains("genesis.json) is not an existing file"), "{e}");
            let profile = kray_replayer::Profile::load(match network {
                ExampleNetwork::Mainnet => "mainnet",
                ExampleNetwork::Regtest => "regtest",
            })
            .unwrap();
            let spec = kray_devnet::workload::WorkloadSpec { accounts: 2, txs: 1, batch_size: 1, seed: 1, fault: None };
            let genesis = kray_devnet::workload::generate(&profile, &spec).unwrap().genesis;
            std::fs::write(dir.path().join("genesis.json"), serde_json::to_string(&genesis).unwrap()).unwrap();
            let env = std::iter::empty();
            let cfg = GuardianConfig::load(Some(&path), env, &CliOverrides::default())
                .unwrap_or_else(|e| panic!("{network:?} example: {e}"));
            assert_eq!(cfg.mode, Mode::Watch);
            assert_eq!(cfg.data_dir, dir.path().join("guardian-data"));
            assert!(cfg.data_dir.is_dir());
            let profile = match network {
                ExampleNetwork::Mainnet => "mainnet",
                ExampleNetwork::Regtest => "regtest",
            };
            assert_eq!(cfg.profile, profile);
            // The example's explicit values are the defaults they claim to be.
            let d = GuardianConfig::default();
            assert_eq!(cfg.finality_depth, d.finality_depth);
            assert_eq!(cfg.challenge, d.challenge);
            assert_eq!(cfg.anchoring, d.anchoring);
            assert_eq!(cfg.http, d.http);
            assert_eq!(cfg.log, d.log);
            assert_eq!(cfg.electrum, d.electrum);
        }
    }

    #[test]
    fn example_names_every_key_and_commented_keys_are_real() {
        let text = example(ExampleNetwork::Regtest);
        for k in ENV_KEYS {
            let leaf = k.key.rsplit('.').next().unwrap();
            assert!(text.contains(&format!("{leaf} = ")), "the example does not show {}", k.key);
        }
        // Uncommenting every optional key still parses (no typo in a commented key).
        // Keys under a commented-out table header and the duplicate `endpoints` example stay commented.
        let mut lines = Vec::new();
        let mut in_commented_table = false;
        for l in text.lines() {
            in_commented_table = (in_commented_table && l.starts_with("# ")) || l.starts_with("# [");
            let rest = l.strip_prefix("# ").unwrap_or(l);
            let is_key = rest
                .split_once(" = ")
                .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if is_key && l.starts_with("# ") && !in_commented_table && !rest.starts_with("endpoints") {
                lines.push(rest);
            } else {
                lines.push(l);
            }
        }
        let uncommented = lines.join("\n");
        let cfg = GuardianConfig::from_toml_str(&uncommented, "uncommented").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.http.admin_listen.as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(cfg.bitcoind.password_env.as_deref(), Some("BITCOIND_RPC_PASSWORD"));
        assert!(cfg.database_url.is_some() && cfg.anchoring.key_file.is_some() && cfg.electrum.url.is_some());
    }

    #[test]
    fn write_new_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.toml");
        write_new(&path, "a", false).unwrap();
        let e = write_new(&path, "b", false).unwrap_err().to_string();
        assert!(e.contains("already exists; pass --force"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a");
        write_new(&path, "c", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c");
    }
}
