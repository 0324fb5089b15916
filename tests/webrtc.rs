//! `POST /rtc` (issue 16) with a Rust WebRTC peer (str0m, tests/harness/rtc.rs): the
//! `/ws?format=json` frames on the `logs` data channel, exactly and in order (backlog,
//! live, a second session, `since=` resume); sessions freed when the peer closes, vanishes
//! or never connects; refusals with a clear reason (a forged, oversized or mistyped offer,
//! cross-origin, no token); shutdown within the budget.

use std::time::Duration;

use crate::harness::{
    LogFile, PROMPT, Server, Sig, http_get, http_request, numbered, strs, wait_until_async,
};
use crate::harness::{RtcClient, RtcEvent};

/// `/healthz`'s `rtc.sessions`: the sessions the server's driver holds.
async fn rtc_sessions(server: &Server) -> i64 {
    let health = server.healthz().await;
    health["rtc"]["sessions"]
        .as_i64()
        .unwrap_or_else(|| panic!("no rtc.sessions in /healthz: {health}"))
}

async fn wait_rtc_sessions(server: &Server, n: i64, timeout: Duration) {
    wait_until_async(
        timeout,
        &format!("/healthz counts {n} rtc sessions"),
        || async { rtc_sessions(server).await == n },
    )
    .await;
}

async fn connect(server: &Server, path: &str) -> RtcClient {
    RtcClient::connect(server.addr(), path, &[])
        .await
        .unwrap_or_else(|r| panic!("POST {path}: {} {}", r.status, r.text()))
}

/// The backlog, then live lines, exactly and in order, each a JSON frame of its own after
/// the `hello`; a second session gets the same stream; the answer is 201 application/sdp
/// with a Location, and its candidate is the server's UDP port on 127.0.0.1.
#[tokio::test]
async fn backlog_then_live_lines_exactly_and_a_second_session_gets_the_same() {
    let log = LogFile::with_lines(numbered("old ", 1..=5));
    let server = Server::start(log.path(), &[]).await;
    let mut first = connect(&server, "/rtc?backlog=3").await;
    assert_eq!(first.answer.header("content-type"), Some("application/sdp"));
    let location = first
        .answer
        .header("location")
        .expect("a Location")
        .to_string();
    assert!(location.starts_with("/rtc/"), "{location}");
    let port = server.healthz().await["rtc"]["port"]
        .as_u64()
        .expect("rtc.port");
    assert_eq!(
        port,
        u64::from(server.addr().port()),
        "--rtc-port defaults to the server's"
    );
    let answer = first.answer.text();
    assert!(
        answer.contains(&format!("127.0.0.1 {port} typ host")),
        "the answer's host candidate: {answer}"
    );

    let (epoch, seq) = first.hello().await;
    assert_eq!(seq, 5);
    assert_eq!(epoch, server.healthz().await["epoch"].as_str().unwrap());
    first.expect_lines(&["old 3", "old 4", "old 5"]).await;
    // The frames are exactly /ws?format=json's.
    log.append_lines(["live 1"]);
    let frame = first.next_json().await;
    assert_eq!(
        frame,
        serde_json::json!({"seq": 6, "offset": 30, "file": log.path().file_name().unwrap().to_str().unwrap(), "line": "live 1"})
    );

    let mut second = connect(&server, "/rtc?backlog=0").await;
    second.hello().await;
    wait_rtc_sessions(&server, 2, PROMPT).await;
    server.wait_clients(2, PROMPT).await;
    let live = numbered("live ", 2..=300);
    for chunk in live.chunks(50) {
        log.append_lines(chunk);
    }
    let seqs = first.expect_lines(&strs(&live)).await;
    assert_eq!(seqs, (7..=305).collect::<Vec<u64>>());
    assert_eq!(second.expect_lines(&strs(&live)).await, seqs);
}

/// A peer that closes its connection frees its session and its client slot; one that
/// vanishes without a word is dropped when ICE gives up on it; `DELETE Location` ends
/// one; `/metrics` counts each end by reason.
#[tokio::test]
async fn closed_vanished_and_deleted_sessions_are_freed() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut a = connect(&server, "/rtc").await;
    let mut b = connect(&server, "/rtc").await;
    let mut c = connect(&server, "/rtc").await;
    for client in [&mut a, &mut b, &mut c] {
        client.hello().await;
    }
    wait_rtc_sessions(&server, 3, PROMPT).await;
    server.wait_clients(3, PROMPT).await;

    a.close().await;
    wait_rtc_sessions(&server, 2, PROMPT).await;
    server.wait_clients(2, PROMPT).await;

    let location = b.answer.header("location").unwrap().to_string();
    let deleted = http_request(server.addr(), "DELETE", &location, &[], b"").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    b.expect_closed(PROMPT).await;
    wait_rtc_sessions(&server, 1, PROMPT).await;
    let again = http_request(server.addr(), "DELETE", &location, &[], b"").await;
    assert_eq!(again.status, 404);

    c.vanish();
    // str0m's ICE agent declares a silent peer disconnected after some seconds.
    wait_rtc_sessions(&server, 0, Duration::from_secs(40)).await;
    server.wait_clients(0, PROMPT).await;
    let metrics = http_get(server.addr(), "/metrics", &[]).await.text();
    for reason in ["closed by client", "deleted by client", "ice disconnected"] {
        let end = format!("logtail_client_ends_total{{transport=\"rtc\",reason=\"{reason}\"}} 1");
        assert!(
            metrics.lines().any(|l| l == end),
            "no `{end}` in:\n{metrics}"
        );
    }
    assert!(metrics.contains("logtail_rtc_sessions 0"), "{metrics}");
}

/// A session whose peer never connects (an offer posted, no ICE) is dropped after the
/// connect timeout (15 s), with its slot.
#[tokio::test]
async fn a_session_that_never_connects_is_dropped() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let offer = crate::harness::RtcOffer::new().await;
    let sdp = offer.sdp.clone();
    drop(offer);
    let answer = http_request(
        server.addr(),
        "POST",
        "/rtc",
        &[("content-type", "application/sdp")],
        sdp.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(rtc_sessions(&server).await, 1);
    server.wait_clients(1, PROMPT).await;
    wait_rtc_sessions(&server, 0, Duration::from_secs(25)).await;
    server.wait_clients(0, PROMPT).await;
    server.wait_for_log("never connected", PROMPT).await;
}

/// Offers that are not offers get a clear reason: 400 for a forged SDP or one without a
/// data channel, 413 past 64 KiB, 415 for another content type; nothing is held.
#[tokio::test]
async fn forged_oversized_and_mistyped_offers_are_refused_with_the_reason() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        let addr = server.addr();
        async move {
            http_request(
                addr,
                "POST",
                "/rtc",
                &[("content-type", content_type)],
                &body,
            )
            .await
        }
    };
    let forged = post(
        b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nthis is not sdp\r\n".to_vec(),
        "application/sdp",
    )
    .await;
    assert_eq!(forged.status, 400, "{}", forged.text());
    assert!(
        forged.text().starts_with("the body is not an SDP offer"),
        "{}",
        forged.text()
    );

    let garbage = post(vec![0xff, 0xfe, 0x00, 0x01], "application/sdp").await;
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    assert!(garbage.text().contains("not UTF-8"), "{}", garbage.text());

    let offer = crate::harness::RtcOffer::new().await;
    let no_channel: String = offer
        .sdp
        .split_inclusive("\r\n")
        .take_while(|l| !l.starts_with("m="))
        .collect();
    let refused = post(no_channel.into_bytes(), "application/sdp").await;
    assert_eq!(refused.status, 400, "{}", refused.text());

    let mut huge = offer.sdp.clone().into_bytes();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    let too_large = post(huge, "application/sdp").await;
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    assert_eq!(too_large.text(), "the offer is larger than 64 KiB\n");

    let json = post(offer.sdp.clone().into_bytes(), "application/json").await;
    assert_eq!(json.status, 415, "{}", json.text());
    assert!(json.text().contains("application/sdp"), "{}", json.text());

    let text = http_request(
        server.addr(),
        "POST",
        "/rtc?format=text",
        &[("content-type", "application/sdp")],
        offer.sdp.as_bytes(),
    )
    .await;
    assert_eq!(text.status, 400, "{}", text.text());

    assert_eq!(rtc_sessions(&server).await, 0);
    assert_eq!(server.client_count().await, 0);
}

/// The same gate as `/ws`: a cross-origin page is refused (403), `Origin` of the server's
/// own host is fine; with `--token`, 401 without it, 201 with the bearer or `?token=`.
#[tokio::test]
async fn cross_origin_refused_and_token_required() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--token", "s3cret"]).await;
    let evil = [
        ("origin", "https://evil.example"),
        ("authorization", "Bearer s3cret"),
    ];
    let refused = RtcClient::connect(server.addr(), "/rtc", &evil)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 403, "{}", refused.text());

    let none = RtcClient::connect(server.addr(), "/rtc", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(none.status, 401, "{}", none.text());
    let wrong = [("authorization", "Bearer nope")];
    let wrong = RtcClient::connect(server.addr(), "/rtc", &wrong)
        .await
        .err()
        .expect("refused");
    assert_eq!(wrong.status, 401);

    let own = format!("http://{}", server.addr());
    let good = [("origin", own.as_str()), ("authorization", "Bearer s3cret")];
    let mut client = RtcClient::connect(server.addr(), "/rtc?backlog=0", &good)
        .await
        .unwrap_or_else(|r| panic!("{} {}", r.status, r.text()));
    client.hello().await;
    let mut by_query = connect(&server, "/rtc?backlog=0&token=s3cret").await;
    by_query.hello().await;
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["secret line"]);
    client.expect_lines(&["secret line"]).await;
    by_query.expect_lines(&["secret line"]).await;
}

/// `since=`/`epoch=` resume: a new session after a closed one gets exactly the lines after
/// the last it saw, then live ones; `file=` and `grep=` apply as on `/ws`.
#[tokio::test]
async fn since_resumes_exactly_after_the_last_line_seen() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut first = connect(&server, "/rtc?backlog=0").await;
    let (epoch, _) = first.hello().await;
    server.wait_clients(1, PROMPT).await;
    log.append_lines(numbered("a ", 1..=10));
    let seqs = first.expect_lines(&strs(&numbered("a ", 1..=10))).await;
    first.close().await;
    server.wait_clients(0, PROMPT).await;
    log.append_lines(numbered("a ", 11..=20));
    server.wait_seq(20, PROMPT).await;

    let last = seqs[6]; // saw up to "a 7"
    let mut resumed = connect(&server, &format!("/rtc?since={last}&epoch={epoch}")).await;
    resumed.hello().await;
    let seqs = resumed.expect_lines(&strs(&numbered("a ", 8..=20))).await;
    assert_eq!(seqs, (8..=20).collect::<Vec<u64>>());
    log.append_lines(["a 21"]);
    resumed.expect_lines(&["a 21"]).await;

    let mut errors = connect(&server, "/rtc?since=0&grep=%5Ea%201").await;
    errors.hello().await;
    errors
        .expect_lines(&[
            "a 1", "a 10", "a 11", "a 12", "a 13", "a 14", "a 15", "a 16", "a 17", "a 18", "a 19",
        ])
        .await;
}

/// A peer that stops acknowledging fills its session's budget (256 KiB unacknowledged);
/// after `--send-timeout` the session is closed as too slow and freed, while another
/// session gets every line.
#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_as_too_slow_and_others_go_on() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--send-timeout", "2"]).await;
    let mut stuck = connect(&server, "/rtc?backlog=0").await;
    let mut healthy = connect(&server, "/rtc?backlog=0").await;
    stuck.hello().await;
    healthy.hello().await;
    server.wait_clients(2, PROMPT).await;
    stuck.freeze();
    let lines: Vec<String> = (1..=4000)
        .map(|i| format!("{i:06} {}", "x".repeat(90)))
        .collect();
    for chunk in lines.chunks(500) {
        log.append_lines(chunk);
    }
    healthy.expect_lines(&strs(&lines)).await;
    server
        .wait_for_log("closing a client that is too slow", PROMPT)
        .await;
    wait_rtc_sessions(&server, 1, PROMPT).await;
    server.wait_clients(1, PROMPT).await;
    let metrics = http_get(server.addr(), "/metrics", &[]).await.text();
    let end = "logtail_client_ends_total{transport=\"rtc\",reason=\"too slow (socket stuck)\"} 1";
    assert!(
        metrics.lines().any(|l| l == end),
        "no `{end}` in:\n{metrics}"
    );
}

/// SIGTERM with sessions open: the peers see their sessions close, and the server exits 0
/// within the 2 s budget.
#[tokio::test]
async fn shutdown_closes_sessions_within_the_budget() {
    let log = LogFile::new();
    let mut server = Server::start(log.path(), &[]).await;
    let mut a = connect(&server, "/rtc?backlog=0").await;
    let mut b = connect(&server, "/rtc?backlog=0").await;
    a.hello().await;
    b.hello().await;
    server.signal(Sig::Term);
    let status = server
        .wait_exit(Duration::from_secs(2))
        .await
        .expect("exited within 2 s");
    assert!(status.success(), "{status:?}");
    for client in [&mut a, &mut b] {
        client.expect_closed(PROMPT).await;
    }
}

/// `--max-rtc-sessions` bounds sessions (503 past it); `--max-rtc-sessions 0` turns WebRTC
/// off (503 naming the flags, `rtc: null` in /healthz); `--rtc-port` picks the UDP port.
#[tokio::test]
async fn session_limit_off_switch_and_rtc_port() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--max-rtc-sessions", "1"]).await;
    let mut one = connect(&server, "/rtc").await;
    one.hello().await;
    let refused = RtcClient::connect(server.addr(), "/rtc", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("--max-rtc-sessions 1"),
        "{}",
        refused.text()
    );
    one.close().await;
    wait_rtc_sessions(&server, 0, PROMPT).await;
    let mut two = connect(&server, "/rtc").await;
    two.hello().await;

    let off = Server::start(log.path(), &["--max-rtc-sessions", "0"]).await;
    assert!(off.healthz().await["rtc"].is_null());
    let refused = RtcClient::connect(off.addr(), "/rtc", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("WebRTC is off"),
        "{}",
        refused.text()
    );

    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let given = Server::start(log.path(), &["--rtc-port", &port.to_string()]).await;
    assert_eq!(
        given.healthz().await["rtc"]["port"].as_u64(),
        Some(u64::from(port))
    );
    let mut three = connect(&given, "/rtc").await;
    three.hello().await;
    assert!(
        three
            .answer
            .text()
            .contains(&format!("127.0.0.1 {port} typ host"))
    );
    // Keep `RtcEvent` in use for readers of this file: the client reports a close so.
    let _ = RtcEvent::Closed;
}
