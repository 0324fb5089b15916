//! Issue 15: source → NATS JetStream → edge. The phase starts its own
//! `nats-server -js` (a free loopback port, its store in a temp dir, ended by
//! its PID), a source (`--file <tmp> --publish nats://… --node n1`, which
//! creates the stream `LOGTAIL`) and an edge (`--from nats://…`, no file).
//! Lines are appended to the source's file as in the other phases; WebSocket
//! clients read `/ws?backlog=0` on the edge and, in the latency phase, as
//! many on the source directly, at the same time, so both paths see the same
//! lines under the same load:
//!
//! - `nats-latency-100x1000`: 100 clients on each path, 1 000 lines/s for
//!   10 s. Latency of each path from the write time, the difference of their
//!   percentiles (the added delay), and per line the first edge client's
//!   arrival minus the first direct client's.
//! - `nats-throughput`: a flood (at most `--window-bytes` ahead of the
//!   slowest edge client) to 4 clients on the edge, none on the source:
//!   lines/s through one edge, and the source's publish rate (its `/healthz`
//!   `acked_seq` polled every 100 ms).
//!
//! The clients' accounting is the other phases' ([`crate::clients::Tally`]):
//! it checks the `seq=N` the writer put in each line's text, not the server's
//! `seq` (on the edge the stream sequence, which the text frames do not
//! carry), so it holds on both paths. The stream is checked separately: a
//! fresh stream with one file numbers its messages as the file's lines, so
//! the phase **fails** unless the stream holds exactly as many messages as
//! the file has lines (warm-up lines included), numbered 1..=that, the edge's
//! `/healthz` `seq` and the source's `seq` and `acked_seq` are that number,
//! the publisher lost nothing, and every client on both paths connected and
//! got every line exactly once, in order.
//!
//! CPU (utime + stime from `/proc/PID/stat`, first write to last delivery)
//! and RSS (start, peak, end) are reported for the source, the edge and
//! nats-server each. Not part of `all`: it needs nats-server
//! (`--nats-server PATH`, else `nats-server` on PATH, else
//! `/usr/sbin/nats-server`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clients::{self, ClientCfg, ConnectReport, Dial, Recorder, Transport, new_hist};
use crate::scenarios::{
    self, Cpu, CpuMark, Delivery, Env, Latency, Phase, Throughput, Writer, stop_server,
};
use crate::server::{self, LogSummary, Sampler, Samples, Shutdown, Source};
use crate::sys;

/// The stream the source creates (its `--nats-stream` default).
const STREAM: &str = "LOGTAIL";
/// How long nats-server, the publisher's connection or the edge may take to come up.
const READY: Duration = Duration::from_secs(30);
/// `/healthz` of source and edge during the writing.
const POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct NatsSpec {
    pub name: String,
    /// WebSocket clients on the edge.
    pub edge_clients: usize,
    /// WebSocket clients on the source directly (0: none).
    pub direct_clients: usize,
    pub line_bytes: usize,
    pub writer: Writer,
    /// nats-server binary [default: `nats-server` on PATH, else /usr/sbin/nats-server].
    pub nats_bin: Option<PathBuf>,
}

/// One fleet's view: the edge's clients or the source's.
#[derive(Serialize, Clone, Default)]
pub struct PathReport {
    /// `edge` (source → NATS → edge → client) or `direct` (source → client).
    pub path: &'static str,
    pub server_addr: String,
    pub connect: ConnectReport,
    pub latency: Latency,
    pub delivery: Delivery,
    pub throughput: Throughput,
}

/// Edge minus direct.
#[derive(Serialize, Clone, Default)]
pub struct AddedDelay {
    /// Percentile of the edge clients' latency minus the same percentile of
    /// the direct clients' (not a percentile of differences), µs.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// Per line: when the first edge client got it minus when the first
    /// direct client did (lines both fleets got, differences below 0 as 0).
    pub first_arrival: Latency,
    /// Lines whose first edge arrival came before the first direct one.
    pub first_arrival_negative: u64,
}

/// The JetStream stream's state at the end (read with async-nats).
#[derive(Serialize, Clone, Default)]
pub struct StreamState {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One process of the three.
#[derive(Serialize, Clone, Default)]
pub struct Proc {
    /// `source`, `edge` or `nats-server`.
    pub role: &'static str,
    pub pid: Option<u32>,
    /// utime + stime over the streaming window (first write to last delivery).
    pub cpu_secs: Option<f64>,
    pub cores: Option<f64>,
    pub threads: Option<u64>,
    pub memory: Samples,
}

/// `/healthz` of source and edge, polled every 100 ms while writing.
#[derive(Serialize, Clone, Copy, Default)]
pub struct Tick {
    /// Seconds since the first write.
    pub t: f64,
    /// The source's `seq` (lines it read).
    pub source_seq: u64,
    /// The source's publisher: last line acknowledged by JetStream.
    pub acked_seq: u64,
    /// The edge's `seq` (the newest stream sequence it holds).
    pub edge_seq: u64,
}

/// When a count reached the last line, and the rate that makes.
#[derive(Serialize, Clone, Default)]
pub struct Reached {
    /// Seconds from the first write until the poll that first saw every
    /// line (100 ms polls: up to 0.1 s late); `None`: not within the polls.
    pub secs: Option<f64>,
    /// Lines written / secs.
    pub lines_per_s: Option<f64>,
}

#[derive(Serialize, Clone, Default)]
pub struct NatsReport {
    pub nats_server_version: String,
    pub nats_url: String,
    pub nats_startup_secs: f64,
    pub edge_startup_secs: f64,
    pub edge: PathReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct: Option<PathReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_delay: Option<AddedDelay>,
    /// Lines in the source's file at the end: warm-up lines + written.
    pub file_lines: u64,
    pub warm_up_lines: u64,
    pub stream: Option<StreamState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<String>,
    /// The source's and the edge's `/healthz` `seq` at the end.
    pub source_seq: Option<u64>,
    pub edge_seq: Option<u64>,
    /// The source's `/healthz` `publishers[0]` at the end.
    pub publisher: Option<serde_json::Value>,
    /// Every written line acknowledged by JetStream (the source's publish rate).
    pub all_acked: Reached,
    /// Every written line in the edge's hub.
    pub all_at_edge: Reached,
    pub procs: Vec<Proc>,
    /// CPU of the three processes together, cores.
    pub total_server_cores: Option<f64>,
    pub nats_shutdown: Option<Shutdown>,
    /// Downsampled to at most 600 entries.
    pub ticks: Vec<Tick>,
}

/// `--nats-server`, else `nats-server` on PATH, else /usr/sbin/nats-server.
fn find_nats(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--nats-server {}: no such file", p.display()))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "nats-server not found (not on PATH, not in /usr/sbin or /usr/local/bin): this phase \
             runs its own `nats-server -js`; install it (Debian: apt-get install nats-server) or \
             pass --nats-server PATH"
                .to_string()
        })
}

/// A `nats-server -js` of our own: a free loopback port, its store in a
/// temp dir, ended by its PID.
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    version: String,
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Nats {
    /// Starts it and waits until it accepts connections; returns it and the seconds that took.
    fn start(bin: &Path) -> Result<(Nats, f64), String> {
        let version = Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("loadgen-nats-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("nats.log")).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("js"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut nats = Nats {
            child: Some(child),
            port,
            dir,
            version,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(st) = nats
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "nats-server exited at start ({st}):\n{}",
                    nats.log_tail()
                ));
            }
            if started.elapsed() > READY {
                return Err(format!(
                    "nats-server did not accept on {addr} within {READY:?}:\n{}",
                    nats.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((nats, started.elapsed().as_secs_f64()))
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM to its PID, up to 5 s, then SIGKILL.
    fn stop(mut self) -> Option<Shutdown> {
        self.child.take().map(server::terminate)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        server::kill(&mut self.child);
    }
}

fn healthz(addr: SocketAddr) -> Result<serde_json::Value, String> {
    let (status, body) = sys::http_get(addr, "/healthz", Duration::from_secs(2))?;
    if status != 200 {
        return Err(format!("/healthz: HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

fn seq_of(v: &serde_json::Value) -> Option<u64> {
    v.get("seq").and_then(serde_json::Value::as_u64)
}

fn publisher_of(v: &serde_json::Value) -> Option<&serde_json::Value> {
    v.get("publishers").and_then(|p| p.get(0))
}

/// Polls `/healthz` of `addr` (blocking) until `ok`, at most `timeout`.
fn wait_healthz(
    addr: SocketAddr,
    timeout: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, String> {
    let start = Instant::now();
    let mut last = Err("no answer yet".to_string());
    while start.elapsed() < timeout {
        last = healthz(addr);
        if let Ok(v) = &last
            && ok(v)
        {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "gave up after {:.0} s; last /healthz: {}",
        timeout.as_secs_f64(),
        match last {
            Ok(v) => v.to_string(),
            Err(e) => e,
        }
    ))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// Newlines in the file: lines written (warm-up lines included).
fn file_lines(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .unwrap_or(0)
}

/// The stream's state, asked of nats-server directly.
async fn stream_state(url: &str) -> Result<StreamState, String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name("loadgen")
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(STREAM)
        .await
        .map_err(|e| format!("stream {STREAM}: {e}"))?;
    let info = stream
        .info()
        .await
        .map_err(|e| format!("stream {STREAM}: {e}"))?;
    Ok(StreamState {
        name: STREAM.into(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
    })
}

/// The `/healthz` poller of source and edge while writing.
struct Poller {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Tick>>,
}

impl Poller {
    fn start(source: SocketAddr, edge: SocketAddr, t0: Instant, first_write_ns: u64) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut ticks = Vec::new();
            // Bounded: an hour of polls.
            for _ in 0..36_000 {
                let stopping = flag.load(Relaxed);
                let t =
                    (t0.elapsed().as_nanos() as u64).saturating_sub(first_write_ns) as f64 / 1e9;
                let s = healthz(source).ok();
                let e = healthz(edge).ok();
                let g = |v: &Option<serde_json::Value>| v.as_ref().and_then(seq_of);
                ticks.push(Tick {
                    t,
                    source_seq: g(&s).unwrap_or(0),
                    acked_seq: s
                        .as_ref()
                        .and_then(publisher_of)
                        .and_then(|p| p.get("acked_seq"))
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0),
                    edge_seq: g(&e).unwrap_or(0),
                });
                if stopping {
                    break;
                }
                std::thread::sleep(POLL);
            }
            ticks
        });
        Poller { stop, handle }
    }

    fn finish(self) -> Vec<Tick> {
        self.stop.store(true, Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// When `count` of a tick first reached `last`; rate = `written` / that time.
fn reached(ticks: &[Tick], last: u64, written: u64, count: impl Fn(&Tick) -> u64) -> Reached {
    let secs = ticks.iter().find(|t| count(t) >= last).map(|t| t.t);
    Reached {
        secs,
        lines_per_s: secs.filter(|&s| s > 0.0).map(|s| written as f64 / s),
    }
}

fn added_delay(
    edge: &Histogram<u64>,
    direct: &Histogram<u64>,
    edge_rec: &Recorder,
    direct_rec: &Recorder,
) -> AddedDelay {
    let q = |x: f64| (edge.value_at_quantile(x) as f64 - direct.value_at_quantile(x) as f64) / 1e3;
    let mut h = new_hist();
    let mut negative = 0;
    let (e, d) = (edge_rec.first_arrivals(), direct_rec.first_arrivals());
    for (a, b) in e.iter().zip(&d).skip(1) {
        if let (Some(a), Some(b)) = (a, b) {
            if a < b {
                negative += 1;
            }
            h.saturating_record(a.saturating_sub(*b).max(1));
        }
    }
    AddedDelay {
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: (edge.max() as f64 - direct.max() as f64) / 1e3,
        mean_us: (edge.mean() - direct.mean()) / 1e3,
        first_arrival: Latency::from(&h),
        first_arrival_negative: negative,
    }
}

fn proc_report(
    role: &'static str,
    pid: Option<u32>,
    cpu0: Option<f64>,
    wall: f64,
    memory: Samples,
) -> Proc {
    let cpu = pid.and_then(sys::cpu_secs).zip(cpu0).map(|(b, a)| b - a);
    Proc {
        role,
        pid,
        cpu_secs: cpu,
        cores: cpu.map(|c| c / wall.max(1e-9)),
        threads: pid.and_then(sys::threads),
        memory,
    }
}

/// The WARN/ERROR lines of both servers, each sample named by its server.
fn merge_logs(source: LogSummary, edge: LogSummary) -> LogSummary {
    LogSummary {
        warns: source.warns + edge.warns,
        errors: source.errors + edge.errors,
        sample: source
            .sample
            .into_iter()
            .map(|l| format!("source: {l}"))
            .chain(edge.sample.into_iter().map(|l| format!("edge: {l}")))
            .collect(),
    }
}

/// What failed on one path, each reason named by it.
fn path_failures(p: &PathReport) -> Vec<String> {
    scenarios::footprint_failures(&p.connect, &p.delivery, None)
        .into_iter()
        .map(|f| format!("{}: {f}", p.path))
        .collect()
}

/// The phase: its own nats-server, source and edge.
pub async fn phase(env: &Env, spec: &NatsSpec) -> Result<Phase, String> {
    let nats_bin = find_nats(spec.nats_bin.as_deref())?;
    let (bin, user_args) = match &env.source {
        Source::Spawn { bin, args } => (bin.clone(), args.clone()),
        Source::Attach { .. } => {
            return Err(
                "this phase starts its own nats-server, source and edge; it cannot use --server-addr"
                    .into(),
            );
        }
    };
    let (nats, nats_startup) = {
        let b = nats_bin.clone();
        blocking(move || Nats::start(&b)).await??
    };
    let url = nats.url();
    let mut notes = Vec::new();
    // The source creates the stream when its publisher connects; the edge
    // waits for the stream before it listens.
    let publish = vec![
        "--publish".to_string(),
        url.clone(),
        "--node".into(),
        "n1".into(),
    ];
    let mut src = {
        let source = Source::Spawn {
            bin: bin.clone(),
            args: user_args.clone(),
        };
        blocking(move || source.get_with(&publish)).await??
    };
    {
        let addr = src.addr;
        blocking(move || {
            wait_healthz(addr, READY, |h| {
                publisher_of(h).and_then(|p| p.get("connected"))
                    == Some(&serde_json::Value::Bool(true))
            })
        })
        .await?
        .map_err(|e| format!("the source's publisher did not connect to {url}: {e}"))?;
    }
    let (mut edge, edge_startup) = {
        let mut args = user_args.clone();
        args.extend(["--from".to_string(), url.clone()]);
        let file = src.file.clone();
        let b = bin.clone();
        blocking(move || {
            let dir = tempfile::Builder::new()
                .prefix("loadgen-edge-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            server::spawn_with(&b, &args, dir, file, &[], READY)
        })
        .await??
    };
    src.mark_log();
    edge.mark_log();

    let lines_planned = match spec.writer {
        Writer::Paced { rate, secs } => (rate * secs).round().max(1.0) as u64,
        Writer::Flood { lines, .. } => lines,
    };
    let pair = spec.direct_clients > 0;
    let arrivals = if pair { lines_planned } else { 0 };
    let edge_rec = Recorder::with_arrivals(env.t0, arrivals);
    let direct_rec = Recorder::with_arrivals(env.t0, arrivals);
    let cancel = CancellationToken::new();
    let cfg = ClientCfg {
        transport: Transport::Ws,
        read_buffer: 128 * 1024,
        record_latency: true,
        json: env.json_frames,
    };
    let edge_fleet = clients::connect_fleet(
        &Dial::Tcp(edge.addr),
        spec.edge_clients,
        env.concurrency,
        cfg,
        &edge_rec,
        &cancel,
    )
    .await;
    let direct_fleet = clients::connect_fleet(
        &Dial::Tcp(src.addr),
        spec.direct_clients,
        env.concurrency,
        cfg,
        &direct_rec,
        &cancel,
    )
    .await;
    // Warm-up lines go through the source to both fleets: the edge's first.
    let mut not_warm_edge = edge_fleet.warm_up(&src.file, Duration::from_secs(15)).await;
    let not_warm_direct = direct_fleet
        .warm_up(&src.file, Duration::from_secs(5))
        .await;
    not_warm_edge += edge_fleet.warm_up(&src.file, Duration::from_secs(5)).await;
    let warm_lines = file_lines(&src.file);
    {
        // Measure from a quiet pipeline: every warm-up line acknowledged and at the edge.
        let (s, e) = (src.addr, edge.addr);
        blocking(move || {
            wait_healthz(s, READY, |h| {
                publisher_of(h)
                    .and_then(|p| p.get("acked_seq"))
                    .and_then(|v| v.as_u64())
                    == Some(warm_lines)
            })?;
            wait_healthz(e, READY, |h| seq_of(h) == Some(warm_lines))
        })
        .await?
        .map_err(|e| format!("the warm-up lines did not all reach the edge: {e}"))?;
    }
    for (what, n) in [("edge", not_warm_edge), ("direct", not_warm_direct)] {
        if n > 0 {
            notes.push(format!("{n} {what} clients never received a warm-up line"));
        }
    }

    let nats_pid = nats.pid();
    let samplers = [
        Sampler::start(src.pid, src.addr, true),
        Sampler::start(edge.pid, edge.addr, true),
        Sampler::start(nats_pid, src.addr, false),
    ];
    let pids = [src.pid, edge.pid, nats_pid];
    let cpu0: Vec<Option<f64>> = pids.iter().map(|p| p.and_then(sys::cpu_secs)).collect();
    let mark = CpuMark::now(&src);
    let first_write_ns = edge_rec.now_ns();
    edge_rec.set_base(first_write_ns);
    direct_rec.set_base(first_write_ns);
    let poller = Poller::start(src.addr, edge.addr, env.t0, first_write_ns);
    let fleets = [&edge_fleet, &direct_fleet];
    let w = scenarios::write(&spec.writer, &src.file, env.t0, spec.line_bytes, &fleets).await?;
    let hard = Duration::from_secs(300);
    let incomplete_edge = edge_fleet.drain(w.lines, env.drain_idle, hard).await;
    let incomplete_direct = direct_fleet.drain(w.lines, env.drain_idle, hard).await;
    let cpu: Cpu = mark.since(&src);
    let total = warm_lines + w.lines;
    // Every line at the edge and acknowledged (the clients may all be gone).
    {
        let (s, e) = (src.addr, edge.addr);
        let r = blocking(move || {
            wait_healthz(s, Duration::from_secs(10), |h| {
                publisher_of(h)
                    .and_then(|p| p.get("acked_seq"))
                    .and_then(|v| v.as_u64())
                    >= Some(total)
            })?;
            wait_healthz(e, Duration::from_secs(10), |h| seq_of(h) >= Some(total))
        })
        .await?;
        if let Err(e) = r {
            notes.push(format!(
                "waiting for line {total} at the source's publisher and the edge: {e}"
            ));
        }
    }
    let ticks = poller.finish();
    let [m_src, m_edge, m_nats] = samplers.map(Sampler::finish);
    let wall = cpu.wall_secs;
    let procs = vec![
        proc_report("source", pids[0], cpu0[0], wall, m_src),
        proc_report("edge", pids[1], cpu0[1], wall, m_edge.clone()),
        proc_report("nats-server", pids[2], cpu0[2], wall, m_nats),
    ];
    let total_cores = procs.iter().map(|p| p.cores).sum::<Option<f64>>();
    let total_cpu = procs.iter().map(|p| p.cpu_secs).sum::<Option<f64>>();

    // Clients flush their batched latency samples when they stop.
    let edge_d = scenarios::delivery(&edge_fleet, w.lines, not_warm_edge, incomplete_edge);
    let direct_d = scenarios::delivery(&direct_fleet, w.lines, not_warm_direct, incomplete_direct);
    let edge_tp = scenarios::throughput(&edge_fleet, &w, first_write_ns);
    let direct_tp = scenarios::throughput(&direct_fleet, &w, first_write_ns);
    let (edge_connect, direct_connect) = (edge_fleet.connect.clone(), direct_fleet.connect.clone());
    edge_fleet.shutdown(&cancel).await;
    direct_fleet.shutdown(&cancel).await;
    let mut edge_lat = Latency::from(&edge_rec.merged());
    edge_lat.max_by_second_us = edge_rec.per_second_max_us();
    let edge_report = PathReport {
        path: "edge",
        server_addr: edge.addr.to_string(),
        connect: edge_connect,
        latency: edge_lat,
        delivery: edge_d,
        throughput: edge_tp,
    };
    let direct_report = pair.then(|| {
        let mut l = Latency::from(&direct_rec.merged());
        l.max_by_second_us = direct_rec.per_second_max_us();
        PathReport {
            path: "direct",
            server_addr: src.addr.to_string(),
            connect: direct_connect,
            latency: l,
            delivery: direct_d,
            throughput: direct_tp,
        }
    });
    let added = pair.then(|| {
        added_delay(
            &edge_rec.merged(),
            &direct_rec.merged(),
            &edge_rec,
            &direct_rec,
        )
    });

    // The stream, the servers' counts and the file must agree.
    let file_total = file_lines(&src.file);
    let (stream, stream_error) = match stream_state(&url).await {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let (sh, eh) = {
        let (s, e) = (src.addr, edge.addr);
        blocking(move || (healthz(s).ok(), healthz(e).ok())).await?
    };
    let source_seq = sh.as_ref().and_then(seq_of);
    let edge_seq = eh.as_ref().and_then(seq_of);
    let publisher = sh.as_ref().and_then(publisher_of).cloned();
    let mut failed = path_failures(&edge_report);
    if let Some(d) = &direct_report {
        failed.extend(path_failures(d));
    }
    if file_total != total {
        failed.push(format!(
            "the file has {file_total} lines, {warm_lines} warm-up + {} written expected",
            w.lines
        ));
    }
    match &stream {
        Some(s) if s.messages == file_total && s.first_seq == 1 && s.last_seq == file_total => {}
        Some(s) => failed.push(format!(
            "stream {}: {} messages, seqs {}..={}, for {file_total} lines",
            s.name, s.messages, s.first_seq, s.last_seq
        )),
        None => failed.push(format!(
            "stream state unknown: {}",
            stream_error.clone().unwrap_or_default()
        )),
    }
    if edge_seq != Some(file_total) {
        failed.push(format!(
            "edge /healthz seq {edge_seq:?}, {file_total} lines"
        ));
    }
    if source_seq != Some(file_total) {
        failed.push(format!(
            "source /healthz seq {source_seq:?}, {file_total} lines"
        ));
    }
    let pu = |k: &str| {
        publisher
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(|v| v.as_u64())
    };
    if pu("acked_seq") != Some(file_total)
        || pu("published") != Some(file_total)
        || pu("lost") != Some(0)
    {
        failed.push(format!(
            "publisher: {}, for {file_total} lines",
            publisher
                .as_ref()
                .map_or("no /healthz".into(), |p| p.to_string())
        ));
    }
    if pu("failures").is_some_and(|f| f > 0) {
        notes.push(format!(
            "the publisher lost its connection {} time(s)",
            pu("failures").unwrap_or(0)
        ));
    }
    if cpu.saturated {
        notes.push(format!(
            "SATURATED: load generator used {:.2} cores, machine {:.0}% busy; figures may be bounded by the \
             generator (or by other processes on the machine)",
            cpu.loadgen_cores, cpu.machine_busy_pct
        ));
    }
    if matches!(spec.writer, Writer::Flood { window_bytes, .. } if window_bytes > 0) {
        notes.push(
            "flood latency is mostly queueing: about --window-bytes / delivery rate; use nats-latency-* for latency"
                .into(),
        );
    }

    let all_acked = reached(&ticks, total, w.lines, |t| t.acked_seq);
    let all_at_edge = reached(&ticks, total, w.lines, |t| t.edge_seq);
    let step = ticks.len().div_ceil(600).max(1);
    let ticks: Vec<Tick> = ticks.iter().step_by(step).copied().collect();
    let memory = m_edge;
    let (edge_log, edge_addr, edge_shutdown) = stop_server(edge, &mut notes).await;
    let (src_log, src_addr, src_shutdown) = stop_server(src, &mut notes).await;
    if let Some(s) = &src_shutdown {
        notes.push(format!(
            "source shutdown {} s after SIGTERM, {}",
            s.secs.map_or("?".into(), |t| format!("{t:.3}")),
            s.status
        ));
    }
    let nats_version = nats.version.clone();
    let nats_shutdown = blocking(move || nats.stop()).await?;
    if let Some(s) = &nats_shutdown
        && s.secs.is_none()
    {
        notes.push(format!("nats-server shutdown: {}", s.status));
    }
    let mut cpu = cpu;
    cpu.server_cpu_secs = total_cpu;
    cpu.server_cores = total_cores;
    let report = NatsReport {
        nats_server_version: nats_version,
        nats_url: url,
        nats_startup_secs: nats_startup,
        edge_startup_secs: edge_startup,
        edge: edge_report.clone(),
        direct: direct_report,
        added_delay: added,
        file_lines: file_total,
        warm_up_lines: warm_lines,
        stream,
        stream_error,
        source_seq,
        edge_seq,
        publisher,
        all_acked,
        all_at_edge,
        procs,
        total_server_cores: total_cores,
        nats_shutdown,
        ticks,
    };
    Ok(Phase {
        name: spec.name.clone(),
        params: serde_json::json!({
            "transport": "websocket", "edge_clients": spec.edge_clients,
            "direct_clients": spec.direct_clients, "line_bytes": spec.line_bytes,
            "json_frames": env.json_frames, "writer": format!("{:?}", spec.writer),
            "stream": STREAM, "node": "n1",
        }),
        server_addr: format!("source {src_addr}, edge {edge_addr}"),
        connect: edge_report.connect,
        write: Some(w),
        latency: Some(edge_report.latency),
        delivery: Some(edge_report.delivery),
        throughput: Some(edge_report.throughput),
        cpu,
        memory,
        idle: None,
        stuck: None,
        files: None,
        viewer: None,
        footprint: None,
        nats: Some(report),
        server_log: merge_logs(src_log, edge_log),
        server_shutdown: edge_shutdown,
        notes,
        failed,
    })
}
