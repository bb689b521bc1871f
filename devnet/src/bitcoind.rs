//! A throwaway `bitcoind -regtest` for tests and the devnet: own temporary datadir, free RPC
//! port, generated credentials; killed and reaped on drop, stopped with SIGTERM by
//! [`BitcoindProcess::terminate`], and (on Linux) sent SIGTERM by the kernel when the thread that
//! started it exits, so even a `kill -9` of its owner does not leave it running.
//!
//! The binary is found through the environment variable `BITCOIND_EXE`, else in the cache that
//! `scripts/install-bitcoind.sh` fills: `$KRAY_BITCOIND_CACHE` (default
//! `${XDG_CACHE_HOME:-$HOME/.cache}/kray-guardian`) `/bitcoind-libbitcoinkernel-sys-0.4.1/bitcoind`.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;
use tempfile::TempDir;

use crate::rpc::{RpcClient, RpcError, RPC_IN_WARMUP};

/// Version of the `libbitcoinkernel-sys` crate whose Bitcoin Core source the install script builds;
/// part of the cache directory name.
pub const KERNEL_CRATE_VERSION: &str = "0.4.1";

/// Environment variable naming the `bitcoind` executable explicitly.
pub const ENV_BITCOIND_EXE: &str = "BITCOIND_EXE";

/// Environment variable overriding the cache root of the install script.
pub const ENV_CACHE_ROOT: &str = "KRAY_BITCOIND_CACHE";

/// Errors starting or talking to the throwaway bitcoind.
#[derive(Debug, thiserror::Error)]
pub enum BitcoindError {
    /// No bitcoind executable was found.
    #[error(
        "bitcoind not found (looked at: {}); run `bash scripts/install-bitcoind.sh` \
         (about 10 minutes once) or set BITCOIND_EXE to a bitcoind binary",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// The paths that were tried.
        searched: Vec<PathBuf>,
    },
    /// An I/O error (temp dir, port probe, spawn).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// bitcoind exited before its RPC answered.
    #[error("bitcoind exited during startup ({status}): {stderr}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The end of its stderr / debug log.
        stderr: String,
    },
    /// The RPC did not answer in time.
    #[error("bitcoind RPC did not become ready within {0:?}: {1}")]
    Timeout(Duration, String),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Options for [`BitcoindProcess::start_with`].
#[derive(Debug, Clone)]
pub struct BitcoindOptions {
    /// The executable; `None` looks it up with [`find_bitcoind`].
    pub exe: Option<PathBuf>,
    /// Extra command-line arguments, appended after the defaults.
    pub extra_args: Vec<String>,
    /// How long to wait for the RPC to answer.
    pub startup_timeout: Duration,
}

impl Default for BitcoindOptions {
    fn default() -> Self {
        Self { exe: None, extra_args: Vec::new(), startup_timeout: Duration::from_secs(60) }
    }
}

/// A running `bitcoind -regtest` owned by this process.
#[derive(Debug)]
pub struct BitcoindProcess {
    child: Option<Child>,
    datadir: TempDir,
    exe: PathBuf,
    rpc_port: u16,
    rpc_user: String,
    rpc_password: String,
}

/// The cache root used by `scripts/install-bitcoind.sh`: `$KRAY_BITCOIND_CACHE`, else
/// `$XDG_CACHE_HOME/kray-guardian`, else `$HOME/.cache/kray-guardian`.
pub fn cache_root() -> Option<PathBuf> {
    cache_root_from(|k| std::env::var_os(k))
}

fn cache_root_from(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
    if let Some(root) = non_empty(ENV_CACHE_ROOT) {
        return Some(PathBuf::from(root));
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("kray-guardian"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".cache").join("kray-guardian"))
}

/// The directory where the install script puts `bitcoind` and `bitcoin-cli`.
pub fn install_dir() -> Option<PathBuf> {
    cache_root().map(|root| root.join(format!("bitcoind-libbitcoinkernel-sys-{KERNEL_CRATE_VERSION}")))
}

/// Finds the bitcoind executable: `$BITCOIND_EXE` if set, else the install cache.
pub fn find_bitcoind() -> Result<PathBuf, BitcoindError> {
    let mut searched = Vec::new();
    if let Some(exe) = std::env::var_os(ENV_BITCOIND_EXE).filter(|v| !v.is_empty()) {
        let exe = PathBuf::from(exe);
        if is_executable(&exe) {
            return Ok(exe);
        }
        // An explicit setting that points nowhere is an error, not a reason to look elsewhere.
        searched.push(exe);
        return Err(BitcoindError::NotFound { searched });
    }
    if let Some(dir) = install_dir() {
        let exe = dir.join("bitcoind");
        if is_executable(&exe) {
            return Ok(exe);
        }
        searched.push(exe);
    }
    Err(BitcoindError::NotFound { searched })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1 (bind port 0, read it, release it).
pub fn free_port() -> Result<u16, BitcoindError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| BitcoindError::Io { context: "binding a probe socket to find a free port".into(), source })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| BitcoindError::Io { context: "reading the probe socket's port".into(), source })
}

fn random_token(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

impl BitcoindProcess {
    /// Starts bitcoind with default options and waits until its RPC answers.
    pub async fn start() -> Result<Self, BitcoindError> {
        Self::start_with(BitcoindOptions::default()).await
    }

    /// Starts bitcoind with `options` and waits until its RPC answers.
    pub async fn start_with(options: BitcoindOptions) -> Result<Self, BitcoindError> {
        let exe = match options.exe {
            Some(exe) => exe,
            None => find_bitcoind()?,
        };
        let datadir = tempfile::Builder::new()
            .prefix("kray-bitcoind-")
            .tempdir()
            .map_err(|source| BitcoindError::Io { context: "creating the bitcoind datadir".into(), source })?;
        let rpc_port = free_port()?;
        let rpc_user = format!("kray{}", random_token(8));
        let rpc_password = random_token(32);
        let stderr_path = datadir.path().join("stderr.log");
        let stderr = File::create(&stderr_path)
            .map_err(|source| BitcoindError::Io { context: format!("creating {}", stderr_path.display()), source })?;
        let mut cmd = Command::new(&exe);
        cmd.arg("-regtest")
            .arg(format!("-datadir={}", datadir.path().display()))
            .arg(format!("-rpcport={rpc_port}"))
            .arg("-rpcbind=127.0.0.1")
            .arg("-rpcallowip=127.0.0.1")
            .arg(format!("-rpcuser={rpc_user}"))
            .arg(format!("-rpcpassword={rpc_password}"))
            .args([
                "-server=1",
                "-rest=1",
                "-txindex=1",
                "-fallbackfee=0.0001",
                "-listen=0",
                "-dnsseed=0",
                "-fixedseeds=0",
                "-datacarriersize=100000",
                "-printtoconsole=0",
            ])
            .args(&options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        tracing::info!(exe = %exe.display(), datadir = %datadir.path().display(), rpc_port, "starting bitcoind -regtest");
        crate::process::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|source| BitcoindError::Io { context: format!("spawning {}", exe.display()), source })?;
        let mut process = Self { child: Some(child), datadir, exe, rpc_port, rpc_user, rpc_password };
        process.wait_ready(options.startup_timeout).await?;
        Ok(process)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), BitcoindError> {
        let client = self.rpc_client_with_timeout(Duration::from_secs(5));
        let start = Instant::now();
        let mut last: String;
        loop {
            if let Some(child) = self.child.as_mut() {
                let exited = child
                    .try_wait()
                    .map_err(|source| BitcoindError::Io { context: "polling bitcoind".into(), source })?;
                if let Some(status) = exited {
                    self.child = None;
                    return Err(BitcoindError::Exited { status: status.to_string(), stderr: self.log_tail() });
                }
            }
            match client.get_block_count().await {
                Ok(height) => {
                    tracing::info!(rpc_port = self.rpc_port, height, elapsed = ?start.elapsed(), "bitcoind ready");
                    return Ok(());
                }
                Err(e) => {
                    if e.code() == Some(RPC_IN_WARMUP) {
                        tracing::debug!("bitcoind warming up");
                    }
                    last = e.to_string();
                }
            }
            if start.elapsed() > timeout {
                return Err(BitcoindError::Timeout(timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of bitcoind's stderr and debug.log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in [self.datadir.path().join("stderr.log"), self.datadir.path().join("regtest").join("debug.log")] {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(15);
                if !lines[from..].is_empty() {
                    out.push_str(&lines[from..].join("\n"));
                    out.push('\n');
                }
            }
        }
        out.trim_end().to_string()
    }

    /// The RPC URL, `http://127.0.0.1:<port>`.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The REST base URL, `http://127.0.0.1:<port>/rest`.
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}/rest", self.rpc_port)
    }

    /// The RPC port.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The generated RPC user name.
    pub fn rpc_user(&self) -> &str {
        &self.rpc_user
    }

    /// The generated RPC password.
    pub fn rpc_password(&self) -> &str {
        &self.rpc_password
    }

    /// The datadir (removed on drop); the regtest chain lives in `<datadir>/regtest`.
    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    /// The executable that was started.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new RPC client for this node.
    pub fn rpc_client(&self) -> RpcClient {
        RpcClient::new(self.rpc_url(), &self.rpc_user, &self.rpc_password)
    }

    fn rpc_client_with_timeout(&self, timeout: Duration) -> RpcClient {
        RpcClient::with_timeout(self.rpc_url(), &self.rpc_user, &self.rpc_password, timeout)
    }

    /// Stops bitcoind with SIGTERM (its graceful shutdown), waiting up to `grace` before killing it;
    /// reaped either way. Later calls (and drop) do nothing.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            match crate::process::terminate(&mut child, grace) {
                Ok(status) => tracing::info!(pid, %status, "bitcoind stopped"),
                Err(e) => tracing::warn!(pid, error = %e, "stopping bitcoind"),
            }
        }
    }

    /// Stops bitcoind gracefully (RPC `stop`, then waits up to 30 s before killing it).
    pub async fn stop(mut self) -> Result<(), BitcoindError> {
        let _: Result<serde_json::Value, _> = self.rpc_client().call("stop", serde_json::json!([])).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Some(mut child) = self.child.take() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        kill_and_reap(&mut child);
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

fn kill_and_reap(child: &mut Child) {
    if let Err(e) = child.kill() {
        tracing::debug!(error = %e, "bitcoind already gone");
    }
    if let Err(e) = child.wait() {
        tracing::warn!(error = %e, "could not reap bitcoind");
    }
}

impl Drop for BitcoindProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            tracing::debug!(pid = child.id(), "killing bitcoind");
            kill_and_reap(&mut child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let p = free_port().expect("port");
        assert!(p > 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("port still free");
    }

    #[test]
    fn cache_root_follows_the_install_script() {
        use std::ffi::OsString;
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        };
        let all = env(&[("KRAY_BITCOIND_CACHE", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(cache_root_from(all), Some(PathBuf::from("/c")));
        let xdg = env(&[("KRAY_BITCOIND_CACHE", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(cache_root_from(xdg), Some(PathBuf::from("/x/kray-guardian")));
        let home = env(&[("HOME", "/h")]);
        assert_eq!(cache_root_from(home), Some(PathBuf::from("/h/.cache/kray-guardian")));
        assert_eq!(cache_root_from(env(&[])), None);
    }

    #[test]
    fn tokens_are_random_alphanumeric() {
        let a = random_token(32);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_token(32));
    }

    #[tokio::test]
    async fn missing_binary_is_a_clear_error() {
        let opts =
            BitcoindOptions { exe: Some(PathBuf::from("/nonexistent/kray/bitcoind")), ..BitcoindOptions::default() };
        let err = BitcoindProcess::start_with(opts).await.expect_err("must fail");
        assert!(matches!(err, BitcoindError::Io { .. }), "{err}");
        let nf = BitcoindError::NotFound { searched: vec![PathBuf::from("/x/bitcoind")] };
        assert!(nf.to_string().contains("scripts/install-bitcoind.sh"));
        assert!(nf.to_string().contains("/x/bitcoind"));
    }

    #[tokio::test]
    async fn early_exit_is_reported_with_stderr() {
        // `false` exits at once with status 1: startup must report Exited, not hang or panic.
        let opts = BitcoindOptions {
            exe: Some(PathBuf::from("/bin/false")),
            startup_timeout: Duration::from_secs(10),
            ..BitcoindOptions::default()
        };
        if !Path::new("/bin/false").exists() {
            return;
        }
        let err = BitcoindProcess::start_with(opts).await.expect_err("must fail");
        assert!(matches!(err, BitcoindError::Exited { .. }), "{err}");
    }
}
