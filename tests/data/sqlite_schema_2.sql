-- The SQLite store's schema 2 (PRAGMA user_version = 2), as user-limits created it before the drift columns, kept to build old files.
CREATE TABLE user_limits (
    user_limit_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    brand_id TEXT NOT NULL,
    type TEXT NOT NULL,
    period TEXT NOT NULL,
    status TEXT NOT NULL,
    value TEXT NOT NULL,
    progress TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    active_from INTEGER NOT NULL,
    active_until INTEGER,
    next_reset_time INTEGER,
    created_at INTEGER NOT NULL,
    last_sequence_number INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX user_limits_by_user ON user_limits (user_id, user_limit_id);
CREATE TABLE parked_events (
    user_limit_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (user_limit_id, position)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    stream TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    sub_sequence_number INTEGER NOT NULL,
    PRIMARY KEY (stream, shard_id)
) WITHOUT ROWID;
CREATE TABLE counters (
    singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    applied INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    ignored INTEGER NOT NULL DEFAULT 0,
    as_of INTEGER
);
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    data BLOB NOT NULL,
    sequence_number TEXT,
    sub_sequence_number INTEGER,
    partition_key TEXT,
    arrival_ms INTEGER,
    stream_arn TEXT,
    shard_id TEXT
);
INSERT INTO counters DEFAULT VALUES;
