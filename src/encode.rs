//! How lines and events look on the wire, for every transport and sink.
//!
//! Pure functions from plain values to text: no transport types, no hub. The
//! field names of DESIGN.md ("Frames") live here and nowhere else, so a
//! WebSocket, an SSE stream and (later) a broker publisher say the same
//! thing the same way.
//!
//! Three encodings ([`Encoding`]): `text` is the line itself (the shared
//! buffer, no copy); `json` is one JSON object per line or event; `sse` is a
//! complete Server-Sent Events record per line or event. The last two are
//! the same bytes for every client, so a live batch is encoded once per
//! encoding and shared ([`crate::hub::Batch::encoded`]).

use std::fmt::Write as _;

use serde::Serialize;

/// How a stream's frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One frame per line, the line's own text; events are not sent.
    Text,
    /// As `Text`, each line after its file's name and `: ` (a stream of
    /// more than one file).
    PrefixedText,
    /// One JSON object per line and per event.
    Json,
    /// One SSE record (`id:`/`data:` or `event:`/`data:`, blank line) each.
    Sse,
    /// As `Sse`, each line's data after its file's name and `: `.
    PrefixedSse,
}

impl Encoding {
    /// Encodings whose line frames are worth computing once per batch.
    pub const SHARED: usize = 4;

    /// This encoding's slot among the shared ones; `None` for `Text`, whose
    /// frame is the line's own text.
    pub fn shared_slot(self) -> Option<usize> {
        match self {
            Encoding::Text => None,
            Encoding::Json => Some(0),
            Encoding::Sse => Some(1),
            Encoding::PrefixedText => Some(2),
            Encoding::PrefixedSse => Some(3),
        }
    }

    /// Whether frames are bare lines (no events, no gaps can be told).
    pub fn is_text(self) -> bool {
        matches!(self, Encoding::Text | Encoding::PrefixedText)
    }

    /// The same encoding with (or without) each line's file name before it.
    pub fn prefixed(self, prefix: bool) -> Encoding {
        match (self, prefix) {
            (Encoding::Text | Encoding::PrefixedText, true) => Encoding::PrefixedText,
            (Encoding::Text | Encoding::PrefixedText, false) => Encoding::Text,
            (Encoding::Sse | Encoding::PrefixedSse, true) => Encoding::PrefixedSse,
            (Encoding::Sse | Encoding::PrefixedSse, false) => Encoding::Sse,
            (Encoding::Json, _) => Encoding::Json,
        }
    }
}

/// `NAME: LINE`, a line of a stream of more than one file.
pub fn prefixed(file: &str, line: &str) -> String {
    let mut out = String::with_capacity(file.len() + 2 + line.len());
    out.push_str(file);
    out.push_str(": ");
    out.push_str(line);
    out
}

#[derive(Serialize)]
struct JsonLine<'a> {
    seq: u64,
    offset: u64,
    file: &'a str,
    line: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum JsonEvent<'a> {
    Hello { epoch: &'a str, seq: u64 },
    Gap { from: u64, to: u64, reason: &'a str },
}

#[derive(Serialize)]
struct JsonNotice<'a> {
    event: &'a str,
    file: &'a str,
    /// The last line before the event.
    seq: u64,
}

#[derive(Serialize)]
struct JsonUnpublished<'a> {
    event: &'static str,
    reason: &'static str,
    file: &'a str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs of strings and numbers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// `{"seq":N,"offset":B,"file":"app.log","line":"…"}`
pub fn json_line(seq: u64, offset: u64, file: &str, line: &str) -> String {
    to_json(&JsonLine {
        seq,
        offset,
        file,
        line,
    })
}

/// `{"event":"hello","epoch":E,"seq":LAST}`
pub fn json_hello(epoch: &str, seq: u64) -> String {
    to_json(&JsonEvent::Hello { epoch, seq })
}

/// `{"event":"gap","from":A,"to":B,"reason":"evicted"|"epoch"}`
pub fn json_gap(from: u64, to: u64, reason: &str) -> String {
    to_json(&JsonEvent::Gap { from, to, reason })
}

/// `{"event":"rotated","file":"app.log","seq":N}` (and the other file events)
pub fn json_notice(event: &str, file: &str, seq: u64) -> String {
    to_json(&JsonNotice { event, file, seq })
}

/// `{"event":"gap","reason":"unpublished","file":"app.log","seq":N,"lines":L}`
/// (or `"bytes":B` when the lines could not be counted): lines of `file`,
/// after line `seq`, that their source could not publish to the broker. They
/// have no `seq` of their own, so there is no `from`/`to`.
pub fn json_unpublished(file: &str, seq: u64, lines: Option<u64>, bytes: Option<u64>) -> String {
    to_json(&JsonUnpublished {
        event: "gap",
        reason: "unpublished",
        file,
        seq,
        lines,
        bytes,
    })
}

/// The first record of every SSE stream: how long `EventSource` waits
/// before it reconnects.
pub fn sse_retry(millis: u64) -> String {
    format!("retry: {millis}\n\n")
}

/// The comment that keeps an idle SSE stream open through proxies.
pub const SSE_KEEP_ALIVE: &str = ": keep-alive\n\n";

/// A line as an SSE record: `id: EPOCH:SEQ`, `data: LINE`.
///
/// SSE cannot carry a bare `\r` in a field: it becomes another `data:` field
/// (`EventSource` joins them with `\n`), so no client that splits fields on
/// `\n` alone misreads it.
pub fn sse_line(epoch: &str, seq: u64, line: &str) -> String {
    let mut out = String::with_capacity(line.len() + epoch.len() + 32);
    out.push_str("id: ");
    out.push_str(epoch);
    out.push(':');
    let _ = write!(out, "{seq}");
    out.push('\n');
    push_data(&mut out, line);
    out.push('\n');
    out
}

/// A named SSE event: `event: NAME`, `data: DATA`.
pub fn sse_event(name: &str, data: &str) -> String {
    let mut out = String::with_capacity(name.len() + data.len() + 16);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    push_data(&mut out, data);
    out.push('\n');
    out
}

/// `data: …\n` per piece of `text` between line breaks (`\r`, `\n`).
fn push_data(out: &mut String, text: &str) {
    for piece in text.split(['\r', '\n']) {
        out.push_str("data: ");
        out.push_str(piece);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_frames_have_the_documented_fields() {
        assert_eq!(
            json_line(7, 12, "app.log", "a \"b\""),
            r#"{"seq":7,"offset":12,"file":"app.log","line":"a \"b\""}"#
        );
        assert_eq!(
            json_hello("e1", 3),
            r#"{"event":"hello","epoch":"e1","seq":3}"#
        );
        assert_eq!(
            json_unpublished("a/app.log", 7, Some(3), None),
            r#"{"event":"gap","reason":"unpublished","file":"a/app.log","seq":7,"lines":3}"#
        );
        assert_eq!(
            json_unpublished("app.log", 0, None, Some(120)),
            r#"{"event":"gap","reason":"unpublished","file":"app.log","seq":0,"bytes":120}"#
        );
        assert_eq!(
            json_gap(1, 9, "evicted"),
            r#"{"event":"gap","from":1,"to":9,"reason":"evicted"}"#
        );
        assert_eq!(
            json_notice("rotated", "app.log", 4),
            r#"{"event":"rotated","file":"app.log","seq":4}"#
        );
    }

    #[test]
    fn sse_records_are_byte_exact() {
        assert_eq!(sse_line("e1", 5, "hello"), "id: e1:5\ndata: hello\n\n");
        assert_eq!(sse_line("e1", 6, ""), "id: e1:6\ndata: \n\n");
        assert_eq!(sse_line("e1", 7, "a\rb"), "id: e1:7\ndata: a\ndata: b\n\n");
        assert_eq!(sse_event("gap", "{}"), "event: gap\ndata: {}\n\n");
        assert_eq!(sse_retry(1000), "retry: 1000\n\n");
    }
}
