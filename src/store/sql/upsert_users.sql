-- Profile fields: last writer wins by version. Counters add, instants take the earliest
-- or latest, deletion keeps the earliest: the same commutative rules as the planner.
INSERT INTO users AS u (id, realm_id, username, username_ver, email, email_ver,
    first_name, first_name_ver, last_name, last_name_ver, email_verified,
    email_verified_ver, enabled, enabled_ver, attributes, attributes_ver, created_at,
    last_login_at, login_count, last_login_error_at, login_error_count, deleted_at,
    read_ver)
SELECT n.id, n.realm_id, n.username, n.username_ver, n.email, n.email_ver,
    n.first_name, n.first_name_ver, n.last_name, n.last_name_ver, n.email_verified,
    n.email_verified_ver, n.enabled, n.enabled_ver, n.attributes::jsonb,
    n.attributes_ver, ms_ts(n.created_at), ms_ts(n.last_login_at), n.login_count,
    ms_ts(n.last_login_error_at), n.login_error_count, ms_ts(n.deleted_at), n.read_ver
FROM {rows}
ON CONFLICT (id) DO UPDATE SET
    username = CASE WHEN EXCLUDED.username_ver > COALESCE(u.username_ver, '')
                    THEN EXCLUDED.username ELSE u.username END,
    username_ver = GREATEST(u.username_ver, EXCLUDED.username_ver),
    email = CASE WHEN EXCLUDED.email_ver > COALESCE(u.email_ver, '')
                 THEN EXCLUDED.email ELSE u.email END,
    email_ver = GREATEST(u.email_ver, EXCLUDED.email_ver),
    first_name = CASE WHEN EXCLUDED.first_name_ver > COALESCE(u.first_name_ver, '')
                      THEN EXCLUDED.first_name ELSE u.first_name END,
    first_name_ver = GREATEST(u.first_name_ver, EXCLUDED.first_name_ver),
    last_name = CASE WHEN EXCLUDED.last_name_ver > COALESCE(u.last_name_ver, '')
                     THEN EXCLUDED.last_name ELSE u.last_name END,
    last_name_ver = GREATEST(u.last_name_ver, EXCLUDED.last_name_ver),
    email_verified = CASE WHEN EXCLUDED.email_verified_ver > COALESCE(u.email_verified_ver, '')
                          THEN EXCLUDED.email_verified ELSE u.email_verified END,
    email_verified_ver = GREATEST(u.email_verified_ver, EXCLUDED.email_verified_ver),
    enabled = CASE WHEN EXCLUDED.enabled_ver > COALESCE(u.enabled_ver, '')
                   THEN EXCLUDED.enabled ELSE u.enabled END,
    enabled_ver = GREATEST(u.enabled_ver, EXCLUDED.enabled_ver),
    attributes = CASE WHEN EXCLUDED.attributes_ver > COALESCE(u.attributes_ver, '')
                      THEN EXCLUDED.attributes ELSE u.attributes END,
    attributes_ver = GREATEST(u.attributes_ver, EXCLUDED.attributes_ver),
    created_at = LEAST(u.created_at, EXCLUDED.created_at),
    last_login_at = GREATEST(u.last_login_at, EXCLUDED.last_login_at),
    login_count = u.login_count + EXCLUDED.login_count,
    last_login_error_at = GREATEST(u.last_login_error_at, EXCLUDED.last_login_error_at),
    login_error_count = u.login_error_count + EXCLUDED.login_error_count,
    deleted_at = LEAST(u.deleted_at, EXCLUDED.deleted_at),
    read_ver = GREATEST(u.read_ver, EXCLUDED.read_ver),
    updated_at = now()
