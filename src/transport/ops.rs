//! `/healthz` and `/metrics`: what an operator or a monitoring system asks.
//!
//! `/healthz` is open (no log data in it, and load balancers cannot send
//! tokens); `/metrics` needs the token when one is set.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::{RawParams, check_access};

pub async fn healthz(State(app): State<AppState>) -> Response {
    let hub = &app.hub;
    let (history_lines, history_bytes) = hub.history_usage();
    Json(json!({
        "status": "ok",
        "epoch": hub.epoch(),
        "seq": hub.last_seq(),
        "clients": hub.metrics.clients_now(),
        "files": app.status.files(),
        "history": { "lines": history_lines, "bytes": history_bytes, "limit": hub.limits().history_bytes },
    }))
    .into_response()
}

pub async fn metrics(
    State(app): State<AppState>,
    Query(raw): Query<RawParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // The same gate as the streams (counts its refusals too): Prometheus
    // sends no Origin, and a browser page from elsewhere has no business here.
    if let Err(rejection) = check_access(&app, &uri, &headers, raw.token.as_deref()) {
        return rejection.into_response();
    }
    let (lines, bytes) = app.hub.history_usage();
    let mut response = app.hub.metrics.render(lines, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
