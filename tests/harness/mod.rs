//! Shared test harness: written once, used by every test module.
//!
//! - [`Server`] starts the real `logtail-ws` binary on a free port and reads its logs
//!   (under a descriptor limit with [`ServerBuilder::nofile`], after [`prlimit_or_skip`]).
//! - [`LogFile`] is the followed file in a temp dir, with append and rotation helpers.
//! - [`WsClient`] / [`RawWs`] are WebSocket clients (a well-behaved one and a stuck one).
//! - [`http_get`] / [`SseStream`] are minimal raw HTTP/1.1 clients.
//! - [`find_program`] / [`KillOnDrop`] find and end third-party programs (websocat, curl).
//! - [`wait_until`] / [`wait_until_async`] wait for a condition with a deadline; tests never
//!   sleep and hope.
// Not every test module uses every helper.
#![allow(dead_code, unused_imports)]

mod http;
mod logfile;
mod server;
mod tools;
mod ws;

pub use http::{Response, SseStream, http_get, http_request};
pub use logfile::{LogFile, Writer, join_lines};
pub use server::{RawOutput, RawProcess, Server, ServerBuilder, Sig, prlimit_or_skip};
pub use tools::{KillOnDrop, find_program, require_program};
pub use ws::{RawWs, Recv, WsClient};

use std::future::Future;
use std::time::{Duration, Instant};

/// Default deadline for things that should happen "promptly" (a line arriving, a log line).
pub const PROMPT: Duration = Duration::from_secs(10);

/// Poll interval inside the waiting loops below (not a synchronisation sleep).
const POLL: Duration = Duration::from_millis(10);

/// Blocks until `cond()` is true; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Async [`wait_until`]: polls `cond().await` until it is true; panics naming `what` after
/// `timeout`.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `["{prefix}{i}" for i in range]`, e.g. `numbered("line ", 1..=3)` → `line 1`, `line 2`, `line 3`.
pub fn numbered(prefix: &str, range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| format!("{prefix}{i}")).collect()
}

/// A tiny seeded xorshift64 generator, for reproducible "random" choices in tests.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced, as xorshift would stay at 0).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Borrows a `Vec<String>` as the `&[&str]` that `expect_lines` takes.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) from `s`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// ANSI colour codes are removed from captured logs.
#[test]
fn harness_strips_ansi() {
    assert_eq!(
        strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening on x"),
        "2026  INFO listening on x"
    );
}

/// A line of the grep fixtures: every third line is an error.
pub fn gline(i: u64) -> String {
    if i.is_multiple_of(3) {
        format!("ERROR {i}")
    } else {
        format!("info {i}")
    }
}
