//! The mirror served over the publication API's read-only batch endpoints
//! (`docs/publication-api.md`), so peer guardians and users can fetch from us:
//! `GET /l2/batches/latest`, `GET /l2/batches?from=&limit=`, `GET /l2/batches/{id}` (JSON, or raw with
//! `Accept: application/octet-stream`) and `GET /l2/batches/{id}/raw`, with the same bodies, status
//! codes and `ETag`/`If-None-Match` handling as the sequencer's API (`devnet/src/api.rs`).
//!
//! The bytes come from the store: the raw form is the stored copy as received; the JSON form is
//! `Batch::to_json` of it, which is what the sequencer serves for the same batch. For an id with
//! several copies (equivocation), the first copy received is served.

use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kray_replayer::batch::Batch;
use serde::Deserialize;
use serde_json::{json, Value};

use super::index::BatchIndex;
use crate::store::{BatchCopy, Store};

/// Most headers one `GET /l2/batches` returns (as the sequencer's API).
pub const MAX_LIST: u64 = 100;

/// What the handlers read.
#[derive(Clone)]
struct ServeState {
    store: Store,
    index: Arc<RwLock<BatchIndex>>,
}

/// The read-only batch endpoints over `store`, with `index` (shared with the [`super::Mirror`] that
/// fills the store) naming which ids are stored.
pub fn router(store: Store, index: Arc<RwLock<BatchIndex>>) -> Router {
    Router::new()
        .route("/l2/batches", get(list_batches))
        .route("/l2/batches/latest", get(latest))
        .route("/l2/batches/{id}", get(batch))
        .route("/l2/batches/{id}/raw", get(batch_raw))
        .with_state(ServeState { store, index })
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "mirror API: store read failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable")
}

/// The copy served for `id` (the first received) and its parsed batch; `Ok(None)` if none is stored.
async fn served(st: &ServeState, id: u64) -> Result<Option<(BatchCopy, Batch)>, Response> {
    let copies = st.store.batch_copies(id).await.map_err(internal)?;
    let Some(copy) = copies.into_iter().next() else { return Ok(None) };
    // Stored copies were verified when received; a copy that no longer parses is store corruption.
    let batch = Batch::from_raw(&copy.raw, u32::MAX).map_err(|e| internal(format!("stored batch {id}: {e}")))?;
    Ok(Some((copy, batch)))
}

/// A header as the API lists it (the same object as the sequencer's `header_json`).
fn header_json(copy: &BatchCopy, b: &Batch) -> Value {
    json!({
        "batch_id": b.signed.header.batch_id,
        "hash": hex::encode(b.signed.header.hash()),
        "content_hash": copy.content_hash,
        "signed_header": b.signed,
    })
}

async fn latest(State(st): State<ServeState>) -> Response {
    let max = match st.index.read() {
        Ok(i) => i.max_id(),
        Err(_) => return internal("index lock poisoned"),
    };
    let Some(id) = max else { return error(StatusCode::NOT_FOUND, "no batch published yet") };
    match served(&st, id).await {
        Ok(Some((copy, b))) => Json(header_json(&copy, &b)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no batch published yet"),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    from: Option<u64>,
    limit: Option<u64>,
}

async fn list_batches(
    State(st): State<ServeState>,
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
    // One id more than the page, to answer `next`.
    let ids: Vec<u64> = match st.index.read() {
        Ok(i) => i.ids_from(from).take(limit as usize + 1).collect(),
        Err(_) => return internal("index lock poisoned"),
    };
    let next = ids.get(limit as usize).copied();
    let mut items = Vec::with_capacity(ids.len());
    for id in ids.into_iter().take(limit as usize) {
        match served(&st, id).await {
            Ok(Some((copy, b))) => items.push(header_json(&copy, &b)),
            Ok(None) => {}
            Err(r) => return r,
        }
    }
    Json(json!({ "batches": items, "next": next })).into_response()
}

async fn batch_response(st: &ServeState, id: &str, headers: &HeaderMap, raw: bool) -> Response {
    let Ok(id) = id.parse::<u64>() else { return error(StatusCode::BAD_REQUEST, "batch id must be an integer") };
    let (copy, b) = match served(st, id).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("batch {id} is not published")),
        Err(r) => return r,
    };
    let etag = format!("\"{}\"", copy.content_hash);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let wants_raw = raw
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/octet-stream"));
    let mut resp = if wants_raw {
        ([(header::CONTENT_TYPE, "application/octet-stream")], copy.raw).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], b.to_json()).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn batch(State(st): State<ServeState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    batch_response(&st, &id, &headers, false).await
}

async fn batch_raw(State(st): State<ServeState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    batch_response(&st, &id, &headers, true).await
}
