-- Same story from other outlets (as migrations/sqlite/0003).
ALTER TABLE items ADD COLUMN story_key BYTEA;
CREATE INDEX items_story_key ON items(story_key) WHERE story_key IS NOT NULL;
