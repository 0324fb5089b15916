//! The many-files phase (issue 11, `files-10000`): one server follows
//! thousands of files through ONE glob, writes go to random files, and
//! every line's delivery is checked per client.
//!
//! Layout: `<tmp>/dNN/fNNNN.log`, files spread evenly over the directories,
//! all empty before the server starts; the server gets `--file
//! '<tmp>/*/*.log'`, so the public names are `d00/f0000.log` (the path below
//! the glob's fixed prefix). Clients (all JSON, `backlog=0`):
//! - "all": `/ws?backlog=0&format=json`, must get every line exactly once;
//! - "one": `/ws?backlog=0&format=json&file=dNN/fNNNN.log`, must get exactly
//!   the lines written to that file.
//!
//! Each line is `seq=ID t=NANOS f=INDEX xxx…`: ID is unique over all files
//! (1..=N, one writer), NANOS the send time, INDEX the file it was written
//! to, which the client checks against the frame's `"file"` name. Order is
//! checked within each file (strict: one file is read in order); across files
//! reordering is only counted, the merged stream's order being the server's
//! arrival order.
//!
//! The writer appends to random files at a fixed total rate from one thread,
//! by default with open + write + close per line (so the load generator never
//! holds more than one log file open); `--writer-fds N` keeps a direct-mapped
//! cache of N open files instead.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::sync::CancellationToken;

use crate::clients::{ConnectReport, new_hist};
use crate::scenarios::{Cpu, CpuMark, Delivery, Env, Latency, Phase, Throughput, stop_server};
use crate::server::{Samples, Server, Source};
use crate::sys::{self, FdCensus};
use crate::writer::{Due, Pacer, WriteReport};

#[derive(Clone, Debug)]
pub struct FilesSpec {
    pub name: String,
    pub files: usize,
    pub dirs: usize,
    /// Clients on all files.
    pub all_clients: usize,
    /// Clients on one file each.
    pub one_clients: usize,
    /// Lines per second over all files.
    pub rate: f64,
    /// Seconds of writing.
    pub secs: f64,
    /// Seconds of measured quiet (no writes, clients connected) after the load.
    pub idle_secs: f64,
    pub line_bytes: usize,
    /// Writer: open files kept (direct-mapped cache); 0 = open/append/close per line.
    pub writer_fds: usize,
}

/// File names and paths of the layout.
struct Layout {
    root: PathBuf,
    per_dir: usize,
    dir_digits: usize,
    file_digits: usize,
    files: usize,
}

impl Layout {
    fn new(root: PathBuf, files: usize, dirs: usize) -> Layout {
        let digits = |n: usize| n.saturating_sub(1).max(1).to_string().len();
        let per_dir = files.div_ceil(dirs.max(1)).max(1);
        Layout {
            root,
            per_dir,
            dir_digits: digits(files.div_ceil(per_dir)).max(2),
            file_digits: digits(files).max(4),
            files,
        }
    }

    fn dir_of(&self, i: usize) -> String {
        format!("d{:0w$}", i / self.per_dir, w = self.dir_digits)
    }

    /// Public name (relative to the glob's fixed prefix).
    fn name(&self, i: usize) -> String {
        format!("{}/f{:0w$}.log", self.dir_of(i), i, w = self.file_digits)
    }

    fn path(&self, i: usize) -> PathBuf {
        self.root.join(self.name(i))
    }

    fn create(&self) -> io::Result<()> {
        let mut last_dir = String::new();
        for i in 0..self.files {
            let d = self.dir_of(i);
            if d != last_dir {
                std::fs::create_dir_all(self.root.join(&d))?;
                last_dir = d;
            }
            File::create(self.path(i))?;
        }
        Ok(())
    }
}

#[derive(Serialize, Clone, Default)]
pub struct FilesReport {
    pub files: usize,
    pub dirs: usize,
    /// The one `--file` argument.
    pub glob: String,
    pub create_secs: f64,
    /// Spawn to the `listening on` log line.
    pub startup_listening_secs: f64,
    /// Spawn until `GET /files` listed every file (None: it never did).
    pub startup_all_listed_secs: Option<f64>,
    pub listed_files: Option<usize>,
    pub all_clients: usize,
    pub one_clients: usize,
    pub one_client_files: Vec<String>,
    pub writer: FilesWriterReport,
    pub latency_all: Latency,
    pub latency_one: Latency,
    /// All-files clients: latency of the first line of each file (the first
    /// time the server reads that file) and of every later line.
    pub latency_all_first_line_of_file: Latency,
    pub latency_all_later_lines: Latency,
    /// Every client: the lines sent in the second half of the writing.
    pub latency_second_half: Latency,
    pub check: FilesCheck,
    pub server: ServerFacts,
}

#[derive(Serialize, Clone, Default)]
pub struct FilesWriterReport {
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// CPU of the writer thread over its run (1.0 per second = it is the bottleneck).
    pub thread_cpu_secs: Option<f64>,
    /// open + write + close (or write to a cached fd) per line.
    pub line_write_p50_us: f64,
    pub line_write_p99_us: f64,
    pub line_write_max_us: f64,
    pub opens: u64,
    pub cache_fds: usize,
    pub max_behind_lines: u64,
    /// Lines written to the files the "one" clients read.
    pub lines_to_one_client_files: u64,
}

/// Per-client checks, summed over the clients of each kind.
#[derive(Serialize, Clone, Default)]
pub struct FilesCheck {
    pub expected_all: u64,
    pub expected_one: u64,
    pub got_all: u64,
    pub got_one: u64,
    pub lost_all: u64,
    pub lost_one: u64,
    pub dups: u64,
    /// Frames whose `"file"` is not the name of the file the line was written to.
    pub wrong_name: u64,
    /// Lines of another file at a one-file client.
    pub other_file: u64,
    /// Lines of one file received out of write order.
    pub order_breaks_in_file: u64,
    /// Lines received after a line with a higher id from another file (informational).
    pub reordered_across_files: u64,
    /// Frames that are neither a line of ours nor an event.
    pub foreign: u64,
    pub events: BTreeMap<String, u64>,
    pub clients_closed_by_server: BTreeMap<String, usize>,
    pub not_warmed_up: usize,
}

#[derive(Serialize, Clone, Default)]
pub struct ServerFacts {
    pub threads_rest: Option<u64>,
    pub threads_load_max: Option<u64>,
    pub threads_idle: Option<u64>,
    pub fds_rest: Option<FdCensus>,
    pub fds_load_max: Option<FdCensus>,
    pub fds_idle: Option<FdCensus>,
    pub rss_rest_kib: Option<u64>,
    pub rss_load_peak_kib: Option<u64>,
    pub rss_idle_kib: Option<u64>,
    /// Server CPU during the load (first write to last delivery).
    pub load_cores: Option<f64>,
    /// Server CPU seconds during the load by thread name (`/proc/PID/task/*/comm`).
    pub load_cpu_by_thread: BTreeMap<String, f64>,
    pub idle_secs: f64,
    pub idle_cpu_secs: Option<f64>,
    /// Server CPU seconds during the idle period by thread name.
    pub idle_cpu_by_thread: BTreeMap<String, f64>,
    pub idle_loadgen_cpu_secs: f64,
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sel {
    All,
    One(usize),
}

#[derive(Default)]
struct Progress {
    got: AtomicU64,
    warm: AtomicBool,
    open: AtomicBool,
}

/// One client's accounting (owned by its task, returned at the end).
struct Check {
    sel: Sel,
    total: u64,
    seen: Vec<u64>,
    last_by_file: Vec<u64>,
    max_id: u64,
    got: u64,
    dups: u64,
    wrong_name: u64,
    other_file: u64,
    order_breaks: u64,
    reordered: u64,
    foreign: u64,
    events: BTreeMap<String, u64>,
    hist: Histogram<u64>,
    /// The same split: the first line this client got of each file, and the rest.
    hist_first: Histogram<u64>,
    hist_later: Histogram<u64>,
    /// Lines sent in the second half of the writing (`half_ns` after the
    /// first write), when nearly every file has been read before.
    hist_second_half: Histogram<u64>,
    half_ns: u64,
    /// Worst latency (ns) of the lines sent in each second after `base_ns`
    /// (the first write; set by the phase before it writes).
    base_ns: Arc<AtomicU64>,
    per_sec_max: Vec<u64>,
    end: Option<String>,
}

fn after<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memchr::memmem::find(b, key)?;
    Some(&b[at + key.len()..])
}

/// The string value of `"key":"…"` (no escapes: our names and events have none).
fn str_field<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let v = after(b, key)?;
    let end = memchr::memchr(b'"', v)?;
    Some(&v[..end])
}

fn num(b: &[u8]) -> Option<(u64, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let v = b[..n]
        .iter()
        .fold(0u64, |a, &c| a * 10 + u64::from(c - b'0'));
    Some((v, &b[n..]))
}

/// `seq=ID t=NANOS f=INDEX` at the start of a line.
fn parse_files_line(b: &[u8]) -> Option<(u64, u64, usize)> {
    let (id, rest) = num(b.strip_prefix(b"seq=")?)?;
    let (t, rest) = num(rest.strip_prefix(b" t=")?)?;
    let (f, _) = num(rest.strip_prefix(b" f=")?)?;
    Some((id, t, usize::try_from(f).ok()?))
}

impl Check {
    fn new(sel: Sel, total: u64, files: usize, base_ns: Arc<AtomicU64>, half_ns: u64) -> Check {
        Check {
            sel,
            total,
            seen: vec![0; (total as usize + 1).div_ceil(64)],
            last_by_file: vec![0; files],
            max_id: 0,
            got: 0,
            dups: 0,
            wrong_name: 0,
            other_file: 0,
            order_breaks: 0,
            reordered: 0,
            foreign: 0,
            events: BTreeMap::new(),
            hist: new_hist(),
            hist_first: new_hist(),
            hist_later: new_hist(),
            hist_second_half: new_hist(),
            half_ns,
            base_ns,
            per_sec_max: vec![0; 600],
            end: None,
        }
    }

    fn frame(&mut self, b: &[u8], now: u64, names: &[String], prog: &Progress) {
        let Some(line) = after(b, b"\"line\":\"") else {
            match str_field(b, b"\"event\":\"") {
                Some(ev) => {
                    *self
                        .events
                        .entry(String::from_utf8_lossy(ev).into_owned())
                        .or_default() += 1
                }
                None => self.foreign += 1,
            }
            return;
        };
        let (Some(file), Some((id, t, idx))) =
            (str_field(b, b"\"file\":\""), parse_files_line(line))
        else {
            self.foreign += 1;
            return;
        };
        let Some(name) = names.get(idx) else {
            self.foreign += 1;
            return;
        };
        if file != name.as_bytes() {
            self.wrong_name += 1;
        }
        if let Sel::One(k) = self.sel
            && idx != k
        {
            self.other_file += 1;
            return;
        }
        if id == 0 {
            prog.warm.store(true, Relaxed);
            return;
        }
        if id > self.total {
            self.foreign += 1;
            return;
        }
        let (w, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if self.seen[w] & bit != 0 {
            self.dups += 1;
            return;
        }
        self.seen[w] |= bit;
        self.got += 1;
        prog.got.fetch_add(1, Relaxed);
        let first_of_file = self.last_by_file[idx] == 0;
        if id < self.last_by_file[idx] {
            self.order_breaks += 1;
        } else {
            self.last_by_file[idx] = id;
        }
        if id < self.max_id {
            self.reordered += 1;
        } else {
            self.max_id = id;
        }
        let lat = now.saturating_sub(t).max(1);
        self.hist.saturating_record(lat);
        if first_of_file {
            self.hist_first.saturating_record(lat);
        } else {
            self.hist_later.saturating_record(lat);
        }
        let base = self.base_ns.load(Relaxed);
        if t >= base && t - base >= self.half_ns {
            self.hist_second_half.saturating_record(lat);
        }
        if t >= base
            && let Some(m) = self
                .per_sec_max
                .get_mut(((t - base) / 1_000_000_000) as usize)
        {
            *m = (*m).max(lat);
        }
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn connect_ws(addr: std::net::SocketAddr, sel: Sel, names: &[String]) -> Result<Ws, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    tcp.set_nodelay(true).ok();
    let mut url = format!("ws://{addr}/ws?backlog=0&format=json");
    if let Sel::One(k) = sel {
        url.push_str("&file=");
        url.push_str(&names[k]);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .write_buffer_size(0);
    let (ws, _) = client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                let body: String = r
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).chars().take(200).collect())
                    .unwrap_or_default();
                format!("HTTP {} {body}", r.status().as_u16())
            }
            other => other.to_string().chars().take(120).collect(),
        })?;
    Ok(ws)
}

async fn read_client(
    mut ws: Ws,
    mut chk: Check,
    prog: Arc<Progress>,
    names: Arc<Vec<String>>,
    t0: Instant,
    cancel: CancellationToken,
) -> Check {
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = ws.next() => m,
        };
        let now = t0.elapsed().as_nanos() as u64;
        match msg {
            None => {
                chk.end = Some("eof without close frame".into());
                break;
            }
            Some(Err(e)) => {
                chk.end = Some(format!(
                    "error: {}",
                    e.to_string().chars().take(80).collect::<String>()
                ));
                break;
            }
            Some(Ok(Message::Text(t))) => chk.frame(t.as_bytes(), now, &names, &prog),
            Some(Ok(Message::Binary(b))) => chk.frame(&b, now, &names, &prog),
            Some(Ok(Message::Close(f))) => {
                chk.end = Some(match f {
                    Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
                    None => "close 1005".into(),
                });
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    prog.open.store(false, Relaxed);
    chk
}

/// xorshift64*: the writer's file choice (reproducible, no dependency).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (((r >> 32) * n as u64) >> 32) as usize
    }
}

struct WriterOut {
    rep: WriteReport,
    /// File index of each line id (index 0 unused).
    assign: Vec<u32>,
    extra: FilesWriterReport,
}

/// Appends `rate` lines/s for `secs` to random files, one line per write(2),
/// on an absolute 1 ms schedule (a late tick writes everything due).
/// Bounded by the line count and by `secs * 2 + 10 s`.
fn write_random(
    paths: &[PathBuf],
    t0: Instant,
    rate: f64,
    secs: f64,
    line_bytes: usize,
    cache_fds: usize,
) -> io::Result<WriterOut> {
    let total = (rate * secs).round().max(1.0) as u64;
    let mut cache: Vec<Option<(usize, File)>> = (0..cache_fds).map(|_| None).collect();
    let mut assign = Vec::with_capacity(total as usize + 1);
    assign.push(u32::MAX);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rep = WriteReport::default();
    let mut extra = FilesWriterReport {
        target_rate: rate,
        cache_fds,
        ..Default::default()
    };
    let mut hist = new_hist();
    let mut line = Vec::with_capacity(line_bytes + 64);
    let cpu0 = sys::thread_cpu_secs();
    let mut pacer = Pacer::new(rate, total, Duration::from_secs_f64(secs * 2.0 + 10.0));
    while rep.lines < total {
        let due = match pacer.next(rep.lines) {
            Due::Upto(due) => due,
            Due::Nothing => continue,
            Due::Overtime => {
                rep.aborted = Some("writer time bound reached".into());
                break;
            }
        };
        rep.max_behind_lines = rep.max_behind_lines.max(due - rep.lines);
        for id in rep.lines + 1..=due {
            let idx = rng.below(paths.len());
            assign.push(idx as u32);
            let w = Instant::now();
            let t = t0.elapsed().as_nanos() as u64;
            line.clear();
            write!(line, "seq={id} t={t:016} f={idx} ")?;
            if line.len() + 1 < line_bytes {
                line.resize(line_bytes - 1, b'x');
            }
            line.push(b'\n');
            let path = &paths[idx];
            let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
            if cache.is_empty() {
                extra.opens += 1;
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(&line))
                    .map_err(ctx)?;
            } else {
                let slot = &mut cache[idx % cache_fds];
                if slot.as_ref().is_none_or(|(i, _)| *i != idx) {
                    extra.opens += 1;
                    *slot = None; // close the previous file first
                    *slot = Some((
                        idx,
                        OpenOptions::new().append(true).open(path).map_err(ctx)?,
                    ));
                }
                if let Some((_, f)) = slot {
                    f.write_all(&line).map_err(ctx)?;
                }
            }
            hist.saturating_record(w.elapsed().as_nanos() as u64);
            rep.bytes += line.len() as u64;
            rep.writes += 1;
        }
        rep.lines = due;
    }
    rep.secs = pacer.secs();
    rep.lines_per_s = rep.lines as f64 / rep.secs.max(1e-9);
    rep.max_write_us = hist.max() as f64 / 1e3;
    extra.achieved_rate = rep.lines_per_s;
    extra.thread_cpu_secs = sys::thread_cpu_secs().zip(cpu0).map(|(b, a)| b - a);
    extra.line_write_p50_us = hist.value_at_quantile(0.5) as f64 / 1e3;
    extra.line_write_p99_us = hist.value_at_quantile(0.99) as f64 / 1e3;
    extra.line_write_max_us = hist.max() as f64 / 1e3;
    extra.max_behind_lines = rep.max_behind_lines;
    Ok(WriterOut { rep, assign, extra })
}

/// Samples threads and RSS every 500 ms, the descriptors every 5 s, until stopped.
struct LoadSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Option<u64>, Option<FdCensus>, Samples)>,
}

impl LoadSampler {
    fn start(pid: u32, dir: PathBuf) -> LoadSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let t = Instant::now();
            let (mut threads, mut fds) = (None::<u64>, None::<FdCensus>);
            let mut s = Samples {
                rss_start_kib: sys::rss_kib(pid),
                ..Default::default()
            };
            s.rss_peak_kib = s.rss_start_kib;
            // Bounded: at most an hour of 500 ms samples.
            for n in 0..7200u32 {
                let stopping = flag.load(Relaxed);
                if let Some(th) = sys::task_count(pid) {
                    threads = Some(threads.unwrap_or(0).max(th));
                }
                if let Some(r) = sys::rss_kib(pid) {
                    s.rss_peak_kib = Some(s.rss_peak_kib.unwrap_or(0).max(r));
                    s.rss_end_kib = Some(r);
                    if n % 2 == 0 || stopping {
                        s.rss_series_kib
                            .push(((t.elapsed().as_secs_f64() * 10.0).round() / 10.0, r));
                    }
                }
                if (n % 10 == 2 || stopping)
                    && let Some(c) = sys::fd_census(pid, &dir)
                {
                    fds = Some(fds.map_or(c, |m| m.max(c)));
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            if let (Some(a), Some(p)) = (s.rss_start_kib, s.rss_peak_kib) {
                s.rss_growth_kib = Some(p.saturating_sub(a));
            }
            (threads, fds, s)
        });
        LoadSampler { stop, handle }
    }

    fn finish(self) -> (Option<u64>, Option<FdCensus>, Samples) {
        self.stop.store(true, Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Polls `GET /files` until it lists `want` files (bounded by `timeout`);
/// returns (files listed at the last look, when all were listed, error).
fn wait_listed(
    srv: &Server,
    want: &HashSet<String>,
    spawned: Instant,
    timeout: Duration,
) -> (Option<usize>, Option<f64>, Option<String>) {
    let start = Instant::now();
    let mut last: (Option<usize>, Option<String>);
    loop {
        match sys::http_get(srv.addr, "/files", Duration::from_secs(10)) {
            Ok((200, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Array(a)) => {
                    let names: HashSet<String> = a
                        .iter()
                        .filter_map(|f| f.get("name")?.as_str().map(str::to_owned))
                        .collect();
                    let missing = want.difference(&names).count();
                    let extra = names.difference(want).count();
                    if missing == 0 && extra == 0 {
                        return (Some(a.len()), Some(spawned.elapsed().as_secs_f64()), None);
                    }
                    last = (
                        Some(a.len()),
                        Some(format!(
                            "GET /files lists {} files: {missing} expected names missing, {extra} unexpected (e.g. {:?})",
                            a.len(),
                            names.difference(want).next()
                        )),
                    );
                }
                Ok(_) => last = (None, Some("GET /files: not a JSON array".into())),
                Err(e) => last = (None, Some(format!("GET /files: bad JSON: {e}"))),
            },
            Ok((status, body)) => {
                let msg = format!(
                    "GET /files: HTTP {status} {} (server without issue 11?)",
                    body.trim().chars().take(120).collect::<String>()
                );
                if status == 404 || status == 401 {
                    return (None, None, Some(msg));
                }
                last = (None, Some(msg));
            }
            Err(e) => last = (None, Some(format!("GET /files: {e}"))),
        }
        if start.elapsed() > timeout {
            return (last.0, None, last.1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Per-thread-name CPU seconds spent between two snapshots (non-zero only).
fn cpu_delta(
    before: &BTreeMap<String, f64>,
    after: BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, (d * 100.0).round() / 100.0)
        })
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn add(d: &mut FilesCheck, c: &Check, expected: u64) {
    let lost = expected.saturating_sub(c.got);
    match c.sel {
        Sel::All => {
            d.got_all += c.got;
            d.lost_all += lost;
        }
        Sel::One(_) => {
            d.got_one += c.got;
            d.lost_one += lost;
        }
    }
    d.dups += c.dups;
    d.wrong_name += c.wrong_name;
    d.other_file += c.other_file;
    d.order_breaks_in_file += c.order_breaks;
    d.reordered_across_files += c.reordered;
    d.foreign += c.foreign;
    for (k, v) in &c.events {
        *d.events.entry(k.clone()).or_default() += v;
    }
    if let Some(e) = &c.end {
        *d.clients_closed_by_server.entry(e.clone()).or_default() += 1;
    }
}

/// The phase. Needs a spawned server (it chooses the files the server follows).
pub async fn phase(env: &Env, spec: &FilesSpec) -> Result<Phase, String> {
    let Source::Spawn { bin, args } = &env.source else {
        return Err(format!(
            "{} needs a server it spawns itself (it creates the files): drop --server-addr",
            spec.name
        ));
    };
    let mut failed = Vec::new();
    let mut notes = Vec::new();
    let mut facts = ServerFacts {
        idle_secs: spec.idle_secs,
        ..Default::default()
    };
    if let Some((soft, hard)) = sys::nofile() {
        (facts.nofile_soft, facts.nofile_hard) = (Some(soft), Some(hard));
        let need = spec.files as u64 + (spec.all_clients + spec.one_clients) as u64 + 256;
        if hard < need {
            return Err(format!(
                "RLIMIT_NOFILE hard limit {hard} < {need} (one descriptor per file, the clients and a margin): \
                 raise it (ulimit -Hn) or use --many-files"
            ));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("loadgen-files-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let layout = Layout::new(dir.path().to_path_buf(), spec.files, spec.dirs);
    let made = Instant::now();
    let root = dir.path().to_path_buf();
    let files = spec.files;
    let layout = tokio::task::spawn_blocking(move || layout.create().map(|()| layout))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("creating {files} files under {}: {e}", root.display()))?;
    let create_secs = made.elapsed().as_secs_f64();
    let names: Arc<Vec<String>> = Arc::new((0..spec.files).map(|i| layout.name(i)).collect());
    let paths: Arc<Vec<PathBuf>> = Arc::new((0..spec.files).map(|i| layout.path(i)).collect());
    let glob = format!("{}/*/*.log", root.display());
    let file_args = [OsString::from("--file"), OsString::from(&glob)];
    eprintln!(
        "loadgen: {} files in {} dirs created in {create_secs:.2} s; starting the server with --file '{glob}'",
        spec.files,
        spec.files.div_ceil(layout.per_dir)
    );
    let (bin, args, first) = (bin.clone(), args.clone(), paths[0].clone());
    let spawned = Instant::now();
    let (mut srv, listening) = tokio::task::spawn_blocking(move || {
        crate::server::spawn_with(
            &bin,
            &args,
            dir,
            first,
            &file_args,
            Duration::from_secs(120),
        )
    })
    .await
    .map_err(|e| e.to_string())??;
    srv.mark_log();
    let pid = srv.pid.ok_or("spawned server without a pid")?;
    let want: HashSet<String> = names.iter().cloned().collect();
    let (listed, all_listed, err) = {
        let want = want.clone();
        let srv_ref = &srv;
        // Blocking HTTP on this task: the clients are not connected yet.
        tokio::task::block_in_place(|| {
            wait_listed(srv_ref, &want, spawned, Duration::from_secs(60))
        })
    };
    if let Some(e) = err {
        failed.push(e);
    }
    eprintln!(
        "loadgen: listening {listening:.2} s after spawn; /files lists all {} files at {}",
        spec.files,
        all_listed.map_or("never (see FAILED)".into(), |t| format!("{t:.2} s"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    facts.threads_rest = sys::task_count(pid);
    facts.fds_rest = sys::fd_census(pid, &root);
    facts.rss_rest_kib = sys::rss_kib(pid);

    // Clients.
    let total = (spec.rate * spec.secs).round().max(1.0) as u64;
    let one_idx: Vec<usize> = (0..spec.one_clients)
        .map(|k| k * spec.files / spec.one_clients.max(1))
        .collect();
    let sels: Vec<Sel> = std::iter::repeat_n(Sel::All, spec.all_clients)
        .chain(one_idx.iter().map(|&i| Sel::One(i)))
        .collect();
    let cancel = CancellationToken::new();
    let mut connect = ConnectReport {
        requested: sels.len(),
        ..Default::default()
    };
    let mut hs = new_hist();
    let connect_start = Instant::now();
    let mut clients = Vec::new();
    // The first write, for the per-second worst latency (set below).
    let base_ns = Arc::new(AtomicU64::new(u64::MAX));
    for &sel in &sels {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), connect_ws(srv.addr, sel, &names)).await
        {
            Ok(Ok(ws)) => {
                hs.saturating_record(t.elapsed().as_nanos() as u64);
                let prog = Arc::new(Progress::default());
                prog.open.store(true, Relaxed);
                let half = (spec.secs * 0.5e9) as u64;
                let chk = Check::new(sel, total, spec.files, base_ns.clone(), half);
                let h = tokio::spawn(read_client(
                    ws,
                    chk,
                    prog.clone(),
                    names.clone(),
                    env.t0,
                    cancel.clone(),
                ));
                clients.push((sel, prog, h));
            }
            Ok(Err(e)) => {
                let what = match sel {
                    Sel::All => "all files".to_string(),
                    Sel::One(k) => format!("file={}", names[k]),
                };
                *connect.failures.entry(format!("{what}: {e}")).or_default() += 1;
            }
            Err(_) => {
                *connect
                    .failures
                    .entry("handshake timeout 10 s".into())
                    .or_default() += 1
            }
        }
    }
    connect.secs = connect_start.elapsed().as_secs_f64();
    connect.connected = clients.len();
    connect.handshakes_per_s = clients.len() as f64 / connect.secs.max(1e-9);
    if !hs.is_empty() {
        connect.handshake_p50_ms = hs.value_at_quantile(0.5) as f64 / 1e6;
        connect.handshake_p99_ms = hs.value_at_quantile(0.99) as f64 / 1e6;
        connect.handshake_max_ms = hs.max() as f64 / 1e6;
    }
    if connect.connected < connect.requested {
        failed.push(format!(
            "{} of {} clients did not connect: {:?}",
            connect.requested - connect.connected,
            connect.requested,
            connect.failures
        ));
    }

    // Warm-up: a seq=0 line in each one-client file (all-files clients see them too).
    let warm_files: Vec<usize> = if one_idx.is_empty() {
        vec![0]
    } else {
        one_idx.clone()
    };
    let warm_start = Instant::now();
    let not_warm = loop {
        let cold = clients
            .iter()
            .filter(|(_, p, _)| p.open.load(Relaxed) && !p.warm.load(Relaxed))
            .count();
        if cold == 0 || warm_start.elapsed() > Duration::from_secs(10) {
            break cold;
        }
        for &i in &warm_files {
            let line = format!("seq=0 t=0 f={i} warm-up\n");
            if let Err(e) = crate::writer::append(&paths[i], line.as_bytes()) {
                return Err(format!("warm-up write to {}: {e}", paths[i].display()));
            }
        }
        let wait = Instant::now();
        while wait.elapsed() < Duration::from_millis(500)
            && clients
                .iter()
                .any(|(_, p, _)| p.open.load(Relaxed) && !p.warm.load(Relaxed))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if not_warm > 0 {
        failed.push(format!(
            "{not_warm} clients never received a warm-up line within 10 s"
        ));
    }

    // Load.
    let sampler = LoadSampler::start(pid, root.clone());
    let mark = CpuMark::now(&srv);
    let threads0 = sys::thread_cpu_by_name(pid);
    let first_write_ns = env.t0.elapsed().as_nanos() as u64;
    base_ns.store(first_write_ns, Relaxed);
    let (p2, t0, rate, secs, lb, fds) = (
        paths.clone(),
        env.t0,
        spec.rate,
        spec.secs,
        spec.line_bytes.max(48),
        spec.writer_fds,
    );
    let out = tokio::task::spawn_blocking(move || write_random(&p2, t0, rate, secs, lb, fds))
        .await
        .map_err(|e| e.to_string())?;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            cancel.cancel();
            return Err(format!("writer: {e}"));
        }
    };
    if let Some(a) = &out.rep.aborted {
        failed.push(format!("writer: {a}"));
    }
    let written = out.rep.lines;
    let expected = |sel: Sel| match sel {
        Sel::All => written,
        Sel::One(k) => out.assign[1..=written as usize]
            .iter()
            .filter(|&&i| i as usize == k)
            .count() as u64,
    };
    let expect: Vec<u64> = clients.iter().map(|(s, _, _)| expected(*s)).collect();
    // Drain: every open client has its lines, or no progress for drain_idle.
    let drain_start = Instant::now();
    let mut progress = (u64::MAX, Instant::now());
    let incomplete = loop {
        let mut pending = 0;
        let mut sum = 0;
        for ((_, p, _), &e) in clients.iter().zip(&expect) {
            let g = p.got.load(Relaxed);
            sum += g;
            if p.open.load(Relaxed) && g < e {
                pending += 1;
            }
        }
        if pending == 0 {
            break 0;
        }
        if sum != progress.0 {
            progress = (sum, Instant::now());
        }
        if progress.1.elapsed() > env.drain_idle || drain_start.elapsed() > Duration::from_secs(120)
        {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let last_rx_ns = env.t0.elapsed().as_nanos() as u64;
    let cpu: Cpu = mark.since(&srv);
    facts.load_cpu_by_thread = cpu_delta(&threads0, sys::thread_cpu_by_name(pid));
    let (threads_load, fds_load, memory) = sampler.finish();
    facts.threads_load_max = threads_load;
    facts.fds_load_max = fds_load;
    facts.rss_load_peak_kib = memory.rss_peak_kib;
    facts.load_cores = cpu.server_cores;
    if incomplete > 0 {
        notes.push(format!(
            "{incomplete} open clients were still missing lines {:.0} s after progress stopped",
            env.drain_idle.as_secs_f64()
        ));
    }

    // Idle: the files quiet, the clients connected.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_mark = CpuMark::now(&srv);
    let idle_threads0 = sys::thread_cpu_by_name(pid);
    let idle_end = Instant::now() + Duration::from_secs_f64(spec.idle_secs);
    while Instant::now() < idle_end {
        tokio::time::sleep(Duration::from_millis(250).min(idle_end - Instant::now())).await;
    }
    let idle = idle_mark.since(&srv);
    facts.idle_cpu_secs = idle.server_cpu_secs;
    facts.idle_cpu_by_thread = cpu_delta(&idle_threads0, sys::thread_cpu_by_name(pid));
    facts.idle_loadgen_cpu_secs = idle.loadgen_cpu_secs;
    facts.threads_idle = sys::task_count(pid);
    facts.fds_idle = sys::fd_census(pid, &root);
    facts.rss_idle_kib = sys::rss_kib(pid);

    // Results.
    cancel.cancel();
    let mut check = FilesCheck {
        not_warmed_up: not_warm,
        ..Default::default()
    };
    let (mut h_all, mut h_one) = (new_hist(), new_hist());
    let mut per_sec = vec![0u64; 600];
    let (mut h_first, mut h_later, mut h_half) = (new_hist(), new_hist(), new_hist());
    let mut d = Delivery {
        written,
        clients: clients.len(),
        not_warmed_up: not_warm,
        incomplete_after_drain: incomplete,
        delivered_min: u64::MAX,
        ..Default::default()
    };
    let mut bytes_rx = 0u64;
    for ((sel, _, h), &e) in clients.into_iter().zip(&expect) {
        let c = match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(c)) => c,
            Ok(Err(err)) => {
                failed.push(format!("a client task failed: {err}"));
                continue;
            }
            Err(_) => {
                failed.push("a client task did not stop within 10 s".into());
                continue;
            }
        };
        match sel {
            Sel::All => {
                check.expected_all += e;
                h_all.add(&c.hist).map_err(|e| e.to_string())?;
                h_first.add(&c.hist_first).map_err(|e| e.to_string())?;
                h_later.add(&c.hist_later).map_err(|e| e.to_string())?;
            }
            Sel::One(_) => {
                check.expected_one += e;
                h_one.add(&c.hist).map_err(|e| e.to_string())?;
            }
        }
        add(&mut check, &c, e);
        h_half.add(&c.hist_second_half).map_err(|e| e.to_string())?;
        for (m, x) in per_sec.iter_mut().zip(&c.per_sec_max) {
            *m = (*m).max(*x);
        }
        d.delivered_total += c.got;
        d.delivered_min = d.delivered_min.min(c.got);
        d.delivered_max = d.delivered_max.max(c.got);
        d.dups_total += c.dups;
        d.foreign_msgs += c.foreign + c.wrong_name + c.other_file;
        bytes_rx += c.got * lb as u64;
        let lost = e.saturating_sub(c.got);
        if lost == 0 && c.dups == 0 && c.wrong_name == 0 && c.other_file == 0 && c.order_breaks == 0
        {
            d.clients_complete += 1;
        }
        match &c.end {
            Some(end) => {
                *d.ends.entry(end.clone()).or_default() += 1;
                d.lost_closed_clients += lost;
            }
            None => d.lost_open_clients += lost,
        }
    }
    if d.clients == 0 {
        d.delivered_min = 0;
    }
    let mut h = h_all.clone();
    h.add(&h_one).map_err(|e| e.to_string())?;
    let mut latency = Latency::from(&h);
    latency.max_by_second_us = per_sec
        .iter()
        .take(spec.secs.ceil() as usize + 1)
        .map(|x| x / 1000)
        .collect();
    while latency.max_by_second_us.last() == Some(&0) {
        latency.max_by_second_us.pop();
    }
    let (lat_all, lat_one) = (Latency::from(&h_all), Latency::from(&h_one));

    for (what, v) in [
        ("lines lost at all-files clients", check.lost_all),
        ("lines lost at one-file clients", check.lost_one),
        ("duplicate lines", check.dups),
        ("frames with a wrong \"file\" name", check.wrong_name),
        (
            "lines of another file at a one-file client",
            check.other_file,
        ),
        (
            "lines out of order within a file",
            check.order_breaks_in_file,
        ),
        ("foreign frames", check.foreign),
    ] {
        if v > 0 {
            failed.push(format!("{v} {what}"));
        }
    }
    if !check.clients_closed_by_server.is_empty() {
        failed.push(format!(
            "clients ended by the server: {:?}",
            check.clients_closed_by_server
        ));
    }
    if out.extra.achieved_rate < 0.95 * spec.rate {
        notes.push(format!(
            "the writer reached {:.0} of {:.0} lines/s (writer thread CPU {} s over {:.1} s): it is the bottleneck",
            out.extra.achieved_rate,
            spec.rate,
            out.extra.thread_cpu_secs.map_or("?".into(), |c| format!("{c:.2}")),
            out.rep.secs
        ));
    }
    if cpu.saturated {
        notes.push(format!(
            "SATURATED: loadgen {:.2} cores, machine {:.0}% busy during the load",
            cpu.loadgen_cores, cpu.machine_busy_pct
        ));
    }
    if idle.machine_busy_pct > 50.0 {
        notes.push(format!(
            "the machine was {:.0}% busy during the idle measurement (other work?)",
            idle.machine_busy_pct
        ));
    }
    let tp = Throughput {
        secs: (last_rx_ns.saturating_sub(first_write_ns) as f64 / 1e9).max(1e-9),
        lines_written_per_s: out.rep.lines_per_s,
        ..Default::default()
    };
    let tp = Throughput {
        deliveries_per_s: d.delivered_total as f64 / tp.secs,
        mb_received_per_s: bytes_rx as f64 / tp.secs / 1e6,
        ..tp
    };
    let mut wx = out.extra;
    wx.lines_to_one_client_files = check.expected_one;
    let report = FilesReport {
        files: spec.files,
        dirs: spec.files.div_ceil(layout.per_dir),
        glob,
        create_secs,
        startup_listening_secs: listening,
        startup_all_listed_secs: all_listed,
        listed_files: listed,
        all_clients: spec.all_clients,
        one_clients: spec.one_clients,
        one_client_files: one_idx.iter().map(|&i| names[i].clone()).collect(),
        writer: wx,
        latency_all: lat_all,
        latency_one: lat_one,
        latency_all_first_line_of_file: Latency::from(&h_first),
        latency_all_later_lines: Latency::from(&h_later),
        latency_second_half: Latency::from(&h_half),
        check,
        server: facts,
    };
    let (server_log, server_addr, shutdown) = stop_server(srv, &mut notes).await;
    Ok(Phase {
        name: spec.name.clone(),
        params: serde_json::json!({
            "files": spec.files, "dirs": report.dirs, "all_clients": spec.all_clients,
            "one_clients": spec.one_clients, "rate": spec.rate, "secs": spec.secs,
            "idle_secs": spec.idle_secs, "line_bytes": lb, "writer_fds": spec.writer_fds,
            "json_frames": true,
        }),
        server_addr,
        connect,
        write: Some(out.rep),
        latency: Some(latency),
        delivery: Some(d),
        throughput: Some(tp),
        cpu,
        memory,
        idle: None,
        stuck: None,
        files: Some(report),
        viewer: None,
        footprint: None,
        nats: None,
        server_log,
        server_shutdown: shutdown,
        notes,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines_parse() {
        let l = Layout::new(PathBuf::from("/x"), 10_000, 100);
        assert_eq!(l.name(0), "d00/f0000.log");
        assert_eq!(l.name(9_999), "d99/f9999.log");
        assert_eq!(l.name(150), "d01/f0150.log");
        assert_eq!(
            parse_files_line(b"seq=12 t=0000000000000034 f=56 xx"),
            Some((12, 34, 56))
        );
        let names: Vec<String> = (0..100).map(|i| l.name(i)).collect();
        let prog = Progress::default();
        let mut c = Check::new(Sel::All, 10, 100, Arc::new(AtomicU64::new(0)), 0);
        let f = |id: u64, idx: usize, name: &str| {
            format!(
                r#"{{"seq":{id},"offset":0,"file":"{name}","line":"seq={id} t=0000000000000001 f={idx} x"}}"#
            )
        };
        c.frame(f(1, 5, "d00/f0005.log").as_bytes(), 10, &names, &prog);
        c.frame(f(1, 5, "d00/f0005.log").as_bytes(), 10, &names, &prog);
        c.frame(f(2, 6, "d00/f0005.log").as_bytes(), 10, &names, &prog);
        c.frame(
            br#"{"event":"hello","epoch":"e","seq":0}"#,
            10,
            &names,
            &prog,
        );
        assert_eq!((c.got, c.dups, c.wrong_name), (2, 1, 1));
        assert_eq!(c.events.get("hello"), Some(&1));
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng(1);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[r.below(7)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
