-- Same story from other outlets: items whose titles agree word for word (see dedup::story_key).
ALTER TABLE items ADD COLUMN story_key BLOB;   -- 16 bytes of SHA-256 of the folded title words; NULL for short titles
CREATE INDEX items_story_key ON items(story_key) WHERE story_key IS NOT NULL;
