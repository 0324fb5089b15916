//! WebTransport sessions on the HTTP/3 connections of [`super::h3`]: the
//! protocol plumbing only (draft-ietf-webtrans-http3 as browsers speak it,
//! `sec-webtransport-http3-draft: draft02`); what a session carries is the
//! `/wt` handler's ([`crate::transport::wt`]).
//!
//! h3 does the HTTP/3 side: the SETTINGS that announce WebTransport
//! (extended CONNECT, HTTP/3 datagrams, `SETTINGS_ENABLE_WEBTRANSPORT`,
//! sessions per connection) and the parsing of an extended CONNECT with
//! `:protocol = webtransport`. Such a request goes through the router like
//! any other, with a [`WebTransportUpgrade`] among its extensions (as a
//! WebSocket's `OnUpgrade`): the handler runs every check while it can still
//! answer with a status, and answers 2xx to accept. Then [`super::h3`] sends
//! that head, keeps the CONNECT stream open, and hands the handler a
//! [`Session`].
//!
//! Why not the `h3-webtransport` crate: its session takes over the whole h3
//! connection (every later request of that connection must then be accepted
//! through the session), and it can neither close a session with a code and
//! reason nor tell when a stream's data was acknowledged. What the server
//! needs is small, so it is here, on the quinn connection itself:
//!
//! - a server stream ([`Session::open_uni`]): a QUIC unidirectional stream
//!   that starts with the type `0x54` (WebTransport stream) and the session
//!   id (the CONNECT stream's id), both varints, then the application's
//!   bytes; it is a plain [`quinn::SendStream`] (finish, reset with
//!   [`stream_error_code`], `stopped` for the acknowledgement of everything
//!   sent);
//! - the close ([`Session::close`]): a `CLOSE_WEBTRANSPORT_SESSION` capsule
//!   (type `0x2843`: a 32-bit code and a UTF-8 reason of at most 1024 bytes)
//!   in a DATA frame on the CONNECT stream, then its FIN;
//! - the peer's end ([`Session::ended`]): its FIN (after its own close
//!   capsule) or reset of the CONNECT stream, or the connection's end (an
//!   idle timeout — no answer to PINGs — is [`Ended::Silent`]).

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use h3::ext::Protocol;
use tokio::sync::oneshot;

/// The WebTransport unidirectional stream type (draft-ietf-webtrans-http3 §4.1).
const WT_UNI_STREAM: u64 = 0x54;

/// The `CLOSE_WEBTRANSPORT_SESSION` capsule type (§5).
const CLOSE_SESSION_CAPSULE: u64 = 0x2843;

/// The longest reason a close capsule may carry.
const MAX_REASON: usize = 1024;

/// The first HTTP/3 error code of the WebTransport application error
/// codes (§4.3): a stream reset with application code `n` carries
/// `FIRST_APP_CODE + n + n / 0x1e` (the gaps skip HTTP/3's reserved codes).
const FIRST_APP_CODE: u64 = 0x52e4_a40f_a8db;

/// The HTTP/3 error code that carries WebTransport application error code
/// `n` on a stream reset (what a browser reports as `streamErrorCode`).
pub fn stream_error_code(n: u32) -> quinn::VarInt {
    let n = u64::from(n);
    // At most about 2^47: always a varint.
    quinn::VarInt::from_u64(FIRST_APP_CODE + n + n / 0x1e).unwrap_or(quinn::VarInt::MAX)
}

/// Whether `request` asks for a WebTransport session (extended CONNECT with
/// `:protocol = webtransport`).
pub fn is_webtransport<T>(request: &axum::http::Request<T>) -> bool {
    request.method() == axum::http::Method::CONNECT
        && request.extensions().get::<Protocol>() == Some(&Protocol::WEB_TRANSPORT)
}

/// Found by the `/wt` handler among the request's extensions: the session,
/// once the handler's 2xx went out.
#[derive(Clone)]
pub struct WebTransportUpgrade(Arc<Mutex<Option<oneshot::Receiver<Session>>>>);

impl WebTransportUpgrade {
    /// The session; `None` if it could not be set up (the client left).
    pub async fn session(self) -> Option<Session> {
        let receiver = match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        receiver?.await.ok()
    }
}

/// The server's side of an upgrade: where the session goes.
pub(super) struct Pending(oneshot::Sender<Session>);

pub(super) fn upgrade() -> (WebTransportUpgrade, Pending) {
    let (tx, rx) = oneshot::channel();
    (
        WebTransportUpgrade(Arc::new(Mutex::new(Some(rx)))),
        Pending(tx),
    )
}

type ConnectSend = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type ConnectRecv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// How the peer ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It closed the session or the connection, or reset the CONNECT stream.
    Gone,
    /// The connection timed out: nothing answered its PINGs.
    Silent,
}

/// One accepted WebTransport session.
pub struct Session {
    quic: quinn::Connection,
    id: u64,
    connect: ConnectSend,
    ended: oneshot::Receiver<Ended>,
    reader: tokio::task::JoinHandle<()>,
    /// Dropped when the session is done with: the request's task (which
    /// holds the stream's place among the connection's) waits for that.
    _done: oneshot::Sender<()>,
}

impl Pending {
    /// Makes the session of the CONNECT stream `connect` on `quic` (its
    /// response head sent) and hands it to the handler; resolves once the
    /// handler is done with it (at once if it is gone).
    pub(super) async fn hand_over(
        self,
        quic: quinn::Connection,
        connect: h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    ) {
        let id = connect.id().into_inner();
        let (connect, recv) = connect.split();
        let (tell, ended) = oneshot::channel();
        let reader = tokio::spawn(watch(recv, quic.clone(), tell));
        let (done, finished) = oneshot::channel();
        let session = Session {
            quic,
            id,
            connect,
            ended,
            reader,
            _done: done,
        };
        if self.0.send(session).is_ok() {
            let _ = finished.await;
        }
    }
}

/// Reads (and drops) what the client sends on the CONNECT stream (capsules)
/// until it ends, or the connection does; tells how.
async fn watch(mut recv: ConnectRecv, quic: quinn::Connection, tell: oneshot::Sender<Ended>) {
    let ended = async {
        loop {
            match recv.recv_data().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Ended::Gone,
            }
        }
    };
    let how = tokio::select! {
        how = ended => how,
        err = quic.closed() => match err {
            quinn::ConnectionError::TimedOut => Ended::Silent,
            _ => Ended::Gone,
        },
    };
    let _ = tell.send(how);
}

impl Session {
    /// Opens a server stream of this session (waits while the client allows
    /// no more streams).
    pub async fn open_uni(&self) -> Result<quinn::SendStream, std::io::Error> {
        let mut stream = self.quic.open_uni().await?;
        let mut header = BytesMut::with_capacity(16);
        put_varint(&mut header, WT_UNI_STREAM);
        put_varint(&mut header, self.id);
        stream.write_all(&header).await?;
        Ok(stream)
    }

    /// Resolves when the peer ended the session. Cheap to poll each turn.
    pub async fn ended(&mut self) -> Ended {
        (&mut self.ended).await.unwrap_or(Ended::Gone)
    }

    /// The QUIC connection's remote address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.quic.remote_address()
    }

    /// Closes the session with `code` and `reason` (cut to 1024 bytes): the
    /// close capsule, then the CONNECT stream's end. Bound it: it waits for
    /// flow control like any write.
    pub async fn close(mut self, code: u32, reason: &str) {
        let mut reason = reason;
        while reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = &reason[..cut];
        }
        let mut capsule = BytesMut::with_capacity(16 + reason.len());
        put_varint(&mut capsule, CLOSE_SESSION_CAPSULE);
        put_varint(&mut capsule, 4 + reason.len() as u64);
        capsule.put_u32(code);
        capsule.put_slice(reason.as_bytes());
        if let Err(err) = self.connect.send_data(capsule.freeze()).await {
            tracing::debug!("WebTransport close capsule not sent: {err}");
            return;
        }
        if let Err(err) = self.connect.finish().await {
            tracing::debug!("WebTransport CONNECT stream not finished: {err}");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Appends `v` as a QUIC variable-length integer (RFC 9000 §16); values
/// above 2^62 - 1 (none here: stream ids and types are below) are clamped.
fn put_varint(buf: &mut BytesMut, v: u64) {
    match v {
        0..=0x3f => buf.put_u8(v as u8),
        0x40..=0x3fff => buf.put_u16(0x4000 | v as u16),
        0x4000..=0x3fff_ffff => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v.min((1 << 62) - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_rfc_9000_shows_them() {
        let enc = |v| {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            b.to_vec()
        };
        assert_eq!(enc(37), [0x25]);
        assert_eq!(enc(15293), [0x7b, 0xbd]);
        assert_eq!(enc(494878333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(
            enc(151288809941952652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
        assert_eq!(enc(WT_UNI_STREAM), [0x40, 0x54]);
        assert_eq!(enc(CLOSE_SESSION_CAPSULE), [0x68, 0x43]);
    }

    #[test]
    fn stream_error_codes_skip_the_reserved_ones() {
        assert_eq!(stream_error_code(0).into_inner(), 0x52e4a40fa8db);
        assert_eq!(stream_error_code(0x1d).into_inner(), 0x52e4a40fa8db + 0x1d);
        // 0x52e4a40fa8db + 0x1e would be a reserved (grease) HTTP/3 code.
        assert_eq!(stream_error_code(0x1e).into_inner(), 0x52e4a40fa8db + 0x1f);
        // None is an HTTP/3 reserved code (0x1f * N + 0x21).
        for n in 0..2000 {
            assert_ne!((stream_error_code(n).into_inner() - 0x21) % 0x1f, 0, "{n}");
        }
    }
}
