//! bitcoind JSON-RPC for the whole guardian: one client ([`BitcoindRpc`]) that logs in the ways
//! bitcoind users expect ([`BitcoindAuth`]: the cookie file, re-read whenever bitcoind may have
//! rewritten it, or a user and password, from the configuration or from the URL), and
//! [`BitcoindSource`], the [`ChainSource`] over it. The challenger's sender uses the same client.
//!
//! A rejected login is logged once ("bitcoind rejected the credentials", with the method and the fix),
//! kept as [`AuthStatus::Rejected`] for `/health` and metrics, and retried with backoff; a new cookie
//! (bitcoind restarted) is tried at once.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::{Block, BlockHash};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::source::{ChainError, ChainSource, ChainTip, HeaderInfo};

/// bitcoind's `RPC_INVALID_ADDRESS_OR_KEY` (unknown block hash).
const RPC_NOT_FOUND: i64 = -5;
/// bitcoind's `RPC_INVALID_PARAMETER` (e.g. "Block height out of range").
const RPC_INVALID_PARAMETER: i64 = -8;
/// First wait after a rejected login before the same credentials are tried again.
const AUTH_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between two tries of rejected credentials.
const AUTH_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How the guardian logs in to bitcoind's JSON-RPC.
#[derive(Clone, PartialEq, Eq)]
pub enum BitcoindAuth {
    /// bitcoind's cookie file (`<datadir>/[<network>/].cookie`), which bitcoind rewrites at every
    /// start: read again whenever the connection was lost or a login was refused.
    Cookie(PathBuf),
    /// A fixed user and password (`rpcauth` / `rpcuser` on the node).
    UserPass {
        /// The RPC user.
        user: String,
        /// The RPC password (never printed).
        password: String,
    },
}

impl fmt::Debug for BitcoindAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password is never printed.
        f.write_str(&self.method())
    }
}

/// Why [`BitcoindAuth::credentials`] has none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The cookie file does not exist: bitcoind is not running (it deletes the file when it stops)
    /// or the path is wrong.
    #[error("cookie file {path} does not exist (bitcoind not running yet, or a wrong path)")]
    CookieMissing {
        /// The file.
        path: PathBuf,
    },
    /// The cookie file exists but cannot be read or does not hold `user:password`.
    #[error("cannot use cookie file {path}: {reason}")]
    CookieUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl BitcoindAuth {
    /// The user and password to send now; a cookie file is read on every call.
    pub fn credentials(&self) -> Result<(String, String), AuthError> {
        match self {
            BitcoindAuth::UserPass { user, password } => Ok((user.clone(), password.clone())),
            BitcoindAuth::Cookie(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => AuthError::CookieMissing { path: path.clone() },
                    _ => AuthError::CookieUnreadable { path: path.clone(), reason: e.to_string() },
                })?;
                let line = text.lines().next().unwrap_or_default();
                match line.split_once(':') {
                    Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                        Ok((user.to_owned(), password.to_owned()))
                    }
                    _ => Err(AuthError::CookieUnreadable {
                        path: path.clone(),
                        reason: "it does not hold USER:PASSWORD".into(),
                    }),
                }
            }
        }
    }

    /// The login method in words, without secrets: `cookie file PATH` or `user NAME`.
    pub fn method(&self) -> String {
        match self {
            BitcoindAuth::Cookie(path) => format!("cookie file {}", path.display()),
            BitcoindAuth::UserPass { user, .. } => format!("user {user:?}"),
        }
    }
}

/// Whether bitcoind accepts the guardian's login, as of the last call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthStatus {
    /// No call has reached bitcoind yet.
    #[default]
    Unknown,
    /// bitcoind answered the last call that reached it.
    Accepted,
    /// The login failed: bitcoind answered HTTP 401, or the cookie file cannot be used.
    Rejected {
        /// The method (`cookie file PATH`, `user NAME`, `user NAME (from bitcoind.url)`).
        method: String,
        /// What happened.
        reason: String,
        /// What the operator should check.
        fix: String,
    },
}

impl AuthStatus {
    /// One line for `/health` and logs when the login failed, else `None`.
    pub fn problem(&self) -> Option<String> {
        match self {
            AuthStatus::Rejected { method, reason, fix } => {
                Some(format!("bitcoind rejected the credentials ({method}): {reason}; {fix}"))
            }
            _ => None,
        }
    }
}

/// Errors of [`BitcoindRpc`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The client cannot be built (bad URL, no credentials, two sources of credentials).
    #[error("bitcoind client: {0}")]
    Config(String),
    /// No answer: connection refused, timeout, transport failure, or no cookie file yet.
    #[error("bitcoind unreachable: {0}")]
    Transport(String),
    /// The login was refused (HTTP 401) or the cookie file is unusable; see [`AuthStatus`].
    #[error("bitcoind rejected the credentials ({method}): {reason}")]
    Unauthorized {
        /// The login method (no secrets).
        method: String,
        /// What happened.
        reason: String,
    },
    /// bitcoind answered with a JSON-RPC error.
    #[error("bitcoind error {code}: {message}")]
    Rpc {
        /// bitcoind's error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer had an unexpected shape.
    #[error("cannot decode bitcoind's answer to {method}: {reason}")]
    Decode {
        /// The call.
        method: String,
        /// Why.
        reason: String,
    },
}

#[derive(Clone, PartialEq, Eq)]
struct Creds {
    user: String,
    password: String,
}

struct Rejection {
    creds: Option<Creds>,
    retry_at: Instant,
    backoff: Duration,
    reason: String,
}

#[derive(Default)]
struct AuthState {
    /// The credentials last read (dropped when the connection fails or a login is refused, so the
    /// cookie is read again).
    cached: Option<Creds>,
    status: AuthStatus,
    rejected: Option<Rejection>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    auth: BitcoindAuth,
    auth_in_url: bool,
    timeout: Duration,
    next_id: AtomicU64,
    state: Mutex<AuthState>,
}

/// The guardian's bitcoind JSON-RPC client. Cheap to clone (clones share the connection pool and the
/// login state).
#[derive(Clone)]
pub struct BitcoindRpc {
    inner: Arc<Inner>,
}

impl fmt::Debug for BitcoindRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No password, ever.
        f.debug_struct("BitcoindRpc").field("url", &self.inner.url).field("auth", &self.method()).finish()
    }
}

/// `%XX` decoding of a URL's user or password.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl BitcoindRpc {
    /// A client for the node at `url` (`http://HOST:PORT`, or `http://USER:PASSWORD@HOST:PORT`). Give
    /// `auth` unless the URL carries the credentials (not both); each call fails as unreachable after
    /// `timeout`. Nothing is contacted yet.
    pub fn new(url: &str, auth: Option<BitcoindAuth>, timeout: Duration) -> Result<Self, RpcError> {
        let mut parsed =
            reqwest::Url::parse(url).map_err(|e| RpcError::Config(format!("bitcoind url is not a URL: {e}")))?;
        let in_url = (!parsed.username().is_empty() || parsed.password().is_some()).then(|| BitcoindAuth::UserPass {
            user: percent_decode(parsed.username()),
            password: percent_decode(parsed.password().unwrap_or_default()),
        });
        // The credentials go in the Authorization header, never in a URL that may be logged.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let (auth, auth_in_url) = match (auth, in_url) {
            (Some(a), None) => (a, false),
            (None, Some(a)) => (a, true),
            (Some(_), Some(_)) => {
                return Err(RpcError::Config(
                    "credentials are both in the URL and configured separately; keep one".into(),
                ))
            }
            (None, None) => {
                return Err(RpcError::Config(
                    "no credentials: give a cookie file, a user and password, or http://USER:PASSWORD@HOST:PORT".into(),
                ))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RpcError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url: parsed.to_string(),
                auth,
                auth_in_url,
                timeout,
                next_id: AtomicU64::new(1),
                state: Mutex::new(AuthState::default()),
            }),
        })
    }

    /// The node's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// How this client logs in.
    pub fn auth(&self) -> &BitcoindAuth {
        &self.inner.auth
    }

    /// Whether bitcoind accepts the login, as of the last call (for `/health` and metrics).
    pub fn auth_status(&self) -> AuthStatus {
        self.state().status.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // A panic while holding this lock cannot leave it inconsistent (plain assignments only).
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn method(&self) -> String {
        let m = self.inner.auth.method();
        if self.inner.auth_in_url {
            format!("{m} (from bitcoind.url)")
        } else {
            m
        }
    }

    fn fix(&self) -> &'static str {
        match (&self.inner.auth, self.inner.auth_in_url) {
            (BitcoindAuth::Cookie(_), _) => {
                "fix: point bitcoind.cookie_file at the .cookie of the node at bitcoind.url (<datadir>/.cookie, or \
                 <datadir>/<network>/.cookie off mainnet), readable by the guardian's user (e.g. start bitcoind with \
                 -rpccookieperms=group and add the guardian's user to bitcoind's group)"
            }
            (BitcoindAuth::UserPass { .. }, true) => {
                "fix: make the user and password in bitcoind.url match the node's -rpcauth (or -rpcuser and \
                 -rpcpassword), percent-encoding special characters"
            }
            (BitcoindAuth::UserPass { .. }, false) => {
                "fix: make bitcoind.user and bitcoind.password (or the variable bitcoind.password_env names) match \
                 the node's -rpcauth (or -rpcuser and -rpcpassword)"
            }
        }
    }

    /// The credentials to send: cached, else read (the cookie file) now. While a login is refused
    /// nothing is cached, so a cookie rewritten by bitcoind is seen at the next call.
    fn creds(&self) -> Result<Creds, RpcError> {
        if let Some(c) = self.state().cached.clone() {
            return Ok(c);
        }
        match self.inner.auth.credentials() {
            Ok((user, password)) => {
                let c = Creds { user, password };
                let mut st = self.state();
                if st.rejected.is_none() {
                    st.cached = Some(c.clone());
                }
                Ok(c)
            }
            Err(e @ AuthError::CookieMissing { .. }) => Err(RpcError::Transport(e.to_string())),
            Err(e @ AuthError::CookieUnreadable { .. }) => Err(self.rejected(None, e.to_string())),
        }
    }

    /// Records a failed login (logged once until a login succeeds) and returns its error.
    fn rejected(&self, creds: Option<Creds>, reason: String) -> RpcError {
        let method = self.method();
        let fix = self.fix();
        let mut st = self.state();
        st.cached = None;
        let backoff = match &st.rejected {
            Some(r) => (r.backoff * 2).min(AUTH_BACKOFF_MAX),
            None => AUTH_BACKOFF_INITIAL,
        };
        if !matches!(st.status, AuthStatus::Rejected { .. }) {
            tracing::error!(
                auth = %method,
                url = %self.inner.url,
                %reason,
                %fix,
                "bitcoind rejected the credentials ({method}): {reason}; {fix}"
            );
        }
        st.status = AuthStatus::Rejected { method: method.clone(), reason: reason.clone(), fix: fix.to_owned() };
        st.rejected = Some(Rejection { creds, retry_at: Instant::now() + backoff, backoff, reason: reason.clone() });
        RpcError::Unauthorized { method, reason }
    }

    fn accepted(&self) {
        let mut st = self.state();
        if matches!(st.status, AuthStatus::Rejected { .. }) {
            tracing::info!(auth = %self.method(), "bitcoind accepted the credentials");
        }
        st.status = AuthStatus::Accepted;
        st.rejected = None;
    }

    /// While the same credentials were refused less than the backoff ago, the refusal again (no call).
    fn backing_off(&self, creds: &Creds) -> Option<RpcError> {
        let st = self.state();
        let r = st.rejected.as_ref()?;
        (r.creds.as_ref() == Some(creds) && Instant::now() < r.retry_at)
            .then(|| RpcError::Unauthorized { method: self.method(), reason: r.reason.clone() })
    }

    /// Calls `method` with `params` and decodes its result.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcError> {
        let value = self.call_value(method, &params).await?;
        serde_json::from_value(value).map_err(|e| RpcError::Decode { method: method.into(), reason: e.to_string() })
    }

    async fn call_value(&self, method: &str, params: &Value) -> Result<Value, RpcError> {
        let mut creds = self.creds()?;
        if let Some(e) = self.backing_off(&creds) {
            return Err(e);
        }
        let mut reread = false;
        loop {
            match self.send(method, params, &creds).await {
                Ok(Some(reply)) => {
                    self.accepted();
                    return reply;
                }
                Ok(None) => {
                    // HTTP 401. A cookie may have been rewritten by a restart since it was read.
                    if matches!(self.inner.auth, BitcoindAuth::Cookie(_)) && !reread {
                        reread = true;
                        self.state().cached = None;
                        let fresh = self.creds()?;
                        if fresh != creds {
                            creds = fresh;
                            continue;
                        }
                    }
                    return Err(self.rejected(Some(creds), "HTTP 401 Unauthorized".into()));
                }
                Err(e) => {
                    // The node may restart with a new cookie: read it again at the next call.
                    self.state().cached = None;
                    return Err(e);
                }
            }
        }
    }

    /// One request: `Ok(None)` on HTTP 401, `Ok(Some(result or RPC error))` when bitcoind answered.
    async fn send(
        &self,
        method: &str,
        params: &Value,
        creds: &Creds,
    ) -> Result<Option<Result<Value, RpcError>>, RpcError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        tracing::trace!(method, "bitcoind rpc call");
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                RpcError::Transport(format!("{method}: no answer within {:?}", self.inner.timeout))
            } else {
                RpcError::Transport(format!("{method}: {e}"))
            }
        };
        let resp = self
            .inner
            .http
            .post(&self.inner.url)
            .basic_auth(&creds.user, Some(&creds.password))
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        let text = resp.text().await.map_err(transport)?;
        let reply: Value = serde_json::from_str(&text).map_err(|_| {
            RpcError::Transport(format!("{method}: HTTP {status}: {}", text.chars().take(200).collect::<String>()))
        })?;
        if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
            return Ok(Some(Err(RpcError::Rpc {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            })));
        }
        Ok(Some(Ok(reply.get("result").cloned().unwrap_or(Value::Null))))
    }
}

/// A bitcoind JSON-RPC chain source over [`BitcoindRpc`]. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct BitcoindSource {
    rpc: BitcoindRpc,
}

#[derive(Deserialize)]
struct BlockchainInfo {
    blocks: u32,
    headers: u32,
    bestblockhash: BlockHash,
}

#[derive(Deserialize)]
struct VerboseHeader {
    hash: BlockHash,
    height: u32,
    previousblockhash: Option<BlockHash>,
}

impl BitcoindSource {
    /// A source for the node at `url` (e.g. `http://127.0.0.1:18443`) with user and password;
    /// each call fails as unreachable after `timeout`.
    pub fn new(url: &str, user: &str, password: &str, timeout: Duration) -> Result<Self, ChainError> {
        let auth = BitcoindAuth::UserPass { user: user.to_owned(), password: password.to_owned() };
        Ok(Self::from_rpc(BitcoindRpc::new(url, Some(auth), timeout).map_err(|e| ChainError::Rpc(e.to_string()))?))
    }

    /// A source over an existing client.
    pub fn from_rpc(rpc: BitcoindRpc) -> Self {
        Self { rpc }
    }

    /// The underlying client.
    pub fn rpc(&self) -> &BitcoindRpc {
        &self.rpc
    }

    /// Whether bitcoind accepts the login, as of the last call ([`BitcoindRpc::auth_status`]).
    pub fn auth_status(&self) -> AuthStatus {
        self.rpc.auth_status()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        not_found: ChainError,
    ) -> Result<T, ChainError> {
        let what = || {
            let args = params.as_array().map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "));
            format!("{method} {}", args.unwrap_or_default()).trim_end().to_string()
        };
        match self.rpc.call(method, params.clone()).await {
            Ok(v) => Ok(v),
            Err(RpcError::Transport(m)) => Err(ChainError::Unreachable(m)),
            Err(RpcError::Unauthorized { method, reason }) => {
                Err(ChainError::Unauthorized(format!("{method}: {reason}")))
            }
            Err(RpcError::Rpc { code: RPC_NOT_FOUND | RPC_INVALID_PARAMETER, .. }) => Err(not_found),
            Err(RpcError::Decode { reason, .. }) => Err(ChainError::Invalid(format!("{}: {reason}", what()))),
            Err(e) => Err(ChainError::Rpc(format!("{}: {e}", what()))),
        }
    }
}

impl ChainSource for BitcoindSource {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let info: BlockchainInfo =
            self.call("getblockchaininfo", json!([]), ChainError::Rpc("getblockchaininfo: not found".into())).await?;
        Ok(ChainTip { height: info.blocks, hash: info.bestblockhash, headers: info.headers })
    }

    async fn header_at(&self, height: u32) -> Result<HeaderInfo, ChainError> {
        let hash: BlockHash = self.call("getblockhash", json!([height]), ChainError::HeightNotFound(height)).await?;
        let header = self.header(hash).await?;
        if header.height != height {
            // The chain moved between the two calls.
            return Err(ChainError::HeightNotFound(height));
        }
        Ok(header)
    }

    async fn header(&self, hash: BlockHash) -> Result<HeaderInfo, ChainError> {
        let verbose: VerboseHeader =
            self.call("getblockheader", json!([hash, true]), ChainError::BlockNotFound(hash)).await?;
        if verbose.hash != hash {
            return Err(ChainError::Invalid(format!("asked for header {hash}, got {}", verbose.hash)));
        }
        let prev_hash = match verbose.previousblockhash {
            Some(prev) => prev,
            None if verbose.height == 0 => {
                use bitcoin::hashes::Hash;
                BlockHash::all_zeros()
            }
            None => return Err(ChainError::Invalid(format!("header {hash} at {} has no parent", verbose.height))),
        };
        Ok(HeaderInfo { height: verbose.height, hash, prev_hash })
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, ChainError> {
        let hex: String = self.call("getblock", json!([hash, 0]), ChainError::BlockNotFound(hash)).await?;
        let block: Block = bitcoin::consensus::encode::deserialize_hex(&hex)
            .map_err(|e| ChainError::Invalid(format!("block {hash}: {e}")))?;
        if block.block_hash() != hash {
            return Err(ChainError::Invalid(format!("asked for block {hash}, got {}", block.block_hash())));
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_taken_out_of_the_url() {
        let rpc = BitcoindRpc::new("http://al%40ice:p%3Ass@127.0.0.1:8332/", None, Duration::from_secs(1)).unwrap();
        assert_eq!(rpc.url(), "http://127.0.0.1:8332/");
        assert_eq!(
            rpc.auth(),
            &BitcoindAuth::UserPass { user: "al@ice".into(), password: "p:ss".into() },
            "percent-decoded"
        );
        assert!(!format!("{rpc:?}").contains("p:ss"), "password never in Debug");
        assert!(rpc.method().contains("from bitcoind.url"));
        let both = BitcoindRpc::new(
            "http://u:p@127.0.0.1:8332",
            Some(BitcoindAuth::Cookie("/x/.cookie".into())),
            Duration::from_secs(1),
        );
        assert!(matches!(both, Err(RpcError::Config(m)) if m.contains("both")));
        assert!(matches!(
            BitcoindRpc::new("http://127.0.0.1:8332", None, Duration::from_secs(1)),
            Err(RpcError::Config(_))
        ));
        assert!(matches!(BitcoindRpc::new("not a url", None, Duration::from_secs(1)), Err(RpcError::Config(_))));
    }

    #[test]
    fn cookie_is_read_at_every_call_of_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".cookie");
        let auth = BitcoindAuth::Cookie(path.clone());
        assert_eq!(auth.credentials(), Err(AuthError::CookieMissing { path: path.clone() }));
        std::fs::write(&path, "__cookie__:aaaa").unwrap();
        assert_eq!(auth.credentials(), Ok(("__cookie__".into(), "aaaa".into())));
        std::fs::write(&path, "__cookie__:bbbb\n").unwrap();
        assert_eq!(auth.credentials(), Ok(("__cookie__".into(), "bbbb".into())));
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(auth.credentials(), Err(AuthError::CookieUnreadable { .. })));
        assert_eq!(auth.method(), format!("cookie file {}", path.display()));
    }

    #[tokio::test]
    async fn missing_cookie_is_unreachable_and_a_bad_one_is_unauthorized() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".cookie");
        let rpc =
            BitcoindRpc::new("http://127.0.0.1:9", Some(BitcoindAuth::Cookie(path.clone())), Duration::from_secs(2))
                .unwrap();
        let r: Result<Value, _> = rpc.call("getblockcount", json!([])).await;
        assert!(matches!(r, Err(RpcError::Transport(_))), "{r:?}");
        assert_eq!(rpc.auth_status(), AuthStatus::Unknown);
        std::fs::write(&path, "nocolon").unwrap();
        let r: Result<Value, _> = rpc.call("getblockcount", json!([])).await;
        assert!(matches!(r, Err(RpcError::Unauthorized { .. })), "{r:?}");
        let problem = rpc.auth_status().problem().unwrap();
        assert!(problem.contains("cookie file") && problem.contains("fix:"), "{problem}");
    }

    fn base64(input: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// A fake bitcoind: `getblockcount` answers 7 to `user:password` equal to `accept`, HTTP 401
    /// otherwise; `hits` counts the requests.
    async fn fake_node(accept: Arc<Mutex<String>>, hits: Arc<AtomicU64>) -> String {
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap| {
                let (accept, hits) = (accept.clone(), hits.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let want = format!("Basic {}", base64(accept.lock().unwrap().as_bytes()));
                    let got = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    if got == want {
                        axum::Json(json!({"result": 7, "error": null, "id": 1})).into_response()
                    } else {
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"u:p"), "dTpw");
    }

    #[tokio::test]
    async fn a_rewritten_cookie_is_read_again_and_a_refusal_backs_off() {
        let dir = tempfile::tempdir().unwrap();
        let cookie = dir.path().join(".cookie");
        std::fs::write(&cookie, "__cookie__:first").unwrap();
        let accept = Arc::new(Mutex::new("__cookie__:first".to_string()));
        let hits = Arc::new(AtomicU64::new(0));
        let url = fake_node(accept.clone(), hits.clone()).await;
        let rpc = BitcoindRpc::new(&url, Some(BitcoindAuth::Cookie(cookie.clone())), Duration::from_secs(5)).unwrap();
        assert_eq!(rpc.call::<u64>("getblockcount", json!([])).await, Ok(7));
        assert_eq!(rpc.auth_status(), AuthStatus::Accepted);
        // The node restarts with a new cookie: the cached one is refused, the new one read and used.
        *accept.lock().unwrap() = "__cookie__:second".into();
        std::fs::write(&cookie, "__cookie__:second").unwrap();
        assert_eq!(rpc.call::<u64>("getblockcount", json!([])).await, Ok(7));
        assert_eq!(rpc.auth_status(), AuthStatus::Accepted);
        // A cookie of another node: refused, and the same cookie is not sent again during the backoff.
        std::fs::write(&cookie, "__cookie__:other").unwrap();
        *accept.lock().unwrap() = "__cookie__:third".into();
        let r = rpc.call::<u64>("getblockcount", json!([])).await;
        assert!(matches!(r, Err(RpcError::Unauthorized { .. })), "{r:?}");
        let after_refusal = hits.load(Ordering::SeqCst);
        let r = rpc.call::<u64>("getblockcount", json!([])).await;
        assert!(matches!(r, Err(RpcError::Unauthorized { .. })), "{r:?}");
        assert_eq!(hits.load(Ordering::SeqCst), after_refusal, "no request with refused credentials while backing off");
        assert!(matches!(rpc.auth_status(), AuthStatus::Rejected { .. }));
        // bitcoind writes its new cookie: tried at once, accepted.
        std::fs::write(&cookie, "__cookie__:third").unwrap();
        assert_eq!(rpc.call::<u64>("getblockcount", json!([])).await, Ok(7));
        assert_eq!(rpc.auth_status(), AuthStatus::Accepted);
    }

    #[tokio::test]
    async fn a_refused_login_is_logged_once() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let accept = Arc::new(Mutex::new("alice:right".to_string()));
        let url = fake_node(accept, Arc::new(AtomicU64::new(0))).await;
        let auth = BitcoindAuth::UserPass { user: "alice".into(), password: "wrong".into() };
        let rpc = BitcoindRpc::new(&url, Some(auth), Duration::from_secs(5)).unwrap();
        for _ in 0..5 {
            let r = rpc.call::<u64>("getblockcount", json!([])).await;
            assert!(matches!(&r, Err(RpcError::Unauthorized { method, .. }) if method == "user \"alice\""), "{r:?}");
            // Past the backoff, as after a long wait.
            rpc.state().rejected.as_mut().unwrap().retry_at = Instant::now();
        }
        let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logs.matches("bitcoind rejected the credentials").count(), 1, "{logs}");
        assert!(logs.contains("user \"alice\"") && logs.contains("fix: make bitcoind.user"), "{logs}");
        assert!(!logs.contains("wrong"), "the password is never logged: {logs}");
        let status = rpc.auth_status();
        assert!(status.problem().unwrap().contains("HTTP 401"), "{status:?}");
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
