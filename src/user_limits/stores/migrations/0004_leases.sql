-- The consumer fleet's leases: one row per shard (kinesis.leases). holder is NULL for a free
-- lease; counter moves whenever the lease changes hands; expires_ms is the holder's epoch ms.
-- Every write is conditional on the holder and counter read. Independent of 0003.
CREATE TABLE IF NOT EXISTS leases (
    stream text NOT NULL,
    shard_id text NOT NULL,
    holder text,
    counter bigint NOT NULL DEFAULT 0,
    expires_ms bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, shard_id)
);
