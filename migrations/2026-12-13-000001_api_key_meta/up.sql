-- What a key's owner says about it (`meta`: a JSON object of at most 4 KiB, checked by the
-- service) and the owner's own id for whom it was issued (`external_id`, not unique), both
-- returned by a valid verification. Keys are listed by `external_id` within an organization.
ALTER TABLE api_keys
    ADD COLUMN meta jsonb CHECK (meta IS NULL OR jsonb_typeof(meta) = 'object'),
    ADD COLUMN external_id text CHECK (external_id IS NULL OR char_length(external_id) BETWEEN 1 AND 128);
CREATE INDEX api_keys_external_id_idx ON api_keys (organization_id, external_id, created_at, id)
    WHERE external_id IS NOT NULL;
