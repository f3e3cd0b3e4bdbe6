//! The approval flow end to end: held, refused to the requester and to
//! non-approvers, run exactly as requested by an approver, expired, denied.

use std::time::Duration;

use crate::common::Harness;
use oncall::reply::Outcome;

/// The approval id from a pending reply's Approve button.
fn approval_id(reply: &oncall::reply::Reply) -> String {
    for block in &reply.blocks {
        if let oncall::reply::Block::Actions { buttons } = block {
            return buttons
                .iter()
                .find(|b| b.action_id == "approve")
                .unwrap()
                .value
                .clone();
        }
    }
    panic!("no approve button in {}", reply.to_console());
}

#[tokio::test]
async fn scale_to_zero_in_production_waits_for_a_second_person() {
    let h = Harness::new().await;
    let held = h
        .run("cli:operator", "scale recurring-task-service 0")
        .await;
    assert_eq!(held.outcome, Outcome::Pending, "{}", held.to_console());
    assert!(held.to_console().contains("production-scale-to-zero"));
    let id = approval_id(&held);
    assert_eq!(
        h.replicas("default", "recurring-task-service").await,
        3,
        "nothing ran yet"
    );
    let row = &h.history().await[0];
    assert_eq!(
        (row.decision.as_str(), row.outcome.as_str()),
        ("needs_approval", "pending_approval")
    );
    assert_eq!(row.approval_id.as_deref(), Some(id.as_str()));

    // The requester can never approve their own request.
    let own = h.run("cli:operator", &format!("approve {id}")).await;
    assert_eq!(own.outcome, Outcome::Denied);
    assert!(
        own.to_console()
            .contains("made this request and cannot approve it"),
        "{}",
        own.to_console()
    );
    // Nor can someone without an approver role.
    let viewer = h.run("cli:viewer", &format!("approve {id}")).await;
    assert_eq!(viewer.outcome, Outcome::Denied);
    assert!(
        viewer
            .to_console()
            .contains("needs admin or incident-commander"),
        "{}",
        viewer.to_console()
    );
    assert_eq!(h.replicas("default", "recurring-task-service").await, 3);

    // An incident commander approves: it runs exactly as requested.
    let approved = h.run("cli:commander", &format!("approve {id}")).await;
    assert_eq!(approved.outcome, Outcome::Done, "{}", approved.to_console());
    assert!(
        approved
            .title
            .contains("Scaled recurring-task-service 3 → 0"),
        "{}",
        approved.title
    );
    let text = approved.to_console();
    assert!(
        text.contains("Requested by cli:operator, approved by cli:commander"),
        "{text}"
    );
    assert_eq!(h.replicas("default", "recurring-task-service").await, 0);

    // Every step is in the history; the execution is in the requester's name.
    let rows = h.history().await;
    let exec = rows
        .iter()
        .find(|r| r.decision == "approved")
        .expect("execution row");
    assert_eq!(exec.principal, "cli:operator");
    assert_eq!(
        exec.command.as_deref(),
        Some("scale recurring-task-service 0")
    );
    assert_eq!(exec.outcome, "done");
    assert_eq!(exec.reason.as_deref(), Some("approved by cli:commander"));
    assert_eq!(exec.approval_id.as_deref(), Some(id.as_str()));
    let approval = h.router.store().approval(&id).await.unwrap().unwrap();
    assert_eq!(approval.state, "approved");
    assert_eq!(approval.decided_by.as_deref(), Some("cli:commander"));
    assert_eq!(approval.execution_invocation_id, Some(exec.id));

    // A second approval runs nothing.
    h.run("cli:operator", "scale recurring-task-service 2")
        .await;
    let again = h.run("cli:admin", &format!("approve {id}")).await;
    assert_eq!(again.outcome, Outcome::Denied);
    assert!(again.title.contains("already approved"), "{}", again.title);
    assert_eq!(h.replicas("default", "recurring-task-service").await, 2);
}

#[tokio::test]
async fn requests_expire() {
    let h = Harness::new().await;
    let generation = h.generation("default", "backend").await;
    let held = h.run("cli:operator", "restart backend").await;
    assert_eq!(held.outcome, Outcome::Pending);
    let id = approval_id(&held);
    h.clock.advance(Duration::from_secs(15 * 60 + 1));
    let late = h.run("cli:admin", &format!("approve {id}")).await;
    assert_eq!(late.outcome, Outcome::Denied);
    assert!(late.title.contains("expired"), "{}", late.title);
    assert_eq!(
        h.generation("default", "backend").await,
        generation,
        "nothing ran"
    );
    assert_eq!(
        h.router.store().approval(&id).await.unwrap().unwrap().state,
        "expired"
    );
}

#[tokio::test]
async fn approvers_deny_and_requesters_withdraw() {
    let h = Harness::new().await;
    let generation = h.generation("default", "backend").await;
    let first = approval_id(&h.run("cli:operator", "restart backend").await);
    let second = approval_id(&h.run("cli:operator", "restart notification-service").await);
    // A viewer can't deny someone else's request.
    assert_eq!(
        h.run("cli:viewer", &format!("deny {first}")).await.outcome,
        Outcome::Denied
    );
    let denied = h.run("cli:admin", &format!("deny {first}")).await;
    assert_eq!(denied.outcome, Outcome::Done);
    assert!(
        denied
            .to_console()
            .contains("denied by cli:admin. Nothing was run."),
        "{}",
        denied.to_console()
    );
    let withdrawn = h.run("cli:operator", &format!("deny {second}")).await;
    assert!(withdrawn.title.contains("withdrawn"), "{}", withdrawn.title);
    // Neither can be approved afterwards.
    for id in [&first, &second] {
        let r = h.run("cli:admin", &format!("approve {id}")).await;
        assert!(r.title.contains("already denied"), "{}", r.title);
    }
    assert_eq!(h.generation("default", "backend").await, generation);
    assert_eq!(
        h.router
            .store()
            .approval(&first)
            .await
            .unwrap()
            .unwrap()
            .decided_by
            .as_deref(),
        Some("cli:admin")
    );
}

#[tokio::test]
async fn unknown_ids_and_dry_runs() {
    let h = Harness::new().await;
    let r = h.run("cli:admin", "approve abcd12").await;
    assert_eq!(r.outcome, Outcome::Invalid);
    // A dry run of a held operation needs no approval: it changes nothing.
    let r = h.run("cli:operator", "restart backend --dry-run").await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
}

#[tokio::test]
async fn the_sweep_expires_requests_nobody_touched() {
    let h = Harness::new().await;
    let id = approval_id(&h.run("cli:operator", "restart backend").await);
    let store = h.router.store();
    assert_eq!(
        store
            .expire_approvals(h.clock.now().as_millisecond())
            .await
            .unwrap(),
        0,
        "not yet"
    );
    h.clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(
        store
            .expire_approvals(h.clock.now().as_millisecond())
            .await
            .unwrap(),
        1
    );
    let row = store.approval(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "expired");
    let r = h.run("cli:admin", &format!("approve {id}")).await;
    assert!(r.title.contains("already expired"), "{}", r.title);
}

#[tokio::test]
async fn namespace_wide_and_multi_target_commands_meet_every_services_rule() {
    let extra = r#"
[[policy.approvals]]
name = "utilities-guard"
verbs = ["restart"]
services = ["dev-utilities"]
approvers = ["admin"]
"#;
    let config =
        oncall::config::Config::parse(&format!("{}\n{extra}", oncall::config::EXAMPLE), "example")
            .unwrap();
    let h = crate::common::Harness::with_config(config).await;
    // The namespace is evaluated as every catalog service in it.
    let held = h.run("cli:operator", "restart --all -n default").await;
    assert_eq!(
        held.outcome,
        oncall::reply::Outcome::Pending,
        "{}",
        held.to_console()
    );
    assert!(
        held.to_console().contains("utilities-guard"),
        "{}",
        held.to_console()
    );
    // A rule on the second target is not dropped.
    let held = h
        .run("cli:operator", "restart frontend dev-utilities")
        .await;
    let text = held.to_console();
    assert!(text.contains("utilities-guard"), "{text}");
    assert!(text.contains("production-restart"), "{text}");
    // An approver must satisfy both rules: the commander approves
    // production restarts but is not an admin.
    let id = approval_id(&held);
    let r = h.run("cli:commander", &format!("approve {id}")).await;
    assert_eq!(
        r.outcome,
        oncall::reply::Outcome::Denied,
        "{}",
        r.to_console()
    );
    assert!(
        r.to_console().contains("utilities-guard"),
        "{}",
        r.to_console()
    );
    let r = h.run("cli:admin", &format!("approve {id}")).await;
    assert_eq!(
        r.outcome,
        oncall::reply::Outcome::Done,
        "{}",
        r.to_console()
    );
}

/// The same store and cluster under another config: oncall restarted with a
/// changed catalog or policy while a request was held.
fn restarted_with(
    h: &crate::common::Harness,
    config: oncall::config::Config,
) -> oncall::router::Router {
    oncall::router::Router::new(
        config,
        h.router.store().clone(),
        oncall_ops::Clusters::single(h.client.clone()),
        h.clock.clone(),
    )
}

/// A held request runs only on the objects it was asked for and only while
/// the same approval rule holds it: a changed catalog or policy since asking
/// means asking again.
#[tokio::test]
async fn approval_runs_only_on_the_same_scope_under_the_same_rule() {
    use oncall::config::{Config, EXAMPLE};
    let h = crate::common::Harness::new().await;
    let before = h.generation("default", "backend").await;
    let approve = |router: &oncall::router::Router, id: &str| {
        let inv = h.invocation("cli:admin", &format!("approve {id}"));
        let router = router.clone();
        async move { router.handle(inv).await }
    };
    // The catalog now points `backend` at another deployment.
    let held = h.run("cli:operator", "restart backend").await;
    let id = approval_id(&held);
    let mut moved = Config::parse(EXAMPLE, "example").unwrap();
    moved
        .services
        .iter_mut()
        .find(|s| s.name == "backend")
        .unwrap()
        .deployment = Some("backend-v2".into());
    let r = approve(&restarted_with(&h, moved), &id).await;
    assert_eq!(r.outcome, Outcome::Denied, "{}", r.to_console());
    let text = r.to_console();
    assert!(text.contains("can no longer run as asked"), "{text}");
    assert!(text.contains("deployment/backend-v2"), "{text}");
    // The policy no longer holds restarts: not run on an approval it no
    // longer asks for.
    let unheld = EXAMPLE.replace(
        "name = \"production-restart\"",
        "name = \"production-restart\"\nservices = [\"nothing-matches\"]",
    );
    let r = approve(
        &restarted_with(&h, Config::parse(&unheld, "example").unwrap()),
        &id,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Denied, "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("no longer held by approval rule production-restart"),
        "{}",
        r.to_console()
    );
    // Another rule holds it now as well: its approvers must see it anew.
    let stricter = format!(
        "{EXAMPLE}\n[[policy.approvals]]\nname = \"backend-guard\"\nverbs = [\"restart\"]\nservices = [\"backend\"]\napprovers = [\"admin\"]\n"
    );
    let r = approve(
        &restarted_with(&h, Config::parse(&stricter, "example").unwrap()),
        &id,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Denied, "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("now held for approval rule production-restart + backend-guard"),
        "{}",
        r.to_console()
    );
    assert_eq!(
        h.generation("default", "backend").await,
        before,
        "nothing ran"
    );
    // Unchanged: it runs.
    let r = approve(&h.router, &id).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(h.generation("default", "backend").await, before + 1);
}
