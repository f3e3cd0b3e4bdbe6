//! The store's escalation API: an incident's escalation row, the step that
//! advances it (its pages written to the outbox in the same transaction),
//! ad-hoc pages, and schedule overrides.
//!
//! Page keys are `page:<incident>:<loop>:<tier>:<target>` for an
//! escalation's steps and `adhoc:<invocation>:<target>` for `page`; a
//! provider's acknowledge/resolve of a page it has is written as
//! `acknowledge:<key>` / `resolve:<key>`. The keys are the providers' dedup
//! keys too, so a resend after a crash is folded by the provider.

pub use crate::escalation::config::PolicySnapshot;

use super::{Store, StoreError};

/// Where an escalation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationState {
    Active,
    Acknowledged,
    Resolved,
    /// Every tier (and repeat) paged and nobody acknowledged.
    Exhausted,
}

impl EscalationState {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationState::Active => "active",
            EscalationState::Acknowledged => "acknowledged",
            EscalationState::Resolved => "resolved",
            EscalationState::Exhausted => "exhausted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            EscalationState::Active,
            EscalationState::Acknowledged,
            EscalationState::Resolved,
            EscalationState::Exhausted,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// An escalation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub id: i64,
    pub incident_id: i64,
    pub policy: PolicySnapshot,
    /// The next tier to page (0-based), in loop `round`.
    pub tier: u32,
    pub round: u32,
    pub state: EscalationState,
    pub next_at_ms: Option<i64>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub ended_by: Option<String>,
}

/// A due escalation with what its pages say of the incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEscalation {
    pub escalation: Escalation,
    pub title: String,
    pub severity: String,
}

/// One page to write: what sends it, who it is for, what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPage {
    /// `page.chat`, `page.pagerduty`, `page.opsgenie`, `page.webhook`.
    pub kind: String,
    /// `cli:alice`, `pagerduty:payments`, … (the rate limit's key).
    pub target: String,
    pub payload: serde_json::Value,
}

/// Where the escalation goes after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Tier { tier: u32, round: u32, at_ms: i64 },
    Exhausted,
}

/// One step of one escalation: page `tier` of `round` (as read), then move
/// to `next`. Applied only if the row still says `tier` and `round`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub escalation_id: i64,
    pub incident_id: i64,
    pub tier: u32,
    pub round: u32,
    pub pages: Vec<NewPage>,
    pub next: Next,
    /// The timeline line (`paged L2 senior engineer: cli:bob`).
    pub text: String,
}

/// At most `max` chat pages to one person, group or channel in
/// `window_ms` (providers group and throttle alerts themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window_ms: i64,
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// False when the row had moved on (acknowledged, advanced elsewhere).
    pub applied: bool,
    pub enqueued: usize,
    /// Targets over their rate limit, not paged.
    pub suppressed: Vec<String>,
}

/// What an ad-hoc page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdHoc {
    Enqueued,
    /// The same request already enqueued it.
    Duplicate,
    RateLimited,
}

/// A schedule override as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOverride {
    pub id: i64,
    pub schedule: String,
    pub principal: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub created_by: String,
}

impl Store {
    /// Active escalations whose next step is due, the most overdue first.
    pub async fn due_escalations(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.due_escalations(now_ms, limit).await,
            super::Backend::Postgres(s) => s.due_escalations(now_ms, limit).await,
        }
    }

    /// Applies the steps in one transaction, each guarded by its row's
    /// state, tier and round; a page key already written is not written
    /// again.
    /// With a `fence` (the term's epoch), nothing applies once a newer term
    /// has begun: a deposed leader's tick pages nobody.
    pub async fn advance_escalations(
        &self,
        steps: &[Step],
        now_ms: i64,
        rate: RateLimit,
        fence: Option<i64>,
    ) -> Result<Vec<StepOutcome>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.advance_escalations(steps, now_ms, rate, fence).await,
            super::Backend::Postgres(s) => s.advance_escalations(steps, now_ms, rate, fence).await,
        }
    }

    /// When the next active escalation's step is due.
    pub async fn next_escalation_due(&self) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.next_escalation_due().await,
            super::Backend::Postgres(s) => s.next_escalation_due().await,
        }
    }

    /// The incident's latest escalation.
    pub async fn escalation_of(&self, incident_id: i64) -> Result<Option<Escalation>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.escalation_of(incident_id).await,
            super::Backend::Postgres(s) => s.escalation_of(incident_id).await,
        }
    }

    /// Makes an active escalation's next step due now; the escalation as
    /// it now is, or `None` when none is active.
    pub async fn escalate_now(
        &self,
        incident_id: i64,
        now_ms: i64,
    ) -> Result<Option<Escalation>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.escalate_now(incident_id, now_ms).await,
            super::Backend::Postgres(s) => s.escalate_now(incident_id, now_ms).await,
        }
    }

    /// Writes an ad-hoc page (`page <target> …`) under `key`, within the
    /// target's rate limit, with its timeline event when it is about an
    /// incident.
    pub async fn page_now(
        &self,
        incident_id: Option<i64>,
        key: &str,
        page: &NewPage,
        event: Option<&super::NewEvent>,
        rate: RateLimit,
    ) -> Result<AdHoc, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.page_now(incident_id, key, page, event, rate).await,
            super::Backend::Postgres(s) => s.page_now(incident_id, key, page, event, rate).await,
        }
    }

    /// Records what a multi-part send has done so far.
    pub async fn outbox_progress(
        &self,
        id: i64,
        progress: &serde_json::Value,
    ) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.outbox_progress(id, progress).await,
            super::Backend::Postgres(s) => s.outbox_progress(id, progress).await,
        }
    }

    /// The incident a page (by its key) is about.
    pub async fn outbox_incident(&self, key: &str) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.outbox_incident(key).await,
            super::Backend::Postgres(s) => s.outbox_incident(key).await,
        }
    }

    pub async fn add_override(&self, o: &StoredOverride, at_ms: i64) -> Result<i64, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.add_override(o, at_ms).await,
            super::Backend::Postgres(s) => s.add_override(o, at_ms).await,
        }
    }

    /// Overrides of `schedule` that have not ended by `from_ms`.
    pub async fn overrides(
        &self,
        schedule: &str,
        from_ms: i64,
    ) -> Result<Vec<StoredOverride>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.overrides(schedule, from_ms).await,
            super::Backend::Postgres(s) => s.overrides(schedule, from_ms).await,
        }
    }
}
