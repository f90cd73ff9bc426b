-- The inbox is keyed by an id derived from what every path carries (so one Keycloak
-- event counts once whether the provider, the aznamier queue or a backfill brought it);
-- the message's own id (Keycloak's, from 26.2) is kept beside it. Rows recorded before
-- hold the message id as their key, which the inbox still recognises.
ALTER TABLE processed_events ADD COLUMN message_id text COLLATE "C";
