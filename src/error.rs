//! Why the server could not start or stopped: one [`Error`] type for
//! everything `main` can be handed, and the one rule that turns it into an
//! exit code ([`Error::exit_code`]); `main` is the only caller of it.
//!
//! # Exit codes
//!
//! - **2: the command line is wrong.** A flag's value or a combination of
//!   flags cannot work, or a file a flag names (`--token-file`,
//!   `--tls-cert`, `--tls-key`) cannot be read or used. The user must change
//!   the command, or that file, before anything can start; nothing was
//!   bound or watched yet. clap's own parse errors exit 2 as well, so a
//!   caller sees one code for "fix what you typed".
//! - **1: the command was fine, the server failed.** The address cannot be
//!   bound (in use, not ours), the file cannot be followed (no inotify
//!   instance left), the runtime cannot start, or other I/O went wrong:
//!   the same command may work on another machine or a minute later.
//!
//! `--file` is in neither: a missing or unreadable file is waited for, like
//! `tail -F`, so it is never an error.
//!
//! Messages name the flag or path and then the reason, as ripgrep does
//! (`--tls-cert /x/cert.pem: No such file or directory (os error 2)`); the
//! `error: ` prefix is `main`'s.
//!
//! The variants are written with `thiserror`, already in the dependency tree
//! through tungstenite (no new crate), so each message sits next to its
//! variant.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use rustls::pki_types::pem;

/// What stopped the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value, or a combination of flags, that cannot work
    /// (`--token 'a b'`, `--client-queue 0`).
    #[error("{0}")]
    Config(String),

    /// `--token-file` cannot be read.
    #[error("--token-file {}: {source}", path.display())]
    TokenFile { path: PathBuf, source: io::Error },

    /// `--tls-cert` or `--tls-key` (`flag`) cannot be read or holds nothing usable.
    #[error("{flag} {}: {reason}", path.display())]
    TlsFile {
        flag: &'static str,
        path: PathBuf,
        reason: TlsFileError,
    },

    /// Each file reads, but rustls refuses them together: a key of another
    /// certificate, or a certificate it cannot parse.
    #[error("--tls-cert {} and --tls-key {} do not work together: {source}", cert.display(), key.display())]
    TlsPair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },

    /// TLS could not be set up for a reason that is not in the files.
    #[error("TLS setup failed: {0}")]
    Tls(#[source] rustls::Error),

    /// The listening socket cannot be made or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },

    /// The file (as typed with `--file`) cannot be followed at all: its path
    /// cannot be resolved or no watch can be made.
    #[error("cannot follow {}: {source}", path.display())]
    Watch { path: PathBuf, source: io::Error },

    /// The async runtime cannot start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] io::Error),

    /// The server stopped on its own: what it serves went away (an edge's
    /// stream made anew).
    #[error("{0}")]
    Stopped(String),

    /// Any other I/O failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// Why a `--tls-cert` or `--tls-key` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read (missing, a directory, no permission).
    #[error(transparent)]
    Read(io::Error),
    /// The file reads, but its PEM is broken.
    #[error("not valid PEM: {0}")]
    Pem(#[source] pem::Error),
    /// Valid or not, the file holds no PEM section of the kind wanted.
    #[error("no {0} found in it (PEM expected)")]
    Missing(&'static str),
}

impl TlsFileError {
    /// Sorts a PEM reader's error: I/O, nothing found (`what`: the kind of
    /// section wanted), or bad PEM.
    pub fn from_pem(err: pem::Error, what: &'static str) -> TlsFileError {
        match err {
            pem::Error::Io(err) => TlsFileError::Read(err),
            pem::Error::NoItemsFound => TlsFileError::Missing(what),
            other => TlsFileError::Pem(other),
        }
    }
}

impl Error {
    /// The process exit code for this error: 2 when the command line (a
    /// flag or a file it names) is at fault, 1 when the server failed (see
    /// the module doc).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::TokenFile { .. }
            | Error::TlsFile { .. }
            | Error::TlsPair { .. } => 2,
            Error::Tls(_)
            | Error::Bind { .. }
            | Error::Watch { .. }
            | Error::Runtime(_)
            | Error::Stopped(_)
            | Error::Io { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> io::Error {
        io::Error::from(io::ErrorKind::NotFound)
    }

    /// The rule of the module doc, variant by variant: 2 for the command
    /// line and the files it names, 1 for the server failing.
    #[test]
    fn exit_codes_follow_the_documented_rule() {
        let command_line = [
            Error::Config("--client-queue must be at least 1".into()),
            Error::TokenFile {
                path: "/t".into(),
                source: missing(),
            },
            Error::TlsFile {
                flag: "--tls-cert",
                path: "/c".into(),
                reason: TlsFileError::Read(missing()),
            },
            Error::TlsFile {
                flag: "--tls-key",
                path: "/k".into(),
                reason: TlsFileError::Missing("private key"),
            },
            Error::TlsPair {
                cert: "/c".into(),
                key: "/k".into(),
                source: rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
            },
        ];
        for err in &command_line {
            assert_eq!(err.exit_code(), 2, "{err}");
        }
        let server = [
            Error::Tls(rustls::Error::General("x".into())),
            Error::Bind {
                addr: "127.0.0.1:1".parse().unwrap(),
                source: io::Error::from(io::ErrorKind::AddrInUse),
            },
            Error::Watch {
                path: "app.log".into(),
                source: io::Error::other("no inotify instance left"),
            },
            Error::Runtime(io::Error::other("no threads")),
            Error::Io {
                what: "reading the listener's address",
                source: io::Error::other("x"),
            },
        ];
        for err in &server {
            assert_eq!(err.exit_code(), 1, "{err}");
        }
    }

    /// Flag, then path, then the reason, with nothing in between.
    #[test]
    fn messages_name_the_flag_the_path_and_the_reason() {
        let err = Error::TlsFile {
            flag: "--tls-cert",
            path: "/x/cert.pem".into(),
            reason: TlsFileError::from_pem(pem::Error::Io(missing()), "certificate"),
        };
        assert_eq!(
            err.to_string(),
            format!("--tls-cert /x/cert.pem: {}", missing())
        );
        let err = Error::TokenFile {
            path: "/x/token".into(),
            source: missing(),
        };
        assert_eq!(
            err.to_string(),
            format!("--token-file /x/token: {}", missing())
        );
        let err = Error::TlsFile {
            flag: "--tls-key",
            path: "/x/key.pem".into(),
            reason: TlsFileError::from_pem(pem::Error::NoItemsFound, "private key"),
        };
        assert_eq!(
            err.to_string(),
            "--tls-key /x/key.pem: no private key found in it (PEM expected)"
        );
    }
}
