//! Streaming clients: many cheap readers that parse `seq=N t=NANOS` from each
//! line, over WebSocket (`/ws`) or SSE (`/events`: HTTP/1.1, see
//! [`crate::sse`], or streams on shared HTTP/2 or HTTP/3 connections, see
//! [`crate::mux`]), with one accounting ([`Tally`]); plus a raw "stuck"
//! WebSocket client that completes the handshake and never reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::sync::CancellationToken;

/// Latency histogram in nanoseconds, 1 ns .. 120 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

/// Shared clock and sharded latency histograms (clients batch their samples).
pub struct Recorder {
    pub t0: Instant,
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Send time (ns since t0) that starts second 0 of `per_sec_max`.
    base_ns: AtomicU64,
    /// Worst latency (ns) of lines sent in each second of the run.
    per_sec_max: Vec<AtomicU64>,
    /// Per line (index = seq): when its first client got it (ns since t0;
    /// `u64::MAX`: none yet). Empty unless made [`with_arrivals`](Recorder::with_arrivals).
    first_rx: Vec<AtomicU64>,
}

const PER_SEC_SLOTS: usize = 600;

impl Recorder {
    pub fn new(t0: Instant) -> Arc<Recorder> {
        Recorder::with_arrivals(t0, 0)
    }

    /// Also keeps, for lines 1..=`lines`, when the fleet's first client got
    /// each ([`first_arrivals`](Recorder::first_arrivals)): two fleets on two
    /// paths can then be compared line by line.
    pub fn with_arrivals(t0: Instant, lines: u64) -> Arc<Recorder> {
        let slots = if lines == 0 { 0 } else { lines as usize + 1 };
        Arc::new(Recorder {
            t0,
            shards: (0..16).map(|_| Mutex::new(new_hist())).collect(),
            base_ns: AtomicU64::new(u64::MAX),
            per_sec_max: (0..PER_SEC_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            first_rx: (0..slots).map(|_| AtomicU64::new(u64::MAX)).collect(),
        })
    }

    #[inline]
    fn note_arrival(&self, seq: u64, now: u64) {
        if let Some(slot) = self.first_rx.get(seq as usize)
            && now < slot.load(Relaxed)
        {
            slot.fetch_min(now, Relaxed);
        }
    }

    /// Per line (index = seq, from 0): when the fleet's first client got it
    /// (ns since t0), `None` if no client did or arrivals are not kept.
    pub fn first_arrivals(&self) -> Vec<Option<u64>> {
        self.first_rx
            .iter()
            .map(|a| Some(a.load(Relaxed)).filter(|&v| v != u64::MAX))
            .collect()
    }

    /// Sets the start of the per-second series (the first write).
    pub fn set_base(&self, ns: u64) {
        self.base_ns.store(ns, Relaxed);
    }

    #[inline]
    fn note_second(&self, sent_ns: u64, lat: u64) {
        let base = self.base_ns.load(Relaxed);
        if sent_ns < base {
            return;
        }
        let i = ((sent_ns - base) / 1_000_000_000) as usize;
        if let Some(slot) = self.per_sec_max.get(i)
            && slot.load(Relaxed) < lat
        {
            slot.fetch_max(lat, Relaxed);
        }
    }

    /// Worst latency per second of sending, in microseconds (trailing idle seconds trimmed).
    pub fn per_second_max_us(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .per_sec_max
            .iter()
            .map(|a| a.load(Relaxed) / 1000)
            .collect();
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn flush(&self, shard: usize, v: &mut Vec<u64>) {
        if v.is_empty() {
            return;
        }
        let mut h = self.shards[shard % self.shards.len()].lock().unwrap();
        for &x in v.iter() {
            h.saturating_record(x.max(1));
        }
        v.clear();
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_hist();
        for s in &self.shards {
            all.add(&*s.lock().unwrap()).expect("same bounds");
        }
        all
    }
}

/// How a client's stream ended, when the server (not us) ended it.
#[derive(Clone, Debug)]
pub enum End {
    Close {
        code: u16,
        reason: String,
    },
    /// SSE: a named event that ends the stream (`event: closed`).
    Event {
        name: String,
        data: String,
    },
    /// SSE: the response body ended (last chunk) without an `event: closed`.
    BodyDone,
    Error(String),
    Eof,
}

impl End {
    pub fn label(&self) -> String {
        match self {
            End::Close { code, reason } => format!("close {code} {reason}").trim_end().to_string(),
            End::Event { name, data } => format!("event {name}: {data}"),
            End::BodyDone => "response ended without event: closed".into(),
            End::Error(e) => format!("error: {e}"),
            End::Eof => "eof without close frame".into(),
        }
    }
}

#[derive(Default)]
pub struct ClientStat {
    /// Highest seq received (0: none yet).
    pub last_seq: AtomicU64,
    /// Distinct lines received in increasing seq order.
    pub delivered: AtomicU64,
    /// Lines skipped over (seq jumped forward).
    pub gaps: AtomicU64,
    /// Messages whose seq was not above the last one (duplicate or reordered).
    pub dups: AtomicU64,
    /// Messages not of the form `seq=N t=T ...`.
    pub foreign: AtomicU64,
    /// SSE: line records whose `id: EPOCH:SEQ` was not the previous one's
    /// SEQ + 1 in the same epoch (or did not parse); JSON frames: line frames
    /// whose server `seq` was not the previous one's + 1.
    pub id_breaks: AtomicU64,
    pub bytes: AtomicU64,
    pub last_rx_ns: AtomicU64,
    /// Received a warm-up line (seq=0): subscribed to live lines.
    pub warm: AtomicBool,
    pub open: AtomicBool,
    pub end: Mutex<Option<(End, f64)>>,
}

/// The endpoint a fleet reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `/ws?backlog=0`: one WebSocket message per line.
    Ws,
    /// `/events?backlog=0`: one SSE record (`id:`, `data:`) per line, one
    /// HTTP/1.1 connection per client.
    Sse,
    /// `/events?backlog=0` as streams on `conns` shared HTTP/2 connections
    /// (cleartext, prior knowledge).
    SseH2 { conns: usize },
    /// `/events?backlog=0` as streams on `conns` shared HTTP/3 connections
    /// (the server then runs with a self-signed certificate and `--http3`).
    SseH3 { conns: usize },
    /// `/wt?backlog=0`: a WebTransport session (its own QUIC connection) per
    /// client, newline-delimited JSON frames (see [`crate::transports`]).
    Wt,
    /// `POST /rtc?backlog=0`: a WebRTC peer per client, one JSON frame per
    /// message on its `logs` data channel (see [`crate::transports`]).
    Rtc,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "websocket",
            Transport::Sse => "sse",
            Transport::SseH2 { .. } => "sse/h2",
            Transport::SseH3 { .. } => "sse/h3",
            Transport::Wt => "webtransport",
            Transport::Rtc => "webrtc",
        }
    }

    /// The HTTP version the clients speak.
    pub fn http(self) -> &'static str {
        match self {
            Transport::Ws | Transport::Sse => "http/1.1",
            Transport::SseH2 { .. } => "h2",
            Transport::SseH3 { .. } | Transport::Wt => "h3",
            Transport::Rtc => "webrtc",
        }
    }
}

/// Where a fleet's clients get their streams.
#[derive(Clone)]
pub enum Dial {
    /// A connection of its own per client.
    Tcp(SocketAddr),
    /// A stream on one of these shared connections (client `i` on connection `i mod N`).
    Mux(Arc<crate::mux::Conns>),
    /// A WebTransport session of its own per client.
    Wt(Arc<crate::transports::WtDial>),
}

#[derive(Clone, Copy)]
pub struct ClientCfg {
    pub transport: Transport,
    pub read_buffer: usize,
    pub record_latency: bool,
    /// WebSocket: ask for JSON frames (`format=json`, as the built-in viewer does).
    pub json: bool,
}

pub struct Fleet {
    pub clients: Vec<Arc<ClientStat>>,
    pub handles: Vec<JoinHandle<()>>,
    pub connect: ConnectReport,
}

#[derive(Serialize, Clone, Default)]
pub struct ConnectReport {
    pub requested: usize,
    pub connected: usize,
    pub failures: BTreeMap<String, usize>,
    pub secs: f64,
    pub handshakes_per_s: f64,
    pub handshake_p50_ms: f64,
    pub handshake_p99_ms: f64,
    pub handshake_max_ms: f64,
    /// Machine-wide TcpExt counters during the connect phase: SYNs dropped
    /// because a listen queue was full (each costs the client a 1 s retransmit).
    pub listen_overflows: u64,
    pub syn_retrans: u64,
}

fn parse_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let v = b[..n]
        .iter()
        .fold(0u64, |a, &c| a * 10 + u64::from(c - b'0'));
    Some((v, &b[n..]))
}

/// The line inside a JSON frame (`…,"line":"seq=N t=T …"}`): the text after
/// `"line":"`, enough for [`parse_line`].
fn json_line(frame: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"line\":\"";
    let at = frame.windows(KEY.len()).position(|w| w == KEY)?;
    Some(&frame[at + KEY.len()..])
}

/// Parses only `seq=N t=T` at the start of a line.
pub fn parse_line(b: &[u8]) -> Option<(u64, u64)> {
    let (seq, rest) = parse_u64(b.strip_prefix(b"seq=")?)?;
    let (t, _) = parse_u64(rest.strip_prefix(b" t=")?)?;
    Some((seq, t))
}

fn describe(e: &WsError) -> String {
    match e {
        WsError::Http(r) => format!("HTTP {}", r.status().as_u16()),
        WsError::Io(io) => format!("io: {:?}", io.kind()),
        other => {
            let s = other.to_string();
            s.chars().take(80).collect()
        }
    }
}

/// One client's accounting of what it receives, whatever the transport:
/// order, loss and duplicates into its [`ClientStat`], latency samples
/// batched for the [`Recorder`].
pub struct Tally<'a> {
    pub st: &'a ClientStat,
    rec: &'a Recorder,
    shard: usize,
    record_latency: bool,
    /// Highest seq seen so far.
    last: u64,
    /// JSON frames: the server `seq` of the last line frame (0: none yet).
    server_seq: u64,
    lat: Vec<u64>,
}

impl<'a> Tally<'a> {
    pub fn new(st: &'a ClientStat, rec: &'a Recorder, shard: usize, record_latency: bool) -> Self {
        Tally {
            st,
            rec,
            shard,
            record_latency,
            last: 0,
            server_seq: 0,
            lat: Vec::with_capacity(if record_latency { 512 } else { 0 }),
        }
    }

    /// Nanoseconds since the shared clock's start.
    #[inline]
    pub fn now(&self) -> u64 {
        self.rec.now_ns()
    }

    /// `bytes` arrived at `now`.
    #[inline]
    pub fn received(&self, bytes: usize, now: u64) {
        self.st.bytes.fetch_add(bytes as u64, Relaxed);
        self.st.last_rx_ns.store(now, Relaxed);
    }

    /// One line (`seq=N t=T …`) received at `now`.
    pub fn line(&mut self, data: &[u8], now: u64) {
        let st = self.st;
        let Some((seq, t)) = parse_line(data) else {
            st.foreign.fetch_add(1, Relaxed);
            return;
        };
        if seq == 0 {
            st.warm.store(true, Relaxed);
            return;
        }
        if seq > self.last {
            if seq > self.last + 1 {
                st.gaps.fetch_add(seq - self.last - 1, Relaxed);
            }
            self.last = seq;
            st.last_seq.store(seq, Relaxed);
            st.delivered.fetch_add(1, Relaxed);
            self.rec.note_arrival(seq, now);
        } else {
            st.dups.fetch_add(1, Relaxed);
        }
        if self.record_latency {
            let l = now.saturating_sub(t);
            self.rec.note_second(t, l);
            self.lat.push(l);
            if self.lat.len() >= 512 {
                self.rec.flush(self.shard, &mut self.lat);
            }
        }
    }

    /// One JSON frame (`/ws?format=json`, `/wt`, `/rtc`): events (`hello`,
    /// file events) are skipped, a gap counts as a seq break; a line frame's
    /// server `seq` must follow the previous one's, and its `line` goes to
    /// [`line`](Self::line).
    pub fn json_frame(&mut self, frame: &[u8], now: u64) {
        if frame.starts_with(b"{\"event\"") {
            if frame.starts_with(b"{\"event\":\"gap\"") {
                self.st.id_breaks.fetch_add(1, Relaxed);
            }
            return;
        }
        match frame.strip_prefix(b"{\"seq\":").and_then(parse_u64) {
            Some((seq, _)) => {
                if self.server_seq != 0 && seq != self.server_seq + 1 {
                    self.st.id_breaks.fetch_add(1, Relaxed);
                }
                self.server_seq = seq;
            }
            None => {
                self.st.id_breaks.fetch_add(1, Relaxed);
            }
        }
        self.line(json_line(frame).unwrap_or(frame), now);
    }

    fn flush(&mut self) {
        self.rec.flush(self.shard, &mut self.lat);
    }
}

type Ws = WebSocketStream<TcpStream>;

/// An open stream of any transport.
enum Conn {
    Ws(Box<Ws>),
    Sse(crate::sse::SseStream),
    Mux(crate::mux::MuxStream),
    Wt(Box<crate::transports::WtSession>),
    Rtc(Box<crate::transports::RtcSession>),
}

async fn open(dial: &Dial, i: usize, cfg: ClientCfg) -> Result<Conn, String> {
    match (dial, cfg.transport) {
        (Dial::Mux(conns), Transport::SseH2 { .. } | Transport::SseH3 { .. }) => {
            conns.open_events(i).await.map(Conn::Mux)
        }
        (Dial::Tcp(addr), Transport::Ws) => {
            handshake(*addr, cfg).await.map(|ws| Conn::Ws(Box::new(ws)))
        }
        (Dial::Tcp(addr), Transport::Sse) => crate::sse::open(*addr, cfg.read_buffer)
            .await
            .map(Conn::Sse),
        (Dial::Wt(d), Transport::Wt) => crate::transports::open_wt(d)
            .await
            .map(|s| Conn::Wt(Box::new(s))),
        (Dial::Tcp(addr), Transport::Rtc) => crate::transports::open_rtc(*addr)
            .await
            .map(|s| Conn::Rtc(Box::new(s))),
        (_, t) => Err(format!("{} clients cannot be dialled that way", t.name())),
    }
}

async fn handshake(addr: SocketAddr, cfg: ClientCfg) -> Result<Ws, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    tcp.set_nodelay(true).ok();
    let config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer)
        .write_buffer_size(0);
    let url = if cfg.json {
        format!("ws://{addr}/ws?backlog=0&format=json")
    } else {
        format!("ws://{addr}/ws?backlog=0")
    };
    let (ws, _resp) = client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| describe(&e))?;
    Ok(ws)
}

async fn read_loop(ws: &mut Ws, tally: &mut Tally<'_>, cfg: ClientCfg) -> End {
    loop {
        let msg = match ws.next().await {
            None => return End::Eof,
            Some(Err(e)) => return End::Error(describe(&e)),
            Some(Ok(m)) => m,
        };
        let data: &[u8] = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            Message::Close(f) => {
                return match f {
                    Some(f) => End::Close {
                        code: f.code.into(),
                        reason: f.reason.to_string(),
                    },
                    None => End::Close {
                        code: 1005,
                        reason: String::new(),
                    },
                };
            }
            _ => continue,
        };
        let now = tally.now();
        tally.received(data.len(), now);
        if cfg.json {
            tally.json_frame(data, now);
        } else {
            tally.line(data, now);
        }
    }
}

async fn run_client(
    mut conn: Conn,
    st: Arc<ClientStat>,
    rec: Arc<Recorder>,
    shard: usize,
    cfg: ClientCfg,
    cancel: CancellationToken,
) {
    let mut tally = Tally::new(&st, &rec, shard, cfg.record_latency);
    let reading = async {
        match &mut conn {
            Conn::Ws(ws) => read_loop(ws, &mut tally, cfg).await,
            Conn::Sse(sse) => crate::sse::read_loop(sse, &mut tally).await,
            Conn::Mux(stream) => crate::mux::read_loop(stream, &mut tally).await,
            Conn::Wt(s) => crate::transports::wt_read_loop(s, &mut tally).await,
            Conn::Rtc(s) => crate::transports::rtc_read_loop(s, &mut tally).await,
        }
    };
    let end = tokio::select! {
        _ = cancel.cancelled() => None,
        e = reading => Some(e),
    };
    tally.flush();
    st.open.store(false, Relaxed);
    if let Some(e) = end {
        let at = rec.t0.elapsed().as_secs_f64();
        *st.end.lock().unwrap() = Some((e, at));
    }
    drop(conn); // FIN; we do not wait for a close handshake when we stop.
}

/// Connects `n` clients with at most `concurrency` handshakes (or, on shared
/// connections, stream openings) in flight; each keeps reading until `cancel`.
pub async fn connect_fleet(
    dial: &Dial,
    n: usize,
    concurrency: usize,
    cfg: ClientCfg,
    rec: &Arc<Recorder>,
    cancel: &CancellationToken,
) -> Fleet {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let counters = crate::sys::listen_counters();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (tx, rec, cancel, dial) = (tx.clone(), rec.clone(), cancel.clone(), dial.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(15), open(&dial, i, cfg)).await;
            drop(dial);
            drop(permit);
            let conn = match r {
                Err(_) => {
                    let _ = tx.send(Err("handshake timeout 15 s".to_string()));
                    return;
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Ok(Ok(conn)) => conn,
            };
            let st = Arc::new(ClientStat::default());
            st.open.store(true, Relaxed);
            let _ = tx.send(Ok((st.clone(), t.elapsed())));
            drop(tx);
            run_client(conn, st, rec, i, cfg, cancel).await;
        }));
    }
    drop(tx);
    let mut hist = new_hist();
    let mut rep = ConnectReport {
        requested: n,
        ..Default::default()
    };
    let mut clients = Vec::with_capacity(n);
    while let Some(r) = rx.recv().await {
        match r {
            Ok((st, d)) => {
                hist.saturating_record(d.as_nanos() as u64);
                clients.push(st);
            }
            Err(e) => *rep.failures.entry(e).or_default() += 1,
        }
    }
    rep.secs = start.elapsed().as_secs_f64();
    let after = crate::sys::listen_counters();
    rep.listen_overflows = after.0.saturating_sub(counters.0);
    rep.syn_retrans = after.2.saturating_sub(counters.2);
    rep.connected = clients.len();
    rep.handshakes_per_s = clients.len() as f64 / rep.secs.max(1e-9);
    if !hist.is_empty() {
        rep.handshake_p50_ms = hist.value_at_quantile(0.5) as f64 / 1e6;
        rep.handshake_p99_ms = hist.value_at_quantile(0.99) as f64 / 1e6;
        rep.handshake_max_ms = hist.max() as f64 / 1e6;
    }
    Fleet {
        clients,
        handles,
        connect: rep,
    }
}

impl Fleet {
    /// Sends warm-up lines (seq=0) until every open client has seen one, so
    /// measurement starts only once the server has subscribed everyone.
    /// Returns the number of clients that never warmed up.
    pub async fn warm_up(&self, file: &std::path::Path, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let cold = self
                .clients
                .iter()
                .filter(|c| c.open.load(Relaxed) && !c.warm.load(Relaxed))
                .count();
            if cold == 0 || start.elapsed() > timeout {
                return cold;
            }
            if let Err(e) = crate::writer::append(file, b"seq=0 t=0 warm-up\n") {
                eprintln!("warm-up write failed: {e}");
                return cold;
            }
            let wait = Instant::now();
            while wait.elapsed() < Duration::from_millis(500)
                && self
                    .clients
                    .iter()
                    .any(|c| c.open.load(Relaxed) && !c.warm.load(Relaxed))
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Waits until every open client has seen `last` (or stopped), or until no
    /// client made progress for `idle`. Returns clients still incomplete.
    pub async fn drain(&self, last: u64, idle: Duration, hard: Duration) -> usize {
        let start = Instant::now();
        let mut progress = (0u64, Instant::now());
        loop {
            let mut pending = 0;
            let mut total = 0u64;
            for c in &self.clients {
                let s = c.last_seq.load(Relaxed);
                total += c.delivered.load(Relaxed);
                if c.open.load(Relaxed) && s < last {
                    pending += 1;
                }
            }
            if pending == 0 {
                return 0;
            }
            if total != progress.0 {
                progress = (total, Instant::now());
            }
            if progress.1.elapsed() > idle || start.elapsed() > hard {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn shutdown(self, cancel: &CancellationToken) {
        cancel.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for h in self.handles {
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                break; // bounded: leftover tasks are dropped with the runtime
            }
        }
    }
}

/// A client that performs the WebSocket handshake over a socket with a small
/// SO_RCVBUF and then never reads.
pub struct Stuck {
    stream: TcpStream,
    pub connected_at: Instant,
}

#[derive(Serialize, Clone, Default)]
pub struct StuckReport {
    pub rcvbuf_requested: usize,
    /// Bytes found waiting when we finally read the socket at the end.
    pub bytes_drained: u64,
    pub text_frames: u64,
    pub close: Option<String>,
    pub eof: bool,
    pub note: String,
}

pub async fn connect_stuck(addr: SocketAddr, rcvbuf: usize) -> Result<Stuck, String> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    sock.set_recv_buffer_size(rcvbuf as u32)
        .map_err(|e| e.to_string())?;
    let mut s = tokio::time::timeout(Duration::from_secs(10), sock.connect(addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET /ws?backlog=0 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Read the response head byte by byte so no frame byte is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .map_err(|_| "handshake timeout".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 || head.len() > 8192 {
            return Err("bad handshake response".into());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("no 101: {}", head.lines().next().unwrap_or("")));
    }
    Ok(Stuck {
        stream: s,
        connected_at: Instant::now(),
    })
}

impl Stuck {
    /// Reads everything the server queued for us (bounded in bytes and time)
    /// and reports whether it closed us, and how.
    pub async fn drain(mut self, rcvbuf: usize) -> StuckReport {
        let mut rep = StuckReport {
            rcvbuf_requested: rcvbuf,
            ..Default::default()
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let start = Instant::now();
        loop {
            if start.elapsed() > Duration::from_secs(30) || rep.bytes_drained > (2 << 30) {
                rep.note = "drain bound reached".into();
                break;
            }
            let n = match tokio::time::timeout(Duration::from_secs(2), self.stream.read(&mut buf))
                .await
            {
                Err(_) => {
                    rep.note = "socket still open, idle for 2 s".into();
                    break;
                }
                Ok(Err(e)) => {
                    rep.note = format!("read error: {:?}", e.kind());
                    break;
                }
                Ok(Ok(0)) => {
                    rep.eof = true;
                    break;
                }
                Ok(Ok(n)) => n,
            };
            rep.bytes_drained += n as u64;
            pending.extend_from_slice(&buf[..n]);
            let used = scan_frames(&pending, &mut rep);
            pending.drain(..used);
            if rep.close.is_some() {
                break;
            }
        }
        rep
    }
}

/// Parses unmasked server frames; returns bytes consumed.
fn scan_frames(b: &[u8], rep: &mut StuckReport) -> usize {
    let mut pos = 0;
    while b.len() - pos >= 2 {
        let op = b[pos] & 0x0f;
        let l7 = (b[pos + 1] & 0x7f) as usize;
        let (len, hdr) = match l7 {
            126 if b.len() - pos >= 4 => (u16::from_be_bytes([b[pos + 2], b[pos + 3]]) as usize, 4),
            127 if b.len() - pos >= 10 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[pos + 2..pos + 10]);
                (u64::from_be_bytes(a) as usize, 10)
            }
            126 | 127 => break,
            n => (n, 2),
        };
        if b.len() - pos < hdr + len {
            break;
        }
        let payload = &b[pos + hdr..pos + hdr + len];
        match op {
            0x1 | 0x2 => rep.text_frames += 1,
            0x8 => {
                let code = if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                };
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                rep.close = Some(format!("{code} {reason}").trim_end().to_string());
            }
            _ => {}
        }
        pos += hdr + len;
    }
    pos
}
