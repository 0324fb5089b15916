//! The command line: help, flag errors, bind errors and `LOGTAIL_*` environment variables.

use std::time::Duration;

use crate::harness::{LogFile, Server, WsClient, numbered, strs};

const EXIT: Duration = Duration::from_secs(10);

/// `--help` exits 0 and documents every flag of the contract.
#[test]
fn help_exits_0_and_names_the_flags() {
    let out = Server::spawn_raw(&["--help"], &[]).finish(EXIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    for flag in [
        "--file",
        "--port",
        "--bind",
        "--lines",
        "--client-queue",
        "--send-timeout",
        "--history-bytes",
        "--max-line-bytes",
        "--poll",
        "--poll-interval",
    ] {
        assert!(
            out.stdout.contains(flag),
            "--help does not mention {flag}:\n{}",
            out.stdout
        );
    }
}

/// A non-numeric `--port` exits 2 and the message names the flag.
#[test]
fn bad_port_value_exits_2_naming_the_flag() {
    let log = LogFile::new();
    let file = log.path().to_str().unwrap();
    let out = Server::spawn_raw(&["--file", file, "--port", "notanumber"], &[]).finish(EXIT);
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("--port"), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("notanumber"), "stderr:\n{}", out.stderr);
}

/// An unknown flag exits 2 and the message names it.
#[test]
fn unknown_flag_exits_2_naming_it() {
    let log = LogFile::new();
    let file = log.path().to_str().unwrap();
    let out = Server::spawn_raw(&["--file", file, "--port", "0", "--bogus"], &[]).finish(EXIT);
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("--bogus"), "stderr:\n{}", out.stderr);
}

/// Without the required `--file`, it exits 2 and says `--file` is missing.
#[test]
fn missing_file_flag_exits_2() {
    let out = Server::spawn_raw(&["--port", "0"], &[]).finish(EXIT);
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("--file"), "stderr:\n{}", out.stderr);
}

/// A port already in use exits 1; the message names the address and the OS reason.
#[test]
fn taken_port_exits_1_naming_address_and_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let log = LogFile::new();
    let file = log.path().to_str().unwrap();
    let out = Server::spawn_raw(&["--file", file, "--port", &port], &[]).finish(EXIT);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "stderr does not name 127.0.0.1:{port}:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains("address already in use"),
        "stderr does not give the OS reason:\n{}",
        out.stderr
    );
    drop(taken);
}

/// `LOGTAIL_LINES=3` sets the default backlog, as `--lines 3` would.
#[tokio::test]
async fn env_lines_sets_the_backlog() {
    let log = LogFile::with_lines(numbered("line ", 1..=20));
    let server = Server::builder()
        .file(log.path())
        .env("LOGTAIL_LINES", "3")
        .start()
        .await;
    let mut client = WsClient::connect(&server.ws_url("/ws")).await;
    client
        .expect_lines(&["line 18", "line 19", "line 20"])
        .await;
    log.append_lines(["line 21"]);
    client.expect_lines(&["line 21"]).await;
}

/// `LOGTAIL_FILE` and `LOGTAIL_PORT` stand in for `--file` and `--port`.
#[tokio::test]
async fn env_file_and_port_replace_the_flags() {
    let log = LogFile::with_lines(numbered("line ", 1..=12));
    let server = Server::builder()
        .no_port()
        .env("LOGTAIL_FILE", log.path().to_str().unwrap())
        .env("LOGTAIL_PORT", "0")
        .start()
        .await;
    let mut client = WsClient::connect(&server.ws_url("/ws")).await;
    client.expect_lines(&strs(&numbered("line ", 3..=12))).await;
    log.append_lines(["live"]);
    client.expect_lines(&["live"]).await;
}
