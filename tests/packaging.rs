//! Packaging (issue 12): `logtail-ws completions bash|zsh|fish` and `logtail-ws man` are
//! generated from the clap definition, so each mentions every flag `--help` lists; the
//! list is read from `--help`, not written here, so a new flag is checked too.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{RawOutput, Server};

const EXIT: Duration = Duration::from_secs(10);

/// Runs the binary with `args`, expecting exit 0 and something on stdout.
fn run_ok(args: &[&str]) -> RawOutput {
    let out = Server::spawn_raw(args, &[]).finish(EXIT);
    assert_eq!(out.code, Some(0), "{args:?}: stderr:\n{}", out.stderr);
    assert!(!out.stdout.trim().is_empty(), "{args:?}: empty stdout");
    out
}

/// The words of `text`: runs of letters, digits, `-` and `_`.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Every `--long-flag` that `--help` mentions (`--help` and `--version` included).
fn long_flags_from_help() -> BTreeSet<String> {
    let help = run_ok(&["--help"]).stdout;
    let flags: BTreeSet<String> = words(&help)
        .into_iter()
        .filter(|w| w.len() > 2 && w.starts_with("--") && !w[2..].starts_with('-'))
        .map(str::to_string)
        .collect();
    // Not vacuous: the flags every version has had are among them.
    for flag in [
        "--file",
        "--port",
        "--bind",
        "--poll",
        "--poll-interval",
        "--help",
    ] {
        assert!(flags.contains(flag), "{flag} not found in --help:\n{help}");
    }
    flags
}

/// Every `LOGTAIL_*` variable `--help` names (`[env: LOGTAIL_PORT=]`).
fn env_vars_from_help() -> BTreeSet<String> {
    let help = run_ok(&["--help"]).stdout;
    let vars: BTreeSet<String> = words(&help)
        .into_iter()
        .filter(|w| w.starts_with("LOGTAIL_"))
        .map(str::to_string)
        .collect();
    assert!(
        vars.contains("LOGTAIL_FILE"),
        "no LOGTAIL_FILE in --help:\n{help}"
    );
    vars
}

fn assert_mentions_every_flag(what: &str, text: &str, mentions: impl Fn(&[&str], &str) -> bool) {
    let found = words(text);
    let missing: Vec<String> = long_flags_from_help()
        .into_iter()
        .filter(|flag| !mentions(&found, flag))
        .collect();
    assert!(
        missing.is_empty(),
        "{what} does not mention {missing:?}:\n{text}"
    );
}

/// Bash and zsh completions name each flag as `--flag` (a whole word, so `--poll` is not
/// found inside `--poll-interval`).
#[test]
fn bash_and_zsh_completions_mention_every_long_flag() {
    for shell in ["bash", "zsh"] {
        let out = run_ok(&["completions", shell]);
        assert_mentions_every_flag(shell, &out.stdout, |words, flag| words.contains(&flag));
    }
}

/// Fish completions name each flag as `-l flag`.
#[test]
fn fish_completions_mention_every_long_flag() {
    let out = run_ok(&["completions", "fish"]);
    assert_mentions_every_flag("fish", &out.stdout, |words, flag| {
        words.windows(2).any(|w| w[0] == "-l" && w[1] == &flag[2..])
    });
}

/// The bash script is valid bash, and completing the first word offers `completions`.
#[test]
fn bash_completion_parses_and_completes_the_commands() {
    let out = run_ok(&["completions", "bash"]);
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &out.stdout).unwrap();
    let path = script.path().to_str().unwrap();
    let probe = format!(
        "source {path} && COMP_WORDS=(logtail-ws comp) && COMP_CWORD=1 && \
         _logtail__ws logtail-ws comp logtail-ws && echo \"${{COMPREPLY[@]}}\""
    );
    let done = std::process::Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&done.stdout), "completions\n");
}

/// The man page is roff for section 1, names every long flag (as roff writes it,
/// `\fB\-\-flag\fR`) and every `LOGTAIL_*` variable, and lists the two commands.
#[test]
fn man_page_mentions_every_flag_and_variable() {
    let out = run_ok(&["man"]);
    assert!(out.stdout.contains(".TH logtail-ws 1 "), "{}", out.stdout);
    // Font escapes off and `\-` as `-`: what `man` shows.
    let plain = out
        .stdout
        .replace("\\fB", " ")
        .replace("\\fI", " ")
        .replace("\\fR", " ")
        .replace("\\-", "-");
    assert_mentions_every_flag("man", &plain, |words, flag| words.contains(&flag));
    let found = words(&plain);
    for var in env_vars_from_help() {
        assert!(
            found.contains(&var.as_str()),
            "man does not mention {var}:\n{plain}"
        );
    }
    let spaced: String = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(spaced.contains(".SH COMMANDS"), "{plain}");
    assert!(
        spaced.contains(
            ".TP logtail-ws completions bash | zsh | fish Print a shell completion script"
        ),
        "{plain}"
    );
    assert!(
        spaced.contains(".TP logtail-ws man Print this man page"),
        "{plain}"
    );
}

/// An unknown shell exits 2, prints nothing on stdout and names the accepted shells.
#[test]
fn unknown_shell_exits_2_naming_the_accepted_ones() {
    let out = Server::spawn_raw(&["completions", "tcsh"], &[]).finish(EXIT);
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("invalid value 'tcsh'"),
        "stderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[possible values: bash, zsh, fish]"),
        "stderr:\n{}",
        out.stderr
    );
}

/// No shell at all exits 2 and the usage line names the accepted shells.
#[test]
fn missing_shell_exits_2_naming_the_accepted_ones() {
    let out = Server::spawn_raw(&["completions"], &[]).finish(EXIT);
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("Usage: logtail-ws completions <bash|zsh|fish>"),
        "stderr:\n{}",
        out.stderr
    );
}

/// `--help` tells users the two commands exist.
#[test]
fn help_mentions_completions_and_man() {
    let out = run_ok(&["--help"]);
    assert!(
        out.stdout
            .contains("`logtail-ws completions bash|zsh|fish`"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("`logtail-ws man`"), "{}", out.stdout);
}

/// Only the first argument is a command: `--file man` still means a file named `man`
/// (the server starts and follows it).
#[tokio::test]
async fn a_file_named_like_a_command_is_still_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("man");
    std::fs::write(&path, "").unwrap();
    let server = Server::start(&path, &[]).await;
    assert!(server.addr().port() != 0);
}
