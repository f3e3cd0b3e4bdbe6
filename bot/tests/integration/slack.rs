//! Slack end to end over real HTTP: the `oncall serve` app against the
//! simulated cluster and a fake Slack, with correctly (and incorrectly)
//! signed requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::fake_slack::{FakeSlack, APP_TOKEN, BOT_TOKEN};
use crate::common::{eventually, Harness};
use oncall::config::{Config, EXAMPLE};
use oncall::slack::{verify::sign, SlackConfig, SlackSecrets, SlackState};
use oncall_permissions::Binding;
use serde_json::{json, Value};

const SECRET: &str = "test-signing-secret";

struct Env {
    state: Arc<SlackState>,
    h: Harness,
    slack: FakeSlack,
    base: String,
    http: reqwest::Client,
    next_response: std::sync::atomic::AtomicU32,
}

async fn start() -> Env {
    start_with_ack(Duration::from_secs(10)).await
}

async fn start_with_ack(ack: Duration) -> Env {
    start_with_slack(SlackConfig {
        ack_timeout: ack,
        ..SlackConfig::default()
    })
    .await
}

async fn start_with_slack(slack_config: SlackConfig) -> Env {
    start_with_config(slack_config, |_| {}).await
}

async fn start_with_config(slack_config: SlackConfig, change: impl FnOnce(&mut Config)) -> Env {
    let ack = slack_config.ack_timeout;
    let mut config = Config::parse(EXAMPLE, "example").unwrap();
    change(&mut config);
    for (principal, role) in [
        ("slack:UOPS1", "operator"),
        ("slack:UVIEW1", "viewer"),
        ("slack-group:SADMINS", "admin"),
        ("slack-group:SOPS", "operator"),
    ] {
        config.policy.bindings.push(Binding {
            principal: principal.parse().unwrap(),
            roles: vec![role.into()],
        });
    }
    let h = Harness::for_ack(config, ack).await;
    let slack = FakeSlack::start().await;
    slack
        .state
        .groups
        .lock()
        .unwrap()
        .insert("SADMINS".into(), vec!["UADMIN1".into()]);
    slack
        .state
        .groups
        .lock()
        .unwrap()
        .insert("SOPS".into(), vec!["UGROUPOPS1".into()]);
    let secrets = SlackSecrets {
        signing_secret: Some(SECRET.as_bytes().to_vec()),
        bot_token: Some(BOT_TOKEN.into()),
        api_url: slack.api_url(),
        app_token: None,
    };
    let state = SlackState::new(h.router.clone(), slack_config, secrets);
    let app = oncall::server::app(h.router.clone(), true, Some(state.clone()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Env {
        state,
        h,
        slack,
        base,
        http: reqwest::Client::new(),
        next_response: 100.into(),
    }
}

impl Env {
    fn now(&self) -> i64 {
        self.h.clock.now().as_second()
    }

    async fn post_signed(&self, path: &str, body: &str, ts: i64) -> reqwest::Response {
        let ts = ts.to_string();
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", &ts)
            .header(
                "x-slack-signature",
                sign(SECRET.as_bytes(), &ts, body.as_bytes()),
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    fn command_body(&self, user: &str, text: &str, trigger: &str, response: u32) -> String {
        serde_urlencoded::to_string([
            ("token", "deprecated-verification-token"),
            ("team_id", "T0001"),
            ("team_domain", "example"),
            ("channel_id", "C0OPS"),
            ("channel_name", "ops"),
            ("user_id", user),
            ("user_name", "someone"),
            ("command", "/oncall"),
            ("text", text),
            ("api_app_id", "A0001"),
            ("response_url", &self.slack.response_url(response)),
            ("trigger_id", trigger),
        ])
        .unwrap()
    }

    /// The immediate HTTP answer to a slash command (response_url 1).
    async fn command_raw(&self, user: &str, text: &str, trigger: &str) -> (u16, Value) {
        let body = self.command_body(user, text, trigger, 1);
        let resp = self.post_signed("/slack/commands", &body, self.now()).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The answer a slash command finally produced: the HTTP response, or,
    /// when oncall acknowledged first, what it posted to this command's own
    /// response_url. Tests assert on this so they hold on a busy machine.
    async fn command(&self, user: &str, text: &str, trigger: &str) -> (u16, Value) {
        let rid = self
            .next_response
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = self.command_body(user, text, trigger, rid);
        let resp = self.post_signed("/slack/commands", &body, self.now()).await;
        let status = resp.status().as_u16();
        let immediate: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return (status, immediate);
        }
        (status, self.final_answer(immediate, rid).await)
    }

    /// The immediate answer if it is one, else what arrived at response_url `rid`.
    async fn final_answer(&self, immediate: Value, rid: u32) -> Value {
        if immediate["blocks"].is_array() {
            return immediate;
        }
        let path = format!("/response/{rid}");
        let deadline = std::time::Instant::now() + crate::common::DEADLINE;
        while std::time::Instant::now() < deadline {
            let answered = self
                .slack
                .calls(&path)
                .into_iter()
                .rev()
                .find(|c| c.status == 200 && c.body["blocks"].is_array());
            if let Some(c) = answered {
                return c.body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no answer at {path}: {immediate}");
    }

    fn click_body(
        &self,
        user: &str,
        action: &str,
        id: &str,
        message_ts: &str,
        action_ts: &str,
        response: u32,
    ) -> String {
        let payload = json!({
            "type": "block_actions",
            "team": { "id": "T0001", "domain": "example" },
            "user": { "id": user, "username": "someone", "team_id": "T0001" },
            "api_app_id": "A0001",
            "token": "deprecated",
            "container": { "type": "message", "message_ts": message_ts, "channel_id": "C0OPS", "is_ephemeral": false },
            "trigger_id": format!("trigger-{action_ts}"),
            "channel": { "id": "C0OPS", "name": "ops" },
            "response_url": self.slack.response_url(response),
            "actions": [{
                "type": "button", "action_id": format!("oncall_{action}"), "block_id": "b1",
                "text": { "type": "plain_text", "text": action }, "value": id, "action_ts": action_ts,
            }],
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn all_text(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn a_signed_slash_command_scales_and_is_answered_in_channel() {
    let env = start().await;
    let (status, body) = env.command("UOPS1", "scale backend 5", "trig-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["response_type"], "in_channel",
        "mutations are posted for the team: {body}"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["blocks"][0]["text"]["text"], "Scaled backend 2 → 5");
    assert!(
        all_text(&body).contains("slack:UOPS1 · slack:C0OPS"),
        "footer: {body}"
    );
    assert_eq!(env.h.replicas("default", "backend").await, 5);
    let row = &env.h.history().await[0];
    assert_eq!(
        (
            row.platform.as_str(),
            row.principal.as_str(),
            row.channel.as_str()
        ),
        ("slack", "slack:UOPS1", "C0OPS")
    );
    assert_eq!(row.workspace.as_deref(), Some("T0001"));
    assert_eq!(row.idempotency_key.as_deref(), Some("slack:T0001:trig-1"));
    // Reads, help and denials are private.
    let (_, body) = env.command("UVIEW1", "status backend", "trig-2").await;
    assert_eq!(body["response_type"], "ephemeral");
    let (_, body) = env
        .command("UVIEW1", "status backend --public", "trig-3")
        .await;
    assert_eq!(body["response_type"], "in_channel");
    let (_, body) = env.command("UOPS1", "scael backend 3", "trig-4").await;
    assert_eq!(body["response_type"], "ephemeral");
    assert!(all_text(&body).contains("did you mean `scale`?"), "{body}");
}

#[tokio::test]
async fn a_denied_command_changes_nothing() {
    let env = start().await;
    let (status, body) = env.command("UVIEW1", "scale backend 7", "trig-d").await;
    assert_eq!(status, 200);
    assert_eq!(body["response_type"], "ephemeral");
    assert!(
        all_text(&body).contains("Not allowed: scale backend 7"),
        "{body}"
    );
    assert!(
        all_text(&body).contains("default deny: no grant matched"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.h.replicas("default", "backend").await, 2);
    // Someone with no binding at all.
    let (_, body) = env.command("UNOBODY", "status backend", "trig-n").await;
    assert!(all_text(&body).contains("Not allowed"), "{body}");
}

#[tokio::test]
async fn forged_stale_future_unsigned_malformed_and_oversized_requests_are_refused() {
    let env = start().await;
    let body = env.command_body("UOPS1", "scale backend 9", "trig-x", 1);
    let now = env.now();
    let url = format!("{}/slack/commands", env.base);
    // A forged signature.
    let r = env
        .http
        .post(&url)
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            sign(b"wrong-secret", &now.to_string(), body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "unauthorized", "a generic body");
    // A changed byte after signing.
    let ts = now.to_string();
    let sig = sign(SECRET.as_bytes(), &ts, body.as_bytes());
    let tampered = body.replace("9", "8");
    let r = env
        .http
        .post(&url)
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &sig)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Stale and future, correctly signed for their timestamps.
    assert_eq!(
        env.post_signed("/slack/commands", &body, now - 301)
            .await
            .status(),
        401
    );
    assert_eq!(
        env.post_signed("/slack/commands", &body, now + 301)
            .await
            .status(),
        401
    );
    // Missing headers.
    assert_eq!(
        env.http
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // A signed body that is not a slash-command form.
    let r = env
        .post_signed("/slack/commands", "{\"text\":\"scale backend 9\"}", now)
        .await;
    assert_eq!(r.status(), 400);
    // A signed command whose response_url is not Slack's: refused, nothing
    // runs and nothing is ever posted there.
    let foreign = env
        .command_body("U0ADMIN", "scale backend 9", "trig-foreign", 1)
        .replace(
            &serde_urlencoded::to_string([("response_url", env.slack.response_url(1))]).unwrap(),
            &serde_urlencoded::to_string([("response_url", "https://evil.example/hook")]).unwrap(),
        );
    assert!(foreign.contains("evil.example"));
    let r = env.post_signed("/slack/commands", &foreign, now).await;
    assert_eq!(r.status(), 400);
    // A wait longer than a response_url lives is refused at once.
    let (status, body) = env
        .command_raw(
            "U0ADMIN",
            "rollout status backend --wait 29m",
            "trig-long-wait",
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("25m or less"),
        "{body}"
    );
    // Over the size limit: refused before it is read.
    let big = "x".repeat(200 * 1024);
    let r = env.post_signed("/slack/commands", &big, now).await;
    assert_eq!(r.status(), 413);
    // Nothing ran and nothing was recorded.
    assert_eq!(env.h.replicas("default", "backend").await, 2);
    assert!(env.h.history().await.is_empty());
    let m = env.metrics().await;
    assert!(
        m.contains(r#"oncall_requests_refused_total{platform="slack",reason="bad_signature"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"reason="stale"} 1"#) && m.contains(r#"reason="future"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"reason="missing_header"} 1"#) && m.contains(r#"reason="too_large"} 1"#),
        "{m}"
    );
    assert!(!m.contains(SECRET), "the secret never leaves");
}

#[tokio::test]
async fn the_same_trigger_id_three_times_runs_once() {
    let env = start().await;
    let before = env.h.generation("default", "dev-utilities").await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (status, body) = env
            .command("UOPS1", "restart dev-utilities", "trig-same")
            .await;
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert_eq!(
        bodies[0]["blocks"][0]["text"]["text"],
        "Restarting dev-utilities"
    );
    assert_eq!(bodies[1], bodies[0], "a repeat gets the first outcome");
    assert_eq!(bodies[2], bodies[0]);
    assert_eq!(
        env.h.generation("default", "dev-utilities").await,
        before + 1,
        "executed once"
    );
    let rows = env.h.history().await;
    assert_eq!(
        rows.iter()
            .filter(|r| r.idempotency_key.as_deref() == Some("slack:T0001:trig-same"))
            .count(),
        1
    );
    // Slack's retry header changes nothing either.
    let body = env.command_body("UOPS1", "restart dev-utilities", "trig-same", 50);
    let ts = env.now().to_string();
    let r = env
        .http
        .post(format!("{}/slack/commands", env.base))
        .header("x-slack-request-timestamp", &ts)
        .header(
            "x-slack-signature",
            sign(SECRET.as_bytes(), &ts, body.as_bytes()),
        )
        .header("x-slack-retry-num", "1")
        .header("x-slack-retry-reason", "http_timeout")
        .body(body)
        .send()
        .await
        .unwrap();
    let immediate = r.json::<Value>().await.unwrap();
    assert_eq!(env.final_answer(immediate, 50).await, bodies[0]);
    assert_eq!(
        env.h.generation("default", "dev-utilities").await,
        before + 1
    );
}

#[tokio::test]
async fn a_slow_command_is_acked_in_time_and_finished_through_response_url() {
    let env = start_with_ack(Duration::from_millis(300)).await;
    env.command(
        "UOPS1",
        "set image dev-utilities ghcr.io/example/dev-utilities:2.4.0",
        "trig-s1",
    )
    .await;
    let started = Instant::now();
    let (status, body) = env
        .command_raw("UOPS1", "rollout status dev-utilities --wait 1m", "trig-s2")
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(3), "acked in {took:?}");
    assert_eq!(body["response_type"], "ephemeral");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("⏳ Working on `rollout status dev-utilities --wait 1m`"),
        "{body}"
    );
    let answer = env.final_answer(Value::Null, 1).await;
    assert_eq!(
        answer["blocks"][0]["text"]["text"], "dev-utilities: rolled out",
        "{answer}"
    );
    // Progress first, replacing the acknowledgement; the answer last.
    let calls = env.slack.calls("/response/1");
    let interim = &calls[0].body;
    assert!(
        interim["text"].as_str().unwrap().starts_with("⏳ "),
        "{interim}"
    );
    assert_eq!(interim["replace_original"], true);
    assert_eq!(calls.last().unwrap().body, answer);
    assert!(
        calls.len() <= 4,
        "response_url takes five posts; progress uses at most three"
    );
}

#[tokio::test]
async fn approvals_as_buttons_refuse_the_requester_and_run_for_an_approver() {
    let env = start().await;
    let before = env.h.generation("default", "backend").await;
    let (_, body) = env.command_raw("UOPS1", "restart backend", "trig-a").await;
    assert_eq!(body["response_type"], "ephemeral");
    let ack = body["text"].as_str().unwrap();
    assert!(
        ack.contains("needs approval") || ack.contains("Working on"),
        "{body}"
    );
    // The request is posted in the channel with Approve / Deny buttons.
    let posted = env.slack.wait_for("/api/chat.postMessage", 1).await;
    let msg = &posted[0].body;
    assert_eq!(msg["channel"], "C0OPS");
    let buttons = msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("actions block")["elements"]
        .clone();
    assert_eq!(buttons[0]["action_id"], "oncall_approve");
    assert_eq!(buttons[1]["action_id"], "oncall_deny");
    assert!(
        buttons[0]["confirm"].is_object(),
        "a confirm dialog on the dangerous button"
    );
    let id = buttons[0]["value"].as_str().unwrap().to_string();

    // The requester clicks Approve: refused, privately, nothing runs.
    let click = env.click_body(
        "UOPS1",
        "approve",
        &id,
        "1700000000.000100",
        "1700000001.000001",
        2,
    );
    assert_eq!(
        env.post_signed("/slack/interactions", &click, env.now())
            .await
            .status(),
        200
    );
    let private = env.slack.wait_for("/response/2", 1).await;
    assert_eq!(private[0].body["response_type"], "ephemeral");
    assert!(
        all_text(&private[0].body).contains("made this request and cannot approve it"),
        "{}",
        private[0].body
    );
    assert_eq!(env.h.generation("default", "backend").await, before);
    assert!(env.slack.calls("/api/chat.update").is_empty());

    // An admin (through the SADMINS user group) approves: it runs, and the
    // message is updated with the outcome and who decided.
    let click = env.click_body(
        "UADMIN1",
        "approve",
        &id,
        "1700000000.000100",
        "1700000002.000002",
        3,
    );
    assert_eq!(
        env.post_signed("/slack/interactions", &click, env.now())
            .await
            .status(),
        200
    );
    let updated = env.slack.wait_for("/api/chat.update", 1).await;
    let u = &updated[0].body;
    assert_eq!(
        (u["channel"].as_str(), u["ts"].as_str()),
        (Some("C0OPS"), Some("1700000000.000100"))
    );
    assert!(all_text(u).contains(&format!("Approved {id}")), "{u}");
    assert!(
        all_text(u).contains("Requested by slack:UOPS1, approved by slack:UADMIN1"),
        "{u}"
    );
    assert!(
        !all_text(u).contains("oncall_approve"),
        "the buttons are gone"
    );
    eventually("restart ran", async || {
        env.h.generation("default", "backend").await == before + 1
    })
    .await;
    // The same click delivered again runs nothing more.
    assert_eq!(
        env.post_signed("/slack/interactions", &click, env.now())
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.h.generation("default", "backend").await, before + 1);
    assert!(env
        .slack
        .calls("/api/usergroups.users.list")
        .iter()
        .any(|c| c.body["usergroup"] == "SADMINS"));
}

#[tokio::test]
async fn rate_limited_chat_post_message_is_retried_after_retry_after() {
    let env = start().await;
    *env.slack.state.rate_limit_post.lock().unwrap() = 1;
    env.command_raw("UOPS1", "scale backend 0", "trig-r").await;
    let ok = env.slack.wait_for("/api/chat.postMessage", 1).await;
    let all = env.slack.calls("/api/chat.postMessage");
    assert_eq!(all.len(), 2, "one 429, one retry");
    assert_eq!(all[0].status, 429);
    let gap = ok[0].at.duration_since(all[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "waited for Retry-After: {gap:?}"
    );
}

#[tokio::test]
async fn events_url_verification_is_answered_when_signed() {
    let env = start().await;
    let body = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let r = env.post_signed("/slack/events", &body, env.now()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let r = env
        .http
        .post(format!("{}/slack/events", env.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn socket_mode_runs_commands_through_the_same_handler_once() {
    let env = start().await;
    let payload = json!({
        "token": "x", "team_id": "T0001", "team_domain": "example", "channel_id": "C0OPS", "channel_name": "ops",
        "user_id": "UOPS1", "user_name": "ops", "command": "/oncall", "text": "scale backend 3",
        "api_app_id": "A0001", "response_url": env.slack.response_url(9), "trigger_id": "sock-trigger-1",
    });
    // The same command delivered twice (Slack redelivers unacknowledged envelopes).
    *env.slack.state.socket_envelopes.lock().unwrap() = vec![
        json!({"envelope_id": "env-1", "type": "slash_commands", "payload": payload, "accepts_response_payload": true}),
        json!({"envelope_id": "env-2", "type": "slash_commands", "payload": payload, "accepts_response_payload": true}),
    ];
    let state = env.state.clone();
    let task =
        tokio::spawn(async move { oncall::slack::socket::connect_once(&state, APP_TOKEN).await });
    eventually("two acknowledgements", async || {
        env.slack.state.socket_acks.lock().unwrap().len() >= 2
    })
    .await;
    // The answer rides on the acknowledgement, or (on a busy machine) follows
    // through response_url; the repeat gets the same outcome, or at worst
    // hears that the first is still running. It never runs twice.
    eventually("an answer", async || {
        env.slack
            .state
            .socket_acks
            .lock()
            .unwrap()
            .iter()
            .any(|a| a["payload"]["blocks"].is_array())
            || env
                .slack
                .calls("/response/9")
                .iter()
                .any(|c| c.body["blocks"].is_array())
    })
    .await;
    let acks = env.slack.state.socket_acks.lock().unwrap().clone();
    let first = acks
        .iter()
        .find(|a| a["envelope_id"] == "env-1")
        .expect("env-1 acked");
    let second = acks
        .iter()
        .find(|a| a["envelope_id"] == "env-2")
        .expect("env-2 acked");
    let answers: Vec<String> = {
        let mut titles = Vec::new();
        for ack in [first, second] {
            if let Some(title) = ack["payload"]["blocks"][0]["text"]["text"].as_str() {
                titles.push(title.to_string());
            }
        }
        for c in env.slack.calls("/response/9") {
            if let Some(title) = c.body["blocks"][0]["text"]["text"].as_str() {
                titles.push(title.to_string());
            }
        }
        titles
    };
    assert!(
        answers.iter().any(|t| t == "Scaled backend 2 → 3"),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|t| t == "Scaled backend 2 → 3" || t == "This request is already being handled"),
        "{answers:?}"
    );
    assert_eq!(env.h.replicas("default", "backend").await, 3);
    assert_eq!(env.h.history().await.len(), 1, "executed once");
    assert_eq!(env.h.history().await[0].principal, "slack:UOPS1");
    task.abort();
    // The wrong token is refused by Slack, and the connection attempt says so.
    let err = oncall::slack::socket::connect_once(&env.state, "xapp-wrong")
        .await
        .unwrap_err();
    assert!(err.contains("invalid_auth"), "{err}");
}

fn fields_text(answer: &Value) -> String {
    answer.to_string()
}

/// The group lookup runs inside the work the ack timer bounds: a slow
/// Slack makes the answer deferred, never late.
#[tokio::test]
async fn a_slow_group_lookup_defers_the_answer_instead_of_missing_the_deadline() {
    let env = start_with_ack(Duration::from_millis(300)).await;
    *env.slack.state.group_delay.lock().unwrap() = Duration::from_millis(1500);
    let body = env.command_body("UADMIN1", "whoami", "trig-slow-groups", 7);
    let resp = env.post_signed("/slack/commands", &body, env.now()).await;
    assert_eq!(resp.status(), 200);
    let immediate: Value = resp.json().await.unwrap();
    assert!(
        immediate["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("⏳ Working on `whoami`")),
        "acknowledged before the lookup ended: {immediate}"
    );
    let answer = env.final_answer(immediate, 7).await;
    assert!(
        fields_text(&answer).contains("slack-group:SADMINS"),
        "{answer}"
    );
}

/// When the cache is empty or expired, concurrent requests share one lookup.
#[tokio::test]
async fn concurrent_requests_share_one_group_lookup() {
    let env = start().await;
    *env.slack.state.group_delay.lock().unwrap() = Duration::from_millis(400);
    let runs = (0..8).map(|i| {
        let env = &env;
        async move {
            env.command("UADMIN1", "whoami", &format!("trig-flight-{i}"))
                .await
        }
    });
    let answers = futures::future::join_all(runs).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200);
        assert!(
            fields_text(answer).contains("slack-group:SADMINS"),
            "{answer}"
        );
    }
    for group in ["SADMINS", "SOPS"] {
        let lookups = env
            .slack
            .calls("/api/usergroups.users.list")
            .iter()
            .filter(|c| c.body["usergroup"] == group)
            .count();
        assert_eq!(lookups, 1, "one lookup of {group} for eight requests");
    }
}

/// Slack failing (429s past every retry): the last known members stand in
/// while they are recent enough, then the user is in no group (deny).
#[tokio::test]
async fn group_lookup_errors_serve_the_last_known_members_for_a_bounded_time() {
    let env = start_with_slack(SlackConfig {
        group_cache_ttl: Duration::from_millis(200),
        group_cache_max_stale: Duration::from_millis(2500),
        ..SlackConfig::default()
    })
    .await;
    let roles = |answer: &Value| fields_text(answer).contains("slack-group:SADMINS");
    let (_, first) = env.command("UADMIN1", "whoami", "trig-stale-0").await;
    assert!(roles(&first), "{first}");
    // Expired, and Slack answers only 429s now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    *env.slack.state.rate_limit_groups.lock().unwrap() = 1000;
    let (_, stale) = env.command("UADMIN1", "whoami", "trig-stale-1").await;
    assert!(roles(&stale), "the last known members stand in: {stale}");
    assert!(env
        .slack
        .calls("/api/usergroups.users.list")
        .iter()
        .any(|c| c.status == 429));
    // Past max_stale, nothing stands in: deny by default.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (_, gone) = env.command("UADMIN1", "whoami", "trig-stale-2").await;
    assert!(!roles(&gone), "{gone}");
    assert!(
        fields_text(&gone).contains("every command is denied"),
        "{gone}"
    );
    // Slack answering again: back in the group.
    *env.slack.state.rate_limit_groups.lock().unwrap() = 0;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, back) = env.command("UADMIN1", "whoami", "trig-stale-3").await;
    assert!(roles(&back), "{back}");
}

/// At approval the requester's groups are asked of Slack again: someone
/// removed from the on-call group since asking can't have it run, and a
/// Slack that can't answer leaves the request pending.
#[tokio::test]
async fn approval_rechecks_the_requesters_slack_groups_now() {
    let env = start().await;
    let before = env.h.generation("default", "backend").await;
    let (_, ack) = env
        .command_raw("UGROUPOPS1", "restart backend", "trig-g0")
        .await;
    assert!(ack.to_string().contains("needs approval"), "{ack}");
    let posted = env.slack.wait_for("/api/chat.postMessage", 1).await;
    let held = posted[0].body.to_string();
    let id = held
        .split("/oncall approve ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .unwrap_or_else(|| panic!("no approval id in {held}"));
    // Slack can't answer: nothing runs, the request stays pending.
    *env.slack.state.rate_limit_groups.lock().unwrap() = 1000;
    let (_, r) = env
        .command("UADMIN1", &format!("approve {id}"), "trig-g1")
        .await;
    assert!(
        r.to_string().contains("still pending and nothing ran"),
        "{r}"
    );
    *env.slack.state.rate_limit_groups.lock().unwrap() = 0;
    // Removed from the group since asking (the cache still says member).
    env.slack
        .state
        .groups
        .lock()
        .unwrap()
        .insert("SOPS".into(), vec![]);
    let (_, r) = env
        .command("UADMIN1", &format!("approve {id}"), "trig-g2")
        .await;
    assert!(r.to_string().contains("is no longer allowed"), "{r}");
    assert_eq!(env.h.generation("default", "backend").await, before);
    // Back in the group: the same request runs.
    env.slack
        .state
        .groups
        .lock()
        .unwrap()
        .insert("SOPS".into(), vec!["UGROUPOPS1".into()]);
    let (_, r) = env
        .command("UADMIN1", &format!("approve {id}"), "trig-g3")
        .await;
    assert!(r.to_string().contains(&format!("Approved {id}")), "{r}");
    eventually("restart ran", async || {
        env.h.generation("default", "backend").await == before + 1
    })
    .await;
}

fn reaction(user: &str, reaction: &str, channel: &str, ts: &str) -> String {
    json!({
        "type": "event_callback",
        "team_id": "T0001",
        "api_app_id": "A0001",
        "event_id": format!("Ev{user}{ts}"),
        "event_time": 1_700_000_000,
        "event": {
            "type": "reaction_added",
            "user": user,
            "reaction": reaction,
            "item_user": "UDEV9",
            "item": { "type": "message", "channel": channel, "ts": ts },
            "event_ts": "1700000001.000100"
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_pushpin_in_an_incident_channel_adds_the_message_to_the_timeline_once() {
    let env = start().await;
    let (status, answer) = env
        .command(
            "UOPS1",
            "incident declare SEV-2 checkout errors",
            "trig-inc",
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        all_text(&answer).contains("Incident 1 declared"),
        "{answer}"
    );
    let store = env.h.router.store();
    store.set_incident_channel(1, "C0INC1").await.unwrap();
    env.slack
        .state
        .channels
        .lock()
        .unwrap()
        .push(crate::common::fake_slack::FakeChannel {
            id: "C0INC1".into(),
            name: "inc-1-checkout-errors".into(),
            creator: crate::common::fake_slack::BOT_USER.into(),
            members: vec![],
            topic: String::new(),
        });
    {
        let mut messages = env.slack.state.messages.lock().unwrap();
        messages.push(
            json!({"channel": "C0INC1", "ts": "1700000000.000100", "user": "UDEV9",
            "text": "deploy v42 went out at 14:00"}),
        );
        messages.push(
            json!({"channel": "C0INC1", "ts": "1700000000.000200", "user": "UDEV9",
            "text": "error rate 40% since v42; password=hunter2 in the logs"}),
        );
    }
    let pinned = async || {
        store
            .incident_events(1)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "pinned")
            .collect::<Vec<_>>()
    };
    let now = env.now();
    // Another reaction, and a pin by someone without incident rights: nothing.
    let r = env
        .post_signed(
            "/slack/events",
            &reaction("UOPS1", "eyes", "C0INC1", "1700000000.000200"),
            now,
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = env
        .post_signed(
            "/slack/events",
            &reaction("UNOBODY", "pushpin", "C0INC1", "1700000000.000100"),
            now,
        )
        .await;
    assert_eq!(r.status(), 200);
    // The pin: acknowledged at once, added in the background.
    let body = reaction("UOPS1", "pushpin", "C0INC1", "1700000000.000200");
    assert_eq!(
        env.post_signed("/slack/events", &body, now).await.status(),
        200
    );
    eventually("the pinned message is on the timeline", async || {
        !pinned().await.is_empty()
    })
    .await;
    // Slack redelivers it, and a second person pins it too: still once.
    assert_eq!(
        env.post_signed("/slack/events", &body, now).await.status(),
        200
    );
    let again = reaction("UADMIN1", "pushpin", "C0INC1", "1700000000.000200");
    assert_eq!(
        env.post_signed("/slack/events", &again, now).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = pinned().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "slack:UOPS1");
    assert!(
        events[0]
            .text
            .starts_with("pinned slack:UDEV9: error rate 40% since v42"),
        "{events:?}"
    );
    assert!(!events[0].text.contains("hunter2"), "redacted: {events:?}");
    // A pin in a channel that is no incident's adds nothing anywhere.
    let elsewhere = reaction("UOPS1", "pushpin", "C0OPS", "1700000000.000300");
    assert_eq!(
        env.post_signed("/slack/events", &elsewhere, now)
            .await
            .status(),
        200
    );
    // Unsigned events are refused.
    let r = env
        .http
        .post(format!("{}/slack/events", env.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pinned().await.len(), 1);
}

#[tokio::test]
async fn the_postmortem_is_shared_as_a_file_through_slacks_upload_flow() {
    let env = start().await;
    env.slack
        .state
        .channels
        .lock()
        .unwrap()
        .push(crate::common::fake_slack::FakeChannel {
            id: "C0OPS".into(),
            name: "ops".into(),
            creator: "USOMEONE".into(),
            members: vec![],
            topic: String::new(),
        });
    env.h.router.register_sinks(Arc::new(oncall::chat::Sinks {
        slack: Some(oncall::chat::SlackSink::new(env.state.api.clone())),
        ..Default::default()
    }));
    env.command("UOPS1", "incident declare SEV-3 slow search", "trig-pm-1")
        .await;
    let (status, answer) = env
        .command("UOPS1", "incident postmortem 1", "trig-pm-2")
        .await;
    assert_eq!(status, 200);
    assert!(
        all_text(&answer).contains("Shared here as `incident-1-postmortem.md`"),
        "{answer}"
    );
    let files = env.slack.state.files.lock().unwrap().clone();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].channel, "C0OPS");
    assert_eq!(files[0].filename, "incident-1-postmortem.md");
    assert!(
        files[0].content.starts_with("# Incident 1: slow search\n"),
        "{files:?}"
    );
    assert!(files[0].content.contains("## Root cause"), "{files:?}");
    let slot = &env.slack.calls("/api/files.getUploadURLExternal")[0];
    assert_eq!(
        slot.body["length"],
        files[0].content.len().to_string(),
        "the declared length is the byte length"
    );
}

#[tokio::test]
async fn a_page_mentions_and_messages_the_person_and_its_ack_button_stops_the_escalation() {
    let env = start_with_config(SlackConfig::default(), |c| {
        let high = c
            .escalation
            .policies
            .iter_mut()
            .find(|p| p.name == "high")
            .unwrap();
        high.tiers[0].targets = vec!["slack:UOPS1".into(), "slack-group:SOPS".into()];
    })
    .await;
    let (_, body) = env
        .command("UOPS1", "incident declare SEV-2 queue backlog", "trig-p1")
        .await;
    assert!(all_text(&body).contains("Incident 1 declared"), "{body}");
    oncall::escalation::engine::tick(&env.h.router)
        .await
        .unwrap();
    let api = oncall::slack::api::SlackApi::new(
        reqwest::Client::new(),
        env.slack.api_url(),
        Some(BOT_TOKEN.into()),
    );
    let sinks = oncall::chat::Sinks {
        slack: Some(oncall::chat::SlackSink::new(api)),
        ..Default::default()
    };
    let pager = oncall::escalation::pager::Pager::new(env.h.router.clone(), Arc::new(sinks));
    assert_eq!(pager.drain().await.unwrap().delivered, 2);

    let posts = env.slack.calls("/api/chat.postMessage");
    let in_channel: Vec<&Value> = posts
        .iter()
        .map(|c| &c.body)
        .filter(|b| b["channel"] == "C0OPS")
        .collect();
    assert_eq!(
        in_channel.len(),
        2,
        "the person and the group, where it was declared"
    );
    for mention in ["<@UOPS1>", "<!subteam^SOPS>"] {
        // In a mrkdwn section, where Slack renders and notifies mentions.
        let post = in_channel
            .iter()
            .find(|b| all_text(b).contains(mention))
            .unwrap_or_else(|| panic!("{mention} in {in_channel:?}"));
        let section = post["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| all_text(b).contains(mention))
            .unwrap();
        assert_eq!(section["text"]["type"], "mrkdwn", "{section}");
    }
    let opened = env.slack.calls("/api/conversations.open");
    assert_eq!(opened.len(), 1, "a direct message to the person only");
    assert_eq!(opened[0].body["users"], "UOPS1");
    let dm = posts
        .iter()
        .find(|c| c.body["channel"] == "DOPS1")
        .expect("the DM");
    let button = dm.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| b["elements"][0].clone())
        .expect("an Acknowledge button");
    assert_eq!(button["action_id"], "oncall_ack");
    assert_eq!(button["value"], "1");

    // The button: `incident ack 1`, as the person who pressed it.
    let click = env.click_body(
        "UOPS1",
        "ack",
        "1",
        "1700000000.000100",
        "1700000003.000003",
        7,
    );
    assert_eq!(
        env.post_signed("/slack/interactions", &click, env.now())
            .await
            .status(),
        200
    );
    eventually("the escalation stops", async || {
        env.h
            .router
            .store()
            .escalation_of(1)
            .await
            .unwrap()
            .unwrap()
            .state
            == oncall::store::EscalationState::Acknowledged
    })
    .await;
    let incident = env.h.router.store().incident(1).await.unwrap().unwrap();
    assert_eq!(incident.acknowledged_by.as_deref(), Some("slack:UOPS1"));
    // The page's messages are replaced (no button left to press).
    assert_eq!(pager.drain().await.unwrap().delivered, 2);
    // (The clicked message itself was also replaced with the answer.)
    let updates: Vec<_> = env
        .slack
        .calls("/api/chat.update")
        .into_iter()
        .filter(|u| all_text(&u.body).contains("acknowledged by slack:UOPS1"))
        .collect();
    assert_eq!(
        updates.len(),
        3,
        "two messages to the person, one to the group: {updates:?}"
    );
    assert!(env
        .slack
        .calls("/api/chat.update")
        .iter()
        .all(|u| !all_text(&u.body).contains("oncall_ack")));
}
