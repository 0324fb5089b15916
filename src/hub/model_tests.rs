//! A model-based property test of the seam between the hub and its cursors:
//! random publishing (lines and notices), subscribing (live, backlog, since)
//! and reading in random amounts — so receivers lag past the broadcast
//! channel and recover from the history, in every interleaving proptest can
//! find. The model is what was published, in order; every cursor must hand
//! out every line from its start once, in order, and every notice once, at
//! its place (right after the line it follows).

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::{Cursor, CursorError, Delivery, Hub, HubLimits, LagPolicy, Line, NoticeKind, Start};
use crate::lines::Text;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
enum Op {
    /// Publish a batch of this many lines.
    Lines(usize),
    /// Publish a notice.
    Notice,
    /// A new client.
    Subscribe(StartKind),
    /// Client `index % clients` reads up to this many deliveries.
    Read(usize, usize),
}

#[derive(Debug, Clone)]
enum StartKind {
    Live,
    Backlog(usize),
    /// `since` as a fraction of what was published so far, in percent.
    SincePercent(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..12).prop_map(Op::Lines),
        2 => Just(Op::Notice),
        1 => prop_oneof![
            Just(StartKind::Live),
            (0usize..30).prop_map(StartKind::Backlog),
            (0u64..=100).prop_map(StartKind::SincePercent),
        ]
        .prop_map(Op::Subscribe),
        3 => (0usize..8, 0usize..40).prop_map(|(i, n)| Op::Read(i, n)),
    ]
}

/// What a client saw: `L(seq)` and `N(id, after_seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    L(u64),
    N(u64, u64),
}

struct Client {
    cursor: Cursor,
    /// The first `seq` it must get.
    start: u64,
    /// The first notice id it must get (live clients: none from before).
    first_notice: u64,
    seen: Vec<Seen>,
}

impl Client {
    fn read(&mut self, max: usize) {
        for _ in 0..max {
            match self.cursor.try_next() {
                Ok(Some(delivery)) => self.record(&delivery),
                Ok(None) => return,
                Err(err) => panic!("cursor stopped: {err:?}"),
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(Some(delivery)) = self.cursor.try_next() {
            self.record(&delivery);
        }
    }

    fn record(&mut self, delivery: &Delivery) {
        match delivery {
            Delivery::Notice(n) => self.seen.push(Seen::N(n.id, n.after_seq)),
            Delivery::Gap(gap) => panic!("a gap with a history that evicts nothing: {gap:?}"),
            d => self.seen.extend(d.lines().iter().map(|l| Seen::L(l.seq))),
        }
    }
}

fn hub() -> Arc<Hub> {
    Hub::new(
        vec!["app.log".into()],
        HubLimits {
            // Nothing is evicted: every line and notice stays replayable.
            history_bytes: 1 << 30,
            // The smallest broadcast channel (16 items), so readers lag.
            client_queue: 1 << 20,
            lag_grace: Duration::from_secs(3600),
            max_line_bytes: 1 << 20,
        },
        Arc::new(Metrics::default()),
    )
}

fn lines(n: usize) -> Vec<Line> {
    (0..n)
        .map(|i| Line {
            seq: 0,
            offset: 0,
            file: 0,
            cost_end: 0,
            origin: 0,
            text: Text::from(format!("line {i}")),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_cursor_sees_every_line_and_notice_once_in_place(ops in prop::collection::vec(op(), 1..120)) {
        let hub = hub();
        // The model: everything published, in order.
        let mut published: Vec<Seen> = Vec::new();
        let mut last_seq = 0u64;
        let mut notices = 0u64;
        let mut clients: Vec<Client> = Vec::new();
        for op in ops {
            match op {
                Op::Lines(n) => {
                    hub.publish_lines(lines(n));
                    for _ in 0..n {
                        last_seq += 1;
                        published.push(Seen::L(last_seq));
                    }
                }
                Op::Notice => {
                    hub.publish_notice(0, NoticeKind::Rotated);
                    published.push(Seen::N(notices, last_seq));
                    notices += 1;
                }
                Op::Subscribe(kind) => {
                    let (start, since, first_notice) = match kind {
                        StartKind::Live => (Start::Backlog(0), last_seq + 1, notices),
                        StartKind::Backlog(0) => (Start::Backlog(0), last_seq + 1, notices),
                        StartKind::Backlog(n) => {
                            let from = last_seq.saturating_sub(n as u64 - 1).max(1);
                            (Start::Backlog(n), from.min(last_seq + 1), 0)
                        }
                        StartKind::SincePercent(p) => {
                            let seq = last_seq * p / 100;
                            (Start::Since { seq, epoch: None }, seq + 1, 0)
                        }
                    };
                    clients.push(Client {
                        cursor: hub.subscribe(start, None),
                        start: since,
                        first_notice,
                        seen: Vec::new(),
                    });
                }
                Op::Read(i, n) => {
                    if !clients.is_empty() {
                        let len = clients.len();
                        clients[i % len].read(n);
                    }
                }
            }
        }
        for client in &mut clients {
            client.drain();
            // What it must have seen: every line from its start, and every
            // notice from its first one that sits at or after its start.
            let want: Vec<Seen> = published
                .iter()
                .copied()
                .filter(|s| match *s {
                    Seen::L(seq) => seq >= client.start,
                    Seen::N(id, after) => id >= client.first_notice && after + 1 >= client.start,
                })
                .collect();
            prop_assert_eq!(&client.seen, &want, "client starting at {}", client.start);
        }
    }
}

/// A subscriber far behind for longer than the grace: a client is too slow,
/// a broker publisher (`LagPolicy::Replay`) never is, and gets every line.
#[test]
fn lag_policy_closes_a_client_and_never_a_publisher() {
    let hub = Hub::new(
        vec!["app.log".into()],
        HubLimits {
            history_bytes: 1 << 30,
            client_queue: 1024,
            lag_grace: Duration::ZERO,
            max_line_bytes: 1 << 20,
        },
        Arc::new(Metrics::default()),
    );
    let mut client = hub.subscribe(Start::Backlog(0), None);
    let mut publisher = hub.subscribe(Start::Backlog(0), None);
    publisher.set_lag_policy(LagPolicy::Replay);
    for _ in 0..100 {
        hub.publish_lines(lines(10));
    }
    // The grace is zero: the first look past the queue finds it too slow
    // (any time at all has passed since it fell behind).
    assert!(matches!(client.try_next(), Err(CursorError::TooSlow)));
    let mut seqs = Vec::new();
    while let Ok(Some(delivery)) = publisher.try_next() {
        seqs.extend(delivery.lines().iter().map(|l| l.seq));
    }
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
}
