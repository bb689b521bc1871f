//! `kray-guardian`: the command line. Everything it runs lives in the `kray_guardian` library
//! (`src/lib.rs`); this file only parses the command and maps results to exit codes.

use clap::{Parser, Subcommand};
use kray_guardian::{bench, commands, config, version};
use std::process::ExitCode;

/// Command line of the guardian.
#[derive(Parser, Debug)]
#[command(name = "kray-guardian", version = version(), about = "Fraud-proof watchtower and challenger for the KRAY SPACE L2")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay batch files from a genesis and print a verdict per batch (exit 0 valid, 3 fault, 1 error).
    Replay(commands::replay::ReplayArgs),
    /// Check a fraud proof file offline (exit 0 proven, 4 not proven, 5 needs an L1 node, 1 error).
    VerifyProof(commands::verify_proof::VerifyArgs),
    /// Write a deterministic signed genesis, L1 facts and batch files, optionally with one fault.
    GenWorkload(commands::gen_workload::GenArgs),
    /// Measure verification, replay and state-root speed and memory.
    Bench(bench::BenchArgs),
    /// Run a local KRAY L2 on regtest bitcoind: sequencer, publication API, traffic, fault injection.
    Devnet(commands::devnet::DevnetArgs),
    /// Run the guardian daemon: follow L1, mirror and replay batches, judge, act, serve the API.
    Run(config::RunArgs),
    /// List the guardian's findings, or resolve one by hand (e.g. a deep reorg that stopped acting).
    Findings(commands::findings::FindingsArgs),
    /// Write a commented example guardian configuration.
    Init(commands::init::InitArgs),
    /// Ask a running guardian whether a withdrawal is safe (exit 0 SAFE, 10 PENDING, 11 AT RISK, 12 UNKNOWN).
    Withdrawal(commands::withdrawal::WithdrawalArgs),
    /// Check an account proof offline (exit 0 proven, 4 not proven, 1 error).
    VerifyAccount(commands::verify_account::VerifyAccountArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run(a) = &cli.command {
        return exit(commands::run::run(a));
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Replay(a) => commands::replay::run(&a),
        Command::VerifyProof(a) => commands::verify_proof::run(&a),
        Command::GenWorkload(a) => commands::gen_workload::run(&a).map(|()| 0),
        Command::Bench(a) => bench::run(&a).map(|()| 0),
        Command::Devnet(a) => commands::devnet::run(&a),
        Command::Init(a) => commands::init::run(&a),
        Command::Withdrawal(a) => commands::withdrawal::run(&a),
        Command::VerifyAccount(a) => commands::verify_account::run(&a),
        Command::Findings(a) => commands::findings::run(&a),
        Command::Run(_) => Ok(0),
    };
    exit(result)
}

fn exit(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
