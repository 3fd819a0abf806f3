-- A window of another length is another window: changing a key's `window_seconds` starts its
-- count afresh instead of leaving a row whose start lies ahead of every new window (which
-- refused the key until the old window's start came round). Rows written before this column
-- existed have length 0, which no key has: their next lease starts afresh.
ALTER TABLE api_key_windows ADD COLUMN window_seconds integer NOT NULL DEFAULT 0;
