-- The inbox: every event key once. A concurrent transaction inserting the same key makes
-- this one wait for its outcome, so exactly one of them sees the key as new. An event
-- recorded before content keys (its message id as the key) is not new either.
INSERT INTO processed_events (event_id, message_id, kind, type, realm_id, event_time, outcome)
SELECT n.id, n.message_id, n.kind, n.type, n.realm_id, ms_ts(n.time), n.outcome
FROM {rows}
WHERE n.message_id = n.id OR NOT EXISTS (
    SELECT 1 FROM processed_events p WHERE p.event_id = n.message_id)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
