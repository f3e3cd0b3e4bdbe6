//! Incidents through the router, with the harness's manual clock: the
//! lifecycle, the timeline it writes (ops commands included), the
//! postmortem, and bad input.

use std::time::Duration;

use crate::common::Harness;
use oncall::reply::{Outcome, Reply};

const COMMANDER: &str = "cli:commander";
const OPERATOR: &str = "cli:operator";

async fn run(h: &Harness, who: &str, text: &str) -> (Outcome, String) {
    let reply: Reply = h.run(who, text).await;
    (reply.outcome, reply.to_console())
}

async fn events(h: &Harness, id: i64) -> Vec<(String, String, String)> {
    h.router
        .store()
        .incident_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.actor, e.text))
        .collect()
}

/// The example config without escalation policies: these tests are about
/// the incident's own lifecycle (escalation has its own tests).
async fn without_escalation() -> Harness {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    for s in &mut config.incidents.severities {
        s.escalation = None;
    }
    Harness::with_config(config).await
}

#[tokio::test]
async fn an_incident_from_declaration_to_postmortem() {
    let h = without_escalation().await;
    let (outcome, text) = run(
        &h,
        COMMANDER,
        "incident declare P1 checkout errors --service backend",
    )
    .await;
    assert_eq!(outcome, Outcome::Done, "{text}");
    assert!(
        text.contains("Incident 1 declared: checkout errors"),
        "{text}"
    );
    assert!(
        text.contains("SEV-2"),
        "an alias names its severity: {text}"
    );
    assert!(
        text.contains("every 30m"),
        "runbook 004's cadence for high: {text}"
    );
    // The declarer commands it until someone else is assigned.
    let roles = h.router.store().incident_roles(1).await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        (roles[0].role.as_str(), roles[0].principal.as_str()),
        ("commander", COMMANDER)
    );

    h.clock.advance(Duration::from_secs(3 * 60));
    // The only open incident is implied.
    let (outcome, text) = run(&h, COMMANDER, "incident ack").await;
    assert_eq!(outcome, Outcome::Done, "{text}");
    assert!(text.contains("acknowledged 3m after"), "{text}");
    let (outcome, text) = run(&h, OPERATOR, "incident ack 1").await;
    assert_eq!(outcome, Outcome::Info, "{text}");
    assert!(text.contains("already acknowledged"), "{text}");
    assert!(text.contains(COMMANDER), "{text}");

    // An ops command for the incident lands on its timeline.
    h.clock.advance(Duration::from_secs(2 * 60));
    let (outcome, text) = run(&h, OPERATOR, "scale backend 5 --incident 1").await;
    assert_eq!(outcome, Outcome::Done, "{text}");
    assert_eq!(h.replicas("default", "backend").await, 5);

    for (who, command) in [
        (
            COMMANDER,
            "incident status identified bad deploy of backend",
        ),
        (COMMANDER, "incident assign 1 cli:operator commander"),
        (OPERATOR, "incident note 1 rolled back to v41"),
        (OPERATOR, "incident update error rate falling"),
        (COMMANDER, "incident sev 1 critical"),
        (COMMANDER, "incident status 1 monitoring"),
    ] {
        h.clock.advance(Duration::from_secs(60));
        let (outcome, text) = run(&h, who, command).await;
        assert_eq!(outcome, Outcome::Done, "{command}: {text}");
    }
    h.clock.advance(Duration::from_secs(10 * 60));
    let (outcome, text) = run(&h, COMMANDER, "incident resolve 1 scaled out").await;
    assert_eq!(outcome, Outcome::Done, "{text}");
    assert!(text.contains("resolved after 21m"), "{text}");

    // The lifecycle holds: twice is once, a resolved incident can't be acked.
    let (outcome, text) = run(&h, OPERATOR, "incident resolve 1").await;
    assert_eq!(outcome, Outcome::Info, "{text}");
    assert!(text.contains("already resolved"), "{text}");
    assert!(text.contains("by cli:commander"), "{text}");
    let (_, text) = run(&h, OPERATOR, "incident ack 1").await;
    assert!(text.contains("already resolved"), "{text}");
    let (_, text) = run(&h, OPERATOR, "incident note 1 customer confirmed").await;
    assert!(
        text.contains("Noted"),
        "a note is welcome after the end: {text}"
    );

    // Every change is on the timeline once, in order, with its actor.
    let kinds: Vec<String> = events(&h, 1).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        [
            "declared",
            "acknowledged",
            "command",
            "status",
            "role",
            "note",
            "update",
            "severity",
            "status",
            "resolved",
            "note"
        ]
    );
    let all = events(&h, 1).await;
    let scale = &all[2];
    assert_eq!(scale.1, OPERATOR);
    assert_eq!(scale.2, "scale backend 5 → done: backend 2 → 5");
    assert_eq!(all[7].2, "severity SEV-2 → SEV-1");

    let (_, timeline) = run(&h, OPERATOR, "incident timeline 1").await;
    assert!(
        timeline.contains("+00:03  cli:commander  acknowledged"),
        "{timeline}"
    );
    assert!(
        timeline.contains("+00:05  cli:operator  scale backend 5 → done"),
        "{timeline}"
    );

    let (_, show) = run(&h, OPERATOR, "incident show 1").await;
    assert!(show.contains("resolved"), "{show}");
    assert!(show.contains("commander"), "{show}");

    let (_, postmortem) = run(&h, OPERATOR, "incident postmortem 1").await;
    for part in [
        "# Incident 1: checkout errors",
        "scaled out",
        "- Severity: SEV-1",
        "- Time to acknowledge: 3m",
        "- Time to mitigate: 11m",
        "- Time to resolve: 21m",
        "- commander: cli:operator",
        "## Operations run",
        "+00:05 cli:operator — scale backend 5 → done: backend 2 → 5",
        "## Root cause",
        "## Action items",
    ] {
        assert!(postmortem.contains(part), "{part} missing:\n{postmortem}");
    }

    // Reopened explicitly, it is open again.
    let (outcome, text) = run(&h, COMMANDER, "incident reopen 1").await;
    assert_eq!(outcome, Outcome::Done, "{text}");
    let (_, list) = run(&h, OPERATOR, "incident list --open").await;
    assert!(list.contains("#1"), "{list}");
    assert!(list.contains("investigating"), "{list}");

    // Every incident command is in the history like any other.
    let rows = h.history().await;
    assert!(rows
        .iter()
        .any(|r| r.verb.as_deref() == Some("incident-declare") && r.outcome == "done"));
    assert!(rows
        .iter()
        .any(|r| r.verb.as_deref() == Some("incident-manage") && r.mutating));
}

#[tokio::test]
async fn bad_incident_input_gets_one_sentence_and_the_usage_and_changes_nothing() {
    let h = Harness::new().await;
    let (outcome, text) = run(&h, COMMANDER, "incident declare SEV-9 disks on fire").await;
    assert_eq!(outcome, Outcome::Invalid, "{text}");
    assert!(text.contains("`SEV-9` is not a severity here"), "{text}");
    assert!(text.contains("SEV-1 (P0, critical, sev1)"), "{text}");
    assert!(
        text.contains("usage: /oncall incident declare <severity> <title…>"),
        "{text}"
    );
    assert!(h
        .router
        .store()
        .incidents(false, 10)
        .await
        .unwrap()
        .is_empty());

    let (outcome, text) = run(&h, COMMANDER, "incident declare SEV-3").await;
    assert_eq!(outcome, Outcome::Invalid, "{text}");
    assert!(text.contains("needs a title"), "{text}");

    let (outcome, text) = run(&h, COMMANDER, "incident ack").await;
    assert_eq!(outcome, Outcome::Invalid, "{text}");
    assert!(text.contains("No incident is open"), "{text}");
    let (_, text) = run(&h, COMMANDER, "incident ack 42").await;
    assert!(text.contains("There is no incident 42"), "{text}");
    let (_, text) = run(&h, COMMANDER, "incident status 1 fixed").await;
    assert!(text.contains("not an incident state"), "{text}");

    run(&h, COMMANDER, "incident declare SEV-3 slow search").await;
    run(&h, COMMANDER, "incident declare SEV-4 typo on login page").await;
    let (_, text) = run(&h, COMMANDER, "incident ack").await;
    assert!(text.contains("2 incidents are open"), "{text}");
    assert!(text.contains("incident ack 2"), "{text}");
    let (outcome, text) = run(&h, COMMANDER, "incident assign 1 cli:operator chef").await;
    assert_eq!(outcome, Outcome::Invalid, "{text}");
    assert!(text.contains("commander, scribe, comms, ops"), "{text}");
    let roles = h.router.store().incident_roles(1).await.unwrap();
    assert!(roles.iter().all(|r| r.role == "commander"), "{roles:?}");

    // An ops command for an incident that does not exist runs nowhere.
    let (outcome, text) = run(&h, OPERATOR, "scale backend 4 --incident 77").await;
    assert_eq!(outcome, Outcome::Invalid, "{text}");
    assert!(text.contains("There is no incident 77"), "{text}");
    assert_eq!(h.replicas("default", "backend").await, 2);
    let (_, text) = run(&h, OPERATOR, "scale backend 4 --incident two").await;
    assert!(text.contains("needs an incident number"), "{text}");

    // Declaring is a policy verb: a viewer may read, not declare.
    let (outcome, text) = run(&h, "cli:viewer", "incident declare SEV-1 everything").await;
    assert_eq!(outcome, Outcome::Denied, "{text}");
    let (outcome, _) = run(&h, "cli:viewer", "incident list").await;
    assert_eq!(outcome, Outcome::Info);
    assert_eq!(
        h.router.store().incidents(false, 10).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn commands_in_an_incident_channel_land_on_its_timeline() {
    let h = Harness::new().await;
    run(&h, COMMANDER, "incident declare SEV-2 queue backlog").await;
    run(&h, COMMANDER, "incident declare SEV-3 slow search").await;
    h.router
        .store()
        .set_incident_channel(1, "inc-1-queue-backlog")
        .await
        .unwrap();
    let in_channel = |who: &str, text: &str| {
        let mut inv = h.invocation(who, text);
        inv.channel = "inc-1-queue-backlog".into();
        inv
    };
    // The channel implies its incident, with two open.
    let reply = h
        .router
        .handle(in_channel(COMMANDER, "incident note consumers lagging"))
        .await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    let reply = h
        .router
        .handle(in_channel(OPERATOR, "scale notification-service 3"))
        .await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    // Elsewhere, nothing lands on it.
    run(&h, OPERATOR, "status backend").await;
    let texts: Vec<String> = events(&h, 1).await.into_iter().map(|e| e.2).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(texts[1], "note: consumers lagging");
    assert!(
        texts[2].starts_with("scale notification-service 3 → done"),
        "{texts:?}"
    );
    assert_eq!(events(&h, 2).await.len(), 1, "only its declaration");
}

async fn commands_on_timeline(h: &Harness) -> Vec<(String, String)> {
    events(h, 1)
        .await
        .into_iter()
        .filter(|e| e.0 == "command")
        .map(|e| (e.1, e.2))
        .collect()
}

#[tokio::test]
async fn a_request_held_in_an_incident_channel_and_its_approved_run_are_on_the_timeline() {
    let h = Harness::new().await;
    run(&h, COMMANDER, "incident declare SEV-1 backend down").await;
    h.router
        .store()
        .set_incident_channel(1, "inc-1-backend-down")
        .await
        .unwrap();
    let mut inv = h.invocation(OPERATOR, "restart backend");
    inv.channel = "inc-1-backend-down".into();
    let held = h.router.handle(inv).await;
    assert_eq!(held.outcome, Outcome::Pending, "{}", held.to_console());
    let commands = commands_on_timeline(&h).await;
    assert_eq!(commands.len(), 1, "{commands:?}");
    let id = regex::Regex::new(r"held for approval, request ([a-z0-9]+)\)")
        .unwrap()
        .captures(&commands[0].1)
        .unwrap_or_else(|| panic!("{commands:?}"))[1]
        .to_string();
    // Approved from elsewhere: the run lands in the requester's name.
    let (outcome, text) = run(&h, "cli:admin", &format!("approve {id}")).await;
    assert_eq!(outcome, Outcome::Done, "{text}");
    let commands = commands_on_timeline(&h).await;
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(commands[1].0, OPERATOR);
    assert!(
        commands[1].1.starts_with("restart backend → done"),
        "{commands:?}"
    );
    assert!(
        commands[1]
            .1
            .ends_with(&format!("(request {id}, approved by cli:admin)")),
        "{commands:?}"
    );
}
