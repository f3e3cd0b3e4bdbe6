//! The command language stays pure: its dependency tree (as `cargo tree`
//! reports it, normal dependencies only) has no async runtime, no Kubernetes
//! client and no HTTP stack. If this fails, something IO-bound was added to
//! the grammar crate: it belongs in `oncall-ops` or the bot.

use std::process::Command;

const FORBIDDEN: &[&str] = &["tokio", "kube", "k8s-openapi", "reqwest", "hyper"];

#[test]
fn the_grammar_depends_on_nothing_async_or_networked() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "oncall-grammar",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"oncall-grammar"), "{tree}");
    assert!(crates.contains(&"regex"), "the tree is read: {tree}");
    for name in FORBIDDEN {
        assert!(
            !crates
                .iter()
                .any(|c| c == name || c.starts_with(&format!("{name}-"))),
            "oncall-grammar depends on {name}:\n{tree}"
        );
    }
}
