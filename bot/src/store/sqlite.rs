//! The SQLite backend of the store: every SQL statement oncall runs on
//! SQLite, and the encoding of domain types into rows.
//!
//! WAL mode with `synchronous = FULL`, so a row is durable once its
//! transaction commits. A request that can change something makes two
//! writes: one claims its idempotency key and writes its history row before
//! anything runs, one completes the row and keeps the reply for repeats
//! before the reply is returned; one that changes nothing is written whole
//! once, before its reply. All of them go through the group commit, which
//! commits everything waiting at once. Migrations in `migrations/sqlite/` are embedded and run at start.
//! Queries are runtime-checked (`query_as` + `FromRow`), so building needs no
//! database.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

use super::{
    Approval, ApprovalState, Completion, HistoryQuery, InvocationRow, NewInvocation,
    NewOutboxMessage, OutboxMessage, OutboxState, Start, StoreError,
};

use super::group_commit::GroupCommit;

#[path = "sqlite_alerts.rs"]
pub(in crate::store) mod alerts;
#[path = "sqlite_escalations.rs"]
pub(in crate::store) mod escalations;
#[path = "sqlite_incidents.rs"]
pub(in crate::store) mod incidents;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The newest schema version this build knows (a backup from a newer
/// oncall is not restored by an older one).
pub fn newest_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The store on one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The one writer of history rows and idempotency keys.
    writer: GroupCommit,
    /// The group commit of alert deliveries.
    alerts_writer: tokio::sync::mpsc::Sender<alerts::Waiting>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
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
        let writer = GroupCommit::spawn(path)?;
        let alerts_writer = alerts::spawn_writer(pool.clone());
        Ok(SqliteStore {
            pool,
            writer,
            alerts_writer,
        })
    }

    /// (commits, writes) of the group commit so far.
    pub fn commit_counts(&self) -> (u64, u64) {
        self.writer.counts()
    }

    #[cfg(test)]
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO readiness (id, checked_at) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn gauges(&self, now_ms: i64) -> Result<super::Gauges, StoreError> {
        let (outbox_pending, incidents_open, approvals_pending, oldest_due): (
            i64,
            i64,
            i64,
            Option<i64>,
        ) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM incidents WHERE state <> 'resolved'), \
                    (SELECT COUNT(*) FROM approvals WHERE state = 'pending' AND expires_at > ?1), \
                    (SELECT MIN(next_at) FROM escalations WHERE state = 'active' AND next_at <= ?1)",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(super::Gauges {
            outbox_pending,
            incidents_open,
            approvals_pending,
            escalation_lag_ms: oldest_due.map_or(0, |due| (now_ms - due).max(0)),
        })
    }

    /// `VACUUM INTO`: SQLite's online, consistent copy (one read
    /// transaction; writers carry on meanwhile, readers are not blocked).
    pub async fn backup(&self, to: &Path) -> Result<(), StoreError> {
        let target = to.to_str().ok_or_else(|| {
            StoreError::Sql(sqlx::Error::Protocol(format!(
                "the backup path {} is not valid UTF-8",
                to.display()
            )))
        })?;
        sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts an invocation: claims its idempotency key, if it has one,
    /// and writes its row, committed (with whatever else is waiting, see
    /// [`super::group_commit`]) before this returns. Exactly one caller per
    /// key gets `Begun`; the others learn how the first is doing.
    pub async fn start_invocation(
        &self,
        inv: &NewInvocation,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        self.writer.start(inv, now_ms).await
    }

    /// Completes an invocation: its row, and the reply stored for its
    /// idempotency key, committed before this returns.
    pub async fn finish_invocation(
        &self,
        id: i64,
        c: &Completion,
        key_reply: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        self.writer.finish(id, c, key_reply).await
    }

    /// Records a whole invocation that changed nothing, in one write.
    pub async fn record_invocation(
        &self,
        inv: &NewInvocation,
        c: &Completion,
        reply: Option<&str>,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        self.writer.record(inv, c, reply, now_ms).await
    }

    /// The stored reply of a finished idempotency key, if it has finished
    /// (asked of the writer, which has the keys' index).
    pub async fn key_reply(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.writer.key_reply(key).await
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
        let sql = history_sql(q);
        let rows = bind_history(sqlx::query_as::<_, InvocationRow>(&sql), q)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// How SQLite runs [`Self::history`] for this query (`EXPLAIN QUERY
    /// PLAN`), one line per step: for the benchmark and its index checks.
    pub async fn history_plan(&self, q: &HistoryQuery) -> Result<Vec<String>, StoreError> {
        let sql = format!("EXPLAIN QUERY PLAN {}", history_sql(q));
        let rows = bind_history(sqlx::query_as::<_, (i64, i64, i64, String)>(&sql), q)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.3).collect())
    }

    pub async fn insert_approval(&self, a: &Approval) -> Result<bool, StoreError> {
        let groups: Vec<String> = a.requester_groups.iter().map(ToString::to_string).collect();
        let inserted = sqlx::query(
            "INSERT INTO approvals (id, created_at, expires_at, requester, requester_groups, platform, workspace,
                                    channel, text, command, rule, approvers, state, request_invocation_id, scope)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&a.id)
        .bind(a.created_at_ms)
        .bind(a.expires_at_ms)
        .bind(a.requester.to_string())
        .bind(encode(&groups)?)
        .bind(&a.platform)
        .bind(&a.workspace)
        .bind(&a.channel)
        .bind(&a.text)
        .bind(encode(&a.command)?)
        .bind(&a.rule)
        .bind(encode(&a.approvers)?)
        .bind(a.request_invocation_id)
        .bind(&a.scope)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        sqlx::query_as::<_, ApprovalRecord>("SELECT * FROM approvals WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(ApprovalRecord::decode)
            .transpose()
    }

    pub async fn begin(&self) -> Result<SqliteTx, StoreError> {
        Ok(SqliteTx {
            tx: self.pool.begin().await?,
        })
    }

    pub async fn due_outbox(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        sqlx::query_as::<_, OutboxRecord>(
            "SELECT id, kind, dedup_key, payload, state, attempts, next_attempt_at, last_error,
                    incident_id, target, progress
             FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?
             ORDER BY next_attempt_at, id LIMIT ?",
        )
        .bind(now_ms)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(OutboxRecord::decode)
        .collect()
    }

    pub async fn begin_term(&self, holder: &str, now_ms: i64) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO leadership (id, epoch, holder, since) VALUES (1, 1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1, holder = excluded.holder,
                                            since = excluded.since
             RETURNING epoch",
        )
        .bind(holder)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE outbox SET claim_epoch = NULL, claimed_until = NULL
             WHERE claim_epoch IS NOT NULL AND claim_epoch < ?1",
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

    pub async fn claim_outbox(
        &self,
        now_ms: i64,
        limit: u32,
        fence: Option<i64>,
        until_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut rows = sqlx::query_as::<_, OutboxRecord>(
            "UPDATE outbox SET claim_epoch = ?3, claimed_until = ?4
             WHERE id IN (SELECT id FROM outbox
                          WHERE state = 'pending' AND next_attempt_at <= ?1
                            AND (claimed_until IS NULL OR claimed_until <= ?1)
                          ORDER BY next_attempt_at, id LIMIT ?2)
               AND (?3 IS NULL OR (SELECT epoch FROM leadership WHERE id = 1) = ?3)
             RETURNING id, kind, dedup_key, payload, state, attempts, next_attempt_at, last_error,
                       incident_id, target, progress",
        )
        .bind(now_ms)
        .bind(i64::from(limit.max(1)))
        .bind(fence)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
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
        if let Some(epoch) = fence {
            // Written in this transaction's first statement, so the check
            // and the writes are one atomic unit for SQLite's one writer.
            let current: i64 = sqlx::query_scalar(
                "UPDATE leadership SET epoch = epoch WHERE id = 1 RETURNING epoch",
            )
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
            if current != epoch {
                tracing::warn!(epoch, current, "outbox: a stale term's result is dropped");
                return Ok(());
            }
        }
        for chunk in ids.chunks(500) {
            // Sent while it was being cancelled (an acknowledgement came in
            // mid-send): the provider has it now, so it is followed up.
            let mut select = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT id FROM outbox WHERE state = 'cancelled' AND id IN (",
            );
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            select.push(")");
            let cancelled: Vec<i64> = select.build_query_scalar().fetch_all(&mut *tx).await?;
            let mut update = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE outbox SET state = 'sent', sent_at = ",
            );
            update.push_bind(at_ms);
            update.push(
                ", attempts = attempts + 1 WHERE state IN ('pending', 'cancelled') AND id IN (",
            );
            let mut list = update.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            update.push(")");
            update.build().execute(&mut *tx).await?;
            for id in cancelled {
                escalations::follow_up_sent(&mut tx, id, at_ms).await?;
            }
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
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?1,
                    state = CASE WHEN state = 'cancelled' THEN 'cancelled'
                                 WHEN ?2 IS NULL THEN 'failed' ELSE 'pending' END,
                    next_attempt_at = COALESCE(?2, next_attempt_at),
                    claim_epoch = NULL, claimed_until = NULL
             WHERE id = ?3
               AND (?4 IS NULL OR (SELECT epoch FROM leadership WHERE id = 1) = ?4)",
        )
        .bind(error)
        .bind(retry_at_ms)
        .bind(id)
        .bind(fence)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Rows left `running` by a process that stopped become `interrupted`,
    /// and their idempotency keys are answered with `reply` from now on.
    pub async fn recover_interrupted(&self, reply: &str) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE invocations SET outcome = 'interrupted',
                 error = 'oncall stopped while this ran; its effect, if any, is unknown'
             WHERE outcome = 'running'",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let keys = sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', reply = ? WHERE state = 'running'",
        )
        .bind(reply)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((rows, keys))
    }

    /// Deletes history older than `before_ms`: decided approvals, idempotency
    /// keys and invocation rows (a row a pending approval still points at is
    /// kept). One transaction. Returns the invocation rows deleted.
    pub async fn prune_history(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM approvals WHERE state != 'pending' AND created_at < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "DELETE FROM invocations WHERE received_at < ?
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

    /// Forgets stored replies (and their keys) older than `before_ms`.
    pub async fn prune_replies(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE state = 'done' AND created_at < ?")
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
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

/// The history query with only the filters given, each a plain comparison
/// an index can serve (`service = ? AND received_at >= ?` walks
/// `invocations_by_service`; a `? IS NULL OR …` form would scan the table).
fn history_sql(q: &HistoryQuery) -> String {
    let mut filters = Vec::new();
    if q.principal.is_some() {
        filters.push("principal = ?");
    }
    if q.service.is_some() {
        filters.push("service = ?");
    }
    if q.since_ms.is_some() {
        filters.push("received_at >= ?");
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    format!("SELECT * FROM invocations {filter} ORDER BY received_at DESC, id DESC LIMIT ?")
}

/// Binds [`history_sql`]'s parameters, in its order.
fn bind_history<'q, O>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
    q: &'q HistoryQuery,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>> {
    if let Some(p) = &q.principal {
        query = query.bind(p);
    }
    if let Some(s) = &q.service {
        query = query.bind(s);
    }
    if let Some(since) = q.since_ms {
        query = query.bind(since);
    }
    query.bind(i64::from(q.limit.max(1)))
}

// The history's hot path: the statements of starting and finishing an
// invocation, shared by the sqlx code below (approvals' execution rows) and
// the group commit's own connection (`hot`). The keys are found through the
// writer's index in memory (`key_index`): by row id, or, when a hit does
// not hold, by a scan.
const CLAIM_KEY: &str =
    "INSERT INTO idempotency_keys (key, state, created_at) VALUES (?1, 'running', ?2) RETURNING id";
const KEY_BY_ID: &str = "SELECT key, state, reply FROM idempotency_keys WHERE id = ?1";
const KEY_SCAN: &str =
    "SELECT id, state, reply FROM idempotency_keys WHERE key = ?1 ORDER BY id DESC LIMIT 1";
const ANSWER_KEY: &str =
    "UPDATE idempotency_keys SET state = 'done', reply = ?1, invocation_id = ?2 WHERE id = ?3";
const INSERT_INVOCATION: &str =
    "INSERT INTO invocations (received_at, platform, workspace, channel, principal, groups, text,
                              decision, outcome, idempotency_key,
                              verb, command, service, mutating, dry_run)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 'running', ?8, ?9, ?10, ?11, ?12, ?13)
     RETURNING id";
const UPDATE_INVOCATION: &str =
    "UPDATE invocations SET verb = ?1, command = ?2, service = ?3, mutating = ?4, dry_run = ?5,
            decision = ?6, rule = ?7, reason = ?8, outcome = ?9, summary = ?10, error = ?11,
            duration_ms = ?12, approval_id = ?13
     WHERE id = ?14";

const INSERT_COMPLETE: &str = "INSERT INTO invocations (received_at, platform, workspace, channel, principal, groups, text,
                              verb, command, service, mutating, dry_run, decision, rule, reason,
                              outcome, summary, error, duration_ms, approval_id, idempotency_key)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
     RETURNING id";
/// A key answered at once, with its row: the writer holds the write lock
/// and looked the key up first, so it is new.
const INSERT_KEY_DONE: &str =
    "INSERT INTO idempotency_keys (key, state, reply, invocation_id, created_at)
     VALUES (?1, 'done', ?2, ?3, ?4) RETURNING id";

/// The group commit's side of the store: one plain SQLite connection on a
/// thread of its own, running whole batches without a round trip per
/// statement (see [`super::group_commit`]).
pub(super) mod hot {
    use std::hash::BuildHasher;
    use std::path::Path;

    use rusqlite::{params, Connection, OptionalExtension};

    use super::super::key_index::KeyIndex;
    use super::super::{Completion, KeyClaim, NewInvocation, Start, StoreError};
    use super::{
        ANSWER_KEY, CLAIM_KEY, INSERT_COMPLETE, INSERT_KEY_DONE, KEY_BY_ID, KEY_SCAN,
        UPDATE_INVOCATION,
    };

    fn sql(e: rusqlite::Error) -> StoreError {
        StoreError::Commit(e.to_string())
    }

    /// Opens the (already migrated) database for writing, durable as the
    /// pool's connections are: WAL, `synchronous = FULL`.
    pub fn open(path: &Path) -> Result<Connection, StoreError> {
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(sql)?;
        Ok(conn)
    }

    /// Indexes every key the table holds (at start, before any write).
    pub fn load_keys<S: BuildHasher>(
        conn: &Connection,
        keys: &mut KeyIndex<S>,
    ) -> Result<(), StoreError> {
        let mut stmt = conn
            .prepare("SELECT id, key FROM idempotency_keys ORDER BY id")
            .map_err(sql)?;
        let mut rows = stmt.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let id: i64 = row.get(0).map_err(sql)?;
            let key = row
                .get_ref(1)
                .map_err(sql)?
                .as_str()
                .map_err(|e| StoreError::Corrupt(format!("idempotency key {id}: {e}")))?;
            keys.load(key, id);
        }
        Ok(())
    }

    /// The oldest key row left (pruning deletes the oldest first).
    pub fn oldest_key(conn: &Connection) -> Result<Option<i64>, StoreError> {
        conn.query_row("SELECT MIN(id) FROM idempotency_keys", [], |r| r.get(0))
            .map_err(sql)
    }

    pub fn begin(conn: &Connection) -> Result<(), StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)
    }

    pub fn commit(conn: &Connection) -> Result<(), StoreError> {
        conn.execute_batch("COMMIT").map_err(sql)
    }

    pub fn rollback(conn: &Connection) {
        let _ = conn.execute_batch("ROLLBACK");
    }

    /// One history row, as far as `c` says (a row still running is
    /// `pending` / `running`); its id.
    fn insert(conn: &Connection, inv: &NewInvocation, c: &Completion) -> Result<i64, StoreError> {
        let groups =
            serde_json::to_string(&inv.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        conn.prepare_cached(INSERT_COMPLETE)
            .and_then(|mut s| {
                s.query_row(
                    params![
                        inv.received_at_ms,
                        inv.platform,
                        inv.workspace,
                        inv.channel,
                        inv.principal,
                        groups,
                        inv.text,
                        c.verb,
                        c.command,
                        c.service,
                        c.mutating,
                        c.dry_run,
                        c.decision,
                        c.rule,
                        c.reason,
                        c.outcome,
                        c.summary,
                        c.error,
                        c.duration_ms,
                        c.approval_id,
                        inv.idempotency_key
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(sql)
    }

    fn claim_of(state: &str, reply: Option<String>) -> KeyClaim {
        match (state, reply) {
            ("done", Some(reply)) => KeyClaim::Done(reply),
            _ => KeyClaim::Running,
        }
    }

    /// The row that claimed `key`, if one did, and how its request is
    /// doing. The index says where to look; only the row decides.
    pub fn claimed<S: BuildHasher>(
        conn: &Connection,
        keys: &KeyIndex<S>,
        key: &str,
    ) -> Result<Option<(i64, KeyClaim)>, StoreError> {
        let Some(id) = keys.get(key) else {
            // Every row is indexed: a miss is a key never seen.
            return Ok(None);
        };
        let row: Option<(String, String, Option<String>)> = conn
            .prepare_cached(KEY_BY_ID)
            .and_then(|mut s| {
                s.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(sql)?;
        if let Some((found, state, reply)) = row {
            if found == key {
                return Ok(Some((id, claim_of(&state, reply))));
            }
        }
        // Another key with the same hash, or a row pruned since: the
        // table itself decides.
        let scanned: Option<(i64, String, Option<String>)> = conn
            .prepare_cached(KEY_SCAN)
            .and_then(|mut s| {
                s.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(sql)?;
        Ok(scanned.map(|(id, state, reply)| (id, claim_of(&state, reply))))
    }

    pub fn start<S: BuildHasher>(
        conn: &Connection,
        keys: &mut KeyIndex<S>,
        inv: &NewInvocation,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        if let Some(key) = &inv.idempotency_key {
            // The writer holds the write lock (`BEGIN IMMEDIATE`): a key
            // not found here is new until this transaction ends.
            if let Some((_, claim)) = claimed(conn, keys, key)? {
                return Ok(Start::Repeat(claim));
            }
            let id: i64 = conn
                .prepare_cached(CLAIM_KEY)
                .and_then(|mut s| s.query_row(params![key, now_ms], |r| r.get(0)))
                .map_err(sql)?;
            keys.insert(key, id);
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
        let id = insert(conn, inv, &running)?;
        Ok(Start::Begun(id))
    }

    /// A whole invocation in one write (a command that changes nothing):
    /// its key, if any, claimed already answered, and its complete row. A
    /// key seen before is a repeat, and nothing is written.
    pub fn record<S: BuildHasher>(
        conn: &Connection,
        keys: &mut KeyIndex<S>,
        inv: &NewInvocation,
        c: &Completion,
        reply: Option<&str>,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        if let Some(key) = &inv.idempotency_key {
            if let Some((_, claim)) = claimed(conn, keys, key)? {
                return Ok(Start::Repeat(claim));
            }
        }
        let id = insert(conn, inv, c)?;
        if let Some(key) = &inv.idempotency_key {
            let key_id: i64 = conn
                .prepare_cached(INSERT_KEY_DONE)
                .and_then(|mut s| s.query_row(params![key, reply, id, now_ms], |r| r.get(0)))
                .map_err(sql)?;
            keys.insert(key, key_id);
        }
        Ok(Start::Begun(id))
    }

    pub fn finish<S: BuildHasher>(
        conn: &Connection,
        keys: &KeyIndex<S>,
        id: i64,
        c: &Completion,
        key_reply: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(UPDATE_INVOCATION)
            .and_then(|mut s| {
                s.execute(params![
                    c.verb,
                    c.command,
                    c.service,
                    c.mutating,
                    c.dry_run,
                    c.decision,
                    c.rule,
                    c.reason,
                    c.outcome,
                    c.summary,
                    c.error,
                    c.duration_ms,
                    c.approval_id,
                    id
                ])
            })
            .map_err(sql)?;
        if let Some((key, reply)) = key_reply {
            // A key pruned meanwhile has nothing left to answer.
            if let Some((key_id, _)) = claimed(conn, keys, key)? {
                conn.prepare_cached(ANSWER_KEY)
                    .and_then(|mut s| s.execute(params![reply, id, key_id]))
                    .map_err(sql)?;
            }
        }
        Ok(())
    }

    /// The stored reply of `key`, once its request has finished.
    pub fn key_reply<S: BuildHasher>(
        conn: &Connection,
        keys: &KeyIndex<S>,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(match claimed(conn, keys, key)? {
            Some((_, KeyClaim::Done(reply))) => Some(reply),
            _ => None,
        })
    }
}

async fn insert_invocation(
    conn: &mut sqlx::SqliteConnection,
    inv: &NewInvocation,
) -> Result<i64, StoreError> {
    let groups =
        serde_json::to_string(&inv.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let id: i64 = sqlx::query_scalar(INSERT_INVOCATION)
        .bind(inv.received_at_ms)
        .bind(&inv.platform)
        .bind(&inv.workspace)
        .bind(&inv.channel)
        .bind(&inv.principal)
        .bind(groups)
        .bind(&inv.text)
        .bind(&inv.idempotency_key)
        .bind(&inv.facts.verb)
        .bind(&inv.facts.command)
        .bind(&inv.facts.service)
        .bind(inv.facts.mutating)
        .bind(inv.facts.dry_run)
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}

pub(super) fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// An approval as SQLite holds it.
#[derive(FromRow)]
pub(super) struct ApprovalRecord {
    id: String,
    created_at: i64,
    expires_at: i64,
    requester: String,
    requester_groups: String,
    platform: String,
    workspace: Option<String>,
    channel: String,
    text: String,
    command: String,
    rule: String,
    approvers: String,
    state: String,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    request_invocation_id: Option<i64>,
    execution_invocation_id: Option<i64>,
    scope: Option<String>,
}

impl ApprovalRecord {
    pub(super) fn decode(self) -> Result<Approval, StoreError> {
        let corrupt = |what: &str, e: String| {
            StoreError::Corrupt(format!("approval {}: {what}: {e}", self.id))
        };
        let requester = self
            .requester
            .parse()
            .map_err(|e: oncall_permissions::PrincipalError| corrupt("requester", e.to_string()))?;
        let groups: Vec<String> = decode("requester_groups", &self.requester_groups)?;
        let requester_groups = groups
            .iter()
            .map(|g| g.parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e: oncall_permissions::PrincipalError| {
                corrupt("requester_groups", e.to_string())
            })?;
        let state = ApprovalState::parse(&self.state)
            .ok_or_else(|| corrupt("state", self.state.clone()))?;
        Ok(Approval {
            command: decode("command", &self.command)?,
            approvers: decode("approvers", &self.approvers)?,
            requester,
            requester_groups,
            state,
            id: self.id,
            created_at_ms: self.created_at,
            expires_at_ms: self.expires_at,
            platform: self.platform,
            workspace: self.workspace,
            channel: self.channel,
            text: self.text,
            rule: self.rule,
            scope: self.scope,
            decided_by: self.decided_by,
            decided_at_ms: self.decided_at,
            request_invocation_id: self.request_invocation_id,
            execution_invocation_id: self.execution_invocation_id,
        })
    }
}

/// An outbox row as both stores hold it.
#[derive(FromRow)]
pub(super) struct OutboxRecord {
    pub(super) id: i64,
    kind: String,
    dedup_key: String,
    payload: String,
    state: String,
    attempts: i64,
    pub(super) next_attempt_at: i64,
    last_error: Option<String>,
    incident_id: Option<i64>,
    target: Option<String>,
    progress: Option<String>,
}

impl OutboxRecord {
    pub(super) fn decode(self) -> Result<OutboxMessage, StoreError> {
        let state = match self.state.as_str() {
            "pending" => OutboxState::Pending,
            "sent" => OutboxState::Sent,
            "failed" => OutboxState::Failed,
            "cancelled" => OutboxState::Cancelled,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "outbox {}: state {other}",
                    self.id
                )))
            }
        };
        Ok(OutboxMessage {
            payload: decode("outbox payload", &self.payload)?,
            id: self.id,
            kind: self.kind,
            dedup_key: self.dedup_key,
            state,
            attempts: self.attempts,
            next_attempt_at_ms: self.next_attempt_at,
            last_error: self.last_error,
            incident_id: self.incident_id,
            target: self.target,
            progress: self
                .progress
                .as_deref()
                .map(|p| decode("outbox progress", p))
                .transpose()?,
        })
    }
}

/// An open SQLite transaction.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
}

impl SqliteTx {
    pub async fn enqueue(&mut self, m: &NewOutboxMessage) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO outbox (created_at, kind, dedup_key, payload, state, next_attempt_at)
             VALUES (?, ?, ?, ?, 'pending', ?)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
        )
        .bind(m.created_at_ms)
        .bind(&m.kind)
        .bind(&m.dedup_key)
        .bind(encode(&m.payload)?)
        .bind(m.not_before_ms)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    pub async fn decide_approval(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        sqlx::query_as::<_, ApprovalRecord>(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?
             WHERE id = ? AND state = 'pending'
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

    /// Writes an approved request's execution row and links it to the
    /// approval, in this transaction.
    pub async fn start_execution(
        &mut self,
        approval_id: &str,
        row: &NewInvocation,
    ) -> Result<i64, StoreError> {
        let id = insert_invocation(&mut self.tx, row).await?;
        sqlx::query("UPDATE approvals SET execution_invocation_id = ? WHERE id = ?")
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

#[cfg(test)]
mod tests {
    use std::hash::BuildHasherDefault;

    use super::super::key_index::{Colliding, KeyIndex};
    use super::super::{Completion, KeyClaim, NewInvocation, Start};
    use super::{hot, SqliteStore};

    fn invocation(key: &str) -> NewInvocation {
        NewInvocation {
            received_at_ms: 5_000,
            platform: "slack".into(),
            workspace: None,
            channel: "C1".into(),
            principal: "slack:U1".into(),
            groups: vec![],
            text: "whoami".into(),
            idempotency_key: Some(key.into()),
            facts: Default::default(),
        }
    }

    /// Every key collides in this index: each hit must be checked against
    /// the row, and a hit that does not hold falls back to the table.
    #[tokio::test]
    async fn colliding_keys_are_told_apart_by_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oncall.db");
        let _store = SqliteStore::open(&path).await.unwrap();
        let conn = hot::open(&path).unwrap();
        let mut keys = KeyIndex::with_hasher(BuildHasherDefault::<Colliding>::default());
        let done = Completion {
            decision: "allow".into(),
            outcome: "ok".into(),
            ..Completion::default()
        };
        hot::begin(&conn).unwrap();
        for key in ["a", "b"] {
            let reply = format!("reply {key}");
            let start = hot::record(
                &conn,
                &mut keys,
                &invocation(key),
                &done,
                Some(&reply),
                5_000,
            );
            assert!(matches!(start, Ok(Start::Begun(_))), "{start:?}");
        }
        hot::commit(&conn).unwrap();
        keys.commit();
        // The index names b's row for every key; a's is found by the scan.
        for key in ["a", "b"] {
            match hot::record(
                &conn,
                &mut keys,
                &invocation(key),
                &done,
                Some("again"),
                6_000,
            ) {
                Ok(Start::Repeat(KeyClaim::Done(reply))) => {
                    assert_eq!(reply, format!("reply {key}"))
                }
                other => panic!("{key} repeats, not {other:?}"),
            }
        }
        assert_eq!(
            hot::claimed(&conn, &keys, "c").unwrap().map(|(id, _)| id),
            None
        );
        assert_eq!(
            hot::key_reply(&conn, &keys, "a").unwrap().as_deref(),
            Some("reply a")
        );
        // A key started and finished while colliding is answered on its own row.
        hot::begin(&conn).unwrap();
        let Ok(Start::Begun(id)) = hot::start(&conn, &mut keys, &invocation("c"), 7_000) else {
            panic!("c is new");
        };
        hot::finish(&conn, &keys, id, &done, Some(("c", "reply c"))).unwrap();
        hot::commit(&conn).unwrap();
        keys.commit();
        for key in ["a", "b", "c"] {
            assert_eq!(
                hot::key_reply(&conn, &keys, key).unwrap(),
                Some(format!("reply {key}"))
            );
        }
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM idempotency_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3, "no key written twice");
    }

    /// A key written in a transaction that rolled back is new again: the
    /// index takes its entry back with the transaction.
    #[tokio::test]
    async fn a_rolled_back_key_is_new_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oncall.db");
        let _store = SqliteStore::open(&path).await.unwrap();
        let conn = hot::open(&path).unwrap();
        let mut keys = KeyIndex::new();
        hot::begin(&conn).unwrap();
        assert!(matches!(
            hot::start(&conn, &mut keys, &invocation("k"), 1_000),
            Ok(Start::Begun(_))
        ));
        hot::rollback(&conn);
        keys.rollback();
        assert_eq!(keys.get("k"), None);
        hot::begin(&conn).unwrap();
        assert!(matches!(
            hot::start(&conn, &mut keys, &invocation("k"), 2_000),
            Ok(Start::Begun(_))
        ));
        assert!(matches!(
            hot::start(&conn, &mut keys, &invocation("k"), 2_000),
            Ok(Start::Repeat(KeyClaim::Running))
        ));
        hot::commit(&conn).unwrap();
    }

    /// A database from before the keys became a log keeps its keys, their
    /// replies and its history through the migration.
    #[tokio::test]
    async fn the_key_log_migration_keeps_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let older = dir.path().join("older");
        std::fs::create_dir(&older).unwrap();
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
        for entry in std::fs::read_dir(&all).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.as_str() < "20261210000001" {
                std::fs::copy(entry.path(), older.join(&name)).unwrap();
            }
        }
        let path = dir.path().join("oncall.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(older.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO invocations (id, received_at, platform, channel, principal, text, decision, outcome)
             VALUES (1, 1000, 'slack', 'C1', 'slack:U1', 'whoami', 'allow', 'ok')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO idempotency_keys (key, state, reply, invocation_id, created_at) VALUES
             ('slack:old', 'done', 'old reply', 1, 1000), ('slack:running', 'running', NULL, NULL, 2000)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            store.key_reply("slack:old").await.unwrap().as_deref(),
            Some("old reply")
        );
        match store
            .start_invocation(&invocation("slack:running"), 3_000)
            .await
        {
            Ok(Start::Repeat(KeyClaim::Running)) => {}
            other => panic!("a key running before the migration repeats, not {other:?}"),
        }
        assert!(store.invocation(1).await.unwrap().is_some());
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'idempotency_keys' ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            indexes,
            ["idempotency_keys_by_time", "idempotency_keys_running"]
        );
    }
}
