//! The Discord adapter: `/oncall` as an application command, over the HTTP
//! interactions endpoint (`POST /discord/interactions`) or the gateway.
//!
//! Both paths end in [`handle`]: PING → PONG; application commands become
//! command text (from their options, [`schema::options_to_text`]) and go
//! through the router like Slack's; Approve/Deny buttons are component
//! interactions; autocomplete answers with catalog names. Within Discord's
//! 3 seconds we answer directly (type 4) when the command is fast, or defer
//! (type 5, ephemeral where the answer will be) and then edit the original
//! response. The interaction id is the idempotency key: the same interaction
//! never runs twice.
//!
//! Principals are `discord:<user id>` with the member's roles as
//! `discord-role:<id>`; guild and channel ids scope the policy.

pub mod api;
pub mod gateway;
pub mod render;
pub mod schema;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use oncall_grammar::ArgKind;
use oncall_permissions::Principal;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::model::{Invocation, Platform};
use crate::reply::{Outcome, Reply, Visibility};
use crate::router::Router;
use api::DiscordApi;
use verify::PublicKey;

/// The longest `rollout status --wait` Discord can answer (tokens last 15m).
pub const MAX_DISCORD_WAIT: Duration = Duration::from_secs(14 * 60);

/// Non-secret Discord settings from the config file (`[discord]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// How long a command may run before the response is deferred.
    #[serde(
        default = "default_ack",
        with = "crate::config::humantime_serde_compat"
    )]
    pub ack_timeout: Duration,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            ack_timeout: default_ack(),
            max_body_bytes: default_max_body(),
        }
    }
}

fn default_ack() -> Duration {
    Duration::from_millis(2000)
}
fn default_max_body() -> usize {
    64 * 1024
}

/// From the environment only.
#[derive(Clone, Default)]
pub struct DiscordSecrets {
    pub public_key: Option<String>,
    pub bot_token: Option<String>,
    pub application_id: Option<String>,
    pub api_url: String,
}

impl std::fmt::Debug for DiscordSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordSecrets")
            .field("public_key", &self.public_key)
            .field("bot_token", &self.bot_token.as_ref().map(|_| "[redacted]"))
            .field("application_id", &self.application_id)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl DiscordSecrets {
    /// `DISCORD_PUBLIC_KEY`, `DISCORD_BOT_TOKEN`, `DISCORD_APPLICATION_ID`, `DISCORD_API_URL`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        DiscordSecrets {
            public_key: var("DISCORD_PUBLIC_KEY"),
            bot_token: var("DISCORD_BOT_TOKEN"),
            application_id: var("DISCORD_APPLICATION_ID"),
            api_url: var("DISCORD_API_URL").unwrap_or_else(|| api::DEFAULT_API_URL.to_string()),
        }
    }
}

pub struct DiscordState {
    pub router: Router,
    pub config: DiscordConfig,
    key: Option<PublicKey>,
    pub api: DiscordApi,
    pub metrics: Metrics,
}

impl DiscordState {
    pub fn new(
        router: Router,
        config: DiscordConfig,
        secrets: DiscordSecrets,
    ) -> Result<Arc<Self>, String> {
        let metrics = router.metrics().clone();
        let key = secrets
            .public_key
            .as_deref()
            .map(PublicKey::from_hex)
            .transpose()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "DiscordBot (oncall, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()
            .expect("the HTTP client builds with default settings");
        let api = DiscordApi::new(
            http,
            secrets.api_url,
            secrets.bot_token,
            secrets.application_id,
        );
        router.register_directory(
            Platform::Discord,
            Arc::new(MemberRoles { api: api.clone() }),
        );
        Ok(Arc::new(DiscordState {
            api,
            router,
            config,
            key,
            metrics,
        }))
    }
}

/// Discord's answer to "which roles does this member hold now": the guild
/// member, read through the API (none when they left the guild; none in a
/// DM, where there are no roles).
struct MemberRoles {
    api: DiscordApi,
}

impl crate::directory::Directory for MemberRoles {
    fn groups<'a>(
        &'a self,
        _policy: &'a oncall_permissions::Policy,
        principal: &'a Principal,
        workspace: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<Principal>, String>> {
        Box::pin(async move {
            let (oncall_permissions::PrincipalKind::DiscordUser, Some(guild)) =
                (principal.kind(), workspace)
            else {
                return Ok(Vec::new());
            };
            let roles = self
                .api
                .member_roles(guild, principal.id())
                .await
                .map_err(|e| e.to_string())?;
            Ok(roles
                .unwrap_or_default()
                .iter()
                .filter_map(|r| format!("discord-role:{r}").parse().ok())
                .collect())
        })
    }
}

pub fn routes(state: Arc<DiscordState>) -> axum::Router {
    axum::Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(state)
}

fn refuse(state: &DiscordState, reason: &str, status: StatusCode) -> Response {
    crate::inbound::refuse(&state.metrics, "discord", reason, status)
}

/// `POST /discord/interactions`
async fn interactions(
    State(state): State<Arc<DiscordState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match crate::inbound::read_limited(
        &state.metrics,
        "discord",
        &headers,
        body,
        state.config.max_body_bytes,
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(key) = &state.key else {
        return refuse(&state, "no_public_key", StatusCode::UNAUTHORIZED);
    };
    let header = |name: &str| crate::inbound::header(&headers, name);
    let now = state.router.clock().now().as_second();
    if let Err(e) = verify::verify(
        key,
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
        &bytes,
        now,
    ) {
        return refuse(&state, e.label(), StatusCode::UNAUTHORIZED);
    }
    let Ok(interaction) = serde_json::from_slice::<Value>(&bytes) else {
        return refuse(&state, "malformed", StatusCode::BAD_REQUEST);
    };
    Json(handle(&state, &interaction).await).into_response()
}

/// Who is asking: the member's user (in a guild) or the user (in a DM), and
/// the member's roles.
fn principals(interaction: &Value) -> Option<(Principal, Vec<Principal>)> {
    let user_id = interaction["member"]["user"]["id"]
        .as_str()
        .or(interaction["user"]["id"].as_str())?;
    let principal: Principal = format!("discord:{user_id}").parse().ok()?;
    let roles = interaction["member"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .filter_map(|r| format!("discord-role:{r}").parse().ok())
        .collect();
    Some((principal, roles))
}

fn ephemeral(reply: &Reply) -> Value {
    let mut private = reply.clone();
    private.visibility = Visibility::Private;
    render::message(&private)
}

fn plain_ephemeral(text: &str) -> Value {
    json!({ "type": 4, "data": { "content": text, "flags": render::EPHEMERAL } })
}

/// Handles one interaction (from HTTP or the gateway); returns the immediate
/// response and, when it deferred, finishes the work in the background.
pub async fn handle(state: &Arc<DiscordState>, interaction: &Value) -> Value {
    match interaction["type"].as_u64() {
        Some(1) => json!({ "type": 1 }),
        Some(4) => autocomplete(state, interaction),
        Some(2) if interaction["data"]["type"] == 3 => message_command(state, interaction).await,
        Some(2) => command(state, interaction).await,
        Some(3) => component(state, interaction).await,
        _ => plain_ephemeral("This kind of interaction is not supported."),
    }
}

/// "Add to timeline" on a message: added to the timeline of the incident
/// whose channel it is in; the person is told the outcome privately.
async fn message_command(state: &Arc<DiscordState>, interaction: &Value) -> Value {
    let data = &interaction["data"];
    if data["name"] != schema::ADD_TO_TIMELINE {
        return plain_ephemeral("This command is not one of oncall's.");
    }
    let (Some((by, seen_groups)), Some(target), Some(channel)) = (
        principals(interaction),
        data["target_id"].as_str(),
        interaction["channel_id"]
            .as_str()
            .or(interaction["channel"]["id"].as_str()),
    ) else {
        return plain_ephemeral("This interaction is missing its user, message or channel.");
    };
    let message = &data["resolved"]["messages"][target];
    let pin = crate::pins::Pin {
        platform: Platform::Discord,
        workspace: interaction["guild_id"].as_str().map(String::from),
        channel: channel.to_string(),
        by,
        seen_groups,
        message: target.to_string(),
        author: message["author"]["id"]
            .as_str()
            .map(|id| format!("discord:{id}")),
        text: message["content"].as_str().unwrap_or_default().to_string(),
    };
    plain_ephemeral(&crate::pins::pin(&state.router, &pin).await.message())
}

fn autocomplete(state: &DiscordState, interaction: &Value) -> Value {
    let Some((_, options)) = schema::invoked(&interaction["data"]) else {
        return schema::choices(&[], "");
    };
    let Some((name, typed)) = schema::focused(&options) else {
        return schema::choices(&[], "");
    };
    let verb = schema::invoked(&interaction["data"])
        .map(|(v, _)| v)
        .unwrap_or_default();
    let (kind, many) = match schema::option_of(&verb, &name) {
        Some(schema::OptionOf::Arg(a)) => (Some(a.kind), a.many),
        Some(schema::OptionOf::Flag(f)) => (f.kind, false),
        None => (None, false),
    };
    if kind == Some(ArgKind::Verb) {
        let verbs: Vec<String> = oncall_grammar::VERBS
            .iter()
            .map(|v| v.name.to_string())
            .collect();
        return schema::choices(&verbs, &typed);
    }
    let catalog = state.router.catalog();
    let mut candidates: Vec<String> = if kind == Some(ArgKind::CronJob) {
        catalog.cronjobs().map(String::from).collect()
    } else {
        catalog.names().map(String::from).collect()
    };
    if kind == Some(ArgKind::ServiceOrNamespace) {
        candidates.extend(
            catalog
                .namespaces()
                .map(String::from)
                .filter(|n| catalog.get(n).is_none()),
        );
    }
    // Only what the caller may act on with this verb, here.
    if let (Some((principal, groups)), Some(spec)) =
        (principals(interaction), oncall_grammar::spec::find(&verb))
    {
        let mut all = vec![principal];
        all.extend(groups);
        let channel = format!(
            "discord:{}",
            interaction["channel_id"]
                .as_str()
                .or(interaction["channel"]["id"].as_str())
                .unwrap_or("dm")
        );
        candidates.retain(|c| {
            state
                .router
                .may_act_on(&all, &channel, spec.policy_verb, Some(c), true)
        });
    } else {
        candidates.clear();
    }
    // `restart` takes several services: complete the last word.
    let (prefix, last) = match typed.rsplit_once(' ') {
        Some((p, l)) if many => (format!("{p} "), l.to_string()),
        _ => (String::new(), typed.clone()),
    };
    let completed: Vec<String> = candidates.iter().map(|c| format!("{prefix}{c}")).collect();
    let filtered: Vec<String> = completed
        .into_iter()
        .filter(|c| c[prefix.len()..].contains(&last.to_lowercase()))
        .collect();
    schema::choices(&filtered, &format!("{prefix}{last}"))
}

fn invocation(
    interaction: &Value,
    text: String,
    principal: Principal,
    groups: Vec<Principal>,
    state: &DiscordState,
    progress: Option<crate::model::ProgressSink>,
) -> Invocation {
    Invocation {
        progress,
        platform: Platform::Discord,
        workspace: interaction["guild_id"].as_str().map(String::from),
        channel: interaction["channel_id"]
            .as_str()
            .or(interaction["channel"]["id"].as_str())
            .unwrap_or("dm")
            .to_string(),
        principal,
        groups,
        text,
        idempotency_key: interaction["id"].as_str().map(|id| format!("discord:{id}")),
        received_at: state.router.clock().now(),
    }
}

fn count(state: &DiscordState, reply: &Reply) {
    state
        .metrics
        .handled
        .with_label_values(&["discord", reply.outcome.label()])
        .inc();
}

async fn command(state: &Arc<DiscordState>, interaction: &Value) -> Value {
    if interaction["data"]["name"] != "oncall" {
        return plain_ephemeral("Unknown command; try `/oncall help`.");
    }
    let Some(text) = schema::invoked(&interaction["data"])
        .and_then(|(verb, options)| schema::options_to_text(&verb, &options))
    else {
        return plain_ephemeral("That command is not one oncall knows; try `/oncall help`.");
    };
    let Some((principal, groups)) = principals(interaction) else {
        return plain_ephemeral("Could not tell who is asking.");
    };
    // Interaction tokens last 15 minutes: a longer wait could never answer.
    let wait = crate::inbound::requested_wait(&text);
    if let Some(w) = wait {
        if w > MAX_DISCORD_WAIT {
            return plain_ephemeral("Discord lets a bot answer an interaction for 15 minutes; use `wait` of 14m or less.");
        }
    }
    // Will the answer be public? Mutations are, and anything with --public.
    let public = oncall_grammar::parse(&text)
        .map(|p| p.public || p.command.is_mutating())
        .unwrap_or(false);
    let (progress_tx, progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let inv = invocation(
        interaction,
        text,
        principal,
        groups,
        state,
        Some(progress_tx),
    );
    let token = interaction["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let router = state.router.clone();
    let state2 = state.clone();
    let answered = crate::inbound::answer_or_defer(
        state.router.supervisor(),
        state.config.ack_timeout,
        "discord command",
        async move { router.handle(inv).await },
        move |task| async move {
            let progress =
                tokio::spawn(forward_progress(state2.clone(), token.clone(), progress_rx));
            let done = task.await;
            let _ = progress.await;
            if let Ok(reply) = done {
                count(&state2, &reply);
                if let Err(e) = state2
                    .api
                    .edit_original(&token, &render::message(&reply))
                    .await
                {
                    tracing::error!("could not edit the deferred Discord response: {e}");
                }
            }
        },
    )
    .await;
    match answered {
        crate::inbound::Answered::Now(reply) => {
            count(state, &reply);
            json!({ "type": 4, "data": render::message(&reply) })
        }
        crate::inbound::Answered::Crashed => {
            plain_ephemeral("Something went wrong; nothing more will happen for this request.")
        }
        crate::inbound::Answered::Deferred => {
            let mut data = json!({});
            if !public {
                data["flags"] = json!(render::EPHEMERAL);
            }
            json!({ "type": 5, "data": data })
        }
    }
}

/// Shows a long command's progress by editing the deferred response (at
/// most every two seconds); the final answer replaces it.
async fn forward_progress(
    state: Arc<DiscordState>,
    token: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    // Let the acknowledgement reach the platform before editing it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut last: Option<std::time::Instant> = None;
    while let Some(message) = rx.recv().await {
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            continue;
        }
        let body = json!({ "embeds": [{ "title": format!("⏳ {}", render::truncate_title(&message)), "color": render::colour(Outcome::Pending) }] });
        if state.api.edit_original(&token, &body).await.is_ok() {
            last = Some(std::time::Instant::now());
        }
    }
}

/// Approve / Deny buttons (`oncall:approve:<id>`).
async fn component(state: &Arc<DiscordState>, interaction: &Value) -> Value {
    let custom_id = interaction["data"]["custom_id"]
        .as_str()
        .unwrap_or_default();
    let (text, respond) = match custom_id.split(':').collect::<Vec<_>>().as_slice() {
        ["oncall", action, value] => match crate::reply::ButtonAction::parse(action) {
            Some(action) => (
                action.command(value),
                action == crate::reply::ButtonAction::Respond,
            ),
            None => return plain_ephemeral("This button is not one oncall knows."),
        },
        _ => return plain_ephemeral("This button is not one oncall knows."),
    };
    let Some((principal, groups)) = principals(interaction) else {
        return plain_ephemeral("Could not tell who is asking.");
    };
    let inv = invocation(interaction, text, principal, groups, state, None);
    let token = interaction["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let router = state.router.clone();
    let decided = |reply: &Reply| matches!(reply.outcome, Outcome::Done | Outcome::Failed);
    let state2 = state.clone();
    let answered = crate::inbound::answer_or_defer(
        state.router.supervisor(),
        state.config.ack_timeout,
        "discord button",
        async move { router.handle(inv).await },
        move |task| async move {
            if let Ok(reply) = task.await {
                count(&state2, &reply);
                let result = if respond {
                    // An alert's first response answers in the channel and
                    // leaves the alert's message to the courier.
                    let public =
                        reply.outcome != Outcome::Denied && reply.outcome != Outcome::Invalid;
                    let body = if public {
                        render::message(&reply)
                    } else {
                        ephemeral(&reply)
                    };
                    state2.api.followup(&token, &body).await
                } else if decided(&reply) {
                    let mut data = render::message(&reply);
                    data["components"] = json!([]);
                    state2.api.edit_original(&token, &data).await
                } else {
                    state2.api.followup(&token, &ephemeral(&reply)).await
                };
                if let Err(e) = result {
                    tracing::error!("could not deliver the outcome of a Discord button: {e}");
                }
            }
        },
    )
    .await;
    match answered {
        crate::inbound::Answered::Now(reply) => {
            count(state, &reply);
            let public = reply.outcome != Outcome::Denied && reply.outcome != Outcome::Invalid;
            if respond && public {
                json!({ "type": 4, "data": render::message(&reply) })
            } else if decided(&reply) && !respond {
                // The approval message now shows the outcome, without buttons.
                let mut data = render::message(&reply);
                data["components"] = json!([]);
                json!({ "type": 7, "data": data })
            } else {
                json!({ "type": 4, "data": ephemeral(&reply) })
            }
        }
        crate::inbound::Answered::Crashed => {
            plain_ephemeral("Something went wrong; nothing more will happen for this click.")
        }
        crate::inbound::Answered::Deferred => json!({ "type": 6 }),
    }
}
