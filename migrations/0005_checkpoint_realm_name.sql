-- The Admin API lists a realm's events by its name; say so (every other table holds ids).
ALTER TABLE backfill_checkpoints RENAME COLUMN realm TO realm_name;
