//! PostgreSQL side of the incident API ([`super::super::incidents`]).

use super::super::escalations::EscalationState;
use super::super::incidents::{
    Incident, IncidentChange, IncidentEvent, NewEvent, NewIncident, RoleHolder,
};
use super::super::sqlite::encode;
use super::super::sqlite::incidents::{channel_name, EventRecord, IncidentRecord, RoleRecord};
use super::super::StoreError;
use super::PgStore;

/// Appends a timeline event; its text passes the one redactor first (a
/// note, a page's message or an alert's summary may hold a secret).
pub(crate) async fn insert_event(
    conn: &mut sqlx::PgConnection,
    id: i64,
    e: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_events (incident_id, at, actor, kind, text, invocation_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
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

async fn fetch(conn: &mut sqlx::PgConnection, id: i64) -> Result<Option<Incident>, StoreError> {
    sqlx::query_as::<_, IncidentRecord>("SELECT * FROM incidents WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(IncidentRecord::into_incident)
        .transpose()
}

/// Creates an incident with its `declared` event (and its escalation)
/// inside a transaction the caller commits.
pub(crate) async fn insert_incident(
    conn: &mut sqlx::PgConnection,
    new: &NewIncident,
    event: &NewEvent,
) -> Result<Incident, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (title, severity, state, services, declared_at, declared_by,
                                platform, workspace, declared_in, last_update_at, next_reminder_at)
         VALUES ($1, $2, 'investigating', $3, $4, $5, $6, $7, $8, $9, $10)
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
        sqlx::query("UPDATE incidents SET channel_name = $1 WHERE id = $2")
            .bind(channel_name(id, &new.title))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(commander) = &new.commander {
        sqlx::query(
            "INSERT INTO incident_roles (incident_id, role, principal, assigned_at, assigned_by)
             VALUES ($1, 'commander', $2, $3, $4)",
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

impl PgStore {
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
        // The incident, still open: its id is parameter `n`.
        let open = |n: u8| format!("id = ${n} AND state <> 'resolved'");
        let applied = match change {
            IncidentChange::Acknowledge => sqlx::query(&format!(
                "UPDATE incidents SET acknowledged_at = $1, acknowledged_by = $2
                 WHERE {} AND acknowledged_at IS NULL",
                open(3)
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
                "UPDATE incidents SET state = $1, last_update_at = $2, next_reminder_at = $3,
                        mitigated_at = CASE WHEN $4 = 'monitoring' AND mitigated_at IS NULL
                                            THEN $5 ELSE mitigated_at END
                 WHERE {}",
                open(6)
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
                "UPDATE incidents SET last_update_at = $1, next_reminder_at = $2 WHERE {}",
                open(3)
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
                "UPDATE incidents SET severity = $1, next_reminder_at = $2 WHERE {}",
                open(3)
            ))
            .bind(severity)
            .bind(next_reminder_at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            IncidentChange::Role { role, principal } => {
                let exists = sqlx::query(&format!("SELECT 1 FROM incidents WHERE {}", open(1)))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if exists {
                    sqlx::query(
                        "INSERT INTO incident_roles (incident_id, role, principal, assigned_at, assigned_by)
                         VALUES ($1, $2, $3, $4, $5)
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
                sqlx::query("SELECT 1 FROM incidents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some() as u64
            }
            IncidentChange::Resolve { summary } => sqlx::query(&format!(
                "UPDATE incidents SET state = 'resolved', resolved_at = $1, resolved_by = $2,
                        summary = COALESCE($3, summary), last_update_at = $4, next_reminder_at = NULL,
                        mitigated_at = COALESCE(mitigated_at, $5)
                 WHERE {}",
                open(6)
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
                        last_update_at = $1, next_reminder_at = $2
                 WHERE id = $3 AND state = 'resolved'",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)
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
            "SELECT * FROM incidents WHERE platform = $1 AND channel = $2",
        )
        .bind(platform)
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?
        .map(IncidentRecord::into_incident)
        .transpose()
    }

    pub async fn set_incident_channel(&self, id: i64, channel: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET channel = $1 WHERE id = $2")
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
                OR i.announced = FALSE
                OR (i.channel IS NOT NULL AND EXISTS (
                        SELECT 1 FROM incident_events e
                        WHERE e.incident_id = i.id AND e.id > i.posted_through))
             ORDER BY i.id LIMIT $1",
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
             WHERE next_reminder_at IS NOT NULL AND next_reminder_at <= $1 AND state <> 'resolved'
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
            "UPDATE incidents SET next_reminder_at = $1
             WHERE id = $2 AND next_reminder_at = $3 AND state <> 'resolved'",
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
        sqlx::query("UPDATE incidents SET announced = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn mark_posted(&self, id: i64, event_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE incidents SET posted_through = GREATEST(posted_through, $1) WHERE id = $2",
        )
        .bind(event_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn drop_channel_intent(&self, id: i64, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE incidents SET channel_name = NULL WHERE id = $1 AND channel IS NULL")
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
            "SELECT * FROM incidents WHERE state <> 'resolved' ORDER BY id DESC LIMIT $1"
        } else {
            "SELECT * FROM incidents ORDER BY id DESC LIMIT $1"
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
             WHERE incident_id = $1 ORDER BY id",
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
             WHERE incident_id = $1 ORDER BY role",
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
