-- Feed leases (issue 17, as migrations/postgres/0009). Several `newswatch run` workers share
-- one PostgreSQL database and lease due feeds so that exactly one fetches each; SQLite has one
-- writer (the daemon's lock file), so here the columns only keep both schemas alike (same
-- version, same columns for `newswatch migrate`). `last_worker` is who last polled the feed.
ALTER TABLE feeds ADD COLUMN lease_owner TEXT;
ALTER TABLE feeds ADD COLUMN lease_until TEXT;
ALTER TABLE feeds ADD COLUMN last_worker TEXT;
