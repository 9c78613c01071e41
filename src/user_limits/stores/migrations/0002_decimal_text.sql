-- Value and progress keep the exact text of the Decimal, as every other store does: numeric
-- rewrote '1E+5' as 100000 and '-0' as 0 (the same values, but not the text the stream sent).
-- Rows written before this migration keep numeric's text of their value.
ALTER TABLE user_limits
    ALTER COLUMN value TYPE text USING value::text,
    ALTER COLUMN progress TYPE text USING progress::text;
