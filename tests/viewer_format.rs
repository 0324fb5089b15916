//! The viewer's `src/transport/assets/format.js` (ANSI spans, level detection, JSON and
//! logfmt parsing): its unit tests and the labelled level corpus `tests/viewer/levels.tsv`
//! are a node script, `tests/viewer/format.test.js` (`node:test`, no packages); this runs
//! it and fails with node's output.

use std::path::Path;
use std::process::Command;

#[needs::tools(node)]
#[test]
fn format_js_passes_its_node_tests() {
    let node = needs::program!(node);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/viewer/format.test.js");
    let out = Command::new(&node)
        .arg("--test")
        .arg(&script)
        .current_dir(root)
        .env_remove("NODE_OPTIONS")
        .output()
        .expect("node starts");
    assert!(
        out.status.success(),
        "{} --test {} failed ({}):\n{}\n{}",
        node.display(),
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// The whole viewer (HTML, CSS, both scripts, the icon: what `/` loads, embedded verbatim
/// with `include_str!`) stays under 60 KB gzipped (`gzip -9`, issue 13).
#[test]
fn the_viewer_stays_under_60_kb_gzipped() {
    use std::io::Write;
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/transport/assets");
    let mut all = Vec::new();
    for name in [
        "index.html",
        "viewer.css",
        "viewer.js",
        "format.js",
        "favicon.svg",
    ] {
        let path = assets.join(name);
        all.extend(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    let mut gzip = Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip starts");
    gzip.stdin
        .take()
        .expect("gzip's stdin")
        .write_all(&all)
        .expect("write to gzip");
    let out = gzip.wait_with_output().expect("gzip ends");
    assert!(out.status.success(), "gzip failed: {}", out.status);
    let size = out.stdout.len();
    assert!(
        size < 60 * 1000,
        "the viewer is {size} bytes gzipped ({} raw), over 60 KB",
        all.len()
    );
}
