//! An HTTP/2 client: hyper's, over cleartext TCP with prior knowledge (h2c) or TLS with
//! ALPN `h2` ([`H2`]). Its requests carry the authority as `:authority` only, never a
//! `Host` header, as browsers' and curl's HTTP/2 requests do; [`H2::request_to`] names any
//! authority (a DNS-rebinding name). Responses are read whole ([`H2::get`]) or as they
//! stream ([`H2Body`]); a WebSocket over HTTP/2 is an extended CONNECT (RFC 8441) with
//! `:protocol websocket`, then tokio-tungstenite over the upgraded stream ([`H2Ws`]), as
//! axum's own `http2` WebSocket test does.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use futures_util::StreamExt;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::http::{HeaderMap, Method, Request, Response};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::PROMPT;
use super::ws::Recv;

/// One HTTP/2 connection to the server; each request is a stream on it.
pub struct H2 {
    send: SendRequest<Body>,
    conn: JoinHandle<Result<(), hyper::Error>>,
    scheme: &'static str,
    authority: String,
}

impl H2 {
    /// Cleartext HTTP/2 with prior knowledge (what `curl --http2-prior-knowledge` does).
    pub async fn connect(addr: SocketAddr) -> H2 {
        H2::connect_with(addr, None, None).await
    }

    /// HTTP/2 over TLS through `config`, which must offer `h2` by ALPN.
    pub async fn connect_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> H2 {
        H2::connect_with(addr, Some(config), None).await
    }

    /// [`connect`](Self::connect) or, with `tls`, [`connect_tls`](Self::connect_tls);
    /// `stream_window`: the window this client grants each stream (what the server may
    /// send on a stream that is not read).
    pub async fn connect_with(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        stream_window: Option<u32>,
    ) -> H2 {
        let tcp = tokio::time::timeout(PROMPT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        match tls {
            None => H2::handshake(tcp, "http", addr, stream_window).await,
            Some(config) => {
                let tls = tokio::time::timeout(
                    PROMPT,
                    tokio_rustls::TlsConnector::from(config)
                        .connect(ServerName::from(addr.ip()), tcp),
                )
                .await
                .expect("TLS handshake timed out")
                .expect("TLS handshake");
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(&b"h2"[..]),
                    "the server did not choose h2 by ALPN"
                );
                H2::handshake(tls, "https", addr, stream_window).await
            }
        }
    }

    async fn handshake<T>(
        io: T,
        scheme: &'static str,
        addr: SocketAddr,
        stream_window: Option<u32>,
    ) -> H2
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        if let Some(window) = stream_window {
            builder.initial_stream_window_size(window);
        }
        let (send, conn) = tokio::time::timeout(PROMPT, builder.handshake(TokioIo::new(io)))
            .await
            .expect("HTTP/2 handshake timed out")
            .expect("HTTP/2 handshake");
        // The server's SETTINGS come with its first frames, read by hyper's own task:
        // wait for them (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, RFC 8441).
        let deadline = Instant::now() + PROMPT;
        while !conn.is_extended_connect_protocol_enabled() {
            assert!(
                Instant::now() < deadline,
                "the server's SETTINGS do not enable extended CONNECT (RFC 8441)"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        H2 {
            send,
            conn: tokio::spawn(conn),
            scheme,
            authority: addr.to_string(),
        }
    }

    /// `METHOD path` at this connection's authority (as `:authority`, no `Host`).
    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let authority = self.authority.clone();
        self.request_to(&authority, method, path)
    }

    /// `METHOD path` naming `authority` (e.g. a rebinding name), no `Host`.
    pub fn request_to(
        &self,
        authority: &str,
        method: Method,
        path: &str,
    ) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}://{authority}{path}", self.scheme))
    }

    /// Sends `request` as a new stream; its response head within [`PROMPT`].
    pub async fn send(&mut self, request: Request<Body>) -> Response<Incoming> {
        let shown = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            self.send.ready().await?;
            self.send.send_request(request).await
        };
        tokio::time::timeout(PROMPT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{shown}: no response within {PROMPT:?}"))
            .unwrap_or_else(|err| panic!("{shown}: {err}"))
    }

    /// `GET path` with `headers`: its status and whole body.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let body = self.open(path, headers).await;
        let status = body.status;
        (status, body.read_to_end(PROMPT).await)
    }

    /// `GET path` with `headers`, the body left to stream.
    pub async fn open(&mut self, path: &str, headers: &[(&str, &str)]) -> H2Body {
        let mut request = self.request(Method::GET, path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .send(request.body(Body::empty()).expect("request"))
            .await;
        H2Body::new(response)
    }

    /// A WebSocket over HTTP/2 at `path`: an extended CONNECT with `headers`; on 200 the
    /// socket, else the status and body.
    pub async fn ws(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<H2Ws, (u16, String)> {
        let authority = self.authority.clone();
        self.ws_to(&authority, path, headers).await
    }

    /// [`ws`](Self::ws) naming `authority`.
    pub async fn ws_to(
        &mut self,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<H2Ws, (u16, String)> {
        let mut request = self
            .request_to(authority, Method::CONNECT, path)
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = self
            .send(request.body(Body::empty()).expect("request"))
            .await;
        if response.status() != 200 {
            let body = H2Body::new(response);
            let status = body.status;
            return Err((status, body.read_to_end(PROMPT).await));
        }
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let upgraded = tokio::time::timeout(PROMPT, hyper::upgrade::on(&mut response))
            .await
            .expect("upgrade timed out")
            .expect("upgrade the CONNECT stream");
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        Ok(H2Ws { ws, protocol })
    }

    /// Waits up to `timeout` for the connection to end (the server's GOAWAY, then its
    /// close); `None` if it is still open then.
    pub async fn ended(self, timeout: Duration) -> Option<Result<(), String>> {
        let conn = tokio::time::timeout(timeout, self.conn).await.ok()?;
        Some(match conn {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(err) => Err(err.to_string()),
        })
    }
}

/// A response whose body is read as it arrives.
pub struct H2Body {
    pub status: u16,
    pub headers: HeaderMap,
    body: Incoming,
    received: Vec<u8>,
    ended: bool,
}

impl H2Body {
    fn new(response: Response<Incoming>) -> H2Body {
        let (parts, body) = response.into_parts();
        H2Body {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            received: Vec::new(),
            ended: false,
        }
    }

    /// Reads one frame before `deadline`; false on timeout or the end of the body.
    async fn read_some(&mut self, deadline: Instant) -> bool {
        if self.ended {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx));
        match tokio::time::timeout(left, frame).await {
            Err(_) => false,
            Ok(None) | Ok(Some(Err(_))) => {
                self.ended = true;
                false
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.received.extend_from_slice(&data);
                }
                true
            }
        }
    }

    /// Reads one frame within `timeout`; false on timeout or the end of the body.
    pub async fn read_some_within(&mut self, timeout: Duration) -> bool {
        self.read_some(Instant::now() + timeout).await
    }

    /// The body so far, as (lossy) UTF-8.
    pub fn text_so_far(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Whether the stream ended (its END_STREAM, a reset, the connection gone).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads until the body so far contains `pattern`; returns it. Panics (showing what
    /// arrived) on timeout or the end of the body.
    pub async fn read_until_contains(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text_so_far();
            if text.contains(pattern) {
                return text;
            }
            if !self.read_some(deadline).await {
                panic!(
                    "HTTP/2 body has no {pattern:?} within {timeout:?} (ended: {}); \
                     received:\n{text}",
                    self.ended
                );
            }
        }
    }

    /// Reads the whole body (within `timeout`, else panics).
    pub async fn read_to_end(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while self.read_some(deadline).await {}
        assert!(
            self.ended,
            "HTTP/2 body not complete within {timeout:?}: {:?}",
            self.text_so_far()
        );
        self.text_so_far()
    }
}

/// A WebSocket over one HTTP/2 stream.
pub struct H2Ws {
    ws: WebSocketStream<TokioIo<Upgraded>>,
    /// The subprotocol the server chose (`sec-websocket-protocol` of its 200).
    pub protocol: Option<String>,
}

impl H2Ws {
    /// The next data message (Ping/Pong skipped) before `deadline`.
    async fn next_data(&mut self, deadline: Instant) -> Result<Message, Recv> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Err(Recv::Timeout),
                Ok(None) => return Err(Recv::Ended),
                Ok(Some(Err(e))) => return Err(Recv::Error(e)),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                Ok(Some(Ok(m))) => return Ok(m),
            }
        }
    }

    /// Receives exactly `expected` as Text messages, in order, within [`PROMPT`].
    pub async fn expect_lines(&mut self, expected: &[&str]) {
        let deadline = Instant::now() + PROMPT;
        for (i, want) in expected.iter().enumerate() {
            match self.next_data(deadline).await {
                Ok(Message::Text(t)) if t.as_str() == *want => {}
                other => panic!(
                    "message #{i} over HTTP/2: expected Text {want:?}, got {other:?} \
                     (after {i} of {} lines)",
                    expected.len()
                ),
            }
        }
    }

    /// The next Text message, parsed as JSON, within [`PROMPT`].
    pub async fn next_json(&mut self) -> serde_json::Value {
        match self.next_data(Instant::now() + PROMPT).await {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str())
                .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", t.as_str())),
            other => panic!("expected a JSON Text message over HTTP/2, got {other:?}"),
        }
    }

    /// Reads until a Close frame; returns the Text messages before it, its code and reason.
    pub async fn read_until_close(&mut self, timeout: Duration) -> (Vec<String>, u16, String) {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            match self.next_data(deadline).await {
                Ok(Message::Text(t)) => lines.push(t.as_str().to_owned()),
                Ok(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return (lines, u16::from(code), reason.as_str().to_owned());
                }
                other => panic!(
                    "expected a Close frame over HTTP/2 within {timeout:?}, got {other:?} \
                     after {} lines (last: {:?})",
                    lines.len(),
                    lines.last()
                ),
            }
        }
    }
}
