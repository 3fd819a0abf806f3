-- Retention of the short-lived rows. A pass deletes, in batches each found through an index:
-- expired one-time tokens (through `one_time_tokens_expires_idx`, which exists: the table is
-- bounded by one row per user and purpose, but an expired link must not outlive its purpose
-- in the database), expired MFA login challenges (a user's expired challenges otherwise went
-- only at their next login), and password-reset requests no mail worker handled within an
-- hour of `requested_at` (they stay only while no worker runs).
--
-- Plain CREATE INDEX: both tables hold minutes of rows (challenges live 5 minutes, requests
-- seconds), so the build takes milliseconds, and migrations run in a transaction, where
-- CONCURRENTLY is not allowed.
CREATE INDEX mfa_challenges_expires_idx ON mfa_challenges (expires_at);
CREATE INDEX password_reset_requests_requested_idx ON password_reset_requests (requested_at);
