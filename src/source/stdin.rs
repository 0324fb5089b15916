//! Standard input as a source (`--file -`): `kubectl logs -f pod |
//! logtail-ws --file -`.
//!
//! One thread reads the pipe (blocking reads: a pipe has nothing to watch)
//! and publishes each read's lines as input `stdin` (or the `NAME=` given).
//! There is no rotation and nothing to replay from disk: old lines are what
//! the history keeps. At end of input the partial last line is published,
//! clients are told (`ended`), and the server goes on serving the history.

use std::io::Read;
use std::thread::JoinHandle;

use crate::hub::{Line, NoticeKind};
use crate::lines::{LineSplitter, to_text};
use crate::source::{Publisher, Source};

/// How much is read per `read(2)`.
const CHUNK: usize = 64 * 1024;

/// See the module docs.
pub struct StdinSource {
    name: String,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl StdinSource {
    /// Reads `input` (standard input, or any reader in tests) until its
    /// end, publishing its lines as `name`.
    pub fn start(
        out: Publisher,
        name: String,
        input: impl Read + Send + 'static,
        max_line_bytes: usize,
    ) -> std::io::Result<StdinSource> {
        let file = out.add_input(&name, "-".into());
        let display = name.clone();
        let thread = std::thread::Builder::new()
            .name("stdin-reader".into())
            .spawn(move || read_all(out, file, &display, input, max_line_bytes))?;
        Ok(StdinSource {
            name,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }
}

fn read_all(out: Publisher, file: u32, name: &str, mut input: impl Read, max_line: usize) {
    out.status()
        .set(file, crate::source::FileState::Following, 0);
    let mut splitter = LineSplitter::new(0, max_line);
    let mut raw = Vec::new();
    loop {
        let spare = splitter.spare(CHUNK);
        let n = match input.read(spare) {
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {
                splitter.commit(CHUNK, 0);
                continue;
            }
            Err(err) => {
                tracing::warn!(file = %name, "reading standard input failed: {err}; treating it as its end");
                0
            }
        };
        splitter.commit(CHUNK, n);
        out.bytes_read(file, n as u64);
        if n == 0 {
            splitter.flush(&mut raw);
            publish(&out, file, &mut raw);
            break;
        }
        splitter.drain(&mut raw);
        publish(&out, file, &mut raw);
        out.status()
            .set_position(file, 0, splitter.end_offset(), splitter.end_offset());
    }
    let end = splitter.end_offset();
    out.status().set_position(file, 0, end, end);
    out.notice(file, NoticeKind::Ended, end);
    tracing::info!(file = %name, bytes = end, "standard input ended; serving what was read");
}

fn publish(out: &Publisher, file: u32, raw: &mut Vec<crate::lines::RawLine>) {
    if raw.is_empty() {
        return;
    }
    let lines = raw
        .drain(..)
        .map(|raw| Line {
            seq: 0,
            offset: raw.offset,
            file,
            cost_end: 0,
            origin: 0,
            text: to_text(raw.bytes),
        })
        .collect();
    out.publish_lines(lines);
}

impl Source for StdinSource {
    fn describe(&self) -> String {
        format!("standard input as {}", self.name)
    }

    /// A blocking read of a pipe cannot be interrupted: the thread is left
    /// to end with the process (it holds nothing to flush).
    fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::hub::{Delivery, Hub, HubLimits, Start};
    use crate::source::{FileState, Status};

    #[tokio::test]
    async fn every_line_then_the_end() {
        let hub = Hub::new(
            Vec::new(),
            HubLimits {
                history_bytes: 1 << 20,
                client_queue: 1 << 20,
                lag_grace: Duration::from_secs(5),
                max_line_bytes: 4,
            },
            Default::default(),
        );
        let status = Status::default();
        let mut cursor = hub.subscribe(Start::Backlog(0), None);
        let input = std::io::Cursor::new(b"one\ntwo\r\nlonger\nlast".to_vec());
        let source = StdinSource::start(
            Publisher::new(Arc::clone(&hub), status.clone()),
            "stdin".into(),
            input,
            4,
        )
        .unwrap();
        let mut got = Vec::new();
        let mut events = Vec::new();
        while !events.contains(&NoticeKind::Ended) {
            match tokio::time::timeout(Duration::from_secs(10), cursor.next()).await {
                Ok(Ok(Delivery::Notice(n))) => events.push(n.kind),
                Ok(Ok(d)) => got.extend(d.lines().iter().map(|l| l.text.as_str().to_string())),
                other => panic!("{:?}", other.map(|r| r.map(|_| ()))),
            }
        }
        assert_eq!(got, ["one", "two", "long", "er", "last"]);
        assert_eq!(events, [NoticeKind::Ended]);
        assert_eq!(hub.file_name(0).as_ref(), "stdin");
        assert_eq!(status.files()[0].state, FileState::Ended);
        assert_eq!(status.files()[0].lines, 5);
        source.stop();
    }
}
