-- Every alert group has a row now, not only those that opened an incident:
-- the group's one message in the channel (posted once, then updated in
-- place) is tracked here. `card_version` moves whenever what the message
-- shows changes (a delivery that fires or resolves an alert, the
-- incident's state, its escalation acknowledged or stopped); the courier
-- posts or updates the message while `posted_version` is behind.
-- A `business-hours` group fired outside business hours holds the incident
-- to open (`pending_open`) and when (`open_at`), if it still fires then.
CREATE TABLE alert_groups_new (
    source         TEXT    NOT NULL,
    group_key      TEXT    NOT NULL,
    incident_id    INTEGER REFERENCES incidents (id),
    opened_at      INTEGER,
    route          TEXT,
    title          TEXT    NOT NULL DEFAULT '',
    service        TEXT,
    platform       TEXT,
    channel        TEXT,
    message_id     TEXT,
    card_version   INTEGER NOT NULL DEFAULT 1,
    posted_version INTEGER NOT NULL DEFAULT 0,
    enrichment     TEXT,
    open_at        INTEGER,
    pending_open   TEXT,
    first_seen     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, group_key)
);
INSERT INTO alert_groups_new (source, group_key, incident_id, opened_at, first_seen,
                              card_version, posted_version)
    SELECT source, group_key, incident_id, opened_at, opened_at, 0, 0 FROM alert_groups;
DROP TABLE alert_groups;
ALTER TABLE alert_groups_new RENAME TO alert_groups;
CREATE INDEX alert_groups_to_post ON alert_groups (first_seen) WHERE posted_version < card_version;
CREATE INDEX alert_groups_deferred ON alert_groups (open_at) WHERE open_at IS NOT NULL;
CREATE INDEX alert_groups_by_incident ON alert_groups (incident_id) WHERE incident_id IS NOT NULL;

CREATE TRIGGER alert_card_on_incident AFTER UPDATE OF state, severity, acknowledged_at ON incidents
WHEN OLD.state IS NOT NEW.state OR OLD.severity IS NOT NEW.severity
  OR OLD.acknowledged_at IS NOT NEW.acknowledged_at
BEGIN
    UPDATE alert_groups SET card_version = card_version + 1 WHERE incident_id = NEW.id;
END;
CREATE TRIGGER alert_card_on_escalation AFTER UPDATE OF state ON escalations
WHEN OLD.state IS NOT NEW.state
BEGIN
    UPDATE alert_groups SET card_version = card_version + 1 WHERE incident_id = NEW.incident_id;
END;

-- First-response buttons: a route's `actions`, offered on its group's
-- message for one incident. A button runs once (claimed by whoever pressed
-- it; released again when policy refused them), and not after `expires_at`
-- or once its incident is resolved.
CREATE TABLE alert_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    source      TEXT    NOT NULL,
    group_key   TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    command     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    claimed_by  TEXT,
    claimed_at  INTEGER,
    claim_key   TEXT,
    outcome     TEXT,
    UNIQUE (incident_id, source, group_key, position)
);

-- Silences oncall created in Alertmanager (`silence`), so `unsilence`
-- can name the alert rather than Alertmanager's id.
CREATE TABLE alert_silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    silence_id  TEXT    NOT NULL UNIQUE,
    target      TEXT    NOT NULL,
    matchers    TEXT    NOT NULL,
    comment     TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    incident_id INTEGER REFERENCES incidents (id),
    expired_at  INTEGER,
    expired_by  TEXT
);
CREATE INDEX alert_silences_by_target ON alert_silences (target, ends_at) WHERE expired_at IS NULL;
