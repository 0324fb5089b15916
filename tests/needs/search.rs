// The search rule for the tests' programs, written once: the proc macros run it as they
// expand (`include!`), and `needs::program!` pastes this text into the test to run it
// again when the test runs (`include_str!`). Hence the full paths.

/// The first of `programs` found on `PATH`, then in `~/.cargo/bin` (where `cargo install`
/// puts websocat), then in `/usr/sbin` and `/sbin` (where Debian puts nginx, and which a
/// user's `PATH` may lack).
fn find_program(programs: &[&str]) -> ::std::option::Option<::std::path::PathBuf> {
    let mut dirs: ::std::vec::Vec<::std::path::PathBuf> = ::std::env::var_os("PATH")
        .map(|p| ::std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let ::std::option::Option::Some(home) = ::std::env::var_os("HOME") {
        dirs.push(::std::path::PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.push(::std::path::PathBuf::from("/usr/sbin"));
    dirs.push(::std::path::PathBuf::from("/sbin"));
    programs
        .iter()
        .find_map(|p| dirs.iter().map(|d| d.join(p)).find(|p| p.is_file()))
}
