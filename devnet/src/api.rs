//! The batch publication API (`docs/publication-api.md`) and the admin endpoint, with axum.
//!
//! Public: `POST /l2/txs`, `GET /l2/accounts/{address}`, `GET /l2/batches/latest`,
//! `GET /l2/batches/{id}` (JSON, or raw bytes with `Accept: application/octet-stream`),
//! `GET /l2/batches/{id}/raw`, `GET /l2/batches?from=&limit=`, `POST /l2/challenges`,
//! `GET /l2/withdrawals`. Admin (separate listener): `GET|POST /admin/faults`.
//! Errors are JSON `{"error": ...}` with a 4xx/5xx status; no input can make a handler panic.

use crate::faults::{FaultPlan, FaultSpec};
use crate::sequencer::{Published, Sequencer, SubmitError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kray_replayer::batch::Batch;
use kray_replayer::hash::Hash32;
use kray_replayer::l1facts::L1Facts;
use kray_replayer::proof::{verify_proof, FraudProof};
use kray_replayer::tx::Tx;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, RwLock};

/// Largest accepted `POST /l2/txs` body.
pub const MAX_TX_BODY: usize = 16 * 1024;
/// Largest accepted `POST /l2/challenges` body.
pub const MAX_PROOF_BODY: usize = 8 * 1024 * 1024;
/// Most headers one `GET /l2/batches` returns.
pub const MAX_LIST: u64 = 100;

/// Shared state of the API and the runner.
#[derive(Clone)]
pub struct AppState {
    /// The sequencer.
    pub seq: Arc<Mutex<Sequencer>>,
    /// What is published.
    pub published: Arc<RwLock<Published>>,
    /// Faults.
    pub faults: Arc<Mutex<FaultPlan>>,
    /// L1 facts for verifying challenges (deposit proofs need them).
    pub facts: Option<Arc<dyn L1Facts + Send + Sync>>,
    /// The chain's id: challenges must be about this chain.
    pub chain_id: Hash32,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn poisoned() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal state unavailable")
}

/// The public router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/l2/txs", post(submit_tx).layer(DefaultBodyLimit::max(MAX_TX_BODY)))
        .route("/l2/accounts/{address}", get(account))
        .route("/l2/batches", get(list_batches))
        .route("/l2/batches/latest", get(latest))
        .route("/l2/batches/{id}", get(batch))
        .route("/l2/batches/{id}/raw", get(batch_raw))
        .route("/l2/challenges", post(challenge).layer(DefaultBodyLimit::max(MAX_PROOF_BODY)))
        .route("/l2/withdrawals", get(withdrawals))
        .layer(axum::middleware::map_response(close_after_unread_body))
        .with_state(state)
}

/// A 413 is sent before the request body is read, so the connection cannot be
/// reused: say so, or a pooling client sends its next request into a closing socket.
async fn close_after_unread_body(mut r: Response) -> Response {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    r
}

/// The admin router (bind it to a separate, local listener).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/admin/faults", get(get_faults).post(post_fault))
        .layer(DefaultBodyLimit::max(MAX_TX_BODY))
        .layer(axum::middleware::map_response(close_after_unread_body))
        .with_state(state)
}

async fn submit_tx(State(st): State<AppState>, body: Bytes) -> Response {
    let tx: Tx = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a tx JSON: {e}")),
    };
    let Ok(mut seq) = st.seq.lock() else { return poisoned() };
    match seq.submit(tx) {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "accepted": true, "id": id }))).into_response(),
        Err(SubmitError::Full) => error(StatusCode::SERVICE_UNAVAILABLE, SubmitError::Full),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "accepted": false, "error": e.to_string() })))
            .into_response(),
    }
}

async fn account(State(st): State<AppState>, Path(address): Path<String>) -> Response {
    let Ok(seq) = st.seq.lock() else { return poisoned() };
    match seq.account(&address) {
        Ok(view) => Json(view).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid address: {e}")),
    }
}

/// A batch header as the API lists it: the signed header, its hash and the content hash.
pub fn header_json(b: &Batch) -> Value {
    json!({
        "batch_id": b.signed.header.batch_id,
        "hash": hex::encode(b.signed.header.hash()),
        "content_hash": hex::encode(b.content_hash()),
        "signed_header": b.signed,
    })
}

fn served(p: &Published, id: u64) -> Option<&Batch> {
    if p.withheld.contains(&id) {
        return None;
    }
    if let Some(other) = p.equivocations.get(&id) {
        let n = p.equivocation_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 2 == 1 {
            return Some(other);
        }
    }
    p.batches.get(&id)
}

async fn latest(State(st): State<AppState>) -> Response {
    let Ok(p) = st.published.read() else { return poisoned() };
    match p.batches.iter().rev().find(|(id, _)| !p.withheld.contains(id)) {
        Some((_, b)) => Json(header_json(b)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no batch published yet"),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    from: Option<u64>,
    limit: Option<u64>,
}

async fn list_batches(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "from and limit must be non-negative integers");
    };
    let from = q.from.unwrap_or(1);
    let limit = q.limit.unwrap_or(MAX_LIST);
    if limit == 0 || limit > MAX_LIST {
        return error(StatusCode::BAD_REQUEST, format!("limit must be 1..={MAX_LIST}"));
    }
    let Ok(p) = st.published.read() else { return poisoned() };
    let mut items = Vec::new();
    let mut next = None;
    for (id, b) in p.batches.range(from..) {
        if p.withheld.contains(id) {
            continue;
        }
        if items.len() as u64 == limit {
            next = Some(*id);
            break;
        }
        items.push(header_json(b));
    }
    Json(json!({ "batches": items, "next": next })).into_response()
}

fn etag_of(b: &Batch) -> String {
    format!("\"{}\"", hex::encode(b.content_hash()))
}

fn batch_response(st: &AppState, id: &str, headers: &HeaderMap, raw: bool) -> Response {
    let Ok(id) = id.parse::<u64>() else { return error(StatusCode::BAD_REQUEST, "batch id must be an integer") };
    let Ok(p) = st.published.read() else { return poisoned() };
    let Some(b) = served(&p, id) else { return error(StatusCode::NOT_FOUND, format!("batch {id} is not published")) };
    let etag = etag_of(b);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let wants_raw = raw
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/octet-stream"));
    let mut resp = if wants_raw {
        ([(header::CONTENT_TYPE, "application/octet-stream")], b.to_raw()).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], b.to_json()).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn batch(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    batch_response(&st, &id, &headers, false)
}

async fn batch_raw(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    batch_response(&st, &id, &headers, true)
}

async fn challenge(State(st): State<AppState>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else { return error(StatusCode::BAD_REQUEST, "body is not UTF-8") };
    let proof = match FraudProof::from_json(text) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a fraud proof JSON: {e}")),
    };
    if proof.chain.chain_id() != st.chain_id {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "the proof is about another chain");
    }
    let facts = st.facts.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let r = verify_proof(&proof, facts.as_deref().map(|f| f as &dyn L1Facts));
        (r, proof.proof_hash())
    })
    .await;
    let (result, proof_hash) = match verified {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("verification failed: {e}")),
    };
    match result {
        Ok(proven) => {
            let Ok(mut p) = st.published.write() else { return poisoned() };
            p.freeze_from(proven.batch_id);
            p.challenges.push(crate::sequencer::ChallengeRecord {
                batch_id: proven.batch_id,
                fault: proven.fault.to_string(),
                proof_hash: hex::encode(proof_hash),
            });
            tracing::warn!(batch = proven.batch_id, fault = %proven.fault, "challenge accepted: withdrawals frozen");
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "accepted": true,
                    "batch_id": proven.batch_id,
                    "fault": proven.fault.to_string(),
                    "frozen_from": p.frozen_from,
                })),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

async fn withdrawals(State(st): State<AppState>) -> Response {
    let Ok(p) = st.published.read() else { return poisoned() };
    Json(json!({ "frozen_from": p.frozen_from, "withdrawals": p.withdrawals, "challenges": p.challenges }))
        .into_response()
}

async fn get_faults(State(st): State<AppState>) -> Response {
    let Ok(f) = st.faults.lock() else { return poisoned() };
    Json(json!({ "pending": f.pending.iter().map(ToString::to_string).collect::<Vec<_>>(), "committed": f.committed }))
        .into_response()
}

#[derive(Deserialize)]
struct FaultBody {
    fault: String,
}

async fn post_fault(State(st): State<AppState>, body: Bytes) -> Response {
    let req: FaultBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"fault\": \"NAME[@BATCH]\"}}: {e}")),
    };
    let spec: FaultSpec = match req.fault.parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Ok(mut f) = st.faults.lock() else { return poisoned() };
    f.add(spec);
    tracing::warn!(fault = %spec, "fault switched on");
    (StatusCode::ACCEPTED, Json(json!({ "pending": f.pending.iter().map(ToString::to_string).collect::<Vec<_>>() })))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultPlan;
    use crate::traffic::user_tx;
    use crate::workload::{producer_key, user_key};
    use kray_replayer::address::address_of_pubkey;
    use kray_replayer::genesis::{Genesis, GenesisAccount};
    use kray_replayer::l1facts::FileFacts;
    use kray_replayer::profile::Profile;
    use kray_replayer::seal::Sealer;

    async fn setup() -> (String, AppState, Vec<bitcoin::key::Keypair>, Vec<String>) {
        let profile = Profile::load("regtest").unwrap();
        let users: Vec<_> = (0..2).map(|i| user_key(9, i)).collect();
        let addrs: Vec<String> =
            users.iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, profile.network)).collect();
        let producer = producer_key(9);
        let mut accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
        accounts.extend(addrs.iter().map(|a| GenesisAccount { address: a.clone(), balance: 1_000_000 }));
        let genesis =
            Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
        let (chain, state) = genesis.build(&profile).unwrap();
        let chain_id = chain.chain_id();
        let sealer = Sealer::new(chain, state, None, producer).unwrap();
        let st = AppState {
            seq: Arc::new(Mutex::new(Sequencer::new(sealer, users.clone()))),
            published: Arc::new(RwLock::new(Published::default())),
            faults: Arc::new(Mutex::new(FaultPlan::default())),
            facts: None,
            chain_id,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(st.clone()).merge(admin_router(st.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, st, users, addrs)
    }

    #[tokio::test]
    async fn submit_answers_accepted_or_the_reason() {
        let (url, st, users, addrs) = setup().await;
        let c = reqwest::Client::new();
        let net = kray_replayer::profile::L1Network::Regtest;
        let post = |tx: &Tx| c.post(format!("{url}/l2/txs")).json(tx).send();
        let ok = user_tx(&users[0], net, "transfer", &addrs[1], 500, 0);
        assert_eq!(post(&ok).await.unwrap().status(), 202);
        let v: Value = c.get(format!("{url}/l2/accounts/{}", addrs[0])).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            (v["nonce"].as_u64(), v["next_nonce"].as_u64(), v["merkle_index"].as_u64()),
            (Some(0), Some(1), Some(1))
        );
        let reason = |r: reqwest::Response| async move {
            assert_eq!(r.status(), 422);
            r.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_string()
        };
        assert!(reason(post(&ok).await.unwrap()).await.contains("nonce"));
        let mut bad = user_tx(&users[0], net, "transfer", &addrs[1], 500, 1);
        bad.signature[3] ^= 1;
        assert!(reason(post(&bad).await.unwrap()).await.contains("signature"));
        let mut other = user_tx(&users[1], net, "transfer", &addrs[1], 500, 1);
        other.from = addrs[0].clone();
        assert!(reason(post(&other).await.unwrap()).await.contains("signature"));
        let rich = user_tx(&users[0], net, "transfer", &addrs[1], 10_000_000, 1);
        assert!(reason(post(&rich).await.unwrap()).await.contains("insufficient"));
        let stranger = user_key(9, 7);
        let s = user_tx(&stranger, net, "transfer", &addrs[1], 1, 0);
        assert!(reason(post(&s).await.unwrap()).await.contains("unknown sender"));
        let dep = user_tx(&users[0], net, "deposit", &addrs[1], 1, 1);
        assert!(reason(post(&dep).await.unwrap()).await.contains("tx_type"));
        let r = c.post(format!("{url}/l2/txs")).body("[1,2]").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = c.post(format!("{url}/l2/txs")).body(vec![b'x'; MAX_TX_BODY + 1]).send().await.unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
        assert_eq!(c.get(format!("{url}/l2/batches/latest")).send().await.unwrap().status(), 404);

        // Seal and publish: the batch and its forms are served.
        let facts = FileFacts::default();
        let sealed = st.seq.lock().unwrap().seal(vec![], 5, &facts, None);
        assert!(sealed.rejected.is_empty());
        assert_eq!(sealed.batch.txs.len(), 1);
        st.published.write().unwrap().batches.insert(1, sealed.batch.clone());
        let v: Value = c.get(format!("{url}/l2/batches/latest")).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["hash"].as_str(), Some(hex::encode(sealed.batch.signed.header.hash()).as_str()));
        let r = c.get(format!("{url}/l2/batches/1")).send().await.unwrap();
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(r.text().await.unwrap(), sealed.batch.to_json());
        let r = c.get(format!("{url}/l2/batches/1")).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(r.status(), 304);
        let v: Value = c.get(format!("{url}/l2/accounts/{}", addrs[0])).send().await.unwrap().json().await.unwrap();
        assert_eq!((v["nonce"].as_u64(), v["next_nonce"].as_u64()), (Some(1), Some(1)));
        // An equivocated id: the original and the conflicting copy on alternate requests.
        let mut other = sealed.batch.clone();
        other.data_signature[0] ^= 1;
        st.published.write().unwrap().equivocations.insert(1, other.clone());
        let a = c.get(format!("{url}/l2/batches/1")).send().await.unwrap().text().await.unwrap();
        let b = c.get(format!("{url}/l2/batches/1")).send().await.unwrap().text().await.unwrap();
        assert_eq!([a, b], [sealed.batch.to_json(), other.to_json()]);
        st.published.write().unwrap().withheld.insert(1);
        assert_eq!(c.get(format!("{url}/l2/batches/1")).send().await.unwrap().status(), 404);
        let v: Value = c.get(format!("{url}/l2/batches")).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["batches"].as_array().map(Vec::len), Some(0));

        // Challenges: junk is 400; admin faults parse.
        let r = c.post(format!("{url}/l2/challenges")).body("junk").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = c.post(format!("{url}/admin/faults")).body(r#"{"fault":"bad-nonce@3"}"#).send().await.unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(st.faults.lock().unwrap().batch_fault(3), Some(kray_replayer::FaultClass::BadNonce));
    }
}
