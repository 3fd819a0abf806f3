DROP INDEX events_user_seq_idx;
ALTER TABLE events DROP COLUMN user_id;
