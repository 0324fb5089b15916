//! Resuming exactly once across abrupt disconnects: one run ([`exactly_once_across_disconnects`])
//! for every transport that can resume, over the small [`ResumingClient`] trait each one
//! implements (WebSocket `since=`/`epoch=` in `tests/resume.rs`, SSE `Last-Event-ID` in
//! `tests/sse.rs`).

use std::time::Duration;

use super::{LogFile, PROMPT, Server, XorShift, fixed_line};

/// Lines the writer appends during a run.
const TOTAL: u64 = 20_000;
/// Abrupt disconnects during a run.
const ROUNDS: usize = 20;

/// A client of a stream of [`fixed_line`]s that can drop its connection and resume after
/// the last line it has.
pub trait ResumingClient: Sized {
    /// The next frame, which must be a line: its `seq` and text, once the transport's own
    /// fields are checked too (WebSocket: `offset` and `file`; SSE: the epoch in `id:`).
    async fn next_line(&mut self) -> (u64, String);

    /// Drops the connection abruptly (no close, RST) and opens a new one that resumes after
    /// line `last`. Returns the new client and, where the transport says it on connecting
    /// (the WebSocket `hello`), the newest `seq` the server had then.
    async fn resume(self, last: u64) -> (Self, Option<u64>);
}

/// One resume of a run: after which line, and the newest `seq` the server announced.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    pub after: u64,
    pub newest: Option<u64>,
}

/// The run: `client` is connected from the very first line (`since=0` on an empty file);
/// a writer appends 20 000 [`fixed_line`]s (~4000 lines/s, so that disconnects fall
/// mid-stream) while the client reads a random number of lines (seeded by `seed`) and
/// resumes, 20 times; every other time the server first gets ahead of what was read, so
/// that lines are in flight when the connection drops and must be replayed. What the client
/// read must be every line exactly once, in order, with nothing after the last but the
/// next line appended. Returns the resumes, for the caller's checks of what was replayed.
pub async fn exactly_once_across_disconnects(
    server: &Server,
    log: &LogFile,
    mut client: impl ResumingClient,
    seed: u64,
) -> Vec<Resume> {
    let mut rng = XorShift::new(seed);
    let writer_thread = log
        .writer()
        .spawn_paced(TOTAL, 40, Duration::from_millis(10), fixed_line);

    let mut received: Vec<(u64, String)> = Vec::with_capacity(TOTAL as usize);
    let mut resumes = Vec::with_capacity(ROUNDS);
    loop {
        let left = TOTAL - received.len() as u64;
        let take = if resumes.len() < ROUNDS && left > 1 {
            rng.range(1, 1600).min(left - 1)
        } else {
            left
        };
        for _ in 0..take {
            let got = client.next_line().await;
            let want = received.len() as u64 + 1;
            assert_eq!(
                (got.0, got.1.as_str()),
                (want, fixed_line(want).as_str()),
                "after {} reconnects and {} lines",
                resumes.len(),
                received.len()
            );
            received.push(got);
        }
        if received.len() as u64 == TOTAL {
            break;
        }
        if resumes.len() % 2 == 0 {
            let ahead = (received.len() as u64 + rng.range(1, 400)).min(TOTAL);
            server.wait_seq_at_least(ahead, PROMPT).await;
        }
        let after = received.len() as u64;
        let (again, newest) = client.resume(after).await;
        client = again;
        resumes.push(Resume { after, newest });
    }
    writer_thread.join().expect("writer thread panicked");
    assert_eq!(resumes.len(), ROUNDS);

    // Nothing after the last line but what comes next: no late duplicate.
    log.append_lines(["marker"]);
    let (seq, text) = client.next_line().await;
    assert_eq!((seq, text.as_str()), (TOTAL + 1, "marker"));
    assert!(
        received
            .iter()
            .cloned()
            .eq((1..=TOTAL).map(|i| (i, fixed_line(i)))),
        "not every written line exactly once in order"
    );
    resumes
}
