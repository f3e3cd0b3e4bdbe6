//! PostgreSQL side of the escalation API ([`super::super::escalations`]).

use std::collections::HashSet;

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::super::escalations::{
    AdHoc, DueEscalation, Escalation, EscalationState, NewPage, Next, PolicySnapshot, RateLimit,
    Step, StepOutcome, StoredOverride,
};
use super::super::sqlite::escalations::{
    limited, DueRecord, EscalationRecord, OverrideRecord, COLUMNS, FOLLOWED_UP,
};
use super::super::sqlite::{decode, encode};
use super::super::{NewEvent, StoreError};
use super::incidents::insert_event;
use super::PgStore;

/// Starts an incident's escalation, its first step due at `due_ms`.
pub(super) async fn start(
    conn: &mut PgConnection,
    incident_id: i64,
    policy: &PolicySnapshot,
    at_ms: i64,
    due_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO escalations (incident_id, policy, snapshot, state, next_at, started_at)
         VALUES ($1, $2, $3, 'active', $4, $5)",
    )
    .bind(incident_id)
    .bind(&policy.name)
    .bind(encode(policy)?)
    .bind(due_ms)
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Starts an escalation only if nobody is on the incident yet (not
/// acknowledged, none active); whether it started.
pub(super) async fn start_if_idle(
    conn: &mut PgConnection,
    incident_id: i64,
    policy: &PolicySnapshot,
    at_ms: i64,
    due_ms: i64,
) -> Result<bool, StoreError> {
    let idle: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE id = $1 AND acknowledged_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM escalations WHERE incident_id = $2 AND state = 'active')",
    )
    .bind(incident_id)
    .bind(incident_id)
    .fetch_optional(&mut *conn)
    .await?;
    if idle.is_some() {
        start(conn, incident_id, policy, at_ms, due_ms).await?;
    }
    Ok(idle.is_some())
}

/// Ends an incident's active escalation (acknowledged or resolved),
/// cancels its pages not yet sent, and follows up the ones providers have.
/// Returns the escalation stopped, if one was active.
pub(super) async fn stop(
    conn: &mut PgConnection,
    incident_id: i64,
    state: EscalationState,
    at_ms: i64,
    by: &str,
) -> Result<Option<Escalation>, StoreError> {
    let stopped = sqlx::query_as::<_, EscalationRecord>(&format!(
        "UPDATE escalations SET state = $1, ended_at = $2, ended_by = $3, next_at = NULL
         WHERE incident_id = $4 AND state = 'active'
         RETURNING {COLUMNS}"
    ))
    .bind(state.as_str())
    .bind(at_ms)
    .bind(by)
    .bind(incident_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(EscalationRecord::decode)
    .transpose()?;
    sqlx::query(
        "UPDATE outbox SET state = 'cancelled'
         WHERE incident_id = $1 AND state = 'pending' AND escalation_id IS NOT NULL",
    )
    .bind(incident_id)
    .execute(&mut *conn)
    .await?;
    let action = match state {
        EscalationState::Resolved => "resolve",
        _ => "acknowledge",
    };
    let sent: Vec<(i64,)> = sqlx::query_as(&format!(
        "SELECT id FROM outbox
         WHERE incident_id = $1 AND state = 'sent' AND target IS NOT NULL AND kind IN {FOLLOWED_UP}"
    ))
    .bind(incident_id)
    .fetch_all(&mut *conn)
    .await?;
    for (id,) in sent {
        follow_up(conn, id, action, by, at_ms).await?;
    }
    Ok(stopped)
}

/// (kind, dedup key, payload, progress, incident, target) of a page.
type PageRow = (
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// Writes `action:<key>` for page `id`, carrying its payload and progress.
async fn follow_up(
    conn: &mut PgConnection,
    id: i64,
    action: &str,
    by: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let row: Option<PageRow> = sqlx::query_as(
        "SELECT kind, dedup_key, payload, progress, incident_id, target FROM outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((kind, key, payload, progress, incident_id, target)) = row else {
        return Ok(());
    };
    let mut payload: serde_json::Value = decode("outbox payload", &payload)?;
    if let Some(map) = payload.as_object_mut() {
        map.insert("action".into(), action.into());
        map.insert("page_key".into(), key.clone().into());
        map.insert("by".into(), by.into());
        map.insert("page_target".into(), target.unwrap_or_default().into());
    }
    sqlx::query(
        "INSERT INTO outbox (created_at, kind, dedup_key, payload, state, next_attempt_at,
                             incident_id, progress)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(at_ms)
    .bind(kind)
    .bind(format!("{action}:{key}"))
    .bind(encode(&payload)?)
    .bind(at_ms)
    .bind(incident_id)
    .bind(progress)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A page sent after it was cancelled (the acknowledgement came in while
/// it was in flight) gets the follow-up the incident's state calls for.
pub(super) async fn follow_up_sent(
    conn: &mut PgConnection,
    id: i64,
    at_ms: i64,
) -> Result<(), StoreError> {
    let facts: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT i.state, i.acknowledged_by, i.resolved_by FROM outbox o
         JOIN incidents i ON i.id = o.incident_id WHERE o.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((state, acked_by, resolved_by)) = facts else {
        return Ok(());
    };
    let (action, by) = if state == "resolved" {
        ("resolve", resolved_by)
    } else {
        ("acknowledge", acked_by)
    };
    follow_up(conn, id, action, by.as_deref().unwrap_or("oncall"), at_ms).await
}

/// Pages to `target` written in the window, for its rate limit.
async fn recent_pages(
    conn: &mut PgConnection,
    target: &str,
    now_ms: i64,
    rate: RateLimit,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE target = $1 AND created_at > $2 AND state <> 'cancelled'",
    )
    .bind(target)
    .bind(now_ms - rate.window_ms)
    .fetch_one(&mut *conn)
    .await?)
}

async fn insert_page(
    conn: &mut PgConnection,
    key: &str,
    page: &NewPage,
    incident_id: Option<i64>,
    escalation_id: Option<i64>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO outbox (created_at, kind, dedup_key, payload, state, next_attempt_at,
                             incident_id, escalation_id, target)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(now_ms)
    .bind(&page.kind)
    .bind(key)
    .bind(encode(&page.payload)?)
    .bind(now_ms)
    .bind(incident_id)
    .bind(escalation_id)
    .bind(&page.target)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

impl PgStore {
    pub async fn due_escalations(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, StoreError> {
        sqlx::query_as::<_, DueRecord>(
            "SELECT e.id, e.incident_id, e.snapshot, e.tier, e.loop, e.state, e.next_at,
                    e.started_at, e.ended_at, e.ended_by, i.title, i.severity
             FROM escalations e JOIN incidents i ON i.id = e.incident_id
             WHERE e.state = 'active' AND e.next_at <= $1 ORDER BY e.next_at, e.id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(DueEscalation {
                escalation: r.escalation.decode()?,
                title: r.title,
                severity: r.severity,
            })
        })
        .collect()
    }

    pub async fn advance_escalations(
        &self,
        steps: &[Step],
        now_ms: i64,
        rate: RateLimit,
        fence: Option<i64>,
    ) -> Result<Vec<StepOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The guard, for a whole batch in one statement per chunk: a row
        // moves only if it is still active at the tier and round its step
        // read. An acknowledgement (or another process's tick) in between
        // leaves it unmatched, and nothing is paged for it.
        let mut applied: HashSet<i64> = HashSet::with_capacity(steps.len());
        for chunk in steps.chunks(400) {
            let mut q = QueryBuilder::<Postgres>::new(
                "UPDATE escalations SET tier = v.column4, loop = v.column5, next_at = v.column6,
                        state = v.column7,
                        ended_at = CASE WHEN v.column7 = 'exhausted' THEN v.column8 ELSE ended_at END
                 FROM (",
            );
            q.push_values(chunk, |mut row, step| {
                let (tier, round, next_at, state) = match step.next {
                    Next::Tier { tier, round, at_ms } => (tier, round, Some(at_ms), "active"),
                    Next::Exhausted => (step.tier, step.round, None, "exhausted"),
                };
                row.push_bind(step.escalation_id)
                    .push_bind(i64::from(step.tier))
                    .push_bind(i64::from(step.round))
                    .push_bind(i64::from(tier))
                    .push_bind(i64::from(round))
                    .push_bind(next_at)
                    .push_bind(state)
                    .push_bind(now_ms);
            });
            q.push(
                ") AS v WHERE escalations.id = v.column1 AND escalations.state = 'active'
                   AND escalations.tier = v.column2 AND escalations.loop = v.column3",
            );
            // The fence: in the same statement, so a takeover committed
            // before it leaves every row unmatched (and nothing is paged).
            if let Some(epoch) = fence {
                q.push(" AND (SELECT epoch FROM leadership WHERE id = 1) = ");
                q.push_bind(epoch);
            }
            q.push(" RETURNING escalations.id");
            let ids: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
            applied.extend(ids);
        }
        let mut outcomes = Vec::with_capacity(steps.len());
        let mut bulk: Vec<(String, &NewPage, i64, i64)> = Vec::new();
        let mut events: Vec<(i64, &'static str, String)> = Vec::new();
        for step in steps {
            let mut outcome = StepOutcome {
                applied: applied.contains(&step.escalation_id),
                ..StepOutcome::default()
            };
            if !outcome.applied {
                outcomes.push(outcome);
                continue;
            }
            for page in &step.pages {
                let key = format!(
                    "page:{}:{}:{}:{}",
                    step.incident_id, step.round, step.tier, page.target
                );
                if !limited(&page.kind) {
                    bulk.push((key, page, step.incident_id, step.escalation_id));
                    outcome.enqueued += 1;
                    continue;
                }
                // One at a time, so each counts the ones before it.
                if recent_pages(&mut tx, &page.target, now_ms, rate).await? >= i64::from(rate.max) {
                    outcome.suppressed.push(page.target.clone());
                    continue;
                }
                let id = (Some(step.incident_id), Some(step.escalation_id));
                if insert_page(&mut tx, &key, page, id.0, id.1, now_ms).await? {
                    outcome.enqueued += 1;
                }
            }
            events.push((step.incident_id, "page", step.text.clone()));
            if !outcome.suppressed.is_empty() {
                let text = format!(
                    "not paged, over the limit of {} pages per {}: {}",
                    rate.max,
                    humantime::format_duration(std::time::Duration::from_millis(
                        rate.window_ms.max(0) as u64
                    )),
                    outcome.suppressed.join(", ")
                );
                events.push((step.incident_id, "page", text));
            }
            if step.next == Next::Exhausted {
                let text = "escalation exhausted: every tier was paged and nobody acknowledged; `page <target> …` pages someone else".to_string();
                events.push((step.incident_id, "escalation", text));
            }
            outcomes.push(outcome);
        }
        for chunk in bulk.chunks(300) {
            let mut q = QueryBuilder::<Postgres>::new(
                "INSERT INTO outbox (created_at, kind, dedup_key, payload, state, next_attempt_at,
                                     incident_id, escalation_id, target) ",
            );
            let mut encoded = Vec::with_capacity(chunk.len());
            for (_, page, _, _) in chunk {
                encoded.push(encode(&page.payload)?);
            }
            q.push_values(
                chunk.iter().zip(encoded),
                |mut row, ((key, page, incident, escalation), payload)| {
                    row.push_bind(now_ms)
                        .push_bind(&page.kind)
                        .push_bind(key)
                        .push_bind(payload)
                        .push_bind("pending")
                        .push_bind(now_ms)
                        .push_bind(*incident)
                        .push_bind(*escalation)
                        .push_bind(&page.target);
                },
            );
            q.push(" ON CONFLICT (dedup_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in events.chunks(500) {
            let mut q = QueryBuilder::<Postgres>::new(
                "INSERT INTO incident_events (incident_id, at, actor, kind, text) ",
            );
            q.push_values(chunk, |mut row, (incident, kind, text)| {
                row.push_bind(*incident)
                    .push_bind(now_ms)
                    .push_bind("oncall")
                    .push_bind(*kind)
                    .push_bind(oncall_grammar::redact::redact_line(text));
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn next_escalation_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(next_at) FROM escalations WHERE state = 'active'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn escalation_of(&self, incident_id: i64) -> Result<Option<Escalation>, StoreError> {
        sqlx::query_as::<_, EscalationRecord>(&format!(
            "SELECT {COLUMNS} FROM escalations WHERE incident_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await?
        .map(EscalationRecord::decode)
        .transpose()
    }

    pub async fn escalate_now(
        &self,
        incident_id: i64,
        now_ms: i64,
    ) -> Result<Option<Escalation>, StoreError> {
        sqlx::query_as::<_, EscalationRecord>(&format!(
            "UPDATE escalations SET next_at = LEAST(next_at, $1)
             WHERE incident_id = $2 AND state = 'active'
             RETURNING {COLUMNS}"
        ))
        .bind(now_ms)
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await?
        .map(EscalationRecord::decode)
        .transpose()
    }

    pub async fn page_now(
        &self,
        incident_id: Option<i64>,
        key: &str,
        page: &NewPage,
        event: Option<&NewEvent>,
        rate: RateLimit,
    ) -> Result<AdHoc, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One writer per target at a time, on every replica, so the count
        // and the insert agree (SQLite has one writer anyway).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&page.target)
            .execute(&mut *tx)
            .await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM outbox WHERE dedup_key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(AdHoc::Duplicate);
        }
        let now = event.map(|e| e.at_ms).unwrap_or_default();
        if limited(&page.kind)
            && recent_pages(&mut tx, &page.target, now, rate).await? >= i64::from(rate.max)
        {
            return Ok(AdHoc::RateLimited);
        }
        insert_page(&mut tx, key, page, incident_id, None, now).await?;
        if let (Some(id), Some(e)) = (incident_id, event) {
            insert_event(&mut tx, id, e).await?;
        }
        tx.commit().await?;
        Ok(AdHoc::Enqueued)
    }

    pub async fn outbox_progress(
        &self,
        id: i64,
        progress: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET progress = $1 WHERE id = $2")
            .bind(encode(progress)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_incident(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT incident_id FROM outbox WHERE dedup_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    pub async fn add_override(&self, o: &StoredOverride, at_ms: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO schedule_overrides (schedule, principal, start_at, end_at, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&o.schedule)
        .bind(&o.principal)
        .bind(o.start_ms)
        .bind(o.end_ms)
        .bind(at_ms)
        .bind(&o.created_by)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn overrides(
        &self,
        schedule: &str,
        from_ms: i64,
    ) -> Result<Vec<StoredOverride>, StoreError> {
        Ok(sqlx::query_as::<_, OverrideRecord>(
            "SELECT id, schedule, principal, start_at, end_at, created_by FROM schedule_overrides
             WHERE schedule = $1 AND end_at > $2 ORDER BY start_at, id",
        )
        .bind(schedule)
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| StoredOverride {
            id: r.id,
            schedule: r.schedule,
            principal: r.principal,
            start_ms: r.start_at,
            end_ms: r.end_at,
            created_by: r.created_by,
        })
        .collect())
    }
}
