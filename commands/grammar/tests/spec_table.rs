//! The verb table is the one source: every entry's example parses to a
//! command of that verb, prints back to text that parses to the same
//! command, and survives the JSON an approval is stored as.

use oncall_grammar::verbs::*;
use oncall_grammar::{parse, spec, ArgKind, Command, Gate, VERBS};

#[test]
fn every_example_round_trips_through_text_and_json() {
    for verb in VERBS {
        let parsed = parse(verb.example).unwrap_or_else(|e| panic!("{}: {e}", verb.name));
        assert_eq!(parsed.command.spec(), *verb, "{}", verb.example);
        let text = parsed.command.to_string();
        assert!(text.starts_with(verb.name), "{text}");
        assert_eq!(parse(&text).unwrap().command, parsed.command, "{text}");
        let json = serde_json::to_string(&parsed.command).unwrap();
        let back: Command = serde_json::from_str(&json).unwrap();
        assert_eq!(back, parsed.command, "{json}");
    }
}

#[test]
fn stored_commands_keep_their_json_shape() {
    // Approvals written before the table existed still load.
    let cases: Vec<(&str, Command)> = vec![
        (
            r#"{"op":"scale","service":"backend","replicas":5,"dry_run":false,"force":false}"#,
            Command::Scale(Scale {
                service: "backend".into(),
                replicas: 5,
                dry_run: false,
                force: false,
            }),
        ),
        (r#"{"op":"whoami"}"#, Command::Whoami(Whoami)),
        (
            r#"{"op":"restart-all","namespace":"default"}"#,
            Command::RestartAll(RestartAll {
                namespace: "default".into(),
                dry_run: false,
            }),
        ),
        (
            r#"{"op":"rollout-status","service":"backend","wait":300}"#,
            Command::RolloutStatus(RolloutStatus {
                service: "backend".into(),
                wait: Some(std::time::Duration::from_secs(300)),
            }),
        ),
    ];
    for (json, expected) in cases {
        let got: Command = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(got, expected, "{json}");
    }
    assert_eq!(
        serde_json::to_string(&Command::Whoami(Whoami)).unwrap(),
        r#"{"op":"whoami"}"#
    );
}

#[test]
fn names_and_policy_verbs_are_unique_and_well_formed() {
    for (i, verb) in VERBS.iter().enumerate() {
        assert!(
            VERBS[..i].iter().all(|v| v.name != verb.name),
            "{} twice",
            verb.name
        );
        assert!(
            !verb.summary.is_empty() && verb.summary.len() <= 100,
            "{}",
            verb.name
        );
        // Discord requires required options before optional ones (its
        // schema lists them so); in text only an optional incident number
        // may stand before required words, being recognisable as a number.
        let first_optional = verb
            .args
            .iter()
            .position(|a| !a.required && a.kind != ArgKind::Incident);
        if let Some(i) = first_optional {
            assert!(verb.args[i..].iter().all(|a| !a.required), "{}", verb.name);
        }
        // Only the last argument may take the remaining words.
        for a in &verb.args[..verb.args.len().saturating_sub(1)] {
            assert!(!a.many && a.kind != ArgKind::Command, "{}", verb.name);
        }
    }
    assert!(spec::policy_verbs().contains(&"hpa-set"));
}

#[test]
fn only_help_whoami_and_the_approval_verbs_skip_the_policy() {
    let open: Vec<&str> = VERBS
        .iter()
        .filter(|v| v.gate == Gate::Handler)
        .map(|v| v.name)
        .collect();
    assert_eq!(open, vec!["help", "whoami", "approve", "deny"]);
}

#[test]
fn usage_comes_from_the_typed_arguments() {
    let scale = spec::find("scale").unwrap();
    assert_eq!(
        scale.usage(),
        "scale <service> <replicas> [--dry-run] [--force]"
    );
    let restart = spec::find("restart").unwrap();
    assert_eq!(
        restart.usage(),
        "restart <service>… | --all -n <namespace> [--dry-run]"
    );
    let logs = spec::find("logs").unwrap();
    assert!(logs.usage().contains("[--tail N]"), "{}", logs.usage());
}
