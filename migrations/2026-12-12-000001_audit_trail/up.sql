-- The audit trail: the account an event is about (its target, or the `user_id` of its
-- details), so that a user's own trail is an index range, like an organization's.
ALTER TABLE events ADD COLUMN user_id uuid;
UPDATE events SET user_id = CASE
    WHEN target_type = 'user' THEN target_id::uuid
    ELSE (details->>'user_id')::uuid
END
WHERE target_type = 'user' OR details ? 'user_id';
CREATE INDEX events_user_seq_idx ON events (user_id, seq) WHERE user_id IS NOT NULL;
