-- The archive: every entry polled, matched or not, as plain text, for `newswatch search` and
-- for applying new rules to the past (`newswatch backfill`). Pruned after `[archive] keep`.
-- An edited entry replaces its row (new id), so rows never change once written and the
-- full-text index can trail the poll by a watermark (archive_index.indexed_upto).
CREATE TABLE archive (
    id            INTEGER PRIMARY KEY,
    feed_id       INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    entry_key     BLOB NOT NULL,                    -- as in sightings
    item_id       INTEGER REFERENCES items(id) ON DELETE SET NULL,  -- the item it matched as, if any
    guid          TEXT,
    link          TEXT,
    title         TEXT NOT NULL,                    -- plain text (normalised), each field <= 64 Ki characters
    summary       TEXT NOT NULL DEFAULT '',
    content       TEXT NOT NULL DEFAULT '',
    authors       TEXT NOT NULL DEFAULT '[]',       -- JSON array of names
    published_at  TEXT,
    first_seen_at TEXT NOT NULL,                    -- when this feed first carried the entry
    UNIQUE (feed_id, entry_key)
);
CREATE INDEX archive_first_seen ON archive(first_seen_at);
CREATE INDEX archive_item ON archive(item_id) WHERE item_id IS NOT NULL;

-- Full-text index over the archive's folded tokens (the matcher's own tokenizer and folding,
-- joined by spaces, so FTS5's `ascii` tokenizer splits exactly where the matcher does).
-- Contentless: the text lives in `archive` only. FTS5 narrows; the matcher confirms.
CREATE VIRTUAL TABLE archive_fts USING fts5(title, body, content = '', contentless_delete = 1, tokenize = 'ascii');

-- One row: archive rows with id <= indexed_upto are in archive_fts; when the archive was last pruned.
CREATE TABLE archive_index (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL DEFAULT 0,
    pruned_at    TEXT
);
INSERT INTO archive_index (id, indexed_upto) VALUES (1, 0);

-- Each version of each rule (by canonical query text): since when polls apply it, and whether
-- the archive before that was backfilled with it.
CREATE TABLE rule_versions (
    rule            TEXT NOT NULL,
    query           TEXT NOT NULL,                  -- canonical form (Query's Display)
    first_active_at TEXT NOT NULL,
    backfilled_at   TEXT,
    PRIMARY KEY (rule, query)
) WITHOUT ROWID;

-- Items found by `newswatch backfill` rather than by a poll: never in a scheduled digest.
ALTER TABLE items ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0;
