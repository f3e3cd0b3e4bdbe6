-- Alerts received from Alertmanager and Grafana. An alert is identified by
-- its fingerprint and when it started (a new firing of the same rule and
-- labels is a new alert); every delivery carries the whole group, so a
-- repeat only counts. A resolve that arrives first is kept, and a late
-- firing of the same alert does not undo it.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    starts_at     TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    alertname     TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    generator_url TEXT,
    route         TEXT,
    incident_id   INTEGER REFERENCES incidents (id),
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    deliveries    INTEGER NOT NULL DEFAULT 1,
    resolved_seen INTEGER,
    UNIQUE (source, fingerprint, starts_at)
);
CREATE INDEX alerts_by_group ON alerts (source, group_key);
CREATE INDEX alerts_firing ON alerts (status, first_seen);
CREATE INDEX alerts_by_incident ON alerts (incident_id) WHERE incident_id IS NOT NULL;

-- The open incident of an alert group: a group's alerts join it until it
-- is resolved; then a new firing opens a new one.
CREATE TABLE alert_groups (
    source      TEXT    NOT NULL,
    group_key   TEXT    NOT NULL,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    opened_at   INTEGER NOT NULL,
    PRIMARY KEY (source, group_key)
);
