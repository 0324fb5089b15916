//! Resume and history on `/ws`: `since=`/`epoch=` exactly once across reconnects, `gap`
//! events (evicted lines, another epoch), `grep=`, the `--history-bytes` bound, a slow
//! client's resume, and replay from the file on disk.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Deadline, FIXED_LINE_LEN, FLOOD, LogFile, PROMPT, ResumingClient, Server, WsClient,
    exactly_once_across_disconnects, fixed_line, gline, http_get, join_lines, strs,
};

/// A line frame of a `format=json` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JLine {
    seq: u64,
    offset: u64,
    file: String,
    line: String,
}

/// The next frame of a `format=json` stream, parsed.
async fn next_json(client: &mut WsClient, timeout: Duration) -> Value {
    let text = client.next_text(timeout).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text:?}"))
}

/// `v` as a line frame (exactly the fields `seq`, `offset`, `file`, `line`), or `None` for
/// an event frame; panics on anything else.
fn as_line(v: &Value) -> Option<JLine> {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("frame is not an object: {v}"));
    if obj.contains_key("event") {
        return None;
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["file", "line", "offset", "seq"], "line frame {v}");
    Some(JLine {
        seq: v["seq"].as_u64().unwrap_or_else(|| panic!("seq in {v}")),
        offset: v["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("offset in {v}")),
        file: v["file"]
            .as_str()
            .unwrap_or_else(|| panic!("file in {v}"))
            .into(),
        line: v["line"]
            .as_str()
            .unwrap_or_else(|| panic!("line in {v}"))
            .into(),
    })
}

/// The next frame, which must be a line frame.
async fn next_line(client: &mut WsClient, timeout: Duration) -> JLine {
    let v = next_json(client, timeout).await;
    as_line(&v).unwrap_or_else(|| panic!("expected a line frame, got event {v}"))
}

/// Reads the `hello` frame (which must come first); returns its epoch and seq.
async fn expect_hello(client: &mut WsClient) -> (String, u64) {
    let v = next_json(client, PROMPT).await;
    assert_eq!(v["event"], "hello", "first frame {v}");
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["epoch", "event", "seq"], "hello frame {v}");
    let epoch = v["epoch"].as_str().expect("epoch is a string").to_owned();
    assert!(!epoch.is_empty(), "empty epoch in {v}");
    (epoch, v["seq"].as_u64().expect("seq is a number"))
}

/// The path as given on the command line, as JSON frames name it.
/// The name clients see: the file name, never the server's path.
fn shown(log: &LogFile) -> String {
    log.path()
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Writes lines `from..=to` (made by `make`) in appends of `per` lines.
fn append_range(log: &LogFile, from: u64, to: u64, per: u64, make: fn(u64) -> String) {
    let mut next = from;
    while next <= to {
        let end = (next + per - 1).min(to);
        log.append(&join_lines((next..=end).map(make)));
        next = end + 1;
    }
}

/// `/ws?since=LAST&epoch=E`: about 20 abrupt disconnects at random points (seeded) while a
/// writer appends 20 000 lines; the union of all frames is every line exactly once, in
/// order (seq, text, offset and file all checked), with no gap and no duplicate at any seam.
#[tokio::test]
async fn ws_since_resume_is_exactly_once_across_random_disconnects() {
    ws_exactly_once_across_disconnects(false, 0x5EED_0001).await;
}

/// The same with `--history-bytes 4096` (54 lines in memory): most resumes are older than
/// memory and replay from the file, so the disk → memory → live seams are crossed too.
#[tokio::test]
async fn ws_since_resume_is_exactly_once_through_disk_replay() {
    ws_exactly_once_across_disconnects(true, 0x5EED_0003).await;
}

/// See [`ws_since_resume_is_exactly_once_across_random_disconnects`].
/// `tiny_history`: `--history-bytes 4096`, and at least 3 resumes more than 100 lines
/// behind (older than the 54 lines in memory).
async fn ws_exactly_once_across_disconnects(tiny_history: bool, seed: u64) {
    let log = LogFile::new();
    let args: &[&str] = if tiny_history {
        &["--history-bytes", "4096"]
    } else {
        &[]
    };
    let server = Server::start(log.path(), args).await;
    // since=0 on an empty file: from the very first line, whenever the writer starts.
    let mut client = WsClient::connect(&server.ws_url("/ws?format=json&since=0")).await;
    let (epoch, _) = expect_hello(&mut client).await;
    let resuming = WsResuming {
        server: &server,
        client,
        epoch,
        file: shown(&log),
    };
    let resumes = exactly_once_across_disconnects(&server, &log, resuming, seed).await;
    let behind_by_more_than = |lines: u64| {
        resumes
            .iter()
            .filter(|r| r.newest.expect("the hello's seq") > r.after + lines)
            .count()
    };
    let replayed = behind_by_more_than(0);
    assert!(
        replayed >= resumes.len() / 2,
        "only {replayed} resumes had lines to replay"
    );
    let far_behind = behind_by_more_than(100);
    assert!(
        !tiny_history || far_behind >= 3,
        "only {far_behind} resumes were older than the history"
    );
}

/// A `format=json` client of `/ws` resuming with `since=LAST&epoch=E`, for
/// [`exactly_once_across_disconnects`].
struct WsResuming<'a> {
    server: &'a Server,
    client: WsClient,
    epoch: String,
    /// The file name every line frame must carry.
    file: String,
}

impl ResumingClient for WsResuming<'_> {
    async fn next_line(&mut self) -> (u64, String) {
        let got = next_line(&mut self.client, PROMPT).await;
        assert_eq!(
            (got.offset, got.file.as_str()),
            ((got.seq - 1) * FIXED_LINE_LEN, self.file.as_str()),
            "offset and file of {got:?}"
        );
        (got.seq, got.line)
    }

    async fn resume(self, last: u64) -> (Self, Option<u64>) {
        self.client.abort();
        let path = format!("/ws?format=json&since={last}&epoch={}", self.epoch);
        let mut client = WsClient::connect(&self.server.ws_url(&path)).await;
        let (again, newest) = expect_hello(&mut client).await;
        assert_eq!(
            again, self.epoch,
            "the epoch changed within one server life"
        );
        (WsResuming { client, ..self }, Some(newest))
    }
}

/// `since=` older than anything replayable: lines 1..=1000 are gone (the file was
/// truncated) and `--history-bytes 4096` holds only the newest lines of the new content.
/// First a `gap` event with from = since+1 and to = first replayable - 1 (here 1000,
/// `reason: evicted`), then every later line in order (from disk, then from memory), then
/// live lines. A text client given the same `since` silently continues after the gap.
#[tokio::test]
async fn old_since_gets_exact_gap_then_retained_lines_then_live() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "4096"]).await;
    append_range(&log, 1, 1000, 100, fixed_line);
    server.wait_seq(1000, PROMPT).await;
    // Shorter than before, so the truncation cannot be missed whatever the timing.
    log.truncate();
    append_range(&log, 1001, 1100, 50, fixed_line);
    let health = server.wait_seq(1100, PROMPT).await;
    let epoch = health["epoch"].as_str().unwrap().to_owned();
    // Accounting is 11 bytes + 64 per line: 54 lines fit in 4096 bytes.
    assert_eq!(
        health["history"]["lines"].as_u64(),
        Some(4096 / (11 + 64)),
        "/healthz {health}"
    );
    let first = 1001;

    let mut json_client =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since=10&epoch={epoch}"))).await;
    let mut text_client =
        WsClient::connect(&server.ws_url(&format!("/ws?since=10&epoch={epoch}"))).await;

    assert_eq!(expect_hello(&mut json_client).await, (epoch.clone(), 1100));
    let gap = next_json(&mut json_client, PROMPT).await;
    assert_eq!(
        gap,
        json!({"event": "gap", "from": 11, "to": first - 1, "reason": "evicted"})
    );
    let after_gap = next_line(&mut json_client, PROMPT).await;
    assert_eq!(
        after_gap.seq,
        gap["to"].as_u64().unwrap() + 1,
        "the line after the gap is not the one right after its `to`"
    );
    assert_eq!(
        (after_gap.line, after_gap.offset),
        (fixed_line(first), 0),
        "first line after the truncation"
    );
    for seq in first + 1..=1100 {
        let got = next_line(&mut json_client, PROMPT).await;
        assert_eq!(
            (got.seq, got.line, got.offset),
            (seq, fixed_line(seq), (seq - first) * FIXED_LINE_LEN)
        );
    }
    let retained_lines: Vec<String> = (first..=1100).map(fixed_line).collect();
    text_client.expect_lines(&strs(&retained_lines)).await;

    append_range(&log, 1101, 1110, 5, fixed_line);
    for seq in 1101..=1110 {
        let got = next_line(&mut json_client, PROMPT).await;
        assert_eq!((got.seq, got.line), (seq, fixed_line(seq)));
    }
    let live: Vec<String> = (1101..=1110).map(fixed_line).collect();
    text_client.expect_lines(&strs(&live)).await;
}

/// `since=` with another server life's epoch: a `gap` event with reason `epoch` from 1 to
/// first retained - 1, then every retained line from the oldest, then live lines.
#[tokio::test]
async fn epoch_mismatch_gets_epoch_gap_then_oldest_retained() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "4096"]).await;
    append_range(&log, 1, 1000, 100, fixed_line);
    let health = server.wait_seq(1000, PROMPT).await;
    let epoch = health["epoch"].as_str().unwrap().to_owned();
    let first = 1000 - health["history"]["lines"].as_u64().unwrap() + 1;
    let other = if epoch == "0123456789abcdef" {
        "fedcba9876543210"
    } else {
        "0123456789abcdef"
    };

    let mut client =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since=500&epoch={other}")))
            .await;
    assert_eq!(
        expect_hello(&mut client).await,
        (epoch, 1000),
        "hello carries the server's epoch"
    );
    let gap = next_json(&mut client, PROMPT).await;
    assert_eq!(
        gap,
        json!({"event": "gap", "from": 1, "to": first - 1, "reason": "epoch"})
    );
    for seq in first..=1000 {
        let got = next_line(&mut client, PROMPT).await;
        assert_eq!((got.seq, got.line), (seq, fixed_line(seq)));
    }
    log.append_lines(["live"]);
    let got = next_line(&mut client, PROMPT).await;
    assert_eq!((got.seq, got.line.as_str()), (1001, "live"));
}

/// `grep=` on `/ws`: text and JSON clients get only matching lines, JSON `seq` values are
/// the global ones, `backlog=N` counts matching lines, and `grep` combines with `since`.
#[tokio::test]
async fn ws_grep_sends_only_matching_lines_with_global_seq() {
    let log = LogFile::with_lines((1..=30).map(gline));
    let server = Server::start(log.path(), &[]).await;
    server.wait_seq(30, PROMPT).await;
    let mut text = WsClient::connect(&server.ws_url("/ws?grep=%5EERROR&backlog=4")).await;
    let mut jsonc =
        WsClient::connect(&server.ws_url("/ws?format=json&grep=%5EERROR&backlog=4")).await;
    let mut since =
        WsClient::connect(&server.ws_url("/ws?format=json&grep=%5EERROR&since=25")).await;

    text.expect_lines(&["ERROR 21", "ERROR 24", "ERROR 27", "ERROR 30"])
        .await;
    assert_eq!(expect_hello(&mut jsonc).await.1, 30);
    assert_eq!(expect_hello(&mut since).await.1, 30);
    for (client, seqs) in [
        (&mut jsonc, vec![21, 24, 27, 30]),
        (&mut since, vec![27, 30]),
    ] {
        for seq in seqs {
            let got = next_line(client, PROMPT).await;
            assert_eq!((got.seq, got.line), (seq, gline(seq)));
        }
    }

    // Live: the clients subscribed before their handshake completed.
    log.append(&join_lines((31..=45).map(gline)));
    let live: Vec<String> = (33..=45).step_by(3).map(gline).collect();
    text.expect_lines(&strs(&live)).await;
    for client in [&mut jsonc, &mut since] {
        for seq in (33..=45).step_by(3) {
            let got = next_line(client, PROMPT).await;
            assert_eq!((got.seq, got.line), (seq, gline(seq)));
        }
    }
    // And nothing else: the next frame is the next matching line.
    log.append_lines(["info 46", "ERROR last"]);
    text.expect_lines(&["ERROR last"]).await;
    let got = next_line(&mut jsonc, PROMPT).await;
    assert_eq!((got.seq, got.line.as_str()), (47, "ERROR last"));
}

/// Headers of a WebSocket upgrade request, so that only the query can make it fail.
const UPGRADE: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
];

/// A bad `grep=` (syntax error, or a pattern too large to compile) is refused with HTTP 400
/// and a body `grep: <reason>` on `/ws` (before any upgrade) and on `/events`.
#[tokio::test]
async fn bad_grep_is_400_with_reason_on_ws_and_events() {
    let log = LogFile::with_lines(["x"]);
    let server = Server::start(log.path(), &[]).await;
    for pattern in ["(", "a%7B1000%7D%7B1000%7D"] {
        let ws = http_get(server.addr(), &format!("/ws?grep={pattern}"), UPGRADE).await;
        let sse = http_get(
            server.addr(),
            &format!("/events?grep={pattern}"),
            &[("Accept", "text/event-stream")],
        )
        .await;
        for (what, resp) in [("/ws", ws), ("/events", sse)] {
            assert_eq!(resp.status, 400, "{what}?grep={pattern}: {resp:?}");
            assert!(
                resp.text().starts_with("grep: ") && resp.text().trim().len() > "grep:".len(),
                "{what}?grep={pattern}: body {:?}",
                resp.text()
            );
            assert!(
                resp.header("upgrade").is_none(),
                "{what}?grep={pattern}: {resp:?}"
            );
        }
    }
    // The refusals took no client slot.
    assert_eq!(server.client_count().await, 0);
    // A good pattern on the same endpoint upgrades.
    let mut ok = WsClient::connect(&server.ws_url("/ws?grep=x&backlog=1")).await;
    ok.expect_lines(&["x"]).await;
}

/// Resident memory of process `pid` in bytes (Linux `/proc`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kb * 1024
}

/// `--history-bytes 1MiB` bounds memory: while ~200 MB of lines go through in 4 MiB
/// appends, every `/healthz` reports history.bytes <= 1 MiB, history.lines consistent
/// with it (bytes = lines × (line + 64), lines = all that fit), and the server's RSS stays
/// far below what was written.
#[tokio::test]
async fn history_bytes_bounds_memory_under_200_mb() {
    const LIMIT: u64 = 1 << 20;
    const TEXT: u64 = 1023; // + '\n' = 1 KiB per line
    const PER_APPEND: u64 = 4096; // 4 MiB per append
    const APPENDS: u64 = 48; // 192 MiB ≈ 201 MB
    let fit = LIMIT / (TEXT + 64);
    let make = |i: u64| format!("{i:010} {}", "m".repeat(TEXT as usize - 11));
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "1MiB"]).await;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(90);
    let base_rss = rss_bytes(server.pid());
    let mut max_rss = base_rss;
    let mut polls = 0u64;
    for n in 0..APPENDS {
        log.append(&join_lines(
            (n * PER_APPEND + 1..=(n + 1) * PER_APPEND).map(make),
        ));
        let target = (n + 1) * PER_APPEND;
        loop {
            let h = server.healthz().await;
            polls += 1;
            max_rss = max_rss.max(rss_bytes(server.pid()));
            let seq = h["seq"].as_u64().unwrap();
            let lines = h["history"]["lines"].as_u64().unwrap();
            let bytes = h["history"]["bytes"].as_u64().unwrap();
            assert_eq!(h["history"]["limit"].as_u64(), Some(LIMIT), "{h}");
            assert!(bytes <= LIMIT, "history.bytes above the limit: {h}");
            assert_eq!(bytes, lines * (TEXT + 64), "bytes vs lines: {h}");
            assert_eq!(lines, seq.min(fit), "lines retained vs what fits: {h}");
            if seq == target {
                break;
            }
            assert!(seq < target, "more lines than written: {h}");
            assert!(
                Instant::now() < deadline,
                "the server read only {seq} of {target} lines in {:?}: {h}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eprintln!(
        "history_bytes: {} MiB in {:?}, {polls} polls, RSS {} -> max {} MiB",
        (APPENDS * PER_APPEND * (TEXT + 1)) >> 20,
        start.elapsed(),
        base_rss >> 20,
        max_rss >> 20
    );
    assert!(
        max_rss < base_rss + (32 << 20),
        "RSS grew from {} to {} MiB while 192 MiB went through a 1 MiB history",
        base_rss >> 20,
        max_rss >> 20
    );
}

/// Lines of 100 bytes with their `\n` (99 of text), numbered.
fn fat(i: u64) -> String {
    format!("{i:08} {}", "x".repeat(90))
}

/// A client that reads more slowly than lines are written stays more than
/// `--client-queue` behind for longer than the grace and is closed with 1013
/// `client too slow`; reconnecting with `since=LAST&epoch=E` it receives every later
/// line exactly once, then live lines.
#[tokio::test]
async fn slow_client_resumes_with_since_and_loses_nothing() {
    let log = LogFile::new();
    let server = Server::start(
        log.path(),
        // The grace (--send-timeout) must exceed how long a slow reader's socket may
        // refuse writes: Linux wakes a writer only once a third of its (autotuned, up
        // to 4 MB) send buffer has drained, over a second at this reader's speed.
        &["--client-queue", "65536", "--send-timeout", "3"],
    )
    .await;
    let mut healthy = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    let mut slow = WsClient::connect_small_rcvbuf(
        server.addr(),
        &server.ws_url("/ws?format=json&backlog=0"),
        4096,
    )
    .await;
    server.wait_clients(2, PROMPT).await;

    // The slow reader: 100 frames per 10 ms at most (about 1 MB/s), until the server
    // closes it.
    let reader = tokio::spawn(async move {
        slow.read_slowly_until_close(Duration::from_secs(60), 100, Duration::from_millis(10))
            .await
    });

    // Each 32 KiB append is drained by the healthy client before the next; writing
    // stops once the slow client is closed.
    let flood = Deadline::after(FLOOD);
    let mut next = 1;
    while !reader.is_finished() {
        flood.check(|| format!("the slow client was not closed after {} lines", next - 1));
        let end = next + 319;
        let chunk: Vec<String> = (next..=end).map(fat).collect();
        log.append_lines(&chunk);
        healthy.expect_lines(&strs(&chunk)).await;
        next = end + 1;
    }
    let total = next - 1;

    let (frames, code, reason) = reader.await.unwrap();
    assert_eq!((code, reason.as_str()), (1013, "client too slow"));
    let mut frames = frames.iter().map(|f| {
        serde_json::from_str::<Value>(f).unwrap_or_else(|e| panic!("not JSON ({e}): {f:?}"))
    });
    let hello = frames.next().expect("no hello before Close");
    assert_eq!(hello["event"], "hello", "{hello}");
    let epoch = hello["epoch"].as_str().unwrap().to_owned();
    let mut last = 0;
    for v in frames {
        let got = as_line(&v).unwrap_or_else(|| panic!("event {v} in a quiet file"));
        assert_eq!(
            (got.seq, got.line),
            (last + 1, fat(last + 1)),
            "slow client before Close"
        );
        last += 1;
    }
    assert!(
        last < total,
        "the slow client got all {total} lines before Close"
    );

    let mut again =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since={last}&epoch={epoch}")))
            .await;
    assert_eq!(expect_hello(&mut again).await, (epoch, total));
    for seq in last + 1..=total {
        let got = next_line(&mut again, PROMPT).await;
        assert_eq!((got.seq, got.line), (seq, fat(seq)), "resumed after {last}");
    }
    log.append_lines(["after the resume"]);
    let got = next_line(&mut again, PROMPT).await;
    assert_eq!(
        (got.seq, got.line.as_str()),
        (total + 1, "after the resume")
    );
    healthy.expect_lines(&["after the resume"]).await;
}

/// Reads `count` line frames from `client`, which must be exactly `expect(seq)` for seq in
/// `from..from + count` (seq, text, offset); notices may come in between, gaps may not.
async fn expect_replay(
    client: &mut WsClient,
    from: u64,
    count: u64,
    expect: impl Fn(u64) -> (String, u64),
) {
    let mut seq = from;
    while seq < from + count {
        let v = next_json(client, PROMPT).await;
        let Some(got) = as_line(&v) else {
            let event = v["event"].as_str().unwrap_or_default();
            assert!(
                matches!(event, "rotated" | "following"),
                "event {v} while expecting line {seq}"
            );
            continue;
        };
        let (line, offset) = expect(seq);
        assert_eq!(
            (got.seq, got.line.as_str(), got.offset),
            (seq, line.as_str(), offset),
            "replay from {from}"
        );
        seq += 1;
    }
}

/// With `--history-bytes 64KiB` and 10 MB written, `since=1` (with the epoch) replays every
/// line from 2 on exactly once, in order, read back from the file: no `gap` event. So does
/// a `since` in the middle of the file (33 333, not on any index boundary).
#[tokio::test]
async fn since_older_than_memory_is_replayed_from_disk() {
    const TOTAL: u64 = 100_000; // 100 bytes each: 10 MB
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "64KiB"]).await;
    append_range(&log, 1, TOTAL, 5000, fat);
    let health = server.wait_seq(TOTAL, Duration::from_secs(60)).await;
    let epoch = health["epoch"].as_str().unwrap().to_owned();
    assert!(health["history"]["lines"].as_u64().unwrap() < TOTAL / 10);

    let mut client =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since=1&epoch={epoch}"))).await;
    assert_eq!(expect_hello(&mut client).await, (epoch.clone(), TOTAL));
    expect_replay(&mut client, 2, TOTAL - 1, |seq| (fat(seq), (seq - 1) * 100)).await;
    // Only now: a client left unread for longer than --send-timeout (5 s) while the first
    // one is replayed would rightly be dropped.
    let mut middle =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since=33333&epoch={epoch}")))
            .await;
    assert_eq!(expect_hello(&mut middle).await, (epoch, TOTAL));
    expect_replay(&mut middle, 33_334, TOTAL - 33_333, |seq| {
        (fat(seq), (seq - 1) * 100)
    })
    .await;
    log.append_lines(["live"]);
    for c in [&mut client, &mut middle] {
        let got = next_line(c, PROMPT).await;
        assert_eq!((got.seq, got.line.as_str()), (TOTAL + 1, "live"));
    }
}

/// Disk replay across a rename rotation: 5 MB in `app.log`, `mv app.log app.log.1`, 5 MB
/// in a new `app.log`; `since=1` replays every line from 2 on exactly once, in order, with
/// offsets in their own file, while `app.log.1` still exists.
#[tokio::test]
async fn disk_replay_spans_a_rename_rotation() {
    const FIRST: u64 = 50_000;
    const TOTAL: u64 = 100_000;
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "64KiB"]).await;
    append_range(&log, 1, FIRST, 5000, fat);
    server.wait_seq(FIRST, Duration::from_secs(60)).await;
    log.rename_create("app.log.1");
    append_range(&log, FIRST + 1, TOTAL, 5000, fat);
    let health = server.wait_seq(TOTAL, Duration::from_secs(60)).await;
    let epoch = health["epoch"].as_str().unwrap().to_owned();
    assert!(log.sibling("app.log.1").exists());

    let mut client =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since=1&epoch={epoch}"))).await;
    assert_eq!(expect_hello(&mut client).await, (epoch, TOTAL));
    expect_replay(&mut client, 2, TOTAL - 1, |seq| {
        let offset = if seq <= FIRST {
            (seq - 1) * 100
        } else {
            (seq - FIRST - 1) * 100
        };
        (fat(seq), offset)
    })
    .await;
    log.append_lines(["live"]);
    let got = next_line(&mut client, PROMPT).await;
    assert_eq!((got.seq, got.line.as_str()), (TOTAL + 1, "live"));
}

/// Disk replay after the rotated file was deleted: `mv app.log app.log.1`, more lines in a
/// new `app.log`, `rm app.log.1`; `since=10` gets a `gap` for exactly the deleted file's
/// lines (11..=1000), then every line of the current file from its first (from disk, then
/// from memory), then live lines.
#[tokio::test]
async fn disk_replay_gap_covers_only_a_deleted_rotated_file() {
    const FIRST: u64 = 1000;
    const TOTAL: u64 = 3000; // 200 KB in the new file, 64 KiB of it in memory
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "64KiB"]).await;
    append_range(&log, 1, FIRST, 500, fat);
    server.wait_seq(FIRST, PROMPT).await;
    let rotated = log.rename_create("app.log.1");
    append_range(&log, FIRST + 1, TOTAL, 500, fat);
    let health = server.wait_seq(TOTAL, PROMPT).await;
    std::fs::remove_file(&rotated).expect("delete app.log.1");
    let epoch = health["epoch"].as_str().unwrap().to_owned();
    let in_memory = health["history"]["lines"].as_u64().unwrap();
    assert!(
        in_memory < TOTAL - FIRST,
        "all of the new file is in memory: {health}"
    );

    let mut client =
        WsClient::connect(&server.ws_url(&format!("/ws?format=json&since=10&epoch={epoch}"))).await;
    assert_eq!(expect_hello(&mut client).await, (epoch, TOTAL));
    assert_eq!(
        next_json(&mut client, PROMPT).await,
        json!({"event": "gap", "from": 11, "to": FIRST, "reason": "evicted"}),
        "the gap is the deleted file's lines, no more"
    );
    expect_replay(&mut client, FIRST + 1, TOTAL - FIRST, |seq| {
        (fat(seq), (seq - FIRST - 1) * 100)
    })
    .await;
    log.append_lines(["live"]);
    let got = next_line(&mut client, PROMPT).await;
    assert_eq!((got.seq, got.line.as_str()), (TOTAL + 1, "live"));
}
