-- The last uses kept in usage rows go back into `api_keys`; the rows that held only a last use
-- (no verification counted) go, since the earlier release would list them as empty hours.
UPDATE api_keys AS k SET last_used_at = u.at
FROM (SELECT key_id, max(last_used_at) AS at FROM api_key_usage
      WHERE last_used_at IS NOT NULL GROUP BY key_id) AS u
WHERE k.id = u.key_id AND (k.last_used_at IS NULL OR k.last_used_at < u.at);
DELETE FROM api_key_usage
WHERE valid + insufficient_scope + rate_limited + usage_exceeded + expired + revoked = 0;
ALTER TABLE api_key_usage DROP COLUMN last_used_at;
