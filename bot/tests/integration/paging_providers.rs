//! Pages to PagerDuty, Opsgenie and a webhook over real HTTP against fake
//! providers that check what the real APIs require: the exact payloads and
//! headers, acknowledge and resolve follow-ups under the same dedup keys, a
//! 429 and a 500 retried, a 400 reported on the incident and not retried,
//! and no key ever stored.

use std::sync::Arc;
use std::time::Duration;

use oncall::chat::Sinks;
use oncall::config::{Config, EXAMPLE};
use oncall::escalation::engine::tick;
use oncall::escalation::pager::Pager;
use oncall::reply::Outcome;
use oncall::store::EscalationState;

use crate::common::fake_pager::{FakePager, GENIE_KEY, ROUTING_KEY, WEBHOOK_SECRET};
use crate::common::Harness;

const COMMANDER: &str = "cli:commander";

/// The example config with a SEV-1 policy paging every provider at once,
/// then PagerDuty again 5 minutes later; keys in variables named for `tag`.
fn config(fake: &FakePager, tag: &str) -> Config {
    let pd = format!("TEST_PD_KEY_{tag}");
    let og = format!("TEST_OG_KEY_{tag}");
    let wh = format!("TEST_WH_SECRET_{tag}");
    std::env::set_var(&pd, ROUTING_KEY);
    std::env::set_var(&og, GENIE_KEY);
    std::env::set_var(&wh, WEBHOOK_SECRET);
    let extra = format!(
        r#"
[escalation.pagerduty]
url = "{url}"
services.payments = {{ routing_key_env = "{pd}" }}

[escalation.opsgenie]
url = "{url}"
api_key_env = "{og}"
teams.sre = {{ team = "SRE" }}

[escalation.webhooks.status]
url = "{url}/hook"
secret_env = "{wh}"

[[escalation.policies]]
name = "providers"
tiers = [
  {{ name = "everyone", targets = ["pagerduty:payments", "opsgenie:sre", "webhook:status"], delay = "5m" }},
  {{ name = "pagerduty again", targets = ["pagerduty:payments"] }},
]
"#,
        url = fake.url
    );
    let mut config = Config::parse(&format!("{EXAMPLE}\n{extra}"), "test").unwrap();
    config.incidents.severities[0].escalation = Some("providers".into());
    config
}

fn pager(h: &Harness) -> Pager {
    Pager::new(h.router.clone(), Arc::new(Sinks::default()))
}

async fn declare(h: &Harness) -> i64 {
    let reply = h
        .run(COMMANDER, "incident declare SEV-1 checkout down")
        .await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    h.router.store().incidents(false, 1).await.unwrap()[0].id
}

#[tokio::test]
async fn providers_get_the_exact_payloads_and_follow_ups_under_the_same_keys() {
    let fake = FakePager::start().await;
    let h = Harness::with_config(config(&fake, "EXACT")).await;
    let id = declare(&h).await;
    tick(&h.router).await.unwrap();
    let drained = pager(&h).drain().await.unwrap();
    assert_eq!(drained.delivered, 3, "{drained:?} {:?}", fake.calls(""));

    let key = |target: &str| format!("page:{id}:0:0:{target}");
    let pd = &fake.calls("/v2/enqueue")[0];
    assert_eq!(pd.status, 202, "{:?}", pd.body);
    assert_eq!(pd.body["event_action"], "trigger");
    assert_eq!(pd.body["dedup_key"], key("pagerduty:payments"));
    assert_eq!(pd.body["payload"]["severity"], "critical", "SEV-1");
    assert_eq!(pd.body["payload"]["source"], "oncall");
    let summary = pd.body["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("checkout down") && summary.contains("SEV-1"),
        "{summary}"
    );
    assert_eq!(
        pd.body["payload"]["custom_details"]["tier_name"],
        "everyone"
    );

    let og = &fake.calls("/v2/alerts")[0];
    assert_eq!(og.status, 202, "{:?}", og.body);
    assert_eq!(og.headers["authorization"], format!("GenieKey {GENIE_KEY}"));
    assert_eq!(og.body["alias"], key("opsgenie:sre"));
    assert_eq!(og.body["priority"], "P1");
    assert_eq!(og.body["responders"][0]["name"], "SRE");
    assert_eq!(og.body["responders"][0]["type"], "team");

    let deliveries = fake.webhook_deliveries();
    let hook = &deliveries[&key("webhook:status")];
    assert_eq!(hook.len(), 1, "signature verified, delivered once");
    assert_eq!(hook[0]["type"], "page.trigger");
    assert_eq!(hook[0]["data"]["incident"], id);

    // Acknowledged: the provider's alerts are acknowledged under the same
    // keys, and the 5-minute tier never pages.
    h.run(COMMANDER, &format!("incident ack {id}")).await;
    assert_eq!(pager(&h).drain().await.unwrap().delivered, 3);
    assert_eq!(
        fake.pagerduty_alerts()[&key("pagerduty:payments")],
        "acknowledged"
    );
    assert_eq!(fake.opsgenie_alerts()[&key("opsgenie:sre")], "acknowledged");
    let ack = fake.calls("/v2/alerts/").pop().unwrap();
    assert_eq!(
        ack.path,
        format!("/v2/alerts/{}/acknowledge", key("opsgenie:sre"))
    );
    let acked_hook = &fake.webhook_deliveries()[&format!("acknowledge:{}", key("webhook:status"))];
    assert_eq!(acked_hook[0]["type"], "page.acknowledge");
    h.clock.advance(Duration::from_secs(600));
    assert_eq!(tick(&h.router).await.unwrap().steps, 0);

    // Resolved: PagerDuty resolve, Opsgenie close.
    h.run(COMMANDER, &format!("incident resolve {id}")).await;
    assert_eq!(pager(&h).drain().await.unwrap().delivered, 3);
    assert_eq!(
        fake.pagerduty_alerts()[&key("pagerduty:payments")],
        "resolved"
    );
    assert_eq!(fake.opsgenie_alerts()[&key("opsgenie:sre")], "closed");
    assert_eq!(
        fake.pagerduty_alerts().len(),
        1,
        "one alert, folded by its key"
    );

    // No key or secret is ever stored.
    let db = std::fs::read(h.dir.path().join("oncall.db")).unwrap();
    let wal = std::fs::read(h.dir.path().join("oncall.db-wal")).unwrap_or_default();
    for secret in [ROUTING_KEY, GENIE_KEY, WEBHOOK_SECRET] {
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} is in the database"
            );
        }
    }
}

#[tokio::test]
async fn a_429_and_a_500_are_retried_and_the_resend_is_folded() {
    let fake = FakePager::start().await;
    let mut config = config(&fake, "RETRY");
    config.escalation.policies.last_mut().unwrap().tiers[0].targets =
        vec!["pagerduty:payments".into()];
    let h = Harness::with_config(config).await;
    let id = declare(&h).await;
    tick(&h.router).await.unwrap();
    fake.fail_next(&[(429, Some(30)), (500, None)]);
    let p = pager(&h);
    let first = p.drain().await.unwrap();
    assert_eq!((first.delivered, first.retried), (0, 1), "429: later");
    // Retry-After: 30 is honoured: not sooner.
    h.clock.advance(Duration::from_secs(29));
    assert_eq!(p.drain().await.unwrap(), Default::default());
    h.clock.advance(Duration::from_secs(1));
    let second = p.drain().await.unwrap();
    assert_eq!((second.delivered, second.retried), (0, 1), "500: later");
    h.clock.advance(Duration::from_secs(300));
    assert_eq!(p.drain().await.unwrap().delivered, 1);
    let calls = fake.calls("/v2/enqueue");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 500, 202]);
    assert!(calls
        .iter()
        .all(|c| c.body["dedup_key"] == format!("page:{id}:0:0:pagerduty:payments")));
    assert_eq!(fake.pagerduty_alerts().len(), 1);
}

#[tokio::test]
async fn a_400_is_reported_on_the_incident_and_not_retried() {
    let fake = FakePager::start().await;
    let mut config = config(&fake, "REFUSED");
    config.escalation.policies.last_mut().unwrap().tiers[0].targets =
        vec!["pagerduty:payments".into()];
    let h = Harness::with_config(config).await;
    let id = declare(&h).await;
    tick(&h.router).await.unwrap();
    fake.fail_next(&[(400, None)]);
    let p = pager(&h);
    assert_eq!(p.drain().await.unwrap().failed, 1);
    h.clock.advance(Duration::from_secs(3600));
    tick(&h.router).await.unwrap();
    let later = p.drain().await.unwrap();
    assert_eq!(
        later.delivered, 1,
        "only the 5-minute tier's own page: {later:?}"
    );
    let calls = fake.calls("/v2/enqueue");
    let sent: Vec<(String, u16)> = calls
        .iter()
        .map(|c| (c.body["dedup_key"].as_str().unwrap().to_string(), c.status))
        .collect();
    assert_eq!(
        sent,
        [
            (format!("page:{id}:0:0:pagerduty:payments"), 400),
            (format!("page:{id}:0:1:pagerduty:payments"), 202),
        ],
        "the refused page was not sent again"
    );
    let events = h.router.store().incident_events(id).await.unwrap();
    let failed = events
        .iter()
        .find(|e| e.text.contains("failed"))
        .expect("the failure is on the timeline");
    assert!(
        failed.text.starts_with(
            "page to pagerduty:payments failed after 1 attempt(s), not retried: HTTP 400"
        ),
        "{}",
        failed.text
    );
}

#[tokio::test]
async fn a_missing_key_is_named_not_guessed() {
    let fake = FakePager::start().await;
    let mut config = config(&fake, "MISSING");
    config
        .escalation
        .pagerduty
        .services
        .get_mut("payments")
        .unwrap()
        .routing_key_env = "TEST_PD_KEY_NOT_SET_ANYWHERE".into();
    config.escalation.policies.last_mut().unwrap().tiers[0].targets =
        vec!["pagerduty:payments".into()];
    let h = Harness::with_config(config).await;
    let id = declare(&h).await;
    tick(&h.router).await.unwrap();
    assert_eq!(pager(&h).drain().await.unwrap().failed, 1);
    assert!(fake.calls("").is_empty(), "nothing sent without a key");
    let events = h.router.store().incident_events(id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.text.contains("TEST_PD_KEY_NOT_SET_ANYWHERE is not set")),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_acknowledgement_in_pagerduty_or_opsgenie_stops_the_escalation() {
    use hmac::Mac;
    let fake = FakePager::start().await;
    let mut config = config(&fake, "INBOUND");
    std::env::set_var("TEST_PD_WEBHOOK_INBOUND", "pd-webhook-secret");
    std::env::set_var("TEST_OG_WEBHOOK_INBOUND", "og-webhook-token");
    config.escalation.pagerduty.webhook_secret_env = Some("TEST_PD_WEBHOOK_INBOUND".into());
    config.escalation.opsgenie.webhook_token_env = Some("TEST_OG_WEBHOOK_INBOUND".into());
    let h = Harness::with_config(config).await;
    let base = h.serve_http().await;
    let http = reqwest::Client::new();

    let first = declare(&h).await;
    let second = declare(&h).await;
    tick(&h.router).await.unwrap();
    assert_eq!(pager(&h).drain().await.unwrap().delivered, 6);

    // PagerDuty: signed with the subscription's secret.
    let body = serde_json::json!({"event": {
        "id": "01DEN0000000000000000000", "event_type": "incident.acknowledged",
        "resource_type": "incident", "occurred_at": "2026-12-03T10:00:00Z",
        "agent": {"id": "PUSER1", "type": "user_reference", "summary": "Jane Doe"},
        "data": {"id": "Q1", "type": "incident", "status": "acknowledged",
                 "incident_key": format!("page:{first}:0:0:pagerduty:payments")}
    }})
    .to_string();
    let sign = |secret: &[u8], body: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body.as_bytes());
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    };
    let post = |path: &str, headers: Vec<(&'static str, String)>, body: String| {
        let mut r = http.post(format!("{base}{path}")).body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let forged = post(
        "/webhooks/pagerduty",
        vec![("x-pagerduty-signature", sign(b"wrong", &body))],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(
        h.escalation_state(first).await,
        EscalationState::Active,
        "a forgery changes nothing"
    );
    let ok = post(
        "/webhooks/pagerduty",
        vec![(
            "x-pagerduty-signature",
            format!("v1=00,{}", sign(b"pd-webhook-secret", &body)),
        )],
        body,
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        h.escalation_state(first).await,
        EscalationState::Acknowledged
    );
    let i = h.router.store().incident(first).await.unwrap().unwrap();
    assert_eq!(i.acknowledged_by.as_deref(), Some("pagerduty:Jane Doe"));
    assert_eq!(
        h.escalation_state(second).await,
        EscalationState::Active,
        "only that incident"
    );

    // Opsgenie: its outgoing webhook with the configured token.
    let body = serde_json::json!({
        "action": "Acknowledge",
        "alert": {"alertId": "a1", "alias": format!("page:{second}:0:0:opsgenie:sre"),
                  "message": "Incident", "username": "sam@example.com"},
        "source": {"name": "", "type": "web"}, "integrationName": "oncall"
    })
    .to_string();
    let no_token = post("/webhooks/opsgenie", vec![], body.clone())
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(h.escalation_state(second).await, EscalationState::Active);
    let ok = post(
        "/webhooks/opsgenie",
        vec![("x-oncall-token", "og-webhook-token".into())],
        body,
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        h.escalation_state(second).await,
        EscalationState::Acknowledged
    );
    let i = h.router.store().incident(second).await.unwrap().unwrap();
    assert_eq!(
        i.acknowledged_by.as_deref(),
        Some("opsgenie:sam@example.com")
    );

    // A key that is not one of our pages changes nothing.
    let body = serde_json::json!({"action": "Acknowledge", "alert": {"alias": "someone-else"}})
        .to_string();
    let other = post(
        "/webhooks/opsgenie",
        vec![("x-oncall-token", "og-webhook-token".into())],
        body,
    )
    .await
    .unwrap();
    assert_eq!(other.status(), 202);
}
