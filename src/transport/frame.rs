//! How lines and events are encoded on the wire, for every transport.
//!
//! Text frames are the line itself (a shared buffer, no copy); JSON frames and
//! SSE events are built here so that the field names of DESIGN.md live in one
//! file.

use axum::extract::ws::{Message, Utf8Bytes};
use axum::response::sse::Event;
use serde::Serialize;

use crate::hub::{Gap, GapReason, Hub, Line, Notice};

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
    Hello {
        epoch: &'a str,
        seq: u64,
    },
    Gap {
        from: u64,
        to: u64,
        reason: &'static str,
    },
}

#[derive(Serialize)]
struct JsonNotice<'a> {
    event: &'static str,
    file: &'a str,
    /// The last line before the event.
    seq: u64,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// `{"seq":N,"offset":B,"file":"app.log","line":"…"}`
pub fn line_json(hub: &Hub, line: &Line) -> String {
    to_json(&JsonLine {
        seq: line.seq,
        offset: line.offset,
        file: hub.file_name(line.file),
        line: &line.text,
    })
}

/// `{"event":"hello","epoch":E,"seq":LAST}`
pub fn hello_json(epoch: &str, seq: u64) -> String {
    to_json(&JsonEvent::Hello { epoch, seq })
}

fn reason(gap: &Gap) -> &'static str {
    match gap.reason {
        GapReason::Evicted => "evicted",
        GapReason::Epoch => "epoch",
    }
}

/// `{"event":"gap","from":A,"to":B,"reason":"evicted"|"epoch"}`
pub fn gap_json(gap: &Gap) -> String {
    to_json(&JsonEvent::Gap {
        from: gap.from,
        to: gap.to,
        reason: reason(gap),
    })
}

/// `{"event":"rotated","file":"app.log","seq":N}` (and the other file events)
pub fn notice_json(hub: &Hub, notice: &Notice) -> String {
    to_json(&JsonNotice {
        event: notice.kind.as_str(),
        file: hub.file_name(notice.file),
        seq: notice.after_seq,
    })
}

/// A line as a WebSocket message.
pub fn line_message(hub: &Hub, line: &Line, json: bool) -> Message {
    if json {
        Message::Text(Utf8Bytes::from(line_json(hub, line)))
    } else {
        Message::Text(line.text.clone())
    }
}

/// A line as an SSE event: `id: EPOCH:SEQ`, `data: LINE`.
pub fn line_event(epoch: &str, line: &Line) -> Event {
    let event = Event::default().id(format!("{epoch}:{}", line.seq));
    // SSE cannot carry a bare `\r` in a field: it becomes another `data:`
    // field (EventSource joins them with `\n`). axum would end the piece with
    // the `\r` itself, which clients that split fields on `\n` misread.
    if line.text.contains('\r') {
        event.data(line.text.replace('\r', "\n"))
    } else {
        event.data(line.text.as_str())
    }
}

/// A file event as a named SSE event carrying its JSON.
pub fn notice_event(hub: &Hub, notice: &Notice) -> Event {
    Event::default()
        .event(notice.kind.as_str())
        .data(notice_json(hub, notice))
}

/// A gap as a named SSE event `gap`.
pub fn gap_event(gap: &Gap) -> Event {
    Event::default().event("gap").data(gap_json(gap))
}
