//! WebTransport at `/wt` (issue 16; DESIGN.md "Transports"): `--http3` without
//! `--tls-cert` serves QUIC with a self-signed certificate whose SHA-256 `GET /wt-cert-hash`
//! tells (and the handshake presents); a Rust WebTransport client (wtransport, trusting only
//! that hash, as a browser's `serverCertificateHashes`) reads the one server stream of a
//! session: the `/ws?format=json` frames, one per line, backlog then live lines exactly and
//! in order; `since=`/`epoch=` resumes after a closed session with nothing lost or repeated;
//! a cross-origin session and one without the `--token` are refused (and never counted as
//! sessions); `/healthz` and `/metrics` count sessions and bytes; a session is closed with
//! code 1001 at shutdown, the process exiting 0 within the 2 s budget.

use std::time::{Duration, Instant};

use wtransport::endpoint::ConnectOptions;
use wtransport::error::{ConnectingError, ConnectionError};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream};

use crate::harness::{LogFile, PROMPT, Server, Sig, http_get, numbered, strs, wait_until_async};

/// The contract's shutdown budget (tests/shutdown.rs).
const BUDGET: Duration = Duration::from_secs(2);

/// A server with `--http3` and no TLS.
async fn start(log: &LogFile, extra: &[&str]) -> Server {
    let mut args = vec!["--http3".to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    Server::builder()
        .file(log.path())
        .args(&strs(&args))
        .start()
        .await
}

/// `GET /wt-cert-hash` over plain HTTP.
async fn cert_hash(server: &Server) -> String {
    let response = http_get(server.addr(), "/wt-cert-hash", &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

fn digest(hex: &str) -> Sha256Digest {
    let mut bytes = [0u8; 32];
    assert_eq!(hex.len(), 64, "{hex:?}");
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    Sha256Digest::new(bytes)
}

/// Opens a session to `/wt?query`, trusting only the hash `/wt-cert-hash` gives, with
/// `origin` if any.
async fn try_session(
    server: &Server,
    query: &str,
    origin: Option<&str>,
) -> Result<Connection, ConnectingError> {
    let hash = cert_hash(server).await;
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([digest(&hash)])
        .build();
    let endpoint = Endpoint::client(config).expect("client endpoint");
    let url = format!("https://{}/wt?{query}", server.addr());
    let mut options = ConnectOptions::builder(url);
    if let Some(origin) = origin {
        options = options.add_header("origin", origin);
    }
    tokio::time::timeout(PROMPT, endpoint.connect(options.build()))
        .await
        .expect("a WebTransport answer in time")
}

async fn session(server: &Server, query: &str) -> Connection {
    let origin = format!("http://{}", server.addr());
    try_session(server, query, Some(&origin))
        .await
        .expect("a WebTransport session")
}

/// The session's one server stream, read line by line.
struct Lines {
    stream: RecvStream,
    buf: Vec<u8>,
}

impl Lines {
    async fn accept(conn: &Connection) -> Lines {
        let stream = tokio::time::timeout(PROMPT, conn.accept_uni())
            .await
            .expect("the server opens a stream in time")
            .expect("a server stream");
        Lines {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next `n` lines (without their `\n`), within [`PROMPT`].
    async fn next(&mut self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + PROMPT;
        let mut lines = Vec::new();
        while lines.len() < n {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                lines.push(String::from_utf8(line[..at].to_vec()).expect("UTF-8"));
                continue;
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("{n} lines in time; got {lines:?}"));
            match read.expect("the stream reads") {
                Some(k) => self.buf.extend_from_slice(&chunk[..k]),
                None => panic!("the stream ended after {lines:?}"),
            }
        }
        lines
    }

    /// Reads to the stream's end; what came after the lines already taken.
    async fn rest(mut self) -> Result<Vec<u8>, String> {
        let deadline = tokio::time::Instant::now() + PROMPT;
        loop {
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| "the stream did not end in time".to_string())?;
            match read {
                Ok(Some(k)) => self.buf.extend_from_slice(&chunk[..k]),
                Ok(None) => return Ok(self.buf),
                Err(err) => return Err(err.to_string()),
            }
        }
    }
}

/// The `hello` frame.
fn hello(epoch: &str, seq: u64) -> String {
    format!(r#"{{"event":"hello","epoch":"{epoch}","seq":{seq}}}"#)
}

/// The JSON frames of `lines`, numbered from `first`, at byte `offset` of `file` on.
fn frames(file: &str, first: u64, mut offset: u64, lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let frame = format!(
                r#"{{"seq":{},"offset":{offset},"file":"{file}","line":"{line}"}}"#,
                first + i as u64
            );
            offset += line.len() as u64 + 1;
            frame
        })
        .collect()
}

fn file_name(log: &LogFile) -> String {
    log.path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_string()
}

async fn wait_seq(server: &Server, seq: u64) {
    let read = || async { server.healthz().await["seq"] == seq };
    wait_until_async(PROMPT, &format!("seq {seq} is read"), read).await;
}

async fn wait_sessions(server: &Server, n: i64) {
    let counted = || async {
        let health = server.healthz().await;
        health["webtransport"]["sessions"] == n && health["clients"] == n
    };
    wait_until_async(PROMPT, &format!("/healthz counts {n} sessions"), counted).await;
}

/// The backlog, then every line appended after, exactly and in order, one JSON frame per
/// line of the one server stream; `/healthz` and `/metrics` count the session and the bytes.
#[tokio::test]
async fn backlog_then_live_lines_exactly_in_order() {
    let log = LogFile::new();
    let old = numbered("before ", 1..=5);
    log.append_lines(&old);
    let s = start(&log, &[]).await;
    wait_seq(&s, 5).await;
    let epoch = s.healthz().await["epoch"]
        .as_str()
        .expect("epoch")
        .to_string();
    let conn = session(&s, "backlog=3").await;
    let mut lines = Lines::accept(&conn).await;
    let name = file_name(&log);
    let mut want = vec![hello(&epoch, 5)];
    let offset_3 = old[..2].iter().map(|l| l.len() as u64 + 1).sum();
    want.extend(frames(&name, 3, offset_3, &old[2..]));
    assert_eq!(lines.next(4).await, want);
    wait_sessions(&s, 1).await;

    let live = numbered("live ", 1..=200);
    let offset_6: u64 = old.iter().map(|l| l.len() as u64 + 1).sum();
    log.append_lines(&live);
    assert_eq!(lines.next(200).await, frames(&name, 6, offset_6, &live));

    let sent: usize = want
        .iter()
        .chain(&frames(&name, 6, offset_6, &live))
        .map(|f| f.len() + 1)
        .sum();
    let counted =
        || async { s.healthz().await["webtransport"]["bytes_sent"].as_u64() == Some(sent as u64) };
    wait_until_async(PROMPT, &format!("/healthz counts {sent} bytes"), counted).await;
    let metrics = http_get(s.addr(), "/metrics", &[]).await.text();
    assert!(
        metrics.contains(r#"logtail_clients{transport="wt"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"logtail_stream_sent_bytes_total{{transport="wt"}} {sent}"#
        )),
        "{metrics}"
    );

    // The client closes: the session ends and is counted by reason.
    conn.close(0u32.into(), b"bye");
    wait_sessions(&s, 0).await;
    let metrics = http_get(s.addr(), "/metrics", &[]).await.text();
    assert!(
        metrics
            .contains(r#"logtail_client_ends_total{transport="wt",reason="closed by client"} 1"#),
        "{metrics}"
    );
}

/// Read some, close, append more, reopen with `since=LAST&epoch=E`: exactly the lines after
/// LAST, none lost, none repeated; a wrong epoch starts over with a gap frame.
#[tokio::test]
async fn since_resumes_after_a_closed_session_without_loss_or_repeat() {
    let log = LogFile::new();
    let s = start(&log, &[]).await;
    let name = file_name(&log);
    let first = numbered("one ", 1..=10);
    log.append_lines(&first);
    wait_seq(&s, 10).await;
    let epoch = s.healthz().await["epoch"]
        .as_str()
        .expect("epoch")
        .to_string();
    let conn = session(&s, "backlog=10").await;
    let mut lines = Lines::accept(&conn).await;
    let got = lines.next(11).await;
    assert_eq!(got[0], hello(&epoch, 10));
    assert_eq!(got[1..], frames(&name, 1, 0, &first)[..]);
    let last: serde_json::Value = serde_json::from_str(&got[10]).expect("JSON");
    assert_eq!(last["seq"], 10);
    conn.close(0u32.into(), b"");
    wait_sessions(&s, 0).await;

    // Appended while no session was open.
    let second = numbered("two ", 1..=7);
    log.append_lines(&second);
    wait_seq(&s, 17).await;
    let offset: u64 = first.iter().map(|l| l.len() as u64 + 1).sum();
    let conn = session(&s, &format!("since=10&epoch={epoch}")).await;
    let mut lines = Lines::accept(&conn).await;
    let mut want = vec![hello(&epoch, 17)];
    want.extend(frames(&name, 11, offset, &second));
    assert_eq!(lines.next(8).await, want);
    let third = numbered("three ", 1..=3);
    log.append_lines(&third);
    let offset_18 = offset + second.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
    assert_eq!(lines.next(3).await, frames(&name, 18, offset_18, &third));
}

/// A page from another origin is refused before any session (the `/ws` rule); the server's
/// own origin, an `--allow-origin` one and no Origin at all are accepted.
#[tokio::test]
async fn cross_origin_sessions_are_refused() {
    let log = LogFile::new();
    let s = start(&log, &["--allow-origin", "https://ok.example"]).await;
    let refused = try_session(&s, "backlog=0", Some("https://evil.example")).await;
    assert!(
        matches!(refused, Err(ConnectingError::SessionRejected)),
        "{:?}",
        refused.map(|_| ())
    );
    let refused = try_session(&s, "backlog=0", Some("null")).await;
    assert!(matches!(refused, Err(ConnectingError::SessionRejected)));
    assert_eq!(s.healthz().await["webtransport"]["sessions"], 0);
    for origin in [Some("https://ok.example"), None] {
        let conn = try_session(&s, "backlog=0", origin)
            .await
            .expect("accepted");
        let mut lines = Lines::accept(&conn).await;
        assert!(lines.next(1).await[0].starts_with(r#"{"event":"hello""#));
    }
}

/// With `--token`, a session needs `?token=` (a browser's WebTransport sends no headers).
#[tokio::test]
async fn a_token_is_required_when_set() {
    let log = LogFile::new();
    let s = start(&log, &["--token", "s3cret"]).await;
    for query in ["backlog=0", "backlog=0&token=wrong"] {
        let refused = try_session(&s, query, None).await;
        assert!(
            matches!(refused, Err(ConnectingError::SessionRejected)),
            "{query}: {:?}",
            refused.map(|_| ())
        );
    }
    let conn = try_session(&s, "backlog=0&token=s3cret", None)
        .await
        .expect("accepted with the token");
    let mut lines = Lines::accept(&conn).await;
    assert!(lines.next(1).await[0].starts_with(r#"{"event":"hello""#));
}

/// `/wt-cert-hash` is the SHA-256 of the certificate the QUIC handshake presents: 64
/// lowercase hex digits; `/wt` over TCP is a clear 400; with `--tls-cert` there is no
/// self-signed certificate (404). `LOGTAIL_HTTP3` does the same as `--http3`.
#[tokio::test]
async fn the_cert_hash_is_the_presented_certificate() {
    let log = LogFile::new();
    let s = start(&log, &[]).await;
    let hash = cert_hash(&s).await;
    assert_eq!(hash.len(), 64);
    assert!(
        hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{hash}"
    );
    let conn = session(&s, "backlog=0").await;
    let chain = conn.peer_identity().expect("the server's certificate");
    let presented = chain.as_slice().first().expect("one certificate").hash();
    assert_eq!(presented.as_ref(), digest(&hash).as_ref());
    let tcp = http_get(s.addr(), "/wt", &[]).await;
    assert_eq!(tcp.status, 400);
    assert!(tcp.text().contains("HTTP/3"), "{}", tcp.text());

    let env = Server::builder()
        .file(log.path())
        .env("LOGTAIL_HTTP3", "true")
        .start()
        .await;
    assert_eq!(cert_hash(&env).await.len(), 64);

    let (cert, key, der) = crate::harness::self_signed(&log, "");
    let tls = Server::builder()
        .file(log.path())
        .args(&[
            "--http3",
            "--tls-cert",
            cert.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ])
        .start()
        .await;
    let addr = tls.addr();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut stream = tokio_rustls::TlsConnector::from(crate::harness::trusting(der))
        .connect(rustls::pki_types::ServerName::from(addr.ip()), tcp)
        .await
        .expect("TLS handshake");
    let response =
        crate::harness::http_exchange(&mut stream, addr, "GET", "/wt-cert-hash", &[], b"").await;
    assert_eq!(response.status, 404, "{}", response.text());
}

/// SIGTERM with a session open: the stream ends, the session is closed with 1001 `server
/// shutting down`, and the process exits 0 within the 2 s budget.
#[tokio::test]
async fn shutdown_closes_sessions_with_1001_within_budget() {
    let log = LogFile::new();
    let mut s = start(&log, &[]).await;
    let conn = session(&s, "backlog=0").await;
    let mut lines = Lines::accept(&conn).await;
    lines.next(1).await;
    wait_sessions(&s, 1).await;
    log.append_lines(["last"]);
    let got = lines.next(1).await;
    assert!(got[0].ends_with(r#""line":"last"}"#), "{got:?}");
    let signalled = Instant::now();
    s.signal(Sig::Term);
    assert_eq!(
        lines.rest().await,
        Ok(Vec::new()),
        "the stream ends cleanly"
    );
    tokio::time::timeout(PROMPT, conn.closed())
        .await
        .expect("closed");
    // wtransport ends the QUIC connection itself on the session's close capsule; the
    // session's own close (code, reason) is what its streams then fail with.
    let closed = tokio::time::timeout(PROMPT, conn.accept_uni())
        .await
        .expect("closed");
    match closed.map(|_| ()) {
        Err(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code(), 1001u32.into(), "{close}");
            assert_eq!(close.reason(), b"server shutting down");
        }
        other => panic!("closed otherwise: {other:?}"),
    }
    let status = s.wait_exit(BUDGET + Duration::from_secs(1)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(signalled.elapsed() < BUDGET, "{:?}", signalled.elapsed());
}

/// A session that reads nothing is closed as too slow (`--client-queue` behind for longer
/// than the grace, or nothing taken for `--send-timeout`); when it reads again within the
/// close's grace it gets what was in flight, in order with nothing skipped, the stream's end
/// and the close 1013 `client too slow`; resuming with `since=LAST&epoch=E` then delivers
/// exactly the rest.
#[tokio::test]
async fn a_slow_session_is_closed_1013_and_resumes_with_since() {
    let log = LogFile::new();
    let s = start(&log, &["--client-queue", "65536", "--send-timeout", "1"]).await;
    let epoch = s.healthz().await["epoch"]
        .as_str()
        .expect("epoch")
        .to_string();
    let conn = session(&s, "backlog=0").await;
    let mut lines = Lines::accept(&conn).await;
    assert_eq!(lines.next(1).await, [hello(&epoch, 0)]);
    // Far more than the client's windows and the server's send window hold.
    let pad = "x".repeat(1000);
    let total = 8000u64;
    let all: Vec<String> = (1..=total).map(|i| format!("{i:06} {pad}")).collect();
    log.append_lines(&all);
    s.wait_for_log("closing a client that is too slow", PROMPT)
        .await;
    // Reading again, within the grace: lines 1..=k in order, then the end.
    let mut text = lines.rest().await.expect("the stream ends cleanly");
    assert_eq!(text.pop(), Some(b'\n'), "whole lines only");
    let got: Vec<serde_json::Value> = text
        .split(|&b| b == b'\n')
        .map(|line| serde_json::from_slice(line).expect("a JSON frame"))
        .collect();
    assert!(
        !got.is_empty() && (got.len() as u64) < total,
        "{}",
        got.len()
    );
    for (i, frame) in got.iter().enumerate() {
        assert_eq!(frame["seq"], i as u64 + 1);
        assert_eq!(frame["line"], all[i].as_str());
    }
    let closed = tokio::time::timeout(PROMPT, conn.accept_uni())
        .await
        .expect("closed");
    match closed.map(|_| ()) {
        Err(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code(), 1013u32.into(), "{close}");
            assert_eq!(close.reason(), b"client too slow");
        }
        other => panic!("closed otherwise: {other:?}"),
    }
    let last = got.len() as u64;
    let conn = session(&s, &format!("since={last}&epoch={epoch}")).await;
    let mut lines = Lines::accept(&conn).await;
    assert_eq!(lines.next(1).await, [hello(&epoch, total)]);
    for i in last + 1..=total {
        let line = lines.next(1).await.remove(0);
        let frame: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(frame["seq"], i);
        assert_eq!(frame["line"], all[i as usize - 1].as_str());
    }
    let metrics = http_get(s.addr(), "/metrics", &[]).await.text();
    assert!(
        metrics.contains(r#"logtail_client_ends_total{transport="wt",reason="too slow"#),
        "{metrics}"
    );
}

/// A session takes a `--max-clients` slot: with one taken, the next session is refused
/// (503), and admitted again once the first one ended.
#[tokio::test]
async fn sessions_take_max_clients_slots() {
    let log = LogFile::new();
    let s = start(&log, &["--max-clients", "1"]).await;
    let first = session(&s, "backlog=0").await;
    Lines::accept(&first).await.next(1).await;
    wait_sessions(&s, 1).await;
    let refused = try_session(&s, "backlog=0", None).await;
    assert!(matches!(refused, Err(ConnectingError::SessionRejected)));
    first.close(0u32.into(), b"");
    wait_sessions(&s, 0).await;
    let again = session(&s, "backlog=0").await;
    assert!(Lines::accept(&again).await.next(1).await[0].starts_with(r#"{"event":"hello""#));
}

/// A session that reads nothing at all: after `--send-timeout` it is too slow, its stream
/// gets the close's grace (30 s) to be read, then is reset and the session closed 1013; its
/// slot is freed.
#[tokio::test]
async fn a_stuck_session_is_reset_and_closed_1013_after_the_grace() {
    let log = LogFile::new();
    let s = start(&log, &["--send-timeout", "1"]).await;
    let conn = session(&s, "backlog=0").await;
    let mut lines = Lines::accept(&conn).await;
    lines.next(1).await;
    let pad = "y".repeat(1000);
    log.append_lines((1..=8000).map(|i| format!("{i:06} {pad}")));
    s.wait_for_log("closing a client that is too slow", PROMPT)
        .await;
    let too_slow = Instant::now();
    let grace = Duration::from_secs(30);
    let closed = tokio::time::timeout(grace + PROMPT, conn.closed()).await;
    assert!(closed.is_ok(), "closed within the grace");
    assert!(
        too_slow.elapsed() >= grace - Duration::from_secs(1),
        "{:?}",
        too_slow.elapsed()
    );
    // The reset's code is not seen here: wtransport ends the QUIC connection on the close
    // capsule that follows it, so the unread stream fails as "not connected" (the code
    // mapping is a unit test of src/server/webtransport.rs).
    let read = lines.rest().await;
    assert!(
        read.is_err(),
        "the unread stream does not end cleanly: {read:?}"
    );
    match tokio::time::timeout(PROMPT, conn.accept_uni())
        .await
        .expect("closed")
        .map(|_| ())
    {
        Err(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code(), 1013u32.into(), "{close}");
            assert_eq!(close.reason(), b"client too slow");
        }
        other => panic!("closed otherwise: {other:?}"),
    }
    wait_sessions(&s, 0).await;
}
