-- Rows whose session is gone would fail the key: they grant nothing, so they go first.
DELETE FROM refresh_tokens rt WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = rt.session_id);
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_session_id_fkey
    FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE;
