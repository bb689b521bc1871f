//! Unit tests of the follower and driver on a [`ScriptedChain`].

use std::convert::Infallible;

use bitcoin::{Block, BlockHash};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    C(u32, BlockHash),
    D(u32, BlockHash),
    Deep(u32, u32),
}

#[derive(Debug, Default)]
struct Recorder {
    events: Vec<Ev>,
}

impl Recorder {
    fn take(&mut self) -> Vec<Ev> {
        std::mem::take(&mut self.events)
    }
}

impl BlockSink for Recorder {
    type Error = Infallible;

    async fn connect(&mut self, height: u32, hash: BlockHash, block: &Block) -> Result<(), Infallible> {
        assert_eq!(block.block_hash(), hash);
        self.events.push(Ev::C(height, hash));
        Ok(())
    }

    async fn disconnect(&mut self, height: u32, hash: BlockHash) -> Result<(), Infallible> {
        self.events.push(Ev::D(height, hash));
        Ok(())
    }

    async fn reorg_beyond_finality(&mut self, fork_height: u32, depth: u32) -> Result<(), Infallible> {
        self.events.push(Ev::Deep(fork_height, depth));
        Ok(())
    }
}

fn driver(chain: &ScriptedChain, config: FollowerConfig) -> ChainDriver<ScriptedChain> {
    ChainDriver::new(chain.clone(), Follower::new(config).expect("config"))
}

fn connected(chain: &ScriptedChain, from: u32, to: u32) -> Vec<Ev> {
    (from..=to).map(|h| Ev::C(h, chain.hash_at(h).expect("hash"))).collect()
}

async fn sync<S: ChainSource>(d: &mut ChainDriver<S>, rec: &mut Recorder) -> FollowStatus {
    d.sync(rec, 1_000).await.expect("sync")
}

fn synced(chain: &ScriptedChain) -> FollowStatus {
    let height = chain.height();
    FollowStatus::Synced { height, hash: chain.hash_at(height).expect("tip") }
}

#[tokio::test]
async fn linear_growth_from_the_start_height() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let mut d = driver(&chain, FollowerConfig::new(3));
    let mut rec = Recorder::default();
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 3, 10));
    assert_eq!(d.poll_once(&mut rec).await.expect("poll"), synced(&chain));
    assert!(rec.take().is_empty(), "an unchanged tip gives no events");
    chain.extend(2);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 11, 12));
    assert_eq!(d.follower().header_count(), 10);
}

#[tokio::test]
async fn catch_up_proceeds_in_bounded_steps() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let config = FollowerConfig { max_blocks_per_update: 4, ..FollowerConfig::new(0) };
    let mut d = driver(&chain, config);
    let mut rec = Recorder::default();
    assert_eq!(d.poll_once(&mut rec).await.expect("poll"), FollowStatus::CatchingUp { height: 3, target: 10 });
    assert_eq!(d.poll_once(&mut rec).await.expect("poll"), FollowStatus::CatchingUp { height: 7, target: 10 });
    assert_eq!(d.poll_once(&mut rec).await.expect("poll"), synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 0, 10));
}

#[tokio::test]
async fn waits_before_the_start_height() {
    let chain = ScriptedChain::new();
    chain.extend(2);
    let mut d = driver(&chain, FollowerConfig::new(5));
    let mut rec = Recorder::default();
    assert_eq!(d.poll_once(&mut rec).await.expect("poll"), FollowStatus::BeforeStart { tip: 2 });
    chain.extend(3);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 5, 5));
}

#[tokio::test]
async fn one_block_reorg() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let mut d = driver(&chain, FollowerConfig::new(1));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    let old = chain.hash_at(10).expect("tip");
    let new = chain.fork(1, 1);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), vec![Ev::D(10, old), Ev::C(10, new[0])]);
    assert_eq!(d.deep_reorgs(), 0);
}

#[tokio::test]
async fn three_block_reorg_to_a_longer_branch() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let mut d = driver(&chain, FollowerConfig::new(1));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    let old: Vec<BlockHash> = (8..=10).map(|h| chain.hash_at(h).expect("hash")).collect();
    chain.fork(3, 4);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    let mut want = vec![Ev::D(10, old[2]), Ev::D(9, old[1]), Ev::D(8, old[0])];
    want.extend(connected(&chain, 8, 11));
    assert_eq!(rec.take(), want);
    // The cache now holds the new branch.
    let cached: Vec<BlockHash> = d.follower().headers().map(|h| h.hash).collect();
    assert_eq!(cached, chain.headers_from(1).iter().map(|h| h.hash).collect::<Vec<_>>());
}

#[tokio::test]
async fn dropped_blocks_are_disconnected_tip_first() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let mut d = driver(&chain, FollowerConfig::new(1));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    let (h9, h10) = (chain.hash_at(9).expect("9"), chain.hash_at(10).expect("10"));
    chain.drop_blocks(2);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), vec![Ev::D(10, h10), Ev::D(9, h9)]);
    assert_eq!(d.follower().tip().map(|t| t.height), Some(8));
}

#[tokio::test]
async fn reorg_deeper_than_finality_is_reported_and_followed() {
    let chain = ScriptedChain::new();
    chain.extend(20);
    let config = FollowerConfig { finality_depth: 6, ..FollowerConfig::new(1) };
    let mut d = driver(&chain, config);
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    let old: Vec<BlockHash> = (13..=20).rev().map(|h| chain.hash_at(h).expect("hash")).collect();
    chain.fork(8, 9);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    let mut want = vec![Ev::Deep(12, 8)];
    want.extend(old.iter().zip((13..=20).rev()).map(|(hash, h)| Ev::D(h, *hash)));
    want.extend(connected(&chain, 13, 21));
    assert_eq!(rec.take(), want);
    assert_eq!(d.deep_reorgs(), 1);
    // Still following.
    chain.extend(1);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 22, 22));

    // A reorg of exactly the finality depth is an ordinary one.
    chain.fork(6, 6);
    sync(&mut d, &mut rec).await;
    assert!(!rec.take().iter().any(|e| matches!(e, Ev::Deep(..))));
    assert_eq!(d.deep_reorgs(), 1);
}

#[tokio::test]
async fn reorg_across_a_restart_from_stored_headers() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let mut d = driver(&chain, FollowerConfig::new(2));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    let stored: Vec<HeaderInfo> = d.follower().headers().copied().collect();
    drop(d);

    // While the guardian is down, the chain reorgs 3 deep and grows.
    let old: Vec<BlockHash> = (8..=10).rev().map(|h| chain.hash_at(h).expect("hash")).collect();
    chain.fork(3, 5);
    let follower = Follower::from_headers(FollowerConfig::new(2), stored).expect("stored headers");
    assert_eq!(follower.tip().map(|t| t.height), Some(10));
    let mut d = ChainDriver::new(chain.clone(), follower);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    let mut want: Vec<Ev> = old.iter().zip((8..=10).rev()).map(|(hash, h)| Ev::D(h, *hash)).collect();
    want.extend(connected(&chain, 8, 12));
    assert_eq!(rec.take(), want, "only the reorged blocks move; blocks 2..=7 are not connected again");
}

#[tokio::test]
async fn unreachable_source_is_a_lagging_status_then_resumes() {
    let chain = ScriptedChain::new();
    chain.extend(5);
    let mut d = driver(&chain, FollowerConfig::new(1));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    chain.set_unreachable(true);
    chain.extend(3);
    let status = d.poll_once(&mut rec).await.expect("poll");
    assert!(matches!(status, FollowStatus::Lagging(LagReason::Unreachable(_))), "{status:?}");
    assert!(rec.take().is_empty());
    chain.set_unreachable(false);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 6, 8));
}

#[tokio::test]
async fn headers_ahead_of_blocks_is_lagging_without_events() {
    let chain = ScriptedChain::new();
    chain.extend(5);
    let mut d = driver(&chain, FollowerConfig::new(1));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    chain.extend(2);
    chain.set_headers_ahead(4);
    let status = d.poll_once(&mut rec).await.expect("poll");
    assert_eq!(status, FollowStatus::Lagging(LagReason::HeadersAhead { blocks: 7, headers: 11 }));
    assert!(rec.take().is_empty());
    chain.set_headers_ahead(0);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take(), connected(&chain, 6, 7));
}

#[tokio::test]
async fn header_cache_stays_bounded_and_a_reorg_below_it_is_an_error() {
    let chain = ScriptedChain::new();
    chain.extend(1_500);
    let mut d = driver(&chain, FollowerConfig::new(0));
    let mut rec = Recorder::default();
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take().len(), 1_501);
    assert_eq!(d.follower().header_count(), MIN_HEADER_CAPACITY);
    let oldest = d.follower().headers().next().map(|h| h.height);
    assert_eq!(oldest, Some(1_500 - 1_007));
    chain.extend(10);
    sync(&mut d, &mut rec).await;
    assert_eq!(rec.take(), connected(&chain, 1_501, 1_510));
    assert_eq!(d.follower().header_count(), MIN_HEADER_CAPACITY);

    chain.fork(1_100, 1_101);
    let err = d.poll_once(&mut rec).await.expect_err("deeper than the cache");
    assert!(matches!(err, DriverError::Follow(FollowError::ReorgBeyondCache { .. })), "{err}");
    assert!(rec.take().is_empty());
}

#[test]
fn config_is_validated() {
    let small = FollowerConfig { header_capacity: 100, ..FollowerConfig::new(0) };
    assert!(matches!(Follower::new(small), Err(FollowError::Config(_))));
    let deep = FollowerConfig { finality_depth: 2_000, ..FollowerConfig::new(0) };
    assert!(matches!(Follower::new(deep), Err(FollowError::Config(_))));
    let zero = FollowerConfig { max_blocks_per_update: 0, ..FollowerConfig::new(0) };
    assert!(matches!(Follower::new(zero), Err(FollowError::Config(_))));
}

#[test]
fn stored_headers_must_form_a_chain() {
    let chain = ScriptedChain::new();
    chain.extend(5);
    let mut headers = chain.headers_from(1);
    headers.remove(2);
    let err = Follower::from_headers(FollowerConfig::new(1), headers).expect_err("gap");
    assert!(matches!(err, FollowError::BadStoredHeaders(_)), "{err}");
}

#[tokio::test]
async fn a_bad_update_changes_nothing() {
    let chain = ScriptedChain::new();
    chain.extend(5);
    let mut follower = Follower::from_headers(FollowerConfig::new(1), chain.headers_from(1)).expect("headers");
    let before: Vec<HeaderInfo> = follower.headers().copied().collect();
    // A two-block branch on block 3 whose second block does not link to the first.
    let other = ScriptedChain::new();
    other.extend(8);
    let b4 = chain.fork(2, 1)[0];
    let good = chain.block(b4).await.expect("block 4");
    let bad = other.block(other.hash_at(5).expect("5")).await.expect("block");
    let base = Some((3, chain.hash_at(3).expect("3")));
    let err = follower.apply(Update { base, blocks: vec![(4, good), (5, bad)] }).expect_err("unlinked");
    assert!(matches!(err, FollowError::Disconnected(_)), "{err}");
    assert_eq!(follower.headers().copied().collect::<Vec<_>>(), before);
    // An unknown base is refused too.
    let err = follower.apply(Update { base: Some((3, other.hash_at(3).expect("3"))), blocks: Vec::new() });
    assert!(matches!(err, Err(FollowError::Disconnected(_))));
    assert_eq!(follower.headers().copied().collect::<Vec<_>>(), before);
}

/// A scripted chain whose `block` fails once for one hash, as when the node reorgs mid-fetch.
struct Flaky {
    chain: ScriptedChain,
    fail: std::sync::Mutex<Option<BlockHash>>,
}

impl ChainSource for Flaky {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        self.chain.tip().await
    }

    async fn header_at(&self, height: u32) -> Result<HeaderInfo, ChainError> {
        self.chain.header_at(height).await
    }

    async fn header(&self, hash: BlockHash) -> Result<HeaderInfo, ChainError> {
        self.chain.header(hash).await
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, ChainError> {
        let fail = self.fail.lock().expect("lock").take_if(|h| *h == hash);
        if fail.is_some() {
            return Err(ChainError::BlockNotFound(hash));
        }
        self.chain.block(hash).await
    }
}

#[tokio::test]
async fn a_block_missing_mid_reorg_gives_no_events_and_a_retry() {
    let chain = ScriptedChain::new();
    chain.extend(10);
    let flaky = Flaky { chain: chain.clone(), fail: std::sync::Mutex::new(None) };
    let mut d = ChainDriver::new(flaky, Follower::new(FollowerConfig::new(1)).expect("config"));
    let mut rec = Recorder::default();
    sync(&mut d, &mut rec).await;
    rec.take();
    let before: Vec<HeaderInfo> = d.follower().headers().copied().collect();
    let new = chain.fork(3, 4);
    *d.source().fail.lock().expect("lock") = Some(new[2]);
    let status = d.poll_once(&mut rec).await.expect("poll");
    assert!(matches!(status, FollowStatus::Retry(_)), "{status:?}");
    assert!(rec.take().is_empty(), "never half a reorg");
    assert_eq!(d.follower().headers().copied().collect::<Vec<_>>(), before);
    assert_eq!(sync(&mut d, &mut rec).await, synced(&chain));
    assert_eq!(rec.take().len(), 3 + 4);
}

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

struct FailingSink;

impl BlockSink for FailingSink {
    type Error = DiskFull;

    async fn connect(&mut self, _: u32, _: BlockHash, _: &Block) -> Result<(), DiskFull> {
        Err(DiskFull)
    }

    async fn disconnect(&mut self, _: u32, _: BlockHash) -> Result<(), DiskFull> {
        Err(DiskFull)
    }
}

#[tokio::test]
async fn a_sink_error_is_returned() {
    let chain = ScriptedChain::new();
    chain.extend(3);
    let mut d = driver(&chain, FollowerConfig::new(1));
    let err = d.poll_once(&mut FailingSink).await.expect_err("sink fails");
    assert!(matches!(err, DriverError::Sink(DiskFull)), "{err}");
}
