//! `POST /rtc` (issue 16) in headless Chromium: a page at the server's own origin (its
//! `/healthz` document, which opens no stream of its own) makes an `RTCPeerConnection`
//! with a `logs` data channel, posts its offer with `fetch`, applies the answer, and
//! collects the messages; the tests read them over CDP (the helpers of tests/browser.rs)
//! and assert exact lines in order. A second page gets the same stream; closing a page
//! frees its session on the server.
//!
//! Chromium on loopback needs both `--allow-loopback-in-peer-connection` and
//! `--disable-features=WebRtcHideLocalIpsWithMdns` (shared/reference/transports.md §0
//! rows 8-9: on a host with only `lo`, either alone finds no candidate).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Chromium, Page};
use crate::harness::{LogFile, PROMPT, Server, http_get, numbered, wait_until_async};

const WEBRTC_FLAGS: [&str; 2] = [
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
];

/// The page's side, as the README shows it: `rtcOpen(path)` resolves to the POST's status
/// (and the refusal's text); messages pile up in `__rtc.got`, the channel's state in
/// `__rtc.state`. (`type`: the offer's content type, `application/sdp` unless given.)
const OPEN_JS: &str = r#"window.rtcOpen = async (path, type) => {
  const pc = new RTCPeerConnection();
  const dc = pc.createDataChannel('logs');
  const t = { pc, dc, got: [], state: 'new' };
  window.__rtc = t;
  dc.onopen = () => { t.state = 'open'; };
  dc.onclose = () => { t.state = 'closed'; };
  dc.onmessage = (e) => t.got.push(e.data);
  await pc.setLocalDescription(await pc.createOffer());
  // Non-trickle: the offer goes with every candidate gathered.
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
    setTimeout(done, 3000);
  });
  const res = await fetch(path, { method: 'POST',
    headers: { 'content-type': type || 'application/sdp' }, body: pc.localDescription.sdp });
  const text = await res.text();
  if (res.status !== 201) return { status: res.status, text };
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  return { status: 201, text: '' };
}; true"#;

/// A tab on the server's origin, ready to open a session.
async fn rtc_page(page: &mut Page, server: &Server) {
    page.goto(&server.http_url("/healthz")).await;
    assert_eq!(page.eval(OPEN_JS).await, Value::Bool(true));
}

/// Opens a session from the page on `path`; panics unless answered 201.
async fn open(page: &mut Page, path: &str) {
    let r = page
        .eval(&format!("window.rtcOpen({})", Value::from(path)))
        .await;
    assert_eq!(r["status"], 201, "POST {path} from the page: {r}");
}

/// Waits until the page holds at least `n` messages; returns them all, parsed.
async fn wait_messages(page: &mut Page, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PROMPT;
    loop {
        let got = page
            .eval("JSON.stringify({ state: __rtc.state, got: __rtc.got })")
            .await;
        let got: Value = serde_json::from_str(got.as_str().unwrap_or("{}")).unwrap_or(json!({}));
        let messages: Vec<Value> = got["got"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|t| serde_json::from_str(t.as_str().unwrap_or("")).unwrap_or(Value::Null))
                    .collect()
            })
            .unwrap_or_default();
        if messages.len() >= n {
            return messages;
        }
        if Instant::now() >= deadline {
            panic!(
                "the page holds {} of {n} messages after {PROMPT:?}: {got}",
                messages.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `line`s of the line frames among `messages` (the `hello` and events left out).
fn lines(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m["line"].as_str().map(str::to_owned))
        .collect()
}

async fn rtc_sessions(server: &Server) -> i64 {
    server.healthz().await["rtc"]["sessions"]
        .as_i64()
        .unwrap_or(-1)
}

/// A page posts its offer, opens `logs` and receives the `hello`, the backlog and then
/// live lines, exactly and in order; a second page gets the same stream; closing a page
/// frees its session (and its client slot) on the server.
#[needs::tools(chromium)]
#[tokio::test]
async fn a_page_receives_lines_over_a_data_channel_and_closing_it_frees_the_session() {
    let browser = Chromium::launch_with(&WEBRTC_FLAGS).await;
    let log = LogFile::with_lines(numbered("old ", 1..=4));
    let server = Server::start(log.path(), &[]).await;
    let mut first = browser.page().await;
    rtc_page(&mut first, &server).await;
    open(&mut first, "rtc?backlog=2").await;
    let got = wait_messages(&mut first, 3).await;
    assert_eq!(got[0]["event"], "hello", "{got:?}");
    assert_eq!(got[0]["seq"], 4);
    assert_eq!(lines(&got), ["old 3", "old 4"]);

    // A second tab (a new target, then its page over CDP).
    first
        .call("Target.createTarget", json!({ "url": "about:blank" }))
        .await;
    let mut second = browser.page().await;
    rtc_page(&mut second, &server).await;
    open(&mut second, "rtc?backlog=0").await;
    wait_messages(&mut second, 1).await;
    server.wait_clients(2, PROMPT).await;
    assert_eq!(rtc_sessions(&server).await, 2);

    let live = numbered("live ", 1..=100);
    for chunk in live.chunks(25) {
        log.append_lines(chunk);
    }
    let mut want = vec!["old 3".to_string(), "old 4".to_string()];
    want.extend(live.iter().cloned());
    let got = wait_messages(&mut first, 1 + want.len()).await;
    assert_eq!(lines(&got), want);
    let seqs: Vec<u64> = got
        .iter()
        .skip(1)
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(seqs, (3..=104).collect::<Vec<u64>>());
    let got = wait_messages(&mut second, 1 + live.len()).await;
    assert_eq!(lines(&got), live);

    // Closing the first tab ends its session; the second goes on.
    first.call("Page.close", json!({})).await;
    wait_until_async(
        Duration::from_secs(40),
        "the closed page's session is freed",
        || async { rtc_sessions(&server).await == 1 },
    )
    .await;
    server.wait_clients(1, PROMPT).await;
    log.append_lines(["after"]);
    let got = wait_messages(&mut second, 2 + live.len()).await;
    assert_eq!(lines(&got).last().map(String::as_str), Some("after"));
}

/// A page on another origin is refused before anything is answered. Its `fetch` of an
/// `application/sdp` body is preflighted, and the preflight is refused (no CORS); one sent
/// as `text/plain` (a simple request, no preflight) reaches the server, whose `Origin` check
/// refuses it (403, counted in `/metrics`) as it would on `/ws`.
#[needs::tools(chromium)]
#[tokio::test]
async fn a_cross_origin_page_is_refused() {
    let browser = Chromium::launch_with(&WEBRTC_FLAGS).await;
    let log = LogFile::new();
    let server = Server::start(log.path(), &[]).await;
    // `localhost` and `127.0.0.1` are different origins; both names pass the DNS-rebinding
    // guard, so only the Origin rule refuses it.
    let other = Server::start(log.path(), &[]).await;
    let mut page = browser.page().await;
    rtc_page(&mut page, &other).await;
    let url = server.http_url("/rtc").replace("127.0.0.1", "localhost");
    for kind in ["application/sdp", "text/plain"] {
        let r = page
            .eval(&format!(
                "window.rtcOpen({}, {}).catch((e) => ({{ status: 0, text: String(e) }}))",
                Value::from(url.as_str()),
                Value::from(kind)
            ))
            .await;
        // No CORS headers either way: the page sees a network error.
        assert_eq!(r["status"], 0, "{kind}: {r}");
    }
    let metrics = http_get(server.addr(), "/metrics", &[]).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "logtail_rejected_requests_total 1"),
        "the text/plain POST was refused by the Origin check: {metrics}"
    );
    assert_eq!(rtc_sessions(&server).await, 0);
    assert_eq!(server.client_count().await, 0);
}
