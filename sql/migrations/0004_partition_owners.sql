-- 0004_partition_owners.sql: which host decides each partition of the issue topic, and since when.
-- Ownership itself is the PostgreSQL advisory lock (lock key of the topic, partition) held by the
-- consumer's session; this table only says who holds it. The consumer that takes the lock upserts its
-- row right after, in the same session, so `since` is the moment of each acquisition (a takeover too).
-- A standby host reads the row to name the owner it waits behind (docs/data.md, "Ownership and fencing").
CREATE TABLE partition_owners (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    node        text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
