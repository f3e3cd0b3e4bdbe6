//! The senders: drain the outbox's pages to chat, PagerDuty, Opsgenie and
//! webhooks, with retries.
//!
//! Each message is sent under its page key, which is also the provider's
//! dedup key (PagerDuty `dedup_key`, Opsgenie `alias`, the webhook's
//! `webhook-id`): a crash between sending and marking sent resends, and the
//! provider folds the resend into the first. A chat page records each
//! message it posts before going on, so a retry posts only what is missing.
//!
//! A 429, a 5xx or no answer is retried (after `Retry-After` when given,
//! else with backoff up to 5 minutes, at most [`MAX_ATTEMPTS`] times);
//! any other refusal is given up at once, and the incident's timeline says
//! so. Secrets (routing keys, API keys, webhook secrets) are read from the
//! environment when a message is sent and never stored or logged.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::config::{EscalationConfig, Target};
use crate::chat::{ChatError, MessageRef, Sinks};
use crate::reply::{Button, ButtonAction, ButtonStyle, Outcome, Reply};
use crate::router::Router;
use crate::store::{NewEvent, OutboxMessage, StoreError};

/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: i64 = 12;
/// Messages read per batch, and sent at once.
const BATCH: u32 = 512;
const IN_FLIGHT: usize = 128;
/// How long one provider request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed message is this sender's: past it (the sender died
/// or hung mid-send) the message is due again and is sent again under the
/// same dedup key. Longer than a batch can take.
pub const SEND_DEADLINE: Duration = Duration::from_secs(120);

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// Try again after this long.
    Retry {
        after: Duration,
        error: String,
    },
    /// Not deliverable: stop, and say why on the incident.
    GiveUp(String),
}

/// What a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drain {
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

#[derive(Clone)]
pub struct Pager {
    router: Router,
    sinks: Arc<Sinks>,
}

fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 8) as u32).min(Duration::from_secs(300))
}

/// 429, 5xx: retry (honouring Retry-After); 2xx: done; else give up.
fn judge(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    body: &str,
    attempts: i64,
) -> Sent {
    if status.is_success() {
        return Sent::Delivered;
    }
    let error = format!(
        "HTTP {}: {}",
        status.as_u16(),
        body.chars().take(300).collect::<String>()
    );
    if status.as_u16() == 429 || status.is_server_error() {
        let after = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_else(|| backoff(attempts))
            .min(Duration::from_secs(300));
        Sent::Retry { after, error }
    } else {
        Sent::GiveUp(error)
    }
}

async fn post_json(request: reqwest::RequestBuilder, body: &Value, attempts: i64) -> Sent {
    answer(
        request.timeout(REQUEST_TIMEOUT).json(body).send().await,
        attempts,
    )
    .await
}

/// How an attempt ended, from the provider's answer (or its absence).
async fn answer(response: reqwest::Result<reqwest::Response>, attempts: i64) -> Sent {
    match response {
        Ok(r) => {
            let status = r.status();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let text = r.text().await.unwrap_or_default();
            judge(status, retry_after.as_deref(), &text, attempts)
        }
        Err(e) => Sent::Retry {
            after: backoff(attempts),
            error: format!("no answer: {}", without_url(&e)),
        },
    }
}

/// A reqwest error without its URL (it may carry a key in a query).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}

fn env(name: &str) -> Result<String, Sent> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(Sent::GiveUp(format!(
            "the environment variable {name} is not set"
        ))),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `critical`/`error`/`warning`/`info` (PagerDuty) and `P1`..`P5`
/// (Opsgenie) by the severity's place in `[incidents]`.
fn severity_rank(router: &Router, severity: &str) -> usize {
    router
        .config()
        .incidents
        .severities
        .iter()
        .position(|s| s.name == severity)
        .unwrap_or(3)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The Standard Webhooks signature of `id.timestamp.body`.
pub fn webhook_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

impl Pager {
    pub fn new(router: Router, sinks: Arc<Sinks>) -> Self {
        Pager { router, sinks }
    }

    fn config(&self) -> &EscalationConfig {
        &self.router.config().escalation
    }

    /// Sends everything due, batch after batch, until nothing is due.
    pub async fn drain(&self) -> Result<Drain, StoreError> {
        let mut done = Drain::default();
        for _ in 0..1000 {
            let now_ms = self.router.clock().now().as_millisecond();
            let due = {
                let _gate = self.router.escalation_gate().await;
                let until = now_ms + SEND_DEADLINE.as_millis() as i64;
                let fence = self.router.fence();
                self.router
                    .store()
                    .claim_outbox(now_ms, BATCH, fence, until)
                    .await?
            };
            if due.is_empty() {
                break;
            }
            let results: Vec<(OutboxMessage, Sent)> = futures::stream::iter(due)
                .map(|m| async move {
                    let sent = self.send(&m).await;
                    (m, sent)
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            if results.iter().any(|(_, s)| *s == Sent::Delivered) {
                crash_point("after-send");
            }
            let now_ms = self.router.clock().now().as_millisecond();
            let _gate = self.router.escalation_gate().await;
            let delivered: Vec<i64> = results
                .iter()
                .filter(|(_, s)| *s == Sent::Delivered)
                .map(|(m, _)| m.id)
                .collect();
            self.router
                .store()
                .outbox_sent_fenced(&delivered, now_ms, self.router.fence())
                .await?;
            done.delivered += delivered.len();
            let counted = &self.router.metrics().pages_sent;
            for (m, sent) in results {
                match sent {
                    Sent::Delivered => counted.with_label_values(&[&m.kind, "delivered"]).inc(),
                    Sent::Retry { after, error } if m.attempts + 1 < MAX_ATTEMPTS => {
                        tracing::info!(kind = %m.kind, key = %m.dedup_key, %error, "page: will retry");
                        let at = now_ms + after.as_millis() as i64;
                        self.router
                            .store()
                            .outbox_failed_fenced(m.id, &error, Some(at), self.router.fence())
                            .await?;
                        done.retried += 1;
                    }
                    Sent::Retry { error, .. } | Sent::GiveUp(error) => {
                        tracing::warn!(kind = %m.kind, key = %m.dedup_key, %error, "page: given up");
                        counted.with_label_values(&[&m.kind, "failed"]).inc();
                        self.router
                            .store()
                            .outbox_failed_fenced(m.id, &error, None, self.router.fence())
                            .await?;
                        done.failed += 1;
                        if let Some(incident) = m.incident_id {
                            let target = m.target.clone().unwrap_or_else(|| m.kind.clone());
                            let event = NewEvent {
                                at_ms: now_ms,
                                actor: "oncall".into(),
                                kind: "page",
                                text: format!(
                                    "page to {target} failed after {} attempt(s), not retried: {error}",
                                    m.attempts + 1
                                ),
                                invocation_id: None,
                            };
                            self.router
                                .store()
                                .add_incident_event(incident, &event)
                                .await?;
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// One attempt at one message.
    pub async fn send(&self, m: &OutboxMessage) -> Sent {
        let result = match m.kind.as_str() {
            "page.chat" => self.chat(m).await,
            "page.pagerduty" => self.pagerduty(m).await,
            "page.opsgenie" => self.opsgenie(m).await,
            "page.webhook" => self.webhook(m).await,
            other => Err(Sent::GiveUp(format!("no sender for {other}"))),
        };
        result.unwrap_or_else(|s| s)
    }

    fn action(m: &OutboxMessage) -> &str {
        match s(&m.payload, "action") {
            "" => "trigger",
            a => a,
        }
    }

    /// The target a message is for (its own, or a follow-up's page's).
    fn target(m: &OutboxMessage) -> (&str, Result<Target, String>) {
        let t = match s(&m.payload, "page_target") {
            "" => s(&m.payload, "target"),
            t => t,
        };
        (t, Target::parse(t))
    }

    /// The page key a message is about (its own, or a follow-up's page).
    fn page_key(m: &OutboxMessage) -> &str {
        match s(&m.payload, "page_key") {
            "" => &m.dedup_key,
            k => k,
        }
    }

    async fn pagerduty(&self, m: &OutboxMessage) -> Result<Sent, Sent> {
        let p = &m.payload;
        let (target, parsed) = Self::target(m);
        let Ok(Target::PagerDuty(name)) = parsed else {
            return Err(Sent::GiveUp(format!(
                "`{target}` is not a PagerDuty target"
            )));
        };
        let cfg = &self.config().pagerduty;
        let service = cfg.services.get(&name).ok_or_else(|| {
            Sent::GiveUp(format!("PagerDuty service {name} is no longer configured"))
        })?;
        let routing_key = env(&service.routing_key_env)?;
        let action = Self::action(m);
        let mut body = json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": Self::page_key(m),
        });
        if action == "trigger" {
            let severity = ["critical", "error", "warning", "info"]
                [severity_rank(&self.router, s(p, "severity")).min(3)];
            body["payload"] = json!({
                "summary": truncate(s(p, "text"), 1024),
                "source": "oncall",
                "severity": severity,
                "component": "incident",
                "custom_details": {
                    "incident": p.get("incident"),
                    "title": s(p, "title"),
                    "severity": s(p, "severity"),
                    "tier": p.get("tier"),
                    "tier_name": p.get("tier_name"),
                    "round": p.get("round"),
                },
            });
            body["client"] = "oncall".into();
        }
        let url = format!("{}/v2/enqueue", cfg.url.trim_end_matches('/'));
        Ok(post_json(self.router.http().post(url), &body, m.attempts).await)
    }

    async fn opsgenie(&self, m: &OutboxMessage) -> Result<Sent, Sent> {
        let p = &m.payload;
        let (target, parsed) = Self::target(m);
        let Ok(Target::Opsgenie(name)) = parsed else {
            return Err(Sent::GiveUp(format!(
                "`{target}` is not an Opsgenie target"
            )));
        };
        let cfg = &self.config().opsgenie;
        let team = cfg
            .teams
            .get(&name)
            .ok_or_else(|| Sent::GiveUp(format!("Opsgenie team {name} is no longer configured")))?;
        let key = env(cfg.api_key_env.as_deref().unwrap_or("OPSGENIE_API_KEY"))?;
        let base = cfg.url.trim_end_matches('/');
        let alias = Self::page_key(m);
        let (url, body) = match Self::action(m) {
            "trigger" => {
                let priority = format!(
                    "P{}",
                    severity_rank(&self.router, s(p, "severity")).min(4) + 1
                );
                (
                    format!("{base}/v2/alerts"),
                    json!({
                        "message": truncate(s(p, "text"), 130),
                        "alias": truncate(alias, 512),
                        "description": truncate(s(p, "text"), 15000),
                        "responders": [{ "name": team.team, "type": "team" }],
                        "priority": priority,
                        "source": "oncall",
                        "tags": ["oncall", format!("incident-{}", p.get("incident").and_then(Value::as_i64).unwrap_or(0))],
                        "details": {
                            "incident": p.get("incident").map(|v| v.to_string()).unwrap_or_default(),
                            "severity": s(p, "severity"),
                            "tier": s(p, "tier_name"),
                        },
                    }),
                )
            }
            action => {
                let verb = if action == "resolve" {
                    "close"
                } else {
                    "acknowledge"
                };
                let encoded: String = url_escape(alias);
                (
                    format!("{base}/v2/alerts/{encoded}/{verb}?identifierType=alias"),
                    json!({ "source": "oncall", "user": s(p, "by"), "note": format!("{action}d in oncall") }),
                )
            }
        };
        let request = self
            .router
            .http()
            .post(url)
            .header("Authorization", format!("GenieKey {key}"));
        Ok(post_json(request, &body, m.attempts).await)
    }

    async fn webhook(&self, m: &OutboxMessage) -> Result<Sent, Sent> {
        let p = &m.payload;
        let (target, parsed) = Self::target(m);
        let Ok(Target::Webhook(name)) = parsed else {
            return Err(Sent::GiveUp(format!("`{target}` is not a webhook target")));
        };
        let hook = self
            .config()
            .webhooks
            .get(&name)
            .ok_or_else(|| Sent::GiveUp(format!("webhook {name} is no longer configured")))?;
        let secret = env(&hook.secret_env)?;
        let body = json!({
            "type": format!("page.{}", Self::action(m)),
            "timestamp": jiff::Timestamp::now().to_string(),
            "data": p,
        });
        let body = serde_json::to_string(&body).unwrap_or_default();
        let timestamp = jiff::Timestamp::now().as_second();
        let id = &m.dedup_key;
        let request = self
            .router
            .http()
            .post(&hook.url)
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                webhook_signature(&secret, id, timestamp, &body),
            )
            .body(body);
        Ok(answer(request.send().await, m.attempts).await)
    }

    /// Where a chat page for `platform` is posted: the incident's own
    /// channel, its platform's announce channel, or where it was declared.
    async fn incident_channel(
        &self,
        incident: i64,
        platform: &str,
    ) -> Result<Option<String>, Sent> {
        let i = self
            .router
            .store()
            .incident(incident)
            .await
            .map_err(|e| Sent::Retry {
                after: Duration::from_secs(1),
                error: e.to_string(),
            })?;
        let announce = self
            .router
            .config()
            .incidents
            .announce
            .get(platform)
            .cloned();
        Ok(match i {
            Some(i) if i.platform == platform => i.channel.or(announce).or(Some(i.declared_in)),
            _ => announce,
        })
    }

    async fn chat(&self, m: &OutboxMessage) -> Result<Sent, Sent> {
        let p = &m.payload;
        let incident = p.get("incident").and_then(Value::as_i64).unwrap_or(0);
        let mut progress = m.progress.clone().unwrap_or_else(|| json!({}));
        let follow_up = Self::action(m) != "trigger";
        if follow_up {
            return self.chat_follow_up(m, &progress).await;
        }
        let target = Target::parse(s(p, "target")).map_err(Sent::GiveUp)?;
        let (platform, channel, mention, dm) = match &target {
            Target::Channel { platform, id } => (platform.clone(), Some(id.clone()), None, None),
            Target::Principal(who) => {
                use oncall_permissions::PrincipalKind as K;
                let platform = match who.kind() {
                    K::SlackUser | K::SlackGroup => "slack",
                    K::DiscordUser | K::DiscordRole => "discord",
                    K::Cli => "cli",
                };
                let mention = who.to_string();
                let channel = match who.kind() {
                    K::Cli => None,
                    _ => self.incident_channel(incident, platform).await?,
                };
                // People get a direct message too on Slack, or when there is
                // no channel to mention them in; the console has only that.
                let dm = match who.kind() {
                    K::SlackUser | K::Cli => Some(who.id().to_string()),
                    K::DiscordUser if channel.is_none() => Some(who.id().to_string()),
                    _ => None,
                };
                (platform.to_string(), channel, Some(mention), dm)
            }
            other => return Err(Sent::GiveUp(format!("{other} is not a chat target"))),
        };
        if channel.is_none() && dm.is_none() {
            return Err(Sent::GiveUp(format!(
                "no channel to page {target} in: set incidents.announce.{platform}"
            )));
        }
        let reply = page_reply(p, incident, mention.as_deref());
        let workspace = None;
        if let Some(channel) = &channel {
            if progress.get("channel").is_none() {
                let posted = self.sinks.post(&platform, workspace, channel, &reply).await;
                let posted = posted.map_err(chat_error)?;
                progress["channel"] = message_json(&posted);
                self.save_progress(m.id, &progress).await?;
            }
        }
        if let Some(user) = &dm {
            if progress.get("dm").is_none() {
                match self
                    .sinks
                    .direct_message(&platform, workspace, user, &reply)
                    .await
                {
                    Ok(posted) => {
                        progress["dm"] = message_json(&posted);
                        self.save_progress(m.id, &progress).await?;
                    }
                    // The mention in the channel is the page; the DM adds
                    // to it where it can.
                    Err(e) if channel.is_some() => {
                        tracing::info!(%target, "page: no direct message: {e}");
                    }
                    Err(e) => return Err(chat_error(e)),
                }
            }
        }
        Ok(Sent::Delivered)
    }

    /// Replaces a page's messages with who acknowledged or resolved it.
    async fn chat_follow_up(&self, m: &OutboxMessage, progress: &Value) -> Result<Sent, Sent> {
        let p = &m.payload;
        let text = format!(
            "Incident {} {} by {}",
            p.get("incident").and_then(Value::as_i64).unwrap_or(0),
            if Self::action(m) == "resolve" {
                "resolved"
            } else {
                "acknowledged"
            },
            s(p, "by")
        );
        let reply = Reply::new(Outcome::Info, text);
        let platform = match Target::parse(s(p, "page_target")) {
            Ok(Target::Channel { platform, .. }) => platform,
            Ok(Target::Principal(who)) => who
                .kind()
                .prefix()
                .split('-')
                .next()
                .unwrap_or("cli")
                .to_string(),
            _ => return Ok(Sent::Delivered),
        };
        for part in ["channel", "dm"] {
            let Some(r) = progress.get(part) else {
                continue;
            };
            let message = MessageRef {
                channel: s(r, "channel").to_string(),
                id: s(r, "id").to_string(),
            };
            match self.sinks.update(&platform, None, &message, &reply).await {
                Ok(()) | Err(ChatError::NotFound(_)) | Err(ChatError::NotConfigured(_)) => {}
                Err(e) => return Err(chat_error(e)),
            }
        }
        Ok(Sent::Delivered)
    }

    async fn save_progress(&self, id: i64, progress: &Value) -> Result<(), Sent> {
        self.router
            .store()
            .outbox_progress(id, progress)
            .await
            .map_err(|e| Sent::Retry {
                after: Duration::from_secs(1),
                error: e.to_string(),
            })
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn message_json(m: &MessageRef) -> Value {
    json!({ "channel": m.channel, "id": m.id })
}

fn chat_error(e: ChatError) -> Sent {
    match e {
        ChatError::RateLimited(_) | ChatError::Unreachable(_) => Sent::Retry {
            after: Duration::from_secs(5),
            error: e.to_string(),
        },
        other => Sent::GiveUp(other.to_string()),
    }
}

/// The page as posted: the incident as the title, who is paged in the
/// text (where platforms render mentions and notify), an Acknowledge button
/// when it is about an incident.
fn page_reply(p: &Value, incident: i64, mention: Option<&str>) -> Reply {
    let mut reply = Reply::new(Outcome::Pending, format!("🚨 {}", s(p, "text")));
    if let Some(m) = mention {
        reply = reply.mention(vec![m.to_string()], "you are paged.");
    }
    if let Some(tier) = p.get("tier_name").and_then(Value::as_str) {
        reply = reply.fields(vec![("Tier".to_string(), tier.to_string())]);
    }
    if incident <= 0 {
        return reply;
    }
    reply
        .text(format!(
            "`incident ack {incident}` (or the button) stops the escalation."
        ))
        .buttons(vec![Button {
            label: "Acknowledge".into(),
            action_id: ButtonAction::Ack,
            value: incident.to_string(),
            style: ButtonStyle::Primary,
            confirm: None,
        }])
}

/// Crash points for the crash tests: with `ONCALL_CRASH_AT=<name>` the
/// process sends itself SIGKILL there (no cleanup of any kind), once it has
/// work:
/// `after-tick-commit` (a step's pages are committed, none sent) and
/// `after-send` (a batch is delivered, not yet marked sent).
pub(crate) fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("ONCALL_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        eprintln!("oncall: crash point {name}: SIGKILL");
        // SAFETY: kill(2) on our own pid; it does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// Runs the engine's ticks and the pager's drains under the router's
/// supervisor until shutdown, as two loops: each tick's committed batch
/// wakes the pager at once, so pages go out while later steps are still
/// being written. Both also look every `escalation.tick`.
pub fn spawn(router: Router, sinks: Arc<Sinks>) {
    let until = router.supervisor().token();
    spawn_until(router, sinks, until);
}

/// [`spawn`] for a leader's term: both loops stop when `until` is cancelled.
pub fn spawn_until(router: Router, sinks: Arc<Sinks>, until: CancellationToken) {
    let supervisor = router.supervisor().clone();
    let every = router.config().escalation.tick;
    let engine = router.clone();
    let wake = router.escalation_wake();
    supervisor.spawn_loop_until("escalation engine", until.clone(), move |stop| async move {
        loop {
            match super::engine::tick(&engine).await {
                Ok(t) if t.steps > 0 => {
                    tracing::info!(steps = t.steps, pages = t.pages, "escalation tick");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("escalation tick: {e}"),
            }
            // Until the next step is due (a step is paged on time, not
            // up to a tick late), at most a tick.
            let sleep = super::engine::until_next(&engine, every).await;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = wake.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    });
    let wake = router.pager_wake();
    let pager = Pager::new(router.clone(), sinks);
    supervisor.spawn_loop_until("pager", until, move |stop| async move {
        loop {
            if let Err(e) = pager.drain().await {
                tracing::warn!("pager: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}
