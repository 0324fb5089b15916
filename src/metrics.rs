//! Counters for `/metrics` and `/healthz`, owned by one object with a method
//! per event (in the manner of Vector's internal events): a stage says what
//! happened (`lines_read`, `client_admitted`, `client_ended`…), never which
//! counter to bump. One `Arc<Metrics>` is made at start-up and handed to the
//! hub, the sources (through their `Publisher`), the transports and the
//! accept loop.
//!
//! Kept and rendered by `prometheus-client` (the Prometheus text format, with
//! labels): per file (`file`, its public name) for what is read, rotated and
//! truncated; per transport (`transport`: `ws`, `sse`, `wt`, `rtc`) for clients; per
//! reason for how clients ended. Each is bumped once per batch or per client
//! event, never per line per client. The delivery delay is observed once per
//! batch a client is fed: from the moment the hub published it to the moment
//! its frames went to the client's sink. Connections and streams (an HTTP/1.1
//! request, an HTTP/2 or HTTP/3 stream) are counted per protocol version
//! (`version`: `http/1.1`, `h2`, `h3`, the ALPN names).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerLabel {
    broker: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    broker: &'static str,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// The HTTP version a connection speaks, for the per-version counts.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    H2,
    /// `--http3`: QUIC on UDP.
    H3,
}

impl HttpVersion {
    /// Every one, in the order `/healthz` lists them.
    pub const ALL: [HttpVersion; 3] = [HttpVersion::Http1, HttpVersion::H2, HttpVersion::H3];

    /// The ALPN name: `http/1.1`, `h2`, `h3`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "http/1.1",
            HttpVersion::H2 => "h2",
            HttpVersion::H3 => "h3",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

fn version(v: HttpVersion) -> VersionLabel {
    VersionLabel {
        version: v.as_str(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    transport: &'static str,
    reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    lines_read: Family<FileLabel, Counter>,
    bytes_read: Family<FileLabel, Counter>,
    rotations: Family<FileLabel, Counter>,
    truncations: Family<FileLabel, Counter>,
    lines_sent: Counter,
    bytes_sent: Counter,
    clients: Family<TransportLabel, Gauge>,
    /// Bytes written to each transport's streams, framing included (`wt`).
    stream_bytes: Family<TransportLabel, Counter>,
    clients_total: Family<TransportLabel, Counter>,
    client_ends: Family<EndLabel, Counter>,
    slow_client_drops: Counter,
    resumes: Counter,
    gaps: Counter,
    rejected_requests: Counter,
    fd_refusals: Counter,
    history_lines: Gauge,
    history_bytes: Gauge,
    delivery_delay: Histogram,
    connections: Family<VersionLabel, Gauge>,
    connections_total: Family<VersionLabel, Counter>,
    streams: Family<VersionLabel, Gauge>,
    streams_total: Family<VersionLabel, Counter>,
    stream_resets: Counter,
    published: Family<BrokerLabel, Counter>,
    not_published: Family<BrokerLabel, Counter>,
    publish_failures: Family<BrokerLabel, Counter>,
    publisher_connected: Family<TargetLabel, Gauge>,
    publisher_acked_seq: Family<TargetLabel, Gauge>,
    edge_last_seq: Gauge,
    /// `POST /rtc`: sessions the WebRTC driver holds, and UDP bytes it sent.
    rtc_sessions: Gauge,
    rtc_sent: Counter,
    /// Every transport's clients together, for `/healthz`.
    clients_now: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("clients_now", &self.clients_now)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("logtail");
        let m = Metrics {
            lines_read: Family::default(),
            bytes_read: Family::default(),
            rotations: Family::default(),
            truncations: Family::default(),
            lines_sent: Counter::default(),
            bytes_sent: Counter::default(),
            clients: Family::default(),
            stream_bytes: Family::default(),
            clients_total: Family::default(),
            client_ends: Family::default(),
            slow_client_drops: Counter::default(),
            resumes: Counter::default(),
            gaps: Counter::default(),
            rejected_requests: Counter::default(),
            fd_refusals: Counter::default(),
            history_lines: Gauge::default(),
            history_bytes: Gauge::default(),
            // 100 µs … about 6.5 s.
            delivery_delay: Histogram::new(exponential_buckets(0.000_1, 2.0, 17)),
            connections: Family::default(),
            connections_total: Family::default(),
            streams: Family::default(),
            streams_total: Family::default(),
            stream_resets: Counter::default(),
            published: Family::default(),
            not_published: Family::default(),
            publish_failures: Family::default(),
            publisher_connected: Family::default(),
            publisher_acked_seq: Family::default(),
            edge_last_seq: Gauge::default(),
            rtc_sessions: Gauge::default(),
            rtc_sent: Counter::default(),
            clients_now: AtomicU64::new(0),
            registry: Registry::default(),
        };
        registry.register(
            "lines_read",
            "Lines read from each followed file (history at start-up included)",
            m.lines_read.clone(),
        );
        registry.register_with_unit(
            "read",
            "Bytes read from each followed file, newlines included",
            Unit::Bytes,
            m.bytes_read.clone(),
        );
        registry.register(
            "rotations",
            "Rotations detected, per file",
            m.rotations.clone(),
        );
        registry.register(
            "truncations",
            "Truncations detected, per file",
            m.truncations.clone(),
        );
        registry.register(
            "lines_sent",
            "Lines sent to clients, summed over clients",
            m.lines_sent.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes of line text sent to clients, summed over clients",
            Unit::Bytes,
            m.bytes_sent.clone(),
        );
        registry.register(
            "clients",
            "Connected streaming clients, per transport",
            m.clients.clone(),
        );
        registry.register_with_unit(
            "stream_sent",
            "Bytes written to the clients' streams, framing included, per transport (wt)",
            Unit::Bytes,
            m.stream_bytes.clone(),
        );
        registry.register(
            "clients",
            "Streaming clients accepted since start, per transport",
            m.clients_total.clone(),
        );
        registry.register(
            "client_ends",
            "Streams ended, per transport and reason",
            m.client_ends.clone(),
        );
        registry.register(
            "slow_client_drops",
            "Clients closed for falling too far behind or not reading",
            m.slow_client_drops.clone(),
        );
        registry.register(
            "resumes",
            "Streams that started with since= or Last-Event-ID",
            m.resumes.clone(),
        );
        registry.register(
            "gaps",
            "Gap events sent (lines a client asked for that were gone)",
            m.gaps.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused (origin, token, limits, bad parameters)",
            m.rejected_requests.clone(),
        );
        registry.register(
            "fd_refusals",
            "Connections answered 503 at accept because file descriptors ran out",
            m.fd_refusals.clone(),
        );
        registry.register(
            "history_lines",
            "Lines held in the in-memory history",
            m.history_lines.clone(),
        );
        registry.register_with_unit(
            "history",
            "Accounting bytes held in the in-memory history",
            Unit::Bytes,
            m.history_bytes.clone(),
        );
        registry.register_with_unit(
            "delivery_delay",
            "From a batch of lines published to its frames handed to a client's socket",
            Unit::Seconds,
            m.delivery_delay.clone(),
        );
        registry.register(
            "connections",
            "Open client connections, per HTTP version",
            m.connections.clone(),
        );
        registry.register(
            "connections",
            "Client connections served since start, per HTTP version",
            m.connections_total.clone(),
        );
        registry.register(
            "streams",
            "Requests being served (an HTTP/2 or HTTP/3 stream, an HTTP/1.1 request; a \
             WebSocket until it closes), per HTTP version",
            m.streams.clone(),
        );
        registry.register(
            "streams",
            "Requests received since start, per HTTP version",
            m.streams_total.clone(),
        );
        registry.register(
            "stream_resets",
            "HTTP/2 and HTTP/3 streams reset because their client took nothing for too long",
            m.stream_resets.clone(),
        );
        registry.register(
            "published_lines",
            "Lines a broker acknowledged (--publish), per broker (nats, mqtt, amqp)",
            m.published.clone(),
        );
        registry.register(
            "unpublished_lines",
            "Lines that could not be published: no longer readable when their turn came, per broker",
            m.not_published.clone(),
        );
        registry.register(
            "publish_failures",
            "Broker connections lost or refused, per broker",
            m.publish_failures.clone(),
        );
        registry.register(
            "publisher_connected",
            "1 while a --publish broker is connected, per broker and target",
            m.publisher_connected.clone(),
        );
        registry.register(
            "publisher_acked_seq",
            "The seq of the last line a --publish broker acknowledged (lag: logtail's seq minus this)",
            m.publisher_acked_seq.clone(),
        );
        registry.register(
            "edge_consumed_seq",
            "An edge (--from): the stream sequence of the last message its consumer handed on",
            m.edge_last_seq.clone(),
        );
        registry.register(
            "rtc_sessions",
            "WebRTC sessions held (connecting or open); how they ended: client_ends{transport=\"rtc\"}",
            m.rtc_sessions.clone(),
        );
        registry.register_with_unit(
            "rtc_sent",
            "UDP bytes sent by WebRTC (STUN, DTLS, SCTP: everything on the wire)",
            Unit::Bytes,
            m.rtc_sent.clone(),
        );
        Metrics { registry, ..m }
    }
}

fn file(name: &str) -> FileLabel {
    FileLabel {
        file: name.to_string(),
    }
}

impl Metrics {
    /// `lines` lines were read from file `name`.
    pub fn lines_read(&self, name: &str, lines: u64) {
        self.lines_read.get_or_create(&file(name)).inc_by(lines);
    }

    /// `bytes` bytes were read from file `name` (newlines and all).
    pub fn bytes_read(&self, name: &str, bytes: u64) {
        self.bytes_read.get_or_create(&file(name)).inc_by(bytes);
    }

    pub fn rotation(&self, name: &str) {
        self.rotations.get_or_create(&file(name)).inc();
    }

    pub fn truncation(&self, name: &str) {
        self.truncations.get_or_create(&file(name)).inc();
    }

    /// File `name` is followed no more: its series go.
    pub fn file_removed(&self, name: &str) {
        let label = file(name);
        self.lines_read.remove(&label);
        self.bytes_read.remove(&label);
        self.rotations.remove(&label);
        self.truncations.remove(&label);
    }

    pub fn client_admitted(&self, transport: &'static str) {
        let label = TransportLabel { transport };
        self.clients.get_or_create(&label).inc();
        self.clients_total.get_or_create(&label).inc();
        self.clients_now.fetch_add(1, Ordering::Relaxed);
    }

    pub fn client_left(&self, transport: &'static str) {
        self.clients
            .get_or_create(&TransportLabel { transport })
            .dec();
        self.clients_now.fetch_sub(1, Ordering::Relaxed);
    }

    /// A stream ended, for `reason` (see `pump::End::reason`).
    pub fn client_ended(&self, transport: &'static str, reason: &'static str) {
        self.client_ends
            .get_or_create(&EndLabel { transport, reason })
            .inc();
    }

    /// `n` bytes (framing included) went out on a `transport` stream.
    pub fn stream_bytes_sent(&self, transport: &'static str, n: u64) {
        self.stream_bytes
            .get_or_create(&TransportLabel { transport })
            .inc_by(n);
    }

    /// `transport`'s connected clients and the bytes written to its
    /// streams, for `/healthz`.
    pub fn transport_now(&self, transport: &'static str) -> (i64, u64) {
        let label = TransportLabel { transport };
        (
            self.clients.get_or_create(&label).get(),
            self.stream_bytes.get_or_create(&label).get(),
        )
    }

    pub fn clients_now(&self) -> u64 {
        self.clients_now.load(Ordering::Relaxed)
    }

    /// A connection speaking `v` is being served (until [`connection_closed`](Self::connection_closed)).
    pub fn connection_opened(&self, v: HttpVersion) {
        self.connections.get_or_create(&version(v)).inc();
        self.connections_total.get_or_create(&version(v)).inc();
    }

    pub fn connection_closed(&self, v: HttpVersion) {
        self.connections.get_or_create(&version(v)).dec();
    }

    /// A request (an HTTP/2 stream) over `v` began (until [`stream_closed`](Self::stream_closed)).
    pub fn stream_opened(&self, v: HttpVersion) {
        self.streams.get_or_create(&version(v)).inc();
        self.streams_total.get_or_create(&version(v)).inc();
    }

    pub fn stream_closed(&self, v: HttpVersion) {
        self.streams.get_or_create(&version(v)).dec();
    }

    /// A broker acknowledged `n` lines.
    pub fn lines_published(&self, broker: &'static str, n: u64) {
        self.published
            .get_or_create(&BrokerLabel { broker })
            .inc_by(n);
    }

    /// `n` lines could not be published to a broker (no longer readable).
    pub fn lines_not_published(&self, broker: &'static str, n: u64) {
        self.not_published
            .get_or_create(&BrokerLabel { broker })
            .inc_by(n);
    }

    /// The gauges of one publisher: connected (0/1) and the last seq acknowledged.
    pub fn publisher_gauges(&self, broker: &'static str, target: &str) -> (Gauge, Gauge) {
        let label = TargetLabel {
            broker,
            target: target.to_string(),
        };
        (
            self.publisher_connected.get_or_create(&label).clone(),
            self.publisher_acked_seq.get_or_create(&label).clone(),
        )
    }

    /// An edge's consumer handed on the message at stream sequence `seq`.
    pub fn edge_consumed(&self, seq: u64) {
        self.edge_last_seq
            .set(i64::try_from(seq).unwrap_or(i64::MAX));
    }

    /// The WebRTC driver took a session (until [`rtc_session_dropped`](Self::rtc_session_dropped)).
    pub fn rtc_session_added(&self) {
        self.rtc_sessions.inc();
    }

    pub fn rtc_session_dropped(&self) {
        self.rtc_sessions.dec();
    }

    pub fn rtc_sessions_now(&self) -> i64 {
        self.rtc_sessions.get()
    }

    /// The WebRTC driver sent a datagram of `bytes`.
    pub fn rtc_sent(&self, bytes: u64) {
        self.rtc_sent.inc_by(bytes);
    }

    pub fn rtc_sent_bytes(&self) -> u64 {
        self.rtc_sent.get()
    }

    /// A broker connection was lost or refused.
    pub fn publish_failed(&self, broker: &'static str) {
        self.publish_failures
            .get_or_create(&BrokerLabel { broker })
            .inc();
    }

    /// An HTTP/2 stream was reset: its client took nothing within its limit.
    pub fn stream_reset(&self) {
        self.stream_resets.inc();
    }

    /// Open connections speaking `v`, for `/healthz`.
    pub fn connections_now(&self, v: HttpVersion) -> i64 {
        self.connections.get_or_create(&version(v)).get()
    }

    /// Requests over `v` being served, for `/healthz`.
    pub fn streams_now(&self, v: HttpVersion) -> i64 {
        self.streams.get_or_create(&version(v)).get()
    }

    pub fn request_rejected(&self) {
        self.rejected_requests.inc();
    }

    pub fn fd_refusal(&self) {
        self.fd_refusals.inc();
    }

    pub fn slow_client_closed(&self) {
        self.slow_client_drops.inc();
    }

    pub fn resumed(&self) {
        self.resumes.inc();
    }

    pub fn gap_sent(&self) {
        self.gaps.inc();
    }

    pub fn lines_sent(&self, lines: u64, bytes: u64) {
        self.lines_sent.inc_by(lines);
        self.bytes_sent.inc_by(bytes);
    }

    /// A batch published `delay` ago was just fed to a client.
    pub fn delivered_after(&self, delay: Duration) {
        self.delivery_delay.observe(delay.as_secs_f64());
    }

    /// The Prometheus text exposition, with the history's size as of now.
    pub fn render(&self, history_lines: usize, history_bytes: u64) -> String {
        self.history_lines
            .set(i64::try_from(history_lines).unwrap_or(i64::MAX));
        self.history_bytes
            .set(i64::try_from(history_bytes).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series_with_conventional_names() {
        let m = Metrics::default();
        m.lines_read("app.log", 3);
        m.bytes_read("app.log", 12);
        m.client_admitted("ws");
        m.client_admitted("sse");
        m.client_left("sse");
        m.client_ended("sse", "closed by client");
        m.delivered_after(Duration::from_millis(1));
        m.connection_opened(HttpVersion::H2);
        m.connection_opened(HttpVersion::Http1);
        m.connection_closed(HttpVersion::Http1);
        m.stream_opened(HttpVersion::H2);
        let text = m.render(3, 99);
        for line in [
            "logtail_lines_read_total{file=\"app.log\"} 3",
            "logtail_read_bytes_total{file=\"app.log\"} 12",
            "logtail_clients{transport=\"ws\"} 1",
            "logtail_clients{transport=\"sse\"} 0",
            "logtail_clients_total{transport=\"sse\"} 1",
            "logtail_client_ends_total{transport=\"sse\",reason=\"closed by client\"} 1",
            "logtail_history_lines 3",
            "logtail_history_bytes 99",
            "logtail_delivery_delay_seconds_count 1",
            "logtail_connections{version=\"h2\"} 1",
            "logtail_connections{version=\"http/1.1\"} 0",
            "logtail_connections_total{version=\"http/1.1\"} 1",
            "logtail_streams{version=\"h2\"} 1",
            "logtail_streams_total{version=\"h2\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert_eq!(m.clients_now(), 1);
        assert_eq!(m.connections_now(HttpVersion::H2), 1);
        assert_eq!(m.streams_now(HttpVersion::Http1), 0);
        m.file_removed("app.log");
        assert!(!m.render(0, 0).contains("app.log"));
    }
}
