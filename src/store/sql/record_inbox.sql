-- The inbox: every event id once. A concurrent transaction inserting the same id makes
-- this one wait for its outcome, so exactly one of them sees the id as new.
INSERT INTO processed_events (event_id, kind, type, realm_id, event_time, outcome)
SELECT n.id, n.kind, n.type, n.realm_id, ms_ts(n.time), n.outcome
FROM {rows}
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
