//! Lines: the text type every stage shares, and the splitter that turns
//! bytes read from a file into lines. Neutral ground: sources produce lines
//! with it, the hub keeps them, transports send them; it imports none of
//! them.
//!
//! It owns the read buffer, so a line handed out is a slice of the very
//! allocation the kernel copied the file into (`BytesMut::split_to`): no
//! per-line copy and no per-line allocation. It does no I/O itself — the
//! reader fills [`LineSplitter::spare`] — so the edge cases (CRLF, lines cut
//! across reads, over-long lines, invalid UTF-8) are tested here, in isolation.

use bytes::{Bytes, BytesMut};

/// A line's text: UTF-8, validated once when the line is read, then shared.
///
/// Why axum's WebSocket text type: it is `Bytes` that is known to be UTF-8,
/// so a WebSocket Text frame is sent from the very buffer the file was read
/// into (no copy, no second validation per client), and `Bytes::from(text)`
/// is free for every other sink (SSE, brokers). Named here, once, so no
/// other stage spells the transport's type.
pub type Text = axum::extract::ws::Utf8Bytes;

/// A complete line (or a piece of an over-long one) as found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// Byte offset of the line's first byte in its file.
    pub offset: u64,
    /// The line without its `\n` and without a `\r` before it.
    pub bytes: Bytes,
}

/// Converts line bytes to text, validating UTF-8 exactly once.
///
/// Valid UTF-8 (the common case) keeps the same buffer; anything else is
/// copied with U+FFFD in place of each invalid sequence, so no line is dropped.
pub fn to_text(bytes: Bytes) -> Text {
    match Text::try_from(bytes.clone()) {
        Ok(text) => text,
        Err(_) => Text::from(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Splits a byte stream into lines, holding a trailing partial line until
/// its newline arrives.
#[derive(Debug)]
pub struct LineSplitter {
    /// Bytes read but not yet handed out: at most one partial line plus the
    /// last read.
    buf: BytesMut,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Where to resume the newline search in `buf` (everything before it is
    /// known to hold no `\n`), so a long partial line is not rescanned.
    scanned: usize,
    /// A longer line is handed out in pieces of at most this many bytes.
    max_line: usize,
    /// Where reads land before [`LineSplitter::commit`] copies them.
    scratch: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for a stream that starts at file offset `offset`.
    pub fn new(offset: u64, max_line: usize) -> Self {
        LineSplitter {
            buf: BytesMut::new(),
            buf_offset: offset,
            scanned: 0,
            max_line: max_line.max(1),
            scratch: Vec::new(),
        }
    }

    /// The file offset just past the last byte given to the splitter.
    pub fn end_offset(&self) -> u64 {
        self.buf_offset + self.buf.len() as u64
    }

    /// Bytes held as a partial line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Starts over at `offset` (after truncation or when switching files),
    /// discarding nothing: call [`LineSplitter::flush`] first to keep the partial line.
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.buf_offset = offset;
        self.scanned = 0;
    }

    /// A writable region of `want` bytes to read into. Fill a prefix of it,
    /// then call [`LineSplitter::commit`] with the count.
    ///
    /// The region is a scratch buffer reused for every read; `commit` copies
    /// what was read into an allocation of exactly the right size. Reading
    /// straight into a large shared buffer would be one copy less, but every
    /// line handed out keeps its whole allocation alive: a writer that adds
    /// one line per write would pin a 128 KiB buffer per 100-byte line held
    /// in the history. The copy (memcpy speed) keeps memory proportional to
    /// the lines held.
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.scratch.len() < want {
            // Zeroed once per size, then reused: no `unsafe` for uninitialised memory.
            self.scratch.resize(want, 0);
        }
        &mut self.scratch[..want]
    }

    /// Keeps `filled` bytes of the region [`LineSplitter::spare`] returned.
    pub fn commit(&mut self, want: usize, filled: usize) {
        let filled = filled.min(want).min(self.scratch.len());
        if filled == 0 {
            return;
        }
        let mut fresh = BytesMut::with_capacity(self.buf.len() + filled);
        fresh.extend_from_slice(&self.buf);
        fresh.extend_from_slice(&self.scratch[..filled]);
        self.buf = fresh;
    }

    /// Keeps `data`, just read into a buffer of the caller's (one per reader
    /// thread, not per file), copied as [`LineSplitter::commit`] does.
    pub fn take(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut fresh = BytesMut::with_capacity(self.buf.len() + data.len());
        fresh.extend_from_slice(&self.buf);
        fresh.extend_from_slice(data);
        self.buf = fresh;
    }

    /// Appends bytes (used by tests and by callers that already hold a buffer).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Moves every complete line (and every full `max_line` piece of an
    /// over-long one) into `out`.
    pub fn drain(&mut self, out: &mut Vec<RawLine>) {
        loop {
            let window_end = self.buf.len().min(self.max_line + 1);
            match memchr::memchr(b'\n', &self.buf[self.scanned.min(window_end)..window_end]) {
                Some(pos) => {
                    let nl = self.scanned.min(window_end) + pos;
                    let mut line = self.buf.split_to(nl + 1).freeze();
                    let offset = self.buf_offset;
                    self.buf_offset += line.len() as u64;
                    self.scanned = 0;
                    line.truncate(nl);
                    if line.last() == Some(&b'\r') {
                        line.truncate(nl - 1);
                    }
                    // The search window ends at max_line, so the line fits.
                    out.push(RawLine {
                        offset,
                        bytes: line,
                    });
                }
                None if self.buf.len() > self.max_line => {
                    let cut = char_boundary(&self.buf, self.max_line);
                    let piece = self.buf.split_to(cut).freeze();
                    let offset = self.buf_offset;
                    self.buf_offset += cut as u64;
                    self.scanned = 0;
                    out.push(RawLine {
                        offset,
                        bytes: piece,
                    });
                }
                None => {
                    self.scanned = self.buf.len();
                    return;
                }
            }
        }
    }

    /// Hands out the partial line, if any, as a line of its own: used when
    /// the file is rotated or truncated under it, so nothing is lost.
    pub fn flush(&mut self, out: &mut Vec<RawLine>) {
        if self.buf.is_empty() {
            return;
        }
        let offset = self.buf_offset;
        let mut line = self.buf.split().freeze();
        self.buf_offset += line.len() as u64;
        self.scanned = 0;
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        out.push(RawLine {
            offset,
            bytes: line,
        });
    }
}

/// The largest cut point `<= max` that does not split a UTF-8 sequence
/// (falling back to `max` when no boundary is found within 3 bytes, i.e. the
/// data is not UTF-8 there anyway).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    if max >= bytes.len() {
        return bytes.len();
    }
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i > 0 && (bytes[i] & 0xC0) != 0x80)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(chunks: &[&[u8]], max: usize) -> (Vec<RawLine>, LineSplitter) {
        let mut s = LineSplitter::new(0, max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            s.drain(&mut out);
        }
        (out, s)
    }

    fn texts(lines: &[RawLine]) -> Vec<&[u8]> {
        lines.iter().map(|l| &l.bytes[..]).collect()
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let (out, s) = split_all(&[b"a\r\nbb\n\nccc"], 100);
        assert_eq!(texts(&out), vec![&b"a"[..], b"bb", b""]);
        assert_eq!(
            out.iter().map(|l| l.offset).collect::<Vec<_>>(),
            vec![0, 3, 6]
        );
        assert_eq!(s.pending(), 3);
        assert_eq!(s.end_offset(), 10);
    }

    #[test]
    fn partial_line_waits_for_its_newline() {
        let (out, _) = split_all(&[b"abc", b"def\n"], 100);
        assert_eq!(texts(&out), vec![&b"abcdef"[..]]);
    }

    #[test]
    fn crlf_split_across_reads() {
        let (out, _) = split_all(&[b"abc\r", b"\nx\n"], 100);
        assert_eq!(texts(&out), vec![&b"abc"[..], b"x"]);
    }

    #[test]
    fn long_line_in_pieces_on_char_boundaries() {
        // 'é' is two bytes; a cut at 3 would split the second one.
        let (out, s) = split_all(&["aéé".as_bytes(), b"zz\n"], 4);
        let joined: Vec<u8> = out.iter().flat_map(|l| l.bytes.to_vec()).collect();
        assert_eq!(joined, "aéézz".as_bytes());
        for l in &out {
            assert!(l.bytes.len() <= 4);
            assert!(std::str::from_utf8(&l.bytes).is_ok(), "{:?}", l.bytes);
        }
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn long_line_exactly_one_over() {
        let (out, _) = split_all(&[b"abcde\n"], 4);
        assert_eq!(texts(&out), vec![&b"abcd"[..], b"e"]);
        assert_eq!(out[1].offset, 4);
    }

    #[test]
    fn flush_hands_out_partial_line() {
        let (mut out, mut s) = split_all(&[b"x\nhalf\r"], 100);
        s.flush(&mut out);
        assert_eq!(texts(&out), vec![&b"x"[..], b"half"]);
        assert_eq!(out[1].offset, 2);
        assert_eq!(s.end_offset(), 7);
    }

    #[test]
    fn a_small_read_does_not_pin_a_large_buffer() {
        let mut s = LineSplitter::new(0, 1 << 20);
        let region = s.spare(128 * 1024);
        region[..6].copy_from_slice(b"hello\n");
        s.commit(128 * 1024, 6);
        let mut out = Vec::new();
        s.drain(&mut out);
        assert_eq!(texts(&out), vec![&b"hello"[..]]);
        // The read was copied into an allocation of its own size (6 bytes, now
        // all handed out), not kept in the 128 KiB region it was read into.
        assert_eq!(s.buf.capacity(), 0);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(&*to_text(Bytes::from_static(b"ab\xffcd")), "ab\u{FFFD}cd");
        assert_eq!(&*to_text(Bytes::from_static(b"ok")), "ok");
    }

    #[test]
    fn spare_and_commit() {
        let mut s = LineSplitter::new(10, 100);
        let region = s.spare(8);
        region[..4].copy_from_slice(b"hi\nx");
        s.commit(8, 4);
        let mut out = Vec::new();
        s.drain(&mut out);
        assert_eq!(texts(&out), vec![&b"hi"[..]]);
        assert_eq!(out[0].offset, 10);
        assert_eq!(s.end_offset(), 14);
    }

    proptest! {
        /// Any bytes, cut into any chunks, reassemble to the input: every `\n`
        /// ends a line, pieces are never longer than the limit, offsets are exact.
        #[test]
        fn chunking_never_changes_the_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..20),
            max in 1usize..40,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&data[last..c]); last = c; }
            chunks.push(&data[last..]);
            let (mut out, mut s) = split_all(&chunks, max);
            s.flush(&mut out);
            // Rebuild: each line's bytes sit at its offset in the input.
            for l in &out {
                prop_assert!(l.bytes.len() <= max);
                let at = l.offset as usize;
                prop_assert_eq!(&data[at..at + l.bytes.len()], &l.bytes[..]);
            }
            // Every byte that is not a stripped terminator is covered exactly once, in order.
            let mut covered = vec![false; data.len()];
            let mut prev_end = 0usize;
            for l in &out {
                let at = l.offset as usize;
                prop_assert!(at >= prev_end);
                for (i, c) in covered.iter_mut().enumerate().skip(at).take(l.bytes.len()) { prop_assert!(!*c, "byte {} twice", i); *c = true; }
                prev_end = at + l.bytes.len();
            }
            for (i, c) in covered.iter().enumerate() {
                if !*c {
                    let b = data[i];
                    let crlf = b == b'\r' && data.get(i + 1) == Some(&b'\n');
                    let trailing_cr = b == b'\r' && i + 1 == data.len();
                    prop_assert!(b == b'\n' || crlf || trailing_cr, "byte {} ({}) lost", i, b);
                }
            }
        }
    }
}
