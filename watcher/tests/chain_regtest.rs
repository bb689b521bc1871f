//! The chain follower on a real `bitcoind -regtest`: exact event sequences across an
//! `invalidateblock` reorg, and an anchor tx that is reorged out and mined again.
//!
//! Needs the bitcoind of `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`); skipped, with a message,
//! only when `KRAY_SKIP_BITCOIND=1`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Block, BlockHash, Network, Txid};
use kray_devnet::bitcoind::{free_port, BitcoindProcess};
use kray_devnet::l1tx::{self, KrayPayload};
use kray_devnet::rpc::RpcClient;
use kray_devnet::wallet::{Wallet, DEFAULT_FEE_RATE};
use kray_watcher::chain::{
    BitcoindSource, BlockSink, ChainDriver, ChainError, ChainSource, FollowStatus, Follower, FollowerConfig,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    C(u32, BlockHash),
    D(u32, BlockHash),
}

/// Records events and, per connected block, the anchors it holds.
#[derive(Debug, Default)]
struct Recorder {
    events: Vec<Ev>,
    anchors: Vec<(u32, BlockHash, Txid, [u8; 32])>,
}

impl BlockSink for Recorder {
    type Error = Infallible;

    async fn connect(&mut self, height: u32, hash: BlockHash, block: &Block) -> Result<(), Infallible> {
        for tx in &block.txdata {
            for (_, payload) in l1tx::kray_payloads(tx) {
                if let KrayPayload::Anchor(root) = payload {
                    self.anchors.push((height, hash, tx.compute_txid(), root));
                }
            }
        }
        self.events.push(Ev::C(height, hash));
        Ok(())
    }

    async fn disconnect(&mut self, height: u32, hash: BlockHash) -> Result<(), Infallible> {
        self.anchors.retain(|a| a.1 != hash);
        self.events.push(Ev::D(height, hash));
        Ok(())
    }
}

async fn start_node() -> Option<(BitcoindProcess, RpcClient, BitcoindSource)> {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest bitcoind test");
        return None;
    }
    let node = match BitcoindProcess::start().await {
        Ok(node) => node,
        Err(e) => panic!("cannot start bitcoind: {e}"),
    };
    let rpc = node.rpc_client();
    let source = BitcoindSource::new(&node.rpc_url(), node.rpc_user(), node.rpc_password(), Duration::from_secs(30))
        .expect("source");
    Some((node, rpc, source))
}

async fn hashes(rpc: &RpcClient, from: u32, to: u32) -> Vec<BlockHash> {
    let mut out = Vec::new();
    for h in from..=to {
        out.push(rpc.get_block_hash(u64::from(h)).await.expect("getblockhash"));
    }
    out
}

fn connected(from: u32, hashes: &[BlockHash]) -> Vec<Ev> {
    hashes.iter().zip(from..).map(|(hash, h)| Ev::C(h, *hash)).collect()
}

#[tokio::test]
async fn follows_regtest_through_a_three_block_invalidateblock_reorg() {
    let Some((_node, rpc, source)) = start_node().await else {
        return;
    };
    let miner = Wallet::from_seed(b"chain-regtest-a", Network::Regtest).expect("wallet");
    let other = Wallet::from_seed(b"chain-regtest-b", Network::Regtest).expect("wallet");
    let first = rpc.generate_to_address(10, miner.address()).await.expect("mine 10");

    // The source itself.
    let tip = source.tip().await.expect("tip");
    assert_eq!((tip.height, tip.hash, tip.headers), (10, first[9], 10));
    let h5 = source.header_at(5).await.expect("header 5");
    assert_eq!((h5.hash, h5.prev_hash), (first[4], first[3]));
    assert_eq!(source.header(first[4]).await.expect("header"), h5);
    assert_eq!(source.block(first[4]).await.expect("block").block_hash(), first[4]);
    assert_eq!(source.header_at(11).await, Err(ChainError::HeightNotFound(11)));
    let unknown = BlockHash::from_byte_array([7; 32]);
    assert_eq!(source.block(unknown).await, Err(ChainError::BlockNotFound(unknown)));

    let mut driver = ChainDriver::new(source, Follower::new(FollowerConfig::new(1)).expect("config"));
    let mut rec = Recorder::default();
    let status = driver.sync(&mut rec, 100).await.expect("sync");
    assert_eq!(status, FollowStatus::Synced { height: 10, hash: first[9] });
    assert_eq!(std::mem::take(&mut rec.events), connected(1, &first));

    // Invalidate block 8 (3 deep) and mine a longer branch (4 blocks) to another address.
    rpc.invalidate_block(&first[7]).await.expect("invalidateblock");
    let branch = rpc.generate_to_address(4, other.address()).await.expect("mine branch");
    assert_eq!(hashes(&rpc, 8, 11).await, branch);
    let status = driver.sync(&mut rec, 100).await.expect("sync");
    assert_eq!(status, FollowStatus::Synced { height: 11, hash: branch[3] });
    let mut want = vec![Ev::D(10, first[9]), Ev::D(9, first[8]), Ev::D(8, first[7])];
    want.extend(connected(8, &branch));
    assert_eq!(rec.events, want);
    assert_eq!(driver.deep_reorgs(), 0);
}

#[tokio::test]
async fn an_anchor_in_a_reorged_out_block_is_disconnected_and_connected_again() {
    let Some((_node, rpc, source)) = start_node().await else {
        return;
    };
    let mut wallet = Wallet::from_seed(b"chain-regtest-anchor", Network::Regtest).expect("wallet");
    wallet.fund(&rpc).await.expect("fund");
    let funded = rpc.get_block_count().await.expect("count") as u32;
    let mut driver = ChainDriver::new(source, Follower::new(FollowerConfig::new(funded)).expect("config"));
    let mut rec = Recorder::default();
    driver.sync(&mut rec, 100).await.expect("sync");
    rec.events.clear();

    let root = *sha256::Hash::hash(b"chain regtest root").as_byte_array();
    let tx = l1tx::build_anchor_tx(&wallet, &root, DEFAULT_FEE_RATE, &BTreeSet::new()).expect("anchor tx");
    let txid = rpc.send_raw_transaction(&tx).await.expect("send");
    let mined = wallet.mine(&rpc, 3).await.expect("mine 3");
    let anchor_height = funded + 1;
    driver.sync(&mut rec, 100).await.expect("sync");
    assert_eq!(rec.events, connected(anchor_height, &mined));
    assert_eq!(rec.anchors, vec![(anchor_height, mined[0], txid, root)]);
    rec.events.clear();

    // Reorg the anchor's block out: the tx goes back to the mempool and is mined again on the new branch.
    rpc.invalidate_block(&mined[0]).await.expect("invalidateblock");
    let other = Wallet::from_seed(b"chain-regtest-other", Network::Regtest).expect("wallet");
    let branch = rpc.generate_to_address(4, other.address()).await.expect("mine branch");
    let status = driver.sync(&mut rec, 100).await.expect("sync");
    assert_eq!(status, FollowStatus::Synced { height: anchor_height + 3, hash: branch[3] });
    let mut want =
        vec![Ev::D(anchor_height + 2, mined[2]), Ev::D(anchor_height + 1, mined[1]), Ev::D(anchor_height, mined[0])];
    want.extend(connected(anchor_height, &branch));
    assert_eq!(rec.events, want);
    assert_eq!(rec.anchors, vec![(anchor_height, branch[0], txid, root)], "the anchor is found again in the new block");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = free_port().expect("port");
    let source =
        BitcoindSource::new(&format!("http://127.0.0.1:{port}"), "u", "p", Duration::from_secs(5)).expect("source");
    let err = source.tip().await.expect_err("nothing listens");
    assert!(matches!(err, ChainError::Unreachable(_)), "{err:?}");
    let mut driver = ChainDriver::new(source, Follower::new(FollowerConfig::new(0)).expect("config"));
    let status = driver.poll_once(&mut Recorder::default()).await.expect("poll");
    assert!(matches!(status, FollowStatus::Lagging(_)), "{status:?}");
}
