-- Verified addresses: when the account's address was confirmed through its mailed link (or by
-- an operator); NULL while it is not. Accounts made before this column start unverified.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- A one-time token remembers the address its mail went to: a verification or reset link works
-- only while that is still the account's address, and a change-of-address link makes it the
-- account's. No token was issued before this column existed; any row is dropped rather than
-- guessed at.
DELETE FROM one_time_tokens;
ALTER TABLE one_time_tokens ADD COLUMN email text NOT NULL;
ALTER TABLE one_time_tokens DROP CONSTRAINT one_time_tokens_purpose_check;
ALTER TABLE one_time_tokens ADD CONSTRAINT one_time_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'password_reset', 'change_email'));
