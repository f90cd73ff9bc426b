-- The inbox: every event key once. A concurrent transaction inserting the same key makes
-- this one wait for its outcome, so exactly one of them sees the key as new. While the
-- inbox holds rows recorded before content keys (the message id as the key), an event
-- recorded so is not new either (inbox.rs puts that check below).
INSERT INTO processed_events (event_id, message_id, kind, type, realm_id, event_time, outcome)
SELECT n.id, n.message_id, n.kind, n.type, n.realm_id, ms_ts(n.time), n.outcome
FROM {rows}
{legacy_check}
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
