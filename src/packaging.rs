//! What a server binary is expected to print about itself, generated from the clap
//! definition in [`crate::config`] so it cannot drift from the flags: shell completions
//! (`logtail-ws completions bash|zsh|fish`) and a roff man page (`logtail-ws man`).
//!
//! The server's command line is flat (no subcommands, `--file` required), and making
//! it a subcommand tree would change its usage and error messages. So the two words are
//! recognised as the first argument only, before the server's parser runs
//! ([`request`]); every other command line goes to [`parse_server_cli`], which is
//! `Cli::parse()` plus a `--help` footer naming them. Before this, either word as the
//! first argument was an "unexpected argument" error, so no working invocation changes.

use std::ffi::OsString;

use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches, ValueEnum};

use crate::config::Cli;

const BIN: &str = "logtail-ws";

/// Appended to `--help` (and the man page), so users find the two commands.
const AFTER_HELP: &str = "Also: `logtail-ws completions bash|zsh|fish` prints a shell completion \
script, `logtail-ws man` prints this help as a man page (roff).";

/// The shells `completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// What the first argument asked for instead of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Completions(Shell),
    Man,
}

/// The server's command: [`Cli`] with the `--help` footer.
pub fn server_command() -> Command {
    Cli::command().after_help(AFTER_HELP)
}

/// Parses the server's command line as `Cli::parse()` does (clap's errors exit 2, `--help`
/// and `--version` exit 0), with [`server_command`]'s help.
pub fn parse_server_cli(args: Vec<OsString>) -> Cli {
    let matches = server_command().get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

fn completions_command() -> Command {
    Command::new("completions")
        .about("Print a shell completion script for logtail-ws to stdout")
        .arg(
            Arg::new("shell")
                .value_name("bash|zsh|fish")
                .help("The shell to complete for")
                .required(true)
                .value_parser(clap::value_parser!(Shell)),
        )
}

fn man_command() -> Command {
    Command::new("man").about("Print the logtail-ws man page (roff) to stdout")
}

/// What the completions describe: the server's flags and the two commands (so
/// `logtail-ws <TAB>` offers them too).
fn documented_command() -> Command {
    server_command()
        .subcommand(completions_command())
        .subcommand(man_command())
        // There is no `logtail-ws help`: do not offer one.
        .disable_help_subcommand(true)
}

/// `Some` if the first argument is `completions` or `man`: the rest parsed by clap (an
/// unknown or missing shell is a clap error naming the accepted ones: exit 2 through
/// [`clap::Error::exit`]). `None` for anything else, a server command line.
pub fn request(args: &[OsString]) -> Option<Result<Request, clap::Error>> {
    let first = args.get(1)?.to_str()?;
    let command = match first {
        "completions" => completions_command(),
        "man" => man_command(),
        _ => return None,
    };
    let parsed = command
        .bin_name(format!("{BIN} {first}"))
        .try_get_matches_from(&args[1..])
        .and_then(|matches| from_matches(first, &matches));
    Some(parsed)
}

fn from_matches(first: &str, matches: &ArgMatches) -> Result<Request, clap::Error> {
    if first == "man" {
        return Ok(Request::Man);
    }
    match matches.get_one::<Shell>("shell") {
        Some(shell) => Ok(Request::Completions(*shell)),
        // `required(true)` makes clap refuse this before; kept an error, not a panic.
        None => Err(clap::Error::new(
            clap::error::ErrorKind::MissingRequiredArgument,
        )),
    }
}

/// The text `request` asked for.
pub fn render(request: Request) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match request {
        Request::Completions(shell) => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            // Into memory: clap_complete panics on a failed write (a closed pipe);
            // the caller writes to stdout and handles that.
            clap_complete::generate(shell, &mut documented_command(), BIN, &mut out);
        }
        Request::Man => man_page(&mut out)?,
    }
    Ok(out)
}

/// The two commands, in the man page's own section: clap_mangen's SUBCOMMANDS section
/// would point at `logtail-ws-completions(1)` pages that do not exist.
const MAN_COMMANDS: &str = r#".SH COMMANDS
.TP
\fBlogtail\-ws completions\fR \fIbash\fR|\fIzsh\fR|\fIfish\fR
Print a shell completion script for logtail\-ws to stdout.
.TP
\fBlogtail\-ws man\fR
Print this man page (roff) to stdout.
"#;

/// The man page of the server's flags (each with its `LOGTAIL_*` variable) and the two
/// commands.
fn man_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    out.extend_from_slice(MAN_COMMANDS.as_bytes());
    man.render_version_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_first_argument_selects_a_command() {
        assert_eq!(
            request(&args(&["logtail-ws", "--file", "man"])).map(|r| r.ok()),
            None
        );
        assert_eq!(request(&args(&["logtail-ws"])).map(|r| r.ok()), None);
        assert_eq!(
            request(&args(&["logtail-ws", "man"])).map(|r| r.ok()),
            Some(Some(Request::Man))
        );
        assert_eq!(
            request(&args(&["logtail-ws", "completions", "zsh"])).map(|r| r.ok()),
            Some(Some(Request::Completions(Shell::Zsh)))
        );
    }

    #[test]
    fn a_bad_shell_is_a_usage_error() {
        let err = match request(&args(&["logtail-ws", "completions", "tcsh"])) {
            Some(Err(err)) => err,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_documented_command_is_consistent() {
        documented_command().debug_assert();
    }
}
