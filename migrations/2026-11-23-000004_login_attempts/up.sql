-- Failed-login counters for account lockout, shared by every instance. The key is the SHA-256
-- of the normalised email, so the table holds no email (and a row says nothing about whether
-- an account exists). `failures` counts the failures of the window that began at
-- `window_started_at`; `locked_until` is set by the failure that reaches the threshold and is
-- never extended while it runs. Every failure is one atomic `INSERT … ON CONFLICT DO UPDATE`;
-- a successful login deletes the row.
CREATE TABLE login_attempts (
    key               bytea       PRIMARY KEY CHECK (octet_length(key) = 32),
    failures          integer     NOT NULL CHECK (failures >= 0),
    window_started_at timestamptz NOT NULL,
    locked_until      timestamptz
);
