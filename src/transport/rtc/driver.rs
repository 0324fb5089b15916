//! The WebRTC driver: one task that owns the UDP socket and every session's
//! [`Rtc`] (str0m is sans-IO: it neither reads, writes nor keeps time).
//!
//! All sessions share the socket; a datagram goes to the session whose
//! remote address it came from (remembered once its `Rtc` accepted one from
//! there, found by [`Rtc::accepts`] the first time: the STUN check's ICE
//! credentials). The task wakes on three things only: a datagram, a
//! [`Command`] (a new session, a frame to send, a session to close) and the
//! earliest instant an `Rtc` asked to be woken at. After every mutation of
//! an `Rtc` (input, a write, a close) its output is drained completely
//! (str0m's rule): datagrams go out with `try_send_to` (a full socket buffer
//! drops one, as the network may: SCTP resends it), events move the session
//! along.
//!
//! Backpressure: a session's frames wait here (`pending`) until the `logs`
//! channel takes them; it takes them while its SCTP buffer has room, and
//! the buffer drains only as the peer acknowledges. After each drain the
//! driver publishes how many bytes the peer has acknowledged
//! ([`Shared::acked`]); the session's sink lets at most
//! [`BUDGET`](super::BUDGET) bytes be sent and not yet acknowledged, so a
//! peer that stops reading makes the sink wait, and the pump's
//! `--send-timeout` closes it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::channel::Reliability;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::lines::Text;
use crate::metrics::Metrics;

/// The label of the one channel the server writes to.
pub const LABEL: &str = "logs";
/// A closing session is dropped after this, drained or not.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);
/// Datagrams read per wake-up at most, before timers get a turn.
const READ_BATCH: usize = 64;
/// Larger than any datagram WebRTC sends (its MTU is about 1200-1500).
const DATAGRAM: usize = 2048;

/// A session's number, given by the signaling side.
pub type SessionId = u64;

/// Why the driver ended a session (the client's log line and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed the `logs` channel.
    ChannelClosed,
    /// DTLS or SCTP was closed by the peer.
    PeerClosed,
    /// ICE lost the peer (no more consent checks).
    IceDisconnected,
    /// The `logs` channel is not reliable and ordered.
    BadChannel,
    /// `DELETE /rtc/{id}`.
    Deleted,
    /// str0m failed (a write refused: say, a frame larger than the peer takes).
    Failed,
}

impl Ended {
    pub fn reason(self) -> &'static str {
        match self {
            Ended::ChannelClosed => "channel closed by client",
            Ended::PeerClosed => "closed by client",
            Ended::IceDisconnected => "ice disconnected",
            Ended::BadChannel => "channel not reliable and ordered",
            Ended::Deleted => "deleted by client",
            Ended::Failed => "webrtc error",
        }
    }
}

/// What the driver and one session's sink share.
#[derive(Default)]
pub struct Shared {
    /// Bytes of frames the peer has acknowledged (written by the driver).
    pub acked: AtomicU64,
    /// Told when `acked` grows.
    pub room: Notify,
}

/// A new session, with everything the driver tells its task.
pub struct NewSession {
    pub id: SessionId,
    pub rtc: Rtc,
    pub shared: Arc<Shared>,
    /// Fired when the `logs` channel is open.
    pub opened: oneshot::Sender<()>,
    /// Fired when the driver ends the session (dropped at shutdown).
    pub ended: oneshot::Sender<Ended>,
    /// Its place among `--max-rtc-sessions`, given back when it is dropped.
    pub permit: OwnedSemaphorePermit,
}

/// What the driver is asked to do.
pub enum Command {
    Add(Box<NewSession>),
    /// A frame for the session's `logs` channel (one message).
    Write(SessionId, Text),
    /// The session's task is done with it.
    Close(SessionId),
    /// `DELETE /rtc/{id}`: end it; told whether there was one.
    Delete(SessionId, oneshot::Sender<bool>),
}

/// The driver's side of a session.
struct Session {
    rtc: Rtc,
    shared: Arc<Shared>,
    channel: Option<ChannelId>,
    opened: Option<oneshot::Sender<()>>,
    ended: Option<oneshot::Sender<Ended>>,
    /// Frames the channel did not take yet.
    pending: VecDeque<Text>,
    /// Bytes the channel took.
    written: u64,
    /// When the `Rtc` wants its next `Input::Timeout`.
    wake: Instant,
    /// Since when it is being closed.
    closing: Option<Instant>,
    /// Remote addresses its datagrams came from.
    addrs: Vec<SocketAddr>,
    _permit: OwnedSemaphorePermit,
}

pub struct Driver {
    socket: UdpSocket,
    local: SocketAddr,
    commands: mpsc::UnboundedReceiver<Command>,
    sessions: HashMap<SessionId, Session>,
    by_addr: HashMap<SocketAddr, SessionId>,
    metrics: Arc<Metrics>,
}

impl Driver {
    pub fn new(
        socket: UdpSocket,
        local: SocketAddr,
        commands: mpsc::UnboundedReceiver<Command>,
        metrics: Arc<Metrics>,
    ) -> Driver {
        Driver {
            socket,
            local,
            commands,
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            metrics,
        }
    }

    /// Runs until `cancel`; then closes every session (DTLS close_notify,
    /// so browsers see the channel close at once) and returns.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut buf = vec![0u8; DATAGRAM];
        loop {
            let wake = self.sessions.values().map(|s| s.wake).min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                received = self.socket.recv_from(&mut buf) => {
                    self.received(received, &buf);
                    for _ in 1..READ_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok(got) => self.received(Ok(got), &buf),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep => {}
            }
            self.timeouts();
            self.reap();
        }
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        self.sessions
            .drain()
            .for_each(|_| self.metrics.rtc_session_dropped());
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Add(new) => {
                let NewSession {
                    id,
                    rtc,
                    shared,
                    opened,
                    ended,
                    permit,
                } = *new;
                self.metrics.rtc_session_added();
                self.sessions.insert(
                    id,
                    Session {
                        rtc,
                        shared,
                        channel: None,
                        opened: Some(opened),
                        ended: Some(ended),
                        pending: VecDeque::new(),
                        written: 0,
                        wake: Instant::now(),
                        closing: None,
                        addrs: Vec::new(),
                        _permit: permit,
                    },
                );
                self.drive(id);
            }
            Command::Write(id, frame) => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.pending.push_back(frame);
                    self.drive(id);
                }
            }
            Command::Close(id) => self.close(id),
            Command::Delete(id, tell) => {
                let found = match self.sessions.get_mut(&id) {
                    Some(session) => {
                        end(session, Ended::Deleted);
                        true
                    }
                    None => false,
                };
                let _ = tell.send(found);
                self.drive(id);
            }
        }
    }

    /// One datagram (or a read error, which UDP reports for an earlier
    /// send's ICMP error: nothing to do about it here).
    fn received(&mut self, received: std::io::Result<(usize, SocketAddr)>, buf: &[u8]) {
        let (n, source) = match received {
            Ok(got) => got,
            Err(err) => {
                tracing::debug!("webrtc socket: {err}");
                return;
            }
        };
        let Some(data) = buf.get(..n) else { return };
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, data) else {
            tracing::trace!(%source, "not a WebRTC datagram");
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(now, receive);
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|id| self.sessions.get(id).is_some_and(|s| s.rtc.accepts(&input)));
        let id = match known {
            Some(id) => id,
            None => {
                let Some((&id, session)) = self
                    .sessions
                    .iter_mut()
                    .find(|(_, s)| s.rtc.accepts(&input))
                else {
                    tracing::debug!(%source, "a datagram no session accepts");
                    return;
                };
                session.addrs.push(source);
                self.by_addr.insert(source, id);
                id
            }
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Err(err) = session.rtc.handle_input(input) {
            tracing::debug!(session = id, "webrtc input: {err}");
            end(session, Ended::Failed);
        }
        self.drive(id);
    }

    /// Every session whose instant came gets its timeout.
    fn timeouts(&mut self) {
        let now = Instant::now();
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.wake <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(session) = self.sessions.get_mut(&id)
                && let Err(err) = session.rtc.handle_input(Input::Timeout(now))
            {
                tracing::debug!(session = id, "webrtc timeout: {err}");
                end(session, Ended::Failed);
            }
            self.drive(id);
        }
    }

    /// Drops sessions that are closed, or closing for too long.
    fn reap(&mut self) {
        let now = Instant::now();
        let dead: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.rtc.is_alive() || s.closing.is_some_and(|at| now - at > CLOSE_DRAIN)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in dead {
            if let Some(mut session) = self.sessions.remove(&id) {
                // Closed from the far side without an event naming why.
                end(&mut session, Ended::PeerClosed);
                for addr in &session.addrs {
                    self.by_addr.remove(addr);
                }
                self.metrics.rtc_session_dropped();
                tracing::debug!(session = id, "webrtc session dropped");
            }
        }
    }

    /// Closes a session: its `Rtc` says goodbye (SCTP, DTLS close_notify)
    /// and is dropped once that is out.
    fn close(&mut self, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.pending.clear();
        if session.closing.is_none() {
            session.closing = Some(Instant::now());
            if let Err(err) = session.rtc.close() {
                tracing::debug!(session = id, "webrtc close: {err}");
                session.rtc.disconnect();
            }
        }
        self.drive(id);
    }

    /// Drains the session's output, writes what the channel takes, and
    /// again, until it has nothing more to say; then publishes what the
    /// peer acknowledged.
    fn drive(&mut self, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        loop {
            drain(session, id, &self.socket, &self.metrics);
            if !write_pending(session) {
                break;
            }
        }
        if let Some(channel) = session.channel
            && let Some(mut channel) = session.rtc.channel(channel)
        {
            let buffered = channel.buffered_amount() as u64;
            let acked = session.written.saturating_sub(buffered);
            if acked > session.shared.acked.load(Ordering::Relaxed) {
                session.shared.acked.store(acked, Ordering::Release);
                session.shared.room.notify_one();
            }
        }
    }
}

/// Polls the session's `Rtc` until it names its next timeout.
fn drain(session: &mut Session, id: SessionId, socket: &UdpSocket, metrics: &Metrics) {
    loop {
        if !session.rtc.is_alive() {
            return;
        }
        let output = match session.rtc.poll_output() {
            Ok(output) => output,
            Err(err) => {
                tracing::debug!(session = id, "webrtc: {err}");
                end(session, Ended::Failed);
                session.rtc.disconnect();
                return;
            }
        };
        match output {
            Output::Timeout(at) => {
                session.wake = at;
                return;
            }
            Output::Transmit(transmit) => {
                match socket.try_send_to(&transmit.contents, transmit.destination) {
                    Ok(n) => metrics.rtc_sent(n as u64),
                    Err(err) => {
                        tracing::debug!(session = id, to = %transmit.destination, "webrtc send: {err}")
                    }
                }
            }
            Output::Event(event) => on_event(session, id, event),
        }
    }
}

fn on_event(session: &mut Session, id: SessionId, event: Event) {
    match event {
        Event::ChannelOpen(channel, label) if label == LABEL && session.channel.is_none() => {
            let reliable_ordered = session
                .rtc
                .channel(channel)
                .and_then(|c| c.config().cloned())
                .is_none_or(|c| c.ordered && c.reliability == Reliability::Reliable);
            if !reliable_ordered {
                tracing::info!(
                    session = id,
                    "the `logs` channel is not reliable and ordered"
                );
                end(session, Ended::BadChannel);
                return;
            }
            session.channel = Some(channel);
            if let Some(opened) = session.opened.take() {
                let _ = opened.send(());
            }
        }
        Event::ChannelOpen(_, label) => {
            tracing::debug!(session = id, label, "ignoring a data channel");
        }
        Event::ChannelClose(channel) if session.channel == Some(channel) => {
            end(session, Ended::ChannelClosed);
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            end(session, Ended::IceDisconnected);
        }
        Event::IceConnectionStateChange(state) => {
            tracing::debug!(session = id, ?state, "ice");
        }
        Event::Closed => end(session, Ended::PeerClosed),
        Event::Connected => tracing::debug!(session = id, "webrtc connected"),
        _ => {}
    }
}

/// Writes pending frames while the channel takes them; true if any went.
fn write_pending(session: &mut Session) -> bool {
    if session.closing.is_some() {
        return false;
    }
    let Some(id) = session.channel else {
        return false;
    };
    let mut wrote = false;
    while let Some(frame) = session.pending.front() {
        let Some(mut channel) = session.rtc.channel(id) else {
            break;
        };
        match channel.write(false, frame.as_bytes()) {
            Ok(true) => {
                session.written += frame.len() as u64;
                session.pending.pop_front();
                wrote = true;
            }
            // The SCTP buffer is full: the peer's acknowledgements make room.
            Ok(false) => break,
            Err(err) => {
                tracing::info!(
                    bytes = frame.len(),
                    "a frame the data channel refused: {err}; closing the session"
                );
                session.pending.clear();
                end(session, Ended::Failed);
                break;
            }
        }
    }
    wrote
}

/// Tells the session's task why it ended (once) and starts closing.
fn end(session: &mut Session, why: Ended) {
    if let Some(ended) = session.ended.take() {
        let _ = ended.send(why);
    }
    session.pending.clear();
    if session.closing.is_none() {
        session.closing = Some(Instant::now());
        if session.rtc.close().is_err() {
            session.rtc.disconnect();
        }
    }
}
