//! The integration tests: one binary that starts the real `logtail-ws` (black box).

// Shared harness, one file per thing (its mod.rs lists them): Server, LogFile,
// WsClient/RawWs, the raw HTTP client and SseStream, the exactly-once resume run, tools,
// wait_until. Tests that drive a third-party program are marked #[needs::tools(...)]
// (tests/needs/): ignored, with the reason, where it is missing.
mod harness;

// Command line: --help, bad flags (exit 2), bind failure (exit 1), LOGTAIL_* env vars.
mod cli;
// WebSocket streaming: exact lines, partial lines, CRLF/UTF-8, bursts, backlog, slow clients.
mod ws;
// SIGTERM/SIGINT: Close 1001 to every client, exit 0 within 2 s.
mod shutdown;
// Resume on /ws: since/epoch exactly once (memory and disk replay), gaps, grep,
// --history-bytes, slow-client resume.
mod resume;
// /events: byte-exact SSE framing, Last-Event-ID resume, gaps, keep-alive, grep.
mod sse;
// /healthz and /metrics report what happened; --log-format json.
mod ops;
mod proxy;
// Security: Origin (CSWSH), token, TLS, limits, slowloris, bad requests, loopback default.
mod security;
// File descriptors: the raised limit and capacity logged, a fast 503 (not a hang) when
// they run out, recovery after.
mod limits;
// The viewer page in headless Chromium (CDP): backlog, live, token, rotation, reconnect.
mod browser;
// The viewer's format.js (ANSI, levels, JSON/logfmt): its node unit tests and level corpus.
mod viewer_format;

// The README's quick start, read from README.md and typed literally: websocat, curl -N, echo.
mod quickstart;

// Following by name: rotation, truncation, deletion, symlink swap, permissions, long lines,
// each for inotify and --poll.
mod rotation;

// Many files (issue 11): repeatable --file, NAME=PATH, globs (new, deleted, rotated
// matches), --file -, file= selection and prefixes, resume and backlog on a selection,
// GET /files, added/removed events, names that never become paths.
mod files;

// HTTP/2 (issue 14): TLS by ALPN and cleartext prior knowledge on the same port, SSE
// multiplexed (curl), WebSocket over HTTP/2 (RFC 8441), stuck streams, the security rules
// without Host, the preface deadline.
mod h2;

// HTTP/3 (issue 14, --http3): an h3 client (h3 + h3-quinn) reads /events exactly, the viewer
// and /healthz over h3, /ws refused, the security rules by :authority, Alt-Svc on TCP,
// SIGTERM ends h3 streams within the budget.
mod h3;
// WebTransport at /wt (issue 16): a wtransport client trusting /wt-cert-hash; exact lines,
// since= resume, Origin and token, 1001 at shutdown.
mod webtransport;
// WebTransport in headless Chromium: serverCertificateHashes from /wt-cert-hash, exact
// lines, since= resume, a cross-origin page and a missing token refused.
mod browser_wt;

// WebRTC (issue 16, POST /rtc): a str0m peer reads the JSON frames on the `logs` data
// channel exactly; sessions freed on close, vanish, DELETE, no connect, shutdown; refusals.
mod webrtc;
// The same in headless Chromium: RTCPeerConnection from the server's own page.
mod browser_rtc;

// Past one machine (issue 15): --publish nats:// into a real JetStream, edges (--from)
// serving it; resume on the other edge, a restarted source, a broker outage, replay
// from the stream and an honest gap for what it dropped.
mod edge;

// Brokers (issue 15, --publish mqtt:// and amqp://): a real mosquitto and RabbitMQ, a
// subscriber gets exactly the lines in order (text and JSON, names encoded in the topic or
// key), and every line written during a broker outage after it is back.
mod sinks;

// Packaging (issue 12): `completions bash|zsh|fish` and `man` mention every flag of --help.
mod packaging;
