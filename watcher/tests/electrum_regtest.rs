//! The L1 index through the Electrum chain source on a real `bitcoind -regtest` and a real electrs:
//! the anchor tests of `l1_index_regtest.rs` (anchors found with heights and block hashes, a 3-block
//! `invalidateblock` reorg that removes the newest anchor, its re-discovery when mined again, a
//! restart), with the anchors found through the watched funding address and every transaction
//! proven against its header by merkle branch.
//!
//! Needs electrs: `ELECTRS_EXE`, else the cache of `scripts/install-electrs.sh`
//! (`${KRAY_ELECTRS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kray-guardian}/electrs-0.10.10/electrs`).
//! Skipped, with a message, when electrs is not installed or `KRAY_SKIP_BITCOIND=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{BlockHash, Network, Txid};
use kray_devnet::bitcoind::{free_port, BitcoindOptions, BitcoindProcess};
use kray_devnet::l1tx;
use kray_devnet::rpc::RpcClient;
use kray_devnet::wallet::{Wallet, DEFAULT_FEE_RATE};
use kray_watcher::chain::electrum::{ElectrumConfig, ElectrumSource, WatchSet};
use kray_watcher::chain::{ChainError, ChainSource, FollowStatus, FollowerConfig, LagReason};
use kray_watcher::l1_index::L1Index;
use kray_watcher::store::{Anchor, Cursor, Outpoint, Store, CHAIN_STAGE};

/// The electrs version `scripts/install-electrs.sh` installs by default.
const ELECTRS_VERSION: &str = "0.10.10";

fn find_electrs() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(exe) = non_empty("ELECTRS_EXE") {
        return Some(PathBuf::from(exe));
    }
    let root = non_empty("KRAY_ELECTRS_CACHE")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("kray-guardian")))
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache").join("kray-guardian")))?;
    let exe = root.join(format!("electrs-{ELECTRS_VERSION}")).join("electrs");
    exe.is_file().then_some(exe)
}

/// A running electrs, killed on drop.
struct Electrs {
    child: Child,
    command: Command,
    _dir: tempfile::TempDir,
    log: PathBuf,
    url: String,
}

impl Electrs {
    fn start(exe: &Path, node: &BitcoindProcess, p2p_port: u16) -> Electrs {
        let dir = tempfile::tempdir().expect("electrs dir");
        // electrs 0.10 authenticates with a cookie file; its content is `user:password`.
        let cookie = dir.path().join("cookie");
        std::fs::write(&cookie, format!("{}:{}", node.rpc_user(), node.rpc_password())).expect("cookie");
        let port = free_port().expect("free port");
        let log = dir.path().join("electrs.log");
        let mut command = Command::new(exe);
        command
            .arg("--skip-default-conf-files")
            .args(["--network", "regtest"])
            .arg("--db-dir")
            .arg(dir.path().join("db"))
            .arg("--daemon-dir")
            .arg(node.datadir())
            .arg("--cookie-file")
            .arg(&cookie)
            .args(["--daemon-rpc-addr", &format!("127.0.0.1:{}", node.rpc_port())])
            .args(["--daemon-p2p-addr", &format!("127.0.0.1:{p2p_port}")])
            .args(["--electrum-rpc-addr", &format!("127.0.0.1:{port}")])
            .args(["--wait-duration-secs", "1", "--jsonrpc-timeout-secs", "10", "--log-filters", "INFO"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = spawn(&mut command, &log);
        Electrs { child, command, _dir: dir, log, url: format!("tcp://127.0.0.1:{port}") }
    }

    /// Kills the server (its port refuses connections from then on).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and database.
    fn restart(&mut self) {
        self.stop();
        self.child = spawn(&mut self.command, &self.log);
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Electrs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(command: &mut Command, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    command.stderr(out).spawn().unwrap_or_else(|e| panic!("cannot start electrs: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn anchor(txid: Txid, height: u32, block: BlockHash, root: &[u8; 32]) -> Anchor {
    Anchor {
        outpoint: Outpoint { txid: txid.to_string(), vout: 0 },
        height: u64::from(height),
        block_hash: block.to_string(),
        root: hex(root),
    }
}

async fn send_anchor(rpc: &RpcClient, wallet: &Wallet, root: &[u8; 32]) -> Txid {
    let tx = l1tx::build_anchor_tx(wallet, root, DEFAULT_FEE_RATE, &BTreeSet::new()).expect("anchor tx");
    rpc.send_raw_transaction(&tx).await.expect("send anchor")
}

async fn mine_empty(rpc: &RpcClient, to: &Wallet) -> BlockHash {
    let out: serde_json::Value =
        rpc.call("generateblock", serde_json::json!([to.address().to_string(), []])).await.expect("generateblock");
    out["hash"].as_str().expect("hash").parse().expect("block hash")
}

async fn height(rpc: &RpcClient) -> u32 {
    u32::try_from(rpc.get_block_count().await.expect("count")).expect("height")
}

fn source(electrs: &Electrs, watch: &WatchSet) -> ElectrumSource {
    let config = ElectrumConfig { timeout: Duration::from_secs(30), ..ElectrumConfig::default() };
    ElectrumSource::new(&electrs.url, watch.clone(), config).expect("electrum source")
}

/// Waits (bounded) until electrs serves the node's best block: electrs indexes asynchronously.
async fn wait_for_electrs(electrs: &Electrs, source: &ElectrumSource, rpc: &RpcClient) {
    let want = rpc.get_block_hash(u64::from(height(rpc).await)).await.expect("tip hash");
    for _ in 0..1_200 {
        if matches!(source.tip().await, Ok(tip) if tip.hash == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("electrs never reached the node's tip {want}; its log:\n{}", electrs.log_tail());
}

async fn open(source: ElectrumSource, dir: &Path, start: u32) -> L1Index<ElectrumSource> {
    let store = Store::open_sqlite(dir).await.expect("open store");
    L1Index::open(source, store, FollowerConfig::new(start)).await.expect("open index")
}

async fn assert_synced_to_node(index: &mut L1Index<ElectrumSource>, electrs: &Electrs, rpc: &RpcClient) {
    let tip_height = height(rpc).await;
    let tip_hash = rpc.get_block_hash(u64::from(tip_height)).await.expect("tip hash");
    let probe = ElectrumSource::new(&electrs.url, WatchSet::new(), ElectrumConfig::default()).expect("probe");
    wait_for_electrs(electrs, &probe, rpc).await;
    let status = index.sync(100).await.expect("sync");
    assert_eq!(status, FollowStatus::Synced { height: tip_height, hash: tip_hash });
    let cursor = index.store().cursor(CHAIN_STAGE).await.expect("cursor");
    let want = Cursor { stage: CHAIN_STAGE.into(), height: u64::from(tip_height), hash: tip_hash.to_string() };
    assert_eq!(cursor, Some(want));
}

#[tokio::test]
async fn anchors_are_indexed_through_electrs_across_a_reorg_and_a_restart() {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest electrs test");
        return;
    }
    let Some(exe) = find_electrs() else {
        eprintln!(
            "electrs not installed (set ELECTRS_EXE or run `bash scripts/install-electrs.sh`): \
             skipping the Electrum regtest test"
        );
        return;
    };
    // electrs 0.10 reads blocks over bitcoind's P2P port.
    let p2p_port = free_port().expect("free port");
    let options = BitcoindOptions {
        extra_args: vec!["-listen=1".into(), "-bind=127.0.0.1".into(), format!("-port={p2p_port}")],
        ..BitcoindOptions::default()
    };
    let node = BitcoindProcess::start_with(options).await.unwrap_or_else(|e| panic!("cannot start bitcoind: {e}"));
    let rpc = node.rpc_client();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wallet = Wallet::from_seed(b"electrum-regtest", Network::Regtest).expect("wallet");
    let other = Wallet::from_seed(b"electrum-regtest-other", Network::Regtest).expect("wallet");
    wallet.fund(&rpc).await.expect("fund");
    let start = height(&rpc).await;
    let mut electrs = Electrs::start(&exe, &node, p2p_port);

    // The guardian watches the federation's anchor-funding address: the anchors spend from it.
    let watch = WatchSet::new();
    watch.add_address(wallet.address());
    let src = source(&electrs, &watch);
    let mut index = open(src.clone(), dir.path(), start).await;
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), vec![]);

    // Three anchors in three blocks, then two more blocks: the newest anchor is 3 deep.
    let roots: Vec<[u8; 32]> = (0u8..4).map(|i| *sha256::Hash::hash(&[b'e', i]).as_byte_array()).collect();
    let mut want = Vec::new();
    for root in &roots[..3] {
        let txid = send_anchor(&rpc, &wallet, root).await;
        let mined = wallet.mine(&rpc, 1).await.expect("mine");
        want.push(anchor(txid, height(&rpc).await, mined[0], root));
    }
    let newest_block: BlockHash = want[2].block_hash.parse().expect("hash");
    let newest_txid: Txid = want[2].outpoint.txid.parse().expect("txid");
    wallet.mine(&rpc, 2).await.expect("mine 2");
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    // The partial block of an anchor's block: the real header, only watched transactions, each
    // proven; here the coinbase to the watched address and the anchor.
    let header = src.header_at(u32::try_from(want[2].height).expect("height")).await.expect("header");
    assert_eq!(header.hash, newest_block);
    let block = src.block(newest_block).await.expect("partial block");
    assert_eq!(block.block_hash(), newest_block);
    assert!(block.txdata.iter().any(|t| t.compute_txid() == newest_txid));
    let full = rpc.get_block(&newest_block).await.expect("full block");
    assert!(block.txdata.iter().all(|t| full.txdata.contains(t)));
    let watched = wallet.script_pubkey();
    for tx in &block.txdata {
        let pays = tx.output.iter().any(|o| &o.script_pubkey == watched);
        assert!(pays, "every transaction of the partial block touches the watched address");
    }

    // Reorg the newest anchor's block out (3 blocks) and mine a longer branch of empty blocks: the
    // anchor tx waits in the mempool and its row is gone.
    let fork = u32::try_from(want[2].height).expect("height") - 1;
    rpc.invalidate_block(&newest_block).await.expect("invalidateblock");
    for _ in 0..4 {
        mine_empty(&rpc, &other).await;
    }
    assert_eq!(height(&rpc).await, fork + 4);
    rpc.get_mempool_entry(&newest_txid).await.expect("the anchor tx is back in the mempool");
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want[..2].to_vec());
    assert_eq!(index.deep_reorgs(), 0);

    // Mine it again: found at its new height, once.
    let remined = wallet.mine(&rpc, 1).await.expect("mine");
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    want[2] = anchor(newest_txid, fork + 5, remined[0], &roots[2]);
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    // Restart on a fresh source and connection: nothing lost, nothing repeated, and it keeps following.
    index.store().close().await;
    drop(index);
    let mut index = open(source(&electrs, &watch), dir.path(), start).await;
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want);
    wallet.sync_utxo_set(&rpc).await.expect("sync wallet");
    let txid = send_anchor(&rpc, &wallet, &roots[3]).await;
    let mined = wallet.mine(&rpc, 1).await.expect("mine");
    want.push(anchor(txid, fork + 6, mined[0], &roots[3]));
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    // The server goes away: the source reports it unreachable (transient), and once the server is
    // back on the same port the same source reconnects by itself and the index keeps following.
    let src = source(&electrs, &watch);
    src.tip().await.expect("tip before the outage");
    electrs.stop();
    let err = src.tip().await.expect_err("electrs is down");
    assert!(matches!(err, ChainError::Unreachable(_)) && err.is_transient(), "{err:?}");
    let status = index.poll_once().await.expect("a poll while electrs is down");
    assert!(matches!(status, FollowStatus::Lagging(LagReason::Unreachable(_))), "{status:?}");
    electrs.restart();
    let mined = wallet.mine(&rpc, 1).await.expect("mine");
    wait_for_electrs(&electrs, &src, &rpc).await;
    assert_synced_to_node(&mut index, &electrs, &rpc).await;
    assert_eq!(index.store().cursor(CHAIN_STAGE).await.expect("cursor").map(|c| c.hash), Some(mined[0].to_string()));
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    // electrs does not index OP_RETURN outputs: watching only the exact anchor script finds nothing,
    // which is why the funding address is watched.
    let only_anchor = WatchSet::new();
    only_anchor.add_anchor_root(&roots[0]);
    let blind = source(&electrs, &only_anchor);
    let first = blind.header_at(u32::try_from(want[0].height).expect("height")).await.expect("header");
    assert_eq!(first.hash.to_string(), want[0].block_hash);
    assert_eq!(blind.block(first.hash).await.expect("partial block").txdata, vec![]);
}
