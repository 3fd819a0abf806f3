ALTER TABLE api_key_windows DROP COLUMN window_seconds;
