//! SQLite side of the incident API ([`super::super::incidents`]).

use sqlx::FromRow;

use super::super::escalations::EscalationState;
use super::super::incidents::{
    Incident, IncidentChange, IncidentEvent, NewEvent, NewIncident, RoleHolder,
};
use super::super::StoreError;
use super::{decode, encode, SqliteStore};

#[derive(FromRow)]
pub(in crate::store) struct IncidentRecord {
    pub(in crate::store) id: i64,
    pub(in crate::store) title: String,
    pub(in crate::store) severity: String,
    pub(in crate::store) state: String,
    pub(in crate::store) services: String,
    pub(in crate::store) declared_at: i64,
    pub(in crate::store) declared_by: String,
    pub(in crate::store) platform: String,
    pub(in crate::store) workspace: Option<String>,
    pub(in crate::store) declared_in: String,
    pub(in crate::store) channel_name: Option<String>,
    pub(in crate::store) channel: Option<String>,
    pub(in crate::store) announced: bool,
    pub(in crate::store) posted_through: i64,
    pub(in crate::store) acknowledged_at: Option<i64>,
    pub(in crate::store) acknowledged_by: Option<String>,
    pub(in crate::store) mitigated_at: Option<i64>,
    pub(in crate::store) resolved_at: Option<i64>,
    pub(in crate::store) resolved_by: Option<String>,
    pub(in crate::store) summary: Option<String>,
    pub(in crate::store) last_update_at: i64,
    pub(in crate::store) next_reminder_at: Option<i64>,
}

impl IncidentRecord {
    pub(in crate::store) fn into_incident(self) -> Result<Incident, StoreError> {
        Ok(Incident {
            id: self.id,
            title: self.title,
            severity: self.severity,
            state: self.state,
            services: decode("incident services", &self.services)?,
            declared_at_ms: self.declared_at,
            declared_by: self.declared_by,
            platform: self.platform,
            workspace: self.workspace,
            declared_in: self.declared_in,
            channel_name: self.channel_name,
            channel: self.channel,
            announced: self.announced,
            posted_through: self.posted_through,
            acknowledged_at_ms: self.acknowledged_at,
            acknowledged_by: self.acknowledged_by,
            mitigated_at_ms: self.mitigated_at,
            resolved_at_ms: self.resolved_at,
            resolved_by: self.resolved_by,
            summary: self.summary,
            last_update_at_ms: self.last_update_at,
            next_reminder_at_ms: self.next_reminder_at,
        })
    }
}

#[derive(FromRow)]
pub(in crate::store) struct EventRecord {
    pub(in crate::store) id: i64,
    pub(in crate::store) incident_id: i64,
    pub(in crate::store) at: i64,
    pub(in crate::store) actor: String,
    pub(in crate::store) kind: String,
    pub(in crate::store) text: String,
    pub(in crate::store) invocation_id: Option<i64>,
}

#[derive(FromRow)]
pub(in crate::store) struct RoleRecord {
    pub(in crate::store) role: String,
    pub(in crate::store) principal: String,
    pub(in crate::store) assigned_at: i64,
    pub(in crate::store) assigned_by: String,
}

/// Appends a timeline event; its text passes the one redactor first (a
/// note, a page's message or an alert's summary may hold a secret).
pub(crate) async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
    e: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_events (incident_id, at, actor, kind, text, invocation_id)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(e.at_ms)
    .bind(&e.actor)
    .bind(e.kind)
    .bind(oncall_grammar::redact::redact_line(&e.text))
    .bind(e.invocation_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch(conn: &mut sqlx::SqliteConnection, id: i64) -> Result<Option<Incident>, StoreError> {
    sqlx::query_as::<_, IncidentRecord>("SELECT * FROM incidents WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(IncidentRecord::into_incident)
        .transpose()
}

/// `inc-12-checkout-errors`: the incident's number and its title's words,
/// as every platform accepts a channel name (at most 80 characters).
pub(in crate::store) fn channel_name(id: i64, title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut name = format!("inc-{id}-{}", slug.trim_end_matches('-'));
    name.truncate(60);
    name.trim_end_matches('-').to_string()
}

/// Creates an incident with its `declared` event (and its escalation)
/// inside a transaction the caller commits.
pub(crate) async fn insert_incident(
    conn: &mut sqlx::SqliteConnection,
    new: &NewIncident,
    event: &NewEvent,
) -> Result<Incident, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (title, severity, state, services, declared_at, declared_by,
                                platform, workspace, declared_in, last_update_at, next_reminder_at)
         VALUES (?, ?, 'investigating', ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(&new.title)
    .bind(&new.severity)
    .bind(encode(&new.services)?)
    .bind(new.at_ms)
    .bind(&new.by)
    .bind(&new.platform)
    .bind(&new.workspace)
    .bind(&new.declared_in)
    .bind(new.at_ms)
    .bind(new.next_reminder_at_ms)
    .fetch_one(&mut *conn)
    .await?;
    if new.own_channel {
        sqlx::query("UPDATE incidents SET channel_name = ? WHERE id = ?")
            .bind(channel_name(id, &new.title))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(commander) = &new.commander {
        sqlx::query(
            "INSERT INTO incident_roles (incident_id, role, principal, assigned_at, assigned_by)
             VALUES (?, 'commander', ?, ?, ?)",
        )
        .bind(id)
        .bind(commander)
        .bind(new.at_ms)
        .bind(&new.by)
        .execute(&mut *conn)
        .await?;
    }
    insert_event(conn, id, event).await?;
    if let Some(policy) = &new.escalation {
        super::escalations::start(
            conn,
            id,
            policy,
            new.at_ms,
            new.escalation_at_ms.unwrap_or(new.at_ms),
        )
        .await?;
    }
    fetch(conn, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("incident {id} vanished")))
}

impl SqliteStore {
    pub async fn declare_incident(
        &self,
        new: &NewIncident,
        event: &NewEvent,
    ) -> Result<Incident, StoreError> {
        let mut tx = self.pool.begin().await?;
        let incident = insert_incident(&mut tx, new, event).await?;
        tx.commit().await?;
        Ok(incident)
    }

    pub async fn change_incident(
        &self,
        id: i64,
        change: &IncidentChange,
        event: &NewEvent,
    ) -> Result<Option<Incident>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = event.at_ms;
        let by = &event.actor;
        let open = "id = ? AND state <> 'resolved'";
        let applied = match change {
            IncidentChange::Acknowledge => sqlx::query(&format!(
                "UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ?
                 WHERE {open} AND acknowledged_at IS NULL"
            ))
            .bind(at)
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            IncidentChange::State {
                state,
                next_reminder_at_ms,
            } => sqlx::query(&format!(
                "UPDATE incidents SET state = ?, last_update_at = ?, next_reminder_at = ?,
                        mitigated_at = CASE WHEN ? = 'monitoring' AND mitigated_at IS NULL
                                            THEN ? ELSE mitigated_at END
                 WHERE {open}"
            ))
            .bind(state)
            .bind(at)
            .bind(next_reminder_at_ms)
            .bind(state)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            IncidentChange::Update {
                next_reminder_at_ms,
            } => sqlx::query(&format!(
                "UPDATE incidents SET last_update_at = ?, next_reminder_at = ? WHERE {open}"
            ))
            .bind(at)
            .bind(next_reminder_at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            IncidentChange::Severity {
                severity,
                next_reminder_at_ms,
                ..
            } => sqlx::query(&format!(
                "UPDATE incidents SET severity = ?, next_reminder_at = ? WHERE {open}"
            ))
            .bind(severity)
            .bind(next_reminder_at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            IncidentChange::Role { role, principal } => {
                let exists = sqlx::query(&format!("SELECT 1 FROM incidents WHERE {open}"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if exists {
                    sqlx::query(
                        "INSERT INTO incident_roles (incident_id, role, principal, assigned_at, assigned_by)
                         VALUES (?, ?, ?, ?, ?)
                         ON CONFLICT (incident_id, role) DO UPDATE SET
                            principal = excluded.principal, assigned_at = excluded.assigned_at,
                            assigned_by = excluded.assigned_by",
                    )
                    .bind(id)
                    .bind(role)
                    .bind(principal)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                }
                u64::from(exists)
            }
            IncidentChange::Note => {
                sqlx::query("SELECT 1 FROM incidents WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some() as u64
            }
            IncidentChange::Resolve { summary } => sqlx::query(&format!(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = ?,
                        summary = COALESCE(?, summary), last_update_at = ?, next_reminder_at = NULL,
                        mitigated_at = COALESCE(mitigated_at, ?)
                 WHERE {open}"
            ))
            .bind(at)
            .bind(by)
            .bind(summary)
            .bind(at)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            IncidentChange::Reopen {
                next_reminder_at_ms,
            } => sqlx::query(
                "UPDATE incidents SET state = 'investigating', resolved_at = NULL, resolved_by = NULL,
                        last_update_at = ?, next_reminder_at = ?
                 WHERE id = ? AND state = 'resolved'",
            )
            .bind(at)
            .bind(next_reminder_at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if applied == 0 {
            return Ok(None);
        }
        insert_event(&mut tx, id, event).await?;
        let stops = match change {
            IncidentChange::Acknowledge => Some(EscalationState::Acknowledged),
            IncidentChange::Resolve { .. } => Some(EscalationState::Resolved),
            _ => None,
        };
        if let IncidentChange::Severity {
            escalation: Some(policy),
            ..
        } = change
        {
            // A raised severity pages if nobody is on it yet.
            if super::escalations::start_if_idle(&mut tx, id, policy, at, at).await? {
                let started = NewEvent {
                    at_ms: at,
                    actor: by.clone(),
                    kind: "escalation",
                    text: format!("escalation {} started for the new severity", policy.name),
                    invocation_id: event.invocation_id,
                };
                insert_event(&mut tx, id, &started).await?;
            }
        }
        if let Some(state) = stops {
            // In the same transaction as the change: a tick either ran
            // before it (its pages are then cancelled or followed up here)
            // or finds the escalation no longer active and pages nothing.
            if let Some(e) = super::escalations::stop(&mut tx, id, state, at, by).await? {
                let next = e
                    .policy
                    .tiers
                    .get(e.tier as usize)
                    .map(|t| format!("; {} was not paged", t.name))
                    .unwrap_or_default();
                let text = format!(
                    "escalation {} stopped ({}){next}",
                    e.policy.name,
                    state.as_str()
                );
                let stopped = NewEvent {
                    at_ms: at,
                    actor: by.clone(),
                    kind: "escalation",
                    text,
                    invocation_id: event.invocation_id,
                };
                insert_event(&mut tx, id, &stopped).await?;
            }
        }
        let incident = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(incident)
    }

    pub async fn add_incident_event_once(
        &self,
        id: i64,
        source_ref: &str,
        e: &NewEvent,
    ) -> Result<bool, StoreError> {
        let added = sqlx::query(
            "INSERT INTO incident_events (incident_id, at, actor, kind, text, invocation_id, source_ref)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (incident_id, source_ref) WHERE source_ref IS NOT NULL DO NOTHING",
        )
        .bind(id)
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(e.kind)
        .bind(oncall_grammar::redact::redact_line(&e.text))
        .bind(e.invocation_id)
        .bind(source_ref)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(added == 1)
    }

    pub async fn add_incident_event(&self, id: i64, event: &NewEvent) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, id, event).await
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, id).await
    }

    pub async fn incident_of_channel(
        &self,
        platform: &str,
        channel: &str,
    ) -> Result<Option<Incident>, StoreError> {
        sqlx::query_as::<_, IncidentRecord>(
            "SELECT * FROM incidents WHERE platform = ? AND channel = ?",
        )
        .bind(platform)
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?
        .map(IncidentRecord::into_incident)
        .transpose()
    }

    pub async fn set_incident_channel(&self, id: i64, channel: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET channel = ? WHERE id = ?")
            .bind(channel)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn incidents_to_deliver(&self, limit: u32) -> Result<Vec<Incident>, StoreError> {
        sqlx::query_as::<_, IncidentRecord>(
            "SELECT * FROM incidents i
             WHERE (i.channel_name IS NOT NULL AND i.channel IS NULL)
                OR i.announced = 0
                OR (i.channel IS NOT NULL AND EXISTS (
                        SELECT 1 FROM incident_events e
                        WHERE e.incident_id = i.id AND e.id > i.posted_through))
             ORDER BY i.id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(IncidentRecord::into_incident)
        .collect()
    }

    pub async fn reminders_due(&self, now_ms: i64) -> Result<Vec<Incident>, StoreError> {
        sqlx::query_as::<_, IncidentRecord>(
            "SELECT * FROM incidents
             WHERE next_reminder_at IS NOT NULL AND next_reminder_at <= ? AND state <> 'resolved'
             ORDER BY next_reminder_at LIMIT 100",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(IncidentRecord::into_incident)
        .collect()
    }

    pub async fn fire_reminder(
        &self,
        id: i64,
        due_ms: i64,
        next_ms: Option<i64>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE incidents SET next_reminder_at = ?
             WHERE id = ? AND next_reminder_at = ? AND state <> 'resolved'",
        )
        .bind(next_ms)
        .bind(id)
        .bind(due_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, id, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn mark_announced(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET announced = 1 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn mark_posted(&self, id: i64, event_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET posted_through = MAX(posted_through, ?) WHERE id = ?")
            .bind(event_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn drop_channel_intent(&self, id: i64, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE incidents SET channel_name = NULL WHERE id = ? AND channel IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_event(&mut tx, id, event).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn incidents(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        let sql = if open_only {
            "SELECT * FROM incidents WHERE state <> 'resolved' ORDER BY id DESC LIMIT ?"
        } else {
            "SELECT * FROM incidents ORDER BY id DESC LIMIT ?"
        };
        sqlx::query_as::<_, IncidentRecord>(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(IncidentRecord::into_incident)
            .collect()
    }

    pub async fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>, StoreError> {
        Ok(sqlx::query_as::<_, EventRecord>(
            "SELECT id, incident_id, at, actor, kind, text, invocation_id FROM incident_events
             WHERE incident_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|e| IncidentEvent {
            id: e.id,
            incident_id: e.incident_id,
            at_ms: e.at,
            actor: e.actor,
            kind: e.kind,
            text: e.text,
            invocation_id: e.invocation_id,
        })
        .collect())
    }

    pub async fn incident_roles(&self, id: i64) -> Result<Vec<RoleHolder>, StoreError> {
        Ok(sqlx::query_as::<_, RoleRecord>(
            "SELECT role, principal, assigned_at, assigned_by FROM incident_roles
             WHERE incident_id = ? ORDER BY role",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| RoleHolder {
            role: r.role,
            principal: r.principal,
            assigned_at_ms: r.assigned_at,
            assigned_by: r.assigned_by,
        })
        .collect())
    }
}
