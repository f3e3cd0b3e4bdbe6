//! The PostgreSQL store, for several replicas on one database: the same
//! tables and meanings as the SQLite store (`migrations/postgres/`), with
//! PostgreSQL's concurrency where replicas meet: outbox rows are claimed
//! with `FOR UPDATE SKIP LOCKED` (two senders never take the same row), and
//! the term's epoch is checked under a share lock on the `leadership` row,
//! so a takeover (which updates that row) waits for, or fences, a stale
//! leader's write.
//!
//! The connection runs the migrations under sqlx's advisory lock, so
//! replicas starting together are safe. It has the
//! probes and gauges, the terms and the outbox claims, the history with
//! its idempotency keys (a key claimed by one replica is a repeat on every
//! other: the claim is the key's primary key), approvals (decided once,
//! whichever replica the button reached: the decision is a guarded UPDATE
//! in the transaction that writes the execution row), and incidents,
//! escalations and alerts (`postgres_*.rs`, the SQLite store's statements
//! in PostgreSQL's dialect).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::sqlite::{ApprovalRecord, OutboxRecord};
use super::{
    Approval, ApprovalState, Completion, Gauges, HistoryQuery, InvocationRow, KeyClaim,
    NewInvocation, NewOutboxMessage, OutboxMessage, Start, StoreError,
};

#[path = "postgres_alerts.rs"]
mod alerts;
#[path = "postgres_escalations.rs"]
mod escalations;
#[path = "postgres_incidents.rs"]
mod incidents;

/// Longer than any command runs: a row `running` for longer was left by a
/// process that stopped.
const RUNNING_AT_MOST: Duration = Duration::from_secs(30 * 60);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A PostgreSQL URL with its password replaced, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<an unparsable database URL>".into(),
    }
}

/// The server's version, by connecting once (`oncall check`): nothing is
/// migrated or written. Errors never carry the password.
pub async fn server_version(url: &str) -> Result<String, String> {
    use sqlx::Connection;
    let options =
        PgConnectOptions::from_str(url).map_err(|_| "not a valid PostgreSQL URL".to_string())?;
    let connect = sqlx::PgConnection::connect_with(&options);
    let mut conn = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e.to_string().replace(url, &redacted_url(url))),
        Err(_) => return Err("no answer within 5 s".into()),
    };
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("PostgreSQL {version}"))
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The group commit of alert deliveries.
    alerts_writer: tokio::sync::mpsc::Sender<super::sqlite::alerts::Waiting>,
}

impl PgStore {
    /// Connects and runs the migrations (under PostgreSQL's advisory lock:
    /// replicas starting together migrate once).
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let alerts_writer = alerts::spawn_writer(pool.clone());
        Ok(PgStore {
            pool,
            alerts_writer,
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO readiness (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn gauges(&self, now_ms: i64) -> Result<Gauges, StoreError> {
        let (outbox_pending, incidents_open, approvals_pending, oldest_due): (
            i64,
            i64,
            i64,
            Option<i64>,
        ) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),
                    (SELECT COUNT(*) FROM incidents WHERE state <> 'resolved'),
                    (SELECT COUNT(*) FROM approvals WHERE state = 'pending' AND expires_at > $1),
                    (SELECT MIN(next_at) FROM escalations WHERE state = 'active' AND next_at <= $1)",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(Gauges {
            outbox_pending,
            incidents_open,
            approvals_pending,
            escalation_lag_ms: oldest_due.map_or(0, |due| (now_ms - due).max(0)),
        })
    }

    pub async fn begin_term(&self, holder: &str, now_ms: i64) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO leadership (id, epoch, holder, since) VALUES (1, 1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET epoch = leadership.epoch + 1,
                                            holder = excluded.holder, since = excluded.since
             RETURNING epoch",
        )
        .bind(holder)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE outbox SET claim_epoch = NULL, claimed_until = NULL
             WHERE claim_epoch IS NOT NULL AND claim_epoch < $1",
        )
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(epoch)
    }

    pub async fn epoch(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT epoch FROM leadership WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Whether `fence` is the current term, holding a share lock on the
    /// term's row until `tx` ends (a takeover waits for this transaction).
    async fn fence_holds(
        tx: &mut sqlx::PgConnection,
        fence: Option<i64>,
    ) -> Result<bool, StoreError> {
        let Some(epoch) = fence else {
            return Ok(true);
        };
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM leadership WHERE id = 1 FOR SHARE")
                .fetch_optional(&mut *tx)
                .await?;
        Ok(current == Some(epoch))
    }

    pub async fn enqueue(&self, m: &NewOutboxMessage) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO outbox (created_at, kind, dedup_key, payload, state, next_attempt_at)
             VALUES ($1, $2, $3, $4, 'pending', $5)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
        )
        .bind(m.created_at_ms)
        .bind(&m.kind)
        .bind(&m.dedup_key)
        .bind(m.payload.json()?)
        .bind(m.not_before_ms)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn due_outbox(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        sqlx::query_as::<_, OutboxRecord>(
            "SELECT id, kind, dedup_key, payload, state, attempts, next_attempt_at, last_error,
                    incident_id, target, progress
             FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(OutboxRecord::decode)
        .collect()
    }

    /// Claims due rows for the term `fence` until `until_ms`. Rows another
    /// sender holds locked are skipped, not waited for.
    pub async fn claim_outbox(
        &self,
        now_ms: i64,
        limit: u32,
        fence: Option<i64>,
        until_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !Self::fence_holds(&mut tx, fence).await? {
            return Ok(Vec::new());
        }
        let mut rows = sqlx::query_as::<_, OutboxRecord>(
            "UPDATE outbox SET claim_epoch = $3, claimed_until = $4
             WHERE id IN (SELECT id FROM outbox
                          WHERE state = 'pending' AND next_attempt_at <= $1
                            AND (claimed_until IS NULL OR claimed_until <= $1)
                          ORDER BY next_attempt_at, id LIMIT $2
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, dedup_key, payload, state, attempts, next_attempt_at, last_error,
                       incident_id, target, progress",
        )
        .bind(now_ms)
        .bind(i64::from(limit.max(1)))
        .bind(fence)
        .bind(until_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.sort_by_key(|r| (r.next_attempt_at, r.id));
        rows.into_iter().map(OutboxRecord::decode).collect()
    }

    pub async fn outbox_sent_fenced(
        &self,
        ids: &[i64],
        at_ms: i64,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        if !Self::fence_holds(&mut tx, fence).await? {
            tracing::warn!(?fence, "outbox: a stale term's result is dropped");
            return Ok(());
        }
        // Sent while it was being cancelled (an acknowledgement came in
        // mid-send): the provider has it now, so it is followed up.
        let cancelled: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM outbox WHERE state = 'cancelled' AND id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1
             WHERE state IN ('pending', 'cancelled') AND id = ANY($2)",
        )
        .bind(at_ms)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        for id in cancelled {
            escalations::follow_up_sent(&mut tx, id, at_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_failed_fenced(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !Self::fence_holds(&mut tx, fence).await? {
            return Ok(());
        }
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1,
                    state = CASE WHEN state = 'cancelled' THEN 'cancelled'
                                 WHEN $2::BIGINT IS NULL THEN 'failed' ELSE 'pending' END,
                    next_attempt_at = COALESCE($2, next_attempt_at),
                    claim_epoch = NULL, claimed_until = NULL
             WHERE id = $3",
        )
        .bind(error)
        .bind(retry_at_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tables and their columns, for the schema comparison.
    pub async fn columns(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'
             ORDER BY table_name, column_name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A key claimed before: how its first request is doing.
    async fn repeat_of(conn: &mut sqlx::PgConnection, key: &str) -> Result<Start, StoreError> {
        let (state, reply): (String, Option<String>) =
            sqlx::query_as("SELECT state, reply FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
        Ok(Start::Repeat(match (state.as_str(), reply) {
            ("done", Some(reply)) => KeyClaim::Done(reply),
            _ => KeyClaim::Running,
        }))
    }

    async fn insert_invocation(
        conn: &mut sqlx::PgConnection,
        inv: &NewInvocation,
        c: &Completion,
    ) -> Result<i64, StoreError> {
        let groups =
            serde_json::to_string(&inv.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(sqlx::query_scalar(
            "INSERT INTO invocations (received_at, platform, workspace, channel, principal, groups,
                                      text, verb, command, service, mutating, dry_run, decision,
                                      rule, reason, outcome, summary, error, duration_ms,
                                      approval_id, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, $21)
             RETURNING id",
        )
        .bind(inv.received_at_ms)
        .bind(&inv.platform)
        .bind(&inv.workspace)
        .bind(&inv.channel)
        .bind(&inv.principal)
        .bind(groups)
        .bind(&inv.text)
        .bind(&c.verb)
        .bind(&c.command)
        .bind(&c.service)
        .bind(c.mutating)
        .bind(c.dry_run)
        .bind(&c.decision)
        .bind(&c.rule)
        .bind(&c.reason)
        .bind(&c.outcome)
        .bind(&c.summary)
        .bind(&c.error)
        .bind(c.duration_ms)
        .bind(&c.approval_id)
        .bind(&inv.idempotency_key)
        .fetch_one(&mut *conn)
        .await?)
    }

    /// Claims the key, if any, and writes the running row, in one commit.
    /// Exactly one caller per key, on any replica, gets `Begun`.
    pub async fn start_invocation(
        &self,
        inv: &NewInvocation,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &inv.idempotency_key {
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (key, state, created_at) VALUES ($1, 'running', $2)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                return Self::repeat_of(&mut tx, key).await;
            }
        }
        let running = Completion {
            verb: inv.facts.verb.clone(),
            command: inv.facts.command.clone(),
            service: inv.facts.service.clone(),
            mutating: inv.facts.mutating,
            dry_run: inv.facts.dry_run,
            decision: "pending".into(),
            outcome: "running".into(),
            ..Completion::default()
        };
        let id = Self::insert_invocation(&mut tx, inv, &running).await?;
        tx.commit().await?;
        Ok(Start::Begun(id))
    }

    /// Completes the row and answers the key, in one commit.
    pub async fn finish_invocation(
        &self,
        id: i64,
        c: &Completion,
        key_reply: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE invocations SET verb = $1, command = $2, service = $3, mutating = $4,
                    dry_run = $5, decision = $6, rule = $7, reason = $8, outcome = $9,
                    summary = $10, error = $11, duration_ms = $12, approval_id = $13
             WHERE id = $14",
        )
        .bind(&c.verb)
        .bind(&c.command)
        .bind(&c.service)
        .bind(c.mutating)
        .bind(c.dry_run)
        .bind(&c.decision)
        .bind(&c.rule)
        .bind(&c.reason)
        .bind(&c.outcome)
        .bind(&c.summary)
        .bind(&c.error)
        .bind(c.duration_ms)
        .bind(&c.approval_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some((key, reply)) = key_reply {
            sqlx::query(
                "UPDATE idempotency_keys SET state = 'done', reply = $1, invocation_id = $2
                 WHERE key = $3",
            )
            .bind(reply)
            .bind(id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A whole invocation that changed nothing, in one commit; a key seen
    /// before is a repeat and nothing is written.
    pub async fn record_invocation(
        &self,
        inv: &NewInvocation,
        c: &Completion,
        reply: Option<&str>,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &inv.idempotency_key {
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (key, state, reply, created_at)
                 VALUES ($1, 'done', $2, $3) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(reply)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                return Self::repeat_of(&mut tx, key).await;
            }
        }
        let id = Self::insert_invocation(&mut tx, inv, c).await?;
        if let Some(key) = &inv.idempotency_key {
            sqlx::query("UPDATE idempotency_keys SET invocation_id = $1 WHERE key = $2")
                .bind(id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Start::Begun(id))
    }

    pub async fn key_reply(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reply FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((state, reply)) if state == "done" => reply,
            _ => None,
        })
    }

    pub async fn invocation(&self, id: i64) -> Result<Option<InvocationRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, InvocationRow>("SELECT * FROM invocations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// History, newest first, with only the filters given (each one an
    /// index can serve).
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<InvocationRow>, StoreError> {
        let mut sql = history_sql("SELECT * FROM invocations", q);
        Ok(sql
            .build_query_as::<InvocationRow>()
            .fetch_all(&self.pool)
            .await?)
    }

    /// At startup: rows left `running` become `interrupted` and their keys
    /// are answered with `reply`. Other replicas may be running commands
    /// right now, so only rows older than any command can run are taken
    /// (the longest, `rollout status --wait`, is capped at 25 minutes).
    pub async fn recover_interrupted(&self, reply: &str) -> Result<(u64, u64), StoreError> {
        let cutoff = jiff::Timestamp::now().as_millisecond() - RUNNING_AT_MOST.as_millis() as i64;
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE invocations SET outcome = 'interrupted',
                 error = 'oncall stopped while this ran; its effect, if any, is unknown'
             WHERE outcome = 'running' AND received_at < $1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let keys = sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', reply = $1
             WHERE state = 'running' AND created_at < $2",
        )
        .bind(reply)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((rows, keys))
    }

    pub async fn prune_history(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM approvals WHERE state <> 'pending' AND created_at < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "DELETE FROM invocations WHERE received_at < $1
               AND id NOT IN (SELECT request_invocation_id FROM approvals WHERE request_invocation_id IS NOT NULL)
               AND id NOT IN (SELECT execution_invocation_id FROM approvals WHERE execution_invocation_id IS NOT NULL)
               AND id NOT IN (SELECT invocation_id FROM idempotency_keys WHERE invocation_id IS NOT NULL)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(rows)
    }

    pub async fn prune_replies(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE state = 'done' AND created_at < $1")
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub async fn insert_approval(&self, a: &Approval) -> Result<bool, StoreError> {
        let groups: Vec<String> = a.requester_groups.iter().map(ToString::to_string).collect();
        let inserted = sqlx::query(
            "INSERT INTO approvals (id, created_at, expires_at, requester, requester_groups,
                                    platform, workspace, channel, text, command, rule, approvers,
                                    state, request_invocation_id, scope)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&a.id)
        .bind(a.created_at_ms)
        .bind(a.expires_at_ms)
        .bind(a.requester.to_string())
        .bind(groups.json()?)
        .bind(&a.platform)
        .bind(&a.workspace)
        .bind(&a.channel)
        .bind(&a.text)
        .bind(a.command.json()?)
        .bind(&a.rule)
        .bind(a.approvers.json()?)
        .bind(a.request_invocation_id)
        .bind(&a.scope)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        sqlx::query_as::<_, ApprovalRecord>("SELECT * FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(ApprovalRecord::decode)
            .transpose()
    }

    pub async fn expire_approvals(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE approvals SET state = 'expired', decided_at = $1
             WHERE state = 'pending' AND expires_at <= $1",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// `oncall backup` copies SQLite files; PostgreSQL has its own tools.
    pub async fn backup(&self, _to: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "oncall backup copies a SQLite database; back PostgreSQL up with its own tools (pg_dump, or your provider's snapshots)",
        ))
    }

    /// History writes are not group-committed here (PostgreSQL commits
    /// concurrent transactions together itself): nothing is counted.
    pub fn commit_counts(&self) -> (u64, u64) {
        (0, 0)
    }

    /// How PostgreSQL runs [`Self::history`] for `q` (`EXPLAIN`).
    pub async fn history_plan(&self, q: &HistoryQuery) -> Result<Vec<String>, StoreError> {
        let mut sql = history_sql("EXPLAIN SELECT * FROM invocations", q);
        Ok(sql
            .build_query_scalar::<String>()
            .fetch_all(&self.pool)
            .await?)
    }

    /// A transaction: a decision, the execution row and the outbox
    /// messages it causes, committed together or not at all.
    pub async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx {
            tx: self.pool.begin().await?,
        })
    }
}

/// `select` with the history query's filters, only those given (each a
/// plain comparison an index serves), newest first.
fn history_sql<'q>(select: &str, q: &'q HistoryQuery) -> sqlx::QueryBuilder<'q, sqlx::Postgres> {
    let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(select);
    let mut first = true;
    let mut and = |sql: &mut sqlx::QueryBuilder<sqlx::Postgres>| {
        sql.push(if first { " WHERE " } else { " AND " });
        first = false;
    };
    if let Some(p) = &q.principal {
        and(&mut sql);
        sql.push("principal = ").push_bind(p);
    }
    if let Some(s) = &q.service {
        and(&mut sql);
        sql.push("service = ").push_bind(s);
    }
    if let Some(since) = q.since_ms {
        and(&mut sql);
        sql.push("received_at >= ").push_bind(since);
    }
    sql.push(" ORDER BY received_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(q.limit.max(1)));
    sql
}

/// An open transaction of the PostgreSQL store.
pub struct PgTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl PgTx {
    pub async fn enqueue(&mut self, m: &NewOutboxMessage) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO outbox (created_at, kind, dedup_key, payload, state, next_attempt_at)
             VALUES ($1, $2, $3, $4, 'pending', $5)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
        )
        .bind(m.created_at_ms)
        .bind(&m.kind)
        .bind(&m.dedup_key)
        .bind(m.payload.json()?)
        .bind(m.not_before_ms)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Decides a pending approval; `None` if it was no longer pending (the
    /// row lock makes a second replica's decision wait, then find it
    /// decided).
    pub async fn decide_approval(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        sqlx::query_as::<_, ApprovalRecord>(
            "UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3
             WHERE id = $4 AND state = 'pending'
             RETURNING *",
        )
        .bind(state.as_str())
        .bind(by)
        .bind(at_ms)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(ApprovalRecord::decode)
        .transpose()
    }

    /// The approved request's execution row, linked to its approval.
    pub async fn start_execution(
        &mut self,
        approval_id: &str,
        row: &NewInvocation,
    ) -> Result<i64, StoreError> {
        let running = Completion {
            verb: row.facts.verb.clone(),
            command: row.facts.command.clone(),
            service: row.facts.service.clone(),
            mutating: row.facts.mutating,
            dry_run: row.facts.dry_run,
            decision: "pending".into(),
            outcome: "running".into(),
            ..Completion::default()
        };
        let id = PgStore::insert_invocation(&mut self.tx, row, &running).await?;
        sqlx::query("UPDATE approvals SET execution_invocation_id = $1 WHERE id = $2")
            .bind(id)
            .bind(approval_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(id)
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// JSON text for the TEXT columns, as the SQLite store writes it.
mod erased {
    use super::StoreError;

    pub trait Json {
        fn json(&self) -> Result<String, StoreError>;
    }

    impl<T: serde::Serialize + ?Sized> Json for T {
        fn json(&self) -> Result<String, StoreError> {
            serde_json::to_string(self).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
    }
}
use erased::Json as _;
