//! Alerts in over real HTTP: Alertmanager's webhook payloads posted to
//! `oncall::server::app` with the harness's manual clock. A critical alert
//! opens an incident and pages tier after tier; its resolve stops the
//! escalation and resolves the provider's alert; repeats change nothing;
//! bad requests store nothing and page nobody.

use std::sync::Arc;
use std::time::Duration;

use oncall::config::{Config, EXAMPLE};
use oncall::escalation::engine::tick;
use oncall::escalation::pager::Pager;
use oncall::store::EscalationState;
use serde_json::{json, Value};

use crate::common::fake_pager::{FakePager, ROUTING_KEY};
use crate::common::Harness;

/// Every test sets the same token: the variable is the process's.
pub(crate) const TOKEN: &str = "alertmanager-test-token";

pub(crate) struct Env {
    pub h: Harness,
    pub base: String,
    http: reqwest::Client,
}

pub(crate) async fn start(config: Config) -> Env {
    std::env::set_var(oncall::alerts::TOKEN_ENV, TOKEN);
    let h = Harness::with_config(config).await;
    let base = h.serve_http().await;
    Env {
        h,
        base,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn post_raw(&self, auth: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/alerts/alertmanager", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        match r.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            // A body refused from its length may close before it is sent.
            Err(e) if e.is_request() => (413, Value::Null),
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn post(&self, hook: &Value) -> Value {
        let (status, body) = self
            .post_raw(
                Some(&format!("Bearer {TOKEN}")),
                hook.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn incidents(&self) -> Vec<oncall::store::Incident> {
        self.h.router.store().incidents(false, 100).await.unwrap()
    }
}

pub(crate) fn alert(name: &str, status: &str, fingerprint: &str, extra: Value) -> Value {
    let mut labels = json!({"alertname": name, "severity": "critical", "instance": "api-1"});
    if let (Some(l), Some(e)) = (labels.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    json!({
        "status": status,
        "labels": labels,
        "annotations": {"summary": format!("{name} on api-1"), "runbook_url": "https://runbooks.example.com/002"},
        "startsAt": "2026-12-03T10:00:00.000Z",
        "endsAt": if status == "resolved" { "2026-12-03T10:20:00.000Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    })
}

/// Alertmanager's webhook body (version 4), as documented.
pub(crate) fn hook(group: &str, alerts: Vec<Value>) -> Value {
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "oncall",
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group, "severity": "critical"},
        "commonAnnotations": {"summary": format!("{group} on api-1")},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
        "someFieldFromTheFuture": {"tolerated": true},
    })
}

#[tokio::test]
async fn a_critical_alert_opens_an_incident_pages_and_its_resolve_stops_it_and_resolves_pagerduty()
{
    let fake = FakePager::start().await;
    std::env::set_var("ALERTS_TEST_PD_KEY", ROUTING_KEY);
    let extra = format!(
        r#"
[escalation.pagerduty]
url = "{}"
services.api = {{ routing_key_env = "ALERTS_TEST_PD_KEY" }}

[[escalation.policies]]
name = "api-down"
tiers = [
  {{ name = "on call", targets = ["pagerduty:api"], delay = "5m" }},
  {{ name = "manager", targets = ["cli:manager"], delay = "15m" }},
  {{ name = "director", targets = ["cli:cto"] }},
]
"#,
        fake.url
    );
    let mut config = Config::parse(&format!("{EXAMPLE}\n{extra}"), "test").unwrap();
    let down = config
        .alerts
        .routes
        .iter_mut()
        .find(|r| r.name == "down")
        .unwrap();
    down.escalation = Some("api-down".into());
    let env = start(config).await;
    let pager = Pager::new(
        env.h.router.clone(),
        Arc::new(oncall::chat::Sinks::default()),
    );

    let firing = hook(
        "APIDown",
        vec![alert("APIDown", "firing", "fa1", json!({}))],
    );
    let body = env.post(&firing).await;
    assert_eq!(body["opened"], true, "{body}");
    let incidents = env.incidents().await;
    assert_eq!(incidents.len(), 1);
    let i = &incidents[0];
    assert_eq!(i.severity, "SEV-1");
    assert_eq!(i.title, "APIDown: APIDown on api-1");
    assert_eq!(i.declared_by, "alertmanager");

    // Tier 1 at once, tier 2 five minutes later.
    assert_eq!(tick(&env.h.router).await.unwrap().steps, 1);
    assert_eq!(pager.drain().await.unwrap().delivered, 1);
    let key = format!("page:{}:0:0:pagerduty:api", i.id);
    assert_eq!(fake.pagerduty_alerts()[&key], "triggered");
    env.h.clock.advance(Duration::from_secs(300));
    assert_eq!(
        tick(&env.h.router).await.unwrap().steps,
        1,
        "no ack: tier 2"
    );

    // The alert resolves: the escalation stops, PagerDuty resolves, the
    // incident is mitigated, and the timeline says so.
    let resolved = hook(
        "APIDown",
        vec![alert("APIDown", "resolved", "fa1", json!({}))],
    );
    let body = env.post(&resolved).await;
    assert_eq!(body["newly_resolved"], 1, "{body}");
    let e = env
        .h
        .router
        .store()
        .escalation_of(i.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.state, EscalationState::Resolved);
    pager.drain().await.unwrap();
    assert_eq!(fake.pagerduty_alerts()[&key], "resolved");
    let i = env.h.router.store().incident(i.id).await.unwrap().unwrap();
    assert_eq!(i.state, "monitoring");
    assert!(i.mitigated_at_ms.is_some());
    let events = env.h.router.store().incident_events(i.id).await.unwrap();
    assert!(
        events[0]
            .text
            .contains("from alertmanager (1 firing: APIDown)"),
        "{}",
        events[0].text
    );
    assert!(events
        .iter()
        .any(|e| e.text == "alert APIDown resolved: APIDown on api-1"));
    assert!(events
        .iter()
        .any(|e| e.text.contains("every alert has resolved")));
    env.h.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        tick(&env.h.router).await.unwrap().steps,
        0,
        "nothing pages after"
    );
}

#[tokio::test]
async fn the_same_payload_ten_times_is_one_incident_and_one_page_per_tier() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let firing = hook(
        "HighErrorRate",
        vec![alert("HighErrorRate", "firing", "fe1", json!({}))],
    );
    for n in 0..10 {
        let body = env.post(&firing).await;
        assert_eq!(body["opened"], n == 0, "{body}");
    }
    assert_eq!(env.incidents().await.len(), 1);
    assert_eq!(tick(&env.h.router).await.unwrap().steps, 1);
    for _ in 0..10 {
        env.post(&firing).await;
    }
    assert_eq!(
        tick(&env.h.router).await.unwrap().steps,
        0,
        "a repeat pages nobody again"
    );
    let firing = env.h.router.store().firing_alerts(10).await.unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].deliveries, 20);
    let listed = env.h.run("cli:operator", "alerts").await.to_console();
    assert!(listed.contains("1 alert(s) firing"), "{listed}");
    let incident = env.incidents().await[0].id;
    let row = listed
        .lines()
        .find(|l| l.contains("HighErrorRate"))
        .unwrap();
    assert!(row.trim_end().ends_with(&incident.to_string()), "{listed}");
}

#[tokio::test]
async fn a_resolve_that_arrives_before_its_firing_is_kept() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let resolved = hook(
        "ServiceDown",
        vec![alert("ServiceDown", "resolved", "fs1", json!({}))],
    );
    let firing = hook(
        "ServiceDown",
        vec![alert("ServiceDown", "firing", "fs1", json!({}))],
    );
    assert_eq!(env.post(&resolved).await["opened"], false);
    let body = env.post(&firing).await;
    assert_eq!(
        body["opened"], false,
        "the late firing of a resolved alert: {body}"
    );
    assert!(env.incidents().await.is_empty());
    assert!(env
        .h
        .router
        .store()
        .firing_alerts(10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_group_where_one_of_two_alerts_resolves_stays_open() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let two = |second: &str| {
        hook(
            "PodCrashLooping",
            vec![
                alert("PodCrashLooping", "firing", "fp1", json!({"pod": "a"})),
                alert("PodCrashLooping", second, "fp2", json!({"pod": "b"})),
            ],
        )
    };
    assert_eq!(env.post(&two("firing")).await["opened"], true);
    let body = env.post(&two("resolved")).await;
    assert_eq!(body["newly_resolved"], 1, "{body}");
    let id = env.incidents().await[0].id;
    let e = env
        .h
        .router
        .store()
        .escalation_of(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.state, EscalationState::Active, "one still fires");
    let i = env.h.router.store().incident(id).await.unwrap().unwrap();
    assert_eq!(i.state, "investigating");
    let events = env.h.router.store().incident_events(id).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.text.starts_with("alert PodCrashLooping resolved")));
}

#[tokio::test]
async fn warnings_for_business_hours_and_lag_within_five_minutes_page_nobody() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    // A Saturday night: outside the example's business hours.
    env.h.clock.set("2026-12-05T03:00:00Z".parse().unwrap());
    let cpu = hook(
        "HighCPUUsage",
        vec![alert(
            "HighCPUUsage",
            "firing",
            "fc1",
            json!({"severity": "warning"}),
        )],
    );
    assert_eq!(env.post(&cpu).await["opened"], false);
    assert!(env.incidents().await.is_empty(), "kept, not an incident");
    assert_eq!(
        env.h.router.store().firing_alerts(10).await.unwrap().len(),
        1
    );

    // Runbook 001: lag escalates only if it persists for 5 minutes.
    let lag = crate::alert_cards::lag;
    assert_eq!(env.post(&lag("firing")).await["opened"], true);
    let i = env
        .incidents()
        .await
        .into_iter()
        .find(|i| i.title.starts_with("KafkaConsumerLag"))
        .unwrap();
    assert_eq!(i.severity, "SEV-3");
    assert_eq!(i.services, ["recurring-task-service"]);
    env.h.clock.advance(Duration::from_secs(299));
    assert_eq!(
        tick(&env.h.router).await.unwrap().steps,
        0,
        "not before 5 minutes"
    );
    env.post(&lag("resolved")).await;
    env.h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        tick(&env.h.router).await.unwrap().steps,
        0,
        "resolved in time: nobody paged"
    );
}

#[tokio::test]
async fn a_group_of_a_hundred_alerts_with_more_truncated_is_one_incident() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let alerts: Vec<Value> = (0..100)
        .map(|n| {
            alert(
                "DatabaseDown",
                "firing",
                &format!("fd{n}"),
                json!({"instance": format!("db-{n}")}),
            )
        })
        .collect();
    let mut h = hook("DatabaseDown", alerts);
    h["truncatedAlerts"] = json!(25);
    let body = env.post(&h).await;
    assert_eq!(
        (body["opened"].as_bool(), body["newly_firing"].as_u64()),
        (Some(true), Some(100))
    );
    assert_eq!(env.incidents().await.len(), 1);
    assert_eq!(
        env.h
            .router
            .store()
            .firing_alerts(1000)
            .await
            .unwrap()
            .len(),
        100
    );
}

#[tokio::test]
async fn bad_requests_are_refused_store_nothing_and_page_nobody() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let good = hook(
        "APIDown",
        vec![alert("APIDown", "firing", "fb1", json!({}))],
    )
    .to_string()
    .into_bytes();
    let cases: Vec<(&str, Option<String>, Vec<u8>, u16)> = vec![
        ("no token", None, good.clone(), 401),
        (
            "a wrong token",
            Some("Bearer nope".into()),
            good.clone(),
            401,
        ),
        ("not bearer", Some(TOKEN.into()), good.clone(), 401),
        (
            "malformed JSON",
            Some(format!("Bearer {TOKEN}")),
            b"{\"alerts\": [".to_vec(),
            400,
        ),
        (
            "not a webhook",
            Some(format!("Bearer {TOKEN}")),
            b"{\"hello\": 1}".to_vec(),
            400,
        ),
        (
            "a bad status",
            Some(format!("Bearer {TOKEN}")),
            hook(
                "APIDown",
                vec![alert("APIDown", "exploded", "fb1", json!({}))],
            )
            .to_string()
            .into_bytes(),
            400,
        ),
        (
            "10 MB",
            Some(format!("Bearer {TOKEN}")),
            vec![b' '; 10 * 1024 * 1024],
            413,
        ),
    ];
    for (name, auth, body, want) in cases {
        let (status, answer) = env.post_raw(auth.as_deref(), body).await;
        assert_eq!(status, want, "{name}: {answer}");
    }
    assert!(env.incidents().await.is_empty());
    assert!(env
        .h
        .router
        .store()
        .firing_alerts(10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(tick(&env.h.router).await.unwrap().steps, 0);
}

#[tokio::test]
async fn without_a_token_the_intake_is_off_not_open() {
    let sim = crate::common::fast_sim().await;
    let slack = crate::common::fake_slack::FakeSlack::start().await;
    let setup = crate::common::serve::Setup::new(&sim.url(), "alerts-off-secret", &[], "");
    let served = setup
        .serve_env(&slack, "serve.log", &[(oncall::alerts::TOKEN_ENV, "")])
        .await;
    let body = hook(
        "APIDown",
        vec![alert("APIDown", "firing", "fo1", json!({}))],
    )
    .to_string();
    for auth in ["", "Bearer ", "Bearer anything"] {
        let r = reqwest::Client::new()
            .post(format!("{}/alerts/alertmanager", served.base))
            .header("authorization", auth)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{auth:?}");
    }
    drop(served);
    let db = crate::common::serve::open_db(&setup.db_path());
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

/// Alertmanager started for a test on a free port with `config`, stopped
/// when dropped.
pub(crate) struct RunningAlertmanager {
    pub url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RunningAlertmanager {
    pub(crate) async fn start(binary: &str, config: &str) -> RunningAlertmanager {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
        let port = crate::common::serve::free_port();
        let child = std::process::Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
            .spawn()
            .unwrap();
        let am = RunningAlertmanager {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        crate::common::eventually("Alertmanager is ready", async || {
            http.get(format!("{}/-/ready", am.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        am
    }
}

impl Drop for RunningAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Alertmanager binary on this machine (Debian names it
/// `prometheus-alertmanager`), if any.
pub(crate) fn alertmanager_binary() -> Option<String> {
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find_map(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| b.to_string())
        })
}

#[tokio::test]
async fn the_real_alertmanager_delivers_with_bearer_auth_retries_a_503_and_the_alert_lands_once() {
    let Some(binary) = alertmanager_binary() else {
        println!(
            "SKIPPED: no Alertmanager here (.ci/run installs Debian's prometheus-alertmanager)"
        );
        return;
    };
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    // In front of oncall: a proxy that answers the first delivery 503 (as
    // an unavailable store would) and passes the rest on, headers and all.
    let seen: Arc<std::sync::Mutex<Vec<u16>>> = Default::default();
    let target = format!("{}/alerts/alertmanager", env.base);
    let proxy = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let seen = seen.clone();
                    let target = target.clone();
                    async move {
                        if seen.lock().unwrap().is_empty() {
                            seen.lock().unwrap().push(503);
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let mut r = reqwest::Client::new().post(&target).body(body);
                        for (k, v) in headers.iter() {
                            if k == "authorization" || k == "content-type" {
                                r = r.header(k.as_str(), v.to_str().unwrap());
                            }
                        }
                        let status = r.send().await.unwrap().status().as_u16();
                        seen.lock().unwrap().push(status);
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, proxy).await.unwrap() });

    let config = format!(
        r#"
route:
  receiver: oncall
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: oncall
    webhook_configs:
      - url: {hook_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {TOKEN}
"#
    );
    let running = RunningAlertmanager::start(&binary, &config).await;
    let am = running.url.clone();
    let http = reqwest::Client::new();
    let starts = jiff::Timestamp::now().to_string();
    let alert = |ends: Option<String>| {
        let mut a = json!([{
            "labels": {"alertname": "APIDown", "severity": "critical", "job": "brownie-api"},
            "annotations": {"summary": "Brownie API is down"},
            "startsAt": starts,
        }]);
        if let Some(e) = ends {
            a[0]["endsAt"] = json!(e);
        }
        a
    };
    let r = http
        .post(format!("{am}/api/v2/alerts"))
        .json(&alert(None))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    crate::common::eventually("the incident is opened through Alertmanager", async || {
        env.incidents().await.len() == 1
    })
    .await;
    // The proxy notes the retry's status once oncall's answer is back, which
    // may be just after the incident became visible.
    crate::common::eventually("the retry's answer reaches the proxy", async || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    assert_eq!(seen.lock().unwrap()[..2], [503, 200], "the 503 was retried");
    let incident = env.incidents().await[0].clone();
    assert_eq!(incident.title, "APIDown: Brownie API is down");
    assert_eq!(
        env.h.router.store().firing_alerts(10).await.unwrap().len(),
        1,
        "once"
    );

    // Resolved in Alertmanager: oncall hears it and stops the escalation.
    let r = http
        .post(format!("{am}/api/v2/alerts"))
        .json(&alert(Some(jiff::Timestamp::now().to_string())))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    crate::common::eventually("the resolve arrives", async || {
        env.h
            .router
            .store()
            .incident(incident.id)
            .await
            .unwrap()
            .unwrap()
            .state
            == "monitoring"
    })
    .await;
    let e = env
        .h
        .router
        .store()
        .escalation_of(incident.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.state, EscalationState::Resolved);
    assert_eq!(env.incidents().await.len(), 1, "still one incident");
}

/// Every alert rule the runbooks name is in the rules file, passes
/// `promtool check rules` and is routed by the example config with the
/// severity and paging the runbooks give; the Alertmanager snippet passes
/// `amtool check-config`.
#[test]
fn the_runbooks_rules_are_valid_and_every_one_is_routed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules_path = root.join("deploy/prometheus/runbook-rules.yml");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&rules_path).unwrap()).unwrap();
    let config = Config::parse(EXAMPLE, "example").unwrap();
    let mut names = std::collections::BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_string();
            let mut labels: std::collections::BTreeMap<String, String> =
                serde_yaml::from_value(rule["labels"].clone()).unwrap();
            labels.insert("alertname".into(), name.clone());
            let routed = config
                .alerts
                .route(&labels)
                .unwrap_or_else(|| panic!("{name} unrouted"));
            assert_ne!(
                routed.route, "other",
                "{name} falls through to the catch-all"
            );
            let service = labels["service"].clone();
            assert!(
                config.catalog().get(&service).is_some(),
                "{name}: {service} not in the catalog"
            );
            names.insert(name);
        }
    }
    let want = [
        "APIDown",
        "DatabaseConnectionFailure",
        "DatabaseConnectionPoolUsage",
        "DatabaseDown",
        "HighCPUUsage",
        "HighErrorRate",
        "HighLatency",
        "HighMemoryUsage",
        "HighResponseTime",
        "KafkaConsumerLag",
        "LowSuccessRate",
        "PodCrashLooping",
        "PodRestartLoop",
        "ReminderDeliveryFailureRate",
        "ServiceDown",
    ];
    assert_eq!(names.iter().map(String::as_str).collect::<Vec<_>>(), want);
    let route = |name: &str, severity: &str| {
        let labels = [("alertname", name), ("severity", severity)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = config.alerts.route(&labels).unwrap();
        (r.severity.unwrap(), r.page)
    };
    use oncall::alerts::config::PageWhen;
    assert_eq!(
        route("APIDown", "critical"),
        ("SEV-1".into(), PageWhen::Immediately),
        "002: page on-call"
    );
    assert_eq!(
        route("KafkaConsumerLag", "warning"),
        ("SEV-3".into(), PageWhen::After(Duration::from_secs(300))),
        "001: P2, escalate if it persists > 5 minutes"
    );
    assert_eq!(
        route("ReminderDeliveryFailureRate", "critical").0,
        "SEV-2",
        "001: P1"
    );
    assert_eq!(
        route("HighCPUUsage", "warning").1,
        PageWhen::BusinessHours,
        "003: warning"
    );

    for (tool, args, file) in [
        ("promtool", vec!["check", "rules"], rules_path),
        (
            "amtool",
            vec!["check-config"],
            root.join("deploy/alertmanager/alertmanager.yml"),
        ),
    ] {
        match std::process::Command::new(tool)
            .args(&args)
            .arg(&file)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{tool}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => println!("SKIPPED: {tool} is not here (.ci/run installs it)"),
        }
    }
}

/// Grafana's webhook contact point payload (version 1), as documented,
/// with a critical label so it pages.
fn grafana_payload() -> Value {
    json!({
        "receiver": "oncall",
        "status": "firing",
        "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1", "severity": "critical"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1"
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
            "valueString": "[ var='B' labels={} value=44.2 ]"
        }],
        "groupLabels": {},
        "commonLabels": {"team": "blue"},
        "commonAnnotations": {},
        "externalURL": "https://play.grafana.org/",
        "version": "1",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "title": "[FIRING:1]  (blue)",
        "state": "alerting",
        "message": "**Firing**"
    })
}

#[tokio::test]
async fn grafana_deliveries_must_carry_a_recent_signature() {
    use hmac::Mac;
    const SECRET: &str = "grafana-test-hmac-secret";
    std::env::set_var(oncall::alerts::GRAFANA_SECRET_ENV, SECRET);
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let body = grafana_payload().to_string();
    let sign = |secret: &str, ts: &str, body: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}:{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let post = |sig: String, ts: String, body: String| {
        env.http
            .post(format!("{}/alerts/grafana", env.base))
            .header("x-grafana-alerting-signature", sig)
            .header("x-grafana-alerting-signature-timestamp", ts)
            .body(body)
            .send()
    };
    let now = jiff::Timestamp::now().as_second();
    let cases = [
        (
            "a wrong secret",
            sign("nope", &now.to_string(), &body),
            now.to_string(),
            401,
        ),
        (
            "an old timestamp (replay)",
            sign(SECRET, &(now - 3600).to_string(), &body),
            (now - 3600).to_string(),
            401,
        ),
        (
            "another body's signature",
            sign(SECRET, &now.to_string(), "{}"),
            now.to_string(),
            401,
        ),
        ("no timestamp", sign(SECRET, "", &body), String::new(), 401),
    ];
    for (name, sig, ts, want) in cases {
        let r = post(sig, ts, body.clone()).await.unwrap();
        assert_eq!(r.status(), want, "{name}");
    }
    assert!(env.incidents().await.is_empty(), "nothing stored");
    let r = post(
        sign(SECRET, &now.to_string(), &body),
        now.to_string(),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let incidents = env.incidents().await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        incidents[0].title,
        "High memory usage: This alert was triggered for zone us-1"
    );
    assert_eq!(incidents[0].declared_by, "grafana");
    assert_eq!(tick(&env.h.router).await.unwrap().steps, 1, "SEV-1 pages");
}

#[tokio::test]
async fn the_demo_fires_a_runbook_alert_and_resolves_it() {
    let env = start(Config::parse(EXAMPLE, "example").unwrap()).await;
    let starts = "2026-12-03T10:00:00Z";
    let said = oncall::alerts::demo_alert(&env.h.router, "apidown", false, starts)
        .await
        .unwrap();
    assert!(
        said.contains("APIDown fires (route down): incident 1 opened"),
        "{said}"
    );
    assert_eq!(tick(&env.h.router).await.unwrap().steps, 1);
    let said = oncall::alerts::demo_alert(&env.h.router, "APIDown", true, starts)
        .await
        .unwrap();
    assert!(said.contains("escalation stopped"), "{said}");
    let err = oncall::alerts::demo_alert(&env.h.router, "nope", false, starts)
        .await
        .unwrap_err();
    assert!(err.contains("one of APIDown"), "{err}");
}

#[tokio::test]
async fn two_hundred_deliveries_at_once_are_each_stored_and_open_one_incident() {
    let env = Arc::new(start(Config::parse(EXAMPLE, "example").unwrap()).await);
    let sends = (0..200).map(|n| {
        let env = env.clone();
        async move {
            let h = hook(
                "DatabaseDown",
                vec![alert(
                    "DatabaseDown",
                    "firing",
                    &format!("fc{n}"),
                    json!({"instance": format!("db-{n}")}),
                )],
            );
            env.post(&h).await
        }
    });
    let answers = futures::future::join_all(sends).await;
    let opened = answers.iter().filter(|a| a["opened"] == true).count();
    assert_eq!(opened, 1, "one delivery opened the group's incident");
    assert_eq!(env.incidents().await.len(), 1);
    let firing = env.h.router.store().firing_alerts(1000).await.unwrap();
    assert_eq!(firing.len(), 200);
    assert!(firing
        .iter()
        .all(|a| a.incident_id == firing[0].incident_id));
}
