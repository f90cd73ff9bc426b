-- A role name can be deleted, taken by a new role and deleted again: every deletion is
-- kept, and a role named at time t is deleted by the first deletion of its name at or
-- after t.
ALTER TABLE role_name_deletions DROP CONSTRAINT role_name_deletions_pkey;
ALTER TABLE role_name_deletions ADD PRIMARY KEY (realm_id, client_id, name, deleted_at);
