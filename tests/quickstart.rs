//! The README's quick start, typed literally (issue 9).
//!
//! The commands are read from README.md's "Quick start" section itself, so the test
//! changes when the README does: the server command (`cargo run --release -- ARGS`, run
//! here as the binary cargo built for the tests, with ARGS exactly as written), then every
//! `websocat`, `curl` and `echo` line, each run by `sh -c` in the server's working
//! directory — a fresh temp dir where `app.log` does not exist yet. Only the port is
//! changed: `8080` may be taken, so the server gets `--port 0` and every `8080` in the
//! client commands becomes the port it chose.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::harness::{KillOnDrop, PROMPT, Server};

const README: &str = include_str!("../README.md");
/// The port the README's commands use.
const README_PORT: &str = "8080";

/// The quick start's commands, as the README writes them.
#[derive(Debug, Default)]
struct QuickStart {
    /// What follows `cargo run --release --`.
    server_args: Vec<String>,
    /// `websocat …` and `curl …`: clients that print what they receive.
    clients: Vec<String>,
    /// `echo … >> app.log`.
    appends: Vec<String>,
}

/// The `sh` code blocks of the README's "## Quick start" section, comments stripped.
fn quick_start() -> QuickStart {
    let start = README
        .find("\n## Quick start")
        .expect("README.md has a `## Quick start` section");
    let section = &README[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut quick = QuickStart::default();
    let mut in_sh = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        // `cmd   # comment`: a comment starts at a `#` after whitespace.
        let command = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        }
        .trim();
        if command.is_empty() || command == "cargo test" {
            continue;
        }
        assert!(
            !command.contains(['"', '\'']),
            "quoting in {command:?}: teach tests/quickstart.rs to split it"
        );
        if let Some(args) = command.strip_prefix("cargo run --release -- ") {
            quick.server_args = args.split_whitespace().map(str::to_owned).collect();
        } else if command.starts_with("websocat ") || command.starts_with("curl ") {
            quick.clients.push(command.to_owned());
        } else if command.starts_with("echo ") {
            quick.appends.push(command.to_owned());
        } else {
            panic!("README quick start has a command this test does not know: {command:?}");
        }
    }
    quick
}

/// Runs `command` through `sh -c` in `dir` (exec'd, so its PID is the program's), stdin
/// kept open as a terminal's would be; its stdout lines arrive on the receiver.
fn spawn_client(
    command: &str,
    dir: &std::path::Path,
    path: &std::ffi::OsStr,
) -> (KillOnDrop, UnboundedReceiver<String>) {
    let mut child = KillOnDrop(
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .current_dir(dir)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sh -c {command:?}: {e}")),
    );
    let stdout = child.0.stdout.take().expect("stdout piped");
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The next line a client prints that carries a log line — every line for websocat, the
/// `data:` lines of unnamed events for curl (`id:`, `retry:`, blank lines and named events
/// such as `event: following` are not log lines) — must be
/// `want`: exactly, in order, nothing in between.
async fn expect_line(rx: &mut UnboundedReceiver<String>, want: &str, who: &str) {
    let sse = who.starts_with("curl ");
    let mut skipped = Vec::new();
    // Inside a named SSE event (`event: rotated` …): its data is not a log line.
    let mut in_event = false;
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if sse && (in_event || !line.starts_with("data: ")) => {
                if line.starts_with("event: ") {
                    in_event = true;
                } else if line.is_empty() {
                    in_event = false;
                }
                skipped.push(line);
            }
            Ok(Some(line)) => {
                assert_eq!(line, want, "{who} printed {line:?} where {want:?} was due");
                return;
            }
            Ok(None) => panic!("{who} exited before printing {want:?} (after {skipped:?})"),
            Err(_) => panic!("{who} did not print {want:?} within {PROMPT:?} (after {skipped:?})"),
        }
    }
}

#[test]
fn the_readme_quick_start_is_what_this_test_runs() {
    let quick = quick_start();
    assert_eq!(
        quick.server_args,
        ["--file", "app.log", "--port", README_PORT],
        "the quick start's server command changed: update this test with it"
    );
    assert!(quick.clients.iter().any(|c| c.starts_with("websocat ")));
    assert!(quick.clients.iter().any(|c| c.starts_with("curl -N ")));
    assert_eq!(quick.appends, ["echo hello >> app.log"]);
}

/// The quick start: a relative `--file app.log` that does not exist yet, websocat and
/// `curl -N …/events` connected, `echo hello >> app.log` in a shell: both print `hello`.
#[needs::tools(websocat, curl)]
#[tokio::test]
async fn quick_start_typed_literally() {
    run_quick_start(None).await;
}

/// The same with an `app.log` that already holds lines: websocat and curl get its last
/// lines as backlog (`-n 10`), then `hello` live.
#[needs::tools(websocat, curl)]
#[tokio::test]
async fn quick_start_on_an_existing_file() {
    let old: Vec<String> = (1..=12).map(|i| format!("old {i}")).collect();
    run_quick_start(Some(&old)).await;
}

/// Runs the quick start in a fresh directory, `app.log` missing or holding `existing`
/// lines; every client must print the last 10 of those, then `hello`, then `world`. The
/// test needs websocat and curl.
async fn run_quick_start(existing: Option<&[String]>) {
    let websocat = needs::program!(websocat);
    let quick = quick_start();
    let dir = tempfile::Builder::new()
        .prefix("logtail-ws-quickstart-")
        .tempdir()
        .expect("temp dir");
    let mut backlog: Vec<String> = Vec::new();
    if let Some(lines) = existing {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(dir.path().join("app.log"), text).expect("write app.log");
        backlog = lines[lines.len().saturating_sub(10)..].to_vec();
    }

    // The README's arguments, the port aside.
    let mut args = quick.server_args.clone();
    let port = args
        .iter()
        .position(|a| a == "--port")
        .expect("--port in the quick start");
    args[port + 1] = "0".into();
    let server = Server::builder()
        .no_port()
        .args(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .cwd(dir.path())
        .start()
        .await;
    let port = server.addr().port().to_string();

    // websocat where `cargo install` put it, then the usual PATH.
    let mut path = vec![
        websocat
            .parent()
            .expect("websocat's directory")
            .to_path_buf(),
    ];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).expect("PATH");

    let mut clients = Vec::new();
    for command in &quick.clients {
        let command = command.replace(README_PORT, &port);
        let (child, rx) = spawn_client(&command, dir.path(), &path);
        clients.push((command, child, rx));
    }
    server.wait_clients(clients.len() as u64, PROMPT).await;

    for append in &quick.appends {
        let status = Command::new("sh")
            .arg("-c")
            .arg(append)
            .current_dir(dir.path())
            .status()
            .expect("run sh");
        assert!(status.success(), "sh -c {append:?}: {status}");
    }
    for (command, _child, rx) in &mut clients {
        // websocat prints the line; curl prints the SSE field.
        let sse = command.starts_with("curl ");
        for line in backlog.iter().map(String::as_str).chain(["hello"]) {
            let want = if sse {
                format!("data: {line}")
            } else {
                line.to_owned()
            };
            expect_line(rx, &want, command).await;
        }
    }
    let health = server.healthz().await;
    assert_eq!(health["files"][0]["state"], "following", "{health}");
    // Nothing sent to a client names the server's own directory.
    assert!(!health.to_string().contains(&*dir.path().to_string_lossy()));

    // Still live: a second line reaches both.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("app.log"))
        .expect("app.log exists now");
    log.write_all(b"world\n").expect("append");
    for (command, _child, rx) in &mut clients {
        let want = if command.starts_with("curl ") {
            "data: world"
        } else {
            "world"
        };
        tokio::time::timeout(Duration::from_secs(10), expect_line(rx, want, command))
            .await
            .expect("second line");
    }
}
