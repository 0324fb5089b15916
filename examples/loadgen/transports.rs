//! WebTransport and WebRTC clients (issue 16): the `ws-json-100`, `wt-100`
//! and `rtc-100` phases (`transports` runs the three) read the same JSON
//! frames (`/ws?format=json&backlog=0`, `/wt?backlog=0`, `POST
//! /rtc?backlog=0`) into the same [`Tally`] as every other client, so the
//! delivery delay (the line's write time to its receipt), loss, repeats and
//! order are measured alike; each JSON frame's server `seq` must also follow
//! the previous one's ([`Tally::json_frame`]).
//!
//! - WebTransport: one `wtransport` endpoint (a UDP socket on 127.0.0.1) and
//!   QUIC connection per session, trusting only the certificate hash the
//!   server's `GET /wt-cert-hash` gives (as a browser's
//!   `serverCertificateHashes`); the session's one server uni stream is
//!   newline-delimited JSON frames.
//! - WebRTC: a str0m peer per session on its own loopback UDP socket, as a
//!   browser's `RTCPeerConnection`: it creates the `logs` data channel,
//!   posts its offer (non-trickle, one host candidate) to `/rtc?backlog=0`
//!   over HTTP/1.1, applies the answer and drives ICE, DTLS and SCTP in its
//!   client task; one JSON frame per data-channel message. Its crypto is the
//!   server's own pure-Rust provider (`logtail_ws::transport::rtc::crypto`).
//!
//! Every wait is bounded (the fleet's 15 s handshake timeout covers the
//! session set-up; reading ends when the fleet is cancelled).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use wtransport::endpoint::ConnectOptions;
use wtransport::error::ConnectionError;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream};

use crate::clients::{End, Tally};

fn short(e: impl std::fmt::Display) -> String {
    e.to_string().chars().take(100).collect()
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    }
}

/// Where WebTransport sessions go, and the certificate hash they trust.
pub struct WtDial {
    pub addr: SocketAddr,
    pub hash: [u8; 32],
}

impl WtDial {
    /// `GET /wt-cert-hash` (plain HTTP/1.1 over TCP): 64 hex digits.
    pub async fn fetch(addr: SocketAddr) -> Result<WtDial, String> {
        let (status, body) = tokio::task::spawn_blocking(move || {
            crate::sys::http_get(addr, "/wt-cert-hash", Duration::from_secs(5))
        })
        .await
        .map_err(short)??;
        if status != 200 {
            return Err(format!("/wt-cert-hash: HTTP {status}"));
        }
        let hex = body.trim();
        if hex.len() != 64 {
            return Err(format!("/wt-cert-hash: {hex:?} is not 64 hex digits"));
        }
        let mut hash = [0u8; 32];
        for (i, b) in hash.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("/wt-cert-hash: {}", short(e)))?;
        }
        Ok(WtDial { addr, hash })
    }
}

/// One open WebTransport session and its server stream.
pub struct WtSession {
    conn: Connection,
    stream: RecvStream,
    _endpoint: Endpoint<wtransport::endpoint::endpoint_side::Client>,
}

/// A session to `/wt?backlog=0` with its server stream accepted (the caller bounds it in time).
pub async fn open_wt(d: &WtDial) -> Result<WtSession, String> {
    let config = ClientConfig::builder()
        .with_bind_address(loopback(d.addr))
        .with_server_certificate_hashes([Sha256Digest::new(d.hash)])
        .build();
    let endpoint = Endpoint::client(config).map_err(|e| format!("wt endpoint: {}", short(e)))?;
    let url = format!("https://{}/wt?backlog=0", d.addr);
    let options = ConnectOptions::builder(url)
        .add_header("origin", format!("http://{}", d.addr))
        .build();
    let conn = endpoint
        .connect(options)
        .await
        .map_err(|e| format!("wt connect: {}", short(e)))?;
    let stream = conn
        .accept_uni()
        .await
        .map_err(|e| format!("wt stream: {}", short(e)))?;
    Ok(WtSession {
        conn,
        stream,
        _endpoint: endpoint,
    })
}

fn wt_end(e: ConnectionError) -> End {
    match e {
        ConnectionError::ApplicationClosed(c) => End::Close {
            code: u16::try_from(c.code().into_inner()).unwrap_or(u16::MAX),
            reason: String::from_utf8_lossy(c.reason()).into_owned(),
        },
        other => End::Error(format!("wt: {}", short(other))),
    }
}

/// Reads the server stream until it ends: newline-delimited JSON frames.
pub async fn wt_read_loop(s: &mut WtSession, tally: &mut Tally<'_>) -> End {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let n = match s.stream.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => {
                // The stream's end or reset: the session's close says why (bounded).
                return match tokio::time::timeout(Duration::from_secs(2), s.conn.closed()).await {
                    Ok(e) => wt_end(e),
                    Err(_) => End::BodyDone,
                };
            }
        };
        let now = tally.now();
        tally.received(n, now);
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(at) = memchr::memchr(b'\n', &pending[start..]) {
            tally.json_frame(&pending[start..start + at], now);
            start += at + 1;
        }
        pending.drain(..start);
    }
}

/// One WebRTC session: its `Rtc` (the `logs` channel open) and socket.
pub struct RtcSession {
    rtc: Rtc,
    socket: UdpSocket,
}

/// `POST path` with an SDP body over HTTP/1.1 (`Connection: close`): status and body.
async fn post_sdp(addr: SocketAddr, path: &str, sdp: &str) -> Result<(u16, String), String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    tcp.set_nodelay(true).ok();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sdp}",
        sdp.len()
    );
    tcp.write_all(req.as_bytes()).await.map_err(short)?;
    let mut resp = Vec::new();
    (&mut tcp)
        .take(1 << 20)
        .read_to_end(&mut resp)
        .await
        .map_err(short)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "rtc: no response head".to_string())?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("rtc: bad status line {:?}", head.lines().next()))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "rtc: bad chunk".to_string())?;
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A peer whose `logs` channel to `POST /rtc?backlog=0` is open (the caller bounds it in time).
pub async fn open_rtc(addr: SocketAddr) -> Result<RtcSession, String> {
    let socket = UdpSocket::bind(loopback(addr))
        .await
        .map_err(|e| format!("udp: {}", short(e)))?;
    let local = socket.local_addr().map_err(short)?;
    let mut rtc = Rtc::builder()
        .set_crypto_provider(logtail_ws::transport::rtc::crypto::provider())
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host(local, "udp").map_err(|e| format!("candidate: {}", short(e)))?,
    );
    let mut api = rtc.sdp_api();
    api.add_channel("logs".to_string());
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| "str0m made no offer".to_string())?;
    let (status, answer) = post_sdp(addr, "/rtc?backlog=0", &offer.to_sdp_string()).await?;
    if status != 201 {
        return Err(format!("HTTP {status}"));
    }
    let answer =
        SdpAnswer::from_sdp_string(&answer).map_err(|e| format!("answer: {}", short(e)))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("answer: {}", short(e)))?;
    let mut s = RtcSession { rtc, socket };
    // Drive ICE, DTLS and SCTP until `logs` opens; what comes after stays queued in the Rtc.
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = loop {
            if !s.rtc.is_alive() {
                return Err("rtc closed while connecting".into());
            }
            match s
                .rtc
                .poll_output()
                .map_err(|e| format!("rtc: {}", short(e)))?
            {
                Output::Timeout(at) => break at.max(Instant::now() + Duration::from_millis(1)),
                Output::Transmit(t) => {
                    let _ = s.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::ChannelOpen(_, label)) if label == "logs" => return Ok(s),
                Output::Event(Event::ChannelClose(_) | Event::Closed) => {
                    return Err("rtc closed while connecting".into());
                }
                Output::Event(_) => {}
            }
        };
        step(&mut s, &mut buf, wake, local).await?;
    }
}

/// Waits for a datagram or `wake`, and hands it to the `Rtc`.
async fn step(
    s: &mut RtcSession,
    buf: &mut [u8],
    wake: Instant,
    local: SocketAddr,
) -> Result<(), String> {
    tokio::select! {
        got = s.socket.recv_from(buf) => {
            let Ok((n, source)) = got else { return Ok(()) };
            let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..n]) else {
                return Ok(());
            };
            s.rtc
                .handle_input(Input::Receive(Instant::now(), receive))
                .map_err(|e| format!("rtc: {}", short(e)))
        }
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => s
            .rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(|e| format!("rtc: {}", short(e))),
    }
}

/// Reads `logs` until the session ends: one JSON frame per message.
pub async fn rtc_read_loop(s: &mut RtcSession, tally: &mut Tally<'_>) -> End {
    let Ok(local) = s.socket.local_addr() else {
        return End::Error("udp address".into());
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = loop {
            if !s.rtc.is_alive() {
                return End::Eof;
            }
            match s.rtc.poll_output() {
                Err(e) => return End::Error(format!("rtc: {}", short(e))),
                Ok(Output::Timeout(at)) => {
                    break at.max(Instant::now() + Duration::from_millis(1));
                }
                Ok(Output::Transmit(t)) => {
                    let _ = s.socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(Event::ChannelData(d))) => {
                    let now = tally.now();
                    tally.received(d.data.len(), now);
                    tally.json_frame(&d.data, now);
                }
                Ok(Output::Event(Event::ChannelClose(_) | Event::Closed)) => {
                    return End::Close {
                        code: 0,
                        reason: "data channel closed".into(),
                    };
                }
                Ok(Output::Event(_)) => {}
            }
        };
        if let Err(e) = step(s, &mut buf, wake, local).await {
            return End::Error(e);
        }
    }
}
