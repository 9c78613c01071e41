-- The last drift seen per limit (the event whose producer figure disagreed with the read model),
-- and the drifted counter. Every column is null (0) for what was written before.
ALTER TABLE user_limits
    ADD COLUMN drift_sequence_number bigint,
    ADD COLUMN drift_event_type text,
    ADD COLUMN drift_figure text,
    ADD COLUMN drift_ours text,
    ADD COLUMN drift_theirs text,
    ADD COLUMN drift_at bigint;

-- `user-limits drift` reads only the limits that drifted, in id order.
CREATE INDEX user_limits_drifted ON user_limits (user_limit_id) WHERE drift_sequence_number IS NOT NULL;

ALTER TABLE counters ADD COLUMN drifted bigint NOT NULL DEFAULT 0;
