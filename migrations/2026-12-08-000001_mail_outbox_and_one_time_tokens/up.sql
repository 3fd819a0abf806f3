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
