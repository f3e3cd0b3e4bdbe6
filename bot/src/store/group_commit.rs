//! Group commit for the history's hot path.
//!
//! Every request writes twice: its history row (and idempotency key) before
//! anything runs, and its completion (and stored reply) before the reply is
//! returned. Each write must be durable before its caller goes on, and with
//! `synchronous = FULL` each commit is an fsync. Committing each write on its
//! own makes concurrent requests queue behind one another's fsyncs.
//!
//! So one writer task takes every write that is waiting, applies them all in
//! one transaction, commits once, and only then answers each waiter (if one
//! write fails, the batch is written again one write per transaction, so a
//! failure fails alone). Alone, a write commits at once; under load, batches grow and the
//! fsyncs per request fall. Nobody is answered before the commit that holds
//! their write, so durability is exactly as before.
//!
//! The writer is also the only one that writes idempotency keys, so it keeps
//! their index in memory ([`KeyIndex`], loaded from the table when it starts):
//! the table is appended to, and no commit rewrites a random page of an
//! index on random strings.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::key_index::KeyIndex;
use super::sqlite::hot;
use super::{Completion, NewInvocation, Start, StoreError};

/// How often the writer drops the index entries of pruned keys.
const FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// At most this many writes share one commit (a bound on one transaction's
/// size, far above what a 2-core machine queues).
const MAX_BATCH: usize = 512;

/// One write waiting for the next commit, and, once applied, its result
/// (which stands only if the commit does).
enum Write {
    Start {
        inv: Box<NewInvocation>,
        now_ms: i64,
        result: Option<Result<Start, StoreError>>,
        done: oneshot::Sender<Result<Start, StoreError>>,
    },
    Finish {
        id: i64,
        completion: Completion,
        key_reply: Option<(String, String)>,
        result: Option<Result<(), StoreError>>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A key's stored reply, read where the keys' index is.
    KeyReply {
        key: String,
        result: Option<Result<Option<String>, StoreError>>,
        done: oneshot::Sender<Result<Option<String>, StoreError>>,
    },
    /// A whole invocation that changed nothing.
    Record {
        inv: Box<NewInvocation>,
        completion: Completion,
        reply: Option<String>,
        now_ms: i64,
        result: Option<Result<Start, StoreError>>,
        done: oneshot::Sender<Result<Start, StoreError>>,
    },
}

impl Write {
    /// Applies the write inside the open transaction; whether it failed.
    fn apply(&mut self, conn: &Connection, keys: &mut KeyIndex) -> bool {
        match self {
            Write::Start {
                inv,
                now_ms,
                result,
                ..
            } => {
                let r = hot::start(conn, keys, inv, *now_ms);
                let failed = r.is_err();
                *result = Some(r);
                failed
            }
            Write::Finish {
                id,
                completion,
                key_reply,
                result,
                ..
            } => {
                let key_reply = key_reply.as_ref().map(|(k, r)| (k.as_str(), r.as_str()));
                let r = hot::finish(conn, keys, *id, completion, key_reply);
                let failed = r.is_err();
                *result = Some(r);
                failed
            }
            Write::KeyReply { key, result, .. } => {
                let r = hot::key_reply(conn, keys, key);
                let failed = r.is_err();
                *result = Some(r);
                failed
            }
            Write::Record {
                inv,
                completion,
                reply,
                now_ms,
                result,
                ..
            } => {
                let r = hot::record(conn, keys, inv, completion, reply.as_deref(), *now_ms);
                let failed = r.is_err();
                *result = Some(r);
                failed
            }
        }
    }

    /// Answers the waiter: its own result if the commit held, else the
    /// commit's error.
    fn answer(self, commit_failed: Option<&str>) {
        match self {
            Write::Start { result, done, .. } => {
                let _ = done.send(outcome(commit_failed, result));
            }
            Write::Finish { result, done, .. } => {
                let _ = done.send(outcome(commit_failed, result));
            }
            Write::KeyReply { result, done, .. } => {
                let _ = done.send(outcome(commit_failed, result));
            }
            Write::Record { result, done, .. } => {
                let _ = done.send(outcome(commit_failed, result));
            }
        }
    }
}

fn outcome<T>(
    commit_failed: Option<&str>,
    result: Option<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match (commit_failed, result) {
        (None, Some(r)) => r,
        (Some(why), _) => Err(StoreError::Commit(why.to_string())),
        (None, None) => Err(StoreError::Commit("the write was never applied".into())),
    }
}

/// The handle to the writer task; cheap to clone. The task ends when the
/// last handle is dropped, after committing what it was given.
#[derive(Clone)]
pub struct GroupCommit {
    writes: mpsc::UnboundedSender<Write>,
    counts: Arc<Counts>,
}

/// How many commits carried how many writes, since start.
#[derive(Debug, Default)]
pub struct Counts {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
}

impl GroupCommit {
    /// Starts the writer: a thread of its own with its own connection to
    /// the (migrated) database, so a batch runs without a round trip per
    /// statement.
    pub fn spawn(path: &Path) -> Result<GroupCommit, StoreError> {
        let conn = hot::open(path)?;
        let (writes, queue) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let for_thread = counts.clone();
        std::thread::Builder::new()
            .name("oncall-history".into())
            .spawn(move || run(conn, queue, for_thread))
            .map_err(|e| StoreError::Commit(format!("could not start the history writer: {e}")))?;
        Ok(GroupCommit { writes, counts })
    }

    /// (commits, writes) so far: their ratio is the batching achieved.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.commits.load(Ordering::Relaxed),
            self.counts.writes.load(Ordering::Relaxed),
        )
    }

    /// Claims the idempotency key (if any) and writes the history row; durable
    /// when this returns.
    pub async fn start(&self, inv: &NewInvocation, now_ms: i64) -> Result<Start, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Write::Start {
            inv: Box::new(inv.clone()),
            now_ms,
            result: None,
            done,
        })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Completes the row and keeps the reply for the key; durable when this
    /// returns.
    pub async fn finish(
        &self,
        id: i64,
        completion: &Completion,
        key_reply: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Write::Finish {
            id,
            completion: completion.clone(),
            key_reply: key_reply.map(|(k, r)| (k.to_string(), r.to_string())),
            result: None,
            done,
        })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Records a whole invocation that changed nothing, in one write;
    /// durable when this returns.
    pub async fn record(
        &self,
        inv: &NewInvocation,
        completion: &Completion,
        reply: Option<&str>,
        now_ms: i64,
    ) -> Result<Start, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Write::Record {
            inv: Box::new(inv.clone()),
            completion: completion.clone(),
            reply: reply.map(String::from),
            now_ms,
            result: None,
            done,
        })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// The stored reply of `key`, once its request has finished; read
    /// after the writes ahead of it are committed.
    pub async fn key_reply(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Write::KeyReply {
            key: key.to_string(),
            result: None,
            done,
        })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        self.writes
            .send(write)
            .map_err(|_| StoreError::WriterStopped)
    }
}

/// The writer's loop: index the keys, then wait for one write, take every
/// other one waiting, commit them together. Ends when every handle is gone.
fn run(conn: Connection, mut queue: mpsc::UnboundedReceiver<Write>, counts: Arc<Counts>) {
    let mut writer = Writer {
        conn,
        keys: None,
        forgotten_at: std::time::Instant::now(),
    };
    while let Some(first) = queue.blocking_recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        counts.commits.fetch_add(1, Ordering::Relaxed);
        counts
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        writer.write(&mut batch);
    }
}

/// The writer's connection and its index of the keys.
struct Writer {
    conn: Connection,
    /// `None` until the keys are loaded: without the index no key can be
    /// told new, so no write is applied (failing closed) until it loads.
    keys: Option<KeyIndex>,
    forgotten_at: std::time::Instant,
}

impl Writer {
    fn write(&mut self, batch: &mut Vec<Write>) {
        if self.keys.is_none() {
            let mut keys = KeyIndex::new();
            match hot::load_keys(&self.conn, &mut keys) {
                Ok(()) => {
                    if !keys.is_empty() {
                        tracing::debug!(keys = keys.len(), "idempotency keys indexed");
                    }
                    self.keys = Some(keys);
                }
                Err(e) => {
                    tracing::error!("could not read the idempotency keys: {e}");
                    let why = format!("the idempotency keys could not be read: {e}");
                    for write in batch.drain(..) {
                        write.answer(Some(&why));
                    }
                    return;
                }
            }
        }
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        commit(&self.conn, keys, batch);
        if self.forgotten_at.elapsed() >= FORGET_EVERY {
            self.forgotten_at = std::time::Instant::now();
            match hot::oldest_key(&self.conn) {
                Ok(oldest) => keys.forget_before(oldest),
                Err(e) => tracing::warn!("could not read the oldest idempotency key: {e}"),
            }
        }
    }
}

/// Applies a batch in one transaction, commits, then answers every write
/// with its own result. If a write failed (rare: a constraint, a full
/// disk) or the transaction did, nothing of the batch stands and each write
/// is applied again in a transaction of its own, so a failure fails alone.
fn commit(conn: &Connection, keys: &mut KeyIndex, batch: &mut Vec<Write>) {
    match apply(conn, keys, batch) {
        Ok(Batch::Committed) => {
            for write in batch.drain(..) {
                write.answer(None);
            }
        }
        // Alone, its own result (an error) is the answer.
        Ok(Batch::RolledBack) if batch.len() == 1 => {
            for write in batch.drain(..) {
                write.answer(None);
            }
        }
        Err(e) if batch.len() == 1 => {
            tracing::error!("history commit failed: {e}");
            let why = e.to_string();
            for write in batch.drain(..) {
                write.answer(Some(&why));
            }
        }
        Ok(Batch::RolledBack) | Err(_) => {
            tracing::warn!(
                writes = batch.len(),
                "a history batch failed; writing its rows one by one"
            );
            for write in batch.drain(..) {
                commit(conn, keys, &mut vec![write]);
            }
        }
    }
}

/// How a batch's transaction ended.
enum Batch {
    /// Every write applied and the transaction committed.
    Committed,
    /// A write failed (its result says why): nothing was kept.
    RolledBack,
}

/// Every write of the batch in one `BEGIN IMMEDIATE` transaction; the keys'
/// index keeps the transaction's entries only if it commits.
fn apply(conn: &Connection, keys: &mut KeyIndex, batch: &mut [Write]) -> Result<Batch, StoreError> {
    hot::begin(conn)?;
    for write in batch.iter_mut() {
        if write.apply(conn, keys) {
            hot::rollback(conn);
            keys.rollback();
            return Ok(Batch::RolledBack);
        }
    }
    if let Err(e) = hot::commit(conn) {
        hot::rollback(conn);
        keys.rollback();
        return Err(e);
    }
    keys.commit();
    Ok(Batch::Committed)
}
