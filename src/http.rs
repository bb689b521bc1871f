//! The guardian's HTTP API (read-only, public listener): `/health`, `/metrics`, `/v1/status`,
//! `/v1/batches`, `/v1/batches/{id}`, `/v1/findings`, `/v1/proofs/{id}`, `/v1/bridge`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kray_watcher::store::Store;
use serde_json::json;

use crate::daemon::Shared;

/// Shared state of the handlers.
#[derive(Clone)]
struct Api {
    shared: Shared,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    store: Store,
}

/// The public router.
pub fn router(shared: Shared, store: Store, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/status", get(status))
        .route("/v1/batches", get(batches))
        .route("/v1/batches/{id}", get(batch))
        .route("/v1/findings", get(findings))
        .route("/v1/proofs/{id}", get(proof))
        .route("/v1/bridge", get(bridge))
        .with_state(Api { shared, metrics, store })
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

fn unavailable() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "state unavailable")
}

async fn health(State(api): State<Api>) -> Response {
    let Ok(s) = api.shared.read() else { return unavailable() };
    let body = json!({"status": if s.synced { "ok" } else { "syncing" }, "l1_height": s.l1_blocks.height,
                      "replayed": s.replayed.height, "deep_reorgs": s.deep_reorgs});
    (if s.deep_reorgs > 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, Json(body)).into_response()
}

async fn metrics_text(State(api): State<Api>) -> Response {
    match api.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e:?}")),
    }
}

async fn status(State(api): State<Api>) -> Response {
    let Ok(s) = api.shared.read() else { return unavailable() };
    let mut v = serde_json::to_value(&*s).unwrap_or_default();
    v["version"] = json!(crate::version());
    v["open_findings"] = json!(s.findings.len());
    Json(v).into_response()
}

/// Most batches one `/v1/batches` page lists.
const MAX_PAGE: u64 = 100;

/// `?from=&limit=` of `/v1/batches`.
#[derive(serde::Deserialize)]
struct Page {
    from: Option<String>,
    limit: Option<String>,
}

async fn batches(State(api): State<Api>, axum::extract::Query(q): axum::extract::Query<Page>) -> Response {
    let parse = |v: &Option<String>, default: u64| v.as_deref().map_or(Ok(default), str::parse::<u64>);
    let (Ok(from), Ok(limit)) = (parse(&q.from, 1), parse(&q.limit, MAX_PAGE)) else {
        return error(StatusCode::BAD_REQUEST, "from and limit must be non-negative integers");
    };
    if limit == 0 || limit > MAX_PAGE {
        return error(StatusCode::BAD_REQUEST, format!("limit must be 1..={MAX_PAGE}"));
    }
    let Ok(s) = api.shared.read() else { return unavailable() };
    let ids: Vec<u64> = s.batches.range(from..).map(|(id, _)| *id).take(limit as usize + 1).collect();
    let next = ids.get(limit as usize).copied();
    let list: Vec<_> = ids
        .iter()
        .take(limit as usize)
        .flat_map(|id| s.batches.get(id).into_iter().flatten())
        .map(|b| batch_json(&s, b))
        .collect();
    Json(json!({"batches": list, "next": next})).into_response()
}

fn batch_json(s: &crate::daemon::Snapshot, b: &crate::daemon::replay_stage::Replayed) -> serde_json::Value {
    let anchor = s.anchors.batches.iter().find(|a| a.batch_hash == b.batch_hash).map(|a| &a.state);
    let mut v = serde_json::to_value(b).unwrap_or_default();
    v["anchor"] = match anchor {
        Some(kray_watcher::judge::AnchorState::Anchored { outpoint, height, confirmations, confirmed }) => {
            json!({"outpoint": outpoint.to_string(), "height": height, "confirmations": confirmations,
                   "confirmed": confirmed})
        }
        Some(kray_watcher::judge::AnchorState::Unanchored { grace_ends }) => json!({"grace_ends": grace_ends}),
        None => serde_json::Value::Null,
    };
    v
}

async fn batch(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else { return error(StatusCode::BAD_REQUEST, "batch id must be an integer") };
    let Ok(s) = api.shared.read() else { return unavailable() };
    match s.batches.get(&id) {
        Some(copies) => {
            let copies: Vec<_> = copies
                .iter()
                .map(|b| {
                    let mut v = batch_json(&s, b);
                    v["header"] = b.header.clone();
                    v["signature"] = json!(b.signature);
                    v
                })
                .collect();
            Json(json!({"batch_id": id, "copies": copies})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("batch {id} is not replayed here")),
    }
}

async fn findings(State(api): State<Api>) -> Response {
    let Ok(s) = api.shared.read() else { return unavailable() };
    let tip = s.l1_blocks.height;
    let list: Vec<_> = s
        .findings
        .iter()
        .map(|f| {
            let blocks_left = f.deadline_height.map(|d| d.saturating_sub(tip));
            json!({"id": f.id, "kind": f.kind, "severity": f.severity.as_str(), "batch_id": f.batch_id,
                   "outpoint": f.outpoint.as_ref().map(ToString::to_string), "first_seen": f.first_seen,
                   "deadline_height": f.deadline_height, "blocks_to_deadline": blocks_left,
                   "seconds_to_deadline": blocks_left.map(|b| b * 600), "evidence": f.evidence})
        })
        .collect();
    Json(json!({"findings": list})).into_response()
}

/// Most bridge outputs listed by `/v1/bridge`.
const MAX_BRIDGE_UTXOS: usize = 1_000;

async fn bridge(State(api): State<Api>) -> Response {
    let (info, report) = {
        let Ok(s) = api.shared.read() else { return unavailable() };
        (s.bridge_descriptor.clone(), s.bridge.clone())
    };
    let Some(info) = info else { return error(StatusCode::NOT_FOUND, "the profile names no bridge") };
    let utxos = match api.store.unspent_rune_outputs_of_script(&info.script_pubkey).await {
        Ok(u) => u,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading bridge outputs: {e}")),
    };
    let listed: Vec<_> = utxos
        .iter()
        .take(MAX_BRIDGE_UTXOS)
        .map(|o| json!({"outpoint": o.outpoint.to_string(), "amount": o.amount.to_string(), "height": o.height}))
        .collect();
    let solvency = report.as_ref().map(|r| {
        json!({"balance": r.balance.to_string(), "liabilities": r.liabilities.to_string(),
               "ratio": r.solvency_ratio(), "solvent": r.balance >= r.liabilities, "paid_withdrawals": r.paid.len()})
    });
    Json(json!({"address": info.address, "script_pubkey": info.script_pubkey, "audit": info.audit,
                "utxo_count": utxos.len(), "utxos": listed, "truncated": utxos.len() > MAX_BRIDGE_UTXOS,
                "solvency": solvency}))
    .into_response()
}

async fn proof(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else { return error(StatusCode::BAD_REQUEST, "batch id must be an integer") };
    let Ok(s) = api.shared.read() else { return unavailable() };
    match s.proofs.get(&id) {
        Some(p) => ([(header::CONTENT_TYPE, "application/json")], p.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no fraud proof for batch {id}")),
    }
}
