-- Every session write paid for this index; only rare realm-wide steps (an admin signing
-- everyone out, a policy change, a reconcile) read by realm, and a scan serves them.
DROP INDEX IF EXISTS user_sessions_realm;
