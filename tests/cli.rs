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

/// The exit-code rule (`src/error.rs`): a file a flag names that cannot be read is a
/// command-line error, like a bad flag value: `--token-file`, `--tls-cert` and
/// `--tls-key` alike exit 2, before anything is bound, with `error: FLAG PATH: reason`
/// on stderr. (A port that cannot be bound is the server failing: exit 1, above.)
#[test]
fn unreadable_token_file_and_tls_files_exit_2_naming_flag_and_path() {
    let log = LogFile::new();
    let file = log.path().to_str().unwrap();
    let missing = log.sibling("missing.pem");
    let missing = missing.to_str().unwrap();
    let dir = log.dir().to_str().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = log.write_sibling("cert.pem", cert.cert.pem().as_bytes());
    let cert_pem = cert_pem.to_str().unwrap();
    // (the flags after --file and --port, the flag and path the message must name, why)
    let cases: [(&[&str], &str, &str, &str); 5] = [
        (
            &["--token-file", missing],
            "--token-file",
            missing,
            "no such file",
        ),
        (&["--token-file", dir], "--token-file", dir, "directory"),
        (
            &["--tls-cert", missing, "--tls-key", cert_pem],
            "--tls-cert",
            missing,
            "no such file",
        ),
        (
            &["--tls-cert", dir, "--tls-key", cert_pem],
            "--tls-cert",
            dir,
            "directory",
        ),
        (
            &["--tls-cert", cert_pem, "--tls-key", missing],
            "--tls-key",
            missing,
            "no such file",
        ),
    ];
    let mut failures = Vec::new();
    for (flags, flag, path, reason) in cases {
        let mut args = vec!["--file", file, "--port", "0"];
        args.extend_from_slice(flags);
        let out = Server::spawn_raw(&args, &[]).finish(EXIT);
        let named = format!("error: {flag} {path}: ");
        let line = out.stderr.lines().find(|l| l.starts_with(&named));
        if out.code != Some(2) {
            failures.push(format!(
                "{flags:?}: exit {:?}, stderr: {}",
                out.code, out.stderr
            ));
        } else if out.stderr.contains("listening on") {
            failures.push(format!("{flags:?}: listened first; stderr: {}", out.stderr));
        } else if !line.is_some_and(|l| l.to_lowercase().contains(reason)) {
            failures.push(format!(
                "{flags:?}: no line `{named}…{reason}…`; stderr: {}",
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
