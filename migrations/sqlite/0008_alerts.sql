-- Alerts (`[[alerts]]`): a transactional outbox. Rows are written in the same transaction as
-- the matches that caused them (so a crash never loses one or invents one), sent after commit
-- by whichever process gets to them first, retried with persisted backoff and marked sent.
-- Self-contained: no foreign key to another migration's tables (story_id is an items.id today
-- and becomes a story id when stories land).

-- One row per message to a destination: one story, or a batch of several (min_interval, quiet
-- hours, max_per_hour). Its rows are fixed when it is created, so every attempt sends the same
-- stories under the same idempotency key, and a receiver can drop a repeat after a crash
-- between sending and marking.
CREATE TABLE alert_messages (
    id              INTEGER PRIMARY KEY,
    idem_key        TEXT NOT NULL UNIQUE,
    alert           TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',   -- 'pending' | 'sent' | 'dropped'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,    -- also the lease: a sender moves it ahead before sending
    last_error      TEXT,
    sent_at         TEXT,
    held            TEXT              -- why it waited, if it did ('quiet hours', 'min_interval', 'max_per_hour')
);
CREATE INDEX alert_messages_due ON alert_messages(next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_messages_alert ON alert_messages(alert, created_at);

-- One row per (story, alert, kind): "story 42 first matched alert nca" (kind 'new') or
-- "story 42 reached 3 outlets" (kind 'outlets-3'). The idempotency key is UNIQUE, so a repeat
-- enqueue (a retried commit, a second process) is a no-op (INSERT … ON CONFLICT DO NOTHING).
CREATE TABLE alert_outbox (
    id          INTEGER PRIMARY KEY,
    idem_key    TEXT NOT NULL UNIQUE,        -- 'story-<id>:<alert>:<kind>'
    alert       TEXT NOT NULL,               -- [[alerts]] name
    story_id    INTEGER NOT NULL,            -- items.id until stories have their own ids
    kind        TEXT NOT NULL,               -- 'new' | 'outlets-<n>'
    outlets     INTEGER NOT NULL,            -- outlets carrying the story when enqueued
    created_at  TEXT NOT NULL,
    message_id  INTEGER REFERENCES alert_messages(id),  -- NULL: not yet put in a message
    state       TEXT NOT NULL DEFAULT 'pending',       -- 'pending' | 'sent' | 'dropped'
    done_at     TEXT
);
-- The one check a poll makes: is anything waiting to be put in a message?
CREATE INDEX alert_outbox_unassigned ON alert_outbox(alert) WHERE message_id IS NULL AND state = 'pending';
-- A message's stories.
CREATE INDEX alert_outbox_message ON alert_outbox(message_id) WHERE message_id IS NOT NULL;

-- Per destination (alert name): since when it has failed without a success in between.
CREATE TABLE alert_destinations (
    alert           TEXT PRIMARY KEY,
    failing_since   TEXT,             -- NULL: last attempt succeeded
    last_error      TEXT,
    last_success_at TEXT,
    held_reason     TEXT,             -- stories wait: 'quiet hours' | 'min_interval' | 'max_per_hour'
    held_until      TEXT
);
