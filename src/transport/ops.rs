//! `/healthz`, `/files` and `/metrics`: what an operator, a monitoring
//! system or a viewer asks.
//!
//! `/healthz` is open (no log data in it, and load balancers cannot send
//! tokens); `/files` and `/metrics` need the token when one is set.
//! Neither shows a server path, unless `--show-paths` asks `/files` to.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::{RawParams, check_access};
use crate::metrics::HttpVersion;

pub async fn healthz(State(app): State<AppState>) -> Response {
    let hub = &app.hub;
    let (history_lines, history_bytes, last_seq) = hub.history_usage();
    let (wt_sessions, wt_bytes) = hub.metrics.transport_now("wt");
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "epoch": hub.epoch(),
        "seq": last_seq,
        "clients": hub.metrics.clients_now(),
        // Per HTTP version: open connections, and requests (HTTP/2 and HTTP/3 streams) in progress.
        "connections": per_version(|v| hub.metrics.connections_now(v)),
        "streams": per_version(|v| hub.metrics.streams_now(v)),
        // --http3: WebTransport sessions open, and bytes written to their streams.
        "webtransport": { "sessions": wt_sessions, "bytes_sent": wt_bytes },
        // POST /rtc: null when WebRTC is off.
        "rtc": app.rtc.as_ref().map(|rtc| json!({
            "port": rtc.port(),
            "sessions": hub.metrics.rtc_sessions_now(),
            "sent_bytes": hub.metrics.rtc_sent_bytes(),
        })),
        "files": app.status.files().iter().map(|f| json!({
            "name": f.name,
            "state": f.state,
            "inode": f.inode,
            "size": f.size,
            "offset": f.offset,
            "last_line_at": f.last_line_at.map(rfc3339),
        })).collect::<Vec<_>>(),
        "history": { "lines": history_lines, "bytes": history_bytes, "limit": hub.limits().history_bytes },
        // --from: the edge's consumer of its stream.
        "from": app.edge.as_ref().map(|e| e.report()),
        // --publish: each broker's state; lag_lines = lines read and not yet acknowledged.
        "publishers": app.publishers.iter().map(|p| {
            let r = p.report();
            json!({
                "broker": r.kind,
                "target": r.target,
                "connected": r.connected,
                "acked_seq": r.acked_seq,
                "lag_lines": last_seq.saturating_sub(r.acked_seq),
                "published": r.published,
                "lost": r.lost,
                "lost_bytes": r.lost_bytes,
                "failures": r.failures,
                "last_error": r.last_error,
            })
        }).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `GET /readyz`: 503 until every input has been looked at once (opened,
/// or found missing and waited for), then 200. Open, like `/healthz`.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let files = app.status.files();
    let starting: Vec<&str> = files
        .iter()
        .filter(|f| f.state == crate::source::FileState::Starting)
        .map(|f| f.name.as_str())
        .collect();
    if starting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} of {} files not looked at yet\n",
                starting.len(),
                files.len()
            ),
        )
            .into_response()
    }
}

/// `{"http/1.1": N, "h2": M, "h3": O}`.
fn per_version(count: impl Fn(HttpVersion) -> i64) -> serde_json::Value {
    HttpVersion::ALL
        .iter()
        .map(|&v| (v.as_str().to_string(), json!(count(v))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn rfc3339(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `GET /files`: every followed file, in the order they were added.
pub async fn files(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let raw = RawParams::from_query(uri.query());
    if let Err(rejection) = check_access(&app, &uri, &headers, raw.token.as_deref()) {
        return rejection.into_response();
    }
    let show_paths = app.config.show_paths;
    let files: Vec<serde_json::Value> = app
        .status
        .files()
        .into_iter()
        .map(|f| {
            let mut entry = json!({
                "name": f.name,
                "state": f.state,
                "size": f.size,
                "offset": f.offset,
                "lines": f.lines,
                "last_line_at": f.last_line_at.map(rfc3339),
            });
            if show_paths {
                entry["path"] = json!(f.path);
            }
            entry
        })
        .collect();
    Json(files).into_response()
}

pub async fn metrics(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let raw = RawParams::from_query(uri.query());
    // The same gate as the streams (counts its refusals too): Prometheus
    // sends no Origin, and a browser page from elsewhere has no business here.
    if let Err(rejection) = check_access(&app, &uri, &headers, raw.token.as_deref()) {
        return rejection.into_response();
    }
    let (lines, bytes, _) = app.hub.history_usage();
    let mut response = app.hub.metrics.render(lines, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
