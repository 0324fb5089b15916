//! HTTP/2 (issue 14; DESIGN.md "Transports"): the same port serves HTTP/2 over TLS by ALPN
//! and in cleartext by prior knowledge. curl streams `/events` over both, ten streams
//! share one connection; a WebSocket over HTTP/2 (RFC 8441) from hyper's client gets its
//! lines, Close 1001 at shutdown and 1013 when its stream stops reading while a sibling
//! stream on the same connection goes on; the Origin, DNS-rebinding and token rules hold
//! with no `Host` header; a peer that sends no preface (or half of one) is dropped at the
//! handshake deadline.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{
    Deadline, FLOOD, H2, KillOnDrop, LogFile, PROMPT, Response, Server, WsClient, http_exchange,
    http_get, numbered, self_signed, send_until_close, strs, trusting, trusting_alpn,
    wait_until_async,
};

/// How long the server may take to drop a connection that sends no preface: the 5 s
/// handshake timeout plus scheduling slack.
const SLOW_CLOSE: Duration = Duration::from_secs(8);

/// A TLS server and two client configurations trusting it: `h2` offers `h2` and
/// `http/1.1` by ALPN, as browsers do; `h1` offers nothing (so HTTP/1.1), for looking at
/// `/healthz` and `/metrics` without touching the HTTP/2 counts.
struct Tls {
    server: Server,
    h2: Arc<rustls::ClientConfig>,
    h1: Arc<rustls::ClientConfig>,
}

/// A server on `log` with a self-signed certificate ([`Tls`]).
async fn tls_server(log: &LogFile, extra: &[&str]) -> Tls {
    let (cert, key, der) = self_signed(log, "");
    let mut args = vec![
        "--tls-cert".to_string(),
        cert.to_str().unwrap().to_string(),
        "--tls-key".to_string(),
        key.to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let server = Server::builder()
        .file(log.path())
        .args(&strs(&args))
        .start()
        .await;
    Tls {
        server,
        h2: trusting_alpn(der.clone(), &[b"h2", b"http/1.1"]),
        h1: trusting(der),
    }
}

/// `GET path` over HTTP/1.1 (through `tls`, offering no ALPN, if given): so the HTTP/2
/// counts are not touched.
async fn get_h1(server: &Server, tls: Option<&Arc<rustls::ClientConfig>>, path: &str) -> Response {
    let Some(config) = tls else {
        return http_get(server.addr(), path, &[]).await;
    };
    let addr = server.addr();
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(ServerName::from(addr.ip()), tcp)
            .await
            .expect("TLS handshake");
        http_exchange(&mut stream, addr, "GET", path, &[], b"").await
    };
    tokio::time::timeout(PROMPT, exchange)
        .await
        .unwrap_or_else(|_| panic!("https GET {path}: no response within {PROMPT:?}"))
}

/// Waits until `/healthz` (over HTTP/1.1, see [`get_h1`]) counts `n` clients.
async fn wait_clients(server: &Server, tls: Option<&Arc<rustls::ClientConfig>>, n: u64) {
    let counts = || async {
        let health = get_h1(server, tls, "/healthz").await.json();
        health["clients"].as_u64() == Some(n)
    };
    wait_until_async(PROMPT, &format!("/healthz counts {n} clients"), counts).await;
}

/// `/metrics`' value of the sample `name` (e.g. `logtail_connections_total{version="h2"}`),
/// over HTTP/1.1 ([`get_h1`]); 0 when absent.
async fn metric(server: &Server, tls: Option<&Arc<rustls::ClientConfig>>, name: &str) -> i64 {
    let resp = get_h1(server, tls, "/metrics").await;
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    resp.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
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

/// The server's epoch, from `/healthz` ([`get_h1`]).
async fn epoch(server: &Server, tls: Option<&Arc<rustls::ClientConfig>>) -> String {
    get_h1(server, tls, "/healthz").await.json()["epoch"]
        .as_str()
        .expect("epoch")
        .to_string()
}

/// Runs curl with `args`, its output going to files; killed (by its PID) when dropped.
fn curl(args: &[String]) -> KillOnDrop {
    let child = Command::new(needs::program!(curl))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn curl");
    KillOnDrop(child)
}

/// Waits until the file at `path` holds exactly `want`.
async fn wait_file(path: &PathBuf, want: &str) {
    let what = format!("{} holds {want:?}", path.display());
    let holds = || std::future::ready(std::fs::read_to_string(path).is_ok_and(|t| t == want));
    wait_until_async(PROMPT, &what, holds).await;
}

/// What curl says the protocol of `GET url` was (`2` for HTTP/2).
fn curl_http_version(flags: &[&str], url: &str) -> String {
    let out = Command::new(needs::program!(curl))
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--max-time",
            "10",
        ])
        .args(flags)
        .arg(url)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl --http2` over TLS (ALPN) and `curl --http2-prior-knowledge` in cleartext: each
/// gets HTTP/2, and `/events` byte for byte as over HTTP/1.1.
#[needs::tools(curl)]
#[tokio::test]
async fn curl_streams_sse_over_h2_with_tls_and_with_prior_knowledge() {
    let tls_log = LogFile::new();
    let tls = tls_server(&tls_log, &[]).await;
    let plain_log = LogFile::new();
    let plain = Server::start(plain_log.path(), &[]).await;
    let runs = [
        (&tls.server, Some(&tls.h1), &tls_log, vec!["-k", "--http2"]),
        (&plain, None, &plain_log, vec!["--http2-prior-knowledge"]),
    ];
    for (server, h1, log, flags) in runs {
        let healthz = server.http_url("/healthz");
        assert_eq!(curl_http_version(&flags, &healthz), "2", "{flags:?}");
        let out = log.sibling("events.out");
        let mut args: Vec<String> = vec!["-s".into(), "-N".into()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend([
            server.http_url("/events?backlog=0"),
            "-o".into(),
            out.display().to_string(),
        ]);
        let _curl = curl(&args);
        wait_clients(server, h1, 1).await;
        let lines = numbered("over h2 ", 1..=50);
        log.append_lines(&lines);
        wait_file(&out, &sse_text(&epoch(server, h1).await, 1, &lines)).await;
    }
}

/// Ten `/events` streams from one `curl -Z` share one HTTP/2 connection (the server counts
/// one h2 connection), and each gets every line exactly.
#[needs::tools(curl)]
#[tokio::test]
async fn ten_parallel_event_streams_share_one_tls_connection() {
    let log = LogFile::new();
    let Tls { server, h1, .. } = tls_server(&log, &[]).await;
    let h1 = Some(&h1);
    let before = metric(&server, h1, "logtail_connections_total{version=\"h2\"}").await;
    let mut args: Vec<String> = ["-sk", "--http2", "-N", "-Z", "--parallel-max", "20"]
        .map(String::from)
        .to_vec();
    let outs: Vec<PathBuf> = (0..10)
        .map(|i| log.sibling(&format!("events{i}.out")))
        .collect();
    for out in &outs {
        args.extend([
            server.http_url("/events?backlog=0"),
            "-o".into(),
            out.display().to_string(),
        ]);
    }
    let _curl = curl(&args);
    wait_clients(&server, h1, 10).await;
    assert_eq!(
        metric(&server, h1, "logtail_connections_total{version=\"h2\"}").await - before,
        1,
        "ten streams over how many HTTP/2 connections?"
    );
    assert_eq!(
        metric(&server, h1, "logtail_streams{version=\"h2\"}").await,
        10
    );
    let lines = numbered("shared ", 1..=20);
    log.append_lines(&lines);
    let want = sse_text(&epoch(&server, h1).await, 1, &lines);
    for out in &outs {
        wait_file(out, &want).await;
    }
}

/// A WebSocket over HTTP/2 (extended CONNECT, no `Host`): two of them and an SSE stream on
/// one connection get every line exactly; `/healthz` counts the h2 connection and its
/// streams; SIGTERM sends each socket Close 1001, GOAWAY ends the connection, exit 0.
#[tokio::test]
async fn websocket_over_h2_gets_lines_then_1001_at_shutdown() {
    let log = LogFile::new();
    let mut server = Server::start(log.path(), &[]).await;
    let mut h2 = H2::connect(server.addr()).await;
    let mut text = h2.ws("/ws?backlog=0", &[]).await.expect("ws over h2");
    let mut json = h2
        .ws("/ws?backlog=0&format=json", &[])
        .await
        .expect("json ws over h2");
    let mut sse = h2.open("/events?backlog=0", &[]).await;
    assert_eq!(sse.status, 200);
    assert!(
        sse.headers.get("connection").is_none(),
        "HTTP/2 has no Connection header"
    );
    server.wait_clients(3, PROMPT).await;
    let health = server.healthz().await;
    assert_eq!(health["connections"]["h2"], 1, "{health}");
    assert_eq!(health["streams"]["h2"], 3, "{health}");

    let lines = numbered("multiplexed ", 1..=200);
    log.append_lines(&lines);
    text.expect_lines(&strs(&lines)).await;
    let epoch = epoch(&server, None).await;
    let hello = json.next_json().await;
    assert_eq!(hello["event"], "hello", "{hello}");
    assert_eq!(hello["epoch"], epoch.as_str());
    for (i, line) in lines.iter().enumerate() {
        let frame = json.next_json().await;
        assert_eq!(frame["line"], line.as_str(), "frame #{i}: {frame}");
        assert_eq!(frame["seq"], i as u64 + 1);
    }
    let want = sse_text(&epoch, 1, &lines);
    assert_eq!(sse.read_until_contains(&want, PROMPT).await, want);

    server.signal(crate::harness::Sig::Term);
    for ws in [&mut text, &mut json] {
        let (_, code, reason) = ws.read_until_close(Duration::from_secs(2)).await;
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    }
    assert!(
        h2.ended(Duration::from_secs(2)).await.is_some(),
        "the HTTP/2 connection outlived the shutdown"
    );
    let status = server.wait_exit(Duration::from_secs(2)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        server.stderr()
    );
}

/// A WebSocket stream over HTTP/2 that stops reading (its window shut, the socket still
/// read) is closed with 1013 after `--send-timeout`, like a stuck HTTP/1.1 client, while
/// its sibling on the same connection and a client on another connection receive every
/// line; when it reads again it gets what was in flight, in order, then the Close.
#[tokio::test]
async fn stuck_h2_websocket_stream_gets_1013_while_its_sibling_keeps_receiving() {
    let log = LogFile::new();
    let server = Server::start(
        log.path(),
        &["--send-timeout", "1", "--client-queue", "1073741824"],
    )
    .await;
    // Each stream may receive 16 KiB unread; the sibling reads, the stuck one never does.
    let mut h2 = H2::connect_with(server.addr(), None, Some(16 * 1024)).await;
    let mut sibling = h2.ws("/ws?backlog=0", &[]).await.expect("ws over h2");
    let mut stuck = h2.ws("/ws?backlog=0", &[]).await.expect("ws over h2");
    let mut other = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    server.wait_clients(3, PROMPT).await;

    let line = |i: usize| format!("{i:08} {}", "x".repeat(90));
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while !server
        .stderr()
        .contains("closing a client that is too slow")
    {
        flood.check(|| format!("the stuck stream was not closed after {written} lines"));
        let chunk: Vec<String> = (written + 1..=written + 320).map(line).collect();
        log.append_lines(&chunk);
        sibling.expect_lines(&strs(&chunk)).await;
        other.expect_lines(&strs(&chunk)).await;
        written += chunk.len();
    }
    assert!(
        server.stderr().contains("too slow (socket stuck)"),
        "not closed for being stuck:\n{}",
        server.stderr()
    );
    // The others go on.
    let after: Vec<String> = (written + 1..=written + 50).map(line).collect();
    log.append_lines(&after);
    sibling.expect_lines(&strs(&after)).await;
    other.expect_lines(&strs(&after)).await;

    // It reads again, within the grace.
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

/// The same for an SSE stream over HTTP/2: stuck, it is closed as too slow while its
/// sibling stream goes on; reading again, it gets what was in flight, in order, and then
/// `event: closed` and the end of the stream.
#[tokio::test]
async fn stuck_h2_event_stream_gets_its_last_event_while_its_sibling_keeps_receiving() {
    let log = LogFile::new();
    let server = Server::start(
        log.path(),
        &["--send-timeout", "1", "--client-queue", "1073741824"],
    )
    .await;
    let mut h2 = H2::connect_with(server.addr(), None, Some(16 * 1024)).await;
    let mut sibling = h2.ws("/ws?backlog=0", &[]).await.expect("ws over h2");
    let mut stuck = h2.open("/events?backlog=0", &[]).await;
    server.wait_clients(2, PROMPT).await;

    let line = |i: usize| format!("{i:08} {}", "y".repeat(90));
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while !server
        .stderr()
        .contains("closing a client that is too slow")
    {
        flood.check(|| format!("the stuck stream was not closed after {written} lines"));
        let chunk: Vec<String> = (written + 1..=written + 320).map(line).collect();
        log.append_lines(&chunk);
        sibling.expect_lines(&strs(&chunk)).await;
        written += chunk.len();
    }
    let after: Vec<String> = (written + 1..=written + 50).map(line).collect();
    log.append_lines(&after);
    sibling.expect_lines(&strs(&after)).await;

    let last = "event: closed\ndata: client too slow\n\n";
    let text = stuck.read_until_contains(last, PROMPT).await;
    let body = text.strip_prefix("retry: 1000\n\n").expect("retry first");
    let (frames, tail) = body.split_at(body.len() - last.len());
    assert_eq!(tail, last);
    let got: Vec<&str> = frames
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| f.split_once("\ndata: ").expect("data field").1)
        .collect();
    assert!(
        !got.is_empty() && got.len() <= written,
        "{} in flight",
        got.len()
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != line(i + 1)) {
        panic!("event #{i}: expected {:?}, got {:?}", line(i + 1), got[i]);
    }
    let rest = stuck.read_to_end(PROMPT).await;
    assert!(rest.ends_with(last), "more after the last event: {rest:?}");
}

/// Stuck streams that never read again are reset once their grace (30 s) is over, and
/// what the server held for them goes: a WebSocket and an SSE stream over one connection,
/// beside a live one, which is served throughout and after.
#[tokio::test]
async fn stuck_h2_streams_are_reset_after_their_grace() {
    let log = LogFile::new();
    let server = Server::start(
        log.path(),
        &["--send-timeout", "1", "--client-queue", "1073741824"],
    )
    .await;
    let mut h2 = H2::connect_with(server.addr(), None, Some(16 * 1024)).await;
    let mut live = h2.ws("/ws?backlog=0", &[]).await.expect("ws over h2");
    let _stuck_ws = h2.ws("/ws?backlog=0", &[]).await.expect("ws over h2");
    let _stuck_sse = h2.open("/events?backlog=0", &[]).await;
    server.wait_clients(3, PROMPT).await;
    let line = |i: usize| format!("{i:08} {}", "z".repeat(90));
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while server
        .stderr()
        .matches("closing a client that is too slow")
        .count()
        < 2
    {
        flood.check(|| format!("not both closed after {written} lines"));
        let chunk: Vec<String> = (written + 1..=written + 320).map(line).collect();
        log.append_lines(&chunk);
        live.expect_lines(&strs(&chunk)).await;
        written += chunk.len();
    }
    let reset = || async { metric(&server, None, "logtail_stream_resets_total").await == 2 };
    let grace = Duration::from_secs(30) + PROMPT;
    wait_until_async(grace, "both stuck streams are reset after the grace", reset).await;
    assert_eq!(
        metric(&server, None, "logtail_streams{version=\"h2\"}").await,
        1,
        "only the live stream is left"
    );
    let after: Vec<String> = (written + 1..=written + 10).map(line).collect();
    log.append_lines(&after);
    live.expect_lines(&strs(&after)).await;
}

/// An ordinary response whose stream the client leaves unread (its window nearly shut) is
/// reset after `--send-timeout`, as an HTTP/1.1 connection that accepts nothing is
/// closed, and what the server held for it goes; the connection and its other streams
/// are served all the while.
#[tokio::test]
async fn unread_h2_response_is_reset_after_the_send_timeout() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--send-timeout", "1"]).await;
    let mut h2 = H2::connect_with(server.addr(), None, Some(1024)).await;
    let script = h2.open("/viewer.js", &[]).await;
    assert_eq!(script.status, 200);
    let size: usize = script.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let resets = || async { metric(&server, None, "logtail_stream_resets_total").await == 1 };
    wait_until_async(PROMPT, "the unread stream is reset", resets).await;
    let (status, body) = h2.get("/healthz", &[]).await;
    assert_eq!(status, 200, "{body}");
    // What arrived before the reset is within the window; the stream ends early.
    let mut script = script;
    let got = loop {
        if !script.read_some_within(PROMPT).await {
            break script.text_so_far();
        }
    };
    assert!(script.ended(), "the stream did not end");
    assert!(got.len() < size, "{} of {size} bytes: not reset", got.len());
}

/// Over HTTP/2 (no `Host`: the authority is `:authority`) the checks decide as over
/// HTTP/1.1: a rebinding name is refused, a cross-origin WebSocket refused, the
/// server's own origin accepted; with a token, nothing streams without it, and each way
/// of giving it works (the WebSocket subprotocol echoed).
#[tokio::test]
async fn origin_rebinding_and_token_rules_hold_over_h2() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let addr = server.addr();
    let mut h2 = H2::connect(addr).await;
    let evil_name = format!("evil.example:{}", addr.port());
    let evil = h2
        .send(
            h2.request_to(&evil_name, hyper::Method::GET, "/events")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(evil.status(), 403, "a rebinding :authority on /events");
    let refused = h2
        .ws_to(&evil_name, "/ws", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.0, 403, "a rebinding :authority on /ws: {refused:?}");
    let cross = h2
        .ws("/ws", &[("origin", "https://evil.example")])
        .await
        .err()
        .expect("a cross-origin WebSocket over h2 is refused");
    assert_eq!(cross.0, 403, "{cross:?}");
    assert!(cross.1.contains("https://evil.example"), "{cross:?}");
    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1).max(1));
    let cross_port = h2.ws("/ws", &[("origin", &other_port)]).await.err();
    assert_eq!(
        cross_port.map(|r| r.0),
        Some(403),
        "another port is another origin"
    );
    // The viewer's own WebSocket: the page's origin is the authority it was loaded from.
    let own = format!("http://{addr}");
    let mut same = h2
        .ws("/ws?backlog=0", &[("origin", &own)])
        .await
        .unwrap_or_else(|r| panic!("same-origin WebSocket over h2 refused: {r:?}"));
    let same_sse = h2.open("/events?backlog=0", &[("origin", &own)]).await;
    assert_eq!(same_sse.status, 200, "same-origin /events over h2");
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["same origin"]);
    same.expect_lines(&["same origin"]).await;

    // A token.
    let token_log = LogFile::new();
    let token = "h2-s3cret";
    let guarded = Server::start(token_log.path(), &["--token", token]).await;
    let mut h2 = H2::connect(guarded.addr()).await;
    for path in ["/events", "/files", "/metrics"] {
        let (status, body) = h2.get(path, &[]).await;
        assert_eq!(status, 401, "{path} without the token: {body}");
    }
    let refused = h2.ws("/ws", &[]).await.err().map(|r| r.0);
    assert_eq!(refused, Some(401), "/ws over h2 without the token");
    let bearer = format!("Bearer {token}");
    let (status, _) = h2.get("/files", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "/files with Authorization");
    let (status, _) = h2.get(&format!("/metrics?token={token}"), &[]).await;
    assert_eq!(status, 200, "/metrics with ?token=");
    let protocol = format!("bearer.{token}");
    let mut ws = h2
        .ws("/ws?backlog=0", &[("sec-websocket-protocol", &protocol)])
        .await
        .unwrap_or_else(|r| panic!("/ws over h2 with the subprotocol token: {r:?}"));
    assert_eq!(ws.protocol.as_deref(), Some(protocol.as_str()));
    let (status, _) = h2.get("/healthz", &[]).await;
    assert_eq!(status, 200, "/healthz needs no token");
    guarded.wait_clients(1, PROMPT).await;
    token_log.append_lines(["with the token"]);
    ws.expect_lines(&["with the token"]).await;
    assert!(
        !guarded.stderr().contains(token),
        "the token was logged:\n{}",
        guarded.stderr()
    );
}

/// The request header limit holds over HTTP/2 as over HTTP/1.1: a header list over
/// 16 KiB gets 431 (and only its stream: the connection serves on), one well under it is
/// served.
#[tokio::test]
async fn oversized_request_headers_get_431_over_h2() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut h2 = H2::connect(server.addr()).await;
    let big = "x".repeat(20 * 1024);
    let (status, _) = h2.get("/healthz", &[("x-big", &big)]).await;
    assert_eq!(status, 431, "a 20 KiB header over h2");
    let fine = "x".repeat(8 * 1024);
    let (status, body) = h2.get("/healthz", &[("x-fine", &fine)]).await;
    assert_eq!(status, 200, "an 8 KiB header over h2: {body}");
}

/// The HTTP/2 preface has a deadline: a cleartext connection that sends nothing, or half
/// the preface, and a TLS connection that negotiates `h2` and sends nothing, are closed by
/// the server within the handshake timeout, with no answer.
#[tokio::test]
async fn connections_without_a_whole_preface_are_dropped_at_the_handshake_deadline() {
    let log = LogFile::new();
    let plain = Server::start(log.path(), &[]).await;
    let tls_log = LogFile::new();
    let Tls {
        server: tls,
        h2: config,
        ..
    } = tls_server(&tls_log, &[]).await;
    let addr = plain.addr();
    let silent = tokio::spawn(send_until_close(addr, b"", SLOW_CLOSE));
    let half = tokio::spawn(send_until_close(
        addr,
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..12],
        SLOW_CLOSE,
    ));
    let tls_addr = tls.addr();
    let tls_silent = tokio::spawn(async move {
        let tcp = TcpStream::connect(tls_addr).await.expect("connect");
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::from(tls_addr.ip()), tcp)
            .await
            .expect("TLS handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        stream.flush().await.expect("flush");
        let mut buf = Vec::new();
        tokio::time::timeout(
            SLOW_CLOSE,
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut buf),
        )
        .await
        .ok()
        .map(|_| buf)
    });
    // Meanwhile both servers serve.
    let mut h2 = H2::connect(addr).await;
    assert_eq!(h2.get("/healthz", &[]).await.0, 200);
    for (what, task) in [
        ("silent", silent),
        ("half a preface", half),
        ("TLS h2, silent", tls_silent),
    ] {
        let got = task
            .await
            .expect("client task")
            .unwrap_or_else(|| panic!("{what}: still open after {SLOW_CLOSE:?}"));
        assert!(
            !got.starts_with(b"HTTP/"),
            "{what}: got an HTTP/1.1 answer {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}
