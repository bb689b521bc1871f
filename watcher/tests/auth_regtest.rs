//! bitcoind logins on a real `bitcoind -regtest`: the cookie file (and a new cookie after a restart,
//! with the same client), credentials in the URL, and a wrong password as the typed error.
//!
//! Needs the bitcoind of `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`); skipped, with a message,
//! only when `KRAY_SKIP_BITCOIND=1`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kray_devnet::bitcoind::{find_bitcoind, free_port, BitcoindProcess};
use kray_watcher::chain::{AuthStatus, BitcoindAuth, BitcoindRpc, BitcoindSource, ChainError, ChainSource};

fn skip() -> bool {
    let skip = std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1");
    if skip {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest bitcoind test");
    }
    skip
}

/// bitcoind with no rpcuser/rpcpassword/rpcauth: it writes `<datadir>/regtest/.cookie`.
struct CookieNode {
    child: Option<Child>,
    datadir: tempfile::TempDir,
    port: u16,
}

impl CookieNode {
    fn start(datadir: tempfile::TempDir, port: u16) -> CookieNode {
        let exe = find_bitcoind().expect("bitcoind (scripts/install-bitcoind.sh or BITCOIND_EXE)");
        let child = Command::new(exe)
            .arg("-regtest")
            .arg(format!("-datadir={}", datadir.path().display()))
            .arg(format!("-rpcport={port}"))
            .args(["-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-server=1", "-listen=0", "-dnsseed=0"])
            .args(["-fixedseeds=0", "-printtoconsole=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bitcoind");
        CookieNode { child: Some(child), datadir, port }
    }

    fn cookie(&self) -> std::path::PathBuf {
        self.datadir.path().join("regtest").join(".cookie")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops bitcoind with the RPC `stop` (through `rpc`) and waits for the process to exit.
    async fn stop(&mut self, rpc: &BitcoindRpc) -> tempfile::TempDir {
        let _: Result<serde_json::Value, _> = rpc.call("stop", serde_json::json!([])).await;
        if let Some(mut child) = self.child.take() {
            child.wait().expect("bitcoind exits");
        }
        std::mem::replace(&mut self.datadir, tempfile::tempdir().expect("tmp"))
    }
}

impl Drop for CookieNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_for_file(path: &Path, differs_from: Option<&str>) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() && Some(text.as_str()) != differs_from {
                return text;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no cookie at {}", path.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Calls `tip` until bitcoind has finished starting; a refused login fails the test at once.
async fn tip_when_ready(source: &BitcoindSource) -> u32 {
    let start = Instant::now();
    loop {
        match source.tip().await {
            Ok(tip) => return tip.height,
            Err(e @ ChainError::Unauthorized(_)) => panic!("login refused: {e}"),
            Err(e) => assert!(start.elapsed() < Duration::from_secs(120), "bitcoind never ready: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cookie_login_survives_a_bitcoind_restart() {
    if skip() {
        return;
    }
    let port = free_port().expect("port");
    let mut node = CookieNode::start(tempfile::tempdir().expect("tmp"), port);
    let first = wait_for_file(&node.cookie(), None).await;
    let rpc =
        BitcoindRpc::new(&node.url(), Some(BitcoindAuth::Cookie(node.cookie())), Duration::from_secs(30)).expect("rpc");
    let source = BitcoindSource::from_rpc(rpc.clone());
    assert_eq!(tip_when_ready(&source).await, 0);
    assert_eq!(source.auth_status(), AuthStatus::Accepted);

    // Restart on the same datadir: bitcoind writes a new cookie; the same client logs in with it.
    let datadir = node.stop(&rpc).await;
    let mut node = CookieNode::start(datadir, port);
    let second = wait_for_file(&node.cookie(), Some(&first)).await;
    assert_ne!(first, second, "bitcoind wrote a new cookie");
    assert_eq!(tip_when_ready(&source).await, 0);
    assert_eq!(source.auth_status(), AuthStatus::Accepted);

    // A cookie that is not the node's: the typed error, and the status says why.
    let stale = node.datadir.path().join("stale.cookie");
    std::fs::write(&stale, &first).expect("write");
    let wrong = BitcoindSource::from_rpc(
        BitcoindRpc::new(&node.url(), Some(BitcoindAuth::Cookie(stale)), Duration::from_secs(30)).expect("rpc"),
    );
    let err = wrong.tip().await.expect_err("a stale cookie is refused");
    assert!(matches!(err, ChainError::Unauthorized(_)), "{err:?}");
    assert!(wrong.auth_status().problem().expect("rejected").contains("stale.cookie"));
    node.stop(&rpc).await;
}

#[tokio::test]
async fn url_credentials_work_and_a_wrong_password_is_unauthorized() {
    if skip() {
        return;
    }
    let node = BitcoindProcess::start().await.expect("bitcoind");
    let url = format!("http://{}:{}@127.0.0.1:{}", node.rpc_user(), node.rpc_password(), node.rpc_port());
    let source = BitcoindSource::from_rpc(BitcoindRpc::new(&url, None, Duration::from_secs(30)).expect("rpc"));
    assert_eq!(source.tip().await.expect("tip").height, 0);
    assert_eq!(source.auth_status(), AuthStatus::Accepted);

    let wrong = BitcoindSource::new(&node.rpc_url(), node.rpc_user(), "not-the-password", Duration::from_secs(30))
        .expect("source");
    let err = wrong.tip().await.expect_err("a wrong password is refused");
    assert!(matches!(err, ChainError::Unauthorized(_)), "{err:?}");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    match wrong.auth_status() {
        AuthStatus::Rejected { method, reason, fix } => {
            assert!(method.contains(node.rpc_user()) && reason.contains("401") && fix.contains("bitcoind.user"));
        }
        other => panic!("{other:?}"),
    }
    node.stop().await.expect("stop");
}
