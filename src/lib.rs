//! kray-guardian: the independent fraud-proof watchtower and challenger for the KRAY SPACE L2, as a
//! library. The `kray-guardian` binary (`src/main.rs`) is a thin command line over it.
//!
//! - [`daemon`]: `run`, the pipeline (L1 → mirror → replay → judge → act → publish), one module per
//!   stage, each run only when its input moved;
//! - [`commands`]: the other subcommands; [`config`]: the layered configuration;
//! - [`http`], [`user_api`], [`web`], [`rate_limit`]: the HTTP API and the web page; [`metrics`]: Prometheus;
//! - [`bench`], [`bench_history`]: the benchmark commands.

pub mod bench;
pub mod bench_history;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod http;
pub mod l1_node;
pub mod metrics;
pub mod rate_limit;
pub mod user_api;
pub mod web;

/// The version with the git commit it was built from.
pub fn version() -> &'static str {
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("KRAY_GIT_HASH"), ")")
}
