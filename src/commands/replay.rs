//! `kray-guardian replay`: judge batch files from a genesis.

use super::{open_l1, L1Args};
use anyhow::Context;
use kray_replayer::batch::Batch;
use kray_replayer::genesis::Genesis;
use kray_replayer::l1facts::FileFacts;
use kray_replayer::replay::{ReplayError, Replayer};
use kray_replayer::{Profile, Verdict};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Profile name (mainnet, regtest) or path to a profile TOML.
    #[arg(long)]
    pub profile: String,
    /// Genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Folder of batch files (`*.json` canonical JSON or `*.raw` canonical bytes).
    #[arg(long)]
    pub batches: PathBuf,
    /// One JSON object per batch instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// Write a fraud proof file per fault into this folder.
    #[arg(long)]
    pub proofs: Option<PathBuf>,
    #[command(flatten)]
    pub l1: L1Args,
}

fn load_batch(path: &Path, max: u32) -> anyhow::Result<Batch> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let b = if path.extension().is_some_and(|e| e == "raw") {
        Batch::from_raw(&bytes, max)
    } else {
        Batch::from_json(&String::from_utf8_lossy(&bytes), max)
    };
    b.with_context(|| format!("batch file {}", path.display()))
}

/// Run `replay`; returns the exit code.
pub fn run(a: &ReplayArgs) -> anyhow::Result<u8> {
    let profile = Profile::load(&a.profile)?;
    let text =
        std::fs::read_to_string(&a.genesis).with_context(|| format!("reading genesis {}", a.genesis.display()))?;
    let genesis = Genesis::from_json(&text).with_context(|| format!("genesis {}", a.genesis.display()))?;
    let (chain, state) = genesis.build(&profile)?;
    let facts_default = a.genesis.parent().map(|d| d.join("l1-facts.json"));
    let l1 = open_l1(&a.l1, facts_default.as_deref(), &profile)?;
    let empty = FileFacts::default();
    let facts: &dyn kray_replayer::l1facts::L1Facts = match &l1 {
        Some(f) => f.as_ref(),
        None => &empty,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.batches)
        .with_context(|| format!("reading batch folder {}", a.batches.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "raw"))
        .collect();
    files.sort();
    let mut loaded = Vec::new();
    let mut errors = 0usize;
    for f in files {
        match load_batch(&f, profile.max_batch_txs) {
            Ok(b) => loaded.push((f, b)),
            Err(e) => {
                errors += 1;
                report(a.json, &f, None, "error", &format!("{e:#}"), None);
            }
        }
    }
    loaded.sort_by(|(fa, a), (fb, b)| (a.signed.header.batch_id, fa).cmp(&(b.signed.header.batch_id, fb)));
    if let Some(dir) = &a.proofs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut replayer = Replayer::new(chain, state)?;
    let mut faults = 0usize;
    for (path, batch) in &loaded {
        let id = batch.signed.header.batch_id;
        match replayer.replay(batch, facts) {
            Ok(Verdict::Valid { state_root, tx_count, .. }) => {
                report(a.json, path, Some(id), "valid", &format!("{tx_count} txs, state root {state_root}"), None)
            }
            Ok(Verdict::CannotVerify { reason, .. }) => report(a.json, path, Some(id), "cannot-verify", &reason, None),
            Ok(Verdict::Fault(fault)) => {
                faults += 1;
                let mut proof_path = None;
                if let Some(dir) = &a.proofs {
                    let proof = replayer.build_proof(batch, &fault)?;
                    let p = dir.join(format!("proof-batch-{id:06}-{}.json", fault.class));
                    std::fs::write(&p, proof.to_json()).with_context(|| format!("writing {}", p.display()))?;
                    proof_path = Some(p);
                }
                report(a.json, path, Some(id), "fault", &fault.to_string(), Some((&fault, proof_path.as_deref())));
            }
            Err(e @ (ReplayError::AfterFault { .. } | ReplayError::Gap { .. } | ReplayError::Duplicate(_))) => {
                report(a.json, path, Some(id), "not-replayed", &e.to_string(), None)
            }
            Err(e) => {
                errors += 1;
                report(a.json, path, Some(id), "error", &e.to_string(), None);
            }
        }
    }
    Ok(if faults > 0 {
        3
    } else if errors > 0 {
        1
    } else {
        0
    })
}

fn report(
    as_json: bool,
    file: &Path,
    batch_id: Option<u64>,
    verdict: &str,
    detail: &str,
    fault: Option<(&kray_replayer::Fault, Option<&Path>)>,
) {
    if as_json {
        let mut o =
            json!({"file": file.display().to_string(), "batch_id": batch_id, "verdict": verdict, "detail": detail});
        if let Some((f, p)) = fault {
            o["fault"] = json!(f.class);
            o["tx_index"] = json!(f.tx_index);
            o["proof"] = json!(p.map(|p| p.display().to_string()));
        }
        println!("{o}");
    } else {
        let id = batch_id.map_or_else(|| "?".to_string(), |i| i.to_string());
        let proof = fault.and_then(|(_, p)| p).map(|p| format!(" (proof: {})", p.display())).unwrap_or_default();
        println!("batch {id} {verdict}: {detail}{proof}");
    }
}
