DROP INDEX IF EXISTS login_attempts_window_idx;
DROP INDEX IF EXISTS sessions_ended_idx;
DROP TABLE IF EXISTS events;
