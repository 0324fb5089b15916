//! The server under test: spawned from the release binary (fresh per phase) or
//! attached to with `--server-addr` + `--file`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sys;

#[derive(Default)]
pub struct ServerLog {
    tail: VecDeque<String>,
    pub warns: u64,
    pub errors: u64,
    /// First few WARN/ERROR lines, verbatim.
    pub notable: Vec<String>,
}

#[derive(Serialize, Clone, Default)]
pub struct LogSummary {
    pub warns: u64,
    pub errors: u64,
    pub sample: Vec<String>,
}

#[derive(Serialize, Clone)]
pub struct Shutdown {
    /// Seconds from SIGTERM to exit (`null` if it had to be killed).
    pub secs: Option<f64>,
    pub status: String,
}

pub struct Server {
    pub addr: SocketAddr,
    /// It logged `listening on https://` (`--tls-cert`): plain HTTP/1.1
    /// probes such as [`sys::healthz_clients`] get no answer.
    pub tls: bool,
    pub file: PathBuf,
    pub pid: Option<u32>,
    child: Option<Child>,
    log: Arc<Mutex<ServerLog>>,
    log_mark: (u64, u64, usize),
    _dir: Option<tempfile::TempDir>,
}

pub enum Source {
    Spawn {
        bin: PathBuf,
        args: Vec<String>,
    },
    Attach {
        addr: SocketAddr,
        file: PathBuf,
        pid: Option<u32>,
    },
}

impl Source {
    pub fn get(&self) -> Result<Server, String> {
        self.get_with(&[])
    }

    /// [`get`](Self::get), a spawned server getting `extra` arguments (e.g.
    /// `--tls-cert C --tls-key K --http3`) after `--server-arg`s; an attached
    /// server is refused then, as its flags are not ours to choose.
    pub fn get_with(&self, extra: &[String]) -> Result<Server, String> {
        match self {
            Source::Spawn { bin, args } => {
                let all: Vec<String> = args.iter().chain(extra).cloned().collect();
                spawn(bin, &all)
            }
            Source::Attach { .. } if !extra.is_empty() => Err(format!(
                "this phase spawns its server with {extra:?}; it cannot use --server-addr"
            )),
            Source::Attach { addr, file, pid } => {
                let pid = pid.or_else(|| sys::find_listener_pid(addr.port()));
                Ok(Server {
                    addr: *addr,
                    tls: false,
                    file: file.clone(),
                    pid,
                    child: None,
                    log: Arc::default(),
                    log_mark: (0, 0, 0),
                    _dir: None,
                })
            }
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address of a `listening on http://ADDR` (or `https://`) line, and
/// whether it is https.
fn parse_listen(line: &str) -> Option<(SocketAddr, bool)> {
    let (i, tls) = match line.find("listening on http://") {
        Some(i) => (i + "listening on http://".len(), false),
        None => (
            line.find("listening on https://")? + "listening on https://".len(),
            true,
        ),
    };
    let a: String = line[i..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    Some((a.parse().ok()?, tls))
}

fn pump(r: impl Read, log: Arc<Mutex<ServerLog>>, tx: mpsc::Sender<(SocketAddr, bool)>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    let mut found = false;
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
        if !found && let Some(a) = parse_listen(&line) {
            found = true;
            let _ = tx.send(a);
        }
        let mut l = log.lock().unwrap();
        let upper = line.contains("WARN") || line.contains("\"level\":\"warn");
        let err = line.contains("ERROR") || line.contains("\"level\":\"error");
        if upper {
            l.warns += 1;
        }
        if err {
            l.errors += 1;
        }
        if (upper || err) && l.notable.len() < 20 {
            l.notable.push(line.chars().take(300).collect());
        }
        l.tail.push_back(line);
        if l.tail.len() > 50 {
            l.tail.pop_front();
        }
    }
}

fn spawn(bin: &Path, args: &[String]) -> Result<Server, String> {
    let dir = tempfile::Builder::new()
        .prefix("loadgen-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let file = dir.path().join("app.log");
    std::fs::File::create(&file).map_err(|e| e.to_string())?;
    let file_args = [OsString::from("--file"), file.clone().into_os_string()];
    spawn_with(bin, args, dir, file, &file_args, Duration::from_secs(15)).map(|(s, _)| s)
}

/// Spawns the server on `dir` (kept alive by the returned [`Server`]) with
/// `file_args` (e.g. `--file GLOB`) before the extra `args`. `file` is what
/// [`Server::file`] names (the single followed file, or a representative one).
/// Waits up to `listen_timeout` for `listening on`; also returns the seconds
/// from spawn to that line (start-up time).
pub fn spawn_with(
    bin: &Path,
    args: &[String],
    dir: tempfile::TempDir,
    file: PathBuf,
    file_args: &[OsString],
    listen_timeout: Duration,
) -> Result<(Server, f64), String> {
    let spawned = Instant::now();
    let mut child = Command::new(bin)
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(file_args)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let log: Arc<Mutex<ServerLog>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("spawned server without piped stdout/stderr".into());
    };
    {
        let (log, tx) = (log.clone(), tx.clone());
        std::thread::spawn(move || pump(out, log, tx));
    }
    {
        let log = log.clone();
        std::thread::spawn(move || pump(err, log, tx));
    }
    let pid = child.id();
    let mut srv = Server {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: false,
        file,
        pid: Some(pid),
        child: Some(child),
        log,
        log_mark: (0, 0, 0),
        _dir: Some(dir),
    };
    let (addr, tls) = loop {
        if let Ok(a) = rx.recv_timeout(Duration::from_millis(20)) {
            break a;
        }
        if let Some(st) = srv.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!("server exited early ({st}):\n{}", srv.log_tail()));
        }
        if spawned.elapsed() > listen_timeout {
            return Err(format!(
                "no 'listening on http://ADDR' line within {:.0} s:\n{}",
                listen_timeout.as_secs_f64(),
                srv.log_tail()
            ));
        }
    };
    let startup_secs = spawned.elapsed().as_secs_f64();
    if !addr.ip().is_loopback() {
        return Err(format!("server listens on non-loopback {addr}; refusing"));
    }
    srv.addr = addr;
    srv.tls = tls;
    // Wait for the accept loop (healthz answers anything, even 404, once it
    // runs; over TLS, which this probe does not speak, a TCP connect).
    let start = Instant::now();
    let up = |addr| {
        if tls {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        } else {
            sys::http_get(addr, "/healthz", Duration::from_secs(1)).is_ok()
        }
    };
    while !up(addr) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((srv, startup_secs))
}

impl Server {
    pub fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap();
        l.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Marks the start of a phase for `log_summary`.
    pub fn mark_log(&mut self) {
        let l = self.log.lock().unwrap();
        self.log_mark = (l.warns, l.errors, l.notable.len());
    }

    /// WARN/ERROR lines logged since `mark_log`.
    pub fn log_summary(&self) -> LogSummary {
        let l = self.log.lock().unwrap();
        LogSummary {
            warns: l.warns - self.log_mark.0,
            errors: l.errors - self.log_mark.1,
            sample: l.notable[self.log_mark.2.min(l.notable.len())..]
                .iter()
                .take(5)
                .cloned()
                .collect(),
        }
    }

    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(sys::rss_kib)
    }

    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid.and_then(sys::cpu_secs)
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. `None` when attached.
    pub fn stop(mut self) -> Option<Shutdown> {
        self.child.take().map(terminate)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// SIGTERM to `child`'s PID, wait up to 5 s for it to exit, then SIGKILL.
pub fn terminate(mut child: Child) -> Shutdown {
    let start = Instant::now();
    sys::signal(child.id(), sys::SIGTERM);
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(st)) = child.try_wait() {
            return Shutdown {
                secs: Some(start.elapsed().as_secs_f64()),
                status: st.to_string(),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    Shutdown {
        secs: None,
        status: "did not exit within 5 s of SIGTERM; killed".into(),
    }
}

/// SIGKILL to `child`, if not stopped already, and reaps it (for `Drop`).
pub fn kill(child: &mut Option<Child>) {
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// RSS sampler + `/healthz` client-count poller running on its own thread.
pub struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Samples>,
}

#[derive(Serialize, Clone, Default)]
pub struct Samples {
    pub rss_start_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_growth_kib: Option<u64>,
    /// (seconds since phase start, clients reported by /healthz), on change only.
    pub healthz_clients: Vec<(f64, u64)>,
    /// (seconds since phase start, VmRSS KiB), once a second.
    pub rss_series_kib: Vec<(f64, u64)>,
}

impl Sampler {
    pub fn start(pid: Option<u32>, addr: SocketAddr, poll_healthz: bool) -> Sampler {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let t = Instant::now();
            let mut s = Samples {
                rss_start_kib: pid.and_then(sys::rss_kib),
                ..Default::default()
            };
            s.rss_peak_kib = s.rss_start_kib;
            let mut last_hz = Instant::now() - Duration::from_secs(10);
            let mut n = 0u64;
            loop {
                let stopping = flag.load(Ordering::Relaxed);
                if let Some(r) = pid.and_then(sys::rss_kib) {
                    s.rss_peak_kib = Some(s.rss_peak_kib.unwrap_or(0).max(r));
                    s.rss_end_kib = Some(r);
                    if n.is_multiple_of(5) || stopping {
                        s.rss_series_kib
                            .push(((t.elapsed().as_secs_f64() * 10.0).round() / 10.0, r));
                    }
                }
                if poll_healthz && (last_hz.elapsed() >= Duration::from_millis(500) || stopping) {
                    last_hz = Instant::now();
                    if let Some(c) = sys::healthz_clients(addr)
                        && s.healthz_clients.last().map(|x| x.1) != Some(c)
                    {
                        s.healthz_clients.push((t.elapsed().as_secs_f64(), c));
                    }
                }
                if stopping {
                    break;
                }
                n += 1;
                // Bounded: one hour of samples at most.
                if n > 18_000 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if let (Some(a), Some(p)) = (s.rss_start_kib, s.rss_peak_kib) {
                s.rss_growth_kib = Some(p.saturating_sub(a));
            }
            s
        });
        Sampler { stop, handle }
    }

    pub fn finish(self) -> Samples {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
