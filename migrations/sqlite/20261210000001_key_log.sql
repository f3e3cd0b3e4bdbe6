-- Fewer pages written per commit on the history's hot path.
--
-- The idempotency keys become an append-only log. A key is a random string
-- (a Slack trigger id, a Discord interaction id), so an index on it puts each
-- new key on a random page of a large B-tree: most of the pages a batch of
-- history writes committed were that index's. The history writer keeps its
-- own index of the keys in memory (hash to row id, rebuilt from this table at
-- start, see `store::key_index`) and is the only one that writes them, so the
-- table needs no index on `key`; rows are appended in `id` order.
CREATE TABLE idempotency_keys_log (
    id            INTEGER PRIMARY KEY,
    key           TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('running', 'done')),
    reply         TEXT,
    invocation_id INTEGER REFERENCES invocations (id),
    created_at    INTEGER NOT NULL
);
INSERT INTO idempotency_keys_log (key, state, reply, invocation_id, created_at)
    SELECT key, state, reply, invocation_id, created_at FROM idempotency_keys
    ORDER BY created_at, rowid;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_log RENAME TO idempotency_keys;
-- Pruning by age, and the requests left running by a stopped process: both
-- grow at the end only.
CREATE INDEX idempotency_keys_by_time ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_running ON idempotency_keys (state) WHERE state = 'running';

-- The history's indexes ascending: a new row's entries go at the end of
-- their range instead of at its start (which split pages half full), and
-- walked backwards they give `ORDER BY received_at DESC, id DESC` with no
-- sort step (the row id is each entry's last column).
DROP INDEX invocations_by_time;
DROP INDEX invocations_by_principal;
DROP INDEX invocations_by_service;
CREATE INDEX invocations_by_time ON invocations (received_at);
CREATE INDEX invocations_by_principal ON invocations (principal, received_at);
CREATE INDEX invocations_by_service ON invocations (service, received_at);
