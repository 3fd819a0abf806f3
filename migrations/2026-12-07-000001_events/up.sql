-- The event log: one append-only row per change worth knowing, written in the transaction
-- that makes the change. It is the source of cache invalidation between instances (each
-- instance follows it by `seq`; `pg_notify` with the new `seq`, sent in the same transaction,
-- only wakes the followers) and the audit trail.
--
-- `seq` comes from an identity sequence: strictly increasing in insertion order, but not in
-- commit order, and with holes (rolled-back inserts, a failover). Followers therefore keep
-- every hole they pass under watch for a while (see `auth-infra`'s `events.rs`).
--
-- `invalidates` is internal: the cache entry the event ends, in the listener's encoding
-- (`k:<hex SHA-256 of an API key>`, `s:<session id>`, `d:<device id>`). It is never part of
-- an event shown to anyone. No column ever holds a secret, a token or a password.
CREATE TABLE events (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid        NOT NULL,
    at              timestamptz NOT NULL,
    action          text        NOT NULL,
    actor_type      text        CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous')),
    actor_id        text,
    organization_id uuid,
    target_type     text        NOT NULL,
    target_id       text        NOT NULL,
    ip              inet,
    request_id      text,
    details         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    invalidates     text
);
-- Retention deletes the oldest events first.
CREATE INDEX events_at_idx ON events (at);
-- The per-organization trail, newest position first.
CREATE INDEX events_organization_seq_idx ON events (organization_id, seq)
    WHERE organization_id IS NOT NULL;

-- Retention: a session ended at the earlier of its revocation and its expiry (`least`
-- ignores a null); a lockout row is over once its window and its lock are.
CREATE INDEX sessions_ended_idx ON sessions (least(revoked_at, expires_at));
CREATE INDEX login_attempts_window_idx ON login_attempts (window_started_at);
