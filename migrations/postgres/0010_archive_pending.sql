-- The archive's full-text documents trail the poll on PostgreSQL as FTS5's index does on
-- SQLite (issue 17: the poll's CPU). A polled entry's id goes here with its archive row; a
-- worker's housekeeping (or `search`, `archive rebuild`) builds its tsvector into
-- archive_fts and removes the id, both in one transaction, so an id is in exactly one of
-- the two. Search and backfill read both: documents that match, and every pending row, which
-- the matcher checks one by one.
CREATE TABLE archive_pending (
    id BIGINT PRIMARY KEY REFERENCES archive(id) ON DELETE CASCADE
);
-- Rows that are neither indexed nor pending (none, before this migration) are queued.
INSERT INTO archive_pending (id)
SELECT a.id FROM archive a WHERE NOT EXISTS (SELECT 1 FROM archive_fts x WHERE x.id = a.id);
