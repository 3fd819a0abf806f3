DROP INDEX api_keys_external_id_idx;
ALTER TABLE api_keys DROP COLUMN external_id, DROP COLUMN meta;
