//! Discord end to end over real HTTP: the interactions endpoint of the
//! `oncall serve` app against the simulator and a fake Discord REST API,
//! signed with a test Ed25519 key; and the gateway handler.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fake_discord::{FakeDiscord, APP_ID, BOT_TOKEN};
use crate::common::{eventually, Harness};
use ed25519_dalek::{Signer, SigningKey};
use oncall::config::{Config, EXAMPLE};
use oncall::discord::{schema, DiscordConfig, DiscordSecrets, DiscordState};
use oncall_permissions::Binding;
use serde_json::{json, Value};

const OPERATOR: &str = "111111111111111111";
const ADMIN: &str = "222222222222222222";
const VIEWER: &str = "333333333333333333";
const OPS_ROLE: &str = "900000000000000001";
const ADMIN_ROLE: &str = "900000000000000002";

/// (verb, the subcommand options Discord sends) for each verb's example.
fn option_table() -> Vec<(&'static str, Value)> {
    vec![
        (
            "help",
            json!([{"name": "verb", "type": 3, "value": "scale"}]),
        ),
        (
            "scale",
            json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "replicas", "type": 4, "value": 5}]),
        ),
        (
            "restart",
            json!([{"name": "services", "type": 3, "value": "backend recurring-task-service"}]),
        ),
        (
            "status",
            json!([{"name": "service", "type": 3, "value": "backend"}]),
        ),
        (
            "rollout status",
            json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "wait", "type": 3, "value": "5m"}]),
        ),
        (
            "rollout history",
            json!([{"name": "service", "type": 3, "value": "oauth2-server"}]),
        ),
        (
            "rollback",
            json!([{"name": "service", "type": 3, "value": "oauth2-server"}, {"name": "to-revision", "type": 4, "value": 3}]),
        ),
        (
            "set image",
            json!([{"name": "service", "type": 3, "value": "dev-utilities"}, {"name": "image", "type": 3, "value": "ghcr.io/example/dev-utilities:2.4.0"}]),
        ),
        (
            "logs",
            json!([{"name": "target", "type": 3, "value": "backend"}, {"name": "since", "type": 3, "value": "10m"}, {"name": "grep", "type": 3, "value": "ERROR"}]),
        ),
        (
            "pods",
            json!([{"name": "target", "type": 3, "value": "vibe-ensemble"}]),
        ),
        (
            "events",
            json!([{"name": "target", "type": 3, "value": "oauth2-server"}, {"name": "since", "type": 3, "value": "30m"}]),
        ),
        (
            "hpa",
            json!([{"name": "service", "type": 3, "value": "oauth2-server"}, {"name": "min", "type": 4, "value": 3}, {"name": "max", "type": 4, "value": 10}]),
        ),
        (
            "health",
            json!([{"name": "service", "type": 3, "value": "brownie-metadata-api"}]),
        ),
        (
            "diagnose",
            json!([{"name": "target", "type": 3, "value": "oauth2-server"}]),
        ),
        (
            "job run",
            json!([{"name": "cronjob", "type": 3, "value": "postgres-backup"}, {"name": "namespace", "type": 3, "value": "vibe-ensemble"}]),
        ),
        (
            "quarantine",
            json!([{"name": "pod", "type": 3, "value": "vibe-ensemble-server-7d4b9c-x2x9k"}]),
        ),
        (
            "unquarantine",
            json!([{"name": "pod", "type": 3, "value": "vibe-ensemble-server-7d4b9c-x2x9k"}]),
        ),
        (
            "env set",
            json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "vars", "type": 3, "value": "DB_POOL_SIZE=30 DB_MAX_OVERFLOW=20"}]),
        ),
        (
            "env unset",
            json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "keys", "type": 3, "value": "DB_MAX_OVERFLOW"}]),
        ),
        (
            "top",
            json!([{"name": "target", "type": 3, "value": "oauth2-server"}]),
        ),
        (
            "history",
            json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "since", "type": 3, "value": "2h"}]),
        ),
        ("whoami", json!([])),
        (
            "can",
            json!([{"name": "principal", "type": 3, "value": "cli:viewer"}, {"name": "command", "type": 3, "value": "scale backend 5"}]),
        ),
        (
            "approve",
            json!([{"name": "id", "type": 3, "value": "k3f9qa"}]),
        ),
        (
            "deny",
            json!([{"name": "id", "type": 3, "value": "k3f9qa"}]),
        ),
        (
            "incident declare",
            json!([{"name": "severity", "type": 3, "value": "SEV-2"}, {"name": "title", "type": 3, "value": "checkout errors"}, {"name": "service", "type": 3, "value": "backend"}]),
        ),
        (
            "incident ack",
            json!([{"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident status",
            json!([{"name": "state", "type": 3, "value": "identified"}, {"name": "incident", "type": 4, "value": 12}, {"name": "note", "type": 3, "value": "bad deploy of backend"}]),
        ),
        (
            "incident update",
            json!([{"name": "text", "type": 3, "value": "error rate back under 1%"}, {"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident sev",
            json!([{"name": "severity", "type": 3, "value": "SEV-1"}, {"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident assign",
            json!([{"name": "principal", "type": 3, "value": "slack:U0AB12CD"}, {"name": "role", "type": 3, "value": "commander"}, {"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident note",
            json!([{"name": "text", "type": 3, "value": "rolled back to v41, errors falling"}, {"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident resolve",
            json!([{"name": "incident", "type": 4, "value": 12}, {"name": "summary", "type": 3, "value": "rollback fixed it"}]),
        ),
        (
            "incident reopen",
            json!([{"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident list",
            json!([{"name": "open", "type": 5, "value": true}]),
        ),
        (
            "incident show",
            json!([{"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident timeline",
            json!([{"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "incident postmortem",
            json!([{"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "escalate",
            json!([{"name": "incident", "type": 4, "value": 12}]),
        ),
        (
            "page",
            json!([{"name": "incident", "type": 4, "value": 12}, {"name": "target", "type": 3, "value": "schedule:primary"}, {"name": "message", "type": 3, "value": "database failover needs a second pair of eyes"}]),
        ),
        (
            "who",
            json!([{"name": "schedule", "type": 3, "value": "primary"}]),
        ),
        (
            "schedule",
            json!([{"name": "schedule", "type": 3, "value": "primary"}]),
        ),
        (
            "override",
            json!([{"name": "schedule", "type": 3, "value": "primary"}, {"name": "principal", "type": 3, "value": "slack:U0AB12CD"}, {"name": "duration", "type": 3, "value": "4h"}]),
        ),
        ("alerts", json!([])),
        (
            "alerts run",
            json!([{"name": "action", "type": 4, "value": 7}]),
        ),
        (
            "silence",
            json!([{"name": "alert", "type": 3, "value": "KafkaConsumerLag"}, {"name": "duration", "type": 3, "value": "2h"}, {"name": "reason", "type": 3, "value": "scaling up, lag draining"}]),
        ),
        (
            "unsilence",
            json!([{"name": "alert", "type": 3, "value": "KafkaConsumerLag"}]),
        ),
    ]
}

/// `data.options` for a verb: a subcommand, or a group and a subcommand.
fn data_options(verb: &str, options: &Value) -> Value {
    match schema::discord_path(verb) {
        (None, verb) => json!([{"name": verb, "type": 1, "options": options}]),
        (Some(group), leaf) => {
            json!([{"name": group, "type": 2, "options": [{"name": leaf, "type": 1, "options": options}]}])
        }
    }
}

#[test]
fn every_subcommand_maps_to_the_same_command_as_its_text() {
    let table = option_table();
    let verbs: Vec<&str> = oncall_grammar::VERBS.iter().map(|v| v.name).collect();
    assert_eq!(
        table.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        verbs,
        "one row per verb, in order"
    );
    for (verb, options) in table {
        let spec = oncall_grammar::VERBS
            .iter()
            .find(|v| v.name == verb)
            .unwrap();
        let data = json!({"name": "oncall", "options": data_options(verb, &options)});
        let (found, opts) = schema::invoked(&data).unwrap();
        assert_eq!(found, verb);
        let text = schema::options_to_text(&found, &opts).unwrap();
        let from_options =
            oncall_grammar::parse(&text).unwrap_or_else(|e| panic!("{verb}: `{text}`: {e}"));
        let from_text = oncall_grammar::parse(spec.example).unwrap();
        assert_eq!(
            from_options, from_text,
            "{verb}: `{text}` vs `{}`",
            spec.example
        );
    }
}

#[test]
fn the_command_definition_follows_discords_rules() {
    let def = schema::oncall_command_json();
    assert_eq!(def["name"], "oncall");
    let top = def["options"].as_array().unwrap();
    assert!(top.len() <= 25, "{} top-level subcommands", top.len());
    let rollout = top.iter().find(|o| o["name"] == "rollout").unwrap();
    assert_eq!(rollout["type"], 2, "a subcommand group");
    let leaves: Vec<&str> = rollout["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(leaves, vec!["status", "history"]);
    let scale = top.iter().find(|o| o["name"] == "scale").unwrap();
    let replicas = scale["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "replicas")
        .unwrap();
    assert_eq!(
        (
            replicas["type"].as_u64(),
            replicas["required"].as_bool(),
            replicas["min_value"].as_u64(),
            replicas["max_value"].as_u64()
        ),
        (Some(4), Some(true), Some(0), Some(1000))
    );
    let service = &scale["options"][0];
    assert_eq!(
        (service["name"].as_str(), service["autocomplete"].as_bool()),
        (Some("service"), Some(true))
    );
    let dry = scale["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "dry-run")
        .unwrap();
    assert_eq!(dry["type"], 5, "switches are booleans");
}

struct Env {
    h: Harness,
    discord: FakeDiscord,
    base: String,
    http: reqwest::Client,
    key: SigningKey,
    state: Arc<DiscordState>,
    next_id: std::sync::atomic::AtomicU64,
}

async fn start(ack: Duration) -> Env {
    let mut config = Config::parse(EXAMPLE, "example").unwrap();
    for (principal, role) in [
        (format!("discord-role:{OPS_ROLE}"), "operator"),
        (format!("discord-role:{ADMIN_ROLE}"), "admin"),
        (format!("discord:{VIEWER}"), "viewer"),
    ] {
        config.policy.bindings.push(Binding {
            principal: principal.parse().unwrap(),
            roles: vec![role.into()],
        });
    }
    let h = Harness::for_ack(config, ack).await;
    let discord = FakeDiscord::start().await;
    discord.state.members.lock().unwrap().extend([
        (OPERATOR.to_string(), vec![OPS_ROLE.to_string()]),
        (ADMIN.to_string(), vec![ADMIN_ROLE.to_string()]),
        (VIEWER.to_string(), vec![]),
    ]);
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let secrets = DiscordSecrets {
        public_key: Some(hex::encode(key.verifying_key().to_bytes())),
        bot_token: Some(BOT_TOKEN.into()),
        application_id: Some(APP_ID.into()),
        api_url: discord.api_url(),
    };
    let state = DiscordState::new(
        h.router.clone(),
        DiscordConfig {
            ack_timeout: ack,
            ..DiscordConfig::default()
        },
        secrets,
    )
    .unwrap();
    let app = oncall::server::app(h.router.clone(), true, None, Some(state.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Env {
        h,
        discord,
        base,
        http: reqwest::Client::new(),
        key,
        state,
        next_id: 1_000_000_000_000_000_000u64.into(),
    }
}

impl Env {
    fn id(&self) -> String {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .to_string()
    }

    async fn send_at(&self, body: &Value, ts: i64) -> reqwest::Response {
        let body = body.to_string();
        let ts = ts.to_string();
        let sig = self.key.sign(&[ts.as_bytes(), body.as_bytes()].concat());
        self.http
            .post(format!("{}/discord/interactions", self.base))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", hex::encode(sig.to_bytes()))
            .header("x-signature-timestamp", ts)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn send(&self, body: &Value) -> (u16, Value) {
        let r = self.send_at(body, self.h.clock.now().as_second()).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The message an interaction finally produced: the direct answer (4, 7),
    /// or, when the bot deferred (5, 6), what it delivered afterwards by
    /// editing the original or following up. Tests assert on this so they
    /// hold whichever path a busy machine makes the bot take.
    async fn final_message(&self, response: &Value, interaction_id: &str) -> Value {
        match response["type"].as_u64() {
            Some(4) | Some(7) => response["data"].clone(),
            Some(5) | Some(6) => {
                let token = format!("tok-{interaction_id}");
                let deadline = std::time::Instant::now() + crate::common::DEADLINE;
                while std::time::Instant::now() < deadline {
                    // Answers carry the who/when footer; progress edits don't.
                    let delivered = self.discord.calls().into_iter().rev().find(|c| {
                        c.status == 200
                            && c.path.contains(&token)
                            && !c.path.ends_with("/callback")
                            && c.body["embeds"][0]["footer"].is_object()
                    });
                    if let Some(c) = delivered {
                        return c.body;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                panic!(
                    "the deferred answer to {interaction_id} never came: {:?}",
                    self.discord.calls()
                )
            }
            _ => panic!("unexpected response {response}"),
        }
    }

    fn member(user: &str, roles: &[&str]) -> Value {
        json!({"user": {"id": user, "username": "someone", "discriminator": "0", "global_name": null, "avatar": null}, "roles": roles, "joined_at": "2024-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0, "pending": false, "permissions": "0"})
    }

    fn command(&self, id: &str, user: &str, roles: &[&str], verb: &str, options: Value) -> Value {
        json!({
            "id": id, "application_id": APP_ID, "type": 2, "token": format!("tok-{id}"), "version": 1,
            "guild_id": "500000000000000001", "channel_id": "600000000000000001",
            "member": Self::member(user, roles), "locale": "en-US", "guild_locale": "en-US",
            "app_permissions": "0", "entitlements": [], "authorizing_integration_owners": {}, "context": 0, "attachment_size_limit": 8388608,
            "data": {"id": "800000000000000001", "name": "oncall", "type": 1, "options": data_options(verb, &options)},
        })
    }

    fn click(&self, id: &str, user: &str, roles: &[&str], custom_id: &str) -> Value {
        json!({
            "id": id, "application_id": APP_ID, "type": 3, "token": format!("tok-{id}"), "version": 1,
            "guild_id": "500000000000000001", "channel_id": "600000000000000001",
            "member": Self::member(user, roles), "locale": "en-US",
            "message": {"id": "650000000000000001", "channel_id": "600000000000000001", "content": "", "embeds": [], "components": []},
            "data": {"custom_id": custom_id, "component_type": 2},
        })
    }
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_bad_signatures_are_refused() {
    let env = start(Duration::from_secs(10)).await;
    let ping =
        json!({"id": env.id(), "application_id": APP_ID, "type": 1, "token": "t", "version": 1});
    let (status, body) = env.send(&ping).await;
    assert_eq!((status, body), (200, json!({"type": 1})));
    // A forged signature (another key), a stale one, a future one, none.
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let ts = env.h.clock.now().as_second().to_string();
    let b = ping.to_string();
    let forged = other.sign(&[ts.as_bytes(), b.as_bytes()].concat());
    let r = env
        .http
        .post(format!("{}/discord/interactions", env.base))
        .header("x-signature-ed25519", hex::encode(forged.to_bytes()))
        .header("x-signature-timestamp", &ts)
        .body(b.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let now = env.h.clock.now().as_second();
    assert_eq!(env.send_at(&ping, now - 301).await.status(), 401);
    assert_eq!(env.send_at(&ping, now + 301).await.status(), 401);
    let r = env
        .http
        .post(format!("{}/discord/interactions", env.base))
        .body(b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn scale_through_the_interactions_endpoint_and_denials_change_nothing() {
    let env = start(Duration::from_secs(10)).await;
    let id = env.id();
    let cmd = env.command(&id, OPERATOR, &[OPS_ROLE], "scale", json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "replicas", "type": 4, "value": 5}]));
    let (status, body) = env.send(&cmd).await;
    assert_eq!(status, 200);
    assert!(body["type"] == 4 || body["type"] == 5, "{body}");
    assert!(body["data"].get("flags").is_none(), "mutations are public");
    let msg = env.final_message(&body, &id).await;
    let embed = &msg["embeds"][0];
    assert_eq!(embed["title"], "✅ Scaled backend 2 → 5");
    assert!(
        text_of(embed).contains(&format!("discord:{OPERATOR} · discord:600000000000000001")),
        "footer: {embed}"
    );
    assert_eq!(env.h.replicas("default", "backend").await, 5);
    let row = &env.h.history().await[0];
    assert_eq!(
        (row.platform.as_str(), row.principal.as_str()),
        ("discord", format!("discord:{OPERATOR}").as_str())
    );
    assert_eq!(row.workspace.as_deref(), Some("500000000000000001"));
    // The same interaction delivered again: the first answer, nothing more.
    let (_, again) = env.send(&cmd).await;
    assert_eq!(
        env.final_message(&again, &id).await["embeds"],
        msg["embeds"]
    );
    assert_eq!(env.h.history().await.len(), 1);
    // A viewer is refused, with the rule; nothing changes.
    let vid = env.id();
    let cmd = env.command(&vid, VIEWER, &[], "scale", json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "replicas", "type": 4, "value": 1}]));
    let (_, body) = env.send(&cmd).await;
    if body["type"] == 4 {
        assert_eq!(body["data"]["flags"], 64, "a direct denial is private");
    }
    let msg = env.final_message(&body, &vid).await;
    assert!(
        text_of(&msg).contains("default deny: no grant matched"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.h.replicas("default", "backend").await, 5);
}

#[tokio::test]
async fn every_subcommand_runs_through_the_endpoint() {
    let env = start(Duration::from_secs(10)).await;
    let table = option_table();
    for (verb, options) in &table {
        let cmd = env.command(&env.id(), ADMIN, &[ADMIN_ROLE], verb, options.clone());
        let (status, body) = env.send(&cmd).await;
        assert_eq!(status, 200, "{verb}");
        assert!(body["type"] == 4 || body["type"] == 5, "{verb}: {body}");
    }
    // Each ran as the command its text example means.
    eventually("all recorded", async || {
        env.h
            .history()
            .await
            .iter()
            .filter(|r| r.outcome != "running")
            .count()
            >= table.len()
    })
    .await;
    let rows = env.h.history().await;
    for (verb, _) in &table {
        let spec = oncall_grammar::VERBS
            .iter()
            .find(|v| v.name == *verb)
            .unwrap();
        let canonical = oncall_grammar::parse(spec.example)
            .unwrap()
            .command
            .to_string();
        assert!(
            rows.iter()
                .any(|r| r.command.as_deref() == Some(canonical.as_str())),
            "{verb}: no row with `{canonical}`"
        );
    }
}

#[tokio::test]
async fn autocomplete_suggests_catalog_names() {
    let env = start(Duration::from_secs(10)).await;
    let mut ac = env.command(
        &env.id(),
        OPERATOR,
        &[OPS_ROLE],
        "scale",
        json!([{"name": "service", "type": 3, "value": "back", "focused": true}]),
    );
    ac["type"] = json!(4);
    let (_, body) = env.send(&ac).await;
    assert_eq!(body["type"], 8);
    let names: Vec<&str> = body["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["backend"]);
    let mut ac = env.command(
        &env.id(),
        OPERATOR,
        &[OPS_ROLE],
        "pods",
        json!([{"name": "target", "type": 3, "value": "vibe", "focused": true}]),
    );
    ac["type"] = json!(4);
    let (_, body) = env.send(&ac).await;
    let names: Vec<&str> = body["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"vibe-ensemble-server") && names.contains(&"vibe-ensemble"),
        "{names:?}"
    );
    let mut ac = env.command(
        &env.id(),
        OPERATOR,
        &[OPS_ROLE],
        "restart",
        json!([{"name": "services", "type": 3, "value": "backend notif", "focused": true}]),
    );
    ac["type"] = json!(4);
    let (_, body) = env.send(&ac).await;
    assert_eq!(
        body["data"]["choices"][0]["value"],
        "backend notification-service"
    );
}

#[tokio::test]
async fn a_slow_command_is_deferred_then_the_original_is_edited() {
    let env = start(Duration::from_millis(300)).await;
    let set = env.command(&env.id(), OPERATOR, &[OPS_ROLE], "set image", json!([{"name": "service", "type": 3, "value": "dev-utilities"}, {"name": "image", "type": 3, "value": "ghcr.io/example/dev-utilities:2.4.0"}]));
    env.send(&set).await;
    *env.discord.state.rate_limit_edits.lock().unwrap() = 1;
    let id = env.id();
    let wait = env.command(&id, OPERATOR, &[OPS_ROLE], "rollout status", json!([{"name": "service", "type": 3, "value": "dev-utilities"}, {"name": "wait", "type": 3, "value": "1m"}]));
    let (_, body) = env.send(&wait).await;
    assert_eq!(body["type"], 5, "{body}");
    assert_eq!(body["data"]["flags"], 64, "a read: deferred privately");
    let path = format!("/webhooks/{APP_ID}/tok-{id}/messages/@original");
    let edits = || {
        env.discord
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.status == 200 && c.path.contains(&path))
            .collect::<Vec<_>>()
    };
    eventually("the final edit", async || {
        edits()
            .iter()
            .any(|c| c.body["embeds"][0]["title"] == "ℹ️ dev-utilities: rolled out")
    })
    .await;
    // Progress edits first, the answer last.
    let all = edits();
    assert!(all.len() >= 2, "{all:?}");
    assert!(
        all[0].body["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .starts_with("⏳ "),
        "{:?}",
        all[0].body
    );
    assert_eq!(
        all.last().unwrap().body["embeds"][0]["title"],
        "ℹ️ dev-utilities: rolled out"
    );
    let limited = env
        .discord
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(limited, 1, "a 429 was waited out and retried");
}

#[tokio::test]
async fn approval_buttons_refuse_the_requester_and_run_for_another_member() {
    let env = start(Duration::from_secs(10)).await;
    let before = env.h.generation("default", "backend").await;
    let rid = env.id();
    let cmd = env.command(
        &rid,
        OPERATOR,
        &[OPS_ROLE],
        "restart",
        json!([{"name": "services", "type": 3, "value": "backend"}]),
    );
    let (_, body) = env.send(&cmd).await;
    let msg = env.final_message(&body, &rid).await;
    let buttons = &msg["components"][0]["components"];
    assert_eq!(buttons[0]["style"], 1);
    assert_eq!(buttons[1]["style"], 4);
    let approve = buttons[0]["custom_id"].as_str().unwrap().to_string();
    assert!(approve.starts_with("oncall:approve:"), "{approve}");
    // The requester clicks: refused, privately.
    let cid = env.id();
    let (_, refused) = env
        .send(&env.click(&cid, OPERATOR, &[OPS_ROLE], &approve))
        .await;
    let rmsg = env.final_message(&refused, &cid).await;
    assert_eq!(rmsg["flags"], 64, "{rmsg}");
    assert!(text_of(&rmsg).contains("cannot approve it"), "{rmsg}");
    assert_eq!(env.h.generation("default", "backend").await, before);
    // Another member with the admin role: runs, and the message is updated.
    let aid = env.id();
    let click = env.click(&aid, ADMIN, &[ADMIN_ROLE], &approve);
    let (_, done) = env.send(&click).await;
    assert!(done["type"] == 7 || done["type"] == 6, "{done}");
    let dmsg = env.final_message(&done, &aid).await;
    assert_eq!(dmsg["components"], json!([]));
    assert!(
        text_of(&dmsg).contains(&format!("approved by discord:{ADMIN}")),
        "{dmsg}"
    );
    assert_eq!(env.h.generation("default", "backend").await, before + 1);
    // The same click again: answered the same, run once.
    let (_, again) = env.send(&click).await;
    assert_eq!(
        env.final_message(&again, &aid).await["embeds"],
        dmsg["embeds"]
    );
    assert_eq!(env.h.generation("default", "backend").await, before + 1);
}

/// At approval the requester's member roles are read from Discord again:
/// a role taken away (or the guild left) since asking stops the request.
#[tokio::test]
async fn approval_rechecks_the_requesters_discord_roles_now() {
    let env = start(Duration::from_secs(10)).await;
    let before = env.h.generation("default", "backend").await;
    let rid = env.id();
    let cmd = env.command(
        &rid,
        OPERATOR,
        &[OPS_ROLE],
        "restart",
        json!([{"name": "services", "type": 3, "value": "backend"}]),
    );
    let (_, body) = env.send(&cmd).await;
    let msg = env.final_message(&body, &rid).await;
    let approve = msg["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    let members = |roles: Option<Vec<String>>| {
        let mut m = env.discord.state.members.lock().unwrap();
        match roles {
            Some(r) => m.insert(OPERATOR.to_string(), r),
            None => m.remove(OPERATOR),
        };
    };
    for (roles, expected) in [
        (Some(vec![]), "is no longer allowed"),
        (None, "is no longer allowed"),
    ] {
        members(roles);
        let aid = env.id();
        let (_, r) = env
            .send(&env.click(&aid, ADMIN, &[ADMIN_ROLE], &approve))
            .await;
        let r = env.final_message(&r, &aid).await;
        assert!(text_of(&r).contains(expected), "{r}");
        assert_eq!(env.h.generation("default", "backend").await, before);
    }
    assert!(env
        .discord
        .calls()
        .iter()
        .any(|c| c.method == "GET" && c.path.ends_with(&format!("/members/{OPERATOR}"))));
    // The role given back: the same request runs.
    members(Some(vec![OPS_ROLE.to_string()]));
    let aid = env.id();
    let (_, done) = env
        .send(&env.click(&aid, ADMIN, &[ADMIN_ROLE], &approve))
        .await;
    let done = env.final_message(&done, &aid).await;
    assert!(
        text_of(&done).contains(&format!("approved by discord:{ADMIN}")),
        "{done}"
    );
    assert_eq!(env.h.generation("default", "backend").await, before + 1);
}

#[tokio::test]
async fn the_gateway_handler_runs_the_same_path() {
    let env = start(Duration::from_secs(10)).await;
    let id = env.id();
    let cmd = env.command(&id, OPERATOR, &[OPS_ROLE], "scale", json!([{"name": "service", "type": 3, "value": "backend"}, {"name": "replicas", "type": 4, "value": 4}]));
    let interaction: serenity::all::Interaction =
        serde_json::from_value(cmd).expect("a gateway interaction");
    oncall::discord::gateway::on_interaction(&env.state, &interaction).await;
    let callback = env
        .discord
        .wait_for("POST", &format!("/interactions/{id}/tok-{id}/callback"))
        .await;
    let msg = env.final_message(&callback.body, &id).await;
    assert_eq!(
        msg["embeds"][0]["title"], "✅ Scaled backend 2 → 4",
        "{msg}"
    );
    assert_eq!(env.h.replicas("default", "backend").await, 4);
}

#[tokio::test]
async fn register_overwrites_the_commands_generated_from_the_grammar() {
    let discord = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oncall.toml");
    std::fs::write(&config, EXAMPLE).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oncall"))
        .args(["discord", "register", "--config"])
        .arg(&config)
        .args(["--guild", "500000000000000001"])
        .env("DISCORD_API_URL", discord.api_url())
        .env("DISCORD_APPLICATION_ID", APP_ID)
        .env("DISCORD_BOT_TOKEN", BOT_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("registered 2 command(s) in guild 500000000000000001"),
        "{stdout}"
    );
    let put = discord
        .wait_for(
            "PUT",
            &format!("/applications/{APP_ID}/guilds/500000000000000001/commands"),
        )
        .await;
    assert_eq!(put.body[0], schema::oncall_command_json());
    assert_eq!(put.body[1], json!({"name": "Add to timeline", "type": 3}));
    // Without the token, Discord refuses and so does the command.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oncall"))
        .args(["discord", "register", "--config"])
        .arg(&config)
        .env("DISCORD_API_URL", discord.api_url())
        .env("DISCORD_APPLICATION_ID", APP_ID)
        .env("DISCORD_BOT_TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn autocomplete_offers_only_what_the_caller_may_act_on() {
    let env = start(Duration::from_secs(2)).await;
    let ask = |user: &str, roles: &[&str]| {
        let mut body = env.command(
            "900000000000000077",
            user,
            roles,
            "scale",
            json!([
                {"name": "service", "type": 3, "value": "back", "focused": true}
            ]),
        );
        body["type"] = json!(4);
        body
    };
    let names = |answer: &Value| -> Vec<String> {
        answer["data"]["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, answer) = env.send(&ask(OPERATOR, &[OPS_ROLE])).await;
    assert_eq!(status, 200);
    assert!(names(&answer).contains(&"backend".to_string()), "{answer}");
    // A viewer may not scale anything: nothing to offer.
    let (_, answer) = env.send(&ask(VIEWER, &[])).await;
    assert!(names(&answer).is_empty(), "{answer}");
}

impl Env {
    /// "Add to timeline" on a message, by `user`, in `channel`.
    fn add_to_timeline(
        &self,
        user: &str,
        roles: &[&str],
        channel: &str,
        message: &str,
        content: &str,
    ) -> Value {
        let id = self.id();
        json!({
            "id": id, "application_id": APP_ID, "type": 2, "token": format!("tok-{id}"), "version": 1,
            "guild_id": "500000000000000001", "channel_id": channel,
            "member": Self::member(user, roles), "locale": "en-US",
            "data": {"id": "800000000000000002", "name": "Add to timeline", "type": 3, "target_id": message,
                "resolved": {"messages": {message: {"id": message, "channel_id": channel, "content": content,
                    "author": {"id": "444444444444444444", "username": "dev", "discriminator": "0", "global_name": null, "avatar": null}}}}},
        })
    }
}

#[tokio::test]
async fn add_to_timeline_on_a_message_in_an_incident_channel() {
    let env = start(Duration::from_secs(10)).await;
    let id = env.id();
    let declare = env.command(
        &id,
        OPERATOR,
        &[OPS_ROLE],
        "incident declare",
        json!([{"name": "severity", "type": 3, "value": "SEV-2"}, {"name": "title", "type": 3, "value": "queue backlog"}]),
    );
    let (status, response) = env.send(&declare).await;
    assert_eq!(status, 200);
    let answer = env.final_message(&response, &id).await;
    assert!(text_of(&answer).contains("Incident 1 declared"), "{answer}");
    let channel = "600000000000000009";
    env.h
        .router
        .store()
        .set_incident_channel(1, channel)
        .await
        .unwrap();

    let pin = env.add_to_timeline(
        OPERATOR,
        &[OPS_ROLE],
        channel,
        "710000000000000001",
        "consumer lag 2h on partition 3",
    );
    let (status, r) = env.send(&pin).await;
    assert_eq!(status, 200);
    assert_eq!(r["type"], 4);
    assert!(
        text_of(&r).contains("Added to incident 1's timeline"),
        "{r}"
    );
    assert_eq!(r["data"]["flags"], 64, "private to the person");
    let (_, r) = env.send(&pin).await;
    assert!(
        text_of(&r).contains("already on incident 1's timeline"),
        "{r}"
    );
    // A viewer may not; a channel that is no incident's adds nothing.
    let (_, r) = env
        .send(&env.add_to_timeline(VIEWER, &[], channel, "710000000000000002", "me too"))
        .await;
    assert!(text_of(&r).contains("may not change incidents"), "{r}");
    let (_, r) = env
        .send(&env.add_to_timeline(
            OPERATOR,
            &[OPS_ROLE],
            "600000000000000001",
            "710000000000000003",
            "elsewhere",
        ))
        .await;
    assert!(text_of(&r).contains("not an incident's channel"), "{r}");
    let pinned: Vec<String> = env
        .h
        .router
        .store()
        .incident_events(1)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "pinned")
        .map(|e| format!("{} {}", e.actor, e.text))
        .collect();
    assert_eq!(
        pinned,
        [format!(
            "discord:{OPERATOR} pinned discord:444444444444444444: consumer lag 2h on partition 3"
        )]
    );
}

#[tokio::test]
async fn the_postmortem_is_attached_to_a_discord_message() {
    let env = start(Duration::from_secs(10)).await;
    env.discord
        .state
        .channels
        .lock()
        .unwrap()
        .push(("600000000000000001".into(), "ops".into(), 0));
    env.h.router.register_sinks(Arc::new(oncall::chat::Sinks {
        discord: Some(env.state.api.clone()),
        ..Default::default()
    }));
    let id = env.id();
    let declare = env.command(
        &id,
        OPERATOR,
        &[OPS_ROLE],
        "incident declare",
        json!([{"name": "severity", "type": 3, "value": "SEV-3"}, {"name": "title", "type": 3, "value": "slow search"}]),
    );
    let (_, r) = env.send(&declare).await;
    env.final_message(&r, &id).await;
    let id = env.id();
    let postmortem = env.command(
        &id,
        OPERATOR,
        &[OPS_ROLE],
        "incident postmortem",
        json!([{"name": "incident", "type": 4, "value": 1}]),
    );
    let (_, r) = env.send(&postmortem).await;
    let answer = env.final_message(&r, &id).await;
    assert!(
        text_of(&answer).contains("Shared here as `incident-1-postmortem.md`"),
        "{answer}"
    );
    let files = env.discord.state.attachments.lock().unwrap().clone();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].0, "600000000000000001");
    assert_eq!(files[0].1, "incident-1-postmortem.md");
    assert!(
        files[0].2.starts_with("# Incident 1: slow search\n"),
        "{files:?}"
    );
}
