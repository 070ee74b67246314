-- newswatch schema, version 2: scheduled digests. Append-only, like 0001.

-- One row per scheduled digest written. Item ids are monotonic, so (previous last_item_id,
-- last_item_id] is the exact set a run covered: consecutive runs neither skip nor repeat a match,
-- whatever the clocks did and however long the daemon was down.
CREATE TABLE digest_runs (
    id            INTEGER PRIMARY KEY,
    period_start  TEXT NOT NULL,                    -- shown to readers: previous run's period_end (or now - 24h)
    period_end    TEXT NOT NULL,                    -- when this run read its cut
    after_item_id INTEGER NOT NULL,                 -- exclusive lower cut (previous run's last_item_id, or 0-ish on the first)
    last_item_id  INTEGER NOT NULL,                 -- inclusive upper cut: max(items.id) when the run read it
    items         INTEGER NOT NULL,                 -- distinct matches listed (dismissed ones are not)
    files         TEXT NOT NULL DEFAULT '[]',       -- JSON array of file names written
    written_at    TEXT NOT NULL
);
