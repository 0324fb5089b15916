//! Starting the real `logtail-ws` binary ([`ServerBuilder`]: its arguments, environment and
//! working directory, and the wrappers it may run under — util-linux's `prlimit` for a
//! descriptor limit, `setpriv` to drop root's file-permission override), then watching it
//! ([`Server`]: its stderr, `/healthz`, signals, exit). [`Server::spawn_raw`] runs it for
//! exit codes and messages only.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{poll, poll_async, strip_ansi, wait_until_async};

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
    /// Stops every thread of the server until [`Sig::Cont`].
    Stop,
    Cont,
}

impl Sig {
    /// `TERM`, `INT`, `HUP`, `KILL`, `STOP`, `CONT`.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "TERM",
            Sig::Int => "INT",
            Sig::Hup => "HUP",
            Sig::Kill => "KILL",
            Sig::Stop => "STOP",
            Sig::Cont => "CONT",
        }
    }
}

/// Whether the tests run as root (the owner of `/proc/self`).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
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
    without_dac_override: bool,
    stdin_piped: bool,
}

impl ServerBuilder {
    /// Adds `--file PATH`; each call adds one more (the flag is repeatable since issue 11).
    /// These come first on the command line, before `--port 0` and every [`arg`](Self::arg):
    /// a test that mixes both and cares about the files' order passes them all as args.
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
    /// prlimit sets the limit and execs it). The test needs `#[needs::tools(prlimit)]`.
    pub fn nofile(mut self, soft: u64, hard: u64) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// Runs the server without `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` when the tests
    /// run as root, through util-linux's `setpriv` (which drops them and execs it): root
    /// without them is refused a mode-000 file like anyone else. Not root: nothing to drop,
    /// file modes already apply, and the command is unchanged. The test needs
    /// `#[needs::tools(setpriv)]` (which asks for it only as root).
    pub fn without_dac_override(mut self) -> Self {
        self.without_dac_override = true;
        self
    }

    /// Gives the server a pipe as its standard input (instead of `/dev/null`), for
    /// `--file -`; [`Server::take_stdin`] returns its writing end.
    pub fn stdin_piped(mut self) -> Self {
        self.stdin_piped = true;
        self
    }

    /// The command that [`start`](Self::start) would run: the binary, behind the wrappers
    /// asked for (each execs the next).
    pub fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some((soft, hard)) = self.nofile {
            argv.push(needs::program!(prlimit).into());
            argv.extend([format!("--nofile={soft}:{hard}").into(), "--".into()]);
        }
        if self.without_dac_override && running_as_root() {
            argv.push(needs::program!(setpriv).into());
            argv.extend(
                [
                    "--bounding-set=-dac_override,-dac_read_search",
                    "--inh-caps=-dac_override,-dac_read_search",
                    "--",
                ]
                .map(OsString::from),
            );
        }
        argv.push(BIN.into());
        let mut cmd = clean_command(Command::new(&argv[0]));
        cmd.args(&argv[1..]);
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
        let prefix = self
            .args
            .iter()
            .position(|a| a == "--base-path")
            .and_then(|i| self.args.get(i + 1))
            .map(|p| p.trim_end_matches('/').to_string())
            .unwrap_or_default();
        let mut cmd = self.command();
        cmd.stdin(if self.stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        })
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
            prefix,
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
    /// `--base-path`, as the server uses it (no trailing `/`), or empty.
    prefix: String,
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

    /// The writing end of the server's standard input, once, if it was started with
    /// [`ServerBuilder::stdin_piped`]; dropping it closes the pipe (EOF for the server).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Whether the process is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
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
        poll_async(timeout, || std::future::ready(self.try_exit().ok_or(())))
            .await
            .ok()
    }

    fn wait_exit_blocking(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.try_exit().ok_or(())).ok()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits until the server's stderr contains `needle`; panics otherwise (and the
    /// server's stderr is printed as it is dropped).
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let logged = || std::future::ready(self.stderr.lock().unwrap().contains(needle));
        wait_until_async(timeout, &format!("the server logs {needle:?}"), logged).await;
    }

    /// `GET /healthz` parsed as JSON (panics unless 200 with valid JSON).
    pub async fn healthz(&self) -> serde_json::Value {
        let path = format!("{}/healthz", self.prefix);
        let resp = super::http_get(self.addr, &path, &[]).await;
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
        self.wait_health(timeout, |h| h["seq"].as_u64().is_some_and(&ok))
            .await
            .unwrap_or_else(|h| {
                panic!("/healthz seq did not become {what} within {timeout:?}: {h}")
            })
    }

    /// Polls `/healthz` until `ok` accepts it, and returns it; after `timeout`, the last
    /// `/healthz` as the error.
    pub async fn wait_health(
        &self,
        timeout: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, serde_json::Value> {
        poll_async(timeout, || async {
            let health = self.healthz().await;
            if ok(&health) { Ok(health) } else { Err(health) }
        })
        .await
    }

    /// The number of connected clients: `/healthz`'s `clients`, which must be a number
    /// (src/transport/ops.rs).
    pub async fn client_count(&self) -> u64 {
        clients(&self.healthz().await)
    }

    /// Waits until `/healthz` reports exactly `n` clients. Use it after connecting clients
    /// and before appending lines that must reach them as live lines.
    pub async fn wait_clients(&self, n: u64, timeout: Duration) {
        self.wait_health(timeout, |h| clients(h) == n)
            .await
            .unwrap_or_else(|h| {
                panic!(
                    "/healthz reports {} clients, expected {n}, after {timeout:?}: {h}",
                    clients(&h)
                )
            });
    }
}

/// `/healthz`'s `clients`; panics unless it is a number.
fn clients(health: &serde_json::Value) -> u64 {
    health["clients"]
        .as_u64()
        .unwrap_or_else(|| panic!("/healthz `clients` is not a number: {health}"))
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
        let exited = poll(timeout, || {
            self.child.try_wait().expect("try_wait").ok_or(())
        });
        let Ok(status) = exited else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
            panic!("logtail-ws still running after {timeout:?};\nstderr:\n{stderr}");
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
