-- Devices, named by their owner: the id is unique across the service and compared byte-exact
-- (collation "C", so ordering is by bytes too, whatever the database's locale). Only the
-- SHA-256 of the current secret is stored. `revoked_at` is set once and never cleared;
-- `last_authenticated_at` is written in batches and only moves forward.
CREATE TABLE devices (
    device_id             text COLLATE "C" PRIMARY KEY
                          CHECK (device_id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    organization_id       uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                  text        NOT NULL,
    metadata              jsonb       NOT NULL DEFAULT '{}'
                          CHECK (jsonb_typeof(metadata) = 'object'),
    secret_hash           bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at            timestamptz NOT NULL,
    revoked_at            timestamptz,
    last_authenticated_at timestamptz
);
-- An organization's devices, in listing order.
CREATE INDEX devices_by_organization_idx ON devices (organization_id, created_at, device_id);
