//! Third-party programs the tests drive (websocat, curl, Chromium, util-linux's `prlimit`
//! and `setpriv`): how a test that needs one runs where it is installed and shows as
//! skipped where it is not, and [`KillOnDrop`], which ends each one started by its PID.
//!
//! # Skips show as skips
//!
//! A test that drives a program says so, and gets the program's path, through the small
//! proc-macro crate in `tests/needs/` (a path dev-dependency, no crates from a registry):
//!
//! ```text
//! #[needs::tools(websocat, curl)]
//! #[tokio::test]
//! async fn quick_start_typed_literally() {
//!     let websocat = needs::program!(websocat);
//! ```
//!
//! - **Installed** (found on `PATH` or in `~/.cargo/bin` as the tests are compiled): the
//!   attribute adds nothing; the test runs on a plain `cargo test`.
//! - **Missing**: the test is compiled with `#[ignore = "needs websocat (cargo install
//!   websocat)"]`, so `cargo test` prints `ignored, needs websocat (cargo install
//!   websocat)` and counts it as ignored: a skip with its reason, never a pass.
//! - **CI**: `.ci/run` installs every tool and runs `cargo test -- --include-ignored`, so
//!   an ignored test runs all the same: `needs::program!` looks the program up again as
//!   the test runs, and panics naming the tool and how to install it if it is still
//!   missing. Where `CI` is set as the tests are compiled, nothing is ignored at all (the
//!   rule before: CI must install the tools).
//!
//! Why the choice is made at compile time: stable libtest decides "ignored" only from the
//! attribute; a test cannot skip itself once running (rust-lang/rust#68007). The other
//! ways were worse. A check at run time that returns early is reported as `ok`: the
//! silent pass this replaces (a note printed with `eprintln!` does not help: libtest
//! captures it). A plain `#[ignore = "needs X"]` would stop those tests running on a
//! plain `cargo test` even where X is installed. A `build.rs` would change the package's
//! own build. Cargo's test suite does the same (`#[cargo_test(requires = "…")]`).
//!
//! The cost: "ignored" is as old as the test binary's build. Cargo rebuilds it when any
//! test file changes and when `PATH`, `HOME` or `CI` do (the attribute reads them through
//! `option_env!`, which cargo tracks); a tool installed into a directory already on
//! `PATH` is seen from the next rebuild on (`touch tests/it.rs`), and until then its tests
//! stay ignored, with the reason (`--include-ignored` runs them, and finds the tool).
//!
//! `setpriv` counts only when the tests run as root (it drops root's capabilities; see
//! [`ServerBuilder::without_dac_override`](super::ServerBuilder::without_dac_override)).
//! Conditions no install can fix are not tools: the test checks them when it runs and,
//! where they do not hold, says so with [`skipped`].

use std::io::Write;
use std::process::Child;

/// Tells the terminal that `test` did not run, and why, and returns: for a condition of
/// the machine that no install fixes (tools are handled at compile time, see above).
/// Written to the process's stderr directly, which libtest does not capture.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Kills a child process (by its own PID) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
