//! The acknowledgements still to come on one link, for the brokers whose
//! client gives no future per message ([`super::mqtt`]'s PUBACKs,
//! [`super::amqp`]'s publisher confirms): what the link and the task that
//! hears the broker share.
//!
//! Each [`Link::send`](super::Link::send) takes one with [`Acks::expect`]
//! before it hands its message to the client, so they are numbered 1, 2, 3…
//! in the order sent. The broker's side resolves them ([`Acks::ack`], or
//! [`Acks::take_oldest`] to resolve one itself), or, once the link is dead,
//! fails every one still to come with the same error ([`Acks::fail`]); from
//! then on [`Acks::expect`] refuses and [`Acks::failed`] resolves with that
//! error.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Ack, LinkError};

/// Resolves one [`Ack`].
pub type AckSender = oneshot::Sender<Result<(), LinkError>>;

/// The acknowledgements to come on one link, and why it failed, once it has.
#[derive(Default)]
pub struct Acks {
    state: Mutex<State>,
    /// Cancelled once the link failed.
    dead: CancellationToken,
}

#[derive(Default)]
struct State {
    /// The number of the last one expected.
    last: u64,
    /// Expected and not yet resolved: (number, sender), oldest first.
    pending: VecDeque<(u64, AckSender)>,
    /// Why the link failed, once it has.
    failed: Option<LinkError>,
}

impl Acks {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The acknowledgement of the next message sent (numbered one after the
    /// last); the link's error instead if it has failed.
    pub fn expect(&self) -> Result<Ack, LinkError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            if let Some(err) = &state.failed {
                return Err(err.clone());
            }
            state.last += 1;
            let n = state.last;
            state.pending.push_back((n, tx));
        }
        Ok(Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(LinkError::new("the connection was closed")))
        }))
    }

    /// The oldest acknowledgement still to come, taken out to be resolved by
    /// the caller.
    pub fn take_oldest(&self) -> Option<AckSender> {
        self.lock().pending.pop_front().map(|(_, tx)| tx)
    }

    /// Acknowledgement number `n` arrived (and every one before it if
    /// `multiple`).
    pub fn ack(&self, n: u64, multiple: bool) {
        let mut state = self.lock();
        if multiple {
            while state.pending.front().is_some_and(|(m, _)| *m <= n) {
                if let Some((_, tx)) = state.pending.pop_front() {
                    let _ = tx.send(Ok(()));
                }
            }
        } else if let Some(i) = state.pending.iter().position(|(m, _)| *m == n)
            && let Some((_, tx)) = state.pending.remove(i)
        {
            let _ = tx.send(Ok(()));
        }
    }

    /// The link is dead: every acknowledgement still to come fails with
    /// `err` (the first error given is the one kept).
    pub fn fail(&self, err: LinkError) {
        let mut state = self.lock();
        for (_, tx) in state.pending.drain(..) {
            let _ = tx.send(Err(err.clone()));
        }
        if state.failed.is_none() {
            state.failed = Some(err);
        }
        self.dead.cancel();
    }

    /// Why the link failed, if it has.
    pub fn failure(&self) -> Option<LinkError> {
        self.lock().failed.clone()
    }

    /// Resolves once the link has failed, with why
    /// ([`Link::failed`](super::Link::failed)).
    pub async fn failed(&self) -> LinkError {
        self.dead.cancelled().await;
        self.failure()
            .unwrap_or_else(|| LinkError::new("connection lost"))
    }
}
