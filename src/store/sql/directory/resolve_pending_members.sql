-- Organization members added by username before their user was known: those whose user
-- is now known (among $1, or all with NULL) leave the waiting table, to be written as
-- memberships (upsert_organization_members.sql) in the same transaction.
DELETE FROM organization_members_pending p
USING users u
WHERE ($1::text[] IS NULL OR u.id = ANY($1::text[]))
  AND u.realm_id = p.realm_id AND u.username = p.username
RETURNING p.organization_id, p.realm_id, u.id, p.member, p.decided_at, p.ver, p.since
