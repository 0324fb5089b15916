//! HTTP/2 on the port that serves HTTP/1.1: how a connection is recognised
//! as HTTP/2, the limits of each HTTP/2 connection, and the deadline of each
//! of its streams.
//!
//! # Which protocol
//!
//! Over TLS the client says so by ALPN (`h2`); in cleartext it says so by
//! starting with the connection preface (RFC 9113 §3.4, "prior knowledge":
//! curl's `--http2-prior-knowledge`, proxies; browsers never do h2c). Either
//! way [`read_opening`] reads the preface *before* hyper sees the connection,
//! under the handshake deadline, and [`Rewind`] gives hyper the bytes back.
//! That is the deadline hyper-util's `auto` builder lacks (hyper issues 3756
//! and 3962): a peer that connects and sends nothing, or half a preface, is
//! dropped when the handshake timeout passes, as an HTTP/1.1 client that
//! sends no request head is. Over TLS, a client that negotiated `h2` must send
//! the preface within the same deadline as its handshake. An `Upgrade: h2c`
//! request is served as HTTP/1.1 (hyper ignores it; RFC 9113 deprecates it).
//!
//! # One stream's deadline
//!
//! On HTTP/1.1 the socket is the client: [`TimeoutIo`](super::TimeoutIo)
//! bounds its writes. On HTTP/2 one connection carries many streams, and a
//! stream whose reader stops is held back by HTTP/2 flow control while the
//! socket and the other streams go on; hyper then keeps what the stream
//! could not send (the body chunk it holds, h2's send buffer) until the
//! stream ends or the connection does, and the stream's task waits forever.
//! So each stream gets its own [`SendLimit`], with the rules of the
//! connection's on HTTP/1.1:
//!
//! - an ordinary response whose next chunk hyper cannot hand to h2 within
//!   `--send-timeout` (the client's window stays shut) is abandoned;
//! - a stream that bounds its own writes (WebSocket, SSE: the pump's
//!   deadline, then the 1013 / `event: closed` grace) says so with
//!   [`SendLimit::stream_owned`] and sets the end of its grace with
//!   [`SendLimit::wait_until`].
//!
//! Abandoning a stream is dropping its tasks ([`StreamExecutor`] spawns
//! hyper's stream tasks inside a watchdog): h2 then resets the stream
//! (RST_STREAM CANCEL) and drops what it buffered for it, and nothing else on
//! the connection notices. The stream's limit reaches its handler through a
//! task-local ([`stream_limit`]): hyper polls the handler inside the
//! stream's task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::task::TaskTracker;

use super::SendLimit;
use crate::metrics::Metrics;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams a client may have open at once on one connection. Browsers open
/// about 100 at most; each streaming one also takes a `--max-clients` slot,
/// so this bounds what one connection can hold, not how many clients there
/// are.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// The largest request header block, decoded: the 16 KiB HTTP/1.1 allows
/// (`max_buf_size`).
pub const MAX_HEADER_LIST: u32 = 16 * 1024;

/// What a client may send on one stream before the server reads it. Clients
/// send requests without bodies and WebSocket messages of 4 KiB at most:
/// HTTP/2's own default (64 KiB) is plenty, and what an unread stream can
/// make us hold.
pub const STREAM_WINDOW: u32 = 64 * 1024;

/// What a client may send on a whole connection before the server reads it.
pub const CONNECTION_WINDOW: u32 = 256 * 1024;

/// Bytes h2 buffers for one stream beyond what the client's window lets out
/// (hyper's default is 400 KiB): one chunk of SSE or WebSocket frames. With
/// the chunk hyper holds, the SSE body's queue and the pump's chunk, a
/// stalled stream holds under half a MiB, as an HTTP/1.1 client's socket
/// buffers and queue do, until its deadline resets it.
pub const MAX_SEND_BUF: usize = 64 * 1024;

/// What [`read_opening`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// The whole HTTP/2 preface.
    H2,
    /// Bytes that are not the preface: HTTP/1.x (or garbage, which hyper's
    /// HTTP/1.1 parser refuses).
    Http1,
    /// The peer closed first.
    Closed,
}

/// Reads the connection's first bytes until they stop matching the HTTP/2
/// preface, match all of it, or the peer closes; returns what it found and
/// the bytes read, for [`Rewind`]. Never reads past the preface. The caller
/// bounds it with the handshake deadline.
pub async fn read_opening<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<(Opening, Vec<u8>)> {
    let mut seen = Vec::with_capacity(PREFACE.len());
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = io.read(&mut buf[..PREFACE.len() - seen.len()]).await?;
        if n == 0 {
            return Ok((Opening::Closed, seen));
        }
        seen.extend_from_slice(&buf[..n]);
        if !PREFACE.starts_with(&seen) {
            return Ok((Opening::Http1, seen));
        }
        if seen.len() == PREFACE.len() {
            return Ok((Opening::H2, seen));
        }
    }
}

/// A connection whose first bytes, already read, are read again first.
pub struct Rewind<T> {
    seen: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(seen: Vec<u8>, inner: T) -> Rewind<T> {
        Rewind { seen, at: 0, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.seen.len() {
            let n = buf.remaining().min(this.seen.len() - this.at);
            buf.put_slice(&this.seen[this.at..this.at + n]);
            this.at += n;
            if this.at == this.seen.len() {
                this.seen = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

tokio::task_local! {
    /// The limit of the HTTP/2 stream whose task is running.
    static STREAM: SendLimit;
}

/// The [`SendLimit`] of the HTTP/2 stream the current task serves, if it
/// serves one (hyper polls a stream's handler inside the stream's task).
pub fn stream_limit() -> Option<SendLimit> {
    STREAM.try_with(SendLimit::clone).ok()
}

/// hyper's executor for one HTTP/2 connection: runs each stream's task (and
/// an extended CONNECT's sending half) under its stream's [`SendLimit`],
/// tracked for shutdown.
#[derive(Clone)]
pub struct StreamExecutor {
    pub tracker: TaskTracker,
    pub send_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // hyper spawns a stream's task from the connection's task (a new
        // stream: a new limit), and the sending half of an upgraded CONNECT
        // stream from that stream's own task (the same stream: its limit,
        // so the WebSocket's deadline covers what it left unsent).
        let limit = stream_limit().unwrap_or_default();
        let watched = Watchdog {
            fut: Box::pin(fut),
            limit: limit.clone(),
            send_timeout: self.send_timeout,
            sleep: None,
            metrics: Arc::clone(&self.metrics),
        };
        self.tracker.spawn(STREAM.scope(limit, watched));
    }
}

/// One of a stream's tasks, dropped once its [`SendLimit`] has passed.
/// Dropping it drops the stream's handles, and h2 resets the stream.
struct Watchdog<F> {
    fut: Pin<Box<F>>,
    limit: SendLimit,
    send_timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

impl<F: Future<Output = ()>> Future for Watchdog<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.fut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // Registered before the limit is read: a deadline set from another
        // task (the stream's pump) after this read wakes us. Of a CONNECT
        // stream's two tasks only the upgrade's lives on (the stream's ends
        // once its 200 is sent), so one waker is enough.
        this.limit.register(cx.waker());
        let Some(at) = this.limit.stream_deadline(this.send_timeout) else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            tracing::debug!("reset an HTTP/2 stream whose client took nothing in time");
            this.metrics.stream_reset();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The largest piece of a response hyper is handed at once on HTTP/2. h2
/// takes a whole piece as soon as the client's window has room for one
/// byte of it, so a response handed whole (a 60 KiB script) would sit in h2's
/// buffer for as long as the client leaves its window shut, out of any
/// deadline's reach; in pieces, h2 holds at most [`MAX_SEND_BUF`] and one
/// piece, and the next waits where the stream's deadline sees it.
pub const PIECE: usize = 16 * 1024;

/// A response body on an HTTP/2 stream, in pieces of at most [`PIECE`],
/// telling the stream's [`SendLimit`] when hyper holds one it could not pass
/// on yet: from the moment the body yields a piece until hyper asks for the
/// next (it asks only once h2 took the piece, within the client's window and
/// [`MAX_SEND_BUF`]). HTTP/3 streams use it the same way (see [`super::h3`]):
/// the next piece is asked for once quinn took the last one.
pub struct WatchedBody {
    inner: Body,
    limit: SendLimit,
    /// What is left of the inner body's last chunk.
    rest: Bytes,
}

impl WatchedBody {
    pub fn new(inner: Body, limit: SendLimit) -> WatchedBody {
        WatchedBody {
            inner,
            limit,
            rest: Bytes::new(),
        }
    }

    /// The next piece of `chunk`, keeping the rest.
    fn piece(&mut self, mut chunk: Bytes) -> Frame<Bytes> {
        if chunk.len() > PIECE {
            self.rest = chunk.split_off(PIECE);
        }
        self.limit.handed();
        Frame::data(chunk)
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.limit.taken();
        if !this.rest.is_empty() {
            let rest = std::mem::take(&mut this.rest);
            return Poll::Ready(Some(Ok(this.piece(rest))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(chunk) => Poll::Ready(Some(Ok(this.piece(chunk)))),
                // Trailers: no window needed.
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn opening(bytes: &[u8]) -> (Opening, Vec<u8>) {
        let mut io = bytes;
        read_opening(&mut io).await.unwrap()
    }

    #[tokio::test]
    async fn the_preface_and_what_is_not() {
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(b"\x00\x00\x00\x04");
        assert_eq!(opening(&h2).await, (Opening::H2, PREFACE.to_vec()));
        assert_eq!(
            opening(b"GET / HTTP/1.1\r\n").await.0,
            Opening::Http1,
            "diverges at the first byte"
        );
        // Never more than a preface's length, even of HTTP/1.1.
        let post = b"POST /a/rather/long/path HTTP/1.1\r\n";
        assert_eq!(
            opening(post).await,
            (Opening::Http1, post[..PREFACE.len()].to_vec())
        );
        assert_eq!(
            opening(&PREFACE[..10]).await,
            (Opening::Closed, PREFACE[..10].to_vec())
        );
        assert_eq!(opening(b"").await, (Opening::Closed, vec![]));
    }

    /// Half a preface and then nothing: still reading when the deadline
    /// (the caller's) passes.
    #[tokio::test]
    async fn half_a_preface_waits_for_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &PREFACE[..12])
            .await
            .unwrap();
        let read = tokio::time::timeout(Duration::from_millis(50), read_opening(&mut server));
        assert!(read.await.is_err());
    }

    /// A body handed whole comes out in pieces of at most [`PIECE`], every byte once, and
    /// its length is still known before the first piece (Content-Length).
    #[tokio::test]
    async fn a_body_comes_out_in_pieces() {
        let text: String = (0..40_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut body = WatchedBody::new(Body::from(text.clone()), SendLimit::default());
        assert_eq!(body.size_hint().exact(), Some(40_000));
        let mut out = Vec::new();
        let mut pieces = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= PIECE);
            out.extend_from_slice(&data);
            pieces += 1;
        }
        assert_eq!(pieces, 3);
        assert_eq!(out, text.as_bytes());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn rewind_replays_then_reads_on() {
        let rest: &[u8] = b" / HTTP/1.1\r\n";
        let mut io = Rewind::new(b"GET".to_vec(), rest);
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\n");
    }
}
