-- Incidents, their roles, and their timeline. The timeline is append-only:
-- a correction is a new event, never an edit.
CREATE TABLE incidents (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    title              TEXT    NOT NULL,
    severity           TEXT    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('investigating', 'identified', 'monitoring', 'resolved')),
    services           TEXT    NOT NULL DEFAULT '[]',
    declared_at        INTEGER NOT NULL,
    declared_by        TEXT    NOT NULL,
    platform           TEXT    NOT NULL,
    workspace          TEXT,
    declared_in        TEXT    NOT NULL,
    -- The incident's own channel: the name meant for it (stored with the
    -- incident, before anything is created, so a crash in between is
    -- finished by the next process), and its id once it exists.
    channel_name       TEXT,
    channel            TEXT,
    -- Whether the declaration was announced in the incidents channel.
    announced          INTEGER NOT NULL DEFAULT 0,
    -- The last timeline event posted to the incident's own channel.
    posted_through     INTEGER NOT NULL DEFAULT 0,
    acknowledged_at    INTEGER,
    acknowledged_by    TEXT,
    mitigated_at       INTEGER,
    resolved_at        INTEGER,
    resolved_by        TEXT,
    summary            TEXT,
    last_update_at     INTEGER NOT NULL,
    -- When the commander is next reminded to post an update (NULL: never).
    next_reminder_at   INTEGER
);
CREATE INDEX incidents_by_state ON incidents (state, id);
CREATE UNIQUE INDEX incidents_by_channel ON incidents (platform, channel) WHERE channel IS NOT NULL;
CREATE INDEX incidents_reminders_due ON incidents (next_reminder_at) WHERE next_reminder_at IS NOT NULL;

CREATE TABLE incident_roles (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    role        TEXT    NOT NULL,
    principal   TEXT    NOT NULL,
    assigned_at INTEGER NOT NULL,
    assigned_by TEXT    NOT NULL,
    PRIMARY KEY (incident_id, role)
);

CREATE TABLE incident_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id),
    at            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    text          TEXT    NOT NULL,
    invocation_id INTEGER REFERENCES invocations (id),
    -- What the event came from when it must be added once (a pinned
    -- message: its platform message id), however often it arrives.
    source_ref    TEXT
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);
CREATE UNIQUE INDEX incident_events_once ON incident_events (incident_id, source_ref)
    WHERE source_ref IS NOT NULL;
