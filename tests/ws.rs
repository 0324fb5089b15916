//! `/ws`: every line exactly once, in order, one Text message per line; backlog; clients
//! that vanish or stop reading do not disturb the others.

use std::time::Duration;

use crate::harness::{
    Deadline, FLOOD, KillOnDrop, LogFile, PROMPT, RawWs, Recv, Server, WsClient, http_get,
    numbered, strs, wait_until_async,
};

/// Live lines only.
const LIVE: &str = "/ws?backlog=0";

/// What the server logs when it closes a client as too slow.
const TOO_SLOW: &str = "closing a client that is too slow";

/// Connects `n` live-only clients and waits until the server counts them, so that lines
/// appended afterwards are live lines for all of them.
async fn live_clients(server: &Server, n: usize) -> Vec<WsClient> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(WsClient::connect(&server.ws_url(LIVE)).await);
    }
    server.wait_clients(n as u64, PROMPT).await;
    clients
}

/// Lines of about 100 bytes, numbered from `from`, for volume tests.
fn fat_lines(from: usize, count: usize) -> Vec<String> {
    (from..from + count)
        .map(|i| format!("{i:08} {}", "x".repeat(90)))
        .collect()
}

/// Lines appended after a client connects arrive exactly, in order, one message each.
#[tokio::test]
async fn appended_lines_arrive_exactly_in_order_one_message_each() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = live_clients(&server, 1).await.pop().unwrap();
    log.append_lines(["first"]);
    client.expect_lines(&["first"]).await;
    log.append_lines(["second line", "  leading and\ttab  ", "ünïcødé ✓ 日本"]);
    log.append(b"fifth\nsixth\n");
    client
        .expect_lines(&[
            "second line",
            "  leading and\ttab  ",
            "ünïcødé ✓ 日本",
            "fifth",
            "sixth",
        ])
        .await;
}

/// Three clients connected at once receive identical, complete streams.
#[tokio::test]
async fn three_clients_get_identical_streams() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut clients = live_clients(&server, 3).await;
    let lines = numbered("msg ", 1..=200);
    for chunk in lines.chunks(10) {
        log.append_lines(chunk);
    }
    for c in &mut clients {
        c.expect_lines(&strs(&lines)).await;
    }
}

/// A trailing partial line is held until its newline, then sent as one message.
#[tokio::test]
async fn partial_line_waits_for_its_newline() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = live_clients(&server, 1).await.pop().unwrap();
    log.append(b"abc");
    // Negative check with a bounded wait: nothing can signal "read but withheld".
    client.expect_silence(Duration::from_millis(500)).await;
    log.append(b"def\n");
    client.expect_lines(&["abcdef"]).await;
    log.append(b"next\n");
    client.expect_lines(&["next"]).await;
}

/// CRLF endings lose their `\r`; a bare `\r` inside a line is kept.
#[tokio::test]
async fn crlf_is_stripped() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = live_clients(&server, 1).await.pop().unwrap();
    log.append(b"a\r\nb\r\n");
    client.expect_lines(&["a", "b"]).await;
    log.append(b"c\rd\r\n");
    client.expect_lines(&["c\rd"]).await;
}

/// Empty lines are delivered as empty messages.
#[tokio::test]
async fn empty_lines_are_empty_messages() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = live_clients(&server, 1).await.pop().unwrap();
    log.append(b"\n\n");
    client.expect_lines(&["", ""]).await;
    log.append(b"x\n\ny\n");
    client.expect_lines(&["x", "", "y"]).await;
}

/// Invalid UTF-8 is delivered with U+FFFD in place of the bad byte, not dropped.
#[tokio::test]
async fn invalid_utf8_is_replaced_not_dropped() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = live_clients(&server, 1).await.pop().unwrap();
    log.append(b"ab\xffcd\n");
    client.expect_lines(&["ab\u{FFFD}cd"]).await;
    log.append(b"ok\n");
    client.expect_lines(&["ok"]).await;
}

/// 100 000 lines written in one write(2) all arrive, exactly and in order.
#[tokio::test]
async fn burst_of_100k_lines_in_one_write_arrives_complete() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut client = live_clients(&server, 1).await.pop().unwrap();
    let lines: Vec<String> = (1..=100_000).map(|i| format!("burst {i:06}")).collect();
    log.append_lines(&lines);
    let got = client
        .recv_lines(lines.len(), Duration::from_secs(60))
        .await;
    if let Some(i) = (0..lines.len()).find(|&i| got[i] != lines[i]) {
        panic!(
            "line #{i}: expected {:?}, got {:?} (next got: {:?})",
            lines[i],
            got[i],
            got.get(i + 1)
        );
    }
    log.append_lines(["after burst"]);
    client.expect_lines(&["after burst"]).await;
}

/// A file missing at start is waited for, then read from its first byte.
#[tokio::test]
async fn missing_file_is_waited_for_then_read_from_first_byte() {
    let log = LogFile::missing();
    let server = Server::start(log.path(), &[]).await;
    server.wait_for_log("waiting for", PROMPT).await;
    let mut client = WsClient::connect(&server.ws_url("/ws")).await;
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["first", "second"]);
    client.expect_lines(&["first", "second"]).await;
    log.append_lines(["third"]);
    client.expect_lines(&["third"]).await;
}

/// A file whose directory does not exist yet either: both appear later (`mkdir -p
/// logs/app; echo … > logs/app/app.log`), its lines arrive; writes to other files in
/// the same directory deliver nothing.
#[tokio::test]
async fn missing_directory_is_waited_for_too() {
    let log = LogFile::missing();
    let dir = log.dir().join("logs/app");
    let path = dir.join("app.log");
    let server = Server::start(&path, &[]).await;
    server.wait_for_log("waiting for", PROMPT).await;
    let mut client = WsClient::connect(&server.ws_url("/ws")).await;
    server.wait_clients(1, PROMPT).await;
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("other.log"), b"not ours\n").unwrap();
    std::fs::write(&path, b"first\nsecond\n").unwrap();
    client.expect_lines(&["first", "second"]).await;
    std::fs::write(dir.join("other.log"), b"still not ours\n").unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, b"third\n").unwrap();
    client.expect_lines(&["third"]).await;
}

/// Backlog: default 10, `backlog=25`, `backlog=0`; then live lines with no gap or duplicate.
#[tokio::test]
async fn backlog_then_live_without_gap_or_duplicate() {
    let log = LogFile::with_lines(numbered("line ", 1..=50));
    let server = Server::start(log.path(), &[]).await;
    let mut default = WsClient::connect(&server.ws_url("/ws")).await;
    default
        .expect_lines(&strs(&numbered("line ", 41..=50)))
        .await;
    let mut b25 = WsClient::connect(&server.ws_url("/ws?backlog=25")).await;
    b25.expect_lines(&strs(&numbered("line ", 26..=50))).await;
    let mut b0 = WsClient::connect(&server.ws_url(LIVE)).await;
    server.wait_clients(3, PROMPT).await;

    let live = numbered("line ", 51..=60);
    log.append_lines(&live[..5]);
    log.append_lines(&live[5..]);
    log.append_lines(["end"]);
    let mut expected = live.clone();
    expected.push("end".into());
    for c in [&mut default, &mut b25, &mut b0] {
        c.expect_lines(&strs(&expected)).await;
    }
}

/// A client that drops its TCP connection without a Close frame does not disturb others.
#[tokio::test]
async fn abrupt_disconnect_does_not_disturb_others() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let mut clients = live_clients(&server, 3).await;
    let first = numbered("n ", 1..=100);
    log.append_lines(&first);
    for c in &mut clients {
        c.expect_lines(&strs(&first)).await;
    }

    clients.pop().unwrap().abort();
    let second = numbered("n ", 101..=1100);
    for chunk in second.chunks(100) {
        log.append_lines(chunk);
    }
    for c in &mut clients {
        c.expect_lines(&strs(&second)).await;
    }

    server.wait_clients(2, PROMPT).await;
    let third = numbered("n ", 1101..=1200);
    log.append_lines(&third);
    for c in &mut clients {
        c.expect_lines(&strs(&third)).await;
    }
}

/// A client that never reads is closed as too slow after `--send-timeout`, and its
/// connection ends with the grace (30 s) in which it could still have read its Close; a
/// healthy client meanwhile receives every line.
#[tokio::test]
async fn stuck_client_is_dropped_and_others_get_every_line() {
    let log = LogFile::new();
    let server = Server::start(
        log.path(),
        &["--client-queue", "65536", "--send-timeout", "2"],
    )
    .await;
    let mut healthy = WsClient::connect(&server.ws_url(LIVE)).await;
    let stuck = RawWs::connect(server.addr(), LIVE).await;
    server.wait_clients(2, PROMPT).await;

    // 4 MiB in 32 KiB appends, each one drained by the healthy client before the next, so
    // it is never more than half of --client-queue behind.
    let lines = fat_lines(1, 40_960);
    for chunk in lines.chunks(320) {
        log.append_lines(chunk);
        healthy.expect_lines(&strs(chunk)).await;
    }

    server.wait_for_log(TOO_SLOW, Duration::from_secs(20)).await;
    log.append_lines(["after the stuck client"]);
    healthy.expect_lines(&["after the stuck client"]).await;
    wait_until_async(
        Duration::from_secs(45),
        "/healthz counts 1 client (the stuck one dropped at the end of the grace)",
        || async { server.client_count().await == 1 },
    )
    .await;
    log.append_lines(["after the grace"]);
    healthy.expect_lines(&["after the grace"]).await;
    drop(stuck);
}

/// A client whose socket accepts nothing for `--send-timeout` is closed as too slow, but
/// its connection is kept for the grace with nothing more queued: when it reads again it
/// gets what was in flight (lines 1, 2, … as written: no gap, no duplicate, nothing
/// written after the timeout), then Close 1013 `client too slow`. A healthy client
/// meanwhile receives every line.
#[tokio::test]
async fn stuck_client_that_reads_again_gets_what_was_in_flight_then_1013() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--send-timeout", "1"]).await;
    let mut healthy = WsClient::connect(&server.ws_url(LIVE)).await;
    // Reads nothing until it is told to below.
    let mut stuck = WsClient::connect_small_rcvbuf(server.addr(), &server.ws_url(LIVE), 4096).await;
    server.wait_clients(2, PROMPT).await;

    // 32 KiB appends, each drained by the healthy client before the next, until the
    // server gives up on the stuck one.
    let flood = Deadline::after(FLOOD);
    let mut written = Vec::new();
    while !server.stderr().contains(TOO_SLOW) {
        flood.check(|| {
            format!(
                "the stuck client was not closed after {} lines",
                written.len()
            )
        });
        let chunk = fat_lines(written.len() + 1, 320);
        log.append_lines(&chunk);
        healthy.expect_lines(&strs(&chunk)).await;
        written.extend(chunk);
    }
    assert_eq!(
        server.client_count().await,
        2,
        "the stuck client's connection is not kept for the grace"
    );
    let after = fat_lines(written.len() + 1, 320);
    log.append_lines(&after);
    healthy.expect_lines(&strs(&after)).await;

    // It wakes up.
    let (got, code, reason) = stuck.read_until_close(PROMPT).await;
    assert_eq!(
        (code, reason.as_str()),
        (1013, "client too slow"),
        "Close after {} lines",
        got.len()
    );
    assert!(!got.is_empty(), "nothing was in flight");
    assert_first_lines(&got, &written);
    // Its answer (sent as it reads on) ends the connection.
    match stuck.next_message(PROMPT).await {
        Err(Recv::Ended) => {}
        other => panic!("expected the connection to end after the Close, got {other:?}"),
    }
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["after the stuck client"]);
    healthy.expect_lines(&["after the stuck client"]).await;
}

/// Asserts that `got` is `written[..got.len()]`, naming the first line that differs.
fn assert_first_lines(got: &[String], written: &[String]) {
    assert!(
        got.len() <= written.len(),
        "got {} lines, only {} were written before the timeout; first extra: {:?}",
        got.len(),
        written.len(),
        got[written.len()]
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != written[i]) {
        panic!(
            "line #{i}: expected {:?}, got {:?} (previous: {:?})",
            written[i],
            got[i],
            &got[i.saturating_sub(2)..i]
        );
    }
}

/// A client that reads, but more slowly than lines are written, stays more than
/// `--client-queue` behind for longer than the grace (`--send-timeout`): it gets a
/// gap-free prefix of the lines, then Close 1013 `client too slow`. A healthy client
/// meanwhile receives every line.
#[tokio::test]
async fn slow_client_is_closed_with_1013_and_others_get_every_line() {
    let log = LogFile::new();
    let server = Server::start(
        log.path(),
        // The grace (--send-timeout) must exceed how long a slow reader's socket may
        // refuse writes: Linux wakes a writer only once a third of its (autotuned, up
        // to 4 MB) send buffer has drained, over a second at this reader's speed.
        &["--client-queue", "65536", "--send-timeout", "3"],
    )
    .await;
    let mut healthy = WsClient::connect(&server.ws_url(LIVE)).await;
    let mut slow = WsClient::connect_small_rcvbuf(server.addr(), &server.ws_url(LIVE), 4096).await;
    server.wait_clients(2, PROMPT).await;

    // The slow reader: 100 messages per 10 ms at most (about 1 MB/s of these 100-byte
    // lines), well below what the writer produces.
    let reader = tokio::spawn(async move {
        slow.read_slowly_until_close(Duration::from_secs(60), 100, Duration::from_millis(10))
            .await
    });

    // Write, paced by the healthy client, until the slow one has been closed.
    let flood = Deadline::after(FLOOD);
    let mut written = Vec::new();
    let mut next = 1;
    while !reader.is_finished() {
        flood.check(|| format!("the slow client was not closed after {} lines", next - 1));
        let chunk = fat_lines(next, 500);
        next += chunk.len();
        log.append_lines(&chunk);
        healthy.expect_lines(&strs(&chunk)).await;
        written.extend(chunk);
    }
    let (got, code, reason) = reader.await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (1013, "client too slow"),
        "close frame after {} lines",
        got.len()
    );
    assert!(!got.is_empty(), "the slow client got no line before Close");
    assert!(got.len() < written.len(), "the slow client got every line");
    assert!(
        got[..] == written[..got.len()],
        "the slow client's lines are not a gap-free prefix of the stream"
    );

    log.append_lines(["after the slow client"]);
    healthy.expect_lines(&["after the slow client"]).await;
}

/// A client that pauses while a burst 16 times its `--client-queue` is written, then
/// reads again within the grace, drains it: every line, no close. A burst a healthy
/// client drains in time is not slowness.
#[tokio::test]
async fn a_burst_larger_than_the_queue_drained_in_time_is_not_slowness() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--client-queue", "65536"]).await;
    let mut healthy = WsClient::connect(&server.ws_url(LIVE)).await;
    let mut paused =
        WsClient::connect_small_rcvbuf(server.addr(), &server.ws_url(LIVE), 4096).await;
    server.wait_clients(2, PROMPT).await;

    let lines = fat_lines(1, 10_240); // about 1 MB
    for chunk in lines.chunks(1024) {
        log.append_lines(chunk);
        healthy.expect_lines(&strs(chunk)).await;
    }
    // `paused` has read nothing so far; now it drains everything.
    paused
        .expect_lines_within(&strs(&lines), Duration::from_secs(30))
        .await;
    log.append_lines(["still connected"]);
    paused.expect_lines(&["still connected"]).await;
    healthy.expect_lines(&["still connected"]).await;
}

/// `GET /` returns 200 with an HTML page.
#[tokio::test]
async fn root_returns_html() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let resp = http_get(server.addr(), "/", &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(ctype.starts_with("text/html"), "content-type {ctype:?}");
    assert!(
        resp.text().to_lowercase().contains("<html"),
        "{}",
        resp.text()
    );
}

/// A stock CLI client (`websocat`) prints exactly the appended lines, one per line.
#[needs::tools(websocat)]
#[tokio::test]
async fn websocat_receives_exact_lines() {
    let websocat = needs::program!(websocat);
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    // stdin stays open (and unused) so websocat does not close the connection on EOF.
    let mut child = KillOnDrop(
        std::process::Command::new(websocat)
            .args(["-t", &server.ws_url(LIVE)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn websocat"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    server.wait_clients(1, PROMPT).await;

    let lines = ["hello from logtail", "second line", "ünïcødé ✓", "last"];
    log.append_lines(lines);
    for (i, want) in lines.iter().enumerate() {
        let got = tokio::time::timeout(PROMPT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("websocat printed no line #{i} within {PROMPT:?}"))
            .unwrap_or_else(|| panic!("websocat exited before line #{i}"));
        assert_eq!(&got, want, "websocat line #{i}");
    }
}

/// `format=jsonl`: the JSON frames of `format=json`, several per message (one per line of
/// the message), exactly and in order: the hello, the backlog, then live lines — and a
/// backlog of a thousand lines takes far fewer than a thousand messages.
#[tokio::test]
async fn jsonl_packs_the_json_frames_of_a_delivery_into_one_message() {
    let log = LogFile::with_lines(numbered("old ", 1..=1000));
    let server = Server::start(log.path(), &["--lines", "1000"]).await;
    let mut client = WsClient::connect(&server.ws_url("/ws?format=jsonl")).await;
    let mut frames: Vec<serde_json::Value> = Vec::new();
    let mut messages = 0;
    while frames.len() < 1001 {
        let text = client.next_text(PROMPT).await;
        messages += 1;
        for frame in text.split('\n') {
            frames.push(
                serde_json::from_str(frame)
                    .unwrap_or_else(|e| panic!("not a JSON frame ({e}): {frame:?}")),
            );
        }
    }
    assert_eq!(frames[0]["event"], "hello", "{:?}", frames[0]);
    let lines: Vec<(u64, String)> = frames[1..]
        .iter()
        .map(|f| {
            (
                f["seq"].as_u64().unwrap_or(0),
                f["line"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = (1..=1000).map(|i| (i, format!("old {i}"))).collect();
    assert_eq!(lines, want);
    assert!(messages < 100, "{messages} messages for 1001 frames");
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["new 1", "new \"quoted\"\\ 2"]);
    let mut live = Vec::new();
    while live.len() < 2 {
        for frame in client.next_text(PROMPT).await.split('\n') {
            let v: serde_json::Value = serde_json::from_str(frame).expect("a JSON frame");
            live.push((v["seq"].clone(), v["line"].clone()));
        }
    }
    assert_eq!(
        live,
        vec![
            (serde_json::json!(1001), serde_json::json!("new 1")),
            (
                serde_json::json!(1002),
                serde_json::json!("new \"quoted\"\\ 2")
            ),
        ]
    );
}
