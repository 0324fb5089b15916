//! The viewer in a browser (issue 13, `viewer-5000x60`, `viewer-5000x10`):
//! the built-in page in headless Chromium while lines stream into it.
//!
//! One fresh server on an empty temp file; Chromium (see [`crate::browser`])
//! opens `http://ADDR/` (plus `--viewer-fragment`, e.g. `q=ERROR` for a
//! filtered view) and the phase waits until `logtail.state().connection` is
//! `live`. Then one writer appends realistic mixed lines (plain with levels,
//! JSON, logfmt, ANSI-coloured, klog; [`LineGen`]) at `rate` lines/s for
//! `secs` on the writers' absolute schedule ([`Pacer`]), recording when each
//! line was handed to write(2). Meanwhile, over CDP:
//! - every 100 ms `logtail.state()` → the newest `seq` in the page at the
//!   page's clock (`Date.now()`), whose age against its write time is the
//!   delivery lag (an upper bound of that line's write → page latency), and
//!   how many written lines the page did not have yet;
//! - every second `state()`, `perf()` (the page's own rAF timings), the frames
//!   of a probe `requestAnimationFrame` loop installed before the page's
//!   script (intervals between the frames the main thread produced),
//!   `Runtime.getHeapUsage`, `Performance.getMetrics` (main-thread task time,
//!   script, layout, style), and the CPU of every Chromium process
//!   (`/proc/PID/stat`) and of the server.
//!
//! Long tasks and long animation frames (> 50 ms) are collected by
//! `PerformanceObserver`s of the probe; CSP violations by a
//! `securitypolicyviolation` listener; exceptions and console errors from
//! CDP events. At the end: every written line must be in `received` exactly
//! once (`lost` 0), `lines()` must be consecutive seqs ending at the last one,
//! with the text written, and as many as the ring holds; the phase fails
//! otherwise, or when the page has more than 3 × the rows on screen in its DOM.
//! Performance targets are reported, not failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::browser::{CdpEvents, Chromium, find_chromium};
use crate::clients::{ConnectReport, new_hist};
use crate::scenarios::{CpuMark, Delivery, Env, Latency, Phase, stop_server};
use crate::server::{Sampler, Source};
use crate::writer::{Due, Pacer, WriteReport};

#[derive(Clone, Debug)]
pub struct ViewerSpec {
    pub name: String,
    /// Lines per second.
    pub rate: f64,
    /// Seconds of writing.
    pub secs: f64,
    /// URL fragment of the page, without `#` (e.g. `q=ERROR`); empty for none.
    pub fragment: String,
    /// Chromium binary [default: `chromium` or `chromium-browser` on PATH].
    pub chromium: Option<PathBuf>,
    pub width: u32,
    pub height: u32,
    /// Record a JS CPU profile of the page during the writing.
    pub profile: bool,
    /// Record a Chromium trace of 5 s in the middle of the writing.
    pub trace: bool,
    /// Force a GC every so many seconds of the writing and record the heap after it.
    pub gc_every: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// The lines

/// Deterministic mixed log lines: line `k` (from 1) is always the same text
/// for the same base time and rate, so the page's copy can be checked.
#[derive(Clone, Copy)]
pub struct LineGen {
    /// Wall-clock time (ms since the epoch) of line 1's timestamp.
    base_ms: u64,
    /// Timestamp step per line, µs.
    step_us: f64,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const SERVICES: [&str; 5] = ["api", "billing", "auth", "search", "worker"];
const ROUTES: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/users",
    "/api/v1/cart",
    "/api/v2/search",
    "/static/app.js",
    "/healthz",
];
const PLANS: [&str; 3] = ["free", "pro", "team"];

impl LineGen {
    pub fn new(base_ms: u64, rate: f64) -> LineGen {
        LineGen {
            base_ms,
            step_us: 1e6 / rate.max(1e-3),
        }
    }

    /// Line `k` (from 1), without the newline.
    pub fn line(&self, k: u64, out: &mut String) {
        let us = self.base_ms * 1000 + ((k - 1) as f64 * self.step_us) as u64;
        let (secs, frac_us) = ((us / 1_000_000) as i64, us % 1_000_000);
        let (y, mo, d) = civil(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
        let ts = format!(
            "{y:04}-{mo:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
            frac_us / 1000
        );
        let r = mix(k);
        let lv = match (r >> 8) % 100 {
            0..3 => 3, // error
            3..10 => 2,
            10..25 => 0, // debug
            _ => 1,      // info
        };
        let (upper, lower) = [
            ("DEBUG", "debug"),
            ("INFO", "info"),
            ("WARN", "warn"),
            ("ERROR", "error"),
        ][lv];
        let svc = SERVICES[(r >> 16) as usize % SERVICES.len()];
        let route = ROUTES[(r >> 20) as usize % ROUTES.len()];
        let id = (r >> 24) % 100_000;
        // Milliseconds: quick for most requests, over the 500 ms threshold for the slow ones.
        let ms = if lv == 2 {
            500 + (r >> 40) % 2500
        } else {
            1 + (r >> 40) % 120
        };
        let req = (r >> 12) as u32;
        let msg = match lv {
            0 => format!("cache lookup key=user:{id} hit={}", r & 1 == 0),
            1 => format!("GET {route}/{id} 200 {ms}ms"),
            2 => format!("slow request POST {route} took {ms}ms (threshold 500ms)"),
            _ => format!(
                "upstream payments-{svc} returned 503 after 3 retries: connection reset by peer"
            ),
        };
        out.clear();
        let _ = match r % 100 {
            // plain text with a level word
            0..40 => write!(
                out,
                "{ts} {upper:<5} {svc}::http: {msg} req={req:08x} bytes={}",
                (r >> 30) % 50_000
            ),
            // JSON
            40..65 => write!(
                out,
                r#"{{"time":"{ts}","level":"{lower}","msg":"{msg}","service":"{svc}","req_id":"{req:08x}","user":{{"id":{id},"plan":"{}"}},"latency_ms":{}.{}}}"#,
                PLANS[(r >> 50) as usize % 3],
                ms,
                (r >> 34) % 10
            ),
            // ANSI-coloured (as a terminal logger writes them)
            65..80 => {
                let colour = ["36", "32", "33", "1;31"][lv];
                write!(
                    out,
                    "\x1b[2m{ts}\x1b[0m \x1b[{colour}m{upper:<5}\x1b[0m \x1b[1m{svc}\x1b[0m: {msg} \x1b[90mreq={req:08x}\x1b[0m"
                )
            }
            // logfmt
            80..92 => write!(
                out,
                r#"time={ts} level={lower} msg="{msg}" service={svc} dur={ms}ms status={} req={req:08x}"#,
                if lv == 3 { 503 } else { 200 }
            ),
            // klog (Kubernetes)
            _ => write!(
                out,
                "{}{mo:02}{d:02} {hh:02}:{mm:02}:{ss:02}.{frac_us:06} {:>7} controller.go:{}] {msg}",
                ['I', 'I', 'W', 'E'][lv],
                1000 + (r >> 44) % 30_000,
                100 + (r >> 36) % 400
            ),
        };
    }
}

// ---------------------------------------------------------------------------------------
// The writer

struct WriteLog {
    rep: WriteReport,
    /// (last line of the write, ns since t0 just before its write(2)), per write.
    marks: Vec<(u64, u64)>,
}

fn write_lines(
    path: &Path,
    t0: Instant,
    gen_: LineGen,
    rate: f64,
    secs: f64,
    written: &AtomicU64,
) -> io::Result<WriteLog> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    let total = (rate * secs).round().max(1.0) as u64;
    let mut pacer = Pacer::new(rate, total, Duration::from_secs_f64(secs * 2.0 + 10.0));
    let mut log = WriteLog {
        rep: WriteReport::default(),
        marks: Vec::with_capacity((secs * 1000.0) as usize + 16),
    };
    let (mut buf, mut line) = (Vec::new(), String::new());
    let mut max_write = Duration::ZERO;
    let rep = &mut log.rep;
    while rep.lines < total {
        let due = match pacer.next(rep.lines) {
            Due::Upto(d) => d,
            Due::Nothing => continue,
            Due::Overtime => {
                rep.aborted = Some("writer time bound reached".into());
                break;
            }
        };
        rep.max_behind_lines = rep.max_behind_lines.max(due - rep.lines);
        buf.clear();
        for k in rep.lines + 1..=due {
            gen_.line(k, &mut line);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        let at = t0.elapsed().as_nanos() as u64;
        let w = Instant::now();
        f.write_all(&buf)?;
        max_write = max_write.max(w.elapsed());
        log.marks.push((due, at));
        rep.bytes += buf.len() as u64;
        rep.writes += 1;
        rep.lines = due;
        written.store(due, Relaxed);
    }
    rep.secs = pacer.secs();
    rep.lines_per_s = rep.lines as f64 / rep.secs.max(1e-9);
    rep.max_write_us = max_write.as_secs_f64() * 1e6;
    Ok(log)
}

impl WriteLog {
    /// ns since t0 of the write that carried line `seq`.
    fn written_at(&self, seq: u64) -> Option<u64> {
        let i = self.marks.partition_point(|m| m.0 < seq);
        self.marks.get(i).map(|m| m.1)
    }

    /// Lines handed to write(2) by `ns` since t0.
    fn written_by(&self, ns: u64) -> u64 {
        let i = self.marks.partition_point(|m| m.1 <= ns);
        if i == 0 { 0 } else { self.marks[i - 1].0 }
    }
}

// ---------------------------------------------------------------------------------------
// What runs in the page

/// Installed before the page's own script (`Page.addScriptToEvaluateOnNewDocument`):
/// a rAF loop recording every frame's timestamp, observers of long tasks and long
/// animation frames, and a CSP violation listener. It does not touch the viewer.
const PROBE_JS: &str = r#"(() => {
  const P = { frames: new Float64Array(1 << 17), nf: 0, longTasks: [], loafs: [], csp: [], observing: [] };
  Object.defineProperty(window, '__vbench', { value: P });
  const watch = (type, f) => {
    try {
      new PerformanceObserver((l) => { for (const e of l.getEntries()) f(e); }).observe({ type, buffered: true });
      P.observing.push(type);
    } catch (_) { /* not supported */ }
  };
  watch('longtask', (e) => P.longTasks.push([e.startTime, e.duration]));
  watch('long-animation-frame', (e) => P.loafs.push([e.startTime, e.duration, e.blockingDuration || 0,
    e.renderStart ? e.startTime + e.duration - e.renderStart : 0]));
  document.addEventListener('securitypolicyviolation', (e) => {
    if (P.csp.length < 20) P.csp.push(e.violatedDirective + ' ' + e.blockedURI);
  });
  const tick = (t) => { P.frames[P.nf % P.frames.length] = t; P.nf++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
})();"#;

/// The 100 ms look: the newest seq in the page, at the page's clock.
const LAG_JS: &str = "(() => { const s = logtail.state(); return [s.seq, Date.now(), s.received, performance.now()]; })()";

/// The once-a-second look; `FROM` is replaced by the first probe frame not yet read.
const SAMPLE_JS: &str = r#"(() => {
  const P = window.__vbench, s = logtail.state(), p = logtail.perf(), n = P.frames.length;
  const fr = [];
  for (let i = Math.max(FROM, P.nf - n); i < P.nf; i++) fr.push(P.frames[i % n]);
  return { now: Date.now(), pnow: performance.now(), s, p, nf: P.nf, fr,
           elements: document.getElementsByTagName('*').length };
})()"#;

// ---------------------------------------------------------------------------------------
// The report

#[derive(Serialize, Clone, Default)]
pub struct Second {
    /// Seconds since the first write.
    pub t: f64,
    pub written: u64,
    pub received: u64,
    pub held: u64,
    pub shown: u64,
    pub dom_rows: u64,
    pub rows_on_screen: u64,
    /// `document.getElementsByTagName('*').length`.
    pub dom_elements: u64,
    /// `Runtime.getHeapUsage` usedSize, MiB.
    pub heap_mib: f64,
    /// `--viewer-gc-every`: usedSize just after a forced GC, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_after_gc_mib: Option<f64>,
    /// The page's rAF callbacks (`perf().frames`) in this second.
    pub page_frames: u64,
    /// The probe's frames in this second, and their intervals.
    pub probe_frames: u64,
    pub frame_p95_ms: f64,
    pub frame_max_ms: f64,
    /// Main-thread task time / wall (`Performance.getMetrics` TaskDuration).
    pub main_thread_busy: f64,
    /// Main-thread CPU time / wall (ThreadTime).
    pub main_thread_cpu: f64,
    pub renderer_cores: f64,
    pub chromium_cores: f64,
    pub server_cores: f64,
    pub connection: String,
}

#[derive(Serialize, Clone, Default)]
pub struct Dist {
    pub n: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn dist(v: &[f64]) -> Dist {
    if v.is_empty() {
        return Dist::default();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |x: f64| s[((x * s.len() as f64) as usize).min(s.len() - 1)];
    Dist {
        n: s.len() as u64,
        p50: q(0.5),
        p95: q(0.95),
        p99: q(0.99),
        max: s[s.len() - 1],
    }
}

#[derive(Serialize, Clone, Default)]
pub struct ViewerReport {
    pub chromium: String,
    pub chromium_flags: Vec<String>,
    pub url: String,
    /// innerWidth × innerHeight @ devicePixelRatio, visibilityState.
    pub viewport: String,
    pub time_to_live_s: f64,
    pub rate: f64,
    pub secs: f64,
    pub capacity: u64,
    // exactly once
    pub written: u64,
    pub received: u64,
    pub seq: u64,
    pub lost: u64,
    pub held: u64,
    pub shown: u64,
    pub lines_checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub seq_breaks: u64,
    pub text_mismatches: u64,
    pub first_problem: Option<String>,
    /// Last write → the page has the last line.
    pub drain_s: Option<f64>,
    // DOM
    pub dom_rows_max: u64,
    pub rows_on_screen: u64,
    pub dom_elements_max: u64,
    pub dom_elements_end: u64,
    pub nodes_metric_end: Option<f64>,
    // frames
    /// `logtail.perf()` at the end of the writing (last 4096 page frames).
    pub page_perf: Value,
    pub page_frames_during_load: u64,
    /// Probe rAF intervals during the writing, ms.
    pub probe_frame_ms: Dist,
    pub probe_fps: f64,
    /// Probe intervals longer than 1.5 × the median (missed vsyncs).
    pub frames_missed: u64,
    /// Probe rAF intervals of the idle page in the 2 s before the writing, ms.
    pub idle_frame_ms: Dist,
    pub raf_mode: String,
    pub long_tasks: u64,
    pub long_task_max_ms: f64,
    pub long_task_total_ms: f64,
    pub long_frames: u64,
    pub long_frame_max_ms: f64,
    pub observers: Vec<String>,
    // memory
    pub heap_base_mib: f64,
    /// First second with `held` at the ring's capacity.
    pub heap_at_full_mib: Option<f64>,
    pub heap_at_full_t: Option<f64>,
    pub heap_max_mib: f64,
    pub heap_end_mib: f64,
    pub heap_end_after_gc_mib: Option<f64>,
    /// Lowest heap sample in the 10 s after the ring filled, and in the last 10 s.
    pub heap_floor_after_full_mib: Option<f64>,
    pub heap_floor_last10_mib: Option<f64>,
    // CPU over the writing
    pub renderer_cores: f64,
    pub busiest_renderer_cores: f64,
    pub gpu_cores: f64,
    pub browser_cores: f64,
    pub chromium_cores: f64,
    pub chromium_cpu_by_kind: BTreeMap<String, f64>,
    /// Δ of `Performance.getMetrics` over the writing, seconds.
    pub metrics_delta_s: BTreeMap<String, f64>,
    pub main_thread_busy: f64,
    pub main_thread_cpu: f64,
    pub server_cores: Option<f64>,
    /// /proc/loadavg before and after the writing (the machine is shared).
    pub loadavg_before: String,
    pub loadavg_after: String,
    // lag
    pub lag_ms: Dist,
    pub behind_lines: Dist,
    // the page's own reports
    pub cdp_events: CdpEvents,
    /// `--viewer-profile`: self time by function over the writing, ms, the largest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile_top: Vec<(String, f64)>,
    pub profile_total_ms: f64,
    /// `--viewer-trace`: the main thread in a trace, seconds `trace_from_s`.. of the writing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::trace::TraceSummary>,
    pub trace_from_s: f64,
    pub csp_violations: Vec<String>,
    pub per_second: Vec<Second>,
}

// ---------------------------------------------------------------------------------------
// The phase

fn num(v: &Value) -> u64 {
    v.as_f64().map_or(0, |x| x.max(0.0) as u64)
}

fn metrics_map(v: &Value) -> BTreeMap<String, f64> {
    v["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| Some((m["name"].as_str()?.to_string(), m["value"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

/// CPU by kind and the busiest renderer, between two per-process readings.
fn cpu_delta(
    a: &BTreeMap<u32, (String, f64)>,
    b: &BTreeMap<u32, (String, f64)>,
) -> (BTreeMap<String, f64>, f64) {
    let mut by = BTreeMap::new();
    let mut busiest: f64 = 0.0;
    for (pid, (kind, c)) in b {
        let d = c - a.get(pid).map_or(0.0, |x| x.1);
        *by.entry(kind.clone()).or_insert(0.0) += d;
        if kind == "renderer" {
            busiest = busiest.max(d);
        }
    }
    (by, busiest)
}

struct Look {
    cdp_ms: f64,
    s: Value,
    p: Value,
    nf: u64,
    frames: Vec<f64>,
    elements: u64,
    heap: f64,
    metrics: BTreeMap<String, f64>,
    cpu: BTreeMap<u32, (String, f64)>,
    server_cpu: Option<f64>,
    at: Instant,
}

async fn look(
    page: &crate::browser::Cdp,
    chromium: &Chromium,
    srv: &crate::server::Server,
    from: u64,
) -> Result<Look, String> {
    let v = page
        .eval(&SAMPLE_JS.replace("FROM", &from.to_string()))
        .await?;
    let heap = page.call("Runtime.getHeapUsage", json!({})).await?;
    let metrics = metrics_map(&page.call("Performance.getMetrics", json!({})).await?);
    Ok(Look {
        cdp_ms: v["now"].as_f64().unwrap_or(0.0),
        s: v["s"].clone(),
        p: v["p"].clone(),
        nf: num(&v["nf"]),
        frames: v["fr"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
        elements: num(&v["elements"]),
        heap: heap["usedSize"].as_f64().unwrap_or(0.0),
        metrics,
        cpu: chromium.cpu_by_process(),
        server_cpu: srv.cpu_secs(),
        at: Instant::now(),
    })
}

pub async fn phase(env: &Env, spec: &ViewerSpec) -> Result<Phase, String> {
    if matches!(env.source, Source::Attach { .. }) {
        return Err(format!(
            "{} needs a server it spawns itself (its lines are numbered from 1): drop --server-addr",
            spec.name
        ));
    }
    let exe = spec.chromium.clone().or_else(find_chromium).ok_or(
        "the viewer phases need Chromium: `chromium` or `chromium-browser` on PATH \
         (Debian: apt-get install chromium), or --chromium PATH",
    )?;
    let mut failed = Vec::new();
    let mut notes = Vec::new();
    let mut srv = env.source.get()?;
    srv.mark_log();
    let chromium = Chromium::launch(&exe, spec.width, spec.height).await?;
    let r = run(env, spec, &chromium, &srv, &mut failed, &mut notes).await;
    let tail = chromium.log_tail();
    drop(chromium);
    let (mut rep, w, lag, connect, cpu, memory) = match r {
        Ok(x) => x,
        Err(e) => {
            let _ = stop_server(srv, &mut notes).await;
            return Err(format!("{e}\n---- chromium output ----\n{tail}"));
        }
    };
    rep.chromium_flags
        .retain(|f| !f.starts_with("--user-data-dir"));
    let delivery = Delivery {
        written: rep.written,
        clients: 1,
        clients_complete: usize::from(
            rep.received == rep.written
                && rep.lost == 0
                && rep.seq_breaks == 0
                && rep.text_mismatches == 0,
        ),
        delivered_total: rep.received,
        delivered_min: rep.received,
        delivered_max: rep.received,
        lost_open_clients: rep.written.saturating_sub(rep.received),
        ..Default::default()
    };
    let (server_log, server_addr, shutdown) = stop_server(srv, &mut notes).await;
    Ok(Phase {
        name: spec.name.clone(),
        params: json!({
            "rate": spec.rate, "secs": spec.secs, "fragment": spec.fragment,
            "window": format!("{}x{}", spec.width, spec.height), "chromium": exe,
        }),
        server_addr,
        connect,
        write: Some(w),
        latency: Some(lag),
        delivery: Some(delivery),
        throughput: None,
        cpu,
        memory,
        idle: None,
        stuck: None,
        files: None,
        viewer: Some(rep),
        footprint: None,
        nats: None,
        server_log,
        server_shutdown: shutdown,
        notes,
        failed,
    })
}

type RunOut = (
    ViewerReport,
    WriteReport,
    Latency,
    ConnectReport,
    crate::scenarios::Cpu,
    crate::server::Samples,
);

async fn run(
    env: &Env,
    spec: &ViewerSpec,
    chromium: &Chromium,
    srv: &crate::server::Server,
    failed: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<RunOut, String> {
    let mut rep = ViewerReport {
        rate: spec.rate,
        secs: spec.secs,
        chromium_flags: chromium.flags.clone(),
        ..Default::default()
    };
    let browser = chromium.browser().await?;
    let ver = browser.call("Browser.getVersion", json!({})).await?;
    rep.chromium = ver["product"].as_str().unwrap_or("?").to_string();
    let (page, target) = chromium.page(&browser).await?;
    for (m, p) in [
        ("Page.enable", json!({})),
        ("Runtime.enable", json!({})),
        ("Log.enable", json!({})),
        ("Performance.enable", json!({})),
        (
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": PROBE_JS }),
        ),
    ] {
        page.call(m, p).await?;
    }
    rep.url = format!("http://{}/", srv.addr);
    if !spec.fragment.is_empty() {
        rep.url.push('#');
        rep.url.push_str(spec.fragment.trim_start_matches('#'));
    }
    let opened = Instant::now();
    let nav = page
        .call("Page.navigate", json!({ "url": rep.url }))
        .await?;
    if let Some(e) = nav["errorText"].as_str() {
        return Err(format!("navigating to {}: {e}", rep.url));
    }
    let mut connect = ConnectReport {
        requested: 1,
        ..Default::default()
    };
    loop {
        let st = page
            .eval("window.logtail ? logtail.state().connection : 'no logtail'")
            .await;
        if st.as_ref().ok().and_then(Value::as_str) == Some("live") {
            break;
        }
        if opened.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "the page was not live 20 s after opening {}: {st:?}",
                rep.url
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    rep.time_to_live_s = opened.elapsed().as_secs_f64();
    connect.connected = 1;
    connect.secs = rep.time_to_live_s;
    // --window-size is the window's; make the viewport (innerWidth × innerHeight) the size asked.
    let inner = page.eval("[innerWidth, innerHeight]").await?;
    let (iw, ih) = (num(&inner[0]), num(&inner[1]));
    if (iw, ih) != (u64::from(spec.width), u64::from(spec.height)) && iw > 0 && ih > 0 {
        let win = browser
            .call("Browser.getWindowForTarget", json!({ "targetId": target }))
            .await?;
        let (bw, bh) = (num(&win["bounds"]["width"]), num(&win["bounds"]["height"]));
        let bounds = json!({
            "width": bw + u64::from(spec.width) - iw.min(bw + u64::from(spec.width)),
            "height": bh + u64::from(spec.height) - ih.min(bh + u64::from(spec.height)),
        });
        if let Err(e) = browser
            .call(
                "Browser.setWindowBounds",
                json!({ "windowId": win["windowId"], "bounds": bounds }),
            )
            .await
        {
            notes.push(format!(
                "could not resize the window to a {}x{} viewport: {e}",
                spec.width, spec.height
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let info = page
        .eval(
            "({ w: innerWidth, h: innerHeight, dpr: devicePixelRatio, vis: document.visibilityState, \
             cap: logtail.state().capacity, observing: window.__vbench ? window.__vbench.observing : null })",
        )
        .await?;
    rep.viewport = format!(
        "{}x{} @{} ({})",
        info["w"], info["h"], info["dpr"], info["vis"]
    );
    rep.capacity = num(&info["cap"]);
    if info["observing"].is_null() {
        return Err("the probe script did not run in the page (window.__vbench missing)".into());
    }
    rep.observers = info["observing"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    // Settle, then the empty page's heap after a GC.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = page.call("HeapProfiler.enable", json!({})).await;
    let gc = page.call("HeapProfiler.collectGarbage", json!({})).await;
    let h = page.call("Runtime.getHeapUsage", json!({})).await?;
    rep.heap_base_mib = mib(h["usedSize"].as_f64().unwrap_or(0.0));
    let _ = page.call("HeapProfiler.disable", json!({})).await;
    if gc.is_err() {
        notes.push(format!(
            "HeapProfiler.collectGarbage failed: {gc:?}; heaps are without a GC"
        ));
    }

    // The load.
    let sys0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let inst0 = Instant::now();
    // Wall-clock ms of t0 (the load generator's shared Instant).
    let t0_epoch_ms = sys0.as_secs_f64() * 1e3 - inst0.duration_since(env.t0).as_secs_f64() * 1e3;
    let gen_ = LineGen::new(sys0.as_millis() as u64, spec.rate);
    let sampler = Sampler::start(srv.pid, srv.addr, true);
    let mut prev = look(&page, chromium, srv, 0).await?;
    let start = prev.clone_base();
    let mark = CpuMark::now(srv);
    rep.loadavg_before = loadavg();
    if spec.profile {
        page.call("Profiler.enable", json!({})).await?;
        page.call("Profiler.setSamplingInterval", json!({ "interval": 1000 }))
            .await?;
        page.call("Profiler.start", json!({})).await?;
    }
    let load_start_pnow = page
        .eval("performance.now()")
        .await?
        .as_f64()
        .unwrap_or(0.0);
    let written = Arc::new(AtomicU64::new(0));
    let first_write_ns = env.t0.elapsed().as_nanos() as u64;
    let (file, t0, rate, secs, wr) = (
        srv.file.clone(),
        env.t0,
        spec.rate,
        spec.secs,
        written.clone(),
    );
    let writer = tokio::task::spawn_blocking(move || write_lines(&file, t0, gen_, rate, secs, &wr));
    let mut lag_raw: Vec<(u64, f64)> = Vec::new();
    let mut frames: Vec<f64> = prev.frames.clone();
    let mut last_frame = frames.last().copied();
    let page_frames0 = num(&prev.p["frames"]);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0u64;
    // --viewer-trace: (start, length) in seconds of the writing; the answer's receiver.
    let trace_win = spec.trace.then(|| {
        let len = (spec.secs * 0.5).min(5.0);
        ((spec.secs / 2.0 - len / 2.0).max(0.0), len)
    });
    let mut trace_state = 0; // 0 not started, 1 tracing, 2 ended
    let mut trace_done = None;
    let mut dom_rows_max = 0;
    let mut elements_max = 0;
    let mut last_gc = Instant::now();
    let load_start_ms = prev.cdp_ms;
    let mut load_end_pnow = f64::INFINITY;
    loop {
        tick.tick().await;
        let done = writer.is_finished();
        if let Some((from, len)) = trace_win {
            let t = start.at.elapsed().as_secs_f64();
            if trace_state == 0 && t >= from && !done {
                let cats =
                    "toplevel,devtools.timeline,disabled-by-default-devtools.timeline,v8.execute";
                page.call(
                    "Tracing.start",
                    json!({ "transferMode": "ReturnAsStream",
                            "traceConfig": { "includedCategories": cats.split(',').collect::<Vec<_>>() } }),
                )
                .await?;
                rep.trace_from_s = t;
                trace_state = 1;
            } else if trace_state == 1 && (t >= from + len || done) {
                trace_done = Some(page.next_event("Tracing.tracingComplete"));
                page.call("Tracing.end", json!({})).await?;
                trace_state = 2;
            }
        }
        if let Ok(v) = page.eval(LAG_JS).await {
            lag_raw.push((num(&v[0]), v[1].as_f64().unwrap_or(0.0)));
            if done {
                load_end_pnow = v[3].as_f64().unwrap_or(f64::INFINITY);
            }
        }
        k += 1;
        if k.is_multiple_of(10) || done {
            let l = look(&page, chromium, srv, prev.nf).await?;
            let sec = second(&prev, &l, &mut last_frame, &start, &written);
            dom_rows_max = dom_rows_max.max(sec.dom_rows);
            elements_max = elements_max.max(sec.dom_elements);
            frames.extend_from_slice(&l.frames);
            let mut sec = sec;
            if let Some(every) = spec.gc_every
                && !done
                && last_gc.elapsed().as_secs_f64() >= every
            {
                last_gc = Instant::now();
                let _ = page.call("HeapProfiler.enable", json!({})).await;
                if page
                    .call("HeapProfiler.collectGarbage", json!({}))
                    .await
                    .is_ok()
                {
                    let h = page.call("Runtime.getHeapUsage", json!({})).await?;
                    sec.heap_after_gc_mib = h["usedSize"].as_f64().map(mib);
                }
            }
            rep.per_second.push(sec);
            prev = l;
        }
        if done {
            break;
        }
    }
    let wlog = writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("writer: {e}"))?;
    let w = wlog.rep.clone();
    if let Some(a) = &w.aborted {
        failed.push(format!("writer: {a}"));
    }
    let load_wall = start.at.elapsed().as_secs_f64();
    // Drain: the page has the last line (or no progress for --drain-timeout).
    let last_write_ns = wlog.marks.last().map_or(first_write_ns, |m| m.1);
    let mut progress = (0u64, Instant::now());
    loop {
        let v = page.eval(LAG_JS).await?;
        let (seq, got) = (num(&v[0]), num(&v[2]));
        if seq >= w.lines && got >= w.lines {
            let now_ns = env.t0.elapsed().as_nanos() as u64;
            rep.drain_s = Some(now_ns.saturating_sub(last_write_ns) as f64 / 1e9);
            break;
        }
        if got != progress.0 {
            progress = (got, Instant::now());
        }
        if progress.1.elapsed() > env.drain_idle {
            notes.push(format!(
                "the page stopped at seq {seq}, {got} lines received, {:.0} s after progress stopped",
                env.drain_idle.as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The trace, read after the drain (reading it costs the page time).
    if let Some(rx) = trace_done {
        let got = tokio::time::timeout(Duration::from_secs(120), rx).await;
        match got {
            Ok(Ok(p)) => match p["stream"].as_str() {
                Some(h) => match page.read_stream(h).await {
                    Ok(text) => {
                        let r =
                            tokio::task::spawn_blocking(move || crate::trace::summarize(&text, 20))
                                .await
                                .map_err(|e| e.to_string())?;
                        match r {
                            Ok(t) => rep.trace = Some(t),
                            Err(e) => notes.push(format!("trace: {e}")),
                        }
                    }
                    Err(e) => notes.push(format!("trace: {e}")),
                },
                None => notes.push(format!("trace: no stream in {p}")),
            },
            _ => notes.push("trace: no Tracing.tracingComplete within 120 s".into()),
        }
    }
    if spec.profile {
        match page.call("Profiler.stop", json!({})).await {
            Ok(p) => (rep.profile_top, rep.profile_total_ms) = profile_top(&p["profile"], 25),
            Err(e) => notes.push(format!("Profiler.stop: {e}")),
        }
        let _ = page.call("Profiler.disable", json!({})).await;
    }
    let cpu = mark.since(srv);
    let end_look = prev.clone_base();
    rep.page_perf = prev.p.clone();
    rep.page_frames_during_load = num(&prev.p["frames"]).saturating_sub(page_frames0);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let fin = look(&page, chromium, srv, prev.nf).await?;
    let s = &fin.s;
    rep.written = w.lines;
    rep.received = num(&s["received"]);
    rep.seq = num(&s["seq"]);
    rep.lost = num(&s["lost"]);
    rep.held = num(&s["held"]);
    rep.shown = num(&s["shown"]);
    rep.rows_on_screen = num(&s["rowsOnScreen"]);
    rep.dom_rows_max = dom_rows_max.max(num(&s["domRows"]));
    rep.dom_elements_max = elements_max.max(fin.elements);
    rep.dom_elements_end = fin.elements;
    rep.nodes_metric_end = fin.metrics.get("Nodes").copied();
    rep.heap_end_mib = mib(fin.heap);
    if s["connection"] != "live" {
        notes.push(format!(
            "the page's connection at the end: {}",
            s["connection"]
        ));
    }

    // Frames during the writing (probe rAF intervals).
    let in_load: Vec<f64> = frames
        .iter()
        .copied()
        .filter(|&t| t >= load_start_pnow && t <= load_end_pnow)
        .collect();
    let gaps: Vec<f64> = in_load.windows(2).map(|x| x[1] - x[0]).collect();
    rep.probe_frame_ms = dist(&gaps);
    let span = in_load.last().zip(in_load.first()).map(|(b, a)| b - a);
    rep.probe_fps = span.map_or(0.0, |s| 1000.0 * gaps.len() as f64 / s.max(1e-9));
    let med = rep.probe_frame_ms.p50;
    rep.frames_missed = gaps.iter().filter(|&&g| g > 1.5 * med).count() as u64;
    let idle: Vec<f64> = frames
        .iter()
        .copied()
        .filter(|&t| t < load_start_pnow && t >= load_start_pnow - 2000.0)
        .collect();
    rep.idle_frame_ms = dist(&idle.windows(2).map(|x| x[1] - x[0]).collect::<Vec<_>>());
    let hz = |m: f64| match m {
        0.0 => "no frames".to_string(),
        m if (15.5..=17.9).contains(&m) => format!("60 Hz (interval p50 {m:.1} ms)"),
        m if m < 15.5 => format!("faster than 60 Hz (p50 {m:.1} ms: not vsync-paced)"),
        m => format!("slower than 60 Hz (p50 {m:.1} ms)"),
    };
    rep.raf_mode = format!(
        "idle page {}; while writing {}",
        hz(rep.idle_frame_ms.p50),
        hz(med)
    );

    // Long tasks, long frames, CSP, after the writing.
    let obs = page
        .eval(
            "(() => { const P = window.__vbench; return { lt: P.longTasks, loaf: P.loafs, csp: P.csp }; })()",
        )
        .await?;
    let within = |e: &Value| {
        let t = e[0].as_f64().unwrap_or(0.0);
        t >= load_start_pnow && t <= load_end_pnow
    };
    let lts: Vec<f64> = obs["lt"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| within(e))
                .filter_map(|e| e[1].as_f64())
                .collect()
        })
        .unwrap_or_default();
    rep.long_tasks = lts.len() as u64;
    rep.long_task_max_ms = lts.iter().copied().fold(0.0, f64::max);
    rep.long_task_total_ms = lts.iter().fold(0.0, |a, b| a + b);
    let lfs: Vec<f64> = obs["loaf"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| within(e))
                .filter_map(|e| e[1].as_f64())
                .collect()
        })
        .unwrap_or_default();
    rep.long_frames = lfs.len() as u64;
    rep.long_frame_max_ms = lfs.iter().copied().fold(0.0, f64::max);
    rep.csp_violations = obs["csp"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();

    // CPU and main thread over the writing.
    let (by, busiest) = cpu_delta(&start.cpu, &end_look.cpu);
    let cores = |k: &str| by.get(k).copied().unwrap_or(0.0) / load_wall.max(1e-9);
    rep.renderer_cores = cores("renderer");
    rep.busiest_renderer_cores = busiest / load_wall.max(1e-9);
    rep.gpu_cores = cores("gpu-process");
    rep.browser_cores = cores("browser");
    rep.chromium_cores = by.values().sum::<f64>() / load_wall.max(1e-9);
    rep.chromium_cpu_by_kind = by;
    for (k, v) in &end_look.metrics {
        if k.ends_with("Duration")
            || k.ends_with("Count")
            || k == "ThreadTime"
            || k == "ProcessTime"
        {
            let d = v - start.metrics.get(k).copied().unwrap_or(0.0);
            rep.metrics_delta_s.insert(k.clone(), d);
        }
    }
    rep.main_thread_busy = rep
        .metrics_delta_s
        .get("TaskDuration")
        .copied()
        .unwrap_or(0.0)
        / load_wall.max(1e-9);
    rep.main_thread_cpu = rep
        .metrics_delta_s
        .get("ThreadTime")
        .copied()
        .unwrap_or(0.0)
        / load_wall.max(1e-9);
    rep.server_cores = cpu.server_cores;
    rep.loadavg_after = loadavg();

    // Heap.
    let full_t = rep
        .per_second
        .iter()
        .find(|x| rep.capacity > 0 && x.held >= rep.capacity)
        .map(|x| (x.t, x.heap_mib));
    rep.heap_at_full_t = full_t.map(|x| x.0);
    rep.heap_at_full_mib = full_t.map(|x| x.1);
    rep.heap_max_mib = rep
        .per_second
        .iter()
        .map(|x| x.heap_mib)
        .fold(0.0, f64::max);
    let floor = |a: f64, b: f64| {
        rep.per_second
            .iter()
            .filter(|x| x.t >= a && x.t <= b)
            .map(|x| x.heap_mib)
            .reduce(f64::min)
    };
    if let Some((t, _)) = full_t {
        rep.heap_floor_after_full_mib = floor(t, t + 10.0);
        let end_t = rep.per_second.last().map_or(0.0, |x| x.t);
        if end_t - t >= 20.0 {
            rep.heap_floor_last10_mib = floor(end_t - 10.0, end_t);
        }
    }
    let _ = page.call("HeapProfiler.enable", json!({})).await;
    if page
        .call("HeapProfiler.collectGarbage", json!({}))
        .await
        .is_ok()
    {
        let h = page.call("Runtime.getHeapUsage", json!({})).await?;
        rep.heap_end_after_gc_mib = h["usedSize"].as_f64().map(mib);
    }

    // Exactly once: every line the page holds, checked against what was written.
    let lines = page
        .eval("logtail.lines().map((l) => [l.seq, l.line])")
        .await?;
    let lines = lines.as_array().cloned().unwrap_or_default();
    rep.lines_checked = lines.len() as u64;
    let mut want = String::new();
    let mut prev_seq: Option<u64> = None;
    for l in &lines {
        let seq = l[0].as_u64();
        let text = l[1].as_str().unwrap_or("");
        let Some(seq) = seq else {
            rep.seq_breaks += 1;
            rep.first_problem
                .get_or_insert_with(|| format!("a line without a seq: {l}"));
            continue;
        };
        rep.first_seq.get_or_insert(seq);
        if let Some(p) = prev_seq
            && seq != p + 1
        {
            rep.seq_breaks += 1;
            rep.first_problem
                .get_or_insert_with(|| format!("seq {seq} follows {p}"));
        }
        prev_seq = Some(seq);
        if seq >= 1 && seq <= w.lines {
            gen_.line(seq, &mut want);
            if text != want {
                rep.text_mismatches += 1;
                rep.first_problem.get_or_insert_with(|| {
                    format!("line {seq}: page has {text:?}, written {want:?}")
                });
            }
        } else {
            rep.text_mismatches += 1;
            rep.first_problem
                .get_or_insert_with(|| format!("seq {seq} was never written"));
        }
    }
    rep.last_seq = prev_seq;
    rep.cdp_events = page.events.lock().unwrap().clone();
    drop(lines);

    // Lag: the newest line in the page against its write time, while writing.
    let last_write_ms = t0_epoch_ms + last_write_ns as f64 / 1e6;
    let (mut lags, mut behind) = (Vec::new(), Vec::new());
    let mut h = new_hist();
    for &(seq, page_ms) in &lag_raw {
        if page_ms < load_start_ms || page_ms > last_write_ms {
            continue;
        }
        let at_ns = ((page_ms - t0_epoch_ms) * 1e6).max(0.0) as u64;
        behind.push(wlog.written_by(at_ns).saturating_sub(seq) as f64);
        if seq == 0 {
            continue;
        }
        if let Some(wns) = wlog.written_at(seq) {
            let lag = (page_ms - (t0_epoch_ms + wns as f64 / 1e6)).max(0.0);
            lags.push(lag);
            h.saturating_record((lag * 1e6) as u64 + 1);
        }
    }
    rep.lag_ms = dist(&lags);
    rep.behind_lines = dist(&behind);
    let lat = Latency::from(&h);
    let memory = sampler.finish();

    // Verdicts.
    let want_held = w.lines.min(rep.capacity.max(1));
    if rep.received != w.lines {
        failed.push(format!(
            "the page received {} of {} lines written",
            rep.received, w.lines
        ));
    }
    if rep.lost > 0 {
        failed.push(format!("the page reports lost: {}", rep.lost));
    }
    if rep.seq_breaks > 0 || rep.text_mismatches > 0 {
        failed.push(format!(
            "lines(): {} seq breaks, {} wrong texts; first: {}",
            rep.seq_breaks,
            rep.text_mismatches,
            rep.first_problem.as_deref().unwrap_or("?")
        ));
    }
    if rep.last_seq != Some(w.lines) {
        failed.push(format!(
            "lines() ends at seq {:?}, the last line written is {}",
            rep.last_seq, w.lines
        ));
    }
    if rep.held != want_held || rep.lines_checked != want_held {
        failed.push(format!(
            "the page holds {} lines (lines() gives {}), expected {want_held} (written {}, ring {})",
            rep.held, rep.lines_checked, w.lines, rep.capacity
        ));
    }
    if rep.rows_on_screen > 0 && rep.dom_rows_max > 3 * rep.rows_on_screen {
        failed.push(format!(
            "DOM rows up to {} for {} rows on screen (more than 3 ×)",
            rep.dom_rows_max, rep.rows_on_screen
        ));
    }
    let pp = &rep.page_perf;
    let render_p99 = pp["renderP99"].as_f64().unwrap_or(0.0);
    if render_p99 > 16.0 {
        notes.push(format!(
            "TARGET: the page's render p99 is {render_p99:.1} ms (> 16 ms, a frame's budget)"
        ));
    }
    if rep.probe_frame_ms.p95 > 16.7 * 1.1 {
        notes.push(format!(
            "TARGET: frame interval p95 {:.1} ms (issue 13: p95 frame ≤ 16.7 ms)",
            rep.probe_frame_ms.p95
        ));
    }
    if rep.long_tasks > 0 {
        notes.push(format!(
            "TARGET: {} long tasks (> 50 ms) during the writing, longest {:.0} ms (issue 13: none)",
            rep.long_tasks, rep.long_task_max_ms
        ));
    }
    if let (Some(a), Some(b)) = (rep.heap_floor_after_full_mib, rep.heap_floor_last10_mib)
        && b > a * 1.15
        && b - a > 5.0
    {
        notes.push(format!(
            "heap grows with the ring full: floor {a:.1} MiB just after it filled, {b:.1} MiB in the last 10 s"
        ));
    }
    if !rep.csp_violations.is_empty() {
        failed.push(format!("CSP violations: {:?}", rep.csp_violations));
    }
    if rep.cdp_events.exceptions > 0 {
        failed.push(format!(
            "{} JS exceptions in the page: {:?}",
            rep.cdp_events.exceptions, rep.cdp_events.sample
        ));
    }
    if w.lines_per_s < 0.95 * spec.rate {
        notes.push(format!(
            "the writer reached {:.0} of {:.0} lines/s",
            w.lines_per_s, spec.rate
        ));
    }
    if spec.profile || spec.trace || spec.gc_every.is_some() {
        notes.push(
            "diagnostic run (--viewer-profile / --viewer-trace / --viewer-gc-every): they cost the page time; \
             take frame, lag and drain figures from a run without them"
                .into(),
        );
    }
    if cpu.saturated {
        notes.push(format!(
            "SATURATED: machine {:.0}% busy during the writing (Chromium, the server and the load generator share {} cores)",
            cpu.machine_busy_pct,
            crate::sys::ncpus()
        ));
    }
    Ok((rep, w, lat, connect, cpu, memory))
}

impl Look {
    /// The parts of a look that a later one is compared with.
    fn clone_base(&self) -> Look {
        Look {
            cdp_ms: self.cdp_ms,
            s: self.s.clone(),
            p: self.p.clone(),
            nf: self.nf,
            frames: Vec::new(),
            elements: self.elements,
            heap: self.heap,
            metrics: self.metrics.clone(),
            cpu: self.cpu.clone(),
            server_cpu: self.server_cpu,
            at: self.at,
        }
    }
}

/// Self time per function (name, script:line) of a CDP `Profiler.Profile`, ms,
/// the `n` largest; and the profile's whole span, ms.
fn profile_top(p: &Value, n: usize) -> (Vec<(String, f64)>, f64) {
    let mut name_of = std::collections::HashMap::new();
    for node in p["nodes"].as_array().into_iter().flatten() {
        let cf = &node["callFrame"];
        let f = cf["functionName"].as_str().unwrap_or("");
        let url = cf["url"].as_str().unwrap_or("");
        let file = url.rsplit('/').next().unwrap_or(url);
        let label = if file.is_empty() {
            if f.is_empty() {
                "(anonymous)".into()
            } else {
                f.to_string()
            }
        } else {
            format!(
                "{} {file}:{}",
                if f.is_empty() { "(anonymous)" } else { f },
                cf["lineNumber"].as_i64().unwrap_or(-1) + 1
            )
        };
        name_of.insert(node["id"].as_u64().unwrap_or(0), label);
    }
    let samples = p["samples"].as_array().cloned().unwrap_or_default();
    let deltas = p["timeDeltas"].as_array().cloned().unwrap_or_default();
    let mut by: BTreeMap<String, f64> = BTreeMap::new();
    // timeDeltas[i] is the time before sample i: charge sample i with the time to the next one.
    for (i, s) in samples.iter().enumerate() {
        let dt = deltas.get(i + 1).and_then(Value::as_f64).unwrap_or(0.0) / 1e3;
        let label = name_of
            .get(&s.as_u64().unwrap_or(0))
            .cloned()
            .unwrap_or_else(|| "?".into());
        *by.entry(label).or_insert(0.0) += dt;
    }
    let total =
        (p["endTime"].as_f64().unwrap_or(0.0) - p["startTime"].as_f64().unwrap_or(0.0)) / 1e3;
    let mut v: Vec<(String, f64)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(n);
    (v, total)
}

/// One row of the per-second series, from two looks.
fn second(
    a: &Look,
    b: &Look,
    last_frame: &mut Option<f64>,
    start: &Look,
    written: &AtomicU64,
) -> Second {
    let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let mut gaps = Vec::new();
    for &f in &b.frames {
        if let Some(l) = *last_frame {
            gaps.push(f - l);
        }
        *last_frame = Some(f);
    }
    let d = dist(&gaps);
    let (by, _) = cpu_delta(&a.cpu, &b.cpu);
    let delta = |k: &str| {
        b.metrics.get(k).copied().unwrap_or(0.0) - a.metrics.get(k).copied().unwrap_or(0.0)
    };
    let s = &b.s;
    Second {
        t: (b.at.duration_since(start.at).as_secs_f64() * 10.0).round() / 10.0,
        written: written.load(Relaxed),
        received: num(&s["received"]),
        held: num(&s["held"]),
        shown: num(&s["shown"]),
        dom_rows: num(&s["domRows"]),
        rows_on_screen: num(&s["rowsOnScreen"]),
        dom_elements: b.elements,
        heap_mib: mib(b.heap),
        heap_after_gc_mib: None,
        page_frames: num(&b.p["frames"]).saturating_sub(num(&a.p["frames"])),
        probe_frames: b.frames.len() as u64,
        frame_p95_ms: d.p95,
        frame_max_ms: d.max,
        main_thread_busy: delta("TaskDuration") / dt,
        main_thread_cpu: delta("ThreadTime") / dt,
        renderer_cores: by.get("renderer").copied().unwrap_or(0.0) / dt,
        chromium_cores: by.values().sum::<f64>() / dt,
        server_cores: b
            .server_cpu
            .zip(a.server_cpu)
            .map_or(0.0, |(y, x)| (y - x) / dt),
        connection: s["connection"].as_str().unwrap_or("?").to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Printing

pub fn print(s: &mut String, v: &ViewerReport) {
    let _ = writeln!(
        s,
        "  browser     {}, viewport {}, page live {:.2} s after opening {}",
        v.chromium, v.viewport, v.time_to_live_s, v.url
    );
    let _ = writeln!(
        s,
        "  exactly     written {}, received {}, lost {}, page seq {}; lines() {} held, seqs {}..{} ({} breaks, {} wrong texts); drain {}",
        v.written,
        v.received,
        v.lost,
        v.seq,
        v.lines_checked,
        v.first_seq.map_or("-".into(), |x| x.to_string()),
        v.last_seq.map_or("-".into(), |x| x.to_string()),
        v.seq_breaks,
        v.text_mismatches,
        v.drain_s.map_or("never".into(), |d| format!(
            "{:.0} ms after the last write",
            d * 1e3
        ))
    );
    let _ = writeln!(
        s,
        "  ring        held {} of capacity {}; shown (after filters) {}",
        v.held, v.capacity, v.shown
    );
    let _ = writeln!(
        s,
        "  DOM         rows max {} for {} rows on screen; elements max {}, end {}; Nodes metric {}",
        v.dom_rows_max,
        v.rows_on_screen,
        v.dom_elements_max,
        v.dom_elements_end,
        v.nodes_metric_end.map_or("?".into(), |n| format!("{n:.0}"))
    );
    let p = &v.page_perf;
    let f = |k: &str| p[k].as_f64().map_or("?".into(), |x| format!("{x:.2}"));
    let _ = writeln!(
        s,
        "  page perf   frames {} ({} during the writing); render p50 {} ms, p99 {}, max {}; frame gap p50 {} ms, p99 {}",
        p["frames"],
        v.page_frames_during_load,
        f("renderP50"),
        f("renderP99"),
        f("renderMax"),
        f("frameGapP50"),
        f("frameGapP99")
    );
    let d = &v.probe_frame_ms;
    let _ = writeln!(
        s,
        "  frames      probe rAF during the writing: {:.1} fps, interval p50 {:.2} ms, p95 {:.2}, p99 {:.2}, max {:.1} ms; {} missed (> 1.5 × p50); rAF {}",
        v.probe_fps, d.p50, d.p95, d.p99, d.max, v.frames_missed, v.raf_mode
    );
    let _ = writeln!(
        s,
        "  long        {} long tasks > 50 ms (max {:.0} ms, total {:.0} ms), {} long animation frames (max {:.0} ms); observers {:?}",
        v.long_tasks,
        v.long_task_max_ms,
        v.long_task_total_ms,
        v.long_frames,
        v.long_frame_max_ms,
        v.observers
    );
    let o = |x: Option<f64>| x.map_or("?".into(), |x| format!("{x:.1}"));
    let _ = writeln!(
        s,
        "  JS heap     empty page {:.1} MiB (after GC); at the ring full ({} s) {} MiB; max {:.1}; end {:.1}, after GC {} MiB; floor just after full {}, last 10 s {}",
        v.heap_base_mib,
        o(v.heap_at_full_t),
        o(v.heap_at_full_mib),
        v.heap_max_mib,
        v.heap_end_mib,
        o(v.heap_end_after_gc_mib),
        o(v.heap_floor_after_full_mib),
        o(v.heap_floor_last10_mib)
    );
    let m = |k: &str| v.metrics_delta_s.get(k).copied().unwrap_or(0.0);
    let _ = writeln!(
        s,
        "  CPU         renderer {:.2} cores (busiest {:.2}), gpu {:.2}, browser {:.2}, all Chromium {:.2}; server {} cores; page main thread: in tasks {:.0}% of the time, on a CPU {:.0}% (script {:.1} s, layout {:.1} s in {:.0}, style {:.1} s in {:.0}, devtools {:.1} s); load average {} -> {}",
        v.renderer_cores,
        v.busiest_renderer_cores,
        v.gpu_cores,
        v.browser_cores,
        v.chromium_cores,
        v.server_cores.map_or("?".into(), |c| format!("{c:.2}")),
        100.0 * v.main_thread_busy,
        100.0 * v.main_thread_cpu,
        m("ScriptDuration"),
        m("LayoutDuration"),
        m("LayoutCount"),
        m("RecalcStyleDuration"),
        m("RecalcStyleCount"),
        m("DevToolsCommandDuration"),
        v.loadavg_before,
        v.loadavg_after
    );
    let (l, b) = (&v.lag_ms, &v.behind_lines);
    let _ = writeln!(
        s,
        "  lag         newest line in the page vs its write (n={}): p50 {:.0} ms, p95 {:.0}, p99 {:.0}, max {:.0} ms; lines written not yet in the page p50 {:.0}, p99 {:.0}, max {:.0}",
        l.n, l.p50, l.p95, l.p99, l.max, b.p50, b.p99, b.max
    );
    let e = &v.cdp_events;
    let _ = writeln!(
        s,
        "  page says   {} exceptions, {} console errors/warnings, {} log errors, {} CSP violations{}",
        e.exceptions,
        e.console_errors,
        e.log_errors,
        v.csp_violations.len(),
        if e.sample.is_empty() {
            String::new()
        } else {
            format!(": {:?}", e.sample)
        }
    );
    if let Some(t) = &v.trace {
        let _ = writeln!(
            s,
            "  trace       {:.1} s from second {:.1} of the writing, {} ({} events): {} tasks, busy {:.0}%, task p50 {:.2} ms, p99 {:.1}, max {:.1}; {} long tasks > 50 ms ({:.0} ms); {} rAF callbacks",
            t.span_ms / 1e3,
            v.trace_from_s,
            t.thread,
            t.events,
            t.tasks,
            100.0 * t.busy,
            t.task_p50_ms,
            t.task_p99_ms,
            t.task_max_ms,
            t.long_tasks,
            t.long_task_total_ms,
            t.animation_frames
        );
        let _ = writeln!(
            s,
            "  trace       {} layouts, {:.0} ms ({:.2} ms each, {:.0} of {:.0} layout objects dirty on average); {} of them forced inside script, {:.0} ms; main-thread self time by event:",
            t.layouts,
            t.layout_ms,
            t.layout_ms / (t.layouts.max(1) as f64),
            t.layout_dirty_objects,
            t.layout_total_objects,
            t.forced_layouts,
            t.forced_layout_ms
        );
        for (name, ms, n) in &t.self_ms {
            let _ = writeln!(
                s,
                "              {:>7.0} ms {:>5.1}%  {name} (x{n})",
                ms,
                100.0 * ms / t.span_ms.max(1e-9)
            );
        }
    }
    if !v.profile_top.is_empty() {
        let _ = writeln!(
            s,
            "  JS profile  self time over {:.1} s of writing (1 ms sampling), top functions:",
            v.profile_total_ms / 1e3
        );
        for (f, ms) in &v.profile_top {
            let _ = writeln!(
                s,
                "              {:>7.0} ms {:>5.1}%  {f}",
                ms,
                100.0 * ms / v.profile_total_ms.max(1e-9)
            );
        }
    }
    let _ = writeln!(
        s,
        "  per second  t s: received held domRows heapMiB(afterGC) pageFrames fps p95ms maxms mainBusy% mainCpu% rendererCores serverCores"
    );
    let n = v.per_second.len();
    for (i, x) in v.per_second.iter().enumerate() {
        if n > 15 && i % 5 != 4 && i + 1 != n && x.heap_after_gc_mib.is_none() {
            continue;
        }
        let gc = x
            .heap_after_gc_mib
            .map_or(String::new(), |g| format!("({g:.1})"));
        let _ = writeln!(
            s,
            "              {:>5.1}: {:>7} {:>7} {:>3} {:>6.1}{:<7} {:>3} {:>3} {:>5.1} {:>5.1} {:>3.0} {:>3.0} {:>4.2} {:>4.2}",
            x.t,
            x.received,
            x.held,
            x.dom_rows,
            x.heap_mib,
            gc,
            x.page_frames,
            x.probe_frames,
            x.frame_p95_ms,
            x.frame_max_ms,
            100.0 * x.main_thread_busy,
            100.0 * x.main_thread_cpu,
            x.renderer_cores,
            x.server_cores
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_deterministic_and_mixed() {
        let g = LineGen::new(1_764_633_600_000, 5000.0); // 2025-12-02T00:00:00Z
        let mut a = String::new();
        let mut b = String::new();
        g.line(1, &mut a);
        g.line(1, &mut b);
        assert_eq!(a, b);
        let (mut json, mut ansi, mut error) = (0, 0, 0);
        for k in 1..=1000 {
            g.line(k, &mut a);
            assert!(!a.contains('\n'));
            json += usize::from(a.starts_with('{'));
            ansi += usize::from(a.contains('\x1b'));
            error += usize::from(a.contains("ERROR") || a.contains("\"error\""));
        }
        assert!(
            json > 150 && ansi > 80 && error > 10,
            "{json} {ansi} {error}"
        );
        let mut l = String::new();
        LineGen::new(1_764_633_600_000, 1.0).line(2, &mut l);
        assert!(
            l.contains("2025-12-02T00:00:01.000Z") || l.starts_with(['I', 'W', 'E']),
            "{l}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_424), (2025, 12, 2));
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn write_log_lookups() {
        let w = WriteLog {
            rep: WriteReport::default(),
            marks: vec![(5, 100), (10, 200), (15, 300)],
        };
        assert_eq!(w.written_at(1), Some(100));
        assert_eq!(w.written_at(6), Some(200));
        assert_eq!(w.written_at(16), None);
        assert_eq!(w.written_by(99), 0);
        assert_eq!(w.written_by(250), 10);
    }
}
