//! End-to-end: the guardian's web page in headless Chromium against a guardian watching a devnet (the
//! scenario of `tests/withdrawal_api.rs`): the page shows PENDING, then SAFE for a paid withdrawal, and
//! AT RISK for one in a batch followed by a faulty batch; it loads nothing from elsewhere.
//!
//! Needs Debian's `chromium` (`scripts/install-chromium.sh`; `CHROMIUM` names another binary): the test
//! fails without it unless `KRAY_SKIP_CHROMIUM=1`. Needs the regtest bitcoind like the other end-to-end
//! tests (`KRAY_SKIP_BITCOIND=1` skips). `KRAY_WEB_SCREENSHOT=FILE` also writes a phone-sized screenshot
//! of the SAFE page (how `docs/img/web-page.png` is made).

#[allow(dead_code)]
#[path = "withdrawal_api.rs"]
mod withdrawal_api;

use std::path::{Path, PathBuf};
use std::process::Command;

use withdrawal_api::Seen;

/// The chromium binary, or `None` when it is missing.
fn chromium() -> Option<PathBuf> {
    if let Ok(c) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(c));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--virtual-time-budget=5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The DOM of `url` after its scripts ran.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let o = Command::new(chromium)
        .args(chromium_args(profile.path()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn screenshot(chromium: &Path, url: &str, file: &Path) {
    let profile = tempfile::tempdir().expect("profile dir");
    let o = Command::new(chromium)
        .args(chromium_args(profile.path()))
        .arg("--window-size=412,1000")
        .arg("--hide-scrollbars")
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "chromium screenshot failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn check_page(chromium: &Path, base: &str, id: &str, seen: Seen) {
    let want = match seen {
        Seen::Pending => "PENDING",
        Seen::Safe => "SAFE",
        Seen::AtRisk => "AT RISK",
    };
    let dom = dump_dom(chromium, &format!("{base}/?q={id}"));
    let card = format!("data-verdict=\"{want}\" data-id=\"{id}\"");
    assert!(dom.contains(&card), "the page does not show {want} for {id}:\n{dom}");
    assert!(dom.contains(&format!(">{want}</p>")), "the verdict is not shown as text:\n{dom}");
    assert!(dom.contains("data-synced=\"1\""), "the network status did not load:\n{dom}");
    assert!(!dom.contains("https://") && !dom.contains("http://"), "the page refers to another site:\n{dom}");
    if seen == Seen::Safe {
        if let Ok(file) = std::env::var("KRAY_WEB_SCREENSHOT") {
            screenshot(chromium, &format!("{base}/?q={id}"), Path::new(&file));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_shows_safe_and_at_risk_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        if std::env::var("KRAY_SKIP_CHROMIUM").as_deref() == Ok("1") {
            eprintln!("KRAY_SKIP_CHROMIUM=1: skipping the web page test");
            return;
        }
        panic!("chromium is missing: run scripts/install-chromium.sh (or set KRAY_SKIP_CHROMIUM=1)");
    };
    if withdrawal_api::skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let observe = |base: &str, id: &str, seen: Seen| check_page(&chromium, base, id, seen);
    withdrawal_api::scenario(dir.path(), &observe).await;
}
