-- Organizations: they own API keys (and later devices). Names are not unique.
CREATE TABLE organizations (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL
);

-- Who belongs to which organization, one row per (organization, user). The application keeps
-- at least one `owner` per organization (removals lock the owner rows first).
CREATE TABLE memberships (
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at      timestamptz NOT NULL,
    CONSTRAINT memberships_pkey PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

-- API keys, found by the SHA-256 of the key (the key itself is never stored). `revoked_at` is
-- set once and never cleared; `last_used_at` is written in batches and only moves forward.
CREATE TABLE api_keys (
    id              uuid        PRIMARY KEY,
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    prefix          text        NOT NULL,
    key_hash        bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    scopes          text[]      NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_by_organization_idx ON api_keys (organization_id, created_at, id);
