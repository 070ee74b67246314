-- Feed leases (as migrations/sqlite/0009). A worker claims due feeds with
-- `SELECT … FOR UPDATE SKIP LOCKED`, setting `lease_owner` (its worker id) and `lease_until`
-- (RFC 3339 text like every time here); writing the feed's result clears both and sets
-- `last_worker`. A lease that is past `lease_until` is free again (its worker died).
ALTER TABLE feeds ADD COLUMN lease_owner TEXT COLLATE "C";
ALTER TABLE feeds ADD COLUMN lease_until TEXT COLLATE "C";
ALTER TABLE feeds ADD COLUMN last_worker TEXT COLLATE "C";
-- The claim query's order: the most overdue configured feeds first.
CREATE INDEX feeds_due ON feeds(next_due_at) WHERE in_config = 1;
