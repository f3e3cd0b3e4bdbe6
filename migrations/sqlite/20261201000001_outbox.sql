-- Messages to send (chat posts, pages), written in the same transaction as
-- the state change that causes them, and drained by supervised senders. The
-- dedup key is derived from the state change, so a resend after a crash is
-- recognised by the provider (and by this table) as the same message.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at      INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    dedup_key       TEXT    NOT NULL UNIQUE,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
