//! NATS naming shared by the JetStream publisher ([`crate::sink::nats`]) and the
//! edge that serves the stream ([`crate::source::nats`]): the subjects lines go
//! to, how any text becomes one subject token and back, and the server URLs.

use async_nats::ServerAddr;

/// The stream's subjects: every node's every file.
pub const SUBJECTS: &str = "logtail.>";

/// The header of a message that is a file event, not a line: its value is
/// the event's name (`rotated`, `truncated`, …, or `gap` for lines the
/// source could not publish, counted in `Lt-Lines` or `Lt-Bytes`).
pub const EVENT_HEADER: &str = "Lt-Event";

/// A token of a subject for any text: bytes other than ASCII letters,
/// digits, `_` and `-` become `%XX`, so it never holds `.`, `*`, `>` or
/// white space, and [`token_text`] gives the text back.
pub fn subject_token(text: &str) -> String {
    percent_word(text, |c| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// `text` as one word of a name (a NATS subject token, an MQTT topic level,
/// an AMQP routing-key word): every character `escape` picks becomes `%XX`
/// per UTF-8 byte, `%` itself should be one of them, and the empty text is
/// `%`. [`token_text`] gives the text back.
pub fn percent_word(text: &str, escape: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

/// The text a [`subject_token`] was made from (`None` if it was not one).
pub fn token_text(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject of `file`'s lines from `node`.
pub fn subject(node: &str, file: &str) -> String {
    format!("logtail.{}.{}", subject_token(node), subject_token(file))
}

/// Parses seed server URLs; also gives them as one text for logs.
pub fn servers(urls: &[String]) -> Result<(Vec<ServerAddr>, String), String> {
    let parsed = urls
        .iter()
        .map(|u| {
            u.parse::<ServerAddr>()
                .map_err(|err| format!("`{u}` is not a NATS server URL: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shown = parsed
        .iter()
        .map(|a| format!("nats://{}:{}", a.host(), a.port()))
        .collect::<Vec<_>>()
        .join(",");
    Ok((parsed, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_round_trip_any_name() {
        for name in [
            "app.log",
            "a b*c>d",
            "%41",
            "",
            "журнал.log",
            "x/y/z.log",
            "-_",
        ] {
            let t = subject_token(name);
            assert!(!t.contains(['.', '*', '>', ' ']), "{t}");
            assert_eq!(token_text(&t).as_deref(), Some(name), "{t}");
        }
        assert_eq!(
            subject("web-1.example.com", "app.log"),
            "logtail.web-1%2Eexample%2Ecom.app%2Elog"
        );
        assert_eq!(subject_token("é/x_-"), "%C3%A9%2Fx_-");
        assert_eq!(token_text("%zz"), None);
    }
}
