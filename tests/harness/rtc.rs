//! [`RtcClient`]: a WebRTC peer made with str0m, as a browser would be for `POST /rtc`: it
//! creates the `logs` data channel, posts its offer (non-trickle, one host candidate on
//! its own loopback UDP socket), applies the answer, and runs its `Rtc` in a task of its
//! own (socket reads, the `Rtc`'s timeouts, output drained after every input). Messages
//! on `logs` arrive as JSON values, in order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{PROMPT, Response, http_request};

/// What the client's task reports.
#[derive(Debug)]
pub enum RtcEvent {
    /// The `logs` channel is open.
    Open,
    /// A message on `logs`.
    Message(String),
    /// The channel or the connection closed (from the server's side, or ICE gave up).
    Closed,
}

pub struct RtcClient {
    events: mpsc::UnboundedReceiver<RtcEvent>,
    stop: Option<oneshot::Sender<()>>,
    freeze: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// The answer's response (201, `Location`, the SDP).
    pub answer: Response,
    open: bool,
}

/// An offer with a `logs` channel, from a socket on 127.0.0.1.
pub struct Offer {
    rtc: Rtc,
    pending: str0m::change::SdpPendingOffer,
    socket: UdpSocket,
    pub sdp: String,
}

impl Offer {
    pub async fn new() -> Offer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let local = socket.local_addr().expect("udp address");
        let mut rtc = Rtc::builder()
            .set_crypto_provider(logtail_ws::transport::rtc::crypto::provider())
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("host candidate"));
        let mut api = rtc.sdp_api();
        api.add_channel("logs".to_string());
        let (offer, pending) = api.apply().expect("an offer");
        Offer {
            sdp: offer.to_sdp_string(),
            rtc,
            pending,
            socket,
        }
    }
}

impl RtcClient {
    /// Posts a fresh offer to `path` (e.g. `/rtc?backlog=0`) with `headers`; `Ok` once
    /// answered 201, `Err(response)` otherwise.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<RtcClient, Response> {
        Self::connect_offer(Offer::new().await, addr, path, headers).await
    }

    pub async fn connect_offer(
        offer: Offer,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<RtcClient, Response> {
        let mut all = vec![("content-type", "application/sdp")];
        all.extend_from_slice(headers);
        let answer = http_request(addr, "POST", path, &all, offer.sdp.as_bytes()).await;
        if answer.status != 201 {
            return Err(answer);
        }
        let Offer {
            mut rtc,
            pending,
            socket,
            ..
        } = offer;
        let sdp = SdpAnswer::from_sdp_string(&answer.text()).expect("the answer parses");
        rtc.sdp_api()
            .accept_answer(pending, sdp)
            .expect("the answer is accepted");
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let (freeze, frozen) = oneshot::channel();
        let task = tokio::spawn(run(rtc, socket, tx, stopped, frozen));
        Ok(RtcClient {
            events,
            stop: Some(stop),
            freeze: Some(freeze),
            task,
            answer,
            open: false,
        })
    }

    /// The next event within `timeout`, `None` if none came.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<RtcEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the `logs` channel to open (within [`PROMPT`]).
    pub async fn wait_open(&mut self) {
        if self.open {
            return;
        }
        match self.next_event(PROMPT).await {
            Some(RtcEvent::Open) => self.open = true,
            other => panic!("the logs channel did not open: {other:?}"),
        }
    }

    /// The next message on `logs` as JSON (within [`PROMPT`]).
    pub async fn next_json(&mut self) -> serde_json::Value {
        self.wait_open().await;
        match self.next_event(PROMPT).await {
            Some(RtcEvent::Message(text)) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("a message that is not JSON ({e}): {text:?}")),
            other => panic!("expected a message on logs, got {other:?}"),
        }
    }

    /// Reads the `hello` frame; returns `(epoch, seq)`.
    pub async fn hello(&mut self) -> (String, u64) {
        let hello = self.next_json().await;
        assert_eq!(hello["event"], "hello", "{hello}");
        (
            hello["epoch"].as_str().expect("epoch").to_string(),
            hello["seq"].as_u64().expect("seq"),
        )
    }

    /// Reads exactly `expected.len()` line frames and checks their text, in order; returns
    /// their `seq`s.
    pub async fn expect_lines(&mut self, expected: &[&str]) -> Vec<u64> {
        let mut seqs = Vec::new();
        for (i, want) in expected.iter().enumerate() {
            let frame = self.next_json().await;
            assert_eq!(
                frame["line"].as_str(),
                Some(*want),
                "frame {i} of {expected:?}: {frame}"
            );
            seqs.push(frame["seq"].as_u64().expect("seq"));
        }
        seqs
    }

    /// Waits (within `timeout`) until the server closes the session; panics if a message
    /// comes instead.
    pub async fn expect_closed(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(RtcEvent::Closed)) | Ok(None) => return,
                Ok(Some(RtcEvent::Open)) => {}
                Ok(Some(RtcEvent::Message(m))) => panic!("a message instead of the close: {m}"),
                Err(_) => panic!("the session was not closed within {timeout:?}"),
            }
        }
    }

    /// Closes the peer connection as a browser's `pc.close()` does (SCTP and DTLS say
    /// goodbye), and waits for the task to finish.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(PROMPT, &mut self.task).await;
    }

    /// Stops reading and answering, holding its socket (a stuck process): nothing is
    /// acknowledged any more.
    pub fn freeze(&mut self) {
        if let Some(freeze) = self.freeze.take() {
            let _ = freeze.send(());
        }
    }

    /// Vanishes without a word (a killed tab, a lost network).
    pub fn vanish(self) {
        self.task.abort();
    }
}

impl Drop for RtcClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The client's loop: socket, timeouts, and `stop`; every output drained after each input.
async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    tx: mpsc::UnboundedSender<RtcEvent>,
    mut stop: oneshot::Receiver<()>,
    mut freeze: oneshot::Receiver<()>,
) {
    let local = socket.local_addr().expect("udp address");
    let mut buf = vec![0u8; 2048];
    let mut stopping = false;
    loop {
        let wake = match drain(&mut rtc, &socket, &tx).await {
            Some(wake) => wake,
            None => return,
        };
        if stopping && !rtc.is_alive() {
            return;
        }
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
        tokio::select! {
            Ok(()) = &mut freeze => {
                // Holds the socket and the `Rtc`, and never looks at either again.
                let _kept = (&rtc, &socket);
                std::future::pending::<()>().await;
            }
            _ = &mut stop, if !stopping => {
                stopping = true;
                let _ = rtc.close();
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = got else { continue };
                let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..n]) else {
                    continue;
                };
                if rtc.handle_input(Input::Receive(Instant::now(), receive)).is_err() {
                    let _ = tx.send(RtcEvent::Closed);
                    return;
                }
            }
            () = sleep => {
                if rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                    let _ = tx.send(RtcEvent::Closed);
                    return;
                }
            }
        }
    }
}

/// Drains `rtc`'s output; its next timeout, or `None` once it closed.
async fn drain(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    tx: &mpsc::UnboundedSender<RtcEvent>,
) -> Option<Instant> {
    loop {
        if !rtc.is_alive() {
            let _ = tx.send(RtcEvent::Closed);
            return None;
        }
        match rtc.poll_output() {
            Ok(Output::Timeout(at)) => {
                // A floor, so that a timeout in the past cannot spin.
                return Some(at.max(Instant::now() + Duration::from_millis(1)));
            }
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Event(event)) => match event {
                Event::ChannelOpen(_, label) if label == "logs" => {
                    let _ = tx.send(RtcEvent::Open);
                }
                Event::ChannelData(data) => {
                    let text = String::from_utf8(data.data).expect("UTF-8 messages");
                    let _ = tx.send(RtcEvent::Message(text));
                }
                Event::ChannelClose(_) | Event::Closed => {
                    let _ = tx.send(RtcEvent::Closed);
                }
                _ => {}
            },
            Err(_) => {
                let _ = tx.send(RtcEvent::Closed);
                return None;
            }
        }
    }
}
