-- newswatch schema, version 1. Append-only: never edit a migration once it has landed.
-- Times are RFC 3339 UTC text ('2026-11-23T10:00:00Z'); hashes are BLOBs.

-- One row per configured feed (by name), with everything the fetcher and scheduler remember.
CREATE TABLE feeds (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,      -- [[feeds]] name
    url                  TEXT NOT NULL,             -- configured URL
    effective_url        TEXT,                      -- target of a permanent redirect (301/308), polled instead
    title                TEXT,                      -- the feed's own title, from its last parse
    etag                 TEXT,                      -- validator sent as If-None-Match
    last_modified        TEXT,                      -- validator sent as If-Modified-Since
    last_fetch_at        TEXT,                      -- when the last attempt finished
    last_success_at      TEXT,                      -- last 2xx or 304
    last_status          TEXT,                      -- 'ok' | 'unchanged' | 'failed'
    last_http_status     INTEGER,                   -- HTTP status of the last attempt, if any
    last_error           TEXT,                      -- one-line reason of the last failure
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_due_at          TEXT,                      -- daemon: earliest next poll (schedule, backoff, Retry-After, max-age)
    in_config            INTEGER NOT NULL DEFAULT 1 -- 0 once removed from the config (rows are kept for history)
);

-- One row per stored (matching) story. Several feeds' entries can share one item.
CREATE TABLE items (
    id            INTEGER PRIMARY KEY,
    canonical_url TEXT UNIQUE,                      -- cross-feed identity; NULL when no usable link
    link          TEXT,                             -- link as the first feed gave it
    guid          TEXT,                             -- guid/id as the first feed gave it
    title         TEXT NOT NULL,                    -- plain text (normalised)
    summary       TEXT NOT NULL DEFAULT '',         -- plain text
    content       TEXT NOT NULL DEFAULT '',         -- plain text
    authors       TEXT NOT NULL DEFAULT '[]',       -- JSON array of names
    published_at  TEXT,                             -- from the feed; NULL when absent or unparseable
    first_seen_at TEXT NOT NULL,                    -- when newswatch first stored it
    updated_at    TEXT NOT NULL,                    -- last time its text changed
    snippet       TEXT NOT NULL DEFAULT '',         -- text around the first hit
    status        TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'read', 'starred', 'dismissed'))
);
CREATE INDEX items_first_seen ON items(first_seen_at);
CREATE INDEX items_published ON items(published_at);

-- Which rules matched an item, and the terms that hit. Rules accumulate across sightings.
CREATE TABLE item_rules (
    item_id          INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    rule             TEXT NOT NULL,                 -- [[rules]] name
    terms            TEXT NOT NULL DEFAULT '[]',    -- JSON array of matched terms as written in the rule
    first_matched_at TEXT NOT NULL,
    PRIMARY KEY (item_id, rule)
) WITHOUT ROWID;
CREATE INDEX item_rules_rule ON item_rules(rule, item_id);

-- Every entry ever seen in a feed, matched or not, kept compactly so it is not processed again.
CREATE TABLE sightings (
    feed_id       INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    entry_key     BLOB NOT NULL,                    -- 16 bytes of SHA-256 of the identity (guid / link / link+title / hash)
    fingerprint   BLOB NOT NULL,                    -- 16 bytes of SHA-256 of title, summary, content, link, date
    item_id       INTEGER REFERENCES items(id) ON DELETE SET NULL,  -- NULL: did not match any rule
    first_seen_at TEXT NOT NULL,
    changed_at    TEXT NOT NULL,                    -- last time its fingerprint changed
    PRIMARY KEY (feed_id, entry_key)
) WITHOUT ROWID;
CREATE INDEX sightings_item ON sightings(item_id) WHERE item_id IS NOT NULL;
