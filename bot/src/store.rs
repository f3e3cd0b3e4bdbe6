//! The store: history, idempotency keys and approvals in SQLite.
//!
//! SQLite in WAL mode with `synchronous = FULL`, so a row is durable once its
//! transaction commits. Each request costs two commits: one claims its
//! idempotency key and writes its history row before anything runs, one
//! completes the row and keeps the reply for repeats before the reply is
//! returned. Migrations in `migrations/` are embedded and run at start. Queries
//! are runtime-checked (`query_as` + `FromRow`), so building needs no
//! database. Incidents and escalation will add their tables beside these.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// One history row as written.
#[derive(Debug, Clone, Default)]
pub struct NewInvocation {
    pub received_at_ms: i64,
    pub platform: String,
    pub workspace: Option<String>,
    pub channel: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub text: String,
    pub idempotency_key: Option<String>,
}

/// What is known once the command has been decided and run.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub verb: Option<String>,
    pub command: Option<String>,
    pub service: Option<String>,
    pub mutating: bool,
    pub dry_run: bool,
    pub decision: String,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub outcome: String,
    pub summary: Option<String>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub approval_id: Option<String>,
}

/// A history row as read.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct InvocationRow {
    pub id: i64,
    pub received_at: i64,
    pub platform: String,
    pub workspace: Option<String>,
    pub channel: String,
    pub principal: String,
    pub groups: String,
    pub text: String,
    pub verb: Option<String>,
    pub command: Option<String>,
    pub service: Option<String>,
    pub mutating: bool,
    pub dry_run: bool,
    pub decision: String,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub outcome: String,
    pub summary: Option<String>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub approval_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// History filters (`history --user --service --since --limit`).
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub principal: Option<String>,
    pub service: Option<String>,
    pub since_ms: Option<i64>,
    pub limit: u32,
}

/// How starting an invocation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The row was written (and the key claimed): run it.
    Begun(i64),
    /// The key was seen before.
    Repeat(KeyClaim),
}

/// The state of an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// Seen and finished: here is the first reply.
    Done(String),
    /// Seen, still running.
    Running,
}

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct ApprovalRow {
    pub id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub requester: String,
    pub requester_groups: String,
    pub platform: String,
    pub workspace: Option<String>,
    pub channel: String,
    pub text: String,
    pub command: String,
    pub rule: String,
    pub approvers: String,
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub request_invocation_id: Option<i64>,
    pub execution_invocation_id: Option<i64>,
}

impl Store {
    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Sql(sqlx::Error::Io(e)))?;
            }
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Writes the row for a new invocation (no idempotency key) before
    /// anything runs.
    pub async fn begin_invocation(&self, inv: &NewInvocation) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_invocation(&mut conn, inv).await
    }

    /// Records the decision and outcome of an invocation.
    pub async fn complete_invocation(&self, id: i64, c: &Completion) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        update_invocation(&mut conn, id, c).await
    }

    /// Starts an invocation in one transaction (one commit): claims its
    /// idempotency key, if it has one, and writes its row. Exactly one
    /// caller per key gets `Begun`; the others learn how the first is doing.
    pub async fn start_invocation(
        &self,
        inv: &NewInvocation,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &inv.idempotency_key {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, state, created_at) VALUES (?, 'running', ?)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let (state, reply): (String, Option<String>) =
                    sqlx::query_as("SELECT state, reply FROM idempotency_keys WHERE key = ?")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                tx.rollback().await?;
                return Ok(Start::Repeat(match (state.as_str(), reply) {
                    ("done", Some(reply)) => KeyClaim::Done(reply),
                    _ => KeyClaim::Running,
                }));
            }
        }
        let id = insert_invocation(&mut tx, inv).await?;
        tx.commit().await?;
        Ok(Start::Begun(id))
    }

    /// Completes an invocation in one transaction (one commit): its row, and
    /// the reply stored for its idempotency key.
    pub async fn finish_invocation(
        &self,
        id: i64,
        c: &Completion,
        key_reply: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        update_invocation(&mut tx, id, c).await?;
        if let Some((key, reply)) = key_reply {
            sqlx::query("UPDATE idempotency_keys SET state = 'done', reply = ?, invocation_id = ? WHERE key = ?")
                .bind(reply)
                .bind(id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored reply of a finished idempotency key, if it has finished.
    pub async fn key_reply(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reply FROM idempotency_keys WHERE key = ?")
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
            sqlx::query_as::<_, InvocationRow>("SELECT * FROM invocations WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// History, newest first.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<InvocationRow>, StoreError> {
        let rows = sqlx::query_as::<_, InvocationRow>(
            "SELECT * FROM invocations
             WHERE (?1 IS NULL OR principal = ?1)
               AND (?2 IS NULL OR service = ?2)
               AND (?3 IS NULL OR received_at >= ?3)
             ORDER BY received_at DESC, id DESC
             LIMIT ?4",
        )
        .bind(&q.principal)
        .bind(&q.service)
        .bind(q.since_ms)
        .bind(i64::from(q.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn insert_approval(&self, a: &ApprovalRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO approvals (id, created_at, expires_at, requester, requester_groups, platform, workspace,
                                    channel, text, command, rule, approvers, state, request_invocation_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        )
        .bind(&a.id)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(&a.requester)
        .bind(&a.requester_groups)
        .bind(&a.platform)
        .bind(&a.workspace)
        .bind(&a.channel)
        .bind(&a.text)
        .bind(&a.command)
        .bind(&a.rule)
        .bind(&a.approvers)
        .bind(a.request_invocation_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, ApprovalRow>("SELECT * FROM approvals WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Moves a pending approval to `state` if it is still pending; returns
    /// whether this caller made the transition (so two approvers racing
    /// cannot both run it).
    pub async fn decide_approval(
        &self,
        id: &str,
        state: &str,
        by: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? WHERE id = ? AND state = 'pending'",
        )
        .bind(state)
        .bind(by)
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    pub async fn set_execution(&self, id: &str, invocation_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE approvals SET execution_invocation_id = ? WHERE id = ?")
            .bind(invocation_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every pending approval past its deadline as expired.
    pub async fn expire_approvals(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE approvals SET state = 'expired', decided_at = ? WHERE state = 'pending' AND expires_at <= ?")
            .bind(now_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

/// The INSERT of a new invocation row, on any connection or transaction.
async fn insert_invocation(
    conn: &mut sqlx::SqliteConnection,
    inv: &NewInvocation,
) -> Result<i64, StoreError> {
    let groups =
        serde_json::to_string(&inv.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let id = sqlx::query(
        "INSERT INTO invocations (received_at, platform, workspace, channel, principal, groups, text,
                                      decision, outcome, idempotency_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 'running', ?)",
    )
        .bind(inv.received_at_ms)
        .bind(&inv.platform)
        .bind(&inv.workspace)
        .bind(&inv.channel)
        .bind(&inv.principal)
        .bind(groups)
        .bind(&inv.text)
        .bind(&inv.idempotency_key)
        .execute(&mut *conn)
    .await?
    .last_insert_rowid();
    Ok(id)
}

/// The UPDATE completing an invocation row.
async fn update_invocation(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
    c: &Completion,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE invocations SET verb = ?, command = ?, service = ?, mutating = ?, dry_run = ?,
                    decision = ?, rule = ?, reason = ?, outcome = ?, summary = ?, error = ?,
                    duration_ms = ?, approval_id = ?
             WHERE id = ?",
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}
