//! The store: oncall's durable state behind one domain API.
//!
//! Callers (the router, handlers, adapters, background loops) speak in
//! domain types: an [`Approval`] with its [`ApprovalState`], principals and
//! the parsed [`Command`]; history rows; outbox messages. Encoding into rows
//! happens only inside a backend module. Today that is [`sqlite`] (one file,
//! the default and the demo's store); PostgreSQL, for several replicas, will
//! be a sibling module with its own migrations (`migrations/postgres/`)
//! behind the same [`Store`].
//!
//! The primitive the escalation engine builds on is [`StoreTx`]: a state
//! change and the outbox messages it causes, committed together or not at
//! all ([`StoreTx::enqueue`]).

pub mod alerts;
pub mod copy;
pub mod escalations;
pub mod incidents;
pub mod postgres;
pub mod sqlite;

use std::path::Path;

use oncall_grammar::Command;
use oncall_permissions::Principal;

mod group_commit;
mod key_index;

pub use alerts::{
    ActionClaim, AlertAction, AlertCard, AlertDelivery, CardTarget, IncomingAlert, OnResolved,
    Received, SilenceRecord, StoredAlert,
};
pub use escalations::{
    AdHoc, DueEscalation, Escalation, EscalationState, NewPage, Next, RateLimit, Step, StepOutcome,
    StoredOverride,
};
pub use incidents::{Incident, IncidentChange, IncidentEvent, NewEvent, NewIncident, RoleHolder};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The transaction holding this write (and others) did not commit.
    #[error("database: the commit failed: {0}")]
    Commit(String),
    /// The writer task is gone (the process is stopping).
    #[error("database: the writer has stopped")]
    WriterStopped,
    /// What this store does not do, and what to use instead.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// What is pending or open now (the metrics' gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    pub outbox_pending: i64,
    pub incidents_open: i64,
    pub approvals_pending: i64,
    /// How long the oldest due escalation step has been due; 0 if none is.
    pub escalation_lag_ms: i64,
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
    /// What the command is, when it parsed: the row written before it runs
    /// says so, and a row a crash cut off still shows what was running.
    pub facts: CommandFacts,
}

/// What a parsed command is, before it is decided and run.
#[derive(Debug, Clone, Default)]
pub struct CommandFacts {
    pub verb: Option<String>,
    pub command: Option<String>,
    pub service: Option<String>,
    pub mutating: bool,
    pub dry_run: bool,
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
#[derive(Debug, Clone, sqlx::FromRow, PartialEq, Eq)]
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

/// Where an approval request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "expired" => ApprovalState::Expired,
            _ => return None,
        })
    }
}

/// `state == "pending"`: compares with the stored spelling.
impl PartialEq<&str> for ApprovalState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request held for a second person, exactly as it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Short, for typing (`approve k3f9qa`).
    pub id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub requester: Principal,
    /// The groups the requester was seen with when asking.
    pub requester_groups: Vec<Principal>,
    pub platform: String,
    pub workspace: Option<String>,
    pub channel: String,
    /// The command's canonical text.
    pub text: String,
    pub command: Command,
    /// The approval rule that held it.
    pub rule: String,
    /// What it acts on, as resolved when requested
    /// ([`oncall_grammar::Catalog::fingerprint`]); `None` for rows from
    /// before it was kept.
    pub scope: Option<String>,
    /// Roles that may approve it.
    pub approvers: Vec<String>,
    pub state: ApprovalState,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub request_invocation_id: Option<i64>,
    pub execution_invocation_id: Option<i64>,
}

/// A message to send, as written beside the state change that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxMessage {
    /// What sends it: `chat.post`, `page.pagerduty`, `page.opsgenie`, …
    pub kind: String,
    /// Derived from the state change (e.g. `escalation:42:step:1`), so the
    /// same message is never enqueued twice and providers can dedup resends.
    pub dedup_key: String,
    pub payload: serde_json::Value,
    pub created_at_ms: i64,
    /// When it may first be sent.
    pub not_before_ms: i64,
}

/// Where an outbox message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    Pending,
    Sent,
    Failed,
    /// An escalation's page not yet sent when the incident was
    /// acknowledged or resolved: never sent.
    Cancelled,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: String,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    pub state: OutboxState,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    /// The incident it is about, for pages.
    pub incident_id: Option<i64>,
    /// Who or what a page is for (`cli:alice`, `pagerduty:payments`).
    pub target: Option<String>,
    /// What a multi-part send has done so far (a chat page's message ids).
    pub progress: Option<serde_json::Value>,
}

/// The store. Cheap to clone: it is a handle to a connection pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend this store is.
macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite file and runs its migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::open(path).await?),
        })
    }

    /// The store a configuration names: PostgreSQL when it has a URL
    /// (`DATABASE_URL` or `database.url`), else the SQLite file.
    pub async fn open_config(db: &crate::config::DatabaseConfig) -> Result<Store, StoreError> {
        match db.postgres_url() {
            Some(url) => Self::open_postgres(&url).await,
            None => Self::open(&db.path).await,
        }
    }

    /// Connects to PostgreSQL (the URL's password is never logged or shown)
    /// and runs its migrations, under PostgreSQL's advisory lock.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Postgres(PgStore::open(url).await?),
        })
    }

    /// Which store this is: `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// At startup: requests a stopped process left running are marked
    /// `interrupted` (history shows them), and a repeat of one is answered
    /// that it was interrupted instead of "already being handled" forever.
    /// Returns how many rows were recovered.
    pub async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        let reply = crate::reply::Reply::new(
            crate::reply::Outcome::Failed,
            "This request was interrupted",
        )
        .text("oncall stopped while it ran, so whether it took effect is unknown. Check the target (for example with `/oncall status`) before asking again.");
        let json = serde_json::to_string(&reply).unwrap_or_default();
        let (rows, _keys) = delegate!(self.recover_interrupted(&json))?;
        Ok(rows)
    }

    /// Deletes history older than `before_ms` (`oncall history prune`).
    pub async fn prune_history(&self, before_ms: i64) -> Result<u64, StoreError> {
        delegate!(self.prune_history(before_ms))
    }

    /// Forgets stored replies older than `before_ms` (`database.reply_retention`).
    pub async fn prune_replies(&self, before_ms: i64) -> Result<u64, StoreError> {
        delegate!(self.prune_replies(before_ms))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self.ping())
    }

    /// Commits one small write (`/readyz`: the database takes writes).
    pub async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        delegate!(self.check_writable(now_ms))
    }

    /// What is pending or open now, for the metrics' gauges.
    pub async fn gauges(&self, now_ms: i64) -> Result<Gauges, StoreError> {
        delegate!(self.gauges(now_ms))
    }

    /// A consistent copy of the whole database, taken while it is in use,
    /// written to `to` (which must not exist).
    pub async fn backup(&self, to: &Path) -> Result<(), StoreError> {
        delegate!(self.backup(to))
    }

    /// (commits, writes) of history writes since start: under load there
    /// are far fewer commits than writes (group commit).
    pub fn commit_counts(&self) -> (u64, u64) {
        match &self.backend {
            Backend::Sqlite(s) => s.commit_counts(),
            Backend::Postgres(s) => s.commit_counts(),
        }
    }

    /// Starts an invocation in one commit: claims its idempotency key, if it
    /// has one, and writes its row. Exactly one caller per key gets `Begun`.
    pub async fn start_invocation(
        &self,
        inv: &NewInvocation,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        delegate!(self.start_invocation(inv, now_ms))
    }

    /// Completes an invocation in one commit: its row, and the reply kept for
    /// its idempotency key.
    pub async fn finish_invocation(
        &self,
        id: i64,
        c: &Completion,
        key_reply: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        delegate!(self.finish_invocation(id, c, key_reply))
    }

    /// Records, in one commit, a whole invocation of a command that changed
    /// nothing (nothing was claimed before it ran: running it again would
    /// have been harmless), with the reply kept for its key. A key seen
    /// before is a repeat: nothing is written and its claim is returned.
    pub async fn record_invocation(
        &self,
        inv: &NewInvocation,
        c: &Completion,
        reply: Option<&str>,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        delegate!(self.record_invocation(inv, c, reply, now_ms))
    }

    /// The stored reply of a finished idempotency key, if it has finished.
    pub async fn key_reply(&self, key: &str) -> Result<Option<String>, StoreError> {
        delegate!(self.key_reply(key))
    }

    pub async fn invocation(&self, id: i64) -> Result<Option<InvocationRow>, StoreError> {
        delegate!(self.invocation(id))
    }

    /// History, newest first.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<InvocationRow>, StoreError> {
        delegate!(self.history(q))
    }

    /// Stores a new pending approval; `false` if its id is taken.
    /// The query plan of [`Store::history`] for `q` (for the benchmark).
    pub async fn history_plan(&self, q: &HistoryQuery) -> Result<Vec<String>, StoreError> {
        delegate!(self.history_plan(q))
    }

    pub async fn insert_approval(&self, a: &Approval) -> Result<bool, StoreError> {
        delegate!(self.insert_approval(a))
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        delegate!(self.approval(id))
    }

    /// Moves a pending approval to `state`; returns it as decided if this
    /// caller made the transition (so two approvers racing cannot both run
    /// it), `None` if it was no longer pending.
    pub async fn decide_approval(
        &self,
        id: &str,
        state: ApprovalState,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        let mut tx = self.begin().await?;
        let decided = tx.decide_approval(id, state, by, at_ms).await?;
        tx.commit().await?;
        Ok(decided)
    }

    /// Approves a pending request and starts its execution row, as one
    /// unit: `Ok(Some(row id))` when this caller approved it and the row is
    /// written; `Ok(None)` if it was no longer pending; an error leaves it
    /// pending, as if nobody had pressed approve.
    pub async fn consume_approval(
        &self,
        id: &str,
        by: &str,
        at_ms: i64,
        execution: &NewInvocation,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        if tx
            .decide_approval(id, ApprovalState::Approved, by, at_ms)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let row = tx.start_execution(id, execution).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Marks every pending approval past its deadline as expired.
    pub async fn expire_approvals(&self, now_ms: i64) -> Result<u64, StoreError> {
        delegate!(self.expire_approvals(now_ms))
    }

    /// A transaction: state changes and the outbox messages they cause,
    /// committed together by [`StoreTx::commit`], or not at all if dropped.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => StoreTx::Sqlite(s.begin().await?),
            Backend::Postgres(s) => StoreTx::Postgres(s.begin().await?),
        })
    }

    /// Begins a leader's term: increments the epoch (returned), records who
    /// holds it, and takes over every outbox claim of an older term.
    pub async fn begin_term(&self, holder: &str, now_ms: i64) -> Result<i64, StoreError> {
        delegate!(self.begin_term(holder, now_ms))
    }

    /// The current term's epoch (0 before any term).
    pub async fn epoch(&self) -> Result<i64, StoreError> {
        delegate!(self.epoch())
    }

    /// Claims up to `limit` due messages for the term `fence` until
    /// `until_ms` (oldest first): nothing when the fence is stale. A claim
    /// past its deadline is due again.
    pub async fn claim_outbox(
        &self,
        now_ms: i64,
        limit: u32,
        fence: Option<i64>,
        until_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        delegate!(self.claim_outbox(now_ms, limit, fence, until_ms))
    }

    /// [`Store::outbox_sent_many`] for the term `fence`: nothing when stale.
    pub async fn outbox_sent_fenced(
        &self,
        ids: &[i64],
        at_ms: i64,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        delegate!(self.outbox_sent_fenced(ids, at_ms, fence))
    }

    /// [`Store::outbox_failed`] for the term `fence`: nothing when stale.
    pub async fn outbox_failed_fenced(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        delegate!(self.outbox_failed_fenced(id, error, retry_at_ms, fence))
    }

    /// Pending messages whose time has come, oldest first.
    pub async fn due_outbox(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        delegate!(self.due_outbox(now_ms, limit))
    }

    /// The message was delivered.
    pub async fn outbox_sent(&self, id: i64, at_ms: i64) -> Result<(), StoreError> {
        delegate!(self.outbox_sent_fenced(&[id], at_ms, None))
    }

    /// These messages were delivered (one transaction).
    pub async fn outbox_sent_many(&self, ids: &[i64], at_ms: i64) -> Result<(), StoreError> {
        delegate!(self.outbox_sent_fenced(ids, at_ms, None))
    }

    /// The attempt failed: try again at `retry_at_ms`, or give up (`None`).
    pub async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        delegate!(self.outbox_failed_fenced(id, error, retry_at_ms, None))
    }
}

/// An open transaction of the store (see [`Store::begin`]).
pub enum StoreTx {
    Sqlite(sqlite::SqliteTx),
    Postgres(postgres::PgTx),
}

impl StoreTx {
    /// Adds a message to the outbox in this transaction. Returns its id, or
    /// `None` if a message with the same dedup key exists (already enqueued
    /// by an earlier attempt at the same state change).
    pub async fn enqueue(&mut self, m: &NewOutboxMessage) -> Result<Option<i64>, StoreError> {
        match self {
            StoreTx::Sqlite(tx) => tx.enqueue(m).await,
            StoreTx::Postgres(tx) => tx.enqueue(m).await,
        }
    }

    /// [`Store::decide_approval`], inside this transaction.
    pub async fn decide_approval(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        match self {
            StoreTx::Sqlite(tx) => tx.decide_approval(id, state, by, at_ms).await,
            StoreTx::Postgres(tx) => tx.decide_approval(id, state, by, at_ms).await,
        }
    }

    /// Writes an approved request's execution row, linked to its approval.
    pub async fn start_execution(
        &mut self,
        approval_id: &str,
        row: &NewInvocation,
    ) -> Result<i64, StoreError> {
        match self {
            StoreTx::Sqlite(tx) => tx.start_execution(approval_id, row).await,
            StoreTx::Postgres(tx) => tx.start_execution(approval_id, row).await,
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            StoreTx::Sqlite(tx) => tx.commit().await,
            StoreTx::Postgres(tx) => tx.commit().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oncall_grammar::parse;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("oncall.db")).await.unwrap();
        (store, dir)
    }

    fn approval(id: &str) -> Approval {
        Approval {
            id: id.into(),
            created_at_ms: 1_000,
            expires_at_ms: 901_000,
            requester: "slack:UOPS1".parse().unwrap(),
            requester_groups: vec!["slack-group:SOPS".parse().unwrap()],
            platform: "slack".into(),
            workspace: Some("T1".into()),
            channel: "C1".into(),
            text: "scale backend 0".into(),
            command: parse("scale backend 0").unwrap().command,
            rule: "scale-to-zero".into(),
            scope: Some("services backend (deployment/backend in default@default)".into()),
            approvers: vec!["admin".into()],
            state: ApprovalState::Pending,
            decided_by: None,
            decided_at_ms: None,
            request_invocation_id: None,
            execution_invocation_id: None,
        }
    }

    fn page(key: &str) -> NewOutboxMessage {
        NewOutboxMessage {
            kind: "page.webhook".into(),
            dedup_key: key.into(),
            payload: serde_json::json!({"text": "backend is down"}),
            created_at_ms: 5_000,
            not_before_ms: 5_000,
        }
    }

    fn invocation(principal: &str, key: Option<&str>) -> NewInvocation {
        NewInvocation {
            received_at_ms: 5_000,
            platform: "cli".into(),
            workspace: None,
            channel: "console".into(),
            principal: principal.into(),
            groups: vec![],
            text: "whoami".into(),
            idempotency_key: key.map(Into::into),
            facts: Default::default(),
        }
    }

    /// Writes waiting together share one commit, and each still gets its
    /// own answer.
    #[tokio::test]
    async fn concurrent_writes_share_one_commit() {
        let (store, _dir) = store().await;
        let (commits_before, _) = store.commit_counts();
        let invs: Vec<NewInvocation> = (0..64)
            .map(|i| invocation(&format!("cli:user{i}"), None))
            .collect();
        let started =
            futures::future::join_all(invs.iter().map(|inv| store.start_invocation(inv, 5_000)))
                .await;
        let mut ids = Vec::new();
        for s in started {
            match s.unwrap() {
                Start::Begun(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 64, "each write its own row");
        let (commits, writes) = store.commit_counts();
        // The writer thread may wake between the first writes and the rest;
        // without batching it would commit 64 times.
        let used = commits - commits_before;
        assert!(used < 16, "{used} commits for 64 writes");
        assert!(writes >= 64);
        for id in ids {
            assert!(store.invocation(id).await.unwrap().is_some());
        }
    }

    /// In one batch, one key is claimed once; a write that fails fails alone.
    #[tokio::test]
    async fn a_batch_claims_a_key_once_and_isolates_a_failing_write() {
        let (store, _dir) = store().await;
        let Backend::Sqlite(sqlite) = &store.backend else {
            unreachable!("a SQLite store")
        };
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON invocations WHEN NEW.principal = 'cli:bad'
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(sqlite.pool())
        .await
        .unwrap();
        let mut invs: Vec<NewInvocation> = (0..10)
            .map(|_| invocation("cli:same", Some("k1")))
            .collect();
        invs.push(invocation("cli:bad", None));
        invs.push(invocation("cli:good", None));
        let started =
            futures::future::join_all(invs.iter().map(|inv| store.start_invocation(inv, 5_000)))
                .await;
        let begun = started[..10]
            .iter()
            .filter(|s| matches!(s, Ok(Start::Begun(_))))
            .count();
        let repeats = started[..10]
            .iter()
            .filter(|s| matches!(s, Ok(Start::Repeat(KeyClaim::Running))))
            .count();
        assert_eq!((begun, repeats), (1, 9), "{started:?}");
        assert!(started[10].is_err(), "{:?}", started[10]);
        let Ok(Start::Begun(good)) = started[11] else {
            panic!("{:?}", started[11]);
        };
        assert!(store.invocation(good).await.unwrap().is_some());
        let rows = store.history(&HistoryQuery::default()).await.unwrap();
        assert!(rows.iter().all(|r| r.principal != "cli:bad"), "{rows:?}");
    }

    /// The keys are indexed in the writer's memory: a key written before
    /// a restart is a repeat after it, a pruned key is new again, and a
    /// stored reply is found both ways.
    #[tokio::test]
    async fn keys_outlive_a_restart_and_pruned_keys_are_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oncall.db");
        let done = Completion {
            decision: "allow".into(),
            outcome: "ok".into(),
            ..Completion::default()
        };
        {
            let store = Store::open(&path).await.unwrap();
            for (key, reply) in [
                ("slack:one", "{\"text\":\"one\"}"),
                ("slack:two", "{\"text\":\"two\"}"),
            ] {
                let inv = invocation("cli:u", Some(key));
                assert!(matches!(
                    store
                        .record_invocation(&inv, &done, Some(reply), 1_000)
                        .await
                        .unwrap(),
                    Start::Begun(_)
                ));
            }
            let running = invocation("cli:u", Some("slack:three"));
            assert!(matches!(
                store.start_invocation(&running, 9_000).await.unwrap(),
                Start::Begun(_)
            ));
        }
        let store = Store::open(&path).await.unwrap();
        match store
            .record_invocation(
                &invocation("cli:u", Some("slack:two")),
                &done,
                Some("{}"),
                2_000,
            )
            .await
            .unwrap()
        {
            Start::Repeat(KeyClaim::Done(reply)) => assert_eq!(reply, "{\"text\":\"two\"}"),
            other => panic!("a key from before the restart repeats, not {other:?}"),
        }
        assert!(matches!(
            store
                .start_invocation(&invocation("cli:u", Some("slack:three")), 9_500)
                .await
                .unwrap(),
            Start::Repeat(KeyClaim::Running)
        ));
        assert_eq!(
            store.key_reply("slack:one").await.unwrap().as_deref(),
            Some("{\"text\":\"one\"}")
        );
        assert_eq!(
            store.key_reply("slack:three").await.unwrap(),
            None,
            "still running"
        );
        assert_eq!(store.key_reply("slack:never").await.unwrap(), None);
        // Pruned: its index entry is left, and the table decides.
        assert_eq!(store.prune_replies(5_000).await.unwrap(), 2);
        assert_eq!(store.key_reply("slack:one").await.unwrap(), None);
        assert!(matches!(
            store
                .record_invocation(
                    &invocation("cli:u", Some("slack:one")),
                    &done,
                    Some("{}"),
                    6_000
                )
                .await
                .unwrap(),
            Start::Begun(_)
        ));
        assert!(matches!(
            store
                .record_invocation(
                    &invocation("cli:u", Some("slack:one")),
                    &done,
                    Some("{}"),
                    6_000
                )
                .await
                .unwrap(),
            Start::Repeat(KeyClaim::Done(_))
        ));
    }

    #[tokio::test]
    async fn an_approval_is_consumed_only_with_its_execution_row() {
        let (store, dir) = store().await;
        assert!(store.insert_approval(&approval("unit01")).await.unwrap());
        let row = NewInvocation {
            received_at_ms: 5_000,
            platform: "cli".into(),
            workspace: None,
            channel: "console".into(),
            principal: "cli:operator".into(),
            groups: vec![],
            text: "restart backend".into(),
            idempotency_key: None,
            facts: Default::default(),
        };
        // The execution row can't be written (a full disk, say): the
        // request stays pending.
        let path = dir.path().join("oncall.db");
        let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            path.display()
        ))
        .await
        .unwrap();
        sqlx::query("CREATE TRIGGER full_disk BEFORE INSERT ON invocations BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
            .execute(&mut raw)
            .await
            .unwrap();
        assert!(store
            .consume_approval("unit01", "cli:admin", 6_000, &row)
            .await
            .is_err());
        let still = store.approval("unit01").await.unwrap().unwrap();
        assert_eq!(still.state, ApprovalState::Pending);
        // Once rows can be written, approving consumes it and links its row.
        sqlx::query("DROP TRIGGER full_disk")
            .execute(&mut raw)
            .await
            .unwrap();
        let exec = store
            .consume_approval("unit01", "cli:admin", 7_000, &row)
            .await
            .unwrap()
            .expect("this caller approved it");
        let done = store.approval("unit01").await.unwrap().unwrap();
        assert_eq!(done.state, ApprovalState::Approved);
        assert_eq!(done.execution_invocation_id, Some(exec));
        // A second approver finds it decided.
        assert_eq!(
            store
                .consume_approval("unit01", "cli:other", 8_000, &row)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn pruning_deletes_old_rows_but_keeps_what_a_pending_approval_needs() {
        let (store, _dir) = store().await;
        let row = |at: i64, key: Option<&str>| NewInvocation {
            received_at_ms: at,
            platform: "cli".into(),
            workspace: None,
            channel: "console".into(),
            principal: "cli:operator".into(),
            groups: vec![],
            text: "status backend".into(),
            idempotency_key: key.map(String::from),
            facts: Default::default(),
        };
        let mut ids = Vec::new();
        for (at, key) in [
            (1_000, Some("old-key")),
            (2_000, None),
            (3_000, None),
            (9_000, Some("new-key")),
        ] {
            match store.start_invocation(&row(at, key), at).await.unwrap() {
                Start::Begun(id) => ids.push(id),
                _ => panic!("new rows begin"),
            }
        }
        // A pending approval still points at the row from 3_000.
        let mut pending = approval("keep01");
        pending.request_invocation_id = Some(ids[2]);
        assert!(store.insert_approval(&pending).await.unwrap());
        let deleted = store.prune_history(5_000).await.unwrap();
        assert_eq!(deleted, 2, "the two old rows nobody needs");
        assert!(store.invocation(ids[0]).await.unwrap().is_none());
        assert!(store.invocation(ids[1]).await.unwrap().is_none());
        assert!(
            store.invocation(ids[2]).await.unwrap().is_some(),
            "needed by a pending approval"
        );
        assert!(store.invocation(ids[3]).await.unwrap().is_some(), "recent");
        assert!(store.approval("keep01").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn requests_left_running_are_marked_interrupted_and_their_keys_answered() {
        let (store, _dir) = store().await;
        let inv = NewInvocation {
            received_at_ms: 1_000,
            platform: "slack".into(),
            workspace: None,
            channel: "C1".into(),
            principal: "slack:U1".into(),
            groups: vec![],
            text: "scale backend 5".into(),
            idempotency_key: Some("slack:T1:trigger".into()),
            facts: CommandFacts {
                verb: Some("scale".into()),
                command: Some("scale backend 5".into()),
                service: Some("backend".into()),
                mutating: true,
                dry_run: false,
            },
        };
        let Start::Begun(id) = store.start_invocation(&inv, 1_000).await.unwrap() else {
            panic!("a new key begins");
        };
        // The process stops here; the next one starts.
        assert!(matches!(
            store.start_invocation(&inv, 2_000).await.unwrap(),
            Start::Repeat(KeyClaim::Running)
        ));
        assert_eq!(store.recover_interrupted().await.unwrap(), 1);
        let row = store.invocation(id).await.unwrap().unwrap();
        assert_eq!(row.outcome, "interrupted");
        // What was cut off is plain from the row written before it ran.
        assert_eq!(row.verb.as_deref(), Some("scale"));
        assert_eq!(row.service.as_deref(), Some("backend"));
        assert!(row.mutating);
        match store.start_invocation(&inv, 3_000).await.unwrap() {
            Start::Repeat(KeyClaim::Done(reply)) => {
                assert!(reply.contains("interrupted"), "{reply}")
            }
            other => panic!("the repeat gets an answer, not {other:?}"),
        }
        // Nothing else is touched by a second recovery.
        assert_eq!(store.recover_interrupted().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn approvals_round_trip_as_domain_types() {
        let (store, _dir) = store().await;
        assert!(store.insert_approval(&approval("abc123")).await.unwrap());
        assert!(
            !store.insert_approval(&approval("abc123")).await.unwrap(),
            "a taken id is reported, not overwritten"
        );
        let back = store.approval("abc123").await.unwrap().unwrap();
        assert_eq!(back, approval("abc123"));
        let decided = store
            .decide_approval("abc123", ApprovalState::Approved, "slack:UADMIN", 7_000)
            .await
            .unwrap()
            .expect("this caller decided it");
        assert_eq!(decided.state, ApprovalState::Approved);
        assert_eq!(decided.decided_by.as_deref(), Some("slack:UADMIN"));
        assert_eq!(decided.decided_at_ms, Some(7_000));
        assert_eq!(
            store
                .decide_approval("abc123", ApprovalState::Denied, "slack:UOTHER", 8_000)
                .await
                .unwrap(),
            None,
            "a decided request cannot be decided again"
        );
    }

    #[tokio::test]
    async fn a_state_change_and_its_outbox_rows_commit_together_or_not_at_all() {
        let (store, _dir) = store().await;
        store.insert_approval(&approval("one")).await.unwrap();
        store.insert_approval(&approval("two")).await.unwrap();

        // Dropped without commit: neither the decision nor the message.
        {
            let mut tx = store.begin().await.unwrap();
            tx.decide_approval("one", ApprovalState::Approved, "slack:UADMIN", 6_000)
                .await
                .unwrap()
                .unwrap();
            tx.enqueue(&page("approval:one")).await.unwrap().unwrap();
        }
        assert_eq!(
            store.approval("one").await.unwrap().unwrap().state,
            ApprovalState::Pending
        );
        assert!(store.due_outbox(10_000, 10).await.unwrap().is_empty());

        // Committed: both.
        let mut tx = store.begin().await.unwrap();
        tx.decide_approval("two", ApprovalState::Approved, "slack:UADMIN", 6_000)
            .await
            .unwrap()
            .unwrap();
        let id = tx.enqueue(&page("approval:two")).await.unwrap().unwrap();
        assert_eq!(
            tx.enqueue(&page("approval:two")).await.unwrap(),
            None,
            "the same dedup key is enqueued once"
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.approval("two").await.unwrap().unwrap().state,
            ApprovalState::Approved
        );
        let due = store.due_outbox(10_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, id);
        assert_eq!(due[0].payload["text"], "backend is down");
        assert_eq!(due[0].state, OutboxState::Pending);
    }

    #[tokio::test]
    async fn outbox_messages_wait_for_their_time_retry_and_finish() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        let id = tx.enqueue(&page("p1")).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert!(
            store.due_outbox(4_999, 10).await.unwrap().is_empty(),
            "not before its time"
        );
        store
            .outbox_failed(id, "HTTP 503", Some(20_000))
            .await
            .unwrap();
        assert!(store.due_outbox(19_999, 10).await.unwrap().is_empty());
        let due = store.due_outbox(20_000, 10).await.unwrap();
        assert_eq!(due[0].attempts, 1);
        assert_eq!(due[0].last_error.as_deref(), Some("HTTP 503"));
        store.outbox_sent(id, 21_000).await.unwrap();
        assert!(store.due_outbox(99_000, 10).await.unwrap().is_empty());

        let mut tx = store.begin().await.unwrap();
        let doomed = tx.enqueue(&page("p2")).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        store.outbox_failed(doomed, "HTTP 400", None).await.unwrap();
        assert!(
            store.due_outbox(99_000, 10).await.unwrap().is_empty(),
            "a message given up on is not sent again"
        );
    }

    #[tokio::test]
    async fn a_stale_term_claims_and_finishes_nothing_and_a_new_term_takes_over_its_claims() {
        let (store, _dir) = store().await;
        assert_eq!(store.epoch().await.unwrap(), 0);
        let one = store.begin_term("replica-a", 1_000).await.unwrap();
        assert_eq!(one, 1);
        let mut tx = store.begin().await.unwrap();
        let p1 = tx.enqueue(&page("p1")).await.unwrap().unwrap();
        let p2 = tx.enqueue(&page("p2")).await.unwrap().unwrap();
        tx.commit().await.unwrap();

        let claimed = store
            .claim_outbox(10_000, 10, Some(one), 30_000)
            .await
            .unwrap();
        assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), [p1, p2]);
        assert!(
            store
                .claim_outbox(10_001, 10, Some(one), 40_000)
                .await
                .unwrap()
                .is_empty(),
            "claimed rows are not claimed again before their deadline"
        );
        // Past the deadline (the sender died mid-send): due again, under
        // the same dedup keys.
        let again = store
            .claim_outbox(30_000, 10, Some(one), 60_000)
            .await
            .unwrap();
        let keys: Vec<&str> = again.iter().map(|m| m.dedup_key.as_str()).collect();
        assert_eq!(keys, ["p1", "p2"]);

        // Another process takes over.
        let two = store.begin_term("replica-b", 31_000).await.unwrap();
        assert_eq!(two, 2);
        assert_eq!(store.epoch().await.unwrap(), 2);
        // The old term claims nothing and its results change nothing.
        assert!(store
            .claim_outbox(31_000, 10, Some(one), 90_000)
            .await
            .unwrap()
            .is_empty());
        store
            .outbox_sent_fenced(&[p1], 31_000, Some(one))
            .await
            .unwrap();
        store
            .outbox_failed_fenced(p2, "HTTP 400", None, Some(one))
            .await
            .unwrap();
        // The new term takes over the old claims at once (their deadline
        // is 60 000), and nothing the stale term said was recorded.
        let taken = store
            .claim_outbox(31_000, 10, Some(two), 151_000)
            .await
            .unwrap();
        assert_eq!(taken.len(), 2, "{taken:?}");
        assert!(taken
            .iter()
            .all(|m| m.attempts == 0 && m.state == OutboxState::Pending));
        store
            .outbox_sent_fenced(&[p1], 32_000, Some(two))
            .await
            .unwrap();
        store
            .outbox_failed_fenced(p2, "HTTP 503", Some(40_000), Some(two))
            .await
            .unwrap();
        // A retry clears the claim: the row is due at its retry time.
        assert!(store
            .claim_outbox(39_999, 10, Some(two), 200_000)
            .await
            .unwrap()
            .is_empty());
        let retried = store
            .claim_outbox(40_000, 10, Some(two), 200_000)
            .await
            .unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].id, p2);
        assert_eq!(retried[0].attempts, 1);
        assert!(
            store
                .due_outbox(99_000, 10)
                .await
                .unwrap()
                .iter()
                .all(|m| m.id != p1),
            "p1 was sent"
        );
    }
}
