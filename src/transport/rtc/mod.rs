//! `POST /rtc`: the stream over a WebRTC data channel.
//!
//! Signaling is one request, WHEP-style and non-trickle: the client creates
//! a reliable, ordered data channel labelled `logs`, posts its SDP offer
//! (`Content-Type: application/sdp`), and gets the answer (201, SDP body)
//! with the server's one host candidate: the UDP socket on `--rtc-port`
//! that every session shares. The server is ICE-lite: it answers the
//! client's checks and never probes; TURN and STUN servers are out of scope.
//!
//! The handler checks what `/ws` checks (Host, Origin, token, parameters, a
//! `--max-clients` slot), plus a slot among `--max-rtc-sessions`, the body
//! (64 KiB at most, an offer with a data channel), and subscribes the client
//! before it answers. Then a session task waits (at most [`CONNECT_TIMEOUT`])
//! for the `logs` channel to open and runs the one delivery loop
//! ([`crate::pump`]) into an [`RtcSink`]: the `/ws?format=json` frames, the
//! `hello` first, one frame per message.
//!
//! The `Rtc` instances live in the [`driver`] task; the sink hands it
//! frames, and waits while more than [`BUDGET`] bytes are sent and not yet
//! acknowledged by the peer, so a peer that stops reading is closed by the
//! pump's `--send-timeout`, as a WebSocket is. A data channel has no close
//! code: a slow client's session is just closed (it may resume with
//! `since=`), as it is at shutdown.

pub mod crypto;
pub mod driver;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{AppState, ClientSlot, RawParams, Rejection, admit, check_access};
use crate::config::RtcPort;
use crate::encode::Encoding;
use crate::error::Error;
use crate::hub::Cursor;
use crate::lines::Text;
use crate::pump::{End, PeerEnd, PumpOptions, Sink, SinkGone};
use driver::{Command, Driver, Ended, NewSession, SessionId, Shared};

/// The largest offer accepted (browsers' are a few KiB).
pub const MAX_OFFER: usize = 64 * 1024;
/// How long a session may take to open its `logs` channel.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes a session may have sent and not yet acknowledged by its peer.
pub const BUDGET: u64 = 256 * 1024;
/// str0m's SCTP send buffer per session: the budget, and room for one frame
/// larger than it (a frame larger than this, or than the peer's
/// `a=max-message-size`, 256 KiB for Chromium, ends the session).
const SCTP_BUFFER: usize = 2 * BUDGET as usize;
/// Bytes fed before the pump's flush (a flush costs nothing here).
const FLUSH_BYTES: usize = 64 * 1024;

/// How `/rtc` reaches the driver; `None` in [`AppState`] when WebRTC is off.
#[derive(Clone)]
pub struct RtcHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// The UDP socket's address (the host candidate).
    local: SocketAddr,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
    /// Sessions are numbered from a random start: the number is in the
    /// `Location` that `DELETE` takes, and should not be guessed.
    next_id: Arc<AtomicU64>,
    /// One certificate for every session (its fingerprint is in each answer).
    cert: DtlsCert,
    crypto: Arc<str0m::config::CryptoProvider>,
}

impl RtcHandle {
    pub fn port(&self) -> u16 {
        self.local.port()
    }
}

/// Binds WebRTC's UDP socket (`--rtc-port`, next to the TCP listener at
/// `tcp`) and starts the driver on the app's tracker. `Ok(None)`: WebRTC is
/// off (`--max-rtc-sessions 0`, or the default port was taken: a warning).
pub fn start(app: &AppState, tcp: SocketAddr) -> Result<Option<RtcHandle>, Error> {
    let Some(rtc) = app.config.rtc else {
        return Ok(None);
    };
    let port = match rtc.port {
        RtcPort::Given(port) => port,
        RtcPort::Server { plus } => tcp.port().saturating_add(plus),
    };
    let addr = SocketAddr::new(tcp.ip(), port);
    let socket = match std::net::UdpSocket::bind(addr)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UdpSocket::from_std)
    {
        Ok(socket) => socket,
        Err(source) => {
            if let RtcPort::Server { .. } = rtc.port {
                tracing::warn!(
                    "WebRTC is off: cannot bind udp/{addr} ({source}); \
                     choose a port with --rtc-port"
                );
                return Ok(None);
            }
            return Err(Error::Bind { addr, source });
        }
    };
    let local = socket.local_addr().map_err(|source| Error::Io {
        what: "reading the WebRTC socket's address",
        source,
    })?;
    let cert = crypto::certificate().ok_or(Error::Io {
        what: "making the WebRTC DTLS certificate",
        source: std::io::Error::other("the crypto provider made none"),
    })?;
    let (commands, rx) = mpsc::unbounded_channel();
    let driver = Driver::new(socket, local, rx, Arc::clone(&app.hub.metrics));
    app.tracker.spawn(driver.run(app.cancel.clone()));
    tracing::info!("serving WebRTC (POST /rtc) on udp/{local}");
    Ok(Some(RtcHandle {
        commands,
        local,
        sessions: Arc::new(Semaphore::new(rtc.max_sessions)),
        max_sessions: rtc.max_sessions,
        next_id: Arc::new(AtomicU64::new(random_start())),
        cert,
        crypto: crypto::provider(),
    }))
}

/// `POST /rtc`: an offer in, an answer out (201), the session started.
pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match offer(app, peer, uri, headers, body).await {
        Ok(response) => response,
        Err(rejection) => rejection.into_response(),
    }
}

async fn offer(
    app: AppState,
    peer: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Rejection> {
    let raw = RawParams::from_query(uri.query());
    // Who may ask comes first: nothing is read from a refused request.
    check_access(&app, &uri, &headers, raw.token.as_deref())?;
    let Some(handle) = app.rtc.clone() else {
        return Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebRTC is off on this server (see --rtc-port and --max-rtc-sessions)",
        ));
    };
    if raw.format.as_deref().is_some_and(|f| f != "json") {
        return Err(bad("format: /rtc sends the JSON frames only (format=json)"));
    }
    let sdp = read_offer(&headers, body).await?;
    let offer = SdpOffer::from_sdp_string(&sdp)
        .map_err(|err| bad(format!("the body is not an SDP offer: {err}")))?;
    if !sdp.lines().any(|l| l.starts_with("m=application")) {
        return Err(bad(
            "the offer has no data channel: create the `logs` channel before the offer",
        ));
    }
    if sdp
        .lines()
        .any(|l| l.starts_with("m=audio") || l.starts_with("m=video"))
    {
        return Err(bad(
            "the offer has audio or video: /rtc carries only the `logs` data channel",
        ));
    }
    let Ok(permit) = Arc::clone(&handle.sessions).try_acquire_owned() else {
        app.hub.metrics.request_rejected();
        return Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many WebRTC sessions (--max-rtc-sessions {})",
                handle.max_sessions
            ),
        ));
    };
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_crypto_provider(Arc::clone(&handle.crypto))
        .set_dtls_cert(handle.cert.clone())
        .set_sctp_max_buffered_amount(SCTP_BUFFER)
        .build(Instant::now());
    let host = candidate_ip(handle.local.ip(), peer.ip());
    let candidate = Candidate::host(SocketAddr::new(host, handle.local.port()), "udp")
        .map_err(|err| internal(format!("the host candidate {host}: {err}")))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|err| bad(format!("the offer cannot be answered: {err}")))?;
    // Every check passed: now the client's slot and its subscription.
    let admitted = admit(&app, "rtc", peer, &raw, &uri, &headers, None)?;
    let id = handle.next_id.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::new(Shared::default());
    let (opened_tx, opened) = oneshot::channel();
    let (ended_tx, ended) = oneshot::channel();
    let new = NewSession {
        id,
        rtc,
        shared: Arc::clone(&shared),
        opened: opened_tx,
        ended: ended_tx,
        permit,
    };
    // Queued before the answer leaves, so the driver knows the session
    // before the client's first check can arrive.
    if handle.commands.send(Command::Add(Box::new(new))).is_err() {
        return Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server shutting down",
        ));
    }
    let sink = RtcSink {
        id,
        commands: handle.commands.clone(),
        shared,
        sent: 0,
        ended: EndWatch::new(ended),
    };
    app.tracker.spawn(session(
        app.clone(),
        admitted.cursor,
        admitted.slot,
        sink,
        opened,
    ));
    let mut response = (StatusCode::CREATED, answer.to_sdp_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("{}/rtc/{id:016x}", app.config.base_path))
    {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The offer's text: `application/sdp`, [`MAX_OFFER`] bytes at most, UTF-8.
async fn read_offer(headers: &HeaderMap, body: Body) -> Result<String, Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/sdp") {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the offer must be sent as Content-Type: application/sdp, not `{media}`"),
        ));
    }
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the offer is larger than {} KiB", MAX_OFFER / 1024),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_OFFER as u64) {
        return Err(too_large());
    }
    let bytes: Bytes = axum::body::to_bytes(body, MAX_OFFER)
        .await
        .map_err(|_| too_large())?;
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("the offer is not UTF-8 text"))
}

/// The address to announce: the socket's, or for a socket bound to every
/// address (`--bind 0.0.0.0`), the one this host would send to the peer
/// from (a connected UDP socket's local address: no packet is sent).
fn candidate_ip(bound: IpAddr, peer: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    let probe = match peer {
        IpAddr::V4(_) => std::net::UdpSocket::bind("0.0.0.0:0"),
        IpAddr::V6(_) => std::net::UdpSocket::bind("[::]:0"),
    };
    probe
        .and_then(|s| s.connect(SocketAddr::new(peer, 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(bound)
}

/// `DELETE /rtc/{id}` (WHEP): ends the session the answer's `Location`
/// named; 200, or 404 if there is none (any more).
pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let raw = RawParams::from_query(uri.query());
    if let Err(rejection) = check_access(&app, &uri, &headers, raw.token.as_deref()) {
        return rejection.into_response();
    }
    let not_found = || Rejection::new(StatusCode::NOT_FOUND, "no such WebRTC session");
    let (Some(handle), Ok(id)) = (app.rtc.as_ref(), u64::from_str_radix(&id, 16)) else {
        return not_found().into_response();
    };
    let (tell, told) = oneshot::channel();
    if handle.commands.send(Command::Delete(id, tell)).is_err() {
        return not_found().into_response();
    }
    match told.await {
        Ok(true) => (StatusCode::OK, "closed\n").into_response(),
        _ => not_found().into_response(),
    }
}

fn random_start() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Unguessable ids are a nicety: DELETE needs the token anyway.
        return 1;
    }
    u64::from_le_bytes(bytes) >> 1
}

fn bad(reason: impl Into<String>) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, reason)
}

fn internal(reason: impl Into<String>) -> Rejection {
    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, reason)
}

/// One session: wait for the `logs` channel, pump, then let the driver
/// close it.
async fn session(
    app: AppState,
    mut cursor: Cursor,
    mut slot: ClientSlot,
    mut sink: RtcSink,
    opened: oneshot::Receiver<()>,
) {
    let waited = tokio::select! {
        biased;
        () = app.cancel.cancelled() => Err("shutdown"),
        opened = tokio::time::timeout(CONNECT_TIMEOUT, opened) => match opened {
            Ok(Ok(())) => Ok(()),
            // The driver ended it before the channel opened.
            Ok(Err(_)) => Err(sink.ended.wait().await.reason()),
            Err(_) => Err("never connected"),
        },
    };
    if let Err(reason) = waited {
        tracing::debug!(peer = %slot.peer, session = sink.id, reason, "webrtc session not opened");
        slot.ended_as(reason, crate::pump::Delivered::default());
        let _ = sink.commands.send(Command::Close(sink.id));
        return;
    }
    let options = PumpOptions {
        encoding: Encoding::Json,
        send_timeout: app.config.send_timeout,
        // SCTP has heartbeats and ICE its consent checks.
        keep_alive: None,
        flush_bytes: FLUSH_BYTES,
    };
    let (end, delivered) = super::deliver(&app, &slot, &mut cursor, &mut sink, &options).await;
    match (end, sink.ended.got) {
        (End::Peer(_), Some(why)) => slot.ended_as(why.reason(), delivered),
        _ => slot.ended(end, delivered),
    }
    drop(cursor);
    let _ = sink.commands.send(Command::Close(sink.id));
}

/// Why the driver ended a session, awaited once and then remembered (a
/// oneshot may not be polled after it completed).
struct EndWatch {
    rx: Option<oneshot::Receiver<Ended>>,
    got: Option<Ended>,
}

impl EndWatch {
    fn new(rx: oneshot::Receiver<Ended>) -> EndWatch {
        EndWatch {
            rx: Some(rx),
            got: None,
        }
    }

    /// Resolves when the session ended; the driver gone counts as closed.
    async fn wait(&mut self) -> Ended {
        if let Some(why) = self.got {
            return why;
        }
        let why = match self.rx.as_mut() {
            Some(rx) => rx.await.unwrap_or(Ended::PeerClosed),
            None => Ended::PeerClosed,
        };
        self.rx = None;
        self.got = Some(why);
        why
    }
}

/// The `logs` channel as the pump's [`Sink`]: each frame goes to the driver
/// as one message, while fewer than [`BUDGET`] bytes are unacknowledged.
struct RtcSink {
    id: SessionId,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    /// Bytes of frames handed to the driver.
    sent: u64,
    ended: EndWatch,
}

impl RtcSink {
    /// Whether `len` more bytes fit (always, when nothing is in flight).
    fn has_room(&self, len: usize) -> bool {
        let acked = self.shared.acked.load(Ordering::Acquire);
        let in_flight = self.sent.saturating_sub(acked);
        in_flight == 0 || in_flight + len as u64 <= BUDGET
    }

    fn send(&mut self, frame: Text) -> Result<(), SinkGone> {
        let len = frame.len() as u64;
        self.commands
            .send(Command::Write(self.id, frame))
            .map_err(|_| SinkGone)?;
        self.sent += len;
        Ok(())
    }
}

impl Sink for RtcSink {
    fn try_feed(&mut self, frame: Text) -> Result<Option<Text>, SinkGone> {
        if self.ended.got.is_some() {
            return Err(SinkGone);
        }
        if !self.has_room(frame.len()) {
            return Ok(Some(frame));
        }
        self.send(frame).map(|()| None)
    }

    async fn feed(&mut self, frame: Text) -> Result<(), SinkGone> {
        loop {
            if self.ended.got.is_some() {
                return Err(SinkGone);
            }
            if self.has_room(frame.len()) {
                return self.send(frame);
            }
            // `notify_one` keeps a wake-up that came before this wait.
            tokio::select! {
                () = self.shared.room.notified() => {}
                _ = self.ended.wait() => return Err(SinkGone),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SinkGone> {
        // Every frame is with the driver already.
        Ok(())
    }

    async fn keep_alive(&mut self) -> Result<(), SinkGone> {
        Ok(())
    }

    async fn peer_end(&mut self) -> PeerEnd {
        self.ended.wait().await;
        PeerEnd::Gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A browser-like offer: one `logs` data channel, one host candidate.
    fn offer() -> String {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto::provider())
            .build(Instant::now());
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_channel(driver::LABEL.to_string());
        api.apply().unwrap().0.to_sdp_string()
    }

    /// What the handler does with a body: parse, then answer (the result does not matter,
    /// only that a peer's text cannot panic the server: release builds abort on a panic).
    fn answer(sdp: &str) {
        if let Ok(offer) = SdpOffer::from_sdp_string(sdp) {
            let mut rtc = Rtc::builder()
                .set_ice_lite(true)
                .set_crypto_provider(crypto::provider())
                .build(Instant::now());
            let _ = rtc.sdp_api().accept_offer(offer);
        }
    }

    #[test]
    fn a_real_offer_is_answered() {
        let sdp = offer();
        let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(crypto::provider())
            .build(Instant::now());
        let answer = rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
        assert!(answer.contains("m=application"), "{answer}");
        assert!(crypto::certificate().is_some());
    }

    #[test]
    fn candidate_ip_is_the_bound_one_or_the_route_to_the_peer() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(candidate_ip(lo, "10.1.2.3".parse().unwrap()), lo);
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(candidate_ip(any, lo), lo);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Arbitrary text never panics the SDP parser or the answerer.
        #[test]
        fn arbitrary_text_never_panics(text in "(v=0\r\n)?([a-z]=[ -~]{0,40}\r?\n){0,30}") {
            answer(&text);
        }

        /// Nor does a real offer with lines dropped, repeated or cut short.
        #[test]
        fn mangled_offers_never_panic(
            drops in proptest::collection::vec(any::<u8>(), 0..8),
            cut in any::<u16>(),
            dup in any::<u8>(),
        ) {
            let sdp = offer();
            let mut lines: Vec<&str> = sdp.split("\r\n").collect();
            for d in drops {
                if !lines.is_empty() {
                    let at = usize::from(d) % lines.len();
                    lines.remove(at);
                }
            }
            if !lines.is_empty() {
                let at = usize::from(dup) % lines.len();
                let line = lines[at];
                lines.insert(at, line);
            }
            let mut text = lines.join("\r\n");
            let keep = usize::from(cut) % (text.len() + 1);
            while !text.is_char_boundary(keep.min(text.len())) {
                text.pop();
            }
            text.truncate(keep.min(text.len()));
            answer(&text);
        }
    }
}
