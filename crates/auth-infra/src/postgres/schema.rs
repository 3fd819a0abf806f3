//! Diesel table definitions, matching `migrations/`.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        email_normalized -> Text,
        display_name -> Nullable<Text>,
        password_hash -> Text,
        is_admin -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email_verified_at -> Nullable<Timestamptz>,
        disabled_at -> Nullable<Timestamptz>,
        last_login_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        created_at -> Timestamptz,
        spent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (organization_id, user_id) {
        organization_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        meta -> Nullable<Jsonb>,
        external_id -> Nullable<Text>,
        rate_limit -> Nullable<Int4>,
        rate_window_seconds -> Nullable<Int4>,
        credits_remaining -> Nullable<Int8>,
        refill_amount -> Nullable<Int8>,
        refill_every -> Nullable<Text>,
        refilled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_key_usage (key_id, hour) {
        key_id -> Uuid,
        hour -> Timestamptz,
        valid -> Int8,
        insufficient_scope -> Int8,
        rate_limited -> Int8,
        usage_exceeded -> Int8,
        expired -> Int8,
        revoked -> Int8,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_key_windows (key_id) {
        key_id -> Uuid,
        window_start -> Timestamptz,
        granted -> Int4,
        last_grant -> Int4,
        window_seconds -> Int4,
    }
}

diesel::table! {
    devices (device_id) {
        device_id -> Text,
        organization_id -> Uuid,
        name -> Text,
        metadata -> Jsonb,
        secret_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        last_authenticated_at -> Nullable<Timestamptz>,
        tokens_not_before -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_attempts (key) {
        key -> Bytea,
        failures -> Integer,
        window_started_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

// `events.ip` (inet) is read and written by SQL casts, not through this definition.
diesel::table! {
    events (seq) {
        seq -> BigInt,
        id -> Uuid,
        at -> Timestamptz,
        action -> Text,
        actor_type -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        organization_id -> Nullable<Uuid>,
        target_type -> Text,
        target_id -> Text,
        request_id -> Nullable<Text>,
        user_id -> Nullable<Uuid>,
        details -> Jsonb,
        invalidates -> Nullable<Text>,
    }
}

diesel::table! {
    mfa_totp (user_id) {
        user_id -> Uuid,
        secret_sealed -> Bytea,
        enabled_at -> Nullable<Timestamptz>,
        last_step -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    mail_outbox (id) {
        id -> Uuid,
        recipient -> Text,
        subject -> Text,
        body_text -> Text,
        body_html -> Text,
        created_at -> Timestamptz,
        due_at -> Timestamptz,
        attempts -> Integer,
    }
}

diesel::table! {
    one_time_tokens (hash) {
        hash -> Bytea,
        user_id -> Uuid,
        purpose -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        email -> Text,
    }
}

diesel::table! {
    password_reset_requests (id) {
        id -> Uuid,
        email -> Text,
        requested_at -> Timestamptz,
        due_at -> Timestamptz,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(mfa_totp -> users (user_id));
diesel::joinable!(one_time_tokens -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(api_keys -> organizations (organization_id));
diesel::joinable!(api_key_windows -> api_keys (key_id));
diesel::joinable!(api_key_usage -> api_keys (key_id));
diesel::joinable!(devices -> organizations (organization_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    password_reset_requests,
    sessions,
    refresh_tokens,
    organizations,
    memberships,
    api_keys,
    api_key_windows,
    api_key_usage,
    devices,
    login_attempts,
    events,
    mfa_totp,
    mfa_recovery_codes,
    mfa_challenges,
    mail_outbox,
    one_time_tokens
);
