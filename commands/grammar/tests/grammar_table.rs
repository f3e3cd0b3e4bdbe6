//! Table tests for the command language: good text → the exact `Command`,
//! bad text → a short message and the right usage line.

use std::time::Duration;

use oncall_grammar::verbs::*;
use oncall_grammar::{parse, validate, Command, HistoryFilter, VERBS};
use oncall_grammar::{Catalog, ServiceEntry};

fn catalog() -> Catalog {
    let entry = |name: &str, max: u32, reason: Option<&str>| ServiceEntry {
        name: name.into(),
        context: None,
        namespace: "default".into(),
        deployment: None,
        environment: Some("production".into()),
        health_urls: vec![],
        min_replicas: 0,
        max_replicas: max,
        max_replicas_reason: reason.map(Into::into),
        min_replicas_reason: None,
        description: None,
        cronjobs: vec![],
    };
    let mut oauth = entry("oauth2-server", 10, None);
    oauth.min_replicas = 2;
    oauth.min_replicas_reason = Some("the HPA floor".into());
    let mut backend = entry("backend", 20, None);
    backend.cronjobs = vec!["db-backup".into()];
    Catalog::new(vec![
        backend,
        entry("notification-service", 20, None),
        entry(
            "recurring-task-service",
            12,
            Some("one consumer per Kafka partition"),
        ),
        oauth,
    ])
}

#[test]
fn good_commands_parse_to_typed_commands() {
    let table: Vec<(&str, Command, bool)> = vec![
        ("", Command::Help(Help { verb: None }), false),
        ("/oncall", Command::Help(Help { verb: None }), false),
        ("help", Command::Help(Help { verb: None }), false),
        (
            "help scale",
            Command::Help(Help {
                verb: Some("scale".into()),
            }),
            false,
        ),
        (
            "/oncall scale backend 5",
            Command::Scale(Scale {
                service: "backend".into(),
                replicas: 5,
                dry_run: false,
                force: false,
            }),
            false,
        ),
        (
            "scale backend 5",
            Command::Scale(Scale {
                service: "backend".into(),
                replicas: 5,
                dry_run: false,
                force: false,
            }),
            false,
        ),
        (
            "SCALE backend 0 --dry-run",
            Command::Scale(Scale {
                service: "backend".into(),
                replicas: 0,
                dry_run: true,
                force: false,
            }),
            false,
        ),
        (
            "scale --public backend 3",
            Command::Scale(Scale {
                service: "backend".into(),
                replicas: 3,
                dry_run: false,
                force: false,
            }),
            true,
        ),
        (
            "restart notification-service",
            Command::Restart(Restart {
                services: vec!["notification-service".into()],
                dry_run: false,
            }),
            false,
        ),
        ("restart backend recurring-task-service --dry-run", Command::Restart(Restart { services: vec!["backend".into(), "recurring-task-service".into()], dry_run: true }), false),
        ("restart --all -n default", Command::RestartAll(RestartAll { namespace: "default".into(), dry_run: false }), false),
        ("scale oauth2-server 10 --force", Command::Scale(Scale { service: "oauth2-server".into(), replicas: 10, dry_run: false, force: true }), false),
        ("rollout status backend --wait 5m", Command::RolloutStatus(RolloutStatus { service: "backend".into(), wait: Some(Duration::from_secs(300)) }), false),
        ("rollout history oauth2-server", Command::RolloutHistory(RolloutHistory { service: "oauth2-server".into() }), false),
        ("rollback oauth2-server", Command::Rollback(Rollback { service: "oauth2-server".into(), to_revision: None, dry_run: false }), false),
        ("rollback oauth2-server --to-revision 0", Command::Rollback(Rollback { service: "oauth2-server".into(), to_revision: None, dry_run: false }), false),
        ("rollback oauth2-server --to-revision=3 --dry-run", Command::Rollback(Rollback { service: "oauth2-server".into(), to_revision: Some(3), dry_run: true }), false),
        ("set image backend backend=ghcr.io/example/todo-backend:1.5.0", Command::SetImage(SetImage { service: "backend".into(), container: Some("backend".into()), image: "ghcr.io/example/todo-backend:1.5.0".into(), dry_run: false }), false),
        ("set image oauth2-server registry.local:5000/oauth@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Command::SetImage(SetImage { service: "oauth2-server".into(), container: None, image: "registry.local:5000/oauth@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(), dry_run: false }), false),
        (
            "logs backend --container daprd --tail 20 --since 10m --previous --grep 'connection refused'",
            Command::Logs(LogsRequest { target: "backend".into(), container: Some("daprd".into()), tail: Some(20), since: Some(Duration::from_secs(600)), previous: true, grep: Some("connection refused".into()) }),
            false,
        ),
        ("logs backend-7d9f8c6b5d-x2x9k", Command::Logs(LogsRequest { target: "backend-7d9f8c6b5d-x2x9k".into(), container: None, tail: None, since: None, previous: false, grep: None }), false),
        ("pods default", Command::Pods(Pods { target: "default".into() }), false),
        ("events oauth2-server --since 30m", Command::Events(Events { target: "oauth2-server".into(), since: Some(Duration::from_secs(1800)) }), false),
        ("hpa oauth2-server", Command::Hpa(Hpa { service: "oauth2-server".into(), min: None, max: None, dry_run: false, force: false }), false),
        ("hpa oauth2-server --min 3 --max 10", Command::Hpa(Hpa { service: "oauth2-server".into(), min: Some(3), max: Some(10), dry_run: false, force: false }), false),
        ("hpa oauth2-server --max 10 --force", Command::Hpa(Hpa { service: "oauth2-server".into(), min: None, max: Some(10), dry_run: false, force: true }), false),
        ("health backend", Command::Health(Health { service: "backend".into() }), false),
        ("diagnose oauth2-server", Command::Diagnose(Diagnose { target: "oauth2-server".into() }), false),
        ("job run db-backup -n default --name manual-backup-20261122", Command::JobRun(JobRun { cronjob: "db-backup".into(), name: Some("manual-backup-20261122".into()), namespace: Some("default".into()), dry_run: false }), false),
        ("quarantine backend-7d9f8c6b5d-x2x9k", Command::Quarantine(Quarantine { pod: "backend-7d9f8c6b5d-x2x9k".into(), on: true, dry_run: false }), false),
        ("unquarantine backend-7d9f8c6b5d-x2x9k --dry-run", Command::Quarantine(Quarantine { pod: "backend-7d9f8c6b5d-x2x9k".into(), on: false, dry_run: true }), false),
        ("env set backend DB_POOL_SIZE=30 DB_MAX_OVERFLOW=20", Command::EnvSet(EnvSet { service: "backend".into(), vars: vec![("DB_POOL_SIZE".into(), "30".into()), ("DB_MAX_OVERFLOW".into(), "20".into())], container: None, dry_run: false }), false),
        ("env set backend 'GREETING=hello world' --container backend", Command::EnvSet(EnvSet { service: "backend".into(), vars: vec![("GREETING".into(), "hello world".into())], container: Some("backend".into()), dry_run: false }), false),
        ("env unset backend DB_MAX_OVERFLOW", Command::EnvUnset(EnvUnset { service: "backend".into(), keys: vec!["DB_MAX_OVERFLOW".into()], container: None, dry_run: false }), false),
        ("top oauth2-server", Command::Top(Top { target: "oauth2-server".into() }), false),
        (
            "status oauth2-server --public",
            Command::Status(Status {
                service: "oauth2-server".into(),
            }),
            true,
        ),
        (
            "history",
            Command::History(HistoryFilter {
                user: None,
                service: None,
                since: None,
                limit: 20,
            }),
            false,
        ),
        (
            "history --user cli:operator --service backend --since '2h 30m' --limit=5",
            Command::History(HistoryFilter {
                user: Some("cli:operator".into()),
                service: Some("backend".into()),
                since: Some(Duration::from_secs(9000)),
                limit: 5,
            }),
            false,
        ),
        ("whoami", Command::Whoami(Whoami), false),
        (
            "can cli:viewer scale backend 5",
            Command::Can(Can {
                principal: "cli:viewer".into(),
                command: Box::new(Command::Scale(Scale {
                    service: "backend".into(),
                    replicas: 5,
                    dry_run: false,
                    force: false,
                })),
            }),
            false,
        ),
        (
            "approve k3f9qa",
            Command::Approve(Approve {
                id: "k3f9qa".into(),
            }),
            false,
        ),
        (
            "deny k3f9qa",
            Command::Deny(Deny {
                id: "k3f9qa".into(),
            }),
            false,
        ),
    ];
    for (text, expected, public) in table {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.command, expected, "{text}");
        assert_eq!(parsed.public, public, "{text}");
        // The canonical text parses back to the same command.
        let again = parse(&parsed.command.to_string()).unwrap();
        assert_eq!(again.command, expected, "round trip of {text}");
        validate(&parsed.command, &catalog()).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

#[test]
fn bad_input_gets_a_short_message_and_the_right_usage() {
    let long = format!("scale backend {}", "9".repeat(1000));
    let table: Vec<(&str, &str, &str)> = vec![
        // (input, message contains, usage contains)
        (
            "scael backend 5",
            "unknown command `scael` — did you mean `scale`?",
            "/oncall help",
        ),
        ("restrat backend", "did you mean `restart`?", "/oncall help"),
        ("frobnicate", "unknown command `frobnicate`", "/oncall help"),
        // Durations are capped, so time arithmetic on them can't overflow.
        (
            "events oauth2-server --since 20000y",
            "`--since` is at most 365d",
            "usage: /oncall events",
        ),
        (
            "history --since 400d",
            "`--since` is at most 365d",
            "usage: /oncall history",
        ),
        (
            "scale",
            "`scale` needs a service and a replica count",
            "usage: /oncall scale <service> <replicas> [--dry-run]",
        ),
        (
            "scale backend",
            "`scale` needs a replica count",
            "usage: /oncall scale",
        ),
        (
            "scale backend 5 6",
            "`scale` takes no argument `6`",
            "usage: /oncall scale",
        ),
        (
            "scale backend five",
            "replicas must be a whole number from 0 to 1000, not `five`",
            "usage: /oncall scale",
        ),
        ("scale backend -1", "not `-1`", "usage: /oncall scale"),
        ("scale backend 1.5", "not `1.5`", "usage: /oncall scale"),
        ("scale backend +3", "not `+3`", "usage: /oncall scale"),
        (
            "scale backend 99999999999",
            "not `99999999999`",
            "usage: /oncall scale",
        ),
        (
            "scale Backend 5",
            "`Backend` is not a valid service name: use only lower-case letters",
            "usage: /oncall scale",
        ),
        (
            "scale back_end 5",
            "not a valid service name",
            "usage: /oncall scale",
        ),
        (
            "scale -backend 5",
            "must start and end with a letter or digit",
            "usage: /oncall scale",
        ),
        (
            "restart backend --force",
            "`restart` has no flag `--force`",
            "usage: /oncall restart <service>",
        ),
        (
            "restart backend --dryrun",
            "did you mean `--dry-run`?",
            "usage: /oncall restart",
        ),
        (
            "restart backend --dry-run=yes",
            "`--dry-run` takes no value",
            "usage: /oncall restart",
        ),
        (
            "status",
            "`status` needs a service",
            "usage: /oncall status <service>",
        ),
        (
            "history --since soon",
            "`soon` is not a duration humantime can read",
            "usage: /oncall history",
        ),
        (
            "history --since",
            "`--since` needs a value (DURATION)",
            "usage: /oncall history",
        ),
        (
            "history --limit 0",
            "`--limit` must be a whole number from 1 to 100",
            "usage: /oncall history",
        ),
        ("history --limit 500", "not `500`", "usage: /oncall history"),
        (
            "history --user alice",
            "`alice` is not a principal",
            "usage: /oncall history",
        ),
        (
            "history --limit 5 --limit 6",
            "`--limit` was given twice",
            "usage: /oncall history",
        ),
        (
            "history extra",
            "`history` takes no argument `extra`",
            "usage: /oncall history",
        ),
        (
            "logs backend --grep 'oops",
            "a ' quote was opened but never closed",
            "/oncall help",
        ),
        (
            "can",
            "`can` needs a principal and a command",
            "usage: /oncall can",
        ),
        (
            "can cli:viewer",
            "`can` needs a command to explain",
            "usage: /oncall can",
        ),
        (
            "can viewer scale backend 5",
            "`viewer` is not a principal",
            "usage: /oncall can",
        ),
        (
            "can cli:a can cli:b whoami",
            "`can` explains commands, not another `can`",
            "/oncall help",
        ),
        (
            "can cli:viewer scael backend 5",
            "did you mean `scale`?",
            "/oncall help",
        ),
        (
            "approve",
            "`approve` needs a request id",
            "usage: /oncall approve <id>",
        ),
        (
            "approve K3F9QA",
            "not a valid request id",
            "usage: /oncall approve",
        ),
        ("help scael", "did you mean `scale`?", "/oncall help"),
        (
            "restart --all",
            "`restart --all` needs the namespace: `-n <namespace>`",
            "usage: /oncall restart",
        ),
        (
            "restart backend --all -n default",
            "not both",
            "usage: /oncall restart",
        ),
        (
            "restart backend backend",
            "`backend` is named twice",
            "usage: /oncall restart",
        ),
        (
            "restart backend -x default",
            "`restart` has no flag `-x`",
            "usage: /oncall restart",
        ),
        (
            "restart --all -n",
            "`--namespace` needs a value",
            "usage: /oncall restart",
        ),
        (
            "rollout status backend --wait 2h",
            "`--wait` is at most 30m",
            "usage: /oncall rollout status",
        ),
        ("rollout", "unknown command `rollout`", "/oncall help"),
        (
            "rollback backend --to-revision -1",
            "must be a revision number",
            "usage: /oncall rollback",
        ),
        (
            "rollback backend --to-revision two",
            "must be a revision number, not `two`",
            "usage: /oncall rollback",
        ),
        (
            "set image backend",
            "`set image` needs an image",
            "usage: /oncall set image",
        ),
        (
            "set image backend Foo:1",
            "`Foo:1` is not a valid image reference",
            "usage: /oncall set image",
        ),
        (
            "set image backend app=",
            "`` is not a valid image reference: it is empty",
            "usage: /oncall set image",
        ),
        (
            "set image backend nginx:bad tag",
            "takes no argument `tag`",
            "usage: /oncall set image",
        ),
        (
            "logs backend --tail 0",
            "`--tail` must be a whole number from 1 to 1000",
            "usage: /oncall logs",
        ),
        (
            "logs backend --grep '(unclosed'",
            "is not a valid regular expression",
            "usage: /oncall logs",
        ),
        (
            "hpa backend --min 5 --max 2",
            "`--min 5` is above `--max 2`",
            "usage: /oncall hpa",
        ),
        (
            "hpa backend --min 0",
            "`--min` must be a whole number from 1",
            "usage: /oncall hpa",
        ),
        (
            "hpa backend --dry-run",
            "`--dry-run` goes with `--min`/`--max`",
            "usage: /oncall hpa",
        ),
        (
            "env set backend",
            "`env set` needs at least one KEY=VALUE",
            "usage: /oncall env set",
        ),
        (
            "env set backend POOL",
            "`POOL` is not KEY=VALUE",
            "usage: /oncall env set",
        ),
        (
            "env set backend 1BAD=2",
            "`1BAD` is not a valid environment variable name",
            "usage: /oncall env set",
        ),
        (
            "env set backend DB_PASSWORD=hunter2",
            "`DB_PASSWORD` is named like a secret",
            "usage: /oncall env set",
        ),
        (
            "env set backend DATABASE_URL=postgres://app:pw@db/app",
            "`DATABASE_URL` has a value that looks like a credential",
            "usage: /oncall env set",
        ),
        (
            "env set backend AUTH=AKIAIOSFODNN7EXAMPLE",
            "looks like a credential",
            "usage: /oncall env set",
        ),
        (
            "env set backend A=1 A=2",
            "`A` is set twice",
            "usage: /oncall env set",
        ),
        (
            "env unset backend",
            "`env unset` needs at least one KEY",
            "usage: /oncall env unset",
        ),
        (
            "job run Backup",
            "`Backup` is not a valid CronJob name",
            "usage: /oncall job run",
        ),
        (
            "quarantine",
            "`quarantine` needs a pod",
            "usage: /oncall quarantine <pod>",
        ),
        (
            &long,
            "the command is 1014 characters long; the limit is 1000",
            "/oncall help",
        ),
    ];
    for (text, message, usage) in table {
        let err = parse(text)
            .err()
            .unwrap_or_else(|| panic!("`{text}` should not parse"));
        let shown = err.to_string();
        assert!(shown.contains(message), "`{text}`: message was `{shown}`");
        assert!(
            err.usage().contains(usage),
            "`{text}`: usage was `{}`",
            err.usage()
        );
        assert!(shown.len() < 200, "`{text}`: message too long: {shown}");
    }
}

#[test]
fn catalog_checks_name_the_reason() {
    let table: Vec<(&str, &str)> =
        vec![
        (
            "scale recurring-task-service 13",
            "recurring-task-service is capped at 12 replicas (one consumer per Kafka partition)",
        ),
        ("scale backend 21", "backend is capped at 20 replicas"),
        // Autoscaler bounds are replica counts too: the catalog caps them.
        (
            "hpa recurring-task-service --min 40 --max 40",
            "recurring-task-service is capped at 12 replicas (one consumer per Kafka partition)",
        ),
        ("hpa oauth2-server --min 1", "oauth2-server needs at least 2 replicas"),
        (
            "scale oauth2-server 1",
            "oauth2-server needs at least 2 replicas (the HPA floor)",
        ),
        (
            "scale bakend 3",
            "unknown service `bakend` — did you mean `backend`?",
        ),
        ("status oauth-server", "did you mean `oauth2-server`?"),
        ("restart payments", "unknown service `payments`"),
        ("history --service bakend", "did you mean `backend`?"),
        (
            "can cli:viewer scale recurring-task-service 40",
            "capped at 12 replicas",
        ),
        // Only CronJobs a catalog service declares, in its namespace.
        (
            "job run db-bakup",
            "unknown cronjob `db-bakup` — did you mean `db-backup`?",
        ),
        (
            "job run db-backup -n vibe",
            "unknown cronjob `db-backup` in namespace `vibe`",
        ),
        ("job run drop-tables -n default", "unknown cronjob"),
    ];
    for (text, message) in table {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let err = validate(&parsed.command, &catalog())
            .err()
            .unwrap_or_else(|| panic!("`{text}` should be refused"));
        assert!(err.to_string().contains(message), "`{text}`: {err}");
        assert!(
            err.usage().starts_with("usage: /oncall"),
            "`{text}`: {}",
            err.usage()
        );
    }
    // Pods resolve to their deployment's service by Kubernetes' naming.
    let cat = catalog();
    let scope = cat
        .scope(&parse("logs backend-7d9f8c6b5d-x2x9k").unwrap().command)
        .unwrap();
    assert!(
        matches!(scope, oncall_grammar::Scope::Pod { service, .. } if service.name == "backend")
    );
    let scope = cat.scope(&parse("pods default").unwrap().command).unwrap();
    assert!(
        matches!(scope, oncall_grammar::Scope::Namespace { ref environment, .. } if environment.as_deref() == Some("production"))
    );
    // A declared CronJob belongs to its service.
    for text in ["job run db-backup", "job run db-backup -n default"] {
        let command = parse(text).unwrap().command;
        validate(&command, &cat).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(
            matches!(cat.scope(&command).unwrap(), oncall_grammar::Scope::CronJob { ref cronjob, service } if cronjob == "db-backup" && service.name == "backend"),
            "{text}"
        );
    }
    // A truly different name gets no misleading suggestion.
    let err = validate(&parse("status zzzzzz").unwrap().command, &catalog()).unwrap_err();
    assert!(!err.to_string().contains("did you mean"), "{err}");
}

#[test]
fn a_cronjob_is_declared_once_with_a_valid_name() {
    let mut services = catalog().services().to_vec();
    services[1].cronjobs = vec!["db-backup".into(), "Bad_Name".into()];
    let errors = Catalog::new(services).validate();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("services[1].cronjobs[0]: cronjob `db-backup` is declared twice")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("services[1].cronjobs[1]: `Bad_Name` is not a DNS-1123 label")),
        "{errors:?}"
    );
    assert!(catalog().validate().is_empty());
}

#[test]
fn every_verb_has_usage_summary_and_a_parsing_example() {
    for verb in VERBS {
        assert!(!verb.summary.is_empty(), "{}", verb.name);
        let parsed =
            parse(verb.example).unwrap_or_else(|e| panic!("example of {}: {e}", verb.name));
        assert_eq!(
            parsed.command.spec().name,
            verb.name,
            "example of {} parses to its verb",
            verb.name
        );
        assert!(verb.usage().starts_with(verb.name));
    }
}

#[test]
fn approval_conditions_come_from_the_command() {
    assert_eq!(
        parse("scale backend 0").unwrap().command.conditions(),
        vec!["scale-to-zero"]
    );
    assert!(parse("scale backend 1")
        .unwrap()
        .command
        .conditions()
        .is_empty());
    assert!(parse("restart backend --dry-run")
        .unwrap()
        .command
        .is_dry_run());
    assert!(parse("scale backend 2").unwrap().command.is_mutating());
    assert!(!parse("status backend").unwrap().command.is_mutating());
    assert!(!parse("hpa backend").unwrap().command.is_mutating());
    assert_eq!(parse("hpa backend").unwrap().command.policy_verb(), "hpa");
    assert!(parse("hpa backend --max 4").unwrap().command.is_mutating());
    assert_eq!(
        parse("hpa backend --max 4").unwrap().command.policy_verb(),
        "hpa-set"
    );
    assert_eq!(
        parse("rollout status backend")
            .unwrap()
            .command
            .policy_verb(),
        "rollout-status"
    );
    assert_eq!(
        parse("scale backend 3 --force")
            .unwrap()
            .command
            .conditions(),
        vec!["force"]
    );
}

#[test]
fn commands_survive_serialization_for_approvals() {
    for text in [
        "scale backend 0",
        "restart backend --dry-run",
        "history --since 2h --limit 3",
    ] {
        let cmd = parse(text).unwrap().command;
        let json = serde_json::to_string(&cmd).unwrap();
        let back: Command = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cmd, "{json}");
    }
}

/// Incident verbs: the optional leading number, free text, repeated flags,
/// the global `--incident`, and canonical text that reads back the same
/// even when the text looks like a number or a flag.
#[test]
fn incident_verbs_and_their_canonical_text() {
    use oncall_grammar::incidents::*;
    let cases: Vec<(&str, Command)> = vec![
        (
            "incident declare P1 checkout errors --service backend --service oauth2-server",
            IncidentDeclare {
                severity: "P1".into(),
                title: "checkout errors".into(),
                services: vec!["backend".into(), "oauth2-server".into()],
            }
            .into(),
        ),
        ("incident ack", IncidentAck { incident: None }.into()),
        (
            "incident ack #12",
            IncidentAck { incident: Some(12) }.into(),
        ),
        (
            "incident note 12 5 replicas were enough",
            IncidentNote {
                incident: Some(12),
                text: "5 replicas were enough".into(),
            }
            .into(),
        ),
        (
            "incident note -- 5 replicas were enough",
            IncidentNote {
                incident: None,
                text: "5 replicas were enough".into(),
            }
            .into(),
        ),
        (
            "incident sev -- 3",
            IncidentSev {
                incident: None,
                severity: "3".into(),
            }
            .into(),
        ),
        (
            "incident status identified",
            IncidentStatus {
                incident: None,
                state: "identified".into(),
                note: None,
            }
            .into(),
        ),
        (
            "incident assign 3 slack:U0AB12CD Commander",
            IncidentAssign {
                incident: Some(3),
                principal: "slack:U0AB12CD".into(),
                role: "commander".into(),
            }
            .into(),
        ),
    ];
    for (text, expected) in cases {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.command, expected, "{text}");
        let canonical = parsed.command.to_string();
        assert_eq!(
            parse(&canonical).unwrap().command,
            expected,
            "{text} → {canonical}"
        );
    }
    assert_eq!(
        parse("scale backend 5 --incident 12").unwrap().incident,
        Some(12)
    );
    assert_eq!(
        parse("scale backend 5 --incident=#7").unwrap().incident,
        Some(7)
    );
    for (bad, says) in [
        ("scale backend 5 --incident", "needs an incident number"),
        ("scale backend 5 --incident 0", "needs an incident number"),
        ("scale backend 5 --incident 1 --incident 2", "given twice"),
        ("incident status 1 fixed", "not an incident state"),
        ("incident declare SEV-1", "needs a title"),
        ("incident sev 1 SEV_1", "not a severity"),
        ("incident assign 1 slack:U1 chief!", "not a role name"),
    ] {
        let e = parse(bad).unwrap_err();
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}
