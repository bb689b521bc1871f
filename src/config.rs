//! The guardian daemon's configuration (`kray-guardian run`, issue #5).
//!
//! Layers, lowest first: built-in defaults < the TOML file (`--config`) < environment variables
//! `KRAY_GUARDIAN_<SECTION>_<KEY>` < command-line flags ([`CliOverrides`]). [`GuardianConfig::load`]
//! merges them and validates the result; every error names the key (or variable) and the bad value.
//! Secrets (passwords, URL credentials and query values, alert-sink tokens) are replaced by `***` in
//! [`GuardianConfig::masked`] and in `Debug`. Reference: `docs/config.md`.
// Used by the run daemon (issue #5), which is wired separately; `init --check` uses part of it today.
#![allow(dead_code)]

use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Prefix of every environment variable the guardian reads.
pub const ENV_PREFIX: &str = "KRAY_GUARDIAN_";

/// The environment variable naming the config file (read by [`RunArgs`] through clap).
pub const ENV_CONFIG: &str = "KRAY_GUARDIAN_CONFIG";
/// The client commands' variable (`withdrawal`: the guardian to ask); not a key, accepted by `run`.
pub const ENV_CLIENT_URL: &str = "KRAY_GUARDIAN_URL";

/// Replacement text for a secret.
pub const MASK: &str = "***";

/// What the guardian does besides watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Watch and alert only.
    #[default]
    Watch,
    /// Also submit fraud proofs to the challenge endpoints.
    Challenge,
    /// Also anchor batches the federation abandoned (needs `anchoring.key_file`).
    Full,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Watch => "watch",
            Mode::Challenge => "challenge",
            Mode::Full => "full",
        })
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Role of a publication source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceRole {
    /// The sequencer's own publication API (at most one).
    Sequencer,
    /// A peer guardian or mirror serving the same API.
    #[default]
    Mirror,
}

/// A secret string: serialized as is (so the layers can be merged), but `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// The whole configuration. See `docs/config.md` for every key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardianConfig {
    /// `watch`, `challenge` or `full`.
    pub mode: Mode,
    /// Directory for the SQLite store and other state.
    pub data_dir: PathBuf,
    /// PostgreSQL URL; unset means SQLite in `data_dir`. Secret (its password is masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<Secret>,
    /// A shipped profile name (`mainnet`, `regtest`) or a path to a profile TOML.
    pub profile: String,
    /// Path to the L2 genesis file; unset means the daemon obtains it elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis: Option<PathBuf>,
    /// Overrides the profile's rune id (`BLOCK:TX`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rune_id: Option<String>,
    /// The L1 height to follow from; unset means where the store left off (or the tip).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_height: Option<u32>,
    /// A JSON file of the rune outputs (any owner) unspent just below `start_height`, to start the
    /// rune index above the etching height: `[{"outpoint": "txid:vout", "script_pubkey": "hex",
    /// "value_sats": N, "amount": "units"}]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rune_checkpoint: Option<PathBuf>,
    /// Reorgs deeper than this many blocks are alerted as beyond finality.
    pub finality_depth: u32,
    /// Overrides the profile's deposit confirmations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u32>,
    /// The bitcoind JSON-RPC backend.
    pub bitcoind: BitcoindConfig,
    /// The Electrum backend (alternative to bitcoind).
    pub electrum: ElectrumConfig,
    /// Publication APIs to mirror batches from (the sequencer and peers).
    pub sources: Vec<SourceConfig>,
    /// Fraud-proof submission.
    pub challenge: ChallengeConfig,
    /// Anchoring abandoned batches (mode `full`).
    pub anchoring: AnchoringConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// `[alerts]`, carried through as a table: its schema is `kray_alerts::AlertsConfig` (checked by
    /// [`validate`](Self::validate); the daemon deserializes it with [`alerts_config`](Self::alerts_config)).
    pub alerts: toml::Table,
    /// Logging.
    pub log: LogConfig,
}

impl Default for GuardianConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Watch,
            data_dir: PathBuf::from("guardian-data"),
            database_url: None,
            profile: "mainnet".into(),
            genesis: None,
            rune_id: None,
            start_height: None,
            rune_checkpoint: None,
            finality_depth: 6,
            confirmations: None,
            bitcoind: BitcoindConfig::default(),
            electrum: ElectrumConfig::default(),
            sources: Vec::new(),
            challenge: ChallengeConfig::default(),
            anchoring: AnchoringConfig::default(),
            http: HttpConfig::default(),
            alerts: toml::Table::new(),
            log: LogConfig::default(),
        }
    }
}

/// `[bitcoind]`: the node's JSON-RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BitcoindConfig {
    /// JSON-RPC URL, e.g. `http://127.0.0.1:8332`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// RPC user (with `password` or `password_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// RPC password. Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Name of an environment variable holding the RPC password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// bitcoind's `.cookie` file (instead of user and password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_file: Option<PathBuf>,
    /// Seconds before a call fails as unreachable.
    pub timeout_secs: u64,
    /// The password read from `password_env` at load time.
    #[serde(skip)]
    resolved_password: Option<Secret>,
}

impl Default for BitcoindConfig {
    fn default() -> Self {
        Self {
            url: None,
            user: None,
            password: None,
            password_env: None,
            cookie_file: None,
            timeout_secs: 30,
            resolved_password: None,
        }
    }
}

impl BitcoindConfig {
    /// The RPC password: `password`, or the value of the variable `password_env` names (read at load).
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref().or(self.resolved_password.as_ref())
    }

    /// The login configured apart from the URL: `cookie_file`, else `user` with the password; `None`
    /// when the credentials are in `url` (or missing, which validation refuses).
    pub fn auth(&self) -> Option<kray_watcher::chain::BitcoindAuth> {
        use kray_watcher::chain::BitcoindAuth;
        match (&self.cookie_file, &self.user) {
            (Some(path), _) => Some(BitcoindAuth::Cookie(path.clone())),
            (None, Some(user)) => Some(BitcoindAuth::UserPass {
                user: user.clone(),
                password: self.password().map(|p| p.expose().to_string()).unwrap_or_default(),
            }),
            (None, None) => None,
        }
    }

    /// The guardian's bitcoind client for this section (the chain source and the sender both use it).
    pub fn rpc(&self) -> anyhow::Result<kray_watcher::chain::BitcoindRpc> {
        use anyhow::Context;
        let url = self.url.as_deref().context("bitcoind.url is required")?;
        kray_watcher::chain::BitcoindRpc::new(url, self.auth(), std::time::Duration::from_secs(self.timeout_secs))
            .context("[bitcoind]")
    }
}

/// `[electrum]`: an Electrum server (alternative L1 backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElectrumConfig {
    /// `tcp://host:port` or `ssl://host:port`; unset means no Electrum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seconds before a call fails as unreachable.
    pub timeout_secs: u64,
}

impl Default for ElectrumConfig {
    fn default() -> Self {
        Self { url: None, timeout_secs: 30 }
    }
}

/// One `[[sources]]` entry: a publication API (`docs/publication-api.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name used in logs and alerts.
    pub name: String,
    /// Base URL, e.g. `https://sequencer.example`.
    pub url: String,
    /// `sequencer` or `mirror` (default).
    #[serde(default)]
    pub role: SourceRole,
    /// Milliseconds between polls.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Milliseconds before a request fails.
    #[serde(default = "default_source_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest response body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

fn default_poll_interval_ms() -> u64 {
    5_000
}
fn default_source_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> u64 {
    64 * 1024 * 1024
}

/// `[challenge]`: where and how fraud proofs are submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeConfig {
    /// URLs to POST proofs to (e.g. `https://sequencer.example/l2/challenges`).
    pub endpoints: Vec<String>,
    /// Submit at least this many blocks before the challenge window closes.
    pub safety_margin_blocks: u32,
    /// First retry delay in milliseconds (doubles per attempt).
    pub retry_initial_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_max_ms: u64,
    /// Attempts per endpoint before alerting that submission failed.
    pub max_attempts: u32,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            safety_margin_blocks: 6,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            max_attempts: 20,
        }
    }
}

/// `[anchoring]`: the guardian's own anchor transactions (mode `full`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchoringConfig {
    /// File holding the anchoring key; must be mode 0600. Required for mode `full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Lowest fee rate, sat/vB.
    pub fee_floor_sat_vb: u64,
    /// Highest fee rate after bumps, sat/vB.
    pub fee_cap_sat_vb: u64,
    /// Bump the fee (RBF) when unconfirmed after this many blocks.
    pub bump_after_blocks: u32,
    /// Anchor a batch left unanchored for this many of the profile's `anchor_grace_blocks` periods.
    pub grace_steps: u32,
    /// The other guardians that anchor abandoned batches (x-only public keys, hex): with our key they
    /// form the turn order, so one guardian anchors and the others wait.
    pub peers: Vec<String>,
    /// Blocks each later guardian in the turn order waits before anchoring.
    pub turn_step_blocks: u32,
}

impl Default for AnchoringConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            fee_floor_sat_vb: 2,
            fee_cap_sat_vb: 200,
            bump_after_blocks: 3,
            grace_steps: 2,
            peers: Vec::new(),
            turn_step_blocks: 2,
        }
    }
}

/// `[http]`: the read-only public API and the optional local admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Public (read-only) listen address.
    pub listen: String,
    /// Admin listen address; loopback only; unset means no admin API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Requests per minute per client IP on the public API.
    pub rate_limit_per_ip_per_minute: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "0.0.0.0:8080".into(), admin_listen: None, rate_limit_per_ip_per_minute: 120 }
    }
}

impl HttpConfig {
    /// The public listen address (valid after [`GuardianConfig::validate`]).
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().map_err(|e| anyhow::anyhow!("http.listen ({}): {e}", self.listen))
    }

    /// The admin listen address, when set (valid after [`GuardianConfig::validate`]).
    pub fn admin_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.admin_listen
            .as_deref()
            .map(|a| a.parse().map_err(|e| anyhow::anyhow!("http.admin_listen ({a}): {e}")))
            .transpose()
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`…`trace`) or a `tracing` filter such as `info,kray_watcher=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// Flags that override every other layer (part of [`RunArgs`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CliOverrides {
    /// Mode: watch (alerts only), challenge (also submits proofs), full (also anchors abandoned batches).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Directory for the SQLite store and other state.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// bitcoind JSON-RPC URL.
    #[arg(long)]
    pub bitcoind_url: Option<String>,
    /// PostgreSQL URL (visible in `ps`: prefer KRAY_GUARDIAN_DATABASE_URL for one with a password).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Public HTTP API listen address.
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Log level or filter.
    #[arg(long)]
    pub log_level: Option<String>,
}

/// The arguments of `kray-guardian run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// The TOML config file (see `kray-guardian init`).
    #[arg(long, env = ENV_CONFIG)]
    pub config: Option<PathBuf>,
    /// Overrides of single keys.
    #[command(flatten)]
    pub overrides: CliOverrides,
}

impl RunArgs {
    /// The validated configuration from `--config`, the process environment and the flags.
    pub fn load_config(&self) -> anyhow::Result<GuardianConfig> {
        let env = process_env()?;
        Ok(GuardianConfig::load(self.config.as_deref(), env.into_iter(), &self.overrides)?)
    }

    /// The configuration for a tool that only opens the store ([`GuardianConfig::load_for_tools`]).
    pub fn load_config_for_tools(&self) -> anyhow::Result<GuardianConfig> {
        let env = process_env()?;
        Ok(GuardianConfig::load_for_tools(self.config.as_deref(), env.into_iter(), &self.overrides)?)
    }
}

/// The process environment as UTF-8 pairs; a non-UTF-8 `KRAY_GUARDIAN_*` variable is an error,
/// other non-UTF-8 variables are skipped.
pub fn process_env() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with(ENV_PREFIX) => anyhow::bail!("{k} is not valid UTF-8"),
            _ => {}
        }
    }
    Ok(out)
}

/// Why a configuration was rejected: one line per problem, each naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems found.
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(p: impl Into<String>) -> Self {
        ConfigError { problems: vec![p.into()] }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// How an environment variable's value is parsed (by the type of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// Any text.
    Text,
    /// A path (relative to the working directory).
    Path,
    /// A whole number 0..=2^32-1.
    U32,
    /// A whole number 0..=2^63-1.
    U64,
    /// A comma-separated list of texts.
    List,
    /// One of the given words.
    OneOf(&'static [&'static str]),
}

/// A key that can be set from the environment.
#[derive(Debug, Clone, Copy)]
pub struct EnvKey {
    /// Dotted key, e.g. `bitcoind.url`.
    pub key: &'static str,
    /// How its value is parsed.
    pub kind: EnvKind,
}

impl EnvKey {
    /// The variable name: `KRAY_GUARDIAN_` + the key with `.` as `_`, upper case.
    pub fn env_name(&self) -> String {
        format!("{ENV_PREFIX}{}", self.key.replace('.', "_").to_uppercase())
    }
}

const MODES: &[&str] = &["watch", "challenge", "full"];
const FORMATS: &[&str] = &["text", "json"];

/// Every key settable from the environment. `[[sources]]` and `[alerts]` are file-only.
pub const ENV_KEYS: &[EnvKey] = &[
    EnvKey { key: "mode", kind: EnvKind::OneOf(MODES) },
    EnvKey { key: "data_dir", kind: EnvKind::Path },
    EnvKey { key: "database_url", kind: EnvKind::Text },
    EnvKey { key: "profile", kind: EnvKind::Text },
    EnvKey { key: "genesis", kind: EnvKind::Path },
    EnvKey { key: "rune_id", kind: EnvKind::Text },
    EnvKey { key: "start_height", kind: EnvKind::U32 },
    EnvKey { key: "rune_checkpoint", kind: EnvKind::Path },
    EnvKey { key: "finality_depth", kind: EnvKind::U32 },
    EnvKey { key: "confirmations", kind: EnvKind::U32 },
    EnvKey { key: "bitcoind.url", kind: EnvKind::Text },
    EnvKey { key: "bitcoind.user", kind: EnvKind::Text },
    EnvKey { key: "bitcoind.password", kind: EnvKind::Text },
    EnvKey { key: "bitcoind.password_env", kind: EnvKind::Text },
    EnvKey { key: "bitcoind.cookie_file", kind: EnvKind::Path },
    EnvKey { key: "bitcoind.timeout_secs", kind: EnvKind::U64 },
    EnvKey { key: "electrum.url", kind: EnvKind::Text },
    EnvKey { key: "electrum.timeout_secs", kind: EnvKind::U64 },
    EnvKey { key: "challenge.endpoints", kind: EnvKind::List },
    EnvKey { key: "challenge.safety_margin_blocks", kind: EnvKind::U32 },
    EnvKey { key: "challenge.retry_initial_ms", kind: EnvKind::U64 },
    EnvKey { key: "challenge.retry_max_ms", kind: EnvKind::U64 },
    EnvKey { key: "challenge.max_attempts", kind: EnvKind::U32 },
    EnvKey { key: "anchoring.key_file", kind: EnvKind::Path },
    EnvKey { key: "anchoring.fee_floor_sat_vb", kind: EnvKind::U64 },
    EnvKey { key: "anchoring.fee_cap_sat_vb", kind: EnvKind::U64 },
    EnvKey { key: "anchoring.bump_after_blocks", kind: EnvKind::U32 },
    EnvKey { key: "anchoring.grace_steps", kind: EnvKind::U32 },
    EnvKey { key: "anchoring.peers", kind: EnvKind::List },
    EnvKey { key: "anchoring.turn_step_blocks", kind: EnvKind::U32 },
    EnvKey { key: "http.listen", kind: EnvKind::Text },
    EnvKey { key: "http.admin_listen", kind: EnvKind::Text },
    EnvKey { key: "http.rate_limit_per_ip_per_minute", kind: EnvKind::U32 },
    EnvKey { key: "log.level", kind: EnvKind::Text },
    EnvKey { key: "log.format", kind: EnvKind::OneOf(FORMATS) },
];

/// Parse one environment value into a TOML value; `None` for an empty value (meaning: the default).
fn parse_env_value(name: &str, kind: EnvKind, raw: &str) -> Result<Option<toml::Value>, String> {
    let v = raw.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let shown = shown_value(name, v);
    let value = match kind {
        EnvKind::Text | EnvKind::Path => toml::Value::String(v.to_string()),
        EnvKind::U32 => {
            let n: u32 =
                v.parse().map_err(|_| format!("{name} ({shown}) is not a whole number from 0 to {}", u32::MAX))?;
            toml::Value::Integer(i64::from(n))
        }
        EnvKind::U64 => {
            let n: i64 = v
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{name} ({shown}) is not a whole number from 0 to {}", i64::MAX))?;
            toml::Value::Integer(n)
        }
        EnvKind::List => toml::Value::Array(
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.into())).collect(),
        ),
        EnvKind::OneOf(words) => {
            if !words.contains(&v) {
                return Err(format!("{name} ({shown}) must be one of: {}", words.join(", ")));
            }
            toml::Value::String(v.to_string())
        }
    };
    Ok(Some(value))
}

/// A value fit for an error message: secrets (by name) are masked, URLs lose their credentials.
fn shown_value(name: &str, v: &str) -> String {
    if is_secret_key(&name.to_lowercase()) {
        return MASK.into();
    }
    show_url(v)
}

/// A URL-ish string for messages: credentials and query values masked; unparsable text with `@` hidden.
fn show_url(v: &str) -> String {
    match Url::parse(v) {
        Ok(u) => mask_url(v, u, false),
        Err(_) if v.contains('@') => "<hidden: contains credentials>".into(),
        Err(_) => v.to_string(),
    }
}

/// Set `path` (dotted) in `table` to `value`, or remove it for `None`.
fn set_path(table: &mut toml::Table, key: &str, value: Option<toml::Value>) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut t = table;
    for p in parts {
        let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("a table");
    }
    match value {
        Some(v) => {
            t.insert(last.to_string(), v);
        }
        None => {
            t.remove(last);
        }
    }
}

/// True for a key whose value is a secret: it contains `password`, `secret`, `token` or `key`, and is
/// not a path or variable name (`*_file`, `*_env`).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_file") || k.ends_with("_env") {
        return false;
    }
    ["password", "secret", "token", "key"].iter().any(|w| k.contains(w))
}

/// A URL with its password and query values replaced by `***`; with `hide_path` its path too
/// (webhook URLs carry their secret in the path).
fn mask_url(original: &str, mut u: Url, hide_path: bool) -> String {
    let mut changed = false;
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
        changed = true;
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u.query_pairs().map(|(k, _)| (k.into_owned(), MASK.to_string())).collect();
        if pairs.is_empty() {
            u.set_query(Some(MASK));
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        changed = true;
    }
    if hide_path && !matches!(u.path(), "" | "/") && !u.cannot_be_a_base() {
        u.set_path(MASK);
        changed = true;
    }
    if u.fragment().is_some() {
        u.set_fragment(Some(MASK));
        changed = true;
    }
    // Unchanged URLs keep their spelling (no added trailing slash).
    if changed {
        u.to_string()
    } else {
        original.to_string()
    }
}

/// Mask secrets in a TOML tree in place. `in_alerts` hides URL paths too.
fn mask_value(v: &mut toml::Value, in_alerts: bool) {
    match v {
        toml::Value::String(s) if s.contains("://") => {
            if let Ok(u) = Url::parse(s) {
                *s = mask_url(s, u, in_alerts);
            }
        }
        toml::Value::Table(t) => mask_table(t, in_alerts),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| mask_value(x, in_alerts)),
        _ => {}
    }
}

fn mask_table(t: &mut toml::Table, in_alerts: bool) {
    for (k, v) in t.iter_mut() {
        if is_secret_key(k) {
            *v = toml::Value::String(MASK.into());
        } else {
            mask_value(v, in_alerts || k == "alerts");
        }
    }
}

/// Paths in the file layer are relative to the file's directory.
fn resolve_relative(cfg: &mut GuardianConfig, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    fix(&mut cfg.data_dir);
    if let Some(p) = cfg.genesis.as_mut() {
        fix(p);
    }
    if let Some(p) = cfg.bitcoind.cookie_file.as_mut() {
        fix(p);
    }
    if let Some(p) = cfg.rune_checkpoint.as_mut() {
        fix(p);
    }
    if let Some(p) = cfg.anchoring.key_file.as_mut() {
        fix(p);
    }
    if !matches!(cfg.profile.as_str(), "mainnet" | "regtest") && Path::new(&cfg.profile).is_relative() {
        cfg.profile = base.join(&cfg.profile).to_string_lossy().into_owned();
    }
}

impl GuardianConfig {
    /// Parse TOML text (no validation, paths left as written). Errors name the key and line.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::one(format!("{origin}: {}", e.to_string().trim_end())))
    }

    /// Merge defaults < `file` < `env` (`KRAY_GUARDIAN_*`; other variables are ignored) < `overrides`,
    /// resolve `bitcoind.password_env` from `env`, [`validate`](Self::validate), and check the alert
    /// sinks' secrets and URLs ([`alert_sink_problems`](Self::alert_sink_problems)): what `run` needs.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &CliOverrides,
    ) -> Result<Self, ConfigError> {
        Self::load_checked(file, env, overrides, true)
    }

    /// [`load`](Self::load) for the operator's tools that only open the store (`findings`): the alert
    /// sinks' secret variables need not be set where those run.
    pub fn load_for_tools(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &CliOverrides,
    ) -> Result<Self, ConfigError> {
        Self::load_checked(file, env, overrides, false)
    }

    fn load_checked(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &CliOverrides,
        check_sinks: bool,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = env.collect();
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::one(format!("cannot read config file {}: {e}", path.display())))?;
                let mut cfg = Self::from_toml_str(&text, &path.display().to_string())?;
                let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                resolve_relative(&mut cfg, base);
                cfg
            }
            None => GuardianConfig::default(),
        };
        let mut problems = Vec::new();
        cfg = cfg.apply_env(&env, &mut problems)?;
        cfg.apply_overrides(overrides);
        // Variables that are neither keys nor the config path nor named by a `*_env` key are typos.
        let mut known: BTreeSet<String> = ENV_KEYS.iter().map(EnvKey::env_name).collect();
        known.insert(ENV_CONFIG.to_string());
        known.insert(ENV_CLIENT_URL.to_string());
        known.extend(cfg.referenced_env_vars());
        for name in env.keys().filter(|k| k.starts_with(ENV_PREFIX)) {
            if !known.contains(name) {
                problems.push(format!(
                    "unknown environment variable {name} (known: {ENV_CONFIG} and the KRAY_GUARDIAN_* names in \
                     docs/config.md)"
                ));
            }
        }
        if let (Some(var), None) = (&cfg.bitcoind.password_env, &cfg.bitcoind.password) {
            match env.get(var) {
                Some(v) if !v.is_empty() => cfg.bitcoind.resolved_password = Some(Secret::new(v.clone())),
                _ => problems.push(format!("bitcoind.password_env names {var}, which is not set or empty")),
            }
        }
        if let Err(e) = cfg.validate() {
            problems.extend(e.problems);
        }
        if check_sinks {
            problems.extend(cfg.alert_sink_problems(&env));
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn apply_env(self, env: &BTreeMap<String, String>, problems: &mut Vec<String>) -> Result<Self, ConfigError> {
        let mut set = Vec::new();
        for k in ENV_KEYS {
            let name = k.env_name();
            if let Some(raw) = env.get(&name) {
                match parse_env_value(&name, k.kind, raw) {
                    Ok(v) => set.push((k.key, v)),
                    Err(e) => problems.push(e),
                }
            }
        }
        if set.is_empty() {
            return Ok(self);
        }
        let resolved = self.bitcoind.resolved_password.clone();
        let mut table = toml::Table::try_from(&self)
            .map_err(|e| ConfigError::one(format!("internal: cannot re-serialize the configuration: {e}")))?;
        for (key, value) in set {
            set_path(&mut table, key, value);
        }
        let mut cfg: GuardianConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ConfigError::one(format!("after applying KRAY_GUARDIAN_* variables: {e}")))?;
        cfg.bitcoind.resolved_password = resolved;
        Ok(cfg)
    }

    fn apply_overrides(&mut self, o: &CliOverrides) {
        if let Some(m) = o.mode {
            self.mode = m;
        }
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(u) = &o.bitcoind_url {
            self.bitcoind.url = Some(u.clone());
        }
        if let Some(u) = &o.database_url {
            self.database_url = Some(Secret::new(u.clone()));
        }
        if let Some(l) = &o.http_listen {
            self.http.listen = l.clone();
        }
        if let Some(l) = &o.log_level {
            self.log.level = l.clone();
        }
    }

    /// Check every value; create `data_dir` if missing. Returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p: Vec<String> = Vec::new();
        self.validate_core(&mut p);
        self.validate_l1(&mut p);
        self.validate_sources(&mut p);
        self.validate_challenge(&mut p);
        self.validate_anchoring(&mut p);
        self.validate_http(&mut p);
        if let Err(e) = self.alerts_config() {
            p.push(e);
        }
        if let Err(e) = check_log_level(&self.log.level) {
            p.push(e);
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }

    fn validate_core(&self, p: &mut Vec<String>) {
        if let Err(e) = std::fs::create_dir_all(&self.data_dir) {
            p.push(format!("data_dir ({}) cannot be created: {e}", self.data_dir.display()));
        }
        if let Some(db) = &self.database_url {
            let ok = Url::parse(db.expose())
                .ok()
                .filter(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some());
            if ok.is_none() {
                p.push(format!(
                    "database_url ({}) must be a postgres://USER:PASSWORD@HOST/DB URL (leave it unset for SQLite in \
                     data_dir)",
                    show_url(db.expose())
                ));
            }
        }
        match kray_replayer::Profile::load(&self.profile) {
            Ok(profile) => {
                if self.challenge.safety_margin_blocks >= profile.challenge_window_blocks {
                    p.push(format!(
                        "challenge.safety_margin_blocks ({}) must be below the profile's challenge_window_blocks ({})",
                        self.challenge.safety_margin_blocks, profile.challenge_window_blocks
                    ));
                }
            }
            Err(e) => p.push(format!("profile ({}): {e}", self.profile)),
        }
        if let Some(c) = &self.rune_checkpoint {
            if !c.is_file() {
                p.push(format!("rune_checkpoint ({}) is not an existing file", c.display()));
            } else if let Err(e) = crate::daemon::rune_checkpoint::load(c) {
                p.push(format!("{e:#}"));
            }
            if self.start_height.is_none() {
                p.push("rune_checkpoint needs start_height (the height the checkpoint is taken just below)".into());
            }
        }
        match &self.genesis {
            None => p.push("genesis: the L2 genesis file (JSON, published by the federation) is required".into()),
            Some(g) if !g.is_file() => p.push(format!("genesis ({}) is not an existing file", g.display())),
            Some(g) => {
                if let Err(e) = self.check_genesis(g) {
                    p.push(format!("genesis ({}): {e}", g.display()));
                }
            }
        }
        if let Some(r) = &self.rune_id {
            let ok = r.split_once(':').is_some_and(|(b, t)| b.parse::<u64>().is_ok() && t.parse::<u32>().is_ok());
            if !ok {
                p.push(format!("rune_id ({r:?}) must be BLOCK:TX, e.g. 925516:1550"));
            }
        }
        if self.confirmations == Some(0) {
            p.push("confirmations (0) must be at least 1".into());
        }
        let max_depth = kray_watcher::chain::MIN_HEADER_CAPACITY as u32 - 1;
        if self.finality_depth == 0 || self.finality_depth > max_depth {
            p.push(format!("finality_depth ({}) must be from 1 to {max_depth}", self.finality_depth));
        }
    }

    fn validate_l1(&self, p: &mut Vec<String>) {
        let b = &self.bitcoind;
        if b.url.is_none() && self.electrum.url.is_none() {
            p.push("no L1 backend: set bitcoind.url".into());
        } else if b.url.is_none() {
            p.push(
                "electrum.url alone is not enough: `run` follows L1 through bitcoind (anchors, deposits, its own \
                 transactions), so set bitcoind.url; an Electrum-only guardian is not supported yet"
                    .into(),
            );
        }
        if let Some(u) = &b.url {
            match Url::parse(u) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => {
                    let in_url = !parsed.username().is_empty() || parsed.password().is_some();
                    let user_pass = b.user.is_some() || b.password.is_some() || b.password_env.is_some();
                    if b.password.is_some() && b.password_env.is_some() {
                        p.push("bitcoind.password and bitcoind.password_env are both set; keep one".into());
                    }
                    if in_url && (user_pass || b.cookie_file.is_some()) {
                        p.push(
                            "bitcoind.url carries a user and password and bitcoind.cookie_file or bitcoind.user/password \
                             is set too; keep one"
                                .into(),
                        );
                    }
                    if b.cookie_file.is_some() && user_pass {
                        p.push("bitcoind.cookie_file and bitcoind.user/password are both set; keep one".into());
                    }
                    if b.user.is_some() && b.password.is_none() && b.password_env.is_none() {
                        p.push("bitcoind.user is set without bitcoind.password or bitcoind.password_env".into());
                    }
                    if b.user.is_none() && (b.password.is_some() || b.password_env.is_some()) {
                        p.push("bitcoind.password (or password_env) is set without bitcoind.user".into());
                    }
                    if !in_url && !user_pass && b.cookie_file.is_none() {
                        p.push(
                            "bitcoind.url has no credentials: set bitcoind.cookie_file, or bitcoind.user with \
                             bitcoind.password or bitcoind.password_env"
                                .into(),
                        );
                    }
                }
                _ => p.push(format!("bitcoind.url ({}) must be an http:// or https:// URL", show_url(u))),
            }
        }
        if b.timeout_secs == 0 {
            p.push("bitcoind.timeout_secs (0) must be at least 1".into());
        }
        if let Some(u) = &self.electrum.url {
            let ok = Url::parse(u)
                .ok()
                .filter(|x| matches!(x.scheme(), "tcp" | "ssl") && x.host_str().is_some() && x.port().is_some());
            if ok.is_none() {
                p.push(format!("electrum.url ({}) must be tcp://HOST:PORT or ssl://HOST:PORT", show_url(u)));
            }
        }
        if self.electrum.timeout_secs == 0 {
            p.push("electrum.timeout_secs (0) must be at least 1".into());
        }
    }

    fn validate_sources(&self, p: &mut Vec<String>) {
        if self.sources.is_empty() {
            p.push(
                "sources: at least one [[sources]] entry (a publication API to mirror batches from) is needed".into(),
            );
        }
        let mut names = BTreeSet::new();
        let mut sequencers = 0;
        for (i, s) in self.sources.iter().enumerate() {
            if s.name.trim().is_empty() {
                p.push(format!("sources[{i}].name is empty"));
            } else if !names.insert(s.name.as_str()) {
                p.push(format!("sources[{i}].name ({:?}) is used by an earlier source", s.name));
            }
            if !is_http_url(&s.url) {
                p.push(format!("sources[{i}].url ({}) must be an http:// or https:// URL", show_url(&s.url)));
            }
            for (field, v) in [
                ("poll_interval_ms", s.poll_interval_ms),
                ("timeout_ms", s.timeout_ms),
                ("max_body_bytes", s.max_body_bytes),
            ] {
                if v == 0 {
                    p.push(format!("sources[{i}].{field} (0) must be at least 1"));
                }
            }
            if s.role == SourceRole::Sequencer {
                sequencers += 1;
            }
        }
        if sequencers > 1 {
            p.push(format!("sources: {sequencers} entries have role = \"sequencer\"; at most one may"));
        }
    }

    fn validate_challenge(&self, p: &mut Vec<String>) {
        let c = &self.challenge;
        if self.mode >= Mode::Challenge && c.endpoints.is_empty() {
            p.push(format!(
                "mode = {} submits proofs, so challenge.endpoints needs at least one URL (or use mode = watch)",
                self.mode
            ));
        }
        for (i, e) in c.endpoints.iter().enumerate() {
            if !is_http_url(e) {
                p.push(format!("challenge.endpoints[{i}] ({}) must be an http:// or https:// URL", show_url(e)));
            }
        }
        if c.retry_initial_ms == 0 {
            p.push("challenge.retry_initial_ms (0) must be at least 1".into());
        }
        if c.retry_max_ms < c.retry_initial_ms {
            p.push(format!(
                "challenge.retry_max_ms ({}) is below challenge.retry_initial_ms ({})",
                c.retry_max_ms, c.retry_initial_ms
            ));
        }
        if c.max_attempts == 0 {
            p.push("challenge.max_attempts (0) must be at least 1".into());
        }
    }

    fn validate_anchoring(&self, p: &mut Vec<String>) {
        let a = &self.anchoring;
        if a.fee_floor_sat_vb == 0 {
            p.push("anchoring.fee_floor_sat_vb (0) must be at least 1".into());
        }
        if a.fee_cap_sat_vb < a.fee_floor_sat_vb {
            p.push(format!(
                "anchoring.fee_cap_sat_vb ({}) is below anchoring.fee_floor_sat_vb ({})",
                a.fee_cap_sat_vb, a.fee_floor_sat_vb
            ));
        }
        if a.bump_after_blocks == 0 {
            p.push("anchoring.bump_after_blocks (0) must be at least 1".into());
        }
        for (i, peer) in a.peers.iter().enumerate() {
            if peer.len() != 64 || !peer.bytes().all(|b| b.is_ascii_hexdigit()) {
                p.push(format!("anchoring.peers[{i}] ({peer:?}) is not a 32-byte x-only public key in hex"));
            }
        }
        if a.grace_steps == 0 {
            p.push("anchoring.grace_steps (0) must be at least 1".into());
        }
        if self.mode == Mode::Full {
            match &a.key_file {
                None => p.push("mode = full anchors batches itself, so anchoring.key_file is required".into()),
                Some(k) => {
                    if let Err(e) = check_key_file(k) {
                        p.push(e);
                    }
                }
            }
        }
    }

    fn validate_http(&self, p: &mut Vec<String>) {
        if self.http.listen.parse::<SocketAddr>().is_err() {
            p.push(format!("http.listen ({:?}) is not an address like 0.0.0.0:8080", self.http.listen));
        }
        if let Some(a) = &self.http.admin_listen {
            match a.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_loopback() => {}
                Ok(_) => p.push(format!(
                    "http.admin_listen ({a}) must be a loopback address (127.0.0.1 or [::1]): the admin API is \
                     local only"
                )),
                Err(_) => p.push(format!("http.admin_listen ({a:?}) is not an address like 127.0.0.1:8081")),
            }
        }
        if self.http.rate_limit_per_ip_per_minute == 0 {
            p.push("http.rate_limit_per_ip_per_minute (0) must be at least 1".into());
        }
    }

    /// The `[alerts]` table as the alerts crate's configuration; the error names the section.
    pub fn alerts_config(&self) -> Result<kray_alerts::AlertsConfig, String> {
        let config: kray_alerts::AlertsConfig = toml::Value::Table(self.alerts.clone())
            .try_into()
            .map_err(|e: toml::de::Error| format!("alerts: {}", e.message().trim_end()))?;
        // A sink's own keys are flattened into it, where serde cannot refuse unknown ones: a key that
        // does not survive a parse and re-serialization is not a key of that sink.
        let raw = self.alerts.get("sinks").and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut unknown = Vec::new();
        for (i, (raw, parsed)) in raw.iter().zip(&config.sinks).enumerate() {
            let (Some(raw), Ok(toml::Value::Table(known))) = (raw.as_table(), toml::Value::try_from(parsed)) else {
                continue;
            };
            for k in raw.keys().filter(|k| !known.contains_key(*k)) {
                unknown.push(format!(
                    "alerts.sinks[{i}] (type {}): unknown key {k:?} (see alerts/src/config.rs for the keys)",
                    parsed.kind.type_name()
                ));
            }
        }
        if unknown.is_empty() {
            Ok(config)
        } else {
            Err(unknown.join("\n"))
        }
    }

    /// What `run` would refuse in the alert sinks, with `env` as the process environment: a variable a
    /// `*_env` key names that is unset or empty, a URL that is not http(s), a sink the alerts crate
    /// cannot build.
    pub fn alert_sink_problems(&self, env: &BTreeMap<String, String>) -> Vec<String> {
        let mut p = Vec::new();
        let Ok(config) = self.alerts_config() else { return p };
        let raw = self.alerts.get("sinks").and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, sink) in raw.iter().enumerate() {
            let Some(t) = sink.as_table() else { continue };
            let kind = t.get("type").and_then(toml::Value::as_str).unwrap_or("?");
            for (k, v) in t.iter().filter(|(k, _)| k.ends_with("_env")) {
                let Some(var) = v.as_str() else { continue };
                if env.get(var).is_none_or(String::is_empty) {
                    p.push(format!("alerts.sinks[{i}] (type {kind}): {k} names {var}, which is not set or empty"));
                }
            }
            let url = match (t.get("url").and_then(toml::Value::as_str), t.get("url_env").and_then(toml::Value::as_str))
            {
                (Some(u), _) => Some(u.to_string()),
                (None, Some(var)) => env.get(var).filter(|v| !v.is_empty()).cloned(),
                (None, None) => None,
            };
            if let Some(u) = url {
                if !is_http_url(&u) {
                    p.push(format!(
                        "alerts.sinks[{i}] (type {kind}): url ({}) must be an http:// or https:// URL",
                        show_url(&u)
                    ));
                }
            }
        }
        // The alerts crate's own checks (names, SMTP addresses, retry, rate); its reads of the process
        // environment are checked above against `env` instead.
        p.extend(build_alert_sinks(&config).into_iter().map(|e| format!("alerts: {e}")));
        p
    }

    /// Parses the genesis and builds its state with the profile, as `run` does.
    fn check_genesis(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).context("cannot read it")?;
        let genesis = kray_replayer::genesis::Genesis::from_json(&text)?;
        if let Ok(profile) = kray_replayer::Profile::load(&self.profile) {
            genesis.build(&profile)?;
        }
        Ok(())
    }

    /// Names of the environment variables the configuration points at (values of `*_env` keys, e.g.
    /// `bitcoind.password_env` and the alert sinks' `password_env`, `url_env`, `routing_key_env`).
    pub fn referenced_env_vars(&self) -> BTreeSet<String> {
        fn walk(v: &toml::Value, key: &str, out: &mut BTreeSet<String>) {
            match v {
                toml::Value::String(s) if key.ends_with("_env") => {
                    out.insert(s.clone());
                }
                toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(v, k, out)),
                toml::Value::Array(a) => a.iter().for_each(|v| walk(v, key, out)),
                _ => {}
            }
        }
        let mut out = BTreeSet::new();
        if let Ok(v) = toml::Value::try_from(self) {
            walk(&v, "", &mut out);
        }
        out
    }

    /// The configuration as TOML with every secret replaced by `***` (safe to log or print).
    pub fn masked(&self) -> String {
        let mut v = self.masked_value();
        if let toml::Value::Table(t) = &mut v {
            // Values before tables, so the output is valid TOML.
            return toml::to_string(t).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"));
        }
        String::new()
    }

    /// The configuration as JSON with every secret replaced by `***` (for one-line structured logs).
    pub fn masked_json(&self) -> serde_json::Value {
        serde_json::to_value(self.masked_value()).unwrap_or(serde_json::Value::Null)
    }

    fn masked_value(&self) -> toml::Value {
        let mut v = toml::Value::try_from(self).unwrap_or_else(|e| toml::Value::String(format!("unrenderable: {e}")));
        mask_value(&mut v, false);
        v
    }
}

impl fmt::Debug for GuardianConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuardianConfig {}", self.masked_json())
    }
}

/// Builds the alert sinks as `run` does (the alerts crate's own checks), each alone and then all
/// together; a missing environment variable is not reported here (checked against the given env).
fn build_alert_sinks(config: &kray_alerts::AlertsConfig) -> Vec<String> {
    let build = |c: &kray_alerts::AlertsConfig| match kray_alerts::build_sinks(c) {
        Ok(_) | Err(kray_alerts::AlertsError::MissingEnv { .. }) => None,
        Err(e) => Some(e.to_string()),
    };
    let all = || {
        let mut out: Vec<String> = config
            .sinks
            .iter()
            .filter_map(|s| build(&kray_alerts::AlertsConfig { sinks: vec![s.clone()], ..config.clone() }))
            .collect();
        if out.is_empty() {
            out.extend(build(config));
        }
        out
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        return all();
    }
    // SMTP transports are built for tokio: give them a runtime, as `run` does.
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => {
            let _guard = rt.enter();
            all()
        }
        Err(e) => vec![format!("cannot start a runtime to check the sinks: {e}")],
    }
}

/// `log.level` must be a level or an `EnvFilter` directive list whose bare words are levels: a bare
/// word is a target for `EnvFilter`, so a typo such as `verbose` would silently turn every log off.
pub fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let hint = "a level (trace, debug, info, warn, error, off) or directives such as \"kray_guardian=debug,info\"";
    if level.trim().is_empty() {
        return Err(format!("log.level is empty: give {hint}"));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level) {
        return Err(format!("log.level ({level:?}) is not {hint}: {e}"));
    }
    for d in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !d.contains('=') && !d.contains('[') && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "log.level ({level:?}): {d:?} is not a level; give {hint} (for a module write NAME=LEVEL)"
            ));
        }
    }
    Ok(())
}

fn is_http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// The anchoring key file must exist, be a regular file and be readable by its owner only.
fn check_key_file(k: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(k).map_err(|e| format!("anchoring.key_file ({}) cannot be read: {e}", k.display()))?;
    if !meta.is_file() {
        return Err(format!("anchoring.key_file ({}) is not a regular file", k.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "anchoring.key_file ({}) has permissions {mode:04o}; it must be 0600 (chmod 600 {})",
                k.display(),
                k.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const BASE: &str = r#"
mode = "watch"
data_dir = "data"
profile = "regtest"
genesis = "genesis.json"

[bitcoind]
url = "http://127.0.0.1:18443"
user = "rpcuser"
password = "file-rpc-secret"

[[sources]]
name = "sequencer"
url = "http://127.0.0.1:9000"
role = "sequencer"
"#;

    /// A valid regtest genesis (JSON), generated once.
    fn genesis_json() -> &'static str {
        static G: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        G.get_or_init(|| {
            let profile = kray_replayer::Profile::load("regtest").unwrap();
            let spec = kray_devnet::workload::WorkloadSpec { accounts: 2, txs: 1, batch_size: 1, seed: 1, fault: None };
            serde_json::to_string(&kray_devnet::workload::generate(&profile, &spec).unwrap().genesis).unwrap()
        })
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::write(dir.join("genesis.json"), genesis_json()).unwrap();
        let path = dir.join("guardian.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    fn load(
        text: &str,
        pairs: &[(&str, &str)],
        o: &CliOverrides,
    ) -> (tempfile::TempDir, Result<GuardianConfig, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), text);
        let r = GuardianConfig::load(Some(&path), env(pairs), o);
        (dir, r)
    }

    fn load_ok(text: &str, pairs: &[(&str, &str)], o: &CliOverrides) -> (tempfile::TempDir, GuardianConfig) {
        let (dir, r) = load(text, pairs, o);
        (dir, r.unwrap_or_else(|e| panic!("expected a valid config: {e}")))
    }

    fn load_err(text: &str, pairs: &[(&str, &str)]) -> String {
        let (_dir, r) = load(text, pairs, &CliOverrides::default());
        r.expect_err("expected an invalid config").to_string()
    }

    /// Problems of the base config after `change`.
    fn problems(change: impl FnOnce(&mut GuardianConfig)) -> String {
        let (_dir, mut cfg) = load_ok(BASE, &[], &CliOverrides::default());
        change(&mut cfg);
        cfg.validate().expect_err("expected a validation error").to_string()
    }

    fn assert_problem(change: impl FnOnce(&mut GuardianConfig), expected: &str) {
        let msg = problems(change);
        assert!(msg.contains(expected), "expected {expected:?} in:\n{msg}");
    }

    #[test]
    fn base_config_is_valid_and_defaults_fill_the_rest() {
        let (dir, cfg) = load_ok(BASE, &[], &CliOverrides::default());
        assert_eq!(cfg.mode, Mode::Watch);
        assert_eq!(cfg.finality_depth, 6);
        assert_eq!(cfg.http.listen, "0.0.0.0:8080");
        assert_eq!(cfg.sources[0].poll_interval_ms, 5_000);
        assert_eq!(cfg.sources[0].role, SourceRole::Sequencer);
        assert_eq!(cfg.anchoring.fee_cap_sat_vb, 200);
        assert_eq!(cfg.log.format, LogFormat::Text);
        // A relative data_dir in the file is relative to the file's directory, and is created.
        assert_eq!(cfg.data_dir, dir.path().join("data"));
        assert!(dir.path().join("data").is_dir());
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let text = format!("{BASE}\n[log]\nlevel = \"warn\"\n").replace("mode = \"watch\"", "mode = \"challenge\"");
        let text = text
            .replace("[bitcoind]", "[challenge]\nendpoints = [\"http://127.0.0.1:9000/l2/challenges\"]\n\n[bitcoind]");
        let env_pairs = [("KRAY_GUARDIAN_MODE", "watch"), ("KRAY_GUARDIAN_LOG_LEVEL", "debug")];
        // File only.
        let (_d, cfg) = load_ok(&text, &[], &CliOverrides::default());
        assert_eq!((cfg.mode, cfg.log.level.as_str()), (Mode::Challenge, "warn"));
        // File + env: env wins.
        let (_d, cfg) = load_ok(&text, &env_pairs, &CliOverrides::default());
        assert_eq!((cfg.mode, cfg.log.level.as_str()), (Mode::Watch, "debug"));
        // All four layers: the flag wins.
        let flags = CliOverrides { mode: Some(Mode::Challenge), log_level: Some("error".into()), ..Default::default() };
        let (_d, cfg) = load_ok(&text, &env_pairs, &flags);
        assert_eq!((cfg.mode, cfg.log.level.as_str()), (Mode::Challenge, "error"));
        // Neither file, env nor flag: the default.
        let (_d, cfg) = load_ok(BASE, &[], &CliOverrides::default());
        assert_eq!(cfg.log.level, "info");
    }

    #[test]
    fn run_flags_parse_into_overrides() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = Cli::try_parse_from([
            "run",
            "--config",
            "g.toml",
            "--mode",
            "full",
            "--data-dir",
            "d",
            "--bitcoind-url",
            "http://h:1",
            "--database-url",
            "postgres://h/db",
            "--http-listen",
            "127.0.0.1:2",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let o = &cli.run.overrides;
        assert_eq!(cli.run.config, Some(PathBuf::from("g.toml")));
        assert_eq!(o.mode, Some(Mode::Full));
        assert_eq!(o.data_dir, Some(PathBuf::from("d")));
        assert_eq!(o.bitcoind_url.as_deref(), Some("http://h:1"));
        assert_eq!(o.database_url.as_deref(), Some("postgres://h/db"));
        assert_eq!(o.http_listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(o.log_level.as_deref(), Some("debug"));
        assert!(Cli::try_parse_from(["run", "--mode", "paranoid"]).is_err());
    }

    #[test]
    fn every_flag_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("flag-data");
        let flags = CliOverrides {
            mode: Some(Mode::Watch),
            data_dir: Some(data.clone()),
            bitcoind_url: Some("http://10.0.0.1:8332".into()),
            database_url: Some("postgres://g:pw@db/guardian".into()),
            http_listen: Some("127.0.0.1:9999".into()),
            log_level: Some("trace".into()),
        };
        let env_pairs =
            [("KRAY_GUARDIAN_BITCOIND_URL", "http://10.0.0.2:8332"), ("KRAY_GUARDIAN_HTTP_LISTEN", "127.0.0.1:1")];
        let (_d, cfg) = load_ok(BASE, &env_pairs, &flags);
        assert_eq!(cfg.data_dir, data);
        assert_eq!(cfg.bitcoind.url.as_deref(), Some("http://10.0.0.1:8332"));
        assert_eq!(cfg.database_url.as_ref().map(Secret::expose), Some("postgres://g:pw@db/guardian"));
        assert_eq!(cfg.http.listen, "127.0.0.1:9999");
        assert_eq!(cfg.log.level, "trace");
    }

    #[test]
    fn env_values_are_parsed_by_type() {
        let env_pairs = [
            ("KRAY_GUARDIAN_FINALITY_DEPTH", "12"),
            ("KRAY_GUARDIAN_START_HEIGHT", "840000"),
            ("KRAY_GUARDIAN_CHALLENGE_ENDPOINTS", "http://a.example/l2/challenges, http://b.example/l2/challenges"),
            ("KRAY_GUARDIAN_ANCHORING_FEE_CAP_SAT_VB", "500"),
            ("KRAY_GUARDIAN_LOG_FORMAT", "json"),
            ("KRAY_GUARDIAN_HTTP_ADMIN_LISTEN", "127.0.0.1:8081"),
            // An empty value means "the default": the file's user/password stay, this removes nothing set.
            ("KRAY_GUARDIAN_RUNE_CHECKPOINT", ""),
            ("PATH", "/usr/bin"),
        ];
        let (_d, cfg) = load_ok(BASE, &env_pairs, &CliOverrides::default());
        assert_eq!(cfg.finality_depth, 12);
        assert_eq!(cfg.start_height, Some(840_000));
        assert_eq!(cfg.challenge.endpoints.len(), 2);
        assert_eq!(cfg.challenge.endpoints[1], "http://b.example/l2/challenges");
        assert_eq!(cfg.anchoring.fee_cap_sat_vb, 500);
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.http.admin_listen.as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(cfg.rune_checkpoint, None);
        // The file's password survives the env round trip.
        assert_eq!(cfg.bitcoind.password().map(Secret::expose), Some("file-rpc-secret"));
    }

    #[test]
    fn empty_env_value_restores_the_default() {
        let text = BASE.replace("profile = \"regtest\"", "profile = \"regtest\"\nfinality_depth = 9");
        let (_d, cfg) = load_ok(&text, &[("KRAY_GUARDIAN_FINALITY_DEPTH", "")], &CliOverrides::default());
        assert_eq!(cfg.finality_depth, 6);
    }

    #[test]
    fn every_env_key_maps_to_a_config_key() {
        let names: BTreeSet<String> = ENV_KEYS.iter().map(EnvKey::env_name).collect();
        assert_eq!(names.len(), ENV_KEYS.len(), "env names are unique");
        for k in ENV_KEYS {
            let value = match k.kind {
                EnvKind::Text | EnvKind::Path | EnvKind::List => "x",
                EnvKind::U32 | EnvKind::U64 => "1",
                EnvKind::OneOf(words) => words[0],
            };
            let env_map: BTreeMap<String, String> = [(k.env_name(), value.to_string())].into();
            let mut probs = Vec::new();
            let cfg = GuardianConfig::default().apply_env(&env_map, &mut probs);
            assert!(probs.is_empty(), "{}: {probs:?}", k.env_name());
            let cfg = cfg.unwrap_or_else(|e| panic!("{} does not map onto a key: {e}", k.env_name()));
            let table = toml::Table::try_from(&cfg).unwrap();
            let mut node = &toml::Value::Table(table);
            for part in k.key.split('.') {
                node = node.get(part).unwrap_or_else(|| panic!("{} did not set {}", k.env_name(), k.key));
            }
        }
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = load_err(BASE, &[("KRAY_GUARDIAN_FINALITY_DEPTH", "six")]);
        assert!(e.contains("KRAY_GUARDIAN_FINALITY_DEPTH (six) is not a whole number"), "{e}");
        let e = load_err(BASE, &[("KRAY_GUARDIAN_ANCHORING_FEE_CAP_SAT_VB", "-1")]);
        assert!(e.contains("KRAY_GUARDIAN_ANCHORING_FEE_CAP_SAT_VB (-1)"), "{e}");
        let e = load_err(BASE, &[("KRAY_GUARDIAN_MODE", "paranoid")]);
        assert!(e.contains("KRAY_GUARDIAN_MODE (paranoid) must be one of: watch, challenge, full"), "{e}");
        let e = load_err(BASE, &[("KRAY_GUARDIAN_BITCOIND_URLL", "http://x")]);
        assert!(e.contains("unknown environment variable KRAY_GUARDIAN_BITCOIND_URLL"), "{e}");
        // The config path variable and the variable named by password_env are not unknown.
        let text = BASE.replace("password = \"file-rpc-secret\"", "password_env = \"KRAY_GUARDIAN_RPC_PASS\"");
        let (_d, cfg) = load_ok(
            &text,
            &[("KRAY_GUARDIAN_CONFIG", "guardian.toml"), ("KRAY_GUARDIAN_RPC_PASS", "env-rpc-secret")],
            &CliOverrides::default(),
        );
        assert_eq!(cfg.bitcoind.password().map(Secret::expose), Some("env-rpc-secret"));
    }

    #[test]
    fn alerts_section_is_checked_by_the_alerts_crate_and_its_env_names_are_known() {
        let text = format!(
            "{BASE}\n[alerts]\nsource = \"guardian-eu-1\"\n\n[[alerts.sinks]]\ntype = \"slack\"\n\
             url_env = \"KRAY_GUARDIAN_SLACK_URL\"\n"
        );
        let (_d, cfg) =
            load_ok(&text, &[("KRAY_GUARDIAN_SLACK_URL", "https://hooks.example/x")], &CliOverrides::default());
        let alerts = cfg.alerts_config().unwrap();
        assert_eq!(alerts.source, "guardian-eu-1");
        assert_eq!(alerts.sinks.len(), 1);
        let e = load_err(&text.replace("url_env", "url_envv"), &[]);
        assert!(e.contains("alerts:") && e.contains("url_envv"), "{e}");
    }

    #[test]
    fn password_env_must_be_set() {
        let text = BASE.replace("password = \"file-rpc-secret\"", "password_env = \"RPC_PASS\"");
        let e = load_err(&text, &[]);
        assert!(e.contains("bitcoind.password_env names RPC_PASS, which is not set or empty"), "{e}");
    }

    #[test]
    fn file_errors_name_the_key() {
        let e = load_err(&BASE.replace("profile = \"regtest\"", "finalty_depth = 3"), &[]);
        assert!(e.contains("finalty_depth"), "{e}");
        let e = load_err(&BASE.replace("user = \"rpcuser\"", "usr = \"rpcuser\""), &[]);
        assert!(e.contains("usr"), "{e}");
        let e = load_err(&BASE.replace("mode = \"watch\"", "mode = \"paranoid\""), &[]);
        assert!(e.contains("paranoid") && e.contains("watch"), "{e}");
        let e = load_err(&format!("{BASE}\n[bogus]\nx = 1\n"), &[]);
        assert!(e.contains("bogus"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = GuardianConfig::load(Some(&dir.path().join("missing.toml")), env(&[]), &CliOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read config file") && e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key_and_value() {
        assert_problem(
            |c| {
                c.anchoring.fee_floor_sat_vb = 5;
                c.anchoring.fee_cap_sat_vb = 2;
            },
            "anchoring.fee_cap_sat_vb (2) is below anchoring.fee_floor_sat_vb (5)",
        );
        assert_problem(|c| c.anchoring.fee_floor_sat_vb = 0, "anchoring.fee_floor_sat_vb (0) must be at least 1");
        assert_problem(|c| c.anchoring.bump_after_blocks = 0, "anchoring.bump_after_blocks (0) must be at least 1");
        assert_problem(|c| c.anchoring.grace_steps = 0, "anchoring.grace_steps (0) must be at least 1");
        assert_problem(|c| c.sources.clear(), "sources: at least one [[sources]] entry");
        assert_problem(|c| c.sources[0].url = "ftp://x".into(), "sources[0].url (ftp://x) must be an http://");
        assert_problem(|c| c.sources[0].poll_interval_ms = 0, "sources[0].poll_interval_ms (0) must be at least 1");
        assert_problem(|c| c.sources[0].timeout_ms = 0, "sources[0].timeout_ms (0) must be at least 1");
        assert_problem(|c| c.sources[0].max_body_bytes = 0, "sources[0].max_body_bytes (0) must be at least 1");
        assert_problem(|c| c.sources[0].name = " ".into(), "sources[0].name is empty");
        assert_problem(
            |c| c.sources.push(c.sources[0].clone()),
            "sources[1].name (\"sequencer\") is used by an earlier",
        );
        assert_problem(
            |c| {
                let mut s = c.sources[0].clone();
                s.name = "other".into();
                c.sources.push(s);
            },
            "sources: 2 entries have role = \"sequencer\"",
        );
        assert_problem(|c| c.http.listen = "everywhere".into(), "http.listen (\"everywhere\") is not an address");
        assert_problem(
            |c| c.http.admin_listen = Some("0.0.0.0:8081".into()),
            "http.admin_listen (0.0.0.0:8081) must be a loopback",
        );
        assert_problem(
            |c| c.http.admin_listen = Some("local".into()),
            "http.admin_listen (\"local\") is not an address",
        );
        assert_problem(|c| c.http.rate_limit_per_ip_per_minute = 0, "http.rate_limit_per_ip_per_minute (0)");
        assert_problem(|c| c.mode = Mode::Challenge, "mode = challenge submits proofs, so challenge.endpoints needs");
        assert_problem(
            |c| c.challenge.endpoints = vec!["nope".into()],
            "challenge.endpoints[0] (nope) must be an http",
        );
        assert_problem(|c| c.challenge.retry_initial_ms = 0, "challenge.retry_initial_ms (0) must be at least 1");
        assert_problem(
            |c| c.challenge.retry_max_ms = 10,
            "challenge.retry_max_ms (10) is below challenge.retry_initial_ms (1000)",
        );
        assert_problem(|c| c.challenge.max_attempts = 0, "challenge.max_attempts (0) must be at least 1");
        assert_problem(
            |c| c.challenge.safety_margin_blocks = 20,
            "challenge.safety_margin_blocks (20) must be below the profile's challenge_window_blocks (20)",
        );
        assert_problem(|c| c.profile = "moonnet".into(), "profile (moonnet): unknown profile");
        assert_problem(|c| c.genesis = Some("/nonexistent/genesis.json".into()), "genesis (/nonexistent/genesis.json)");
        assert_problem(|c| c.rune_id = Some("925516".into()), "rune_id (\"925516\") must be BLOCK:TX");
        assert_problem(|c| c.confirmations = Some(0), "confirmations (0) must be at least 1");
        assert_problem(|c| c.finality_depth = 0, "finality_depth (0) must be from 1 to 1007");
        assert_problem(|c| c.finality_depth = 5000, "finality_depth (5000) must be from 1 to 1007");
        assert_problem(|c| c.log.level = "info,=x=y".into(), "log.level (\"info,=x=y\")");
        assert_problem(
            |c| c.alerts = toml::from_str("[[sinks]]\ntype = \"carrier-pigeon\"").unwrap(),
            "alerts: unknown variant `carrier-pigeon`",
        );
        assert_problem(|c| c.bitcoind.url = None, "no L1 backend: set bitcoind.url");
        assert_problem(
            |c| c.bitcoind.url = Some("127.0.0.1:8332".into()),
            "bitcoind.url (127.0.0.1:8332) must be an http",
        );
        assert_problem(|c| c.bitcoind.timeout_secs = 0, "bitcoind.timeout_secs (0) must be at least 1");
        assert_problem(
            |c| c.bitcoind.password_env = Some("X".into()),
            "bitcoind.password and bitcoind.password_env are both set",
        );
        assert_problem(
            |c| c.bitcoind.cookie_file = Some("/c".into()),
            "bitcoind.cookie_file and bitcoind.user/password are both set",
        );
        assert_problem(|c| c.bitcoind.password = None, "bitcoind.user is set without bitcoind.password");
        assert_problem(|c| c.bitcoind.user = None, "bitcoind.password (or password_env) is set without bitcoind.user");
        assert_problem(
            |c| {
                c.bitcoind.user = None;
                c.bitcoind.password = None;
            },
            "bitcoind.url has no credentials",
        );
        assert_problem(
            |c| c.electrum.url = Some("http://e:50001".into()),
            "electrum.url (http://e:50001) must be tcp://",
        );
        assert_problem(|c| c.electrum.timeout_secs = 0, "electrum.timeout_secs (0) must be at least 1");
        assert_problem(
            |c| c.database_url = Some(Secret::new("mysql://u:dbsecret@h/db")),
            "database_url (mysql://u:***@h/db) must be a postgres://",
        );
        assert_problem(
            |c| c.data_dir = "/proc/kray-guardian-test".into(),
            "data_dir (/proc/kray-guardian-test) cannot be created",
        );
        assert_problem(
            |c| c.mode = Mode::Full,
            "mode = full anchors batches itself, so anchoring.key_file is required",
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let msg = problems(|c| {
            c.finality_depth = 0;
            c.http.listen = "x".into();
        });
        assert!(msg.starts_with("invalid configuration (2 problems):"), "{msg}");
        assert!(msg.contains("finality_depth") && msg.contains("http.listen"), "{msg}");
    }

    #[test]
    fn credentials_in_the_url_or_a_cookie_suffice() {
        let (_d, cfg) = load_ok(BASE, &[], &CliOverrides::default());
        let mut c = cfg.clone();
        c.bitcoind.user = None;
        c.bitcoind.password = None;
        c.bitcoind.url = Some("http://u:p@127.0.0.1:18443".into());
        c.validate().unwrap();
        c.bitcoind.url = Some("http://127.0.0.1:18443".into());
        c.bitcoind.cookie_file = Some("/var/lib/bitcoind/.cookie".into());
        c.validate().unwrap();
        // Both the URL's credentials and a cookie: ambiguous.
        let mut both = c.clone();
        both.bitcoind.url = Some("http://u:p@127.0.0.1:18443".into());
        assert!(both.validate().unwrap_err().to_string().contains("bitcoind.url carries a user and password"));
        // The client takes the cookie (read when calling, not now) or the URL's credentials.
        assert!(matches!(c.bitcoind.rpc().unwrap().auth(), kray_watcher::chain::BitcoindAuth::Cookie(_)));
        c.bitcoind.cookie_file = None;
        c.bitcoind.url = Some("http://u:p@127.0.0.1:18443".into());
        assert!(matches!(
            c.bitcoind.rpc().unwrap().auth(),
            kray_watcher::chain::BitcoindAuth::UserPass { user, .. } if user == "u"
        ));
        // Electrum alone is refused while `run` needs bitcoind.
        c.bitcoind.url = None;
        c.electrum.url = Some("ssl://electrum.example:50002".into());
        assert!(c.validate().unwrap_err().to_string().contains("electrum.url alone is not enough"));
    }

    #[test]
    fn log_level_typos_are_refused() {
        for ok in ["info", "WARN", "trace", "off", "kray_guardian=debug,info", "info,kray_watcher=trace", "debug,"] {
            check_log_level(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["verbose", "info,verbose", "", "kray_guardian=verbose", "info,=x=y"] {
            let e = check_log_level(bad).expect_err(bad);
            assert!(e.contains("log.level"), "{e}");
        }
        assert_problem(|c| c.log.level = "verbose".into(), "\"verbose\" is not a level");
    }

    #[test]
    fn genesis_is_required_and_must_build() {
        assert_problem(|c| c.genesis = None, "genesis: the L2 genesis file");
        let (dir, mut cfg) = load_ok(BASE, &[], &CliOverrides::default());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").unwrap();
        cfg.genesis = Some(bad);
        assert!(cfg.validate().unwrap_err().to_string().contains("bad.json"));
    }

    #[test]
    fn the_client_url_variable_is_not_a_config_typo() {
        let (_d, _cfg) = load_ok(BASE, &[("KRAY_GUARDIAN_URL", "http://127.0.0.1:8080")], &CliOverrides::default());
    }

    #[test]
    fn alert_sinks_are_checked_as_run_checks_them() {
        let with = |sink: &str| format!("{BASE}\n[alerts]\n[[alerts.sinks]]\n{sink}\n");
        // A secret variable that is not set.
        let slack = with("type = \"slack\"\nurl_env = \"KRAY_TEST_SLACK\"");
        let e = load_err(&slack, &[]);
        assert!(e.contains("alerts.sinks[0] (type slack): url_env names KRAY_TEST_SLACK, which is not set"), "{e}");
        let e = load_err(&with("type = \"pagerduty\"\nrouting_key_env = \"KRAY_TEST_PD\""), &[]);
        assert!(e.contains("routing_key_env names KRAY_TEST_PD"), "{e}");
        // A URL that does not parse, given directly or through the variable.
        let e = load_err(&with("type = \"webhook\"\nurl = \"hooks.example/x\""), &[]);
        assert!(e.contains("alerts.sinks[0] (type webhook): url (hooks.example/x) must be an http"), "{e}");
        let e = load_err(&slack, &[("KRAY_TEST_SLACK", "not a url")]);
        assert!(e.contains("must be an http"), "{e}");
        // An unknown key of the sink's own (flattened, so serde alone accepts it).
        let e = load_err(&with("type = \"webhook\"\nurl = \"https://h.example/x\"\nuri = \"x\""), &[]);
        assert!(e.contains("alerts") && e.contains("uri"), "{e}");
        let e = load_err(&with("type = \"log\"\nurl = \"https://h.example/x\""), &[]);
        assert!(e.contains("alerts.sinks[0] (type log): unknown key \"url\""), "{e}");
        // The alerts crate's own checks (here an SMTP sink with no recipient).
        let e = load_err(&with("type = \"smtp\"\nhost = \"smtp.example\"\nfrom = \"g@example.com\"\nto = []"), &[]);
        assert!(e.contains("no recipient"), "{e}");
        // Valid sinks pass.
        load_ok(
            &with("type = \"webhook\"\nurl = \"https://h.example/x\"\nname = \"ops\""),
            &[],
            &CliOverrides::default(),
        );
        load_ok(&with("type = \"log\"\nmin_severity = \"P1\""), &[], &CliOverrides::default());
    }

    #[test]
    fn full_mode_needs_a_private_key_file() {
        let (dir, cfg) = load_ok(BASE, &[], &CliOverrides::default());
        let key = dir.path().join("anchor.key");
        std::fs::write(&key, "00").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = cfg.clone();
        c.mode = Mode::Full;
        c.challenge.endpoints = vec!["http://127.0.0.1:9000/l2/challenges".into()];
        c.anchoring.key_file = Some(key.clone());
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("has permissions 0644; it must be 0600"), "{msg}");
        assert!(msg.contains(&key.display().to_string()), "{msg}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        c.validate().unwrap();
        c.anchoring.key_file = Some(dir.path().to_path_buf());
        assert!(c.validate().unwrap_err().to_string().contains("is not a regular file"));
        c.anchoring.key_file = Some(dir.path().join("nope.key"));
        assert!(c.validate().unwrap_err().to_string().contains("anchoring.key_file"));
        // A key file relative to the config file resolves against the file's directory.
        let text = format!(
            "{}\n[challenge]\nendpoints = [\"http://127.0.0.1:9000/l2/challenges\"]\n\n\
             [anchoring]\nkey_file = \"anchor.key\"\n",
            BASE.replace("mode = \"watch\"", "mode = \"full\"")
        );
        std::fs::write(dir.path().join("guardian.toml"), text).unwrap();
        let cfg = GuardianConfig::load(Some(&dir.path().join("guardian.toml")), env(&[]), &CliOverrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.anchoring.key_file, Some(key));
    }

    #[test]
    fn masked_hides_every_secret() {
        let text = format!(
            r#"database_url = "postgres://guardian:db-secret-1@db.example/guardian"
{BASE}
[challenge]
endpoints = ["https://seq.example/l2/challenges?api_key=query-secret-2"]
"#
        );
        let (_d, cfg) = load_ok(
            &text,
            &[("KRAY_GUARDIAN_ELECTRUM_URL", "ssl://u:electrum-secret-8@e.example:50002")],
            &CliOverrides::default(),
        );
        let mut cfg = cfg;
        // Sinks the alerts crate would reject still get masked: the rules are by key name.
        cfg.alerts = toml::from_str(
            r#"
[[sinks]]
type = "pagerduty"
routing_key = "routing-secret-3"
routing_key_env = "PD_KEY"

[[sinks]]
type = "webhook"
url = "https://hooks.slack.com/services/T000/B000/path-secret-4"
headers = { Authorization = "x", x_api_token = "token-secret-5" }

[[sinks]]
type = "smtp"
host = "smtp.example"
password = "smtp-secret-6"
client_secret = "secret-7"
key_file = "/etc/kray/smtp.key"
"#,
        )
        .unwrap();
        cfg.sources[0].url = "https://mirror.example/?token=source-secret-9".into();
        let shown = cfg.masked();
        for secret in [
            "file-rpc-secret",
            "db-secret-1",
            "query-secret-2",
            "routing-secret-3",
            "path-secret-4",
            "token-secret-5",
            "smtp-secret-6",
            "secret-7",
            "electrum-secret-8",
            "source-secret-9",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        let json = cfg.masked_json().to_string();
        let debug = format!("{cfg:?}");
        for secret in ["file-rpc-secret", "db-secret-1", "routing-secret-3", "path-secret-4"] {
            assert!(!json.contains(secret) && !debug.contains(secret), "{secret} leaked");
        }
        // What is not secret stays readable, and the masked text is still TOML.
        assert!(shown.contains("postgres://guardian:***@db.example/guardian"), "{shown}");
        assert!(shown.contains("api_key=***"), "{shown}");
        assert!(shown.contains("https://hooks.slack.com/***"), "{shown}");
        assert!(shown.contains("/etc/kray/smtp.key") && shown.contains("PD_KEY"), "{shown}");
        assert!(shown.contains("rpcuser"), "{shown}");
        let back: toml::Table = toml::from_str(&shown).unwrap();
        assert_eq!(back["mode"].as_str(), Some("watch"));
        assert_eq!(back["bitcoind"]["password"].as_str(), Some(MASK));
    }

    #[test]
    fn env_errors_do_not_print_secrets() {
        let e = load_err(BASE, &[("KRAY_GUARDIAN_BITCOIND_URL", "ftp://u:url-secret@h")]);
        assert!(!e.contains("url-secret") && e.contains("bitcoind.url"), "{e}");
        let e = load_err(BASE, &[("KRAY_GUARDIAN_DATABASE_URL", "postgres//u:db-secret@h")]);
        assert!(!e.contains("db-secret") && e.contains("database_url"), "{e}");
    }

    #[test]
    fn docs_name_every_env_variable() {
        let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md")).unwrap();
        for k in ENV_KEYS {
            assert!(doc.contains(&k.env_name()), "docs/config.md does not mention {}", k.env_name());
            assert!(doc.contains(&format!("`{}`", k.key)), "docs/config.md does not mention `{}`", k.key);
        }
    }
}
