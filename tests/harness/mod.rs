//! Shared test harness: written once, used by every test module. Each file owns one thing:
//!
//! - `server.rs`: [`Server`] starts the real `logtail-ws` binary on a free port and reads
//!   its logs, `/healthz` and exit; [`ServerBuilder`] sets its arguments and what it runs
//!   under (a descriptor limit, no root file-permission override).
//! - `logfile.rs`: [`LogFile`] is the followed file in a temp dir, with append and rotation
//!   helpers; [`Writer`] a logger's open handle.
//! - `ws.rs`: [`WsClient`] / [`RawWs`] are WebSocket clients (a well-behaved one and a
//!   stuck one).
//! - `http.rs`: the one raw HTTP/1.1 client, over any stream (TCP or TLS): whole responses
//!   ([`http_get`], [`http_exchange`]), a response head with the connection kept open
//!   ([`http_open`]), raw bytes ([`send_until_close`]), and [`SseStream`].
//! - `h2.rs`: [`H2`], an HTTP/2 client connection (hyper's, cleartext prior knowledge or
//!   TLS with ALPN `h2`): requests with an `:authority` and no `Host`, streaming bodies
//!   ([`H2Body`]), WebSocket over HTTP/2 by extended CONNECT ([`H2Ws`]).
//! - `h3.rs`: [`H3`], an HTTP/3 client connection (h3 + h3-quinn on quinn, trusting the
//!   test certificate): requests with any `:authority`, bodies read as they arrive
//!   ([`H3Body`]).
//! - `brokers.rs`: the brokers `--publish` sends to, run for real on free loopback ports
//!   (`brokers::Mosquitto`, `brokers::RabbitMq`, each stopped and started again on the
//!   same port for the outage tests), and subscribers that collect what they deliver
//!   (`brokers::MqttSubscriber`, `brokers::AmqpConsumer`).
//! - `rtc.rs`: [`RtcClient`], a WebRTC peer (str0m) for `POST /rtc`: offers the `logs`
//!   data channel from its own UDP socket, reads the JSON frames in order.
//! - `tls.rs`: a throwaway self-signed certificate and a rustls client trusting it.
//! - `resume.rs`: [`exactly_once_across_disconnects`], the random-disconnect resume run,
//!   over any [`ResumingClient`] (WebSocket `since=`/`epoch=`, SSE `Last-Event-ID`).
//! - `tools.rs`: third-party programs (websocat, curl, Chromium, prlimit, setpriv): a test
//!   needing one runs where it is installed and is reported ignored, with the reason,
//!   where it is not (`#[needs::tools(...)]`); [`KillOnDrop`] ends them.
//! - here: [`wait_until`] / [`poll`] and their async forms wait for a condition with a
//!   deadline (tests never sleep and hope), and the numbered lines tests write
//!   ([`fixed_line`], [`numbered`], [`gline`]).
// Not every test module uses every helper.
#![allow(dead_code, unused_imports)]

pub mod brokers;
mod h2;
mod h3;
mod http;
mod logfile;
mod nats;
mod resume;
mod rtc;
mod server;
mod tls;
mod tools;
mod ws;

pub use h2::{H2, H2Body, H2Ws};
pub use h3::{H3, H3Body};
pub use http::{
    Response, SseStream, http_exchange, http_get, http_open, http_request, send_until_close,
    status_code,
};
pub use logfile::{LogFile, Writer, join_lines};
pub use nats::{Nats, NatsCluster};
pub use resume::{Resume, ResumingClient, exactly_once_across_disconnects};
pub use rtc::{Offer as RtcOffer, RtcClient, RtcEvent};
pub use server::{RawOutput, RawProcess, Server, ServerBuilder, Sig, running_as_root};
pub use tls::{self_signed, trusting, trusting_alpn};
pub use tools::{KillOnDrop, skipped};
pub use ws::{RawWs, Recv, UPGRADE, WsClient};

use std::future::Future;
use std::time::{Duration, Instant};

/// Default deadline for things that should happen "promptly" (a line arriving, a log line).
pub const PROMPT: Duration = Duration::from_secs(10);

/// The bound of a flood of lines until the server gives up on a stuck or slow client
/// ([`Deadline`]): its `--send-timeout` (at most 3 s in the tests) or its grace once behind,
/// with room for a loaded machine.
pub const FLOOD: Duration = Duration::from_secs(30);

/// Poll interval inside the waiting loops below (not a synchronisation sleep).
const POLL: Duration = Duration::from_millis(10);

/// Calls `probe` every [`POLL`] until it returns `Ok`, and returns that; once `timeout` has
/// passed, returns its last `Err` instead (for the caller's panic message).
pub fn poll<T, E>(timeout: Duration, mut probe: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(done) => return Ok(done),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Async [`poll`]: awaits `probe()` every [`POLL`] until it is `Ok`, or its last `Err`
/// once `timeout` has passed.
pub async fn poll_async<T, E, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(done) => return Ok(done),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Blocks until `cond()` is true; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    poll(timeout, || cond().then_some(()).ok_or(()))
        .unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting until {what}"));
}

/// Async [`wait_until`]: polls `cond().await` until it is true; panics naming `what` after
/// `timeout`.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_async(timeout, || {
        let done = cond();
        async move { done.await.then_some(()).ok_or(()) }
    })
    .await
    .unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting until {what}"));
}

/// The bound of a loop that does work each turn until something happens (lines
/// appended until the server gives up on a stuck client): what it waits for is timed
/// (`--send-timeout`), so the bound is time too, never a count of turns, whose pace is
/// the machine's.
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// Panics with `what` (and how long it was given) once the deadline has passed.
    pub fn check(&self, what: impl FnOnce() -> String) {
        if Instant::now() >= self.at {
            panic!("timed out after {:?}: {}", self.timeout, what());
        }
    }
}

/// Bytes of a [`fixed_line`] with its `\n`.
pub const FIXED_LINE_LEN: u64 = 12;

/// `line 000123`: a fixed-width numbered line ([`FIXED_LINE_LEN`] bytes with its `\n`), so
/// that line `i` of a file holding lines 1.. in order starts at byte `(i - 1) * 12`.
pub fn fixed_line(i: u64) -> String {
    format!("line {i:06}")
}

/// The `i` of a [`fixed_line`] (`line 000123` → 123); `None` for any other text.
pub fn fixed_line_number(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("line ")?;
    (digits.len() == 6).then(|| digits.parse().ok()).flatten()
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
