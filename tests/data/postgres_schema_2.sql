-- The PostgreSQL store's schema 2 (migrations 0001 and 0002), as user-limits 0.1.0 left a database, kept to build old ones.

-- The user-limits read model and the stream bookkeeping committed with it.

-- Ids compare byte-wise (COLLATE "C"), whatever the database's locale: listings come out in the
-- same order as every other store's (Python's sorting of str), and comparisons are cheaper.
CREATE TABLE user_limits (
    user_limit_id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    brand_id text NOT NULL,
    type text NOT NULL,
    period text NOT NULL,
    status text NOT NULL,
    -- Unconstrained numeric keeps the scale it was given: '9800.00' reads back as 9800.00.
    value numeric NOT NULL,
    progress numeric NOT NULL,
    currency_code text NOT NULL,
    active_from bigint NOT NULL,
    active_until bigint,
    next_reset_time bigint,
    created_at bigint NOT NULL,
    -- The upstream envelope's sequenceNumber and createdAt of the last event applied.
    last_sequence_number bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- One user's limits, found in id order by the index (no sort).
CREATE INDEX user_limits_by_user ON user_limits (user_id, user_limit_id);

-- Events waiting for the limit they need, kept whole.
CREATE TABLE parked_events (
    user_limit_id text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (user_limit_id, position)
);

-- Records that can never be applied. "seq" keeps insertion order for listing; "id" makes a
-- re-delivered poison record kept once. Kinesis sequence numbers are far beyond 64 bits: text.
CREATE TABLE dead_letters (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    reason text NOT NULL,
    data bytea NOT NULL,
    sequence_number text,
    sub_sequence_number bigint,
    partition_key text,
    arrival_ms bigint,
    stream_arn text,
    shard_id text
);

-- One row: what the projection counted, and the newest event time applied (as_of).
CREATE TABLE counters (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    applied bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    ignored bigint NOT NULL DEFAULT 0,
    as_of bigint
);
INSERT INTO counters DEFAULT VALUES;

-- The last committed Kinesis record per shard. Kinesis sequence numbers are decimal strings of up
-- to 129 digits (56 in practice): unconstrained numeric holds them exactly and compares them as numbers.
CREATE TABLE checkpoints (
    stream text NOT NULL,
    shard_id text NOT NULL,
    sequence_number numeric NOT NULL CHECK (scale(sequence_number) = 0 AND sequence_number >= 0),
    sub_sequence_number bigint NOT NULL,
    PRIMARY KEY (stream, shard_id)
);

-- Value and progress keep the exact text of the Decimal, as every other store does: numeric
-- rewrote '1E+5' as 100000 and '-0' as 0 (the same values, but not the text the stream sent).
-- Rows written before this migration keep numeric's text of their value.
ALTER TABLE user_limits
    ALTER COLUMN value TYPE text USING value::text,
    ALTER COLUMN progress TYPE text USING progress::text;

CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO schema_migrations (version, name) VALUES (1, 'initial'), (2, 'decimal_text');
