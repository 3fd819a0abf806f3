DROP INDEX IF EXISTS password_reset_requests_requested_idx;
DROP INDEX IF EXISTS mfa_challenges_expires_idx;
