//! Rune tracking and bridge indexing end to end: the devnet (real `bitcoind -regtest`, a LEGACY bridge)
//! makes three deposits; the watcher's L1 index (SQLite) finds them with their exact rune amounts and
//! L2 recipients; a `theft` (2-of-3 script-path payout) and a `key-path-sweep` injected over the admin
//! API show as bridge spends with their paths and payout outputs; the thief re-deposits, a 3-block
//! `invalidateblock` reorg removes that deposit's rows and un-spends its input, and mining the tx again
//! re-finds it; a restart (store closed, index rebuilt from the same file) continues without duplicates.
//!
//! Needs the bitcoind of `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`); skipped, with a message,
//! only when `KRAY_SKIP_BITCOIND=1`.

use std::time::Duration;

use bitcoin::{BlockHash, Network, OutPoint, Txid};
use kray_devnet::rpc::RpcClient;
use kray_devnet::runes::{self, DepositSpec, RuneLedger};
use kray_devnet::runner::{Devnet, DevnetConfig};
use kray_devnet::wallet::{Wallet, DEFAULT_FEE_RATE};
use kray_replayer::address::account_key_of;
use kray_watcher::bridge::BridgeConfig;
use kray_watcher::chain::{BitcoindSource, FollowStatus, FollowerConfig};
use kray_watcher::l1_index::L1Index;
use kray_watcher::store::{Outpoint, SpendPath, Store};
use serde_json::{json, Value};

const THIEF_SEED: &[u8] = b"kray-devnet-thief";

fn source(bitcoind_url: &str) -> BitcoindSource {
    let rest = bitcoind_url.strip_prefix("http://").expect("http url");
    let (creds, host) = rest.split_once('@').expect("credentials in the url");
    let (user, password) = creds.split_once(':').expect("user:password");
    BitcoindSource::new(&format!("http://{host}"), user, password, Duration::from_secs(30)).expect("source")
}

async fn open(url: &str, dir: &std::path::Path, start: u32, bridge: &BridgeConfig) -> L1Index<BitcoindSource> {
    let store = Store::open_sqlite(dir).await.expect("open store");
    L1Index::open_with_bridge(source(url), store, FollowerConfig::new(start), Some(bridge.clone()))
        .await
        .expect("open index")
}

async fn tip(rpc: &RpcClient) -> (u32, BlockHash) {
    let h = u32::try_from(rpc.get_block_count().await.expect("count")).expect("height");
    (h, rpc.get_block_hash(u64::from(h)).await.expect("hash"))
}

async fn sync(index: &mut L1Index<BitcoindSource>, rpc: &RpcClient) {
    let (height, hash) = tip(rpc).await;
    assert_eq!(index.sync(1_000).await.expect("sync"), FollowStatus::Synced { height, hash });
}

fn op(txid: Txid, vout: u32) -> Outpoint {
    Outpoint { txid: txid.to_string(), vout }
}

async fn post_fault(admin: &str, fault: &str) {
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/faults"))
        .body(json!({ "fault": fault }).to_string())
        .send()
        .await
        .expect("POST /admin/faults");
    assert_eq!(r.status().as_u16(), 202, "{fault}");
}

/// Ticks the devnet (one batch and one block each) until the watcher sees `n` bridge spends.
async fn tick_until_spends(d: &mut Devnet, index: &mut L1Index<BitcoindSource>, n: usize) {
    for _ in 0..8 {
        d.tick().await.expect("tick");
        sync(index, d.rpc()).await;
        if index.store().bridge_spends().await.expect("spends").len() >= n {
            return;
        }
    }
    panic!("the watcher never saw {n} bridge spends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_payouts_sweeps_reorgs_and_restarts_are_indexed() {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest bitcoind test");
        return;
    }
    let devnet_dir = tempfile::tempdir().expect("tempdir");
    let store_dir = tempfile::tempdir().expect("tempdir");
    let config = DevnetConfig {
        data_dir: devnet_dir.path().to_path_buf(),
        users: 3,
        seed: 11,
        legacy_internal_key: true,
        ..DevnetConfig::default()
    };
    let units = u128::from(config.deposit_units);
    let mut d = Devnet::start(config).await.expect("devnet starts");
    let url = d.info.bitcoind_url.clone();
    let rune = d.rune();
    let bridge_cfg = BridgeConfig::from_profile(d.profile()).expect("bridge config from the devnet's profile");
    assert_eq!(bridge_cfg.rune, rune);
    assert_eq!(bridge_cfg.bridge_script, d.bridge().script_pubkey());
    let bridge_hex = hex::encode(bridge_cfg.bridge_script.as_bytes());
    let start = u32::try_from(rune.block).expect("height");
    let mut index = open(&url, store_dir.path(), start, &bridge_cfg).await;
    sync(&mut index, d.rpc()).await;

    // The three deposits, with exact amounts, recipients and confirmations.
    let (tip_height, _) = tip(d.rpc()).await;
    let deposits = index.store().bridge_deposits().await.expect("deposits");
    assert_eq!(deposits.len(), 3, "{deposits:?}");
    let mut recipients: Vec<String> =
        (0..3).map(|i| hex::encode(account_key_of(&d.user(i).expect("user").x_only_public_key().0).0)).collect();
    recipients.sort();
    let mut seen: Vec<String> = deposits.iter().filter_map(|(dep, _)| dep.recipient.clone()).collect();
    seen.sort();
    assert_eq!(seen, recipients);
    for (dep, confirmations) in &deposits {
        assert_eq!((dep.amount, dep.spent_by.as_deref(), dep.from_bridge), (units, None, false));
        assert_eq!(*confirmations, u64::from(tip_height) - dep.height + 1);
        assert!(*confirmations >= 3, "the devnet mined the profile's confirmations");
        let block = d.rpc().get_block_hash(dep.height).await.expect("hash");
        assert_eq!(dep.block_hash, block.to_string());
    }
    assert_eq!(index.store().rune_balance_of_script(&bridge_hex).await.expect("balance"), 3 * units);

    // A 2-of-3 theft, then a single-key key-path sweep, injected at run time.
    let admin = d.info.admin_url.clone();
    let thief = Wallet::from_seed(THIEF_SEED, Network::Regtest).expect("thief").script_pubkey().clone();
    let thief_hex = hex::encode(thief.as_bytes());
    post_fault(&admin, "theft").await;
    tick_until_spends(&mut d, &mut index, 1).await;
    post_fault(&admin, "key-path-sweep").await;
    tick_until_spends(&mut d, &mut index, 2).await;
    let spends = index.store().bridge_spends().await.expect("spends");
    assert_eq!(spends.len(), 2, "{spends:?}");
    let (theft, sweep) = (&spends[0], &spends[1]);
    assert_eq!(theft.path, SpendPath::ScriptPath);
    assert_eq!(theft.leaf_script.as_deref(), Some(hex::encode(d.bridge().leaf_script().as_bytes()).as_str()));
    assert_eq!(sweep.path, SpendPath::KeyPath);
    assert_eq!(sweep.leaf_script, None);
    for s in [theft, sweep] {
        assert_eq!(s.amount, units);
        let to_thief: Vec<_> = s.outputs.iter().filter(|o| o.script_pubkey == thief_hex).collect();
        assert_eq!(to_thief.len(), 1, "{s:?}");
        assert_eq!(to_thief[0].amount, units, "the whole bridge output paid to the thief");
        assert!(to_thief[0].address.as_deref().is_some_and(|a| a.starts_with("bcrt1")));
        let total: u128 = s.outputs.iter().map(|o| o.amount).sum();
        assert_eq!(total, units, "no rune is lost or created by the payout");
        let dep = index.store().deposit(&s.outpoint).await.expect("deposit").expect("row");
        assert_eq!(dep.spent_by.as_deref(), Some(s.spent_by.as_str()));
    }
    assert_eq!(index.store().rune_balance_of_script(&bridge_hex).await.expect("balance"), units);
    assert_eq!(index.store().rune_balance_of_script(&thief_hex).await.expect("balance"), 2 * units);

    // The thief re-deposits what it stole (its own wallet and ledger, rebuilt from the chain).
    let rpc = d.rpc();
    let mut wallet = Wallet::from_seed(THIEF_SEED, Network::Regtest).expect("thief");
    let mut ledger = RuneLedger::new();
    let (h0, _) = tip(rpc).await;
    for h in 1..=h0 {
        let block = rpc.get_block(&rpc.get_block_hash(u64::from(h)).await.expect("hash")).await.expect("block");
        wallet.scan_block(&block, h);
        ledger.apply_block(&block, u64::from(h));
    }
    wallet.fund(rpc).await.expect("fund the thief");
    let recipient = [0x77u8; 32];
    let spec = DepositSpec { rune, amount: units + 1, l2_account: recipient, bridge_value: runes::RUNE_OUTPUT_VALUE };
    let tx = runes::build_deposit_tx(&wallet, &ledger, d.bridge(), &spec, DEFAULT_FEE_RATE).expect("deposit tx");
    let txid = rpc.send_raw_transaction(&tx).await.expect("send");
    let spent_inputs: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
    let mined = rpc.generate_to_address(3, wallet.address()).await.expect("mine");
    sync(&mut index, rpc).await;
    let redeposit = op(txid, runes::DEPOSIT_BRIDGE_VOUT);
    let row = index.store().deposit(&redeposit).await.expect("deposit").expect("found");
    assert_eq!(
        (row.amount, row.recipient.clone(), row.block_hash.clone()),
        (units + 1, Some(hex::encode(recipient)), mined[0].to_string())
    );
    let change =
        index.store().rune_output(&op(txid, runes::DEPOSIT_RUNE_CHANGE_VOUT)).await.expect("row").expect("change");
    assert_eq!(change.amount, units - 1);
    let rune_inputs: Vec<Outpoint> = {
        let mut v = Vec::new();
        for i in &spent_inputs {
            let o = op(i.txid, i.vout);
            if let Some(r) = index.store().rune_output(&o).await.expect("row") {
                assert_eq!(r.spent_by.as_deref(), Some(txid.to_string().as_str()));
                v.push(o);
            }
        }
        v
    };
    assert_eq!(rune_inputs.len(), 2, "both stolen outputs spent");
    assert_eq!(index.store().rune_balance_of_script(&bridge_hex).await.expect("balance"), 2 * units + 1);

    // A 3-block reorg (the deposit's block invalidated, 4 empty blocks) removes it all.
    let _: Value = rpc.call("invalidateblock", json!([mined[0].to_string()])).await.expect("invalidateblock");
    for _ in 0..4 {
        let _: Value =
            rpc.call("generateblock", json!([wallet.address().to_string(), []])).await.expect("generateblock");
    }
    sync(&mut index, rpc).await;
    assert_eq!(index.store().deposit(&redeposit).await.expect("deposit"), None);
    assert_eq!(index.store().rune_output(&op(txid, runes::DEPOSIT_RUNE_CHANGE_VOUT)).await.expect("row"), None);
    for o in &rune_inputs {
        let r = index.store().rune_output(o).await.expect("row").expect("kept");
        assert_eq!((r.spent_by, r.spent_height), (None, None), "un-spent by the reorg");
    }
    assert_eq!(index.store().rune_balance_of_script(&bridge_hex).await.expect("balance"), units);
    assert_eq!(index.store().bridge_deposits().await.expect("deposits").len(), 3);

    // Mined again (from the mempool): re-found at its new height.
    let again = rpc.generate_to_address(1, wallet.address()).await.expect("mine");
    sync(&mut index, rpc).await;
    let row = index.store().deposit(&redeposit).await.expect("deposit").expect("re-found");
    assert_eq!((row.block_hash.clone(), row.amount), (again[0].to_string(), units + 1));
    assert_eq!(index.store().bridge_deposits().await.expect("deposits").len(), 4);

    // Restart: same file, index rebuilt; one more block; nothing lost or repeated.
    let before = (
        index.store().bridge_deposits().await.expect("deposits"),
        index.store().bridge_spends().await.expect("spends"),
        index.store().unspent_rune_outputs_of_script(&bridge_hex).await.expect("outputs"),
    );
    index.store().close().await;
    drop(index);
    let mut index = open(&url, store_dir.path(), start, &bridge_cfg).await;
    rpc.generate_to_address(1, wallet.address()).await.expect("mine");
    sync(&mut index, rpc).await;
    let after_deposits = index.store().bridge_deposits().await.expect("deposits");
    assert_eq!(after_deposits.len(), before.0.len());
    for ((a, ca), (b, cb)) in after_deposits.iter().zip(&before.0) {
        assert_eq!((a, *ca), (b, cb + 1), "one more confirmation each");
    }
    assert_eq!(index.store().bridge_spends().await.expect("spends"), before.1);
    assert_eq!(index.store().unspent_rune_outputs_of_script(&bridge_hex).await.expect("outputs"), before.2);
    assert_eq!(index.store().rune_balance_of_script(&bridge_hex).await.expect("balance"), 2 * units + 1);
    let (h, _) = tip(rpc).await;
    eprintln!("indexed to {h}: {} deposits, {} bridge spends", after_deposits.len(), before.1.len());
    index.store().close().await;
}
