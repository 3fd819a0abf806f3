-- Service administration: an account can be disabled (it cannot log in, its sessions end), and
-- the time of its last successful login is kept for administrators' listings.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
ALTER TABLE users ADD COLUMN last_login_at timestamptz;
-- "Never remove the last administrator" counts the enabled administrators under a lock.
CREATE INDEX users_enabled_admins_idx ON users (id) WHERE is_admin AND disabled_at IS NULL;
