//! SQLite side of the alert API ([`super::super::alerts`]).

use sqlx::{FromRow, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::super::alerts::{AlertDelivery, OnResolved, Received, StoredAlert};
use super::super::escalations::EscalationState;
use super::super::{NewEvent, NewIncident, StoreError};
use super::incidents::{insert_event, insert_incident};
use super::{decode, encode, SqliteStore};

#[derive(FromRow)]
struct AlertRecord {
    id: i64,
    source: String,
    alertname: String,
    fingerprint: String,
    status: String,
    labels: String,
    annotations: String,
    incident_id: Option<i64>,
    first_seen: i64,
    deliveries: i64,
}

fn event(at_ms: i64, actor: &str, kind: &'static str, text: String) -> NewEvent {
    NewEvent {
        at_ms,
        actor: actor.to_string(),
        kind,
        text,
        invocation_id: None,
    }
}

/// Applies one delivery on `conn` (inside the batch's transaction).
async fn receive_in(
    conn: &mut SqliteConnection,
    d: &AlertDelivery,
    open: Option<&NewIncident>,
    on_resolved: OnResolved,
) -> Result<Received, StoreError> {
    let now = d.at_ms;
    let mut r = Received::default();
    // (alert, firing now) for the timeline.
    let mut changes: Vec<(String, bool, String)> = Vec::new();
    for a in &d.alerts {
        let labels = encode(&a.labels)?;
        let annotations = encode(&a.annotations)?;
        // The write first: the state read after it is the one kept.
        let inserted = sqlx::query(
            "INSERT INTO alerts (source, fingerprint, starts_at, group_key, alertname, status,
                                 labels, annotations, generator_url, route, first_seen,
                                 last_seen, resolved_seen)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (source, fingerprint, starts_at) DO NOTHING",
        )
        .bind(&d.source)
        .bind(&a.fingerprint)
        .bind(&a.starts_at)
        .bind(&d.group_key)
        .bind(&a.alertname)
        .bind(if a.firing { "firing" } else { "resolved" })
        .bind(&labels)
        .bind(&annotations)
        .bind(&a.generator_url)
        .bind(&d.route)
        .bind(now)
        .bind(now)
        .bind((!a.firing).then_some(now))
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        let summary = a.annotations.get("summary").cloned().unwrap_or_default();
        if inserted {
            match a.firing {
                true => r.newly_firing += 1,
                false => r.newly_resolved += 1,
            }
            changes.push((a.alertname.clone(), a.firing, summary));
            continue;
        }
        // Seen before: a repeat counts; firing → resolved moves once;
        // a late firing never undoes a resolve.
        let resolved_now = sqlx::query(
            "UPDATE alerts SET status = 'resolved', resolved_seen = ?
             WHERE source = ? AND fingerprint = ? AND starts_at = ? AND status = 'firing' AND ?",
        )
        .bind(now)
        .bind(&d.source)
        .bind(&a.fingerprint)
        .bind(&a.starts_at)
        .bind(!a.firing)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "UPDATE alerts SET last_seen = ?, deliveries = deliveries + 1, annotations = ?
             WHERE source = ? AND fingerprint = ? AND starts_at = ?",
        )
        .bind(now)
        .bind(&annotations)
        .bind(&d.source)
        .bind(&a.fingerprint)
        .bind(&a.starts_at)
        .execute(&mut *conn)
        .await?;
        if resolved_now {
            r.newly_resolved += 1;
            changes.push((a.alertname.clone(), false, summary));
        }
    }
    let mut incident: Option<i64> = sqlx::query_scalar(
        "SELECT g.incident_id FROM alert_groups g JOIN incidents i ON i.id = g.incident_id
         WHERE g.source = ? AND g.group_key = ? AND i.state <> 'resolved'",
    )
    .bind(&d.source)
    .bind(&d.group_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let (None, Some(new)) = (incident, open) {
        if r.newly_firing > 0 {
            let names: Vec<&str> = d
                .alerts
                .iter()
                .filter(|a| a.firing)
                .map(|a| a.alertname.as_str())
                .collect();
            let text = format!(
                "declared {} {} from {} ({} firing: {})",
                new.severity,
                new.title,
                d.source,
                names.len(),
                names.join(", ")
            );
            let i = insert_incident(conn, new, &event(now, &new.by, "declared", text)).await?;
            sqlx::query(
                "INSERT INTO alert_groups (source, group_key, incident_id, opened_at)
                 VALUES (?, ?, ?, ?)
                 ON CONFLICT (source, group_key) DO UPDATE SET
                    incident_id = excluded.incident_id, opened_at = excluded.opened_at",
            )
            .bind(&d.source)
            .bind(&d.group_key)
            .bind(i.id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            r.opened = true;
            incident = Some(i.id);
        }
    }
    r.incident_id = incident;
    let Some(id) = incident else {
        return Ok(r);
    };
    sqlx::query(
        "UPDATE alerts SET incident_id = ?
         WHERE source = ? AND group_key = ? AND incident_id IS NULL",
    )
    .bind(id)
    .bind(&d.source)
    .bind(&d.group_key)
    .execute(&mut *conn)
    .await?;
    if !r.opened {
        for (name, firing, summary) in &changes {
            let state = if *firing { "firing" } else { "resolved" };
            let mut text = format!("alert {name} {state}");
            if !summary.is_empty() {
                text.push_str(&format!(": {summary}"));
            }
            insert_event(conn, id, &event(now, &d.source, "alert", text)).await?;
        }
    }
    // A group firing again with nobody on it pages again.
    if r.newly_firing > 0 && !r.opened {
        if let Some(policy) = open.and_then(|o| o.escalation.as_ref()) {
            let due = open.and_then(|o| o.escalation_at_ms).unwrap_or(now);
            super::escalations::start_if_idle(conn, id, policy, now, due).await?;
        }
    }
    let firing_left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM alerts WHERE incident_id = ? AND status = 'firing'",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    if firing_left == 0 && r.newly_resolved > 0 {
        r.all_resolved = true;
        super::escalations::stop(conn, id, EscalationState::Resolved, now, &d.source).await?;
        let said = match on_resolved {
            OnResolved::Mitigate => {
                sqlx::query(
                    "UPDATE incidents SET state = 'monitoring', last_update_at = ?1,
                            mitigated_at = COALESCE(mitigated_at, ?1)
                     WHERE id = ?2 AND state IN ('investigating', 'identified')",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                "mitigated"
            }
            OnResolved::Resolve => {
                sqlx::query(
                    "UPDATE incidents SET state = 'resolved', resolved_at = ?1, resolved_by = ?3,
                            last_update_at = ?1, next_reminder_at = NULL,
                            mitigated_at = COALESCE(mitigated_at, ?1)
                     WHERE id = ?2 AND state <> 'resolved'",
                )
                .bind(now)
                .bind(id)
                .bind(&d.source)
                .execute(&mut *conn)
                .await?;
                "resolved"
            }
        };
        let text =
            format!("every alert has resolved; the escalation stopped and the incident is {said}");
        insert_event(conn, id, &event(now, &d.source, "alert", text)).await?;
    }
    Ok(r)
}

/// A delivery waiting for the batch writer, and where its answer goes.
pub(crate) struct Waiting {
    delivery: AlertDelivery,
    open: Option<NewIncident>,
    on_resolved: OnResolved,
    answer: oneshot::Sender<Result<Received, StoreError>>,
}

/// How many deliveries one transaction takes at most.
const BATCH: usize = 128;

/// Group commit for deliveries: takes every delivery waiting, applies each
/// in its own savepoint (one that fails is rolled back alone), commits
/// once, then answers each. A burst costs one fsync per batch, not one per
/// delivery, and nobody is answered before their delivery is durable.
pub(crate) fn spawn_writer(pool: SqlitePool) -> mpsc::Sender<Waiting> {
    let (tx, mut rx) = mpsc::channel::<Waiting>(4096);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let results = apply(&pool, &batch).await;
            for (w, r) in batch.into_iter().zip(results) {
                let _ = w.answer.send(r);
            }
        }
    });
    tx
}

async fn apply(pool: &SqlitePool, batch: &[Waiting]) -> Vec<Result<Received, StoreError>> {
    let failed = |e: &StoreError| -> Vec<Result<Received, StoreError>> {
        batch
            .iter()
            .map(|_| Err(StoreError::Commit(e.to_string())))
            .collect()
    };
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return failed(&e.into()),
    };
    let mut results = Vec::with_capacity(batch.len());
    for w in batch {
        let one = async {
            let mut sp = sqlx::Connection::begin(&mut *tx).await?;
            let r = receive_in(&mut sp, &w.delivery, w.open.as_ref(), w.on_resolved).await?;
            sp.commit().await?;
            Ok::<_, StoreError>(r)
        };
        // A savepoint dropped uncommitted rolls back to itself.
        results.push(one.await);
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => failed(&e.into()),
    }
}

impl SqliteStore {
    pub async fn receive_alerts(
        &self,
        d: &AlertDelivery,
        open: Option<&NewIncident>,
        on_resolved: OnResolved,
    ) -> Result<Received, StoreError> {
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            delivery: d.clone(),
            open: open.cloned(),
            on_resolved,
            answer,
        };
        self.alerts_writer
            .send(waiting)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answered.await.map_err(|_| StoreError::WriterStopped)?
    }

    pub async fn firing_alerts(&self, limit: u32) -> Result<Vec<StoredAlert>, StoreError> {
        sqlx::query_as::<_, AlertRecord>(
            "SELECT id, source, alertname, fingerprint, status, labels, annotations, incident_id,
                    first_seen, deliveries
             FROM alerts WHERE status = 'firing' ORDER BY first_seen, id LIMIT ?",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(StoredAlert {
                labels: decode("alert labels", &r.labels)?,
                annotations: decode("alert annotations", &r.annotations)?,
                id: r.id,
                source: r.source,
                alertname: r.alertname,
                fingerprint: r.fingerprint,
                status: r.status,
                incident_id: r.incident_id,
                first_seen_ms: r.first_seen,
                deliveries: r.deliveries,
            })
        })
        .collect()
    }
}
