//! Behind a reverse proxy: the README's nginx block, run by a real nginx on a free
//! port, in front of a server with `--base-path /logs`; WebSocket and SSE streams
//! and the viewer page go through it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{KillOnDrop, LogFile, PROMPT, Server, SseStream, WsClient, http_get};

/// The README's first ```nginx block: (what goes in `http {}`, the `location`).
fn readme_nginx_block() -> (String, String) {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```nginx\n")
        .expect("an nginx block in the README")
        + 9;
    let len = readme[start..].find("```").expect("the block's end");
    let block = &readme[start..start + len];
    let at = block.find("location ").expect("a location in the block");
    (block[..at].to_string(), block[at..].to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts nginx (one process, in the foreground, everything in `dir`) listening on
/// `port`, proxying the README's location to `backend`; waits until it accepts.
fn start_nginx(nginx: &Path, dir: &Path, port: u16, backend: u16) -> KillOnDrop {
    let (http, location) = readme_nginx_block();
    let location = location.replace("127.0.0.1:8080", &format!("127.0.0.1:{backend}"));
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n  \
         server {{\n    listen 127.0.0.1:{port};\n{location}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nginx");
    let guard = KillOnDrop(child);
    let deadline = Instant::now() + PROMPT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

#[needs::tools(nginx)]
#[tokio::test]
async fn nginx_streams_under_a_base_path() {
    let nginx = needs::program!(nginx);
    let log = LogFile::with_lines(["one"]);
    let server = Server::start(
        log.path(),
        &[
            "--base-path",
            "/logs",
            "--trust-proxy",
            "--log-format",
            "json",
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = free_port();
    let _nginx = start_nginx(&nginx, dir.path(), port, server.addr().port());
    let proxy: std::net::SocketAddr = ([127, 0, 0, 1], port).into();

    let page = http_get(proxy, "/logs/", &[]).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains(r#"src="viewer.js""#));
    assert_eq!(http_get(proxy, "/logs/viewer.js", &[]).await.status, 200);

    let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/logs/ws?backlog=1")).await;
    ws.expect_lines(&["one"]).await;
    let mut sse = SseStream::connect(proxy, "/logs/events?backlog=1", &[]).await;
    assert_eq!(sse.status, 200);
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["two", "three"]);
    ws.expect_lines(&["two", "three"]).await;
    // Unbuffered: each event reaches the client as it is sent.
    let text = sse.read_until_contains("data: three\n", PROMPT).await;
    assert!(
        text.contains("data: one\n") && text.contains("data: two\n"),
        "{text}"
    );
    // The proxy's client address reached the log.
    let logged = server.stderr();
    assert!(
        logged.lines().any(|l| l.contains("client connected") && l.contains(r#""forwarded_for":"127.0.0.1""#)),
        "{logged}"
    );
}
