//! The transports: how lines leave the server.
//!
//! - [`ws`]: `/ws`, WebSocket, one message per line (text or JSON frames).
//! - [`sse`]: `/events`, Server-Sent Events with resumable ids.
//! - [`frame`]: how a line or an event is encoded, in one place.
//! - [`viewer`]: `/`, the built-in viewer page and its static files.
//! - [`ops`]: `/healthz` and `/metrics`.
//!
//! This module holds what the streaming endpoints share and check *before*
//! anything is streamed or upgraded: the query parameters, the Origin policy
//! (cross-site WebSocket hijacking) and the bearer token.

pub mod frame;
pub mod ops;
pub mod sse;
pub mod viewer;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use std::net::SocketAddr;

use crate::hub::{Cursor, Line, Start};
use crate::metrics::Metrics;
use crate::server::{AppState, ClientSlot};

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

/// Query parameters of `/ws` and `/events`, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RawParams {
    pub backlog: Option<String>,
    pub since: Option<String>,
    pub epoch: Option<String>,
    pub grep: Option<String>,
    pub format: Option<String>,
    pub token: Option<String>,
}

/// Frame format of `/ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// A client's filter: the compiled `grep=` pattern.
pub type Filter = crate::hub::LineFilter;

/// Validated stream parameters.
pub struct StreamParams {
    pub start: Start,
    pub format: Format,
    pub filter: Option<Filter>,
}

/// The longest `grep=` pattern accepted, and how much memory compiling it may take.
const MAX_PATTERN_LEN: usize = 1024;
const MAX_REGEX_BYTES: usize = 1 << 20;

impl StreamParams {
    /// Validates the query; `last_event_id` (SSE's `Last-Event-ID`, `EPOCH:SEQ`)
    /// wins over `backlog` and `since`.
    pub fn parse(
        raw: &RawParams,
        default_backlog: usize,
        last_event_id: Option<&str>,
    ) -> Result<StreamParams, Rejection> {
        let bad = |what: &str| Rejection::new(StatusCode::BAD_REQUEST, what.to_string());
        let format = match raw.format.as_deref() {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(other) => return Err(bad(&format!("format must be text or json, not `{other}`"))),
        };
        let resumed = last_event_id.and_then(parse_event_id);
        let start = if let Some((epoch, seq)) = resumed {
            Start::Since {
                seq,
                epoch: Some(epoch),
            }
        } else if let Some(since) = &raw.since {
            let seq = since
                .parse()
                .map_err(|_| bad(&format!("since must be a line number, not `{since}`")))?;
            Start::Since {
                seq,
                epoch: raw.epoch.clone().filter(|e| !e.is_empty()),
            }
        } else {
            let backlog = match &raw.backlog {
                None => default_backlog,
                Some(n) => n
                    .parse()
                    .map_err(|_| bad(&format!("backlog must be a number of lines, not `{n}`")))?,
            };
            Start::Backlog(backlog)
        };
        let filter = match raw.grep.as_deref() {
            None | Some("") => None,
            Some(pattern) => {
                let regex =
                    compile_grep(pattern).map_err(|reason| bad(&format!("grep: {reason}")))?;
                let filter: Filter =
                    Arc::new(move |line: &Line| regex.is_match(line.text.as_bytes()));
                Some(filter)
            }
        };
        Ok(StreamParams {
            start,
            format,
            filter,
        })
    }
}

/// Compiles a client's pattern with bounded size: regex is linear-time, so
/// the only risk left is compile-time memory, which the limits cap.
pub fn compile_grep(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern longer than {MAX_PATTERN_LEN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|err| err.to_string().lines().collect::<Vec<_>>().join(" "))
}

/// `EPOCH:SEQ`, as this server writes SSE ids.
fn parse_event_id(id: &str) -> Option<(String, u64)> {
    let (epoch, seq) = id.trim().rsplit_once(':')?;
    Some((epoch.to_string(), seq.parse().ok()?))
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

/// What a request proved about itself.
#[derive(Debug, Default)]
pub struct Access {
    /// The WebSocket subprotocol to echo (`bearer.TOKEN`), when the token came that way.
    pub protocol: Option<HeaderValue>,
}

/// The checks every request for log data (`/ws`, `/events`, `/metrics`)
/// passes first: Host (DNS rebinding), Origin, then token.
pub fn check_access(
    app: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Access, Rejection> {
    let result = check_host(
        headers,
        &app.config.allow_origins,
        app.config.listen.ip().is_loopback(),
    )
    .and_then(|()| check_origin(headers, &app.config.allow_origins))
    .and_then(|()| check_token(app.config.token.as_deref(), headers, query_token));
    if result.is_err() {
        Metrics::add(&app.hub.metrics.rejected_requests, 1);
    }
    result
}

/// DNS rebinding protection for a server on loopback: a web page on
/// `evil.example` whose name the attacker re-points at 127.0.0.1 is, to the
/// browser, same-origin with this server — its `Origin` matches its `Host`,
/// and a same-origin `EventSource` sends no `Origin` at all. What gives it
/// away is the `Host` name. So when listening on loopback, a request must
/// name the server by an IP address, `localhost`, or a host listed with
/// `--allow-origin` (which is how a reverse proxy's name is allowed).
pub fn check_host(
    headers: &HeaderMap,
    allowed: &[String],
    loopback: bool,
) -> Result<(), Rejection> {
    if !loopback || allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Ok(()); // HTTP/1.0 without Host: not a browser
    };
    let name = host_name(host);
    let local = name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok();
    let listed = allowed.iter().any(|origin| {
        let authority = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
        host_name(authority).eq_ignore_ascii_case(name)
    });
    if local || listed {
        return Ok(());
    }
    tracing::warn!(
        host,
        "refused a request for a non-local host name on a loopback server (DNS rebinding?)"
    );
    Err(Rejection::new(
        StatusCode::FORBIDDEN,
        format!(
            "host {host} is not allowed: this server listens on loopback; \
             to serve it under that name (e.g. behind a proxy) add --allow-origin https://{name}"
        ),
    ))
}

/// `name` of `name:port`, `[v6]:port` or `name`.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                authority
            }
        })
}

/// Allows requests without `Origin` (command-line clients), from the
/// server's own origin (the `Host` the request was sent to, so it holds
/// behind a proxy that keeps `Host`), and from `--allow-origin`.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Rejection> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(host))
        });
    if own {
        return Ok(());
    }
    tracing::warn!(
        origin,
        "refused a cross-origin request (allow it with --allow-origin)"
    );
    Err(Rejection::new(
        StatusCode::FORBIDDEN,
        format!(
            "origin {origin} is not allowed (the server allows its own origin and --allow-origin)"
        ),
    ))
}

/// Checks the bearer token, from the first place it is found:
/// `Authorization: Bearer`, the `bearer.TOKEN` WebSocket subprotocol, `?token=`.
pub fn check_token(
    expected: Option<&str>,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Access, Rejection> {
    let Some(expected) = expected else {
        // No token needed; a browser that offers one anyway (the viewer opened
        // with `#token=`) must still see its subprotocol echoed, or it fails
        // the handshake.
        return Ok(Access {
            protocol: offered_bearers(headers)
                .next()
                .map(|(protocol, _)| protocol),
        });
    };
    let matches = |given: &str| bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(given) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        && matches(given.trim())
    {
        return Ok(Access::default());
    }
    if let Some((protocol, _)) = offered_bearers(headers).find(|(_, given)| matches(given)) {
        return Ok(Access {
            protocol: Some(protocol),
        });
    }
    if query_token.is_some_and(matches) {
        return Ok(Access::default());
    }
    Err(Rejection::new(
        StatusCode::UNAUTHORIZED,
        "a valid token is required (Authorization: Bearer, WebSocket subprotocol bearer.TOKEN, or ?token=)",
    ))
}

/// Every `bearer.TOKEN` WebSocket subprotocol offered, with its token.
fn offered_bearers(headers: &HeaderMap) -> impl Iterator<Item = (HeaderValue, &str)> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .filter_map(|protocol| {
            let token = protocol.strip_prefix("bearer.")?;
            Some((HeaderValue::from_str(protocol).ok()?, token))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
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
