//! The subcommands of the binary, one file each.

pub mod devnet;
pub mod findings;
pub mod gen_workload;
pub mod init;
pub mod replay;
pub mod run;
pub mod verify_account;
pub mod verify_proof;
pub mod withdrawal;

use anyhow::Context;
use kray_replayer::l1facts::{FileFacts, L1Facts, L1FactsFile};
use std::path::{Path, PathBuf};

/// Where L1 facts come from, as chosen on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct L1Args {
    /// bitcoind JSON-RPC URL with credentials, e.g. http://user:pass@127.0.0.1:18443
    #[arg(long)]
    pub bitcoind: Option<String>,
    /// An L1 facts file (default for replay: l1-facts.json beside the genesis).
    #[arg(long)]
    pub l1_facts: Option<PathBuf>,
}

/// The stderr notice that L1 facts come from a file, which is trusted input (docs/security.md).
fn facts_file_notice(path: &Path) {
    eprintln!(
        "note: L1 deposit facts are taken from {} as trusted input: nothing checks them against Bitcoin; \
         use --bitcoind URL to check them on a node",
        path.display()
    );
}

/// Open the L1 source: a node when `--bitcoind` is given, else the facts file (named on stderr as
/// trusted input), else none.
pub fn open_l1(
    args: &L1Args,
    default_file: Option<&Path>,
    profile: &kray_replayer::Profile,
) -> anyhow::Result<Option<Box<dyn L1Facts>>> {
    if let Some(url) = &args.bitcoind {
        return Ok(Some(Box::new(crate::l1_node::NodeFacts::connect(url, profile)?)));
    }
    let path = args.l1_facts.clone().or_else(|| default_file.filter(|p| p.exists()).map(Path::to_path_buf));
    match path {
        Some(p) => {
            facts_file_notice(&p);
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading L1 facts {}", p.display()))?;
            let f: L1FactsFile =
                serde_json::from_str(&text).with_context(|| format!("L1 facts {} are invalid", p.display()))?;
            Ok(Some(Box::new(FileFacts::from(f))))
        }
        None => Ok(None),
    }
}
