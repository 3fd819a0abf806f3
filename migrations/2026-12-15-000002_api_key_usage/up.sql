-- Verifications of each key per hour, by outcome: every instance adds what it counted in
-- memory, in batches (an upsert adding the counts). Kept 90 days: the retention pass deletes
-- older hours through `api_key_usage_hour_idx`.
CREATE TABLE api_key_usage (
    key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    hour timestamptz NOT NULL,
    valid bigint NOT NULL DEFAULT 0 CHECK (valid >= 0),
    insufficient_scope bigint NOT NULL DEFAULT 0 CHECK (insufficient_scope >= 0),
    rate_limited bigint NOT NULL DEFAULT 0 CHECK (rate_limited >= 0),
    usage_exceeded bigint NOT NULL DEFAULT 0 CHECK (usage_exceeded >= 0),
    expired bigint NOT NULL DEFAULT 0 CHECK (expired >= 0),
    revoked bigint NOT NULL DEFAULT 0 CHECK (revoked >= 0),
    PRIMARY KEY (key_id, hour)
);
CREATE INDEX api_key_usage_hour_idx ON api_key_usage (hour);
