-- Rows whose key is gone would fail the key: they count nothing any report shows, so they go
-- first.
DELETE FROM api_key_usage u WHERE NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = u.key_id);
ALTER TABLE api_key_usage ADD CONSTRAINT api_key_usage_key_id_fkey
    FOREIGN KEY (key_id) REFERENCES api_keys (id) ON DELETE CASCADE;
