//! Security (DESIGN.md "Security", "Clients"): the Origin policy against cross-site
//! WebSocket hijacking, the bearer token, TLS, `--max-clients`, oversized and flooding
//! client messages, slowloris connections, bad methods, paths and headers, serving only the
//! configured file, and listening on loopback by default.
//!
//! Exact status codes come from the harness's hand-made requests ([`http_open`],
//! [`ws_handshake`]), so that nothing between the test and the server interprets the answer.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::harness::{
    Deadline, FLOOD, LogFile, PROMPT, Response, Server, SseStream, UPGRADE, WsClient,
    http_exchange, http_get, http_open, http_request, numbered, self_signed, send_until_close,
    status_code, strs, trusting, wait_until_async,
};

/// The token used by the token tests.
const TOKEN: &str = "s3cret-TOKEN-xyz";
/// A cross-site origin.
const EVIL: &str = "https://evil.example";
/// Live lines only.
const LIVE: &str = "/ws?backlog=0";
/// How long the server may take to drop a connection that sends no complete request head:
/// the 5 s handshake timeout plus scheduling slack.
const SLOW_CLOSE: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------------------
// Raw HTTP helpers
// ---------------------------------------------------------------------------------------

/// A WebSocket upgrade of `path` by hand with extra `headers`; the connection is returned
/// open (a 101 holds a client slot until it is dropped).
async fn ws_handshake(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response, TcpStream) {
    let mut all: Vec<(&str, &str)> = UPGRADE.to_vec();
    all.extend_from_slice(headers);
    http_open(addr, "GET", path, &all).await
}

/// The status of a WebSocket upgrade of `path` (the connection is dropped).
async fn ws_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    ws_handshake(addr, path, headers).await.0
}

/// The status of `GET path` as an EventSource sends it (the connection is dropped).
async fn sse_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut all: Vec<(&str, &str)> = vec![("Accept", "text/event-stream")];
    all.extend_from_slice(headers);
    http_open(addr, "GET", path, &all).await.0
}

/// Waits until one line of the server's stderr contains every one of `needles`.
async fn wait_for_log_line(server: &Server, needles: &[&str]) {
    let found = || {
        let stderr = server.stderr();
        std::future::ready(
            stderr
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n))),
        )
    };
    let what = format!("one stderr line contains all of {needles:?}");
    wait_until_async(PROMPT, &what, found).await;
}

// ---------------------------------------------------------------------------------------
// Origin (cross-site WebSocket hijacking)
// ---------------------------------------------------------------------------------------

/// Behind a reverse proxy that keeps `Host`, the proxy's name is allowed once it is
/// listed with `--allow-origin`: Origin matching Host is then the server's own origin.
#[tokio::test]
async fn proxied_host_is_allowed_when_listed() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--allow-origin", "https://logs.example.com"]).await;
    let addr = server.addr();
    let proxied = ws_status(
        addr,
        "/ws",
        &[
            ("Host", "logs.example.com"),
            ("Origin", "https://logs.example.com"),
        ],
    )
    .await;
    assert_eq!(
        proxied.status, 101,
        "Origin matching a listed Host: {proxied:?}"
    );
    let other = ws_status(addr, "/ws", &[("Host", "other.example.com")]).await;
    assert_eq!(other.status, 403, "unlisted Host: {other:?}");
}

/// A cross-site `Origin` (and `Origin: null`) is refused with 403 naming the origin, on
/// `/ws` before the upgrade and on `/events`, and logged at warn; the server's own origin
/// (per `Host`) and requests without `Origin` are allowed.
#[tokio::test]
async fn cross_origin_is_refused_own_origin_and_no_origin_allowed() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let addr = server.addr();
    let own = format!("http://{addr}");
    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1).max(1));

    for path in ["/ws", "/ws?backlog=0"] {
        let evil = ws_status(addr, path, &[("Origin", EVIL)]).await;
        assert_eq!(evil.status, 403, "{path} with Origin {EVIL}: {evil:?}");
        assert!(
            evil.text().contains(EVIL),
            "the 403 body does not name the origin: {:?}",
            evil.text()
        );
        assert!(
            evil.header("upgrade").is_none(),
            "403 carries Upgrade: {evil:?}"
        );
    }
    let null = ws_status(addr, "/ws", &[("Origin", "null")]).await;
    assert_eq!(null.status, 403, "Origin: null: {null:?}");
    assert!(null.text().contains("null"), "{:?}", null.text());
    let port = ws_status(addr, "/ws", &[("Origin", &other_port)]).await;
    assert_eq!(
        port.status, 403,
        "Origin {other_port} (another port): {port:?}"
    );

    let same = ws_status(addr, "/ws", &[("Origin", &own)]).await;
    assert_eq!(same.status, 101, "same origin {own}: {same:?}");
    let none = ws_status(addr, "/ws", &[]).await;
    assert_eq!(none.status, 101, "no Origin: {none:?}");
    // DNS rebinding: a page on a name re-pointed at 127.0.0.1 is "same-origin"
    // (Origin matches Host), and a same-origin EventSource sends no Origin at all.
    // A loopback server refuses a non-local Host name unless --allow-origin lists it.
    let rebound = ws_status(
        addr,
        "/ws",
        &[
            ("Host", "logs.example.com"),
            ("Origin", "https://logs.example.com"),
        ],
    )
    .await;
    assert_eq!(rebound.status, 403, "rebound Host on loopback: {rebound:?}");
    assert!(
        rebound.text().contains("--allow-origin"),
        "{:?}",
        rebound.text()
    );
    let rebound_sse = sse_status(
        addr,
        "/events",
        &[("Host", &format!("evil.example:{}", addr.port()))],
    )
    .await;
    assert_eq!(
        rebound_sse.status, 403,
        "rebound Host without Origin: {rebound_sse:?}"
    );

    let evil = sse_status(addr, "/events", &[("Origin", EVIL)]).await;
    assert_eq!(evil.status, 403, "/events with Origin {EVIL}: {evil:?}");
    assert!(evil.text().contains(EVIL), "{:?}", evil.text());
    let null = sse_status(addr, "/events", &[("Origin", "null")]).await;
    assert_eq!(null.status, 403, "/events with Origin: null: {null:?}");
    let same = sse_status(addr, "/events", &[("Origin", &own)]).await;
    assert_eq!(same.status, 200, "/events same origin: {same:?}");
    let none = sse_status(addr, "/events", &[]).await;
    assert_eq!(none.status, 200, "/events without Origin: {none:?}");

    wait_for_log_line(&server, &["WARN", EVIL]).await;
    wait_for_log_line(&server, &["WARN", "null"]).await;

    // A browser-like client refused by Origin gets the 403 through tungstenite too.
    let refused =
        WsClient::try_connect(WsClient::request(&server.ws_url("/ws")).with_header("Origin", EVIL))
            .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("expected HTTP 403, got {:?}", other.map(|_| "a connection")),
    }
}

/// `--allow-origin https://evil.example` lets that exact origin in (101 and 200), but no
/// other cross-site origin.
#[tokio::test]
async fn allow_origin_admits_listed_origin_only() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--allow-origin", EVIL]).await;
    let addr = server.addr();
    let listed = ws_status(addr, "/ws", &[("Origin", EVIL)]).await;
    assert_eq!(listed.status, 101, "listed origin: {listed:?}");
    let listed = sse_status(addr, "/events", &[("Origin", EVIL)]).await;
    assert_eq!(listed.status, 200, "/events listed origin: {listed:?}");
    let own = ws_status(addr, "/ws", &[("Origin", &format!("http://{addr}"))]).await;
    assert_eq!(own.status, 101, "own origin still allowed: {own:?}");
    for origin in [
        "https://other.example",
        "https://evil.example.attacker.net",
        "null",
    ] {
        let r = ws_status(addr, "/ws", &[("Origin", origin)]).await;
        assert_eq!(r.status, 403, "unlisted origin {origin}: {r:?}");
        let r = sse_status(addr, "/events", &[("Origin", origin)]).await;
        assert_eq!(r.status, 403, "/events unlisted origin {origin}: {r:?}");
    }
}

/// `--allow-origin '*'` allows every origin.
#[tokio::test]
async fn allow_origin_star_admits_any_origin() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--allow-origin", "*"]).await;
    let addr = server.addr();
    for origin in [EVIL, "https://other.example"] {
        let r = ws_status(addr, "/ws", &[("Origin", origin)]).await;
        assert_eq!(r.status, 101, "{origin} with --allow-origin '*': {r:?}");
        let r = sse_status(addr, "/events", &[("Origin", origin)]).await;
        assert_eq!(
            r.status, 200,
            "/events {origin} with --allow-origin '*': {r:?}"
        );
    }
}

/// The name a request was sent to comes from its URI first, `Host` second (HTTP/2's
/// `:authority` is the URI's authority in hyper). Over HTTP/1.1 an absolute-form target
/// (`GET http://127.0.0.1:PORT/ws`) reaches the handlers as the URI, so its authority is
/// the one checked and a contradicting `Host` is ignored (RFC 9112 §3.2.2): by the
/// DNS-rebinding guard on `/ws` and `/events`, and as the server's own origin.
#[tokio::test]
async fn absolute_form_target_authority_is_checked_not_host() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let addr = server.addr();
    let local = format!("http://{addr}/ws");
    let rebound = format!("http://evil.example:{}/ws", addr.port());
    let foreign_host = ("Host", "evil.example");

    let r = ws_status(addr, &local, &[foreign_host]).await;
    assert_eq!(r.status, 101, "local URI, foreign Host: {r:?}");
    let r = ws_status(addr, &rebound, &[("Host", &addr.to_string())]).await;
    assert_eq!(r.status, 403, "rebound URI, local Host: {r:?}");
    assert!(r.text().contains("evil.example"), "{:?}", r.text());
    let r = sse_status(addr, &format!("http://{addr}/events"), &[foreign_host]).await;
    assert_eq!(r.status, 200, "/events local URI, foreign Host: {r:?}");
    let r = sse_status(
        addr,
        &format!("http://evil.example:{}/events", addr.port()),
        &[("Host", &addr.to_string())],
    )
    .await;
    assert_eq!(r.status, 403, "/events rebound URI, local Host: {r:?}");

    // The own origin is the URI's: Origin matching it passes whatever Host says, Origin
    // matching only Host does not.
    let localhost = format!("localhost:{}", addr.port());
    let r = ws_status(
        addr,
        &local,
        &[("Host", &localhost), ("Origin", &format!("http://{addr}"))],
    )
    .await;
    assert_eq!(r.status, 101, "Origin = URI authority: {r:?}");
    let r = ws_status(
        addr,
        &local,
        &[
            ("Host", &localhost),
            ("Origin", &format!("http://{localhost}")),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "Origin = Host only: {r:?}");
}

/// A request naming no host at all (HTTP/1.0 without `Host`) is a command-line client and
/// passes the DNS-rebinding guard; with an `Origin` it is not waved through: a browser
/// always names the host, so a loopback server refuses it.
#[tokio::test]
async fn no_host_passes_only_without_origin() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let addr = server.addr();
    // hyper answers an HTTP/1.0 request with an HTTP/1.0 status line.
    let status = |raw: Option<Vec<u8>>| raw.as_deref().and_then(status_code);
    let plain = send_until_close(addr, b"GET /metrics HTTP/1.0\r\n\r\n", PROMPT).await;
    assert_eq!(status(plain), Some(200), "HTTP/1.0 without Host or Origin");
    let with_origin = format!("GET /metrics HTTP/1.0\r\nOrigin: http://{addr}\r\n\r\n");
    let refused = send_until_close(addr, with_origin.as_bytes(), PROMPT).await;
    assert_eq!(
        status(refused),
        Some(403),
        "HTTP/1.0 without Host, with Origin"
    );
}

// ---------------------------------------------------------------------------------------
// Token
// ---------------------------------------------------------------------------------------

/// Statuses of `/ws` (upgrade), `/events` and `/metrics` for `query` and `headers`.
async fn guarded_statuses(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> [u16; 3] {
    let ws = ws_status(addr, &format!("/ws{query}"), headers).await;
    let sse = sse_status(addr, &format!("/events{query}"), headers).await;
    let metrics = http_open(addr, "GET", &format!("/metrics{query}"), headers)
        .await
        .0;
    for r in [&ws, &sse, &metrics] {
        if r.status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer"),
                "401 without WWW-Authenticate: Bearer: {r:?}"
            );
        }
    }
    [ws.status, sse.status, metrics.status]
}

/// With a token set (from `source`), requests without it or with a wrong one get 401 on
/// `/ws`, `/events` and `/metrics`; `Authorization: Bearer` and `?token=` work on all three;
/// `/healthz`, `/` and `/viewer.js` stay open.
async fn assert_token_enforced(server: &Server, source: &str) {
    let addr = server.addr();
    let bearer = format!("Bearer {TOKEN}");
    let wrong_cases: [(&str, Vec<(&str, &str)>); 6] = [
        ("", vec![]),
        ("", vec![("Authorization", "Bearer wrong-token")]),
        ("", vec![("Authorization", "Bearer s3cret-TOKEN-xy")]),
        ("", vec![("Authorization", "Bearer s3cret-TOKEN-xyzz")]),
        ("?token=wrong", vec![]),
        ("", vec![("Sec-WebSocket-Protocol", "bearer.wrong")]),
    ];
    for (query, headers) in &wrong_cases {
        assert_eq!(
            guarded_statuses(addr, query, headers).await,
            [401, 401, 401],
            "[/ws, /events, /metrics] with query {query:?} headers {headers:?} ({source})"
        );
    }
    assert_eq!(
        guarded_statuses(addr, "", &[("Authorization", &bearer)]).await,
        [101, 200, 200],
        "[/ws, /events, /metrics] with Authorization: Bearer ({source})"
    );
    assert_eq!(
        guarded_statuses(addr, &format!("?token={TOKEN}"), &[]).await,
        [101, 200, 200],
        "[/ws, /events, /metrics] with ?token= ({source})"
    );
    for path in ["/healthz", "/", "/viewer.js", "/viewer.css", "/favicon.svg"] {
        let r = http_get(addr, path, &[]).await;
        assert_eq!(r.status, 200, "{path} without token ({source}): {r:?}");
    }
}

/// `--token`: 401 without or with a wrong token on every data endpoint; Bearer header,
/// `bearer.TOKEN` subprotocol (echoed in the 101) and `?token=` all work and stream lines;
/// the open endpoints need none; and the token never appears in the server's logs, even at
/// `RUST_LOG=trace`.
#[tokio::test]
async fn token_is_required_accepted_three_ways_and_never_logged() {
    let log = LogFile::new();
    let server = Server::builder()
        .file(log.path())
        .args(&["--token", TOKEN])
        .env("RUST_LOG", "trace")
        .start()
        .await;
    let addr = server.addr();
    assert_token_enforced(&server, "--token").await;

    // The right token does not excuse a cross-site origin.
    let bearer = format!("Bearer {TOKEN}");
    let r = ws_status(addr, "/ws", &[("Authorization", &bearer), ("Origin", EVIL)]).await;
    assert_eq!(r.status, 403, "right token, cross-site origin: {r:?}");
    let r = sse_status(
        addr,
        "/events",
        &[("Authorization", &bearer), ("Origin", EVIL)],
    )
    .await;
    assert_eq!(
        r.status, 403,
        "/events right token, cross-site origin: {r:?}"
    );

    // The subprotocol, alone or among others, is echoed as the chosen one.
    let proto = format!("bearer.{TOKEN}");
    for offered in [proto.clone(), format!("logtail, {proto}")] {
        let r = ws_status(addr, "/ws", &[("Sec-WebSocket-Protocol", &offered)]).await;
        assert_eq!(r.status, 101, "subprotocol {offered:?}: {r:?}");
        assert_eq!(
            r.header("sec-websocket-protocol"),
            Some(proto.as_str()),
            "101 must echo the bearer subprotocol: {r:?}"
        );
    }

    // Real clients, one per way of presenting the token, all receive the lines.
    let url = server.ws_url(LIVE);
    let mut by_header = WsClient::connect_with(
        WsClient::request(&url).with_header("Authorization", format!("Bearer {TOKEN}")),
    )
    .await;
    let mut by_protocol =
        WsClient::connect_with(WsClient::request(&url).with_sub_protocol(proto.clone())).await;
    let mut by_query = WsClient::connect(&server.ws_url(&format!("{LIVE}&token={TOKEN}"))).await;
    let mut sse = SseStream::connect(addr, &format!("/events?backlog=0&token={TOKEN}"), &[]).await;
    assert_eq!(sse.status, 200);
    server.wait_clients(4, PROMPT).await;
    log.append_lines(["with token 1", "with token 2"]);
    for c in [&mut by_header, &mut by_protocol, &mut by_query] {
        c.expect_lines(&["with token 1", "with token 2"]).await;
    }
    sse.read_until_contains("data: with token 2\n", PROMPT)
        .await;

    // The logs were really at trace level, and the token is in none of them.
    let stderr = server.stderr();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "RUST_LOG=trace produced no trace/debug output:\n{stderr}"
    );
    if let Some(line) = stderr.lines().find(|l| l.contains(TOKEN)) {
        panic!("the token appears in the server's stderr: {line:?}");
    }
}

/// `--token-file PATH` (first line, newline trimmed) and `LOGTAIL_TOKEN` set the token just
/// like `--token`.
#[tokio::test]
async fn token_from_file_and_from_env() {
    let log = LogFile::new();
    let token_file = log.write_sibling("token.txt", format!("{TOKEN}\n").as_bytes());
    let from_file =
        Server::start(log.path(), &["--token-file", token_file.to_str().unwrap()]).await;
    assert_token_enforced(&from_file, "--token-file").await;
    assert!(
        !from_file.stderr().contains(TOKEN),
        "{}",
        from_file.stderr()
    );

    let from_env = Server::builder()
        .file(log.path())
        .env("LOGTAIL_TOKEN", TOKEN)
        .start()
        .await;
    assert_token_enforced(&from_env, "LOGTAIL_TOKEN").await;
    assert!(!from_env.stderr().contains(TOKEN), "{}", from_env.stderr());
}

/// `LOGTAIL_TOKEN` is not revealed by `--help` or by a command-line error message.
#[test]
fn token_from_env_is_not_shown_by_help_or_errors() {
    let env = [("LOGTAIL_TOKEN", TOKEN)];
    let help = Server::spawn_raw(&["--help"], &env).finish(Duration::from_secs(10));
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    assert!(help.stdout.contains("--token"), "{}", help.stdout);
    let bad = Server::spawn_raw(&["--file", "x.log", "--port", "nope"], &env)
        .finish(Duration::from_secs(10));
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    for (what, out) in [("--help", &help), ("a bad flag", &bad)] {
        assert!(
            !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
            "{what} shows the token:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------

/// `GET path` over TLS (`Connection: close`); returns the status and the body text.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, String) {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::from(addr.ip()), tcp)
            .await
            .expect("TLS handshake");
        http_exchange(&mut tls, addr, "GET", path, &[], b"").await
    };
    let resp = tokio::time::timeout(PROMPT, exchange)
        .await
        .unwrap_or_else(|_| panic!("https GET {path}: no response within {PROMPT:?}"));
    (resp.status, resp.text())
}

/// `/healthz`'s client count over TLS.
async fn tls_client_count(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> u64 {
    let (status, body) = https_get(addr, Arc::clone(config), "/healthz").await;
    assert_eq!(status, 200, "https /healthz: {body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    health["clients"].as_u64().expect("clients count")
}

/// Waits until `/healthz` (over TLS) reports `n` clients.
async fn wait_tls_clients(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, n: u64) {
    wait_until_async(
        PROMPT,
        &format!("https /healthz counts {n} clients"),
        || async { tls_client_count(addr, config).await == n },
    )
    .await;
}

/// A wss client through `config`.
async fn wss_client(server: &Server, config: &Arc<rustls::ClientConfig>, path: &str) -> WsClient {
    let url = server.ws_url(path);
    WsClient::try_connect_tls(url.as_str(), Connector::Rustls(Arc::clone(config)))
        .await
        .unwrap_or_else(|e| panic!("wss connect to {url} failed: {e}"))
}

/// `--tls-cert/--tls-key`: the server logs `listening on https://`, a wss client trusting
/// the certificate receives appended lines exactly, https `/healthz` works; a plain `ws://`
/// client and a silent TCP client fail or are dropped promptly, and TLS clients are served
/// afterwards.
#[tokio::test]
async fn tls_serves_wss_and_https_and_refuses_plaintext() {
    let log = LogFile::new();
    let (cert, key, der) = self_signed(&log, "");
    let server = Server::start(
        log.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let addr = server.addr();
    assert!(
        server
            .stderr()
            .contains(&format!("listening on https://{addr}")),
        "stderr:\n{}",
        server.stderr()
    );
    assert!(server.ws_url("/ws").starts_with("wss://"));
    let config = trusting(der);

    // A TCP connection that never starts the TLS handshake is dropped in time.
    let silent = tokio::spawn(async move {
        let start = Instant::now();
        send_until_close(addr, b"", SLOW_CLOSE)
            .await
            .map(|_| start.elapsed())
    });

    let (status, body) = https_get(addr, Arc::clone(&config), "/healthz").await;
    assert_eq!(status, 200, "https /healthz: {body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(health["status"], "ok", "{health}");

    let mut first = wss_client(&server, &config, LIVE).await;
    wait_tls_clients(addr, &config, 1).await;
    let lines = numbered("secure ", 1..=100);
    log.append_lines(&lines);
    first.expect_lines(&strs(&lines)).await;

    // Plain WebSocket to the TLS port: an error, promptly (no hang).
    let plain_url = format!("ws://{addr}/ws");
    let started = Instant::now();
    match tokio::time::timeout(
        SLOW_CLOSE,
        tokio_tungstenite::connect_async(plain_url.as_str()),
    )
    .await
    {
        Err(_) => panic!("plain ws:// to the TLS port hung for {SLOW_CLOSE:?}"),
        Ok(Ok(_)) => panic!("plain ws:// to the TLS port was upgraded"),
        Ok(Err(e)) => eprintln!("plain ws:// failed after {:?}: {e}", started.elapsed()),
    }
    // Plain HTTP: never an HTTP answer, and the connection is closed promptly.
    let raw = send_until_close(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        SLOW_CLOSE,
    )
    .await
    .unwrap_or_else(|| panic!("plain HTTP to the TLS port: still open after {SLOW_CLOSE:?}"));
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&raw)
    );

    // Still serving TLS clients, old and new.
    let mut second = wss_client(&server, &config, LIVE).await;
    wait_tls_clients(addr, &config, 2).await;
    let more = numbered("secure ", 101..=150);
    log.append_lines(&more);
    first.expect_lines(&strs(&more)).await;
    second.expect_lines(&strs(&more)).await;

    let silent = silent.await.expect("silent client task");
    let took = silent.unwrap_or_else(|| {
        panic!("a TCP client that never started TLS was still connected after {SLOW_CLOSE:?}")
    });
    assert!(
        took < SLOW_CLOSE,
        "silent TLS client dropped after {took:?}"
    );
}

/// Over TLS too, a wss client whose socket accepts nothing for `--send-timeout` and that
/// then reads again gets what was in flight (lines 1, 2, … as written) and then Close 1013:
/// the write that timed out left the TLS stream intact, with nothing lost or repeated.
#[tokio::test]
async fn tls_stuck_client_that_reads_again_gets_what_was_in_flight_then_1013() {
    let log = LogFile::new();
    let (cert, key, der) = self_signed(&log, "");
    let server = Server::start(
        log.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--send-timeout",
            "1",
        ],
    )
    .await;
    let config = trusting(der);
    let mut healthy = wss_client(&server, &config, "/ws?backlog=0").await;
    // Reads nothing until it is told to below.
    let mut stuck = WsClient::connect_small_rcvbuf_with(
        server.addr(),
        &server.ws_url("/ws?backlog=0"),
        4096,
        Some(Connector::Rustls(Arc::clone(&config))),
    )
    .await;
    wait_tls_clients(server.addr(), &config, 2).await;

    // 32 KiB appends, each drained by the healthy client before the next, until the
    // server gives up on the stuck one.
    let line = |i: usize| format!("{i:08} {}", "x".repeat(90));
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while !server
        .stderr()
        .contains("closing a client that is too slow")
    {
        flood.check(|| format!("the stuck client was not closed after {written} lines"));
        let chunk: Vec<String> = (written + 1..=written + 320).map(line).collect();
        log.append_lines(&chunk);
        healthy.expect_lines(&strs(&chunk)).await;
        written += chunk.len();
    }

    // It wakes up.
    let (got, code, reason) = stuck.read_until_close(PROMPT).await;
    assert_eq!(
        (code, reason.as_str()),
        (1013, "client too slow"),
        "Close after {} lines",
        got.len()
    );
    assert!(
        !got.is_empty() && got.len() <= written,
        "{} lines in flight, {written} written",
        got.len()
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != line(i + 1)) {
        panic!("line #{i}: expected {:?}, got {:?}", line(i + 1), got[i]);
    }
}

/// A certificate or key that cannot be used (garbage, armour around junk, missing file,
/// or a key of another certificate) makes the server exit 2 — the files the command line
/// names are at fault, as with a bad flag (`src/error.rs`) — naming the file when a file
/// is at fault, and never listen.
#[test]
fn bad_tls_files_exit_2_naming_the_file() {
    let log = LogFile::new();
    let (cert, key, _) = self_signed(&log, "");
    let (_, other_key, _) = self_signed(&log, "other-");
    let garbage = log.write_sibling("garbage.pem", b"this is not PEM at all\n");
    let junk_cert = log.write_sibling(
        "junk-cert.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
    );
    let junk_key = log.write_sibling(
        "junk-key.pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n",
    );
    let missing = log.sibling("missing.pem");
    // (cert, key, the file the message must name, if any)
    let cases: [(&PathBuf, &PathBuf, Option<&PathBuf>); 7] = [
        (&garbage, &key, Some(&garbage)),
        (&missing, &key, Some(&missing)),
        (&junk_cert, &key, Some(&junk_cert)),
        (&cert, &garbage, Some(&garbage)),
        (&cert, &missing, Some(&missing)),
        (&cert, &junk_key, Some(&junk_key)),
        (&cert, &other_key, None),
    ];
    let mut failures = Vec::new();
    for (c, k, named) in cases {
        let out = Server::spawn_raw(
            &[
                "--file",
                log.path().to_str().unwrap(),
                "--port",
                "0",
                "--tls-cert",
                c.to_str().unwrap(),
                "--tls-key",
                k.to_str().unwrap(),
            ],
            &[],
        )
        .finish(Duration::from_secs(10));
        let what = format!(
            "--tls-cert {} --tls-key {}",
            c.file_name().unwrap().to_string_lossy(),
            k.file_name().unwrap().to_string_lossy()
        );
        if out.code != Some(2) {
            failures.push(format!(
                "{what}: exit {:?}, stderr: {}",
                out.code, out.stderr
            ));
        } else if out.stderr.contains("listening on") {
            failures.push(format!("{what}: listened first; stderr: {}", out.stderr));
        } else if let Some(named) = named
            && !out.stderr.contains(named.to_str().unwrap())
        {
            failures.push(format!(
                "{what}: stderr does not name {}: {}",
                named.display(),
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/// `--max-clients 2`: a third `/ws` gets 503 before the upgrade and a third `/events` 503;
/// once a client leaves, a new one is accepted and streams.
#[tokio::test]
async fn max_clients_refuses_with_503_until_a_slot_frees() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--max-clients", "2"]).await;
    let addr = server.addr();
    let mut a = WsClient::connect(&server.ws_url(LIVE)).await;
    let b = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(2, PROMPT).await;

    let third = ws_status(addr, LIVE, &[]).await;
    assert_eq!(third.status, 503, "third /ws: {third:?}");
    assert!(third.header("upgrade").is_none(), "{third:?}");
    let third = sse_status(addr, "/events?backlog=0", &[]).await;
    assert_eq!(third.status, 503, "third /events: {third:?}");
    let refused = WsClient::try_connect(server.ws_url(LIVE).as_str()).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503),
        "tungstenite client: {:?}",
        refused.map(|_| "connected")
    );
    // The operational endpoints are not streaming clients: still served.
    assert_eq!(server.client_count().await, 2);
    assert_eq!(http_get(addr, "/metrics", &[]).await.status, 200);

    b.close().await;
    server.wait_clients(1, PROMPT).await;
    let mut c = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(2, PROMPT).await;
    let again = ws_status(addr, LIVE, &[]).await;
    assert_eq!(again.status, 503, "full again: {again:?}");
    log.append_lines(["after a slot freed"]);
    a.expect_lines(&["after a slot freed"]).await;
    c.expect_lines(&["after a slot freed"]).await;

    // An SSE client leaving frees its slot too.
    a.close().await;
    server.wait_clients(1, PROMPT).await;
    let sse = SseStream::connect(addr, "/events?backlog=0", &[]).await;
    assert_eq!(sse.status, 200);
    server.wait_clients(2, PROMPT).await;
    drop(sse);
    wait_until_async(
        PROMPT,
        "the SSE client that left frees its slot",
        || async { server.client_count().await == 1 },
    )
    .await;
    let d = ws_status(addr, LIVE, &[]).await;
    assert_eq!(d.status, 101, "after the SSE client left: {d:?}");
}

/// A client message over 4 KiB (whole or in fragments of under 4 KiB) closes that client
/// with 1009; one of exactly 4 KiB is ignored; other clients are unaffected.
#[tokio::test]
async fn oversized_client_message_is_closed_with_1009() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut healthy = WsClient::connect(&server.ws_url(LIVE)).await;
    let mut limit = WsClient::connect(&server.ws_url(LIVE)).await;
    let mut big = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(3, PROMPT).await;

    limit.send_text(&"x".repeat(4096)).await;
    big.send_text(&"x".repeat(5 * 1024)).await;
    let (code, reason) = big.expect_close(PROMPT).await;
    assert_eq!(code, 1009, "close reason {reason:?}");
    server.wait_clients(2, PROMPT).await;

    // 5 KiB in three fragments of under 4 KiB each: still one message over the limit.
    let mut fragmented = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(3, PROMPT).await;
    let chunk = "y".repeat(1800);
    let frames = [
        Frame::message(chunk.clone(), OpCode::Data(Data::Text), false),
        Frame::message(chunk.clone(), OpCode::Data(Data::Continue), false),
        Frame::message(chunk, OpCode::Data(Data::Continue), true),
    ];
    for frame in frames {
        // The server may close before the last fragment is written.
        if fragmented
            .stream()
            .send(Message::Frame(frame))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, reason) = fragmented.expect_close(PROMPT).await;
    assert_eq!(
        code, 1009,
        "fragmented 5.3 KiB message: close reason {reason:?}"
    );
    server.wait_clients(2, PROMPT).await;

    log.append_lines(["still here"]);
    healthy.expect_lines(&["still here"]).await;
    limit.expect_lines(&["still here"]).await;
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A client flooding 50 000 × 100 B messages is read and ignored: another client keeps
/// receiving every line exactly, the flooder itself stays connected and answered, and the
/// server's memory stays bounded (sanity bound: VmRSS grows < 50 MB).
#[tokio::test]
async fn message_flood_is_ignored_without_harm() {
    const FLOOD: usize = 50_000;
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut healthy = WsClient::connect(&server.ws_url(LIVE)).await;
    let flooder = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["warm-up"]);
    healthy.expect_lines(&["warm-up"]).await;
    let rss_before = rss_kib(server.pid());
    // The flooder is a live client too: it gets every line, "warm-up" first.
    let mut expected = vec!["warm-up".to_string()];

    let flood: JoinHandle<WsClient> = tokio::spawn(async move {
        let mut flooder = flooder;
        let msg = "f".repeat(100);
        let ws = flooder.stream();
        for i in 0..FLOOD {
            ws.feed(Message::text(msg.clone()))
                .await
                .expect("feed flood");
            if i % 500 == 499 {
                ws.flush().await.expect("flush flood");
            }
        }
        // A ping after the flood: its pong proves the server read every message.
        ws.send(Message::Ping(bytes::Bytes::from_static(b"flood-done")))
            .await
            .expect("send ping");
        flooder
    });
    let mut round = 0;
    while !flood.is_finished() || round < 5 {
        round += 1;
        let lines = numbered(&format!("during flood {round}."), 1..=20);
        log.append_lines(&lines);
        healthy.expect_lines(&strs(&lines)).await;
        expected.extend(lines);
    }
    let mut flooder = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("flood finished")
        .expect("flood task");

    // The flooder gets the pong and every line appended meanwhile, in order.
    let deadline = Instant::now() + PROMPT;
    let mut got = Vec::new();
    let mut ponged = false;
    while !ponged || got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match flooder.next_message(left).await {
            Ok(Message::Text(t)) => got.push(t.as_str().to_owned()),
            Ok(Message::Pong(p)) if p.as_ref() == b"flood-done" => ponged = true,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("flooder got {other:?} after {} lines", got.len()),
            Err(why) => panic!(
                "flooder: {why:?} after {} of {} lines (pong: {ponged})",
                got.len(),
                expected.len()
            ),
        }
    }
    if let Some(i) = (0..expected.len()).find(|&i| got.get(i) != expected.get(i)) {
        panic!(
            "flooder line #{i}: expected {:?}, got {:?}",
            expected.get(i),
            got.get(i)
        );
    }

    log.append_lines(["after the flood"]);
    healthy.expect_lines(&["after the flood"]).await;
    flooder.expect_lines(&["after the flood"]).await;
    let rss_after = rss_kib(server.pid());
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 50 * 1024,
        "VmRSS grew by {growth} KiB ({rss_before} → {rss_after} KiB) during a 5 MB flood"
    );
    eprintln!("flood: VmRSS {rss_before} → {rss_after} KiB");
}

/// Connects, writes `first`, then (every 500 ms) the next byte of `trickle` (nothing if
/// empty) until the server closes the connection, reading whatever it answers; returns how long that took, or `None` if it was still
/// open after [`SLOW_CLOSE`].
fn slow_client(
    addr: SocketAddr,
    first: &'static [u8],
    trickle: &'static [u8],
) -> JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let start = Instant::now();
        stream.write_all(first).await.expect("send first bytes");
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut next = 0;
        let mut buf = [0u8; 1024];
        let run = async {
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {} // e.g. a 408 before the close
                    },
                    _ = tick.tick(), if next < trickle.len() => {
                        if stream.write_all(&trickle[next..=next]).await.is_err() {
                            return;
                        }
                        next += 1;
                    }
                }
            }
        };
        tokio::time::timeout(SLOW_CLOSE, run)
            .await
            .ok()
            .map(|()| start.elapsed())
    })
}

/// Slowloris: a connection that sends nothing, one that sends a header one byte per 500 ms,
/// an idle keep-alive connection and one trickling a request body are each closed within
/// the handshake timeout (5 s; asserted < 8 s), while a WebSocket client keeps receiving
/// every line.
#[tokio::test]
async fn slowloris_connections_are_closed_while_clients_stream() {
    const TRICKLE: &[u8] =
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(1, PROMPT).await;

    let idle = slow_client(server.addr(), b"", b"");
    let trickling = slow_client(server.addr(), b"", TRICKLE);
    // One complete keep-alive request, answered, then silence.
    let kept_alive = slow_client(
        server.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"",
    );
    // A complete head announcing a large body that then trickles in.
    let slow_body = slow_client(
        server.addr(),
        b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n",
        TRICKLE,
    );
    // Pace the rounds; each waits for its lines.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut round = 0;
    let all = [idle, trickling, kept_alive, slow_body];
    while !all.iter().all(JoinHandle::is_finished) {
        pace.tick().await;
        round += 1;
        let lines = numbered(&format!("round {round}."), 1..=10);
        log.append_lines(&lines);
        client.expect_lines(&strs(&lines)).await;
    }
    let mut closed_after = Vec::new();
    for task in all {
        closed_after.push(task.await.expect("slow client task"));
    }
    let names = [
        "idle",
        "trickling header",
        "idle keep-alive",
        "trickling body",
    ];
    let report: Vec<String> = names
        .iter()
        .zip(&closed_after)
        .map(|(name, after)| format!("{name}: {after:?}"))
        .collect();
    assert!(
        closed_after.iter().all(Option::is_some),
        "a connection was still open after {SLOW_CLOSE:?} (None); closed after: {report:?}"
    );
    eprintln!("slowloris: closed after {report:?}");

    log.append_lines(["after slowloris"]);
    client.expect_lines(&["after slowloris"]).await;
    server.wait_clients(1, PROMPT).await;
}

// ---------------------------------------------------------------------------------------
// Methods, paths, headers, files
// ---------------------------------------------------------------------------------------

/// Unknown paths get 404, `POST /ws` and `POST /events` 405; a 64 KiB header and 500
/// headers get 431 or a closed connection, and the server keeps serving.
#[tokio::test]
async fn bad_paths_methods_and_oversized_headers() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let addr = server.addr();
    for path in [
        "/nope",
        "/ws/extra",
        "/events/",
        "/metrics.txt",
        "/healthz/x",
    ] {
        let r = http_get(addr, path, &[]).await;
        assert_eq!(r.status, 404, "GET {path}: {r:?}");
    }
    for path in ["/ws", "/events"] {
        let r = http_request(addr, "POST", path, &[], b"x=1").await;
        assert_eq!(r.status, 405, "POST {path}: {r:?}");
    }
    let r = http_open(addr, "POST", "/ws", &UPGRADE).await.0;
    assert_eq!(r.status, 405, "POST /ws with upgrade headers: {r:?}");

    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for (what, req) in [("a 64 KiB header", big), ("500 headers", many)] {
        let raw = send_until_close(addr, req.as_bytes(), PROMPT)
            .await
            .unwrap_or_else(|| panic!("{what}: connection still open after {PROMPT:?}"));
        let status = status_code(&raw);
        assert!(
            status.is_none() || status == Some(431),
            "{what}: expected 431 or a closed connection, got {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        );
        eprintln!("{what}: status {status:?}");
    }

    server.healthz().await;
    let mut client = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["still serving"]);
    client.expect_lines(&["still serving"]).await;
}

/// Only the configured file is served: `file=` parameters are ignored (the configured
/// file's stream, nothing else), and traversal paths get 404, never another file's content.
#[tokio::test]
async fn only_the_configured_file_is_served() {
    const MARKER: &str = "TOP-SECRET-MARKER";
    let log = LogFile::with_lines(["configured 1", "configured 2", "configured 3"]);
    let secret = log.write_sibling("secret.txt", format!("{MARKER}\n").as_bytes());
    let secret = secret.to_str().unwrap();
    let server = Server::start(log.path(), &[]).await;
    let addr = server.addr();
    let leaked = |text: &str| text.contains(MARKER) || text.contains("root:");

    // A `file=` that is not a followed name is refused, whatever it spells;
    // the refusal lists the names a client may ask for, and nothing else.
    let encoded_secret: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    for target in [
        "/etc/passwd",
        secret,
        encoded_secret.as_str(),
        "../secret.txt",
        "..%2fsecret.txt",
        "%2e%2e%2fsecret.txt",
        "secret.txt",
    ] {
        for endpoint in ["/ws", "/events"] {
            let upgrade = [
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ];
            let headers: &[(&str, &str)] = if endpoint == "/ws" { &upgrade } else { &[] };
            let r = http_get(
                addr,
                &format!("{endpoint}?backlog=3&file={target}"),
                headers,
            )
            .await;
            let body = r.text();
            assert_eq!(r.status, 404, "{endpoint}?file={target}: {body}");
            assert!(
                body.contains("known files: app.log"),
                "{endpoint}?file={target}: {body}"
            );
            assert!(!leaked(&body), "{body}");
        }
    }
    // The configured file under its name is served, and only it.
    let mut client = WsClient::connect(&server.ws_url("/ws?backlog=3&file=app.log")).await;
    client
        .expect_lines(&["configured 1", "configured 2", "configured 3"])
        .await;
    let mut sse = SseStream::connect(addr, "/events?backlog=3&file=app.log", &[]).await;
    assert_eq!(sse.status, 200);
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["configured 4"]);
    client.expect_lines(&["configured 4"]).await;
    let text = sse
        .read_until_contains("data: configured 4\n", PROMPT)
        .await;
    assert!(!leaked(&text), "SSE stream leaked another file:\n{text}");
    assert!(text.contains("data: configured 1\n"), "{text}");

    let traversal = [
        "/../../etc/passwd".to_string(),
        "/%2e%2e/etc/passwd".into(),
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd".into(),
        "/..%2f..%2f..%2fetc%2fpasswd".into(),
        "//etc/passwd".into(),
        "/etc/passwd".into(),
        "/ws/../../etc/passwd".into(),
        "/viewer.js/../../../../etc/passwd".into(),
        "/app.log".into(),
        "/secret.txt".into(),
        format!("/..{secret}"),
        secret.to_string(),
    ];
    for path in &traversal {
        let r = http_get(addr, path, &[]).await;
        assert!(!leaked(&r.text()), "GET {path} leaked another file: {r:?}");
        assert_eq!(r.status, 404, "GET {path}: {r:?}");
    }
}

/// Without `--bind` the server listens on 127.0.0.1 only: the log says so, and the
/// machine's non-loopback address (if it has one) refuses the connection.
#[tokio::test]
async fn listens_on_loopback_by_default() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let port = server.addr().port();
    assert!(
        server
            .stderr()
            .contains(&format!("listening on http://127.0.0.1:{port}")),
        "stderr:\n{}",
        server.stderr()
    );
    assert_eq!(server.addr().ip(), IpAddr::from([127, 0, 0, 1]));

    // The address this host would use to reach the outside (no packet is sent).
    let outward = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let Some(ip) = outward else {
        eprintln!("note: no non-loopback address; only the log line was checked");
        return;
    };
    let attempt =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((ip, port))).await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "connected to {ip}:{port}: the server is not loopback-only"
    );
    // Loopback still works.
    server.healthz().await;
}
