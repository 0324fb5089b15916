//! The `logtail-ws` binary: parse the command line, set up logging, check
//! the files the flags name, raise the file descriptor limit, bind, and hand
//! over to [`logtail_ws::run`].
//!
//! Exit codes are decided here only, from [`Error::exit_code`] (the rule is
//! in [`logtail_ws::error`]): 2 for a bad command line (clap's own, a bad
//! flag value or combination, an unreadable or unusable `--token-file`,
//! `--tls-cert` or `--tls-key`), 1 when the server cannot start or fails (a
//! limit that cannot be raised is only a warning). A command-line error is
//! printed as `error: …` on stderr, before anything starts, as clap prints
//! its own; a server failure goes to the log (JSON with `--log-format json`).
//!
//! `logtail-ws completions SHELL` and `logtail-ws man` print generated text instead
//! ([`logtail_ws::packaging`]): exit 0, or 2 for a bad shell.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use logtail_ws::config::{Cli, Config, LogFormat};
use logtail_ws::{Error, packaging};
use tokio_rustls::TlsAcceptor;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(request) = packaging::request(&args) {
        return print_generated(request.unwrap_or_else(|err| err.exit()));
    }
    let cli = packaging::parse_server_cli(args);
    init_logging(cli.log_format);
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err.exit_code() == 2 {
                eprintln!("error: {err}");
            } else {
                tracing::error!("{err}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}

/// Writes what `completions` or `man` asked for to stdout; a closed pipe (`| head`) is
/// not an error.
fn print_generated(request: packaging::Request) -> ExitCode {
    let written = packaging::render(request).and_then(|text| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&text)?;
        stdout.flush()
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: writing to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> Result<(), Error> {
    // Everything the command line names is read first, so a mistake in it
    // is reported before anything is bound or watched.
    let token_from_file = cli.token_file.as_deref().map(read_token_file).transpose()?;
    let config = Config::from_cli(cli, token_from_file)?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(logtail_ws::server::tls_acceptor(cert, key)?),
        None => None,
    };
    // `--http3`: with `--tls-cert`, QUIC uses it; without, a self-signed
    // certificate (for WebTransport's serverCertificateHashes).
    let quic = match (&config.tls, config.http3) {
        (Some((cert, key)), true) => Some((
            logtail_ws::server::quic_config(cert, key, config.ping_interval)?,
            None,
        )),
        (None, true) => {
            let (cert, quic) = logtail_ws::server::cert::SelfSigned::generate(
                config.listen,
                config.ping_interval,
            )?;
            Some((quic, Some(cert)))
        }
        (_, false) => None,
    };
    // Before the runtime's threads: one process-wide limit, raised once.
    match logtail_ws::fdlimit::raise_nofile() {
        Ok(limit) => logtail_ws::fdlimit::log_capacity(&limit, config.max_clients),
        Err(err) => tracing::warn!("cannot read the file descriptor limit: {err}"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(start(config, tls, quic))
}

/// The first line of `--token-file` (validated with the rest of the flags).
fn read_token_file(path: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().next().unwrap_or("").to_string()),
        Err(source) => Err(Error::TokenFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

async fn start(
    config: Config,
    tls: Option<TlsAcceptor>,
    quic: Option<(
        quinn::ServerConfig,
        Option<logtail_ws::server::cert::SelfSigned>,
    )>,
) -> Result<(), Error> {
    let addr = config.listen;
    let listener = listen(addr).map_err(|source| Error::Bind { addr, source })?;
    // HTTP/3 on the same port number as TCP (the one bound, for `--port 0`).
    let endpoint = match quic {
        Some((quic, self_signed)) => {
            let addr = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            let endpoint = quinn::Endpoint::server(quic, addr)
                .map_err(|source| Error::Bind { addr, source })?;
            Some(logtail_ws::server::Quic {
                endpoint,
                self_signed,
            })
        }
        None => None,
    };
    logtail_ws::run(
        config,
        listener,
        tls,
        endpoint,
        logtail_ws::shutdown::signal(),
    )
    .await
}

/// Binds with a deep accept queue: tokio's default of 128 drops SYNs when
/// thousands of viewers reconnect at once (after a proxy reload, say), and
/// each dropped SYN costs that client a 1 s retransmit.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // Restarting the server must not wait for old connections' TIME_WAIT;
    // a port another process listens on is still refused.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
