//! `--publish nats://HOST:PORT`: every line into one JetStream stream.
//!
//! - **Stream**: `--nats-stream` (default `LOGTAIL`), subjects `logtail.>`,
//!   created if missing (file storage, `--nats-replicas`, `--nats-max-age`,
//!   `--nats-max-bytes`, direct get allowed); an existing one is used as it is.
//! - **Subject**: `logtail.<node>.<file>` ([`crate::nats::subject`]: a file name
//!   may hold `.`, `*`, `>` or spaces, which subjects cannot).
//! - **Message**: the line's bytes; headers `Nats-Msg-Id` (`NODE:ORIGIN:OFFSET`,
//!   so JetStream drops a copy sent again within its duplicate window),
//!   `Lt-Origin` (the file instance, hex), `Lt-Offset`, `Lt-Seq` and `Lt-Epoch`
//!   (this server's numbering).
//! - **Events**: a file event (rotated, truncated, …, and lines that could
//!   not be published) is an empty message on the file's subject with the
//!   header `Lt-Event` ([`Link::send_event`]); the edge tells it to its clients.
//! - **Acknowledged**: each publish waits for its PubAck (async-nats' 5 s ack
//!   timeout), pipelined up to the sink's window.
//! - **Offset store**: [`Link::last_published`] reads the last message of a
//!   file's subject, so a restarted server publishes after it.
//!
//! One client per target, reused across links: async-nats reconnects it by
//! itself; a link that fails (an ack that timed out, no stream) is replaced
//! by a new one on the same client.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, ServerAddr};

use crate::nats::{EVENT_HEADER, SUBJECTS, subject};
use bytes::Bytes;
use tokio::sync::Mutex;

use super::{Ack, Link, LinkError, LinkFuture, Outgoing, OutgoingEvent, Published, Target};
use crate::hub::NoticeKind;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the stream is made when this server creates it.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub name: String,
    pub replicas: u8,
    /// Zero: no limit.
    pub max_age: Duration,
    /// Zero: no limit.
    pub max_bytes: u64,
}

impl StreamSettings {
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![SUBJECTS.to_string()],
            storage: stream::StorageType::File,
            num_replicas: usize::from(self.replicas),
            max_age: self.max_age,
            max_bytes: if self.max_bytes == 0 {
                -1
            } else {
                i64::try_from(self.max_bytes).unwrap_or(i64::MAX)
            },
            allow_direct: true,
            ..stream::Config::default()
        }
    }
}

/// A JetStream stream to publish to.
pub struct NatsTarget {
    urls: Vec<ServerAddr>,
    shown: String,
    stream: StreamSettings,
    node: String,
    client: Mutex<Option<async_nats::Client>>,
}

impl NatsTarget {
    /// `urls`: seed servers of one cluster.
    pub fn new(
        urls: &[String],
        stream: StreamSettings,
        node: String,
    ) -> Result<NatsTarget, String> {
        let (parsed, servers) = crate::nats::servers(urls)?;
        let shown = format!("{servers} stream {}", stream.name);
        Ok(NatsTarget {
            urls: parsed,
            shown,
            stream,
            node,
            client: Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<async_nats::Client, LinkError> {
        let mut held = self.client.lock().await;
        if let Some(client) = held.as_ref() {
            return Ok(client.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .name(format!("logtail-ws {}", self.node))
            .connect(self.urls.clone())
            .await
            .map_err(|err| LinkError::new(format!("cannot connect: {err}")))?;
        *held = Some(client.clone());
        Ok(client)
    }
}

impl Target for NatsTarget {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn connect(&self) -> LinkFuture<'_, Box<dyn Link>> {
        Box::pin(async move {
            let client = self.client().await?;
            let js = jetstream::new(client);
            let stream = js
                .get_or_create_stream(self.stream.config())
                .await
                .map_err(|err| LinkError::new(format!("stream {}: {err}", self.stream.name)))?;
            Ok(Box::new(NatsLink {
                js,
                stream,
                node: self.node.clone(),
            }) as Box<dyn Link>)
        })
    }
}

struct NatsLink {
    js: jetstream::Context,
    stream: stream::Stream,
    node: String,
}

impl NatsLink {
    /// Publishes one message on `file`'s subject; its PubAck to come.
    async fn publish(
        &self,
        file: &str,
        id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Ack, LinkError> {
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(id);
        let ack = self
            .js
            .send_publish(subject(&self.node, file), message)
            .await
            .map_err(|err| LinkError::new(format!("publish: {err}")))?;
        Ok(Box::pin(async move {
            ack.await
                .map(|_| ())
                .map_err(|err| LinkError::new(format!("no acknowledgement: {err}")))
        }) as Ack)
    }
}

impl Link for NatsLink {
    fn send<'a>(&'a mut self, out: Outgoing<'a>) -> LinkFuture<'a, Ack> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert("Lt-Origin", format!("{:016x}", out.line.origin).as_str());
            headers.insert("Lt-Offset", out.line.offset.to_string().as_str());
            headers.insert("Lt-Seq", out.line.seq.to_string().as_str());
            headers.insert("Lt-Epoch", out.epoch);
            let payload = Bytes::copy_from_slice(out.line.text.as_str().as_bytes());
            self.publish(out.file, out.id, headers, payload).await
        })
    }

    /// A marker message on the file's subject: empty, with headers
    /// `Lt-Event` (`rotated`, …, or `gap` with `Lt-Lines` or `Lt-Bytes`),
    /// `Lt-After` (the `seq` before it) and `Lt-Epoch`. An edge turns it into
    /// the event, at its place in the stream.
    fn send_event<'a>(&'a mut self, event: OutgoingEvent<'a>) -> LinkFuture<'a, Option<Ack>> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert(EVENT_HEADER, event.kind.as_str());
            headers.insert("Lt-After", event.after_seq.to_string().as_str());
            headers.insert("Lt-Epoch", event.epoch);
            // Where the file's published lines end, as a line's headers say
            // it: this message may be the subject's last one, which a
            // restarted server reads back (`last_published`).
            if let Some(at) = event.position {
                headers.insert("Lt-Origin", format!("{:016x}", at.origin).as_str());
                headers.insert("Lt-Offset", at.offset.to_string().as_str());
                headers.insert("Lt-Len", at.len.to_string().as_str());
            }
            if let NoticeKind::Unpublished { lines, bytes } = event.kind {
                if let Some(lines) = lines {
                    headers.insert("Lt-Lines", lines.to_string().as_str());
                }
                if let Some(bytes) = bytes {
                    headers.insert("Lt-Bytes", bytes.to_string().as_str());
                }
            }
            self.publish(event.file, event.id, headers, Bytes::new())
                .await
                .map(Some)
        })
    }

    fn last_published<'a>(&'a mut self, file: &'a str) -> LinkFuture<'a, Option<Published>> {
        Box::pin(async move {
            let subject = subject(&self.node, file);
            match self.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => {
                    let header =
                        |name: &str| message.headers.get(name).map(|v| v.as_str().to_string());
                    let origin = header("Lt-Origin").and_then(|v| u64::from_str_radix(&v, 16).ok());
                    let offset = header("Lt-Offset").and_then(|v| v.parse::<u64>().ok());
                    // A line's length is its payload's; an event says it.
                    let len = header("Lt-Len")
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(message.payload.len() as u64);
                    Ok(origin.zip(offset).map(|(origin, offset)| Published {
                        origin,
                        offset,
                        len,
                    }))
                }
                Err(err) if err.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    Ok(None)
                }
                Err(err) => Err(LinkError::new(format!(
                    "reading the last message of {subject}: {err}"
                ))),
            }
        })
    }
}
