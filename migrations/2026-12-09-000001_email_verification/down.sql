DELETE FROM one_time_tokens WHERE purpose = 'change_email';
ALTER TABLE one_time_tokens DROP CONSTRAINT one_time_tokens_purpose_check;
ALTER TABLE one_time_tokens ADD CONSTRAINT one_time_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'password_reset'));
ALTER TABLE one_time_tokens DROP COLUMN email;
ALTER TABLE users DROP COLUMN email_verified_at;
