//! Counters for `/metrics` and `/healthz`: one named field per thing counted.
//!
//! Plain relaxed atomics: they are bumped once per batch or per client event,
//! never per line per client, so they cost nothing measurable on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub lines_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub clients: AtomicU64,
    pub clients_total: AtomicU64,
    pub slow_client_drops: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    pub gaps: AtomicU64,
    pub rejected_requests: AtomicU64,
    pub fd_refusals: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
