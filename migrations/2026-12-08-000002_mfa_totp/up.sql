-- The TOTP second factor. A user has at most one enrolment: pending (`enabled_at` null) until
-- a code confirms it. `secret_sealed` is the secret encrypted with AES-256-GCM under
-- AUTH_DATA_KEY (nonce || ciphertext || tag, the user id as associated data): never the
-- secret itself. `last_step` is the newest accepted time step: a code is accepted once, and
-- never one older than the last.
CREATE TABLE mfa_totp (
    user_id       uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed bytea       NOT NULL,
    enabled_at    timestamptz,
    last_step     bigint,
    created_at    timestamptz NOT NULL
);

-- Recovery codes, as SHA-256 of their normalised text (80 random bits each); `used_at` once
-- spent.
CREATE TABLE mfa_recovery_codes (
    user_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea       NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- The login step between a correct password and the code: SHA-256 of the `mfa_token`,
-- deleted when spent, when the factor goes, or when the user's next challenge is made after
-- it expired (so a user holds at most the challenges of the last five minutes).
CREATE TABLE mfa_challenges (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX mfa_challenges_user_idx ON mfa_challenges (user_id);
