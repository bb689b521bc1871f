//! The store's test suite. Every test function runs twice, against SQLite (a temp data dir) and
//! against PostgreSQL (a fresh database per test on the server at `KRAY_TEST_POSTGRES_URL`, or on a
//! throwaway server started by `scripts/start-postgres.sh` when that is unset; skipped only when
//! `KRAY_SKIP_POSTGRES=1`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kray_watcher::store::{
    BatchCopy, Cursor, Effect, Finding, L1Header, Outpoint, PayoutOutput, ReplayCheckpointRow, Severity, SpendPath,
    Store, StoreError, VerdictRow, CHAIN_STAGE, SQLITE_FILE,
};
use serde_json::json;
use sqlx::Connection;

/// Where a test's store lives; can be opened again (reopen tests).
enum Target {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, db: String, url: String },
}

fn postgres_admin_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("KRAY_TEST_POSTGRES_URL") {
            if !url.is_empty() {
                return Some(url);
            }
        }
        if std::env::var("KRAY_SKIP_POSTGRES").as_deref() == Ok("1") {
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-postgres.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/start-postgres.sh");
        assert!(out.status.success(), "scripts/start-postgres.sh failed (set KRAY_SKIP_POSTGRES=1 to skip)");
        let url = String::from_utf8(out.stdout).expect("utf-8 url").trim().to_string();
        assert!(url.starts_with("postgres://"), "unexpected output {url:?}");
        Some(url)
    })
    .clone()
}

/// `url` with its database name replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

impl Target {
    fn sqlite() -> Target {
        Target::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    async fn postgres() -> Option<Target> {
        static N: AtomicU64 = AtomicU64::new(0);
        let admin = postgres_admin_url()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
        let db = format!("kray_store_test_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos);
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut conn).await.expect("create database");
        conn.close().await.expect("close");
        let url = with_db(&admin, &db);
        Some(Target::Postgres { admin, db, url })
    }

    async fn open(&self) -> Store {
        let (store, expected) = match self {
            Target::Sqlite(dir) => (Store::open(dir.path(), None).await.expect("open sqlite"), "sqlite"),
            Target::Postgres { url, .. } => {
                (Store::open(Path::new("/nonexistent"), Some(url)).await.expect("open pg"), "postgres")
            }
        };
        assert_eq!(store.backend_name(), expected);
        store
    }

    async fn cleanup(self) {
        if let Target::Postgres { admin, db, .. } = self {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut conn).await;
            }
        }
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let target = super::Target::sqlite();
                    super::$name(&target).await;
                    target.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(target) = super::Target::postgres().await else {
                        eprintln!("KRAY_SKIP_POSTGRES=1: skipping the PostgreSQL run");
                        return;
                    };
                    super::$name(&target).await;
                    target.cleanup().await;
                }
            )*
        }
    };
}

on_both_backends!(
    apply_block_is_atomic,
    apply_block_requires_extension,
    rollback_above_removes_derived_rows,
    batch_copies_kept_in_bulk,
    u128_amounts_round_trip,
    findings_dedup_by_key,
    reopen_resumes_cursor,
    headers_pruned_to_window,
    concurrent_writers,
    rune_rows_apply_and_roll_back,
    a_bad_rune_spend_rolls_back_the_whole_block,
    copies_are_numbered_in_arrival_order_and_read_by_cursor,
    verdicts_and_the_replay_checkpoint_round_trip,
);

fn hash(height: u64, branch: u8) -> String {
    if height == 0 {
        return "00".repeat(32);
    }
    format!("{branch:02x}{height:062x}")
}

fn deposit(outpoint: Outpoint, amount: u128) -> Effect {
    Effect::Deposit { outpoint, amount, recipient: None, from_bridge: false }
}

fn block(height: u64, branch: u8, prev_branch: u8) -> L1Header {
    L1Header { height, hash: hash(height, branch), prev_hash: hash(height - 1, prev_branch) }
}

fn op(n: u64, vout: u32) -> Outpoint {
    Outpoint { txid: format!("{n:064x}"), vout }
}

fn finding(id: &str, first_seen: i64) -> Finding {
    Finding {
        id: id.to_string(),
        kind: "wrong-anchor".into(),
        severity: Severity::Critical,
        batch_id: Some(3),
        outpoint: Some(op(9, 1)),
        first_seen,
        resolved_at: None,
        deadline_height: Some(144),
        evidence: json!({"anchored": "ab", "expected": "cd", "n": [1, 2]}),
        height: None,
        block_hash: None,
    }
}

/// Applies blocks 1..=n of branch 0 with no effects.
async fn chain(store: &Store, n: u64) {
    for h in 1..=n {
        store.apply_block(&block(h, 0, 0), &[]).await.expect("apply");
    }
}

async fn apply_block_is_atomic(target: &Target) {
    let store = target.open().await;
    chain(&store, 1).await;
    store.apply_block(&block(2, 0, 0), &[deposit(op(1, 0), 5)]).await.expect("block 2");

    // Block 3: good effects first, then a spend of an unknown outpoint.
    let good = vec![
        Effect::Anchor { outpoint: op(2, 0), root: "aa".repeat(32) },
        deposit(op(3, 1), 7),
        Effect::Spend { outpoint: op(1, 0), spent_by: "ee".repeat(32) },
        Effect::Finding(finding("f1", 10)),
    ];
    let mut bad = good.clone();
    bad.push(Effect::Spend { outpoint: op(99, 0), spent_by: "ff".repeat(32) });
    let err = store.apply_block(&block(3, 0, 0), &bad).await.expect_err("must fail");
    assert!(matches!(err, StoreError::UnknownOutpoint(ref o) if *o == op(99, 0)), "{err}");
    assert_untouched(&store, "unknown outpoint").await;

    // A database constraint failing midway (a duplicate anchor) rolls back the same way.
    let mut dup = good.clone();
    dup.insert(1, Effect::Anchor { outpoint: op(2, 0), root: "bb".repeat(32) });
    let err = store.apply_block(&block(3, 0, 0), &dup).await.expect_err("must fail");
    assert!(matches!(err, StoreError::Db(_)), "{err}");
    assert_untouched(&store, "duplicate anchor").await;

    // The same block without the failing effect applies in full.
    store.apply_block(&block(3, 0, 0), &good).await.expect("block 3");
    assert_eq!(store.anchors().await.expect("anchors").len(), 1);
    let spent = store.deposit(&op(1, 0)).await.expect("deposit").expect("some");
    assert_eq!(spent.spent_by, Some("ee".repeat(32)));
    assert_eq!(spent.spent_height, Some(3));
    assert_eq!(spent.spent_block_hash, Some(hash(3, 0)));
    let f = store.finding("f1").await.expect("finding").expect("some");
    assert_eq!((f.height, f.block_hash), (Some(3), Some(hash(3, 0))));
    assert_eq!(store.cursor(CHAIN_STAGE).await.expect("cursor").map(|c| c.height), Some(3));
    store.close().await;
}

/// After a failed `apply_block` of block 3: only block 2's state.
async fn assert_untouched(store: &Store, label: &str) {
    assert!(store.anchors().await.expect("anchors").is_empty(), "{label}");
    let deposits = store.deposits().await.expect("deposits");
    assert_eq!(deposits.len(), 1, "{label}");
    assert_eq!(deposits[0].spent_by, None, "{label}");
    assert!(store.findings(false).await.expect("findings").is_empty(), "{label}");
    assert_eq!(store.header_at(3).await.expect("header"), None, "{label}");
    let cursor = store.cursor(CHAIN_STAGE).await.expect("cursor").expect("some");
    assert_eq!((cursor.height, cursor.hash), (2, hash(2, 0)), "{label}");
}

async fn apply_block_requires_extension(target: &Target) {
    let store = target.open().await;
    chain(&store, 3).await;
    // Wrong parent.
    let err = store.apply_block(&block(4, 0, 1), &[]).await.expect_err("wrong prev");
    assert!(matches!(err, StoreError::NotExtending { height: 4, cursor_height: 3, .. }), "{err}");
    // Gap.
    let err = store.apply_block(&block(5, 0, 0), &[]).await.expect_err("gap");
    assert!(matches!(err, StoreError::NotExtending { .. }), "{err}");
    // Replay of the tip.
    assert!(store.apply_block(&block(3, 0, 0), &[]).await.is_err());
    store.apply_block(&block(4, 0, 0), &[]).await.expect("extends");
    store.close().await;
}

async fn rollback_above_removes_derived_rows(target: &Target) {
    let store = target.open().await;
    chain(&store, 1).await;
    store
        .apply_block(
            &block(2, 0, 0),
            &[
                deposit(op(1, 0), 100),
                deposit(op(1, 1), 200),
                Effect::Anchor { outpoint: op(2, 0), root: "01".repeat(32) },
                Effect::Challenge { outpoint: op(2, 1), batch_id: 7, proof_hash: "07".repeat(32) },
            ],
        )
        .await
        .expect("2");
    store
        .apply_block(&block(3, 0, 0), &[Effect::Spend { outpoint: op(1, 1), spent_by: "aa".repeat(32) }])
        .await
        .expect("3");
    store
        .apply_block(
            &block(4, 0, 0),
            &[
                Effect::Anchor { outpoint: op(4, 0), root: "04".repeat(32) },
                Effect::Challenge { outpoint: op(4, 2), batch_id: 9, proof_hash: "09".repeat(32) },
                deposit(op(4, 1), 400),
                Effect::Finding(finding("reorgable", 40)),
            ],
        )
        .await
        .expect("4");
    store
        .apply_block(
            &block(5, 0, 0),
            &[
                Effect::Spend { outpoint: op(1, 0), spent_by: "bb".repeat(32) },
                Effect::Spend { outpoint: op(4, 1), spent_by: "cc".repeat(32) },
            ],
        )
        .await
        .expect("5");
    assert!(store.insert_finding(&finding("l2-only", 41)).await.expect("insert"));
    // A lagging stage below the fork point and one above it.
    store.set_cursor(&Cursor { stage: "replay".into(), height: 2, hash: hash(2, 0) }).await.expect("cursor");
    store.set_cursor(&Cursor { stage: "bridge".into(), height: 5, hash: hash(5, 0) }).await.expect("cursor");

    let r = store.rollback_above(3).await.expect("rollback");
    assert_eq!((r.headers, r.anchors, r.deposits, r.unspent, r.findings, r.cursors), (2, 1, 1, 1, 1, 2));
    assert_eq!(r.challenges, 1);
    let markers = store.challenges().await.expect("challenges");
    assert_eq!(markers.iter().map(|c| (c.batch_id, c.height)).collect::<Vec<_>>(), vec![(7, 2)]);
    assert_eq!(markers[0].proof_hash, "07".repeat(32));

    let anchors = store.anchors().await.expect("anchors");
    assert_eq!(anchors.iter().map(|a| a.height).collect::<Vec<_>>(), vec![2]);
    let deposits = store.deposits().await.expect("deposits");
    assert_eq!(deposits.len(), 2);
    let d0 = store.deposit(&op(1, 0)).await.expect("d").expect("some");
    assert_eq!((d0.spent_by, d0.spent_height, d0.spent_block_hash), (None, None, None), "spend at 5 reverted");
    let d1 = store.deposit(&op(1, 1)).await.expect("d").expect("some");
    assert_eq!(d1.spent_height, Some(3), "spend at the fork point kept");
    assert_eq!(store.deposit(&op(4, 1)).await.expect("d"), None);
    assert_eq!(store.finding("reorgable").await.expect("f"), None);
    assert!(store.finding("l2-only").await.expect("f").is_some());
    assert_eq!(store.tip_header().await.expect("tip"), Some(block(3, 0, 0)));
    for (stage, height) in [(CHAIN_STAGE, 3), ("bridge", 3), ("replay", 2)] {
        let c = store.cursor(stage).await.expect("cursor").expect("some");
        assert_eq!((c.height, c.hash), (height, hash(height, 0)), "{stage}");
    }

    // The other branch now extends the fork point; the old branch no longer does.
    store
        .apply_block(&block(4, 1, 0), &[Effect::Anchor { outpoint: op(4, 0), root: "04".repeat(32) }])
        .await
        .expect("4'");
    store.apply_block(&block(5, 1, 1), &[]).await.expect("5'");
    let a = store.anchors().await.expect("anchors");
    assert_eq!(a.last().map(|a| a.block_hash.clone()), Some(hash(4, 1)));
    let err = store.apply_block(&block(6, 0, 0), &[]).await.expect_err("old branch");
    assert!(matches!(err, StoreError::NotExtending { .. }));

    // Nothing above the tip: a no-op.
    let r = store.rollback_above(10).await.expect("noop");
    assert_eq!(r, Default::default());
    store.close().await;
}

async fn batch_copies_kept_in_bulk(target: &Target) {
    let store = target.open().await;
    let copies: Vec<BatchCopy> = (1..=1_200u64)
        .map(|id| {
            let raw: Vec<u8> = (0..=255u8).chain([0, 0xff, id as u8]).collect();
            BatchCopy {
                batch_id: id,
                source: "http://sequencer/batches".into(),
                content_hash: format!("{id:064x}"),
                raw,
                received_at: 1_700_000_000 + id as i64,
            }
        })
        .collect();
    assert_eq!(store.insert_batches(&copies).await.expect("bulk"), 1_200);
    assert_eq!(store.insert_batches(&copies[..10]).await.expect("again"), 0, "identical copies stored once");
    assert_eq!(store.insert_batches(&[]).await.expect("empty"), 0);

    let other = BatchCopy {
        batch_id: 7,
        source: "http://mirror/batches".into(),
        content_hash: "ff".repeat(32),
        raw: vec![1, 2, 3, 0, 4],
        received_at: 1_800_000_000,
    };
    // The equivocating copy, plus its duplicate in the same call.
    assert_eq!(store.insert_batches(&[other.clone(), other.clone(), copies[7].clone()]).await.expect("other"), 1);
    let kept = store.batch_copies(7).await.expect("copies");
    assert_eq!(kept, vec![copies[6].clone(), other]);
    assert_eq!(store.conflicting_batch_ids().await.expect("conflicts"), vec![7]);
    assert_eq!(store.max_batch_id().await.expect("max"), Some(1_200));
    assert_eq!(store.batch_copies(1_200).await.expect("last"), vec![copies[1_199].clone()]);
    // Batches are not L1-derived: a rollback keeps them.
    chain(&store, 2).await;
    store.rollback_above(1).await.expect("rollback");
    assert_eq!(store.batch_copies(7).await.expect("copies").len(), 2);
    store.close().await;
}

async fn u128_amounts_round_trip(target: &Target) {
    let store = target.open().await;
    chain(&store, 1).await;
    let amounts = [0u128, 1, i64::MAX as u128, i64::MAX as u128 + 1, u64::MAX as u128 + 1, u128::MAX];
    let effects: Vec<Effect> = amounts.iter().enumerate().map(|(i, a)| deposit(op(50, i as u32), *a)).collect();
    store.apply_block(&block(2, 0, 0), &effects).await.expect("deposits");
    for (i, a) in amounts.iter().enumerate() {
        let d = store.deposit(&op(50, i as u32)).await.expect("deposit").expect("some");
        assert_eq!(d.amount, *a);
        assert_eq!((d.height, d.block_hash.as_str()), (2, hash(2, 0).as_str()));
    }
    assert_eq!(store.deposits().await.expect("all").iter().map(|d| d.amount).collect::<Vec<_>>(), amounts.to_vec());
    store.close().await;
}

async fn findings_dedup_by_key(target: &Target) {
    let store = target.open().await;
    let key = Finding::key("equivocation", Some(7), None);
    assert_eq!(key, "equivocation/7/");
    let mut f = finding(&key, 100);
    f.kind = "equivocation".into();
    assert!(store.insert_finding(&f).await.expect("first"));
    let mut again = f.clone();
    again.first_seen = 200;
    again.evidence = json!({"other": true});
    assert!(!store.insert_finding(&again).await.expect("second"), "same key is not new");
    assert_eq!(store.findings(false).await.expect("all"), vec![f.clone()], "first copy kept as is");

    // Through block effects: found again in a later block, still one row with the first block.
    chain(&store, 1).await;
    let g = finding("theft/-/x:0", 300);
    store.apply_block(&block(2, 0, 0), &[Effect::Finding(g.clone())]).await.expect("2");
    store.apply_block(&block(3, 0, 0), &[Effect::Finding(g.clone())]).await.expect("3");
    let stored = store.finding(&g.id).await.expect("g").expect("some");
    assert_eq!((stored.height, stored.block_hash), (Some(2), Some(hash(2, 0))));
    assert_eq!(stored.evidence, g.evidence);
    assert_eq!(stored.outpoint, Some(op(9, 1)));

    assert!(store.resolve_finding(&key, 500).await.expect("resolve"));
    assert!(!store.resolve_finding(&key, 600).await.expect("resolve twice"));
    assert_eq!(store.finding(&key).await.expect("f").and_then(|f| f.resolved_at), Some(500));
    let open = store.findings(true).await.expect("open");
    assert_eq!(open.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec![g.id.as_str()]);
    assert_eq!(store.findings(false).await.expect("all").len(), 2);

    // A deadline learnt later is recorded (and moved), not left empty.
    assert!(store.set_finding_deadline(&g.id, 120).await.expect("deadline"));
    assert!(!store.set_finding_deadline(&g.id, 120).await.expect("same deadline"));
    assert_eq!(store.finding(&g.id).await.expect("g").and_then(|f| f.deadline_height), Some(120));

    // Notification bookkeeping: open and not yet notified, then marked once.
    let pending = store.unnotified_findings().await.expect("unnotified");
    assert_eq!(pending.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec![g.id.as_str()]);
    assert!(store.mark_notified(&g.id, 700).await.expect("mark"));
    assert!(!store.mark_notified(&g.id, 800).await.expect("mark twice"));
    assert!(store.unnotified_findings().await.expect("unnotified").is_empty());
    store.close().await;
}

async fn reopen_resumes_cursor(target: &Target) {
    let store = target.open().await;
    chain(&store, 5).await;
    store
        .apply_block(&block(6, 0, 0), &[Effect::Anchor { outpoint: op(6, 0), root: "66".repeat(32) }])
        .await
        .expect("6");
    store.set_cursor(&Cursor { stage: "replay".into(), height: 4, hash: hash(4, 0) }).await.expect("set");
    if let Target::Sqlite(dir) = target {
        let wal = dir.path().join(format!("{SQLITE_FILE}-wal"));
        assert!(wal.is_file(), "WAL journal while open");
    }
    store.close().await;
    drop(store);
    if let Target::Sqlite(dir) = target {
        assert!(dir.path().join(SQLITE_FILE).is_file(), "database file in the data dir");
    }

    let store = target.open().await; // migrations run again: a no-op
    let c = store.cursor(CHAIN_STAGE).await.expect("cursor").expect("some");
    assert_eq!((c.height, c.hash.clone()), (6, hash(6, 0)));
    assert_eq!(store.cursor("replay").await.expect("cursor").map(|c| c.height), Some(4));
    assert_eq!(store.cursor("never").await.expect("cursor"), None);
    assert_eq!(store.anchors().await.expect("anchors").len(), 1);
    assert_eq!(store.headers_from(5).await.expect("headers"), vec![block(5, 0, 0), block(6, 0, 0)]);
    store.apply_block(&block(7, 0, 0), &[]).await.expect("resumes at 7");
    store.close().await;
}

async fn headers_pruned_to_window(target: &Target) {
    let store = target.open().await.with_headers_kept(10); // raised to the 1,008 minimum
    chain(&store, 1_100).await;
    assert_eq!(store.header_count().await.expect("count"), 1_008);
    let oldest = store.headers_from(0).await.expect("headers").first().map(|h| h.height);
    assert_eq!(oldest, Some(93));
    let err = store.rollback_above(50).await.expect_err("below the window");
    assert!(matches!(err, StoreError::UnknownForkPoint(50)), "{err}");
    assert_eq!(store.cursor(CHAIN_STAGE).await.expect("c").map(|c| c.height), Some(1_100), "unchanged");
    store.rollback_above(1_000).await.expect("within the window");
    assert_eq!(store.tip_header().await.expect("tip").map(|h| h.height), Some(1_000));
    store.close().await;
}

/// The chain follower, the batch mirror and finding writers share one store concurrently: no
/// `SQLITE_BUSY`, nothing lost.
async fn concurrent_writers(target: &Target) {
    let store = target.open().await;
    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            for h in 1..=150u64 {
                let effects = [deposit(op(h, 0), u128::from(h))];
                store.apply_block(&block(h, 0, 0), &effects).await.expect("apply");
                if h % 50 == 0 {
                    store.rollback_above(h - 3).await.expect("rollback");
                    for r in h - 2..=h {
                        let effects = [deposit(op(r, 0), u128::from(r))];
                        store.apply_block(&block(r, 0, 0), &effects).await.expect("re-apply");
                    }
                }
            }
        })
    };
    let mirror = {
        let store = store.clone();
        tokio::spawn(async move {
            for chunk in 0..30u64 {
                let copies: Vec<BatchCopy> = (0..20)
                    .map(|i| BatchCopy {
                        batch_id: chunk * 20 + i,
                        source: "api".into(),
                        content_hash: format!("{:064x}", chunk * 20 + i),
                        raw: vec![i as u8; 300],
                        received_at: 1,
                    })
                    .collect();
                assert_eq!(store.insert_batches(&copies).await.expect("batches"), 20);
            }
        })
    };
    let alerts = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                store.insert_finding(&finding(&format!("f{i}"), i)).await.expect("finding");
                store.findings(true).await.expect("read");
            }
        })
    };
    for task in [follower, mirror, alerts] {
        task.await.expect("task");
    }
    assert_eq!(store.deposits().await.expect("deposits").len(), 150);
    assert_eq!(store.max_batch_id().await.expect("max"), Some(599));
    assert_eq!(store.findings(false).await.expect("findings").len(), 100);
    assert_eq!(store.cursor(CHAIN_STAGE).await.expect("cursor").map(|c| c.height), Some(150));
    store.close().await;
}

fn rune_output(outpoint: Outpoint, script: &str, amount: u128) -> Effect {
    Effect::RuneOutput { outpoint, script_pubkey: script.to_string(), value: 546, amount }
}

fn payout(outpoint: Outpoint, script: &str, amount: u128) -> Effect {
    Effect::PayoutOutput(PayoutOutput {
        outpoint,
        script_pubkey: script.to_string(),
        address: Some(format!("addr-{script}")),
        value: 546,
        amount,
    })
}

/// The rows of a deposit at 2, a key-path sweep of it at 4 and a script-path payout at 5; a rollback to
/// 3 deletes the rows above and un-spends what was spent above; re-applying finds them again.
async fn rune_rows_apply_and_roll_back(target: &Target) {
    let store = target.open().await;
    chain(&store, 1).await;
    let bridge = "5120".to_string() + &"bb".repeat(32);
    let user = "5120".to_string() + &"11".repeat(32);
    let thief = "5120".to_string() + &"ee".repeat(32);
    let big = u128::MAX - 7;
    let recipient = "42".repeat(32);
    store
        .apply_block(
            &block(2, 0, 0),
            &[
                rune_output(op(2, 0), &bridge, 300),
                Effect::Deposit {
                    outpoint: op(2, 0),
                    amount: 300,
                    recipient: Some(recipient.clone()),
                    from_bridge: false,
                },
                rune_output(op(2, 3), &user, big),
                rune_output(op(2, 4), &bridge, 50),
                Effect::Deposit { outpoint: op(2, 4), amount: 50, recipient: None, from_bridge: false },
            ],
        )
        .await
        .expect("2");
    chain_to(&store, 3).await;
    let sweep = hash(40, 9);
    store
        .apply_block(
            &block(4, 0, 0),
            &[
                Effect::RuneSpend { outpoint: op(2, 0), spent_by: sweep.clone() },
                Effect::Spend { outpoint: op(2, 0), spent_by: sweep.clone() },
                Effect::BridgeSpend {
                    outpoint: op(2, 0),
                    spent_by: sweep.clone(),
                    input_index: 0,
                    path: SpendPath::KeyPath,
                    leaf_script: None,
                },
                rune_output(Outpoint { txid: sweep.clone(), vout: 0 }, &thief, 300),
                payout(Outpoint { txid: sweep.clone(), vout: 0 }, &thief, 300),
                payout(Outpoint { txid: sweep.clone(), vout: 1 }, &user, 0),
            ],
        )
        .await
        .expect("4");
    let pay = hash(50, 9);
    store
        .apply_block(
            &block(5, 0, 0),
            &[
                Effect::RuneSpend { outpoint: op(2, 4), spent_by: pay.clone() },
                Effect::Spend { outpoint: op(2, 4), spent_by: pay.clone() },
                Effect::BridgeSpend {
                    outpoint: op(2, 4),
                    spent_by: pay.clone(),
                    input_index: 1,
                    path: SpendPath::ScriptPath,
                    leaf_script: Some("20aa".into()),
                },
                payout(Outpoint { txid: pay.clone(), vout: 0 }, &user, 50),
            ],
        )
        .await
        .expect("5");

    // Reads.
    let deposits = store.bridge_deposits().await.expect("deposits");
    assert_eq!(deposits.len(), 2);
    assert_eq!((deposits[0].0.recipient.as_deref(), deposits[0].1), (Some(recipient.as_str()), 4), "5 - 2 + 1");
    assert_eq!(deposits[0].0.spent_by.as_deref(), Some(sweep.as_str()));
    assert_eq!(store.rune_balance_of_script(&bridge).await.expect("balance"), 0);
    assert_eq!(store.rune_balance_of_script(&user).await.expect("balance"), big, "u128 amount round-trips");
    assert_eq!(store.rune_balance_of_script(&thief).await.expect("balance"), 300);
    let spends = store.bridge_spends().await.expect("spends");
    assert_eq!(spends.len(), 2);
    assert_eq!((spends[0].path, spends[0].amount, spends[0].height), (SpendPath::KeyPath, 300, 4));
    assert_eq!(
        spends[0].outputs.iter().map(|o| (o.outpoint.vout, o.amount)).collect::<Vec<_>>(),
        vec![(0, 300), (1, 0)]
    );
    assert_eq!(spends[0].outputs[0].address.as_deref(), Some(format!("addr-{thief}").as_str()));
    assert_eq!(
        (spends[1].path, spends[1].leaf_script.as_deref(), spends[1].input_index),
        (SpendPath::ScriptPath, Some("20aa"), 1)
    );
    let spent = store.rune_output(&op(2, 0)).await.expect("row").expect("some");
    assert_eq!((spent.spent_by.as_deref(), spent.spent_height), (Some(sweep.as_str()), Some(4)));
    let lookup = store.unspent_rune_outputs_of_txids(&[op(2, 0).txid, sweep.clone()]).await.expect("lookup");
    let mut unspent: Vec<Outpoint> = lookup.into_iter().map(|o| o.outpoint).collect();
    unspent.sort();
    assert_eq!(unspent, vec![op(2, 3), Outpoint { txid: sweep.clone(), vout: 0 }], "spent outputs are not returned");

    // A reorg to 3 deletes the rows of 4 and 5 and un-spends the bridge outputs.
    let r = store.rollback_above(3).await.expect("rollback");
    assert_eq!((r.rune_outputs, r.rune_unspent, r.bridge_spends, r.payout_outputs, r.unspent), (1, 2, 2, 3, 2));
    assert_eq!(store.bridge_spends().await.expect("spends"), vec![]);
    assert_eq!(store.rune_balance_of_script(&bridge).await.expect("balance"), 350);
    assert_eq!(store.rune_output(&Outpoint { txid: sweep.clone(), vout: 0 }).await.expect("row"), None);
    let d = store.deposit(&op(2, 0)).await.expect("d").expect("some");
    assert_eq!((d.spent_by, d.recipient), (None, Some(recipient.clone())));

    // Restart: reopen and apply the sweep again on another branch; no duplicates.
    store.close().await;
    let store = target.open().await;
    store
        .apply_block(
            &block(4, 1, 0),
            &[
                Effect::RuneSpend { outpoint: op(2, 0), spent_by: sweep.clone() },
                Effect::Spend { outpoint: op(2, 0), spent_by: sweep.clone() },
                Effect::BridgeSpend {
                    outpoint: op(2, 0),
                    spent_by: sweep.clone(),
                    input_index: 0,
                    path: SpendPath::KeyPath,
                    leaf_script: None,
                },
                payout(Outpoint { txid: sweep.clone(), vout: 0 }, &thief, 300),
            ],
        )
        .await
        .expect("4'");
    let spends = store.bridge_spends().await.expect("spends");
    assert_eq!(spends.len(), 1);
    assert_eq!(spends[0].block_hash, hash(4, 1));
    assert_eq!(store.bridge_deposits().await.expect("deposits")[0].1, 3, "4 - 2 + 1");
    store.close().await;
}

/// A rune spend of an unknown outpoint fails the block: nothing of it is written.
async fn a_bad_rune_spend_rolls_back_the_whole_block(target: &Target) {
    let store = target.open().await;
    chain(&store, 1).await;
    let script = "5120".to_string() + &"11".repeat(32);
    let effects = [
        rune_output(op(2, 0), &script, 9),
        payout(op(2, 1), &script, 0),
        Effect::RuneSpend { outpoint: op(77, 0), spent_by: "aa".repeat(32) },
    ];
    let err = store.apply_block(&block(2, 0, 0), &effects).await.expect_err("unknown outpoint");
    assert!(matches!(err, StoreError::UnknownOutpoint(_)), "{err:?}");
    assert_eq!(store.rune_output(&op(2, 0)).await.expect("row"), None);
    assert_eq!(store.tip_header().await.expect("tip").map(|h| h.height), Some(1));
    store.apply_block(&block(2, 0, 0), &effects[..2]).await.expect("without the bad spend");
    assert_eq!(store.rune_balance_of_script(&script).await.expect("balance"), 9);
    store.close().await;
}

async fn chain_to(store: &Store, height: u64) {
    let from = store.tip_header().await.expect("tip").map_or(1, |h| h.height + 1);
    for h in from..=height {
        store.apply_block(&block(h, 0, 0), &[]).await.expect("block");
    }
}

async fn copies_are_numbered_in_arrival_order_and_read_by_cursor(target: &Target) {
    let store = target.open().await;
    let copy = |id: u64, tag: u8| BatchCopy {
        batch_id: id,
        source: "s".into(),
        content_hash: format!("{:062x}{tag:02x}", id),
        raw: (0..300u32).map(|i| (i as u8) ^ tag).collect(),
        received_at: 0,
    };
    // Arrival order is not id order: 3, 1, 2, then a second copy of 1.
    store.insert_batches(&[copy(3, 0), copy(1, 0)]).await.expect("first");
    store.insert_batches(&[copy(2, 0), copy(1, 0)]).await.expect("second (one duplicate)");
    store.insert_batches(&[copy(1, 9)]).await.expect("late copy");
    let all = store.copies_after(0, 100).await.expect("all");
    let order: Vec<(u64, u64)> = all.iter().map(|c| (c.batch_id, c.size)).collect();
    assert_eq!(order, vec![(3, 300), (1, 300), (2, 300), (1, 300)]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    // A cursor reads only what came after it, a bounded span at a time.
    let after = store.copies_after(all[1].seq, 100).await.expect("after");
    assert_eq!(after.iter().map(|c| c.batch_id).collect::<Vec<_>>(), vec![2, 1]);
    let page = store.copies_after(0, 1).await.expect("page");
    assert_eq!(page.len(), 1);
    assert!(store.copies_after(all[3].seq, 100).await.expect("none").is_empty());
    // One body by id and hash; heads without bodies.
    let one = store.batch_copy(1, &copy(1, 9).content_hash).await.expect("one").expect("stored");
    assert_eq!(one.raw, copy(1, 9).raw);
    assert!(store.batch_copy(1, "00").await.expect("none").is_none());
    let heads = store.copy_heads(10).await.expect("heads");
    assert_eq!(heads.len(), 4);
    assert!(heads.iter().all(|h| h.head.len() == 10));
    assert_eq!(heads.iter().map(|h| h.batch_id).collect::<Vec<_>>(), vec![1, 1, 2, 3]);
    store.close().await;
}

async fn verdicts_and_the_replay_checkpoint_round_trip(target: &Target) {
    let store = target.open().await;
    let v = |id: u64, seq: u64| VerdictRow {
        batch_id: id,
        content_hash: format!("{id:064x}"),
        seq,
        batch_hash: "ab".repeat(32),
        l1_height: 100 + id,
        tx_count: 7,
        outcome: r#"{"verdict":"valid","state_root":"00","tx_count":7}"#.into(),
        header: "{}".into(),
        signature: "cd".repeat(64),
        proof: (id == 2).then(|| "{\"proof\":1}".to_string()),
        judged_at: 5,
    };
    assert!(store.insert_verdict(&v(2, 2)).await.expect("insert"));
    assert!(store.insert_verdict(&v(1, 1)).await.expect("insert"));
    assert!(!store.insert_verdict(&v(1, 1)).await.expect("again"), "a verdict is stored once");
    assert_eq!(store.verdicts().await.expect("read"), vec![v(1, 1), v(2, 2)]);

    assert!(store.replay_checkpoint("replay").await.expect("none").is_none());
    let cp = |batch_id: u64, len: usize| ReplayCheckpointRow {
        batch_id,
        seq_floor: batch_id * 2,
        state_root: "ef".repeat(32),
        bytes: vec![batch_id as u8; len],
        created_at: 9,
    };
    store.save_replay_checkpoint("replay", &cp(1, 1_000)).await.expect("save");
    store.save_replay_checkpoint("replay", &cp(2, 3)).await.expect("replace");
    assert_eq!(store.replay_checkpoint("replay").await.expect("read"), Some(cp(2, 3)));
    store.close().await;
    // Survives a reopen.
    let store = target.open().await;
    assert_eq!(store.replay_checkpoint("replay").await.expect("read"), Some(cp(2, 3)));
    store.close().await;
}
