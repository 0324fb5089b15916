//! `--publish mqtt://` and `--publish amqp://` (issue 15) against real brokers (mosquitto,
//! RabbitMQ; tests/harness/brokers.rs): a subscriber gets exactly the lines appended to
//! the followed file, in order, under the topic or routing key the names encode to, as
//! text and as JSON frames; and across a broker outage (stopped, lines appended, started
//! again on the same port) every line written meanwhile arrives, in order of first
//! appearance (at least once: duplicates are allowed and counted), while `/healthz` shows
//! the publisher disconnected and then its acknowledged seq catching up. An AMQP exchange
//! of another type is refused, and `/healthz` says why in the broker's words.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::brokers::{
    AmqpConsumer, Deliveries, Mosquitto, MqttSubscriber, RabbitMq, wait_deliveries,
};
use crate::harness::{LogFile, PROMPT, Server};

/// A node name with a topic separator, wildcards and a key separator in it, so the
/// encoding of names is seen end to end.
const NODE: &str = "edge.1/a+b#*";
/// Its MQTT topic level and its AMQP routing-key word (src/sink/mqtt.rs, amqp.rs).
const NODE_LEVEL: &str = "edge.1%2Fa%2Bb%23*";
const NODE_WORD: &str = "edge%2E1/a+b%23%2A";

/// How long a reconnected publisher may take to catch up (its backoff is at most 5 s).
const CATCH_UP: Duration = Duration::from_secs(60);

/// Lines worth publishing: numbered, with quotes, backslashes, UTF-8 and separators.
fn lines(from: usize, to: usize) -> Vec<String> {
    (from..=to)
        .map(|i| match i % 4 {
            0 => format!("line {i}"),
            1 => format!("{{\"json\": \"in a line\", \"n\": {i}}} \\ end"),
            2 => format!("ünïcödé {i} — 日志 / + # * ."),
            _ => format!("line {i} \t tab"),
        })
        .collect()
}

/// The first (and only) publisher of `/healthz`.
fn publisher(health: &Value) -> &Value {
    &health["publishers"][0]
}

/// Waits until the server's publisher has acknowledged every line up to `seq`.
async fn wait_acked(server: &Server, seq: u64, timeout: Duration) -> Value {
    server
        .wait_health(timeout, |h| {
            publisher(h)["acked_seq"] == seq && publisher(h)["connected"] == true
        })
        .await
        .unwrap_or_else(|h| panic!("the publisher did not acknowledge seq {seq}: {h}"))
}

/// Waits until the server's publisher is connected (its first link is up).
async fn wait_connected(server: &Server) {
    server
        .wait_health(CATCH_UP, |h| publisher(h)["connected"] == true)
        .await
        .unwrap_or_else(|h| panic!("the publisher did not connect: {h}\n{}", server.stderr()));
}

/// The payloads delivered under `topic`, as text, in order.
fn under(got: &[(String, Vec<u8>)], topic: &str) -> Vec<String> {
    got.iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, p)| String::from_utf8(p.clone()).expect("UTF-8 payload"))
        .collect()
}

/// Checks JSON frames: `seq` 1, 2, 3…, `file`, `line` as written, `offset` the byte
/// where each line starts in the file.
/// After line 300, the `rotated` event is a frame of its own, as `/ws?format=json` sends
/// it, and line 301 is the new file's first. (A server that looks between logrotate's
/// rename and its create sees the path missing: `waiting` and `following` may come with
/// it, as they would to a WebSocket client.)
fn assert_json_frames(frames: &[String], written: &[String]) {
    let mut offset = 0u64;
    let (mut lines, mut events) = (0usize, Vec::new());
    for frame in frames {
        let v: Value = serde_json::from_str(frame).unwrap_or_else(|e| panic!("{frame}: {e}"));
        if v.get("event").is_some() {
            assert_eq!(
                lines, 300,
                "an event only between lines 300 and 301: {frame}"
            );
            assert_eq!(
                (&v["file"], &v["seq"]),
                (&Value::from("app.log"), &Value::from(300)),
                "{frame}"
            );
            events.push(v["event"].as_str().unwrap_or_default().to_string());
            continue;
        }
        let line = written
            .get(lines)
            .unwrap_or_else(|| panic!("more lines than written: {frame}"));
        if lines == 300 {
            offset = 0;
        }
        assert_eq!(v["seq"], lines as u64 + 1, "{frame}");
        assert_eq!(v["offset"], offset, "{frame}");
        assert_eq!(v["file"], "app.log", "{frame}");
        assert_eq!(v["line"], line.as_str(), "{frame}");
        offset += line.len() as u64 + 1;
        lines += 1;
    }
    assert_eq!(lines, written.len(), "{frames:#?}");
    assert!(
        events
            .iter()
            .all(|e| ["waiting", "rotated", "following"].contains(&e.as_str()))
            && events.iter().filter(|e| *e == "rotated").count() == 1,
        "one rotation between lines 300 and 301: {events:?}"
    );
}

/// Waits until `topic` holds `n` line messages (JSON frames or text), then returns
/// everything delivered.
async fn wait_lines_under(
    got: &crate::harness::brokers::Deliveries,
    topic: &str,
    n: usize,
) -> Vec<(String, Vec<u8>)> {
    crate::harness::poll_async(PROMPT, || {
        let now = got.lock().unwrap().clone();
        let lines = under(&now, topic)
            .iter()
            .filter(|p| !p.starts_with(r#"{"event""#))
            .count();
        std::future::ready(if lines >= n { Ok(now) } else { Err(lines) })
    })
    .await
    .unwrap_or_else(|lines| {
        panic!("{lines} lines, not {n}, arrived under {topic} within {PROMPT:?}")
    })
}

/// Appends `written` to `log` in a few writes (so in several batches).
fn append_in_batches(log: &LogFile, written: &[String]) {
    for chunk in written.chunks(37) {
        log.append_lines(chunk);
    }
}

/// One server following `log` and publishing to `url` (with `extra` flags).
async fn publishing_server(log: &LogFile, url: &str, extra: &[&str]) -> Server {
    Server::builder()
        .file(log.path())
        .args(&["--publish", url, "--node", NODE])
        .args(extra)
        .start()
        .await
}

/// `got` holds every line of `expected` (by text), in order of first appearance, and
/// nothing else; returns the copies (each delivery of a line after its first).
fn assert_at_least_once(got: &[String], expected: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut copies = Vec::new();
    let mut firsts: Vec<&String> = Vec::new();
    for text in got {
        if seen.insert(text.as_str()) {
            firsts.push(text);
        } else {
            copies.push(text.clone());
        }
    }
    let want: Vec<&String> = expected.iter().collect();
    assert_eq!(firsts, want, "lines missing, extra or out of order");
    copies
}

/// Waits until `got` holds every distinct line of `expected` under `topic`.
async fn wait_all_under(got: &Deliveries, topic: &str, expected: &[String]) -> Vec<String> {
    let want: HashSet<&str> = expected.iter().map(String::as_str).collect();
    crate::harness::poll_async(CATCH_UP, || {
        let now = under(&got.lock().unwrap(), topic);
        let have: HashSet<&str> = now.iter().map(String::as_str).collect();
        let done = want.iter().all(|w| have.contains(w));
        std::future::ready(if done {
            Ok(now.clone())
        } else {
            Err(now.clone())
        })
    })
    .await
    .unwrap_or_else(|now| {
        panic!(
            "{} of {} lines arrived under {topic} within {CATCH_UP:?}: {now:#?}",
            now.len(),
            expected.len()
        )
    })
}

/// Two servers, one publishing as text to `text_url`, one as JSON frames to
/// `json_url`, each following a file of its own.
struct TextAndJson {
    /// The 300 lines appended to each file, and the one after its rotation.
    written: Vec<String>,
    /// The text server's `/healthz` once the broker acknowledged them all.
    health: Value,
    /// Kept for the rest of the test (the servers dropped before their files).
    _servers: [Server; 2],
    _logs: [LogFile; 2],
}

/// Starts [`TextAndJson`]'s servers, waits until both are connected, appends
/// the same 300 lines to both files and waits until the broker acknowledged
/// every one of them on both.
async fn publish_text_and_json(text_url: &str, json_url: &str) -> TextAndJson {
    let (text_log, json_log) = (LogFile::new(), LogFile::new());
    let text = publishing_server(&text_log, text_url, &[]).await;
    let json = publishing_server(&json_log, json_url, &["--publish-format", "json"]).await;
    wait_connected(&text).await;
    wait_connected(&json).await;

    let mut written = lines(1, 300);
    append_in_batches(&text_log, &written);
    append_in_batches(&json_log, &written);
    wait_acked(&text, 300, PROMPT).await;
    wait_acked(&json, 300, PROMPT).await;
    // Rotated as logrotate's `create` does: a file event, then the new file's first line.
    written.push("after the rotation".to_string());
    for log in [&text_log, &json_log] {
        log.rename_create("app.log.1");
        log.append_lines(&written[300..]);
    }
    let health = wait_acked(&text, 301, PROMPT).await;
    wait_acked(&json, 301, PROMPT).await;
    TextAndJson {
        written,
        health,
        _servers: [text, json],
        _logs: [text_log, json_log],
    }
}

/// `health`'s publisher is a `broker` one that published the 301 lines, lost
/// none and never failed.
fn assert_published_301(health: &Value, broker: &str) {
    let p = publisher(health);
    assert_eq!(p["broker"], broker, "{health}");
    assert_eq!(p["published"], 301, "{health}");
    assert_eq!(p["lost"], 0, "{health}");
    assert_eq!(p["failures"], 0, "{health}");
}

/// A broker a test stops and starts again on the same port.
trait Restartable {
    fn stop(&mut self);
    async fn restart(&mut self);
}

impl Restartable for Mosquitto {
    fn stop(&mut self) {
        Mosquitto::stop(self);
    }

    async fn restart(&mut self) {
        Mosquitto::restart(self);
    }
}

impl Restartable for RabbitMq {
    fn stop(&mut self) {
        RabbitMq::stop(self);
    }

    async fn restart(&mut self) {
        RabbitMq::restart(self).await;
    }
}

/// `server` follows `log` and publishes to `broker`, whose deliveries under
/// `topic` land in `got`. Once the first 20 lines are acknowledged and
/// delivered, the broker is stopped: `/healthz` shows the publisher
/// disconnected, 200 more lines are appended and read, and the publisher's
/// acknowledged seq stays at 20, with a failure and its error shown. Started
/// again, the broker gets every line (`/healthz`: all acknowledged, none lost)
/// and delivers each under `topic`, in order of first appearance; the copies
/// are logged as `{what} outage: …`.
async fn outage_loses_no_line(
    what: &str,
    broker: &mut impl Restartable,
    got: &Deliveries,
    server: &Server,
    log: &LogFile,
    topic: &str,
) {
    wait_connected(server).await;

    let before = lines(1, 20);
    log.append_lines(&before);
    wait_acked(server, 20, PROMPT).await;
    wait_deliveries(got, 20, PROMPT).await;

    broker.stop();
    server
        .wait_health(PROMPT, |h| publisher(h)["connected"] == false)
        .await
        .unwrap_or_else(|h| panic!("/healthz still shows the publisher connected: {h}"));
    let during = lines(21, 220);
    append_in_batches(log, &during);
    let health = server.wait_seq(220, PROMPT).await;
    let p = publisher(&health);
    assert_eq!(p["connected"], false, "{health}");
    assert_eq!(p["acked_seq"], 20, "{health}");
    assert!(p["failures"].as_u64() >= Some(1), "{health}");
    assert!(p["last_error"].is_string(), "{health}");

    broker.restart().await;
    let health = wait_acked(server, 220, CATCH_UP).await;
    assert_eq!(publisher(&health)["lost"], 0, "{health}");
    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    let got = wait_all_under(got, topic, &all).await;
    let copies = assert_at_least_once(&got, &all);
    eprintln!(
        "{what} outage: {} lines, {} copies: {copies:?}",
        all.len(),
        copies.len()
    );
}

#[needs::tools(mosquitto)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscriber_gets_every_line_in_order_as_text_and_json() {
    let broker = Mosquitto::start(needs::program!(mosquitto));
    let port = broker.port();
    let sub = MqttSubscriber::start(port, "logs/#").await;
    let run = publish_text_and_json(
        &format!("mqtt://127.0.0.1:{port}/logs/text"),
        &format!("mqtt://127.0.0.1:{port}/logs/json"),
    )
    .await;
    let (written, health) = (&run.written, &run.health);
    let text_topic = format!("logs/text/{NODE_LEVEL}/app.log");
    let json_topic = format!("logs/json/{NODE_LEVEL}/app.log");
    wait_lines_under(&sub.got, &text_topic, 301).await;
    let got = wait_lines_under(&sub.got, &json_topic, 301).await;
    assert_eq!(
        &under(&got, &text_topic),
        written,
        "text payloads under {text_topic}"
    );
    assert_json_frames(&under(&got, &json_topic), written);
    assert_eq!(
        got.len(),
        under(&got, &text_topic).len() + under(&got, &json_topic).len(),
        "nothing else was delivered"
    );

    assert_published_301(health, "mqtt");
    assert_eq!(
        publisher(health)["target"],
        format!("mqtt://127.0.0.1:{port}/logs/text"),
        "{health}"
    );
}

#[needs::tools(mosquitto)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_outage_loses_no_line() {
    let mut broker = Mosquitto::start(needs::program!(mosquitto));
    let port = broker.port();
    let sub = MqttSubscriber::start(port, "logs/#").await;
    let log = LogFile::new();
    let server = publishing_server(&log, &format!("mqtt://127.0.0.1:{port}/logs"), &[]).await;
    let topic = format!("logs/{NODE_LEVEL}/app.log");
    outage_loses_no_line("mqtt", &mut broker, &sub.got, &server, &log, &topic).await;
}

/// The exchange, queue and binding a test consumes from.
fn amqp_url(node: &RabbitMq, exchange: &str) -> String {
    format!("{}?exchange={exchange}", node.url())
}

#[needs::tools(rabbitmq)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_consumer_gets_every_line_in_order_as_text_and_json() {
    let node = RabbitMq::start(needs::program!(rabbitmq)).await;
    let port = node.port();
    let text_q = AmqpConsumer::start(port, "lt-text", "text-lines", "#").await;
    let json_q = AmqpConsumer::start(port, "lt-json", "json-lines", "#").await;
    let run = publish_text_and_json(&amqp_url(&node, "lt-text"), &amqp_url(&node, "lt-json")).await;
    let (written, health) = (&run.written, &run.health);
    let key = format!("{NODE_WORD}.app%2Elog");
    let got = wait_deliveries(&text_q.got, 301, PROMPT).await;
    assert_eq!(&under(&got, &key), written, "text payloads with key {key}");
    assert_eq!(got.len(), 301, "nothing else was delivered: {got:?}");
    let got = wait_lines_under(&json_q.got, &key, 301).await;
    assert_json_frames(&under(&got, &key), written);
    assert_eq!(
        got.len(),
        under(&got, &key).len(),
        "nothing else was delivered"
    );

    assert_published_301(health, "amqp");
    assert_eq!(
        publisher(health)["target"],
        format!("amqp://guest@127.0.0.1:{port}/%2F exchange lt-text"),
        "no password shown: {health}"
    );
}

#[needs::tools(rabbitmq)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_outage_loses_no_line() {
    let mut node = RabbitMq::start(needs::program!(rabbitmq)).await;
    let port = node.port();
    let consumer = AmqpConsumer::start(port, "lt-outage", "outage-lines", "#").await;
    let log = LogFile::new();
    let server = publishing_server(&log, &amqp_url(&node, "lt-outage"), &[]).await;
    let key = format!("{NODE_WORD}.app%2Elog");
    outage_loses_no_line("amqp", &mut node, &consumer.got, &server, &log, &key).await;
}

#[needs::tools(rabbitmq)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_exchange_of_another_type_is_reported() {
    use amqprs::channel::ExchangeDeclareArguments;
    let node = RabbitMq::start(needs::program!(rabbitmq)).await;
    let connection = RabbitMq::connect(node.port()).await.expect("connect");
    let channel = connection.open_channel(None).await.expect("a channel");
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new("lt-direct", "direct")
                .durable(true)
                .finish(),
        )
        .await
        .expect("declare a direct exchange");
    let log = LogFile::new();
    let server = publishing_server(&log, &amqp_url(&node, "lt-direct"), &[]).await;
    let health = server
        .wait_health(PROMPT, |h| {
            publisher(h)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("PRECONDITION_FAILED"))
        })
        .await
        .unwrap_or_else(|h| panic!("/healthz does not tell why: {h}"));
    let p = publisher(&health);
    assert_eq!(p["connected"], false, "{health}");
    assert!(p["failures"].as_u64() >= Some(1), "{health}");
    eprintln!("amqp exchange of another type: {}", p["last_error"]);
}
