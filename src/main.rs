//! The `logtail-ws` binary: parse the command line, set up logging, raise
//! the file descriptor limit, bind, and hand over to [`logtail_ws::run`].
//! Exit codes are decided here only: 2 for a bad command line (clap's own),
//! 1 when the server cannot start (a limit that cannot be raised is only a
//! warning).

use std::process::ExitCode;

use clap::Parser;
use logtail_ws::config::{Cli, Config, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let token_from_file = match &cli.token_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text.lines().next().unwrap_or("").to_string()),
            Err(err) => {
                eprintln!("error: --token-file {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let config = match Config::from_cli(cli, token_from_file) {
        Ok(config) => config,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    // Before the runtime's threads: one process-wide limit, raised once.
    match logtail_ws::fdlimit::raise_nofile() {
        Ok(limit) => logtail_ws::fdlimit::log_capacity(&limit, config.max_clients),
        Err(err) => tracing::warn!("cannot read the file descriptor limit: {err}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(start(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            ExitCode::from(1)
        }
    }
}

async fn start(config: Config) -> Result<(), String> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(logtail_ws::server::tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = listen(config.listen)
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    logtail_ws::run(config, listener, tls, logtail_ws::shutdown::signal())
        .await
        .map_err(|err| err.to_string())
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
