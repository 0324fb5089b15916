//! WebSocket clients: [`WsClient`] (tokio-tungstenite, well-behaved) and [`RawWs`] (a
//! hand-made upgrade over a socket with a tiny receive buffer that then never reads).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::PROMPT;
use super::http::{Response, send_and_read_head};

/// The client stream type.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The server's handshake response.
pub type HandshakeResponse = tokio_tungstenite::tungstenite::handshake::client::Response;

/// Why [`WsClient::next_message`] returned no message.
#[derive(Debug)]
pub enum Recv {
    /// Nothing arrived before the timeout.
    Timeout,
    /// The stream ended (after a Close, or the TCP connection went away).
    Ended,
    /// A protocol or I/O error (e.g. connection reset without a Close frame).
    Error(WsError),
}

/// Renders a failed handshake readably (HTTP status and body for refusals).
fn describe(err: &WsError) -> String {
    match err {
        WsError::Http(resp) => format!(
            "HTTP {} {:?}",
            resp.status(),
            resp.body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// A tokio-tungstenite WebSocket client with deadline-based receive helpers.
#[derive(Debug)]
pub struct WsClient {
    ws: WsStream,
    response: HandshakeResponse,
}

impl WsClient {
    /// A request builder for `url`, to add headers and subprotocols before
    /// [`connect_with`](Self::connect_with).
    pub fn request(url: &str) -> ClientRequestBuilder {
        let uri: Uri = url.parse().unwrap_or_else(|e| panic!("bad url {url}: {e}"));
        ClientRequestBuilder::new(uri)
    }

    /// Connects to `url` (`ws://ADDR/ws?...`); panics if the upgrade fails.
    pub async fn connect(url: &str) -> WsClient {
        WsClient::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {url} failed: {}", describe(&e)))
    }

    /// Connects with a request built by [`request`](Self::request) (headers, subprotocols).
    pub async fn connect_with(req: ClientRequestBuilder) -> WsClient {
        let shown = format!("{req:?}");
        WsClient::try_connect(req)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect ({shown}) failed: {}", describe(&e)))
    }

    /// Connects, returning the error (e.g. `WsError::Http` with a 403/401 response).
    pub async fn try_connect(req: impl IntoClientRequest + Unpin) -> Result<WsClient, WsError> {
        let (ws, response) = tokio::time::timeout(
            PROMPT,
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        .expect("WebSocket handshake timed out")?;
        Ok(WsClient { ws, response })
    }

    /// Connects through a TLS `connector` (e.g. `Connector::Rustls(config)` for `wss://`).
    pub async fn try_connect_tls(
        req: impl IntoClientRequest + Unpin,
        connector: Connector,
    ) -> Result<WsClient, WsError> {
        let (ws, response) = tokio::time::timeout(
            PROMPT,
            tokio_tungstenite::connect_async_tls_with_config(req, None, true, Some(connector)),
        )
        .await
        .expect("WebSocket handshake timed out")?;
        Ok(WsClient { ws, response })
    }

    /// Connects over a socket whose `SO_RCVBUF` is `rcvbuf` bytes, so that when this client
    /// stops reading the server's writes block quickly (a slow client).
    pub async fn connect_small_rcvbuf(addr: SocketAddr, url: &str, rcvbuf: u32) -> WsClient {
        WsClient::connect_small_rcvbuf_with(addr, url, rcvbuf, None).await
    }

    /// [`connect_small_rcvbuf`](Self::connect_small_rcvbuf) through a TLS `connector`
    /// (`wss://`), or plain without one.
    pub async fn connect_small_rcvbuf_with(
        addr: SocketAddr,
        url: &str,
        rcvbuf: u32,
        connector: Option<Connector>,
    ) -> WsClient {
        let stream = small_rcvbuf_stream(addr, rcvbuf).await;
        let (ws, response) = tokio::time::timeout(
            PROMPT,
            tokio_tungstenite::client_async_tls_with_config(url, stream, None, connector),
        )
        .await
        .expect("WebSocket handshake timed out")
        .unwrap_or_else(|e| panic!("WebSocket connect to {url} failed: {}", describe(&e)));
        WsClient { ws, response }
    }

    /// The server's handshake response (status, headers such as the chosen subprotocol).
    pub fn response(&self) -> &HandshakeResponse {
        &self.response
    }

    /// The raw stream.
    pub fn stream(&mut self) -> &mut WsStream {
        &mut self.ws
    }

    /// The raw stream, by value.
    pub fn into_inner(self) -> WsStream {
        self.ws
    }

    /// The next message of any kind (Ping/Pong included), or why there is none.
    pub async fn next_message(&mut self, timeout: Duration) -> Result<Message, Recv> {
        match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => Err(Recv::Timeout),
            Ok(None) => Err(Recv::Ended),
            Ok(Some(Err(e))) => Err(Recv::Error(e)),
            Ok(Some(Ok(m))) => Ok(m),
        }
    }

    /// The next data message (Ping/Pong skipped) before `deadline`.
    async fn next_data(&mut self, deadline: Instant) -> Result<Message, Recv> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_message(left).await? {
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                m => return Ok(m),
            }
        }
    }

    /// The next Text message (Ping/Pong skipped); panics on timeout, close, binary or error.
    pub async fn next_text(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        match self.next_data(deadline).await {
            Ok(Message::Text(t)) => t.as_str().to_owned(),
            Ok(other) => panic!("expected a Text message, got {other:?}"),
            Err(why) => panic!("expected a Text message within {timeout:?}, got {why:?}"),
        }
    }

    /// Receives exactly `expected.len()` Text messages, equal to `expected` in order, within
    /// [`PROMPT`] (plus 1 ms per line).
    pub async fn expect_lines(&mut self, expected: &[&str]) {
        let timeout = PROMPT + Duration::from_millis(expected.len() as u64);
        self.expect_lines_within(expected, timeout).await;
    }

    /// [`expect_lines`](Self::expect_lines) with an explicit overall deadline.
    pub async fn expect_lines_within(&mut self, expected: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (i, want) in expected.iter().enumerate() {
            let got = match self.next_data(deadline).await {
                Ok(Message::Text(t)) => t.as_str().to_owned(),
                Ok(other) => panic!(
                    "message #{i}: expected Text {want:?}, got {other:?} \
                     (after {i} of {} expected lines)",
                    expected.len()
                ),
                Err(why) => panic!(
                    "message #{i}: expected Text {want:?}, got {why:?} after {i} of {} \
                     expected lines (deadline {timeout:?}); previous: {:?}",
                    expected.len(),
                    &expected[i.saturating_sub(3)..i]
                ),
            };
            if got != *want {
                panic!(
                    "message #{i}: expected {want:?}, got {got:?} (after {i} of {} expected \
                     lines; previous expected: {:?})",
                    expected.len(),
                    &expected[i.saturating_sub(3)..i]
                );
            }
        }
    }

    /// Receives `n` Text messages within `timeout` (overall); panics with how many arrived.
    pub async fn recv_lines(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next_data(deadline).await {
                Ok(Message::Text(t)) => out.push(t.as_str().to_owned()),
                Ok(other) => panic!(
                    "after {} of {n} lines: expected Text, got {other:?}; last: {:?}",
                    out.len(),
                    out.last()
                ),
                Err(why) => panic!(
                    "after {} of {n} lines within {timeout:?}: {why:?}; last: {:?}",
                    out.len(),
                    out.last()
                ),
            }
        }
        out
    }

    /// Asserts that no data or Close message arrives within `window` (Ping/Pong ignored).
    /// A bounded negative check: use only where nothing positive can be awaited.
    pub async fn expect_silence(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        match self.next_data(deadline).await {
            Err(Recv::Timeout) => {}
            other => panic!("expected nothing within {window:?}, got {other:?}"),
        }
    }

    /// Reads until a Close frame, skipping data messages; returns its code and reason.
    /// Panics if the stream ends or errors without a Close frame first.
    pub async fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        let (_, code, reason) = self.read_until_close(timeout).await;
        (code, reason)
    }

    /// Reads until a Close frame; returns the Text messages before it, its code and reason.
    pub async fn read_until_close(&mut self, timeout: Duration) -> (Vec<String>, u16, String) {
        self.read_slowly_until_close(timeout, usize::MAX, Duration::ZERO)
            .await
    }

    /// As [`WsClient::read_until_close`], but a slow reader: it pauses `pause` after
    /// every `burst` messages.
    pub async fn read_slowly_until_close(
        &mut self,
        timeout: Duration,
        burst: usize,
        pause: Duration,
    ) -> (Vec<String>, u16, String) {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            if !lines.is_empty() && lines.len() % burst == 0 {
                tokio::time::sleep(pause).await;
            }
            match self.next_data(deadline).await {
                Ok(Message::Text(t)) => lines.push(t.as_str().to_owned()),
                Ok(Message::Binary(_)) => {}
                Ok(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return (lines, u16::from(code), reason.as_str().to_owned());
                }
                Ok(Message::Close(None)) => panic!(
                    "got a Close frame without a code after {} lines",
                    lines.len()
                ),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(why) => panic!(
                    "expected a Close frame within {timeout:?}, got {why:?} after {} lines \
                     (last: {:?})",
                    lines.len(),
                    lines.last()
                ),
            }
        }
    }

    /// Sends a Text message.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send text message");
    }

    /// Sends a Close (1000) and waits briefly for the server's reply.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.next_data(deadline).await.is_ok() {}
    }

    /// Drops the TCP connection abruptly: no Close frame, RST instead of FIN.
    pub fn abort(self) {
        if let MaybeTlsStream::Plain(s) = self.ws.get_ref() {
            s.set_zero_linger().expect("SO_LINGER 0");
        }
        drop(self.ws);
    }
}

/// A connected TCP stream whose receive buffer was set to `rcvbuf` before connecting.
pub(super) async fn small_rcvbuf_stream(addr: SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .expect("socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    tokio::time::timeout(PROMPT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The headers of a WebSocket upgrade request (the RFC 6455 sample key), for upgrades
/// made by hand.
pub const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// A WebSocket upgraded by hand over a socket with a small `SO_RCVBUF`, that never reads
/// after the handshake: the "stuck client". Dropping it closes the socket.
#[derive(Debug)]
pub struct RawWs {
    stream: TcpStream,
    /// The response head (status and headers; no body is read).
    pub head: Response,
}

impl RawWs {
    /// Upgrades `path` (e.g. `/ws?backlog=0`) with a 4 KiB receive buffer; panics unless 101.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let ws = RawWs::connect_with(addr, path, &[], 4096).await;
        assert_eq!(ws.head.status, 101, "upgrade refused: {:?}", ws.head);
        ws
    }

    /// Sends the upgrade request with extra headers over a socket with `SO_RCVBUF = rcvbuf`,
    /// reads the response head only (never any frame), and returns whatever the status.
    pub async fn connect_with(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        rcvbuf: u32,
    ) -> RawWs {
        let mut stream = small_rcvbuf_stream(addr, rcvbuf).await;
        let mut all = UPGRADE.to_vec();
        all.extend_from_slice(headers);
        let head = tokio::time::timeout(
            PROMPT,
            send_and_read_head(&mut stream, addr, "GET", path, &all),
        )
        .await
        .expect("upgrade response timed out")
        .unwrap_or_else(|err| panic!("upgrade of {path}: {err}"));
        RawWs { stream, head }
    }

    /// The socket (e.g. to start reading after all, or to shut it down).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
