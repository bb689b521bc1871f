//! Shared by the end-to-end tests: a `kray-guardian run` process watching a devnet, user traffic, and
//! guardian key files. Each test binary uses a part of it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Address, Network};
use kray_devnet::runner::Devnet;
use kray_devnet::traffic::{self, user_tx};
use serde_json::Value;

/// True (with a message) when `KRAY_SKIP_BITCOIND=1` asks to skip tests needing bitcoind.
pub fn skip(what: &str) -> bool {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping {what}");
        return true;
    }
    false
}

/// A guardian process (`kray-guardian run --config`), killed on drop.
pub struct Guardian {
    child: Child,
    /// Its public API, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Its config file.
    pub config: PathBuf,
    log: PathBuf,
}

impl Guardian {
    /// Starts a guardian with `config`, serving on `port`, logging (info) to `log`, with `envs` set.
    pub fn spawn(config: &Path, port: u16, log: &Path, envs: &[(&str, &str)]) -> Guardian {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log clone");
        let child = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("guardian starts");
        Guardian {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// `kill -9`: SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (what `systemctl stop` and `docker stop` send) and waits for the exit, bounded.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        for _ in 0..240 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the guardian did not exit after SIGTERM; log:\n{}", self.log_tail());
    }

    /// Its whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A JSON GET, `None` on any failure.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// `n` transfers between the devnet's three users, each with the sender's next nonce.
pub async fn transfers(d: &Devnet, client: &reqwest::Client, n: usize) {
    let net = d.profile().network;
    for k in 0..n {
        let from = k % 3;
        let to = &d.info.user_addresses[(from + 1) % 3];
        let acct = traffic::account(client, &d.info.api_url, &d.info.user_addresses[from]).await.expect("account");
        let tx = user_tx(d.user(from).expect("user"), net, "transfer", to, 10 + k as u64, acct.next_nonce);
        traffic::submit(client, &d.info.api_url, &tx).await.expect("transfer accepted");
    }
}

/// A guardian key file (0600) for secret `[n; 32]`: its path, x-only key (hex) and BIP-86 address.
pub fn key_file(dir: &Path, n: u8) -> (PathBuf, String, Address) {
    let sk = SecretKey::from_slice(&[n; 32]).expect("key");
    let secp = Secp256k1::new();
    let (xonly, _) = Keypair::from_secret_key(&secp, &sk).x_only_public_key();
    let path = dir.join(format!("guardian-{n}.key"));
    std::fs::write(&path, hex::encode(sk.secret_bytes())).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (path, hex::encode(xonly.serialize()), Address::p2tr(&secp, xonly, None, Network::Regtest))
}
