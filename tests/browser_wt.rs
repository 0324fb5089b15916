//! WebTransport (`/wt`, issue 16) in headless Chromium, as a page does it: the viewer page
//! is loaded from the binary over plain `http://127.0.0.1:PORT/` (its CSP applies), fetches
//! `/wt-cert-hash`, and opens `new WebTransport('https://127.0.0.1:PORT/wt?…',
//! {serverCertificateHashes})` — no certificate flag, QUIC otherwise off
//! (`--disable-quic`, as every browser test runs) — and reads the server's one stream; the
//! test asserts the exact lines it got, backlog then live, then a resume with `since=` after
//! the session was closed; a page from another origin and a session without the token are
//! refused. Ignored, with the reason, where Chromium is missing (`#[needs::tools(chromium)]`).

use serde_json::Value;

use crate::browser::{Chromium, Page};
use crate::harness::{LogFile, PROMPT, Server, numbered, strs, wait_until_async};

/// Installs `window.wt`: `open(query)` starts a session (with the hash from
/// `/wt-cert-hash`) whose stream's lines gather in `wt.lines`; `wt.error` is why it failed,
/// `wt.closed` how it ended.
const WT_JS: &str = r#"
window.wt = {
  lines: [], error: null, closed: null, session: null,
  async open(query) {
    this.lines = []; this.error = null; this.closed = null;
    const hex = await (await fetch('/wt-cert-hash')).text();
    const value = new Uint8Array(hex.match(/../g).map(h => parseInt(h, 16)));
    const url = `https://127.0.0.1:${location.port}/wt?${query}`;
    try {
      const session = new WebTransport(url, {
        serverCertificateHashes: [{ algorithm: 'sha-256', value }],
      });
      this.session = session;
      session.closed.then(c => { this.closed = c; }, e => { this.closed = { error: String(e) }; });
      await session.ready;
      const streams = session.incomingUnidirectionalStreams.getReader();
      const { value: stream } = await streams.read();
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      (async () => {
        let rest = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          rest += value;
          const parts = rest.split('\n');
          rest = parts.pop();
          this.lines.push(...parts);
        }
      })().catch(e => { this.error = this.error || String(e); });
      return 'open';
    } catch (e) {
      this.error = String(e);
      return this.error;
    }
  },
};
true
"#;

/// Loads `page_url` (a page of the server's) in `page` and installs [`WT_JS`].
async fn load(page: &mut Page, page_url: &str) {
    page.goto(page_url).await;
    page.eval(WT_JS).await;
}

/// `wt.open(query)`: `"open"` or the error.
async fn open(page: &mut Page, query: &str) -> String {
    let expr = format!("wt.open({})", Value::from(query));
    page.eval(&expr)
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the page holds `n` lines; returns them.
async fn lines(page: &mut Page, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + PROMPT;
    loop {
        let got = page
            .eval("JSON.stringify({lines: wt.lines, error: wt.error})")
            .await;
        let got: Value = serde_json::from_str(got.as_str().unwrap_or("{}")).expect("JSON");
        let held: Vec<String> = got["lines"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if held.len() >= n {
            return held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} lines within {PROMPT:?}; the page holds {held:?} (error {})",
            got["error"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn hello(epoch: &str, seq: u64) -> String {
    format!(r#"{{"event":"hello","epoch":"{epoch}","seq":{seq}}}"#)
}

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

fn bytes(lines: &[String]) -> u64 {
    lines.iter().map(|l| l.len() as u64 + 1).sum()
}

async fn start(log: &LogFile, extra: &[&str]) -> Server {
    let mut args = vec!["--http3".to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    Server::builder()
        .file(log.path())
        .args(&strs(&args))
        .start()
        .await
}

async fn wait_seq(server: &Server, seq: u64) {
    let read = || async { server.healthz().await["seq"] == seq };
    wait_until_async(PROMPT, &format!("seq {seq} is read"), read).await;
}

/// Backlog then live lines, exactly; the page closes the session, more lines are appended,
/// and a session with `since=LAST&epoch=E` gets exactly those after LAST.
#[needs::tools(chromium)]
#[tokio::test]
async fn a_page_reads_backlog_then_live_lines_and_resumes_with_since() {
    let log = LogFile::new();
    let old = numbered("before ", 1..=4);
    log.append_lines(&old);
    let s = start(&log, &[]).await;
    wait_seq(&s, 4).await;
    let epoch = s.healthz().await["epoch"]
        .as_str()
        .expect("epoch")
        .to_string();
    let name = log
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let chromium = Chromium::launch().await;
    let mut page = chromium.page().await;
    load(&mut page, &format!("{}/", s.base_url())).await;
    assert_eq!(open(&mut page, "backlog=2").await, "open");
    let mut want = vec![hello(&epoch, 4)];
    want.extend(frames(&name, 3, bytes(&old[..2]), &old[2..]));
    assert_eq!(lines(&mut page, 3).await, want);

    let live = numbered("live ", 1..=50);
    log.append_lines(&live);
    want.extend(frames(&name, 5, bytes(&old), &live));
    assert_eq!(lines(&mut page, 53).await, want);
    let sessions = || async { s.healthz().await["webtransport"]["sessions"] == 1 };
    wait_until_async(PROMPT, "one session", sessions).await;

    page.eval("wt.session.close({closeCode: 0, reason: 'bye'}); true")
        .await;
    let sessions = || async { s.healthz().await["webtransport"]["sessions"] == 0 };
    wait_until_async(PROMPT, "the session ends", sessions).await;
    let more = numbered("more ", 1..=5);
    log.append_lines(&more);
    wait_seq(&s, 59).await;
    assert_eq!(
        open(&mut page, &format!("since=54&epoch={epoch}")).await,
        "open"
    );
    let mut want = vec![hello(&epoch, 59)];
    want.extend(frames(&name, 55, bytes(&old) + bytes(&live), &more));
    assert_eq!(lines(&mut page, 6).await, want);
}

/// A page from another origin (`http://localhost:PORT` for a session sent to 127.0.0.1) is
/// refused by the server; with `--token`, a session without `?token=` is refused and one with it opens.
#[needs::tools(chromium)]
#[tokio::test]
async fn a_cross_origin_page_and_a_missing_token_are_refused() {
    let log = LogFile::new();
    let s = start(&log, &["--token", "s3cret"]).await;
    let port = s.addr().port();
    let chromium = Chromium::launch().await;

    // A document without the viewer's CSP, so that it is the server that refuses.
    let mut page = chromium.page().await;
    load(&mut page, &format!("http://localhost:{port}/healthz")).await;
    let refused = open(&mut page, "backlog=0&token=s3cret").await;
    assert_ne!(refused, "open", "a cross-origin session opened");
    assert!(refused.contains("WebTransportError"), "{refused}");
    s.wait_for_log("refused a cross-origin request", PROMPT)
        .await;

    load(&mut page, &format!("{}/", s.base_url())).await;
    let refused = open(&mut page, "backlog=0").await;
    assert!(refused.contains("WebTransportError"), "{refused}");
    assert_eq!(s.healthz().await["webtransport"]["sessions"], 0);
    assert_eq!(open(&mut page, "backlog=0&token=s3cret").await, "open");
    let got = lines(&mut page, 1).await;
    assert!(got[0].starts_with(r#"{"event":"hello""#), "{got:?}");
}

/// `logtail.lines()` of the viewer, as `(seq, line)`.
async fn viewer_lines(page: &mut Page) -> Vec<(u64, String)> {
    let text = page.eval("JSON.stringify(logtail.lines())").await;
    let lines: Value = serde_json::from_str(text.as_str().unwrap_or("[]")).expect("JSON");
    lines
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    let seq = l["seq"].as_u64().expect("seq");
                    (seq, l["line"].as_str().expect("line").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_viewer_lines(page: &mut Page, want: &[(u64, String)]) {
    let deadline = std::time::Instant::now() + PROMPT;
    loop {
        let got = viewer_lines(page).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the viewer shows {want:?} within {PROMPT:?}; it holds {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn seqd(first: u64, lines: &[String]) -> Vec<(u64, String)> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| (first + i as u64, l.clone()))
        .collect()
}

/// The viewer with `#wt=1` streams over WebTransport (the server counts one session and no
/// other client), backlog then live lines exactly; without `--http3` the same page falls
/// back to WebSocket and shows the same.
#[needs::tools(chromium)]
#[tokio::test]
async fn the_viewer_uses_webtransport_with_wt_1_and_falls_back_to_websocket() {
    let log = LogFile::new();
    let old = numbered("old ", 1..=3);
    log.append_lines(&old);
    let s = start(&log, &[]).await;
    wait_seq(&s, 3).await;
    let chromium = Chromium::launch().await;
    let mut page = chromium.page().await;
    page.goto(&format!("{}/#wt=1", s.base_url())).await;
    wait_viewer_lines(&mut page, &seqd(1, &old)).await;
    let counted = || async {
        let h = s.healthz().await;
        h["webtransport"]["sessions"] == 1 && h["clients"] == 1
    };
    wait_until_async(PROMPT, "one WebTransport session, no other client", counted).await;
    let live = numbered("new ", 1..=20);
    log.append_lines(&live);
    let mut want = seqd(1, &old);
    want.extend(seqd(4, &live));
    wait_viewer_lines(&mut page, &want).await;

    // The page asks for the default backlog: all 23 lines.
    let plain = Server::builder()
        .file(log.path())
        .args(&["--lines", "100"])
        .start()
        .await;
    page.goto(&format!("{}/#wt=1", plain.base_url())).await;
    wait_viewer_lines(&mut page, &want).await;
    let ws = || async { plain.healthz().await["clients"] == 1 };
    wait_until_async(PROMPT, "the fallback WebSocket", ws).await;
}
