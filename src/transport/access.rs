//! Who may read: the checks every request for log data passes before
//! anything is streamed or upgraded — the Host name (DNS rebinding), the
//! Origin (cross-site WebSocket hijacking) and the bearer token.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq;

use super::{AppState, Rejection};

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
        app.hub.metrics.request_rejected();
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
