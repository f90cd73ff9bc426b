-- Time conversions as STABLE: Postgres inlines an SQL function into the calling statement
-- only when the function is no less volatile than its body, and `timestamptz + interval`
-- and `extract(epoch FROM timestamptz)` are STABLE. Declared IMMUTABLE, ms_ts was called
-- through the SQL-function executor for every value written (about 1.2 µs each, several
-- per session row); inlined it is plain arithmetic. Same bodies, same results; none of
-- them is used in an index or a constraint, where IMMUTABLE would be required.
ALTER FUNCTION ms_ts(bigint) STABLE;
ALTER FUNCTION ts_ms(timestamptz) STABLE;
ALTER FUNCTION session_expiry(timestamptz, timestamptz, boolean, realm_session_policies) STABLE;
