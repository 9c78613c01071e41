-- The SQLite store's schema 1 (PRAGMA user_version = 1), as user-limits 0.1.0 created it, kept to build old files.
CREATE TABLE IF NOT EXISTS user_limits (
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
CREATE INDEX IF NOT EXISTS user_limits_by_user ON user_limits (user_id, user_limit_id);
CREATE TABLE IF NOT EXISTS parked_events (
    user_limit_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (user_limit_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
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
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO counters VALUES ('applied', 0), ('skipped', 0), ('ignored', 0);
CREATE TABLE IF NOT EXISTS checkpoints (
    stream TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    sub_sequence_number INTEGER NOT NULL,
    PRIMARY KEY (stream, shard_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
