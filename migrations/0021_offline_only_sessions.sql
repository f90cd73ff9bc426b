-- Offline-only sessions (a direct grant with offline_access: Keycloak keeps no online
-- session, its LOGIN says refresh_token_type Offline) end when the user's consent to their
-- client is revoked (REVOKE_GRANT, or the admin's USER ACTION users/{id}/consents/{client}),
-- as Keycloak ends them. Such a revocation is a cutoff scoped to one client.
ALTER TABLE user_sessions ADD COLUMN offline_only boolean NOT NULL DEFAULT false;
ALTER TABLE user_sessions DROP CONSTRAINT user_sessions_end_reason_check;
ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_end_reason_check
    CHECK (end_reason IN ('logout', 'admin', 'user_deleted', 'user_disabled', 'expired',
                          'revoked'));
ALTER TABLE session_cutoffs ADD COLUMN client_id text COLLATE "C";
ALTER TABLE session_cutoffs DROP CONSTRAINT session_cutoffs_reason_check;
ALTER TABLE session_cutoffs ADD CONSTRAINT session_cutoffs_reason_check
    CHECK (reason IN ('user_deleted', 'user_disabled', 'admin', 'revoked')
           AND (client_id IS NULL) = (reason <> 'revoked'));
