//! File descriptors: the soft limit raised to the hard one at start-up and the client
//! capacity logged, `--max-clients` above it warned about, and — when descriptors run
//! out anyway — a fast 503 for new connections instead of a hang in the accept queue.
//!
//! The server runs under util-linux's `prlimit` ([`ServerBuilder::nofile`]); where it is
//! missing these tests are ignored with the reason (`#[needs::tools(prlimit)]`; CI installs
//! it).

use std::time::{Duration, Instant};

use crate::harness::{
    LogFile, PROMPT, Server, ServerBuilder, SseStream, WsClient, http_get, skipped, strs,
};

/// The descriptor limit of the exhaustion test: small enough to fill quickly.
const LIMIT: u64 = 128;

/// A refused connection must have its answer within this.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(5);

/// The body of the 503 sent when descriptors run out.
const REFUSAL_BODY: &str = "out of file descriptors";

/// `N` from the start-up line's `room for about N clients`.
fn logged_capacity(stderr: &str) -> u64 {
    let rest = stderr
        .split("room for about ")
        .nth(1)
        .unwrap_or_else(|| panic!("no `room for about N clients` in the log:\n{stderr}"));
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `room for about`:\n{stderr}"))
}

/// The current process's hard descriptor limit (what the tests may lower, not raise).
fn own_hard_limit() -> u64 {
    rlimit::Resource::NOFILE
        .get()
        .map(|(_, hard)| hard)
        .expect("getrlimit(RLIMIT_NOFILE)")
}

/// How a connection attempt ended once the server is out of descriptors.
#[derive(Debug)]
enum Refusal {
    /// A 503 whose body arrived, after this long.
    ServiceUnavailable(Duration),
    /// Closed or reset without a response head, after this long.
    Closed(Duration, String),
}

/// Opens `/events` expecting a refusal within [`REFUSAL_DEADLINE`]; `Ok(stream)` if it was
/// served after all (status 200), panics if nothing happened in time.
async fn expect_refusal(server: &Server, what: &str) -> Result<SseStream, Refusal> {
    let started = Instant::now();
    let attempt = async {
        match SseStream::try_connect(server.addr(), "/events", &[]).await {
            Ok(s) if s.status == 200 => Ok(s),
            Ok(mut s) => {
                assert_eq!(s.status, 503, "{what}: {:?}", s.headers);
                assert_eq!(s.header("connection"), Some("close"), "{what}");
                // Read to the end: the whole body, then the close.
                while s.read_more(REFUSAL_DEADLINE).await {}
                assert!(
                    s.text_so_far().contains(REFUSAL_BODY),
                    "{what}: 503 body {:?}",
                    s.text_so_far()
                );
                Err(Refusal::ServiceUnavailable(started.elapsed()))
            }
            Err(err) => Err(Refusal::Closed(started.elapsed(), err)),
        }
    };
    tokio::time::timeout(REFUSAL_DEADLINE, attempt)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: neither served nor refused within {REFUSAL_DEADLINE:?} \
                 (left waiting in the accept queue?)"
            )
        })
}

fn refusal_time(r: &Refusal) -> Duration {
    match r {
        Refusal::ServiceUnavailable(t) | Refusal::Closed(t, _) => *t,
    }
}

/// Out of descriptors (`prlimit --nofile=128:128`): clients are accepted until the
/// descriptors are used up, then every further connection is answered 503 "out of file
/// descriptors" at once — also 20 at a time — instead of hanging in the accept queue;
/// the connected clients (SSE and WebSocket) keep receiving lines; the warning is
/// rate-limited; and once some clients leave, a new one is served again.
#[needs::tools(prlimit)]
#[tokio::test]
async fn out_of_descriptors_refuses_fast_and_recovers() {
    let name = "out_of_descriptors_refuses_fast_and_recovers";
    let started = Instant::now();
    let log = LogFile::new();
    let server = Server::builder()
        .file(log.path())
        .nofile(LIMIT, LIMIT)
        .start()
        .await;
    let capacity = logged_capacity(&server.stderr());

    // Fill: one WebSocket client, then SSE clients until one is refused.
    let mut ws = WsClient::connect(&server.ws_url("/ws")).await;
    let mut clients = Vec::new();
    let first = loop {
        assert!(
            (clients.len() as u64) < LIMIT,
            "{} clients connected under a limit of {LIMIT} descriptors and none refused",
            clients.len()
        );
        let what = format!("client #{}", clients.len() + 2);
        match expect_refusal(&server, &what).await {
            Ok(s) => clients.push(s),
            Err(refusal) => break refusal,
        }
    };
    let connected = clients.len() as u64 + 1;
    assert!(
        connected >= capacity,
        "only {connected} clients fit but the log promised room for about {capacity}"
    );
    assert!(
        matches!(first, Refusal::ServiceUnavailable(_)),
        "the first refused client got no 503: {first:?}"
    );

    // More refusals, one after another and then 20 at once: each is answered quickly,
    // none waits in the queue behind the others.
    let mut times = vec![refusal_time(&first)];
    for i in 0..5 {
        match expect_refusal(&server, &format!("sequential refusal {i}")).await {
            Ok(_) => panic!("sequential attempt {i} was served while out of descriptors"),
            Err(r) => times.push(refusal_time(&r)),
        }
    }
    let burst = futures_util::future::join_all((0..20).map(|i| {
        let server = &server;
        async move { expect_refusal(server, &format!("burst refusal {i}")).await }
    }))
    .await;
    let mut served_in_burst = 0;
    for r in &burst {
        match r {
            Ok(_) => served_in_burst += 1,
            Err(r) => times.push(refusal_time(r)),
        }
    }
    assert_eq!(served_in_burst, 0, "burst attempts were served: {burst:?}");
    let closed: Vec<&str> = burst
        .iter()
        .filter_map(|r| match r {
            Err(Refusal::Closed(_, why)) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    let closed_only = closed.len();
    times.sort();
    eprintln!(
        "{name}: {connected} clients under {LIMIT} descriptors (logged capacity {capacity}); \
         time to refusal over {} attempts: median {:?}, max {:?}; {closed_only} of the burst \
         closed without a 503 {closed:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1],
    );

    // The connected clients still get every line.
    log.append_lines(["still streaming"]);
    ws.expect_lines(&["still streaming"]).await;
    for (i, c) in clients.iter_mut().enumerate() {
        let text = c.read_until_contains("data: still streaming", PROMPT).await;
        assert!(text.contains("still streaming"), "client #{i}");
    }

    // The descriptors kept for files are still there: a rotation, whose new file the
    // tailer must open, is followed.
    log.rename_create("app.log.1");
    log.append_lines(["after rotation"]);
    ws.expect_lines(&["after rotation"]).await;

    // One rate-limited warning for all those refusals (one per 10 s at most).
    let stderr = server.stderr();
    let warnings = stderr.matches("out of file descriptors (limit").count();
    let allowed = 1 + started.elapsed().as_secs() / 10;
    assert!(
        (1..=allowed as usize).contains(&warnings),
        "{warnings} out-of-descriptor warnings (allowed 1..={allowed}):\n{stderr}"
    );

    // Ten clients leave; a new client is served again (each attempt appends a line, so
    // the server writes to the closed sockets and lets them go).
    clients.truncate(clients.len() - 10);
    let deadline = Instant::now() + PROMPT;
    let mut attempt = 0;
    let mut newcomer = loop {
        attempt += 1;
        log.append_lines([format!("tick {attempt}")]);
        match expect_refusal(&server, &format!("attempt {attempt} after clients left")).await {
            Ok(s) => break s,
            Err(r) => assert!(
                Instant::now() < deadline,
                "no client served within {PROMPT:?} after 10 left; last: {r:?}"
            ),
        }
    };
    log.append_lines(["welcome back"]);
    newcomer
        .read_until_contains("data: welcome back", PROMPT)
        .await;
    let mut ws_expected: Vec<String> = (1..=attempt).map(|i| format!("tick {i}")).collect();
    ws_expected.push("welcome back".into());
    ws.expect_lines(&strs(&ws_expected)).await;
    server.wait_clients(connected - 10 + 1, PROMPT).await;
    let metrics = http_get(server.addr(), "/metrics", &[]).await.text();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logtail_fd_refusals_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no logtail_fd_refusals_total in /metrics:\n{metrics}"));
    assert!(
        refused >= times.len() as u64 - closed_only as u64,
        "/metrics counts {refused} refusals, the test saw {}",
        times.len()
    );
}

/// Whether `test` can start the server with 4096 descriptors: our own hard limit allows
/// it (otherwise the test is [`skipped`]: no install fixes that).
fn can_run_with_4096_descriptors(test: &str) -> bool {
    let hard = own_hard_limit();
    if hard < 4096 {
        skipped(
            test,
            &format!("the hard descriptor limit is {hard}, below 4096"),
        );
        return false;
    }
    true
}

/// Started with soft limit 256 and hard 4096, the server raises the soft limit to 4096,
/// logs that with the client capacity it gives (4096 less a reserve), and does not warn
/// about a `--max-clients` below it.
#[needs::tools(prlimit)]
#[tokio::test]
async fn startup_log_reports_the_raised_limit_and_capacity() {
    if !can_run_with_4096_descriptors("startup_log_reports_the_raised_limit_and_capacity") {
        return;
    }
    let log = LogFile::new();
    let server = Server::builder()
        .file(log.path())
        .nofile(256, 4096)
        .args(&["--max-clients", "100"])
        .start()
        .await;
    let stderr = server.stderr();
    assert!(
        stderr.contains("raised from 256 to 4096"),
        "no `raised from 256 to 4096` in the log:\n{stderr}"
    );
    let capacity = logged_capacity(&stderr);
    assert!(
        (4096 - 256..4096).contains(&capacity),
        "capacity {capacity} for 4096 descriptors:\n{stderr}"
    );
    assert!(
        !stderr.contains("--max-clients 100 is more than"),
        "warned about --max-clients 100:\n{stderr}"
    );
}

/// `--max-clients 5000` with only 4096 descriptors: a start-up warning names the flag,
/// the limit and the way out; the server runs all the same.
#[needs::tools(prlimit)]
#[tokio::test]
async fn max_clients_above_capacity_is_warned() {
    if !can_run_with_4096_descriptors("max_clients_above_capacity_is_warned") {
        return;
    }
    let log = LogFile::new();
    let server: Server = ServerBuilder::default()
        .file(log.path())
        .nofile(4096, 4096)
        .args(&["--max-clients", "5000"])
        .start()
        .await;
    let stderr = server.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("--max-clients 5000 is more than"))
        .unwrap_or_else(|| panic!("no --max-clients warning:\n{stderr}"));
    for needle in ["4096 file descriptors", "ulimit -Hn"] {
        assert!(warning.contains(needle), "{needle:?} not in {warning:?}");
    }
    assert_eq!(server.client_count().await, 0, "{stderr}");
}
