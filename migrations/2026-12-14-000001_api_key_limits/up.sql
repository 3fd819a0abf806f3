-- Per-key limits. A rate limit (`rate_limit` valid verifications per `rate_window_seconds`,
-- both or neither) is counted by each instance from leases of a window's budget, granted by
-- one row per key in `api_key_windows`. Credits (`credits_remaining`) are taken one per valid
-- verification by a conditional UPDATE; a refill (`refill_amount` every `refill_every`) sets
-- the count back at the start of each day or month, applied by the first use after it.
ALTER TABLE api_keys
    ADD COLUMN rate_limit integer CHECK (rate_limit BETWEEN 1 AND 1000000),
    ADD COLUMN rate_window_seconds integer CHECK (rate_window_seconds BETWEEN 1 AND 86400),
    ADD COLUMN credits_remaining bigint CHECK (credits_remaining BETWEEN 0 AND 1000000000),
    ADD COLUMN refill_amount bigint CHECK (refill_amount BETWEEN 1 AND 1000000000),
    ADD COLUMN refill_every text CHECK (refill_every IN ('day', 'month')),
    ADD COLUMN refilled_at timestamptz,
    ADD CONSTRAINT api_keys_rate_limit_whole
        CHECK ((rate_limit IS NULL) = (rate_window_seconds IS NULL)),
    ADD CONSTRAINT api_keys_refill_whole
        CHECK ((refill_amount IS NULL) = (refill_every IS NULL)),
    ADD CONSTRAINT api_keys_refill_needs_credits
        CHECK (refill_amount IS NULL OR credits_remaining IS NOT NULL),
    ADD CONSTRAINT api_keys_credits_dated
        CHECK ((credits_remaining IS NULL) = (refilled_at IS NULL));

-- The budget of each rate-limited key's current window granted so far, over every instance;
-- `last_grant` is what the latest request was granted (so one statement both grants and says
-- how much).
CREATE TABLE api_key_windows (
    key_id uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    granted integer NOT NULL CHECK (granted >= 0),
    last_grant integer NOT NULL CHECK (last_grant >= 0)
);
