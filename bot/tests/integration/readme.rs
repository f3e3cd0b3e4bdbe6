//! The README promises things; these tests keep it true.

use std::path::PathBuf;

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(path).expect("README.md at the workspace root")
}

fn between<'a>(text: &'a str, begin: &str, end: &str) -> &'a str {
    let start = text
        .find(begin)
        .unwrap_or_else(|| panic!("README lacks {begin}"))
        + begin.len();
    let stop = text[start..]
        .find(end)
        .unwrap_or_else(|| panic!("README lacks {end}"))
        + start;
    text[start..stop].trim()
}

#[test]
fn the_command_reference_matches_the_grammar() {
    let readme = readme();
    let documented = between(&readme, "<!-- commands:begin -->", "<!-- commands:end -->");
    let generated = oncall_grammar::spec::reference_markdown();
    assert_eq!(
        documented,
        generated.trim(),
        "README's command reference is stale; replace it with:\n{generated}"
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = readme();
    let test_command = between(
        &readme,
        "<!-- test-command:begin -->",
        "<!-- test-command:end -->",
    );
    let command = test_command
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("```"))
        .expect("a command inside the test-command block");
    assert!(command.starts_with("cargo test"), "{command}");
    let ci = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/run"))
        .unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run must run `{command}` exactly"
    );
}

#[test]
fn the_readme_documents_every_exit_code() {
    let readme = readme();
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 5 |"] {
        assert!(readme.contains(code), "exit code row {code} missing");
    }
}

#[test]
fn the_slack_manifest_matches_the_routes_and_the_grammar() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/slack/manifest.yaml");
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let command = &manifest["features"]["slash_commands"][0];
    assert_eq!(command["command"].as_str(), Some("/oncall"));
    assert!(command["url"]
        .as_str()
        .unwrap()
        .ends_with("/slack/commands"));
    assert_eq!(
        command["usage_hint"].as_str().unwrap(),
        oncall_grammar::spec::usage_hint(),
        "regenerate the usage hint"
    );
    let settings = &manifest["settings"];
    assert!(settings["interactivity"]["request_url"]
        .as_str()
        .unwrap()
        .ends_with("/slack/interactions"));
    assert!(settings["event_subscriptions"]["request_url"]
        .as_str()
        .unwrap()
        .ends_with("/slack/events"));
    let scopes: Vec<&str> = manifest["oauth_config"]["scopes"]["bot"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for needed in ["commands", "chat:write", "usergroups:read"] {
        assert!(scopes.contains(&needed), "{needed}");
    }
}
