//! The leaf types every layer shares: where a request came from and who
//! made it ([`Invocation`], [`Platform`]), who a command runs for
//! ([`Actor`]), what a handler produced ([`Handled`], [`DecisionRecord`]),
//! and the one clock ([`Clock`]). Nothing here knows the router, the store
//! or an adapter, so handlers, adapters and the pipeline can all depend on
//! it without depending on each other.

use std::sync::{Arc, Mutex};

use oncall_permissions::Principal;

use crate::reply::{Outcome, Reply};

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
    /// Where long commands report progress (`rollout status --wait`);
    /// adapters show it as message edits.
    pub progress: Option<ProgressSink>,
}

/// Progress messages of a long-running command.
pub type ProgressSink = tokio::sync::mpsc::UnboundedSender<String>;

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

    /// A manual clock set to `at` (tests of wall-clock rules, like
    /// business hours); the system clock is not changed.
    pub fn set(&self, at: jiff::Timestamp) {
        if let Clock::Manual(t) = self {
            *t.lock().expect("clock lock") = at;
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
    /// For verbs whose handler decides who may run them (`approve`,
    /// `deny`): that decision, for the history row.
    pub decision: Option<DecisionRecord>,
}

impl Handled {
    pub fn ok(reply: Reply, summary: impl Into<String>) -> Self {
        Handled {
            reply,
            summary: Some(summary.into()),
            error: None,
            decision: None,
        }
    }

    pub fn info(reply: Reply) -> Self {
        Handled {
            reply,
            summary: None,
            error: None,
            decision: None,
        }
    }

    pub fn failed(title: impl Into<String>, error: impl std::fmt::Display) -> Self {
        let error = error.to_string();
        Handled {
            reply: Reply::new(Outcome::Failed, title).text(error.clone()),
            summary: None,
            error: Some(error),
            decision: None,
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
