//! The escalation engine with the harness's manual clock: runbook 002's
//! tiers at 0/15/30/60 minutes, an acknowledgement that stops what is left,
//! repeats, `escalate`, a restart that finds steps overdue, overrides, rate
//! limits and ad-hoc pages. Ticks and drains are run by hand, so an hour of
//! escalation takes milliseconds.

use std::sync::Arc;
use std::time::Duration;

use oncall::chat::{ConsoleSink, Sinks};
use oncall::config::{Config, EXAMPLE};
use oncall::escalation::engine::tick;
use oncall::escalation::pager::Pager;
use oncall::reply::Outcome;
use oncall::store::{EscalationState, OutboxMessage};

use crate::common::Harness;

const COMMANDER: &str = "cli:commander";

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Pages written and not yet sent: (dedup key, target).
async fn pending(h: &Harness) -> Vec<(String, String)> {
    let far = h.clock.now().as_millisecond() + 86_400_000;
    h.router
        .store()
        .due_outbox(far, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m: OutboxMessage| (m.dedup_key, m.target.unwrap_or_default()))
        .collect()
}

/// Who the pages written by the last steps are for, and forgets them (as
/// the senders would, by marking them sent).
async fn paged(h: &Harness) -> Vec<String> {
    let far = h.clock.now().as_millisecond() + 86_400_000;
    let rows = h.router.store().due_outbox(far, 10_000).await.unwrap();
    let ids: Vec<i64> = rows.iter().map(|m| m.id).collect();
    h.router
        .store()
        .outbox_sent_many(&ids, h.clock.now().as_millisecond())
        .await
        .unwrap();
    rows.into_iter().filter_map(|m| m.target).collect()
}

/// Who schedule `name` has on call now.
fn on_call(h: &Harness, name: &str) -> Vec<String> {
    let s = h.router.config().escalation.schedule(name).unwrap();
    s.on_call(h.clock.now(), &[])
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

async fn declare(h: &Harness, severity: &str) -> i64 {
    let reply = h
        .run(
            COMMANDER,
            &format!("incident declare {severity} checkout down"),
        )
        .await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    h.router.store().incidents(false, 1).await.unwrap()[0].id
}

#[tokio::test]
async fn runbook_002_pages_its_four_tiers_at_0_15_30_and_60_minutes() {
    let h = Harness::new().await;
    let id = declare(&h, "SEV-1").await;
    let l1 = on_call(&h, "primary");
    assert_eq!(tick(&h.router).await.unwrap().steps, 1, "tier 1 at once");
    assert_eq!(paged(&h).await, l1);

    h.clock.advance(minutes(15) - Duration::from_secs(1));
    assert_eq!(tick(&h.router).await.unwrap().steps, 0, "not before 15 min");
    h.clock.advance(Duration::from_secs(1));
    let l2 = on_call(&h, "secondary");
    assert_eq!(tick(&h.router).await.unwrap().steps, 1);
    assert_eq!(paged(&h).await, l2, "L2 at 15 min");

    h.clock.advance(minutes(15));
    tick(&h.router).await.unwrap();
    assert_eq!(paged(&h).await, ["cli:manager"], "L3 at 30 min");

    h.clock.advance(minutes(29));
    assert_eq!(tick(&h.router).await.unwrap().steps, 0, "not before 1 h");
    h.clock.advance(minutes(1));
    tick(&h.router).await.unwrap();
    assert_eq!(paged(&h).await, ["cli:cto"], "L4 at 1 h");

    h.clock.advance(minutes(120));
    assert_eq!(
        tick(&h.router).await.unwrap().steps,
        0,
        "nothing after the last tier"
    );
    assert_eq!(h.escalation_state(id).await, EscalationState::Exhausted);
    let events = h.router.store().incident_events(id).await.unwrap();
    let pages: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "page")
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert!(
        pages[3].starts_with("paged L4 CTO (tier 4 of 4): cli:cto"),
        "{pages:?}"
    );
    assert!(events
        .iter()
        .any(|e| e.kind == "escalation" && e.text.contains("exhausted")));
}

#[tokio::test]
async fn an_ack_at_minute_20_stops_tier_3_and_cancels_what_was_not_sent() {
    let h = Harness::new().await;
    let id = declare(&h, "SEV-1").await;
    tick(&h.router).await.unwrap();
    paged(&h).await;
    h.clock.advance(minutes(15));
    tick(&h.router).await.unwrap();
    // L2's page is written but not yet sent when the ack comes.
    assert_eq!(pending(&h).await.len(), 1);
    h.clock.advance(minutes(5));
    let reply = h.run("cli:commander", &format!("incident ack {id}")).await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    assert_eq!(h.escalation_state(id).await, EscalationState::Acknowledged);
    // L2's unsent page is cancelled; L1's sent page is followed up (the
    // provider's alert acknowledged, the chat message replaced).
    let keys: Vec<String> = pending(&h).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("acknowledge:page:{id}:0:0:")),
        "{keys:?}"
    );
    paged(&h).await;

    h.clock.advance(minutes(10));
    assert_eq!(
        tick(&h.router).await.unwrap().steps,
        0,
        "tier 3 never fires"
    );
    h.clock.advance(minutes(60));
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);
    let events = h.router.store().incident_events(id).await.unwrap();
    let stopped = events.iter().find(|e| e.kind == "escalation").unwrap();
    assert!(
        stopped
            .text
            .contains("L3 engineering manager was not paged"),
        "{}",
        stopped.text
    );
    // An old Ack button pressed again changes nothing.
    let again = h.run("cli:manager", &format!("incident ack {id}")).await;
    assert_eq!(again.outcome, Outcome::Info, "{}", again.to_console());
    assert!(
        again.title.contains("already acknowledged"),
        "{}",
        again.title
    );
    assert!(pending(&h).await.is_empty());
}

#[tokio::test]
async fn a_repeating_policy_pages_its_tiers_again_then_stops() {
    let h = Harness::new().await;
    // "high": primary, then secondary 15 min later, repeated once.
    let id = declare(&h, "SEV-2").await;
    let mut keys = Vec::new();
    for _ in 0..4 {
        assert_eq!(tick(&h.router).await.unwrap().steps, 1);
        keys.extend(pending(&h).await.into_iter().map(|(k, _)| k));
        paged(&h).await;
        h.clock.advance(minutes(15));
    }
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);
    assert_eq!(h.escalation_state(id).await, EscalationState::Exhausted);
    let rounds: Vec<&str> = keys.iter().map(|k| k.split(':').nth(2).unwrap()).collect();
    assert_eq!(rounds, ["0", "0", "1", "1"], "{keys:?}");
    let tiers: Vec<&str> = keys.iter().map(|k| k.split(':').nth(3).unwrap()).collect();
    assert_eq!(tiers, ["0", "1", "0", "1"], "{keys:?}");
}

#[tokio::test]
async fn escalate_pages_the_next_tier_now_and_counts_the_next_delay_from_then() {
    let h = Harness::new().await;
    let id = declare(&h, "SEV-1").await;
    tick(&h.router).await.unwrap();
    paged(&h).await;
    h.clock.advance(minutes(1));
    let reply = h.run(COMMANDER, &format!("escalate {id}")).await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    assert!(
        reply.title.contains("L2 senior engineer"),
        "{}",
        reply.title
    );
    assert_eq!(tick(&h.router).await.unwrap().steps, 1, "L2 now");
    assert_eq!(paged(&h).await, on_call(&h, "secondary"));
    // L3 is 15 minutes after L2 was paged (minute 16), not at minute 30.
    h.clock.advance(minutes(15) - Duration::from_secs(1));
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);
    h.clock.advance(Duration::from_secs(1));
    tick(&h.router).await.unwrap();
    assert_eq!(paged(&h).await, ["cli:manager"]);

    // After an ack there is nothing to escalate, and the answer says why.
    h.run(COMMANDER, &format!("incident ack {id}")).await;
    let reply = h.run(COMMANDER, &format!("escalate {id}")).await;
    assert_eq!(reply.outcome, Outcome::Info);
    assert!(reply.title.contains("stopped"), "{}", reply.title);
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);
}

#[tokio::test]
async fn after_a_restart_overdue_steps_fire_in_order_once() {
    let h = Harness::new().await;
    let id = declare(&h, "SEV-1").await;
    tick(&h.router).await.unwrap();
    let first = pending(&h).await;
    // The process was down for 61 minutes: L2, L3 and L4 are overdue.
    h.clock.advance(minutes(61));
    let t = tick(&h.router).await.unwrap();
    assert_eq!(t.steps, 3, "each overdue step once");
    let keys: Vec<String> = pending(&h).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(keys[0], first[0].0, "the first page is not written again");
    let tiers: Vec<&str> = keys.iter().map(|k| k.split(':').nth(3).unwrap()).collect();
    assert_eq!(tiers, ["0", "1", "2", "3"]);
    // A second process's tick (or the same one again) finds nothing.
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);
    assert_eq!(h.escalation_state(id).await, EscalationState::Exhausted);
}

#[tokio::test]
async fn an_override_wins_over_the_rotation() {
    let h = Harness::new().await;
    let reply = h.run(COMMANDER, "override primary cli:admin 1h").await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    let who = h.run(COMMANDER, "who primary").await.to_console();
    assert!(who.contains("cli:admin"), "{who}");
    declare(&h, "SEV-1").await;
    tick(&h.router).await.unwrap();
    assert_eq!(paged(&h).await, ["cli:admin"]);
    // An hour later the override is over: the rotation pages again.
    h.clock.advance(minutes(61));
    let who = h.run(COMMANDER, "who primary").await.to_console();
    assert!(!who.contains("cli:admin"), "{who}");

    let bad = h.run(COMMANDER, "override nope cli:admin 1h").await;
    assert_eq!(bad.outcome, Outcome::Invalid);
    assert!(
        bad.title.contains("one of primary, secondary"),
        "{}",
        bad.title
    );
}

#[tokio::test]
async fn pages_to_one_target_are_limited() {
    let mut config = Config::parse(EXAMPLE, "example").unwrap();
    config.escalation.max_pages_per_target = 2;
    let h = Harness::with_config(config).await;
    for n in 0..2 {
        let r = h
            .run(COMMANDER, &format!("page cli:bob database is slow {n}"))
            .await;
        assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    }
    let third = h.run(COMMANDER, "page cli:bob database is slow 3").await;
    assert_eq!(third.outcome, Outcome::Info, "{}", third.to_console());
    assert!(third.title.contains("Not paged"), "{}", third.title);
    assert_eq!(pending(&h).await.len(), 2);

    let unknown = h.run(COMMANDER, "page pagerduty:nope hello").await;
    assert_eq!(unknown.outcome, Outcome::Invalid);
    assert!(
        unknown.title.contains("not configured"),
        "{}",
        unknown.title
    );
    let shape = h.run(COMMANDER, "page bob hello").await;
    assert_eq!(shape.outcome, Outcome::Invalid, "{}", shape.to_console());
    assert_eq!(pending(&h).await.len(), 2, "bad input pages nobody");
}

#[tokio::test]
async fn pages_reach_the_console_with_an_ack_button_and_are_replaced_when_acknowledged() {
    let h = Harness::new().await;
    let console = ConsoleSink::default();
    let sinks = Arc::new(Sinks {
        console: Some(console.clone()),
        ..Default::default()
    });
    let pager = Pager::new(h.router.clone(), sinks);
    let id = declare(&h, "SEV-1").await;
    tick(&h.router).await.unwrap();
    let l1 = on_call(&h, "primary")[0].clone();
    assert_eq!(pager.drain().await.unwrap().delivered, 1);
    let posted = console.posted();
    let user = l1.trim_start_matches("cli:");
    let (channel, text) = posted.last().unwrap();
    assert_eq!(channel, &format!("@{user}"));
    assert!(text.contains("L1 on-call engineer"), "{text}");
    assert!(
        text.contains(&format!("(/oncall incident ack {id})")),
        "{text}"
    );
    // Nothing is sent twice.
    assert_eq!(pager.drain().await.unwrap().delivered, 0);

    h.run(COMMANDER, &format!("incident ack {id}")).await;
    assert_eq!(pager.drain().await.unwrap().delivered, 1, "the follow-up");
    let (_, text) = console.posted().last().unwrap().clone();
    assert!(
        text.contains(&format!("Incident {id} acknowledged by {COMMANDER}")),
        "{text}"
    );
}

#[tokio::test]
async fn raising_the_severity_pages_if_nobody_is_on_it_yet() {
    let h = Harness::new().await;
    let id = declare(&h, "SEV-3").await;
    assert_eq!(
        tick(&h.router).await.unwrap().steps,
        0,
        "SEV-3 pages nobody"
    );
    assert!(h.router.store().escalation_of(id).await.unwrap().is_none());
    let r = h.run(COMMANDER, &format!("incident sev {id} SEV-1")).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(tick(&h.router).await.unwrap().steps, 1);
    assert_eq!(paged(&h).await, on_call(&h, "primary"), "runbook 002's L1");
    // Already escalating: a second raise starts nothing more.
    h.run(COMMANDER, &format!("incident sev {id} SEV-2")).await;
    h.run(COMMANDER, &format!("incident sev {id} SEV-1")).await;
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);

    // Acknowledged: raising it pages nobody.
    let other = declare(&h, "SEV-3").await;
    h.run(COMMANDER, &format!("incident ack {other}")).await;
    h.run(COMMANDER, &format!("incident sev {other} SEV-1"))
        .await;
    assert!(h
        .router
        .store()
        .escalation_of(other)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_secret_in_a_page_or_a_note_is_never_stored() {
    let h = Harness::new().await;
    let id = declare(&h, "SEV-3").await;
    let secret = "postgres://app:s3cr3tpass@db/app";
    let r = h
        .run(COMMANDER, &format!("page {id} cli:bob the url is {secret}"))
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    h.run(COMMANDER, &format!("incident note {id} try {secret}"))
        .await;
    let events = h.router.store().incident_events(id).await.unwrap();
    assert!(events.iter().any(|e| e.text.starts_with("paged cli:bob")));
    if h.router.store().kind() != "sqlite" {
        return; // The events above are what PostgreSQL holds; the bytes below are SQLite's file.
    }
    let db = std::fs::read(h.dir.path().join("oncall.db")).unwrap();
    let wal = std::fs::read(h.dir.path().join("oncall.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(10).any(|w| w == b"s3cr3tpass"),
            "the password is stored"
        );
    }
}

#[tokio::test]
async fn a_deposed_leaders_tick_pages_nobody() {
    let h = Harness::new().await;
    declare(&h, "SEV-1").await;
    h.router.begin_term("replica-a").await.unwrap();
    // Another replica wins the Lease and begins its term in the database.
    let now = h.clock.now().as_millisecond();
    h.router.store().begin_term("replica-b", now).await.unwrap();
    assert_eq!(
        tick(&h.router).await.unwrap().steps,
        0,
        "the stale term applies nothing"
    );
    assert!(pending(&h).await.is_empty(), "and writes no page");
    // This process leads again (a new term): the step is paged once.
    h.router.begin_term("replica-a").await.unwrap();
    assert_eq!(tick(&h.router).await.unwrap().steps, 1);
    assert_eq!(pending(&h).await.len(), on_call(&h, "primary").len());
    assert_eq!(tick(&h.router).await.unwrap().steps, 0, "once");
}
