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
