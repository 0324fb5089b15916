//! Starting the real `logtail-ws` binary and watching its stderr.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::strip_ansi;

/// How long [`ServerBuilder::start`] waits for `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the binary under test, built by cargo for this integration test.
pub const BIN: &str = env!("CARGO_BIN_EXE_logtail-ws");

/// A signal to send to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Int,
    Hup,
    Kill,
}

impl Sig {
    /// `TERM`, `INT`, `HUP`, `KILL`.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "TERM",
            Sig::Int => "INT",
            Sig::Hup => "HUP",
            Sig::Kill => "KILL",
        }
    }
}

/// A `Command` for the binary with a clean environment: no inherited `LOGTAIL_*`,
/// `RUST_LOG=info` unless the caller's environment sets it.
fn base_command() -> Command {
    clean_command(Command::new(BIN))
}

/// `cmd` with the environment of [`base_command`].
fn clean_command(mut cmd: Command) -> Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LOGTAIL_") {
            cmd.env_remove(k);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Builder for a [`Server`]: files, extra args and env vars.
#[derive(Debug, Default, Clone)]
pub struct ServerBuilder {
    files: Vec<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    no_port: bool,
    cwd: Option<PathBuf>,
    nofile: Option<(u64, u64)>,
}

impl ServerBuilder {
    /// Adds `--file PATH` (repeatable).
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.files.push(path.as_ref().to_path_buf());
        self
    }

    /// Adds one raw argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds raw arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Sets an environment variable for the server process.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.envs.push((key.to_string(), value.into()));
        self
    }

    /// Runs the server in `dir` (so a relative `--file` is relative to it, as when a
    /// user types it in a shell there).
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Do not pass `--port 0` (the caller chooses the port, e.g. through `LOGTAIL_PORT`).
    pub fn no_port(mut self) -> Self {
        self.no_port = true;
        self
    }

    /// Runs the server under util-linux's `prlimit --nofile=SOFT:HARD` (the same process:
    /// prlimit sets the limit and execs it). Check [`prlimit_or_skip`] first.
    pub fn nofile(mut self, soft: u64, hard: u64) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// The command that [`start`](Self::start) would run.
    pub fn command(&self) -> Command {
        let mut cmd = match self.nofile {
            None => base_command(),
            Some((soft, hard)) => {
                let prlimit = super::find_program("prlimit").expect(
                    "ServerBuilder::nofile needs util-linux's `prlimit` (check prlimit_or_skip)",
                );
                let mut cmd = clean_command(Command::new(prlimit));
                cmd.arg(format!("--nofile={soft}:{hard}"))
                    .arg("--")
                    .arg(BIN);
                cmd
            }
        };
        for f in &self.files {
            cmd.arg("--file").arg(f);
        }
        if !self.no_port {
            cmd.args(["--port", "0"]);
        }
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Spawns the server and waits (up to 20 s) until it logs `listening on URL`.
    pub async fn start(self) -> Server {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        let stderr_pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<(String, SocketAddr)>();
        let captured = Arc::clone(&stderr);
        std::thread::spawn(move || drain_stderr(stderr_pipe, captured, tx));

        let mut server = Server {
            child,
            base: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            exit: None,
        };
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok((base, addr))) => {
                server.base = base;
                server.addr = addr;
                server
            }
            Ok(Err(_)) => {
                let status = server.wait_exit_blocking(Duration::from_secs(2));
                panic!(
                    "logtail-ws ended its stderr before logging `listening on` (exit: {status:?});\n\
                     stderr:\n{}",
                    server.stderr()
                );
            }
            Err(_) => panic!(
                "logtail-ws did not log `listening on` within {START_TIMEOUT:?};\nstderr:\n{}",
                server.stderr()
            ),
        }
    }
}

/// util-linux's `prlimit` for [`ServerBuilder::nofile`]; `None` after a note naming `test`
/// when it is missing, so the test can skip. Under `CI` a missing `prlimit` fails instead:
/// `.ci/run` installs util-linux.
pub fn prlimit_or_skip(test: &str) -> Option<PathBuf> {
    super::require_program("prlimit", "apt-get install util-linux", test)
}

/// Reads the child's stderr to EOF so the pipe never fills; reports the listen URL once.
fn drain_stderr(
    pipe: impl Read,
    captured: Arc<Mutex<String>>,
    tx: tokio::sync::oneshot::Sender<(String, SocketAddr)>,
) {
    let mut tx = Some(tx);
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut line = strip_ansi(&String::from_utf8_lossy(&buf));
        if !line.ends_with('\n') {
            line.push('\n');
        }
        captured.lock().unwrap().push_str(&line);
        if tx.is_some()
            && let Some(found) = parse_listening(&line)
        {
            let _ = tx.take().unwrap().send(found);
        }
    }
}

/// From a log line containing `listening on URL`, the base URL to use (scheme://host:port,
/// an unspecified bind address replaced by loopback) and the socket address to connect to.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let (scheme, start) = match (rest.find("http://"), rest.find("https://")) {
        (Some(i), _) => ("http", i + "http://".len()),
        (None, Some(i)) => ("https", i + "https://".len()),
        (None, None) => ("http", 0),
    };
    let hostport: String = rest[start..]
        .trim_start()
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | '}' | '/'))
        .collect();
    let mut addr: SocketAddr = hostport.parse().ok()?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Some((format!("{scheme}://{addr}"), addr))
}

/// A running `logtail-ws`; killed (by its own PID) on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    base: String,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    exit: Option<ExitStatus>,
}

impl Server {
    /// A builder, for several files, env vars or no `--port 0`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts `logtail-ws --file FILE --port 0 EXTRA_ARGS...` and waits until it listens.
    pub async fn start(file: &Path, extra_args: &[&str]) -> Server {
        Server::builder().file(file).args(extra_args).start().await
    }

    /// Spawns the binary with exactly `args` and `envs` (no `--port 0` added), stdout and
    /// stderr captured, for tests of exit codes and messages.
    pub fn spawn_raw(args: &[&str], envs: &[(&str, &str)]) -> RawProcess {
        let mut cmd = base_command();
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        RawProcess::spawn(cmd)
    }

    /// The address to connect to (loopback if the server bound an unspecified address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (or `https://ADDR`), no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `http://ADDR{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `ws://ADDR{path_and_query}` (`wss://` when the server serves TLS).
    pub fn ws_url(&self, path_and_query: &str) -> String {
        let base = self
            .base
            .strip_prefix("http")
            .expect("base url starts with http");
        format!("ws{base}{path_and_query}")
    }

    /// Everything the server wrote to stderr so far (ANSI codes stripped).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the server (its own PID only).
    pub fn signal(&self, sig: Sig) {
        let status = Command::new("kill")
            .args(["-s", sig.name(), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {} failed: {status}", sig.name());
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn wait_exit_blocking(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits until the server's stderr contains `needle`; panics with the stderr otherwise.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr.lock().unwrap().contains(needle) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "server did not log {needle:?} within {timeout:?};\nstderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `GET /healthz` parsed as JSON (panics unless 200 with valid JSON).
    pub async fn healthz(&self) -> serde_json::Value {
        let resp = super::http_get(self.addr, "/healthz", &[]).await;
        assert_eq!(resp.status, 200, "/healthz: {resp:?}");
        resp.json()
    }

    /// Waits until `/healthz` reports `seq` as the newest line; returns that `/healthz`.
    pub async fn wait_seq(&self, seq: u64, timeout: Duration) -> serde_json::Value {
        self.wait_seq_where(timeout, &format!("= {seq}"), |s| s == seq)
            .await
    }

    /// Waits until the newest line's `seq` is at least `seq` (the writer got ahead).
    pub async fn wait_seq_at_least(&self, seq: u64, timeout: Duration) -> serde_json::Value {
        self.wait_seq_where(timeout, &format!(">= {seq}"), |s| s >= seq)
            .await
    }

    async fn wait_seq_where(
        &self,
        timeout: Duration,
        what: &str,
        ok: impl Fn(u64) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.healthz().await;
            if h["seq"].as_u64().is_some_and(&ok) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz seq did not become {what} within {timeout:?}: {h}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `clients` count from `/healthz` (a number, or an object with `total`, or the sum
    /// of an object's numeric fields).
    pub async fn client_count(&self) -> u64 {
        let health = self.healthz().await;
        match &health["clients"] {
            serde_json::Value::Number(n) => n.as_u64().expect("clients is a u64"),
            serde_json::Value::Object(m) => match m.get("total").and_then(|v| v.as_u64()) {
                Some(total) => total,
                None => m.values().filter_map(|v| v.as_u64()).sum(),
            },
            other => panic!("/healthz has no usable `clients` field ({other}): {health}"),
        }
    }

    /// Waits until `/healthz` reports exactly `n` clients. Use it after connecting clients
    /// and before appending lines that must reach them as live lines.
    pub async fn wait_clients(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.client_count().await;
            if got == n {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "/healthz reports {got} clients, expected {n}, after {timeout:?}: {}",
                    self.healthz().await
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- logtail-ws stderr (pid {}) ----\n{}---- end ----",
                self.child.id(),
                self.stderr()
            );
        }
    }
}

/// A process started by [`Server::spawn_raw`]; killed on drop if still running.
#[derive(Debug)]
pub struct RawProcess {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// What a finished [`RawProcess`] did.
#[derive(Debug)]
pub struct RawOutput {
    pub status: ExitStatus,
    /// Exit code, `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RawProcess {
    fn spawn(mut cmd: Command) -> RawProcess {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        let read_all = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                strip_ansi(&String::from_utf8_lossy(&buf))
            })
        };
        let stdout = read_all(Box::new(child.stdout.take().unwrap()));
        let stderr = read_all(Box::new(child.stderr.take().unwrap()));
        RawProcess {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for exit and returns status and output; panics (after killing
    /// the process) if it is still running then.
    pub fn finish(mut self, timeout: Duration) -> RawOutput {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
                panic!("logtail-ws still running after {timeout:?};\nstderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        RawOutput {
            status,
            code: status.code(),
            stdout: self.stdout.take().unwrap().join().unwrap_or_default(),
            stderr: self.stderr.take().unwrap().join().unwrap_or_default(),
        }
    }
}

impl Drop for RawProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The harness finds the address in the shapes a `listening on` log line may take.
#[test]
fn harness_parses_listening_lines() {
    let cases = [
        (
            "2026-11-25T18:00:00Z  INFO logtail_ws: listening on http://127.0.0.1:4321",
            "http://127.0.0.1:4321",
        ),
        (
            "INFO listening on https://127.0.0.1:99/ file=app.log",
            "https://127.0.0.1:99",
        ),
        ("INFO listening on 0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("INFO listening on http://[::]:8080", "http://[::1]:8080"),
        (
            r#"{"level":"INFO","message":"listening on http://127.0.0.1:5""#,
            "http://127.0.0.1:5",
        ),
    ];
    for (line, want) in cases {
        let (base, _) = parse_listening(line).unwrap_or_else(|| panic!("no match in {line:?}"));
        assert_eq!(base, want, "{line:?}");
    }
    assert!(parse_listening("INFO starting").is_none());
}
