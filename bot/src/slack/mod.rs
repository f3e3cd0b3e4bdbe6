//! The Slack adapter: `/oncall` slash commands, Approve/Deny buttons and the
//! Events API, on `oncall serve`.
//!
//! Every request is verified before anything else ([`verify`]): size first
//! (a body over the limit is refused before it is read whole), then the
//! signature and its timestamp. A refusal is a generic 401 and a metric;
//! neither the secret nor the signature is ever logged.
//!
//! A slash command becomes an [`Invocation`] (principal `slack:<user>`, the
//! user's policy-relevant user groups, the channel, the team, idempotency key
//! `slack:<team>:<trigger_id>`) and goes through the router. Slack wants an
//! answer within 3 seconds: a command that finishes sooner answers in the
//! HTTP response; a slower one is acknowledged at once and finishes through
//! `response_url`. A repeated delivery never runs twice: the router's
//! idempotency store answers it with the first outcome.

pub mod api;
pub mod groups;
pub mod render;
pub mod socket;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use slack_morphism::prelude::{SlackCommandEvent, SlackInteractionEvent, SlackPushEvent};

use crate::metrics::Metrics;
use crate::model::{Invocation, Platform};
use crate::reply::{Outcome, Reply, Visibility};
use crate::router::Router;
use api::SlackApi;
use groups::GroupCache;

/// Non-secret Slack settings from the config file (`[slack]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// How long a command may run before it is acknowledged and finished
    /// through `response_url` (Slack's limit is 3s).
    #[serde(
        default = "default_ack",
        with = "crate::config::humantime_serde_compat"
    )]
    pub ack_timeout: Duration,
    /// How long user-group memberships are cached.
    #[serde(
        default = "default_group_ttl",
        with = "crate::config::humantime_serde_compat"
    )]
    pub group_cache_ttl: Duration,
    /// How old the last known members may be when Slack can't be asked
    /// (errors, rate limits); older, the user counts as in no group.
    #[serde(
        default = "default_group_max_stale",
        with = "crate::config::humantime_serde_compat"
    )]
    pub group_cache_max_stale: Duration,
    /// Requests larger than this are refused before being read.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            ack_timeout: default_ack(),
            group_cache_ttl: default_group_ttl(),
            group_cache_max_stale: default_group_max_stale(),
            max_body_bytes: default_max_body(),
        }
    }
}

fn default_group_max_stale() -> Duration {
    Duration::from_secs(3600)
}

fn default_ack() -> Duration {
    Duration::from_millis(2000)
}
fn default_group_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_max_body() -> usize {
    64 * 1024
}

/// Secrets and URLs, from the environment only.
#[derive(Clone)]
pub struct SlackSecrets {
    /// Needed for the HTTP routes; Socket Mode alone does without.
    pub signing_secret: Option<Vec<u8>>,
    pub bot_token: Option<String>,
    pub api_url: String,
    pub app_token: Option<String>,
}

impl std::fmt::Debug for SlackSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSecrets")
            .field("signing_secret", &"[redacted]")
            .field("bot_token", &self.bot_token.as_ref().map(|_| "[redacted]"))
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl SlackSecrets {
    /// `SLACK_SIGNING_SECRET` (HTTP) and/or `SLACK_APP_TOKEN` (Socket Mode)
    /// enable Slack; then `SLACK_BOT_TOKEN` and `SLACK_API_URL`.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        let secret = var("SLACK_SIGNING_SECRET");
        let app_token = var("SLACK_APP_TOKEN");
        if secret.is_none() && app_token.is_none() {
            return None;
        }
        Some(SlackSecrets {
            signing_secret: secret.map(String::into_bytes),
            bot_token: var("SLACK_BOT_TOKEN"),
            api_url: var("SLACK_API_URL").unwrap_or_else(|| api::DEFAULT_API_URL.to_string()),
            app_token,
        })
    }
}

/// Everything the Slack routes need.
pub struct SlackState {
    pub router: Router,
    pub config: SlackConfig,
    signing_secret: Option<Vec<u8>>,
    pub api: SlackApi,
    groups: Arc<GroupCache>,
    pub metrics: Metrics,
}

impl SlackState {
    pub fn new(router: Router, config: SlackConfig, secrets: SlackSecrets) -> Arc<Self> {
        let metrics = router.metrics().clone();
        let http = reqwest::Client::builder()
            .user_agent(concat!("oncall/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with default settings");
        let api = SlackApi::new(http, secrets.api_url, secrets.bot_token);
        let groups = Arc::new(GroupCache::new(
            config.group_cache_ttl,
            config.group_cache_max_stale,
        ));
        router.register_directory(
            Platform::Slack,
            Arc::new(groups::SlackDirectory {
                api: api.clone(),
                cache: groups.clone(),
            }),
        );
        Arc::new(SlackState {
            api,
            groups,
            signing_secret: secrets.signing_secret,
            router,
            config,
            metrics,
        })
    }
}

pub fn routes(state: Arc<SlackState>) -> axum::Router {
    axum::Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .with_state(state)
}

fn refuse(state: &SlackState, reason: &str, status: StatusCode) -> Response {
    crate::inbound::refuse(&state.metrics, "slack", reason, status)
}

/// Reads at most the size limit, then verifies the signature.
async fn verified_body(
    state: &SlackState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let bytes = crate::inbound::read_limited(
        &state.metrics,
        "slack",
        headers,
        body,
        state.config.max_body_bytes,
    )
    .await?;
    let header = |name: &str| crate::inbound::header(headers, name);
    let now = state.router.clock().now().as_second();
    // Without a signing secret nothing over HTTP can be trusted.
    let Some(secret) = &state.signing_secret else {
        return Err(refuse(state, "no_signing_secret", StatusCode::UNAUTHORIZED));
    };
    verify::verify(
        secret,
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &bytes,
        now,
    )
    .map_err(|e| refuse(state, e.label(), StatusCode::UNAUTHORIZED))?;
    Ok(bytes)
}

fn bad_request(state: &SlackState, what: &str) -> Response {
    state
        .metrics
        .refused
        .with_label_values(&["slack", "malformed"])
        .inc();
    (StatusCode::BAD_REQUEST, format!("malformed {what}")).into_response()
}

/// `POST /slack/commands`
async fn commands(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match verified_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(cmd) = serde_urlencoded::from_bytes::<SlackCommandEvent>(&bytes) else {
        return bad_request(&state, "slash command");
    };
    match command_answer(&state, cmd).await {
        Ok(CommandAnswer::Reply(reply)) => {
            Json(render::response_body(&reply, false)).into_response()
        }
        Ok(CommandAnswer::Json(v)) => Json(v).into_response(),
        Err(what) => bad_request(&state, what),
    }
}

/// A slash command's immediate answer: a reply to render, or a ready
/// message (an acknowledgement).
pub enum CommandAnswer {
    Reply(Reply),
    Json(Value),
}

/// [`command_answer`] as the JSON Slack is sent (Socket Mode's payload).
pub async fn command_response(
    state: &Arc<SlackState>,
    cmd: SlackCommandEvent,
) -> Result<Value, &'static str> {
    Ok(match command_answer(state, cmd).await? {
        CommandAnswer::Reply(reply) => render::response(&reply, false),
        CommandAnswer::Json(v) => v,
    })
}

/// Runs a slash command (from HTTP or Socket Mode) and returns the immediate
/// response: the answer when it came within the ack budget, an
/// acknowledgement otherwise (the answer then follows through `response_url`).
pub async fn command_answer(
    state: &Arc<SlackState>,
    cmd: SlackCommandEvent,
) -> Result<CommandAnswer, &'static str> {
    let Ok(principal) = format!("slack:{}", cmd.user_id.0).parse() else {
        return Err("user id");
    };
    // Answers go only to Slack: a payload naming another host is refused
    // before anything runs.
    if !state.api.is_slack_response_url(cmd.response_url.0.as_str()) {
        return Err("response_url");
    }
    let text = cmd.text.clone().unwrap_or_default();
    // A response_url lives 30 minutes: a longer wait could never answer.
    let wait = crate::inbound::requested_wait(&text);
    if wait.is_some_and(|w| w > MAX_SLACK_WAIT) {
        return Ok(CommandAnswer::Json(serde_json::json!({
            "response_type": "ephemeral",
            "text": "Slack lets a bot answer a command for 30 minutes; use `--wait` of 25m or less.",
        })));
    }
    let (progress_tx, progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let inv = Invocation {
        platform: Platform::Slack,
        workspace: Some(cmd.team_id.0.clone()),
        channel: cmd.channel_id.0.clone(),
        principal,
        // Looked up below, inside the work the ack timer bounds.
        groups: Vec::new(),
        text: text.clone(),
        idempotency_key: Some(format!("slack:{}:{}", cmd.team_id.0, cmd.trigger_id.0)),
        received_at: state.router.clock().now(),
        progress: Some(progress_tx),
    };
    let channel = cmd.channel_id.0.clone();
    let response_url = cmd.response_url.0.to_string();
    let (state2, channel2, url2) = (state.clone(), channel.clone(), response_url.clone());
    let (state1, user) = (state.clone(), cmd.user_id.0.clone());
    let answered = crate::inbound::answer_or_defer(
        state.router.supervisor(),
        state.config.ack_timeout,
        "slack command",
        // The group lookup is part of the work: a slow or rate-limited
        // Slack makes this answer deferred, never late.
        async move {
            let mut inv = inv;
            inv.groups = state1
                .groups
                .groups_of(&state1.api, &state1.router.config().policy, &user)
                .await;
            state1.router.handle(inv).await
        },
        // Slower than the ack budget: show progress, then the answer.
        move |task| async move {
            let progress =
                tokio::spawn(forward_progress(state2.clone(), url2.clone(), progress_rx));
            let done = task.await;
            let _ = progress.await;
            if let Ok(reply) = done {
                count(&state2, &reply);
                if reply.outcome == Outcome::Pending && state2.api.has_token() {
                    post_for_approval(&state2, &channel2, &reply, &url2).await;
                } else if let Err(e) = state2
                    .api
                    .respond(&url2, &render::response(&reply, false))
                    .await
                {
                    tracing::error!("could not deliver a Slack reply through response_url: {e}");
                }
            }
        },
    )
    .await;
    match answered {
        crate::inbound::Answered::Now(reply) => {
            count(state, &reply);
            if reply.outcome == Outcome::Pending && state.api.has_token() {
                let state2 = state.clone();
                state
                    .router
                    .supervisor()
                    .spawn("slack approval post", async move {
                        post_for_approval(&state2, &channel, &reply, &response_url).await
                    });
                return Ok(CommandAnswer::Json(approval_ack(&text)));
            }
            Ok(CommandAnswer::Reply(reply))
        }
        crate::inbound::Answered::Crashed => Ok(CommandAnswer::Reply(Reply::new(
            Outcome::Failed,
            "Something went wrong; nothing more will happen for this request",
        ))),
        crate::inbound::Answered::Deferred => {
            let shown = oncall_grammar::parse(&text)
                .map(|p| p.command.to_string())
                .unwrap_or_else(|_| text.clone());
            Ok(CommandAnswer::Json(json!({
                "response_type": "ephemeral",
                "text": format!("⏳ Working on `{}`… the answer follows here.", render::escape(&shown)),
            })))
        }
    }
}

/// `response_url` takes five posts; progress may use three, leaving room for
/// the answer.
const MAX_PROGRESS_POSTS: u32 = 3;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Shows a long command's progress by replacing the acknowledgement.
async fn forward_progress(
    state: Arc<SlackState>,
    response_url: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    // Let the acknowledgement reach the platform before editing it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut posted = 0;
    let mut last: Option<std::time::Instant> = None;
    while let Some(message) = rx.recv().await {
        if posted >= MAX_PROGRESS_POSTS || last.is_some_and(|t| t.elapsed() < PROGRESS_INTERVAL) {
            continue;
        }
        let body = json!({
            "response_type": "ephemeral",
            "replace_original": true,
            "text": format!("⏳ {}", render::escape(&message)),
        });
        if state.api.respond(&response_url, &body).await.is_ok() {
            posted += 1;
            last = Some(std::time::Instant::now());
        }
    }
}

/// What the requester sees at once when their request needs approval.
fn approval_ack(text: &str) -> Value {
    let shown = oncall_grammar::parse(text)
        .map(|p| p.command.to_string())
        .unwrap_or_else(|_| text.to_string());
    json!({
        "response_type": "ephemeral",
        "text": format!("⏳ `{}` needs approval: the request is posted in this channel with Approve / Deny buttons.", render::escape(&shown)),
    })
}

/// Posts an approval request into the channel (so it has a timestamp the
/// decision can update); falls back to `response_url` if posting fails.
async fn post_for_approval(state: &SlackState, channel: &str, reply: &Reply, response_url: &str) {
    if let Err(e) = state
        .api
        .post_message(channel, &render::message(reply))
        .await
    {
        tracing::warn!(
            "could not post the approval request with chat.postMessage ({e}); using response_url"
        );
        if let Err(e) = state
            .api
            .respond(response_url, &render::response(reply, false))
            .await
        {
            tracing::error!("could not deliver the approval request: {e}");
        }
    }
}

fn count(state: &SlackState, reply: &Reply) {
    state
        .metrics
        .handled
        .with_label_values(&["slack", reply.outcome.label()])
        .inc();
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// `POST /slack/interactions`: Approve / Deny buttons. Acknowledged at once;
/// the original message is then updated with the outcome and who decided,
/// or the clicker is told privately why not.
async fn interactions(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match verified_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(form) = serde_urlencoded::from_bytes::<InteractionForm>(&bytes) else {
        return bad_request(&state, "interaction");
    };
    let Ok(event) = serde_json::from_str::<SlackInteractionEvent>(&form.payload) else {
        return bad_request(&state, "interaction payload");
    };
    match start_interaction(&state, event).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(what) => bad_request(&state, what),
    }
}

/// Starts handling a button click (from HTTP or Socket Mode) and returns at
/// once; the outcome is delivered with `chat.update` or `response_url`.
pub async fn start_interaction(
    state: &Arc<SlackState>,
    event: SlackInteractionEvent,
) -> Result<(), &'static str> {
    let SlackInteractionEvent::BlockActions(ev) = event else {
        return Ok(());
    };
    let Some(action) = ev.actions.as_ref().and_then(|a| a.first()).cloned() else {
        return Ok(());
    };
    let Some(button) = action
        .action_id
        .0
        .strip_prefix("oncall_")
        .and_then(|a| crate::reply::ButtonAction::parse(a.split('_').next().unwrap_or(a)))
    else {
        return Ok(());
    };
    let (Some(user), Some(id)) = (ev.user.as_ref(), action.value.clone()) else {
        return Err("interaction");
    };
    let Ok(principal) = format!("slack:{}", user.id.0).parse() else {
        return Err("user id");
    };
    let channel = ev
        .channel
        .as_ref()
        .map(|c| c.id.0.clone())
        .unwrap_or_default();
    let message_ts = match &ev.container {
        slack_morphism::prelude::SlackInteractionActionContainer::Message(m) => {
            Some(m.message_ts.0.clone())
        }
        _ => None,
    };
    let action_ts = action
        .action_ts
        .as_ref()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let inv = Invocation {
        platform: Platform::Slack,
        workspace: Some(ev.team.id.0.clone()),
        channel: channel.clone(),
        principal,
        // Looked up in the background work below, after the ack.
        groups: Vec::new(),
        text: button.command(&id),
        // The action's own ids: one click runs once, however often delivered.
        idempotency_key: Some(format!(
            "slack:{}:{}:{}:{}",
            ev.team.id.0, action.action_id.0, action_ts, ev.trigger_id.0
        )),
        received_at: state.router.clock().now(),
        progress: None,
    };
    let response_url = ev.response_url.as_ref().map(|u| u.0.to_string());
    let state2 = state.clone();
    let user = user.id.0.clone();
    state.router.supervisor().spawn("slack button", async move {
        let mut inv = inv;
        inv.groups = state2
            .groups
            .groups_of(&state2.api, &state2.router.config().policy, &user)
            .await;
        let reply = state2.router.handle(inv).await;
        count(&state2, &reply);
        // An alert's first response answers in the channel and leaves the
        // alert's message to the courier (which shows who ran it).
        let respond = button == crate::reply::ButtonAction::Respond;
        let decided = reply.outcome == Outcome::Done || reply.outcome == Outcome::Failed;
        let result = match (&message_ts, decided && !respond) {
            // The request was decided: the approval message shows the outcome.
            (Some(ts), true) => state2
                .api
                .update_message(&channel, ts, &render::message(&reply))
                .await
                .map(|_| ()),
            // Refused (e.g. the requester clicked): tell only the clicker.
            _ => match &response_url {
                Some(url) => {
                    let mut private = reply.clone();
                    if !respond {
                        private.visibility = Visibility::Private;
                    }
                    state2
                        .api
                        .respond(url, &render::response(&private, false))
                        .await
                }
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::error!("could not deliver the outcome of a Slack button: {e}");
        }
    });
    Ok(())
}

/// `POST /slack/events`: the Events API. `url_verification`, and the pin
/// reaction on a message in an incident's channel (acknowledged at once;
/// the message is read and added to the timeline in the background).
async fn events(State(state): State<Arc<SlackState>>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match verified_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        if v["type"] == "event_callback" && v["event"]["type"] == "reaction_added" {
            pin_reaction(&state, &v);
            return StatusCode::OK.into_response();
        }
    }
    match serde_json::from_slice::<SlackPushEvent>(&bytes) {
        Ok(SlackPushEvent::UrlVerification(v)) => {
            Json(json!({ "challenge": v.challenge })).into_response()
        }
        Ok(_) => StatusCode::OK.into_response(),
        Err(_) => match serde_json::from_slice::<Value>(&bytes) {
            // Event types this version does not model are acknowledged.
            Ok(_) => StatusCode::OK.into_response(),
            Err(_) => bad_request(&state, "event"),
        },
    }
}

/// A `reaction_added` event: the configured reaction on a message adds
/// the message to the timeline of the incident whose channel it is in.
fn pin_reaction(state: &Arc<SlackState>, v: &Value) {
    let event = &v["event"];
    let wanted = &state.router.config().incidents.pin_reaction;
    let (Some(user), Some(channel), Some(ts)) = (
        event["user"].as_str(),
        event["item"]["channel"].as_str(),
        event["item"]["ts"].as_str(),
    ) else {
        return;
    };
    if event["reaction"].as_str() != Some(wanted.as_str()) || event["item"]["type"] != "message" {
        return;
    }
    let Ok(by) = format!("slack:{user}").parse::<oncall_permissions::Principal>() else {
        return;
    };
    let (state, channel, ts) = (state.clone(), channel.to_string(), ts.to_string());
    let workspace = v["team_id"].as_str().map(String::from);
    state
        .router
        .supervisor()
        .clone()
        .spawn("slack pin", async move {
            let message = state
                .api
                .call_form(
                    "conversations.history",
                    &[
                        ("channel", channel.as_str()),
                        ("latest", ts.as_str()),
                        ("inclusive", "true"),
                        ("limit", "1"),
                    ],
                )
                .await;
            let message = match message {
                Ok(m) => m["messages"][0].clone(),
                Err(e) => {
                    tracing::warn!("could not read a pinned message: {e}");
                    return;
                }
            };
            // The history's newest message at or before `ts` must be the one.
            if message["ts"].as_str() != Some(ts.as_str()) {
                tracing::warn!("the pinned message {ts} was not found");
                return;
            }
            let pin = crate::pins::Pin {
                platform: Platform::Slack,
                workspace,
                channel,
                by,
                seen_groups: Vec::new(),
                message: ts,
                author: message["user"].as_str().map(|u| format!("slack:{u}")),
                text: message["text"].as_str().unwrap_or_default().to_string(),
            };
            let outcome = crate::pins::pin(&state.router, &pin).await;
            tracing::info!(pinned = ?outcome, "slack pin reaction");
        });
}

/// The longest `rollout status --wait` Slack can answer: a `response_url`
/// lives 30 minutes, and the answer needs time to arrive.
pub const MAX_SLACK_WAIT: std::time::Duration = std::time::Duration::from_secs(25 * 60);
