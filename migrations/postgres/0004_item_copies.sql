-- Which copy of an item supplies its link and title (as migrations/sqlite/0004).
ALTER TABLE items ADD COLUMN link_rank BIGINT NOT NULL DEFAULT 0;
