-- Sealed tokens: kept unless the user was deleted, disabled or logged out (or the whole
-- realm; a consent's revocation, a cutoff of one client, counts as the grant's), or at or after the token's time: (refresh) its session ended, (offline) its
-- offline session ended or the grant was revoked. An offline token outlives the end of
-- the browser session, as the offline session does in Keycloak. On a conflict the newer
-- message (by version) owns the sealed token and the row's identity; metadata is merged,
-- newer values winning, and gains `updatedAt`. `refreshCount` and `lastRefresh` belong to
-- the session of the token the row holds (follow_refreshes sets them after this): a token
-- of another session does not inherit them, whichever came first.
INSERT INTO auth_vault AS v (id, realm_id, user_id, token_type, session_id, client_id,
    key_id, nonce, ciphertext, expires_at, metadata, issued_at, issued_ver)
SELECT gen_random_uuid(), n.realm_id, n.user_id, n.token_type, n.session_id,
    n.client_id, n.key_id, n.nonce, n.ciphertext, ms_ts(n.expires_at),
    n.metadata::jsonb || jsonb_build_object('updatedAt', now()),
    ms_ts(n.issued_at), n.issued_ver
FROM {rows}
WHERE NOT EXISTS (SELECT 1 FROM session_cutoffs c
                  WHERE c.user_id = n.user_id AND c.at >= ms_ts(n.issued_at)
                    AND c.client_id IS NULL)
  AND NOT EXISTS (SELECT 1 FROM realm_cutoffs c
                  WHERE c.realm_id = n.realm_id AND c.at >= ms_ts(n.issued_at))
  AND NOT (n.token_type = 'refresh' AND EXISTS (
      SELECT 1 FROM user_sessions s
      WHERE s.id = n.session_id AND s.ended_at >= ms_ts(n.issued_at)))
  AND NOT (n.token_type = 'offline' AND EXISTS (
      SELECT 1 FROM offline_session_ends o
      WHERE o.session_id = n.session_id AND o.at >= ms_ts(n.issued_at)))
  AND NOT (n.token_type = 'offline' AND EXISTS (
      SELECT 1 FROM grant_revocations g
      WHERE g.user_id = n.user_id AND g.client_id = n.client_id
        AND g.at >= ms_ts(n.issued_at)))
ON CONFLICT {slot} DO UPDATE SET
    session_id = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.session_id ELSE v.session_id END,
    client_id = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.client_id ELSE v.client_id END,
    key_id = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.key_id ELSE v.key_id END,
    nonce = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.nonce ELSE v.nonce END,
    ciphertext = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.ciphertext ELSE v.ciphertext END,
    expires_at = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.expires_at ELSE v.expires_at END,
    issued_at = CASE WHEN EXCLUDED.issued_ver > v.issued_ver THEN EXCLUDED.issued_at ELSE v.issued_at END,
    metadata = (CASE
                    WHEN EXCLUDED.issued_ver <= v.issued_ver THEN EXCLUDED.metadata || v.metadata
                    WHEN v.session_id IS DISTINCT FROM EXCLUDED.session_id
                        THEN (v.metadata - 'refreshCount' - 'lastRefresh') || EXCLUDED.metadata
                    ELSE v.metadata || EXCLUDED.metadata END)
               || jsonb_build_object('updatedAt', now()),
    issued_ver = GREATEST(v.issued_ver, EXCLUDED.issued_ver),
    updated_at = now()
-- For the change feed: the row and the message that owns it now.
RETURNING v.id::text, v.user_id, v.token_type, v.client_id, v.session_id, v.issued_ver
