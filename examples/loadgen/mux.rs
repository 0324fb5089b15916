//! SSE over multiplexed connections (issue 14): `N` HTTP/2 or HTTP/3
//! connections ([`Conns`]), the fleet's `GET /events?backlog=0` streams
//! spread over them (client `i` on connection `i mod N`).
//!
//! - HTTP/2: hyper's client (`client::conn::http2`) over cleartext TCP with
//!   prior knowledge (h2c), as `tests/harness/h2.rs` does; requests carry
//!   `:authority` and no `Host`.
//! - HTTP/3: quinn + h3 (h3-quinn), one client endpoint (UDP socket) per
//!   connection, rustls (ring) trusting only the phase's self-signed
//!   certificate, ALPN `h3`, as `tests/harness/h3.rs` does.
//!
//! A stream's DATA frames are the event stream as it is (no transfer coding):
//! they go to the same parser ([`EventStream::plain`]) and the same
//! [`Tally`] as the HTTP/1.1 clients' bodies (`sse.rs`). Every connection's
//! driver runs on a task of its own until [`Conns::close`]; one that ends
//! before is recorded ([`ConnsReport::ended_early`]) and its streams end
//! with the error hyper or h3 gives them. Every wait is bounded in time;
//! nothing the server sends is unwrapped.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Buf, Bytes};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clients::{End, Tally};
use crate::sse::EventStream;

/// Which multiplexed protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/2, cleartext, prior knowledge.
    H2,
    /// HTTP/3 over QUIC (always TLS 1.3).
    H3,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::H2 => "h2",
            Proto::H3 => "h3",
        }
    }
}

type H2Send = hyper::client::conn::http2::SendRequest<Body>;
type H3Send = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type H3Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

enum Senders {
    H2(Vec<H2Send>),
    H3 {
        send: Vec<H3Send>,
        /// Kept open until [`Conns::close`] (each connection's UDP socket).
        endpoints: Vec<quinn::Endpoint>,
    },
}

/// How the connections came up, and which ended before we closed them.
#[derive(Serialize, Clone, Default)]
pub struct ConnsReport {
    pub protocol: &'static str,
    pub requested: usize,
    pub connected: usize,
    pub failures: BTreeMap<String, usize>,
    /// TCP + HTTP/2 preface, or QUIC + TLS + HTTP/3 SETTINGS, per connection.
    pub setup_ms_max: f64,
    pub setup_ms_total: f64,
    /// Connections whose driver ended before [`Conns::close`], with why.
    pub ended_early: Vec<String>,
}

/// The fleet's shared connections.
pub struct Conns {
    authority: String,
    senders: Senders,
    drivers: Mutex<Vec<JoinHandle<()>>>,
    ended: Arc<Mutex<Vec<String>>>,
    cancel: CancellationToken,
    pub report: ConnsReport,
}

/// One `/events` response being read.
pub enum MuxStream {
    H2(Incoming),
    H3(Box<H3Stream>),
}

const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

fn short(e: impl std::fmt::Display) -> String {
    e.to_string().chars().take(100).collect()
}

/// The rustls client configuration (ring, TLS 1.3) for HTTP/3: trusts only `cert`, offers `h3`.
fn h3_tls(cert: CertificateDer<'static>) -> Result<quinn::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(short)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(short)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).map_err(short)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

impl Conns {
    /// Opens `n` connections to `addr`, one after the other, each within
    /// [`SETUP_TIMEOUT`]; failures are counted in the report (streams then go
    /// to the connections that did come up). HTTP/3 needs the certificate.
    pub async fn connect(
        proto: Proto,
        addr: SocketAddr,
        n: usize,
        cert: Option<CertificateDer<'static>>,
    ) -> Conns {
        let cancel = CancellationToken::new();
        let ended: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut report = ConnsReport {
            protocol: proto.name(),
            requested: n,
            ..Default::default()
        };
        let mut drivers = Vec::with_capacity(n);
        let mut senders = match proto {
            Proto::H2 => Senders::H2(Vec::with_capacity(n)),
            Proto::H3 => Senders::H3 {
                send: Vec::with_capacity(n),
                endpoints: Vec::with_capacity(n),
            },
        };
        let h3_config = match (proto, cert) {
            (Proto::H3, Some(cert)) => match h3_tls(cert) {
                Ok(c) => Some(c),
                Err(e) => {
                    *report
                        .failures
                        .entry(format!("tls config: {e}"))
                        .or_default() += n;
                    None
                }
            },
            (Proto::H3, None) => {
                *report
                    .failures
                    .entry("HTTP/3 needs the server's certificate".into())
                    .or_default() += n;
                None
            }
            (Proto::H2, _) => None,
        };
        for i in 0..n {
            let t = Instant::now();
            let r = match (&mut senders, &h3_config) {
                (Senders::H2(send), _) => {
                    tokio::time::timeout(SETUP_TIMEOUT, connect_h2(addr, i, &cancel, &ended))
                        .await
                        .map(|r| {
                            r.map(|(s, d)| {
                                send.push(s);
                                d
                            })
                        })
                }
                (Senders::H3 { send, endpoints }, Some(config)) => tokio::time::timeout(
                    SETUP_TIMEOUT,
                    connect_h3(addr, i, config.clone(), &cancel, &ended),
                )
                .await
                .map(|r| {
                    r.map(|(s, e, d)| {
                        send.push(s);
                        endpoints.push(e);
                        d
                    })
                }),
                (Senders::H3 { .. }, None) => break,
            };
            match r {
                Ok(Ok(driver)) => {
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    report.setup_ms_max = report.setup_ms_max.max(ms);
                    report.setup_ms_total += ms;
                    report.connected += 1;
                    drivers.push(driver);
                }
                Ok(Err(e)) => *report.failures.entry(e).or_default() += 1,
                Err(_) => {
                    *report
                        .failures
                        .entry(format!("setup timeout {SETUP_TIMEOUT:?}"))
                        .or_default() += 1
                }
            }
        }
        Conns {
            authority: addr.to_string(),
            senders,
            drivers: Mutex::new(drivers),
            ended,
            cancel,
            report,
        }
    }

    /// How many connections are up (were set up; some may have ended since).
    pub fn len(&self) -> usize {
        match &self.senders {
            Senders::H2(s) => s.len(),
            Senders::H3 { send, .. } => send.len(),
        }
    }

    /// `GET path` on connection `i mod N`: the response's status, headers and
    /// the body left to read. The caller bounds it in time.
    async fn get(
        &self,
        i: usize,
        path: &str,
        accept: &str,
    ) -> Result<(StatusCode, HeaderMap, MuxStream), String> {
        let n = self.len();
        if n == 0 {
            return Err("no connection is up".into());
        }
        match &self.senders {
            Senders::H2(send) => {
                let mut send = send[i % n].clone();
                let req = Request::get(format!("http://{}{path}", self.authority))
                    .header("accept", accept)
                    .header("cache-control", "no-cache")
                    .body(Body::empty())
                    .map_err(short)?;
                send.ready()
                    .await
                    .map_err(|e| format!("h2 ready: {}", short(e)))?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("h2: {}", short(e)))?;
                let (parts, body) = resp.into_parts();
                Ok((parts.status, parts.headers, MuxStream::H2(body)))
            }
            Senders::H3 { send, .. } => {
                let mut send = send[i % n].clone();
                let req = Request::get(format!("https://{}{path}", self.authority))
                    .header("accept", accept)
                    .header("cache-control", "no-cache")
                    .body(())
                    .map_err(short)?;
                let mut stream = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("h3: {}", short(e)))?;
                stream
                    .finish()
                    .await
                    .map_err(|e| format!("h3 finish: {}", short(e)))?;
                let head = stream
                    .recv_response()
                    .await
                    .map_err(|e| format!("h3 response: {}", short(e)))?;
                Ok((
                    head.status(),
                    head.headers().clone(),
                    MuxStream::H3(Box::new(stream)),
                ))
            }
        }
    }

    /// Client `i`'s `/events?backlog=0` stream (on connection `i mod N`); only
    /// a `200 text/event-stream` is accepted (`HTTP 503` etc. otherwise, as
    /// the HTTP/1.1 clients report it).
    pub async fn open_events(&self, i: usize) -> Result<MuxStream, String> {
        let (status, headers, body) = self
            .get(i, "/events?backlog=0", "text/event-stream")
            .await?;
        if status != StatusCode::OK {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let sse = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !sse {
            return Err("200 but not text/event-stream".into());
        }
        Ok(body)
    }

    /// `GET /healthz` on the first connection, parsed (at most 1 MiB, within `timeout`).
    pub async fn healthz(&self, timeout: Duration) -> Result<serde_json::Value, String> {
        let fetch = async {
            let (status, _, mut body) = self.get(0, "/healthz", "application/json").await?;
            if status != StatusCode::OK {
                return Err(format!("/healthz: HTTP {}", status.as_u16()));
            }
            let mut text = Vec::new();
            while let Some(chunk) = next_data(&mut body).await? {
                text.extend_from_slice(&chunk);
                if text.len() > 1 << 20 {
                    return Err("/healthz over 1 MiB".into());
                }
            }
            serde_json::from_slice(&text).map_err(|e| format!("/healthz: {}", short(e)))
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| format!("/healthz: no answer within {timeout:?}"))?
    }

    /// Ends every connection (cancels their drivers; HTTP/3: closes the
    /// endpoints), bounded in time; returns the report with the connections
    /// that had ended before.
    pub async fn close(&self) -> ConnsReport {
        let mut report = self.report.clone();
        report.ended_early = self.ended.lock().map(|e| e.clone()).unwrap_or_default();
        self.cancel.cancel();
        if let Senders::H3 { endpoints, .. } = &self.senders {
            for e in endpoints {
                e.close(0u32.into(), b"done");
            }
        }
        let drivers: Vec<_> = self
            .drivers
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for d in drivers {
            if tokio::time::timeout_at(deadline, d).await.is_err() {
                break; // bounded: what is left goes with the runtime
            }
        }
        report
    }
}

async fn connect_h2(
    addr: SocketAddr,
    i: usize,
    cancel: &CancellationToken,
    ended: &Arc<Mutex<Vec<String>>>,
) -> Result<(H2Send, JoinHandle<()>), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    tcp.set_nodelay(true).ok();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("h2 handshake: {}", short(e)))?;
    let (cancel, ended) = (cancel.clone(), ended.clone());
    let driver = tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = conn => {
                let why = match r {
                    Ok(()) => "closed".to_string(),
                    Err(e) => short(e),
                };
                if let Ok(mut e) = ended.lock() {
                    e.push(format!("h2 connection {i}: {why}"));
                }
            }
        }
    });
    Ok((send, driver))
}

async fn connect_h3(
    addr: SocketAddr,
    i: usize,
    config: quinn::ClientConfig,
    cancel: &CancellationToken,
    ended: &Arc<Mutex<Vec<String>>>,
) -> Result<(H3Send, quinn::Endpoint, JoinHandle<()>), String> {
    let local: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let mut endpoint = quinn::Endpoint::client(local).map_err(|e| format!("udp: {}", short(e)))?;
    endpoint.set_default_client_config(config);
    let quic = endpoint
        .connect(addr, "localhost")
        .map_err(|e| format!("quic: {}", short(e)))?
        .await
        .map_err(|e| format!("quic handshake: {}", short(e)))?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic))
        .await
        .map_err(|e| format!("h3 setup: {}", short(e)))?;
    let (cancel, ended) = (cancel.clone(), ended.clone());
    let driver = tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            why = poll_fn(|cx| driver.poll_close(cx)) => {
                if let Ok(mut e) = ended.lock() {
                    e.push(format!("h3 connection {i}: {}", short(why)));
                }
            }
        }
    });
    Ok((send, endpoint, driver))
}

/// The next DATA of a response body; `None` at its end.
async fn next_data(s: &mut MuxStream) -> Result<Option<Bytes>, String> {
    match s {
        MuxStream::H2(body) => loop {
            // Bounded by the body: trailers (no data) come at most once, then the end.
            match poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("h2: {}", short(e))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        },
        MuxStream::H3(stream) => match stream.recv_data().await {
            Ok(None) => Ok(None),
            Err(e) => Err(format!("h3: {}", short(e))),
            Ok(Some(mut buf)) => Ok(Some(buf.copy_to_bytes(buf.remaining()))),
        },
    }
}

/// Reads one `/events` stream until the server ends it (or the caller stops
/// polling): DATA frames into the shared event-stream parser.
pub async fn read_loop(s: &mut MuxStream, tally: &mut Tally<'_>) -> End {
    let mut events = EventStream::plain();
    loop {
        match next_data(s).await {
            Ok(None) => return End::BodyDone,
            Err(e) => return End::Error(e),
            Ok(Some(data)) => {
                if let Some(end) = events.feed(&data, tally) {
                    return end;
                }
            }
        }
    }
}
