//! The brokers `--publish` sends to, run for real: [`Mosquitto`] (MQTT) and [`RabbitMq`]
//! (AMQP), each in a temp dir of its own, listening on free loopback ports, never a system
//! service; and their clients, [`MqttSubscriber`] and [`AmqpConsumer`], which collect what
//! the broker delivers and reconnect by themselves when it comes back.
//!
//! A broker can be stopped ([`Mosquitto::stop`], by SIGTERM to its PID, so it saves what
//! it holds) and started again on the same port with the same state: the outage tests.
//! Dropping one stops it (SIGKILL to what it started if SIGTERM was not enough).

use std::fs::OpenOptions;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{poll, poll_async};

/// How long a broker may take to accept connections (RabbitMQ boots in ~10 s on an idle
/// machine; the tests run in parallel on a shared one).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a broker may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A temp dir for a broker's files.
fn broker_dir(what: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("logtail-ws-{what}-"))
        .tempdir()
        .expect("create temp dir")
}

/// `path`'s log file opened for appending, as a child's stdout or stderr.
fn log_to(path: &Path) -> Stdio {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Stdio::from(file)
}

/// The last `n` lines of the file at `path` (for a panic message).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `signal` to `pid` (a negative `pid`: to that process group).
fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a PID (or group) this harness started; no memory is involved.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Stops `child`: SIGTERM, then after [`STOP_GRACE`] SIGKILL (to its whole process
/// group when `group`, which it leads); waits for it.
fn stop_child(child: &mut Child, group: bool) {
    let pid = i32::try_from(child.id()).expect("a PID");
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    send_signal(pid, libc::SIGTERM);
    let exited = poll(STOP_GRACE, || child.try_wait().ok().flatten().ok_or(()));
    if exited.is_err() {
        send_signal(if group { -pid } else { pid }, libc::SIGKILL);
        let _ = child.wait();
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A mosquitto broker: `listener PORT 127.0.0.1`, anonymous clients, persistence in its
/// dir (so a subscriber's session and the messages queued for it outlive a restart).
pub struct Mosquitto {
    program: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts mosquitto on a free port and waits until it accepts connections.
    pub fn start(program: PathBuf) -> Mosquitto {
        let dir = broker_dir("mosquitto");
        let port = free_port();
        let d = dir.path().display();
        // `user root`: started by root, mosquitto would otherwise switch to the
        // `mosquitto` user, who cannot write the temp dir (ignored when not root).
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {d}/\nmax_queued_messages 100000\nuser root\n\
             log_dest stderr\nlog_type all\n"
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("write mosquitto.conf");
        let mut broker = Mosquitto {
            program,
            dir,
            port,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it logged.
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("mosquitto.log"), 40)
    }

    /// Starts it (again, on the same port, with what it saved) and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let log = self.dir.path().join("mosquitto.log");
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log_to(&log))
            .stderr(log_to(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().expect("just started");
        let ready = poll(BOOT_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(status));
            }
            if accepts(port) { Ok(Ok(())) } else { Err(()) }
        });
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(status)) => panic!("mosquitto exited ({status}):\n{}", tail(&log, 40)),
            Err(()) => panic!(
                "mosquitto did not listen on {port} within {BOOT_TIMEOUT:?}:\n{}",
                tail(&log, 40)
            ),
        }
    }

    /// Stops it (SIGTERM: it saves its sessions and queued messages, and exits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, false);
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RabbitMQ node of its own: node name `lt<pid>-<port>@localhost`, its data, logs,
/// config (`listeners.tcp.1 = 127.0.0.1:PORT`, no plugins) and Erlang cookie in a temp
/// dir, its distribution port and its own `epmd` on free ports (started by this harness,
/// so no daemon outlives the test).
pub struct RabbitMq {
    program: PathBuf,
    dir: TempDir,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    epmd: Option<Child>,
    child: Option<Child>,
}

impl RabbitMq {
    /// Starts a node on free ports and waits until it takes AMQP connections.
    pub async fn start(program: PathBuf) -> RabbitMq {
        // /usr/sbin/rabbitmq-server is Debian's wrapper, which switches to the `rabbitmq`
        // user (and its environment) when run by root: run the script it wraps.
        let real = program.canonicalize().unwrap_or(program);
        let program = if real
            .file_name()
            .is_some_and(|n| n == "rabbitmq-script-wrapper")
        {
            real.with_file_name("rabbitmq-server")
        } else {
            real
        };
        let dir = broker_dir("rabbitmq");
        let (port, dist_port, epmd_port) = (free_port(), free_port(), free_port());
        let d = dir.path();
        std::fs::create_dir_all(d.join("mnesia")).expect("mnesia dir");
        std::fs::create_dir_all(d.join("log")).expect("log dir");
        std::fs::write(d.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\n"),
        )
        .expect("write rabbitmq.conf");
        let cookie = d.join(".erlang.cookie");
        std::fs::write(&cookie, format!("LOGTAILTEST{port}")).expect("write the cookie");
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the cookie");
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_to(&d.join("epmd.log")))
            .stderr(log_to(&d.join("epmd.log")))
            .spawn()
            .expect("spawn epmd (Erlang's, installed with RabbitMQ)");
        let mut node = RabbitMq {
            program,
            dir,
            port,
            dist_port,
            epmd_port,
            epmd: Some(epmd),
            child: None,
        };
        poll(BOOT_TIMEOUT, || accepts(epmd_port).then_some(()).ok_or(()))
            .unwrap_or_else(|()| panic!("epmd did not listen on {epmd_port}"));
        node.restart().await;
        node
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2F`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2F", self.port)
    }

    /// What it logged.
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("rabbit.log"), 60)
    }

    /// Opens an AMQP connection as `guest`.
    pub async fn connect(port: u16) -> Result<amqprs::connection::Connection, String> {
        let args =
            amqprs::connection::OpenConnectionArguments::new("127.0.0.1", port, "guest", "guest");
        match tokio::time::timeout(
            Duration::from_secs(5),
            amqprs::connection::Connection::open(&args),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    }

    /// Starts the node (again, on the same ports, with its data: durable exchanges and
    /// queues and their persistent messages) and waits until an AMQP connection succeeds.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "RabbitMQ is already running");
        let d = self.dir.path();
        let log = d.join("rabbit.log");
        let mut cmd = Command::new(&self.program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("RABBITMQ_") || k.starts_with("ERL_") {
                cmd.env_remove(&*k);
            }
        }
        cmd.env("HOME", d)
            .env(
                "RABBITMQ_NODENAME",
                format!("lt{}-{}@localhost", std::process::id(), self.port),
            )
            .env("RABBITMQ_USE_LONGNAME", "false")
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_LOGS", "-")
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d.join("plugins-expand"))
            .env("RABBITMQ_PID_FILE", d.join("rabbit.pid"))
            // Schedulers that sleep when idle instead of spinning: the machine is shared.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "+sbwt none +sbwtdcpu none +sbwtdio none",
            )
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log_to(&log))
            .stderr(log_to(&log))
            // Its own process group: the script and the Erlang VM it runs, killed
            // together if SIGTERM is not enough.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        self.child = Some(child);
        let port = self.port;
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("RabbitMQ exited ({status}):\n{}", self.log());
            }
            match RabbitMq::connect(port).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return;
                }
                Err(err) if Instant::now() >= deadline => panic!(
                    "RabbitMQ took no AMQP connection on {port} within {BOOT_TIMEOUT:?} \
                     ({err}):\n{}",
                    self.log()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Stops the node (SIGTERM to the start script, which stops the VM cleanly).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, true);
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut epmd) = self.epmd.take() {
            stop_child(&mut epmd, false);
        }
    }
}

/// What a client received: (topic or routing key, payload), in order of arrival.
pub type Deliveries = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Waits until `got` holds at least `n` messages and returns them all; panics after
/// `timeout` with what did arrive.
pub async fn wait_deliveries(
    got: &Deliveries,
    n: usize,
    timeout: Duration,
) -> Vec<(String, Vec<u8>)> {
    poll_async(timeout, || {
        let now = got.lock().unwrap().clone();
        std::future::ready(if now.len() >= n { Ok(now) } else { Err(now) })
    })
    .await
    .unwrap_or_else(|now| {
        let texts: Vec<String> = now
            .iter()
            .map(|(t, p)| format!("{t}: {}", String::from_utf8_lossy(p)))
            .collect();
        panic!(
            "{} messages, not {n}, arrived within {timeout:?}: {texts:#?}",
            now.len()
        )
    })
}

/// An MQTT subscriber (rumqttc): a persistent session (clean session off, a fixed
/// client id), so the broker queues what is published while it is away; reconnects and
/// subscribes again by itself.
pub struct MqttSubscriber {
    pub got: Deliveries,
    subacks: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl MqttSubscriber {
    /// Subscribes to `filter` at QoS 1 on 127.0.0.1:`port`; returns once subscribed.
    pub async fn start(port: u16, filter: &str) -> MqttSubscriber {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let id = format!("lt-sub-{}-{port}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(options, 16);
        let got: Deliveries = Arc::default();
        let subacks = Arc::new(Mutex::new(0u64));
        let filter = filter.to_string();
        let task = {
            let (got, subacks) = (Arc::clone(&got), Arc::clone(&subacks));
            tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => *subacks.lock().unwrap() += 1,
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            got.lock().unwrap().push((p.topic, p.payload.to_vec()));
                        }
                        Ok(_) => {}
                        // The broker is away: the next poll connects again.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        let subscriber = MqttSubscriber { got, subacks, task };
        subscriber.wait_subscribed(1).await;
        subscriber
    }

    /// Waits until it has been subscribed `n` times (once per connection).
    pub async fn wait_subscribed(&self, n: u64) {
        poll_async(BOOT_TIMEOUT, || {
            std::future::ready((*self.subacks.lock().unwrap() >= n).then_some(()).ok_or(()))
        })
        .await
        .unwrap_or_else(|()| panic!("the MQTT subscriber was not subscribed {n} times"));
    }
}

impl Drop for MqttSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An AMQP consumer (amqprs): declares the durable topic `exchange` (as the server
/// does), a durable `queue` bound to it with `binding`, and consumes it (auto-ack);
/// reconnects by itself while the broker is away. The queue keeps what is published while
/// the consumer is away.
pub struct AmqpConsumer {
    pub got: Deliveries,
    sessions: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl AmqpConsumer {
    /// Starts consuming; returns once the queue is bound and consumed.
    pub async fn start(port: u16, exchange: &str, queue: &str, binding: &str) -> AmqpConsumer {
        let got: Deliveries = Arc::default();
        let sessions = Arc::new(Mutex::new(0u64));
        let task = {
            let (got, sessions) = (Arc::clone(&got), Arc::clone(&sessions));
            let (exchange, queue, binding) =
                (exchange.to_string(), queue.to_string(), binding.to_string());
            tokio::spawn(async move {
                loop {
                    let _ = consume(port, &exchange, &queue, &binding, &got, &sessions).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let consumer = AmqpConsumer {
            got,
            sessions,
            task,
        };
        consumer.wait_consuming(1).await;
        consumer
    }

    /// Waits until it has started consuming `n` times (once per connection).
    pub async fn wait_consuming(&self, n: u64) {
        poll_async(BOOT_TIMEOUT, || {
            std::future::ready(
                (*self.sessions.lock().unwrap() >= n)
                    .then_some(())
                    .ok_or(()),
            )
        })
        .await
        .unwrap_or_else(|()| panic!("the AMQP consumer did not start consuming {n} times"));
    }
}

/// One connection of an [`AmqpConsumer`], until it is lost.
async fn consume(
    port: u16,
    exchange: &str,
    queue: &str,
    binding: &str,
    got: &Deliveries,
    sessions: &Mutex<u64>,
) -> Result<(), String> {
    use amqprs::channel::{
        BasicConsumeArguments, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
    };
    let e = |e: amqprs::error::Error| e.to_string();
    let connection = RabbitMq::connect(port).await?;
    let channel = connection.open_channel(None).await.map_err(e)?;
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new(exchange, "topic")
                .durable(true)
                .finish(),
        )
        .await
        .map_err(e)?;
    channel
        .queue_declare(QueueDeclareArguments::durable_client_named(queue))
        .await
        .map_err(e)?;
    channel
        .queue_bind(QueueBindArguments::new(queue, exchange, binding))
        .await
        .map_err(e)?;
    let (_, mut rx) = channel
        .basic_consume_rx(
            BasicConsumeArguments::new(queue, "")
                .manual_ack(false)
                .finish(),
        )
        .await
        .map_err(e)?;
    *sessions.lock().unwrap() += 1;
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(m) => {
                    let key = m.deliver.map(|d| d.routing_key().clone()).unwrap_or_default();
                    got.lock().unwrap().push((key, m.content.unwrap_or_default()));
                }
                None => return Err("the consumer was cancelled".to_string()),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if !connection.is_open() || !channel.is_open() {
                    return Err("connection lost".to_string());
                }
            }
        }
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
