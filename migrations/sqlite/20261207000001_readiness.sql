-- One row that `/readyz` rewrites: a readiness check proves the database
-- takes a write (not only that it answers a read).
CREATE TABLE readiness (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);
