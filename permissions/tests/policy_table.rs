//! Table tests for policy evaluation: every row is one request and the
//! decision (and deciding rule) it must get.

use oncall_permissions::{Policy, Principal, Request, Target};

const POLICY: &str = r#"
[[roles]]
name = "viewer"
grants = [{ verbs = ["status", "history", "can", "whoami", "help"] }]

[[roles]]
name = "operator"
grants = [
  { verbs = ["scale", "restart"], environments = ["staging", "production"], channels = ["slack:COPS", "cli:*"] },
  { verbs = ["scale"], services = ["payments-*"], namespaces = ["payments"] },
]

[[roles]]
name = "admin"
grants = [{ verbs = ["*"] }]

[[bindings]]
principal = "slack:UVIEW"
roles = ["viewer"]

[[bindings]]
principal = "slack-group:SOPS"
roles = ["viewer", "operator"]

[[bindings]]
principal = "discord-role:42"
roles = ["admin"]

[[bindings]]
principal = "cli:admin"
roles = ["admin"]

[[approvals]]
name = "production-scale-to-zero"
verbs = ["scale"]
environments = ["production"]
when = ["scale-to-zero"]
approvers = ["admin"]

[[approvals]]
name = "production-restart"
verbs = ["restart"]
environments = ["production"]
approvers = ["admin"]
"#;

fn policy() -> Policy {
    toml::from_str(POLICY).expect("test policy parses")
}

fn p(s: &str) -> Principal {
    s.parse().unwrap()
}

struct Row {
    principals: &'static [&'static str],
    channel: &'static str,
    verb: &'static str,
    service: Option<&'static str>,
    namespace: Option<&'static str>,
    environment: Option<&'static str>,
    conditions: &'static [&'static str],
    expect: &'static str,
    rule_contains: &'static str,
}

#[test]
fn decisions_table() {
    let rows = [
        // Deny by default: a principal with no binding.
        Row {
            principals: &["slack:UNOBODY"],
            channel: "slack:COPS",
            verb: "status",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "deny",
            rule_contains: "default deny",
        },
        // A viewer can read but not mutate.
        Row {
            principals: &["slack:UVIEW"],
            channel: "slack:COPS",
            verb: "status",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "allow",
            rule_contains: "role viewer, grant 1",
        },
        Row {
            principals: &["slack:UVIEW"],
            channel: "slack:COPS",
            verb: "scale",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "deny",
            rule_contains: "default deny",
        },
        // Group membership grants operator; the channel must match by id.
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:COPS",
            verb: "scale",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "allow",
            rule_contains: "role operator, grant 1",
        },
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:CRANDOM",
            verb: "scale",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "deny",
            rule_contains: "default deny",
        },
        // Environment scope: dev is not granted to operators.
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:COPS",
            verb: "scale",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("dev"),
            conditions: &[],
            expect: "deny",
            rule_contains: "default deny",
        },
        // Prefix selectors and namespace scope in the second grant, any channel.
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:CRANDOM",
            verb: "scale",
            service: Some("payments-api"),
            namespace: Some("payments"),
            environment: None,
            conditions: &[],
            expect: "allow",
            rule_contains: "role operator, grant 2",
        },
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:CRANDOM",
            verb: "scale",
            service: Some("payments-api"),
            namespace: Some("default"),
            environment: None,
            conditions: &[],
            expect: "deny",
            rule_contains: "default deny",
        },
        // Approval rules: scale to zero and restart in production.
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:COPS",
            verb: "scale",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &["scale-to-zero"],
            expect: "needs_approval",
            rule_contains: "production-scale-to-zero",
        },
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:COPS",
            verb: "restart",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "needs_approval",
            rule_contains: "production-restart",
        },
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:COPS",
            verb: "restart",
            service: Some("web"),
            namespace: Some("default"),
            environment: Some("staging"),
            conditions: &[],
            expect: "allow",
            rule_contains: "role operator",
        },
        // Approval applies to admins too: a second person is the point.
        Row {
            principals: &["cli:admin"],
            channel: "cli:console",
            verb: "restart",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("production"),
            conditions: &[],
            expect: "needs_approval",
            rule_contains: "production-restart",
        },
        // Discord roles bind like Slack groups; wildcard verbs.
        Row {
            principals: &["discord:1", "discord-role:42"],
            channel: "discord:99",
            verb: "scale",
            service: Some("backend"),
            namespace: Some("default"),
            environment: Some("staging"),
            conditions: &[],
            expect: "allow",
            rule_contains: "role admin",
        },
        // A command with no service matches only wildcard service selectors.
        Row {
            principals: &["slack:UVIEW"],
            channel: "slack:COPS",
            verb: "history",
            service: None,
            namespace: None,
            environment: None,
            conditions: &[],
            expect: "allow",
            rule_contains: "role viewer",
        },
        Row {
            principals: &["slack:UALICE", "slack-group:SOPS"],
            channel: "slack:CRANDOM",
            verb: "scale",
            service: None,
            namespace: None,
            environment: None,
            conditions: &[],
            expect: "deny",
            rule_contains: "default deny",
        },
    ];
    let policy = policy();
    for (i, row) in rows.iter().enumerate() {
        let principals: Vec<Principal> = row.principals.iter().map(|s| p(s)).collect();
        let request = Request {
            principals: &principals,
            channel: row.channel,
            verb: row.verb,
            target: Target {
                service: row.service,
                namespace: row.namespace,
                cluster: None,
                environment: row.environment,
                cronjob: None,
            },
            conditions: row.conditions,
        };
        let decision = policy.evaluate(&request);
        assert_eq!(decision.label(), row.expect, "row {i}: {decision:?}");
        assert!(
            decision.reason().rule.contains(row.rule_contains),
            "row {i}: rule was {:?}",
            decision.reason().rule
        );
    }
}

#[test]
fn denial_explains_who_what_and_where() {
    let policy = policy();
    let principals = [p("slack:UVIEW")];
    let d = policy.evaluate(&Request {
        principals: &principals,
        channel: "slack:COPS",
        verb: "scale",
        target: Target {
            service: Some("backend"),
            namespace: Some("default"),
            ..Default::default()
        },
        conditions: &[],
    });
    let text = d.reason().explanation.clone();
    assert!(text.contains("slack:UVIEW"), "{text}");
    assert!(text.contains("roles: viewer"), "{text}");
    assert!(text.contains("`scale`"), "{text}");
    assert!(text.contains("service backend"), "{text}");
    assert!(text.contains("slack:COPS"), "{text}");
}

#[test]
fn approval_needs_a_different_person_with_an_approver_role() {
    let policy = policy();
    let requester = p("cli:admin");
    // The requester never approves their own request, even as admin.
    let err = policy
        .may_approve("production-restart", &[p("cli:admin")], &requester)
        .unwrap_err();
    assert_eq!(err.rule, "four-eyes");
    // Someone without the approver role cannot.
    let err = policy
        .may_approve(
            "production-restart",
            &[p("slack:UALICE"), p("slack-group:SOPS")],
            &requester,
        )
        .unwrap_err();
    assert!(
        err.explanation.contains("needs admin"),
        "{}",
        err.explanation
    );
    // An admin through a Discord role can.
    let ok = policy
        .may_approve(
            "production-restart",
            &[p("discord:7"), p("discord-role:42")],
            &requester,
        )
        .unwrap();
    assert!(ok.explanation.contains("`admin`"));
    // A rule that was removed from the policy cannot be approved.
    assert!(policy
        .may_approve("gone", &[p("discord:7"), p("discord-role:42")], &requester)
        .is_err());
}

#[test]
fn validate_names_the_key_at_fault() {
    let bad: Policy = toml::from_str(
        r#"
[[roles]]
name = "ops"
grants = [{ verbs = ["scael"] }]
[[roles]]
name = "ops"
[[bindings]]
principal = "cli:x"
roles = ["nobody"]
[[approvals]]
name = "r"
verbs = ["scale"]
approvers = ["ghost"]
"#,
    )
    .unwrap();
    let errors: Vec<String> = bad
        .validate(&["scale", "status"])
        .iter()
        .map(ToString::to_string)
        .collect();
    let all = errors.join("\n");
    assert!(
        all.contains("policy.roles[0].grants[0].verbs: unknown verb `scael`"),
        "{all}"
    );
    assert!(
        all.contains("policy.roles[1].name: role `ops` is defined twice"),
        "{all}"
    );
    assert!(
        all.contains("policy.bindings[0].roles: role `nobody` is not defined"),
        "{all}"
    );
    assert!(
        all.contains("policy.approvals[0].approvers: role `ghost` is not defined"),
        "{all}"
    );
    assert!(policy()
        .validate(&["status", "history", "can", "whoami", "help", "scale", "restart"])
        .is_empty());
}

#[test]
fn bad_principals_in_config_are_rejected() {
    let err =
        toml::from_str::<Policy>("[[bindings]]\nprincipal = \"alice\"\nroles = []\n").unwrap_err();
    assert!(err.to_string().contains("expected <kind>:<id>"), "{err}");
}

/// A policy where two rules can hold for one request.
const STRICT: &str = r#"
[[roles]]
name = "admin"
grants = [{ verbs = ["*"] }]

[[roles]]
name = "dba"
grants = [{ verbs = ["*"] }]

[[roles]]
name = "ops"
grants = [{ verbs = ["restart"] }]

[[bindings]]
principal = "cli:admin"
roles = ["admin"]

[[bindings]]
principal = "cli:dba"
roles = ["dba"]

[[bindings]]
principal = "cli:both"
roles = ["admin", "dba"]

[[bindings]]
principal = "cli:ops"
roles = ["ops"]

[[approvals]]
name = "production-restart"
verbs = ["restart"]
environments = ["production"]
approvers = ["admin"]

[[approvals]]
name = "postgres-guard"
verbs = ["restart"]
services = ["postgres"]
approvers = ["dba"]
"#;

fn target<'a>(service: &'a str, env: &'a str) -> Target<'a> {
    Target {
        service: Some(service),
        namespace: Some("data"),
        cluster: Some("default"),
        environment: Some(env),
        cronjob: None,
    }
}

fn decide(policy: &Policy, targets: &[Target<'_>]) -> oncall_permissions::Decision {
    let principals = [p("cli:ops")];
    let decisions = targets
        .iter()
        .map(|t| {
            policy.evaluate(&Request {
                principals: &principals,
                channel: "cli:console",
                verb: "restart",
                target: t.clone(),
                conditions: &[],
            })
        })
        .collect();
    policy.combine(decisions)
}

#[test]
fn every_matching_approval_rule_holds_across_targets() {
    use oncall_permissions::Decision;
    let policy: Policy = toml::from_str(STRICT).unwrap();
    // (targets, the rule string the request is held for; None = allowed)
    let table: Vec<(Vec<Target<'_>>, Option<&str>)> = vec![
        (vec![target("frontend", "staging")], None),
        (
            vec![target("frontend", "production")],
            Some("production-restart"),
        ),
        // The rule on the second target is not lost.
        (
            vec![target("frontend", "staging"), target("postgres", "staging")],
            Some("postgres-guard"),
        ),
        // Both rules on one target: the strictest is both.
        (
            vec![target("postgres", "production")],
            Some("production-restart + postgres-guard"),
        ),
        // Collected across targets, each once.
        (
            vec![
                target("frontend", "production"),
                target("postgres", "staging"),
                target("backend", "production"),
            ],
            Some("production-restart + postgres-guard"),
        ),
    ];
    for (targets, expected) in table {
        let got = decide(&policy, &targets);
        match (expected, &got) {
            (None, Decision::Allow { .. }) => {}
            (Some(rule), Decision::NeedsApproval { rule: held, .. }) => {
                assert_eq!(held, rule, "{targets:?}")
            }
            _ => panic!("{targets:?}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn an_approver_must_satisfy_every_rule_a_request_is_held_for() {
    let policy: Policy = toml::from_str(STRICT).unwrap();
    let both = "production-restart + postgres-guard";
    let requester = p("cli:ops");
    let table = [
        ("cli:admin", both, false),
        ("cli:dba", both, false),
        ("cli:both", both, true),
        ("cli:admin", "production-restart", true),
        ("cli:dba", "postgres-guard", true),
        ("cli:dba", "production-restart", false),
    ];
    for (approver, rule, ok) in table {
        let got = policy.may_approve(rule, &[p(approver)], &requester);
        assert_eq!(got.is_ok(), ok, "{approver} on {rule}: {got:?}");
    }
}

#[test]
fn four_eyes_compares_people_not_platform_ids() {
    let text =
        format!("{STRICT}\n[[people]]\nname = \"sam\"\nids = [\"cli:both\", \"slack:USAM\"]\n");
    let policy: Policy = toml::from_str(&text).unwrap();
    // Sam asked on Slack and tries to approve from another identity.
    let got = policy.may_approve("production-restart", &[p("cli:both")], &p("slack:USAM"));
    let why = got.unwrap_err();
    assert_eq!(why.rule, "four-eyes");
    assert!(
        why.explanation.contains("same person"),
        "{}",
        why.explanation
    );
    // Someone else with the role still may.
    assert!(policy
        .may_approve("production-restart", &[p("cli:admin")], &p("slack:USAM"))
        .is_ok());
    // An id can belong to one person only.
    let twice = format!("{text}\n[[people]]\nname = \"kim\"\nids = [\"slack:USAM\"]\n");
    let policy: Policy = toml::from_str(&twice).unwrap();
    let errors = policy.validate(&["restart"]);
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("policy.people[1].ids")),
        "{errors:?}"
    );
}

const JOBS: &str = r#"
[[roles]]
name = "backup-runner"
grants = [{ verbs = ["job-run"], cronjobs = ["postgres-backup"] }]

[[roles]]
name = "dba"
grants = [{ verbs = ["*"] }]

[[bindings]]
principal = "cli:runner"
roles = ["backup-runner"]

[[bindings]]
principal = "cli:dba"
roles = ["dba"]

[[approvals]]
name = "report-needs-dba"
verbs = ["job-run"]
cronjobs = ["nightly-report"]
approvers = ["dba"]
"#;

#[test]
fn grants_and_approval_rules_can_name_cronjobs() {
    let policy: Policy = toml::from_str(JOBS).unwrap();
    // (who, verb, cronjob, expected label)
    let table = [
        ("cli:runner", "job-run", Some("postgres-backup"), "allow"),
        ("cli:runner", "job-run", Some("nightly-report"), "deny"),
        // A grant naming CronJobs never matches a command on none.
        ("cli:runner", "job-run", None, "deny"),
        ("cli:runner", "scale", None, "deny"),
        ("cli:dba", "job-run", Some("postgres-backup"), "allow"),
        (
            "cli:dba",
            "job-run",
            Some("nightly-report"),
            "needs_approval",
        ),
        ("cli:dba", "scale", None, "allow"),
    ];
    for (who, verb, cronjob, expected) in table {
        let principals = [p(who)];
        let d = policy.evaluate(&Request {
            principals: &principals,
            channel: "cli:console",
            verb,
            target: Target {
                service: Some("postgres"),
                namespace: Some("data"),
                cronjob,
                ..Default::default()
            },
            conditions: &[],
        });
        assert_eq!(d.label(), expected, "{who} {verb} {cronjob:?}: {d:?}");
        if let Some(job) = cronjob.filter(|_| expected == "allow") {
            assert!(
                d.reason().explanation.contains(&format!("cronjob {job}")),
                "{d:?}"
            );
        }
    }
}
