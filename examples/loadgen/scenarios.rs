//! The measurement phases: streaming (paced or flood writer), idle, and the
//! stuck-client variant of streaming. A streaming phase with
//! [`StreamSpec::footprint`] (issue 14: the same SSE workload over HTTP/1.1,
//! HTTP/2 and HTTP/3) also measures the server's RSS before and after the
//! clients connect and its connection counts, and fails unless every client
//! connected and got every line exactly once, in order.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clients::{
    self, ClientCfg, ClientStat, ConnectReport, Dial, Fleet, Recorder, StuckReport, Transport,
};
use crate::mux::{Conns, ConnsReport, Proto};
use crate::server::{LogSummary, Sampler, Samples, Server, Shutdown, Source};
use crate::sys;
use crate::writer::{self, WriteReport};

#[derive(Clone, Debug)]
pub enum Writer {
    /// lines/s for a duration.
    Paced { rate: f64, secs: f64 },
    /// `lines` as fast as possible, at most `window_bytes` ahead of the slowest client.
    Flood { lines: u64, window_bytes: u64 },
}

#[derive(Clone, Debug)]
pub struct StreamSpec {
    pub name: String,
    /// What the `clients` read (a stuck client is always a WebSocket).
    pub transport: Transport,
    pub clients: usize,
    pub stuck: usize,
    pub line_bytes: usize,
    pub writer: Writer,
    /// Measure the per-client footprint (RSS before / after connecting, the
    /// server's connection counts) and fail the phase on any missing,
    /// repeated or reordered line or any client that did not connect.
    pub footprint: bool,
    /// WebSocket clients ask for JSON frames whatever `--json-frames` says
    /// (`/wt` and `/rtc` always send JSON).
    pub json: bool,
    /// Arguments for this phase's spawned server, after `--server-arg`s
    /// (e.g. `--http3 --rtc-port 0`).
    pub server_args: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct IdleSpec {
    pub name: String,
    pub clients: usize,
    pub idle_secs: f64,
}

pub struct Env {
    pub source: Source,
    pub t0: Instant,
    pub concurrency: usize,
    pub drain_idle: Duration,
    pub stuck_rcvbuf: usize,
    /// WebSocket clients ask for JSON frames.
    pub json_frames: bool,
}

#[derive(Serialize, Clone, Default)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// Worst latency of the lines sent in each second of the run (µs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub max_by_second_us: Vec<u64>,
}

impl Latency {
    pub fn from(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |x| h.value_at_quantile(x) as f64 / 1e3;
        Latency {
            samples: h.len(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max() as f64 / 1e3,
            mean_us: h.mean() / 1e3,
            max_by_second_us: Vec::new(),
        }
    }
}

#[derive(Serialize, Clone, Default)]
pub struct Delivery {
    pub written: u64,
    pub clients: usize,
    /// Clients that got every line exactly once, in order.
    pub clients_complete: usize,
    pub delivered_total: u64,
    pub delivered_min: u64,
    pub delivered_max: u64,
    /// Lines missing at clients that were NOT closed by the server.
    pub lost_open_clients: u64,
    /// Lines missing at clients the server closed (expected after a close).
    pub lost_closed_clients: u64,
    pub gaps_total: u64,
    pub dups_total: u64,
    pub foreign_msgs: u64,
    /// SSE: line records whose id did not follow the previous one.
    pub id_breaks: u64,
    pub not_warmed_up: usize,
    pub incomplete_after_drain: usize,
    /// Server-side ends: "close 1013 client too slow" → count, with first time (s).
    pub ends: BTreeMap<String, usize>,
}

#[derive(Serialize, Clone, Default)]
pub struct Throughput {
    /// First write(2) to the last line received by any client.
    pub secs: f64,
    pub lines_written_per_s: f64,
    pub deliveries_per_s: f64,
    pub mb_received_per_s: f64,
}

#[derive(Serialize, Clone, Default)]
pub struct Cpu {
    pub wall_secs: f64,
    pub server_cpu_secs: Option<f64>,
    pub server_cores: Option<f64>,
    pub loadgen_cpu_secs: f64,
    pub loadgen_cores: f64,
    pub machine_busy_pct: f64,
    /// The load generator or the machine was the bottleneck.
    pub saturated: bool,
}

pub struct CpuMark {
    wall: Instant,
    server: Option<f64>,
    me: f64,
    machine: (u64, u64),
}

impl CpuMark {
    pub fn now(srv: &Server) -> CpuMark {
        CpuMark {
            wall: Instant::now(),
            server: srv.cpu_secs(),
            me: sys::self_cpu_secs(),
            machine: sys::machine_jiffies(),
        }
    }

    pub fn since(&self, srv: &Server) -> Cpu {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let server = srv.cpu_secs().zip(self.server).map(|(b, a)| b - a);
        let me = sys::self_cpu_secs() - self.me;
        let (b, t) = sys::machine_jiffies();
        let busy_pct = 100.0 * b.saturating_sub(self.machine.0) as f64
            / t.saturating_sub(self.machine.1).max(1) as f64;
        let loadgen_cores = me / wall;
        Cpu {
            wall_secs: wall,
            server_cpu_secs: server,
            server_cores: server.map(|s| s / wall),
            loadgen_cpu_secs: me,
            loadgen_cores,
            machine_busy_pct: busy_pct,
            saturated: busy_pct > 90.0 || loadgen_cores > 0.9 * sys::ncpus() as f64,
        }
    }
}

#[derive(Serialize, Clone, Default)]
pub struct Phase {
    pub name: String,
    pub params: serde_json::Value,
    pub server_addr: String,
    pub connect: ConnectReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    pub cpu: Cpu,
    pub memory: Samples,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck: Option<StuckReport>,
    /// The many-files phase's own figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::files::FilesReport>,
    /// The viewer-in-a-browser phase's own figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewer: Option<crate::viewer::ViewerReport>,
    /// Issue 14's figures: what the clients cost over their HTTP version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footprint: Option<Footprint>,
    /// Issue 15's figures: source -> NATS JetStream -> edge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<crate::nats::NatsReport>,
    pub server_log: LogSummary,
    pub server_shutdown: Option<Shutdown>,
    pub notes: Vec<String>,
    /// Violated expectations (lost or duplicated lines, ...): the phase failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// What one fleet of clients costs the server over its HTTP version.
#[derive(Serialize, Clone, Default)]
pub struct Footprint {
    /// `http/1.1`, `h2` or `h3`.
    pub http: &'static str,
    pub tls: bool,
    /// Transport connections the clients used: TCP (HTTP/1.1, HTTP/2) or QUIC (HTTP/3).
    pub client_connections: usize,
    pub streams_per_connection: f64,
    /// The shared connections' setup (HTTP/2, HTTP/3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conns: Option<ConnsReport>,
    /// `/healthz` once every client had its warm-up line: open connections and
    /// requests in progress per HTTP version, and clients. Counts the probe
    /// itself (see `healthz_probe`).
    pub healthz_connections: Option<serde_json::Value>,
    pub healthz_streams: Option<serde_json::Value>,
    pub healthz_clients: Option<u64>,
    /// `/healthz`'s `webtransport` and `rtc` objects (sessions, bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthz_webtransport: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthz_rtc: Option<serde_json::Value>,
    pub healthz_probe: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthz_error: Option<String>,
    /// Server VmRSS 1 s after start (before any client) and 1 s after every
    /// client had its warm-up line.
    pub rss_before_kib: Option<u64>,
    pub rss_connected_kib: Option<u64>,
    /// (connected - before) / connected clients.
    pub rss_per_client_kib: Option<f64>,
    /// CPU of the streaming window (first write to the last delivery) per delivery.
    pub server_us_per_delivery: Option<f64>,
    pub loadgen_us_per_delivery: f64,
}

/// A throwaway self-signed certificate for `localhost` and `127.0.0.1` in
/// its own temp dir: the server's `--tls-cert`/`--tls-key` arguments and the
/// certificate for the clients to trust.
fn self_signed() -> Result<
    (
        tempfile::TempDir,
        Vec<String>,
        rustls::pki_types::CertificateDer<'static>,
    ),
    String,
> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("rcgen: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("loadgen-tls-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key, ck.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
    let args = vec![
        "--tls-cert".to_string(),
        cert.display().to_string(),
        "--tls-key".to_string(),
        key.display().to_string(),
    ];
    Ok((dir, args, ck.cert.der().clone()))
}

/// `/healthz` (over the clients' own protocol where the server speaks TLS):
/// its `connections`, `streams` and `clients`.
async fn healthz_snapshot(srv: &Server, conns: Option<&Conns>, fp: &mut Footprint) {
    let doc = match conns {
        Some(c) => {
            fp.healthz_probe = "a stream on the first shared connection";
            c.healthz(Duration::from_secs(5)).await
        }
        None => {
            fp.healthz_probe = "an HTTP/1.1 connection of its own";
            let addr = srv.addr;
            tokio::task::spawn_blocking(move || {
                let (status, body) = sys::http_get(addr, "/healthz", Duration::from_secs(5))?;
                if status != 200 {
                    return Err(format!("/healthz: HTTP {status}"));
                }
                serde_json::from_str::<serde_json::Value>(&body).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        }
    };
    match doc {
        Ok(v) => {
            fp.healthz_connections = v.get("connections").cloned();
            fp.healthz_streams = v.get("streams").cloned();
            fp.healthz_clients = v.get("clients").and_then(|c| c.as_u64());
            fp.healthz_webtransport = v.get("webtransport").cloned();
            fp.healthz_rtc = v.get("rtc").cloned();
        }
        Err(e) => fp.healthz_error = Some(e),
    }
}

/// Why a footprint phase failed: any client that did not connect or warm
/// up, any line lost, repeated, out of order or foreign, any stream the
/// server ended, any shared connection that did not come up or ended.
pub fn footprint_failures(
    connect: &ConnectReport,
    d: &Delivery,
    conns: Option<&ConnsReport>,
) -> Vec<String> {
    let mut f = Vec::new();
    if connect.connected < connect.requested {
        f.push(format!(
            "only {} of {} clients connected: {:?}",
            connect.connected, connect.requested, connect.failures
        ));
    }
    if let Some(c) = conns {
        if c.connected < c.requested {
            f.push(format!(
                "only {} of {} {} connections came up: {:?}",
                c.connected, c.requested, c.protocol, c.failures
            ));
        }
        if !c.ended_early.is_empty() {
            f.push(format!(
                "{} connection(s) ended during the phase: {:?}",
                c.ended_early.len(),
                c.ended_early.iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    if d.not_warmed_up > 0 {
        f.push(format!(
            "{} clients never got the warm-up line",
            d.not_warmed_up
        ));
    }
    if d.clients_complete < d.clients {
        f.push(format!(
            "{} of {} clients did not get every line exactly once in order: lost {} + {} (closed clients), \
             gaps {}, dups {}, seq breaks (SSE id / JSON seq) {}",
            d.clients - d.clients_complete,
            d.clients,
            d.lost_open_clients,
            d.lost_closed_clients,
            d.gaps_total,
            d.dups_total,
            d.id_breaks
        ));
    }
    if d.foreign_msgs > 0 {
        f.push(format!("{} foreign messages", d.foreign_msgs));
    }
    if !d.ends.is_empty() {
        f.push(format!("streams ended during the phase: {:?}", d.ends));
    }
    f
}

#[derive(Serialize, Clone, Default)]
pub struct IdleReport {
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub rss_per_client_kib: Option<f64>,
    pub server_threads: Option<u64>,
    pub idle_secs: f64,
    pub idle_server_cpu_secs: Option<f64>,
    pub idle_loadgen_cpu_secs: f64,
    pub closed_while_idle: usize,
    /// A few lines sent after the idle period: fan-out latency to every client.
    pub fanout_latency: Latency,
    pub fanout_delivery: Delivery,
}

pub fn delivery(fleet: &Fleet, written: u64, not_warm: usize, incomplete: usize) -> Delivery {
    let mut d = Delivery {
        written,
        clients: fleet.clients.len(),
        not_warmed_up: not_warm,
        incomplete_after_drain: incomplete,
        delivered_min: u64::MAX,
        ..Default::default()
    };
    for c in &fleet.clients {
        let got = c.delivered.load(Relaxed);
        let gaps = c.gaps.load(Relaxed);
        let dups = c.dups.load(Relaxed);
        d.delivered_total += got;
        d.delivered_min = d.delivered_min.min(got);
        d.delivered_max = d.delivered_max.max(got);
        d.gaps_total += gaps;
        d.dups_total += dups;
        d.foreign_msgs += c.foreign.load(Relaxed);
        d.id_breaks += c.id_breaks.load(Relaxed);
        let closed = c.end.lock().unwrap().clone();
        if got == written && dups == 0 && gaps == 0 && c.id_breaks.load(Relaxed) == 0 {
            d.clients_complete += 1;
        }
        let missing = written.saturating_sub(got);
        match closed {
            Some((e, _)) => {
                *d.ends.entry(e.label()).or_default() += 1;
                d.lost_closed_clients += missing;
            }
            None => d.lost_open_clients += missing,
        }
    }
    if d.clients == 0 {
        d.delivered_min = 0;
    }
    d
}

pub fn throughput(fleet: &Fleet, w: &WriteReport, first_write_ns: u64) -> Throughput {
    let last_rx = fleet
        .clients
        .iter()
        .map(|c| c.last_rx_ns.load(Relaxed))
        .max()
        .unwrap_or(0);
    let secs = (last_rx.saturating_sub(first_write_ns) as f64 / 1e9).max(1e-9);
    let deliveries: u64 = fleet
        .clients
        .iter()
        .map(|c| c.delivered.load(Relaxed))
        .sum();
    let bytes: u64 = fleet.clients.iter().map(|c| c.bytes.load(Relaxed)).sum();
    Throughput {
        secs,
        lines_written_per_s: w.lines_per_s,
        deliveries_per_s: deliveries as f64 / secs,
        mb_received_per_s: bytes as f64 / secs / 1e6,
    }
}

/// One streaming phase on a fresh (or the attached) server.
pub async fn stream(env: &Env, spec: &StreamSpec) -> Result<Phase, String> {
    // HTTP/3 is always TLS: the server gets a throwaway certificate (its
    // temp dir lives until the end of the phase) and `--http3`.
    let (_tls_dir, cert, mut srv) = match spec.transport {
        Transport::SseH3 { .. } => {
            let (dir, mut args, cert) = self_signed()?;
            args.push("--http3".into());
            args.extend(spec.server_args.iter().cloned());
            (Some(dir), Some(cert), env.source.get_with(&args)?)
        }
        _ => (None, None, env.source.get_with(&spec.server_args)?),
    };
    srv.mark_log();
    let mut notes = Vec::new();
    let mut footprint = spec.footprint.then(|| Footprint {
        http: spec.transport.http(),
        // QUIC is TLS 1.3 and WebRTC DTLS whatever the TCP side speaks.
        tls: srv.tls || matches!(spec.transport, Transport::Wt | Transport::Rtc),
        ..Default::default()
    });
    if let Some(fp) = footprint.as_mut() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fp.rss_before_kib = srv.rss_kib();
    }
    let conns = match spec.transport {
        Transport::SseH2 { conns } => Some(Arc::new(
            Conns::connect(Proto::H2, srv.addr, conns, None).await,
        )),
        Transport::SseH3 { conns } => Some(Arc::new(
            Conns::connect(Proto::H3, srv.addr, conns, cert).await,
        )),
        Transport::Ws | Transport::Sse | Transport::Wt | Transport::Rtc => None,
    };
    if let Some(c) = &conns {
        let per = spec.clients.div_ceil(c.len().max(1));
        if per > 128 {
            notes.push(format!(
                "{per} streams per connection: over the server's 128 concurrent streams, the rest wait"
            ));
        }
    }
    let dial = match &conns {
        Some(c) => Dial::Mux(Arc::clone(c)),
        None if spec.transport == Transport::Wt => {
            Dial::Wt(Arc::new(crate::transports::WtDial::fetch(srv.addr).await?))
        }
        None => Dial::Tcp(srv.addr),
    };
    let rec = Recorder::new(env.t0);
    let cancel = CancellationToken::new();
    let cfg = ClientCfg {
        transport: spec.transport,
        read_buffer: 128 * 1024,
        record_latency: true,
        json: env.json_frames || spec.json,
    };
    let mut stuck = Vec::new();
    for _ in 0..spec.stuck {
        match clients::connect_stuck(srv.addr, env.stuck_rcvbuf).await {
            Ok(s) => stuck.push(s),
            Err(e) => notes.push(format!("stuck client failed to connect: {e}")),
        }
    }
    let fleet =
        clients::connect_fleet(&dial, spec.clients, env.concurrency, cfg, &rec, &cancel).await;
    let not_warm = fleet.warm_up(&srv.file, Duration::from_secs(5)).await;
    if not_warm > 0 {
        notes.push(format!(
            "{not_warm} clients never received the warm-up line within 5 s"
        ));
    }
    if let Some(fp) = footprint.as_mut() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fp.rss_connected_kib = srv.rss_kib();
        let n = fleet.connect.connected;
        fp.rss_per_client_kib = fp
            .rss_before_kib
            .zip(fp.rss_connected_kib)
            .filter(|_| n > 0)
            .map(|(a, b)| (b as f64 - a as f64) / n as f64);
        fp.client_connections = conns.as_ref().map_or(n, |c| c.len());
        fp.streams_per_connection = n as f64 / fp.client_connections.max(1) as f64;
        healthz_snapshot(&srv, conns.as_deref(), fp).await;
    }
    // The /healthz poller speaks plain HTTP/1.1, a connection every 500 ms:
    // not in the footprint phases, which compare HTTP versions (and took
    // their /healthz above).
    let sampler = Sampler::start(srv.pid, srv.addr, !srv.tls && !spec.footprint);
    let mark = CpuMark::now(&srv);
    let first_write_ns = rec.now_ns();
    rec.set_base(first_write_ns);
    let w = write(&spec.writer, &srv.file, env.t0, spec.line_bytes, &[&fleet]).await?;
    let incomplete = fleet
        .drain(w.lines, env.drain_idle, Duration::from_secs(300))
        .await;
    if incomplete > 0 {
        notes.push(format!(
            "{incomplete} open clients had not received the last line {:.0} s after progress stopped",
            env.drain_idle.as_secs_f64()
        ));
    }
    let cpu = mark.since(&srv);
    let tp = throughput(&fleet, &w, first_write_ns);
    let memory = sampler.finish();
    let mut d = delivery(&fleet, w.lines, not_warm, incomplete);
    let connect = fleet.connect.clone();
    // Clients flush their batched latency samples when they stop.
    fleet.shutdown(&cancel).await;
    drop(dial);
    let conns_report = match conns {
        Some(c) => Some(c.close().await),
        None => None,
    };
    let mut failed = Vec::new();
    if let Some(fp) = footprint.as_mut() {
        let deliveries = d.delivered_total.max(1) as f64;
        fp.server_us_per_delivery = cpu.server_cpu_secs.map(|s| s * 1e6 / deliveries);
        fp.loadgen_us_per_delivery = cpu.loadgen_cpu_secs * 1e6 / deliveries;
        failed = footprint_failures(&connect, &d, conns_report.as_ref());
        fp.conns = conns_report;
    }
    let mut lat = Latency::from(&rec.merged());
    lat.max_by_second_us = rec.per_second_max_us();
    let mut stuck_rep = None;
    for s in stuck {
        let held = s.connected_at.elapsed().as_secs_f64();
        let mut r = s.drain(env.stuck_rcvbuf).await;
        r.note = format!("{} (held {held:.1} s)", r.note);
        if let Some(c) = &r.close {
            *d.ends
                .entry(format!("stuck client: close {c}"))
                .or_default() += 1;
        }
        stuck_rep = Some(r);
    }
    if cpu.saturated {
        notes.push(format!(
            "SATURATED: load generator used {:.2} cores, machine {:.0}% busy; figures may be bounded by the generator \
             (or by other processes on the machine)",
            cpu.loadgen_cores, cpu.machine_busy_pct
        ));
    }
    if spec.clients < sys::ncpus() && cpu.loadgen_cores > 0.85 * spec.clients as f64 {
        notes.push(format!(
            "loadgen used {:.2} cores for {} reading client(s): one client is one task on one core, \
             so its reader may be the bottleneck",
            cpu.loadgen_cores, spec.clients
        ));
    }
    if matches!(spec.writer, Writer::Flood { window_bytes, .. } if window_bytes > 0) {
        notes.push(
            "flood latency is mostly queueing: about --window-bytes / delivery rate; use the paced scenarios for latency"
                .into(),
        );
    }
    let healthy = fleet_clients_open_at_start(&memory, spec.clients + spec.stuck);

    if let Some(t) = healthy {
        notes.push(format!(
            "/healthz client count dropped below {} at {t:.1} s after the first write (server closed someone)",
            spec.clients + spec.stuck
        ));
    }
    let (server_log, server_addr, shutdown) = stop_server(srv, &mut notes).await;
    Ok(Phase {
        name: spec.name.clone(),
        params: serde_json::json!({
            "transport": spec.transport.name(), "clients": spec.clients, "stuck_clients": spec.stuck,
            "line_bytes": spec.line_bytes,
            "json_frames": matches!(spec.transport, Transport::Wt | Transport::Rtc)
                || ((env.json_frames || spec.json) && spec.transport == Transport::Ws),
            "server_args": spec.server_args,
            "writer": format!("{:?}", spec.writer), "http": spec.transport.http(),
            "shared_connections": match spec.transport {
                Transport::SseH2 { conns } | Transport::SseH3 { conns } => Some(conns),
                Transport::Ws | Transport::Sse | Transport::Wt | Transport::Rtc => None,
            },
        }),
        server_addr,
        connect,
        write: Some(w),
        latency: Some(lat),
        delivery: Some(d),
        throughput: Some(tp),
        cpu,
        memory,
        idle: None,
        stuck: stuck_rep,
        server_log,
        server_shutdown: shutdown,
        notes,
        files: None,
        viewer: None,
        footprint,
        nats: None,
        failed,
    })
}

/// Appends lines of `line_bytes` to `file` as `writer` says, on a blocking
/// thread: paced, or a flood at most `window_bytes` ahead of the slowest open
/// client of `fleets` (in chunks of at most 1 MiB).
pub async fn write(
    writer: &Writer,
    file: &Path,
    t0: Instant,
    line_bytes: usize,
    fleets: &[&Fleet],
) -> Result<WriteReport, String> {
    let (file, lb) = (file.to_path_buf(), line_bytes);
    match writer.clone() {
        Writer::Paced { rate, secs } => {
            tokio::task::spawn_blocking(move || {
                writer::paced(&file, t0, rate, Duration::from_secs_f64(secs), lb)
            })
            .await
        }
        Writer::Flood {
            lines,
            window_bytes,
        } => {
            let stats: Vec<Arc<ClientStat>> = fleets
                .iter()
                .flat_map(|f| f.clients.iter())
                .cloned()
                .collect();
            let min_seq = move || {
                stats
                    .iter()
                    .filter(|c| c.open.load(Relaxed))
                    .map(|c| c.last_seq.load(Relaxed))
                    .min()
            };
            let window = window_bytes / lb as u64;
            let chunk = (1usize << 20).min((window_bytes as usize / 4).max(lb));
            let chunk = if window_bytes == 0 { 1 << 20 } else { chunk };
            tokio::task::spawn_blocking(move || {
                let spec = writer::Flood {
                    total: lines,
                    line_bytes: lb,
                    chunk_bytes: chunk,
                    window_lines: window,
                    hard: Duration::from_secs(300),
                };
                writer::flood(&file, t0, spec, min_seq)
            })
            .await
        }
    }
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("writer: {e}"))
}

/// Stops the phase's server (SIGTERM), noting a slow or unclean exit;
/// returns its log summary, its address and how it shut down.
pub async fn stop_server(
    srv: Server,
    notes: &mut Vec<String>,
) -> (LogSummary, String, Option<Shutdown>) {
    let server_log = srv.log_summary();
    let server_addr = srv.addr.to_string();
    let shutdown = tokio::task::spawn_blocking(move || srv.stop())
        .await
        .ok()
        .flatten();
    check_shutdown(&shutdown, notes);
    (server_log, server_addr, shutdown)
}

fn check_shutdown(s: &Option<Shutdown>, notes: &mut Vec<String>) {
    if let Some(s) = s {
        match s.secs {
            Some(t) if t <= 2.0 && s.status.contains("exit status: 0") => {}
            Some(t) => notes.push(format!("server shutdown took {t:.2} s, {}", s.status)),
            None => notes.push(format!("server shutdown: {}", s.status)),
        }
    }
}

/// Idle cost: RSS per connected idle client, CPU while idle, then a short
/// fan-out check that every idle client still receives lines.
pub async fn idle(env: &Env, spec: &IdleSpec) -> Result<Phase, String> {
    let mut srv = env.source.get()?;
    srv.mark_log();
    let mut notes = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = srv.rss_kib();
    let sampler = Sampler::start(srv.pid, srv.addr, true);
    let rec = Recorder::new(env.t0);
    let cancel = CancellationToken::new();
    let cfg = ClientCfg {
        transport: Transport::Ws,
        read_buffer: 4096,
        record_latency: true,
        json: env.json_frames,
    };
    let mark_all = CpuMark::now(&srv);
    let fleet = clients::connect_fleet(
        &Dial::Tcp(srv.addr),
        spec.clients,
        env.concurrency,
        cfg,
        &rec,
        &cancel,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = srv.rss_kib();
    let n = fleet.connect.connected;
    let mut rep = IdleReport {
        rss_before_kib: rss0,
        rss_after_kib: rss1,
        rss_per_client_kib: rss0
            .zip(rss1)
            .filter(|_| n > 0)
            .map(|(a, b)| (b as f64 - a as f64) / n as f64),
        server_threads: srv.pid.and_then(sys::threads),
        idle_secs: spec.idle_secs,
        ..Default::default()
    };
    let mark = CpuMark::now(&srv);
    let idle_end = Instant::now() + Duration::from_secs_f64(spec.idle_secs);
    while Instant::now() < idle_end {
        tokio::time::sleep(Duration::from_millis(250).min(idle_end - Instant::now())).await;
    }
    let idle_cpu = mark.since(&srv);
    rep.idle_server_cpu_secs = idle_cpu.server_cpu_secs;
    rep.idle_loadgen_cpu_secs = idle_cpu.loadgen_cpu_secs;
    rep.closed_while_idle = fleet
        .clients
        .iter()
        .filter(|c| !c.open.load(Relaxed))
        .count();
    // Fan-out check: 5 lines, 200 ms apart, to every idle client.
    let not_warm = fleet.warm_up(&srv.file, Duration::from_secs(10)).await;
    let (file, t0) = (srv.file.clone(), env.t0);
    let w = tokio::task::spawn_blocking(move || {
        writer::paced(&file, t0, 5.0, Duration::from_secs(1), 100)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("writer: {e}"))?;
    let incomplete = fleet
        .drain(w.lines, env.drain_idle, Duration::from_secs(60))
        .await;
    rep.fanout_delivery = delivery(&fleet, w.lines, not_warm, incomplete);
    let cpu = mark_all.since(&srv);
    let memory = sampler.finish();
    let connect = fleet.connect.clone();
    fleet.shutdown(&cancel).await;
    rep.fanout_latency = Latency::from(&rec.merged());
    if connect.connected < connect.requested {
        notes.push(format!(
            "only {} of {} clients connected: {:?}",
            connect.connected, connect.requested, connect.failures
        ));
    }
    if rep.closed_while_idle > 0 {
        notes.push(format!(
            "{} clients were closed while idle",
            rep.closed_while_idle
        ));
    }
    if idle_cpu.saturated {
        notes.push("SATURATED during idle period (something else is using the machine?)".into());
    }
    let (server_log, server_addr, shutdown) = stop_server(srv, &mut notes).await;
    Ok(Phase {
        name: spec.name.clone(),
        params: serde_json::json!({"clients": spec.clients, "idle_secs": spec.idle_secs}),
        server_addr,
        connect,
        write: None,
        latency: None,
        delivery: None,
        throughput: None,
        cpu,
        memory,
        idle: Some(rep),
        stuck: None,
        server_log,
        server_shutdown: shutdown,
        notes,
        files: None,
        viewer: None,
        footprint: None,
        nats: None,
        failed: Vec::new(),
    })
}

/// When /healthz first reported fewer clients than were connected.
fn fleet_clients_open_at_start(m: &Samples, n: usize) -> Option<f64> {
    m.healthz_clients
        .iter()
        .find(|(_, c)| (*c as usize) < n)
        .map(|(t, _)| *t)
}
