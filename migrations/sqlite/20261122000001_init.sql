-- oncall's history, idempotency keys and approvals.
-- Times are Unix milliseconds (UTC).

-- Every invocation: who, where, what, the decision and why, and the outcome.
CREATE TABLE invocations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at     INTEGER NOT NULL,
    platform        TEXT    NOT NULL,
    workspace       TEXT,
    channel         TEXT    NOT NULL,
    principal       TEXT    NOT NULL,
    groups          TEXT    NOT NULL DEFAULT '[]',
    text            TEXT    NOT NULL,
    verb            TEXT,
    command         TEXT,
    service         TEXT,
    mutating        INTEGER NOT NULL DEFAULT 0,
    dry_run         INTEGER NOT NULL DEFAULT 0,
    decision        TEXT    NOT NULL,
    rule            TEXT,
    reason          TEXT,
    outcome         TEXT    NOT NULL,
    summary         TEXT,
    error           TEXT,
    duration_ms     INTEGER NOT NULL DEFAULT 0,
    approval_id     TEXT,
    idempotency_key TEXT
);
CREATE INDEX invocations_by_time ON invocations (received_at DESC, id DESC);
CREATE INDEX invocations_by_principal ON invocations (principal, received_at DESC);
CREATE INDEX invocations_by_service ON invocations (service, received_at DESC);

-- One row per idempotency key: claimed before execution, answered after.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    state         TEXT    NOT NULL CHECK (state IN ('running', 'done')),
    reply         TEXT,
    invocation_id INTEGER REFERENCES invocations (id),
    created_at    INTEGER NOT NULL
);

-- Requests held for a second person.
CREATE TABLE approvals (
    id                      TEXT PRIMARY KEY,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER NOT NULL,
    requester               TEXT    NOT NULL,
    requester_groups        TEXT    NOT NULL DEFAULT '[]',
    platform                TEXT    NOT NULL,
    workspace               TEXT,
    channel                 TEXT    NOT NULL,
    text                    TEXT    NOT NULL,
    command                 TEXT    NOT NULL,
    rule                    TEXT    NOT NULL,
    approvers               TEXT    NOT NULL,
    state                   TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired')),
    decided_by              TEXT,
    decided_at              INTEGER,
    request_invocation_id   INTEGER REFERENCES invocations (id),
    execution_invocation_id INTEGER REFERENCES invocations (id)
);
CREATE INDEX approvals_pending ON approvals (state, expires_at);
