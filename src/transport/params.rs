//! The query parameters of `/ws` and `/events`: parsed once, validated, and
//! turned into where a client starts (`backlog`, `since`/`epoch`,
//! `Last-Event-ID`), which lines it wants (`file`, `grep`) and how they are
//! encoded (`format`, `prefix`).

use std::sync::Arc;

use axum::http::StatusCode;
use regex::bytes::{Regex, RegexBuilder};

use super::Rejection;
use crate::hub::{Line, Start};

/// Query parameters of `/ws` and `/events`, as sent.
#[derive(Debug, Default)]
pub struct RawParams {
    pub backlog: Option<String>,
    pub since: Option<String>,
    pub epoch: Option<String>,
    pub grep: Option<String>,
    pub format: Option<String>,
    pub token: Option<String>,
    /// `file=` (repeatable), each a public name or a glob over names.
    pub file: Vec<String>,
    pub prefix: Option<String>,
}

impl RawParams {
    /// The parameters of a query string (percent-decoded; unknown keys are
    /// ignored; a repeated single-valued key keeps its last value).
    pub fn from_query(query: Option<&str>) -> RawParams {
        let mut raw = RawParams::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "backlog" => raw.backlog = Some(value),
                "since" => raw.since = Some(value),
                "epoch" => raw.epoch = Some(value),
                "grep" => raw.grep = Some(value),
                "format" => raw.format = Some(value),
                "token" => raw.token = Some(value),
                "file" => raw.file.push(value),
                "prefix" => raw.prefix = Some(value),
                _ => {}
            }
        }
        raw
    }
}

/// Frame format of `/ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// The `json` frames, as many per message as one delivery holds, one per
    /// line of the message (`\n` between them; JSON never holds a raw newline).
    /// For pages: a browser spends about as long on each message as on its content.
    JsonLines,
}

/// A client's filter: the compiled `grep=` pattern.
pub type Filter = crate::hub::LineFilter;

/// Validated stream parameters.
pub struct StreamParams {
    pub start: Start,
    pub format: Format,
    pub filter: Option<Filter>,
    /// `prefix=1` / `prefix=0`; `None`: decided by what the stream carries.
    pub prefix: Option<bool>,
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
            Some("jsonl") => Format::JsonLines,
            Some(other) => {
                return Err(bad(&format!(
                    "format must be text, json or jsonl, not `{other}`"
                )));
            }
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
        let prefix = match raw.prefix.as_deref() {
            None => None,
            Some("1" | "true" | "on") => Some(true),
            Some("0" | "false" | "off") => Some(false),
            Some(other) => return Err(bad(&format!("prefix must be 0 or 1, not `{other}`"))),
        };
        Ok(StreamParams {
            start,
            format,
            filter,
            prefix,
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

/// The files a client asked for with `file=`, checked against what is
/// followed (`followed`, public names): `None` for all of them. A name
/// must be followed now, and a glob must match at least one followed name
/// (it also selects matches added later); otherwise 404, listing the names
/// a client may ask for. A name is only ever compared with names: it never
/// becomes a path.
pub fn select_files(
    asked: &[String],
    followed: &[String],
) -> Result<Option<crate::hub::NamePredicate>, Rejection> {
    if asked.is_empty() {
        return Ok(None);
    }
    let mut names = std::collections::HashSet::new();
    let mut globs = Vec::new();
    for wanted in asked {
        let known = if crate::source::file::glob::is_glob(wanted) {
            let glob = globset::GlobBuilder::new(wanted)
                .literal_separator(true)
                .build()
                .map_err(|err| {
                    Rejection::new(
                        StatusCode::BAD_REQUEST,
                        format!("file: `{wanted}` is not a valid glob: {err}"),
                    )
                })?
                .compile_matcher();
            let known = followed.iter().any(|name| glob.is_match(name));
            globs.push(glob);
            known
        } else {
            names.insert(wanted.clone());
            followed.iter().any(|name| name == wanted)
        };
        if !known {
            return Err(unknown_file(wanted, followed));
        }
    }
    Ok(Some(Box::new(move |name: &str| {
        names.contains(name) || globs.iter().any(|g| g.is_match(name))
    })))
}

/// Names listed in a 404 at most.
const MAX_LISTED: usize = 100;

fn unknown_file(wanted: &str, followed: &[String]) -> Rejection {
    let mut list = followed
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if followed.len() > MAX_LISTED {
        list.push_str(&format!(
            " … and {} more (GET /files)",
            followed.len() - MAX_LISTED
        ));
    }
    if followed.is_empty() {
        list = "(none yet)".into();
    }
    Rejection::new(
        StatusCode::NOT_FOUND,
        format!("unknown file `{wanted}`; known files: {list}"),
    )
}
