-- Fencing: the leader's term. Each takeover (a process starting alone, or
-- a replica winning the Lease) increments the epoch; the engine's and the
-- outbox senders' writes carry the epoch they were started under and change
-- nothing once it is stale, so a deposed leader never pages.
CREATE TABLE leadership (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL,
    holder TEXT    NOT NULL,
    since  INTEGER NOT NULL
);

-- An outbox row being sent: claimed by a term until a deadline. A row
-- past its deadline (its sender died mid-send) is due again and is sent
-- again under the same dedup key, which the provider folds; a new term
-- takes over the claims of older ones at once.
ALTER TABLE outbox ADD COLUMN claim_epoch INTEGER;
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER;
