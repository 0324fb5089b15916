//! HTTP/3 (issue 14; DESIGN.md "Transports", `--http3`): QUIC on UDP, the port number of
//! the TCP listener, with the `--tls-cert` certificate. A Rust h3 client (h3 + h3-quinn)
//! reads `/events` byte for byte (backlog, then live lines), `/healthz` counts the h3
//! connection and its streams, `/` is the viewer with its CSP, `/ws` is refused with the
//! documented reason, and the Origin, DNS-rebinding and token rules hold; TCP responses
//! advertise HTTP/3 by `Alt-Svc` (only with `--http3`; without TLS QUIC is self-signed:
//! tests/webtransport.rs);
//! SIGTERM ends an open h3 SSE stream and the process exits 0 within the 2 s budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::harness::{
    Deadline, FLOOD, H3, LogFile, PROMPT, Response, Server, Sig, http_exchange, numbered,
    self_signed, strs, trusting, wait_until_async,
};

/// The contract's shutdown budget (tests/shutdown.rs).
const BUDGET: Duration = Duration::from_secs(2);

/// A TLS server with `--http3`, the certificate it serves, and an HTTP/1.1 TLS client
/// configuration trusting it (for looking at TCP responses without touching h3 counts).
struct H3Server {
    server: Server,
    cert: CertificateDer<'static>,
    h1: Arc<rustls::ClientConfig>,
}

impl H3Server {
    async fn start(log: &LogFile, extra: &[&str]) -> H3Server {
        H3Server::start_with(log, true, extra).await
    }

    /// With `--http3` or, for comparison, TLS alone.
    async fn start_with(log: &LogFile, http3: bool, extra: &[&str]) -> H3Server {
        let (cert, key, der) = self_signed(log, "");
        let mut args = vec![
            "--tls-cert".to_string(),
            cert.to_str().unwrap().to_string(),
            "--tls-key".to_string(),
            key.to_str().unwrap().to_string(),
        ];
        if http3 {
            args.push("--http3".into());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let server = Server::builder()
            .file(log.path())
            .args(&strs(&args))
            .start()
            .await;
        H3Server {
            server,
            h1: trusting(der.clone()),
            cert: der,
        }
    }

    async fn h3(&self) -> H3 {
        H3::connect(self.server.addr(), self.cert.clone()).await
    }

    /// `GET path` over HTTP/1.1 on TLS (TCP).
    async fn get_tcp(&self, path: &str) -> Response {
        let addr = self.server.addr();
        let exchange = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let mut stream = tokio_rustls::TlsConnector::from(Arc::clone(&self.h1))
                .connect(ServerName::from(addr.ip()), tcp)
                .await
                .expect("TLS handshake");
            http_exchange(&mut stream, addr, "GET", path, &[], b"").await
        };
        tokio::time::timeout(PROMPT, exchange)
            .await
            .unwrap_or_else(|_| panic!("https GET {path}: no response within {PROMPT:?}"))
    }

    /// `/healthz` over TCP.
    async fn healthz(&self) -> serde_json::Value {
        self.get_tcp("/healthz").await.json()
    }

    /// Waits until `/healthz` (over TCP) counts `n` clients.
    async fn wait_clients(&self, n: u64) {
        let counts = || async { self.healthz().await["clients"].as_u64() == Some(n) };
        wait_until_async(PROMPT, &format!("/healthz counts {n} clients"), counts).await;
    }
}

/// The SSE body of a stream that began with `retry: 1000` and got `lines` as seq `first..`.
fn sse_text(epoch: &str, first: u64, lines: &[String]) -> String {
    let mut text = String::from("retry: 1000\n\n");
    for (i, line) in lines.iter().enumerate() {
        text.push_str(&format!(
            "id: {epoch}:{}\ndata: {line}\n\n",
            first + i as u64
        ));
    }
    text
}

/// `GET /events` over HTTP/3: the backlog, then every line appended after, byte for byte;
/// `/healthz` over HTTP/3 counts the h3 connection and its two streams (the SSE stream and
/// itself) and names no other version's.
#[tokio::test]
async fn sse_over_h3_streams_backlog_then_live_lines_exactly() {
    let log = LogFile::new();
    let old = numbered("before ", 1..=3);
    log.append_lines(&old);
    let s = H3Server::start(&log, &[]).await;
    let read = || async { s.healthz().await["seq"] == 3 };
    wait_until_async(PROMPT, "the backlog is read", read).await;
    let mut h3 = s.h3().await;
    let mut sse = h3.open("/events?backlog=3", &[]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert!(
        sse.headers.get("connection").is_none(),
        "HTTP/3 has no Connection header"
    );
    s.wait_clients(1).await;

    let (status, _, body) = h3.get("/healthz", &[]).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["connections"]["h3"], 1, "{health}");
    assert_eq!(health["streams"]["h3"], 2, "{health}");
    let epoch = health["epoch"].as_str().expect("epoch").to_string();

    let live = numbered("over h3 ", 1..=200);
    log.append_lines(&live);
    let mut all = old.clone();
    all.extend(live);
    let want = sse_text(&epoch, 1, &all);
    assert_eq!(sse.read_until_contains(&want, PROMPT).await, want);

    let metrics = s.get_tcp("/metrics").await.text();
    for sample in [
        "logtail_connections{version=\"h3\"} 1",
        "logtail_connections_total{version=\"h3\"} 1",
        "logtail_streams{version=\"h3\"} 1",
        "logtail_streams_total{version=\"h3\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == sample), "{sample}:\n{metrics}");
    }
}

/// `GET /` over HTTP/3 is the viewer page with the same Content-Security-Policy as over
/// TCP; its script is served too.
#[tokio::test]
async fn the_viewer_and_its_assets_over_h3() {
    let log = LogFile::new();
    let s = H3Server::start(&log, &[]).await;
    let mut h3 = s.h3().await;
    let (status, headers, page) = h3.get("/", &[]).await;
    assert_eq!(status, 200);
    let tcp = s.get_tcp("/").await;
    assert_eq!(page, tcp.text(), "the same page over h3 and TCP");
    let csp = tcp.header("content-security-policy").expect("CSP over TCP");
    assert_eq!(headers["content-security-policy"], csp);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let (status, _, script) = h3.get("/viewer.js", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(script, s.get_tcp("/viewer.js").await.text());
}

/// `/ws` over HTTP/3 is refused with 400 and the reason (no RFC 9220 anywhere yet);
/// nothing is admitted.
#[tokio::test]
async fn websocket_over_h3_is_refused_with_the_reason() {
    let log = LogFile::new();
    let s = H3Server::start(&log, &[]).await;
    let mut h3 = s.h3().await;
    let (status, _, body) = h3.get("/ws?backlog=0", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        "WebSocket is not available over HTTP/3: connect to /ws over TCP (HTTP/1.1 or \
         HTTP/2, same port)\n"
    );
    assert_eq!(s.healthz().await["clients"], 0);
}

/// Over HTTP/3 the authority is `:authority`: a rebinding name is refused (403), a foreign
/// Origin is refused, the server's own origin passes; with `--token`, a stream without
/// the token gets 401 and one with it streams.
#[tokio::test]
async fn origin_authority_and_token_rules_hold_over_h3() {
    let log = LogFile::new();
    let s = H3Server::start(&log, &["--token", "s3cret"]).await;
    let port = s.server.addr().port();
    let mut h3 = s.h3().await;
    let bearer = ("authorization", "Bearer s3cret");

    let rebound = h3
        .request_to(
            hyper::Method::GET,
            &format!("evil.example:{port}"),
            "/events",
        )
        .header(bearer.0, bearer.1)
        .body(())
        .unwrap();
    assert_eq!(h3.send(rebound).await.status, 403, "rebinding authority");

    let evil = [bearer, ("origin", "https://evil.example")];
    assert_eq!(
        h3.open("/events", &evil).await.status,
        403,
        "foreign Origin"
    );

    let no_token = h3.open("/events", &[]).await;
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.headers["www-authenticate"], "Bearer");

    let own = format!("https://127.0.0.1:{port}");
    let mut ok = h3
        .open("/events?backlog=0", &[bearer, ("origin", &own)])
        .await;
    assert_eq!(ok.status, 200);
    s.wait_clients(1).await;
    log.append_lines(["with the token"]);
    ok.read_until_contains("data: with the token\n\n", PROMPT)
        .await;
}

/// With `--http3`, TCP responses advertise it: `Alt-Svc: h3=":PORT"; ma=86400`; without
/// it, none.
#[tokio::test]
async fn tcp_responses_carry_alt_svc_only_with_http3() {
    let log = LogFile::new();
    let on = H3Server::start(&log, &[]).await;
    let want = format!("h3=\":{}\"; ma=86400", on.server.addr().port());
    for path in ["/", "/healthz", "/nope"] {
        let resp = on.get_tcp(path).await;
        assert_eq!(resp.header("alt-svc"), Some(want.as_str()), "{path}");
    }
    let log = LogFile::new();
    let off = H3Server::start_with(&log, false, &[]).await;
    assert_eq!(off.get_tcp("/").await.header("alt-svc"), None);
}

/// SIGTERM with an SSE stream open over HTTP/3: the stream ends (its FIN, as over TCP),
/// the QUIC connection is closed, and the process exits 0 within the 2 s budget.
#[tokio::test]
async fn sigterm_ends_an_h3_sse_stream_and_exits_0_within_budget() {
    let log = LogFile::new();
    let mut s = H3Server::start(&log, &[]).await;
    let mut h3 = s.h3().await;
    let mut sse = h3.open("/events?backlog=0", &[]).await;
    assert_eq!(sse.status, 200);
    s.wait_clients(1).await;
    log.append_lines(["before shutdown"]);
    sse.read_until_contains("data: before shutdown\n\n", PROMPT)
        .await;

    let t0 = Instant::now();
    s.server.signal(Sig::Term);
    let (end, text) = sse.read_to_end_or_reset(BUDGET).await;
    assert_eq!(end, Ok(()), "the stream ended by FIN; received:\n{text}");
    assert!(
        h3.ended(BUDGET.saturating_sub(t0.elapsed()))
            .await
            .is_some(),
        "the QUIC connection outlived the shutdown"
    );
    let status = s
        .server
        .wait_exit(BUDGET.saturating_sub(t0.elapsed()))
        .await;
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(0),
        "exit within {BUDGET:?}:\n{}",
        s.server.stderr()
    );
}

/// `/metrics`' value of the sample `name` (over TCP); 0 when absent.
async fn metric(s: &H3Server, name: &str) -> i64 {
    let resp = s.get_tcp("/metrics").await;
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    resp.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// An SSE stream over HTTP/3 that stops reading (its flow-control window shut) is closed
/// as too slow after `--send-timeout` while its sibling on the same QUIC connection gets
/// every line; once its grace (30 s) is over it is reset (`H3_REQUEST_CANCELLED`) and
/// dropped, and the sibling is served throughout and after.
#[tokio::test]
async fn stuck_h3_sse_stream_is_closed_then_reset_while_its_sibling_keeps_receiving() {
    let log = LogFile::new();
    let s = H3Server::start(
        &log,
        &["--send-timeout", "1", "--client-queue", "1073741824"],
    )
    .await;
    let mut h3 = H3::connect_with(s.server.addr(), s.cert.clone(), Some(16 * 1024)).await;
    let mut live = h3.open("/events?backlog=0", &[]).await;
    let stuck = h3.open("/events?backlog=0", &[]).await;
    assert_eq!((live.status, stuck.status), (200, 200));
    s.wait_clients(2).await;
    let line = |i: usize| format!("{i:08} {}", "q".repeat(90));
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while !s
        .server
        .stderr()
        .contains("closing a client that is too slow")
    {
        flood.check(|| format!("the stuck stream was not closed after {written} lines"));
        let chunk: Vec<String> = (written + 1..=written + 320).map(line).collect();
        log.append_lines(&chunk);
        let last = format!("data: {}\n\n", chunk[chunk.len() - 1]);
        live.read_until_contains(&last, PROMPT).await;
        written += chunk.len();
    }
    let reset = || async { metric(&s, "logtail_stream_resets_total").await == 1 };
    let grace = Duration::from_secs(30) + PROMPT;
    wait_until_async(grace, "the stuck stream is reset after its grace", reset).await;
    s.server
        .wait_for_log("too slow (socket stuck)", PROMPT)
        .await;
    assert!(
        s.server.stderr().contains("too slow (socket stuck)"),
        "not closed for being stuck:\n{}",
        s.server.stderr()
    );
    // Only the live stream is left: the stuck one's stream and client are gone.
    assert_eq!(metric(&s, "logtail_streams{version=\"h3\"}").await, 1);
    assert_eq!(s.healthz().await["clients"], 1);
    let after: Vec<String> = (written + 1..=written + 10).map(line).collect();
    log.append_lines(&after);
    let want = format!("data: {}\n\n", after[9]);
    let text = live.read_until_contains(&want, PROMPT).await;
    // Every line, once, in order.
    let got: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let all: Vec<String> = (1..=written + 10).map(line).collect();
    assert_eq!(got, strs(&all));
}

/// An ordinary response over HTTP/3 that the client leaves unread (its window nearly
/// shut) is reset after `--send-timeout`; the connection and its other streams are served
/// all the while.
#[tokio::test]
async fn unread_h3_response_is_reset_after_the_send_timeout() {
    let log = LogFile::new();
    let s = H3Server::start(&log, &["--send-timeout", "1"]).await;
    let mut h3 = H3::connect_with(s.server.addr(), s.cert.clone(), Some(1024)).await;
    let mut script = h3.open("/viewer.js", &[]).await;
    assert_eq!(script.status, 200);
    let resets = || async { metric(&s, "logtail_stream_resets_total").await == 1 };
    wait_until_async(PROMPT, "the unread stream is reset", resets).await;
    let (status, _, body) = h3.get("/healthz", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (end, text) = script.read_to_end_or_reset(PROMPT).await;
    assert!(
        end.is_err(),
        "the unread response ended normally: {} bytes",
        text.len()
    );
    let size = s.get_tcp("/viewer.js").await.body.len();
    assert!(
        text.len() < size,
        "all {size} bytes arrived before the reset"
    );
}
