//! Many files (issue 11): repeatable `--file`, `NAME=PATH`, globs (matches that appear,
//! disappear and rotate), `--file -` (stdin), `file=` selection with its prefixes, resume
//! and `backlog=` on a selection, `GET /files`, the `added` / `removed` events, and names
//! that never become paths.
//!
//! Every test starts the real binary on port 0 over files in its own temp dir. Order is
//! made definite by waiting: where a merged stream's order is asserted, each line is
//! written only once the previous one has arrived. Where something must *not* arrive, a
//! marker is written after it and must be the very next frame.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{
    PROMPT, Response, Server, Sig, SseStream, UPGRADE, WsClient, http_get, http_open, join_lines,
    poll_async, wait_until, wait_until_async,
};

/// The `--poll` variant's flags.
const POLL: &[&str] = &["--poll", "--poll-interval", "50"];

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

/// A fresh temp dir (removed on drop).
fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("logtail-ws-files-")
        .tempdir()
        .expect("create temp dir")
}

/// The path as UTF-8 (temp paths are).
fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Appends `line\n` for each line to `path` (creating it and its directory's file, not
/// the directory) in one write(2).
fn append(path: &Path, lines: &[&str]) {
    append_bytes(path, &join_lines(lines));
}

/// Appends `bytes` to `path` (creating it) in one write(2).
fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()));
    let n = f
        .write(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    assert_eq!(n, bytes.len(), "short write to {}", path.display());
}

/// Creates `path` (empty), with its parent directories.
fn touch(path: &Path) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create dir {}: {e}", parent.display()));
    }
    fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
}

/// Creates the directory `path` and its parents.
fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("create dir {}: {e}", path.display()));
}

/// A temp dir with empty `a.log` and `b.log`.
struct Two {
    dir: TempDir,
    a: PathBuf,
    b: PathBuf,
}

fn two_files() -> Two {
    let dir = tmp();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    touch(&a);
    touch(&b);
    Two { dir, a, b }
}

/// `--file a.log --file b.log` plus `args`.
async fn start_two(t: &Two, args: &[&str]) -> Server {
    Server::builder()
        .file(&t.a)
        .file(&t.b)
        .args(args)
        .start()
        .await
}

/// What the tests wrote, in seq order: each line's expected seq, file and offset.
#[derive(Debug, Default)]
struct Written {
    seq: u64,
    offsets: BTreeMap<String, u64>,
    lines: Vec<W>,
}

#[derive(Debug, Clone)]
struct W {
    seq: u64,
    file: String,
    offset: u64,
    line: String,
}

impl Written {
    /// Numbering continues after `seq` (the server's newest line).
    fn after(seq: u64) -> Written {
        Written {
            seq,
            ..Written::default()
        }
    }

    /// Records that `line` was written to (public name) `file`; returns it.
    fn record(&mut self, file: &str, line: &str) -> W {
        self.seq += 1;
        let off = self.offsets.entry(file.to_owned()).or_insert(0);
        let w = W {
            seq: self.seq,
            file: file.to_owned(),
            offset: *off,
            line: line.to_owned(),
        };
        *off += line.len() as u64 + 1;
        self.lines.push(w.clone());
        w
    }

    /// The lines of `files` (all when empty), in seq order.
    fn of(&self, files: &[&str]) -> Vec<W> {
        self.lines
            .iter()
            .filter(|w| files.is_empty() || files.contains(&w.file.as_str()))
            .cloned()
            .collect()
    }
}

impl W {
    /// The JSON line frame of this line.
    fn frame(&self) -> Value {
        json!({"seq": self.seq, "offset": self.offset, "file": self.file, "line": self.line})
    }

    /// `NAME: line`.
    fn prefixed(&self) -> String {
        format!("{}: {}", self.file, self.line)
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// The next Text message of `ws` before `deadline` (pings skipped); panics with `what`.
async fn next_text(ws: &mut WsClient, deadline: Instant, what: &str) -> String {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_message(left).await {
            Ok(Message::Text(t)) => return t.as_str().to_owned(),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(other) => panic!("{what}: expected a Text message, got {other:?}"),
            Err(why) => panic!("{what}: no Text message in time: {why:?}"),
        }
    }
}

/// A `format=text` WebSocket client.
struct Text {
    ws: WsClient,
    what: String,
    got: Vec<String>,
}

impl Text {
    /// `/ws?QUERY`.
    async fn connect(server: &Server, query: &str) -> Text {
        let what = format!("/ws?{query}");
        let ws = WsClient::connect(&server.ws_url(&what)).await;
        Text {
            ws,
            what,
            got: Vec::new(),
        }
    }

    async fn next(&mut self) -> String {
        let deadline = Instant::now() + PROMPT;
        let what = format!("{} (after {:?})", self.what, self.got);
        let t = next_text(&mut self.ws, deadline, &what).await;
        self.got.push(t.clone());
        t
    }

    /// The next messages are exactly `want`, in order.
    async fn expect<S: AsRef<str>>(&mut self, want: &[S]) {
        for (i, w) in want.iter().enumerate() {
            let got = self.next().await;
            assert_eq!(
                got,
                w.as_ref(),
                "{}: message #{i} of {} expected (all received: {:?})",
                self.what,
                want.len(),
                self.got
            );
        }
    }
}

/// A `format=json` WebSocket client that checks no frame carries a forbidden text (the
/// server's own paths).
struct Json {
    ws: WsClient,
    what: String,
    forbidden: Vec<String>,
    seen: Vec<Value>,
    epoch: String,
    hello_seq: u64,
}

impl Json {
    /// `/ws?format=json&QUERY`; reads and checks the `hello` frame.
    async fn connect(server: &Server, query: &str, forbidden: &[&Path]) -> Json {
        let what = format!("/ws?format=json&{query}");
        let ws = WsClient::connect(&server.ws_url(&what)).await;
        let mut j = Json {
            ws,
            what,
            forbidden: forbidden.iter().map(|p| s(p).to_owned()).collect(),
            seen: Vec::new(),
            epoch: String::new(),
            hello_seq: 0,
        };
        let hello = j.frame().await;
        assert_eq!(hello["event"], "hello", "{}: first frame {hello}", j.what);
        j.epoch = hello["epoch"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: hello without epoch: {hello}", j.what))
            .to_owned();
        j.hello_seq = hello["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: hello without seq: {hello}", j.what));
        j
    }

    /// The next frame, parsed; panics if it carries a forbidden text.
    async fn frame(&mut self) -> Value {
        self.frame_within(PROMPT).await
    }

    async fn frame_within(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let what = format!("{} (frames so far: {:?})", self.what, self.seen);
        let text = next_text(&mut self.ws, deadline, &what).await;
        for f in &self.forbidden {
            assert!(
                !text.contains(f.as_str()),
                "{}: a frame carries the server's path {f:?}: {text}",
                self.what
            );
        }
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: frame is not JSON ({e}): {text:?}", self.what));
        self.seen.push(v.clone());
        v
    }

    /// The next frames are exactly `want` (line frames), nothing between.
    async fn expect(&mut self, want: &[W]) {
        for (i, w) in want.iter().enumerate() {
            let got = self.frame().await;
            assert_eq!(
                got,
                w.frame(),
                "{}: frame #{i} of {} expected (frames so far: {:?})",
                self.what,
                want.len(),
                self.seen
            );
        }
    }

    /// The next frame, skipping `following`/`waiting` events of `file` (a file that just
    /// appeared may report its state; the contract does not say it must not).
    async fn frame_skipping_state_of(&mut self, file: &str) -> Value {
        loop {
            let v = self.frame().await;
            let state_event = matches!(v["event"].as_str(), Some("following" | "waiting"));
            if !(state_event && v["file"] == file) {
                return v;
            }
        }
    }
}

/// One SSE block.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Block {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
    retry: Option<String>,
}

/// An `/events` stream read block by block (comment-only blocks, the keep-alives,
/// skipped), checking no byte carries a forbidden text.
struct Sse {
    stream: SseStream,
    pos: usize,
    what: String,
    forbidden: Vec<String>,
    epoch: String,
    skip_state: Vec<String>,
}

impl Sse {
    /// `GET /events?QUERY` (extra `headers`): 200 `text/event-stream`, `retry: 1000` first.
    async fn open(
        server: &Server,
        query: &str,
        headers: &[(&str, &str)],
        forbidden: &[&Path],
    ) -> Sse {
        let what = format!("/events?{query}");
        let stream = SseStream::connect(server.addr(), &what, headers).await;
        assert_eq!(stream.status, 200, "{what}: {:?}", stream.headers);
        let epoch = server.healthz().await["epoch"]
            .as_str()
            .expect("epoch in /healthz")
            .to_owned();
        let mut sse = Sse {
            stream,
            pos: 0,
            what,
            forbidden: forbidden.iter().map(|p| s(p).to_owned()).collect(),
            epoch,
            skip_state: Vec::new(),
        };
        let first = sse.next().await;
        assert_eq!(
            first.retry.as_deref(),
            Some("1000"),
            "{}: {first:?}",
            sse.what
        );
        sse
    }

    async fn next(&mut self) -> Block {
        let deadline = Instant::now() + PROMPT;
        loop {
            let rest = &self.stream.raw_so_far()[self.pos..];
            if let Some(end) = rest.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8_lossy(&rest[..end]).into_owned();
                self.pos += end + 2;
                for f in &self.forbidden {
                    assert!(
                        !text.contains(f.as_str()),
                        "{}: an event carries the server's path {f:?}: {text:?}",
                        self.what
                    );
                }
                let mut b = Block::default();
                let mut only_comments = true;
                for line in text.split('\n') {
                    if line.starts_with(':') {
                        continue;
                    }
                    only_comments = false;
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match name {
                        "id" => b.id = Some(value),
                        "event" => b.event = Some(value),
                        "data" => b.data.push(value),
                        "retry" => b.retry = Some(value),
                        other => panic!("{}: unknown SSE field {other:?} in {text:?}", self.what),
                    }
                }
                if only_comments || self.is_skipped_state(&b) {
                    continue;
                }
                return b;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.stream.read_more(left).await {
                panic!(
                    "{}: no complete SSE event within {PROMPT:?} (eof: {}); body so far:\n{}",
                    self.what,
                    self.stream.eof(),
                    self.stream.text_so_far()
                );
            }
        }
    }

    /// Whether `b` is a `following`/`waiting` event of a file given to
    /// [`skip_state_of`](Self::skip_state_of).
    fn is_skipped_state(&self, b: &Block) -> bool {
        matches!(b.event.as_deref(), Some("following" | "waiting"))
            && b.data.len() == 1
            && serde_json::from_str::<Value>(&b.data[0]).is_ok_and(|v| {
                v["file"]
                    .as_str()
                    .is_some_and(|f| self.skip_state.iter().any(|s| s == f))
            })
    }

    /// The next block is the line `seq` with data `data`.
    async fn expect_line(&mut self, seq: u64, data: &str) {
        let b = self.next().await;
        let want = Block {
            id: Some(format!("{}:{seq}", self.epoch)),
            data: vec![data.to_owned()],
            ..Block::default()
        };
        assert_eq!(
            b,
            want,
            "{}: body so far:\n{}",
            self.what,
            self.stream.text_so_far()
        );
    }

    /// The next blocks are the lines `want`, as `data` gives their text.
    async fn expect_lines(&mut self, want: &[W], data: impl Fn(&W) -> String) {
        for w in want {
            self.expect_line(w.seq, &data(w)).await;
        }
    }

    /// From now on, [`next`](Self::next) skips `following`/`waiting` events of `file` (a
    /// file that just appeared may report its state; the contract does not say it must not).
    fn skip_state_of(&mut self, file: &str) {
        self.skip_state.push(file.to_owned());
    }

    /// The next block is the named event `name` with exactly `data` as JSON.
    async fn expect_event(&mut self, name: &str, data: &Value) {
        let b = self.next().await;
        assert_eq!(
            b.event.as_deref(),
            Some(name),
            "{}: expected event {name}, got {b:?}",
            self.what
        );
        assert!(b.id.is_none(), "{}: event with an id: {b:?}", self.what);
        assert_eq!(b.data.len(), 1, "{}: {b:?}", self.what);
        let v: Value = serde_json::from_str(&b.data[0])
            .unwrap_or_else(|e| panic!("{}: event data is not JSON ({e}): {b:?}", self.what));
        assert_eq!(&v, data, "{}: event {name}", self.what);
    }
}

/// The WebSocket upgrade of `/ws?QUERY` by hand: the response (101 or a refusal with
/// its body).
async fn ws_status(server: &Server, query: &str) -> Response {
    http_open(server.addr(), "GET", &format!("/ws?{query}"), &UPGRADE)
        .await
        .0
}

/// `GET /events?QUERY` as an EventSource sends it: the response head (and a body with a
/// `Content-Length`).
async fn sse_status(server: &Server, query: &str) -> Response {
    let accept = [("Accept", "text/event-stream")];
    http_open(server.addr(), "GET", &format!("/events?{query}"), &accept)
        .await
        .0
}

/// `GET /files` (with `headers`): 200 and a JSON array; returns it and the raw body.
async fn files(server: &Server, headers: &[(&str, &str)]) -> (Vec<Value>, String) {
    let resp = http_get(server.addr(), "/files", headers).await;
    assert_eq!(resp.status, 200, "GET /files: {resp:?}");
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("application/json"),
        "GET /files content-type {ctype:?}"
    );
    let body = resp.text();
    let list = resp
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("GET /files is not a JSON array: {body}"))
        .clone();
    (list, body)
}

/// The `name`s of a `/files` list, in order.
fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|f| {
            f["name"]
                .as_str()
                .unwrap_or_else(|| panic!("/files entry without a name: {f}"))
                .to_owned()
        })
        .collect()
}

/// Polls `/files` until `ok` accepts it; panics with the last list after [`PROMPT`].
async fn wait_files(server: &Server, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    poll_async(PROMPT, || async {
        let (list, _) = files(server, &[]).await;
        if ok(&list) { Ok(list) } else { Err(list) }
    })
    .await
    .unwrap_or_else(|last| panic!("/files did not show {what} within {PROMPT:?}: {last:?}"))
}

/// The sorted keys of a JSON object.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339 in UTC, as the contract's example).
fn is_utc_timestamp(v: &Value) -> bool {
    let Some(t) = v.as_str() else { return false };
    let Some(rest) = t.strip_suffix('Z') else {
        return false;
    };
    let b = rest.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    shape
        && (b.len() == 19
            || (b[19] == b'.' && b.len() > 20 && b[20..].iter().all(u8::is_ascii_digit)))
}

/// The body of a 404 for an unknown `file=`: `unknown file `ASKED`; known files: ...`;
/// returns the names listed.
fn known_files_in_404(resp: &Response, asked: &str, what: &str) -> Vec<String> {
    assert_eq!(resp.status, 404, "{what}: {resp:?} body {:?}", resp.text());
    let body = resp.text();
    let body = body.trim_end();
    let head = format!("unknown file `{asked}`; known files: ");
    let list = body
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{what}: 404 body {body:?} does not start with {head:?}"));
    list.split(", ").map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------
// 1. Two files: selections, merged order, prefixes, public names
// ---------------------------------------------------------------------------------------

/// Two `--file`s: a client on each file, clients on both (no `file=`, two `file=`, a glob
/// `file=*.log`), text with and without `prefix=`, JSON and SSE. Lines written one at a
/// time (each once the merged client has it) arrive: per file exactly its lines, no
/// prefix; merged, in write order, `NAME: ` prefixed unless `prefix=0`; `prefix=1` forces
/// it on a single file; JSON frames name the file by its public name, and no frame
/// carries the server's temp path.
#[tokio::test]
async fn two_files_each_selection_gets_exactly_its_lines_in_write_order() {
    let t = two_files();
    let server = start_two(&t, &[]).await;
    let dir = t.dir.path();
    let mut text_a = Text::connect(&server, "backlog=0&file=a.log").await;
    let mut text_b = Text::connect(&server, "backlog=0&file=b.log").await;
    let mut text_all = Text::connect(&server, "backlog=0").await;
    let mut text_all_bare = Text::connect(&server, "backlog=0&prefix=0").await;
    let mut text_a_forced = Text::connect(&server, "backlog=0&file=a.log&prefix=1").await;
    let mut text_ab = Text::connect(&server, "backlog=0&file=a.log&file=b.log").await;
    let mut text_glob = Text::connect(&server, "backlog=0&file=*.log").await;
    let mut json_all = Json::connect(&server, "backlog=0", &[dir]).await;
    let mut json_b = Json::connect(&server, "backlog=0&file=b.log", &[dir]).await;
    let mut sse_all = Sse::open(&server, "backlog=0", &[], &[dir]).await;
    let mut sse_a = Sse::open(&server, "backlog=0&file=a.log", &[], &[dir]).await;
    let mut sse_bare = Sse::open(&server, "backlog=0&prefix=0", &[], &[dir]).await;
    server.wait_clients(12, PROMPT).await;
    assert_eq!(json_all.hello_seq, 0, "nothing written yet");

    let mut w = Written::after(0);
    let plan = [
        ("a.log", "alpha 1"),
        ("b.log", "bravo 1"),
        ("b.log", "bravo 2"),
        ("a.log", "alpha 2"),
        ("a.log", "alpha 3"),
        ("b.log", "bravo 3"),
        ("a.log", ""),
        ("b.log", "bravo: with a colon"),
    ];
    for (file, line) in plan {
        let path = if file == "a.log" { &t.a } else { &t.b };
        append(path, &[line]);
        let rec = w.record(file, line);
        text_all.expect(&[rec.prefixed()]).await;
    }

    let text = |ws: &[W]| ws.iter().map(|w| w.line.clone()).collect::<Vec<_>>();
    let prefixed = |ws: &[W]| ws.iter().map(W::prefixed).collect::<Vec<_>>();
    let all = w.of(&[]);
    let only_a = w.of(&["a.log"]);
    let only_b = w.of(&["b.log"]);
    text_a.expect(&text(&only_a)).await;
    text_b.expect(&text(&only_b)).await;
    text_all_bare.expect(&text(&all)).await;
    text_a_forced.expect(&prefixed(&only_a)).await;
    text_ab.expect(&prefixed(&all)).await;
    text_glob.expect(&prefixed(&all)).await;
    json_all.expect(&all).await;
    json_b.expect(&only_b).await;
    sse_all.expect_lines(&all, W::prefixed).await;
    sse_a.expect_lines(&only_a, |w| w.line.clone()).await;
    sse_bare.expect_lines(&all, |w| w.line.clone()).await;

    // Nothing else was sent: one more line to each file is the very next message.
    append(&t.a, &["alpha end"]);
    let end_a = w.record("a.log", "alpha end");
    text_all.expect(&[end_a.prefixed()]).await;
    append(&t.b, &["bravo end"]);
    let end_b = w.record("b.log", "bravo end");
    text_all.expect(&[end_b.prefixed()]).await;
    text_a.expect(std::slice::from_ref(&end_a.line)).await;
    text_b.expect(std::slice::from_ref(&end_b.line)).await;
    text_ab.expect(&[end_a.prefixed(), end_b.prefixed()]).await;
    json_all.expect(&[end_a.clone(), end_b.clone()]).await;
    json_b.expect(std::slice::from_ref(&end_b)).await;
    sse_a.expect_line(end_a.seq, &end_a.line).await;
}

// ---------------------------------------------------------------------------------------
// 2. Names: duplicates, NAME=PATH, `=` in a path, NAME= on a glob
// ---------------------------------------------------------------------------------------

/// Two explicit files with the same public name (`x.log` in two directories): exit 2
/// before listening, and stderr names both paths and suggests `NAME=PATH`.
#[test]
fn duplicate_public_names_exit_2_naming_both_paths_and_name_eq_path() {
    let dir = tmp();
    let one = dir.path().join("d1/x.log");
    let two = dir.path().join("d2/x.log");
    touch(&one);
    touch(&two);
    let out = Server::spawn_raw(&["--file", s(&one), "--file", s(&two), "--port", "0"], &[])
        .finish(Duration::from_secs(10));
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    for needle in [s(&one), s(&two), "NAME=PATH"] {
        assert!(
            out.stderr.contains(needle),
            "stderr does not mention {needle:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("listening on"),
        "it listened anyway:\n{}",
        out.stderr
    );
}

/// `--file one=/d1/x.log --file two=/d2/x.log` starts; frames, prefixes, `file=` and
/// `/files` use `one` and `two`.
#[tokio::test]
async fn name_eq_path_resolves_duplicate_names() {
    let dir = tmp();
    let one = dir.path().join("d1/x.log");
    let two = dir.path().join("d2/x.log");
    touch(&one);
    touch(&two);
    let server = Server::builder()
        .arg("--file")
        .arg(format!("one={}", s(&one)))
        .arg("--file")
        .arg(format!("two={}", s(&two)))
        .start()
        .await;
    let d = dir.path();
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    let mut text_all = Text::connect(&server, "backlog=0").await;
    let mut text_two = Text::connect(&server, "backlog=0&file=two").await;
    server.wait_clients(3, PROMPT).await;
    let mut w = Written::after(0);
    append(&one, &["from one"]);
    let l1 = w.record("one", "from one");
    text_all.expect(&[l1.prefixed()]).await;
    append(&two, &["from two"]);
    let l2 = w.record("two", "from two");
    text_all.expect(&[l2.prefixed()]).await;
    json_all.expect(&w.of(&[])).await;
    text_two.expect(&["from two"]).await;
    let (list, body) = files(&server, &[]).await;
    assert_eq!(names(&list), ["one", "two"], "{body}");
    assert!(!body.contains(s(d)), "/files shows a server path: {body}");
    let refused = ws_status(&server, "file=x.log").await;
    let mut known = known_files_in_404(&refused, "x.log", "file=x.log");
    known.sort();
    assert_eq!(known, ["one", "two"]);
}

/// `NAME=` needs a non-empty text without `/` before the first `=`: `DIR/k=v.log` is a
/// path (named `k=v.log`); `g=DIR/g/*.log` names its matches `g/<relative>`.
#[tokio::test]
async fn eq_in_a_path_is_a_path_and_name_eq_glob_prefixes_matches() {
    let dir = tmp();
    let kv = dir.path().join("k=v.log");
    let gx = dir.path().join("g/x.log");
    touch(&kv);
    touch(&gx);
    let glob = dir.path().join("g/*.log");
    let server = Server::builder()
        .file(&kv)
        .arg("--file")
        .arg(format!("g={}", s(&glob)))
        .start()
        .await;
    let mut json_all = Json::connect(&server, "backlog=0", &[dir.path()]).await;
    server.wait_clients(1, PROMPT).await;
    let mut w = Written::after(0);
    append(&kv, &["kv line"]);
    let l1 = w.record("k=v.log", "kv line");
    json_all.expect(&[l1]).await;
    append(&gx, &["g line"]);
    let l2 = w.record("g/x.log", "g line");
    json_all.expect(&[l2]).await;
    let (list, body) = files(&server, &[]).await;
    assert_eq!(names(&list), ["k=v.log", "g/x.log"], "{body}");
    let mut text = Text::connect(&server, "backlog=5&file=g/x.log").await;
    text.expect(&["g line"]).await;
}

/// A glob match whose name is already taken (by an explicit `--file`, also one still
/// waiting for its file) is skipped with a warning, at start-up and when it appears later:
/// it is never read, and the name keeps meaning the explicit file.
#[tokio::test]
async fn glob_match_with_a_taken_name_is_skipped_with_a_warning() {
    let dir = tmp();
    let d = dir.path();
    let a = d.join("a.log");
    let late = d.join("late.log");
    touch(&a);
    touch(&d.join("g/a.log"));
    touch(&d.join("g/b.log"));
    let server = Server::builder()
        .file(&a)
        .file(&late)
        .file(d.join("g/*.log"))
        .start()
        .await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    server.wait_clients(1, PROMPT).await;
    wait_files(&server, "a.log, late.log, b.log", |l| {
        names(l) == ["a.log", "late.log", "b.log"]
    })
    .await;
    let warned = |name: &str| {
        server
            .stderr()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(name))
    };
    assert!(
        warned("a.log"),
        "no warning about the glob's a.log:\n{}",
        server.stderr()
    );

    let mut w = Written::after(0);
    append(&d.join("g/a.log"), &["glob a must not arrive"]);
    append(&a, &["explicit a"]);
    let l1 = w.record("a.log", "explicit a");
    json_all.expect(std::slice::from_ref(&l1)).await;
    append(&d.join("g/b.log"), &["glob b"]);
    let l2 = w.record("b.log", "glob b");
    json_all.expect(std::slice::from_ref(&l2)).await;

    // Appearing later under a name an explicit (waiting) file holds.
    append(&d.join("g/late.log"), &["glob late must not arrive"]);
    wait_until_async(PROMPT, "the server warns about the glob's late.log", || {
        std::future::ready(warned("late.log"))
    })
    .await;
    append(&late, &["explicit late"]);
    let l3 = w.record("late.log", "explicit late");
    let v = json_all.frame_skipping_state_of("late.log").await;
    assert_eq!(v, l3.frame(), "frames so far: {:?}", json_all.seen);
    let (list, body) = files(&server, &[]).await;
    assert_eq!(names(&list), ["a.log", "late.log", "b.log"], "{body}");
}

// ---------------------------------------------------------------------------------------
// 3. Globs: matches that appear, do not match, disappear; nested; directories later
// ---------------------------------------------------------------------------------------

/// `--file 'DIR/*.log'` with `a.log` there: `new.log` created after start is announced
/// (`added`, JSON and SSE) and read from its first byte (the lines written with its
/// creation included), promptly; `x.txt`, `new.log.bak` and a `.log` outside DIR are never
/// delivered; `/files` lists `new.log`; deleting it gives `removed` and drops it from
/// `/files` (and `file=new.log` is then unknown); creating it again is a new match, read
/// from its first byte.
#[tokio::test]
async fn glob_new_and_deleted_matches_inotify() {
    glob_follows_new_matches_from_their_first_byte_and_drops_deleted_ones(&[]).await;
}

/// The same with `--poll --poll-interval 50`.
#[tokio::test]
async fn glob_new_and_deleted_matches_poll() {
    glob_follows_new_matches_from_their_first_byte_and_drops_deleted_ones(POLL).await;
}

async fn glob_follows_new_matches_from_their_first_byte_and_drops_deleted_ones(watch: &[&str]) {
    let dir = tmp();
    let logs = dir.path().join("logs");
    let a = logs.join("a.log");
    mkdir(&logs);
    append(&a, &["a history"]);
    let server = Server::builder()
        .file(logs.join("*.log"))
        .args(watch)
        .start()
        .await;
    let d = dir.path();
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    let mut sse_all = Sse::open(&server, "backlog=0", &[], &[d]).await;
    let mut json_a = Json::connect(&server, "backlog=0&file=a.log", &[d]).await;
    server.wait_clients(3, PROMPT).await;
    assert_eq!(json_all.hello_seq, 1, "a.log's last line is history");
    let mut w = Written::after(1);
    w.offsets.insert("a.log".into(), "a history\n".len() as u64);

    // A new match, with two lines already in it when it is created.
    let new = logs.join("new.log");
    let created = Instant::now();
    append(&new, &["new 1", "new 2"]);
    let added = json_all.frame_skipping_state_of("new.log").await;
    assert_eq!(
        added,
        json!({"event": "added", "file": "new.log", "seq": 1}),
        "the first frame after new.log appears"
    );
    let n1 = w.record("new.log", "new 1");
    let n2 = w.record("new.log", "new 2");
    let first = json_all.frame_skipping_state_of("new.log").await;
    let took = created.elapsed();
    assert_eq!(first, n1.frame(), "new.log is read from its first byte");
    json_all.expect(std::slice::from_ref(&n2)).await;
    // The issue asks for "within a second"; 2 s leaves room for a loaded shared machine
    // and still fails a rescan loop of a few seconds.
    assert!(
        took < Duration::from_secs(2),
        "new.log's first line arrived {took:?} after it was created"
    );
    sse_all.skip_state_of("new.log");
    sse_all
        .expect_event(
            "added",
            &json!({"event": "added", "file": "new.log", "seq": 1}),
        )
        .await;
    sse_all.expect_line(n1.seq, "new.log: new 1").await;
    sse_all.expect_line(n2.seq, "new.log: new 2").await;

    // Non-matches, then a marker: the marker is the very next frame.
    append(&logs.join("x.txt"), &["txt must not arrive"]);
    append(&logs.join("new.log.bak"), &["bak must not arrive"]);
    append(
        &dir.path().join("outside.log"),
        &["outside must not arrive"],
    );
    mkdir(&logs.join("sub"));
    append(&logs.join("sub/deep.log"), &["deep must not arrive"]);
    append(&a, &["marker 1"]);
    let m1 = w.record("a.log", "marker 1");
    json_all.expect(std::slice::from_ref(&m1)).await;
    sse_all.expect_line(m1.seq, "a.log: marker 1").await;

    let list = wait_files(&server, "a.log and new.log, all read", |l| {
        names(l) == ["a.log", "new.log"]
            && l.iter()
                .all(|f| f["offset"] == f["size"] && f["lines"] == 2)
    })
    .await;
    assert_eq!(list[0]["lines"], 2, "a.log: history + marker: {list:?}");
    assert_eq!(list[1]["lines"], 2, "new.log: {list:?}");
    assert_eq!(list[1]["size"], 12, "new.log: {list:?}");
    let mut late = Text::connect(&server, "backlog=10&file=new.log").await;
    late.expect(&["new 1", "new 2"]).await;

    // Deleted for good: `removed`, gone from /files, unknown to file=.
    fs::remove_file(&new).expect("delete new.log");
    let removed = json_all.frame_skipping_state_of("new.log").await;
    assert_eq!(
        removed,
        json!({"event": "removed", "file": "new.log", "seq": m1.seq}),
        "the frame after new.log is deleted"
    );
    sse_all
        .expect_event(
            "removed",
            &json!({"event": "removed", "file": "new.log", "seq": m1.seq}),
        )
        .await;
    wait_files(&server, "only a.log", |l| names(l) == ["a.log"]).await;
    let gone = ws_status(&server, "file=new.log").await;
    assert_eq!(
        known_files_in_404(&gone, "new.log", "after removal"),
        ["a.log"]
    );
    append(&a, &["marker 2"]);
    let m2 = w.record("a.log", "marker 2");
    json_all.expect(std::slice::from_ref(&m2)).await;

    // The same name again: a new match, from its first byte.
    append(&new, &["new again"]);
    let again = json_all.frame_skipping_state_of("new.log").await;
    assert_eq!(
        again,
        json!({"event": "added", "file": "new.log", "seq": m2.seq})
    );
    w.offsets.insert("new.log".into(), 0);
    let n3 = w.record("new.log", "new again");
    let first = json_all.frame_skipping_state_of("new.log").await;
    assert_eq!(first, n3.frame());

    // A selection gets only its files' events: file=a.log saw none of new.log's
    // `added`/`removed`, only a.log's lines.
    append(&a, &["marker 3"]);
    let m3 = w.record("a.log", "marker 3");
    json_all.expect(std::slice::from_ref(&m3)).await;
    json_a.expect(&[m1, m2, m3]).await;
}

/// `--file 'DIR/*/*.log'`: `sub/app.log` and `old/x.log` are named by their path below DIR;
/// `file=sub/app.log` (no prefix) and `file=sub/*` (prefixed) select it; a directory
/// created later with a match in it (created at once, before any watch could be set on
/// it) is picked up, also by a `file=*/x.log` client connected before it existed; files at
/// other depths never are.
#[tokio::test]
async fn nested_glob_and_new_directories_inotify() {
    nested_glob_names_by_relative_path_and_picks_up_new_directories(&[]).await;
}

/// The same with `--poll --poll-interval 50`.
#[tokio::test]
async fn nested_glob_and_new_directories_poll() {
    nested_glob_names_by_relative_path_and_picks_up_new_directories(POLL).await;
}

async fn nested_glob_names_by_relative_path_and_picks_up_new_directories(watch: &[&str]) {
    let dir = tmp();
    let pods = dir.path().join("pods");
    let app = pods.join("sub/app.log");
    let old_x = pods.join("old/x.log");
    touch(&app);
    touch(&old_x);
    let server = Server::builder()
        .file(pods.join("*/*.log"))
        .args(watch)
        .start()
        .await;
    let d = dir.path();
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    let mut text_app = Text::connect(&server, "backlog=0&file=sub/app.log").await;
    let mut text_sub = Text::connect(&server, "backlog=0&file=sub/*").await;
    let mut text_x = Text::connect(&server, "backlog=0&file=*/x.log").await;
    let mut text_app_encoded = Text::connect(&server, "backlog=0&file=sub%2Fapp.log").await;
    server.wait_clients(5, PROMPT).await;
    let (list, body) = files(&server, &[]).await;
    let mut listed = names(&list);
    listed.sort();
    assert_eq!(listed, ["old/x.log", "sub/app.log"], "{body}");

    let mut w = Written::after(0);
    append(&app, &["sub 1"]);
    let s1 = w.record("sub/app.log", "sub 1");
    json_all.expect(std::slice::from_ref(&s1)).await;

    // A new directory and a match in it, created back to back.
    let later = pods.join("later");
    mkdir(&later);
    append(&later.join("x.log"), &["later 1"]);
    let added = json_all.frame_skipping_state_of("later/x.log").await;
    assert_eq!(
        added,
        json!({"event": "added", "file": "later/x.log", "seq": s1.seq})
    );
    let l1 = w.record("later/x.log", "later 1");
    let first = json_all.frame_skipping_state_of("later/x.log").await;
    assert_eq!(first, l1.frame());

    // Other depths and names never match.
    append(&pods.join("top.log"), &["top must not arrive"]);
    mkdir(&pods.join("sub/deep"));
    append(&pods.join("sub/deep/y.log"), &["deep must not arrive"]);
    append(&pods.join("sub/app.txt"), &["txt must not arrive"]);
    append(&app, &["marker"]);
    let m = w.record("sub/app.log", "marker");
    json_all.expect(std::slice::from_ref(&m)).await;
    append(&old_x, &["old x"]);
    let ox = w.record("old/x.log", "old x");
    json_all.expect(std::slice::from_ref(&ox)).await;

    text_app.expect(&["sub 1", "marker"]).await;
    text_app_encoded.expect(&["sub 1", "marker"]).await;
    text_sub
        .expect(&["sub/app.log: sub 1", "sub/app.log: marker"])
        .await;
    text_x
        .expect(&["later/x.log: later 1", "old/x.log: old x"])
        .await;
}

/// `--file 'DIR/**/*.log'`: `**` matches any depth, zero included (`top.log`,
/// `a/b/c.log`); a match created later several directories down (all created at once)
/// is added; names are paths below DIR; non-`.log` files at any depth never arrive.
#[tokio::test]
async fn double_star_glob_matches_any_depth() {
    let dir = tmp();
    let d = dir.path();
    let root = d.join("root");
    touch(&root.join("top.log"));
    touch(&root.join("a/b/c.log"));
    let server = Server::builder().file(root.join("**/*.log")).start().await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    server.wait_clients(1, PROMPT).await;
    wait_files(&server, "a/b/c.log and top.log", |l| {
        let mut listed = names(l);
        listed.sort();
        listed == ["a/b/c.log", "top.log"]
    })
    .await;
    let mut w = Written::after(0);
    append(&root.join("a/b/c.log"), &["deep 1"]);
    let l1 = w.record("a/b/c.log", "deep 1");
    json_all.expect(std::slice::from_ref(&l1)).await;
    mkdir(&root.join("x/y/z"));
    append(&root.join("x/y/z/new.log"), &["new deep 1"]);
    let v = json_all.frame_skipping_state_of("x/y/z/new.log").await;
    assert_eq!(
        v,
        json!({"event": "added", "file": "x/y/z/new.log", "seq": 1})
    );
    let l2 = w.record("x/y/z/new.log", "new deep 1");
    let v = json_all.frame_skipping_state_of("x/y/z/new.log").await;
    assert_eq!(v, l2.frame());
    append(&root.join("x/y/z/notes.txt"), &["txt must not arrive"]);
    append(&root.join("top.log"), &["top 1"]);
    let l3 = w.record("top.log", "top 1");
    json_all.expect(std::slice::from_ref(&l3)).await;
}

/// A glob match truncated in place: event `truncated` naming it (by its public name),
/// then its new content from offset 0; other files' streams never see the event.
#[tokio::test]
async fn truncated_glob_match_is_announced_by_name_and_reread() {
    let dir = tmp();
    let d = dir.path();
    let a = d.join("logs/a.log");
    let b = d.join("logs/b.log");
    touch(&a);
    touch(&b);
    let server = Server::builder().file(d.join("logs/*.log")).start().await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    let mut json_b = Json::connect(&server, "backlog=0&file=b.log", &[d]).await;
    server.wait_clients(2, PROMPT).await;
    let mut w = Written::after(0);
    append(&a, &["a 1", "a 2"]);
    let a1 = w.record("a.log", "a 1");
    let a2 = w.record("a.log", "a 2");
    json_all.expect(&[a1, a2]).await;
    OpenOptions::new()
        .write(true)
        .open(&a)
        .and_then(|f| f.set_len(0))
        .expect("truncate a.log");
    append(&a, &["after"]);
    let v = json_all.frame_skipping_state_of("a.log").await;
    assert_eq!(v, json!({"event": "truncated", "file": "a.log", "seq": 2}));
    w.offsets.insert("a.log".into(), 0);
    let a3 = w.record("a.log", "after");
    let v = json_all.frame_skipping_state_of("a.log").await;
    assert_eq!(v, a3.frame());
    append(&b, &["b 1"]);
    let b1 = w.record("b.log", "b 1");
    json_b.expect(std::slice::from_ref(&b1)).await;
    json_all.expect(std::slice::from_ref(&b1)).await;
}

/// Names with a space and non-ASCII letters are selected percent-encoded, prefixed as they
/// are, and shown as they are in JSON and `/files`.
#[tokio::test]
async fn names_with_spaces_and_unicode_are_selected_percent_encoded() {
    let dir = tmp();
    let d = dir.path();
    let spaced = d.join("my app.log");
    let accented = d.join("journal-été.log");
    touch(&spaced);
    touch(&accented);
    let server = Server::builder()
        .file(&spaced)
        .file(&accented)
        .start()
        .await;
    let mut text_all = Text::connect(&server, "backlog=0").await;
    let mut text_spaced = Text::connect(&server, "backlog=0&file=my%20app.log").await;
    let mut json_accented =
        Json::connect(&server, "backlog=0&file=journal-%C3%A9t%C3%A9.log", &[d]).await;
    server.wait_clients(3, PROMPT).await;
    let mut w = Written::after(0);
    append(&spaced, &["one"]);
    let l1 = w.record("my app.log", "one");
    text_all.expect(&["my app.log: one"]).await;
    append(&accented, &["deux"]);
    let l2 = w.record("journal-été.log", "deux");
    text_all.expect(&["journal-été.log: deux"]).await;
    text_spaced.expect(&[l1.line]).await;
    json_accented.expect(&[l2]).await;
    let (list, body) = files(&server, &[]).await;
    assert_eq!(names(&list), ["my app.log", "journal-été.log"], "{body}");
}

/// Stops the server (SIGSTOP, every thread stopped) until dropped (SIGCONT), so that
/// file changes are surely made before it looks.
struct Frozen<'a>(&'a Server);

impl<'a> Frozen<'a> {
    fn new(server: &'a Server) -> Frozen<'a> {
        server.signal(Sig::Stop);
        let pid = server.pid();
        let frozen = Frozen(server);
        wait_until(PROMPT, &format!("server {pid} is stopped"), || {
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            tasks.flatten().all(|t| {
                fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
                })
            })
        });
        frozen
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal(Sig::Cont);
    }
}

/// A glob match deleted while its writer goes on (the server frozen meanwhile, so the
/// lines are surely written after the deletion and before it looks): every line written
/// to the deleted file arrives, then `removed` with the seq of its last line.
#[tokio::test]
async fn deleted_glob_match_is_read_to_its_end_before_removed() {
    let dir = tmp();
    let d = dir.path();
    let a = d.join("logs/a.log");
    let gone = d.join("logs/gone.log");
    touch(&a);
    touch(&gone);
    let server = Server::builder().file(d.join("logs/*.log")).start().await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    server.wait_clients(1, PROMPT).await;
    let mut w = Written::after(0);
    let mut writer = open_append(&gone);
    writer.write_all(b"g 1\n").expect("write gone.log");
    let g1 = w.record("gone.log", "g 1");
    json_all.expect(std::slice::from_ref(&g1)).await;
    {
        let _frozen = Frozen::new(&server);
        fs::remove_file(&gone).expect("delete gone.log");
        writer
            .write_all(b"g 2\ng 3\n")
            .expect("write the deleted gone.log");
    }
    let g2 = w.record("gone.log", "g 2");
    let g3 = w.record("gone.log", "g 3");
    let v = json_all.frame_skipping_state_of("gone.log").await;
    assert_eq!(v, g2.frame(), "frames: {:?}", json_all.seen);
    let v = json_all.frame_skipping_state_of("gone.log").await;
    assert_eq!(v, g3.frame(), "frames: {:?}", json_all.seen);
    let v = json_all.frame_skipping_state_of("gone.log").await;
    assert_eq!(
        v,
        json!({"event": "removed", "file": "gone.log", "seq": g3.seq}),
        "frames: {:?}",
        json_all.seen
    );
    drop(writer);
    wait_files(&server, "only a.log", |l| names(l) == ["a.log"]).await;
    append(&a, &["a 1"]);
    let a1 = w.record("a.log", "a 1");
    json_all.expect(std::slice::from_ref(&a1)).await;
}

/// Removing a directory (`rm -r DIR/pods/p1`) removes its matches (`removed` each, gone from
/// `/files`); the glob's other matches go on, and the directory created again is picked up.
#[tokio::test]
async fn removing_a_directory_removes_its_matches() {
    let dir = tmp();
    let d = dir.path();
    let pods = d.join("pods");
    touch(&pods.join("p1/x.log"));
    touch(&pods.join("p1/y.log"));
    touch(&pods.join("p2/x.log"));
    let server = Server::builder().file(pods.join("*/*.log")).start().await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    server.wait_clients(1, PROMPT).await;
    fs::remove_dir_all(pods.join("p1")).expect("rm -r p1");
    let mut removed = BTreeSet::new();
    while removed.len() < 2 {
        let v = json_all.frame().await;
        if matches!(v["event"].as_str(), Some("following" | "waiting")) {
            continue;
        }
        assert_eq!(v["event"], "removed", "frames: {:?}", json_all.seen);
        assert_eq!(v["seq"], 0, "{v}");
        removed.insert(v["file"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        removed,
        BTreeSet::from(["p1/x.log".to_owned(), "p1/y.log".to_owned()])
    );
    wait_files(&server, "only p2/x.log", |l| names(l) == ["p2/x.log"]).await;
    let mut w = Written::after(0);
    append(&pods.join("p2/x.log"), &["p2 1"]);
    let l1 = w.record("p2/x.log", "p2 1");
    json_all.expect(std::slice::from_ref(&l1)).await;
    mkdir(&pods.join("p1"));
    append(&pods.join("p1/x.log"), &["p1 again"]);
    let v = json_all.frame_skipping_state_of("p1/x.log").await;
    assert_eq!(v, json!({"event": "added", "file": "p1/x.log", "seq": 1}));
    let l2 = w.record("p1/x.log", "p1 again");
    let v = json_all.frame_skipping_state_of("p1/x.log").await;
    assert_eq!(v, l2.frame());
}

/// 200 matches created back to back after start-up, one line each: every one is added
/// and its line arrives exactly once, after its `added`, from offset 0.
#[tokio::test]
async fn a_burst_of_new_matches_is_followed_exactly_once() {
    const N: usize = 200;
    let dir = tmp();
    let d = dir.path();
    let logs = d.join("logs");
    mkdir(&logs);
    let server = Server::builder().file(logs.join("*.log")).start().await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    server.wait_clients(1, PROMPT).await;
    for i in 0..N {
        append(
            &logs.join(format!("f{i:03}.log")),
            &[&format!("hello from {i:03}")],
        );
    }
    let mut added = BTreeSet::new();
    let mut lines = BTreeSet::new();
    let mut last_seq = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.len() < N {
        let v = json_all
            .frame_within(deadline.saturating_duration_since(Instant::now()))
            .await;
        let file = v["file"]
            .as_str()
            .unwrap_or_else(|| panic!("frame without a file: {v}"))
            .to_owned();
        match v["event"].as_str() {
            Some("following" | "waiting") => continue,
            Some("added") => {
                assert_eq!(v["seq"], last_seq, "{v}");
                assert!(added.insert(file.clone()), "{file} added twice: {v}");
            }
            Some(other) => panic!("unexpected event {other}: {v}"),
            None => {
                let i = file
                    .strip_prefix('f')
                    .and_then(|f| f.strip_suffix(".log"))
                    .unwrap_or_else(|| panic!("unexpected file in {v}"));
                assert!(added.contains(&file), "{file}'s line before its added: {v}");
                assert_eq!(v["line"], format!("hello from {i}"), "{v}");
                assert_eq!(v["offset"], 0, "{v}");
                let seq = v["seq"].as_u64().unwrap_or_else(|| panic!("seq in {v}"));
                assert_eq!(seq, last_seq + 1, "{v}");
                last_seq = seq;
                assert!(lines.insert(file.clone()), "{file}'s line twice: {v}");
            }
        }
    }
    assert_eq!(added.len(), N);
    // /files counts a line at the end of the reader's pass, just after it went out.
    wait_files(&server, "all 200, one line each", |l| {
        l.len() == N && l.iter().all(|f| f["lines"] == 1 && f["offset"] == 15)
    })
    .await;
}

/// Matches that arrive by rename, as atomic writers and `mv` make them: a file written as
/// `.tmp` (no match) then renamed to `moved.log`, a file moved in from outside the tree,
/// and a whole directory moved in (`mv /elsewhere/pod pods/pod`) with a match in it: each
/// is added and read from its first byte.
#[tokio::test]
async fn matches_moved_into_place_are_followed_inotify() {
    matches_moved_into_place_are_followed(&[]).await;
}

/// The same with `--poll --poll-interval 50`.
#[tokio::test]
async fn matches_moved_into_place_are_followed_poll() {
    matches_moved_into_place_are_followed(POLL).await;
}

/// The next frames are `added` for `name` (at the current seq), then `lines` from it.
async fn expect_added(json: &mut Json, w: &mut Written, name: &str, lines: &[&str]) {
    let v = json.frame_skipping_state_of(name).await;
    assert_eq!(
        v,
        json!({"event": "added", "file": name, "seq": w.seq}),
        "frames: {:?}",
        json.seen
    );
    for l in lines {
        let rec = w.record(name, l);
        let v = json.frame_skipping_state_of(name).await;
        assert_eq!(v, rec.frame(), "frames: {:?}", json.seen);
    }
}

async fn matches_moved_into_place_are_followed(watch: &[&str]) {
    let dir = tmp();
    let d = dir.path();
    let pods = d.join("pods");
    let elsewhere = d.join("elsewhere");
    touch(&pods.join("p0/a.log"));
    mkdir(&elsewhere);
    let server = Server::builder()
        .file(pods.join("*/*.log"))
        .args(watch)
        .start()
        .await;
    let mut json_all = Json::connect(&server, "backlog=0", &[d]).await;
    server.wait_clients(1, PROMPT).await;
    let mut w = Written::after(0);
    append(&pods.join("p0/.moved.tmp"), &["tmp 1", "tmp 2"]);
    fs::rename(pods.join("p0/.moved.tmp"), pods.join("p0/moved.log")).expect("rename tmp");
    expect_added(&mut json_all, &mut w, "p0/moved.log", &["tmp 1", "tmp 2"]).await;

    append(&elsewhere.join("in.log"), &["from elsewhere"]);
    fs::rename(elsewhere.join("in.log"), pods.join("p0/in.log")).expect("move file in");
    expect_added(&mut json_all, &mut w, "p0/in.log", &["from elsewhere"]).await;

    mkdir(&elsewhere.join("pod"));
    append(&elsewhere.join("pod/x.log"), &["moved pod 1"]);
    fs::rename(elsewhere.join("pod"), pods.join("pod")).expect("move dir in");
    expect_added(&mut json_all, &mut w, "pod/x.log", &["moved pod 1"]).await;
    // The moved-in directory is watched: a new match in it is seen too.
    append(&pods.join("pod/y.log"), &["in moved dir"]);
    expect_added(&mut json_all, &mut w, "pod/y.log", &["in moved dir"]).await;

    append(&pods.join("p0/a.log"), &["marker"]);
    let m = w.record("p0/a.log", "marker");
    json_all.expect(std::slice::from_ref(&m)).await;
}

// ---------------------------------------------------------------------------------------
// 4. Rotation of a glob match that the glob also matches rotated
// ---------------------------------------------------------------------------------------

/// A `fixed_line`-style numbered line, 12 bytes with its `\n`.
fn nline(i: u64) -> String {
    format!("line {i:06}")
}

/// Writes lines `from..=to` through `f` in bursts of 25 lines (one write each).
fn write_range(f: &mut fs::File, from: u64, to: u64) {
    let mut next = from;
    while next <= to {
        let end = (next + 24).min(to);
        let bytes = join_lines((next..=end).map(nline));
        let n = f.write(&bytes).expect("write log file");
        assert_eq!(n, bytes.len(), "short write");
        next = end + 1;
    }
}

fn open_append(path: &Path) -> fs::File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Waits until `/healthz` says the file named `name` has been read to `offset`.
async fn wait_read_to(server: &Server, name: &str, offset: u64) {
    server
        .wait_health(PROMPT, |h| {
            h["files"].as_array().is_some_and(|fs| {
                fs.iter()
                    .any(|f| f["name"] == name && f["offset"] == offset)
            })
        })
        .await
        .unwrap_or_else(|h| panic!("{name} was not read to {offset} within {PROMPT:?}: {h}"));
}

/// `--file 'DIR/app.log*'`: logrotate `create` twice (`app.log.1` → `app.log.2`,
/// `app.log` → `app.log.1`, a new `app.log`), the logger writing to the old file for a
/// while after each rename: every line arrives exactly once, each file's lines in order at
/// their true offsets; the rotated file, which the glob matches under its new name, is
/// never read again from its start.
#[tokio::test]
async fn glob_rotation_exactly_once_inotify() {
    glob_rotation_is_exactly_once("app.log*", &[]).await;
}

/// The same with `--poll --poll-interval 50`.
#[tokio::test]
async fn glob_rotation_exactly_once_poll() {
    glob_rotation_is_exactly_once("app.log*", POLL).await;
}

/// The same rotations under `--file 'DIR/*.log'`, which does not match the rotated names:
/// every line exactly once, all of them named `app.log`.
#[tokio::test]
async fn glob_rotation_to_an_unmatched_name_is_exactly_once_inotify() {
    glob_rotation_is_exactly_once("*.log", &[]).await;
}

/// The same with `--poll --poll-interval 50`.
#[tokio::test]
async fn glob_rotation_to_an_unmatched_name_is_exactly_once_poll() {
    glob_rotation_is_exactly_once("*.log", POLL).await;
}

/// See [`glob_rotation_exactly_once_inotify`]; `pattern` is the glob in DIR.
async fn glob_rotation_is_exactly_once(pattern: &str, watch: &[&str]) {
    let matches_rotated = pattern == "app.log*";
    let dir = tmp();
    let app = dir.path().join("app.log");
    touch(&app);
    let server = Server::builder()
        .file(dir.path().join(pattern))
        .args(watch)
        .start()
        .await;
    let mut json_all = Json::connect(&server, "backlog=0", &[dir.path()]).await;
    let mut text_all = Text::connect(&server, "backlog=0").await;
    server.wait_clients(2, PROMPT).await;

    // Generation 1: lines 1..=300 (250 before its rename, 50 after it).
    let mut logger = open_append(&app);
    write_range(&mut logger, 1, 200);
    wait_read_to(&server, "app.log", 200 * 12).await;
    write_range(&mut logger, 201, 250);
    fs::rename(&app, dir.path().join("app.log.1")).expect("rename app.log");
    touch(&app);
    write_range(&mut logger, 251, 300);
    // Generation 2: lines 301..=500, then rotated the same way.
    let mut logger = open_append(&app);
    write_range(&mut logger, 301, 450);
    wait_read_to(&server, "app.log", 150 * 12).await;
    write_range(&mut logger, 451, 480);
    fs::rename(dir.path().join("app.log.1"), dir.path().join("app.log.2")).expect("rename .1");
    fs::rename(&app, dir.path().join("app.log.1")).expect("rename app.log");
    touch(&app);
    write_range(&mut logger, 481, 500);
    // Generation 3: lines 501..=700.
    let mut logger = open_append(&app);
    write_range(&mut logger, 501, 700);

    // Generation of line i, its offset in its file, and the names it may carry.
    let generation = |i: u64| match i {
        1..=300 => (1, (i - 1) * 12),
        301..=500 => (2, (i - 301) * 12),
        _ => (3, (i - 501) * 12),
    };
    let allowed: [&[&str]; 3] = if matches_rotated {
        [
            &["app.log", "app.log.1", "app.log.2"],
            &["app.log", "app.log.1"],
            &["app.log"],
        ]
    } else {
        [&["app.log"], &["app.log"], &["app.log"]]
    };
    // Every event names its file, by one of the glob's names.
    let check_event_file = |v: &Value| {
        assert!(
            v["file"].as_str().is_some_and(|f| allowed[0].contains(&f)),
            "event without a public file name: {v}"
        );
    };
    let mut seen = vec![false; 701];
    let mut last_seq = json_all.hello_seq;
    let mut last_in_gen = [0u64; 3];
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut count = 0;
    while count < 700 {
        let v = json_all
            .frame_within(deadline.saturating_duration_since(Instant::now()))
            .await;
        if let Some(ev) = v["event"].as_str() {
            assert!(
                matches!(
                    ev,
                    "rotated" | "added" | "removed" | "following" | "waiting"
                ),
                "unexpected event {v} after {count} lines"
            );
            check_event_file(&v);
            events.push(v);
            continue;
        }
        let line = v["line"].as_str().unwrap_or_else(|| panic!("frame {v}"));
        let i = line
            .strip_prefix("line ")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|i| (1..=700).contains(i))
            .unwrap_or_else(|| panic!("unexpected line frame {v}"));
        assert!(
            !seen[i as usize],
            "line {i} delivered twice (again as {v}); events: {events:?}"
        );
        seen[i as usize] = true;
        let (g, offset) = generation(i);
        let file = v["file"].as_str().unwrap_or_default();
        assert!(
            allowed[g - 1].contains(&file),
            "line {i} (generation {g}) named {file:?}: {v}"
        );
        assert_eq!(v["offset"], offset, "line {i}: {v}");
        let seq = v["seq"].as_u64().unwrap_or_else(|| panic!("seq in {v}"));
        assert!(seq > last_seq, "seq not increasing at {v}");
        last_seq = seq;
        assert!(
            i > last_in_gen[g - 1],
            "line {i} after line {} of its file",
            last_in_gen[g - 1]
        );
        last_in_gen[g - 1] = i;
        count += 1;
    }
    // Nothing after: a marker in the current app.log is the very next line frame.
    logger.write_all(b"end\n").expect("write end");
    let v = loop {
        let v = json_all.frame().await;
        if v["event"].is_string() {
            assert!(
                matches!(
                    v["event"].as_str(),
                    Some("rotated" | "added" | "removed" | "following" | "waiting")
                ),
                "unexpected event {v}"
            );
            check_event_file(&v);
            events.push(v);
            continue;
        }
        break v;
    };
    assert_eq!(
        v["line"], "end",
        "after all 700 lines: {v}; events: {events:?}"
    );
    assert_eq!(v["file"], "app.log", "{v}");
    // The text stream (a glob: prefixed) carries the same 701 lines once each.
    let got = text_all.ws.recv_lines(701, PROMPT).await;
    let mut texts: Vec<String> = got
        .iter()
        .map(|t| {
            t.split_once(": ")
                .filter(|(name, _)| name.starts_with("app.log"))
                .unwrap_or_else(|| panic!("text line without a NAME: prefix: {t:?}"))
                .1
                .to_owned()
        })
        .collect();
    texts.sort();
    let mut want: Vec<String> = (1..=700).map(nline).chain(["end".to_owned()]).collect();
    want.sort();
    assert_eq!(texts, want, "the text stream, sorted");
}

// ---------------------------------------------------------------------------------------
// 5. stdin
// ---------------------------------------------------------------------------------------

/// `--file -`: lines piped in arrive as `stdin` (a single file: no prefix); at EOF the
/// partial last line is delivered, then the event `ended` (README); the server keeps
/// running, `/files` says `ended`, and a new client with a backlog gets the history.
#[tokio::test]
async fn stdin_lines_arrive_and_eof_keeps_the_history() {
    let mut server = Server::builder()
        .arg("--file")
        .arg("-")
        .stdin_piped()
        .start()
        .await;
    let mut stdin = server.take_stdin().expect("piped stdin");
    let mut text = Text::connect(&server, "backlog=0").await;
    let mut json = Json::connect(&server, "backlog=0", &[]).await;
    server.wait_clients(2, PROMPT).await;
    stdin.write_all(b"s1\ns2\n").expect("write stdin");
    stdin.flush().expect("flush stdin");
    text.expect(&["s1", "s2"]).await;
    for (seq, line) in [(1, "s1"), (2, "s2")] {
        let v = json.frame().await;
        assert_eq!(v["seq"], seq, "{v}");
        assert_eq!(v["file"], "stdin", "{v}");
        assert_eq!(v["line"], line, "{v}");
    }
    stdin.write_all(b"partial").expect("write stdin");
    drop(stdin);
    text.expect(&["partial"]).await;
    let v = json.frame().await;
    assert_eq!(
        (&v["seq"], &v["line"]),
        (&json!(3), &json!("partial")),
        "{v}"
    );
    let ended = json!({"event": "ended", "file": "stdin", "seq": 3});
    assert_eq!(json.frame().await, ended, "after stdin's last line");

    let list = wait_files(&server, "stdin ended", |l| {
        l.len() == 1 && l[0]["state"] == "ended"
    })
    .await;
    assert_eq!(list[0]["name"], "stdin", "{list:?}");
    assert_eq!(list[0]["lines"], 3, "{list:?}");
    assert!(is_utc_timestamp(&list[0]["last_line_at"]), "{list:?}");
    assert!(
        server.is_running(),
        "the server exited at stdin's EOF:\n{}",
        server.stderr()
    );
    let h = server.healthz().await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["files"][0]["name"], "stdin", "{h}");
    assert_eq!(h["files"][0]["state"], "ended", "{h}");
    let mut late = Text::connect(&server, "backlog=10").await;
    late.expect(&["s1", "s2", "partial"]).await;
    let mut late_sse = Sse::open(&server, "backlog=10", &[], &[]).await;
    late_sse.expect_line(1, "s1").await;
    late_sse.expect_line(2, "s2").await;
    late_sse.expect_line(3, "partial").await;
    late_sse.expect_event("ended", &ended).await;
    assert!(
        server.is_running(),
        "the server exited:\n{}",
        server.stderr()
    );
}

/// `--file in=- --file a.log`: stdin named `in`, prefixed in the merged stream; after its
/// EOF the other file keeps streaming.
#[tokio::test]
async fn named_stdin_beside_a_file_keeps_serving_the_file_after_eof() {
    let dir = tmp();
    let a = dir.path().join("a.log");
    touch(&a);
    let mut server = Server::builder()
        .arg("--file")
        .arg("in=-")
        .arg("--file")
        .arg(s(&a))
        .stdin_piped()
        .start()
        .await;
    let mut stdin = server.take_stdin().expect("piped stdin");
    let mut text = Text::connect(&server, "backlog=0").await;
    let mut text_in = Text::connect(&server, "backlog=0&file=in").await;
    server.wait_clients(2, PROMPT).await;
    stdin.write_all(b"piped 1\n").expect("write stdin");
    text.expect(&["in: piped 1"]).await;
    append(&a, &["file 1"]);
    text.expect(&["a.log: file 1"]).await;
    drop(stdin);
    let list = wait_files(&server, "in ended", |l| {
        l.iter().any(|f| f["name"] == "in" && f["state"] == "ended")
    })
    .await;
    append(&a, &["file 2"]);
    text.expect(&["a.log: file 2"]).await;
    text_in.expect(&["piped 1"]).await;
    assert!(
        server.is_running(),
        "the server exited:\n{}",
        server.stderr()
    );
    // `/files` lists "in the order they were added": as given on the command line.
    assert_eq!(names(&list), ["in", "a.log"], "/files order: {list:?}");
}

// ---------------------------------------------------------------------------------------
// 6. Resume across a merged stream and a selection
// ---------------------------------------------------------------------------------------

/// `since=LAST&epoch=E` after a disconnect: on the merged stream (JSON and text), exactly
/// the lines missed, once each, in order; on `file=a.log`, exactly a.log's missed lines
/// (also when LAST is the seq of a b.log line); SSE `Last-Event-ID` on `file=b.log` the
/// same. Then the next line written is the very next frame (no late duplicate).
#[tokio::test]
async fn since_resumes_exactly_once_on_merged_and_selected_streams() {
    let t = two_files();
    let d = t.dir.path();
    let server = start_two(&t, &[]).await;
    let mut merged = Json::connect(&server, "backlog=0", &[d]).await;
    let mut only_a = Json::connect(&server, "backlog=0&file=a.log", &[d]).await;
    server.wait_clients(2, PROMPT).await;
    let epoch = merged.epoch.clone();
    let mut w = Written::after(0);
    for (file, path, line) in [
        ("a.log", &t.a, "a1"),
        ("b.log", &t.b, "b1"),
        ("a.log", &t.a, "a2"),
        ("b.log", &t.b, "b2"),
    ] {
        append(path, &[line]);
        let rec = w.record(file, line);
        merged.expect(std::slice::from_ref(&rec)).await;
    }
    only_a.expect(&w.of(&["a.log"])).await;
    let seen = w.lines.len();
    merged.ws.close().await;
    only_a.ws.close().await;
    server.wait_clients(0, PROMPT).await;

    // Missed while disconnected.
    for (file, path, line) in [
        ("b.log", &t.b, "b3"),
        ("a.log", &t.a, "a3"),
        ("a.log", &t.a, "a4"),
        ("b.log", &t.b, "b4"),
    ] {
        append(path, &[line]);
        let rec = w.record(file, line);
        server.wait_seq(rec.seq, PROMPT).await;
    }
    let missed: Vec<W> = w.lines[seen..].to_vec();
    let missed_of = |f: &str| {
        missed
            .iter()
            .filter(|w| w.file == f)
            .cloned()
            .collect::<Vec<_>>()
    };

    let mut merged = Json::connect(&server, &format!("since=4&epoch={epoch}"), &[d]).await;
    merged.expect(&missed).await;
    let mut merged_text = Text::connect(&server, &format!("since=4&epoch={epoch}")).await;
    merged_text
        .expect(&missed.iter().map(W::prefixed).collect::<Vec<_>>())
        .await;
    // a.log's last line seen was seq 3; resuming after 3 or after 4 (a b.log line) is the same.
    let mut a_after_3 =
        Json::connect(&server, &format!("file=a.log&since=3&epoch={epoch}"), &[d]).await;
    a_after_3.expect(&missed_of("a.log")).await;
    let mut a_after_4 = Text::connect(&server, &format!("file=a.log&since=4&epoch={epoch}")).await;
    a_after_4.expect(&["a3", "a4"]).await;
    let id = format!("{epoch}:4");
    let mut sse_b = Sse::open(
        &server,
        "file=b.log&backlog=5",
        &[("Last-Event-ID", id.as_str())],
        &[d],
    )
    .await;
    sse_b
        .expect_lines(&missed_of("b.log"), |w| w.line.clone())
        .await;
    server.wait_clients(5, PROMPT).await;

    append(&t.a, &["a5"]);
    let a5 = w.record("a.log", "a5");
    merged.expect(std::slice::from_ref(&a5)).await;
    merged_text.expect(&[a5.prefixed()]).await;
    a_after_3.expect(std::slice::from_ref(&a5)).await;
    a_after_4.expect(&["a5"]).await;
    append(&t.b, &["b5"]);
    let b5 = w.record("b.log", "b5");
    merged.expect(std::slice::from_ref(&b5)).await;
    sse_b.expect_line(b5.seq, "b5").await;
}

/// Disk replay works per file: with `--history-bytes 4096` (far less than what is
/// written), `since=20` on the merged stream and on `file=b.log` replays from the files
/// on disk exactly the lines after seq 20 (of the selection), each with its own seq,
/// file and offset, then goes live.
#[tokio::test]
async fn since_older_than_memory_replays_each_file_from_disk() {
    let t = two_files();
    let d = t.dir.path();
    let server = start_two(&t, &["--history-bytes", "4096"]).await;
    let epoch = server.healthz().await["epoch"]
        .as_str()
        .expect("epoch in /healthz")
        .to_owned();
    let mut w = Written::after(0);
    for batch in 0..20 {
        for (file, path) in [("a.log", &t.a), ("b.log", &t.b)] {
            let lines: Vec<String> = (0..10)
                .map(|i| format!("{} batch {batch:02} line {i} padding-padding", &file[..1]))
                .collect();
            append(path, &lines.iter().map(String::as_str).collect::<Vec<_>>());
            let mut last = 0;
            for l in &lines {
                last = w.record(file, l).seq;
            }
            server.wait_seq(last, PROMPT).await;
        }
    }
    assert_eq!(w.seq, 400);
    let after_20 = |files: &[&str]| {
        w.of(files)
            .into_iter()
            .filter(|l| l.seq > 20)
            .collect::<Vec<_>>()
    };
    let q = format!("since=20&epoch={epoch}");
    let mut merged = Json::connect(&server, &q, &[d]).await;
    merged.expect(&after_20(&[])).await;
    let mut only_b = Json::connect(&server, &format!("file=b.log&{q}"), &[d]).await;
    only_b.expect(&after_20(&["b.log"])).await;
    let mut text_a = Text::connect(&server, &format!("file=a.log&{q}")).await;
    let want: Vec<String> = after_20(&["a.log"])
        .iter()
        .map(|l| l.line.clone())
        .collect();
    text_a.expect(&want).await;
    server.wait_clients(3, PROMPT).await;
    append(&t.b, &["b live"]);
    let live = w.record("b.log", "b live");
    merged.expect(std::slice::from_ref(&live)).await;
    only_b.expect(std::slice::from_ref(&live)).await;
    append(&t.a, &["a live"]);
    text_a.expect(&["a live"]).await;
}

// ---------------------------------------------------------------------------------------
// 7. GET /files and /healthz
// ---------------------------------------------------------------------------------------

/// `/files`: one object per file in command-line order with exactly `name`, `state`,
/// `size`, `offset`, `lines`, `last_line_at` (history lines counted; `last_line_at` a UTC
/// timestamp once a line was read, `null` before; a missing file `waiting`); no `path`
/// and no server path in the body. `/healthz` lists `name`, `state`, `inode`, `size`,
/// `offset` per file, no path.
#[tokio::test]
async fn files_lists_each_file_with_exact_fields_and_no_paths() {
    let dir = tmp();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    let c = dir.path().join("c.log");
    append(&a, &["h1", "h2"]);
    touch(&b);
    let server = Server::builder().file(&a).file(&b).file(&c).start().await;
    let d = s(dir.path());

    // a.log's history is read at start-up; wait for its pass to be counted.
    wait_files(&server, "a.log's history read", |l| {
        l.first()
            .is_some_and(|a| a["lines"] == 2 && a["offset"] == 6)
    })
    .await;
    let (list, body) = files(&server, &[]).await;
    assert!(!body.contains(d), "/files shows a server path: {body}");
    assert!(!body.contains("\"path\""), "/files has a path key: {body}");
    let want_keys = ["last_line_at", "lines", "name", "offset", "size", "state"];
    for f in &list {
        assert_eq!(keys(f), want_keys, "{f}");
    }
    assert_eq!(names(&list), ["a.log", "b.log", "c.log"], "{body}");
    assert_eq!(
        (
            &list[0]["state"],
            &list[0]["size"],
            &list[0]["offset"],
            &list[0]["lines"]
        ),
        (&json!("following"), &json!(6), &json!(6), &json!(2)),
        "a.log: {body}"
    );
    assert_eq!(
        list[1],
        json!({"name": "b.log", "state": "following", "size": 0, "offset": 0, "lines": 0,
               "last_line_at": null}),
        "b.log: {body}"
    );
    assert_eq!(
        list[2],
        json!({"name": "c.log", "state": "waiting", "size": 0, "offset": 0, "lines": 0,
               "last_line_at": null}),
        "c.log: {body}"
    );

    append(&b, &["b live"]);
    append(&c, &["c1", "c22"]);
    let list = wait_files(&server, "b.log and c.log read", |l| {
        l.len() == 3
            && (&l[1]["offset"], &l[1]["lines"]) == (&json!(7), &json!(1))
            && (&l[2]["offset"], &l[2]["lines"]) == (&json!(7), &json!(2))
    })
    .await;
    for f in &list {
        assert_eq!(keys(f), want_keys, "{f}");
    }
    let stamp_b = list[1]["last_line_at"].clone();
    let stamp_c = list[2]["last_line_at"].clone();
    assert!(is_utc_timestamp(&stamp_b), "b.log last_line_at: {list:?}");
    assert!(is_utc_timestamp(&stamp_c), "c.log last_line_at: {list:?}");
    assert_eq!(
        list[1],
        json!({"name": "b.log", "state": "following", "size": 7, "offset": 7, "lines": 1,
               "last_line_at": stamp_b}),
    );
    assert_eq!(
        list[2],
        json!({"name": "c.log", "state": "following", "size": 7, "offset": 7, "lines": 2,
               "last_line_at": stamp_c}),
    );
    assert_eq!(list[0]["lines"], 2, "a.log unchanged: {list:?}");

    let h = server.healthz().await;
    let hfiles = h["files"]
        .as_array()
        .unwrap_or_else(|| panic!("/healthz files: {h}"));
    assert_eq!(names(hfiles), ["a.log", "b.log", "c.log"], "{h}");
    for f in hfiles {
        assert_eq!(
            keys(f),
            ["inode", "last_line_at", "name", "offset", "size", "state"],
            "{f}"
        );
    }
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("stat"));
    assert_eq!(hfiles[0]["inode"], ino(&a), "{h}");
    assert_eq!(hfiles[2]["inode"], ino(&c), "{h}");
    assert_eq!(
        (
            &hfiles[1]["size"],
            &hfiles[1]["offset"],
            &hfiles[1]["state"]
        ),
        (&json!(7), &json!(7), &json!("following")),
        "{h}"
    );
    assert!(
        !h.to_string().contains(d),
        "/healthz shows a server path: {h}"
    );
}

/// `--show-paths`: `/files` also gives each file's `path`, as given.
#[tokio::test]
async fn show_paths_adds_the_path_to_files() {
    let t = two_files();
    let server = start_two(&t, &["--show-paths"]).await;
    let (list, body) = files(&server, &[]).await;
    assert_eq!(names(&list), ["a.log", "b.log"], "{body}");
    assert_eq!(list[0]["path"], s(&t.a), "{body}");
    assert_eq!(list[1]["path"], s(&t.b), "{body}");
    for f in &list {
        assert_eq!(
            keys(f),
            [
                "last_line_at",
                "lines",
                "name",
                "offset",
                "path",
                "size",
                "state"
            ],
            "{f}"
        );
    }
}

/// With `--token`, `/files` is 401 without it (or with a wrong one) and 200 with it; an
/// unknown `file=` without it is a 401 too (the 404 would list the names); `/healthz`
/// stays open and lists names without paths.
#[tokio::test]
async fn files_needs_the_token() {
    let t = two_files();
    let server = start_two(&t, &["--token", "s3cret-files-token"]).await;
    for headers in [vec![], vec![("Authorization", "Bearer wrong")]] {
        let r = http_get(server.addr(), "/files", &headers).await;
        assert_eq!(r.status, 401, "/files with {headers:?}: {r:?}");
        assert!(
            !r.text().contains("a.log"),
            "401 body names files: {:?}",
            r.text()
        );
    }
    // An unknown file= without the token is refused for the token, not answered with the
    // list of names.
    for (what, r) in [
        ("/ws", ws_status(&server, "file=nope").await),
        ("/events", sse_status(&server, "file=nope").await),
    ] {
        assert_eq!(r.status, 401, "{what}?file=nope without the token: {r:?}");
        assert!(!r.text().contains("a.log"), "{what}: {:?}", r.text());
    }
    let r = http_get(server.addr(), "/files?token=wrong", &[]).await;
    assert_eq!(r.status, 401, "/files?token=wrong: {r:?}");
    let (list, _) = files(&server, &[("Authorization", "Bearer s3cret-files-token")]).await;
    assert_eq!(names(&list), ["a.log", "b.log"]);
    let r = http_get(server.addr(), "/files?token=s3cret-files-token", &[]).await;
    assert_eq!(r.status, 200, "/files?token=: {r:?}");
    let h = server.healthz().await;
    assert_eq!(
        names(h["files"].as_array().expect("files")),
        ["a.log", "b.log"]
    );
    assert!(!h.to_string().contains(s(t.dir.path())), "{h}");
}

// ---------------------------------------------------------------------------------------
// 8. Unknown names and traversal
// ---------------------------------------------------------------------------------------

/// `file=nope` (and a `file=` glob matching nothing, and one unknown among known ones) is
/// a 404 on `/ws` and `/events` whose body lists the known names.
#[tokio::test]
async fn unknown_file_is_404_listing_the_known_names() {
    let t = two_files();
    let server = start_two(&t, &[]).await;
    for (query, asked) in [
        ("file=nope", "nope"),
        ("file=nope*", "nope*"),
        ("file=a.log&file=nope", "nope"),
    ] {
        for (what, resp) in [
            ("/ws", ws_status(&server, query).await),
            ("/events", sse_status(&server, query).await),
        ] {
            let known = known_files_in_404(&resp, asked, &format!("{what}?{query}"));
            assert_eq!(known, ["a.log", "b.log"], "{what}?{query}");
        }
    }
    server.wait_clients(0, PROMPT).await;
}

/// More than 100 followed files: the 404 lists 100 names, then `… and N more (GET /files)`.
#[tokio::test]
async fn unknown_file_404_lists_at_most_100_names() {
    let dir = tmp();
    for i in 0..105 {
        touch(&dir.path().join(format!("f{i:03}.log")));
    }
    let server = Server::builder()
        .file(dir.path().join("*.log"))
        .start()
        .await;
    wait_files(&server, "105 files", |l| l.len() == 105).await;
    let resp = ws_status(&server, "file=nope").await;
    assert_eq!(resp.status, 404, "{resp:?}");
    let body = resp.text();
    let body = body.trim_end();
    let list = body
        .strip_prefix("unknown file `nope`; known files: ")
        .unwrap_or_else(|| panic!("404 body {body:?}"));
    let (names_part, more) = list
        .split_once("… and ")
        .unwrap_or_else(|| panic!("no `… and N more` in {body:?}"));
    assert_eq!(more, "5 more (GET /files)", "{body:?}");
    let listed: BTreeSet<&str> = names_part
        .trim_end()
        .trim_end_matches(',')
        .split(", ")
        .map(str::trim)
        .collect();
    assert_eq!(listed.len(), 100, "{body:?}");
    assert!(
        listed
            .iter()
            .all(|n| n.len() == 8 && n.starts_with('f') && n.ends_with(".log")),
        "{body:?}"
    );
}

/// Names never become paths: `../secret.log`, `%2e%2e%2fsecret.log`, `..%2Fsecret.log`,
/// `logs/../secret.log`, `/etc/passwd` (plain and `%2F`-encoded), `../*` and `**` globs
/// reaching out: every one a 404 on `/ws` and `/events` with no secret in the body; the
/// secret (outside the glob's directory) is never delivered to a stream on all files, nor
/// listed in `/files`.
#[tokio::test]
async fn traversal_names_are_refused_and_never_read() {
    let dir = tmp();
    let logs = dir.path().join("logs");
    let a = logs.join("a.log");
    touch(&a);
    let secret = dir.path().join("secret.log");
    append(&secret, &["SECRET-CONTENT 1"]);
    let server = Server::builder().file(logs.join("*.log")).start().await;
    let d = dir.path();
    let mut json_all = Json::connect(&server, "backlog=100", &[d]).await;
    let mut sse_all = Sse::open(&server, "backlog=100", &[], &[d]).await;
    server.wait_clients(2, PROMPT).await;
    let attempts = [
        ("file=../secret.log", "../secret.log"),
        ("file=%2e%2e%2fsecret.log", "../secret.log"),
        ("file=..%2Fsecret.log", "../secret.log"),
        ("file=logs/../secret.log", "logs/../secret.log"),
        ("file=a.log/../../secret.log", "a.log/../../secret.log"),
        ("file=/etc/passwd", "/etc/passwd"),
        ("file=%2Fetc%2Fpasswd", "/etc/passwd"),
        ("file=../*", "../*"),
        ("file=**/secret.log", "**/secret.log"),
        ("file=secret.log", "secret.log"),
    ];
    for (query, asked) in attempts {
        for (what, resp) in [
            ("/ws", ws_status(&server, query).await),
            ("/events", sse_status(&server, query).await),
        ] {
            let body = resp.text();
            assert!(
                !body.contains("SECRET") && !body.contains("root:"),
                "{what}?{query}: the body leaks a file: {body:?}"
            );
            assert!(
                !body.contains(s(d)),
                "{what}?{query}: a server path: {body:?}"
            );
            let known = known_files_in_404(&resp, asked, &format!("{what}?{query}"));
            assert_eq!(known, ["a.log"], "{what}?{query}");
        }
    }
    let (list, body) = files(&server, &[]).await;
    assert_eq!(names(&list), ["a.log"], "{body}");

    // The secret grows; a marker in a.log is the first and only thing the streams get.
    append(&secret, &["SECRET-CONTENT 2"]);
    append(&a, &["marker"]);
    let v = json_all.frame().await;
    assert_eq!(
        v,
        json!({"seq": 1, "offset": 0, "file": "a.log", "line": "marker"})
    );
    sse_all.expect_line(1, "a.log: marker").await;
}

/// Symlinks out of a glob's directory are not followed — the issue lists them among the
/// traversals, and the README says "a match that is a symlink leading out of the glob's
/// directory is not followed", "directories reached through symlinks are not descended":
/// `logs/pre.log -> ../outside/secret.log` (there at start-up), `logs/link.log` (absolute
/// target) and `logs/rel.log` (relative) created later, and directory links `pods/linked`,
/// `pods/linked2 -> ../outside` under `pods/*/*.log`. None is ever delivered, listed in
/// `/files` or selectable; real matches created after them (in the same directories) are
/// followed.
#[tokio::test]
async fn symlinks_out_of_a_glob_directory_are_never_followed() {
    let dir = tmp();
    let d = dir.path();
    let logs = d.join("logs");
    let pods = d.join("pods");
    let outside = d.join("outside");
    let a = logs.join("a.log");
    let x = pods.join("real/x.log");
    let secret = outside.join("secret.log");
    let secret_x = outside.join("x.log");
    touch(&a);
    touch(&x);
    touch(&secret);
    append(&secret, &["SECRET 1"]);
    append(&secret_x, &["SECRET X 1"]);
    let link = |target: &Path, at: &Path| {
        std::os::unix::fs::symlink(target, at)
            .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", at.display(), target.display()))
    };
    link(&secret, &logs.join("pre.log"));
    link(&outside, &pods.join("linked"));
    let server = Server::builder()
        .file(logs.join("*.log"))
        .file(pods.join("*/*.log"))
        .start()
        .await;
    let mut json_all = Json::connect(&server, "backlog=100", &[d]).await;
    let mut sse_all = Sse::open(&server, "backlog=100", &[], &[d]).await;
    server.wait_clients(2, PROMPT).await;
    assert_eq!(json_all.hello_seq, 0, "nothing followed has a line yet");

    link(&secret, &logs.join("link.log"));
    link(Path::new("../outside/secret.log"), &logs.join("rel.log"));
    link(&outside, &pods.join("linked2"));
    append(&secret, &["SECRET 2"]);
    append(&secret_x, &["SECRET X 2"]);
    // Real matches created after the links, in the same directories.
    append(&logs.join("later.log"), &["later 1"]);
    let v = json_all.frame_skipping_state_of("later.log").await;
    assert_eq!(v, json!({"event": "added", "file": "later.log", "seq": 0}));
    let v = json_all.frame_skipping_state_of("later.log").await;
    assert_eq!(
        v,
        json!({"seq": 1, "offset": 0, "file": "later.log", "line": "later 1"})
    );
    mkdir(&pods.join("real2"));
    append(&pods.join("real2/x.log"), &["real2 1"]);
    let v = json_all.frame_skipping_state_of("real2/x.log").await;
    assert_eq!(
        v,
        json!({"event": "added", "file": "real2/x.log", "seq": 1})
    );
    let v = json_all.frame_skipping_state_of("real2/x.log").await;
    assert_eq!(
        v,
        json!({"seq": 2, "offset": 0, "file": "real2/x.log", "line": "real2 1"})
    );
    append(&a, &["marker"]);
    let v = json_all.frame().await;
    assert_eq!(
        v,
        json!({"seq": 3, "offset": 0, "file": "a.log", "line": "marker"})
    );
    sse_all.skip_state_of("later.log");
    sse_all.skip_state_of("real2/x.log");
    sse_all
        .expect_event(
            "added",
            &json!({"event": "added", "file": "later.log", "seq": 0}),
        )
        .await;
    sse_all.expect_line(1, "later.log: later 1").await;
    sse_all
        .expect_event(
            "added",
            &json!({"event": "added", "file": "real2/x.log", "seq": 1}),
        )
        .await;
    sse_all.expect_line(2, "real2/x.log: real2 1").await;
    sse_all.expect_line(3, "a.log: marker").await;

    let (list, body) = files(&server, &[]).await;
    let mut listed = names(&list);
    listed.sort();
    assert_eq!(
        listed,
        ["a.log", "later.log", "real/x.log", "real2/x.log"],
        "{body}"
    );
    for name in [
        "pre.log",
        "link.log",
        "rel.log",
        "linked/x.log",
        "linked2/x.log",
        "secret.log",
    ] {
        let resp = ws_status(&server, &format!("file={name}")).await;
        let known = known_files_in_404(&resp, name, &format!("file={name}"));
        assert!(!known.iter().any(|k| k == name), "{name}: {known:?}");
        assert!(!resp.text().contains("SECRET"), "{name}: {:?}", resp.text());
    }
    let h = server.healthz().await.to_string();
    assert!(!h.contains("outside") && !h.contains("SECRET"), "{h}");
}

// ---------------------------------------------------------------------------------------
// 9. backlog= on a selection
// ---------------------------------------------------------------------------------------

/// `backlog=N` counts the selected files' lines only: `file=a.log&backlog=3` is a.log's last
/// three, on `/ws` (text and JSON) and `/events`; merged and two-file selections count
/// over both.
#[tokio::test]
async fn backlog_counts_only_the_selected_files_lines() {
    let t = two_files();
    let d = t.dir.path();
    let server = start_two(&t, &[]).await;
    let mut w = Written::after(0);
    for i in 1..=6 {
        for (file, path) in [("a.log", &t.a), ("b.log", &t.b)] {
            let line = format!("{} {i}", &file[..1]);
            append(path, &[&line]);
            let rec = w.record(file, &line);
            server.wait_seq(rec.seq, PROMPT).await;
        }
    }
    let last = |files: &[&str], n: usize| {
        let all = w.of(files);
        all[all.len() - n..].to_vec()
    };
    let mut text_a = Text::connect(&server, "file=a.log&backlog=3").await;
    text_a.expect(&["a 4", "a 5", "a 6"]).await;
    let mut json_b = Json::connect(&server, "file=b.log&backlog=2", &[d]).await;
    json_b.expect(&last(&["b.log"], 2)).await;
    let mut sse_a = Sse::open(&server, "file=a.log&backlog=4", &[], &[d]).await;
    sse_a
        .expect_lines(&last(&["a.log"], 4), |w| w.line.clone())
        .await;
    let mut merged = Text::connect(&server, "backlog=3").await;
    merged
        .expect(&["b.log: b 5", "a.log: a 6", "b.log: b 6"])
        .await;
    let mut both = Json::connect(&server, "file=a.log&file=b.log&backlog=4", &[d]).await;
    both.expect(&last(&[], 4)).await;
    // Default backlog (--lines 10) on one file: a.log has only 6.
    let mut text_a_default = Text::connect(&server, "file=a.log").await;
    text_a_default
        .expect(&["a 1", "a 2", "a 3", "a 4", "a 5", "a 6"])
        .await;
    server.wait_clients(6, PROMPT).await;
    append(&t.b, &["b live"]);
    let live = w.record("b.log", "b live");
    json_b.expect(std::slice::from_ref(&live)).await;
    merged.expect(&["b.log: b live"]).await;
    append(&t.a, &["a live"]);
    text_a.expect(&["a live"]).await;
    text_a_default.expect(&["a live"]).await;
}
