-- Profile fields: last writer wins by version (one assignment pair per field, written in
-- users.rs where the placeholder below stands); attributes per key, the whole map from
-- representations overlaid with the single changes newer than it. Counters add, instants
-- take the earliest or latest, deletion keeps the earliest: the same commutative rules as
-- the planner.
INSERT INTO users AS u (id, realm_id, username, username_ver, email, email_ver,
    first_name, first_name_ver, last_name, last_name_ver, email_verified,
    email_verified_ver, enabled, enabled_ver, attributes, attributes_ver,
    attribute_updates, created_at,
    last_login_at, login_count, last_login_error_at, login_error_count, deleted_at,
    read_ver)
SELECT n.id, n.realm_id, n.username, n.username_ver, n.email, n.email_ver,
    n.first_name, n.first_name_ver, n.last_name, n.last_name_ver, n.email_verified,
    n.email_verified_ver, n.enabled, n.enabled_ver,
    CASE WHEN n.attribute_updates = '{}' THEN n.attributes::jsonb
         ELSE overlay_attributes(n.attributes::jsonb,
                  newer_attribute_updates(NULL, n.attribute_updates::jsonb, n.attributes_ver))
    END,
    n.attributes_ver,
    CASE WHEN n.attribute_updates = '{}' THEN '{}'::jsonb
         ELSE newer_attribute_updates(NULL, n.attribute_updates::jsonb, n.attributes_ver)
    END,
    ms_ts(n.created_at), ms_ts(n.last_login_at), n.login_count,
    ms_ts(n.last_login_error_at), n.login_error_count, ms_ts(n.deleted_at), n.read_ver
FROM {rows}
ON CONFLICT (id) DO UPDATE SET
    {last_writer_wins},
    -- Most rows have no single changes: the plain last-writer-wins, without the merge.
    attributes = {new_attributes},
    attributes_ver = GREATEST(u.attributes_ver, EXCLUDED.attributes_ver),
    attribute_updates = CASE
        WHEN u.attribute_updates = '{}' AND EXCLUDED.attribute_updates = '{}' THEN '{}'::jsonb
        ELSE newer_attribute_updates(u.attribute_updates, EXCLUDED.attribute_updates,
                                     GREATEST(u.attributes_ver, EXCLUDED.attributes_ver))
    END,
    created_at = LEAST(u.created_at, EXCLUDED.created_at),
    last_login_at = GREATEST(u.last_login_at, EXCLUDED.last_login_at),
    login_count = u.login_count + EXCLUDED.login_count,
    last_login_error_at = GREATEST(u.last_login_error_at, EXCLUDED.last_login_error_at),
    login_error_count = u.login_error_count + EXCLUDED.login_error_count,
    deleted_at = LEAST(u.deleted_at, EXCLUDED.deleted_at),
    read_ver = GREATEST(u.read_ver, EXCLUDED.read_ver),
    -- For the change feed: what this statement changed (users.rs writes the flags).
    change_flags = {change_flags},
    updated_at = now()
RETURNING id, xmax = 0 AS created, change_flags
