//! `kray-guardian gen-workload`: deterministic signed workloads for tests and benchmarks.

use anyhow::{bail, Context};
use kray_devnet::workload::{generate, WorkloadSpec};
use kray_replayer::{FaultClass, Profile};
use std::path::PathBuf;

/// Arguments of `gen-workload`.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// Profile name or TOML path.
    #[arg(long, default_value = "regtest")]
    pub profile: String,
    /// Users in the genesis.
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// User txs in total.
    #[arg(long, default_value_t = 1000)]
    pub txs: usize,
    /// User txs per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder: genesis.json, l1-facts.json, workload.json and batches/.
    #[arg(long)]
    pub out: PathBuf,
    /// Inject one fault: CLASS@BATCH, e.g. bad-nonce@2.
    #[arg(long, value_parser = parse_fault)]
    pub fault: Option<(FaultClass, u64)>,
}

fn parse_fault(s: &str) -> anyhow::Result<(FaultClass, u64)> {
    parse_fault_inner(s)
}

fn parse_fault_inner(s: &str) -> anyhow::Result<(FaultClass, u64)> {
    let Some((c, b)) = s.split_once('@') else { bail!("--fault must be CLASS@BATCH, got {s:?}") };
    let names: Vec<&str> = FaultClass::ALL.iter().map(|c| c.as_str()).collect();
    let class =
        FaultClass::parse(c).with_context(|| format!("unknown fault class {c:?}; one of: {}", names.join(", ")))?;
    let batch = b.parse::<u64>().with_context(|| format!("batch {b:?} is not a number"))?;
    Ok((class, batch))
}

/// Run `gen-workload`.
pub fn run(a: &GenArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&a.profile)?;
    let spec =
        WorkloadSpec { accounts: a.accounts, txs: a.txs, batch_size: a.batch_size, seed: a.seed, fault: a.fault };
    let w = generate(&profile, &spec)?;
    let bdir = a.out.join("batches");
    std::fs::create_dir_all(&bdir).with_context(|| format!("creating {}", bdir.display()))?;
    let write = |p: PathBuf, s: String| std::fs::write(&p, s).with_context(|| format!("writing {}", p.display()));
    write(a.out.join("genesis.json"), serde_json::to_string_pretty(&w.genesis)?)?;
    write(a.out.join("l1-facts.json"), serde_json::to_string_pretty(&w.facts)?)?;
    write(
        a.out.join("workload.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "profile": profile.name, "accounts": a.accounts, "txs": a.txs, "batch_size": a.batch_size,
            "seed": a.seed, "batches": w.batches.len(), "injected": w.injected,
        }))?,
    )?;
    for (name, b) in &w.batches {
        write(bdir.join(name), b.to_json())?;
    }
    println!("wrote {} batches to {}", w.batches.len(), a.out.display());
    Ok(())
}
