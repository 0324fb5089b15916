//! `/events`: the Server-Sent Events stream.
//!
//! The same cursor as `/ws`, encoded as SSE: `id: EPOCH:SEQ` and `data: LINE`
//! per line, file events and gaps as named events. A reconnecting
//! `EventSource` sends back the last id as `Last-Event-ID` and resumes
//! exactly where it stopped. The stream starts with `retry: 1000` and a
//! `: keep-alive` comment goes out every 15 s so proxies keep it open.
//!
//! A client that falls more than `--client-queue` behind, or whose socket
//! accepts nothing for `--send-timeout`, gets a final `event: closed` (data
//! `client too slow`) and the stream ends; the connection is kept for the
//! grace ([`CLOSE_CAP`]) while that goes out. hyper writes the body, and a
//! failed write would end the connection at once, so the stuck case is not
//! a write error: the connection's [`SendLimit`] marks it stalled instead and
//! lets the writes wait on for the grace. The stream then queues nothing but
//! `closed`, so a client that reads again within the grace gets what was in
//! flight, then `closed`. (Its slot among `--max-clients` is released when
//! the stream ends, which may be before hyper has written `closed`.)

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AppState, ClientSlot};
use super::{CLOSE_CAP, RawParams, admit, frame};
use crate::hub::{Cursor, CursorError, Delivery};
use crate::metrics::Metrics;
use crate::server::SendLimit;

/// How often an idle stream carries a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    limit: Option<Extension<SendLimit>>,
    Query(raw): Query<RawParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let admitted = match admit(&app, peer, &raw, &uri, &headers, last_event_id) {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.into_response(),
    };
    let limit = limit.map(|Extension(limit)| limit);
    let stalled = limit.as_ref().map(|limit| {
        let hub = Arc::clone(&app.hub);
        limit.grace_on_stall(CLOSE_CAP, move || {
            Metrics::add(&hub.metrics.slow_client_drops, 1);
            tracing::info!(%peer, "closing a client that is too slow");
        })
    });
    let first = Event::default().retry(Duration::from_millis(1000));
    let state = Client {
        cursor: admitted.cursor,
        app,
        pending: VecDeque::from([first]),
        done: false,
        stalled,
        limit,
        slot: admitted.slot,
    };
    let mut response = Sse::new(events(state))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Tell nginx-style proxies not to buffer the stream.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

struct Client {
    cursor: Cursor,
    app: AppState,
    pending: VecDeque<Event>,
    done: bool,
    /// Cancelled when the socket accepted nothing for `--send-timeout`.
    stalled: Option<CancellationToken>,
    limit: Option<SendLimit>,
    slot: ClientSlot,
}

fn events(state: Client) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            let delivery = tokio::select! {
                biased;
                _ = state.app.cancel.cancelled() => return None,
                // Counted and logged when the stall began.
                () = stalled(state.stalled.as_ref()) => {
                    state.last_word();
                    continue;
                }
                delivery = state.cursor.next() => delivery,
            };
            match delivery {
                Ok(delivery) => state.queue(&delivery),
                Err(CursorError::TooSlow) => {
                    Metrics::add(&state.app.hub.metrics.slow_client_drops, 1);
                    tracing::info!(peer = %state.slot.peer, lag_bytes = state.cursor.lag_bytes(), "closing a client that is too slow");
                    // Its last bytes get the grace too (and a stall now is
                    // no second drop).
                    if let Some(limit) = &state.limit {
                        limit.wait_until(Instant::now() + CLOSE_CAP);
                    }
                    state.last_word();
                }
                Err(CursorError::Closed) => return None,
            }
        }
    })
}

/// Resolves when `stalled` is cancelled; never without one.
async fn stalled(stalled: Option<&CancellationToken>) {
    match stalled {
        Some(stalled) => stalled.cancelled().await,
        None => std::future::pending().await,
    }
}

impl Client {
    /// The last word, after what is already queued: `event: closed`.
    fn last_word(&mut self) {
        self.pending
            .push_back(Event::default().event("closed").data("client too slow"));
        self.done = true;
    }

    fn queue(&mut self, delivery: &Delivery) {
        let hub = self.cursor.hub();
        match delivery {
            Delivery::Notice(notice) => self.pending.push_back(frame::notice_event(hub, notice)),
            Delivery::Gap(gap) => {
                Metrics::add(&hub.metrics.gaps, 1);
                self.pending.push_back(frame::gap_event(gap));
            }
            Delivery::Live { .. } | Delivery::Replay(_) => {
                let mut lines = 0u64;
                let mut bytes = 0u64;
                for line in delivery.lines() {
                    if self.cursor.matches(line) {
                        lines += 1;
                        bytes += line.text.len() as u64;
                        self.pending.push_back(frame::line_event(hub.epoch(), line));
                    }
                }
                Metrics::add(&hub.metrics.lines_sent, lines);
                Metrics::add(&hub.metrics.bytes_sent, bytes);
            }
        }
    }
}
