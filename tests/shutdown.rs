//! SIGTERM / SIGINT: stop, send Close 1001 `server shutting down` to every client, exit 0
//! within 2 s.

use std::time::{Duration, Instant};

use crate::harness::{
    Deadline, FLOOD, LogFile, PROMPT, RawWs, Server, Sig, SseStream, WsClient, strs,
};

/// The contract's shutdown budget.
const BUDGET: Duration = Duration::from_secs(2);

/// Signals the server and checks every client's Close 1001 and exit 0, all within BUDGET.
async fn signal_and_expect_clean_exit(server: &mut Server, sig: Sig, clients: &mut [WsClient]) {
    let t0 = Instant::now();
    server.signal(sig);
    let closes =
        futures_util::future::join_all(clients.iter_mut().map(|c| c.expect_close(BUDGET))).await;
    for (i, close) in closes.into_iter().enumerate() {
        assert_eq!(
            close,
            (1001, "server shutting down".to_string()),
            "client #{i}"
        );
    }
    let left = BUDGET.saturating_sub(t0.elapsed());
    let status = server.wait_exit(left).await.unwrap_or_else(|| {
        panic!(
            "still running {BUDGET:?} after SIG{};\nstderr:\n{}",
            sig.name(),
            server.stderr()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIG{}: {status}",
        sig.name()
    );
}

/// Connects two live clients and proves they are receiving.
async fn two_receiving_clients(server: &Server, log: &LogFile) -> Vec<WsClient> {
    let mut clients = vec![
        WsClient::connect(&server.ws_url("/ws?backlog=0")).await,
        WsClient::connect(&server.ws_url("/ws?backlog=0")).await,
    ];
    server.wait_clients(2, PROMPT).await;
    log.append_lines(["before shutdown"]);
    for c in &mut clients {
        c.expect_lines(&["before shutdown"]).await;
    }
    clients
}

/// SIGTERM: both clients get Close 1001 `server shutting down`; exit 0 within 2 s.
#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let log = LogFile::new();
    let mut server = Server::start(log.path(), &[]).await;
    let mut clients = two_receiving_clients(&server, &log).await;
    signal_and_expect_clean_exit(&mut server, Sig::Term, &mut clients).await;
}

/// SIGINT (Ctrl-C): the same as SIGTERM.
#[tokio::test]
async fn sigint_closes_clients_with_1001_and_exits_0() {
    let log = LogFile::new();
    let mut server = Server::start(log.path(), &[]).await;
    let mut clients = two_receiving_clients(&server, &log).await;
    signal_and_expect_clean_exit(&mut server, Sig::Int, &mut clients).await;
}

/// A client whose socket accepts nothing cannot hold up shutdown: exit 0 within 2 s, and
/// the healthy client still gets its Close 1001.
#[tokio::test]
async fn sigterm_with_a_stuck_client_still_exits_within_2s() {
    let log = LogFile::new();
    // Neither the queue limit nor the send timeout may drop the stuck client first.
    let mut server = Server::start(
        log.path(),
        &["--client-queue", "1073741824", "--send-timeout", "60"],
    )
    .await;
    let mut healthy = vec![WsClient::connect(&server.ws_url("/ws?backlog=0")).await];
    let stuck = RawWs::connect(server.addr(), "/ws?backlog=0").await;
    server.wait_clients(2, PROMPT).await;
    // 2 MiB of lines: far more than the stuck client's socket buffers hold.
    let lines: Vec<String> = (1..=20_480)
        .map(|i| format!("{i:08} {}", "x".repeat(90)))
        .collect();
    for chunk in lines.chunks(320) {
        log.append_lines(chunk);
        healthy[0].expect_lines(&strs(chunk)).await;
    }
    assert_eq!(
        server.client_count().await,
        2,
        "the stuck client is gone already"
    );
    signal_and_expect_clean_exit(&mut server, Sig::Term, &mut healthy).await;
    drop(stuck);
}

/// Clients in the grace of being closed as too slow (a `/ws` and an `/events` client whose
/// sockets accept nothing) do not hold up shutdown either: the healthy client gets its
/// Close 1001, exit 0 within 2 s, and no connection is left behind unfinished.
#[tokio::test]
async fn sigterm_during_stuck_clients_grace_still_exits_within_2s() {
    let log = LogFile::new();
    let mut server = Server::start(log.path(), &["--send-timeout", "1"]).await;
    let mut healthy = vec![WsClient::connect(&server.ws_url("/ws?backlog=0")).await];
    let stuck_ws = RawWs::connect(server.addr(), "/ws?backlog=0").await;
    let stuck_sse =
        SseStream::connect_small_rcvbuf(server.addr(), "/events?backlog=0", &[], 4096).await;
    server.wait_clients(3, PROMPT).await;
    // Lines until the server has given up on both.
    let flood = Deadline::after(FLOOD);
    let mut written = 0;
    while server
        .stderr()
        .matches("closing a client that is too slow")
        .count()
        < 2
    {
        flood.check(|| format!("the stuck clients were not both closed after {written} lines"));
        let chunk: Vec<String> = (written + 1..=written + 320)
            .map(|i| format!("{i:08} {}", "x".repeat(90)))
            .collect();
        log.append_lines(&chunk);
        healthy[0].expect_lines(&strs(&chunk)).await;
        written += chunk.len();
    }
    signal_and_expect_clean_exit(&mut server, Sig::Term, &mut healthy).await;
    assert!(
        !server.stderr().contains("did not finish in time"),
        "stderr:\n{}",
        server.stderr()
    );
    drop((stuck_ws, stuck_sse));
}
