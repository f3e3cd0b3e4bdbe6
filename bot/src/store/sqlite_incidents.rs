//! SQLite side of the incident API ([`super::super::incidents`]).

use sqlx::FromRow;

use super::super::incidents::{
    Incident, IncidentChange, IncidentEvent, NewEvent, NewIncident, RoleHolder,
};
use super::super::StoreError;
use super::{decode, encode, SqliteStore};

#[derive(FromRow)]
struct IncidentRecord {
    id: i64,
    title: String,
    severity: String,
    state: String,
    services: String,
    declared_at: i64,
    declared_by: String,
    platform: String,
    workspace: Option<String>,
    declared_in: String,
    channel: Option<String>,
    acknowledged_at: Option<i64>,
    acknowledged_by: Option<String>,
    mitigated_at: Option<i64>,
    resolved_at: Option<i64>,
    resolved_by: Option<String>,
    summary: Option<String>,
    last_update_at: i64,
    next_reminder_at: Option<i64>,
}

impl IncidentRecord {
    fn into_incident(self) -> Result<Incident, StoreError> {
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
            channel: self.channel,
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
struct EventRecord {
    id: i64,
    incident_id: i64,
    at: i64,
    actor: String,
    kind: String,
    text: String,
    invocation_id: Option<i64>,
}

#[derive(FromRow)]
struct RoleRecord {
    role: String,
    principal: String,
    assigned_at: i64,
    assigned_by: String,
}

async fn insert_event(
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
    .bind(&e.text)
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

impl SqliteStore {
    pub async fn declare_incident(
        &self,
        new: &NewIncident,
        event: &NewEvent,
    ) -> Result<Incident, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        .fetch_one(&mut *tx)
        .await?;
        if let Some(commander) = &new.commander {
            sqlx::query(
                "INSERT INTO incident_roles (incident_id, role, principal, assigned_at, assigned_by)
                 VALUES (?, 'commander', ?, ?, ?)",
            )
            .bind(id)
            .bind(commander)
            .bind(new.at_ms)
            .bind(&new.by)
            .execute(&mut *tx)
            .await?;
        }
        insert_event(&mut tx, id, event).await?;
        let incident = fetch(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("incident {id} vanished")))?;
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
        let incident = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(incident)
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
            "SELECT * FROM incident_events WHERE incident_id = ? ORDER BY id",
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
