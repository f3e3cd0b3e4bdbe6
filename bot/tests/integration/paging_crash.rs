//! Crash safety of paging with the real binary: `oncall serve` is killed
//! (SIGKILL, sent by itself at a crash point) right after the tick's commit
//! and before anything is sent, or right after a page is sent and before it
//! is marked; a second process on the same database then finishes the
//! escalation. PagerDuty (a fake that folds by `dedup_key`, as the real one
//! does) must hold each step's page exactly once, no step skipped.

use std::time::{Duration, Instant};

use crate::common::fake_pager::{FakePager, ROUTING_KEY};
use crate::common::fake_slack::FakeSlack;
use crate::common::serve::{command_body, open_db, post_signed, Setup};
use crate::common::DEADLINE;

const SECRET: &str = "paging-crash-test-signing-secret";

fn tail(fake: &FakePager) -> String {
    format!(
        r#"
[[policy.bindings]]
principal = "slack:UOPS1"
roles = ["operator"]

[escalation.pagerduty]
url = "{url}"
services.payments = {{ routing_key_env = "CRASH_TEST_PD_KEY" }}

[[escalation.policies]]
name = "crashy"
tiers = [
  {{ name = "first", targets = ["pagerduty:payments"], delay = "2s" }},
  {{ name = "second", targets = ["pagerduty:payments"] }},
]
"#,
        url = fake.url
    )
}

async fn crash_then_recover(crash_at: &str) -> (FakePager, Setup) {
    let sim = crate::common::fast_sim().await;
    let slack = FakeSlack::start().await;
    let fake = FakePager::start().await;
    let setup = Setup::new(
        &sim.url(),
        SECRET,
        &[(r#"escalation = "runbook-002""#, r#"escalation = "crashy""#)],
        &tail(&fake),
    );
    let key = ("CRASH_TEST_PD_KEY", ROUTING_KEY);
    let mut first = setup
        .serve_env(&slack, "first.log", &[key, ("ONCALL_CRASH_AT", crash_at)])
        .await;
    let http = reqwest::Client::new();
    let body = command_body(
        "UOPS1",
        "incident declare SEV-1 checkout down",
        "trigger-1",
        &slack.response_url(1),
    );
    // The answer may or may not come back before the crash.
    let _ = post_signed(&http, &first.base, SECRET, body, &[]).await;
    let started = Instant::now();
    while first.alive() {
        assert!(
            started.elapsed() < DEADLINE,
            "never reached {crash_at}:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        first.log().contains(&format!("crash point {crash_at}")),
        "{}",
        first.log()
    );

    let second = setup.serve_env(&slack, "second.log", &[key]).await;
    let started = Instant::now();
    while fake.pagerduty_alerts().len() < 2 {
        assert!(
            started.elapsed() < DEADLINE,
            "the escalation did not finish after the restart: {:?}\n{}",
            fake.calls(""),
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for anything doubled to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(second);
    (fake, setup)
}

/// Each step's page is at the provider once (by its key), and the store
/// has every page sent and the escalation finished.
fn assert_each_step_paged_once(fake: &FakePager, setup: &Setup) {
    let alerts = fake.pagerduty_alerts();
    let mut keys: Vec<&String> = alerts.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "page:1:0:0:pagerduty:payments",
            "page:1:0:1:pagerduty:payments"
        ],
        "{:?}",
        fake.calls("")
    );
    let db = open_db(&setup.db_path());
    let mut rows: Vec<(String, String)> = db
        .prepare("SELECT dedup_key, state FROM outbox WHERE dedup_key LIKE 'page:%' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            (
                "page:1:0:0:pagerduty:payments".to_string(),
                "sent".to_string()
            ),
            (
                "page:1:0:1:pagerduty:payments".to_string(),
                "sent".to_string()
            ),
        ]
    );
    let state: String = db
        .query_row(
            "SELECT state FROM escalations WHERE incident_id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "exhausted");
}

#[tokio::test]
async fn a_crash_after_the_tick_commits_and_before_sending_loses_no_page() {
    let (fake, setup) = crash_then_recover("after-tick-commit").await;
    assert_each_step_paged_once(&fake, &setup);
    let sends = fake.calls("/v2/enqueue");
    assert_eq!(sends.len(), 2, "each page sent once: {sends:?}");
}

#[tokio::test]
async fn a_crash_after_sending_and_before_marking_is_folded_by_the_dedup_key() {
    let (fake, setup) = crash_then_recover("after-send").await;
    assert_each_step_paged_once(&fake, &setup);
    // The first page went out twice (before the crash and after), under
    // one key, so PagerDuty holds it once.
    let first: Vec<_> = fake
        .calls("/v2/enqueue")
        .into_iter()
        .filter(|c| c.body["dedup_key"] == "page:1:0:0:pagerduty:payments")
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
}
