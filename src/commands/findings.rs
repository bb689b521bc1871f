//! `kray-guardian findings list|resolve`: the operator's view of the store's findings, and the way
//! to resolve one by hand (e.g. a `deep-reorg`, which stops acting until an operator resolves it).

use anyhow::Context;
use kray_watcher::store::Store;

use crate::config::RunArgs;

/// Arguments of `findings`.
#[derive(clap::Args, Debug)]
pub struct FindingsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: FindingsAction,
    /// The guardian's configuration (its store).
    #[command(flatten)]
    pub run: RunArgs,
}

/// `findings` actions.
#[derive(clap::Subcommand, Debug)]
pub enum FindingsAction {
    /// Print the findings as JSON lines (open ones only unless `--all`).
    List {
        /// Include resolved findings.
        #[arg(long)]
        all: bool,
    },
    /// Mark a finding resolved (the daemon picks it up on its next tick).
    Resolve {
        /// The finding's id, as `findings list` prints it.
        id: String,
    },
}

/// Runs `findings`: exit 0, or 4 when `resolve` names no open finding.
pub fn run(args: &FindingsArgs) -> anyhow::Result<u8> {
    let cfg = args.run.load_config_for_tools()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("async runtime")?;
    rt.block_on(async {
        let store = Store::open(&cfg.data_dir, cfg.database_url.as_ref().map(|s| s.expose()))
            .await
            .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
        let code = match &args.action {
            FindingsAction::List { all } => {
                for f in store.findings(!all).await? {
                    let line = serde_json::json!({"id": f.id, "kind": f.kind, "severity": f.severity.as_str(),
                        "batch_id": f.batch_id, "outpoint": f.outpoint.as_ref().map(ToString::to_string),
                        "first_seen": f.first_seen, "resolved_at": f.resolved_at,
                        "deadline_height": f.deadline_height, "evidence": f.evidence});
                    println!("{line}");
                }
                0
            }
            FindingsAction::Resolve { id } => {
                if store.resolve_finding(id, crate::daemon::unix_now()).await? {
                    println!("resolved {id}");
                    0
                } else {
                    eprintln!("no open finding {id:?}");
                    4
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}
