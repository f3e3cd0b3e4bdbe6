//! What an alert group shows and offers in chat: one message per group on
//! (fake) Slack, posted once with the enrichment and updated in place as
//! the incident is acknowledged and the alert resolves; the route's
//! first-response buttons, run as whoever presses them, through policy,
//! once, until they expire; `business-hours` groups held until business
//! hours; `silence` / `unsilence` against the real Alertmanager.

use std::time::Duration;

use oncall::config::{Config, EXAMPLE};
use oncall::courier::Courier;
use oncall::escalation::engine::tick;
use oncall::reply::{ButtonAction, Outcome};
use serde_json::{json, Value};

use crate::alerts::{alert, alertmanager_binary, hook, start, Env, RunningAlertmanager};
use crate::common::fake_slack::FakeSlack;

fn on_slack(extra: &str) -> Config {
    let text = EXAMPLE.replace(
        "announce = { cli = \"incidents\" }",
        "announce = { slack = \"C0INCIDENTS\" }",
    );
    Config::parse(&format!("{text}\n{extra}"), "test").unwrap()
}

fn slack_courier(env: &Env, slack: &FakeSlack) -> Courier {
    crate::courier::slack_courier(&env.h.router, slack)
}

/// Runbook 001's alert for recurring-task-service.
pub(crate) fn lag(status: &str) -> Value {
    hook(
        "KafkaConsumerLag",
        vec![alert(
            "KafkaConsumerLag",
            status,
            "fk1",
            json!({"severity": "warning", "service": "recurring-task-service"}),
        )],
    )
}

/// The calls to `method` about the lag alert's message.
fn lag_messages(slack: &FakeSlack, method: &str) -> Vec<Value> {
    slack
        .calls(&format!("/api/{method}"))
        .into_iter()
        .filter(|c| c.status == 200 && c.body.to_string().contains("KafkaConsumerLag: "))
        .filter(|c| c.body.to_string().contains(" firing · "))
        .map(|c| c.body)
        .collect()
}

/// The first-response buttons of a Slack message: (action id, label, value).
fn buttons(message: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for block in message["blocks"].as_array().into_iter().flatten() {
        for el in block["elements"].as_array().into_iter().flatten() {
            if el["type"] == "button" {
                out.push((
                    el["action_id"].as_str().unwrap_or_default().to_string(),
                    el["text"]["text"].as_str().unwrap_or_default().to_string(),
                    el["value"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_group_has_one_message_posted_with_its_enrichment_and_updated_in_place() {
    let slack = FakeSlack::start().await;
    let env = start(on_slack("")).await;
    let courier = slack_courier(&env, &slack);
    let body = env.post(&lag("firing")).await;
    let id = body["incident"].as_i64().unwrap();
    assert_eq!(courier.pass().await.unwrap().cards, 1);
    let posts = lag_messages(&slack, "chat.postMessage");
    assert_eq!(posts.len(), 1, "one message for the group");
    let text = posts[0].to_string();
    assert_eq!(posts[0]["channel"], "C0INCIDENTS");
    for want in [
        "Firing",
        "1 firing · 0 resolved",
        &format!("#{id} investigating"),
        "Runbook: https://runbooks.example.com/002",
        "Graph: http://prometheus:9090/graph?g0.expr=up",
        "Diagnosis of recurring-task-service",
        "recurring-task-service-",
        "RESTARTS",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let offered = buttons(&posts[0]);
    assert_eq!(
        offered
            .iter()
            .map(|(a, l, _)| (a.as_str(), l.as_str()))
            .collect::<Vec<_>>(),
        [
            ("oncall_respond", "scale recurring-task-service 8"),
            ("oncall_respond_1", "rollout status recurring-task-service"),
        ],
        "the route's actions, with ids unique in the block"
    );

    // The same delivery again (a repeat): the message does not change.
    env.post(&lag("firing")).await;
    assert_eq!(courier.pass().await.unwrap().cards, 0);
    assert!(lag_messages(&slack, "chat.update").is_empty());

    // Acknowledged: the same message says by whom.
    env.h.clock.advance(Duration::from_secs(301));
    tick(&env.h.router).await.unwrap();
    let r = env
        .h
        .run("cli:operator", &format!("incident ack {id}"))
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(courier.pass().await.unwrap().cards, 1);
    let updates = lag_messages(&slack, "chat.update");
    let last = updates.last().expect("updated in place").to_string();
    assert!(last.contains("acknowledged by cli:operator"), "{last}");

    // Resolved: the same message turns, and offers nothing more.
    env.post(&lag("resolved")).await;
    courier.pass().await.unwrap();
    let updates = lag_messages(&slack, "chat.update");
    let last = updates.last().unwrap();
    let text = last.to_string();
    assert!(
        text.contains("Resolved") && text.contains("0 firing · 1 resolved"),
        "{text}"
    );
    assert!(
        updates
            .iter()
            .all(|u| u["ts"] == updates[0]["ts"] && u["channel"] == "C0INCIDENTS"),
        "every update is of the one message"
    );
    assert_eq!(
        lag_messages(&slack, "chat.postMessage").len(),
        1,
        "never a second message"
    );
    // Enrichment was read once, with the first post: no secret, no crash logs.
    assert!(!text.contains("last lines before the crash"));
}

#[tokio::test]
async fn a_first_response_runs_as_the_presser_through_policy_once_and_expires() {
    let slack = FakeSlack::start().await;
    let env = start(on_slack("")).await;
    let courier = slack_courier(&env, &slack);
    let id = env.post(&lag("firing")).await["incident"].as_i64().unwrap();
    courier.pass().await.unwrap();
    let offered = buttons(&lag_messages(&slack, "chat.postMessage")[0]);
    let (_, _, scale) = offered[0].clone();
    let (_, _, rollout) = offered[1].clone();
    let press = ButtonAction::Respond.command(&scale);
    assert_eq!(press, format!("alerts run {scale}"));
    let replicas = env.h.replicas("default", "recurring-task-service").await;

    // A viewer may read alerts but not scale: refused by the rule, nothing
    // changes, and the button stays for someone who may.
    let r = env.h.run_keyed("cli:viewer", &press, "click-1").await;
    assert_eq!(r.outcome, Outcome::Denied, "{}", r.to_console());
    assert!(r.to_console().contains("Decided by"), "{}", r.to_console());
    assert_eq!(
        env.h.replicas("default", "recurring-task-service").await,
        replicas
    );

    // An operator presses it: it runs as them, with its own history row and
    // on the incident's timeline.
    let r = env.h.run_keyed("cli:operator", &press, "click-2").await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(env.h.replicas("default", "recurring-task-service").await, 8);
    let events = env.h.router.store().incident_events(id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.actor == "cli:operator"
                && e.text.starts_with("scale recurring-task-service 8")),
        "{events:?}"
    );
    // The same click delivered again: the same answer, nothing runs twice.
    let again = env.h.run_keyed("cli:operator", &press, "click-2").await;
    assert_eq!(again.title, r.title);
    let scales = env
        .h
        .history()
        .await
        .into_iter()
        .filter(|row| {
            row.command
                .as_deref()
                .is_some_and(|c| c.starts_with("scale "))
        })
        .filter(|row| row.outcome == "done")
        .count();
    assert_eq!(scales, 1, "one scale ran, in the history");
    // Another press: it has run.
    let other = env.h.run_keyed("cli:commander", &press, "click-3").await;
    assert_eq!(other.title, "This first response has already run");
    assert!(other.to_console().contains("cli:operator"));
    // The message shows who ran it and no longer offers it.
    courier.pass().await.unwrap();
    let last = lag_messages(&slack, "chat.update").pop().unwrap();
    assert!(last.to_string().contains("run by cli:operator"), "{last}");
    assert_eq!(buttons(&last).len(), 1, "only the rollout status is left");

    // After an hour the other button has expired.
    env.h.clock.advance(Duration::from_secs(3601));
    let late = env
        .h
        .run_keyed(
            "cli:operator",
            &ButtonAction::Respond.command(&rollout),
            "click-4",
        )
        .await;
    assert_eq!(late.title, "This button has expired");
    // A button that never was.
    let none = env.h.run("cli:operator", "alerts run 999").await;
    assert_eq!(none.title, "No first-response button 999");
}

#[tokio::test]
async fn a_business_hours_warning_waits_for_business_hours_then_opens_and_pages() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let (courier, _console) = crate::courier::console_courier(&env.h);
    let cpu = |status: &str, fp: &str| {
        hook(
            "HighCPUUsage",
            vec![alert(
                "HighCPUUsage",
                status,
                fp,
                json!({"severity": "warning"}),
            )],
        )
    };
    // Saturday 03:00 UTC (the example's hours: weekdays 09:00-17:00 UTC).
    env.h.clock.set("2026-12-05T03:00:00Z".parse().unwrap());
    assert_eq!(env.post(&cpu("firing", "c1")).await["opened"], false);
    assert_eq!(courier.pass().await.unwrap().opened, 0);
    assert!(env.incidents().await.is_empty(), "nobody is woken at night");
    // Monday 08:59: still held.
    env.h.clock.set("2026-12-07T08:59:00Z".parse().unwrap());
    assert_eq!(courier.pass().await.unwrap().opened, 0);
    // 09:00: it still fires, so its incident opens and the escalation starts.
    env.h.clock.set("2026-12-07T09:00:00Z".parse().unwrap());
    assert_eq!(courier.pass().await.unwrap().opened, 1);
    assert_eq!(courier.pass().await.unwrap().opened, 0, "once");
    let incidents = env.incidents().await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].severity, "SEV-3");
    let events = env
        .h
        .router
        .store()
        .incident_events(incidents[0].id)
        .await
        .unwrap();
    assert!(
        events[0].text.contains("when business hours began"),
        "{}",
        events[0].text
    );
    assert!(
        tick(&env.h.router).await.unwrap().steps >= 1,
        "paged in business hours"
    );

    // One that fires on Friday evening and resolves over the weekend never
    // opens anything.
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let (courier, _console) = crate::courier::console_courier(&env.h);
    env.h.clock.set("2026-12-04T18:00:00Z".parse().unwrap());
    env.post(&cpu("firing", "c2")).await;
    env.post(&cpu("resolved", "c2")).await;
    env.h.clock.set("2026-12-07T09:30:00Z".parse().unwrap());
    assert_eq!(courier.pass().await.unwrap().opened, 0);
    assert!(env.incidents().await.is_empty());

    // Within business hours it opens at once.
    env.post(&cpu("firing", "c3")).await;
    assert_eq!(env.incidents().await.len(), 1);
}

#[tokio::test]
async fn silence_and_unsilence_go_through_the_real_alertmanager_and_the_timeline() {
    let Some(binary) = alertmanager_binary() else {
        println!(
            "SKIPPED: no Alertmanager here (.ci/run installs Debian's prometheus-alertmanager)"
        );
        return;
    };
    let running = RunningAlertmanager::start(
        &binary,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .await;
    let mut config = Config::parse(EXAMPLE, "example").unwrap();
    config.alerts.alertmanager_url = Some(running.url.clone());
    let env = start(config).await;
    let id = env.post(&lag("firing")).await["incident"].as_i64().unwrap();
    let http = reqwest::Client::new();
    let silences = async || -> Vec<Value> {
        http.get(format!("{}/api/v2/silences", running.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };

    // What is not firing cannot be silenced: nothing is created.
    let r = env
        .h
        .run("cli:operator", "silence KafkaConsumerLagg 2h")
        .await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", r.to_console());
    assert!(
        r.to_console().contains("Firing now: KafkaConsumerLag"),
        "{}",
        r.to_console()
    );
    // A viewer may not silence.
    let r = env.h.run("cli:viewer", "silence KafkaConsumerLag 2h").await;
    assert_eq!(r.outcome, Outcome::Denied);
    // Bad input says how.
    let r = env
        .h
        .run("cli:operator", "silence KafkaConsumerLag 30d")
        .await;
    assert_eq!(r.outcome, Outcome::Invalid, "{}", r.to_console());
    assert!(silences().await.is_empty());

    let r = env
        .h
        .run(
            "cli:operator",
            "silence KafkaConsumerLag 2h scaling up, lag draining",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    let all = silences().await;
    assert_eq!(all.len(), 1, "{all:?}");
    let s = &all[0];
    assert_eq!(s["status"]["state"], "active");
    assert_eq!(s["createdBy"], "cli:operator");
    assert_eq!(s["comment"], "scaling up, lag draining");
    assert_eq!(
        s["matchers"],
        json!([{"name": "alertname", "value": "KafkaConsumerLag", "isRegex": false, "isEqual": true}])
    );
    let events = env.h.router.store().incident_events(id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "silence" && e.text.starts_with("silenced KafkaConsumerLag")),
        "{events:?}"
    );

    // By fingerprint: that one alert, all its labels.
    let r = env.h.run("cli:operator", "silence fk1 1h").await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    let by_fp = silences().await;
    let m = by_fp
        .iter()
        .find(|s| s["matchers"].as_array().unwrap().len() > 1)
        .expect("a silence of all the labels");
    assert!(m["matchers"].to_string().contains("recurring-task-service"));

    let r = env
        .h
        .run("cli:operator", "unsilence KafkaConsumerLag")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    let after = silences().await;
    let expired = after
        .iter()
        .filter(|s| s["status"]["state"] == "expired")
        .count();
    assert_eq!(expired, 1, "{after:?}");
    let r = env
        .h
        .run("cli:operator", "unsilence KafkaConsumerLag")
        .await;
    assert_eq!(r.outcome, Outcome::Failed, "nothing left to end");
    let events = env.h.router.store().incident_events(id).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.text.starts_with("ended the silence of KafkaConsumerLag")));
}
