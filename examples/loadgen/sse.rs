//! SSE clients: `GET /events?backlog=0` over a plain HTTP/1.1 connection, the
//! chunked body decoded here, then the event stream parsed as `EventSource`
//! does (fields split at the first `:`, one optional space, records ended
//! by a blank line). Line records (`id: EPOCH:SEQ`, `data: LINE`) go to the
//! same [`Tally`] as WebSocket messages; `retry:`, comments (`: keep-alive`)
//! and named events are skipped, except `event: closed`, which ends the
//! stream like a WebSocket Close. Each record's SEQ must be the previous
//! one's + 1 in the same epoch (`id_breaks` otherwise).
//!
//! The parser is [`EventStream`]: the HTTP/2 and HTTP/3 clients of
//! [`crate::mux`] feed it their streams' DATA frames as they are (no
//! transfer coding there), the HTTP/1.1 client its socket's bytes, chunked.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::{End, Tally};

/// An accepted `/events` response, positioned at the start of its body.
pub struct SseStream {
    tcp: TcpStream,
    /// Body bytes read together with the response head.
    early: Vec<u8>,
    chunked: bool,
    read_buffer: usize,
}

/// Connects, sends the request and reads the response head; only a
/// `200 text/event-stream` is accepted (`HTTP 503` etc. otherwise, as the
/// WebSocket clients report a refused handshake).
pub async fn open(addr: SocketAddr, read_buffer: usize) -> Result<SseStream, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    tcp.set_nodelay(true).ok();
    let req = format!(
        "GET /events?backlog=0 HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("io: {:?}", e.kind()))?;
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(at) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        let mut b = [0u8; 1024];
        let n = tcp
            .read(&mut b)
            .await
            .map_err(|e| format!("io: {:?}", e.kind()))?;
        if n == 0 {
            return Err("eof before the response head".into());
        }
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap_or("?");
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if !header("content-type").is_some_and(|v| v.starts_with("text/event-stream")) {
        return Err("200 but not text/event-stream".into());
    }
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    Ok(SseStream {
        tcp,
        early: buf.split_off(head_len),
        chunked,
        read_buffer: read_buffer.max(1024),
    })
}

/// Reads the stream until the server ends it (or the caller stops polling).
pub async fn read_loop(s: &mut SseStream, tally: &mut Tally<'_>) -> End {
    let mut events = if s.chunked {
        EventStream::chunked()
    } else {
        EventStream::plain()
    };
    let early = std::mem::take(&mut s.early);
    if let Some(end) = events.feed(&early, tally) {
        return end;
    }
    let mut raw = vec![0u8; s.read_buffer];
    loop {
        let n = match s.tcp.read(&mut raw).await {
            Ok(0) => return End::Eof,
            Ok(n) => n,
            Err(e) => return End::Error(format!("io: {:?}", e.kind())),
        };
        if let Some(end) = events.feed(&raw[..n], tally) {
            return end;
        }
    }
}

/// One response body's event stream, whatever carries it: its transfer
/// coding (HTTP/1.1 chunked, or none: an HTTP/1.1 body read to the end of the
/// connection, or an HTTP/2 or HTTP/3 stream's DATA frames) and the parser.
pub struct EventStream {
    body: Dechunk,
    parser: Parser,
}

impl EventStream {
    /// An HTTP/1.1 body in chunked transfer coding.
    pub fn chunked() -> EventStream {
        EventStream {
            body: Dechunk::Size(0),
            parser: Parser::default(),
        }
    }

    /// A body without transfer coding (HTTP/2 and HTTP/3 DATA frames).
    pub fn plain() -> EventStream {
        EventStream {
            body: Dechunk::Plain,
            parser: Parser::default(),
        }
    }

    /// Bytes just received: counted, every complete record handed to `tally`,
    /// all stamped with one receive time. `Some` when the stream ended in
    /// them (`event: closed`, the last chunk, a transfer-coding error).
    pub fn feed(&mut self, input: &[u8], tally: &mut Tally<'_>) -> Option<End> {
        self.parser.feed(&mut self.body, input, tally)
    }
}

/// HTTP/1.1 chunked transfer coding, decoded incrementally.
#[derive(Debug, PartialEq)]
enum Dechunk {
    /// No transfer coding: the body runs to the end of the connection.
    Plain,
    /// Reading a chunk-size line (hex), value so far.
    Size(u64),
    /// In a chunk extension (`;…`) after this size.
    Ext(u64),
    /// This many data bytes left in the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer section after the last chunk; whether at a line start.
    Trailer(bool),
    Done,
}

impl Dechunk {
    /// Appends the body bytes in `input` to `out`; `Ok(true)` once the last
    /// chunk and its trailer are through.
    fn decode(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        while !input.is_empty() {
            if let Dechunk::Plain = self {
                out.extend_from_slice(input);
                return Ok(false);
            }
            if let Dechunk::Data(left) = self {
                let n = (*left).min(input.len() as u64) as usize;
                out.extend_from_slice(&input[..n]);
                input = &input[n..];
                *left -= n as u64;
                if *left == 0 {
                    *self = Dechunk::DataEnd;
                }
                continue;
            }
            let c = input[0];
            input = &input[1..];
            *self = match (&*self, c) {
                (Dechunk::Size(v), b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let d = (c as char).to_digit(16).unwrap_or(0) as u64;
                    if *v > (1 << 40) {
                        return Err("chunk size too large".into());
                    }
                    Dechunk::Size(v * 16 + d)
                }
                (Dechunk::Size(v), b';' | b' ' | b'\t') => Dechunk::Ext(*v),
                (Dechunk::Size(v) | Dechunk::Ext(v), b'\r') => Dechunk::Ext(*v),
                (Dechunk::Size(0) | Dechunk::Ext(0), b'\n') => Dechunk::Trailer(true),
                (Dechunk::Size(v) | Dechunk::Ext(v), b'\n') => Dechunk::Data(*v),
                (Dechunk::Ext(v), _) => Dechunk::Ext(*v),
                (Dechunk::DataEnd, b'\r') => Dechunk::DataEnd,
                (Dechunk::DataEnd, b'\n') => Dechunk::Size(0),
                (Dechunk::Trailer(_), b'\r') => continue,
                (Dechunk::Trailer(true), b'\n') => Dechunk::Done,
                (Dechunk::Trailer(_), b'\n') => Dechunk::Trailer(true),
                (Dechunk::Trailer(_), _) => Dechunk::Trailer(false),
                (Dechunk::Done, _) => Dechunk::Done,
                (state, c) => {
                    return Err(format!("bad chunked body: byte {c:#04x} in {state:?}"));
                }
            };
        }
        Ok(*self == Dechunk::Done)
    }
}

/// The event-stream parser: complete lines are taken from `pending`, fields
/// gathered until a blank line dispatches the record.
#[derive(Default)]
struct Parser {
    /// Decoded body bytes not yet parsed (at most one partial line after
    /// [`Parser::parse`]).
    pending: Vec<u8>,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    id: Vec<u8>,
    /// Epoch and SEQ of the last line record.
    last_id: Option<(Vec<u8>, u64)>,
}

impl Parser {
    /// Bytes just read: decoded, counted and parsed, all stamped with one
    /// receive time.
    fn feed(&mut self, body: &mut Dechunk, input: &[u8], tally: &mut Tally<'_>) -> Option<End> {
        let now = tally.now();
        let before = self.pending.len();
        let finished = match body.decode(input, &mut self.pending) {
            Ok(finished) => finished,
            Err(e) => return Some(End::Error(e)),
        };
        tally.received(self.pending.len() - before, now);
        if let Some(end) = self.parse(tally, now) {
            return Some(end);
        }
        finished.then_some(End::BodyDone)
    }

    /// Parses every complete line; a stream-ending event returns its [`End`].
    fn parse(&mut self, tally: &mut Tally<'_>, now: u64) -> Option<End> {
        let mut pos = 0;
        let mut end = None;
        while end.is_none() {
            let Some(nl) = memchr::memchr(b'\n', &self.pending[pos..]) else {
                break;
            };
            let (from, to) = (pos, pos + nl);
            pos = to + 1;
            let line = &self.pending[from..to];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                end = self.dispatch(tally, now);
                continue;
            }
            if line[0] == b':' {
                continue; // comment (`: keep-alive`)
            }
            let (field, value) = match memchr::memchr(b':', line) {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"data" => {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                }
                b"event" => {
                    self.event.clear();
                    self.event.extend_from_slice(value);
                }
                b"id" => {
                    self.id.clear();
                    self.id.extend_from_slice(value);
                }
                _ => {} // retry, unknown fields
            }
        }
        self.pending.drain(..pos);
        end
    }

    /// A blank line: hands a line record to the tally; skips named events
    /// but `closed`, which ends the stream.
    fn dispatch(&mut self, tally: &mut Tally<'_>, now: u64) -> Option<End> {
        let mut end = None;
        if self.has_data {
            if self.event.is_empty() || self.event == b"message" {
                self.check_id(tally);
                tally.line(&self.data, now);
            } else if self.event == b"closed" {
                end = Some(End::Event {
                    name: String::from_utf8_lossy(&self.event).into_owned(),
                    data: String::from_utf8_lossy(&self.data).into_owned(),
                });
            }
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.id.clear();
        end
    }

    fn check_id(&mut self, tally: &Tally<'_>) {
        let parsed = memchr::memrchr(b':', &self.id).and_then(|c| {
            let seq = std::str::from_utf8(&self.id[c + 1..]).ok()?.parse().ok()?;
            Some((&self.id[..c], seq))
        });
        let ok = match (&mut self.last_id, parsed) {
            (_, None) => false,
            (None, Some((epoch, seq))) => {
                self.last_id = Some((epoch.to_vec(), seq));
                true
            }
            (Some((last_epoch, last_seq)), Some((epoch, seq))) => {
                let ok = last_epoch.as_slice() == epoch && seq == *last_seq + 1;
                if last_epoch.as_slice() != epoch {
                    *last_epoch = epoch.to_vec();
                }
                *last_seq = seq;
                ok
            }
        };
        if !ok {
            tally
                .st
                .id_breaks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Instant;

    use super::{Dechunk, EventStream};
    use crate::clients::{ClientStat, End, Recorder, Tally};

    fn decode_all(parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut d = Dechunk::Size(0);
        let mut out = Vec::new();
        let mut done = false;
        for p in parts {
            done = d.decode(p, &mut out).unwrap();
        }
        (out, done)
    }

    #[test]
    fn chunked_body_is_decoded_across_reads() {
        let body: &[u8] =
            b"d\r\nretry: 1000\n\n\r\n1B;x=y\r\nid: e:1\ndata: seq=1 t=2 x\n\n\r\n0\r\n\r\n";
        let (whole, done) = decode_all(&[body]);
        assert!(done);
        assert_eq!(whole, b"retry: 1000\n\nid: e:1\ndata: seq=1 t=2 x\n\n");
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode_all(&bytes), (whole, true));
    }

    #[test]
    fn a_bad_chunk_size_is_an_error() {
        let mut out = Vec::new();
        assert!(Dechunk::Size(0).decode(b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn records_are_counted_and_the_rest_skipped() {
        let st = ClientStat::default();
        let rec = Recorder::new(Instant::now());
        let mut tally = Tally::new(&st, &rec, 0, false);
        // As an HTTP/2 or HTTP/3 stream's DATA frames arrive: no transfer coding.
        let mut p = EventStream::plain();
        let stream: &[u8] = b"retry: 1000\n\n: keep-alive\n\nid: e1:7\ndata: seq=0 t=0 warm-up\n\n\
            event: rotated\ndata: {\"file\":\"app.log\"}\n\nid: e1:8\r\ndata: seq=1 t=5 x\r\n\r\n\
            id: e1:9\ndata:seq=2 t=6 y\n\nid: e1:11\ndata: seq=2 t=6 y\n\nevent: closed\ndata: client too slow\n\n\
            id: e1:12\ndata: seq=3 t=7 z\n\n";
        let mut end = None;
        for b in stream.chunks(5) {
            if end.is_none() {
                end = p.feed(b, &mut tally);
            }
        }
        assert!(st.warm.load(Relaxed));
        assert_eq!(st.delivered.load(Relaxed), 2);
        assert_eq!(st.dups.load(Relaxed), 1);
        assert_eq!(st.foreign.load(Relaxed), 0);
        assert_eq!(st.id_breaks.load(Relaxed), 1, "e1:9 -> e1:11");
        assert!(
            matches!(end, Some(End::Event { ref name, ref data }) if name == "closed" && data == "client too slow")
        );
    }
}
