-- Newest-first order walks this index (as migrations/sqlite/0007). SQLite's expression uses
-- strftime(…, first_seen_at, '+1 day'); a text → timestamptz cast is not IMMUTABLE in
-- PostgreSQL (it depends on settings), so the "+1 day" lives in a function declared IMMUTABLE:
-- the stored times carry their own offset (RFC 3339), which makes the result independent of
-- the session's TimeZone and DateStyle. Unparseable text gives NULL, as strftime does.
CREATE FUNCTION newswatch_plus_day(t TEXT) RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN to_char((t::timestamptz AT TIME ZONE 'UTC') + interval '1 day',
                   'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

CREATE INDEX items_effective_time ON items((CASE WHEN published_at IS NULL OR published_at < '1990-01-01'
      OR published_at > newswatch_plus_day(first_seen_at)
    THEN first_seen_at ELSE published_at END), id);
