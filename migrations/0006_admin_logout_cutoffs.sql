-- An admin logging a user out (users/{id}/logout) cuts off the user's sessions too.
ALTER TABLE session_cutoffs DROP CONSTRAINT session_cutoffs_reason_check;
ALTER TABLE session_cutoffs ADD CONSTRAINT session_cutoffs_reason_check
    CHECK (reason IN ('user_deleted', 'user_disabled', 'admin'));
