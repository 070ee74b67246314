-- Stories: the reports (items) of one event from many outlets. Every item belongs to exactly
-- one story. Placement (pipeline::stories) runs at the end of each poll cycle over the items
-- the cycle stored or changed (story_pending = 1); until then a new item is a story of its own.
CREATE TABLE stories (
    id            INTEGER PRIMARY KEY,
    first_seen_at TEXT NOT NULL,                    -- first report's first-seen time
    updated_at    TEXT NOT NULL                     -- last time a report joined, left or changed
);

ALTER TABLE items ADD COLUMN story_id INTEGER REFERENCES stories(id);
ALTER TABLE items ADD COLUMN story_pending INTEGER NOT NULL DEFAULT 0;  -- 1: not yet placed
ALTER TABLE items ADD COLUMN story_pinned INTEGER NOT NULL DEFAULT 0;   -- 1: placed by `story split/merge`
ALTER TABLE items ADD COLUMN story_evidence TEXT;                        -- JSON: why it is in its story
ALTER TABLE items ADD COLUMN story_features BLOB;                        -- stories::Features, to reload the window fast
CREATE INDEX items_story ON items(story_id);
CREATE INDEX items_story_pending ON items(id) WHERE story_pending = 1;

-- Items stored before stories existed: each its own story, placed already (their text is kept,
-- so `story merge` can still join them by hand).
INSERT INTO stories (id, first_seen_at, updated_at) SELECT id, first_seen_at, updated_at FROM items;
UPDATE items SET story_id = id;

-- One row: the document frequencies over every polled entry (stories::DocFreq blob) and a
-- generation bumped by every placement or manual decision, so a process holding the window in
-- memory knows when another one changed it.
CREATE TABLE story_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    doc_freq   BLOB,
    generation INTEGER NOT NULL DEFAULT 0
);
INSERT INTO story_state (id) VALUES (1);
