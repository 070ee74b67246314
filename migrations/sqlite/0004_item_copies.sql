-- Which copy of an item several outlets carry supplies its link and title (dedup::link_rank):
-- 2 = the original publisher's own link, 1 = a link already in canonical form, 0 = other.
ALTER TABLE items ADD COLUMN link_rank INTEGER NOT NULL DEFAULT 0;
