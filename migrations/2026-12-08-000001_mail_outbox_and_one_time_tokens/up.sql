-- The mail outbox: a mail caused by a change is written in the transaction that makes the
-- change, and a worker on any instance sends it afterwards (at least once). A row leaves the
-- table when its mail is sent or given up, so the table holds only what waits, and the
-- bodies (which carry one-time links) do not outlive their purpose.
--
-- `due_at` is when the mail may be tried next: the enqueue time, then the end of a worker's
-- lease while it sends, then the end of a backoff after a failure.
CREATE TABLE mail_outbox (
    id          uuid        PRIMARY KEY,
    recipient   text        NOT NULL,
    subject     text        NOT NULL,
    body_text   text        NOT NULL,
    body_html   text        NOT NULL,
    created_at  timestamptz NOT NULL,
    due_at      timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);
-- Workers claim the due mails, oldest first.
CREATE INDEX mail_outbox_due_idx ON mail_outbox (due_at, id);

-- One-time tokens (address verification, password reset): only the SHA-256 of a token is
-- kept. Issuing a token deletes the user's older ones of the same purpose, in the
-- transaction that stores it and queues its mail; spending one deletes it (`DELETE …
-- RETURNING`, so concurrent uses have one winner). The table needs no pruning: it holds at
-- most one row per user and purpose, and a user's rows go with the user.
CREATE TABLE one_time_tokens (
    hash        bytea       PRIMARY KEY CHECK (octet_length(hash) = 32),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX one_time_tokens_user_purpose_idx ON one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_expires_idx ON one_time_tokens (expires_at);
