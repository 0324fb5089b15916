//! logtail-ws load generator: a black-box client of the release binary.
//!
//! ```text
//! cargo run --release --example loadgen -- --scenario all
//! cargo run --release --example loadgen -- --scenario latency-100x1000 --json out.json
//! cargo run --release --example loadgen -- --scenario idle-5000 --idle-secs 10
//! cargo run --release --example loadgen -- --scenario sse-latency-100x1000,sse-throughput-100
//! cargo run --release --example loadgen -- --server-addr 127.0.0.1:8080 --file app.log --scenario throughput-1
//! cargo run --release --example loadgen -- --scenario files-10000 --duration 20 --idle-secs 10
//! cargo run --release --example loadgen -- --scenario viewer-5000x10
//! cargo run --release --example loadgen -- --scenario viewer-5000x60 --viewer-fragment q=ERROR
//! cargo run --release --example loadgen -- --scenario protocols --json h2bench.json
//! cargo run --release --example loadgen -- --scenario h1-sse-1000,h2-sse-1000x10
//! cargo run --release --example loadgen -- --scenario nats --json natsbench.json
//! cargo run --release --example loadgen -- --scenario transports --json wtbench.json
//! ```
//!
//! By default it builds (`cargo build --release --bin logtail-ws`) and starts a
//! fresh server per phase (`--port 0 --file <tempfile>`), reading the address
//! from its `listening on http://ADDR` log line. Clients read `/ws?backlog=0`
//! (WebSocket) or, in the `sse-*` phases, `/events?backlog=0` (SSE), with the
//! same delivery checks. `files-10000` (issue 11) instead follows 10 000 files
//! through one glob with clients on all files and on single files (see
//! `files.rs`). `viewer-*` (issue 13) streams into the built-in page in
//! headless Chromium and reads it over CDP (see `viewer.rs`); they are not
//! part of `all`. `h1-sse-1000`, `h2-sse-1000x10` and `h3-sse-1000x10`
//! (issue 14; `protocols` runs the three, not part of `all`) are one SSE
//! workload, 1 000 clients, over 1 000 HTTP/1.1 connections, 10 HTTP/2
//! connections (h2c) or 10 HTTP/3 connections (the server then with a
//! self-signed certificate and `--http3`; see `mux.rs`), with the server's
//! RSS per client and connection counts; they fail on any line lost,
//! repeated or out of order. `nats-latency-100x1000` and `nats-throughput`
//! (issue 15; `nats` runs both, not part of `all`: they need nats-server)
//! start their own `nats-server -js`, a source (`--publish nats://…`) and an
//! edge (`--from nats://…`), and measure the broker path against the direct
//! one: added delay, lines/s through one edge, the source's publish rate,
//! CPU and RSS of all three processes (see `nats.rs`). `ws-json-100`,
//! `wt-100` and `rtc-100` (issue 16; `transports` runs the three, not part
//! of `all`) stream the same JSON frames to 100 WebSocket
//! (`/ws?format=json`), WebTransport (`/wt`, a QUIC connection each) or
//! WebRTC (`POST /rtc`, a str0m peer each) clients of one server started
//! with `--http3 --rtc-port 0`, and fail on any line lost, repeated or out
//! of order (see `transports.rs`). Every loop is bounded
//! in count and time; only loopback addresses are contacted.

mod browser;
mod clients;
mod files;
mod mux;
mod nats;
mod scenarios;
mod server;
mod sse;
mod sys;
mod trace;
mod transports;
mod viewer;
mod writer;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use clients::Transport;
use scenarios::{Env, IdleSpec, Phase, StreamSpec, Writer};
use server::Source;

const SCENARIOS: &[&str] = &[
    "latency-100x1000",
    "latency-1000x50",
    "throughput-1",
    "throughput-100",
    "idle-5000",
    "idle-10000",
    "stuck-1-of-20",
    "sse-latency-100x1000",
    "sse-throughput-100",
    "files-10000",
];

/// Run by name only (they need Chromium): not part of `all`.
const VIEWER_SCENARIOS: &[&str] = &["viewer-5000x60", "viewer-5000x10"];

/// Issue 14, one SSE workload over each HTTP version: run by name, or all
/// three as `protocols`; not part of `all` (a comparison, about 30 s each).
const PROTOCOL_SCENARIOS: &[&str] = &["h1-sse-1000", "h2-sse-1000x10", "h3-sse-1000x10"];

/// Issue 16, the same JSON frames to 100 WebSocket, WebTransport or WebRTC
/// clients: run by name, or all three as `transports`; not part of `all`.
const TRANSPORT_SCENARIOS: &[&str] = &["ws-json-100", "wt-100", "rtc-100"];

/// The transport phases' clients, writer lines/s and seconds.
const TRANSPORT_CLIENTS: usize = 100;
const TRANSPORT_RATE: f64 = 100.0;
const TRANSPORT_SECS: f64 = 20.0;

/// Issue 15, source -> NATS JetStream -> edge: run by name, or both as
/// `nats`; not part of `all` (they need nats-server).
const NATS_SCENARIOS: &[&str] = &["nats-latency-100x1000", "nats-throughput"];

/// The protocol phases' writer: lines/s and seconds. 50 lines/s to 1 000
/// clients, as `latency-1000x50`: about what 1 000 HTTP/1.1 SSE clients
/// take on the 2-vCPU machine without saturating it (at 100 lines/s server
/// and load generator fill both cores, lines batch, and the HTTP versions'
/// costs blur; see BENCHMARKS.md).
const PROTOCOL_RATE: f64 = 50.0;
const PROTOCOL_SECS: f64 = 20.0;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator / benchmark for logtail-ws (black box, loopback only)",
    after_help = "Scenarios: latency-100x1000, latency-1000x50, throughput-1, throughput-100, \
                  idle-5000, idle-10000, stuck-1-of-20, sse-latency-100x1000, sse-throughput-100, \
                  files-10000, all (comma-separated lists work too). sse-* phases read /events instead of /ws.\n\
                  files-10000 (issue 11, about 45 s, part of `all`): 10 000 empty files in 100 directories \
                  followed through ONE glob (--file '<tmp>/*/*.log', names d00/f0000.log ...), 10 JSON clients \
                  on all files (--clients) and 10 on one file each (--one-file-clients), 10 000 lines/s \
                  (--rate) to random files for 20 s (--duration), then 10 s quiet (--idle-secs); every line \
                  must arrive exactly once at every client that selected its file (the phase FAILS \
                  otherwise); reports latency, start-up time, server threads, fds (inotify), RSS, CPU under \
                  load and idle. Add --server-arg=--poll for the poll watcher.\n\
                  viewer-5000x60 / viewer-5000x10 (issue 13, not part of `all`, need Chromium on PATH): \
                  the built-in page in headless Chromium (1280x800) while 5 000 mixed lines/s (--rate) are \
                  written for 60 or 10 s (--duration); checks every line arrives exactly once \
                  (logtail.state(), lines()), reports the ring, DOM rows, frame and render times, long tasks, \
                  JS heap, renderer and server CPU and the delivery lag. --viewer-fragment q=ERROR opens \
                  the page filtered.\n\
                  h1-sse-1000 / h2-sse-1000x10 / h3-sse-1000x10 (issue 14, not part of `all`; `protocols` runs \
                  the three): one SSE workload (/events?backlog=0, 1 000 clients (--clients), 50 lines/s \
                  (--rate) for 20 s (--duration)) over 1 000 HTTP/1.1 connections, over 10 HTTP/2 connections \
                  (h2c, prior knowledge; --conns) or over 10 HTTP/3 connections (the server spawned with a \
                  self-signed rcgen certificate, --tls-cert/--tls-key and --http3). Reports the server's RSS \
                  per client (after connecting minus before, over clients), its /healthz connection and stream \
                  counts per version, CPU over the streaming window (also per delivery) and delivery \
                  p50/p99/p99.9; the phase FAILS unless every client connected and got every line exactly \
                  once, in order.\n\
                  nats-latency-100x1000 / nats-throughput (issue 15, not part of `all`; `nats` runs both; need \
                  nats-server, --nats-server PATH): each starts its own `nats-server -js` (free loopback port, \
                  store in a temp dir, ended by its PID), a source (--file <tmp> --publish nats://... --node n1, \
                  stream LOGTAIL) and an edge (--from nats://...); --server-arg goes to source and edge. \
                  nats-latency-100x1000: 100 WebSocket clients (--clients) on the edge AND 100 on the source \
                  directly, at once, 1 000 lines/s (--rate) for 10 s (--duration): p50/p99/p99.9 of each path \
                  and edge minus direct (the added delay; also per line, first edge client minus first direct \
                  client). nats-throughput: a flood of 200 000 lines (--lines, --window-bytes) to 4 clients \
                  (--clients) on the edge only: lines/s through the edge, the source's publish rate (/healthz \
                  acked_seq, polled every 100 ms). Both report CPU and RSS of source, edge and nats-server and \
                  FAIL unless the stream holds exactly the file's lines (warm-up included) numbered 1..=N, the \
                  edge's /healthz seq and the source's seq and acked_seq are N, the publisher lost nothing and \
                  every client on both paths got every line exactly once, in order.\n\
                  ws-json-100 / wt-100 / rtc-100 (issue 16, not part of `all`; `transports` runs the three): the \
                  same JSON frames, 100 lines/s (--rate) for 20 s (--duration), to 100 clients (--clients) of one \
                  kind: WebSocket (/ws?format=json&backlog=0, a TCP connection each), WebTransport (/wt?backlog=0, \
                  a QUIC connection each, trusting GET /wt-cert-hash) or WebRTC (POST /rtc?backlog=0, a str0m peer \
                  on its own UDP socket each, the `logs` data channel); the server is spawned with --http3 \
                  --rtc-port 0 in all three. Reports delivery p50/p99/p99.9 (write to receipt), server CPU \
                  (cores, us per delivery), RSS per session and /healthz's session counts; the phase FAILS unless \
                  every client connected and got every line exactly once, in order, with consecutive server seqs.\n\
                  Overrides (--clients, --rate, ...) apply to every selected scenario."
)]
struct Opts {
    /// Scenario name, comma-separated list, or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Server binary to spawn [default: <crate>/target/release/logtail-ws, built first].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Do not run `cargo build --release --bin logtail-ws` before spawning.
    #[arg(long)]
    no_build: bool,
    /// Extra argument for the spawned server (repeatable), e.g. --server-arg=--client-queue=67108864.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Use a running server instead of spawning one (loopback only; needs --file).
    #[arg(long, requires = "file")]
    server_addr: Option<SocketAddr>,
    /// The file that server follows (lines are appended to it).
    #[arg(long)]
    file: Option<PathBuf>,
    /// PID of the running server, for RSS/CPU [default: found from the listening socket].
    #[arg(long)]
    server_pid: Option<u32>,
    /// Number of clients (for stuck-1-of-20: total including the stuck one).
    #[arg(long)]
    clients: Option<usize>,
    /// Paced scenarios: lines per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Paced scenarios: seconds of writing.
    #[arg(long)]
    duration: Option<f64>,
    /// Throughput scenarios: lines to write.
    #[arg(long)]
    lines: Option<u64>,
    /// Bytes per line including the newline.
    #[arg(long)]
    line_bytes: Option<usize>,
    /// Throughput: max bytes written ahead of the slowest client (0 = unbounded burst).
    #[arg(long, default_value_t = 8 << 20)]
    window_bytes: u64,
    /// Idle scenarios: seconds to measure server CPU while idle.
    #[arg(long)]
    idle_secs: Option<f64>,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// SO_RCVBUF of the stuck client, bytes.
    #[arg(long, default_value_t = 4096)]
    stuck_rcvbuf: usize,
    /// Give up waiting for deliveries after this many seconds without progress.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Short runs (3 s streams, 5 s idle, 1/10 of the lines) to check the tool.
    #[arg(long)]
    quick: bool,
    /// Write the full results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// WebSocket clients ask for JSON frames (`/ws?format=json`, as the built-in viewer does).
    #[arg(long)]
    json_frames: bool,
    /// files-10000: number of files followed.
    #[arg(long, default_value_t = 10_000)]
    many_files: usize,
    /// files-10000: directories the files are spread over.
    #[arg(long, default_value_t = 100)]
    many_dirs: usize,
    /// files-10000: clients on one file each (--clients: clients on all files).
    #[arg(long, default_value_t = 10)]
    one_file_clients: usize,
    /// files-10000: files the writer keeps open (direct-mapped cache); 0 = open/append/close per line.
    #[arg(long, default_value_t = 0)]
    writer_fds: usize,
    /// viewer-*: the page's URL fragment, without `#` (e.g. `q=ERROR`).
    #[arg(long, default_value = "")]
    viewer_fragment: String,
    /// viewer-*: also record a JS CPU profile of the page during the writing (CDP
    /// Profiler, 1 ms sampling; costs a little) and print its top functions.
    #[arg(long)]
    viewer_profile: bool,
    /// viewer-*: also record a Chromium trace (devtools.timeline) of 5 s in the middle of
    /// the writing and print what the page's main thread spent its time on (costs a little).
    #[arg(long)]
    viewer_trace: bool,
    /// viewer-*: force a GC (CDP HeapProfiler.collectGarbage) every SECS seconds of the
    /// writing and record the heap after it (costs a pause each time) [default: never].
    #[arg(long, value_name = "SECS")]
    viewer_gc_every: Option<f64>,
    /// viewer-*: the Chromium binary [default: `chromium` or `chromium-browser` on PATH].
    #[arg(long)]
    chromium: Option<PathBuf>,
    /// h2-sse-* / h3-sse-*: shared connections the clients' streams are spread over
    /// [default: 10; the server allows 128 streams per connection].
    #[arg(long)]
    conns: Option<usize>,
    /// nats-*: the nats-server binary [default: `nats-server` on PATH, else /usr/sbin/nats-server].
    #[arg(long)]
    nats_server: Option<PathBuf>,
}

enum Plan {
    Stream(StreamSpec),
    Idle(IdleSpec),
    Files(files::FilesSpec),
    Viewer(viewer::ViewerSpec),
    Nats(nats::NatsSpec),
}

fn plans(o: &Opts, name: &str) -> Vec<Plan> {
    let secs = |d: f64| o.duration.unwrap_or(if o.quick { 3.0 } else { d });
    let lines = |n: u64| o.lines.unwrap_or(if o.quick { n / 10 } else { n });
    let idle = o.idle_secs.unwrap_or(if o.quick { 5.0 } else { 60.0 });
    let lb = |d: usize| o.line_bytes.unwrap_or(d).max(32);
    let paced = |transport, clients: usize, rate: f64, d: f64| {
        Plan::Stream(StreamSpec {
            name: name.into(),
            transport,
            clients: o.clients.unwrap_or(clients),
            stuck: 0,
            line_bytes: lb(100),
            writer: Writer::Paced {
                rate: o.rate.unwrap_or(rate),
                secs: secs(d),
            },
            footprint: false,
            json: false,
            server_args: Vec::new(),
        })
    };
    let protocol = |transport| {
        Plan::Stream(StreamSpec {
            name: name.into(),
            transport,
            clients: o.clients.unwrap_or(1000),
            stuck: 0,
            line_bytes: lb(100),
            writer: Writer::Paced {
                rate: o.rate.unwrap_or(PROTOCOL_RATE),
                secs: secs(PROTOCOL_SECS),
            },
            footprint: true,
            json: false,
            server_args: Vec::new(),
        })
    };
    // Issue 16: one server, the same flags in the three phases (QUIC for /wt,
    // the WebRTC socket on a free UDP port), only the clients differ.
    let transport = |transport| {
        Plan::Stream(StreamSpec {
            name: name.into(),
            transport,
            clients: o.clients.unwrap_or(TRANSPORT_CLIENTS),
            stuck: 0,
            line_bytes: lb(100),
            writer: Writer::Paced {
                rate: o.rate.unwrap_or(TRANSPORT_RATE),
                secs: secs(TRANSPORT_SECS),
            },
            footprint: true,
            json: true,
            server_args: ["--http3", "--rtc-port", "0"].map(String::from).to_vec(),
        })
    };
    let conns = o.conns.unwrap_or(10).max(1);
    let flood = |transport, clients: usize, n: u64| {
        Plan::Stream(StreamSpec {
            name: name.into(),
            transport,
            clients: o.clients.unwrap_or(clients),
            stuck: 0,
            line_bytes: lb(100),
            writer: Writer::Flood {
                lines: lines(n),
                window_bytes: o.window_bytes,
            },
            footprint: false,
            json: false,
            server_args: Vec::new(),
        })
    };
    let idle_plan = |clients: usize| {
        Plan::Idle(IdleSpec {
            name: name.into(),
            clients: o.clients.unwrap_or(clients),
            idle_secs: idle,
        })
    };
    match name {
        "latency-100x1000" => vec![paced(Transport::Ws, 100, 1000.0, 10.0)],
        "latency-1000x50" => vec![paced(Transport::Ws, 1000, 50.0, 10.0)],
        "throughput-1" => vec![flood(Transport::Ws, 1, 2_000_000)],
        "throughput-100" => vec![flood(Transport::Ws, 100, 200_000)],
        "sse-latency-100x1000" => vec![paced(Transport::Sse, 100, 1000.0, 10.0)],
        "sse-throughput-100" => vec![flood(Transport::Sse, 100, 200_000)],
        "h1-sse-1000" => vec![protocol(Transport::Sse)],
        "h2-sse-1000x10" => vec![protocol(Transport::SseH2 { conns })],
        "h3-sse-1000x10" => vec![protocol(Transport::SseH3 { conns })],
        "ws-json-100" => vec![transport(Transport::Ws)],
        "wt-100" => vec![transport(Transport::Wt)],
        "rtc-100" => vec![transport(Transport::Rtc)],
        "idle-5000" => vec![idle_plan(5000)],
        "idle-10000" => vec![idle_plan(10_000)],
        "files-10000" => vec![Plan::Files(files::FilesSpec {
            name: name.into(),
            files: o.many_files.max(1),
            dirs: o.many_dirs.max(1),
            all_clients: o.clients.unwrap_or(10),
            one_clients: o.one_file_clients,
            rate: o.rate.unwrap_or(10_000.0),
            secs: secs(20.0),
            idle_secs: o.idle_secs.unwrap_or(if o.quick { 3.0 } else { 10.0 }),
            line_bytes: lb(100),
            writer_fds: o.writer_fds,
        })],
        "viewer-5000x60" | "viewer-5000x10" => {
            let frag = o.viewer_fragment.trim_start_matches('#').to_string();
            vec![Plan::Viewer(viewer::ViewerSpec {
                name: if frag.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}#{frag}")
                },
                rate: o.rate.unwrap_or(5000.0),
                secs: o
                    .duration
                    .unwrap_or(if name == "viewer-5000x60" { 60.0 } else { 10.0 }),
                fragment: frag,
                profile: o.viewer_profile,
                trace: o.viewer_trace,
                gc_every: o.viewer_gc_every,
                chromium: o.chromium.clone(),
                width: 1280,
                height: 800,
            })]
        }
        "nats-latency-100x1000" => {
            let n = o.clients.unwrap_or(100);
            vec![Plan::Nats(nats::NatsSpec {
                name: name.into(),
                edge_clients: n,
                direct_clients: n,
                line_bytes: lb(100),
                writer: Writer::Paced {
                    rate: o.rate.unwrap_or(1000.0),
                    secs: secs(10.0),
                },
                nats_bin: o.nats_server.clone(),
            })]
        }
        "nats-throughput" => vec![Plan::Nats(nats::NatsSpec {
            name: name.into(),
            edge_clients: o.clients.unwrap_or(4),
            direct_clients: 0,
            line_bytes: lb(100),
            writer: Writer::Flood {
                lines: lines(200_000),
                window_bytes: o.window_bytes,
            },
            nats_bin: o.nats_server.clone(),
        })],
        "stuck-1-of-20" => {
            // 1 MB/s of 1000-byte lines; 19 healthy clients, with and without a stuck one.
            let healthy = o.clients.unwrap_or(20).saturating_sub(1).max(1);
            let line_bytes = lb(1000);
            let rate = o.rate.unwrap_or(1e6 / line_bytes as f64);
            let spec = |suffix: &str, stuck| StreamSpec {
                name: format!("{name}/{suffix}"),
                transport: Transport::Ws,
                clients: healthy,
                stuck,
                line_bytes,
                writer: Writer::Paced {
                    rate,
                    secs: o.duration.unwrap_or(if o.quick { 8.0 } else { 20.0 }),
                },
                footprint: false,
                json: false,
                server_args: Vec::new(),
            };
            vec![
                Plan::Stream(spec("baseline", 0)),
                Plan::Stream(spec("stuck", 1)),
            ]
        }
        _ => Vec::new(),
    }
}

fn build_server(o: &Opts) -> Result<PathBuf, String> {
    if let Some(b) = &o.server_bin {
        return Ok(b.clone());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("logtail-ws");
    if !o.no_build {
        eprintln!("loadgen: cargo build --release --bin logtail-ws ...");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--release", "--quiet", "--bin", "logtail-ws"])
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !st.success() {
            return Err(format!("cargo build --release failed ({st})"));
        }
    }
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release`",
            bin.display()
        ));
    }
    Ok(bin)
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("?".into(), |x| format!("{x:.prec$}"))
}

fn print_phase(p: &Phase) {
    let mut s = String::new();
    let _ = writeln!(s, "\n== {} (server {}) ==", p.name, p.server_addr);
    let c = &p.connect;
    if p.viewer.is_none() {
        let _ = writeln!(
            s,
            "  connect     {}/{} in {:.2} s ({:.0}/s); handshake p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            c.connected,
            c.requested,
            c.secs,
            c.handshakes_per_s,
            c.handshake_p50_ms,
            c.handshake_p99_ms,
            c.handshake_max_ms
        );
    }
    if c.listen_overflows > 0 || c.syn_retrans > 0 {
        let _ = writeln!(
            s,
            "  listen q    {} SYNs dropped on a full accept queue, {} SYN retransmits (machine-wide TcpExt)",
            c.listen_overflows, c.syn_retrans
        );
    }
    if !c.failures.is_empty() {
        let _ = writeln!(s, "  failures    {:?}", c.failures);
    }
    if let Some(w) = &p.write {
        let _ = writeln!(
            s,
            "  writer      {} lines, {:.1} MB in {:.2} s = {:.0} lines/s ({} write(2)s, max {:.0} us{}{})",
            w.lines,
            w.bytes as f64 / 1e6,
            w.secs,
            w.lines_per_s,
            w.writes,
            w.max_write_us,
            if w.max_behind_lines > 1 {
                format!(", max behind {} lines", w.max_behind_lines)
            } else {
                String::new()
            },
            if w.window_wait_secs > 0.0 {
                format!(", waited {:.2} s for slowest client", w.window_wait_secs)
            } else {
                String::new()
            },
        );
    }
    if let Some(l) = &p.latency
        && p.viewer.is_none()
    {
        let _ = writeln!(
            s,
            "  latency     p50 {:.1} us  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} us  (n={})",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.samples
        );
    }
    if let Some(l) = &p.latency
        && l.max_by_second_us.len() > 1
    {
        let mut worst: Vec<(usize, u64)> = l.max_by_second_us.iter().copied().enumerate().collect();
        worst.sort_by_key(|x| std::cmp::Reverse(x.1));
        let w: Vec<String> = worst
            .iter()
            .take(3)
            .map(|(i, v)| format!("second {i}: {:.1} ms", *v as f64 / 1e3))
            .collect();
        let _ = writeln!(s, "  worst secs  {}", w.join(", "));
    }
    if let Some(d) = &p.delivery {
        print_delivery(&mut s, d);
    }
    if let Some(t) = &p.throughput {
        let _ = writeln!(
            s,
            "  throughput  {:.0} lines/s written, {:.0} deliveries/s, {:.1} MB/s received (first write to last receive {:.2} s)",
            t.lines_written_per_s, t.deliveries_per_s, t.mb_received_per_s, t.secs
        );
    }
    if let Some(i) = &p.idle {
        let _ = writeln!(
            s,
            "  idle RSS    {} -> {} with {} clients = {} KiB/client; server threads {}",
            kib(i.rss_before_kib),
            kib(i.rss_after_kib),
            c.connected,
            opt(i.rss_per_client_kib, 1),
            i.server_threads.map_or("?".into(), |t| t.to_string())
        );
        let _ = writeln!(
            s,
            "  idle CPU    server {} s over {:.0} s idle; loadgen {:.2} s; closed while idle {}",
            opt(i.idle_server_cpu_secs, 2),
            i.idle_secs,
            i.idle_loadgen_cpu_secs,
            i.closed_while_idle
        );
        let l = &i.fanout_latency;
        let _ = writeln!(
            s,
            "  fan-out     {} lines to every client: p50 {:.0} us  p99 {:.0}  max {:.0} us",
            i.fanout_delivery.written, l.p50_us, l.p99_us, l.max_us
        );
        print_delivery(&mut s, &i.fanout_delivery);
    }
    let cpu = &p.cpu;
    let _ = writeln!(
        s,
        "  cpu         server {} cores ({} s); loadgen {:.2} cores ({:.2} s); machine {:.0}% busy over {:.1} s{}",
        opt(cpu.server_cores, 2),
        opt(cpu.server_cpu_secs, 2),
        cpu.loadgen_cores,
        cpu.loadgen_cpu_secs,
        cpu.machine_busy_pct,
        cpu.wall_secs,
        if cpu.saturated { "  [SATURATED]" } else { "" }
    );
    let m = &p.memory;
    let hz: Vec<String> = m
        .healthz_clients
        .iter()
        .map(|(t, n)| format!("{t:.1}s:{n}"))
        .collect();
    let _ = writeln!(
        s,
        "  server RSS  start {}, peak {} (+{}), end {}; /healthz clients {}",
        kib(m.rss_start_kib),
        kib(m.rss_peak_kib),
        kib(m.rss_growth_kib),
        kib(m.rss_end_kib),
        if hz.is_empty() {
            "n/a".into()
        } else {
            hz.join(" ")
        }
    );
    if let Some(f) = &p.files {
        print_files(&mut s, f, p.latency.as_ref());
    }
    if let Some(v) = &p.viewer {
        viewer::print(&mut s, v);
    }
    if let Some(f) = &p.footprint {
        print_footprint(&mut s, f);
    }
    if let Some(n) = &p.nats {
        print_nats(&mut s, n);
    }
    if let Some(st) = &p.stuck {
        let _ = writeln!(
            s,
            "  stuck       rcvbuf {} B; at the end {} bytes / {} frames were waiting; close {}; eof {}; {}",
            st.rcvbuf_requested,
            st.bytes_drained,
            st.text_frames,
            st.close.as_deref().unwrap_or("none"),
            st.eof,
            st.note
        );
    }
    let l = &p.server_log;
    let _ = writeln!(
        s,
        "  server log  {} WARN, {} ERROR lines",
        l.warns, l.errors
    );
    for line in &l.sample {
        let _ = writeln!(s, "              {line}");
    }
    if let Some(sd) = &p.server_shutdown {
        let _ = writeln!(
            s,
            "  shutdown    {} s after SIGTERM, {}",
            opt(sd.secs, 3),
            sd.status
        );
    }
    for n in &p.notes {
        let _ = writeln!(s, "  NOTE        {n}");
    }
    print!("{s}");
}

fn print_footprint(s: &mut String, f: &scenarios::Footprint) {
    let setup = f.conns.as_ref().map_or(String::new(), |c| {
        format!(
            "; {} of {} connections up, setup max {:.1} ms{}",
            c.connected,
            c.requested,
            c.setup_ms_max,
            if c.failures.is_empty() {
                String::new()
            } else {
                format!(", failures {:?}", c.failures)
            }
        )
    });
    let _ = writeln!(
        s,
        "  http        {}{} over {} {} connections ({:.1} streams each){}",
        f.http,
        if f.tls { " (TLS)" } else { " (cleartext)" },
        f.client_connections,
        match f.http {
            "h3" => "QUIC",
            "webrtc" => "UDP (ICE/DTLS/SCTP)",
            _ => "TCP",
        },
        f.streams_per_connection,
        setup
    );
    let show = |v: &Option<serde_json::Value>| v.as_ref().map_or("?".into(), |v| v.to_string());
    let _ = writeln!(
        s,
        "  /healthz    connections {} streams {} clients {} (the probe: {}){}",
        show(&f.healthz_connections),
        show(&f.healthz_streams),
        f.healthz_clients.map_or("?".into(), |c| c.to_string()),
        f.healthz_probe,
        f.healthz_error
            .as_ref()
            .map_or(String::new(), |e| format!("; error: {e}"))
    );
    if f.healthz_webtransport.is_some() || f.healthz_rtc.is_some() {
        let _ = writeln!(
            s,
            "  /healthz    webtransport {} rtc {}",
            show(&f.healthz_webtransport),
            show(&f.healthz_rtc)
        );
    }
    let _ = writeln!(
        s,
        "  RSS/client  {} before the clients, {} with them = {} KiB/client",
        kib(f.rss_before_kib),
        kib(f.rss_connected_kib),
        opt(f.rss_per_client_kib, 1)
    );
    let _ = writeln!(
        s,
        "  CPU/deliv   server {} us, loadgen {:.2} us per delivery (streaming window)",
        opt(f.server_us_per_delivery, 2),
        f.loadgen_us_per_delivery
    );
    if let Some(c) = &f.conns
        && !c.ended_early.is_empty()
    {
        let _ = writeln!(s, "  conn ends   {:?}", c.ended_early);
    }
}

/// Issue 14: the protocol phases side by side.
fn compare_protocols(phases: &[Phase]) -> Vec<String> {
    let rows: Vec<&Phase> = phases
        .iter()
        .filter(|p| p.footprint.is_some() && PROTOCOL_SCENARIOS.contains(&p.name.as_str()))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "{:<16} {:>8} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6}",
        "same SSE load",
        "http",
        "conns",
        "clients",
        "KiB/clnt",
        "srv cores",
        "srv us/dl",
        "gen cores",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "exact"
    )];
    for p in rows {
        let Some(f) = &p.footprint else { continue };
        let l = p.latency.clone().unwrap_or_default();
        let exact = p
            .delivery
            .as_ref()
            .is_some_and(|d| d.clients_complete == d.clients && d.clients > 0);
        out.push(format!(
            "{:<16} {:>8} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9.2} {:>8.0} {:>8.0} {:>8.0} {:>6}{}",
            p.name,
            f.http,
            f.client_connections,
            p.connect.connected,
            opt(f.rss_per_client_kib, 1),
            opt(p.cpu.server_cores, 2),
            opt(f.server_us_per_delivery, 2),
            p.cpu.loadgen_cores,
            l.p50_us,
            l.p99_us,
            l.p999_us,
            if exact { "yes" } else { "NO" },
            if p.cpu.saturated { " SAT" } else { "" }
        ));
    }
    out
}

/// Issue 16: the transport phases side by side.
fn compare_transports(phases: &[Phase]) -> Vec<String> {
    let rows: Vec<&Phase> = phases
        .iter()
        .filter(|p| p.footprint.is_some() && TRANSPORT_SCENARIOS.contains(&p.name.as_str()))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "{:<12} {:>13} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "same JSON",
        "transport",
        "clients",
        "KiB/sess",
        "srv cores",
        "srv us/dl",
        "gen cores",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "exact"
    )];
    for p in rows {
        let Some(f) = &p.footprint else { continue };
        let l = p.latency.clone().unwrap_or_default();
        let exact = p.failed.is_empty()
            && p.delivery
                .as_ref()
                .is_some_and(|d| d.clients_complete == d.clients && d.clients > 0);
        out.push(format!(
            "{:<12} {:>13} {:>7} {:>9} {:>9} {:>9} {:>9.2} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>6}{}",
            p.name,
            p.params["transport"].as_str().unwrap_or("?"),
            p.connect.connected,
            opt(f.rss_per_client_kib, 1),
            opt(p.cpu.server_cores, 2),
            opt(f.server_us_per_delivery, 2),
            p.cpu.loadgen_cores,
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            if exact { "yes" } else { "NO" },
            if p.cpu.saturated { " SAT" } else { "" }
        ));
    }
    out
}

fn print_nats(s: &mut String, n: &nats::NatsReport) {
    let _ = writeln!(
        s,
        "  nats        {} at {} (up in {:.2} s); edge listening {:.2} s after spawn",
        n.nats_server_version, n.nats_url, n.nats_startup_secs, n.edge_startup_secs
    );
    for p in std::iter::once(&n.edge).chain(n.direct.as_ref()) {
        let (l, d) = (&p.latency, &p.delivery);
        let _ = writeln!(
            s,
            "  {:<11} {}/{} clients on {}: p50 {:.0} us p90 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} us (n={}); complete {}/{}, lost {} + {} (closed), dups {}; {:.0} lines/s to each",
            p.path,
            p.connect.connected,
            p.connect.requested,
            p.server_addr,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            l.samples,
            d.clients_complete,
            d.clients,
            d.lost_open_clients,
            d.lost_closed_clients,
            d.dups_total,
            d.written as f64 / p.throughput.secs.max(1e-9)
        );
    }
    if let Some(a) = &n.added_delay {
        let _ = writeln!(
            s,
            "  added       edge - direct, by percentile: p50 {:+.0} us p90 {:+.0} p99 {:+.0} p99.9 {:+.0} max {:+.0} mean {:+.0} us",
            a.p50_us, a.p90_us, a.p99_us, a.p999_us, a.max_us, a.mean_us
        );
        let f = &a.first_arrival;
        let _ = writeln!(
            s,
            "  added       per line, first edge client - first direct client: p50 {:.0} us p90 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} us (n={}, {} below 0 counted as 0)",
            f.p50_us, f.p90_us, f.p99_us, f.p999_us, f.max_us, f.samples, a.first_arrival_negative
        );
    }
    let reached = |r: &nats::Reached| match (r.secs, r.lines_per_s) {
        (Some(t), Some(v)) => format!("{t:.2} s after the first write ({v:.0} lines/s)"),
        (Some(t), None) => format!("{t:.2} s after the first write"),
        _ => "not seen by the polls".into(),
    };
    let _ = writeln!(
        s,
        "  rates       every written line acknowledged by JetStream {}; in the edge {}",
        reached(&n.all_acked),
        reached(&n.all_at_edge)
    );
    match &n.stream {
        Some(st) => {
            let _ = writeln!(
                s,
                "  stream      {}: {} messages, seqs {}..={}, {:.1} MB; the file {} lines ({} warm-up); /healthz seq source {} edge {}",
                st.name,
                st.messages,
                st.first_seq,
                st.last_seq,
                st.bytes as f64 / 1e6,
                n.file_lines,
                n.warm_up_lines,
                n.source_seq.map_or("?".into(), |v| v.to_string()),
                n.edge_seq.map_or("?".into(), |v| v.to_string())
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  stream      unknown: {}",
                n.stream_error.as_deref().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(
        s,
        "  publisher   {}",
        n.publisher.as_ref().map_or("?".into(), |p| p.to_string())
    );
    for p in &n.procs {
        let m = &p.memory;
        let _ = writeln!(
            s,
            "  {:<11} CPU {} cores ({} s), {} threads; RSS start {}, peak {}, end {}",
            p.role,
            opt(p.cores, 2),
            opt(p.cpu_secs, 2),
            p.threads.map_or("?".into(), |t| t.to_string()),
            kib(m.rss_start_kib),
            kib(m.rss_peak_kib),
            kib(m.rss_end_kib)
        );
    }
    let _ = writeln!(
        s,
        "  all three   CPU {} cores",
        opt(n.total_server_cores, 2)
    );
}

/// Issue 15: the broker path against the direct one.
fn compare_nats(phases: &[Phase]) -> Vec<String> {
    let mut out = Vec::new();
    for p in phases {
        let Some(n) = &p.nats else { continue };
        let cores = |role: &str| {
            opt(
                n.procs
                    .iter()
                    .find(|x| x.role == role)
                    .and_then(|x| x.cores),
                2,
            )
        };
        let cpu = format!(
            "CPU source {} edge {} nats-server {} cores",
            cores("source"),
            cores("edge"),
            cores("nats-server")
        );
        let exact = if p.failed.is_empty() {
            "exact"
        } else {
            "FAILED"
        };
        match (&n.direct, &n.added_delay) {
            (Some(d), Some(a)) => out.push(format!(
                "{}: edge p50/p99/p99.9 {:.0}/{:.0}/{:.0} us, direct {:.0}/{:.0}/{:.0} us, added {:+.0}/{:+.0}/{:+.0} us \
                 (per line, first arrivals: p50 {:.0} p99 {:.0} us); {cpu}; {exact}",
                p.name,
                n.edge.latency.p50_us,
                n.edge.latency.p99_us,
                n.edge.latency.p999_us,
                d.latency.p50_us,
                d.latency.p99_us,
                d.latency.p999_us,
                a.p50_us,
                a.p99_us,
                a.p999_us,
                a.first_arrival.p50_us,
                a.first_arrival.p99_us
            )),
            _ => out.push(format!(
                "{}: {:.0} lines/s through the edge to each of {} clients; published (acked) at {} lines/s; {cpu}; {exact}",
                p.name,
                n.edge.delivery.written as f64 / n.edge.throughput.secs.max(1e-9),
                n.edge.delivery.clients,
                opt(n.all_acked.lines_per_s, 0)
            )),
        }
    }
    out
}

fn census(c: &Option<sys::FdCensus>) -> String {
    c.map_or("?".into(), |c| {
        format!(
            "{} ({} log files, {} inotify with {} watches, {} sockets, {} other)",
            c.total, c.files_under_dir, c.inotify, c.inotify_watches, c.sockets, c.other
        )
    })
}

fn print_files(s: &mut String, f: &files::FilesReport, lat: Option<&scenarios::Latency>) {
    let _ = writeln!(
        s,
        "  files       {} in {} dirs (created in {:.2} s), one glob {}",
        f.files, f.dirs, f.create_secs, f.glob
    );
    let _ = writeln!(
        s,
        "  start-up    'listening on' {:.2} s after spawn; GET /files lists all {} at {}",
        f.startup_listening_secs,
        f.files,
        f.startup_all_listed_secs.map_or(
            format!("never (last look: {:?})", f.listed_files),
            |t| format!("{t:.2} s")
        )
    );
    let w = &f.writer;
    let _ = writeln!(
        s,
        "  writer      {:.0} of {:.0} lines/s to random files (one thread, {}); per line p50 {:.1} us p99 {:.1} max {:.0} us; thread CPU {} s; {} opens; max behind {} lines",
        w.achieved_rate,
        w.target_rate,
        if w.cache_fds == 0 {
            "open+write+close per line".to_string()
        } else {
            format!("{} cached fds", w.cache_fds)
        },
        w.line_write_p50_us,
        w.line_write_p99_us,
        w.line_write_max_us,
        opt(w.thread_cpu_secs, 2),
        w.opens,
        w.max_behind_lines
    );
    if let Some(l) = lat {
        let v: Vec<String> = l
            .max_by_second_us
            .iter()
            .map(|x| format!("{:.0}", *x as f64 / 1e3))
            .collect();
        let _ = writeln!(
            s,
            "  per second  worst latency of the lines sent in it, ms: {}",
            v.join(" ")
        );
    }
    let c = &f.check;
    let _ = writeln!(
        s,
        "  all files   {} clients: {} of {} deliveries, lost {}; p50 {:.0} us p99 {:.0} p99.9 {:.0} max {:.0} us",
        f.all_clients,
        c.got_all,
        c.expected_all,
        c.lost_all,
        f.latency_all.p50_us,
        f.latency_all.p99_us,
        f.latency_all.p999_us,
        f.latency_all.max_us
    );
    let (a, b) = (
        &f.latency_all_first_line_of_file,
        &f.latency_all_later_lines,
    );
    let _ = writeln!(
        s,
        "  all files   first line of each file (n={}): p50 {:.0} us p99 {:.0} max {:.0} us; later lines (n={}): p50 {:.0} us p99 {:.0} max {:.0} us",
        a.samples, a.p50_us, a.p99_us, a.max_us, b.samples, b.p50_us, b.p99_us, b.max_us
    );
    let h = &f.latency_second_half;
    let _ = writeln!(
        s,
        "  2nd half    every client, lines sent in the second half of the writing (n={}): p50 {:.0} us p90 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} us",
        h.samples, h.p50_us, h.p90_us, h.p99_us, h.p999_us, h.max_us
    );
    let _ = writeln!(
        s,
        "  one file    {} clients ({}{}): {} of {} deliveries, lost {}; p50 {:.0} us p99 {:.0} max {:.0} us",
        f.one_clients,
        f.one_client_files
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        if f.one_client_files.len() > 3 {
            ", ..."
        } else {
            ""
        },
        c.got_one,
        c.expected_one,
        c.lost_one,
        f.latency_one.p50_us,
        f.latency_one.p99_us,
        f.latency_one.max_us
    );
    let _ = writeln!(
        s,
        "  checks      dups {}; wrong name {}; other file {}; out of order in a file {}; foreign {}; reordered across files {} (allowed); events {:?}",
        c.dups,
        c.wrong_name,
        c.other_file,
        c.order_breaks_in_file,
        c.foreign,
        c.reordered_across_files,
        c.events
    );
    let v = &f.server;
    let th = |t: Option<u64>| t.map_or("?".into(), |t| t.to_string());
    let _ = writeln!(
        s,
        "  threads     rest {}, load max {}, idle {}",
        th(v.threads_rest),
        th(v.threads_load_max),
        th(v.threads_idle)
    );
    let _ = writeln!(s, "  fds rest    {}", census(&v.fds_rest));
    let _ = writeln!(
        s,
        "  fds load    {} (max per kind)",
        census(&v.fds_load_max)
    );
    let _ = writeln!(s, "  fds idle    {}", census(&v.fds_idle));
    let _ = writeln!(
        s,
        "  RSS         rest {}, load peak {}, idle {}; RLIMIT_NOFILE {}/{} (soft/hard)",
        kib(v.rss_rest_kib),
        kib(v.rss_load_peak_kib),
        kib(v.rss_idle_kib),
        th(v.nofile_soft),
        th(v.nofile_hard)
    );
    let _ = writeln!(
        s,
        "  server CPU  load {} cores; idle {} s over {:.0} s ({}%), loadgen {:.2} s",
        opt(v.load_cores, 3),
        opt(v.idle_cpu_secs, 2),
        v.idle_secs,
        opt(
            v.idle_cpu_secs.map(|c| 100.0 * c / v.idle_secs.max(1e-9)),
            2
        ),
        v.idle_loadgen_cpu_secs
    );
    let by: Vec<String> = v
        .load_cpu_by_thread
        .iter()
        .map(|(k, c)| format!("{k} {c:.2}"))
        .collect();
    let _ = writeln!(s, "  CPU/thread  during the load, s: {}", by.join(", "));
    let by: Vec<String> = v
        .idle_cpu_by_thread
        .iter()
        .map(|(k, c)| format!("{k} {c:.2}"))
        .collect();
    let _ = writeln!(s, "  CPU/thread  while idle, s: {}", by.join(", "));
}

fn print_delivery(s: &mut String, d: &scenarios::Delivery) {
    let _ = writeln!(
        s,
        "  delivery    {} lines written; {}/{} clients complete; per client min {} max {}; lost {} (open clients) + {} (closed clients); dups {}; foreign {}{}",
        d.written,
        d.clients_complete,
        d.clients,
        d.delivered_min,
        d.delivered_max,
        d.lost_open_clients,
        d.lost_closed_clients,
        d.dups_total,
        d.foreign_msgs,
        if d.id_breaks > 0 {
            format!("; seq breaks (SSE id / JSON seq) {}", d.id_breaks)
        } else {
            String::new()
        }
    );
    for (k, v) in &d.ends {
        let _ = writeln!(s, "  ended       {v} x {k}");
    }
}

fn summary(phases: &[Phase], comparisons: &[String]) {
    println!("\n== summary ==");
    println!(
        "{:<24} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>6} {:>11} {:>7} {:>6} {:>6} {:>9} {:>8} {:>9}",
        "phase",
        "clnts",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "lost",
        "dups",
        "closed",
        "deliv/s",
        "MB/s",
        "srv c",
        "gen c",
        "KiB/clnt",
        "idle s",
        "RSS+ MiB"
    );
    for p in phases {
        let d = p
            .delivery
            .as_ref()
            .or(p.idle.as_ref().map(|i| &i.fanout_delivery));
        let l = p
            .latency
            .as_ref()
            .or(p.idle.as_ref().map(|i| &i.fanout_latency));
        let f = |x: f64| format!("{x:.0}");
        println!(
            "{:<24} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>6} {:>11} {:>7} {:>6} {:>6} {:>9} {:>8} {:>9}{}",
            p.name,
            p.connect.connected,
            l.map_or("-".into(), |l| f(l.p50_us)),
            l.map_or("-".into(), |l| f(l.p99_us)),
            l.map_or("-".into(), |l| f(l.p999_us)),
            l.map_or("-".into(), |l| f(l.max_us)),
            d.map_or("-".into(), |d| d.lost_open_clients.to_string()),
            d.map_or("-".into(), |d| d.dups_total.to_string()),
            d.map_or("-".into(), |d| d.ends.values().sum::<usize>().to_string()),
            p.throughput
                .as_ref()
                .map_or("-".into(), |t| f(t.deliveries_per_s)),
            p.throughput
                .as_ref()
                .map_or("-".into(), |t| format!("{:.1}", t.mb_received_per_s)),
            opt(p.cpu.server_cores, 2),
            format!("{:.2}", p.cpu.loadgen_cores),
            p.idle
                .as_ref()
                .map_or("-".into(), |i| opt(i.rss_per_client_kib, 1)),
            p.idle
                .as_ref()
                .map_or("-".into(), |i| opt(i.idle_server_cpu_secs, 2)),
            p.memory
                .rss_growth_kib
                .map_or("?".into(), |g| format!("{:.1}", g as f64 / 1024.0)),
            if p.cpu.saturated { " SAT" } else { "" }
        );
    }
    for c in comparisons {
        println!("{c}");
    }
    println!(
        "(srv c / gen c: CPU cores used by server (nats-*: source + edge + nats-server; the rest of the row is the edge's clients) / load generator; SAT: generator or machine saturated)"
    );
}

fn compare_stuck(phases: &[Phase]) -> Option<String> {
    let base = phases.iter().find(|p| p.name.ends_with("/baseline"))?;
    let stuck = phases.iter().find(|p| p.name.ends_with("/stuck"))?;
    let (b, s) = (base.latency.as_ref()?, stuck.latency.as_ref()?);
    let g = |p: &Phase| {
        p.memory
            .rss_growth_kib
            .map_or(f64::NAN, |k| k as f64 / 1024.0)
    };
    Some(format!(
        "stuck-1-of-20: healthy p99 {:.0} us with a stuck client vs {:.0} us baseline (x{:.2}); p99.9 {:.0} vs {:.0} us; \
         RSS growth {:.1} MiB vs {:.1} MiB baseline; healthy lost {} dups {}",
        s.p99_us,
        b.p99_us,
        s.p99_us / b.p99_us.max(1e-9),
        s.p999_us,
        b.p999_us,
        g(stuck),
        g(base),
        stuck.delivery.as_ref().map_or(0, |d| d.lost_open_clients),
        stuck.delivery.as_ref().map_or(0, |d| d.dups_total),
    ))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = Opts::parse();
    if let Err(e) = run(o).await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(o: Opts) -> Result<(), String> {
    let t0 = Instant::now();
    let names: Vec<&str> = if o.scenario == "all" {
        SCENARIOS.to_vec()
    } else {
        o.scenario
            .split(',')
            .map(str::trim)
            .flat_map(|n| {
                if n == "protocols" {
                    PROTOCOL_SCENARIOS.to_vec()
                } else if n == "transports" {
                    TRANSPORT_SCENARIOS.to_vec()
                } else if n == "nats" {
                    NATS_SCENARIOS.to_vec()
                } else {
                    vec![n]
                }
            })
            .collect()
    };
    for n in &names {
        if !SCENARIOS.contains(n)
            && !VIEWER_SCENARIOS.contains(n)
            && !PROTOCOL_SCENARIOS.contains(n)
            && !NATS_SCENARIOS.contains(n)
            && !TRANSPORT_SCENARIOS.contains(n)
        {
            return Err(format!(
                "unknown scenario {n:?}; known: {}, {}, {}, {}, {}, protocols, nats, transports or all",
                SCENARIOS.join(", "),
                VIEWER_SCENARIOS.join(", "),
                PROTOCOL_SCENARIOS.join(", "),
                NATS_SCENARIOS.join(", "),
                TRANSPORT_SCENARIOS.join(", ")
            ));
        }
    }
    let nofile = sys::raise_nofile();
    let max_clients = names
        .iter()
        .flat_map(|n| plans(&o, n))
        .map(|p| match p {
            Plan::Stream(s) => s.clients + s.stuck,
            Plan::Idle(i) => i.clients,
            Plan::Files(f) => f.all_clients + f.one_clients,
            Plan::Viewer(_) => 1,
            Plan::Nats(n) => n.edge_clients + n.direct_clients,
        })
        .max()
        .unwrap_or(0);
    if let Some((old, new)) = nofile {
        eprintln!("loadgen: RLIMIT_NOFILE {old} -> {new} (inherited by the spawned server)");
        if (new as usize) < max_clients + 64 {
            eprintln!(
                "loadgen: warning: {new} file descriptors are not enough for {max_clients} clients"
            );
        }
    }
    if max_clients > 20_000 {
        eprintln!(
            "loadgen: note: one client process uses one ephemeral port per connection (see ip_local_port_range)"
        );
    }
    let source = match &o.server_addr {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                return Err("--server-addr must be a loopback address".into());
            }
            Source::Attach {
                addr: *addr,
                file: o.file.clone().expect("clap requires --file"),
                pid: o.server_pid,
            }
        }
        None => Source::Spawn {
            bin: build_server(&o)?,
            args: o.server_args.clone(),
        },
    };
    let env = Env {
        source,
        t0,
        concurrency: o.connect_concurrency,
        drain_idle: Duration::from_secs_f64(o.drain_timeout),
        stuck_rcvbuf: o.stuck_rcvbuf,
        json_frames: o.json_frames,
    };
    let mut phases = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        for plan in plans(&o, name) {
            let (label, r) = match &plan {
                Plan::Stream(s) => {
                    eprintln!(
                        "loadgen: running {} ({} {} clients, {:?}) ...",
                        s.name,
                        s.clients + s.stuck,
                        s.transport.name(),
                        s.writer
                    );
                    (s.name.clone(), scenarios::stream(&env, s).await)
                }
                Plan::Idle(i) => {
                    eprintln!(
                        "loadgen: running {} ({} idle clients, {} s idle) ...",
                        i.name, i.clients, i.idle_secs
                    );
                    (i.name.clone(), scenarios::idle(&env, i).await)
                }
                Plan::Files(f) => {
                    eprintln!(
                        "loadgen: running {} ({} files, {} all-files + {} one-file JSON clients, {} lines/s for {} s, {} s idle) ...",
                        f.name, f.files, f.all_clients, f.one_clients, f.rate, f.secs, f.idle_secs
                    );
                    (f.name.clone(), files::phase(&env, f).await)
                }
                Plan::Viewer(v) => {
                    eprintln!(
                        "loadgen: running {} (the viewer page in headless Chromium, {} lines/s for {} s{}) ...",
                        v.name,
                        v.rate,
                        v.secs,
                        if v.fragment.is_empty() {
                            String::new()
                        } else {
                            format!(", #{}", v.fragment)
                        }
                    );
                    (v.name.clone(), viewer::phase(&env, v).await)
                }
                Plan::Nats(n) => {
                    eprintln!(
                        "loadgen: running {} (nats-server + source + edge; {} WebSocket clients on the edge, {} on the source, {:?}) ...",
                        n.name, n.edge_clients, n.direct_clients, n.writer
                    );
                    (n.name.clone(), nats::phase(&env, n).await)
                }
            };
            match r {
                Ok(p) => {
                    print_phase(&p);
                    if !p.failed.is_empty() {
                        println!("  FAILED      {}", p.failed.join("; "));
                        errors.push(format!("{label}: {}", p.failed.join("; ")));
                    }
                    phases.push(p);
                }
                Err(e) => {
                    println!("\n== {label} ==\n  FAILED: {e}");
                    errors.push(format!("{label}: {e}"));
                }
            }
        }
    }
    let mut comparisons: Vec<String> = compare_stuck(&phases).into_iter().collect();
    comparisons.extend(compare_protocols(&phases));
    comparisons.extend(compare_transports(&phases));
    comparisons.extend(compare_nats(&phases));
    summary(&phases, &comparisons);
    if let Some(path) = &o.json {
        let doc = serde_json::json!({
            "tool": "logtail-ws loadgen",
            "args": std::env::args().skip(1).collect::<Vec<_>>(),
            "machine": { "cpus": sys::ncpus(), "nofile": nofile.map(|x| x.1) },
            "phases": phases,
            "comparisons": comparisons,
            "errors": errors,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("loadgen: wrote {}", path.display());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} phase(s) failed", errors.len()))
    }
}
