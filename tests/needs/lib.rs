//! The tests' third-party programs (websocat, curl, Chromium, util-linux's prlimit and
//! setpriv, nginx, Node.js, the brokers mosquitto and RabbitMQ):
//!
//! - `#[needs::tools(websocat, curl)]` on a test: if one of them is not installed when
//!   the test crate is compiled, the test gets `#[ignore = "needs websocat (cargo install websocat)"]`, so `cargo test`
//!   reports it as ignored with the reason; if they all are, the test is left as it is
//!   and runs.
//! - `needs::program!(websocat)`: the path of the program, looked up when the test runs
//!   (by the same rule, `search.rs`); a panic naming the tool where it is missing.
//!
//! Stable Rust's test harness cannot skip a test from inside it (rust-lang/rust#68007),
//! so the decision is made here, as cargo's own test suite does with
//! `#[cargo_test(requires = "...")]`. The whole design (and what CI does) is explained in
//! `tests/harness/tools.rs`.

use std::os::unix::fs::MetadataExt;

use proc_macro::{Delimiter, TokenStream, TokenTree};

/// A program some test drives.
struct Tool {
    /// The name a test gives in `#[needs::tools(...)]`.
    name: &'static str,
    /// The executables that provide it (any one will do).
    programs: &'static [&'static str],
    /// How to install it, for the ignore reason.
    install: &'static str,
    /// Needed only when the tests run as root (`setpriv` drops root's capabilities).
    only_as_root: bool,
}

/// Every program the tests drive. `.ci/run` installs each of them.
const TOOLS: &[Tool] = &[
    Tool {
        name: "websocat",
        programs: &["websocat"],
        install: "cargo install websocat",
        only_as_root: false,
    },
    Tool {
        name: "curl",
        programs: &["curl"],
        install: "apt-get install curl",
        only_as_root: false,
    },
    Tool {
        name: "chromium",
        programs: &["chromium", "chromium-browser"],
        install: "apt-get install chromium",
        only_as_root: false,
    },
    Tool {
        name: "prlimit",
        programs: &["prlimit"],
        install: "apt-get install util-linux",
        only_as_root: false,
    },
    Tool {
        name: "nginx",
        programs: &["nginx"],
        install: "apt-get install nginx",
        only_as_root: false,
    },
    Tool {
        name: "node",
        programs: &["node", "nodejs"],
        install: "apt-get install nodejs",
        only_as_root: false,
    },
    Tool {
        name: "nats_server",
        programs: &["nats-server"],
        install: "apt-get install nats-server",
        only_as_root: false,
    },
    Tool {
        name: "mosquitto",
        programs: &["mosquitto"],
        install: "apt-get install mosquitto",
        only_as_root: false,
    },
    Tool {
        name: "rabbitmq",
        programs: &["rabbitmq-server"],
        install: "apt-get install rabbitmq-server",
        only_as_root: false,
    },
    Tool {
        name: "setpriv",
        programs: &["setpriv"],
        install: "apt-get install util-linux",
        only_as_root: true,
    },
];

/// Marks the test `#[ignore = "needs TOOL (HOW TO INSTALL)"]` when a listed tool is not
/// installed as this crate is compiled; see the crate docs.
#[proc_macro_attribute]
pub fn tools(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut missing = Vec::new();
    for name in attr.into_iter().filter_map(|t| match t {
        TokenTree::Ident(i) => Some(i.to_string()),
        _ => None,
    }) {
        let tool = match Tool::named(&name) {
            Ok(tool) => tool,
            Err(error) => return error,
        };
        if tool.needed() && !tool.installed() {
            missing.push(tool.describe());
        }
    }
    // Today's CI rule: where `CI` is set nothing is ignored, so a missing tool fails.
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let mut out = parse(TRACKED);
    let tokens: Vec<TokenTree> = item.into_iter().collect();
    if missing.is_empty() || ci {
        out.extend(tokens);
        return out;
    }
    // After the outer attributes (`#` and a `[...]` group each, doc comments included),
    // so that `#[tokio::test]` before it sees it and keeps it.
    let attrs = 2 * tokens
        .chunks(2)
        .take_while(|pair| {
            matches!(pair, [TokenTree::Punct(p), TokenTree::Group(g)]
                if p.as_char() == '#' && g.delimiter() == Delimiter::Bracket)
        })
        .count();
    let reason = format!("needs {}", missing.join(", "));
    out.extend(tokens[..attrs].iter().cloned());
    out.extend(parse(&format!("#[ignore = {reason:?}]")));
    out.extend(tokens[attrs..].iter().cloned());
    out
}

/// `needs::program!(websocat)`: the `PathBuf` of the tool, looked up as the test runs (a
/// tool installed since the build is found); panics naming the tool and how to install it
/// where it is missing (a test ignored for that reason and run all the same, as
/// `--include-ignored` does).
#[proc_macro]
pub fn program(input: TokenStream) -> TokenStream {
    let name = input.to_string();
    let tool = match Tool::named(name.trim()) {
        Ok(tool) => tool,
        Err(error) => return error,
    };
    let missing = format!("{} is not installed ({})", tool.name, tool.install);
    parse(&format!(
        "{{ {SEARCH} find_program(&{programs:?}).unwrap_or_else(|| ::std::panic!({missing:?})) }}",
        SEARCH = include_str!("search.rs"),
        programs = tool.programs,
    ))
}

impl Tool {
    /// The tool called `name`, or a `compile_error!` naming the known ones.
    fn named(name: &str) -> Result<&'static Tool, TokenStream> {
        TOOLS.iter().find(|t| t.name == name).ok_or_else(|| {
            let known: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
            parse(&format!(
                "compile_error!({:?});",
                format!(
                    "unknown tool `{name}` (known: {}); add it to tests/needs/lib.rs",
                    known.join(", ")
                )
            ))
        })
    }

    /// Whether the tests need it here (`only_as_root`: only when run by root).
    fn needed(&self) -> bool {
        !self.only_as_root || std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    /// Whether one of its programs is installed (see `search.rs`).
    fn installed(&self) -> bool {
        find_program(self.programs).is_some()
    }

    /// `websocat (cargo install websocat)`, `setpriv as root (…)`.
    fn describe(&self) -> String {
        let when = if self.only_as_root { " as root" } else { "" };
        format!("{}{when} ({})", self.name, self.install)
    }
}

/// A `const _` reading `PATH`, `HOME` and `CI` with `option_env!`: rustc records what
/// `option_env!` reads (not what a proc macro reads), so cargo rebuilds the tests when
/// one of them changes and a tool may be found (or lost) with it.
const TRACKED: &str = "const _: [::std::option::Option<&str>; 3] = \
    [option_env!(\"PATH\"), option_env!(\"HOME\"), option_env!(\"CI\")];";

fn parse(code: &str) -> TokenStream {
    code.parse().expect("valid tokens")
}

include!("search.rs");
