//! `/events`: the Server-Sent Events stream.
//!
//! The same cursor as `/ws`, encoded as SSE: `id: EPOCH:SEQ` and `data: LINE`
//! per line, file events and gaps as named events. A reconnecting
//! `EventSource` sends back the last id as `Last-Event-ID` and resumes
//! exactly where it stopped. The stream starts with `retry: 1000` and a
//! `: keep-alive` comment goes out every 15 s so proxies keep it open.
//!
//! A client that stops reading is closed by the connection's write timeout
//! (see `server::TimeoutIo`); one that falls more than `--client-queue`
//! behind gets a final `event: closed` and the stream ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};

use super::{RawParams, admit, frame};
use crate::hub::{Cursor, CursorError, Delivery};
use crate::metrics::Metrics;
use crate::server::{AppState, ClientSlot};

/// How often an idle stream carries a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(raw): Query<RawParams>,
    headers: HeaderMap,
) -> Response {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let admitted = match admit(&app, peer, &raw, &headers, last_event_id) {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.into_response(),
    };
    let first = Event::default().retry(Duration::from_millis(1000));
    let state = Client {
        cursor: admitted.cursor,
        app,
        pending: VecDeque::from([first]),
        done: false,
        _slot: admitted.slot,
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
    _slot: ClientSlot,
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
                delivery = state.cursor.next() => delivery,
            };
            match delivery {
                Ok(delivery) => state.queue(&delivery),
                Err(CursorError::TooSlow) => {
                    Metrics::add(&state.app.hub.metrics.slow_client_drops, 1);
                    state
                        .pending
                        .push_back(Event::default().event("closed").data("client too slow"));
                    state.done = true;
                }
                Err(CursorError::Closed) => return None,
            }
        }
    })
}

impl Client {
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
