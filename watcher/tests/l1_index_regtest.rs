//! The L1 index end to end on a real `bitcoind -regtest` and a SQLite store: anchors found with their
//! heights and block hashes, a 3-block `invalidateblock` reorg that removes the newest anchor and its
//! re-discovery when it is mined again, and a restart from the same file that neither loses nor
//! repeats a row.
//!
//! Needs the bitcoind of `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`); skipped, with a message,
//! only when `KRAY_SKIP_BITCOIND=1`.

use std::collections::BTreeSet;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{BlockHash, Network, Txid};
use kray_devnet::bitcoind::BitcoindProcess;
use kray_devnet::l1tx;
use kray_devnet::rpc::RpcClient;
use kray_devnet::wallet::{Wallet, DEFAULT_FEE_RATE};
use kray_watcher::chain::{BitcoindSource, FollowStatus, FollowerConfig};
use kray_watcher::l1_index::L1Index;
use kray_watcher::store::{Anchor, Cursor, Outpoint, Store, CHAIN_STAGE};

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

/// Broadcasts an anchor for `root` from `wallet` (not mined).
async fn send_anchor(rpc: &RpcClient, wallet: &Wallet, root: &[u8; 32]) -> Txid {
    let tx = l1tx::build_anchor_tx(wallet, root, DEFAULT_FEE_RATE, &BTreeSet::new()).expect("anchor tx");
    rpc.send_raw_transaction(&tx).await.expect("send anchor")
}

/// Mines one block with no transaction besides the coinbase (`generateblock` with an empty list).
async fn mine_empty(rpc: &RpcClient, to: &Wallet) -> BlockHash {
    let out: serde_json::Value =
        rpc.call("generateblock", serde_json::json!([to.address().to_string(), []])).await.expect("generateblock");
    out["hash"].as_str().expect("hash").parse().expect("block hash")
}

async fn height(rpc: &RpcClient) -> u32 {
    u32::try_from(rpc.get_block_count().await.expect("count")).expect("height")
}

async fn open(node: &BitcoindProcess, dir: &std::path::Path, start: u32) -> L1Index<BitcoindSource> {
    let source = BitcoindSource::new(&node.rpc_url(), node.rpc_user(), node.rpc_password(), Duration::from_secs(30))
        .expect("source");
    let store = Store::open_sqlite(dir).await.expect("open store");
    L1Index::open(source, store, FollowerConfig::new(start)).await.expect("open index")
}

async fn assert_synced_to_node(index: &mut L1Index<BitcoindSource>, rpc: &RpcClient) {
    let tip_height = height(rpc).await;
    let tip_hash = rpc.get_block_hash(u64::from(tip_height)).await.expect("tip hash");
    let status = index.sync(100).await.expect("sync");
    assert_eq!(status, FollowStatus::Synced { height: tip_height, hash: tip_hash });
    let cursor = index.store().cursor(CHAIN_STAGE).await.expect("cursor");
    let want = Cursor { stage: CHAIN_STAGE.into(), height: u64::from(tip_height), hash: tip_hash.to_string() };
    assert_eq!(cursor, Some(want));
}

#[tokio::test]
async fn anchors_are_indexed_through_a_reorg_and_a_restart() {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest bitcoind test");
        return;
    }
    let node = BitcoindProcess::start().await.unwrap_or_else(|e| panic!("cannot start bitcoind: {e}"));
    let rpc = node.rpc_client();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wallet = Wallet::from_seed(b"l1-index-regtest", Network::Regtest).expect("wallet");
    let other = Wallet::from_seed(b"l1-index-regtest-other", Network::Regtest).expect("wallet");
    wallet.fund(&rpc).await.expect("fund");
    let start = height(&rpc).await;

    let mut index = open(&node, dir.path(), start).await;
    assert_synced_to_node(&mut index, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), vec![]);

    // Three anchors in three blocks, then two more blocks: the newest anchor is 3 deep.
    let roots: Vec<[u8; 32]> = (0u8..4).map(|i| *sha256::Hash::hash(&[b'r', i]).as_byte_array()).collect::<Vec<_>>();
    let mut want = Vec::new();
    for root in &roots[..3] {
        let txid = send_anchor(&rpc, &wallet, root).await;
        let mined = wallet.mine(&rpc, 1).await.expect("mine");
        want.push(anchor(txid, height(&rpc).await, mined[0], root));
    }
    let newest_block: BlockHash = want[2].block_hash.parse().expect("hash");
    let newest_txid: Txid = want[2].outpoint.txid.parse().expect("txid");
    wallet.mine(&rpc, 2).await.expect("mine 2");
    assert_synced_to_node(&mut index, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    // Reorg the newest anchor's block out (3 blocks) and mine a longer branch of empty blocks: the
    // anchor tx waits in the mempool and its row is gone.
    let fork = u32::try_from(want[2].height).expect("height") - 1;
    rpc.invalidate_block(&newest_block).await.expect("invalidateblock");
    for _ in 0..4 {
        mine_empty(&rpc, &other).await;
    }
    assert_eq!(height(&rpc).await, fork + 4);
    rpc.get_mempool_entry(&newest_txid).await.expect("the anchor tx is back in the mempool");
    assert_synced_to_node(&mut index, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want[..2].to_vec());
    assert_eq!(index.deep_reorgs(), 0);

    // Mine it again: found at its new height, once.
    let remined = wallet.mine(&rpc, 1).await.expect("mine");
    assert_synced_to_node(&mut index, &rpc).await;
    want[2] = anchor(newest_txid, fork + 5, remined[0], &roots[2]);
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    // Restart: drop the index, reopen the same file, keep following.
    let before = index.store().cursor(CHAIN_STAGE).await.expect("cursor").expect("cursor set");
    let headers_before = index.store().header_count().await.expect("count");
    index.store().close().await;
    drop(index);
    let mut index = open(&node, dir.path(), start).await;
    let tip = index.follower().tip().expect("resumed follower");
    assert_eq!((u64::from(tip.height), tip.hash.to_string()), (before.height, before.hash.clone()));
    assert_eq!(index.follower().header_count() as u64, headers_before);
    // Nothing new on L1: nothing to do, nothing repeated.
    assert_synced_to_node(&mut index, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want);

    wallet.sync_utxo_set(&rpc).await.expect("sync wallet");
    let txid = send_anchor(&rpc, &wallet, &roots[3]).await;
    let mined = wallet.mine(&rpc, 1).await.expect("mine");
    want.push(anchor(txid, fork + 6, mined[0], &roots[3]));
    assert_synced_to_node(&mut index, &rpc).await;
    assert_eq!(index.store().anchors().await.expect("anchors"), want);
    let after = index.store().cursor(CHAIN_STAGE).await.expect("cursor").expect("cursor set");
    assert_eq!(after.height, before.height + 1, "the cursor continues from where it stopped");
    assert_eq!(index.store().header_count().await.expect("count"), headers_before + 1);
}
