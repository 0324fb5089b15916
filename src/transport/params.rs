//! The query parameters of `/ws` and `/events`: parsed once, validated, and
//! turned into where a client starts (`backlog`, `since`/`epoch`,
//! `Last-Event-ID`), which lines it wants (`grep`) and how they are encoded
//! (`format`).

use std::sync::Arc;

use axum::http::StatusCode;
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use super::Rejection;
use crate::hub::{Line, Start};

/// Query parameters of `/ws` and `/events`, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RawParams {
    pub backlog: Option<String>,
    pub since: Option<String>,
    pub epoch: Option<String>,
    pub grep: Option<String>,
    pub format: Option<String>,
    pub token: Option<String>,
}

/// Frame format of `/ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// A client's filter: the compiled `grep=` pattern.
pub type Filter = crate::hub::LineFilter;

/// Validated stream parameters.
pub struct StreamParams {
    pub start: Start,
    pub format: Format,
    pub filter: Option<Filter>,
}

/// The longest `grep=` pattern accepted, and how much memory compiling it may take.
const MAX_PATTERN_LEN: usize = 1024;
const MAX_REGEX_BYTES: usize = 1 << 20;

impl StreamParams {
    /// Validates the query; `last_event_id` (SSE's `Last-Event-ID`, `EPOCH:SEQ`)
    /// wins over `backlog` and `since`.
    pub fn parse(
        raw: &RawParams,
        default_backlog: usize,
        last_event_id: Option<&str>,
    ) -> Result<StreamParams, Rejection> {
        let bad = |what: &str| Rejection::new(StatusCode::BAD_REQUEST, what.to_string());
        let format = match raw.format.as_deref() {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(other) => return Err(bad(&format!("format must be text or json, not `{other}`"))),
        };
        let resumed = last_event_id.and_then(parse_event_id);
        let start = if let Some((epoch, seq)) = resumed {
            Start::Since {
                seq,
                epoch: Some(epoch),
            }
        } else if let Some(since) = &raw.since {
            let seq = since
                .parse()
                .map_err(|_| bad(&format!("since must be a line number, not `{since}`")))?;
            Start::Since {
                seq,
                epoch: raw.epoch.clone().filter(|e| !e.is_empty()),
            }
        } else {
            let backlog = match &raw.backlog {
                None => default_backlog,
                Some(n) => n
                    .parse()
                    .map_err(|_| bad(&format!("backlog must be a number of lines, not `{n}`")))?,
            };
            Start::Backlog(backlog)
        };
        let filter = match raw.grep.as_deref() {
            None | Some("") => None,
            Some(pattern) => {
                let regex =
                    compile_grep(pattern).map_err(|reason| bad(&format!("grep: {reason}")))?;
                let filter: Filter =
                    Arc::new(move |line: &Line| regex.is_match(line.text.as_bytes()));
                Some(filter)
            }
        };
        Ok(StreamParams {
            start,
            format,
            filter,
        })
    }
}

/// Compiles a client's pattern with bounded size: regex is linear-time, so
/// the only risk left is compile-time memory, which the limits cap.
pub fn compile_grep(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern longer than {MAX_PATTERN_LEN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|err| err.to_string().lines().collect::<Vec<_>>().join(" "))
}

/// `EPOCH:SEQ`, as this server writes SSE ids.
fn parse_event_id(id: &str) -> Option<(String, u64)> {
    let (epoch, seq) = id.trim().rsplit_once(':')?;
    Some((epoch.to_string(), seq.parse().ok()?))
}
