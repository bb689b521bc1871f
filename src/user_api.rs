//! The user-facing part of the public API (read-only, bounded): "is my withdrawal safe?" and account
//! proofs, plus the one-page web UI that calls them.
//!
//! - `GET /v1/withdrawals/{id}`: the evidence chain and verdict of one withdrawal (by tx id, or the
//!   newest withdrawal of an L2 address or L1 destination);
//! - `GET /v1/withdrawals?address=A`: every withdrawal from L2 address `A` or to L1 address `A`
//!   (newest first, at most [`MAX_LIST`]);
//! - `GET /v1/accounts/{address}`: a Merkle proof of the account's balance against the latest anchored
//!   state root (`kray-guardian verify-account FILE` checks it offline);
//! - `GET /`, `/web/app.js`, `/web/style.css`: the web page (no external resources).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::daemon::views::{self, AccountProofError};
use crate::daemon::{unix_now, Shared};

/// Most withdrawals one list answer holds.
pub const MAX_LIST: usize = 50;
/// Longest query string accepted (an id is 64 hex characters, an address at most 90).
const MAX_QUERY: usize = 128;

/// The user API and web page router, over the daemon's shared snapshot.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/web/app.js", get(app_js))
        .route("/web/style.css", get(style_css))
        .route("/v1/withdrawals", get(withdrawals))
        .route("/v1/withdrawals/{id}", get(withdrawal))
        .route("/v1/accounts/{address}", get(account))
        .with_state(shared)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

fn unavailable() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "state unavailable")
}

/// The page's security headers: nothing may be loaded from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::web::INDEX_HTML,
    )
        .into_response()
}

async fn app_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], crate::web::APP_JS).into_response()
}

async fn style_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], crate::web::STYLE_CSS).into_response()
}

/// Query of the withdrawal list.
#[derive(Debug, Deserialize)]
struct ListQuery {
    address: Option<String>,
}

fn too_long(q: &str) -> bool {
    q.len() > MAX_QUERY
}

async fn withdrawals(State(shared): State<Shared>, Query(q): Query<ListQuery>) -> Response {
    let Some(address) = q.address.filter(|a| !a.trim().is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "give ?address=<L2 or L1 address>");
    };
    if too_long(&address) {
        return error(StatusCode::BAD_REQUEST, "address too long");
    }
    let Ok(s) = shared.read() else { return unavailable() };
    let now = unix_now();
    let list: Vec<_> = views::find_withdrawals(&s.views, &address, MAX_LIST)
        .into_iter()
        .map(|w| views::withdrawal_report(&s, w, now))
        .collect();
    Json(json!({"address": address.trim(), "synced": s.synced, "l1_height": s.views.tip, "withdrawals": list}))
        .into_response()
}

async fn withdrawal(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    if too_long(&id) {
        return error(StatusCode::BAD_REQUEST, "id too long");
    }
    let Ok(s) = shared.read() else { return unavailable() };
    match views::find_withdrawals(&s.views, &id, 1).first() {
        Some(w) => Json(views::withdrawal_report(&s, w, unix_now())).into_response(),
        None if !s.synced => {
            error(StatusCode::SERVICE_UNAVAILABLE, "the guardian is not synced yet: verdict UNKNOWN, try again later")
        }
        None => error(StatusCode::NOT_FOUND, format!("no withdrawal {id} in the batches this guardian replayed valid")),
    }
}

async fn account(State(shared): State<Shared>, Path(address): Path<String>) -> Response {
    if too_long(&address) {
        return error(StatusCode::BAD_REQUEST, "address too long");
    }
    let Ok(s) = shared.read() else { return unavailable() };
    match views::account_proof(&s, &address) {
        Ok(p) => Json(p).into_response(),
        Err(e @ AccountProofError::BadAddress(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ AccountProofError::NoState) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e @ AccountProofError::NoAccount(..)) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}
