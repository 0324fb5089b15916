//! `--publish mqtt://HOST:PORT/PREFIX`: every line as an MQTT 3.1.1 message.
//!
//! - **Topic**: `PREFIX/<node>/<file>`, the node and the file name each one
//!   [`topic_level`] (percent-encoded, so a name holding `/`, `+`, `#` or a
//!   control character can neither add a level nor be refused as a wildcard).
//! - **Message**: QoS 1 (at least once), not retained; the line's bytes, or
//!   with `--publish-format json` its JSON frame (`seq`, `offset`, `file`,
//!   `line`, as `/ws?format=json` sends it).
//! - **Acknowledged**: each message by its PUBACK, pipelined up to the sink's
//!   window ([`super::WINDOW`], also the client's `inflight`).
//! - **Session**: clean, so the broker forgets what was not acknowledged
//!   when the connection drops; [`super::run`] sends it again on the next
//!   link.
//!
//! Plain TCP (rumqttc without its TLS stack).
//!
//! # How acknowledgements are matched
//!
//! rumqttc's `publish` returns once the message is in the client's queue; its
//! event loop, which this link polls in a task of its own, gives it a packet
//! id as it takes it from that queue (in queue order) and then reports
//! `Outgoing::Publish(pkid)`, and the broker's `PUBACK(pkid)` later. So each
//! [`Link::send`] queues a one-shot for its acknowledgement, the task moves
//! the oldest one to that packet id when `Outgoing::Publish` comes, and
//! resolves it on the `PUBACK`. rumqttc does not reuse a packet id that is
//! still waiting for its acknowledgement (it holds the new message back
//! until then), so an id names one message at a time. When the event loop
//! fails (the broker went away), every acknowledgement still to come fails
//! with it and the task ends: the link is dead, [`super::run`] connects a new
//! one and sends again after the last acknowledged line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing as MqttOutgoing, Packet, QoS};
use tokio_util::task::AbortOnDropHandle;

use super::acks::{AckSender, Acks};
use super::{Ack, Link, LinkError, LinkFuture, Outgoing, OutgoingEvent, Target, WINDOW};
use crate::config::PublishFormat;

/// How long connecting (TCP and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings when idle, so a broker that is gone without a word is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Messages waiting in the client's queue for its event loop.
const QUEUE: usize = 64;
/// The largest MQTT packet (the protocol's 256 MiB remaining length).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// A level of a topic for any text: `%`, `/`, `+`, `#` and control
/// characters (U+0000–U+001F, U+007F–U+009F, which brokers may refuse) become
/// `%XX` per UTF-8 byte; everything else, `.` and non-ASCII letters included,
/// stays as it is. The empty name is `%`. [`level_text`] gives the text back.
pub fn topic_level(text: &str) -> String {
    crate::nats::percent_word(text, |c| {
        matches!(c, '%' | '/' | '+' | '#') || c.is_control()
    })
}

/// The text a [`topic_level`] was made from (`None` if it was not one).
pub fn level_text(level: &str) -> Option<String> {
    crate::nats::token_text(level)
}

/// The topic of `file`'s lines from `node`.
pub fn topic(prefix: &str, node: &str, file: &str) -> String {
    format!("{prefix}/{}/{}", topic_level(node), topic_level(file))
}

/// The largest message a line of at most `max_line_bytes` makes, as text or
/// JSON: invalid UTF-8 triples at most (U+FFFD), JSON escaping at most
/// sextuples a byte (`\u0001`), and the JSON fields and the file name fit in
/// the rest.
pub fn max_message_bytes(max_line_bytes: usize) -> usize {
    max_line_bytes
        .saturating_mul(6)
        .saturating_add(64 * 1024)
        .min(MQTT_MAX_PACKET)
}

/// An MQTT broker to publish to.
pub struct MqttTarget {
    host: String,
    port: u16,
    prefix: String,
    node: String,
    format: PublishFormat,
    max_packet: usize,
}

impl MqttTarget {
    pub fn new(
        host: String,
        port: u16,
        prefix: String,
        node: String,
        format: PublishFormat,
        max_line_bytes: usize,
    ) -> MqttTarget {
        MqttTarget {
            host,
            port,
            prefix,
            node,
            format,
            max_packet: max_message_bytes(max_line_bytes),
        }
    }

    fn options(&self) -> MqttOptions {
        let mut id = [0u8; 4];
        let _ = getrandom::fill(&mut id);
        let client_id = format!("logtail-ws-{}-{}", self.node, hex(&id));
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            // The broker only sends acknowledgements and pings back.
            .set_max_packet_size(64 * 1024, self.max_packet)
            .set_inflight(u16::try_from(WINDOW).unwrap_or(u16::MAX))
            .set_request_channel_capacity(QUEUE);
        options
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Target for MqttTarget {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn describe(&self) -> String {
        format!("mqtt://{}:{}/{}", self.host, self.port, self.prefix)
    }

    fn connect(&self) -> LinkFuture<'_, Box<dyn Link>> {
        Box::pin(async move {
            let (client, mut events) = AsyncClient::new(self.options(), QUEUE);
            // The first poll connects and waits for the CONNACK.
            match tokio::time::timeout(CONNECT_TIMEOUT, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
                Ok(Ok(other)) => {
                    return Err(LinkError::new(format!(
                        "cannot connect: {other:?} instead of CONNACK"
                    )));
                }
                Ok(Err(err)) => return Err(LinkError::new(format!("cannot connect: {err}"))),
                Err(_) => {
                    return Err(LinkError::new(format!(
                        "cannot connect: no CONNACK within {CONNECT_TIMEOUT:?}"
                    )));
                }
            }
            let acks = Arc::new(Acks::default());
            let task = AbortOnDropHandle::new(tokio::spawn(drive(events, Arc::clone(&acks))));
            Ok(Box::new(MqttLink {
                _task: task,
                client,
                acks,
                prefix: self.prefix.clone(),
                node: self.node.clone(),
                format: self.format,
            }) as Box<dyn Link>)
        })
    }
}

/// Polls the event loop until it fails: packet ids to acknowledgements,
/// PUBACKs to their message's acknowledgement.
async fn drive(mut events: EventLoop, acks: Arc<Acks>) {
    // Indexed by packet id (1..=inflight).
    let mut by_pkid: Vec<Option<AckSender>> = Vec::new();
    by_pkid.resize_with(WINDOW + 1, || None);
    let failed = loop {
        match events.poll().await {
            Ok(Event::Outgoing(MqttOutgoing::Publish(pkid))) => {
                let next = acks.take_oldest();
                let Some(slot) = by_pkid.get_mut(usize::from(pkid)) else {
                    break LinkError::new(format!("packet id {pkid} beyond the window"));
                };
                if slot.is_some() {
                    break LinkError::new(format!("packet id {pkid} reused before its PUBACK"));
                }
                *slot = next;
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(tx) = by_pkid
                    .get_mut(usize::from(ack.pkid))
                    .and_then(Option::take)
                {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::Disconnect)) => {
                break LinkError::new("the broker disconnected");
            }
            Ok(_) => {}
            Err(err) => break LinkError::new(format!("connection lost: {err}")),
        }
    };
    for tx in by_pkid.iter_mut().filter_map(Option::take) {
        let _ = tx.send(Err(failed.clone()));
    }
    // Those still without a packet id, and the link.
    acks.fail(failed);
    // The event loop (and with it the connection) is dropped here: rumqttc
    // would otherwise reconnect by itself, with a clean session.
}

struct MqttLink {
    /// The event loop's: aborted when the link is dropped (first), as its
    /// queue never closes by itself (it keeps a sender of its own).
    _task: AbortOnDropHandle<()>,
    client: AsyncClient,
    acks: Arc<Acks>,
    prefix: String,
    node: String,
    format: PublishFormat,
}

impl MqttLink {
    /// Queues one message on `file`'s topic; its PUBACK to come.
    async fn publish(&mut self, file: &str, payload: Bytes) -> Result<Ack, LinkError> {
        // Expected before the message is queued, so in the same order.
        let ack = self.acks.expect()?;
        self.client
            .publish_bytes(
                topic(&self.prefix, &self.node, file),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .map_err(|err| LinkError::new(format!("publish: {err}")))?;
        Ok(ack)
    }
}

impl Link for MqttLink {
    fn send<'a>(&'a mut self, out: Outgoing<'a>) -> LinkFuture<'a, Ack> {
        Box::pin(async move {
            let line = out.line;
            let payload = match self.format {
                PublishFormat::Text => Bytes::copy_from_slice(line.text.as_str().as_bytes()),
                PublishFormat::Json => Bytes::from(crate::encode::json_line(
                    line.seq,
                    line.offset,
                    out.file,
                    line.text.as_str(),
                )),
            };
            self.publish(out.file, payload).await
        })
    }

    /// With `--publish-format json`, the event's JSON frame on the file's
    /// topic, as `/ws?format=json` sends it; nothing with text payloads.
    fn send_event<'a>(&'a mut self, event: OutgoingEvent<'a>) -> LinkFuture<'a, Option<Ack>> {
        Box::pin(async move {
            match self.format {
                PublishFormat::Text => Ok(None),
                PublishFormat::Json => {
                    let payload = Bytes::from(event.kind.json(event.file, event.after_seq));
                    self.publish(event.file, payload).await.map(Some)
                }
            }
        })
    }

    fn failed(&self) -> Pin<Box<dyn Future<Output = LinkError> + Send + '_>> {
        Box::pin(self.acks.failed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_levels_hold_no_separator_or_wildcard_and_round_trip() {
        for name in [
            "app.log",
            "a/b/c.log",
            "+",
            "#",
            "x+y#z",
            "nul\0here",
            "tab\tand\u{85}",
            "%41",
            "",
            "журнал.log",
            "sp ace",
        ] {
            let level = topic_level(name);
            assert!(!level.contains(['/', '+', '#', '\0']), "{level}");
            assert!(!level.chars().any(char::is_control), "{level}");
            assert_eq!(level_text(&level).as_deref(), Some(name), "{level}");
        }
        assert_eq!(topic_level("app.log"), "app.log");
        assert_eq!(topic_level("a/b+c#d%"), "a%2Fb%2Bc%23d%25");
        assert_eq!(topic_level("\0"), "%00");
        assert_eq!(
            topic("logs/prod", "web-1", "nginx/access.log"),
            "logs/prod/web-1/nginx%2Faccess.log"
        );
    }

    #[test]
    fn max_message_fits_a_json_line_of_control_bytes() {
        let line = "\u{1}".repeat(1000);
        let frame = crate::encode::json_line(u64::MAX, u64::MAX, &"f".repeat(4096), &line);
        assert!(frame.len() <= max_message_bytes(1000), "{}", frame.len());
        assert_eq!(max_message_bytes(usize::MAX), MQTT_MAX_PACKET);
    }
}
