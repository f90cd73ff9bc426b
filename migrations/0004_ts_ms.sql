-- The inverse of ms_ts: a timestamp as epoch milliseconds, the unit of every event time.
CREATE FUNCTION ts_ms(ts timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (extract(epoch FROM ts) * 1000)::int8 $$;
