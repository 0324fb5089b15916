//! `--publish amqp://USER:PASS@HOST:PORT/VHOST?exchange=NAME`: every line into
//! an AMQP 0-9-1 topic exchange (RabbitMQ).
//!
//! - **Exchange**: `NAME` (default `logtail`), declared durable, of type
//!   `topic` (an existing one of another type or durability is refused by the
//!   broker, and the link fails saying so). Queues are the consumers' own to
//!   bind: a line routed to no queue is dropped by the broker (and still
//!   acknowledged).
//! - **Routing key**: `<node>.<file>`, each a [`key_word`] (percent-encoded, so
//!   a name holding `.`, `*` or `#` stays one word); a key over AMQP's 255
//!   bytes is cut and ends in `~` and a hash of the whole ([`routing_key`]).
//! - **Message**: persistent (delivery mode 2), `message-id` `NODE:ORIGIN:OFFSET`
//!   (the same for the same line sent again, to dedupe by), `app-id`
//!   `logtail-ws`; the line's bytes (`text/plain`), or with
//!   `--publish-format json` its JSON frame (`application/json`).
//! - **Acknowledged**: publisher confirms. Delivery tags count the channel's
//!   publishes from 1, so the n-th [`Link::send`] waits for tag n; an ack
//!   with `multiple` settles every tag up to it. A nack (the broker could not
//!   take a message), a channel or connection closed by the broker, or the
//!   connection lost fails every acknowledgement still to come: the link is
//!   dead, and [`super::run`] connects again and sends after the last
//!   acknowledged line.
//!
//! The URL: user and password default to `guest`, the port to 5672, the
//! virtual host (the path, percent-decoded: `%2F` for `/`) to `/`. Plain TCP
//! (amqprs without TLS).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, ExchangeDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, Cancel, Close, CloseChannel, Nack, Return};
use tokio_util::task::AbortOnDropHandle;

use super::acks::Acks;
use super::{Ack, Link, LinkError, LinkFuture, Outgoing, OutgoingEvent, Target};
use crate::config::PublishFormat;

/// How long each step of connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Heartbeats asked for (seconds): a broker gone without a word is noticed
/// after two missed ones.
const HEARTBEAT: u16 = 15;
/// AMQP short strings (routing keys, exchange names, virtual hosts): at most
/// this many bytes.
const SHORT_STR: usize = 255;

/// A word of a routing key for any text: `%`, `.`, `*` and `#` become `%XX`,
/// so a name is one word that no binding's wildcard can split; the empty name
/// is `%`. Decoded as a NATS token is ([`crate::nats::token_text`]).
pub fn key_word(text: &str) -> String {
    crate::nats::percent_word(text, |c| matches!(c, '%' | '.' | '*' | '#'))
}

/// The routing key of `file`'s lines from `node`: `<node>.<file>` in
/// [`key_word`]s, or, past 255 bytes, its first bytes (at a character
/// boundary), `~` and the 64-bit FNV-1a hash of the whole key in hex, so two
/// long names still get two keys.
pub fn routing_key(node: &str, file: &str) -> String {
    let key = format!("{}.{}", key_word(node), key_word(file));
    if key.len() <= SHORT_STR {
        return key;
    }
    let hash = crate::hash::fnv1a(key.bytes());
    let mut cut = SHORT_STR - 17;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &key[..cut])
}

/// What an `amqp://` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

/// `%XX` sequences to bytes (`None` for a bad one or a result not UTF-8).
fn percent_decode(s: &str) -> Option<String> {
    crate::nats::token_text(s).or_else(|| (s == "%").then(String::new))
}

impl AmqpUrl {
    /// Parses `amqp://[USER[:PASS]@]HOST[:PORT][/VHOST][?...]`.
    pub fn parse(url: &str) -> Result<AmqpUrl, String> {
        let rest = url
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("`{url}` is not an amqp:// URL"))?;
        let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let bad = |what: &str| format!("`{what}` in the amqp:// URL is not valid percent-encoding");
        let (user, password) = match userinfo {
            Some(info) => {
                let (u, p) = info.split_once(':').unwrap_or((info, ""));
                (
                    percent_decode(u).ok_or_else(|| bad(u))?,
                    percent_decode(p).ok_or_else(|| bad("the password"))?,
                )
            }
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` in the amqp:// URL is not a port"))?,
            ),
            _ => (host_port, 5672),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the amqp:// URL names no host".to_string());
        }
        let vhost = percent_decode(path).ok_or_else(|| bad(path))?;
        let vhost = if vhost.is_empty() {
            "/".to_string()
        } else {
            vhost
        };
        if vhost.len() > SHORT_STR {
            return Err(format!("the virtual host `{vhost}` is over 255 bytes"));
        }
        Ok(AmqpUrl {
            host: host.to_string(),
            port,
            user,
            password,
            vhost,
        })
    }
}

/// An AMQP exchange to publish to.
pub struct AmqpTarget {
    url: AmqpUrl,
    exchange: String,
    node: String,
    format: PublishFormat,
}

impl AmqpTarget {
    pub fn new(
        url: &str,
        exchange: String,
        node: String,
        format: PublishFormat,
    ) -> Result<AmqpTarget, String> {
        let url = AmqpUrl::parse(url)?;
        if exchange.len() > SHORT_STR {
            return Err(format!("the exchange name `{exchange}` is over 255 bytes"));
        }
        Ok(AmqpTarget {
            url,
            exchange,
            node,
            format,
        })
    }

    /// Connects, declares the exchange and enables confirms.
    async fn open(&self) -> Result<(Connection, Channel, Arc<Acks>), LinkError> {
        // amqprs connects to `HOST:PORT`: an IPv6 address goes in brackets.
        let host = if self.url.host.contains(':') {
            format!("[{}]", self.url.host)
        } else {
            self.url.host.clone()
        };
        let args =
            OpenConnectionArguments::new(&host, self.url.port, &self.url.user, &self.url.password)
                .virtual_host(&self.url.vhost)
                .heartbeat(HEARTBEAT)
                .connection_name(&format!("logtail-ws {}", self.node))
                .finish();
        let connection = timed("cannot connect", Connection::open(&args)).await?;
        let confirms = Arc::new(Acks::default());
        match self.set_up(&connection, &confirms).await {
            Ok(channel) => Ok((connection, channel, confirms)),
            // The broker's own words when it closed the channel over it (an
            // exchange of another type, say).
            Err(err) => Err(confirms.failure().unwrap_or(err)),
        }
    }

    async fn set_up(
        &self,
        connection: &Connection,
        confirms: &Arc<Acks>,
    ) -> Result<Channel, LinkError> {
        let callbacks = Callbacks(Arc::clone(confirms));
        timed("connection", connection.register_callback(callbacks)).await?;
        let channel = timed("opening a channel", connection.open_channel(None)).await?;
        let callbacks = Callbacks(Arc::clone(confirms));
        timed("channel", channel.register_callback(callbacks)).await?;
        let declare = ExchangeDeclareArguments::new(&self.exchange, "topic")
            .durable(true)
            .finish();
        let what = format!("declaring the durable topic exchange {}", self.exchange);
        timed(&what, channel.exchange_declare(declare)).await?;
        let select = channel.confirm_select(ConfirmSelectArguments::new(false));
        timed("enabling publisher confirms", select).await?;
        match confirms.failure() {
            Some(err) => Err(err),
            None => Ok(channel),
        }
    }
}

/// `step` within [`CONNECT_TIMEOUT`], its error in words.
async fn timed<T>(
    what: &str,
    step: impl Future<Output = Result<T, amqprs::error::Error>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(err)) => Err(LinkError::new(format!("{what}: {err}"))),
        Err(_) => Err(LinkError::new(format!(
            "{what}: no answer within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

impl Target for AmqpTarget {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn describe(&self) -> String {
        let host = if self.url.host.contains(':') {
            format!("[{}]", self.url.host)
        } else {
            self.url.host.clone()
        };
        format!(
            "amqp://{}@{host}:{}/{} exchange {}",
            self.url.user,
            self.url.port,
            self.url.vhost.replace('%', "%25").replace('/', "%2F"),
            self.exchange
        )
    }

    fn connect(&self) -> LinkFuture<'_, Box<dyn Link>> {
        Box::pin(async move {
            let (connection, channel, confirms) = self.open().await?;
            let watch = tokio::spawn(watch(
                connection.clone(),
                channel.clone(),
                Arc::clone(&confirms),
            ));
            Ok(Box::new(AmqpLink {
                _watch: AbortOnDropHandle::new(watch),
                channel,
                connection,
                confirms,
                exchange: self.exchange.clone(),
                node: self.node.clone(),
                format: self.format,
            }) as Box<dyn Link>)
        })
    }
}

/// Fails the link's acknowledgements when its connection or channel closes
/// (the socket failed, heartbeats were missed, the broker closed it).
async fn watch(connection: Connection, channel: Channel, confirms: Arc<Acks>) {
    loop {
        // `listen_network_io_failure` hears only a failure after it is
        // called: `is_open` catches one before.
        if !connection.is_open() || !channel.is_open() {
            break;
        }
        tokio::select! {
            _ = connection.listen_network_io_failure() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    confirms.fail(LinkError::new("connection lost"));
}

/// The connection's and the channel's callbacks: confirms (delivery tags
/// count the channel's publishes from 1, as [`Acks`] numbers them), and the
/// broker closing either.
struct Callbacks(Arc<Acks>);

#[async_trait::async_trait]
impl ConnectionCallback for Callbacks {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        self.0.fail(LinkError::new(format!(
            "the broker closed the connection: {} {}",
            close.reply_code(),
            close.reply_text()
        )));
        Ok(())
    }

    async fn blocked(&mut self, _: &Connection, reason: String) {
        tracing::warn!("the AMQP broker blocks publishing ({reason}): lines wait");
    }

    async fn unblocked(&mut self, _: &Connection) {
        tracing::info!("the AMQP broker takes lines again");
    }

    async fn secret_updated(&mut self, _: &Connection) {}
}

#[async_trait::async_trait]
impl ChannelCallback for Callbacks {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        self.0.fail(LinkError::new(format!(
            "the broker closed the channel: {} {}",
            close.reply_code(),
            close.reply_text()
        )));
        Ok(())
    }

    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _: &Channel, ack: amqprs::Ack) {
        self.0.ack(ack.delivery_tag(), ack.mutiple());
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.0.fail(LinkError::new(format!(
            "the broker refused message {}{}",
            nack.delivery_tag(),
            if nack.multiple() {
                " and those before"
            } else {
                ""
            }
        )));
    }

    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

struct AmqpLink {
    /// [`watch`]: aborted when the link is dropped (first).
    _watch: AbortOnDropHandle<()>,
    channel: Channel,
    /// Held open for the channel (closed when the link is dropped).
    #[allow(dead_code)]
    connection: Connection,
    confirms: Arc<Acks>,
    exchange: String,
    node: String,
    format: PublishFormat,
}

impl AmqpLink {
    /// Publishes one persistent message under `file`'s key; its confirm to come.
    async fn publish(
        &mut self,
        file: &str,
        id: &str,
        payload: Vec<u8>,
        content_type: &str,
        kind: Option<&str>,
    ) -> Result<Ack, LinkError> {
        let mut properties = BasicProperties::default();
        properties
            .with_persistence(true)
            .with_content_type(content_type)
            .with_app_id("logtail-ws");
        if let Some(kind) = kind {
            properties.with_message_type(kind);
        }
        if id.len() <= SHORT_STR {
            properties.with_message_id(id);
        }
        let args = BasicPublishArguments::new(&self.exchange, &routing_key(&self.node, file));
        // The next delivery tag.
        let ack = self.confirms.expect()?;
        self.channel
            .basic_publish(properties.finish(), payload, args)
            .await
            .map_err(|err| LinkError::new(format!("publish: {err}")))?;
        Ok(ack)
    }
}

impl Link for AmqpLink {
    fn send<'a>(&'a mut self, out: Outgoing<'a>) -> LinkFuture<'a, Ack> {
        Box::pin(async move {
            let line = out.line;
            let (payload, content_type) = match self.format {
                PublishFormat::Text => (
                    line.text.as_str().as_bytes().to_vec(),
                    "text/plain; charset=utf-8",
                ),
                PublishFormat::Json => (
                    crate::encode::json_line(line.seq, line.offset, out.file, line.text.as_str())
                        .into_bytes(),
                    "application/json",
                ),
            };
            self.publish(out.file, out.id, payload, content_type, None)
                .await
        })
    }

    /// With `--publish-format json`, the event's JSON frame under the file's
    /// key (message type `event`), as `/ws?format=json` sends it; nothing
    /// with text payloads.
    fn send_event<'a>(&'a mut self, event: OutgoingEvent<'a>) -> LinkFuture<'a, Option<Ack>> {
        Box::pin(async move {
            match self.format {
                PublishFormat::Text => Ok(None),
                PublishFormat::Json => {
                    let payload = event.kind.json(event.file, event.after_seq).into_bytes();
                    self.publish(
                        event.file,
                        event.id,
                        payload,
                        "application/json",
                        Some("event"),
                    )
                    .await
                    .map(Some)
                }
            }
        })
    }

    fn failed(&self) -> Pin<Box<dyn Future<Output = LinkError> + Send + '_>> {
        Box::pin(self.confirms.failed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_words_hold_no_dot_or_wildcard_and_round_trip() {
        for name in ["app.log", "a*b#c", "%41", "", "журнал.log", "x/y z"] {
            let word = key_word(name);
            assert!(!word.contains(['.', '*', '#']), "{word}");
            assert_eq!(percent_decode(&word).as_deref(), Some(name), "{word}");
        }
        assert_eq!(
            routing_key("web-1.example", "app.log"),
            "web-1%2Eexample.app%2Elog"
        );
    }

    #[test]
    fn long_routing_keys_are_cut_with_a_hash() {
        let a = routing_key("n", &"é".repeat(200));
        let b = routing_key("n", &format!("{}x", "é".repeat(200)));
        assert!(
            a.len() <= SHORT_STR && b.len() <= SHORT_STR,
            "{} {}",
            a.len(),
            b.len()
        );
        assert_ne!(a, b);
        assert!(a.starts_with("n.éé"), "{a}");
        assert_eq!(a.rsplit_once('~').map(|(_, h)| h.len()), Some(16));
    }

    #[test]
    fn urls() {
        assert_eq!(
            AmqpUrl::parse("amqp://u%40x:p%3Aw@rabbit:5673/prod%2Flogs?exchange=e"),
            Ok(AmqpUrl {
                host: "rabbit".into(),
                port: 5673,
                user: "u@x".into(),
                password: "p:w".into(),
                vhost: "prod/logs".into(),
            })
        );
        let plain = AmqpUrl::parse("amqp://localhost").unwrap();
        assert_eq!(
            (
                plain.user.as_str(),
                plain.password.as_str(),
                plain.port,
                plain.vhost.as_str()
            ),
            ("guest", "guest", 5672, "/")
        );
        assert_eq!(AmqpUrl::parse("amqp://[::1]:5000/").unwrap().host, "::1");
        assert!(AmqpUrl::parse("amqp://h:x/").is_err());
        assert!(AmqpUrl::parse("amqp://h/%zz").is_err());
    }
}
