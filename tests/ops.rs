//! `/healthz` and `/metrics`: what an operator sees matches what happened.

use std::time::Duration;

use crate::harness::{
    LogFile, PROMPT, RawWs, Server, Sig, SseStream, WsClient, http_get, wait_until_async,
};

/// The value of counter or gauge `name` in a Prometheus text exposition.
/// The value of metric `name`, summed over its labelled series.
fn metric(text: &str, name: &str) -> u64 {
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            Some(
                value
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("metric {name} is not a number ({e}):\n{text}")),
            )
        })
        .collect();
    assert!(!values.is_empty(), "no metric {name} in:\n{text}");
    values.iter().sum()
}

/// `/healthz` names the file and its state (waiting, then following with the offset
/// read), the clients, the epoch and the last seq.
#[tokio::test]
async fn healthz_reports_file_state_clients_epoch_and_seq() {
    let log = LogFile::missing();
    let server = Server::start(log.path(), &[]).await;
    let h = server.healthz().await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["files"][0]["state"], "waiting", "{h}");
    assert_eq!(h["files"][0]["name"], "app.log", "{h}");
    let keys: Vec<&String> = h["files"][0].as_object().expect("a file").keys().collect();
    assert_eq!(
        keys,
        ["inode", "last_line_at", "name", "offset", "size", "state"],
        "no path: {h}"
    );
    assert_eq!(
        h["files"][0]["last_line_at"],
        serde_json::Value::Null,
        "{h}"
    );
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{h}");
    assert!(h["uptime_seconds"].as_u64().is_some(), "{h}");
    assert!(
        !h.to_string().contains(&log.path().display().to_string()),
        "the server path is never shown: {h}"
    );
    assert_eq!(h["seq"], 0, "{h}");
    let epoch = h["epoch"].as_str().expect("epoch is a string").to_owned();
    assert_eq!(epoch.len(), 16, "{h}");

    let mut client = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    server.wait_clients(1, PROMPT).await;
    log.append(b"one\ntwo\n");
    client.expect_lines(&["one", "two"]).await;
    // The offset is recorded at the end of the tailer's pass, just after the
    // lines went out: wait for it rather than race it.
    wait_until_async(PROMPT, "/healthz offset reaches 8", || async {
        server.healthz().await["files"][0]["offset"] == 8
    })
    .await;
    let h = server.healthz().await;
    assert_eq!(h["files"][0]["state"], "following", "{h}");
    assert_eq!(h["files"][0]["offset"], 8, "{h}");
    assert_eq!(h["files"][0]["size"], 8, "{h}");
    assert!(
        h["files"][0]["last_line_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{h}"
    );
    assert_ne!(h["files"][0]["inode"], 0, "{h}");
    assert_eq!(h["seq"], 2, "{h}");
    assert_eq!(h["clients"], 1, "{h}");
    assert_eq!(
        h["epoch"],
        epoch.as_str(),
        "the epoch changed within one server life: {h}"
    );
    assert_eq!(h["history"]["lines"], 2, "{h}");
}

/// `/metrics` counts lines and bytes read and sent, clients, truncations, rotations and
/// slow-client drops, in Prometheus text format.
#[tokio::test]
async fn metrics_count_what_happened() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--send-timeout", "1"]).await;
    let mut a = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    let mut b = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    server.wait_clients(2, PROMPT).await;
    log.append(b"alpha\nbeta\n");
    a.expect_lines(&["alpha", "beta"]).await;
    b.expect_lines(&["alpha", "beta"]).await;
    log.truncate();
    log.append(b"gamma\n");
    a.expect_lines(&["gamma"]).await;
    b.expect_lines(&["gamma"]).await;
    log.rename_create("app.log.1");
    log.append(b"delta\n");
    a.expect_lines(&["delta"]).await;
    b.expect_lines(&["delta"]).await;

    let resp = http_get(server.addr(), "/metrics", &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
        "{resp:?}"
    );
    let text = resp.text();
    assert_eq!(metric(&text, "logtail_lines_read_total"), 4);
    // As read from the file: newlines included.
    assert_eq!(metric(&text, "logtail_read_bytes_total"), 23);
    assert_eq!(metric(&text, "logtail_lines_sent_total"), 8);
    assert_eq!(metric(&text, "logtail_sent_bytes_total"), 38);
    assert_eq!(metric(&text, "logtail_clients"), 2);
    assert_eq!(metric(&text, "logtail_clients_total"), 2);
    assert_eq!(metric(&text, "logtail_truncations_total"), 1);
    assert_eq!(metric(&text, "logtail_rotations_total"), 1);
    assert_eq!(metric(&text, "logtail_slow_client_drops_total"), 0);
    assert!(text.contains("# TYPE logtail_lines_read counter"), "{text}");
    // Labelled where it helps: per file, per transport.
    for series in [
        "logtail_lines_read_total{file=\"app.log\"} 4",
        "logtail_read_bytes_total{file=\"app.log\"} 23",
        "logtail_rotations_total{file=\"app.log\"} 1",
        "logtail_truncations_total{file=\"app.log\"} 1",
        "logtail_clients{transport=\"ws\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "no `{series}` in:\n{text}"
        );
    }
    assert!(
        metric(&text, "logtail_delivery_delay_seconds_count") >= 6,
        "{text}"
    );

    // A client that never reads, with lines it cannot take: dropped and counted.
    a.close().await;
    b.close().await;
    server.wait_clients(0, PROMPT).await;
    let stuck = crate::harness::RawWs::connect(server.addr(), "/ws?backlog=0").await;
    server.wait_clients(1, PROMPT).await;
    let line = "x".repeat(1000);
    wait_until_async(
        Duration::from_secs(30),
        "the stuck client is dropped",
        || {
            log.append_lines((0..200).map(|_| line.as_str()));
            let server = &server;
            async move {
                let m = http_get(server.addr(), "/metrics", &[]).await.text();
                metric(&m, "logtail_slow_client_drops_total") == 1
            }
        },
    )
    .await;
    drop(stuck);
    server.wait_clients(0, PROMPT).await;
    let text = http_get(server.addr(), "/metrics", &[]).await.text();
    assert_eq!(metric(&text, "logtail_clients_total"), 3);
    assert_eq!(metric(&text, "logtail_clients"), 0);
}

/// `--log-format json` writes the server's own logs as JSON lines.
#[tokio::test]
async fn json_log_format() {
    let log = LogFile::new();
    let server = Server::start(log.path(), &["--log-format", "json"]).await;
    let stderr = server.stderr();
    let listening = stderr
        .lines()
        .find(|l| l.contains("listening on"))
        .expect("a listening line");
    let v: serde_json::Value =
        serde_json::from_str(listening).unwrap_or_else(|e| panic!("not JSON ({e}): {listening}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("listening on http://127.0.0.1:"),
        "{v}"
    );
}

/// `/readyz` is 200 once every file was looked at: a followed one and one
/// waited for alike (the server logs `listening on` only after that).
#[tokio::test]
async fn readyz_once_every_file_was_looked_at() {
    let log = LogFile::new();
    let dir = log.dir().to_path_buf();
    let missing = dir.join("later.log");
    let server = Server::builder()
        .file(log.path())
        .arg("--file")
        .arg(missing.display().to_string())
        .start()
        .await;
    let r = http_get(server.addr(), "/readyz", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
}

/// The `client disconnected` lines of a JSON log so far.
fn disconnects(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.contains("client disconnected"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// One log line per connect and one per disconnect, as JSON, with the
/// peer, the transport, the selection, how long, how many lines and why it
/// ended — for every end that can be provoked; never the token.
#[tokio::test]
async fn client_connects_and_ends_are_logged_with_why() {
    const TOKEN: &str = "s3cret-never-logged";
    let log = LogFile::new();
    let server = Server::builder()
        .file(log.path())
        .args(&[
            "--log-format",
            "json",
            "--ping-interval",
            "1",
            "--trust-proxy",
        ])
        .args(&["--token", TOKEN])
        .start()
        .await;
    let addr = server.addr();
    let auth = format!("Bearer {TOKEN}");
    let wait_ends = |n: usize| {
        let server = &server;
        async move {
            wait_until_async(PROMPT, "disconnect lines", || async {
                disconnects(&server.stderr()).len() >= n
            })
            .await;
        }
    };
    // Closed by the client, after two lines; with a selection and a proxy.
    let req = WsClient::request(&server.ws_url("/ws?backlog=0&file=app.log"))
        .with_header("Authorization", auth.as_str())
        .with_header("X-Forwarded-For", "203.0.113.7");
    let mut ws = WsClient::connect_with(req).await;
    server.wait_clients(1, PROMPT).await;
    log.append(b"one\ntwo\n");
    ws.expect_lines(&["one", "two"]).await;
    ws.close().await;
    wait_ends(1).await;
    // SSE, the token in the query (as EventSource must), closed by the client.
    let sse = SseStream::connect(addr, &format!("/events?backlog=1&token={TOKEN}"), &[]).await;
    assert_eq!(sse.status, 200);
    server.wait_clients(1, PROMPT).await;
    drop(sse);
    wait_ends(2).await;
    // A message over 4 KiB.
    let req = WsClient::request(&server.ws_url("/ws?backlog=0"))
        .with_header("Authorization", auth.as_str());
    let mut big = WsClient::connect_with(req).await;
    big.send_text(&"x".repeat(8 * 1024)).await;
    assert_eq!(big.expect_close(PROMPT).await.0, 1009);
    wait_ends(3).await;
    // Silent: never reads, so never answers a ping (two periods: 2 s).
    let silent = RawWs::connect_with(
        addr,
        "/ws?backlog=0",
        &[("Authorization", auth.as_str())],
        4096,
    )
    .await;
    assert_eq!(silent.head.status, 101);
    wait_ends(4).await;
    drop(silent);
    // Shutdown, with one client connected.
    let req = WsClient::request(&server.ws_url("/ws?backlog=0"))
        .with_header("Authorization", auth.as_str());
    let _last = WsClient::connect_with(req).await;
    server.wait_clients(1, PROMPT).await;
    server.signal(Sig::Term);
    wait_ends(5).await;

    let stderr = server.stderr();
    assert!(!stderr.contains(TOKEN), "the token was logged:\n{stderr}");
    let ends = disconnects(&stderr);
    let got: Vec<(&str, &str, u64)> = ends
        .iter()
        .map(|v| {
            let f = &v["fields"];
            (
                f["transport"].as_str().unwrap_or("?"),
                f["reason"].as_str().unwrap_or("?"),
                f["lines"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ws", "closed by client", 2),
            ("sse", "closed by client", 1),
            ("ws", "message too big", 0),
            ("ws", "ping timeout", 0),
            ("ws", "shutdown", 0),
        ],
        "{stderr}"
    );
    for v in &ends {
        let f = &v["fields"];
        assert!(
            f["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{v}"
        );
        assert!(f["duration_seconds"].as_f64().is_some(), "{v}");
    }
    assert_eq!(
        ends[0]["fields"]["forwarded_for"], "203.0.113.7",
        "{}",
        ends[0]
    );
    let connects: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.contains("client connected"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(connects.len(), 5, "{stderr}");
    assert_eq!(
        connects[0]["fields"]["files"], "[\"app.log\"]",
        "{}",
        connects[0]
    );
    assert_eq!(connects[1]["fields"]["transport"], "sse", "{}", connects[1]);
}

/// `--base-path /logs/`: every endpoint under the prefix (the trailing `/`
/// dropped), nothing at the root, the bare prefix redirects to the page.
#[tokio::test]
async fn every_endpoint_lives_under_the_base_path() {
    let log = LogFile::with_lines(["one"]);
    let server = Server::start(log.path(), &["--base-path", "/logs/"]).await;
    let addr = server.addr();
    for path in [
        "/logs/",
        "/logs/viewer.js",
        "/logs/viewer.css",
        "/logs/favicon.svg",
        "/logs/healthz",
        "/logs/readyz",
        "/logs/files",
        "/logs/metrics",
    ] {
        let r = http_get(addr, path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let page = http_get(addr, "/logs/", &[]).await.text();
    for link in [
        r#"href="viewer.css""#,
        r#"src="viewer.js""#,
        r#"href="favicon.svg""#,
    ] {
        assert!(page.contains(link), "relative link {link}: {page}");
    }
    assert!(!page.contains("\"/viewer"), "an absolute link: {page}");
    let bare = http_get(addr, "/logs", &[]).await;
    assert_eq!(
        (bare.status, bare.header("location")),
        (308, Some("/logs/"))
    );
    for path in [
        "/",
        "/ws",
        "/events",
        "/healthz",
        "/files",
        "/viewer.js",
        "/logsws",
        "/logs/logs/ws",
    ] {
        let r = http_get(addr, path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let mut ws = WsClient::connect(&server.ws_url("/logs/ws?backlog=1")).await;
    ws.expect_lines(&["one"]).await;
    let mut sse = SseStream::connect(addr, "/logs/events?backlog=1", &[]).await;
    assert_eq!(sse.status, 200);
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["two"]);
    ws.expect_lines(&["two"]).await;
    let text = sse.read_until_contains("data: two\n", PROMPT).await;
    assert!(text.contains("data: one\n"), "{text}");
}

/// The server's open descriptors, threads and resident memory (KiB), from `/proc`.
fn resources(pid: u32) -> (usize, usize, u64) {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
        rss,
    )
}

/// Churn: 2 000 clients connect, receive a line and leave (WebSocket and SSE,
/// eight at a time); afterwards the server holds the descriptors and threads it
/// held before, its memory is back near where it was, and it still serves.
#[tokio::test]
async fn churn_leaves_no_descriptor_thread_or_memory_behind() {
    const CYCLES: usize = 2_000;
    const PARALLEL: usize = 8;
    let log = LogFile::with_lines(["only line"]);
    let server = Server::start(log.path(), &[]).await;
    let pid = server.pid();
    let addr = server.addr();
    let url = server.ws_url("/ws?backlog=1");
    let cycle = {
        let url = url.clone();
        move |i: usize| {
            let url = url.clone();
            async move {
                if i.is_multiple_of(2) {
                    let mut ws = WsClient::connect(&url).await;
                    ws.expect_lines(&["only line"]).await;
                    ws.close().await;
                } else {
                    let mut sse = SseStream::connect(addr, "/events?backlog=1", &[]).await;
                    assert_eq!(sse.status, 200);
                    sse.read_until_contains("data: only line\n", PROMPT).await;
                }
            }
        }
    };
    // Warm up (the runtime's worker threads, allocator arenas), then measure.
    for i in 0..64 {
        cycle(i).await;
    }
    server.wait_clients(0, PROMPT).await;
    let before = resources(pid);
    let mut workers = Vec::new();
    for w in 0..PARALLEL {
        let cycle = cycle.clone();
        workers.push(tokio::spawn(async move {
            for i in (w..CYCLES).step_by(PARALLEL) {
                cycle(i).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("a churn worker");
    }
    server.wait_clients(0, PROMPT).await;
    // Closed sockets may take a moment to be released by the tasks that held
    // them, and a blocking-pool thread started meanwhile ends after 10 s idle.
    // (The baseline itself may hold a socket still closing: at most it.)
    wait_until_async(
        Duration::from_secs(30),
        "descriptors and threads back to the baseline",
        || async {
            let now = resources(pid);
            now.0 <= before.0 && now.1 <= before.1
        },
    )
    .await;
    let after = resources(pid);
    eprintln!("churn of {CYCLES}: (fds, threads, RSS KiB) before {before:?}, after {after:?}");
    assert!(after.0 <= before.0, "descriptors: {before:?} -> {after:?}");
    assert!(after.1 <= before.1, "threads: {before:?} -> {after:?}");
    assert!(
        after.2 <= before.2 + 16 * 1024,
        "RSS grew from {} KiB to {} KiB",
        before.2,
        after.2
    );
    let text = http_get(addr, "/metrics", &[]).await.text();
    assert_eq!(metric(&text, "logtail_clients"), 0);
    let mut ws = WsClient::connect(&url).await;
    ws.expect_lines(&["only line"]).await;
}
