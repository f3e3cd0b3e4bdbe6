//! `oncall serve` stops cleanly on SIGTERM: it stops accepting, ends long
//! waits, lets in-flight commands finish and record their outcome, and exits
//! 0 within the grace period. Driven as a user runs it: the real binary, a
//! simulated cluster made slow on purpose, signed Slack requests, and a fake
//! Slack receiving the deferred answers.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::fake_slack::FakeSlack;
use crate::common::serve::{self, Setup};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use oncall::store::{HistoryQuery, Store};
use serde_json::{json, Value};

const SECRET: &str = "shutdown-test-signing-secret";

async fn slash_command(
    http: &reqwest::Client,
    base: &str,
    slack: &FakeSlack,
    text: &str,
    trigger: &str,
    response: u32,
) -> Value {
    let body = serve::command_body("UOPS1", text, trigger, &slack.response_url(response));
    let resp = serve::post_signed(http, base, SECRET, body, &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_commands_finish_and_exits_zero() {
    let sim = crate::common::fast_sim().await;
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    // A rollout that never completes: its image does not exist.
    Api::<Deployment>::namespaced(client.clone(), "default")
        .patch(
            "dev-utilities",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "dev-utilities", "image": "ghcr.io/example/dev-utilities:does-not-exist"}
            ]}}}})),
        )
        .await
        .unwrap();
    let slack = FakeSlack::start().await;

    let setup = Setup::new(
        &sim.url(),
        SECRET,
        &[],
        "[[policy.bindings]]\nprincipal = \"slack:UOPS1\"\nroles = [\"operator\"]\n",
    );
    let mut serve = setup.serve(&slack, "serve.log").await;
    let base = serve.base.clone();
    let log_path = serve.log_path.clone();
    let dir = &setup.dir;
    let http = reqwest::Client::new();

    // Every API call now takes a second and a half: a scale takes several,
    // so it is still running when the signal comes.
    sim.with_store(|s| s.latency = Duration::from_millis(1500));
    let wait = slash_command(
        &http,
        &base,
        &slack,
        "rollout status dev-utilities --wait 5m",
        "trig-wait",
        1,
    );
    let scale = slash_command(&http, &base, &slack, "scale backend 3", "trig-scale", 2);
    let (wait_ack, scale_ack) = tokio::join!(wait, scale);
    assert!(text_of(&wait_ack).contains("Working on"), "{wait_ack}");
    assert!(text_of(&scale_ack).contains("Working on"), "{scale_ack}");
    assert!(
        slack.calls("/response/2").is_empty(),
        "the scale finished before the signal; the test proves nothing"
    );

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = serve.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(60),
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "serve exits 0 on SIGTERM");
    assert!(
        took < Duration::from_secs(20 + 5),
        "exited {took:?} after SIGTERM, past the 20 s grace period"
    );

    // The scale completed and was answered; the wait was ended and said so.
    sim.with_store(|s| s.latency = Duration::ZERO);
    let scaled = slack.calls("/response/2");
    assert!(
        scaled
            .iter()
            .any(|c| c.status == 200 && text_of(&c.body).contains("Scaled backend 2 → 3")),
        "{scaled:?}"
    );
    let waited = slack.calls("/response/1");
    assert!(
        waited
            .iter()
            .any(|c| text_of(&c.body).contains("stopped following the rollout")),
        "{waited:?}"
    );
    let replicas = Api::<Deployment>::namespaced(client, "default")
        .get("backend")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas;
    assert_eq!(replicas, Some(3));

    // Both are in the history with their outcomes.
    let store = Store::open(&dir.path().join("oncall.db")).await.unwrap();
    let rows = store
        .history(&HistoryQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let scale_row = rows
        .iter()
        .find(|r| r.verb.as_deref() == Some("scale"))
        .expect("the scale is in the history");
    assert_eq!(scale_row.outcome, "done", "{scale_row:?}");
    let wait_row = rows
        .iter()
        .find(|r| r.verb.as_deref() == Some("rollout-status"))
        .expect("the wait is in the history");
    assert_ne!(wait_row.outcome, "running", "{wait_row:?}");
    assert!(
        wait_row
            .error
            .as_deref()
            .is_some_and(|e| e.contains("shut down")),
        "{wait_row:?}"
    );

    // The log follows each request in one span, and never holds the secret.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let handled = log
        .lines()
        .find(|l| l.contains("handled") && l.contains("\"scale\""))
        .unwrap_or_else(|| panic!("no line for the scale:\n{log}"));
    for field in [
        "invocation{",
        &format!("id={}", scale_row.id),
        "platform=\"slack\"",
        "principal=slack:UOPS1",
        "decision=\"allow\"",
        "outcome=\"done\"",
    ] {
        assert!(handled.contains(field), "{field} missing: {handled}");
    }
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!log.contains(SECRET), "the signing secret reached the log");
}
