//! The store's incident API: incidents, their roles and their append-only
//! timeline, in domain types. Each change is one transaction that applies
//! the change only if its precondition still holds (not yet acknowledged,
//! not yet resolved…) and appends its timeline event with it, so two people
//! resolving at once resolve once, and the timeline never misses a change.

use super::{Store, StoreError};

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub services: Vec<String>,
    pub declared_at_ms: i64,
    pub declared_by: String,
    pub platform: String,
    pub workspace: Option<String>,
    pub declared_in: String,
    /// The name meant for its own channel, before and after it exists.
    pub channel_name: Option<String>,
    pub channel: Option<String>,
    pub announced: bool,
    /// The last timeline event posted to its own channel.
    pub posted_through: i64,
    pub acknowledged_at_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub mitigated_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
    pub summary: Option<String>,
    pub last_update_at_ms: i64,
    pub next_reminder_at_ms: Option<i64>,
}

impl Incident {
    pub fn is_resolved(&self) -> bool {
        self.state == "resolved"
    }
}

/// A new incident.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewIncident {
    pub title: String,
    pub severity: String,
    pub services: Vec<String>,
    pub at_ms: i64,
    pub by: String,
    pub platform: String,
    pub workspace: Option<String>,
    pub declared_in: String,
    pub next_reminder_at_ms: Option<i64>,
    /// Who commands it from the start (the declarer, unless reassigned).
    pub commander: Option<String>,
    /// Whether it gets a channel of its own (`inc-<N>-<slug>`).
    pub own_channel: bool,
    /// The escalation it starts (its severity's policy), first step due
    /// at once; written in the same transaction as the incident.
    pub escalation: Option<super::escalations::PolicySnapshot>,
    /// When its first step is due (`None`: at once).
    pub escalation_at_ms: Option<i64>,
}

/// One timeline event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentEvent {
    pub id: i64,
    pub incident_id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub kind: String,
    pub text: String,
    pub invocation_id: Option<i64>,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at_ms: i64,
    pub actor: String,
    pub kind: &'static str,
    pub text: String,
    pub invocation_id: Option<i64>,
}

/// Who holds a role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoleHolder {
    pub role: String,
    pub principal: String,
    pub assigned_at_ms: i64,
    pub assigned_by: String,
}

/// A change to an incident, applied with its event only if its
/// precondition holds.
#[derive(Debug, Clone)]
pub enum IncidentChange {
    /// Not yet acknowledged, not resolved.
    Acknowledge,
    /// Not resolved; `mitigated` marks the first time it is mitigated.
    State {
        state: String,
        next_reminder_at_ms: Option<i64>,
    },
    /// Not resolved: a status update, which resets the reminder.
    Update { next_reminder_at_ms: Option<i64> },
    /// Not resolved. With `escalation`, the new severity's policy starts
    /// if nobody has acknowledged the incident and none is under way.
    Severity {
        severity: String,
        next_reminder_at_ms: Option<i64>,
        escalation: Option<super::escalations::PolicySnapshot>,
    },
    /// Not resolved.
    Role { role: String, principal: String },
    /// Any incident: a note.
    Note,
    /// Not resolved.
    Resolve { summary: Option<String> },
    /// Resolved.
    Reopen { next_reminder_at_ms: Option<i64> },
}

impl Store {
    /// Creates an incident with its `declared` event.
    pub async fn declare_incident(
        &self,
        new: &NewIncident,
        event: &NewEvent,
    ) -> Result<Incident, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.declare_incident(new, event).await,
            super::Backend::Postgres(s) => s.declare_incident(new, event).await,
        }
    }

    /// Applies `change` with its event if its precondition holds; the
    /// incident as it now is, or `None` if it did not hold (or there is no
    /// such incident).
    pub async fn change_incident(
        &self,
        id: i64,
        change: &IncidentChange,
        event: &NewEvent,
    ) -> Result<Option<Incident>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.change_incident(id, change, event).await,
            super::Backend::Postgres(s) => s.change_incident(id, change, event).await,
        }
    }

    /// Appends an event once per `source_ref` (a pinned message); whether
    /// it was new.
    pub async fn add_incident_event_once(
        &self,
        id: i64,
        source_ref: &str,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.add_incident_event_once(id, source_ref, event).await,
            super::Backend::Postgres(s) => s.add_incident_event_once(id, source_ref, event).await,
        }
    }

    /// Appends an event (an ops command, a page) to an incident's timeline.
    pub async fn add_incident_event(&self, id: i64, event: &NewEvent) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.add_incident_event(id, event).await,
            super::Backend::Postgres(s) => s.add_incident_event(id, event).await,
        }
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.incident(id).await,
            super::Backend::Postgres(s) => s.incident(id).await,
        }
    }

    /// The incident whose own channel this is.
    pub async fn incident_of_channel(
        &self,
        platform: &str,
        channel: &str,
    ) -> Result<Option<Incident>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.incident_of_channel(platform, channel).await,
            super::Backend::Postgres(s) => s.incident_of_channel(platform, channel).await,
        }
    }

    /// Records the incident's own channel.
    pub async fn set_incident_channel(&self, id: i64, channel: &str) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.set_incident_channel(id, channel).await,
            super::Backend::Postgres(s) => s.set_incident_channel(id, channel).await,
        }
    }

    /// Incidents the courier has something to do for: a channel to create,
    /// a declaration to announce, or events not yet posted to their channel.
    pub async fn incidents_to_deliver(&self, limit: u32) -> Result<Vec<Incident>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.incidents_to_deliver(limit).await,
            super::Backend::Postgres(s) => s.incidents_to_deliver(limit).await,
        }
    }

    /// Open incidents whose update reminder is due at `now_ms`.
    pub async fn reminders_due(&self, now_ms: i64) -> Result<Vec<Incident>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.reminders_due(now_ms).await,
            super::Backend::Postgres(s) => s.reminders_due(now_ms).await,
        }
    }

    /// Fires a due reminder once: moves it from `due_ms` to `next_ms` and
    /// appends its event, only if it is still due at `due_ms` (a second
    /// process, or a second tick, finds it moved and fires nothing).
    pub async fn fire_reminder(
        &self,
        id: i64,
        due_ms: i64,
        next_ms: Option<i64>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.fire_reminder(id, due_ms, next_ms, event).await,
            super::Backend::Postgres(s) => s.fire_reminder(id, due_ms, next_ms, event).await,
        }
    }

    /// The announcement was posted.
    pub async fn mark_announced(&self, id: i64) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.mark_announced(id).await,
            super::Backend::Postgres(s) => s.mark_announced(id).await,
        }
    }

    /// Events up to `event_id` are in the incident's channel.
    pub async fn mark_posted(&self, id: i64, event_id: i64) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.mark_posted(id, event_id).await,
            super::Backend::Postgres(s) => s.mark_posted(id, event_id).await,
        }
    }

    /// The channel could not be made: the intent is dropped, with an event
    /// saying why.
    pub async fn drop_channel_intent(&self, id: i64, event: &NewEvent) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.drop_channel_intent(id, event).await,
            super::Backend::Postgres(s) => s.drop_channel_intent(id, event).await,
        }
    }

    /// The newest incidents first; only unresolved ones if `open_only`.
    pub async fn incidents(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.incidents(open_only, limit).await,
            super::Backend::Postgres(s) => s.incidents(open_only, limit).await,
        }
    }

    pub async fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.incident_events(id).await,
            super::Backend::Postgres(s) => s.incident_events(id).await,
        }
    }

    pub async fn incident_roles(&self, id: i64) -> Result<Vec<RoleHolder>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.incident_roles(id).await,
            super::Backend::Postgres(s) => s.incident_roles(id).await,
        }
    }
}
