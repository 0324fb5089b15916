//! The transports: how lines leave the server.
//!
//! - [`ws`]: `/ws`, WebSocket, one message per line (text or JSON frames).
//! - [`sse`]: `/events`, Server-Sent Events with resumable ids.
//! - [`frame`]: how a line or an event is encoded, in one place.
//! - [`viewer`]: `/`, the built-in viewer page and its static files.
//! - [`ops`]: `/healthz` and `/metrics`.
//! - [`params`]: the query parameters of the streams.
//! - [`access`]: Host, Origin and token checks.
//!
//! This module holds what every endpoint shares: [`AppState`], the routes
//! ([`router`]), and [`admit`], the one front door of the streaming
//! endpoints — every check *before* anything is streamed or upgraded, and the
//! client's slot among `--max-clients`.

pub mod access;
pub mod frame;
pub mod ops;
pub mod params;
pub mod sse;
pub mod viewer;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::hub::{Cursor, Hub};
use crate::source::Status;

pub use access::{Access, check_access};
pub use params::{Format, RawParams, StreamParams};

/// The grace of a stream that is closing a client (not at shutdown): the
/// longest its connection is kept, with nothing more queued, for what was in
/// flight and the last word (Close 1013, `event: closed`) to get through, so
/// a stuck client that reads again within it learns that it must resume.
pub const CLOSE_CAP: Duration = Duration::from_secs(30);

/// A request refused before streaming: a status and a short reason.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: String,
}

impl Rejection {
    fn new(status: StatusCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.reason)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// What each followed file is doing, written by the source.
    pub status: Status,
    pub config: Arc<Config>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    clients: Arc<Semaphore>,
}

/// A streaming client's place among `--max-clients`; counted in the
/// `clients` gauge while it lives.
pub struct ClientSlot {
    _permit: OwnedSemaphorePermit,
    hub: Arc<Hub>,
    pub peer: SocketAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.hub.metrics.client_left();
    }
}

impl AppState {
    pub fn new(
        hub: Arc<Hub>,
        status: Status,
        config: Arc<Config>,
        cancel: CancellationToken,
    ) -> AppState {
        let clients = Arc::new(Semaphore::new(config.max_clients));
        AppState {
            hub,
            status,
            config,
            cancel,
            tracker: TaskTracker::new(),
            clients,
        }
    }

    /// A slot for a new streaming client, or 503 when all are taken.
    pub fn client_slot(&self, peer: SocketAddr) -> Result<ClientSlot, Rejection> {
        match Arc::clone(&self.clients).try_acquire_owned() {
            Ok(permit) => {
                self.hub.metrics.client_admitted();
                Ok(ClientSlot {
                    _permit: permit,
                    hub: Arc::clone(&self.hub),
                    peer,
                })
            }
            Err(_) => {
                self.hub.metrics.request_rejected();
                Err(Rejection {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: format!(
                        "too many clients (--max-clients {})",
                        self.config.max_clients
                    ),
                })
            }
        }
    }
}

/// The routes: every endpoint, one line each.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws::handler))
        .route("/events", get(sse::handler))
        .route("/", get(viewer::index))
        .route("/viewer.js", get(viewer::script))
        .route("/viewer.css", get(viewer::style))
        .route("/favicon.svg", get(viewer::icon))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// A streaming request that passed every check, subscribed to the hub.
pub struct Admitted {
    pub access: Access,
    pub format: Format,
    pub cursor: Cursor,
    pub slot: ClientSlot,
}

/// Everything `/ws` and `/events` check before they stream, in order: Host
/// and Origin, token, parameters, a client slot (`--max-clients`); then the
/// subscription, taken now so that a line appended after the client got its
/// response is a live line for it.
pub fn admit(
    app: &AppState,
    peer: SocketAddr,
    raw: &RawParams,
    headers: &HeaderMap,
    last_event_id: Option<&str>,
) -> Result<Admitted, Rejection> {
    let access = check_access(app, headers, raw.token.as_deref())?;
    let params = StreamParams::parse(raw, app.config.backlog, last_event_id)?;
    let slot = app.client_slot(peer)?;
    let cursor = app.hub.subscribe(params.start, params.filter);
    Ok(Admitted {
        access,
        format: params.format,
        cursor,
        slot,
    })
}

#[cfg(test)]
mod tests {
    use super::access::*;
    use super::params::*;
    use super::*;
    use crate::hub::Start;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origin_policy() {
        let none: Vec<String> = vec![];
        assert!(check_origin(&headers(&[("host", "127.0.0.1:8080")]), &none).is_ok());
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(check_origin(&same, &none).is_ok());
        let proxied = headers(&[
            ("host", "logs.example.com"),
            ("origin", "https://logs.example.com"),
        ]);
        assert!(check_origin(&proxied, &none).is_ok());
        let evil = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(
            check_origin(&evil, &none).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(check_origin(&null, &none).is_err());
        let port = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
        ]);
        assert!(check_origin(&port, &none).is_err());
        assert!(check_origin(&evil, &["https://evil.example".into()]).is_ok());
        assert!(check_origin(&evil, &["*".into()]).is_ok());
    }

    #[test]
    fn host_guard_on_loopback() {
        let none: Vec<String> = vec![];
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "app.localhost",
            "10.0.0.5",
        ] {
            assert!(
                check_host(&headers(&[("host", host)]), &none, true).is_ok(),
                "{host}"
            );
        }
        let rebound = headers(&[("host", "evil.example:8080")]);
        assert_eq!(
            check_host(&rebound, &none, true).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(
            check_host(&rebound, &none, false).is_ok(),
            "not on loopback: no guard"
        );
        assert!(check_host(&rebound, &["https://evil.example".into()], true).is_ok());
        assert!(check_host(&rebound, &["*".into()], true).is_ok());
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("a.b:99"), "a.b");
    }

    #[test]
    fn token_forms() {
        let t = Some("s3cret");
        assert!(check_token(None, &HeaderMap::new(), None).is_ok());
        let offered = headers(&[("sec-websocket-protocol", "bearer.x")]);
        assert_eq!(
            check_token(None, &offered, None).unwrap().protocol.unwrap(),
            "bearer.x"
        );
        assert!(check_token(t, &HeaderMap::new(), None).is_err());
        assert!(check_token(t, &headers(&[("authorization", "Bearer s3cret")]), None).is_ok());
        assert!(check_token(t, &headers(&[("authorization", "Bearer nope")]), None).is_err());
        let access = check_token(
            t,
            &headers(&[("sec-websocket-protocol", "x, bearer.s3cret")]),
            None,
        )
        .unwrap();
        assert_eq!(access.protocol.unwrap(), "bearer.s3cret");
        let second = headers(&[("sec-websocket-protocol", "bearer.old, bearer.s3cret")]);
        assert_eq!(
            check_token(t, &second, None).unwrap().protocol.unwrap(),
            "bearer.s3cret"
        );
        assert!(check_token(t, &HeaderMap::new(), Some("s3cret")).is_ok());
        assert!(check_token(t, &HeaderMap::new(), Some("s3cre")).is_err());
    }

    fn raw(pairs: &[(&str, &str)]) -> RawParams {
        let mut r = RawParams::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "backlog" => r.backlog = v,
                "since" => r.since = v,
                "epoch" => r.epoch = v,
                "grep" => r.grep = v,
                "format" => r.format = v,
                _ => {}
            }
        }
        r
    }

    #[test]
    fn params() {
        let p = StreamParams::parse(&raw(&[]), 10, None).unwrap();
        assert_eq!(p.start, Start::Backlog(10));
        assert_eq!(p.format, Format::Text);
        let p = StreamParams::parse(&raw(&[("since", "42"), ("epoch", "ab")]), 10, None).unwrap();
        assert_eq!(
            p.start,
            Start::Since {
                seq: 42,
                epoch: Some("ab".into())
            }
        );
        let p = StreamParams::parse(&raw(&[("backlog", "3")]), 10, Some("ep:7")).unwrap();
        assert_eq!(
            p.start,
            Start::Since {
                seq: 7,
                epoch: Some("ep".into())
            }
        );
        assert!(StreamParams::parse(&raw(&[("backlog", "x")]), 10, None).is_err());
        assert!(StreamParams::parse(&raw(&[("format", "xml")]), 10, None).is_err());
        let err = StreamParams::parse(&raw(&[("grep", "(")]), 10, None)
            .err()
            .unwrap();
        assert!(err.reason.starts_with("grep: "), "{}", err.reason);
        let huge = "a{1000}{1000}";
        assert!(StreamParams::parse(&raw(&[("grep", huge)]), 10, None).is_err());
    }

    proptest! {
        /// Arbitrary query values never panic the parser: they are accepted or refused with 400.
        #[test]
        fn query_parsing_never_panics(backlog in ".{0,20}", since in ".{0,20}", grep in ".{0,40}", format in ".{0,8}", id in ".{0,30}") {
            let r = raw(&[("backlog", &backlog), ("since", &since), ("grep", &grep), ("format", &format)]);
            match StreamParams::parse(&r, 10, Some(&id)) {
                Ok(_) => {}
                Err(rej) => prop_assert_eq!(rej.status, StatusCode::BAD_REQUEST),
            }
        }
    }
}
