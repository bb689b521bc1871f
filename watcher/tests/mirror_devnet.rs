//! The batch mirror against a real devnet (regtest bitcoind, reference sequencer, publication API)
//! with an equivocation (batch 3) and a withheld batch (batch 4): mirror A stores every published
//! batch byte-exact, keeps both copies of batch 3 as evidence and finds the gap at 4; its own API
//! answers like the sequencer's; mirror B, following only A, gets identical bytes.
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips.

use kray_devnet::runner::{Devnet, DevnetConfig};
use kray_devnet::traffic::{self, user_tx};
use kray_watcher::mirror::{ChainIdentity, Mirror, MirrorConfig, SourceSpec, BATCH_GAP, EQUIVOCATION};
use kray_watcher::store::Store;
use serde_json::Value;
use std::time::Duration;

async fn serve_router(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    url
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Option<String>, Vec<u8>) {
    let r = c.get(url).send().await.expect("GET");
    let etag = r.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
    (r.status().as_u16(), etag, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_is_mirrored_byte_exact_and_a_second_mirror_copies_the_first() {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the devnet mirror test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 11,
        faults: ["equivocation@3", "withhold@4"].iter().map(|f| f.parse().expect("fault")).collect(),
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(config).await.expect("devnet starts");
    let client = reqwest::Client::new();
    let api = d.info.api_url.clone();
    let net = d.profile().network;
    for round in 0..6u64 {
        if round > 0 {
            for from in 0..3 {
                let to = &d.info.user_addresses[(from + 1) % 3];
                let acct = traffic::account(&client, &api, &d.info.user_addresses[from]).await.expect("account");
                let tx = user_tx(d.user(from).expect("user"), net, "transfer", to, 10 + round, acct.next_nonce);
                traffic::submit(&client, &api, &tx).await.expect("transfer accepted");
            }
        }
        d.tick().await.expect("tick");
    }
    let (published, extra) = {
        let p = d.state.published.read().expect("lock");
        (p.batches.clone(), p.equivocations.clone())
    };
    assert_eq!(published.len(), 6);
    let other3 = extra.get(&3).expect("batch 3 equivocated").clone();
    let identity = ChainIdentity::of(d.state.seq.lock().expect("lock").sealer().chain());

    // Mirror A follows the sequencer.
    let store_a = Store::open_sqlite(&dir.path().join("a")).await.expect("store a");
    let mut cfg = MirrorConfig::new(identity.clone());
    cfg.poll.backoff_base = Duration::ZERO;
    cfg.gap_grace_polls = 1;
    let mut a = Mirror::new(store_a.clone(), vec![SourceSpec::new("sequencer", &api)], cfg.clone()).await.expect("a");
    let mut findings = Vec::new();
    for _ in 0..3 {
        let r = a.poll_once().await;
        assert!(r.store_errors.is_empty(), "{r:?}");
        findings.extend(r.findings);
    }
    for (id, b) in &published {
        let copies: Vec<Vec<u8>> =
            store_a.batch_copies(*id).await.expect("copies").into_iter().map(|c| c.raw).collect();
        match id {
            3 => {
                assert_eq!(copies.len(), 2, "both copies of the equivocated batch");
                assert!(copies.contains(&b.to_raw()) && copies.contains(&other3.to_raw()));
            }
            4 => assert!(copies.is_empty(), "withheld"),
            _ => assert_eq!(copies, vec![b.to_raw()], "batch {id} byte-exact"),
        }
    }
    let kinds: Vec<(&str, Option<u64>)> = findings.iter().map(|f| (f.kind.as_str(), f.batch_id)).collect();
    assert!(kinds.contains(&(EQUIVOCATION, Some(3))) && kinds.contains(&(BATCH_GAP, Some(4))), "{kinds:?}");
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(a.source_disagreements().get("sequencer"), Some(&1));

    // A's API answers like the sequencer's for every batch that is not equivocated.
    let a_url = serve_router(a.router()).await;
    for id in [1u64, 2, 5, 6] {
        for suffix in ["", "/raw"] {
            let seq = get(&client, format!("{api}/l2/batches/{id}{suffix}")).await;
            let ours = get(&client, format!("{a_url}/l2/batches/{id}{suffix}")).await;
            assert_eq!(seq, ours, "batch {id}{suffix}");
        }
    }
    for path in ["/l2/batches/4", "/l2/batches/99", "/l2/batches/x", "/l2/batches?limit=101"] {
        assert_eq!(
            get(&client, format!("{api}{path}")).await.0,
            get(&client, format!("{a_url}{path}")).await.0,
            "{path}"
        );
    }
    let latest = |u: String| {
        let c = client.clone();
        async move { c.get(u).send().await.expect("GET").json::<Value>().await.expect("json") }
    };
    assert_eq!(latest(format!("{api}/l2/batches/latest")).await, latest(format!("{a_url}/l2/batches/latest")).await);
    assert_eq!(
        latest(format!("{api}/l2/batches?from=1&limit=2")).await,
        latest(format!("{a_url}/l2/batches?from=1&limit=2")).await
    );

    // Mirror B follows only A and gets exactly what A serves.
    let store_b = Store::open_sqlite(&dir.path().join("b")).await.expect("store b");
    let mut b = Mirror::new(store_b.clone(), vec![SourceSpec::new("mirror-a", &a_url)], cfg).await.expect("b");
    for _ in 0..2 {
        let r = b.poll_once().await;
        assert!(r.errors.is_empty() && r.store_errors.is_empty(), "{r:?}");
    }
    for id in published.keys() {
        let from_a = store_a.batch_copies(*id).await.expect("a").into_iter().next().map(|c| c.raw);
        let in_b: Vec<Vec<u8>> = store_b.batch_copies(*id).await.expect("b").into_iter().map(|c| c.raw).collect();
        assert_eq!(in_b, from_a.into_iter().collect::<Vec<_>>(), "batch {id}");
    }
    store_a.close().await;
    store_b.close().await;
}
