-- What the last upsert of each user row changed, for the change feed (1: profile values,
-- 2: disabled by it, 4: deleted by it); every upsert sets it anew and returns it, so the
-- feed needs no second read of the rows. Bookkeeping.
ALTER TABLE users ADD COLUMN change_flags smallint NOT NULL DEFAULT 0;
