//! The router end to end: policy, cluster, history in a real SQLite file.

use crate::common::{eventually, Harness};
use oncall::reply::{Outcome, Visibility};

#[tokio::test]
async fn operator_scales_and_the_row_is_committed_before_the_reply() {
    let h = Harness::new().await;
    let reply = h.run("cli:operator", "/oncall scale backend 5").await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    assert_eq!(reply.title, "Scaled backend 2 → 5");
    assert_eq!(reply.visibility, Visibility::Public);
    assert!(
        reply.to_console().contains("/oncall scale backend 2"),
        "undo is shown"
    );
    assert_eq!(h.replicas("default", "backend").await, 5);
    // The row is complete the moment the reply is returned.
    let rows = h.history().await;
    let row = &rows[0];
    assert_eq!(row.principal, "cli:operator");
    assert_eq!(row.platform, "cli");
    assert_eq!(row.channel, "console");
    assert_eq!(row.text, "/oncall scale backend 5");
    assert_eq!(row.command.as_deref(), Some("scale backend 5"));
    assert_eq!(row.verb.as_deref(), Some("scale"));
    assert_eq!(row.service.as_deref(), Some("backend"));
    assert_eq!(row.decision, "allow");
    assert_eq!(row.rule.as_deref(), Some("role operator, grant 2"));
    assert_eq!(row.outcome, "done");
    assert_eq!(row.summary.as_deref(), Some("backend 2 → 5"));
    assert!(row.mutating);
    // The same file opened fresh shows the row: it is on disk.
    if h.router.store().kind() == "sqlite" {
        let again = oncall::store::Store::open(&h.dir.path().join("oncall.db"))
            .await
            .unwrap();
        assert_eq!(
            again.invocation(row.id).await.unwrap().unwrap().outcome,
            "done"
        );
    }
}

#[tokio::test]
async fn a_denied_command_changes_nothing_and_says_which_rule() {
    let h = Harness::new().await;
    let generation = h.generation("default", "backend").await;
    let reply = h.run("cli:viewer", "scale backend 7").await;
    assert_eq!(reply.outcome, Outcome::Denied);
    assert_eq!(reply.visibility, Visibility::Private);
    let text = reply.to_console();
    assert!(text.contains("default deny: no grant matched"), "{text}");
    assert!(
        text.contains("cli:viewer (roles: viewer) may not `scale`"),
        "{text}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(h.replicas("default", "backend").await, 2);
    assert_eq!(h.generation("default", "backend").await, generation);
    let row = &h.history().await[0];
    assert_eq!(
        (row.decision.as_str(), row.outcome.as_str()),
        ("deny", "denied")
    );
    // An unknown principal has no roles at all.
    let reply = h.run("slack:UNOBODY", "status backend").await;
    assert_eq!(reply.outcome, Outcome::Denied);
    assert!(reply.to_console().contains("no roles"));
}

#[tokio::test]
async fn bad_input_is_answered_with_usage_and_recorded_as_invalid() {
    let h = Harness::new().await;
    for (text, expected) in [
        ("scael backend 5", "did you mean `scale`?"),
        ("scale backend", "usage: /oncall scale <service> <replicas>"),
        (
            "scale recurring-task-service 40",
            "recurring-task-service is capped at 12 replicas",
        ),
        ("scale bakend 2", "did you mean `backend`?"),
        ("history --since whenever", "not a duration"),
        ("scale backend 'five", "quote was opened but never closed"),
    ] {
        let reply = h.run("cli:admin", text).await;
        assert_eq!(reply.outcome, Outcome::Invalid, "{text}");
        assert!(
            reply.to_console().contains(expected),
            "{text}: {}",
            reply.to_console()
        );
    }
    assert_eq!(h.replicas("default", "backend").await, 2);
    assert_eq!(h.replicas("default", "recurring-task-service").await, 3);
    let rows = h.history().await;
    assert_eq!(rows.len(), 6);
    assert!(rows
        .iter()
        .all(|r| r.decision == "invalid" && r.outcome == "invalid" && r.error.is_some()));
}

#[tokio::test]
async fn status_shows_the_rollout_then_completion() {
    let h = Harness::new().await;
    h.run("cli:operator", "scale backend 4").await;
    let first = h.run("cli:viewer", "status backend").await;
    assert_eq!(first.outcome, Outcome::Info);
    assert!(
        first.title.starts_with("backend: Waiting for"),
        "{}",
        first.title
    );
    eventually("rollout complete in status", async || {
        let r = h.run("cli:viewer", "status backend").await;
        r.title == "backend: deployment \"backend\" successfully rolled out"
    })
    .await;
    let done = h.run("cli:viewer", "status backend").await.to_console();
    assert!(
        done.contains("4 desired · 4 updated · 4 ready · 4 available"),
        "{done}"
    );
    assert_eq!(done.matches("Running").count(), 4, "{done}");
    assert!(done.contains("NAME") && done.contains("RESTARTS"), "{done}");
}

#[tokio::test]
async fn an_idempotency_key_runs_once_even_when_repeated_concurrently() {
    let h = Harness::new().await;
    // dev-utilities is staging: restart needs no approval, and each restart
    // changes the template, so a second run would be visible.
    let before = h.generation("default", "dev-utilities").await;
    let mut inv = h.invocation("cli:operator", "restart dev-utilities");
    inv.idempotency_key = Some("T123:trigger-1".into());
    let (a, b, c) = tokio::join!(
        h.router.handle(inv.clone()),
        h.router.handle(inv.clone()),
        h.router.handle(inv.clone())
    );
    let done = [&a, &b, &c]
        .iter()
        .filter(|r| r.outcome == Outcome::Done)
        .count();
    assert!(done >= 1, "{a:?}");
    // Later repeats get the first reply, word for word.
    let d = h.router.handle(inv.clone()).await;
    let first = [&a, &b, &c]
        .into_iter()
        .find(|r| r.outcome == Outcome::Done)
        .unwrap();
    assert_eq!(&d, first);
    assert_eq!(
        h.generation("default", "dev-utilities").await,
        before + 1,
        "executed exactly once"
    );
    let rows = h.history().await;
    assert_eq!(
        rows.iter()
            .filter(|r| r.idempotency_key.as_deref() == Some("T123:trigger-1"))
            .count(),
        1
    );
}

#[tokio::test]
async fn history_filters_by_user_service_and_time() {
    let h = Harness::new().await;
    h.run("cli:operator", "scale backend 3").await;
    h.run("cli:viewer", "status frontend").await;
    h.clock.advance(std::time::Duration::from_secs(3 * 3600));
    h.run("cli:operator", "scale frontend 3").await;
    let all = h.run("cli:viewer", "history").await.to_console();
    assert!(
        all.contains("scale backend 3")
            && all.contains("status frontend")
            && all.contains("scale frontend 3"),
        "{all}"
    );
    let by_user = h
        .run("cli:viewer", "history --user cli:operator")
        .await
        .to_console();
    assert!(
        by_user.contains("scale backend 3") && !by_user.contains("status frontend"),
        "{by_user}"
    );
    let by_service = h
        .run("cli:viewer", "history --service frontend")
        .await
        .to_console();
    assert!(
        by_service.contains("scale frontend 3") && !by_service.contains("scale backend 3"),
        "{by_service}"
    );
    let recent = h.run("cli:viewer", "history --since 1h").await.to_console();
    assert!(
        recent.contains("scale frontend 3") && !recent.contains("scale backend 3"),
        "{recent}"
    );
    let two = h.run("cli:viewer", "history --limit 2").await;
    assert_eq!(
        two.title, "History: 2 command(s)",
        "the limit counts earlier commands, not this one"
    );
    let limited = h.run("cli:viewer", "history --limit 1").await;
    assert_eq!(limited.title, "History: 1 command(s)");
    assert!(
        limited.to_console().contains("history --limit 2"),
        "the newest earlier command"
    );
    // Newest first.
    let pos = |s: &str| all.find(s).unwrap();
    assert!(pos("scale frontend 3") < pos("scale backend 3"));
}

#[tokio::test]
async fn help_whoami_and_can_explain_without_running() {
    let h = Harness::new().await;
    let help = h.run("slack:UNOBODY", "help").await.to_console();
    for verb in [
        "scale", "restart", "status", "history", "whoami", "can", "approve", "deny",
    ] {
        assert!(help.contains(&format!("/oncall {verb}")), "{help}");
    }
    let one = h.run("cli:viewer", "help scale").await.to_console();
    assert!(one.contains("Example: `/oncall scale backend 5`"), "{one}");
    let me = h.run("cli:commander", "whoami").await.to_console();
    assert!(me.contains("incident-commander"), "{me}");
    let can = h.run("cli:viewer", "can cli:viewer scale backend 5").await;
    assert!(can.title.ends_with("? no"), "{}", can.title);
    let can = h
        .run("cli:viewer", "can cli:operator scale backend 0")
        .await;
    assert!(can.title.ends_with("? with approval"), "{}", can.title);
    let can = h
        .run("cli:viewer", "can cli:operator scale backend 3")
        .await;
    assert!(can.title.ends_with("? yes"), "{}", can.title);
    assert_eq!(
        h.replicas("default", "backend").await,
        2,
        "can never runs anything"
    );
}

#[tokio::test]
async fn dry_run_is_authorized_recorded_and_changes_nothing() {
    let h = Harness::new().await;
    let reply = h.run("cli:operator", "scale backend 0 --dry-run").await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    assert!(
        reply
            .title
            .starts_with("Dry run: backend would scale 2 → 0"),
        "{}",
        reply.title
    );
    assert_eq!(h.replicas("default", "backend").await, 2);
    assert!(h.history().await[0].dry_run);
    let reply = h.run("cli:viewer", "restart backend --dry-run").await;
    assert_eq!(
        reply.outcome,
        Outcome::Denied,
        "a dry run is authorized like the real thing"
    );
}

#[tokio::test]
async fn kubernetes_failures_are_one_clear_sentence() {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    config.services.push(oncall_grammar::ServiceEntry {
        name: "ghost".into(),
        context: None,
        namespace: "default".into(),
        deployment: Some("ghost-deployment".into()),
        environment: Some("staging".into()),
        health_urls: vec![],
        min_replicas: 0,
        max_replicas: 5,
        max_replicas_reason: None,
        min_replicas_reason: None,
        description: None,
        cronjobs: vec![],
    });
    let h = Harness::with_config(config).await;
    let reply = h.run("cli:operator", "scale ghost 2").await;
    assert_eq!(reply.outcome, Outcome::Failed);
    let text = reply.to_console();
    assert!(
        text.contains("deployment/ghost-deployment in namespace default was not found"),
        "{text}"
    );
    assert!(
        !text.contains("Status") && !text.contains("{"),
        "no raw dump: {text}"
    );
    let row = &h.history().await[0];
    assert_eq!(row.outcome, "failed");
    assert!(row.error.as_deref().unwrap().contains("was not found"));
}

#[tokio::test]
async fn history_shows_only_rows_the_caller_may_read() {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    let extra = r#"
[[policy.roles]]
name = "console-history"
grants = [{ verbs = ["history"], channels = ["cli:console"] }]

[[policy.bindings]]
principal = "cli:fe"
roles = ["console-history"]
"#;
    let more =
        oncall::config::Config::parse(&format!("{}\n{extra}", oncall::config::EXAMPLE), "example")
            .unwrap();
    config.policy = more.policy;
    let h = Harness::with_config(config).await;
    h.run("cli:operator", "status frontend").await;
    // A command in a Slack channel, and someone's direct message with the bot.
    let mut elsewhere = h.invocation("slack:U0OTHER", "status backend");
    elsewhere.platform = oncall::router::Platform::Slack;
    elsewhere.channel = "C0OPS".into();
    h.router.handle(elsewhere).await;
    let mut dm = h.invocation("slack:U0SOMEONE", "status backend");
    dm.platform = oncall::router::Platform::Slack;
    dm.channel = "D0DIRECT".into();
    h.router.handle(dm).await;

    // A grant for the console's history shows the console's rows; the rest
    // is counted, not shown.
    let fe = h.run("cli:fe", "history").await.to_console();
    assert!(fe.contains("status frontend"), "{fe}");
    assert!(!fe.contains("slack:U0OTHER"), "{fe}");
    assert!(!fe.contains("slack:U0SOMEONE"), "{fe}");
    assert!(fe.contains("2 row(s) hidden"), "{fe}");
    // An admin sees every channel's rows, but not another person's DMs.
    let admin = h.run("cli:admin", "history").await.to_console();
    assert!(admin.contains("cli:operator"), "{admin}");
    assert!(admin.contains("slack:U0OTHER"), "{admin}");
    assert!(!admin.contains("slack:U0SOMEONE"), "{admin}");
    assert!(admin.contains("1 row(s) hidden"), "{admin}");
}

#[tokio::test]
async fn did_you_mean_offers_only_services_the_caller_may_act_on() {
    let extra = r#"
[[policy.roles]]
name = "frontend-only"
grants = [{ verbs = ["status"], services = ["frontend"] }]

[[policy.bindings]]
principal = "cli:fe"
roles = ["frontend-only"]
"#;
    let config =
        oncall::config::Config::parse(&format!("{}\n{extra}", oncall::config::EXAMPLE), "example")
            .unwrap();
    let h = Harness::with_config(config).await;
    let r = h.run("cli:fe", "status frontnd").await.to_console();
    assert!(r.contains("did you mean `frontend`?"), "{r}");
    let r = h.run("cli:fe", "status bakend").await.to_console();
    assert!(r.contains("unknown service `bakend`"), "{r}");
    assert!(
        !r.contains("backend"),
        "not offered to someone who can't: {r}"
    );
    // Someone who may act on it is offered it.
    let r = h.run("cli:operator", "status bakend").await.to_console();
    assert!(r.contains("did you mean `backend`?"), "{r}");
}

#[tokio::test]
async fn following_rollouts_is_limited_per_principal() {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    config.limits.waits_per_principal = 1;
    let h = Harness::with_config(config).await;
    // A rollout that never completes: its new pods can't be scheduled.
    h.patch_deployment(
        "default",
        "backend",
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"sim.oncall.dev/fail": "Unschedulable"}}}}}),
    )
    .await;
    let router = h.router.clone();
    let mut long = h.invocation("cli:operator", "rollout status backend --wait 10m");
    let (progress, mut following) = tokio::sync::mpsc::unbounded_channel();
    long.progress = Some(progress);
    let first = tokio::spawn(async move { router.handle(long).await });
    // Its first progress report: it holds its slot and is following.
    following
        .recv()
        .await
        .expect("the first wait reports progress");
    let limited = |r: &oncall::reply::Reply| r.title.contains("Too many rollouts");
    let r = h
        .run("cli:operator", "rollout status backend --wait 1s")
        .await;
    assert!(limited(&r), "{}", r.to_console());
    assert!(
        r.to_console().contains("limits.waits_per_principal"),
        "{}",
        r.to_console()
    );
    // Someone else may still follow it; a plain status needs no slot.
    assert!(!limited(
        &h.run("cli:viewer", "rollout status backend --wait 1s")
            .await
    ));
    assert!(!limited(
        &h.run("cli:operator", "rollout status backend").await
    ));
    // The slot is released when the first wait ends.
    first.abort();
    let _ = first.await;
    eventually("the slot is free again", async || {
        !limited(
            &h.run("cli:operator", "rollout status backend --wait 1s")
                .await,
        )
    })
    .await;
}

#[tokio::test]
async fn changing_commands_are_limited_per_person() {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    config.limits.mutations_per_window = 2;
    config.limits.mutation_window = std::time::Duration::from_secs(60);
    // One person, two identities: one limit.
    config.policy.people.push(
        toml::from_str(
            r#"
name = "ops"
ids = ["cli:operator", "cli:operator2"]
"#,
        )
        .unwrap(),
    );
    config
        .policy
        .bindings
        .push(toml::from_str("principal = \"cli:operator2\"\nroles = [\"operator\"]").unwrap());
    let h = Harness::with_config(config).await;
    let limited = |r: &oncall::reply::Reply| r.title == "Too many changes at once";
    // Dry runs and reads don't count.
    for text in [
        "scale backend 7 --dry-run",
        "status backend",
        "hpa oauth2-server",
    ] {
        assert!(!limited(&h.run("cli:operator", text).await), "{text}");
    }
    assert_eq!(
        h.run("cli:operator", "scale backend 3").await.outcome,
        Outcome::Done
    );
    assert_eq!(
        h.run("cli:operator2", "scale backend 4").await.outcome,
        Outcome::Done
    );
    let r = h.run("cli:operator", "scale backend 5").await;
    assert!(limited(&r), "{}", r.to_console());
    assert_eq!(r.outcome, Outcome::Denied);
    let text = r.to_console();
    assert!(text.contains("limits.mutations_per_window"), "{text}");
    assert!(text.contains("Try again in"), "{text}");
    assert_eq!(h.replicas("default", "backend").await, 4, "nothing ran");
    let row = h.history().await.into_iter().max_by_key(|r| r.id).unwrap();
    assert_eq!(row.decision, "rate_limited");
    assert_eq!(row.rule.as_deref(), Some("limits.mutations_per_window"));
    // Someone else is not limited; a read still works for the limited one.
    assert_eq!(
        h.run("cli:commander", "scale backend 5").await.outcome,
        Outcome::Done
    );
    assert!(!limited(&h.run("cli:operator", "status backend").await));
    // Once the window has passed, changes run again.
    h.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(
        h.run("cli:operator2", "scale backend 6").await.outcome,
        Outcome::Done
    );
}

/// A command that changes nothing is recorded whole in one write, after it
/// ran and before its reply; a changing one is recorded before it runs and
/// completed after (two writes). Either way a repeat of its key gets the
/// first answer and adds no row.
#[tokio::test]
async fn reads_are_recorded_in_one_write_and_changes_in_two() {
    let h = Harness::new().await;
    if h.router.store().kind() != "sqlite" {
        eprintln!("SKIPPED reads_are_recorded_in_one_write_and_changes_in_two: it counts the SQLite group commit's writes");
        return;
    }
    let writes = || h.router.store().commit_counts().1;
    let rows = async || h.history().await.len();
    let (w0, r0) = (writes(), rows().await);
    let first = h
        .run_keyed("cli:operator", "status backend", "read-1")
        .await;
    assert_eq!(writes() - w0, 1, "one write for a read");
    assert_eq!(rows().await, r0 + 1);
    let row = h.history().await.into_iter().max_by_key(|r| r.id).unwrap();
    assert_eq!(
        (
            row.verb.as_deref(),
            row.outcome.as_str(),
            row.idempotency_key.as_deref()
        ),
        (Some("status"), "info", Some("read-1"))
    );
    let again = h
        .run_keyed("cli:operator", "status backend", "read-1")
        .await;
    assert_eq!(again.to_console(), first.to_console(), "the stored answer");
    assert_eq!(rows().await, r0 + 1, "no row for a repeat");
    let w1 = writes();
    let r = h
        .run_keyed("cli:operator", "scale backend 4", "change-1")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(writes() - w1, 2, "claimed before it ran, completed after");
    let again = h
        .run_keyed("cli:operator", "scale backend 4", "change-1")
        .await;
    assert_eq!(again.to_console(), r.to_console());
    assert_eq!(rows().await, r0 + 2);
}
