//! Counters for `/metrics` and `/healthz`, owned by one object with a method
//! per event (in the manner of Vector's internal events): a stage says what
//! happened (`lines_read`, `client_admitted`, `slow_client_closed`…), never
//! which counter to bump. One `Arc<Metrics>` is made at start-up and handed
//! to the hub, the transports and the accept loop.
//!
//! Plain relaxed atomics: they are bumped once per batch or per client event,
//! never per line per client, so they cost nothing measurable on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    lines_read: AtomicU64,
    bytes_read: AtomicU64,
    lines_sent: AtomicU64,
    bytes_sent: AtomicU64,
    clients: AtomicU64,
    clients_total: AtomicU64,
    slow_client_drops: AtomicU64,
    rotations: AtomicU64,
    truncations: AtomicU64,
    gaps: AtomicU64,
    rejected_requests: AtomicU64,
    fd_refusals: AtomicU64,
}

impl Metrics {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A source published `lines` lines holding `bytes` bytes of text.
    pub fn lines_read(&self, lines: u64, bytes: u64) {
        Self::add(&self.lines_read, lines);
        Self::add(&self.bytes_read, bytes);
    }

    /// A followed file was rotated (the name now names another file).
    pub fn rotation(&self) {
        Self::add(&self.rotations, 1);
    }

    /// A followed file was truncated (or rewritten) under us.
    pub fn truncation(&self) {
        Self::add(&self.truncations, 1);
    }

    /// A streaming client took a slot; [`client_left`](Self::client_left) when it goes.
    pub fn client_admitted(&self) {
        Self::add(&self.clients, 1);
        Self::add(&self.clients_total, 1);
    }

    /// A streaming client's slot was given back.
    pub fn client_left(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Streaming clients connected now.
    pub fn clients_now(&self) -> u64 {
        Self::get(&self.clients)
    }

    /// A request was refused before streaming (Host, Origin, token, limits, parameters).
    pub fn request_rejected(&self) {
        Self::add(&self.rejected_requests, 1);
    }

    /// A connection was answered 503 at accept for want of file descriptors.
    pub fn fd_refusal(&self) {
        Self::add(&self.fd_refusals, 1);
    }

    /// A client was closed as too slow (behind, or its socket stuck).
    pub fn slow_client_closed(&self) {
        Self::add(&self.slow_client_drops, 1);
    }

    /// A client was told that lines it asked for are gone.
    pub fn gap_sent(&self) {
        Self::add(&self.gaps, 1);
    }

    /// `lines` lines holding `bytes` bytes of text were sent to one client.
    pub fn lines_sent(&self, lines: u64, bytes: u64) {
        Self::add(&self.lines_sent, lines);
        Self::add(&self.bytes_sent, bytes);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, history_lines: usize, history_bytes: u64) -> String {
        let rows: [(&str, &str, &str, u64); 14] = [
            (
                "logtail_lines_read_total",
                "counter",
                "Lines read from followed files.",
                Self::get(&self.lines_read),
            ),
            (
                "logtail_bytes_read_total",
                "counter",
                "Bytes of line text read from followed files.",
                Self::get(&self.bytes_read),
            ),
            (
                "logtail_lines_sent_total",
                "counter",
                "Lines sent to clients, summed over clients.",
                Self::get(&self.lines_sent),
            ),
            (
                "logtail_bytes_sent_total",
                "counter",
                "Bytes of line text sent to clients, summed over clients.",
                Self::get(&self.bytes_sent),
            ),
            (
                "logtail_clients",
                "gauge",
                "Connected streaming clients (WebSocket and SSE).",
                Self::get(&self.clients),
            ),
            (
                "logtail_clients_total",
                "counter",
                "Streaming clients accepted since start.",
                Self::get(&self.clients_total),
            ),
            (
                "logtail_slow_client_drops_total",
                "counter",
                "Clients closed for falling too far behind or not reading.",
                Self::get(&self.slow_client_drops),
            ),
            (
                "logtail_rotations_total",
                "counter",
                "Rotations detected.",
                Self::get(&self.rotations),
            ),
            (
                "logtail_truncations_total",
                "counter",
                "Truncations detected.",
                Self::get(&self.truncations),
            ),
            (
                "logtail_gaps_total",
                "counter",
                "Gap events sent (lines a client asked for that were gone).",
                Self::get(&self.gaps),
            ),
            (
                "logtail_rejected_requests_total",
                "counter",
                "Requests refused (origin, token, limits, bad parameters).",
                Self::get(&self.rejected_requests),
            ),
            (
                "logtail_fd_refusals_total",
                "counter",
                "Connections answered 503 at accept because file descriptors ran out.",
                Self::get(&self.fd_refusals),
            ),
            (
                "logtail_history_lines",
                "gauge",
                "Lines held in the in-memory history.",
                history_lines as u64,
            ),
            (
                "logtail_history_bytes",
                "gauge",
                "Accounting bytes held in the in-memory history.",
                history_bytes,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
