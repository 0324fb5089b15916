//! The transports: how lines leave the server.
//!
//! - [`ws`]: `/ws`, WebSocket, one message per line (text or JSON frames).
//! - [`sse`]: `/events`, Server-Sent Events with resumable ids.
//! - [`wt`]: `/wt`, WebTransport over HTTP/3 (newline-delimited JSON frames), and `/wt-cert-hash`.
//! - [`rtc`]: `POST /rtc`, WebRTC signaling, and the data channel stream.
//! - [`viewer`]: `/`, the built-in viewer page and its static files.
//! - [`ops`]: `/healthz` and `/metrics`.
//! - [`params`]: the query parameters of the streams.
//! - [`access`]: authority (`Host` or HTTP/2 `:authority`), Origin and token checks.
//!
//! This module holds what every endpoint shares: [`AppState`], the routes
//! ([`router`]), and [`admit`], the one front door of the streaming
//! endpoints — every check *before* anything is streamed or upgraded, and the
//! client's slot among `--max-clients`.

pub mod access;
pub mod ops;
pub mod params;
pub mod rtc;
pub mod sse;
pub mod viewer;
pub mod ws;
pub mod wt;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::hub::{Cursor, Hub};
use crate::source::Status;

pub use access::{Access, Authority, check_access};
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
    /// When the server started serving (`uptime_seconds`).
    pub started: std::time::Instant,
    /// What each `--publish` broker publisher is doing, for `/healthz`.
    pub publishers: Arc<Vec<Arc<crate::sink::SinkStatus>>>,
    /// An edge's consumer (`--from`), for `/healthz`.
    pub edge: Option<Arc<crate::source::nats::EdgeStatus>>,
    /// `--http3` without `--tls-cert`: the self-signed certificate's hash (`/wt-cert-hash`).
    pub wt_cert: Option<crate::server::cert::CertHash>,
    /// `POST /rtc`'s driver, when WebRTC is on.
    pub rtc: Option<rtc::RtcHandle>,
}

/// Runs the one delivery loop ([`crate::pump::pump`]) for the client in
/// `slot`, and tells the metrics and the log when it ends the client as too
/// slow; what to say to the client then is the transport's.
pub async fn deliver<S: crate::pump::Sink>(
    app: &AppState,
    slot: &ClientSlot,
    cursor: &mut Cursor,
    sink: &mut S,
    options: &crate::pump::PumpOptions,
) -> (crate::pump::End, crate::pump::Delivered) {
    let (end, delivered) =
        crate::pump::pump(cursor, sink, options, &app.cancel, &app.hub.metrics).await;
    if end.too_slow() {
        app.hub.metrics.slow_client_closed();
        tracing::info!(peer = %slot.peer, lag_bytes = cursor.lag_bytes(), "closing a client that is too slow");
    }
    (end, delivered)
}

/// A streaming client's place among `--max-clients`; counted in the
/// `clients` gauge while it lives. It also says who the client is, for the
/// one log line at its connect and the one at its end.
pub struct ClientSlot {
    _permit: OwnedSemaphorePermit,
    hub: Arc<Hub>,
    pub peer: SocketAddr,
    /// `ws`, `sse`, `wt` or `rtc`.
    transport: &'static str,
    /// `X-Forwarded-For`, with `--trust-proxy`.
    forwarded_for: Option<String>,
    since: std::time::Instant,
    ended: bool,
}

impl ClientSlot {
    /// Logs the end of this client's stream: why, how long, what it got.
    pub fn ended(&mut self, end: crate::pump::End, delivered: crate::pump::Delivered) {
        self.log_end(end.reason(), delivered);
    }

    /// The same, for a reason the transport knows better than [`crate::pump::End`].
    pub fn ended_as(&mut self, reason: &'static str, delivered: crate::pump::Delivered) {
        self.log_end(reason, delivered);
    }

    fn log_end(&mut self, reason: &'static str, delivered: crate::pump::Delivered) {
        self.ended = true;
        self.hub.metrics.client_ended(self.transport, reason);
        tracing::info!(
            peer = %self.peer,
            forwarded_for = self.forwarded_for.as_deref(),
            transport = self.transport,
            duration_seconds = self.since.elapsed().as_secs_f64(),
            lines = delivered.lines,
            bytes = delivered.bytes,
            reason,
            "client disconnected"
        );
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped before streaming (a failed upgrade, say).
            self.log_end("error", crate::pump::Delivered::default());
        }
        self.hub.metrics.client_left(self.transport);
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
            started: std::time::Instant::now(),
            publishers: Arc::new(Vec::new()),
            edge: None,
            wt_cert: None,
            rtc: None,
        }
    }

    /// The same, showing `publishers` in `/healthz`.
    pub fn with_publishers(mut self, publishers: Vec<Arc<crate::sink::SinkStatus>>) -> AppState {
        self.publishers = Arc::new(publishers);
        self
    }

    /// A slot for a new streaming client, or 503 when all are taken.
    pub fn client_slot(
        &self,
        peer: SocketAddr,
        transport: &'static str,
        forwarded_for: Option<String>,
    ) -> Result<ClientSlot, Rejection> {
        match Arc::clone(&self.clients).try_acquire_owned() {
            Ok(permit) => {
                self.hub.metrics.client_admitted(transport);
                Ok(ClientSlot {
                    _permit: permit,
                    hub: Arc::clone(&self.hub),
                    peer,
                    transport,
                    forwarded_for,
                    since: std::time::Instant::now(),
                    ended: false,
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

/// The routes: every endpoint, one line each, under `--base-path` if given
/// (then the bare prefix redirects to the page at `PREFIX/`, so that the
/// page's relative links resolve under it).
pub fn router(state: AppState) -> Router {
    let base = state.config.base_path.clone();
    let at = |path: &str| format!("{base}{path}");
    let mut router = Router::new()
        // CONNECT: a WebSocket over HTTP/2 (RFC 8441) is an extended CONNECT.
        .route(
            &at("/ws"),
            on(MethodFilter::GET.or(MethodFilter::CONNECT), ws::handler),
        )
        .route(&at("/events"), get(sse::handler))
        // WebTransport is an extended CONNECT over HTTP/3 (GET: a clear 400).
        .route(
            &at("/wt"),
            on(MethodFilter::GET.or(MethodFilter::CONNECT), wt::handler),
        )
        .route(&at("/wt-cert-hash"), get(wt::cert_hash))
        .route(&at("/rtc"), axum::routing::post(rtc::handler))
        .route(&at("/rtc/{id}"), axum::routing::delete(rtc::delete))
        .route(&at("/"), get(viewer::index))
        .route(&at("/viewer.js"), get(viewer::script))
        .route(&at("/format.js"), get(viewer::format_script))
        .route(&at("/viewer.css"), get(viewer::style))
        .route(&at("/favicon.svg"), get(viewer::icon))
        .route(&at("/files"), get(ops::files))
        .route(&at("/healthz"), get(ops::healthz))
        .route(&at("/readyz"), get(ops::readyz))
        .route(&at("/metrics"), get(ops::metrics));
    if !base.is_empty() {
        let page = format!("{base}/");
        router = router.route(
            &base,
            get(move || async move { axum::response::Redirect::permanent(&page) }),
        );
    }
    router
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// A streaming request that passed every check, subscribed to the hub.
pub struct Admitted {
    pub access: Access,
    pub format: Format,
    /// Each line goes after its file's name (a stream of more than one file).
    pub prefix: bool,
    pub cursor: Cursor,
    pub slot: ClientSlot,
}

/// Everything `/ws` and `/events` check before they stream, in order: the
/// authority (from `uri`, else `Host`) and Origin, token, parameters, a client slot (`--max-clients`); then the
/// subscription, taken now so that a line appended after the client got its
/// response is a live line for it.
pub fn admit(
    app: &AppState,
    transport: &'static str,
    peer: SocketAddr,
    raw: &RawParams,
    uri: &Uri,
    headers: &HeaderMap,
    last_event_id: Option<&str>,
) -> Result<Admitted, Rejection> {
    let access = check_access(app, uri, headers, raw.token.as_deref())?;
    let params = StreamParams::parse(raw, app.config.backlog, last_event_id)?;
    let followed: Vec<String> = app.status.files().into_iter().map(|f| f.name).collect();
    let files = params::select_files(&raw.file, &followed)?;
    // A stream that may carry more than one file says whose each line is.
    let many = match raw.file.as_slice() {
        [] => {
            app.config.inputs.len() > 1
                || app
                    .config
                    .inputs
                    .iter()
                    .any(|i| matches!(i.what, crate::config::InputPath::Glob(_)))
        }
        [one] => crate::source::file::glob::is_glob(one),
        _ => true,
    };
    let prefix = params.prefix.unwrap_or(many);
    let forwarded_for = app
        .config
        .trust_proxy
        .then(|| {
            headers
                .get("x-forwarded-for")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .flatten();
    let slot = app.client_slot(peer, transport, forwarded_for)?;
    if let crate::hub::Start::Since { .. } = params.start {
        app.hub.metrics.resumed();
    }
    tracing::info!(
        peer = %slot.peer,
        forwarded_for = slot.forwarded_for.as_deref(),
        transport,
        files = ?raw.file,
        grep = raw.grep.is_some(),
        format = ?params.format,
        "client connected"
    );
    let files = files.map(|wants| Arc::new(crate::hub::Selection::new(wants)));
    let cursor = app.hub.subscribe_to(params.start, files, params.filter);
    Ok(Admitted {
        access,
        format: params.format,
        prefix,
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

    /// The authority checks of one request with an origin-form target
    /// (`GET /ws`, as HTTP/1.1 sends it): from `Host`, if any.
    fn host_checks(
        pairs: &[(&'static str, &str)],
        allowed: &[String],
    ) -> [Result<(), StatusCode>; 3] {
        decide(&Uri::from_static("/ws"), &headers(pairs), allowed)
    }

    /// `check_host` on loopback, off loopback, and `check_origin`, as statuses.
    fn decide(uri: &Uri, headers: &HeaderMap, allowed: &[String]) -> [Result<(), StatusCode>; 3] {
        let authority = Authority::of(uri, headers);
        let status = |r: Result<(), Rejection>| r.map_err(|rej| rej.status);
        [
            status(check_host(authority, headers, allowed, true)),
            status(check_host(authority, headers, allowed, false)),
            status(check_origin(authority, headers, allowed)),
        ]
    }

    fn origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Rejection> {
        check_origin(
            Authority::of(&Uri::from_static("/ws"), headers),
            headers,
            allowed,
        )
    }

    fn host(headers: &HeaderMap, allowed: &[String], loopback: bool) -> Result<(), Rejection> {
        check_host(
            Authority::of(&Uri::from_static("/ws"), headers),
            headers,
            allowed,
            loopback,
        )
    }

    #[test]
    fn origin_policy() {
        let none: Vec<String> = vec![];
        assert!(origin(&headers(&[("host", "127.0.0.1:8080")]), &none).is_ok());
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(origin(&same, &none).is_ok());
        let proxied = headers(&[
            ("host", "logs.example.com"),
            ("origin", "https://logs.example.com"),
        ]);
        assert!(origin(&proxied, &none).is_ok());
        let evil = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(
            origin(&evil, &none).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(origin(&null, &none).is_err());
        let port = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
        ]);
        assert!(origin(&port, &none).is_err());
        assert!(origin(&evil, &["https://evil.example".into()]).is_ok());
        assert!(origin(&evil, &["*".into()]).is_ok());
    }

    #[test]
    fn host_guard_on_loopback() {
        let none: Vec<String> = vec![];
        for name in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "app.localhost",
            "10.0.0.5",
        ] {
            assert!(
                host(&headers(&[("host", name)]), &none, true).is_ok(),
                "{name}"
            );
        }
        let rebound = headers(&[("host", "evil.example:8080")]);
        assert_eq!(
            host(&rebound, &none, true).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(
            host(&rebound, &none, false).is_ok(),
            "not on loopback: no guard"
        );
        assert!(host(&rebound, &["https://evil.example".into()], true).is_ok());
        assert!(host(&rebound, &["*".into()], true).is_ok());
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("a.b:99"), "a.b");
    }

    /// The requests of the two tests above, each sent once with `Host` and
    /// once as HTTP/2 sends it (`:authority`, i.e. the URI's authority, and
    /// no `Host`): every check decides the same.
    #[test]
    fn authority_from_the_uri_alone_decides_as_host_does() {
        let none: Vec<String> = vec![];
        let listed: Vec<String> = vec!["https://evil.example".into()];
        let cases: [(&str, Option<&str>); 10] = [
            ("127.0.0.1:8080", None),
            ("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("127.0.0.1:8080", Some("http://127.0.0.1:9999")),
            ("127.0.0.1:8080", Some("https://evil.example")),
            ("127.0.0.1:8080", Some("null")),
            ("logs.example.com", Some("https://logs.example.com")),
            ("localhost:8080", Some("http://localhost:8080")),
            ("[::1]:8080", None),
            ("evil.example:8080", None),
            ("evil.example:8080", Some("http://evil.example:8080")),
        ];
        for (authority, origin) in cases {
            let mut with_host = vec![("host", authority)];
            let mut h2 = vec![];
            if let Some(origin) = origin {
                with_host.push(("origin", origin));
                h2.push(("origin", origin));
            }
            let uri: Uri = format!("https://{authority}/ws").parse().unwrap();
            for allowed in [&none, &listed] {
                assert_eq!(
                    decide(&uri, &headers(&h2), allowed),
                    host_checks(&with_host, allowed),
                    "{authority} {origin:?} {allowed:?}"
                );
            }
        }
    }

    /// When the URI has an authority and `Host` says otherwise, the URI's is
    /// checked: hyper sets it from HTTP/2's `:authority`, or from an HTTP/1.1
    /// absolute-form target, where RFC 9112 §3.2.2 says to ignore `Host`.
    #[test]
    fn the_uri_authority_wins_over_host() {
        let none: Vec<String> = vec![];
        let forbidden = Err(StatusCode::FORBIDDEN);
        // A rebinding name in the URI is refused whatever Host claims.
        let uri = Uri::from_static("http://evil.example:8080/ws");
        let h = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(decide(&uri, &h, &none)[0], forbidden);
        // A local URI passes the guard with a foreign Host.
        let uri = Uri::from_static("http://127.0.0.1:8080/ws");
        let h = headers(&[("host", "evil.example")]);
        assert_eq!(decide(&uri, &h, &none), [Ok(()), Ok(()), Ok(())]);
        // The own origin is the URI's, not Host's.
        let h = headers(&[
            ("host", "evil.example:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(decide(&uri, &h, &none)[2], Ok(()));
        let h = headers(&[
            ("host", "evil.example:8080"),
            ("origin", "http://evil.example:8080"),
        ]);
        assert_eq!(decide(&uri, &h, &none)[2], forbidden);
        // `user@` in an absolute-form target is not part of the name.
        let uri = Uri::from_static("http://evil.example@127.0.0.1:8080/ws");
        assert_eq!(
            Authority::of(&uri, &HeaderMap::new()),
            Authority::Named("127.0.0.1:8080")
        );
    }

    /// No authority at all: an HTTP/1.0 command-line client passes; with an
    /// Origin (a browser always names the host) it does not, on loopback.
    /// A `Host` that cannot be read, or two of them, names nothing.
    #[test]
    fn requests_naming_no_host() {
        let none: Vec<String> = vec![];
        let forbidden = Err(StatusCode::FORBIDDEN);
        assert_eq!(host_checks(&[], &none), [Ok(()), Ok(()), Ok(())]);
        let with_origin = [("origin", "http://127.0.0.1:8080")];
        assert_eq!(
            host_checks(&with_origin, &none),
            [forbidden, Ok(()), forbidden]
        );
        let listed = vec!["http://127.0.0.1:8080".to_string()];
        assert_eq!(
            host_checks(&with_origin, &listed),
            [forbidden, Ok(()), Ok(())]
        );
        assert_eq!(
            host_checks(&with_origin, &["*".into()]),
            [Ok(()), Ok(()), Ok(())]
        );

        let mut unreadable = HeaderMap::new();
        unreadable.insert(
            header::HOST,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        let uri = Uri::from_static("/ws");
        assert_eq!(Authority::of(&uri, &unreadable), Authority::Unreadable);
        assert_eq!(
            decide(&uri, &unreadable, &none),
            [forbidden, Ok(()), Ok(())]
        );
        let twice = headers(&[("host", "127.0.0.1:8080"), ("host", "evil.example")]);
        assert_eq!(Authority::of(&uri, &twice), Authority::Unreadable);
        assert_eq!(decide(&uri, &twice, &none)[0], forbidden);
        // The URI's authority still counts when Host is unreadable.
        let uri = Uri::from_static("http://127.0.0.1:8080/ws");
        assert_eq!(decide(&uri, &twice, &none), [Ok(()), Ok(()), Ok(())]);
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
                "file" => r.file.extend(v),
                "prefix" => r.prefix = v,
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
