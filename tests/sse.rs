//! `/events` (Server-Sent Events): byte-exact framing, `Last-Event-ID` resume exactly once,
//! gaps, named events, keep-alive comments, bare `\r`, and `grep=`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Deadline, FLOOD, LogFile, PROMPT, ResumingClient, Server, SseStream,
    exactly_once_across_disconnects, fixed_line, gline, join_lines, numbered,
};

/// One SSE event: a block of fields ended by a blank line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ev {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
    retry: Option<String>,
    comments: Vec<String>,
}

impl Ev {
    /// Parses one block (without its terminating blank line), splitting fields on `\n`.
    fn parse(block: &str) -> Ev {
        let mut ev = Ev::default();
        for line in block.split('\n') {
            if let Some(comment) = line.strip_prefix(':') {
                ev.comments
                    .push(comment.strip_prefix(' ').unwrap_or(comment).into());
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match name {
                "id" => ev.id = Some(value),
                "event" => ev.event = Some(value),
                "data" => ev.data.push(value),
                "retry" => ev.retry = Some(value),
                other => panic!("unknown SSE field {other:?} in block {block:?}"),
            }
        }
        ev
    }

    /// A line event `id: EPOCH:SEQ` + one `data:`; returns (epoch, seq, data). Panics
    /// on anything else.
    fn as_line(&self) -> (String, u64, String) {
        assert!(
            self.event.is_none() && self.retry.is_none() && self.comments.is_empty(),
            "expected a line event, got {self:?}"
        );
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("line event without id: {self:?}"));
        let (epoch, seq) = id
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("id {id:?} is not EPOCH:SEQ"));
        let seq = seq
            .parse()
            .unwrap_or_else(|_| panic!("id {id:?} is not EPOCH:SEQ"));
        assert_eq!(self.data.len(), 1, "one data field expected: {self:?}");
        (epoch.into(), seq, self.data[0].clone())
    }

    /// A named event with one `data:` field holding JSON; returns (name, JSON).
    fn as_named(&self) -> (String, Value) {
        let name = self
            .event
            .clone()
            .unwrap_or_else(|| panic!("expected a named event, got {self:?}"));
        assert!(self.id.is_none(), "named event with an id: {self:?}");
        assert_eq!(self.data.len(), 1, "one data field expected: {self:?}");
        let v = serde_json::from_str(&self.data[0])
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"));
        (name, v)
    }
}

/// An `/events` stream read event by event.
struct Events {
    stream: SseStream,
    /// Bytes of the body already parsed into events.
    pos: usize,
}

impl Events {
    /// `GET path` with `headers`; asserts 200 `text/event-stream` and that the first event
    /// is `retry: 1000` alone.
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Events {
        Events::over(SseStream::connect(addr, path, headers).await, path).await
    }

    /// [`open`](Self::open), on a stream already requested.
    async fn over(stream: SseStream, path: &str) -> Events {
        assert_eq!(stream.status, 200, "GET {path}: {:?}", stream.headers);
        let ctype = stream.header("content-type").unwrap_or_default();
        assert!(
            ctype.starts_with("text/event-stream"),
            "content-type {ctype:?}"
        );
        let mut events = Events { stream, pos: 0 };
        let first = events.next(PROMPT).await;
        assert_eq!(
            first,
            Ev {
                retry: Some("1000".into()),
                ..Ev::default()
            },
            "first event of {path}"
        );
        events
    }

    /// The next event within `timeout`; panics (showing the unparsed rest) otherwise.
    async fn next(&mut self, timeout: Duration) -> Ev {
        let deadline = Instant::now() + timeout;
        loop {
            let rest = &self.stream.raw_so_far()[self.pos..];
            if let Some(end) = rest.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(rest[..end].to_vec()).expect("UTF-8 SSE body");
                self.pos += end + 2;
                return Ev::parse(&block);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.stream.read_more(left).await {
                panic!(
                    "no complete SSE event within {timeout:?} (eof: {}); unparsed: {:?}",
                    self.stream.eof(),
                    String::from_utf8_lossy(&self.stream.raw_so_far()[self.pos..])
                );
            }
        }
    }

    /// The next event, which must be the line `seq` with text `line` in epoch `epoch`.
    async fn expect_line(&mut self, epoch: &str, seq: u64, line: &str) {
        let ev = self.next(PROMPT).await;
        assert_eq!(
            ev.as_line(),
            (epoch.to_owned(), seq, line.to_owned()),
            "expected line {seq}"
        );
    }
}

/// The server's epoch, from `/healthz`.
async fn epoch_of(server: &Server) -> String {
    server.healthz().await["epoch"]
        .as_str()
        .expect("epoch in /healthz")
        .to_owned()
}

/// `Last-Event-ID: E:LAST` resume: about 20 abrupt disconnects at random points (seeded)
/// while a writer appends 20 000 lines; the ids and data received are every line exactly
/// once, in order. Every reconnect also asks `backlog=5`: `Last-Event-ID` wins.
#[tokio::test]
async fn sse_last_event_id_resume_is_exactly_once_across_random_disconnects() {
    sse_exactly_once_across_disconnects(&[], 0x5EED_0002).await;
}

/// The same with `--history-bytes 4096` (54 lines in memory): most resumes are older than
/// memory and replay from the file, so the disk → memory → live seams are crossed too.
#[tokio::test]
async fn sse_last_event_id_resume_is_exactly_once_through_disk_replay() {
    sse_exactly_once_across_disconnects(&["--history-bytes", "4096"], 0x5EED_0004).await;
}

/// See [`sse_last_event_id_resume_is_exactly_once_across_random_disconnects`].
async fn sse_exactly_once_across_disconnects(args: &[&str], seed: u64) {
    let log = LogFile::new();
    let server = Server::start(log.path(), args).await;
    let epoch = epoch_of(&server).await;
    // since=0 on an empty file: from the very first line, whenever the writer starts.
    let events = Events::open(server.addr(), "/events?since=0", &[]).await;
    let resuming = SseResuming {
        addr: server.addr(),
        events,
        epoch,
    };
    exactly_once_across_disconnects(&server, &log, resuming, seed).await;
}

/// An `/events` client resuming with `Last-Event-ID: E:LAST` (and `backlog=5`, which the
/// header must win over), for [`exactly_once_across_disconnects`].
struct SseResuming {
    addr: SocketAddr,
    events: Events,
    epoch: String,
}

impl ResumingClient for SseResuming {
    async fn next_line(&mut self) -> (u64, String) {
        let (epoch, seq, data) = self.events.next(PROMPT).await.as_line();
        assert_eq!(epoch, self.epoch, "the epoch of line {seq}");
        (seq, data)
    }

    async fn resume(mut self, last: u64) -> (Self, Option<u64>) {
        let _ = self.events.stream.stream().set_zero_linger();
        drop(self.events);
        let id = format!("{}:{last}", self.epoch);
        let headers = [("Last-Event-ID", id.as_str())];
        let events = Events::open(self.addr, "/events?backlog=5", &headers).await;
        (SseResuming { events, ..self }, None)
    }
}

/// The exact bytes of a stream (content-type `text/event-stream`): `retry: 1000`, two
/// backlog lines and a live one as `id: E:SEQ` + `data:`, a truncation as
/// `event: truncated` with its JSON, then the next line; a rotation as `event: rotated`
/// with its JSON.
#[tokio::test]
async fn sse_stream_bytes_are_exact() {
    let log = LogFile::with_lines(["a", "b"]);
    let server = Server::start(log.path(), &[]).await;
    let e = epoch_of(&server).await;
    let mut s = SseStream::connect(server.addr(), "/events?backlog=2", &[]).await;
    assert_eq!(s.status, 200);
    let ctype = s.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("text/event-stream"),
        "content-type {ctype:?}"
    );
    s.read_until_contains("data: b\n\n", PROMPT).await;
    log.append_lines(["c"]);
    s.read_until_contains("data: c\n\n", PROMPT).await;
    log.truncate();
    s.read_until_contains("event: truncated\n", PROMPT).await;
    log.append_lines(["d"]);
    s.read_until_contains("data: d\n\n", PROMPT).await;
    // The public name, never the server's path.
    let file = "\"app.log\"";
    let expected = format!(
        "retry: 1000\n\n\
         id: {e}:1\ndata: a\n\n\
         id: {e}:2\ndata: b\n\n\
         id: {e}:3\ndata: c\n\n\
         event: truncated\ndata: {{\"event\":\"truncated\",\"file\":{file},\"seq\":3}}\n\n\
         id: {e}:4\ndata: d\n\n"
    );
    assert_eq!(s.text_so_far(), expected);

    // Rotation (a new file renamed over the path): `event: rotated` with its JSON, then
    // (after any `following`/`waiting` events) the new file's first line.
    log.write_sibling("app.log.next", b"e\n");
    std::fs::rename(log.sibling("app.log.next"), log.path()).expect("rename over app.log");
    let rotated =
        format!("event: rotated\ndata: {{\"event\":\"rotated\",\"file\":{file},\"seq\":4}}\n\n");
    let line = format!("id: {e}:5\ndata: e\n\n");
    let all = s.read_until_contains(&line, PROMPT).await;
    let tail = &all[expected.len()..];
    assert!(
        tail.starts_with(&rotated) && tail.ends_with(&line),
        "after the rotation: {tail:?}"
    );
    let between = &tail[rotated.len()..tail.len() - line.len()];
    for block in between.split_terminator("\n\n") {
        assert!(
            block.starts_with("event: following\n") || block.starts_with("event: waiting\n"),
            "unexpected block {block:?} between `rotated` and the next line"
        );
    }
}

/// An idle stream carries the comment `: keep-alive` after 15 s, and nothing else before
/// it; the stream still delivers lines afterwards.
#[tokio::test]
async fn sse_keep_alive_comment_after_15_s_idle() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let e = epoch_of(&server).await;
    let started = Instant::now();
    let mut s = SseStream::connect(server.addr(), "/events?backlog=0", &[]).await;
    let body = s
        .read_until_contains(": keep-alive\n\n", Duration::from_secs(20))
        .await;
    let waited = started.elapsed();
    assert_eq!(body, "retry: 1000\n\n: keep-alive\n\n");
    assert!(
        waited >= Duration::from_secs(14),
        "keep-alive after only {waited:?}"
    );
    log.append_lines(["x"]);
    let body = s.read_until_contains("data: x\n\n", PROMPT).await;
    assert_eq!(
        body,
        format!("retry: 1000\n\n: keep-alive\n\nid: {e}:1\ndata: x\n\n")
    );
}

/// A bare `\r` inside a line becomes another `data:` field (`x\ry` → `data: x\ndata: y\n`),
/// while a CRLF ending loses its `\r`.
#[tokio::test]
async fn sse_bare_cr_is_split_into_another_data_field() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let e = epoch_of(&server).await;
    let mut s = SseStream::connect(server.addr(), "/events?backlog=0", &[]).await;
    log.append(b"x\ry\nz\r\n");
    s.read_until_contains(&format!("id: {e}:2\n"), PROMPT).await;
    s.read_until_contains("data: z\n\n", PROMPT).await;
    assert_eq!(
        s.text_so_far(),
        format!("retry: 1000\n\nid: {e}:1\ndata: x\ndata: y\n\nid: {e}:2\ndata: z\n\n")
    );
}

/// `grep=` on `/events`: only matching lines, ids carry the global seq, `backlog=N` counts
/// matching lines, and `Last-Event-ID` with `grep` resumes among matching lines.
#[tokio::test]
async fn sse_grep_sends_only_matching_lines_with_global_ids() {
    let log = LogFile::with_lines((1..=30).map(gline));
    let server = Server::start(log.path(), &[]).await;
    server.wait_seq(30, PROMPT).await;
    let e = epoch_of(&server).await;
    let mut backlog = Events::open(server.addr(), "/events?grep=%5EERROR&backlog=4", &[]).await;
    let id = format!("{e}:25");
    let mut resumed = Events::open(
        server.addr(),
        "/events?grep=%5EERROR",
        &[("Last-Event-ID", &id)],
    )
    .await;
    for seq in [21, 24, 27, 30] {
        backlog.expect_line(&e, seq, &gline(seq)).await;
    }
    for seq in [27, 30] {
        resumed.expect_line(&e, seq, &gline(seq)).await;
    }
    log.append(&join_lines((31..=45).map(gline)));
    log.append_lines(["info 46", "ERROR last"]);
    for events in [&mut backlog, &mut resumed] {
        for seq in (33..=45).step_by(3) {
            events.expect_line(&e, seq, &gline(seq)).await;
        }
        events.expect_line(&e, 47, "ERROR last").await;
    }
}

/// `Last-Event-ID` older than anything replayable (lines 1..=1000 truncated away,
/// `--history-bytes 4096`): `event: gap` with from = last+1, to = 1000, reason `evicted`,
/// then every later line; an id from another epoch: a gap with reason `epoch` from 1 to the
/// oldest line in memory - 1, then the lines in memory.
#[tokio::test]
async fn sse_old_or_foreign_last_event_id_gets_gap_event() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--history-bytes", "4096"]).await;
    let append = |from: u64, to: u64| log.append(&join_lines((from..=to).map(fixed_line)));
    for n in 0..10 {
        append(n * 100 + 1, n * 100 + 100);
    }
    server.wait_seq(1000, PROMPT).await;
    log.truncate();
    append(1001, 1050);
    append(1051, 1100);
    let health = server.wait_seq(1100, PROMPT).await;
    let e = health["epoch"].as_str().unwrap().to_owned();
    let in_memory = 1100 - health["history"]["lines"].as_u64().unwrap() + 1;
    assert!(in_memory > 1001, "nothing evicted: {health}");
    let other = if e == "0123456789abcdef" {
        "fedcba9876543210"
    } else {
        "0123456789abcdef"
    };
    for (id, gap, first) in [
        (
            format!("{e}:10"),
            json!({"event": "gap", "from": 11, "to": 1000, "reason": "evicted"}),
            1001,
        ),
        (
            format!("{other}:500"),
            json!({"event": "gap", "from": 1, "to": in_memory - 1, "reason": "epoch"}),
            in_memory,
        ),
    ] {
        let mut events = Events::open(server.addr(), "/events", &[("Last-Event-ID", &id)]).await;
        assert_eq!(
            events.next(PROMPT).await.as_named(),
            ("gap".to_owned(), gap),
            "Last-Event-ID {id}"
        );
        for seq in first..=1100 {
            events.expect_line(&e, seq, &fixed_line(seq)).await;
        }
    }
}

/// A client whose socket accepts nothing for `--send-timeout` is closed as too slow, but
/// its connection is kept for the grace with nothing more queued: when it reads again it
/// gets what was in flight (lines 1, 2, … as written: no gap, no duplicate, nothing
/// written after the timeout), then `event: closed` with `data: client too slow`, and
/// the response ends. A healthy client meanwhile receives every line.
#[tokio::test]
async fn sse_stuck_client_that_reads_again_gets_what_was_in_flight_then_closed() {
    const TOO_SLOW: &str = "closing a client that is too slow";
    let fat = |i: u64| format!("{i:08} {}", "x".repeat(90));
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--send-timeout", "1"]).await;
    let e = epoch_of(&server).await;
    let mut healthy = Events::open(server.addr(), "/events?backlog=0", &[]).await;
    // Reads nothing until it is told to below.
    let path = "/events?backlog=0";
    let stuck = SseStream::connect_small_rcvbuf(server.addr(), path, &[], 4096).await;
    server.wait_clients(2, PROMPT).await;

    // 32 KiB appends, each drained by the healthy client before the next, until the
    // server gives up on the stuck one.
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while !server.stderr().contains(TOO_SLOW) {
        flood.check(|| format!("the stuck client was not closed after {written} lines"));
        log.append(&join_lines((written + 1..=written + 320).map(fat)));
        for seq in written + 1..=written + 320 {
            healthy.expect_line(&e, seq, &fat(seq)).await;
        }
        written += 320;
    }
    let after = numbered("after the timeout ", 1..=100);
    log.append_lines(&after);
    for (i, line) in after.iter().enumerate() {
        healthy.expect_line(&e, written + 1 + i as u64, line).await;
    }

    // It wakes up.
    let mut stuck = Events::over(stuck, path).await;
    let mut seq = 0;
    let closed = loop {
        let ev = stuck.next(PROMPT).await;
        if ev.event.is_some() {
            break ev;
        }
        seq += 1;
        assert!(
            seq <= written,
            "line {seq} was written after the timeout: {ev:?}"
        );
        assert_eq!(
            ev.as_line(),
            (e.clone(), seq, fat(seq)),
            "expected line {seq}"
        );
    };
    assert!(seq > 0, "nothing was in flight");
    assert_eq!(
        (closed.event.as_deref(), &closed.data[..]),
        (Some("closed"), &["client too slow".to_owned()][..]),
        "after {seq} lines"
    );
    let deadline = Instant::now() + PROMPT;
    while !stuck.stream.body_complete() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            stuck.stream.read_more(left).await,
            "the response did not end after `closed`; then: {:?}",
            String::from_utf8_lossy(&stuck.stream.raw_so_far()[stuck.pos..])
        );
    }
    assert_eq!(
        stuck.stream.raw_so_far().len(),
        stuck.pos,
        "more after `closed`"
    );
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["after the stuck client"]);
    let last = written + after.len() as u64 + 1;
    healthy
        .expect_line(&e, last, "after the stuck client")
        .await;
}

/// An SSE response ends its connection when its stream ends (too slow, shutdown): the
/// connection's write limits belonged to that stream, so a client must not reuse it for
/// the next request (it would inherit them). `EventSource` reconnects afresh anyway.
#[tokio::test]
async fn sse_response_does_not_keep_its_connection_alive() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    let sse = SseStream::connect(server.addr(), "/events", &[]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("connection"), Some("close"));
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.header("cache-control"), Some("no-cache"));
}
