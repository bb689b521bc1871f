//! `kray-guardian verify-proof`: check a fraud proof with nothing but the file (and L1 when needed).
//!
//! A proof carries its chain's identity (profile, producers, genesis state root); the verifier derives
//! the chain id from it and requires the signed header to name that id and be signed by one of those
//! producers. Whether that chain is the one the user cares about is what the pin says: `--chain-id HEX`
//! or `--genesis FILE --profile P` (the same pin [`ChainPinArgs`] serves `verify-account`). Unpinned,
//! the command says so on stderr and names the chain id it proved against.

use super::{open_l1, L1Args};
use anyhow::Context;
use kray_replayer::genesis::Genesis;
use kray_replayer::hash::Hash32;
use kray_replayer::proof::{verify_proof, FraudProof, VerifyError};
use kray_replayer::Profile;
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
    pub pin: ChainPinArgs,
    #[command(flatten)]
    pub l1: L1Args,
}

/// Which chain a proof must be of: by its id, or by its genesis file and profile (both may be given;
/// then both must agree).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ChainPinArgs {
    /// Pin: the chain id (64 hex digits) the file must be of, as published with the chain (or pin by
    /// `--genesis`, which computes it).
    #[arg(long, value_name = "HEX")]
    pub chain_id: Option<String>,
    /// Pin: the chain's genesis file; the chain id is computed from it and `--profile`.
    #[arg(long, value_name = "FILE", requires = "profile")]
    pub genesis: Option<PathBuf>,
    /// The profile (name or TOML path) of the genesis given with `--genesis`.
    #[arg(long, requires = "genesis")]
    pub profile: Option<String>,
}

impl ChainPinArgs {
    /// The pinned chain id, if any pin is given. `Err` (exit 1) when a pin cannot be read or the two
    /// pins disagree.
    pub fn resolve(&self) -> anyhow::Result<Option<Hash32>> {
        let by_id = match &self.chain_id {
            Some(h) => Some(
                kray_replayer::hash::hex32(h.trim())
                    .with_context(|| format!("--chain-id {h:?} is not 64 hex digits"))?,
            ),
            None => None,
        };
        let by_genesis = match (&self.genesis, &self.profile) {
            (Some(path), Some(profile)) => {
                let profile = Profile::load(profile)?;
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading genesis {}", path.display()))?;
                let genesis = Genesis::from_json(&text).with_context(|| format!("genesis {}", path.display()))?;
                let (chain, _) = genesis.build(&profile).with_context(|| format!("genesis {}", path.display()))?;
                Some(chain.chain_id())
            }
            (None, None) => None,
            _ => anyhow::bail!("--genesis and --profile go together"),
        };
        match (by_id, by_genesis) {
            (Some(a), Some(b)) if a != b => anyhow::bail!(
                "--chain-id {} is not the chain id {} of the genesis and profile given",
                hex::encode(a),
                hex::encode(b)
            ),
            (a, b) => Ok(a.or(b)),
        }
    }
}

/// The stderr notice of an unpinned check.
pub fn not_pinned_notice(what: &str, chain_id: &Hash32) {
    eprintln!(
        "note: the chain was not pinned: {what} was checked against chain {} as the file itself describes \
         it (profile, producers, genesis root), whoever made the file; pass --chain-id HEX or --genesis FILE \
         --profile P to require the chain you mean",
        hex::encode(chain_id)
    );
}

/// Run `verify-proof`; returns the exit code (0 proven, 4 not proven, 5 needs L1, 1 error).
pub fn run(a: &VerifyArgs) -> anyhow::Result<u8> {
    let pin = a.pin.resolve()?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let proof = match FraudProof::from_json(&text) {
        Ok(p) => p,
        Err(e) => {
            print(a.json, "not-proven", &format!("{} is not a valid fraud proof file: {e}", a.file.display()));
            return Ok(4);
        }
    };
    // The chain id the proof proves against: derived from the identity it carries (the verifier
    // requires the signed header to name exactly this id).
    let proved = proof.chain.chain_id();
    match pin {
        Some(want) if want != proved => {
            print(
                a.json,
                "not-proven",
                &format!("the proof is of chain {}, not the pinned chain {}", hex::encode(proved), hex::encode(want)),
            );
            return Ok(4);
        }
        Some(_) => {}
        None => not_pinned_notice("the proof", &proved),
    }
    let l1 = match open_l1(&a.l1, None, &proof.chain.profile) {
        Ok(l) => l,
        Err(e) => return Err(e.context("opening the L1 source")),
    };
    match verify_proof(&proof, l1.as_deref()) {
        Ok(p) => {
            if a.json {
                println!("{}", serde_json::json!({"result": "proven", "proven": p, "pinned": pin.is_some()}));
            } else {
                let tx = p.tx_index.map(|i| format!(" tx {i}")).unwrap_or_default();
                let pinned = if pin.is_some() { "pinned" } else { "not pinned" };
                println!(
                    "PROVEN: {} in batch {}{tx} signed by producer {} (chain {}, {pinned}): {}",
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
