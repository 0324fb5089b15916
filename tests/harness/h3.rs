//! [`H3`], an HTTP/3 client connection (h3 + h3-quinn on a quinn client endpoint, rustls
//! with ring trusting only the test certificate, ALPN `h3`): requests with any
//! `:authority` ([`H3::request_to`]), whole responses ([`H3::get`]) and bodies read as
//! they arrive ([`H3Body`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::http::{HeaderMap, Method, Request};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

use super::{PROMPT, trusting_alpn};

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 connection to the server; its driver runs on a task of its own.
pub struct H3 {
    addr: SocketAddr,
    send: SendRequest,
    /// Resolves with the connection's end (the server's close, an idle timeout).
    driver: tokio::task::JoinHandle<String>,
    endpoint: quinn::Endpoint,
}

impl H3 {
    /// Connects to `addr` over QUIC (UDP), trusting only `cert`; panics on failure.
    pub async fn connect(addr: SocketAddr, cert: CertificateDer<'static>) -> H3 {
        let connected = tokio::time::timeout(PROMPT, H3::try_connect(addr, cert)).await;
        match connected {
            Ok(Ok(h3)) => h3,
            Ok(Err(err)) => panic!("HTTP/3 connection to {addr}: {err}"),
            Err(_) => panic!("HTTP/3 connection to {addr}: no handshake within {PROMPT:?}"),
        }
    }

    /// [`connect`](Self::connect), letting each stream receive at most `stream_window`
    /// bytes the test has not read (quinn's default otherwise): a stream left unread
    /// then stalls the server's writes to it, not the others'.
    pub async fn connect_with(
        addr: SocketAddr,
        cert: CertificateDer<'static>,
        stream_window: Option<u32>,
    ) -> H3 {
        let connected = H3::try_connect_with(addr, cert, stream_window);
        match tokio::time::timeout(PROMPT, connected).await {
            Ok(Ok(h3)) => h3,
            Ok(Err(err)) => panic!("HTTP/3 connection to {addr}: {err}"),
            Err(_) => panic!("HTTP/3 connection to {addr}: no handshake within {PROMPT:?}"),
        }
    }

    /// [`connect`](Self::connect), with the error instead of a panic.
    pub async fn try_connect(
        addr: SocketAddr,
        cert: CertificateDer<'static>,
    ) -> Result<H3, String> {
        H3::try_connect_with(addr, cert, None).await
    }

    async fn try_connect_with(
        addr: SocketAddr,
        cert: CertificateDer<'static>,
        stream_window: Option<u32>,
    ) -> Result<H3, String> {
        let tls = trusting_alpn(cert, &[b"h3"]);
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::clone(&tls))
            .map_err(|e| e.to_string())?;
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        if let Some(window) = stream_window {
            let mut transport = quinn::TransportConfig::default();
            transport.stream_receive_window(window.into());
            config.transport_config(Arc::new(transport));
        }
        endpoint.set_default_client_config(config);
        let quic = endpoint
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let end = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            end.to_string()
        });
        Ok(H3 {
            addr,
            send,
            driver,
            endpoint,
        })
    }

    /// A request for `path` with the server's own authority (`127.0.0.1:PORT`).
    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        self.request_to(method, &self.addr.to_string(), path)
    }

    /// A request for `path` whose `:authority` is `authority`.
    pub fn request_to(
        &self,
        method: Method,
        authority: &str,
        path: &str,
    ) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("https://{authority}{path}"))
    }

    /// Sends `request` (no body) and waits for the response head.
    pub async fn send(&mut self, request: Request<()>) -> H3Body {
        let what = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let mut stream = self.send.send_request(request).await?;
            stream.finish().await?;
            let head = stream.recv_response().await?;
            Ok::<_, h3::error::StreamError>((head, stream))
        };
        match tokio::time::timeout(PROMPT, exchange).await {
            Ok(Ok((head, stream))) => H3Body {
                status: head.status().as_u16(),
                headers: head.headers().clone(),
                stream,
                received: Vec::new(),
                ended: None,
            },
            Ok(Err(err)) => panic!("HTTP/3 {what}: {err}"),
            Err(_) => panic!("HTTP/3 {what}: no response within {PROMPT:?}"),
        }
    }

    /// `GET path` with `headers`: the response head, the body read as it arrives.
    pub async fn open(&mut self, path: &str, headers: &[(&str, &str)]) -> H3Body {
        let mut request = self.request(Method::GET, path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(()).unwrap()).await
    }

    /// `GET path` with `headers`: status, headers and the whole body.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
        let body = self.open(path, headers).await;
        let (status, headers) = (body.status, body.headers.clone());
        (status, headers, body.read_to_end(PROMPT).await)
    }

    /// Waits up to `timeout` for the connection to end; its reason, or `None` if it is
    /// still open.
    pub async fn ended(self, timeout: Duration) -> Option<String> {
        let H3 {
            driver, endpoint, ..
        } = self;
        let end = tokio::time::timeout(timeout, driver).await.ok()?;
        drop(endpoint);
        Some(end.unwrap_or_else(|e| e.to_string()))
    }
}

/// A response whose body is read as it arrives.
pub struct H3Body {
    pub status: u16,
    pub headers: HeaderMap,
    stream: Stream,
    received: Vec<u8>,
    /// How the body ended: `Ok` for its end, `Err` for a reset or the connection gone.
    ended: Option<Result<(), String>>,
}

impl H3Body {
    /// Reads one chunk before `deadline`; false on timeout or the end of the body.
    async fn read_some(&mut self, deadline: Instant) -> bool {
        if self.ended.is_some() {
            return false;
        }
        match tokio::time::timeout_at(deadline, self.stream.recv_data()).await {
            Err(_) => false,
            Ok(Ok(None)) => {
                self.ended = Some(Ok(()));
                false
            }
            Ok(Err(err)) => {
                self.ended = Some(Err(err.to_string()));
                false
            }
            Ok(Ok(Some(mut chunk))) => {
                while chunk.has_remaining() {
                    let piece = chunk.chunk();
                    self.received.extend_from_slice(piece);
                    let n = piece.len();
                    chunk.advance(n);
                }
                true
            }
        }
    }

    /// The body so far, as (lossy) UTF-8.
    pub fn text_so_far(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// How the body ended, if it did: `Ok` for its end (FIN), `Err` for a reset.
    pub fn ended(&self) -> Option<&Result<(), String>> {
        self.ended.as_ref()
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
                    "HTTP/3 body has no {pattern:?} within {timeout:?} (ended: {:?}); \
                     received:\n{text}",
                    self.ended
                );
            }
        }
    }

    /// Reads until the body ends (within `timeout`, else panics); how it ended and the
    /// whole body.
    pub async fn read_to_end_or_reset(
        &mut self,
        timeout: Duration,
    ) -> (Result<(), String>, String) {
        let deadline = Instant::now() + timeout;
        while self.read_some(deadline).await {}
        let Some(end) = self.ended.clone() else {
            panic!(
                "HTTP/3 body not complete within {timeout:?}: {:?}",
                self.text_so_far()
            );
        };
        (end, self.text_so_far())
    }

    /// Reads the whole body (within `timeout`, else panics; a reset panics too).
    pub async fn read_to_end(mut self, timeout: Duration) -> String {
        let (end, text) = self.read_to_end_or_reset(timeout).await;
        if let Err(err) = end {
            panic!("HTTP/3 body reset: {err}; received:\n{text}");
        }
        text
    }
}
