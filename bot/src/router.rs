//! The router: one [`Invocation`] in, one [`Reply`] out.
//!
//! Every adapter (console, Slack, Discord) builds an [`Invocation`] and calls
//! [`Router::handle`]. The steps, in order:
//! 1. an idempotency key already seen is answered with its first reply and
//!    runs nothing;
//! 2. a history row is written before anything runs;
//! 3. parse and check against the catalog (bad input changes nothing);
//! 4. authorize with the policy (deny by default, with the deciding rule);
//! 5. hold for approval, or execute through the handler of the command;
//! 6. complete the history row, then return the reply.
//!
//! So a mutating command never runs twice for one key, never runs
//! unauthorized, and is in the history before the user sees the reply.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use oncall_commands::ops::Clusters;
use oncall_commands::{grammar, Catalog, Command, ServiceEntry};
use oncall_permissions::{Decision, Principal, Request, Target};

use crate::config::Config;
use crate::handlers;
use crate::reply::{Outcome, Reply};
use crate::store::{Completion, KeyClaim, NewInvocation, Store};

/// Where an invocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Slack,
    Discord,
    Cli,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Discord => "discord",
            Platform::Cli => "cli",
        }
    }
}

/// One request from a person, platform-neutral.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub platform: Platform,
    /// Slack team id, Discord guild id; none for the console.
    pub workspace: Option<String>,
    /// The platform's channel id.
    pub channel: String,
    pub principal: Principal,
    /// User groups / platform roles the adapter resolved.
    pub groups: Vec<Principal>,
    /// The command text, with or without `/oncall`.
    pub text: String,
    /// Slack trigger_id, Discord interaction id…: one key runs at most once.
    pub idempotency_key: Option<String>,
    pub received_at: jiff::Timestamp,
}

impl Invocation {
    /// `<platform>:<channel id>`, the form the policy's channel scopes use.
    pub fn channel_scope(&self) -> String {
        format!("{}:{}", self.platform.as_str(), self.channel)
    }

    /// The caller first, then its groups.
    pub fn principals(&self) -> Vec<Principal> {
        let mut all = vec![self.principal.clone()];
        all.extend(self.groups.iter().cloned());
        all
    }
}

/// The time source; tests drive approval expiry with a manual clock.
#[derive(Clone)]
pub enum Clock {
    System,
    Manual(Arc<Mutex<jiff::Timestamp>>),
}

impl Clock {
    pub fn manual(start: jiff::Timestamp) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> jiff::Timestamp {
        match self {
            Clock::System => jiff::Timestamp::now(),
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        }
    }

    pub fn advance(&self, by: std::time::Duration) {
        if let Clock::Manual(t) = self {
            let mut t = t.lock().expect("clock lock");
            *t += jiff::SignedDuration::try_from(by).expect("duration fits");
        }
    }
}

/// What a handler produced: the reply plus what the history should say.
#[derive(Debug, Clone)]
pub struct Handled {
    pub reply: Reply,
    /// One line for the history (`backend 2 → 5`).
    pub summary: Option<String>,
    pub error: Option<String>,
}

impl Handled {
    pub fn ok(reply: Reply, summary: impl Into<String>) -> Self {
        Handled {
            reply,
            summary: Some(summary.into()),
            error: None,
        }
    }

    pub fn info(reply: Reply) -> Self {
        Handled {
            reply,
            summary: None,
            error: None,
        }
    }

    pub fn failed(title: impl Into<String>, error: impl std::fmt::Display) -> Self {
        let error = error.to_string();
        Handled {
            reply: Reply::new(Outcome::Failed, title).text(error.clone()),
            summary: None,
            error: Some(error),
        }
    }
}

/// The decision part of a history row.
#[derive(Debug, Clone, Default)]
pub struct DecisionRecord {
    pub decision: String,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub approval_id: Option<String>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub catalog: Catalog,
    pub store: Store,
    pub clusters: Clusters,
    pub clock: Clock,
}

#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

impl Router {
    pub fn new(config: Config, store: Store, clusters: Clusters, clock: Clock) -> Self {
        let catalog = config.catalog();
        Router {
            inner: Arc::new(Inner {
                config,
                catalog,
                store,
                clusters,
                clock,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Handles one invocation end to end. Never panics on user input; every
    /// path returns a reply.
    pub async fn handle(&self, inv: Invocation) -> Reply {
        let store = &self.inner.store;
        let now_ms = self.inner.clock.now().as_millisecond();
        if let Some(key) = &inv.idempotency_key {
            match store.claim_key(key, now_ms).await {
                Ok(KeyClaim::Claimed) => {}
                Ok(KeyClaim::Done(json)) => {
                    return match serde_json::from_str::<Reply>(&json) {
                        Ok(reply) => reply,
                        Err(e) => Reply::new(Outcome::Failed, "This request was already handled")
                            .text(format!(
                                "Its stored answer is unreadable ({e}); it was not run again."
                            )),
                    };
                }
                Ok(KeyClaim::Running) => {
                    return Reply::new(Outcome::Info, "This request is already being handled")
                        .text(
                            "The same request arrived twice; it runs once and answers when done.",
                        );
                }
                Err(e) => return store_unavailable(e),
            }
        }
        let started = Instant::now();
        let record = NewInvocation {
            received_at_ms: inv.received_at.as_millisecond(),
            platform: inv.platform.as_str().to_string(),
            workspace: inv.workspace.clone(),
            channel: inv.channel.clone(),
            principal: inv.principal.to_string(),
            groups: inv.groups.iter().map(ToString::to_string).collect(),
            text: redact_for_history(&inv.text),
            idempotency_key: inv.idempotency_key.clone(),
        };
        let id = match store.begin_invocation(&record).await {
            Ok(id) => id,
            Err(e) => return store_unavailable(e),
        };
        let (mut handled, command, decision) = self.run(&inv, id).await;
        let completion = Completion {
            verb: command.as_ref().map(|c| c.policy_verb().to_string()),
            command: command.as_ref().map(ToString::to_string),
            service: command.as_ref().and_then(|c| c.service().map(String::from)),
            mutating: command.as_ref().is_some_and(|c| c.is_mutating()),
            dry_run: command.as_ref().is_some_and(|c| c.is_dry_run()),
            decision: decision.decision,
            rule: decision.rule,
            reason: decision.reason,
            outcome: handled.reply.outcome.label().to_string(),
            summary: handled.summary.take(),
            error: handled.error.take(),
            duration_ms: started.elapsed().as_millis() as i64,
            approval_id: decision.approval_id,
        };
        let mut reply = handled.reply;
        reply.footer = Some(format!(
            "{} · {} · {}",
            inv.principal,
            inv.channel_scope(),
            self.inner
                .clock
                .now()
                .round(jiff::Unit::Second)
                .unwrap_or(self.inner.clock.now())
        ));
        if let Err(e) = store.complete_invocation(id, &completion).await {
            tracing::error!(invocation = id, "could not complete the history row: {e}");
            reply = reply.text(format!(
                "⚠️ The history could not record the outcome of this request (#{id}): {e}"
            ));
        }
        if let Some(key) = &inv.idempotency_key {
            match serde_json::to_string(&reply) {
                Ok(json) => {
                    if let Err(e) = store.finish_key(key, &json, id).await {
                        tracing::error!("could not store the reply for an idempotency key: {e}");
                    }
                }
                Err(e) => tracing::error!("could not serialize a reply: {e}"),
            }
        }
        reply
    }

    /// Parse → validate → authorize → approve-or-execute.
    async fn run(
        &self,
        inv: &Invocation,
        invocation_id: i64,
    ) -> (Handled, Option<Command>, DecisionRecord) {
        let parsed = match grammar::parse(&inv.text)
            .and_then(|p| grammar::validate(&p.command, &self.inner.catalog).map(|()| p))
        {
            Ok(p) => p,
            Err(e) => {
                let reply = Reply::new(Outcome::Invalid, e.to_string()).code(None, e.usage());
                let decision = DecisionRecord {
                    decision: "invalid".into(),
                    reason: Some(e.to_string()),
                    ..Default::default()
                };
                return (
                    Handled {
                        reply,
                        summary: None,
                        error: Some(e.to_string()),
                    },
                    None,
                    decision,
                );
            }
        };
        let command = parsed.command.clone();
        let (mut handled, decision) = self.dispatch(inv, &command, invocation_id).await;
        if parsed.public {
            handled.reply.visibility = crate::reply::Visibility::Public;
        }
        (handled, Some(command), decision)
    }

    async fn dispatch(
        &self,
        inv: &Invocation,
        command: &Command,
        invocation_id: i64,
    ) -> (Handled, DecisionRecord) {
        let none = || DecisionRecord {
            decision: "none".into(),
            ..Default::default()
        };
        match command {
            Command::Help { verb } => (
                Handled::info(handlers::help::reply(verb.as_deref())),
                none(),
            ),
            Command::Whoami => (handlers::whoami::run(self, inv), none()),
            Command::Approve { id } => handlers::approvals::approve(self, inv, id).await,
            Command::Deny { id } => handlers::approvals::deny(self, inv, id).await,
            _ => {
                let entry = command
                    .service()
                    .and_then(|s| self.inner.catalog.get(s))
                    .cloned();
                let decision = self.authorize(
                    &inv.principals(),
                    &inv.channel_scope(),
                    command,
                    entry.as_ref(),
                );
                let record = DecisionRecord {
                    decision: decision.label().to_string(),
                    rule: Some(decision.reason().rule.clone()),
                    reason: Some(decision.reason().explanation.clone()),
                    approval_id: None,
                };
                match decision {
                    Decision::Deny { reason } => {
                        (Handled::info(handlers::denied(command, &reason)), record)
                    }
                    Decision::NeedsApproval {
                        rule,
                        approvers,
                        reason,
                    } if !command.is_dry_run() => {
                        let (handled, approval_id) = handlers::approvals::request(
                            self,
                            inv,
                            command,
                            &rule,
                            &approvers,
                            &reason,
                            invocation_id,
                        )
                        .await;
                        (
                            handled,
                            DecisionRecord {
                                approval_id,
                                ..record
                            },
                        )
                    }
                    Decision::NeedsApproval { .. } | Decision::Allow { .. } => {
                        let actor = Actor {
                            principal: inv.principal.clone(),
                            approved_by: None,
                        };
                        (
                            self.execute(command, entry.as_ref(), &actor, inv).await,
                            record,
                        )
                    }
                }
            }
        }
    }

    /// The policy decision for a command in a channel.
    pub fn authorize(
        &self,
        principals: &[Principal],
        channel: &str,
        command: &Command,
        entry: Option<&ServiceEntry>,
    ) -> Decision {
        let conditions = command.conditions();
        let request = Request {
            principals,
            channel,
            verb: command.policy_verb(),
            target: Target {
                service: entry.map(|e| e.name.as_str()),
                namespace: entry.map(|e| e.namespace.as_str()),
                cluster: entry.map(|e| e.cluster()),
                environment: entry.and_then(|e| e.environment.as_deref()),
            },
            conditions: &conditions,
        };
        self.inner.config.policy.evaluate(&request)
    }

    /// Runs an authorized command. `actor` is who it runs for (and who
    /// approved it, for approved requests).
    pub(crate) async fn execute(
        &self,
        command: &Command,
        entry: Option<&ServiceEntry>,
        actor: &Actor,
        inv: &Invocation,
    ) -> Handled {
        let client = |entry: &ServiceEntry| {
            self.inner
                .clusters
                .client(entry.context.as_deref())
                .cloned()
        };
        let needs_entry =
            || Handled::failed("Unknown service", "the service is not in the catalog");
        match command {
            Command::Scale {
                replicas, dry_run, ..
            } => {
                let Some(entry) = entry else {
                    return needs_entry();
                };
                match client(entry) {
                    Ok(c) => handlers::scale::run(&c, entry, *replicas, *dry_run, actor).await,
                    Err(e) => Handled::failed(format!("Cannot scale {}", entry.name), e),
                }
            }
            Command::Restart { dry_run, .. } => {
                let Some(entry) = entry else {
                    return needs_entry();
                };
                match client(entry) {
                    Ok(c) => {
                        handlers::restart::run(&c, entry, self.inner.clock.now(), *dry_run, actor)
                            .await
                    }
                    Err(e) => Handled::failed(format!("Cannot restart {}", entry.name), e),
                }
            }
            Command::Status { .. } => {
                let Some(entry) = entry else {
                    return needs_entry();
                };
                match client(entry) {
                    Ok(c) => handlers::status::run(&c, entry, self.inner.clock.now()).await,
                    Err(e) => Handled::failed(format!("Cannot read {}", entry.name), e),
                }
            }
            Command::History(filter) => handlers::history::run(self, filter).await,
            Command::Can { principal, command } => {
                handlers::can::run(self, inv, principal, command)
            }
            Command::Help { verb } => Handled::info(handlers::help::reply(verb.as_deref())),
            Command::Whoami => handlers::whoami::run(self, inv),
            Command::Approve { .. } | Command::Deny { .. } => Handled::failed(
                "Not runnable here",
                "approvals are decided with `approve` and `deny`",
            ),
        }
    }
}

/// Who a command runs for.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub approved_by: Option<Principal>,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.approved_by {
            Some(by) => write!(f, "{} (approved by {by})", self.principal),
            None => write!(f, "{}", self.principal),
        }
    }
}

fn store_unavailable(e: crate::store::StoreError) -> Reply {
    tracing::error!("history store unavailable: {e}");
    Reply::new(
        Outcome::Failed,
        "oncall's history is unavailable, so nothing was run",
    )
    .text("Every command is recorded before it runs; try again in a moment.")
}

/// Masks values that look like secrets before raw text goes to the history.
pub fn redact_for_history(text: &str) -> String {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r"(?i)\b([A-Z0-9_]*(PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY)[A-Z0-9_]*)=(\S+)",
        )
        .expect("valid regex")
    });
    re.replace_all(text, "$1=[REDACTED]").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_text_redacts_secret_assignments() {
        assert_eq!(
            redact_for_history("env set backend DB_PASSWORD=hunter2 DB_POOL_SIZE=30 api_key=abc"),
            "env set backend DB_PASSWORD=[REDACTED] DB_POOL_SIZE=30 api_key=[REDACTED]"
        );
    }
}
