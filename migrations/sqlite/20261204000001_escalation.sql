-- Escalations: one row per incident's escalation, holding the policy as it
-- was when it started, the next tier to page and when. A tick advances a
-- due row and writes its pages to the outbox in one transaction, guarded
-- by the row's state, tier and loop, so a step fires once and nothing
-- pages after an acknowledgement.
CREATE TABLE escalations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    policy      TEXT    NOT NULL,
    snapshot    TEXT    NOT NULL,
    tier        INTEGER NOT NULL DEFAULT 0,
    loop        INTEGER NOT NULL DEFAULT 0,
    state       TEXT    NOT NULL CHECK (state IN ('active', 'acknowledged', 'resolved', 'exhausted')),
    next_at     INTEGER,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    ended_by    TEXT
);
CREATE UNIQUE INDEX escalations_one_active ON escalations (incident_id) WHERE state = 'active';
CREATE INDEX escalations_due ON escalations (next_at) WHERE state = 'active';
CREATE INDEX escalations_by_incident ON escalations (incident_id, id);

-- The outbox learns which incident and target a message is for (the
-- timeline hears of failures; rate limits count per target), whether an
-- escalation step wrote it (acknowledging cancels those still pending),
-- and what a multi-part send has done so far (a chat page's message ids).
CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at      INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    dedup_key       TEXT    NOT NULL UNIQUE,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER,
    last_error      TEXT,
    incident_id     INTEGER REFERENCES incidents (id),
    escalation_id   INTEGER REFERENCES escalations (id),
    target          TEXT,
    progress        TEXT
);
INSERT INTO outbox_new (id, created_at, kind, dedup_key, payload, state, attempts,
                        next_attempt_at, sent_at, last_error)
    SELECT id, created_at, kind, dedup_key, payload, state, attempts,
           next_attempt_at, sent_at, last_error FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_incident ON outbox (incident_id, state) WHERE incident_id IS NOT NULL;
CREATE INDEX outbox_by_target ON outbox (target, created_at) WHERE target IS NOT NULL;

-- Schedule overrides: `principal` is on call for `schedule` in [start, end).
CREATE TABLE schedule_overrides (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule   TEXT    NOT NULL,
    principal  TEXT    NOT NULL,
    start_at   INTEGER NOT NULL,
    end_at     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL
);
CREATE INDEX schedule_overrides_by_schedule ON schedule_overrides (schedule, end_at);
