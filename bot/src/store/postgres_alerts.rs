//! PostgreSQL side of the alert API ([`super::super::alerts`]).

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::super::alerts::{
    ActionClaim, AlertAction, AlertCard, AlertDelivery, OnResolved, Received, SilenceRecord,
    StoredAlert,
};
use super::super::escalations::EscalationState;
use super::super::sqlite::alerts::{
    event, ActionRecord, AlertRecord, CardRecord, SilenceRow, Waiting, ALERT_COLUMNS, BATCH,
};
use super::super::sqlite::{decode, encode};
use super::super::{NewIncident, StoreError};
use super::incidents::{insert_event, insert_incident};
use super::PgStore;

/// Applies one delivery on `conn` (inside the batch's transaction).
async fn receive_in(
    conn: &mut PgConnection,
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
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
            "UPDATE alerts SET status = 'resolved', resolved_seen = $1
             WHERE source = $2 AND fingerprint = $3 AND starts_at = $4 AND status = 'firing' AND $5",
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
            "UPDATE alerts SET last_seen = $1, deliveries = deliveries + 1, annotations = $2
             WHERE source = $3 AND fingerprint = $4 AND starts_at = $5",
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
    // The group's row: its message follows what changed.
    let changed = r.newly_firing + r.newly_resolved > 0;
    sqlx::query(
        "INSERT INTO alert_groups (source, group_key, route, title, service, platform, channel,
                                   first_seen, card_version, posted_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 0)
         ON CONFLICT (source, group_key) DO UPDATE SET
            route = excluded.route, title = excluded.title, service = excluded.service,
            platform = COALESCE(alert_groups.platform, excluded.platform),
            channel = COALESCE(alert_groups.channel, excluded.channel),
            card_version = alert_groups.card_version + $9",
    )
    .bind(&d.source)
    .bind(&d.group_key)
    .bind(&d.route)
    .bind(&d.title)
    .bind(&d.service)
    .bind(d.card.as_ref().map(|c| &c.platform))
    .bind(d.card.as_ref().map(|c| &c.channel))
    .bind(now)
    .bind(i64::from(changed))
    .execute(&mut *conn)
    .await?;
    let mut incident: Option<i64> = sqlx::query_scalar(
        "SELECT g.incident_id FROM alert_groups g JOIN incidents i ON i.id = g.incident_id
         WHERE g.source = $1 AND g.group_key = $2 AND i.state <> 'resolved'",
    )
    .bind(&d.source)
    .bind(&d.group_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let (None, Some(new)) = (incident, open) {
        match d.open_at_ms.filter(|t| *t > now) {
            // Business hours have not begun: held until then.
            Some(at) if r.newly_firing > 0 => {
                sqlx::query(
                    "UPDATE alert_groups SET open_at = COALESCE(open_at, $1), pending_open = $2
                     WHERE source = $3 AND group_key = $4",
                )
                .bind(at)
                .bind(encode(new)?)
                .bind(&d.source)
                .bind(&d.group_key)
                .execute(&mut *conn)
                .await?;
            }
            Some(_) => {}
            None if r.newly_firing > 0 => {
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
                attach_incident(conn, &d.source, &d.group_key, i.id, now).await?;
                r.opened = true;
                incident = Some(i.id);
            }
            None => {}
        }
    }
    if r.newly_resolved > 0 {
        // Nothing left firing: nothing held for business hours either.
        sqlx::query(
            "UPDATE alert_groups SET open_at = NULL, pending_open = NULL
             WHERE source = $1 AND group_key = $2 AND NOT EXISTS (
                SELECT 1 FROM alerts WHERE source = $1 AND group_key = $2 AND status = 'firing')",
        )
        .bind(&d.source)
        .bind(&d.group_key)
        .execute(&mut *conn)
        .await?;
    }
    r.incident_id = incident;
    let Some(id) = incident else {
        return Ok(r);
    };
    sqlx::query(
        "UPDATE alerts SET incident_id = $1
         WHERE source = $2 AND group_key = $3 AND incident_id IS NULL",
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
        "SELECT COUNT(*) FROM alerts WHERE incident_id = $1 AND status = 'firing'",
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
                    "UPDATE incidents SET state = 'monitoring', last_update_at = $1,
                            mitigated_at = COALESCE(mitigated_at, $1)
                     WHERE id = $2 AND state IN ('investigating', 'identified')",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                "mitigated"
            }
            OnResolved::Resolve => {
                sqlx::query(
                    "UPDATE incidents SET state = 'resolved', resolved_at = $1, resolved_by = $3,
                            last_update_at = $1, next_reminder_at = NULL,
                            mitigated_at = COALESCE(mitigated_at, $1)
                     WHERE id = $2 AND state <> 'resolved'",
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

/// Makes `incident` the group's: its message stays the one posted while
/// it had none (a business-hours group), and is a new one after an
/// earlier incident of the group.
async fn attach_incident(
    conn: &mut PgConnection,
    source: &str,
    group_key: &str,
    incident: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alert_groups SET
            message_id = CASE WHEN incident_id IS NULL THEN message_id END,
            enrichment = CASE WHEN incident_id IS NULL THEN enrichment END,
            incident_id = $1, opened_at = $2, open_at = NULL, pending_open = NULL,
            card_version = card_version + 1
         WHERE source = $3 AND group_key = $4",
    )
    .bind(incident)
    .bind(now)
    .bind(source)
    .bind(group_key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Group commit for deliveries: takes every delivery waiting, applies each
/// in its own savepoint (one that fails is rolled back alone), commits
/// once, then answers each. A burst costs one fsync per batch, not one per
/// delivery, and nobody is answered before their delivery is durable.
pub(crate) fn spawn_writer(pool: PgPool) -> mpsc::Sender<Waiting> {
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

async fn apply(pool: &PgPool, batch: &[Waiting]) -> Vec<Result<Received, StoreError>> {
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

impl PgStore {
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
        sqlx::query_as::<_, AlertRecord>(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'firing'
             ORDER BY first_seen, id LIMIT $1"
        ))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(AlertRecord::decode)
        .collect()
    }

    pub async fn alerts_named(&self, target: &str) -> Result<Vec<StoredAlert>, StoreError> {
        sqlx::query_as::<_, AlertRecord>(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE status = 'firing' AND (alertname = $1 OR fingerprint = $1)
             ORDER BY first_seen, id LIMIT 100"
        ))
        .bind(target)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(AlertRecord::decode)
        .collect()
    }

    pub async fn alert_cards_due(&self, limit: u32) -> Result<Vec<AlertCard>, StoreError> {
        let rows = sqlx::query_as::<_, CardRecord>(
            "SELECT g.source, g.group_key, g.route, g.title, g.service, g.platform, g.channel,
                    g.message_id, g.card_version, g.enrichment, g.incident_id, g.open_at,
                    i.state AS incident_state, i.severity, i.acknowledged_by,
                    (SELECT e.state FROM escalations e WHERE e.incident_id = g.incident_id
                     ORDER BY e.id DESC LIMIT 1) AS escalation_state,
                    (SELECT e.ended_by FROM escalations e WHERE e.incident_id = g.incident_id
                     ORDER BY e.id DESC LIMIT 1) AS escalation_ended_by,
                    (SELECT COUNT(*) FROM alerts a
                     WHERE a.source = g.source AND a.group_key = g.group_key
                       AND (a.incident_id IS NOT DISTINCT FROM g.incident_id OR a.incident_id IS NULL)
                       AND a.status = 'firing') AS firing,
                    (SELECT COUNT(*) FROM alerts a
                     WHERE a.source = g.source AND a.group_key = g.group_key
                       AND (a.incident_id IS NOT DISTINCT FROM g.incident_id OR a.incident_id IS NULL)
                       AND a.status = 'resolved') AS resolved
             FROM alert_groups g LEFT JOIN incidents i ON i.id = g.incident_id
             WHERE g.posted_version < g.card_version
               AND g.platform IS NOT NULL AND g.channel IS NOT NULL
             ORDER BY g.first_seen LIMIT $1",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        let mut cards = Vec::with_capacity(rows.len());
        for r in rows {
            let alerts = sqlx::query_as::<_, AlertRecord>(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts
                 WHERE source = $1 AND group_key = $2 AND (incident_id IS NOT DISTINCT FROM $3 OR incident_id IS NULL)
                 ORDER BY id DESC LIMIT 20"
            ))
            .bind(&r.source)
            .bind(&r.group_key)
            .bind(r.incident_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(AlertRecord::decode)
            .collect::<Result<Vec<_>, _>>()?;
            cards.push(AlertCard {
                source: r.source,
                group_key: r.group_key,
                route: r.route,
                title: r.title,
                service: r.service,
                platform: r.platform,
                channel: r.channel,
                message_id: r.message_id,
                version: r.card_version,
                enrichment: r.enrichment,
                incident_id: r.incident_id,
                incident_state: r.incident_state,
                severity: r.severity,
                acknowledged_by: r.acknowledged_by,
                escalation_state: r.escalation_state,
                escalation_ended_by: r.escalation_ended_by,
                open_at_ms: r.open_at,
                firing: r.firing,
                resolved: r.resolved,
                alerts,
            });
        }
        Ok(cards)
    }

    pub async fn alert_card_posted(
        &self,
        card: &AlertCard,
        message_id: &str,
        enrichment: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_groups SET posted_version = GREATEST(posted_version, $1),
                    message_id = $2, enrichment = COALESCE(enrichment, $3)
             WHERE source = $4 AND group_key = $5 AND incident_id IS NOT DISTINCT FROM $6",
        )
        .bind(card.version)
        .bind(message_id)
        .bind(enrichment)
        .bind(&card.source)
        .bind(&card.group_key)
        .bind(card.incident_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn open_deferred_alert_groups(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        let due: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT source, group_key, pending_open FROM alert_groups
             WHERE open_at IS NOT NULL AND open_at <= $1 AND pending_open IS NOT NULL
             ORDER BY open_at LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut opened = Vec::new();
        for (source, group_key, pending) in due {
            let mut tx = self.pool.begin().await?;
            // Guarded: a second pass finds nothing held.
            let held = sqlx::query(
                "UPDATE alert_groups SET open_at = NULL, pending_open = NULL
                 WHERE source = $1 AND group_key = $2 AND open_at IS NOT NULL",
            )
            .bind(&source)
            .bind(&group_key)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT alertname FROM alerts
                 WHERE source = $1 AND group_key = $2 AND status = 'firing' ORDER BY id",
            )
            .bind(&source)
            .bind(&group_key)
            .fetch_all(&mut *tx)
            .await?;
            let open_now: Option<i64> = sqlx::query_scalar(
                "SELECT g.incident_id FROM alert_groups g JOIN incidents i ON i.id = g.incident_id
                 WHERE g.source = $1 AND g.group_key = $2 AND i.state <> 'resolved'",
            )
            .bind(&source)
            .bind(&group_key)
            .fetch_optional(&mut *tx)
            .await?;
            if !held || names.is_empty() || open_now.is_some() {
                tx.commit().await?;
                continue;
            }
            let mut new: NewIncident = decode("a held alert incident", &pending)?;
            let shift = now - new.at_ms;
            new.at_ms = now;
            new.next_reminder_at_ms = new.next_reminder_at_ms.map(|t| t + shift);
            new.escalation_at_ms = None;
            let text = format!(
                "declared {} {} from {source} when business hours began ({} firing: {})",
                new.severity,
                new.title,
                names.len(),
                names.join(", ")
            );
            let i = insert_incident(&mut tx, &new, &event(now, &new.by, "declared", text)).await?;
            attach_incident(&mut tx, &source, &group_key, i.id, now).await?;
            sqlx::query(
                "UPDATE alerts SET incident_id = $1
                 WHERE source = $2 AND group_key = $3 AND incident_id IS NULL",
            )
            .bind(i.id)
            .bind(&source)
            .bind(&group_key)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            opened.push(i.id);
        }
        Ok(opened)
    }

    pub async fn alert_actions(
        &self,
        incident_id: i64,
        card: &AlertCard,
        commands: &[String],
        now: i64,
        ttl_ms: i64,
    ) -> Result<Vec<AlertAction>, StoreError> {
        let mut tx = self.pool.begin().await?;
        for (position, command) in commands.iter().enumerate() {
            sqlx::query(
                "INSERT INTO alert_actions (incident_id, source, group_key, position, command,
                                            created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (incident_id, source, group_key, position) DO NOTHING",
            )
            .bind(incident_id)
            .bind(&card.source)
            .bind(&card.group_key)
            .bind(position as i64)
            .bind(command)
            .bind(now)
            .bind(now.saturating_add(ttl_ms))
            .execute(&mut *tx)
            .await?;
        }
        let rows = sqlx::query_as::<_, ActionRecord>(
            "SELECT id, incident_id, command, expires_at, claimed_by, claimed_at, claim_key, outcome
             FROM alert_actions WHERE incident_id = $1 AND source = $2 AND group_key = $3
             ORDER BY position",
        )
        .bind(incident_id)
        .bind(&card.source)
        .bind(&card.group_key)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertAction {
                id: r.id,
                incident_id: r.incident_id,
                command: r.command,
                expires_at_ms: r.expires_at,
                claimed_by: r.claimed_by,
                outcome: r.outcome,
            })
            .collect())
    }

    pub async fn claim_alert_action(
        &self,
        id: i64,
        by: &str,
        key: &str,
        now: i64,
    ) -> Result<ActionClaim, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, ActionRecord>(
            "SELECT id, incident_id, command, expires_at, claimed_by, claimed_at, claim_key, outcome
             FROM alert_actions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ActionClaim::NotFound);
        };
        let claimed = ActionClaim::Claimed {
            command: row.command.clone(),
            incident_id: row.incident_id,
        };
        if let (Some(by), Some(at)) = (&row.claimed_by, row.claimed_at) {
            return Ok(match row.claim_key.as_deref() == Some(key) {
                true => claimed,
                false => ActionClaim::Used {
                    by: by.clone(),
                    at_ms: at,
                },
            });
        }
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM incidents WHERE id = $1")
            .bind(row.incident_id)
            .fetch_optional(&mut *tx)
            .await?;
        if state.as_deref().is_none_or(|s| s == "resolved") {
            return Ok(ActionClaim::Closed);
        }
        if row.expires_at <= now {
            return Ok(ActionClaim::Expired);
        }
        let won = sqlx::query(
            "UPDATE alert_actions SET claimed_by = $1, claimed_at = $2, claim_key = $3
             WHERE id = $4 AND claimed_at IS NULL",
        )
        .bind(by)
        .bind(now)
        .bind(key)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(match won {
            true => claimed,
            false => ActionClaim::Used {
                by: "someone else".into(),
                at_ms: now,
            },
        })
    }

    pub async fn settle_alert_action(
        &self,
        id: i64,
        key: &str,
        outcome: Option<&str>,
    ) -> Result<(), StoreError> {
        match outcome {
            Some(o) => {
                sqlx::query(
                    "UPDATE alert_actions SET outcome = $1 WHERE id = $2 AND claim_key = $3",
                )
                .bind(o)
                .bind(id)
                .bind(key)
                .execute(&self.pool)
                .await?
            }
            None => sqlx::query(
                "UPDATE alert_actions SET claimed_by = NULL, claimed_at = NULL, claim_key = NULL
                     WHERE id = $1 AND claim_key = $2 AND outcome IS NULL",
            )
            .bind(id)
            .bind(key)
            .execute(&self.pool)
            .await?,
        };
        // The alert's message shows who ran it (or offers it again).
        sqlx::query(
            "UPDATE alert_groups SET card_version = card_version + 1
             WHERE (source, group_key) IN (SELECT source, group_key FROM alert_actions WHERE id = $1)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_silence(
        &self,
        s: &SilenceRecord,
        matchers: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alert_silences (silence_id, target, matchers, comment, created_by,
                                         created_at, ends_at, incident_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.silence_id)
        .bind(&s.target)
        .bind(matchers)
        .bind(&s.comment)
        .bind(&s.created_by)
        .bind(now)
        .bind(s.ends_at_ms)
        .bind(s.incident_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn active_silences(
        &self,
        target: &str,
        now: i64,
    ) -> Result<Vec<SilenceRecord>, StoreError> {
        Ok(sqlx::query_as::<_, SilenceRow>(
            "SELECT silence_id, target, comment, created_by, ends_at, incident_id
             FROM alert_silences
             WHERE expired_at IS NULL AND ends_at > $1 AND (target = $2 OR silence_id = $2)
             ORDER BY id",
        )
        .bind(now)
        .bind(target)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| SilenceRecord {
            silence_id: r.silence_id,
            target: r.target,
            comment: r.comment,
            created_by: r.created_by,
            ends_at_ms: r.ends_at,
            incident_id: r.incident_id,
        })
        .collect())
    }

    pub async fn expire_silence(
        &self,
        silence_id: &str,
        by: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_silences SET expired_at = $1, expired_by = $2
             WHERE silence_id = $3 AND expired_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(silence_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
