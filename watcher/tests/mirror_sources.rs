//! The batch mirror against real local HTTP sources (axum on 127.0.0.1:0) that behave well or badly:
//! honest, equivocating (alternating copies, or two sources with different copies), a wrong `ETag`,
//! an oversized body, a slow source, garbage JSON and garbage batches, a 500, batches of another
//! chain, a withheld batch (gap) and anchored data no source serves. In every case the mirror keeps
//! running, stores exactly the verified copies, and records the right error or finding. The mirror's
//! own API then serves what it stored byte-identically.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kray_devnet::workload::producer_key;
use kray_replayer::batch::Batch;
use kray_replayer::execute::Semantics;
use kray_replayer::genesis::{Genesis, GenesisAccount};
use kray_replayer::l1facts::FileFacts;
use kray_replayer::profile::Profile;
use kray_replayer::seal::Sealer;
use kray_watcher::mirror::{
    ChainIdentity, Mirror, MirrorConfig, SourceError, SourceSpec, BATCH_GAP, DATA_WITHHELD, EQUIVOCATION,
};
use kray_watcher::store::{Effect, L1Header, Outpoint, Severity, Store};
use serde_json::{json, Value};

/// A chain of `n` sealed (empty) batches, its identity, and the sealer (to re-sign tampered copies).
fn chain(seed: u64, n: u64) -> (Vec<Batch>, ChainIdentity, Sealer) {
    let profile = Profile::load("regtest").expect("profile");
    let producer = producer_key(seed);
    let accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
    let genesis =
        Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
    let (chain, state) = genesis.build(&profile).expect("genesis");
    let identity = ChainIdentity::of(&chain);
    let mut sealer = Sealer::new(chain, state, None, producer).expect("sealer");
    let facts = FileFacts::default();
    let batches = (0..n).map(|i| sealer.seal(vec![], 100 + i as u32, &facts, Semantics::Reference).0).collect();
    (batches, identity, sealer)
}

/// A second, validly signed batch for the same id (another `l1_height`): equivocation.
fn conflicting(b: &Batch, sealer: &Sealer) -> Batch {
    let mut other = b.clone();
    other.signed.header.l1_height += 1000;
    sealer.resign_batch(&mut other);
    other
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Honest,
    /// For ids in `alt`, the original and the alternative on alternate batch requests.
    Alternating,
    /// Serves `alt` copies instead of the originals.
    AltOnly,
    WrongEtag,
    Slow,
    GarbageList,
    GarbageBatch,
    /// Batch bodies of 2 MiB.
    Huge,
    Fail500,
}

struct Fake {
    mode: Mode,
    batches: BTreeMap<u64, Batch>,
    alt: BTreeMap<u64, Batch>,
    reads: AtomicU64,
}

type St = Arc<Fake>;

fn header_json(b: &Batch) -> Value {
    kray_devnet::api::header_json(b)
}

async fn list(State(f): State<St>, Query(q): Query<BTreeMap<String, u64>>) -> Response {
    match f.mode {
        Mode::GarbageList => return (StatusCode::OK, "{\"batches\": [tru").into_response(),
        Mode::Fail500 => return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"boom\"}").into_response(),
        Mode::Slow => tokio::time::sleep(Duration::from_secs(30)).await,
        _ => {}
    }
    let from = q.get("from").copied().unwrap_or(1);
    let limit = q.get("limit").copied().unwrap_or(100) as usize;
    let mut items: Vec<Value> = f.batches.range(from..).map(|(_, b)| header_json(b)).collect();
    let next = if items.len() > limit { f.batches.range(from..).nth(limit).map(|(id, _)| *id) } else { None };
    items.truncate(limit);
    axum::Json(json!({ "batches": items, "next": next })).into_response()
}

async fn raw(State(f): State<St>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    let Some(orig) = f.batches.get(&id) else { return StatusCode::NOT_FOUND.into_response() };
    let b = match (f.mode, f.alt.get(&id)) {
        (Mode::AltOnly, Some(alt)) => alt,
        (Mode::Alternating, Some(alt)) if f.reads.fetch_add(1, Ordering::SeqCst) % 2 == 1 => alt,
        _ => orig,
    };
    let etag = match f.mode {
        Mode::WrongEtag => format!("\"{}\"", "ab".repeat(32)),
        _ => format!("\"{}\"", hex::encode(b.content_hash())),
    };
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let body = match f.mode {
        Mode::GarbageBatch => b"definitely not a batch".to_vec(),
        Mode::Huge => vec![0; 2 << 20],
        _ => b.to_raw(),
    };
    ([(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::ETAG, etag)], body).into_response()
}

async fn serve(mode: Mode, batches: &[Batch], alt: &[Batch]) -> String {
    let fake = Fake {
        mode,
        batches: batches.iter().map(|b| (b.signed.header.batch_id, b.clone())).collect(),
        alt: alt.iter().map(|b| (b.signed.header.batch_id, b.clone())).collect(),
        reads: AtomicU64::new(0),
    };
    let app = Router::new()
        .route("/l2/batches", get(list))
        .route("/l2/batches/{id}/raw", get(raw))
        .with_state(Arc::new(fake));
    serve_router(app).await
}

async fn serve_router(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    url
}

fn config(identity: &ChainIdentity) -> MirrorConfig {
    let mut c = MirrorConfig::new(identity.clone());
    c.poll.backoff_base = Duration::ZERO;
    c.gap_grace_polls = 1;
    c
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    (dir, store)
}

async fn stored_raw(store: &Store, id: u64) -> Vec<Vec<u8>> {
    store.batch_copies(id).await.expect("copies").into_iter().map(|c| c.raw).collect()
}

#[tokio::test]
async fn honest_source_is_mirrored_byte_exact_and_served_identically() {
    let (batches, identity, _) = chain(1, 5);
    let url = serve(Mode::Honest, &batches, &[]).await;
    let (_dir, store) = store().await;
    let mut m =
        Mirror::new(store.clone(), vec![SourceSpec::new("seq", &url)], config(&identity)).await.expect("mirror");

    let r = m.poll_once().await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.new_copies.iter().map(|c| c.batch_id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    for b in &batches {
        assert_eq!(stored_raw(&store, b.signed.header.batch_id).await, vec![b.to_raw()]);
    }
    // The next poll re-validates each copy once (304s) and stores nothing new.
    let r = m.poll_once().await;
    assert!(r.errors.is_empty() && r.new_copies.is_empty(), "{r:?}");
    let h = &m.sources()[0];
    assert_eq!((h.next_id, h.copies_received, h.confirmations, h.consecutive_failures), (6, 5, 5, 0));
    assert!(m.source_disagreements().is_empty());

    // Our API serves exactly the sequencer's forms.
    let mirror_url = serve_router(m.router()).await;
    let c = reqwest::Client::new();
    let b2 = &batches[1];
    let resp = c.get(format!("{mirror_url}/l2/batches/2")).send().await.expect("GET");
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(etag, format!("\"{}\"", hex::encode(b2.content_hash())));
    assert_eq!(resp.text().await.expect("body"), b2.to_json());
    let raw = c.get(format!("{mirror_url}/l2/batches/2/raw")).send().await.expect("GET").bytes().await.expect("raw");
    assert_eq!(raw.to_vec(), b2.to_raw());
    let raw = c
        .get(format!("{mirror_url}/l2/batches/2"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("raw");
    assert_eq!(raw.to_vec(), b2.to_raw());
    let r = c.get(format!("{mirror_url}/l2/batches/2")).header("if-none-match", &etag).send().await.expect("GET");
    assert_eq!(r.status(), 304);
    let latest: Value =
        c.get(format!("{mirror_url}/l2/batches/latest")).send().await.expect("GET").json().await.expect("j");
    assert_eq!(latest, header_json(&batches[4]));
    let page: Value =
        c.get(format!("{mirror_url}/l2/batches?from=2&limit=3")).send().await.expect("GET").json().await.expect("j");
    assert_eq!(
        page,
        json!({ "batches": [header_json(&batches[1]), header_json(&batches[2]), header_json(&batches[3])], "next": 5 })
    );
    for (path, status) in
        [("/l2/batches/9", 404), ("/l2/batches/x", 400), ("/l2/batches?limit=0", 400), ("/l2/batches?from=a", 400)]
    {
        assert_eq!(c.get(format!("{mirror_url}{path}")).send().await.expect("GET").status(), status, "{path}");
    }
}

#[tokio::test]
async fn an_equivocating_source_is_caught_on_revalidation_and_both_copies_are_kept() {
    let (batches, identity, sealer) = chain(2, 3);
    let other = conflicting(&batches[1], &sealer);
    let url = serve(Mode::Alternating, &batches, std::slice::from_ref(&other)).await;
    let (_dir, store) = store().await;
    let mut m =
        Mirror::new(store.clone(), vec![SourceSpec::new("seq", &url)], config(&identity)).await.expect("mirror");

    let r = m.poll_once().await;
    assert_eq!(r.new_copies.len(), 3);
    assert!(r.findings.is_empty());
    // Second request for batch 2: the other copy.
    let r = m.poll_once().await;
    assert_eq!(r.new_copies.iter().map(|c| c.batch_id).collect::<Vec<_>>(), vec![2], "{r:?}");
    assert_eq!(r.findings.len(), 1, "{r:?}");
    let f = &r.findings[0];
    assert_eq!((f.kind.as_str(), f.batch_id, f.severity), (EQUIVOCATION, Some(2), Severity::Critical));
    let hashes: Vec<&str> =
        f.evidence["copies"].as_array().expect("copies").iter().filter_map(|c| c["content_hash"].as_str()).collect();
    assert_eq!(hashes, vec![hex::encode(batches[1].content_hash()), hex::encode(other.content_hash())]);
    assert_eq!(stored_raw(&store, 2).await.len(), 2);
    assert!(stored_raw(&store, 2).await.contains(&other.to_raw()));
    assert_eq!(store.conflicting_batch_ids().await.expect("ids"), vec![2]);
    assert_eq!(m.source_disagreements().get("seq"), Some(&1));
    // Found once: later polls do not repeat it.
    assert!(m.poll_once().await.findings.is_empty());
}

#[tokio::test]
async fn two_sources_serving_different_copies_are_equivocation_evidence_naming_both() {
    let (batches, identity, sealer) = chain(3, 2);
    let other = conflicting(&batches[0], &sealer);
    let honest = serve(Mode::Honest, &batches, &[]).await;
    let forked = serve(Mode::AltOnly, &batches, std::slice::from_ref(&other)).await;
    let (_dir, store) = store().await;
    let sources = vec![SourceSpec::new("seq", &honest), SourceSpec::new("peer", &forked)];
    let mut m = Mirror::new(store.clone(), sources, config(&identity)).await.expect("mirror");
    let r = m.poll_once().await;
    assert_eq!(r.errors_of("seq").count(), 0, "{:?}", r.errors);
    // The peer lists the original's hashes but serves the other copy: both claims are reported.
    let claims: Vec<String> = r
        .errors_of("peer")
        .map(|e| match e {
            SourceError::ClaimMismatch { batch_id: 1, what, .. } => what.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(claims, vec!["listed content_hash", "listed hash"]);
    let f: Vec<_> = r.findings.iter().filter(|f| f.kind == EQUIVOCATION).collect();
    assert_eq!(f.len(), 1, "{r:?}");
    let sources: Vec<&str> = f[0].evidence["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .flat_map(|c| c["sources"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_string))
        .map(|s| if s == "seq" { "seq" } else { "peer" })
        .collect();
    assert_eq!(sources.len(), 2);
    assert!(sources.contains(&"seq") && sources.contains(&"peer"));
    let d = m.source_disagreements();
    assert_eq!((d.get("seq"), d.get("peer")), (Some(&1), Some(&1)));
    assert_eq!(stored_raw(&store, 1).await.len(), 2);
    assert_eq!(stored_raw(&store, 2).await, vec![batches[1].to_raw()]);
}

#[tokio::test]
async fn a_wrong_etag_is_reported_and_the_recomputed_copy_is_kept() {
    let (batches, identity, _) = chain(4, 2);
    let url = serve(Mode::WrongEtag, &batches, &[]).await;
    let (_dir, store) = store().await;
    let mut m =
        Mirror::new(store.clone(), vec![SourceSpec::new("liar", &url)], config(&identity)).await.expect("mirror");
    let r = m.poll_once().await;
    assert_eq!(r.new_copies.len(), 2);
    for (c, b) in r.new_copies.iter().zip(&batches) {
        assert_eq!(c.content_hash, hex::encode(b.content_hash()));
    }
    let errs: Vec<_> = r.errors_of("liar").collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    let etag = "ab".repeat(32);
    assert!(matches!(errs[0], SourceError::ClaimMismatch { what, claimed, .. } if what == "ETag" && claimed == &etag));
    assert_eq!(m.sources()[0].consecutive_failures, 1);
}

#[tokio::test]
async fn bad_sources_are_errors_and_the_honest_one_is_still_mirrored() {
    let (batches, identity, _) = chain(5, 3);
    let (foreign, _, _) = chain(6, 3);
    let mut specs = vec![SourceSpec::new("honest", serve(Mode::Honest, &batches, &[]).await)];
    let mut big = SourceSpec::new("big", serve(Mode::Honest, &batches, &[]).await);
    big.max_body_bytes = 300; // an empty raw batch is 349 bytes; the listing is larger too
    specs.push(big);
    let mut huge = SourceSpec::new("huge", serve(Mode::Huge, &batches, &[]).await);
    huge.max_body_bytes = 1 << 20;
    specs.push(huge);
    let mut slow = SourceSpec::new("slow", serve(Mode::Slow, &batches, &[]).await);
    slow.timeout = Duration::from_millis(300);
    specs.push(slow);
    specs.push(SourceSpec::new("garbage-json", serve(Mode::GarbageList, &batches, &[]).await));
    specs.push(SourceSpec::new("garbage-batch", serve(Mode::GarbageBatch, &batches, &[]).await));
    specs.push(SourceSpec::new("fails", serve(Mode::Fail500, &batches, &[]).await));
    specs.push(SourceSpec::new("foreign", serve(Mode::Honest, &foreign, &[]).await));
    specs.push(SourceSpec::new("down", "http://127.0.0.1:9"));
    let (_dir, store) = store().await;
    let mut cfg = config(&identity);
    cfg.poll.backoff_base = Duration::from_secs(3600);
    let mut m = Mirror::new(store.clone(), specs, cfg).await.expect("mirror");

    let r = m.poll_once().await;
    assert_eq!(
        r.new_copies.iter().map(|c| (c.batch_id, c.source.as_str())).collect::<Vec<_>>(),
        vec![(1, "honest"), (2, "honest"), (3, "honest")]
    );
    let first = |s: &str| r.errors_of(s).next().cloned().unwrap_or_else(|| panic!("no error for {s}: {r:?}"));
    assert!(matches!(first("big"), SourceError::TooLarge { limit: 300, .. }), "{:?}", first("big"));
    assert_eq!(r.errors_of("huge").count(), 3, "each batch body is refused, the listing is not");
    assert!(matches!(first("huge"), SourceError::TooLarge { limit: 1048576, .. }), "{:?}", first("huge"));
    assert!(matches!(first("slow"), SourceError::Timeout { .. }), "{:?}", first("slow"));
    assert!(matches!(first("garbage-json"), SourceError::BadJson { .. }), "{:?}", first("garbage-json"));
    assert_eq!(r.errors_of("garbage-batch").count(), 3);
    assert!(matches!(first("garbage-batch"), SourceError::BadBatch { batch_id: 1, .. }));
    assert!(matches!(first("fails"), SourceError::Status { status: 500, .. }));
    assert!(first("fails").to_string().contains("boom"));
    assert!(matches!(first("foreign"), SourceError::NotOfChain { batch_id: 1, .. }));
    assert!(matches!(first("down"), SourceError::Transport { .. }));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    for b in &batches {
        assert_eq!(stored_raw(&store, b.signed.header.batch_id).await, vec![b.to_raw()]);
    }
    // Every failing source is in backoff (1 h): the next poll skips them and asks only the honest one.
    let health = m.sources();
    assert!(health
        .iter()
        .filter(|h| h.name != "honest")
        .all(|h| h.consecutive_failures == 1 && h.last_error.is_some()));
    let r = m.poll_once().await;
    assert_eq!(r.skipped.len(), 8, "{:?}", r.skipped);
    assert!(r.errors.is_empty() && r.new_copies.is_empty(), "{r:?}");
}

#[tokio::test]
async fn a_withheld_batch_is_a_gap_until_a_peer_serves_it_and_anchored_data_missing_is_withheld() {
    let (batches, identity, _) = chain(7, 4);
    let without_3: Vec<Batch> = batches.iter().filter(|b| b.signed.header.batch_id != 3).cloned().collect();
    let (_dir, store) = store().await;
    // Anchors of batches 1 and 3 at L1 height 100.
    let root = |b: &Batch| hex::encode(b.signed.header.hash());
    let anchor =
        |i: u32, b: &Batch| Effect::Anchor { outpoint: Outpoint { txid: format!("{i:064x}"), vout: 0 }, root: root(b) };
    let block = L1Header { height: 100, hash: "aa".repeat(32), prev_hash: "bb".repeat(32) };
    store.apply_block(&block, &[anchor(1, &batches[0]), anchor(3, &batches[2])]).await.expect("block");

    let seq = serve(Mode::Honest, &without_3, &[]).await;
    let mut m =
        Mirror::new(store.clone(), vec![SourceSpec::new("seq", &seq)], config(&identity)).await.expect("mirror");
    let r = m.poll_once().await;
    assert_eq!(r.new_copies.len(), 3);
    assert_eq!(r.findings.len(), 1, "{r:?}");
    let gap = &r.findings[0];
    assert_eq!((gap.kind.as_str(), gap.batch_id, gap.evidence["to"].as_u64()), (BATCH_GAP, Some(3), Some(3)));

    // Data withheld: not before the deadline (6 blocks), then once.
    assert!(m.check_withheld(105).await.expect("check").is_empty());
    let w = m.check_withheld(106).await.expect("check");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].kind.as_str(), w[0].evidence["root"].as_str()), (DATA_WITHHELD, Some(root(&batches[2]).as_str())));
    assert!(m.check_withheld(107).await.expect("check").is_empty());

    // A new mirror over the same store with a peer that has batch 3: the gap and the withholding end.
    let peer = serve(Mode::Honest, &batches, &[]).await;
    let mut m = Mirror::new(store.clone(), vec![SourceSpec::new("peer", &peer)], config(&identity)).await.expect("m");
    assert_eq!(m.sources()[0].next_id, 3, "restart resumes at the first missing id");
    let r = m.poll_once().await;
    assert_eq!(r.new_copies.iter().map(|c| c.batch_id).collect::<Vec<_>>(), vec![3], "{r:?}");
    assert!(m.check_withheld(108).await.expect("check").is_empty());
    let open = store.findings(true).await.expect("findings");
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(store.findings(false).await.expect("findings").len(), 2);
}
