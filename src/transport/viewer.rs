//! `/`: the built-in viewer page, embedded in the binary.
//!
//! Static files only — they hold no log data, so they need no token (the page
//! reads the token from its URL fragment, which browsers never send, and
//! passes it on as the WebSocket subprotocol). Served with a CSP of
//! `default-src 'self'`: the page loads nothing from anywhere else and runs no
//! inline script, so a log line can never become code.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/viewer.js");
/// Pure functions the page runs on each line (ANSI colours, levels, JSON and logfmt
/// fields); a file of its own so that `tests/viewer/format.test.js` runs it under node.
const FORMAT: &str = include_str!("assets/format.js");
const STYLE: &str = include_str!("assets/viewer.css");
const ICON: &str = include_str!("assets/favicon.svg");

const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn format_script() -> Response {
    asset(FORMAT, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

pub async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}
