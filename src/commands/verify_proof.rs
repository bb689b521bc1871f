//! `kray-guardian verify-proof`: check a fraud proof with nothing but the file (and L1 when needed).

use super::{open_l1, L1Args};
use anyhow::Context;
use kray_replayer::proof::{verify_proof, FraudProof, VerifyError};
use std::path::PathBuf;

/// Arguments of `verify-proof`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The proof file.
    pub file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub l1: L1Args,
}

/// Run `verify-proof`; returns the exit code (0 proven, 4 not proven, 5 needs L1).
pub fn run(a: &VerifyArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let proof = match FraudProof::from_json(&text) {
        Ok(p) => p,
        Err(e) => {
            print(a.json, "not-proven", &format!("{} is not a valid fraud proof file: {e}", a.file.display()));
            return Ok(4);
        }
    };
    let l1 = match open_l1(&a.l1, None, &proof.chain.profile) {
        Ok(l) => l,
        Err(e) => return Err(e.context("opening the L1 source")),
    };
    match verify_proof(&proof, l1.as_deref()) {
        Ok(p) => {
            if a.json {
                println!("{}", serde_json::json!({"result": "proven", "proven": p}));
            } else {
                let tx = p.tx_index.map(|i| format!(" tx {i}")).unwrap_or_default();
                println!(
                    "PROVEN: {} in batch {}{tx} signed by producer {} (chain {}): {}",
                    p.fault, p.batch_id, p.producer, p.chain_id, p.finding
                );
            }
            Ok(0)
        }
        Err(VerifyError::NeedsL1(what)) => {
            print(a.json, "needs-l1", &format!("an L1 node is needed (--bitcoind URL) to check {what}"));
            Ok(5)
        }
        Err(VerifyError::L1(e)) => Err(anyhow::anyhow!("L1 source failed: {e}")),
        Err(VerifyError::Rejected(why)) => {
            print(a.json, "not-proven", &why);
            Ok(4)
        }
    }
}

fn print(as_json: bool, result: &str, detail: &str) {
    if as_json {
        println!("{}", serde_json::json!({"result": result, "detail": detail}));
    } else {
        println!("{}: {detail}", result.to_uppercase());
    }
}
