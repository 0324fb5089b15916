//! The one raw HTTP/1.1 client of the tests: hand-made requests, so that nothing between
//! the test and the server interprets the answer. Over any stream (a `TcpStream`, a TLS
//! stream): whole responses ([`http_exchange`]; [`http_get`] / [`http_request`] over a new
//! TCP connection), a response head with the connection kept open ([`http_open`]: a 101, an
//! SSE 200, a peer that keeps the connection alive), raw bytes ([`send_until_close`],
//! [`status_code`]), and a streaming reader for Server-Sent Events ([`SseStream`]).

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PROMPT;

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in order received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `METHOD path HTTP/1.1` with `Host: host` (unless `headers` has one), exactly `headers`,
/// `Connection: close` if `close`, and `Content-Length` with the body if there is one.
fn request_bytes(
    host: impl Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The status code of a raw response: `HTTP/1.x NNN` at its start; `None` when there is no
/// complete status code.
pub fn status_code(raw: &[u8]) -> Option<u16> {
    let rest = raw.strip_prefix(b"HTTP/1.")?.get(1..)?.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Parses a response head (`HTTP/1.1 200 OK\r\nName: value\r\n...`, without the blank line).
fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_code(head).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends a request head (see [`request_bytes`], without `Connection: close`) and reads the
/// response head, byte by byte so that nothing after it is consumed: the returned
/// [`Response`] has no body yet. Errors say what went wrong (a failed write, the connection
/// closed or reset before a complete head).
pub(super) async fn send_and_read_head(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    host: impl Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    stream
        .write_all(&request_bytes(host, method, path, headers, b"", false))
        .await
        .map_err(|err| format!("send request: {err}"))?;
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.map_err(|err| {
            format!(
                "read response head: {err} after {:?}",
                String::from_utf8_lossy(&raw)
            )
        })?;
        if n == 0 {
            return Err(format!(
                "connection closed before the response head: {:?}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.push(byte[0]);
    }
    let (status, headers) = parse_head(&raw[..raw.len() - 4]);
    Ok(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

/// Reads until the peer closes. A TLS peer that closes without `close_notify` ends the
/// stream with `UnexpectedEof`, which counts as the close; any other error panics.
async fn read_to_close(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => raw,
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => raw,
        Err(err) => panic!(
            "read response: {err} after {:?}",
            String::from_utf8_lossy(&raw)
        ),
    }
}

/// `GET path` with `Connection: close`; reads the whole response (10 s deadline).
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    http_request(addr, "GET", path, headers, b"").await
}

/// Any method, with an optional body, over a new TCP connection: [`http_exchange`] within
/// 10 s.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        http_exchange(&mut stream, addr, method, path, headers, body).await
    };
    tokio::time::timeout(PROMPT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete response within {PROMPT:?}"))
}

/// One request with `Connection: close` over `stream` (TCP, TLS, …), `Host: host` unless
/// `headers` has one; reads the whole response (de-chunked, or as long as its
/// `Content-Length`). No deadline of its own: the caller's covers its connect too.
pub async fn http_exchange(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    host: impl Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    stream
        .write_all(&request_bytes(host, method, path, headers, body, true))
        .await
        .expect("send request");
    let raw = read_to_close(stream).await;
    let split = find(&raw, b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "{method} {path}: no response head in {:?}",
            String::from_utf8_lossy(&raw)
        )
    });
    let (status, headers) = parse_head(&raw[..split]);
    let rest = &raw[split + 4..];
    let body = if find_header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut d = Dechunker::default();
        d.feed(rest);
        d.body
    } else if let Some(len) = find_header(&headers, "content-length").and_then(|v| v.parse().ok()) {
        rest[..rest.len().min(len)].to_vec()
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// `METHOD path` with exactly `headers` (and `Host: addr` unless given) over a new TCP
/// connection; reads the response head and, unless it is a 101, a body as long as its
/// `Content-Length` (none without one: a stream's body is left unread). Returns the
/// connection too, so that an accepted stream (101, SSE 200) stays open as long as the
/// caller keeps it. 10 s deadline.
pub async fn http_open(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response, TcpStream) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut resp = send_and_read_head(&mut stream, addr, method, path, headers)
            .await
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"));
        if resp.status != 101
            && let Some(len) = resp.header("content-length").and_then(|v| v.parse().ok())
        {
            resp.body = vec![0; len];
            stream
                .read_exact(&mut resp.body)
                .await
                .unwrap_or_else(|err| panic!("{method} {path}: read the body: {err}"));
        }
        (resp, stream)
    };
    tokio::time::timeout(PROMPT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no response head within {PROMPT:?}"))
}

/// Sends `request` as raw bytes over a new TCP connection (write errors tolerated: the
/// server may close early) and reads until the server closes or `timeout` passes.
/// `Some(bytes)` if the server closed (EOF or reset), `None` if it kept the connection open
/// that long.
pub async fn send_until_close(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, read).await.ok().map(|()| raw)
}

/// Incremental decoder for `Transfer-Encoding: chunked`.
#[derive(Debug, Default)]
struct Dechunker {
    pending: Vec<u8>,
    body: Vec<u8>,
    /// Bytes left in the current chunk's data (`None`: expecting a size line).
    in_chunk: Option<usize>,
    done: bool,
}

impl Dechunker {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while !self.done {
            match self.in_chunk {
                None => {
                    let Some(eol) = find(&self.pending, b"\r\n") else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.pending[..eol]).into_owned();
                    let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    self.pending.drain(..eol + 2);
                    if size == 0 {
                        self.done = true;
                    } else {
                        self.in_chunk = Some(size);
                    }
                }
                Some(left) => {
                    let take = left.min(self.pending.len());
                    self.body.extend_from_slice(&self.pending[..take]);
                    self.pending.drain(..take);
                    if take < left {
                        self.in_chunk = Some(left - take);
                        return;
                    }
                    if self.pending.len() < 2 {
                        self.in_chunk = Some(0);
                        return;
                    }
                    self.pending.drain(..2); // CRLF after the data
                    self.in_chunk = None;
                }
            }
        }
    }
}

/// A streaming GET (for `/events`): the response head, then body bytes as they arrive
/// (de-chunked when the response is chunked).
#[derive(Debug)]
pub struct SseStream {
    stream: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: Option<Dechunker>,
    body: Vec<u8>,
    eof: bool,
}

impl SseStream {
    /// Sends `GET path` with `Accept: text/event-stream` and `headers`, and reads the
    /// response head (10 s deadline). The body is left to the `read_*` methods.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
        Self::try_connect(addr, path, headers)
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"))
    }

    /// [`connect`](Self::connect), with what went wrong (connect failed, the connection
    /// closed or was reset before a response head, a deadline passed) as an error.
    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseStream, String> {
        let stream = tokio::time::timeout(PROMPT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect timed out after {PROMPT:?}"))?
            .map_err(|err| format!("connect: {err}"))?;
        SseStream::request(stream, addr, path, headers).await
    }

    /// [`connect`](Self::connect) over a socket whose `SO_RCVBUF` is `rcvbuf` bytes, so
    /// that when this client stops reading the server's writes block quickly (a stuck
    /// client, until it reads again).
    pub async fn connect_small_rcvbuf(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        rcvbuf: u32,
    ) -> SseStream {
        let stream = super::ws::small_rcvbuf_stream(addr, rcvbuf).await;
        SseStream::request(stream, addr, path, headers)
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"))
    }

    async fn request(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseStream, String> {
        let mut all: Vec<(&str, &str)> = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let head = tokio::time::timeout(
            PROMPT,
            send_and_read_head(&mut stream, addr, "GET", path, &all),
        )
        .await
        .map_err(|_| format!("no response head within {PROMPT:?}"))??;
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            .then(Dechunker::default);
        Ok(SseStream {
            stream,
            status: head.status,
            headers: head.headers,
            chunked,
            body: Vec::new(),
            eof: false,
        })
    }

    fn push(&mut self, bytes: &[u8]) {
        match &mut self.chunked {
            Some(d) => {
                d.feed(bytes);
                self.body.extend_from_slice(&d.body);
                d.body.clear();
            }
            None => self.body.extend_from_slice(bytes),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Body bytes received so far.
    pub fn raw_so_far(&self) -> &[u8] {
        &self.body
    }

    /// Body received so far as (lossy) UTF-8.
    pub fn text_so_far(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server closed the connection.
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Whether the body is complete: its last chunk arrived (or, unchunked, EOF).
    pub fn body_complete(&self) -> bool {
        match &self.chunked {
            Some(d) => d.done,
            None => self.eof,
        }
    }

    /// Reads once, waiting at most until `deadline`; false on timeout or EOF.
    async fn read_some(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 16384];
        match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.push(&buf[..n]);
                true
            }
        }
    }

    /// Reads once more, waiting at most `timeout`; false on timeout or EOF. For callers
    /// that parse the body incrementally (see [`raw_so_far`](Self::raw_so_far)).
    pub async fn read_more(&mut self, timeout: Duration) -> bool {
        self.read_some(Instant::now() + timeout).await
    }

    /// Reads until the body received so far contains `pattern`; returns the whole body
    /// text so far. Panics (showing what arrived) on timeout or EOF.
    pub async fn read_until_contains(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if find(&self.body, pattern.as_bytes()).is_some() {
                return self.text_so_far();
            }
            if !self.read_some(deadline).await {
                panic!(
                    "SSE body has no {pattern:?} within {timeout:?} (eof: {}); received:\n{}",
                    self.eof,
                    self.text_so_far()
                );
            }
        }
    }

    /// Reads whatever arrives during `window` (or until EOF); returns the body so far.
    pub async fn read_for(&mut self, window: Duration) -> String {
        let deadline = Instant::now() + window;
        while self.read_some(deadline).await {}
        self.text_so_far()
    }

    /// The socket.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// The chunked decoder reassembles a body split at arbitrary points.
#[test]
fn harness_dechunks_split_input() {
    let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    for split in 0..wire.len() {
        let mut d = Dechunker::default();
        d.feed(&wire[..split]);
        d.feed(&wire[split..]);
        assert_eq!(d.body, b"hello, world", "split at {split}");
        assert!(d.done);
    }
}
