//! Who may read: the checks every request for log data passes before
//! anything is streamed or upgraded — the authority it was sent to (DNS
//! rebinding), the Origin (cross-site WebSocket hijacking) and the bearer
//! token.
//!
//! # Which authority
//!
//! The name the request was sent to ([`Authority::of`]) is taken from the
//! request's URI first, and from `Host` only when the URI has none:
//!
//! - HTTP/2 sends it as `:authority`, which hyper makes the URI's authority,
//!   usually with no `Host` header at all; reading only `Host` would turn
//!   the DNS-rebinding guard off and never match the server's own origin.
//! - HTTP/1.1 usually sends an origin-form target (`GET /ws`), so the URI has
//!   no authority and `Host` is used. When the target is absolute-form
//!   (`GET http://127.0.0.1:8080/ws`), hyper passes it through and RFC 9112
//!   §3.2.2 says the server must ignore `Host` and use the target's: the URI
//!   wins when the two disagree (RFC 9113 §8.3.1 says the same of
//!   `:authority` over `Host`).
//! - A `Host` that cannot be read (not visible ASCII, or sent twice) names
//!   nothing checkable: it never matches (RFC 9112 §3.2 wants a 400 for it).
//! - Neither: an HTTP/1.0 client without `Host` (curl `-0`, scripts). It is
//!   not a browser, so on a loopback listener it is let through *unless it
//!   carries an `Origin`* — a browser always names the host, so an Origin
//!   without one is refused rather than waved past the guard.

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use subtle::ConstantTimeEq;

use super::{AppState, Rejection};

/// What a request proved about itself.
#[derive(Debug, Default)]
pub struct Access {
    /// The WebSocket subprotocol to echo (`bearer.TOKEN`), when the token came that way.
    pub protocol: Option<HeaderValue>,
}

/// The authority (`host[:port]`) a request was sent to, as the checks see
/// it; see the module doc for where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority<'a> {
    /// From the URI (HTTP/2 `:authority`, an absolute-form target), else `Host`.
    Named(&'a str),
    /// A `Host` header that cannot be read, and no authority in the URI.
    Unreadable,
    /// Neither: an HTTP/1.0 request without `Host`.
    Missing,
}

impl<'a> Authority<'a> {
    /// The URI's authority (without any `user@`), else the one `Host` header.
    pub fn of(uri: &'a Uri, headers: &'a HeaderMap) -> Authority<'a> {
        if let Some(authority) = uri.authority() {
            let authority = authority.as_str();
            return Authority::Named(authority.rsplit_once('@').map_or(authority, |(_, a)| a));
        }
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => Authority::Missing,
            (Some(host), None) => host
                .to_str()
                .map_or(Authority::Unreadable, Authority::Named),
            (Some(_), Some(_)) => Authority::Unreadable,
        }
    }
}

/// The checks every request for log data (`/ws`, `/events`, `/metrics`)
/// passes first: its authority (DNS rebinding), Origin, then token.
pub fn check_access(
    app: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Access, Rejection> {
    let authority = Authority::of(uri, headers);
    let result = check_host(
        authority,
        headers,
        &app.config.allow_origins,
        app.config.listen.ip().is_loopback(),
    )
    .and_then(|()| check_origin(authority, headers, &app.config.allow_origins))
    .and_then(|()| check_token(app.config.token.as_deref(), headers, query_token));
    if result.is_err() {
        app.hub.metrics.request_rejected();
    }
    result
}

/// DNS rebinding protection for a server on loopback: a web page on
/// `evil.example` whose name the attacker re-points at 127.0.0.1 is, to the
/// browser, same-origin with this server — its `Origin` matches its `Host`,
/// and a same-origin `EventSource` sends no `Origin` at all. What gives it
/// away is the name it was sent to (`authority`). So when listening on
/// loopback, a request must name the server by an IP address, `localhost`,
/// or a host listed with `--allow-origin` (which is how a reverse proxy's
/// name is allowed). A request naming nothing passes only without `Origin`
/// (see the module doc).
pub fn check_host(
    authority: Authority<'_>,
    headers: &HeaderMap,
    allowed: &[String],
    loopback: bool,
) -> Result<(), Rejection> {
    if !loopback || allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let host = match authority {
        Authority::Named(host) => host,
        // HTTP/1.0 without Host: not a browser.
        Authority::Missing if !headers.contains_key(header::ORIGIN) => return Ok(()),
        Authority::Missing | Authority::Unreadable => {
            tracing::warn!(
                "refused a request that names no readable host on a loopback server (DNS rebinding?)"
            );
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "this server listens on loopback: a browser request must name the host \
                 (a readable Host header, or the URI's authority)",
            ));
        }
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
pub(super) fn host_name(authority: &str) -> &str {
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
/// server's own origin (the `authority` the request was sent to, so it holds
/// behind a proxy that keeps `Host`), and from `--allow-origin`.
pub fn check_origin(
    authority: Authority<'_>,
    headers: &HeaderMap,
    allowed: &[String],
) -> Result<(), Rejection> {
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
    let own = match authority {
        Authority::Named(host) => {
            let from = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            from.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(host))
        }
        Authority::Unreadable | Authority::Missing => false,
    };
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
