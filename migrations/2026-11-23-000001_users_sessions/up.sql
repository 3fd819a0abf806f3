-- Users and sessions. Emails are unique by their normalised (lower-cased) form, computed by
-- the application so that Rust and SQL can never disagree on it.
CREATE TABLE users (
    id               uuid        PRIMARY KEY,
    email            text        NOT NULL,
    email_normalized text        NOT NULL,
    display_name     text,
    password_hash    text        NOT NULL,
    is_admin         boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT users_email_normalized_key UNIQUE (email_normalized)
);

-- One row per login; every refresh token of the login points at it. `expires_at` is
-- absolute; `revoked_at` is set once and never cleared.
CREATE TABLE sessions (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_active_by_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Every refresh token a session issued, as a SHA-256 hash. `spent_at` is set by rotation;
-- spent rows are kept so that a reuse is recognised.
CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
