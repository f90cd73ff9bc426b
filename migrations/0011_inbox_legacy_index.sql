-- Finds at once whether any inbox row predates content keys (no message_id): only then
-- does the inbox look up message ids.
CREATE INDEX processed_events_legacy ON processed_events (event_id) WHERE message_id IS NULL;
