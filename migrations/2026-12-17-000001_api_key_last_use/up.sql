-- A key's last use is kept in its usage row of the hour, beside that hour's counts, so that a
-- verification writes one row (the usage row) instead of two (that row and the key's own).
-- Every read of a key answers the latest of `api_keys.last_used_at` and its latest usage row
-- holding one; the retention pass folds a deleted row's last use into `api_keys` first.
--
-- During a rolling upgrade, instances of the previous release still write `api_keys` and do
-- not read this column: the last use they show lags by up to the last hours of use until they
-- are gone. Nothing is lost; the newer instances read both.
ALTER TABLE api_key_usage ADD COLUMN last_used_at timestamptz;
