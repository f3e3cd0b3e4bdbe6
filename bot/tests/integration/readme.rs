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

/// `ONCALL_BLESS=1 cargo test readme` rewrites what is generated from the
/// grammar (the README's reference, Slack's usage hint) instead of failing.
fn bless() -> bool {
    std::env::var_os("ONCALL_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn the_command_reference_matches_the_grammar() {
    let readme = readme();
    let documented = between(&readme, "<!-- commands:begin -->", "<!-- commands:end -->");
    let generated = oncall_grammar::spec::reference_markdown();
    if bless() && documented != generated.trim() {
        let updated = readme.replace(documented, generated.trim());
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        std::fs::write(path, updated).unwrap();
        return;
    }
    assert_eq!(
        documented,
        generated.trim(),
        "README's command reference is stale; `ONCALL_BLESS=1 cargo test readme` rewrites it as:\n{generated}"
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
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let hint = oncall_grammar::spec::usage_hint();
    let written = manifest["features"]["slash_commands"][0]["usage_hint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if bless() && written != hint && !written.is_empty() {
        std::fs::write(&path, text.replace(&written, &hint)).unwrap();
        return;
    }
    let command = &manifest["features"]["slash_commands"][0];
    assert_eq!(command["command"].as_str(), Some("/oncall"));
    assert!(command["url"]
        .as_str()
        .unwrap()
        .ends_with("/slack/commands"));
    assert_eq!(
        command["usage_hint"].as_str().unwrap(),
        oncall_grammar::spec::usage_hint(),
        "regenerate the usage hint: ONCALL_BLESS=1 cargo test readme"
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
