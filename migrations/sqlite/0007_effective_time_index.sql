-- Newest-first order (`query`, the review page, keyset pages) walks this index instead of
-- sorting every match. The expression must stay exactly store::EFFECTIVE_TIME_SQL without its
-- `i.` alias (SQLite matches index expressions structurally; a unit test checks they agree).
CREATE INDEX IF NOT EXISTS items_effective_time ON items((CASE WHEN published_at IS NULL OR published_at < '1990-01-01'
      OR published_at > strftime('%Y-%m-%dT%H:%M:%fZ', first_seen_at, '+1 day')
    THEN first_seen_at ELSE published_at END), id);
