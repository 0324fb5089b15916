//! `/healthz` and `/metrics`: what an operator sees matches what happened.

use std::time::Duration;

use crate::harness::{LogFile, PROMPT, Server, WsClient, http_get, wait_until_async};

/// The value of counter or gauge `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("metric {name} is not a number ({e}):\n{text}"))
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
        ["inode", "name", "offset", "size", "state"],
        "no path: {h}"
    );
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
            .starts_with("text/plain"),
        "{resp:?}"
    );
    let text = resp.text();
    assert_eq!(metric(&text, "logtail_lines_read_total"), 4);
    assert_eq!(metric(&text, "logtail_bytes_read_total"), 19);
    assert_eq!(metric(&text, "logtail_lines_sent_total"), 8);
    assert_eq!(metric(&text, "logtail_bytes_sent_total"), 38);
    assert_eq!(metric(&text, "logtail_clients"), 2);
    assert_eq!(metric(&text, "logtail_clients_total"), 2);
    assert_eq!(metric(&text, "logtail_truncations_total"), 1);
    assert_eq!(metric(&text, "logtail_rotations_total"), 1);
    assert_eq!(metric(&text, "logtail_slow_client_drops_total"), 0);
    assert!(
        text.contains("# TYPE logtail_lines_read_total counter"),
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
