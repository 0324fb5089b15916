//! The built-in viewer page in a real browser: headless Chromium, driven over the Chrome
//! DevTools Protocol (CDP) with tokio-tungstenite, opens `/` and the tests read what the page
//! shows (`body[data-state]`, `#log .line[data-seq] .text`, `.sep.event[data-event]`).
//!
//! Chromium is found on `PATH` (`chromium`, or `chromium-browser`) as the tests are built;
//! without it they are ignored with the reason (`#[needs::tools(chromium)]`; CI installs
//! it and runs them all the same).

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{LogFile, PROMPT, Server, WsClient, http_open, numbered, strs};

/// How long Chromium gets to start and write `DevToolsActivePort` (slow on a busy CI box).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one CDP command's answer.
const CDP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the page gets to show something: the socket, then one animation frame.
const SHOW: Duration = Duration::from_secs(15);
/// Poll interval of the page-reading loops (not a synchronisation sleep).
const POLL: Duration = Duration::from_millis(25);

/// The target directory (`.../target`), from the path of the binary under test.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_logtail-ws"));
    bin.parent()
        .and_then(Path::parent)
        .expect("the binary sits in target/<profile>/")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------
// Chromium

/// A headless Chromium in its own process group with a throwaway profile; the group is
/// terminated on drop.
struct Chromium {
    child: Child,
    /// Holds `profile/` (the user data dir) and `chromium.log` (its stdout and stderr).
    dir: tempfile::TempDir,
    /// The DevTools HTTP/WebSocket port.
    port: u16,
}

impl Chromium {
    /// Launches Chromium (`chromium`, Debian, or `chromium-browser`, Ubuntu).
    async fn launch() -> Chromium {
        let exe = needs::program!(chromium);
        let dir = tempfile::Builder::new()
            .prefix("logtail-ws-chromium-")
            .tempdir()
            .expect("create Chromium temp dir");
        let profile = dir.path().join("profile");
        let log = File::create(dir.path().join("chromium.log")).expect("create chromium.log");
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-crash-reporter",
            "--disable-dev-shm-usage",
            "--window-size=1280,720",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone chromium.log handle"))
        .stderr(log)
        // Its own process group, so that drop can end Chromium and all its children.
        .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", exe.display()));
        let mut chromium = Chromium {
            child,
            dir,
            port: 0,
        };
        chromium.port = chromium.wait_devtools_port(&profile).await;
        chromium
    }

    /// Waits for `<profile>/DevToolsActivePort` and returns the port on its first line.
    async fn wait_devtools_port(&mut self, profile: &Path) -> u16 {
        let file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        loop {
            // "PORT\n/devtools/browser/ID": once the second line starts, the port is whole.
            if let Some(port) = fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.split_once('\n')?.0.trim().parse::<u16>().ok())
                .filter(|&p| p != 0)
            {
                return port;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait chromium") {
                panic!(
                    "chromium exited ({status}) before writing DevToolsActivePort:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "chromium wrote no DevToolsActivePort within {LAUNCH_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last 40 lines Chromium wrote.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The tab Chromium opened (`about:blank`), over a CDP connection.
    async fn page(&self) -> Page {
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let url = loop {
            let targets = self.json_list().await;
            let page = targets.as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page" && t["url"] == "about:blank")
            });
            if let Some(url) = page.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
                break url.to_owned();
            }
            if Instant::now() >= deadline {
                panic!("no about:blank page target within {LAUNCH_TIMEOUT:?}: {targets}");
            }
            tokio::time::sleep(POLL).await;
        };
        let (ws, _) = tokio::time::timeout(CDP_TIMEOUT, tokio_tungstenite::connect_async(&url))
            .await
            .expect("CDP connect timed out")
            .unwrap_or_else(|e| panic!("CDP connect to {url} failed: {e}"));
        Page { ws, next_id: 0 }
    }

    /// `GET /json/list` on the DevTools port, parsed. (Chromium keeps the connection open
    /// after the response, so the body is read by its Content-Length.)
    async fn json_list(&self) -> Value {
        let devtools = SocketAddr::from(([127, 0, 0, 1], self.port));
        let (resp, _) = http_open(devtools, "GET", "/json/list", &[("Connection", "close")]).await;
        assert_eq!(resp.status, 200, "/json/list: {resp:?}");
        assert!(
            resp.header("content-length").is_some(),
            "/json/list without Content-Length: {resp:?}"
        );
        serde_json::from_slice(&resp.body).expect("/json/list is JSON")
    }

    /// Sends `sig` to Chromium's process group (and only that group).
    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- chromium output (pid {}) ----\n{}\n---- end ----",
                self.child.id(),
                self.log_tail()
            );
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal_group("KILL");
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// One tab, over CDP

type CdpStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A tab driven over its CDP WebSocket.
struct Page {
    ws: CdpStream,
    next_id: u64,
}

/// What the viewer shows, read in one `Runtime.evaluate` (see [`VIEW_JS`]).
#[derive(Debug, Deserialize)]
struct View {
    /// `document.body.dataset.state`: connecting | live | reconnecting.
    state: Option<String>,
    /// The footer's `#status` text.
    status: String,
    /// The rows of the view (`logtail.view()`), oldest first.
    rows: Vec<Row>,
}

/// A row of `#log`: a log line (`.line`) or a separator (`.sep.event` / `.sep.note`).
#[derive(Debug, Deserialize, Clone, PartialEq)]
struct Row {
    /// `line`, `event` or `note`.
    kind: String,
    /// A line's `data-seq`.
    seq: Option<u64>,
    /// A separator's `data-event`.
    event: Option<String>,
    /// A line's `.text` textContent (`None` if it has no `.text`), a separator's text.
    text: Option<String>,
}

/// Reads the view the page holds (`logtail.view()`: every row the filters let through, not
/// only the few on screen) and the connection state; returns a plain object for [`View`].
const VIEW_JS: &str = r#"(() => {
  const rows = [];
  const view = window.logtail ? window.logtail.view() : [];
  for (const r of view) {
    if (r.kind === 'line') rows.push({ kind: 'line', seq: r.seq, event: null, text: r.line });
    else rows.push({ kind: r.kind, seq: null, event: r.event || null, text: r.text });
  }
  const b = document.body, s = document.getElementById('status');
  return { state: b && b.dataset.state !== undefined ? b.dataset.state : null,
           status: s ? s.textContent : '', rows };
})()"#;

/// Wraps `window.WebSocket` before the page's own script runs, so a test can reach the
/// viewer's socket (`__logtailTest.sockets`) and make new connections fail for a while
/// (`__logtailTest.block = true`: they go to a path the server answers with 404).
const SOCKET_HOOK_JS: &str = r#"(() => {
  const Native = window.WebSocket;
  const t = { sockets: [], urls: [], block: false };
  window.__logtailTest = t;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      const u = t.block ? String(url).replace('/ws?', '/blocked-by-test?') : url;
      super(u, protocols);
      t.urls.push(String(u));
      t.sockets.push(this);
    }
  };
})();"#;

impl View {
    /// The texts of the `.line` rows, in order.
    fn lines(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.kind == "line")
            .map(|r| r.text.as_deref().unwrap_or("<no .text child>"))
            .collect()
    }

    /// The `data-seq` of the `.line` rows, in order.
    fn seqs(&self) -> Vec<Option<u64>> {
        self.rows
            .iter()
            .filter(|r| r.kind == "line")
            .map(|r| r.seq)
            .collect()
    }

    /// The `.sep.event` rows' `data-event`s, in order.
    fn events(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.kind == "event")
            .map(|r| r.event.as_deref().unwrap_or(""))
            .collect()
    }

    fn is_live(&self) -> bool {
        self.state.as_deref() == Some("live")
    }

    fn has_line(&self, text: &str) -> bool {
        self.lines().contains(&text)
    }

    /// Index in `rows` of the line with this text (panics if absent).
    fn row_of_line(&self, text: &str) -> usize {
        self.rows
            .iter()
            .position(|r| r.kind == "line" && r.text.as_deref() == Some(text))
            .unwrap_or_else(|| panic!("no line {text:?} in {self:#?}"))
    }
}

/// Asserts that the seqs are all present and consecutive (`first`, `first+1`, ...).
fn assert_consecutive(seqs: &[Option<u64>], first: u64) {
    let want: Vec<Option<u64>> = (first..first + seqs.len() as u64).map(Some).collect();
    assert_eq!(seqs, want, "data-seq of the lines");
}

impl Page {
    /// Sends a CDP command and returns its `result` (panics on a CDP error).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .await
            .unwrap_or_else(|e| panic!("CDP {method} failed: {e}"))
    }

    /// Sends a CDP command and returns its `result`, or the CDP error. Events that arrive
    /// meanwhile are ignored. Panics if the DevTools connection fails or times out.
    async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::text(msg))
            .await
            .unwrap_or_else(|e| panic!("CDP send {method}: {e}"));
        let deadline = Instant::now() + CDP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("CDP {method}: no answer within {CDP_TIMEOUT:?}"),
                Ok(None) => panic!("CDP {method}: the DevTools connection closed"),
                Ok(Some(Err(e))) => panic!("CDP {method}: {e}"),
                Ok(Some(Ok(m))) => m,
            };
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("CDP {method}: bad JSON ({e}): {text}"));
            if v["id"].as_u64() != Some(id) {
                continue; // an event, or the answer to an earlier command
            }
            if let Some(err) = v.get("error") {
                return Err(err.to_string());
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates `expr` in the page and returns its value (panics on a JS exception).
    async fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr)
            .await
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// [`eval`](Self::eval), returning the exception or CDP error (as while a page loads).
    async fn try_eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self
            .try_call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        match r.get("exceptionDetails") {
            Some(ex) => Err(format!("JS exception: {ex}")),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Installs [`SOCKET_HOOK_JS`] for the documents loaded from now on.
    async fn hook_websocket(&mut self) {
        self.call("Page.enable", json!({})).await;
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": SOCKET_HOOK_JS }),
        )
        .await;
    }

    /// Navigates to `url` and waits until that document has loaded.
    async fn goto(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url })).await;
        if let Some(err) = r.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url} failed: {err}");
        }
        let deadline = Instant::now() + PROMPT;
        let check = format!(
            "location.href === {} && document.readyState === 'complete'",
            Value::from(url)
        );
        loop {
            // While the old document unloads, evaluating can fail: try again.
            let loaded = self.try_eval(&check).await;
            if loaded == Ok(Value::Bool(true)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{url} did not load within {PROMPT:?}: {loaded:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reloads the page and waits until the new document has loaded.
    async fn reload(&mut self) {
        self.eval("window.__beforeReload = true").await;
        self.call("Page.reload", json!({})).await;
        let check = "window.__beforeReload === undefined && document.readyState === 'complete'";
        let deadline = Instant::now() + PROMPT;
        loop {
            // While the old document unloads, evaluating can fail: try again.
            let loaded = self.try_eval(check).await;
            if loaded == Ok(Value::Bool(true)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("the page did not reload within {PROMPT:?}: {loaded:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What the page shows now.
    async fn view(&mut self) -> View {
        let v = self.eval(VIEW_JS).await;
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad view ({e}): {v}"))
    }

    /// Reads the page until `cond` holds; panics naming `what` (and showing the page) after
    /// `timeout`.
    async fn wait_view(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&View) -> bool,
    ) -> View {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.view().await;
            if cond(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting until {what}; the page shows {v:#?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A PNG of the viewport.
    async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let data = r["data"].as_str().expect("captureScreenshot returns data");
        base64_decode(data)
    }
}

/// Standard base64 (with padding, no line breaks), as CDP sends binary data.
fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:#x}"),
        }
    }
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

/// The decoder above reads what a standard encoder writes.
#[test]
fn base64_decodes_padded_input() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}

// ---------------------------------------------------------------------------------------
// Tests

/// The page shows the last 10 lines (the default backlog) with their seqs, goes live, then
/// shows appended lines as literal text: markup in a line is never parsed (no XSS).
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_shows_backlog_then_live_lines_as_text() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(numbered("line ", 1..=20));
    let server = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    page.goto(&server.http_url("/")).await;

    let v = page
        .wait_view("the page is live with its backlog", SHOW, |v| {
            v.is_live() && v.lines().len() >= 10
        })
        .await;
    assert_eq!(v.lines(), strs(&numbered("line ", 11..=20)));
    assert_consecutive(&v.seqs(), 11);
    server.wait_clients(1, PROMPT).await;

    let bold = "hello <b>x</b>";
    let img = r#"<img src=x onerror="document.title='pwned'">"#;
    log.append_lines([bold, "second", img]);
    let v = page
        .wait_view("the appended lines show", SHOW, |v| v.has_line(img))
        .await;
    let mut want = numbered("line ", 11..=20);
    want.extend([bold, "second", img].map(String::from));
    assert_eq!(v.lines(), strs(&want));
    assert_consecutive(&v.seqs(), 11);
    assert_eq!(v.state.as_deref(), Some("live"));

    // The markup stayed text: escaped in the DOM, no element made from it, nothing ran.
    let html = page
        .eval(&format!(
            "document.querySelector('#log .line[data-seq=\"{}\"] .text').innerHTML",
            v.rows[v.row_of_line(bold)].seq.unwrap()
        ))
        .await;
    assert_eq!(html, "hello &lt;b&gt;x&lt;/b&gt;");
    let made = page
        .eval("document.querySelectorAll('#log b, #log img, #log [onerror]').length")
        .await;
    assert_eq!(made, 0, "elements parsed out of log lines");
    let title = page.eval("document.title").await;
    assert_ne!(title, "pwned");
}

/// With `--token s3cret` the page opened at `/` (no token) or with a wrong token never goes
/// live, shows no line and tells the reader why; with `#token=s3cret` in the fragment (set
/// later: no reload needed; or loaded fresh) it goes live and shows the lines.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_takes_the_token_from_the_fragment() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(["secret 1", "secret 2"]);
    let server = Server::start(log.path(), &["--token", "s3cret"]).await;
    let mut page = browser.page().await;

    // No fragment: refused (401), so it keeps retrying and, after three failed attempts,
    // says a token may be needed.
    page.goto(&server.http_url("/")).await;
    let hint = "Cannot connect — is a token needed? Open /#token=…";
    let v = page
        .wait_view("the page without a token shows the token hint", SHOW, |v| {
            v.status.contains(hint)
        })
        .await;
    assert_eq!(v.state.as_deref(), Some("reconnecting"), "{v:#?}");
    assert!(
        v.rows.is_empty(),
        "no line may show without the token: {v:#?}"
    );
    assert_eq!(server.client_count().await, 0);

    // A wrong token in the fragment (hashchange reconnects): refused too.
    page.goto(&server.http_url("/#token=wrong")).await;
    let hint = "Cannot connect — is the token right? Open /#token=… with the correct one.";
    let v = page
        .wait_view("the page with a wrong token shows the hint", SHOW, |v| {
            v.status.contains(hint)
        })
        .await;
    assert_eq!(v.state.as_deref(), Some("reconnecting"), "{v:#?}");
    assert!(
        v.rows.is_empty(),
        "no line may show with a wrong token: {v:#?}"
    );
    assert_eq!(server.client_count().await, 0);

    // The right token in the fragment: live, with the backlog, without reloading.
    page.goto(&server.http_url("/#token=s3cret")).await;
    let v = page
        .wait_view("the page goes live with the right token", SHOW, |v| {
            v.is_live() && v.lines().len() >= 2
        })
        .await;
    assert_eq!(v.lines(), ["secret 1", "secret 2"]);
    assert_eq!(v.status, "Live.");
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["with token"]);
    let v = page
        .wait_view("the appended line shows", SHOW, |v| {
            v.has_line("with token")
        })
        .await;
    assert_eq!(v.lines(), ["secret 1", "secret 2", "with token"]);
    assert!(v.events().is_empty(), "events: {v:#?}");

    // Loaded fresh at /#token=s3cret: live at once.
    page.reload().await;
    let v = page
        .wait_view("the reloaded page is live", SHOW, |v| {
            v.is_live() && v.has_line("with token")
        })
        .await;
    assert_eq!(v.lines(), ["secret 1", "secret 2", "with token"]);
    assert_consecutive(&v.seqs(), 1);
}

/// Leaving the page closes its socket, so the server stops counting the reader; coming back
/// (back button, served from the back/forward cache) resumes the stream.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_closes_its_socket_when_left() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(["before"]);
    let server = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    page.goto(&server.http_url("/")).await;
    page.wait_view("the page is live", SHOW, |v| {
        v.is_live() && v.has_line("before")
    })
    .await;
    server.wait_clients(1, PROMPT).await;

    page.goto("about:blank").await;
    server.wait_clients(0, PROMPT).await;
    log.append_lines(["while away"]);

    // The navigation may tear down the page's context before the answer comes back
    // ("Execution context was destroyed"): what counts is the page that shows next.
    let _ = page.try_eval("history.back(); true").await;
    let v = page
        .wait_view("the page is back and live", SHOW, |v| {
            v.is_live() && v.has_line("while away")
        })
        .await;
    assert_eq!(v.lines(), ["before", "while away"]);
    server.wait_clients(1, PROMPT).await;
}

/// After `mv app.log app.log.1` and a new `app.log`, the page shows a `rotated` event row,
/// then the new file's line: nothing lost or repeated, seqs continue.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_shows_rotation_then_the_new_file() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(["old 1", "old 2"]);
    let server = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    page.goto(&server.http_url("/")).await;
    page.wait_view("the page is live", SHOW, |v| {
        v.is_live() && v.has_line("old 2")
    })
    .await;
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["old 3"]);
    page.wait_view("old 3 shows", SHOW, |v| v.has_line("old 3"))
        .await;

    log.rename_to("app.log.1");
    log.append_lines(["new 1"]); // creates the new app.log
    let v = page
        .wait_view("the new file's line shows", SHOW, |v| v.has_line("new 1"))
        .await;
    assert_eq!(v.lines(), ["old 1", "old 2", "old 3", "new 1"]);
    assert_consecutive(&v.seqs(), 1);
    // Between the rename and the new file the path names nothing: the server may say so
    // (`waiting`) before `rotated`; the file events aside, there is exactly one rotation.
    let events: Vec<&str> = v
        .events()
        .into_iter()
        .filter(|e| *e != "waiting" && *e != "following")
        .collect();
    assert_eq!(events, ["rotated"], "{v:#?}");
    let rotated = v
        .rows
        .iter()
        .position(|r| r.kind == "event" && r.event.as_deref() == Some("rotated"))
        .expect("a rotated row");
    assert!(
        v.row_of_line("old 3") < rotated && rotated < v.row_of_line("new 1"),
        "the rotated row sits between the old and the new file's lines: {v:#?}"
    );
    let text = v.rows[rotated].text.as_deref().unwrap_or("");
    assert!(text.contains("rotated"), "rotated row text: {text:?}");
    assert!(v.is_live());
}

/// When the page's socket drops, the viewer reconnects with `since=`/`epoch=`: lines
/// appended while it was disconnected appear exactly once, in seq order, with no gap.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_reconnects_without_loss() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(numbered("boot ", 1..=5));
    let server = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    page.hook_websocket().await;
    page.goto(&server.http_url("/")).await;
    page.wait_view("the page is live", SHOW, |v| {
        v.is_live() && v.has_line("boot 5")
    })
    .await;
    server.wait_clients(1, PROMPT).await;
    log.append_lines(numbered("live ", 1..=5));
    page.wait_view("the live lines show", SHOW, |v| v.has_line("live 5"))
        .await;

    // A witness proves the server read the lines appended while the page is away.
    let mut witness = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    server.wait_clients(2, PROMPT).await;

    // Drop the page's socket; its reconnection attempts fail (404) until unblocked.
    page.eval(
        "__logtailTest.block = true; \
         __logtailTest.sockets[__logtailTest.sockets.length - 1].close(); true",
    )
    .await;
    page.wait_view("the page notices the lost connection", SHOW, |v| {
        v.state.as_deref() == Some("reconnecting")
    })
    .await;
    server.wait_clients(1, PROMPT).await;

    let missed = numbered("missed ", 1..=50);
    for chunk in missed.chunks(10) {
        log.append_lines(chunk);
    }
    witness.expect_lines(&strs(&missed)).await;
    let v = page.view().await;
    assert!(!v.is_live(), "still disconnected: {v:#?}");
    assert!(!v.has_line("missed 1"), "no missed line yet: {v:#?}");

    // Let the viewer's own backoff timer reconnect (resume from its last seq).
    page.eval("__logtailTest.block = false; true").await;
    page.wait_view(
        "the page is live again with the missed lines",
        SHOW * 2,
        |v| v.is_live() && v.has_line("missed 50"),
    )
    .await;
    server.wait_clients(2, PROMPT).await;
    log.append_lines(numbered("after ", 1..=3));
    witness
        .expect_lines(&strs(&numbered("after ", 1..=3)))
        .await;
    let v = page
        .wait_view("the lines after the reconnection show", SHOW, |v| {
            v.has_line("after 3")
        })
        .await;

    let mut want = numbered("boot ", 1..=5);
    want.extend(numbered("live ", 1..=5));
    want.extend(missed);
    want.extend(numbered("after ", 1..=3));
    assert_eq!(v.lines(), strs(&want), "every line exactly once, in order");
    assert_consecutive(&v.seqs(), 1);
    assert!(v.events().is_empty(), "no gap or restart event: {v:#?}");
    let notes: Vec<&str> = v
        .rows
        .iter()
        .filter(|r| r.kind == "note")
        .filter_map(|r| r.text.as_deref())
        .collect();
    assert_eq!(notes, ["— connection lost — reconnecting —"]);

    // The successful reconnection asked to resume after the last line the page had.
    let urls = page.eval("__logtailTest.urls").await;
    let last = urls
        .as_array()
        .and_then(|u| u.last())
        .and_then(Value::as_str)
        .expect("socket urls");
    assert!(
        last.contains("/ws?") && last.contains("since=10&epoch="),
        "{urls}"
    );
}

/// Screenshots of the viewer with typical content (levels, a long line, a rotation), light
/// and dark, written to `target/viewer-screenshot.png` and `viewer-screenshot-dark.png` for
/// humans to look at; only checked to be PNGs.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_screenshot() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines([
        "2026-11-25T18:00:00.012Z INFO  api: listening on 0.0.0.0:8080",
        "2026-11-25T18:00:01.347Z DEBUG db: pool ready (8 connections)",
        "2026-11-25T18:00:02.101Z INFO  api: GET /orders/42 200 12ms",
        "2026-11-25T18:00:02.530Z WARN  api: slow query: SELECT * FROM orders WHERE id = $1 (812ms)",
        "2026-11-25T18:00:03.004Z ERROR api: upstream payments timed out after 5000ms",
        r#"{"ts":"2026-11-25T18:00:03.100Z","level":"info","msg":"retrying","attempt":2}"#,
    ]);
    let server = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    page.goto(&server.http_url("/")).await;
    page.wait_view("the page is live", SHOW, |v| {
        v.is_live() && v.lines().len() >= 6
    })
    .await;
    server.wait_clients(1, PROMPT).await;
    let long = format!(
        "2026-11-25T18:00:04.000Z INFO  api: request body {}",
        "0123456789abcdef".repeat(16)
    );
    log.append_lines([
        long.as_str(),
        "2026-11-25T18:00:04.500Z INFO  api: GET /health 200 0ms <b>not bold</b>",
    ]);
    log.rename_to("app.log.1");
    log.append_lines([
        "2026-11-25T18:00:05.000Z INFO  api: log reopened after rotation",
        "2026-11-25T18:00:05.250Z TRACE api: tick",
    ]);
    page.wait_view("the rotated file's lines show", SHOW, |v| {
        v.has_line("2026-11-25T18:00:05.250Z TRACE api: tick")
    })
    .await;

    let dir = target_dir();
    let light = page.screenshot().await;
    page.call(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    )
    .await;
    let dark = page.screenshot().await;
    for (name, png) in [
        ("viewer-screenshot.png", light),
        ("viewer-screenshot-dark.png", dark),
    ] {
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{name}: not a PNG ({} bytes)",
            png.len()
        );
        let path = dir.join(name);
        fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("wrote {} ({} bytes)", path.display(), png.len());
    }
}

/// Under `--base-path /logs`, the page at `/logs/` loads its script, style and icon from
/// under the prefix and streams from `/logs/ws`: its links are relative to the page.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_works_under_a_base_path() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(numbered("line ", 1..=3));
    let server = Server::start(log.path(), &["--base-path", "/logs"]).await;
    let mut page = browser.page().await;
    page.goto(&server.http_url("/logs/")).await;
    let v = page
        .wait_view("the page under the prefix is live", SHOW, |v| {
            v.is_live() && v.lines().len() >= 3
        })
        .await;
    assert_eq!(v.lines(), strs(&numbered("line ", 1..=3)));
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["under the prefix"]);
    let v = page
        .wait_view("the appended line shows", SHOW, |v| {
            v.has_line("under the prefix")
        })
        .await;
    assert_eq!(v.lines().len(), 4);
    let loaded = page
        .eval(
            "JSON.stringify([...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).pathname))].sort())",
        )
        .await;
    assert_eq!(
        loaded,
        r#"["/logs/favicon.svg","/logs/files","/logs/format.js","/logs/viewer.css","/logs/viewer.js"]"#,
        "what the page loaded (its socket is /logs/ws: /ws is 404 with a base path)"
    );
}

/// `window.logtail`, the devtools API of DESIGN.md: `lines()` is exactly what the page
/// holds (shown, then buffered while paused), `state()` the connection, stream and counts,
/// `pause()` / `resume()` what the Pause button does.
#[needs::tools(chromium)]
#[tokio::test]
async fn viewer_devtools_api_tells_what_the_page_holds() {
    let browser = Chromium::launch().await;
    let log = LogFile::with_lines(numbered("line ", 1..=3));
    let server = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    page.goto(&server.http_url("/")).await;
    page.wait_view("live with the backlog", SHOW, |v| {
        v.is_live() && v.lines().len() >= 3
    })
    .await;
    let want = |lines: &[(u64, &str)]| {
        Value::from(
            lines
                .iter()
                .map(|(seq, line)| json!({ "seq": seq, "file": "app.log", "line": line }))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        eval_json(&mut page, "logtail.lines()").await,
        want(&[(1, "line 1"), (2, "line 2"), (3, "line 3")])
    );
    // DESIGN.md's keys (state() tells more: what the page holds and shows).
    let state = eval_json(
        &mut page,
        "(({connection, epoch, seq, received, lost}) => ({connection, epoch, seq, received, lost}))(logtail.state())",
    )
    .await;
    let epoch = server.healthz().await["epoch"].clone();
    assert_eq!(
        state,
        json!({ "connection": "live", "epoch": epoch, "seq": 3, "received": 3, "lost": 0 })
    );

    // Paused: new lines are held (buffered), not shown, and listed all the same.
    page.eval("logtail.pause()").await;
    let state = page.eval("logtail.state().connection").await;
    assert_eq!(state, "paused");
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["while paused"]);
    let deadline = Instant::now() + SHOW;
    loop {
        if eval_json(&mut page, "logtail.lines()")
            .await
            .as_array()
            .is_some_and(|a| a.len() == 4)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused page never held the new line"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        eval_json(&mut page, "logtail.lines()").await,
        want(&[
            (1, "line 1"),
            (2, "line 2"),
            (3, "line 3"),
            (4, "while paused")
        ])
    );
    let shown = page.wait_view("still three shown", SHOW, |_| true).await;
    assert_eq!(shown.lines().len(), 3, "a paused page shows nothing new");
    page.eval("logtail.resume()").await;
    let v = page
        .wait_view("the buffered line shows", SHOW, |v| {
            v.has_line("while paused")
        })
        .await;
    assert_eq!(v.lines().len(), 4);
    assert_eq!(page.eval("logtail.state().connection").await, "live");
}

/// `expr` evaluated in the page, through `JSON.stringify`.
async fn eval_json(page: &mut Page, expr: &str) -> Value {
    let text = page.eval(&format!("JSON.stringify({expr})")).await;
    serde_json::from_str(text.as_str().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{expr} is not JSON ({e}): {text}"))
}
