//! The HTTP client for one publication source (`docs/publication-api.md`): the sequencer's API or a
//! peer guardian's mirror.
//!
//! Every request has a timeout, every body is read with a byte limit (checked against
//! `Content-Length` first, then while streaming), redirects are not followed, and nothing a source
//! claims is trusted: a fetched batch is parsed strictly, its content hash and header hash are
//! recomputed, its id must be the id asked for, and its header and data signatures must verify under a
//! producer of the chain ([`ChainIdentity`]). Claims that disagree with the recomputed values (a wrong
//! `ETag`, a listing whose hashes differ from the body) are reported, never used.

use std::time::Duration;

use kray_replayer::batch::Batch;
use kray_replayer::hash::{sha256, Hash32};
use kray_replayer::Chain;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde::Deserialize;

/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest response body (a raw batch of ~4,000 maximal txs).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// Most headers asked for in one `GET /l2/batches` (the API's maximum).
pub const LIST_LIMIT: u64 = 100;
/// Longest error-body excerpt kept in a [`SourceError::Status`].
const ERROR_EXCERPT: usize = 200;

/// Why a request to a source failed or what it served was refused. Every variant names what was
/// wrong; none stops the mirror.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source URL is unusable.
    #[error("bad source URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Connecting or reading failed (refused, reset, DNS, TLS).
    #[error("{what}: transport error: {reason}")]
    Transport {
        /// The request.
        what: String,
        /// The error.
        reason: String,
    },
    /// No complete answer within the timeout.
    #[error("{what}: no answer within {timeout:?}")]
    Timeout {
        /// The request.
        what: String,
        /// The timeout.
        timeout: Duration,
    },
    /// An unexpected HTTP status.
    #[error("{what}: HTTP {status}: {excerpt}")]
    Status {
        /// The request.
        what: String,
        /// The status code.
        status: u16,
        /// The start of the body (the API's `{"error": ...}`).
        excerpt: String,
    },
    /// The body is larger than allowed.
    #[error("{what}: body larger than {limit} bytes")]
    TooLarge {
        /// The request.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A listing or header is not the JSON the API specifies.
    #[error("{what}: not the expected JSON: {reason}")]
    BadJson {
        /// The request.
        what: String,
        /// The parse error.
        reason: String,
    },
    /// The body is not a batch in the raw or JSON form.
    #[error("batch {batch_id}: not a batch: {reason}")]
    BadBatch {
        /// The id asked for.
        batch_id: u64,
        /// The parse error.
        reason: String,
    },
    /// The body is a batch with another id.
    #[error("batch {asked}: the source served batch {got}")]
    WrongId {
        /// The id asked for.
        asked: u64,
        /// The id in the header served.
        got: u64,
    },
    /// The batch is not signed by a producer of this chain (other chain, unknown producer, or a
    /// signature that does not verify). Such a copy is no evidence of anything and is not stored.
    #[error("batch {batch_id}: not a batch of this chain: {reason}")]
    NotOfChain {
        /// The id asked for.
        batch_id: u64,
        /// Which check failed.
        reason: String,
    },
    /// A hash the source claimed (`ETag`, or a listing's `hash`/`content_hash`) is not the one
    /// recomputed from the bytes served. The bytes themselves may still be a valid copy.
    #[error("batch {batch_id}: the source claims {what} {claimed} but the batch served has {computed}")]
    ClaimMismatch {
        /// The batch.
        batch_id: u64,
        /// Which claim (`ETag`, `listed content_hash`, `listed hash`).
        what: String,
        /// What the source claimed.
        claimed: String,
        /// What the bytes hash to.
        computed: String,
    },
    /// The listing is inconsistent (ids not ascending, below `from`, more than asked for).
    #[error("listing from {from}: {reason}")]
    BadListing {
        /// The `from` asked for.
        from: u64,
        /// What is wrong.
        reason: String,
    },
    /// The source listed a batch it then does not serve (`404`).
    #[error("batch {batch_id}: listed but not served (404)")]
    ListedNotServed {
        /// The batch.
        batch_id: u64,
    },
}

impl SourceError {
    /// True for errors that say the source is unreachable or overloaded (transport, timeout, 5xx,
    /// 429): the poll of this source stops at the first one.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SourceError::Transport { .. } | SourceError::Timeout { .. } => true,
            SourceError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The chain whose batches the mirror keeps: only copies signed (header and data) by one of its
/// producers, with its chain id, are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainIdentity {
    /// The chain id every header must carry.
    pub chain_id: Hash32,
    /// The producers' x-only keys.
    pub producers: Vec<[u8; 32]>,
    /// Most txs a batch may hold (the profile's `max_batch_txs`).
    pub max_batch_txs: u32,
}

impl ChainIdentity {
    /// The identity of `chain` (producers that are not 32-byte hex are ignored: they cannot sign).
    pub fn of(chain: &Chain) -> Self {
        ChainIdentity {
            chain_id: chain.chain_id(),
            producers: chain.producers.iter().filter_map(|p| kray_replayer::hash::hex32(p)).collect(),
            max_batch_txs: chain.profile.max_batch_txs,
        }
    }

    /// Checks that `batch` is a signed batch of this chain.
    pub fn check(&self, batch_id: u64, batch: &Batch) -> Result<(), SourceError> {
        let h = &batch.signed.header;
        let refuse = |reason: String| Err(SourceError::NotOfChain { batch_id, reason });
        if h.chain_id != self.chain_id {
            return refuse(format!("chain id {} is not {}", hex::encode(h.chain_id), hex::encode(self.chain_id)));
        }
        if !self.producers.contains(&h.producer) {
            return refuse(format!("producer {} is not a producer of the chain", hex::encode(h.producer)));
        }
        if !batch.signed.signature_valid() {
            return refuse("the header signature does not verify".into());
        }
        if !batch.data_signature_valid() {
            return refuse("the data signature does not verify".into());
        }
        Ok(())
    }
}

/// One header of a `GET /l2/batches` listing, as claimed by the source (not trusted).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedHeader {
    /// The batch id.
    pub batch_id: u64,
    /// Claimed header hash (hex).
    pub hash: String,
    /// Claimed content hash (hex).
    pub content_hash: String,
}

/// A `GET /l2/batches` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Listing {
    /// Headers, ascending.
    pub batches: Vec<ListedHeader>,
    /// The id to ask for next, if more are published.
    pub next: Option<u64>,
}

/// A verified batch copy fetched from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The batch id.
    pub batch_id: u64,
    /// The canonical raw bytes (what the content hash covers).
    pub raw: Vec<u8>,
    /// `sha256(raw)`, recomputed.
    pub content_hash: Hash32,
    /// The header hash (the anchored root), recomputed.
    pub header_hash: Hash32,
    /// Claims of the source that did not match (the copy is still valid and kept).
    pub mismatches: Vec<SourceError>,
}

/// What a conditional batch fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A verified copy.
    Copy(Fetched),
    /// `304`: the source says its copy is the one named in `If-None-Match` (a claim: no bytes).
    NotModified,
    /// `404`: the source does not serve this batch.
    NotFound,
}

/// Settings of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Name used in logs, findings and metrics (unique).
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8080` (no trailing `/l2`).
    pub url: String,
    /// Timeout of each request (connect and whole answer).
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_body_bytes: u64,
    /// Least time between two polls of this source.
    pub poll_interval: Duration,
}

impl SourceSpec {
    /// A source with the default timeout and body limit, polled at every [`super::Mirror::poll_once`].
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        SourceSpec {
            name: name.into(),
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            poll_interval: Duration::ZERO,
        }
    }
}

/// The HTTP client of one source.
#[derive(Debug, Clone)]
pub struct SourceClient {
    spec: SourceSpec,
    base: String,
    http: reqwest::Client,
}

impl SourceClient {
    /// A client for `spec`; fails for a URL that is not `http(s)://`.
    pub fn new(spec: SourceSpec) -> Result<Self, SourceError> {
        let base = spec.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| SourceError::BadUrl { url: spec.url.clone(), reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SourceError::BadUrl { url: spec.url.clone(), reason: "scheme must be http or https".into() });
        }
        let http = reqwest::Client::builder()
            .timeout(spec.timeout)
            .connect_timeout(spec.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SourceError::BadUrl { url: spec.url.clone(), reason: e.to_string() })?;
        Ok(SourceClient { spec, base, http })
    }

    /// The source's settings.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout { what: what.to_string(), timeout: self.spec.timeout }
        } else {
            // The chain of causes says more than the top-level message ("error sending request").
            let mut reason = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                reason = format!("{reason}: {c}");
                cause = c.source();
            }
            SourceError::Transport { what: what.to_string(), reason }
        }
    }

    /// Sends a GET and reads the body within the limit; returns status, headers and body.
    async fn get(
        &self,
        what: &str,
        path: &str,
        headers: HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), SourceError> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self.http.get(&url).headers(headers).send().await.map_err(|e| self.transport(what, &e))?;
        let limit = self.spec.max_body_bytes;
        let too_large = || SourceError::TooLarge { what: what.to_string(), limit };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(what, &e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    fn status_error(what: &str, status: StatusCode, body: &[u8]) -> SourceError {
        let text = String::from_utf8_lossy(body);
        let excerpt: String = text.chars().take(ERROR_EXCERPT).collect();
        SourceError::Status { what: what.to_string(), status: status.as_u16(), excerpt }
    }

    /// `GET /l2/batches?from=&limit=`: the published headers from `from`, checked for consistency
    /// (ascending, `≥ from`, at most `limit`); the hashes are claims.
    pub async fn list(&self, from: u64, limit: u64) -> Result<Listing, SourceError> {
        let limit = limit.clamp(1, LIST_LIMIT);
        let what = format!("GET /l2/batches?from={from}&limit={limit}");
        let (status, _, body) =
            self.get(&what, &format!("/l2/batches?from={from}&limit={limit}"), HeaderMap::new()).await?;
        if status != StatusCode::OK {
            return Err(Self::status_error(&what, status, &body));
        }
        let listing: Listing = serde_json::from_slice(&body)
            .map_err(|e| SourceError::BadJson { what: what.clone(), reason: e.to_string() })?;
        let bad = |reason: String| Err(SourceError::BadListing { from, reason });
        if listing.batches.len() as u64 > limit {
            return bad(format!("{} headers, asked for at most {limit}", listing.batches.len()));
        }
        let mut prev = None;
        for h in &listing.batches {
            if h.batch_id < from || prev.is_some_and(|p| h.batch_id <= p) {
                return bad(format!("batch {} is out of order", h.batch_id));
            }
            prev = Some(h.batch_id);
        }
        if let (Some(next), Some(last)) = (listing.next, prev) {
            if next <= last {
                return bad(format!("next {next} is not after the last batch listed ({last})"));
            }
        }
        Ok(listing)
    }

    /// `GET /l2/batches/latest`: the newest batch id the source claims (`None` for its `404`).
    pub async fn latest_id(&self) -> Result<Option<u64>, SourceError> {
        let what = "GET /l2/batches/latest";
        let (status, _, body) = self.get(what, "/l2/batches/latest", HeaderMap::new()).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let h: ListedHeader = serde_json::from_slice(&body)
                    .map_err(|e| SourceError::BadJson { what: what.to_string(), reason: e.to_string() })?;
                Ok(Some(h.batch_id))
            }
            s => Err(Self::status_error(what, s, &body)),
        }
    }

    /// `GET /l2/batches/{id}/raw` (with `If-None-Match` when `known` names a content hash we hold),
    /// verified against `chain`; `listed` are the source's listing claims to compare with.
    pub async fn fetch(
        &self,
        batch_id: u64,
        known: Option<&str>,
        listed: Option<&ListedHeader>,
        chain: &ChainIdentity,
    ) -> Result<FetchOutcome, SourceError> {
        let what = format!("GET /l2/batches/{batch_id}/raw");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, reqwest::header::HeaderValue::from_static("application/octet-stream"));
        if let Some(etag) = known.and_then(|k| reqwest::header::HeaderValue::from_str(&format!("\"{k}\"")).ok()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        let (status, headers, body) = self.get(&what, &format!("/l2/batches/{batch_id}/raw"), headers).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED => return Ok(FetchOutcome::NotModified),
            StatusCode::NOT_FOUND => return Ok(FetchOutcome::NotFound),
            s => return Err(Self::status_error(&what, s, &body)),
        }
        let is_json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
        let etag = headers.get(ETAG).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let fetched = verify_body(batch_id, &body, is_json, etag.as_deref(), listed, chain)?;
        Ok(FetchOutcome::Copy(fetched))
    }
}

/// Verifies a batch body: parses it (raw, or JSON when `is_json`), checks the id and the chain, and
/// recomputes the hashes; claims (`etag`, `listed`) that differ are returned in
/// [`Fetched::mismatches`]. Pure.
pub fn verify_body(
    batch_id: u64,
    body: &[u8],
    is_json: bool,
    etag: Option<&str>,
    listed: Option<&ListedHeader>,
    chain: &ChainIdentity,
) -> Result<Fetched, SourceError> {
    let bad = |reason: String| SourceError::BadBatch { batch_id, reason };
    let batch = if is_json {
        let text = std::str::from_utf8(body).map_err(|e| bad(format!("JSON body is not UTF-8: {e}")))?;
        Batch::from_json(text, chain.max_batch_txs).map_err(|e| bad(e.to_string()))?
    } else {
        Batch::from_raw(body, chain.max_batch_txs).map_err(|e| bad(e.to_string()))?
    };
    let got = batch.signed.header.batch_id;
    if got != batch_id {
        return Err(SourceError::WrongId { asked: batch_id, got });
    }
    chain.check(batch_id, &batch)?;
    let raw = if is_json { batch.to_raw() } else { body.to_vec() };
    let content_hash = sha256(&raw);
    let header_hash = batch.signed.header.hash();
    let computed = hex::encode(content_hash);
    let mut mismatches = Vec::new();
    let mut claim = |what: &str, claimed: &str, computed: &str| {
        if !claimed.eq_ignore_ascii_case(computed) {
            mismatches.push(SourceError::ClaimMismatch {
                batch_id,
                what: what.to_string(),
                claimed: claimed.chars().take(ERROR_EXCERPT).collect(),
                computed: computed.to_string(),
            });
        }
    };
    if let Some(etag) = etag {
        let tag = etag.trim().trim_start_matches("W/").trim_matches('"');
        claim("ETag", tag, &computed);
    }
    if let Some(l) = listed {
        claim("listed content_hash", &l.content_hash, &computed);
        claim("listed hash", &l.hash, &hex::encode(header_hash));
    }
    Ok(Fetched { batch_id, raw, content_hash, header_hash, mismatches })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kray_replayer::execute::Semantics;
    use kray_replayer::genesis::{Genesis, GenesisAccount};
    use kray_replayer::l1facts::FileFacts;
    use kray_replayer::profile::Profile;
    use kray_replayer::seal::Sealer;

    fn sealed() -> (Batch, ChainIdentity) {
        let profile = Profile::load("regtest").unwrap();
        let producer = kray_devnet::workload::producer_key(21);
        let accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
        let genesis =
            Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
        let (chain, state) = genesis.build(&profile).unwrap();
        let identity = ChainIdentity::of(&chain);
        let mut sealer = Sealer::new(chain, state, None, producer).unwrap();
        (sealer.seal(vec![], 7, &FileFacts::default(), Semantics::Reference).0, identity)
    }

    #[test]
    fn raw_and_json_bodies_give_the_same_verified_copy() {
        let (b, chain) = sealed();
        let etag = format!("\"{}\"", hex::encode(b.content_hash()));
        let raw = verify_body(1, &b.to_raw(), false, Some(&etag), None, &chain).unwrap();
        let json = verify_body(1, b.to_json().as_bytes(), true, Some(&etag), None, &chain).unwrap();
        assert_eq!(raw, json);
        assert_eq!(
            (raw.raw.clone(), raw.content_hash, raw.header_hash),
            (b.to_raw(), b.content_hash(), b.signed.header.hash())
        );
        assert!(raw.mismatches.is_empty());
    }

    #[test]
    fn bodies_are_refused_or_flagged_with_what_was_wrong() {
        let (b, chain) = sealed();
        assert_eq!(
            verify_body(2, &b.to_raw(), false, None, None, &chain),
            Err(SourceError::WrongId { asked: 2, got: 1 })
        );
        let mut truncated = b.to_raw();
        truncated.pop();
        assert!(matches!(verify_body(1, &truncated, false, None, None, &chain), Err(SourceError::BadBatch { .. })));
        assert!(matches!(verify_body(1, b"\xff{", true, None, None, &chain), Err(SourceError::BadBatch { .. })));
        let mut forged = b.clone();
        forged.data_signature[0] ^= 1;
        let e = verify_body(1, &forged.to_raw(), false, None, None, &chain).unwrap_err();
        assert!(e.to_string().contains("data signature"), "{e}");
        let mut other = chain.clone();
        other.chain_id[0] ^= 1;
        assert!(matches!(verify_body(1, &b.to_raw(), false, None, None, &other), Err(SourceError::NotOfChain { .. })));
        other = chain.clone();
        other.producers = vec![[2; 32]];
        assert!(verify_body(1, &b.to_raw(), false, None, None, &other).unwrap_err().to_string().contains("producer"));
        // Wrong claims are flagged; the copy is still the recomputed one.
        let listed = ListedHeader { batch_id: 1, hash: "00".repeat(32), content_hash: hex::encode(b.content_hash()) };
        let f = verify_body(1, &b.to_raw(), false, Some("W/\"beef\""), Some(&listed), &chain).unwrap();
        let what: Vec<String> = f
            .mismatches
            .iter()
            .map(|m| match m {
                SourceError::ClaimMismatch { what, .. } => what.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(what, vec!["ETag", "listed hash"]);
        assert_eq!(f.content_hash, b.content_hash());
    }

    #[test]
    fn only_http_urls_are_sources() {
        assert!(matches!(SourceClient::new(SourceSpec::new("x", "ftp://h")), Err(SourceError::BadUrl { .. })));
        assert!(matches!(SourceClient::new(SourceSpec::new("x", "not a url")), Err(SourceError::BadUrl { .. })));
        assert!(SourceClient::new(SourceSpec::new("x", "http://127.0.0.1:1/")).is_ok());
    }
}
