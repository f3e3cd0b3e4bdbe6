//! Properties over generated input: the parser never panics, and a parsed
//! command's canonical text parses back to the same command.

use oncall_grammar::{parse, VERBS};
use proptest::prelude::*;

/// Words that make many generated commands valid, and some that don't.
fn word() -> impl Strategy<Value = String> {
    let pool = prop::sample::select(vec![
        "backend",
        "frontend",
        "oauth2-server",
        "default",
        "vibe-ensemble",
        "0",
        "3",
        "40",
        "1001",
        "-1",
        "--dry-run",
        "--force",
        "--all",
        "-n",
        "--since",
        "10m",
        "20000y",
        "--wait",
        "5m",
        "--tail",
        "50",
        "--grep",
        "ERR(",
        "--min",
        "--max",
        "2",
        "--to-revision",
        "LOG_LEVEL=debug",
        "API_TOKEN=x",
        "KEY",
        "'a b'",
        "\"q\\\"x\"",
        "--public",
        "--",
        "ghcr.io/x/y:1.0",
        "c=img:1",
        "cli:viewer",
        "k3f9qa",
        "scale",
        "rollout",
        "status",
        "=",
        "--limit",
        "100",
        "--user",
        "--service",
        "x-1-2",
    ])
    .prop_map(String::from);
    prop_oneof![4 => pool, 1 => "\\PC{0,12}"]
}

fn command_text() -> impl Strategy<Value = String> {
    let verbs: Vec<&'static str> = VERBS.iter().map(|v| v.name).collect();
    (
        prop::sample::select(verbs),
        prop::collection::vec(word(), 0..6),
    )
        .prop_map(|(verb, words)| format!("{verb} {}", words.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_command(text in command_text()) {
        if let Ok(parsed) = parse(&text) {
            let canonical = parsed.command.to_string();
            let again = parse(&canonical)
                .unwrap_or_else(|e| panic!("`{text}` → `{canonical}`: {e}"));
            prop_assert_eq!(again.command, parsed.command, "`{}` → `{}`", text, canonical);
        }
    }
}
