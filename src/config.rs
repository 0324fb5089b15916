//! The command line (every flag also from a `LOGTAIL_*` environment variable)
//! and the validated settings the rest of the program works with.
//!
//! Parsing and validation only: no I/O happens here (reading `--token-file`
//! is done by `main`), so every rule is unit tested. A rule broken is an
//! [`Error::Config`] (exit 2).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::Error;

/// Follow a log file like `tail -F` and stream every new line, live, to
/// WebSocket and Server-Sent Events clients.
///
/// Connect with `websocat ws://127.0.0.1:8080/ws`, `curl -N
/// http://127.0.0.1:8080/events`, or open http://127.0.0.1:8080/ in a browser.
#[derive(Debug, Clone, Parser)]
#[command(name = "logtail-ws", version, about, max_term_width = 100)]
pub struct Cli {
    /// File to follow by name, like `tail -F` (it may not exist yet);
    /// repeatable. A glob (`'logs/*.log'`, `**` too) follows every match,
    /// also later ones; `-` is standard input. `NAME=PATH` sets the name
    /// clients see (default: the file name; glob matches: their path below
    /// the glob's fixed directories).
    #[arg(short = 'f', long, env = "LOGTAIL_FILE", value_name = "[NAME=]PATH", required_unless_present = "from", conflicts_with = "from", value_parser = parse_input)]
    pub file: Vec<InputArg>,

    /// Serve the lines of a JetStream stream instead of files (an edge):
    /// `nats://HOST:PORT`, repeatable (seed servers of one cluster). `seq` is
    /// the stream's sequence, the same on every edge, so a client resumes on
    /// any edge. The stream is --nats-stream; sources fill it with --publish.
    #[arg(long, env = "LOGTAIL_FROM", value_delimiter = ',', value_name = "URL", value_parser = parse_nats_url)]
    pub from: Vec<String>,

    /// With --from: the subjects served (`logtail.NODE.FILE`; `*` and `>` wildcards).
    #[arg(
        long,
        env = "LOGTAIL_SUBJECT",
        default_value = "logtail.>",
        value_name = "FILTER",
        requires = "from"
    )]
    pub subject: String,

    /// Show each file's server path in `GET /files` (off: clients see names only).
    #[arg(long, env = "LOGTAIL_SHOW_PATHS")]
    pub show_paths: bool,

    /// Serve every endpoint and the viewer under this prefix (`/logs`:
    /// `/logs/ws`, `/logs/events`, `/logs/`), for a reverse proxy that
    /// forwards the prefix as it is.
    #[arg(long, env = "LOGTAIL_BASE_PATH", value_name = "/PREFIX", value_parser = parse_base_path)]
    pub base_path: Option<String>,

    /// Log the `X-Forwarded-For` a reverse proxy sets with each client
    /// (only behind a proxy you run: a client can send any value).
    #[arg(long, env = "LOGTAIL_TRUST_PROXY")]
    pub trust_proxy: bool,

    /// TCP port; 0 picks a free one (the chosen address is logged).
    #[arg(short = 'p', long, env = "LOGTAIL_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Listen address; 0.0.0.0 or :: to expose deliberately.
    #[arg(
        short = 'b',
        long,
        env = "LOGTAIL_BIND",
        default_value = "127.0.0.1",
        value_name = "ADDR"
    )]
    pub bind: IpAddr,

    /// Lines of history a new client receives before live lines (like `tail -n`).
    #[arg(
        short = 'n',
        long,
        env = "LOGTAIL_LINES",
        default_value_t = 10,
        value_name = "N"
    )]
    pub lines: usize,

    /// In-memory history kept for backlog and resume (bytes; K/M/G suffixes allowed).
    #[arg(long, env = "LOGTAIL_HISTORY_BYTES", default_value = "16MiB", value_parser = parse_size, value_name = "BYTES")]
    pub history_bytes: u64,

    /// A longer line is delivered in pieces of at most this many bytes.
    #[arg(long, env = "LOGTAIL_MAX_LINE_BYTES", default_value = "1MiB", value_parser = parse_size, value_name = "BYTES")]
    pub max_line_bytes: u64,

    /// How far (bytes of lines) a client may fall behind the newest line for
    /// longer than --send-timeout before it is closed as too slow (code 1013);
    /// it may reconnect with `since=`.
    #[arg(long, env = "LOGTAIL_CLIENT_QUEUE", default_value = "16MiB", value_parser = parse_size, value_name = "BYTES")]
    pub client_queue: u64,

    /// Seconds a client's socket may accept nothing (or the client may stay
    /// more than --client-queue behind) before it is closed as too slow.
    #[arg(long, env = "LOGTAIL_SEND_TIMEOUT", default_value_t = 5.0, value_parser = parse_secs, value_name = "SECS")]
    pub send_timeout: f64,

    /// Further connections to /ws and /events get HTTP 503.
    #[arg(
        long,
        env = "LOGTAIL_MAX_CLIENTS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub max_clients: usize,

    /// WebSocket ping period in seconds; a peer silent for two periods is closed.
    #[arg(long, env = "LOGTAIL_PING_INTERVAL", default_value_t = 30.0, value_parser = parse_secs, value_name = "SECS")]
    pub ping_interval: f64,

    /// Extra browser origin allowed to connect (repeatable, exact match; `*` allows all).
    /// The server's own origin is always allowed.
    #[arg(
        long = "allow-origin",
        env = "LOGTAIL_ALLOW_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allow_origins: Vec<String>,

    /// Require this bearer token on /ws, /events and /metrics.
    #[arg(
        long,
        env = "LOGTAIL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// Read the bearer token from this file (first line).
    #[arg(long, env = "LOGTAIL_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// PEM certificate chain: serve https and wss only (needs --tls-key).
    #[arg(
        long,
        env = "LOGTAIL_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "LOGTAIL_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Also serve HTTP/3 (QUIC) on the same port number over UDP, advertised by Alt-Svc,
    /// and WebTransport at /wt. QUIC uses the --tls-cert certificate; without it, a
    /// self-signed ECDSA P-256 one valid under 14 days, renewed every 6 (its SHA-256 at
    /// GET /wt-cert-hash) while TCP stays plain HTTP. WebSocket stays on TCP.
    #[arg(long, env = "LOGTAIL_HTTP3")]
    pub http3: bool,

    /// UDP port of WebRTC (POST /rtc): every session on one socket, announced as
    /// the host candidate. Default: the server's port number (with --http3, which
    /// takes that one, the next); 0 picks a free one.
    #[arg(long, env = "LOGTAIL_RTC_PORT", value_name = "N")]
    pub rtc_port: Option<u16>,

    /// Concurrent WebRTC sessions (connecting or open) at most; further offers get
    /// HTTP 503. They count towards --max-clients too. 0 turns WebRTC off.
    #[arg(
        long,
        env = "LOGTAIL_MAX_RTC_SESSIONS",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub max_rtc_sessions: usize,

    /// Poll the file instead of using inotify (NFS, some container mounts).
    #[arg(long, env = "LOGTAIL_POLL")]
    pub poll: bool,

    /// How often --poll looks at the file, in milliseconds.
    #[arg(long, env = "LOGTAIL_POLL_INTERVAL", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub poll_interval: u64,

    /// Format of the server's own logs on stderr (level from RUST_LOG, default info).
    #[arg(long, env = "LOGTAIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Also publish every line to a broker (repeatable): `nats://HOST:PORT`
    /// (JetStream; several nats:// URLs are seed servers of one cluster),
    /// `mqtt://HOST:PORT/PREFIX`, `amqp://USER:PASS@HOST:PORT/VHOST?exchange=NAME`.
    /// At-least-once; a broker that is away is caught up with when it returns.
    #[arg(long, env = "LOGTAIL_PUBLISH", value_delimiter = ',', value_name = "URL", value_parser = parse_publish)]
    pub publish: Vec<PublishUrl>,

    /// The JetStream stream lines are published to (created if missing).
    #[arg(long, env = "LOGTAIL_NATS_STREAM", default_value = "LOGTAIL", value_name = "NAME", value_parser = parse_stream_name)]
    pub nats_stream: String,

    /// Replicas of the stream when this server creates it (1, 3 or 5 in a cluster).
    #[arg(long, env = "LOGTAIL_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), value_name = "N")]
    pub nats_replicas: u8,

    /// The stream keeps lines this long when this server creates it (e.g. `7d`, `12h`; 0: no limit).
    #[arg(long, env = "LOGTAIL_NATS_MAX_AGE", default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub nats_max_age: Duration,

    /// The stream keeps at most this many bytes when this server creates it (0: no limit).
    #[arg(long, env = "LOGTAIL_NATS_MAX_BYTES", default_value = "1GiB", value_parser = parse_size, value_name = "BYTES")]
    pub nats_max_bytes: u64,

    /// This server's name in the broker's subjects (`logtail.NODE.FILE`) and
    /// topics; default: the host name.
    #[arg(long, env = "LOGTAIL_NODE", value_name = "NAME")]
    pub node: Option<String>,

    /// What a broker message carries: the line (`text`), or the JSON frame
    /// of `/ws?format=json` (`json`: seq, offset, file, line), for MQTT and AMQP.
    #[arg(long, env = "LOGTAIL_PUBLISH_FORMAT", value_enum, default_value_t = PublishFormat::Text)]
    pub publish_format: PublishFormat,
}

/// The host name (`gethostname`), for `--node`'s default; `logtail` if it has none.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "logtail".to_string(),
    }
}

/// What a broker message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishFormat {
    Text,
    Json,
}

/// One `--publish` URL, by broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishUrl {
    /// `nats://HOST:PORT` (the URL as given, for the client).
    Nats(String),
    /// `mqtt://HOST:PORT/PREFIX`.
    Mqtt {
        host: String,
        port: u16,
        prefix: String,
    },
    /// `amqp://USER:PASS@HOST:PORT/VHOST?exchange=NAME` (the URL as given).
    Amqp { url: String, exchange: String },
}

/// Parses a `--publish` URL: its scheme picks the broker.
pub fn parse_publish(arg: &str) -> Result<PublishUrl, String> {
    let (scheme, rest) = arg
        .split_once("://")
        .ok_or_else(|| format!("`{arg}` is not a URL (nats://, mqtt:// or amqp://)"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if host_port.is_empty() {
        return Err(format!("`{arg}` names no host"));
    }
    match scheme {
        "nats" => Ok(PublishUrl::Nats(arg.to_string())),
        "mqtt" => {
            let (host, port) = match host_port.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>()
                        .map_err(|_| format!("`{p}` in `{arg}` is not a port"))?,
                ),
                None => (host_port.to_string(), 1883),
            };
            let path = rest[authority.len()..].trim_start_matches('/');
            let prefix = path.trim_end_matches('/').to_string();
            if prefix.contains(['+', '#']) {
                return Err(format!(
                    "the topic prefix `{prefix}` holds an MQTT wildcard (`+` or `#`)"
                ));
            }
            let prefix = if prefix.is_empty() {
                "logtail".to_string()
            } else {
                prefix
            };
            Ok(PublishUrl::Mqtt { host, port, prefix })
        }
        "amqp" => {
            let exchange = rest
                .split_once('?')
                .and_then(|(_, q)| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "exchange")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_else(|| "logtail".to_string());
            if exchange.is_empty() {
                return Err(format!("`{arg}`: exchange= is empty"));
            }
            Ok(PublishUrl::Amqp {
                url: arg.to_string(),
                exchange,
            })
        }
        other => Err(format!(
            "`{other}://` is not a broker this server publishes to (nats://, mqtt://, amqp://)"
        )),
    }
}

/// A `nats://` URL (as given, for the client).
fn parse_nats_url(arg: &str) -> Result<String, String> {
    match parse_publish(arg)? {
        PublishUrl::Nats(url) => Ok(url),
        _ => Err(format!(
            "`{arg}`: --from reads a JetStream stream: nats://HOST:PORT"
        )),
    }
}

/// A JetStream stream name: no spaces, `.`, `*`, `>`, path separators.
fn parse_stream_name(arg: &str) -> Result<String, String> {
    if arg.is_empty()
        || arg.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
    {
        return Err(format!(
            "`{arg}` is not a JetStream stream name (no spaces, `.`, `*`, `>`, `/` or `\\`)"
        ));
    }
    Ok(arg.to_string())
}

/// `7d`, `12h`, `90s`, `0` (humantime).
fn parse_duration(arg: &str) -> Result<Duration, String> {
    if arg == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(arg).map_err(|err| format!("`{arg}`: {err}"))
}

/// One `--file` as typed: an optional public name and what to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputArg {
    pub name: Option<String>,
    pub what: InputPath,
}

/// What one `--file` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    /// One file, followed by name (as typed; made absolute by the source).
    File(PathBuf),
    /// Every file matching a pattern, now and later.
    Glob(String),
    /// Standard input (`-`).
    Stdin,
}

/// One input, validated: its public name (for a glob, the prefix of its
/// matches' names, possibly empty) and what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    pub what: InputPath,
}

use crate::source::file::glob::is_glob;

/// Parses `[NAME=]PATH`. `NAME=` counts only when the text before the
/// first `=` is not empty and holds no `/`, so `./a=b.log` is a path.
pub fn parse_input(arg: &str) -> Result<InputArg, String> {
    let (name, path) = match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => {
            (Some(name.to_string()), path)
        }
        _ => (None, arg),
    };
    if path.is_empty() {
        return Err(format!("`{arg}` names no file"));
    }
    if let Some(name) = &name {
        check_name(name)?;
    }
    let what = if path == "-" {
        InputPath::Stdin
    } else if is_glob(path) {
        globset::Glob::new(path).map_err(|err| format!("`{path}` is not a valid glob: {err}"))?;
        InputPath::Glob(path.to_string())
    } else {
        InputPath::File(PathBuf::from(path))
    };
    Ok(InputArg { name, what })
}

/// A public name: printable, no glob characters (they select in `file=`).
fn check_name(name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the name `{}` holds a control character",
            name.escape_debug()
        ));
    }
    if is_glob(name) {
        return Err(format!(
            "the name `{name}` holds a glob character (`*`, `?` or `[`)"
        ));
    }
    Ok(())
}

/// The default public name of a file: its last component, as typed.
fn default_name(path: &std::path::Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Names every input and refuses two explicit files (or stdins) under one
/// name, naming both and the way out.
fn name_inputs(args: Vec<InputArg>) -> Result<Vec<Input>, Error> {
    let mut inputs: Vec<Input> = Vec::with_capacity(args.len());
    let mut shown: Vec<String> = Vec::with_capacity(args.len());
    for arg in args {
        let (name, typed) = match &arg.what {
            InputPath::File(path) => (
                arg.name.clone().unwrap_or_else(|| default_name(path)),
                path.display().to_string(),
            ),
            InputPath::Stdin => (
                arg.name.clone().unwrap_or_else(|| "stdin".into()),
                "-".into(),
            ),
            InputPath::Glob(pattern) => (arg.name.clone().unwrap_or_default(), pattern.clone()),
        };
        if let InputPath::File(_) | InputPath::Stdin = arg.what {
            if name.is_empty() {
                return Err(Error::Config(format!("--file {typed}: the name is empty")));
            }
            if let Some(at) = inputs
                .iter()
                .position(|i| i.name == name && !matches!(i.what, InputPath::Glob(_)))
            {
                let suggestion = match &arg.what {
                    InputPath::File(path) => format!("--file other-{name}={}", path.display()),
                    _ => format!("--file other-{name}=-"),
                };
                return Err(Error::Config(format!(
                    "two files are named `{name}`: {} and {typed}; give one another name with NAME=PATH (e.g. {suggestion})",
                    shown[at]
                )));
            }
        }
        shown.push(typed);
        inputs.push(Input {
            name,
            what: arg.what,
        });
    }
    if inputs.iter().filter(|i| i.what == InputPath::Stdin).count() > 1 {
        return Err(Error::Config(
            "--file - (standard input) is given twice".into(),
        ));
    }
    Ok(inputs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings derived from the command line, in the units the code uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to follow, in command-line order, each with its public name.
    pub inputs: Vec<Input>,
    /// `/files` shows server paths.
    pub show_paths: bool,
    /// Client log lines carry `X-Forwarded-For`.
    pub trust_proxy: bool,
    /// Every route lives under it: empty, or `/a/b` (no trailing `/`).
    pub base_path: String,
    pub listen: SocketAddr,
    pub backlog: usize,
    pub history_bytes: u64,
    pub max_line_bytes: usize,
    pub client_queue: u64,
    pub send_timeout: Duration,
    pub max_clients: usize,
    pub ping_interval: Duration,
    pub allow_origins: Vec<String>,
    pub token: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--http3`: also serve HTTP/3 on UDP (with `tls`, or a self-signed certificate).
    pub http3: bool,
    /// `POST /rtc`, unless `--max-rtc-sessions 0` turned it off.
    pub rtc: Option<Rtc>,
    pub poll: Option<Duration>,
    /// How long an HTTP request (or TLS handshake) may take to arrive.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for clients to be told.
    pub shutdown_grace: Duration,
    /// `--publish`: the brokers every line also goes to.
    pub publish: Publish,
    /// `--from`: an edge serving a JetStream stream (then `inputs` is empty).
    pub from: Option<Edge>,
}

/// WebRTC's UDP socket and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtc {
    pub port: RtcPort,
    pub max_sessions: usize,
}

/// Where WebRTC listens on UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcPort {
    /// `--rtc-port N` (0: a free one); a port that cannot be bound is fatal.
    Given(u16),
    /// The default: the TCP port's number plus this (1 with `--http3`, which
    /// holds the same number on UDP). If it cannot be bound WebRTC is off (a
    /// warning; `/rtc` answers 503), as nobody asked for that port.
    Server { plus: u16 },
}

/// An edge's stream: seed URLs, the stream, the subjects served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub urls: Vec<String>,
    pub stream: String,
    pub subject: String,
}

/// The brokers lines are published to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// JetStream: the seed URLs of one cluster (empty: none).
    pub nats: Vec<String>,
    pub nats_stream: String,
    pub nats_replicas: u8,
    pub nats_max_age: Duration,
    pub nats_max_bytes: u64,
    pub mqtt: Vec<(String, u16, String)>,
    pub amqp: Vec<(String, String)>,
    /// The name of this server in subjects and topics.
    pub node: String,
    pub format: PublishFormat,
}

impl Config {
    /// Validates the command line. `token_from_file` is the content of
    /// `--token-file`, read by the caller.
    pub fn from_cli(cli: Cli, token_from_file: Option<String>) -> Result<Config, Error> {
        let token = match (cli.token, token_from_file) {
            (Some(t), _) | (None, Some(t)) => Some(t.trim().to_string()),
            (None, None) => None,
        };
        if token.as_deref() == Some("") {
            return Err(Error::Config("the token is empty".into()));
        }
        if let Some(t) = &token
            && !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::Config(
                "the token must be printable ASCII without spaces".into(),
            ));
        }
        if cli.max_line_bytes == 0 {
            return Err(Error::Config("--max-line-bytes must be at least 1".into()));
        }
        if cli.client_queue == 0 {
            return Err(Error::Config("--client-queue must be at least 1".into()));
        }
        if cli.http3 && cli.rtc_port.is_some_and(|p| p != 0 && p == cli.port) {
            return Err(Error::Config(format!(
                "--rtc-port {} is the UDP port --http3 serves QUIC on: choose another one",
                cli.port
            )));
        }
        let rtc = (cli.max_rtc_sessions > 0).then_some(Rtc {
            port: match cli.rtc_port {
                Some(port) => RtcPort::Given(port),
                None => RtcPort::Server {
                    plus: u16::from(cli.http3),
                },
            },
            max_sessions: cli.max_rtc_sessions,
        });
        let inputs = name_inputs(cli.file)?;
        let node = match cli.node {
            Some(node) => node,
            None => host_name(),
        };
        if node.is_empty() || node.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "--node `{}` must be a non-empty name without control characters",
                node.escape_debug()
            )));
        }
        let mut publish = Publish {
            nats: Vec::new(),
            nats_stream: cli.nats_stream,
            nats_replicas: cli.nats_replicas,
            nats_max_age: cli.nats_max_age,
            nats_max_bytes: cli.nats_max_bytes,
            mqtt: Vec::new(),
            amqp: Vec::new(),
            node,
            format: cli.publish_format,
        };
        if !cli.from.is_empty() && cli.publish.iter().any(|u| matches!(u, PublishUrl::Nats(_))) {
            return Err(Error::Config(
                "--publish nats:// with --from would publish the stream into itself: an edge serves a stream, sources fill it".into(),
            ));
        }
        for url in cli.publish {
            match url {
                PublishUrl::Nats(url) => publish.nats.push(url),
                PublishUrl::Mqtt { host, port, prefix } => publish.mqtt.push((host, port, prefix)),
                PublishUrl::Amqp { url, exchange } => publish.amqp.push((url, exchange)),
            }
        }
        Ok(Config {
            inputs,
            show_paths: cli.show_paths,
            trust_proxy: cli.trust_proxy,
            base_path: cli.base_path.unwrap_or_default(),
            listen: SocketAddr::new(cli.bind, cli.port),
            backlog: cli.lines,
            history_bytes: cli.history_bytes,
            max_line_bytes: usize::try_from(cli.max_line_bytes).unwrap_or(usize::MAX),
            client_queue: cli.client_queue,
            send_timeout: Duration::from_secs_f64(cli.send_timeout),
            max_clients: cli.max_clients,
            ping_interval: Duration::from_secs_f64(cli.ping_interval),
            allow_origins: cli.allow_origins,
            token,
            tls: cli.tls_cert.zip(cli.tls_key),
            http3: cli.http3,
            rtc,
            poll: cli.poll.then(|| Duration::from_millis(cli.poll_interval)),
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_millis(1500),
            from: (!cli.from.is_empty()).then(|| Edge {
                urls: cli.from,
                stream: publish.nats_stream.clone(),
                subject: cli.subject,
            }),
            publish,
        })
    }
}

/// Parses `1024`, `64K`, `64KiB`, `16M`, `16MiB`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 1048576, 512K or 16MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses `--base-path`: `/logs`, `/a/b/` (the trailing `/` is dropped);
/// `/` alone means none. Plain path characters only, so the prefix can be
/// matched and put in front of routes as it is.
pub fn parse_base_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("`{s}` must start with `/` (try /{s})"));
    }
    let trimmed = s.trim_end_matches('/');
    let ok = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
    if let Some(bad) = trimmed.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "`{s}` holds `{bad}`: use letters, digits and `/-._~`"
        ));
    }
    if trimmed.contains("//") || trimmed.split('/').any(|p| p == "." || p == "..") {
        return Err(format!("`{s}` has an empty, `.` or `..` segment"));
    }
    Ok(trimmed.to_string())
}

/// Parses a positive number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` must be between 0 and 86400 seconds"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("abc").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn base_paths() {
        assert_eq!(parse_base_path("/logs").as_deref(), Ok("/logs"));
        assert_eq!(parse_base_path("/a/b/").as_deref(), Ok("/a/b"));
        assert_eq!(parse_base_path("/").as_deref(), Ok(""));
        for bad in ["logs", "/a b", "/a?b", "/a//b", "/a/../b", "/%2e"] {
            assert!(parse_base_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("2.5"), Ok(2.5));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["logtail-ws", "--file", "app.log"]).unwrap();
        let c = Config::from_cli(cli, None).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.backlog, 10);
        assert_eq!(c.history_bytes, 16 << 20);
        assert_eq!(c.max_line_bytes, 1 << 20);
        assert_eq!(c.client_queue, 16 << 20);
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert!(c.poll.is_none() && c.token.is_none() && c.tls.is_none());
    }

    #[test]
    fn token_rules() {
        let cli = Cli::try_parse_from(["logtail-ws", "-f", "a", "--token", "  s3cret \n"]).unwrap();
        assert_eq!(
            Config::from_cli(cli, None).unwrap().token.as_deref(),
            Some("s3cret")
        );
        let cli = Cli::try_parse_from(["logtail-ws", "-f", "a", "--token", "a b"]).unwrap();
        assert!(Config::from_cli(cli, None).is_err());
        let cli = Cli::try_parse_from(["logtail-ws", "-f", "a"]).unwrap();
        assert_eq!(
            Config::from_cli(cli, Some("t\n".into()))
                .unwrap()
                .token
                .as_deref(),
            Some("t")
        );
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(Cli::try_parse_from(["logtail-ws", "-f", "a", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn http3_with_or_without_tls() {
        // Without TLS, QUIC gets a self-signed certificate (server::cert).
        let cli = Cli::try_parse_from(["logtail-ws", "-f", "a", "--http3"]).unwrap();
        let config = Config::from_cli(cli, None).unwrap();
        assert!(config.http3 && config.tls.is_none());
        let tls = ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--http3"];
        let cli = Cli::try_parse_from(["logtail-ws", "-f", "a"].into_iter().chain(tls)).unwrap();
        assert!(Config::from_cli(cli, None).unwrap().http3);
    }

    #[test]
    fn rtc_port_and_http3() {
        let parse = |args: &[&str]| {
            let argv = ["logtail-ws", "-f", "a", "-p", "9000"].iter().chain(args);
            Config::from_cli(Cli::try_parse_from(argv).unwrap(), None)
        };
        let tls = ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--http3"];
        let rtc = |c: Config| c.rtc.map(|r| r.port);
        assert_eq!(rtc(parse(&[]).unwrap()), Some(RtcPort::Server { plus: 0 }));
        assert_eq!(rtc(parse(&tls).unwrap()), Some(RtcPort::Server { plus: 1 }));
        let clash: Vec<&str> = tls.iter().copied().chain(["--rtc-port", "9000"]).collect();
        let err = parse(&clash).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--rtc-port 9000"), "{err}");
        assert_eq!(
            rtc(parse(&["--rtc-port", "9000"]).unwrap()),
            Some(RtcPort::Given(9000))
        );
        assert_eq!(rtc(parse(&["--max-rtc-sessions", "0"]).unwrap()), None);
    }

    fn inputs(args: &[&str]) -> Result<Vec<Input>, String> {
        let mut argv = vec!["logtail-ws"];
        for a in args {
            argv.extend(["--file", a]);
        }
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::from_cli(cli, None)
            .map(|c| c.inputs)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn files_are_named_as_the_contract_says() {
        let got = inputs(&[
            "/var/log/app.log",
            "api=logs/x.log",
            "-",
            "./a=b.log",
            "/l/*/*.log",
            "k8s=/p/**/*.log",
        ])
        .unwrap();
        let want = [
            ("app.log", InputPath::File("/var/log/app.log".into())),
            ("api", InputPath::File("logs/x.log".into())),
            ("stdin", InputPath::Stdin),
            ("a=b.log", InputPath::File("./a=b.log".into())),
            ("", InputPath::Glob("/l/*/*.log".into())),
            ("k8s", InputPath::Glob("/p/**/*.log".into())),
        ];
        let got: Vec<(&str, InputPath)> = got
            .iter()
            .map(|i| (i.name.as_str(), i.what.clone()))
            .collect();
        let want: Vec<(&str, InputPath)> = want.into_iter().collect();
        assert_eq!(got, want);
    }

    #[test]
    fn two_files_with_one_name_are_refused_with_the_way_out() {
        let err = inputs(&["/a/x.log", "/b/x.log"]).unwrap_err();
        assert!(
            err.contains("/a/x.log") && err.contains("/b/x.log") && err.contains("NAME=PATH"),
            "{err}"
        );
        assert!(inputs(&["one=/a/x.log", "/b/x.log"]).is_ok());
        assert!(inputs(&["-", "-"]).is_err());
        assert!(inputs(&["a*b=/x"]).is_err(), "a glob character in a name");
        assert!(inputs(&["/x/[z.log"]).is_err(), "a broken glob");
        assert!(inputs(&["x="]).is_err());
    }
}
