//! The contract suite every storage adapter must pass: one set of behaviours, run against the
//! in-memory adapters and against Postgres.
//!
//! An adapter's tests implement [`Fixture`] and invoke [`storage_contract_tests!`], which
//! expands to one `#[tokio::test]` per behaviour. Each test builds a fresh fixture, so
//! adapters may isolate tests however they like (a database per test, for Postgres).
//! [`MemoryStore`] is the in-memory adapters' fixture.
//!
//! [`services`] holds, in the same way, the service scenarios every backend runs.
#![expect(
    clippy::unwrap_used,
    reason = "a test suite: a failed expectation is a failed test"
)]
// A contract case nothing registers is a build error: see `storage_contract_tests!`.
#![deny(dead_code)]

pub mod services;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::audit::{self, RequestActor, RequestContext};
use crate::memory::{ManualClock, MemoryStore};
use crate::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, ApiKeyMeta, ApiKeyName, CreditSpend, Credits, Device,
    DeviceId, DeviceMetadata, DeviceName, DisplayName, Email, EventAction, EventActor, EventTarget,
    ExternalId, FailedLogin, HourUsage, LogEntry, LoginStep, LoginSubject, Member, Membership,
    OneTimeToken, Organization, OrganizationId, OrganizationName, OutgoingMail, PasswordHash,
    RateLimit, Refill, RefillPeriod, Role, Scope, Scopes, Session, SessionId, StoredEvent,
    StoredToken, TokenHash, TokenPurpose, UsageBucket, UsageCounts, User, UserId, hour_of,
};
use crate::ports::{
    AccountRemover, AddMemberError, AddressConfirmation, AddressIssue, AdminChange, Admission,
    ApiKeyRepository, AttemptState, ChangeDeviceError, Clock, CreateUserError, DeleteAccountError,
    DeviceRepository, EventLog, EventQuery, EventScope, Invalidation, LeaseRequest, LockoutPolicy,
    LoginAttemptStore, MailOutbox, MfaRepository, OneTimeTokenStore, OrganizationRepository,
    PasswordUpdate, PruneReport, PrunedRows, Pruner, RESET_REQUEST_RETENTION, RegisterDeviceError,
    RemoveMemberError, RetentionPolicy, RevokeApiKeyError, Rotation, SessionRepository,
    UpdateApiKeyError, UserAdministration, UserQuery, UserRepository,
};

/// What a contract test needs from an adapter.
pub trait Fixture: Send + Sync {
    /// The user repository under test.
    fn users(&self) -> Arc<dyn UserRepository>;
    /// The session repository under test (sharing storage with `users`).
    fn sessions(&self) -> Arc<dyn SessionRepository>;
    /// The organization repository under test (its members are users of `users`).
    fn organizations(&self) -> Arc<dyn OrganizationRepository>;
    /// The API key repository under test (its keys belong to organizations of
    /// `organizations`).
    fn api_keys(&self) -> Arc<dyn ApiKeyRepository>;
    /// The device repository under test (its devices belong to organizations of
    /// `organizations`).
    fn devices(&self) -> Arc<dyn DeviceRepository>;
    /// The failed-login counters under test.
    fn login_attempts(&self) -> Arc<dyn LoginAttemptStore>;
    /// The second factors under test (of users of `users`).
    fn mfa(&self) -> Arc<dyn MfaRepository>;
    /// The event log the repositories above append to.
    fn events(&self) -> Arc<dyn EventLog>;
    /// Retention over the stores above, as every instance sharing them would run it.
    fn pruner(&self) -> Arc<dyn Pruner>;
    /// Account deletion over the stores above.
    fn accounts(&self) -> Arc<dyn AccountRemover>;
    /// The mail outbox.
    fn outbox(&self) -> Arc<dyn MailOutbox>;
    /// One-time tokens (their users are users of `users`, their mails go to `outbox`).
    fn one_time_tokens(&self) -> Arc<dyn OneTimeTokenStore>;
    /// Administrators' changes to the accounts of `users`.
    fn administration(&self) -> Arc<dyn UserAdministration>;
}

/// Implements [`Fixture`] for a struct holding each repository in a field named as the
/// trait's method (`users`, `sessions`, `organizations`, `api_keys`, `devices`,
/// `login_attempts`, `mfa`, `events`, `pruner`, `accounts`, `outbox`, `one_time_tokens`,
/// `administration`), each
/// an `Arc` of an adapter: as
/// [`MemoryStore`] does, and the Postgres test store.
#[macro_export]
macro_rules! fixture_from_fields {
    ($store:ty) => {
        $crate::fixture_from_fields!(@impl $store;
            users: UserRepository, sessions: SessionRepository,
            organizations: OrganizationRepository, api_keys: ApiKeyRepository,
            devices: DeviceRepository, login_attempts: LoginAttemptStore, mfa: MfaRepository,
            events: EventLog, pruner: Pruner, accounts: AccountRemover, outbox: MailOutbox,
            one_time_tokens: OneTimeTokenStore, administration: UserAdministration);
    };
    (@impl $store:ty; $($field:ident: $port:ident),*) => {
        impl $crate::contract::Fixture for $store {
            $(
                fn $field(&self) -> ::std::sync::Arc<dyn $crate::ports::$port> {
                    self.$field.clone()
                }
            )*
        }
    };
}

// The in-memory store is a fixture: every repository over one event log.
fixture_from_fields!(MemoryStore);

/// Expands to one `#[tokio::test]` per contract behaviour; `$fixture` is an async expression
/// yielding a fresh [`Fixture`].
///
/// No case can be left out. A case is a **private** `async fn case(f: &impl Fixture)` of this
/// module, and the list in the `@with` arm below is the only declaration of which cases exist:
/// from it, this module gets [`cases`] (the one public door to each case, expanded here by
/// `storage_contract_tests!(@registry)`) and each adapter's test crate gets its tests. A case
/// missing from the list is then a private function nothing calls, which `deny(dead_code)`
/// on this module turns into a build error; a listed name with no case does not resolve. So a
/// new case is registered for every backend, or nothing builds. (A test in this module also
/// checks that no case is declared `pub`, which would hide it from the lint.)
#[macro_export]
macro_rules! storage_contract_tests {
    ($fixture:expr) => {
        $crate::storage_contract_tests!(@with each $fixture);
    };
    (@registry) => {
        $crate::storage_contract_tests!(@with registry);
    };
    // The list of every contract case, once.
    (@with $arm:ident $($prefix:tt)*) => {
        $crate::storage_contract_tests!(@$arm $($prefix)*;
            user_round_trip, email_unique_case_insensitively, concurrent_registrations_one_winner,
            missing_user_is_none, update_password, update_profile, session_round_trip, rotation_spends_token,
            rotation_unknown_token, rotation_refuses_ended_sessions,
            concurrent_rotations_one_winner, revoke_keeps_first_time, revoke_by_spent_token,
            revoke_all_keeps_one,
            organization_round_trip, organization_create_is_atomic, list_for_user_roles_and_order,
            role_of_each_role, add_member_refusals, members_with_emails_in_order,
            remove_member_rules, concurrent_owner_removals_one_winner,
            api_key_round_trip, api_key_find_by_hashes, concurrent_key_lookups_answer_each_its_own,
            api_key_create_refuses_duplicates, api_key_meta_and_external_id_round_trip,
            api_key_update_applies_what_is_given_and_announces_it,
            api_key_update_refuses_revoked_expired_and_unknown_changing_nothing,
            api_key_limits_round_trip, concurrent_credit_spends_take_exactly_what_is_left,
            concurrent_leases_never_grant_past_the_limit,
            concurrent_usage_counts_add_up, prune_usage_older_than_ninety_days,
            concurrent_key_updates_and_revoke_stay_whole, api_key_list_by_external_id,
            rotation_carries_the_members_the_old_key_has_then,
            api_key_list_order_and_revoked,
            api_key_revoke, concurrent_key_revokes_one_winner, api_key_rotate,
            failed_rotation_changes_nothing, concurrent_key_rotations_one_winner, record_usage_moves_forward,
            device_round_trip, device_ids_byte_exact, device_id_unique_across_organizations,
            concurrent_device_registrations_one_winner, device_list_order_and_isolation,
            device_rotate_secret, device_revoke, concurrent_device_revokes_one_winner,
            record_authentications_moves_forward, values_stored_under_older_rules_still_load,
            login_failures_count_within_window, login_threshold_failure_locks,
            login_failures_while_locked_change_nothing, login_lock_ends_at_locked_until,
            login_failure_after_lock_starts_new_window, login_window_expiry_restarts_count,
            login_threshold_one_locks_every_new_window, login_reset_clears,
            login_keys_independent, concurrent_login_failures_none_lost,
            concurrent_login_failures_lock_once, login_success_undoes_its_lock,
            ending_changes_append_their_events, refused_changes_append_nothing,
            event_log_reads_after_and_holes, concurrent_revokes_append_once,
            event_trail_pages_by_organization_user_and_action,
            session_creation_appends_the_login, login_failures_append_their_events,
            organization_changes_append_their_events, api_key_creation_appends_its_event,
            events_carry_the_request_context,
            prune_sessions_ended_before_retention,
            prune_lockout_counters_once_window_and_lock_are_over,
            prune_concurrent_passes_delete_once,
            prune_expired_one_time_tokens_at_once, prune_expired_mfa_challenges,
            prune_stale_password_reset_requests,
            account_deletion_removes_everything_and_ends_sessions,
            account_deletion_refuses_the_last_owner_changing_nothing,
            concurrent_account_deletions_one_winner,
            account_deletion_and_owner_removal_keep_an_owner,
            mfa_enrolment_lifecycle, mfa_concurrent_step_one_winner,
            mfa_recovery_code_once_concurrently, mfa_challenge_spent_once,
            outbox_round_trip_oldest_first, outbox_lease_hides_claimed_mail,
            outbox_reschedule_counts_and_delays, outbox_concurrent_claims_hand_out_once,
            one_time_token_works_once_and_queues_its_mail, newer_one_time_token_kills_older,
            expired_one_time_token_refused, one_time_token_purposes_separate,
            concurrent_one_time_token_consumes_one_winner,
            mark_email_verified_once, confirm_address_verifies_the_current_address_once,
            change_of_address_applies_and_kills_older_links,
            change_of_address_to_a_taken_address_keeps_the_token,
            concurrent_address_confirmations_one_winner,
            password_reset_ends_sessions_and_clears_the_lock,
            password_reset_refuses_stale_and_expired_tokens,
            concurrent_password_resets_one_winner,
            reset_request_by_address_keeps_interval_and_mails_the_stored_address,
            reset_requests_are_leased_and_fulfilled_once,
            concurrent_reset_requests_issue_one_mail, account_deletion_removes_its_tokens,
            administration_keeps_the_last_administrator,
            concurrent_demotions_keep_an_administrator,
            disabling_ends_sessions_and_enabling_restores, administration_lists_in_pages,
            account_deletion_keeps_the_last_administrator, organizations_list_all_in_pages,
            administration_unlock_clears_the_lock_and_records_it);
    };
    (@registry; $($case:ident),* $(,)?) => {
        /// The contract cases, one public function each (generated from the list in
        /// [`storage_contract_tests!`]; each case's rustdoc is on its private body in
        /// `contract.rs`).
        pub mod cases {
            $(
                #[doc = concat!("Runs the contract case `", stringify!($case), "`.")]
                pub async fn $case(f: &impl super::Fixture) {
                    super::$case(f).await;
                }
            )*
        }
    };
    (@each $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture.await;
                $crate::contract::cases::$case(&fixture).await;
            }
        )*
    };
}

storage_contract_tests!(@registry);

fn clock() -> ManualClock {
    ManualClock::starting_now()
}

fn unique_email(tag: &str) -> Email {
    Email::parse(&format!("{tag}.{}@Example.COM", UserId::generate())).unwrap()
}

fn user(email: Email, now: DateTime<Utc>) -> User {
    User {
        id: UserId::generate(),
        email,
        display_name: Some(DisplayName::parse("Ada Lovelace").unwrap()),
        password_hash: PasswordHash::new(
            "$2b$04$abcdefghijklmnopqrstuu5Ue0Yk1T6nX7Q8Ww1lYwLxY9gk3yZ1C".into(),
        ),
        is_admin: false,
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    }
}

fn token(tag: &str) -> TokenHash {
    TokenHash::of(format!("{tag}-{}", UserId::generate()).as_bytes())
}

async fn stored_user(f: &impl Fixture, now: DateTime<Utc>) -> User {
    let u = user(unique_email("owner"), now);
    f.users().create(&u).await.unwrap();
    u
}

fn session_for(user: &User, now: DateTime<Utc>) -> Session {
    Session {
        id: SessionId::generate(),
        user_id: user.id,
        created_at: now,
        expires_at: now + Duration::days(30),
        revoked_at: None,
    }
}

/// A created user reads back field for field, by id and by email in any case.
async fn user_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let u = user(unique_email("round"), now);
    f.users().create(&u).await.unwrap();
    let by_id = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(by_id, u);
    assert_eq!(by_id.email.as_str(), u.email.as_str(), "stored as typed");
    let upper = Email::parse(&u.email.as_str().to_uppercase()).unwrap();
    let by_email = f.users().find_by_email(&upper).await.unwrap().unwrap();
    assert_eq!(by_email, u);
}

/// A second account whose email differs only in case is refused.
async fn email_unique_case_insensitively(f: &impl Fixture) {
    let now = clock().now();
    let first = user(unique_email("dup"), now);
    f.users().create(&first).await.unwrap();
    let again = user(
        Email::parse(&first.email.as_str().to_lowercase()).unwrap(),
        now,
    );
    let err = f.users().create(&again).await.unwrap_err();
    assert!(matches!(err, CreateUserError::EmailTaken), "{err:?}");
    assert!(f.users().find_by_id(again.id).await.unwrap().is_none());
}

/// Of 20 concurrent registrations of one email in mixed case, exactly one wins.
async fn concurrent_registrations_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let base = unique_email("race");
    let attempts = (0..20).map(|i| {
        let repo = f.users();
        let raw = if i % 2 == 0 {
            base.as_str().to_uppercase()
        } else {
            base.as_str().to_lowercase()
        };
        let u = user(Email::parse(&raw).unwrap(), now);
        async move { repo.create(&u).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut wins = 0;
    for r in results {
        match r {
            Ok(()) => wins += 1,
            Err(CreateUserError::EmailTaken) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Lookups of absent users answer `None`.
async fn missing_user_is_none(f: &impl Fixture) {
    assert!(
        f.users()
            .find_by_id(UserId::generate())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.users()
            .find_by_email(&unique_email("nobody"))
            .await
            .unwrap()
            .is_none()
    );
}

/// `update_password` replaces the hash and `updated_at`, and reports a missing user.
async fn update_password(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    c.advance(Duration::seconds(5));
    let new_hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    assert!(
        f.users()
            .update_password(u.id, &new_hash, PasswordUpdate::Rehash, c.now())
            .await
            .unwrap()
    );
    let read = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(read.password_hash, new_hash);
    assert_eq!(read.updated_at, c.now());
    assert_eq!(read.created_at, u.created_at);
    assert!(
        !f.users()
            .update_password(
                UserId::generate(),
                &new_hash,
                PasswordUpdate::Change,
                c.now()
            )
            .await
            .unwrap()
    );
}

/// A profile update returns the user as stored, which reads back field for field; `None`
/// clears the display name; an unknown user is `None` and creates nothing.
async fn update_profile(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    c.advance(Duration::seconds(5));
    let name = DisplayName::parse("Countess of Lovelace").unwrap();
    let updated = f
        .users()
        .update_profile(u.id, Some(&name), c.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.display_name, Some(name));
    assert_eq!(updated.updated_at, c.now());
    assert_eq!(updated.created_at, u.created_at);
    assert_eq!(updated.email, u.email);
    assert_eq!(updated.password_hash, u.password_hash);
    assert_eq!(f.users().find_by_id(u.id).await.unwrap().unwrap(), updated);

    c.advance(Duration::seconds(1));
    let cleared = f
        .users()
        .update_profile(u.id, None, c.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.display_name, None);
    assert_eq!(f.users().find_by_id(u.id).await.unwrap().unwrap(), cleared);

    let nobody = UserId::generate();
    assert!(
        f.users()
            .update_profile(nobody, None, c.now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(f.users().find_by_id(nobody).await.unwrap().is_none());
}

/// A created session reads back field for field.
async fn session_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let s = session_for(&u, now);
    f.sessions().create(&s, &token("first")).await.unwrap();
    assert_eq!(f.sessions().find(s.id).await.unwrap(), Some(s));
    assert_eq!(
        f.sessions().find(SessionId::generate()).await.unwrap(),
        None
    );
}

/// Rotation spends the presented token; presenting it again is a reuse, with its time.
async fn rotation_spends_token(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let s = session_for(&u, c.now());
    let (t1, t2, t3) = (token("t1"), token("t2"), token("t3"));
    f.sessions().create(&s, &t1).await.unwrap();
    c.advance(Duration::seconds(10));
    let rotated_at = c.now();
    assert_eq!(
        f.sessions().rotate(&t1, &t2, rotated_at).await.unwrap(),
        Rotation::Rotated {
            session: s.clone(),
            user: Box::new(u.clone())
        }
    );
    c.advance(Duration::seconds(10));
    assert_eq!(
        f.sessions().rotate(&t1, &t3, c.now()).await.unwrap(),
        Rotation::Reused {
            session_id: s.id,
            rotated_at
        }
    );
    // The reuse attempt changed nothing: t3 was not stored, t2 is still current.
    assert_eq!(
        f.sessions()
            .rotate(&t3, &token("x"), c.now())
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert_eq!(
        f.sessions().rotate(&t2, &t3, c.now()).await.unwrap(),
        Rotation::Rotated {
            session: s,
            user: Box::new(u)
        }
    );
}

/// An unknown token rotates nothing.
async fn rotation_unknown_token(f: &impl Fixture) {
    let now = clock().now();
    assert_eq!(
        f.sessions()
            .rotate(&token("nope"), &token("next"), now)
            .await
            .unwrap(),
        Rotation::Unknown
    );
}

/// Tokens of revoked or expired sessions do not rotate, and the attempt changes nothing.
async fn rotation_refuses_ended_sessions(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let expiring = Session {
        expires_at: c.now() + Duration::seconds(60),
        ..session_for(&u, c.now())
    };
    let (te, tr) = (token("expiring"), token("revoked"));
    f.sessions().create(&expiring, &te).await.unwrap();
    let revoked = session_for(&u, c.now());
    f.sessions().create(&revoked, &tr).await.unwrap();
    assert!(f.sessions().revoke(revoked.id, c.now()).await.unwrap());
    assert_eq!(
        f.sessions()
            .rotate(&tr, &token("n"), c.now())
            .await
            .unwrap(),
        Rotation::Inactive
    );
    c.advance(Duration::seconds(61));
    let next = token("n2");
    assert_eq!(
        f.sessions().rotate(&te, &next, c.now()).await.unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        f.sessions()
            .rotate(&next, &token("n3"), c.now())
            .await
            .unwrap(),
        Rotation::Unknown
    );
    // Still unspent: seen as current of an inactive session, not as a reuse.
    assert_eq!(
        f.sessions()
            .rotate(&te, &token("n4"), c.now())
            .await
            .unwrap(),
        Rotation::Inactive
    );
}

/// Of 20 concurrent rotations of one token, exactly one wins; the rest see a reuse.
async fn concurrent_rotations_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let s = session_for(&u, now);
    let t = token("shared");
    f.sessions().create(&s, &t).await.unwrap();
    let attempts = (0..20).map(|i| {
        let repo = f.sessions();
        async move { repo.rotate(&t, &token(&format!("next{i}")), now).await }
    });
    let results = futures::future::join_all(attempts).await;
    let (mut rotated, mut reused) = (0, 0);
    for r in results {
        match r.unwrap() {
            Rotation::Rotated { .. } => rotated += 1,
            Rotation::Reused { session_id, .. } => {
                assert_eq!(session_id, s.id);
                reused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rotated, reused), (1, 19));
}

/// Revoking twice reports the second as a no-op and keeps the first `revoked_at`.
async fn revoke_keeps_first_time(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let s = session_for(&u, c.now());
    f.sessions().create(&s, &token("r")).await.unwrap();
    let first = c.now();
    assert!(f.sessions().revoke(s.id, first).await.unwrap());
    c.advance(Duration::seconds(3));
    assert!(!f.sessions().revoke(s.id, c.now()).await.unwrap());
    assert_eq!(
        f.sessions().find(s.id).await.unwrap().unwrap().revoked_at,
        Some(first)
    );
    assert!(
        !f.sessions()
            .revoke(SessionId::generate(), c.now())
            .await
            .unwrap()
    );
}

/// Any token a session issued, spent or current, finds it for logout.
async fn revoke_by_spent_token(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let s = session_for(&u, now);
    let (t1, t2) = (token("a"), token("b"));
    f.sessions().create(&s, &t1).await.unwrap();
    f.sessions().rotate(&t1, &t2, now).await.unwrap();
    assert_eq!(
        f.sessions().revoke_by_token(&t1, now).await.unwrap(),
        Some(s.id)
    );
    assert!(
        !f.sessions()
            .find(s.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    assert_eq!(
        f.sessions().rotate(&t2, &token("c"), now).await.unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        f.sessions()
            .revoke_by_token(&token("unknown"), now)
            .await
            .unwrap(),
        None
    );
}

/// `revoke_all_for_user` ends every active session of that user but the kept one, and no
/// other user's.
async fn revoke_all_keeps_one(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let other = stored_user(f, now).await;
    let sessions: Vec<Session> = (0..3).map(|_| session_for(&u, now)).collect();
    for s in &sessions {
        f.sessions().create(s, &token("s")).await.unwrap();
    }
    let theirs = session_for(&other, now);
    f.sessions().create(&theirs, &token("o")).await.unwrap();
    f.sessions().revoke(sessions[2].id, now).await.unwrap();

    let ended = f
        .sessions()
        .revoke_all_for_user(u.id, Some(sessions[0].id), now)
        .await
        .unwrap();
    assert_eq!(ended, vec![sessions[1].id]);
    assert!(
        f.sessions()
            .find(sessions[0].id)
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    assert!(
        f.sessions()
            .find(theirs.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    let all = f
        .sessions()
        .revoke_all_for_user(u.id, None, now)
        .await
        .unwrap();
    assert_eq!(all, vec![sessions[0].id]);
}

// ---- Organizations -------------------------------------------------------------------------

fn organization(name: &str, created_at: DateTime<Utc>) -> Organization {
    Organization {
        id: OrganizationId::generate(),
        name: OrganizationName::parse(name).unwrap(),
        created_at,
    }
}

async fn stored_org(f: &impl Fixture, owner: &User, now: DateTime<Utc>) -> Organization {
    let org = organization("Acme", now);
    f.organizations().create(&org, owner.id).await.unwrap();
    org
}

fn membership(org: &Organization, user: &User, role: Role, at: DateTime<Utc>) -> Membership {
    Membership {
        organization_id: org.id,
        user_id: user.id,
        role,
        created_at: at,
    }
}

fn member(membership: Membership, user: &User) -> Member {
    Member {
        membership,
        email: user.email.clone(),
    }
}

/// Two fresh ids of one kind, in ascending order.
fn two_ids<T: Ord>(generate: impl Fn() -> T) -> (T, T) {
    let (a, b) = (generate(), generate());
    if a < b { (a, b) } else { (b, a) }
}

/// A created organization reads back field for field, with its creator as its only member,
/// an owner since the organization's creation.
async fn organization_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let owner = stored_user(f, now).await;
    let org = stored_org(f, &owner, now).await;
    assert_eq!(
        f.organizations().find(org.id).await.unwrap(),
        Some(org.clone())
    );
    assert_eq!(
        f.organizations()
            .find(OrganizationId::generate())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        f.organizations().role_of(org.id, owner.id).await.unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(
        f.organizations().list_for_user(owner.id).await.unwrap(),
        vec![(org.clone(), Role::Owner)]
    );
    let members = f.organizations().members(org.id).await.unwrap();
    assert_eq!(
        members,
        vec![member(membership(&org, &owner, Role::Owner, now), &owner)]
    );
    assert_eq!(
        members[0].email.as_str(),
        owner.email.as_str(),
        "email as typed"
    );
}

/// Creation stores the organization and its owner's membership together, or neither: an
/// unknown owner or a taken id is refused and leaves nothing behind.
async fn organization_create_is_atomic(f: &impl Fixture) {
    let now = clock().now();
    let orphan = organization("Orphan", now);
    assert!(
        f.organizations()
            .create(&orphan, UserId::generate())
            .await
            .is_err()
    );
    assert_eq!(f.organizations().find(orphan.id).await.unwrap(), None);

    let (first, second) = (stored_user(f, now).await, stored_user(f, now).await);
    let org = stored_org(f, &first, now).await;
    let clash = Organization {
        name: OrganizationName::parse("Clash").unwrap(),
        ..org.clone()
    };
    assert!(f.organizations().create(&clash, second.id).await.is_err());
    assert_eq!(
        f.organizations().find(org.id).await.unwrap(),
        Some(org.clone())
    );
    assert_eq!(
        f.organizations().role_of(org.id, second.id).await.unwrap(),
        None
    );
    assert!(
        f.organizations()
            .list_for_user(second.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A user's organizations come with their role in each, ordered by the organization's
/// creation time, then id; other users' organizations are not listed.
async fn list_for_user_roles_and_order(f: &impl Fixture) {
    let c = clock();
    let t0 = c.now();
    let u = stored_user(f, t0).await;
    let other = stored_user(f, t0).await;

    // Created out of order: the list follows creation times, not insertion.
    let newest = stored_org(f, &u, t0 + Duration::seconds(2)).await;
    let oldest = stored_org(f, &other, t0).await;
    let (low, high) = two_ids(OrganizationId::generate);
    let tie_high = Organization {
        id: high,
        ..organization("Tie high", t0 + Duration::seconds(1))
    };
    let tie_low = Organization {
        id: low,
        ..organization("Tie low", t0 + Duration::seconds(1))
    };
    f.organizations().create(&tie_high, other.id).await.unwrap();
    f.organizations().create(&tie_low, other.id).await.unwrap();
    let theirs = stored_org(f, &other, t0).await;

    let now = c.now();
    for (org, role) in [
        (&oldest, Role::Admin),
        (&tie_high, Role::Member),
        (&tie_low, Role::Admin),
    ] {
        f.organizations()
            .add_member(&membership(org, &u, role, now))
            .await
            .unwrap();
    }

    assert_eq!(
        f.organizations().list_for_user(u.id).await.unwrap(),
        vec![
            (oldest.clone(), Role::Admin),
            (tie_low.clone(), Role::Admin),
            (tie_high.clone(), Role::Member),
            (newest, Role::Owner),
        ]
    );
    let (first, second) = if oldest.id < theirs.id {
        (oldest, theirs)
    } else {
        (theirs, oldest)
    };
    assert_eq!(
        f.organizations().list_for_user(other.id).await.unwrap(),
        vec![
            (first, Role::Owner),
            (second, Role::Owner),
            (tie_low, Role::Owner),
            (tie_high, Role::Owner),
        ]
    );
    assert!(
        f.organizations()
            .list_for_user(UserId::generate())
            .await
            .unwrap()
            .is_empty()
    );
}

/// `role_of` answers each member's role, and `None` for non-members and unknown
/// organizations.
async fn role_of_each_role(f: &impl Fixture) {
    let now = clock().now();
    let owner = stored_user(f, now).await;
    let admin = stored_user(f, now).await;
    let plain = stored_user(f, now).await;
    let outsider = stored_user(f, now).await;
    let org = stored_org(f, &owner, now).await;
    for (user, role) in [(&admin, Role::Admin), (&plain, Role::Member)] {
        f.organizations()
            .add_member(&membership(&org, user, role, now))
            .await
            .unwrap();
    }
    let repo = f.organizations();
    assert_eq!(
        repo.role_of(org.id, owner.id).await.unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(
        repo.role_of(org.id, admin.id).await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        repo.role_of(org.id, plain.id).await.unwrap(),
        Some(Role::Member)
    );
    assert_eq!(repo.role_of(org.id, outsider.id).await.unwrap(), None);
    assert_eq!(
        repo.role_of(OrganizationId::generate(), owner.id)
            .await
            .unwrap(),
        None
    );
}

/// One membership per (organization, user): a second `add_member` is `AlreadyMember` and
/// changes nothing; an unknown user or organization is `NotFound` and stores nothing.
async fn add_member_refusals(f: &impl Fixture) {
    let now = clock().now();
    let owner = stored_user(f, now).await;
    let joiner = stored_user(f, now).await;
    let org = stored_org(f, &owner, now).await;
    let repo = f.organizations();

    let err = repo
        .add_member(&membership(&org, &owner, Role::Member, now))
        .await
        .unwrap_err();
    assert!(matches!(err, AddMemberError::AlreadyMember), "{err:?}");
    assert_eq!(
        repo.role_of(org.id, owner.id).await.unwrap(),
        Some(Role::Owner)
    );

    repo.add_member(&membership(&org, &joiner, Role::Member, now))
        .await
        .unwrap();
    let err = repo
        .add_member(&membership(&org, &joiner, Role::Admin, now))
        .await
        .unwrap_err();
    assert!(matches!(err, AddMemberError::AlreadyMember), "{err:?}");
    assert_eq!(
        repo.role_of(org.id, joiner.id).await.unwrap(),
        Some(Role::Member)
    );

    let ghost = user(unique_email("ghost"), now);
    let err = repo
        .add_member(&membership(&org, &ghost, Role::Member, now))
        .await
        .unwrap_err();
    assert!(matches!(err, AddMemberError::NotFound), "{err:?}");
    assert_eq!(repo.role_of(org.id, ghost.id).await.unwrap(), None);

    let nowhere = organization("Nowhere", now);
    let err = repo
        .add_member(&membership(&nowhere, &joiner, Role::Member, now))
        .await
        .unwrap_err();
    assert!(matches!(err, AddMemberError::NotFound), "{err:?}");
    assert_eq!(repo.role_of(nowhere.id, joiner.id).await.unwrap(), None);
    assert_eq!(repo.members(org.id).await.unwrap().len(), 2);
}

/// Members come with their emails as typed, ordered by when they joined, then user id;
/// only the organization's own members are listed.
async fn members_with_emails_in_order(f: &impl Fixture) {
    let c = clock();
    let t0 = c.now();
    let owner = stored_user(f, t0).await;
    let org = stored_org(f, &owner, t0).await;
    let other_org = stored_org(f, &owner, t0).await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(stored_user(f, t0).await);
    }
    users[2..].sort_by_key(|u| u.id);
    let later = membership(&org, &users[0], Role::Member, t0 + Duration::seconds(2));
    let earlier = membership(&org, &users[1], Role::Admin, t0 + Duration::seconds(1));
    let tie_high = membership(&org, &users[3], Role::Member, t0 + Duration::seconds(3));
    let tie_low = membership(&org, &users[2], Role::Owner, t0 + Duration::seconds(3));
    for m in [&later, &earlier, &tie_high, &tie_low] {
        f.organizations().add_member(m).await.unwrap();
    }
    f.organizations()
        .add_member(&membership(&other_org, &users[0], Role::Admin, t0))
        .await
        .unwrap();

    let members = f.organizations().members(org.id).await.unwrap();
    assert_eq!(
        members,
        vec![
            member(membership(&org, &owner, Role::Owner, t0), &owner),
            member(earlier, &users[1]),
            member(later, &users[0]),
            member(tie_low, &users[2]),
            member(tie_high, &users[3]),
        ]
    );
    assert!(
        f.organizations()
            .members(OrganizationId::generate())
            .await
            .unwrap()
            .is_empty()
    );
}

/// `remove_member` answers the removed role; it refuses non-members (`NotFound`) and the
/// only owner (`LastOwner`), but removes an owner while another remains.
async fn remove_member_rules(f: &impl Fixture) {
    let now = clock().now();
    let first = stored_user(f, now).await;
    let second = stored_user(f, now).await;
    let admin = stored_user(f, now).await;
    let plain = stored_user(f, now).await;
    let outsider = stored_user(f, now).await;
    let org = stored_org(f, &first, now).await;
    let repo = f.organizations();
    for (user, role) in [(&admin, Role::Admin), (&plain, Role::Member)] {
        repo.add_member(&membership(&org, user, role, now))
            .await
            .unwrap();
    }

    let err = repo
        .remove_member(org.id, outsider.id, now)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoveMemberError::NotFound), "{err:?}");
    let err = repo
        .remove_member(OrganizationId::generate(), first.id, now)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoveMemberError::NotFound), "{err:?}");

    let err = repo.remove_member(org.id, first.id, now).await.unwrap_err();
    assert!(matches!(err, RemoveMemberError::LastOwner), "{err:?}");
    assert_eq!(
        repo.role_of(org.id, first.id).await.unwrap(),
        Some(Role::Owner)
    );

    assert_eq!(
        repo.remove_member(org.id, plain.id, now).await.unwrap(),
        Role::Member
    );
    assert_eq!(
        repo.remove_member(org.id, admin.id, now).await.unwrap(),
        Role::Admin
    );
    assert_eq!(repo.role_of(org.id, plain.id).await.unwrap(), None);
    let err = repo.remove_member(org.id, plain.id, now).await.unwrap_err();
    assert!(matches!(err, RemoveMemberError::NotFound), "{err:?}");

    repo.add_member(&membership(&org, &second, Role::Owner, now))
        .await
        .unwrap();
    assert_eq!(
        repo.remove_member(org.id, first.id, now).await.unwrap(),
        Role::Owner
    );
    let err = repo
        .remove_member(org.id, second.id, now)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoveMemberError::LastOwner), "{err:?}");
    assert_eq!(
        repo.members(org.id).await.unwrap(),
        vec![member(membership(&org, &second, Role::Owner, now), &second)]
    );
}

/// Two concurrent removals of an organization's two owners: exactly one succeeds, the other
/// is `LastOwner`, and one owner remains. Races run in rounds of eight organizations at once,
/// to give a missing lock every chance to show.
async fn concurrent_owner_removals_one_winner(f: &impl Fixture) {
    let now = clock().now();
    for _round in 0..5 {
        let mut orgs = Vec::new();
        for _ in 0..8 {
            let (a, b) = (stored_user(f, now).await, stored_user(f, now).await);
            let org = stored_org(f, &a, now).await;
            f.organizations()
                .add_member(&membership(&org, &b, Role::Owner, now))
                .await
                .unwrap();
            orgs.push((org.id, [a.id, b.id]));
        }
        let attempts = orgs.iter().flat_map(|&(org, owners)| {
            owners.map(|user| {
                let repo = f.organizations();
                async move { (org, repo.remove_member(org, user, now).await) }
            })
        });
        let results = futures::future::join_all(attempts).await;
        for &(org, _) in &orgs {
            let (mut removed, mut refused) = (0, 0);
            for (_, r) in results.iter().filter(|(o, _)| *o == org) {
                match r {
                    Ok(Role::Owner) => removed += 1,
                    Err(RemoveMemberError::LastOwner) => refused += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!((removed, refused), (1, 1), "organization {org}");
            let members = f.organizations().members(org).await.unwrap();
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].membership.role, Role::Owner);
        }
    }
}

// ---- API keys ------------------------------------------------------------------------------

fn scopes(names: &[&str]) -> Scopes {
    Scopes::new(names.iter().map(|s| Scope::parse(s).unwrap()).collect()).unwrap()
}

fn api_key(org: OrganizationId, created_at: DateTime<Utc>) -> ApiKey {
    ApiKey {
        id: ApiKeyId::generate(),
        organization_id: org,
        name: ApiKeyName::parse("CI deploy").unwrap(),
        prefix: "ak_live_AbCd1234".into(),
        key_hash: token("api-key"),
        scopes: scopes(&["keys:read", "deploy.write", "admin"]),
        created_at,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        meta: None,
        external_id: None,
        rate_limit: None,
        credits: None,
    }
}

/// A stored organization to own keys.
async fn key_owner(f: &impl Fixture, now: DateTime<Utc>) -> Organization {
    let owner = stored_user(f, now).await;
    stored_org(f, &owner, now).await
}

async fn stored_key(f: &impl Fixture, org: OrganizationId, now: DateTime<Utc>) -> ApiKey {
    let key = api_key(org, now);
    f.api_keys().create(&key).await.unwrap();
    key
}

/// A key's rate limit and credits (with their refill and its date) read back field for field;
/// a change sets and clears them, clearing the count clears its refill, a count set alone keeps
/// the refill and is dated by the change; rotation carries them over.
async fn api_key_limits_round_trip(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let refill = Refill::new(50, RefillPeriod::Month).unwrap();
    let key = ApiKey {
        rate_limit: Some(RateLimit::new(100, 10).unwrap()),
        credits: Some(Credits {
            remaining: 42,
            refill: Some(refill),
            refilled_at: c.now(),
        }),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&key).await.unwrap();
    assert_eq!(f.api_keys().find(key.id).await.unwrap(), Some(key.clone()));
    assert_eq!(
        f.api_keys().find_by_hash(&key.key_hash).await.unwrap(),
        Some(key.clone())
    );

    c.advance(Duration::seconds(5));
    let recount = ApiKeyChanges {
        remaining: Some(Some(7)),
        rate_limit: Some(Some(RateLimit::new(5, 60).unwrap())),
        ..ApiKeyChanges::default()
    };
    let changed = f
        .api_keys()
        .update(key.id, &recount, c.now())
        .await
        .unwrap();
    let expected = ApiKey {
        rate_limit: Some(RateLimit::new(5, 60).unwrap()),
        credits: Some(Credits {
            remaining: 7,
            refill: Some(refill),
            refilled_at: c.now(),
        }),
        ..key.clone()
    };
    assert_eq!(changed, expected);
    assert_eq!(f.api_keys().find(key.id).await.unwrap(), Some(expected));

    let unlimited = ApiKeyChanges {
        remaining: Some(None),
        rate_limit: Some(None),
        ..ApiKeyChanges::default()
    };
    let cleared = f
        .api_keys()
        .update(key.id, &unlimited, c.now())
        .await
        .unwrap();
    assert_eq!((cleared.rate_limit, cleared.credits), (None, None));
    assert_eq!(f.api_keys().find(key.id).await.unwrap(), Some(cleared));

    let daily = Refill::new(3, RefillPeriod::Day).unwrap();
    let both = ApiKeyChanges {
        remaining: Some(Some(0)),
        refill: Some(Some(daily)),
        ..ApiKeyChanges::default()
    };
    f.api_keys().update(key.id, &both, c.now()).await.unwrap();
    let no_refill = ApiKeyChanges {
        refill: Some(None),
        rate_limit: Some(Some(RateLimit::new(9, 30).unwrap())),
        ..ApiKeyChanges::default()
    };
    let kept = f
        .api_keys()
        .update(key.id, &no_refill, c.now())
        .await
        .unwrap();
    assert_eq!(
        kept.credits,
        Some(Credits {
            remaining: 0,
            refill: None,
            refilled_at: c.now(),
        })
    );

    let next = ApiKey {
        id: ApiKeyId::generate(),
        key_hash: token("successor"),
        rate_limit: None,
        credits: None,
        ..api_key(org.id, c.now())
    };
    f.api_keys().rotate(key.id, &next, c.now()).await.unwrap();
    let successor = f.api_keys().find(next.id).await.unwrap().unwrap();
    assert_eq!(successor.credits, kept.credits);
    assert_eq!(successor.rate_limit, Some(RateLimit::new(9, 30).unwrap()));
}

/// Of 300 concurrent spends of a key with 100 credits exactly 100 succeed, each leaving a
/// different count (99 down to 0), the rest find none left; a refill that is due is applied
/// by the first spend of its period, once; a revoked or expired key, a key without credits and
/// an unknown one are not metered, and nothing changes.
async fn concurrent_credit_spends_take_exactly_what_is_left(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let key = ApiKey {
        credits: Some(Credits {
            remaining: 100,
            refill: None,
            refilled_at: c.now(),
        }),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&key).await.unwrap();
    let keys = f.api_keys();
    let spends = (0..300).map(|_| keys.spend_credit(key.id, c.now()));
    let outcomes = futures::future::join_all(spends).await;
    let mut left: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o.as_ref().unwrap() {
            CreditSpend::Spent { remaining } => Some(*remaining),
            CreditSpend::Exhausted => None,
            CreditSpend::Unmetered => panic!("a key with credits is metered"),
        })
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..100).collect::<Vec<u64>>());
    assert_eq!(
        keys.spend_credit(key.id, c.now()).await.unwrap(),
        CreditSpend::Exhausted
    );
    assert_eq!(
        keys.find(key.id)
            .await
            .unwrap()
            .unwrap()
            .credits
            .unwrap()
            .remaining,
        0
    );

    // A daily refill: set back at the next midnight (UTC), by the first spend after it.
    let daily = ApiKey {
        id: ApiKeyId::generate(),
        key_hash: token("daily"),
        credits: Some(Credits {
            remaining: 0,
            refill: Some(Refill::new(3, RefillPeriod::Day).unwrap()),
            refilled_at: c.now(),
        }),
        ..api_key(org.id, c.now())
    };
    keys.create(&daily).await.unwrap();
    assert_eq!(
        keys.spend_credit(daily.id, c.now()).await.unwrap(),
        CreditSpend::Exhausted
    );
    let midnight = RefillPeriod::Day.period_start(c.now()) + Duration::days(1);
    c.set(midnight + Duration::minutes(1));
    let spends = (0..5).map(|_| keys.spend_credit(daily.id, c.now()));
    let mut refilled: Vec<CreditSpend> = futures::future::join_all(spends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    refilled.sort_by_key(|o| match o {
        CreditSpend::Spent { remaining } => *remaining,
        _ => u64::MAX,
    });
    assert_eq!(
        refilled,
        [
            CreditSpend::Spent { remaining: 0 },
            CreditSpend::Spent { remaining: 1 },
            CreditSpend::Spent { remaining: 2 },
            CreditSpend::Exhausted,
            CreditSpend::Exhausted,
        ]
    );
    assert_eq!(
        keys.find(daily.id).await.unwrap().unwrap().credits,
        Some(Credits {
            remaining: 0,
            refill: Some(Refill::new(3, RefillPeriod::Day).unwrap()),
            refilled_at: midnight,
        })
    );

    // Not metered: revoked, expired, without credits, unknown.
    let revoked = ApiKey {
        id: ApiKeyId::generate(),
        key_hash: token("revoked"),
        ..daily.clone()
    };
    keys.create(&revoked).await.unwrap();
    keys.revoke(revoked.id, c.now()).await.unwrap();
    let expired = ApiKey {
        id: ApiKeyId::generate(),
        key_hash: token("expired"),
        expires_at: Some(c.now()),
        ..daily.clone()
    };
    keys.create(&expired).await.unwrap();
    let plain = ApiKey {
        id: ApiKeyId::generate(),
        key_hash: token("plain"),
        ..api_key(org.id, c.now())
    };
    keys.create(&plain).await.unwrap();
    for id in [revoked.id, expired.id, plain.id, ApiKeyId::generate()] {
        assert_eq!(
            keys.spend_credit(id, c.now()).await.unwrap(),
            CreditSpend::Unmetered
        );
    }
    assert_eq!(
        keys.find(revoked.id).await.unwrap().unwrap().credits,
        revoked.credits
    );
    assert_eq!(
        keys.find(expired.id).await.unwrap().unwrap().credits,
        expired.credits
    );
}

/// Leases of one window asked for concurrently never grant more than the limit in all, and
/// grant all of it, at most a quarter of what is left per grant; what is given back is
/// granted again; a request for an earlier window (an
/// instance whose clock lags) is served from the current one, gives nothing back, and says
/// which window it was granted in; a later window, or a window of another length (a key whose
/// `window_seconds` changed, whichever way), starts afresh.
async fn concurrent_leases_never_grant_past_the_limit(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let key = ApiKey {
        rate_limit: Some(RateLimit::new(100, 60).unwrap()),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&key).await.unwrap();
    let keys = f.api_keys();
    let window = RateLimit::new(100, 60).unwrap().window_start(c.now());
    let ask = |ask: u32, give_back: u32, window_start: DateTime<Utc>| LeaseRequest {
        window_start,
        window_seconds: 60,
        limit: 100,
        ask,
        give_back,
    };
    let leases = (0..120u32).map(|i| keys.lease(key.id, ask(1 + i % 7, 0, window)));
    let granted: Vec<_> = futures::future::join_all(leases)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(granted.iter().map(|l| l.granted).sum::<u32>(), 100);
    assert!(
        granted
            .iter()
            .all(|l| l.taken <= 100 && l.window_start == window)
    );
    assert_eq!(granted.iter().map(|l| l.taken).max(), Some(100));
    assert_eq!(
        keys.lease(key.id, ask(5, 0, window)).await.unwrap().granted,
        0
    );

    // Given back, granted again.
    let back = keys.lease(key.id, ask(0, 4, window)).await.unwrap();
    assert_eq!((back.granted, back.taken), (0, 96));
    // At most a quarter of what is left (at least one) per grant.
    let again = keys.lease(key.id, ask(10, 0, window)).await.unwrap();
    assert_eq!((again.granted, again.taken), (1, 97));

    // An earlier window is served from the current one and gives nothing back.
    let older = window - Duration::seconds(60);
    let late = keys.lease(key.id, ask(10, 50, older)).await.unwrap();
    assert_eq!(
        (late.granted, late.taken, late.window_start),
        (1, 98, window)
    );
    let newer = window + Duration::seconds(60);
    let fresh = keys.lease(key.id, ask(30, 0, newer)).await.unwrap();
    assert_eq!((fresh.granted, fresh.taken), (25, 25));
    let lagging = keys.lease(key.id, ask(10, 0, window)).await.unwrap();
    assert_eq!(
        (lagging.granted, lagging.taken, lagging.window_start),
        (10, 35, newer)
    );

    // A longer window starts afresh even though it began earlier; so does a shorter one.
    let day = RateLimit::new(100, 86_400).unwrap().window_start(newer);
    assert!(day < newer);
    let longer = LeaseRequest {
        window_seconds: 86_400,
        ..ask(7, 0, day)
    };
    let granted = keys.lease(key.id, longer).await.unwrap();
    assert_eq!(
        (granted.granted, granted.taken, granted.window_start),
        (7, 7, day)
    );
    let shorter = keys.lease(key.id, ask(5, 0, newer)).await.unwrap();
    assert_eq!((shorter.granted, shorter.taken), (5, 5));
}

/// One key's use in one hour, as an instance writes it.
fn hour_usage(
    key: ApiKeyId,
    hour: DateTime<Utc>,
    counts: UsageCounts,
    last_used: Option<DateTime<Utc>>,
) -> HourUsage {
    HourUsage {
        key,
        hour,
        counts,
        last_used,
    }
}

/// Counts recorded in 40 batches at once (as from many instances), each naming the same key
/// and hours, and a key twice in one batch, add up exactly; a key that does not exist is
/// skipped and the rest of its batch is added; `usage` answers the key's own hours of
/// `[from, to)` that counted a verification, in order (an hour with only a last use, a
/// request the key authenticated, is not one).
async fn concurrent_usage_counts_add_up(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let (a, b) = (api_key(org.id, c.now()), api_key(org.id, c.now()));
    let b = ApiKey {
        key_hash: token("other"),
        ..b
    };
    f.api_keys().create(&a).await.unwrap();
    f.api_keys().create(&b).await.unwrap();
    let h0 = hour_of(c.now());
    let (h1, h2) = (h0 + Duration::hours(1), h0 + Duration::hours(2));
    let one = |valid, revoked| UsageCounts {
        valid,
        revoked,
        ..UsageCounts::default()
    };
    let keys = f.api_keys();
    // Each writer saw its own last use of `a` in h1 (as instances do): the latest of all
    // stays, whichever commits last.
    let batches: Vec<_> = (0..40)
        .map(|i| {
            let seen = h1 + Duration::seconds(i64::from((i * 17) % 40));
            vec![
                hour_usage(a.id, h0, one(1, 0), Some(h0)),
                hour_usage(a.id, h1, one(2, 1), None),
                hour_usage(a.id, h1, one(1, 0), Some(seen)),
                hour_usage(ApiKeyId::generate(), h0, one(5, 5), Some(h0)),
                hour_usage(b.id, h0, one(0, 3), None),
                hour_usage(b.id, h1, one(0, 0), Some(h1)),
            ]
        })
        .collect();
    let writes = batches.iter().map(|batch| keys.record_usage(batch));
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    let latest = keys.find(a.id).await.unwrap().unwrap().last_used_at;
    assert_eq!(latest, Some(h1 + Duration::seconds(39)));
    keys.record_usage(&[hour_usage(a.id, h2, one(7, 0), Some(h2))])
        .await
        .unwrap();
    keys.record_usage(&[]).await.unwrap();
    let bucket = |start, counts| UsageBucket { start, counts };
    assert_eq!(
        keys.usage(a.id, h0, h2 + Duration::hours(1)).await.unwrap(),
        [
            bucket(h0, one(40, 0)),
            bucket(h1, one(120, 40)),
            bucket(h2, one(7, 0)),
        ]
    );
    assert_eq!(
        keys.usage(a.id, h1, h2).await.unwrap(),
        [bucket(h1, one(120, 40))],
        "from included, to excluded"
    );
    assert_eq!(
        keys.usage(b.id, h0, h2).await.unwrap(),
        [bucket(h0, one(0, 120))]
    );
    assert!(keys.usage(a.id, h2, h0).await.unwrap().is_empty());
    let last_used = async |id| keys.find(id).await.unwrap().unwrap().last_used_at;
    assert_eq!(last_used(a.id).await, Some(h2));
    assert_eq!(last_used(b.id).await, Some(h1));
}

/// The retention pass deletes the counts of hours that began more than 90 days before it, and
/// keeps the hour at the cutoff and later ones. The last use of a key whose every hour is
/// deleted stays its `last_used_at`, as does an older last use when the later hours kept only
/// refused it.
async fn prune_usage_older_than_ninety_days(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let key = api_key(org.id, c.now());
    let (gone, refused) = (
        ApiKey {
            key_hash: token("gone"),
            ..api_key(org.id, c.now())
        },
        ApiKey {
            key_hash: token("refused"),
            ..api_key(org.id, c.now())
        },
    );
    for k in [&key, &gone, &refused] {
        f.api_keys().create(k).await.unwrap();
    }
    let now = hour_of(c.now());
    let cutoff = now - Duration::days(90);
    let counts = UsageCounts {
        valid: 1,
        ..UsageCounts::default()
    };
    let hours = [
        cutoff - Duration::days(3),
        cutoff - Duration::hours(1),
        cutoff,
        now,
    ];
    let at = |hour: DateTime<Utc>| hour + Duration::microseconds(1_234_567);
    let mut batch: Vec<_> = hours
        .iter()
        .map(|h| hour_usage(key.id, *h, counts, Some(at(*h))))
        .collect();
    let old = cutoff - Duration::hours(5);
    batch.extend([
        hour_usage(
            gone.id,
            old - Duration::hours(1),
            counts,
            Some(at(old) - Duration::hours(1)),
        ),
        hour_usage(gone.id, old, counts, Some(at(old))),
        hour_usage(refused.id, old, counts, Some(at(old))),
        hour_usage(
            refused.id,
            now,
            UsageCounts {
                revoked: 2,
                ..UsageCounts::default()
            },
            None,
        ),
    ]);
    f.api_keys().record_usage(&batch).await.unwrap();
    let report = f
        .pruner()
        .prune(&RetentionPolicy::default(), now)
        .await
        .unwrap();
    assert_eq!(report.deleted().api_key_usage, 5, "{report:?}");
    let kept: Vec<_> = f
        .api_keys()
        .usage(
            key.id,
            cutoff - Duration::days(10),
            now + Duration::hours(1),
        )
        .await
        .unwrap()
        .iter()
        .map(|b| b.start)
        .collect();
    assert_eq!(kept, [cutoff, now]);
    let last_used = async |id| f.api_keys().find(id).await.unwrap().unwrap().last_used_at;
    assert_eq!(last_used(key.id).await, Some(at(now)));
    assert_eq!(last_used(gone.id).await, Some(at(old)));
    assert_eq!(last_used(refused.id).await, Some(at(old)));
    assert!(
        f.api_keys()
            .usage(gone.id, old - Duration::days(1), now)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A created key reads back field for field (scopes and optional times included, to the
/// microsecond), by id and by hash; unknown ids and hashes answer `None`.
async fn api_key_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let bare = ApiKey {
        scopes: Scopes::default(),
        ..api_key(org.id, now)
    };
    let full = ApiKey {
        expires_at: Some(now + Duration::days(30) + Duration::microseconds(1)),
        revoked_at: Some(now + Duration::microseconds(123_457)),
        last_used_at: Some(now + Duration::microseconds(999_999)),
        ..api_key(org.id, now)
    };
    for key in [&bare, &full] {
        f.api_keys().create(key).await.unwrap();
        assert_eq!(f.api_keys().find(key.id).await.unwrap().as_ref(), Some(key));
        assert_eq!(
            f.api_keys()
                .find_by_hash(&key.key_hash)
                .await
                .unwrap()
                .as_ref(),
            Some(key)
        );
    }
    assert_eq!(
        f.api_keys()
            .find(full.id)
            .await
            .unwrap()
            .unwrap()
            .scopes
            .as_slice(),
        scopes(&["admin", "deploy.write", "keys:read"]).as_slice()
    );
    assert_eq!(f.api_keys().find(ApiKeyId::generate()).await.unwrap(), None);
    assert_eq!(
        f.api_keys().find_by_hash(&token("unknown")).await.unwrap(),
        None
    );
}

fn meta(value: serde_json::Value) -> ApiKeyMeta {
    ApiKeyMeta::new(value).unwrap()
}

fn external(raw: &str) -> ExternalId {
    ExternalId::parse(raw).unwrap()
}

/// `meta` (nested, unicode, numbers) and `external_id` read back as stored, by id, by hash, in
/// batches and in lists.
async fn api_key_meta_and_external_id_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let key = ApiKey {
        meta: Some(meta(serde_json::json!({
            "plan": "pro", "seats": 12, "ratio": 0.5, "tags": ["a", "ü"], "nested": {"ok": true, "none": null}
        }))),
        external_id: Some(external("cus_Ünïcode 42")),
        ..api_key(org.id, now)
    };
    f.api_keys().create(&key).await.unwrap();
    assert_eq!(
        f.api_keys().find(key.id).await.unwrap().as_ref(),
        Some(&key)
    );
    assert_eq!(
        f.api_keys()
            .find_by_hash(&key.key_hash)
            .await
            .unwrap()
            .as_ref(),
        Some(&key)
    );
    assert_eq!(
        f.api_keys().find_by_hashes(&[key.key_hash]).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(
        f.api_keys().list(org.id, false, None).await.unwrap(),
        vec![key]
    );
}

/// `update` applies exactly the members given (`Some(None)` clears), reads back everywhere,
/// and appends `api_key.updated` naming the key's hash; an empty change appends nothing.
async fn api_key_update_applies_what_is_given_and_announces_it(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let key = ApiKey {
        meta: Some(meta(serde_json::json!({"plan": "free"}))),
        external_id: Some(external("cus_1")),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&key).await.unwrap();
    let start = log_head(f).await;

    let unchanged = f
        .api_keys()
        .update(key.id, &ApiKeyChanges::default(), c.now())
        .await
        .unwrap();
    assert_eq!(unchanged, key);
    assert!(
        logged_after(f, start).await.is_empty(),
        "an empty change is not announced"
    );

    let expiry = c.now() + Duration::days(30);
    let changes = ApiKeyChanges {
        name: Some(ApiKeyName::parse("renamed").unwrap()),
        scopes: Some(scopes(&["invoices:read"])),
        meta: Some(Some(meta(serde_json::json!({"plan": "pro"})))),
        external_id: None,
        expires_at: Some(Some(expiry)),
        ..ApiKeyChanges::default()
    };
    let changed = f
        .api_keys()
        .update(key.id, &changes, c.now())
        .await
        .unwrap();
    let expected = ApiKey {
        name: ApiKeyName::parse("renamed").unwrap(),
        scopes: scopes(&["invoices:read"]),
        meta: Some(meta(serde_json::json!({"plan": "pro"}))),
        expires_at: Some(expiry),
        ..key.clone()
    };
    assert_eq!(changed, expected);
    assert_eq!(
        f.api_keys().find(key.id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        f.api_keys().find_by_hash(&key.key_hash).await.unwrap(),
        Some(expected.clone())
    );

    let cleared = f
        .api_keys()
        .update(
            key.id,
            &ApiKeyChanges {
                meta: Some(None),
                external_id: Some(None),
                expires_at: Some(None),
                ..ApiKeyChanges::default()
            },
            c.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        cleared,
        ApiKey {
            meta: None,
            external_id: None,
            expires_at: None,
            ..expected
        }
    );
    assert_eq!(f.api_keys().find(key.id).await.unwrap(), Some(cleared));

    let logged = logged_after(f, start).await;
    let seen: Vec<_> = logged
        .iter()
        .map(|e| (e.action, e.invalidation.clone(), e.organization_id))
        .collect();
    let announced = (
        Some(EventAction::ApiKeyUpdated),
        Some(Invalidation::ApiKey(key.key_hash)),
        Some(org.id),
    );
    assert_eq!(seen, vec![announced.clone(), announced]);
    assert_eq!(
        logged[0].details["changed"],
        serde_json::json!(["name", "scopes", "meta", "expires_at"])
    );
    assert_eq!(
        logged[1].details["changed"],
        serde_json::json!(["meta", "external_id", "expires_at"])
    );
    assert!(
        !logged[0].details.to_string().contains("pro"),
        "values stay out of the log: {}",
        logged[0].details
    );
}

/// A revoked (also when expired), an expired and an unknown key are not changed, and nothing
/// is announced.
async fn api_key_update_refuses_revoked_expired_and_unknown_changing_nothing(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let revoked = stored_key(f, org.id, c.now()).await;
    let revoked = f.api_keys().revoke(revoked.id, c.now()).await.unwrap();
    let expired = ApiKey {
        expires_at: Some(c.now() + Duration::seconds(1)),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&expired).await.unwrap();
    let revoked_and_expired = ApiKey {
        expires_at: Some(c.now() + Duration::seconds(1)),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&revoked_and_expired).await.unwrap();
    let revoked_and_expired = f
        .api_keys()
        .revoke(revoked_and_expired.id, c.now())
        .await
        .unwrap();
    let start = log_head(f).await;
    let later = c.now() + Duration::seconds(1);
    let changes = ApiKeyChanges {
        name: Some(ApiKeyName::parse("nope").unwrap()),
        expires_at: Some(None),
        ..ApiKeyChanges::default()
    };
    for (key, refused) in [
        (&revoked, "revoked"),
        (&expired, "expired"),
        (&revoked_and_expired, "revoked"),
    ] {
        let got = f.api_keys().update(key.id, &changes, later).await;
        match (got, refused) {
            (Err(UpdateApiKeyError::AlreadyRevoked), "revoked")
            | (Err(UpdateApiKeyError::Expired), "expired") => {}
            (other, _) => panic!("{refused}: {other:?}"),
        }
        assert_eq!(f.api_keys().find(key.id).await.unwrap().as_ref(), Some(key));
    }
    assert!(matches!(
        f.api_keys()
            .update(ApiKeyId::generate(), &changes, later)
            .await,
        Err(UpdateApiKeyError::NotFound)
    ));
    assert!(logged_after(f, start).await.is_empty());
}

/// Changes racing each other and a revocation: each change applies whole or not at all, the
/// revocation wins once, and the key ends revoked with the members of one of the changes
/// that succeeded before it (or its first ones).
async fn concurrent_key_updates_and_revoke_stay_whole(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let key = stored_key(f, org.id, now).await;
    let changes: Vec<ApiKeyChanges> = (0..12)
        .map(|i| ApiKeyChanges {
            name: Some(ApiKeyName::parse(&format!("name {i}")).unwrap()),
            external_id: Some(Some(external(&format!("cus_{i}")))),
            ..ApiKeyChanges::default()
        })
        .collect();
    let repo = f.api_keys();
    let updates = changes.iter().map(|c| {
        let repo = Arc::clone(&repo);
        async move { repo.update(key.id, c, now).await }
    });
    let revoke = {
        let repo = Arc::clone(&repo);
        async move { repo.revoke(key.id, now).await }
    };
    let (results, revoked) =
        futures::future::join(futures::future::join_all(updates), revoke).await;
    let revoked = revoked.unwrap();
    let mut applied = vec![(key.name.clone(), key.external_id.clone())];
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(changed) => {
                assert_eq!(changed.name.as_str(), format!("name {i}"));
                assert_eq!(
                    changed.external_id.as_ref().map(ExternalId::as_str),
                    Some(format!("cus_{i}").as_str())
                );
                applied.push((changed.name, changed.external_id));
            }
            Err(UpdateApiKeyError::AlreadyRevoked) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let stored = f.api_keys().find(key.id).await.unwrap().unwrap();
    assert_eq!(stored, revoked);
    assert!(stored.revoked_at.is_some());
    assert!(
        applied.contains(&(stored.name.clone(), stored.external_id.clone())),
        "{stored:?} is whole: one change's name with the same change's external_id"
    );
}

/// A rotation stores its successor with the members the old key has at the rotation, not
/// those of the key it was made from: a change committed in between is carried over.
async fn rotation_carries_the_members_the_old_key_has_then(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let old = stored_key(f, org.id, now).await;
    // The successor is made from the key as read here...
    let successor = api_key(org.id, now);
    // ...then the old key changes before the rotation.
    let changed = f
        .api_keys()
        .update(
            old.id,
            &ApiKeyChanges {
                scopes: Some(scopes(&["narrow"])),
                external_id: Some(Some(external("cus_9"))),
                meta: Some(Some(meta(serde_json::json!({"plan": "pro"})))),
                ..ApiKeyChanges::default()
            },
            now,
        )
        .await
        .unwrap();
    f.api_keys().rotate(old.id, &successor, now).await.unwrap();
    let stored = f.api_keys().find(successor.id).await.unwrap().unwrap();
    assert_eq!(stored, successor.succeeding(&changed));
    assert_eq!(stored.scopes, scopes(&["narrow"]));
    assert_eq!(stored.key_hash, successor.key_hash);
}

/// The `external_id` filter lists the organization's keys of that id only, with the usual
/// order and revoked rule; other organizations' keys of the same id stay out.
async fn api_key_list_by_external_id(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let other = key_owner(f, c.now()).await;
    let mut theirs = Vec::new();
    for n in 0..3 {
        c.advance(Duration::seconds(1));
        let key = ApiKey {
            external_id: Some(external(if n == 1 { "cus_B" } else { "cus_A" })),
            ..api_key(org.id, c.now())
        };
        f.api_keys().create(&key).await.unwrap();
        theirs.push(key);
    }
    let elsewhere = ApiKey {
        external_id: Some(external("cus_A")),
        ..api_key(other.id, c.now())
    };
    f.api_keys().create(&elsewhere).await.unwrap();
    stored_key(f, org.id, c.now()).await;
    let revoked = f.api_keys().revoke(theirs[2].id, c.now()).await.unwrap();

    let a = external("cus_A");
    assert_eq!(
        f.api_keys().list(org.id, false, Some(&a)).await.unwrap(),
        vec![theirs[0].clone()]
    );
    assert_eq!(
        f.api_keys().list(org.id, true, Some(&a)).await.unwrap(),
        vec![theirs[0].clone(), revoked]
    );
    assert_eq!(
        f.api_keys()
            .list(org.id, true, Some(&external("cus_a")))
            .await
            .unwrap(),
        vec![],
        "compared byte-exact"
    );
    assert_eq!(
        f.api_keys().list(org.id, true, None).await.unwrap().len(),
        4
    );
}

/// Many lookups by hash at once (the Postgres store gathers them into shared statements):
/// each answers its own key, field for field, or `None` for a hash of no key, however the
/// lookups of the same hash and of unknown ones are interleaved.
async fn concurrent_key_lookups_answer_each_its_own(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let mut keys = Vec::new();
    for _ in 0..30 {
        keys.push(stored_key(f, org.id, now).await);
    }
    let revoked = stored_key(f, org.id, now).await;
    keys.push(f.api_keys().revoke(revoked.id, now).await.unwrap());
    let mut lookups: Vec<(TokenHash, Option<ApiKey>)> = Vec::new();
    for round in 0..3 {
        for key in &keys {
            lookups.push((key.key_hash, Some(key.clone())));
            lookups.push((token(&format!("unknown-{round}")), None));
        }
    }
    let answers = futures::future::join_all(lookups.iter().map(|(hash, _)| {
        let repo = f.api_keys();
        let hash = *hash;
        async move { repo.find_by_hash(&hash).await.unwrap() }
    }))
    .await;
    for ((hash, expected), answer) in lookups.iter().zip(answers) {
        assert_eq!(&answer, expected, "the lookup of {hash:?}");
    }
}

/// `find_by_hashes` answers every stored key among the hashes once, field for field and as
/// stored (revoked and expired ones too: the verdict is the caller's), in any order; unknown
/// and repeated hashes add nothing, and no hashes find nothing.
async fn api_key_find_by_hashes(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let active = stored_key(f, org.id, c.now()).await;
    let expired = ApiKey {
        expires_at: Some(c.now() + Duration::microseconds(1)),
        last_used_at: Some(c.now() + Duration::microseconds(999_999)),
        scopes: Scopes::default(),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&expired).await.unwrap();
    let revoked = stored_key(f, org.id, c.now()).await;
    let revoked = f.api_keys().revoke(revoked.id, c.now()).await.unwrap();
    let elsewhere = stored_key(f, key_owner(f, c.now()).await.id, c.now()).await;
    let unknown = token("unknown");

    let hashes = [
        unknown,
        revoked.key_hash,
        active.key_hash,
        expired.key_hash,
        active.key_hash,
        elsewhere.key_hash,
        unknown,
    ];
    let mut found = f.api_keys().find_by_hashes(&hashes).await.unwrap();
    found.sort_by_key(|k| k.id);
    let mut expected = vec![active.clone(), expired, revoked, elsewhere];
    expected.sort_by_key(|k| k.id);
    assert_eq!(found, expected);

    assert_eq!(
        f.api_keys()
            .find_by_hashes(&[active.key_hash])
            .await
            .unwrap(),
        vec![active]
    );
    assert!(
        f.api_keys()
            .find_by_hashes(&[unknown, token("other")])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(f.api_keys().find_by_hashes(&[]).await.unwrap().is_empty());
}

/// Key hashes (and ids) are unique across all keys: a duplicate is refused and not stored.
async fn api_key_create_refuses_duplicates(f: &impl Fixture) {
    let now = clock().now();
    let (org, other_org) = (key_owner(f, now).await, key_owner(f, now).await);
    let first = stored_key(f, org.id, now).await;
    let same_hash = ApiKey {
        key_hash: first.key_hash,
        ..api_key(other_org.id, now)
    };
    assert!(f.api_keys().create(&same_hash).await.is_err());
    assert_eq!(f.api_keys().find(same_hash.id).await.unwrap(), None);
    let same_id = ApiKey {
        id: first.id,
        ..api_key(org.id, now)
    };
    assert!(f.api_keys().create(&same_id).await.is_err());
    assert_eq!(
        f.api_keys().find_by_hash(&same_id.key_hash).await.unwrap(),
        None
    );
    assert_eq!(f.api_keys().find(first.id).await.unwrap(), Some(first));
}

/// An organization's keys are listed by creation time, then id; revoked ones only when
/// asked for; other organizations' keys never.
async fn api_key_list_order_and_revoked(f: &impl Fixture) {
    let c = clock();
    let t0 = c.now();
    let org = key_owner(f, t0).await;
    let other = key_owner(f, t0).await;
    let newest = stored_key(f, org.id, t0 + Duration::seconds(3)).await;
    let oldest = stored_key(f, org.id, t0).await;
    let (low, high) = two_ids(ApiKeyId::generate);
    let tie_high = ApiKey {
        id: high,
        ..api_key(org.id, t0 + Duration::seconds(1))
    };
    let tie_low = ApiKey {
        id: low,
        ..api_key(org.id, t0 + Duration::seconds(1))
    };
    f.api_keys().create(&tie_high).await.unwrap();
    f.api_keys().create(&tie_low).await.unwrap();
    stored_key(f, other.id, t0).await;
    let revoked = f
        .api_keys()
        .revoke(tie_low.id, t0 + Duration::seconds(5))
        .await
        .unwrap();

    assert_eq!(
        f.api_keys().list(org.id, false, None).await.unwrap(),
        vec![oldest.clone(), tie_high.clone(), newest.clone()]
    );
    assert_eq!(
        f.api_keys().list(org.id, true, None).await.unwrap(),
        vec![oldest, revoked, tie_high, newest]
    );
    assert!(
        f.api_keys()
            .list(OrganizationId::generate(), true, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Revoking answers the key as revoked at `now`; a second revocation is `AlreadyRevoked` and
/// keeps the first time; an unknown key is `NotFound`.
async fn api_key_revoke(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let key = stored_key(f, org.id, c.now()).await;
    c.advance(Duration::seconds(7));
    let first = c.now();
    let revoked = f.api_keys().revoke(key.id, first).await.unwrap();
    assert_eq!(
        revoked,
        ApiKey {
            revoked_at: Some(first),
            ..key.clone()
        }
    );
    assert_eq!(
        f.api_keys().find(key.id).await.unwrap(),
        Some(revoked.clone())
    );
    assert_eq!(
        f.api_keys().find_by_hash(&key.key_hash).await.unwrap(),
        Some(revoked.clone())
    );
    c.advance(Duration::seconds(1));
    let err = f.api_keys().revoke(key.id, c.now()).await.unwrap_err();
    assert!(matches!(err, RevokeApiKeyError::AlreadyRevoked), "{err:?}");
    assert_eq!(f.api_keys().find(key.id).await.unwrap(), Some(revoked));
    let err = f
        .api_keys()
        .revoke(ApiKeyId::generate(), c.now())
        .await
        .unwrap_err();
    assert!(matches!(err, RevokeApiKeyError::NotFound), "{err:?}");
}

/// Of 10 concurrent revocations of one key exactly one succeeds, and its time is kept.
async fn concurrent_key_revokes_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let key = stored_key(f, org.id, now).await;
    let attempts = (0..10).map(|i| {
        let repo = f.api_keys();
        let id = key.id;
        async move { repo.revoke(id, now + Duration::milliseconds(i)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(revoked) => winners.push(revoked),
            Err(RevokeApiKeyError::AlreadyRevoked) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = f.api_keys().find(key.id).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, winners[0].revoked_at);
}

/// Rotation revokes the old key and stores the new one in one step, answering the old key
/// as revoked. Rotating a revoked or unknown key fails and does not store the new key.
async fn api_key_rotate(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let revoked_earlier = stored_key(f, org.id, c.now()).await;
    f.api_keys()
        .revoke(revoked_earlier.id, c.now())
        .await
        .unwrap();
    let current = ApiKey {
        expires_at: Some(c.now() + Duration::days(90)),
        ..api_key(org.id, c.now())
    };
    f.api_keys().create(&current).await.unwrap();
    c.advance(Duration::seconds(4));
    let now = c.now();
    let next = ApiKey {
        expires_at: current.expires_at,
        ..api_key(org.id, now)
    };
    let rotated = f.api_keys().rotate(current.id, &next, now).await.unwrap();
    assert_eq!(
        rotated,
        ApiKey {
            revoked_at: Some(now),
            ..current.clone()
        }
    );
    assert_eq!(f.api_keys().find(current.id).await.unwrap(), Some(rotated));
    assert_eq!(
        f.api_keys().find_by_hash(&next.key_hash).await.unwrap(),
        Some(next.clone())
    );
    assert_eq!(
        f.api_keys().list(org.id, false, None).await.unwrap(),
        vec![next.clone()]
    );

    for (id, expected) in [
        (current.id, "already revoked"),
        (revoked_earlier.id, "already revoked"),
        (ApiKeyId::generate(), "not found"),
    ] {
        let attempt = api_key(org.id, now);
        let err = f.api_keys().rotate(id, &attempt, now).await.unwrap_err();
        match (expected, &err) {
            ("already revoked", RevokeApiKeyError::AlreadyRevoked)
            | ("not found", RevokeApiKeyError::NotFound) => {}
            _ => panic!("expected {expected}, got {err:?}"),
        }
        assert_eq!(f.api_keys().find(attempt.id).await.unwrap(), None);
        assert_eq!(
            f.api_keys().find_by_hash(&attempt.key_hash).await.unwrap(),
            None
        );
    }
    assert_eq!(
        f.api_keys()
            .find(next.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
}

/// A rotation whose new key cannot be stored (its hash is taken) changes nothing: the old
/// key stays active and the new one does not exist.
async fn failed_rotation_changes_nothing(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let old = stored_key(f, org.id, now).await;
    let other = stored_key(f, org.id, now).await;
    let clashing = ApiKey {
        key_hash: other.key_hash,
        ..api_key(org.id, now)
    };
    let err = f
        .api_keys()
        .rotate(old.id, &clashing, now)
        .await
        .unwrap_err();
    assert!(matches!(err, RevokeApiKeyError::Store(_)), "{err:?}");
    assert_eq!(f.api_keys().find(old.id).await.unwrap(), Some(old.clone()));
    assert_eq!(f.api_keys().find(clashing.id).await.unwrap(), None);
    assert_eq!(
        f.api_keys().find_by_hash(&other.key_hash).await.unwrap(),
        Some(other)
    );
    // Still rotatable afterwards.
    let next = api_key(org.id, now);
    f.api_keys().rotate(old.id, &next, now).await.unwrap();
}

/// Of 10 concurrent rotations of one key exactly one succeeds; only its new key is stored.
async fn concurrent_key_rotations_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let old = stored_key(f, org.id, now).await;
    let candidates: Vec<ApiKey> = (0..10).map(|_| api_key(org.id, now)).collect();
    let attempts = candidates.iter().map(|next| {
        let repo = f.api_keys();
        async move { repo.rotate(old.id, next, now).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for (next, r) in candidates.iter().zip(results) {
        let stored = f.api_keys().find(next.id).await.unwrap();
        match r {
            Ok(revoked) => {
                assert_eq!(revoked.id, old.id);
                assert_eq!(stored.as_ref(), Some(next));
                winners.push(next.id);
            }
            Err(RevokeApiKeyError::AlreadyRevoked) => assert_eq!(stored, None),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let listed: Vec<ApiKeyId> = f
        .api_keys()
        .list(org.id, true, None)
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    let mut expected = vec![old.id, winners[0]];
    expected.sort();
    assert_eq!(listed, expected);
}

/// `record_usage` keeps the latest of what is stored and what is given as a key's
/// `last_used_at`: it sets, moves forward, never back (a late batch of an earlier hour
/// included); unknown ids are ignored; an empty batch is fine. Reads by id and in a list
/// answer it.
async fn record_usage_moves_forward(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let (a, b, untouched) = (
        stored_key(f, org.id, now).await,
        stored_key(f, org.id, now).await,
        stored_key(f, org.id, now).await,
    );
    let at = |micros: i64| now + Duration::microseconds(micros);
    let used =
        |id, at: DateTime<Utc>| hour_usage(id, hour_of(at), UsageCounts::default(), Some(at));
    let last_used = async |id: ApiKeyId| f.api_keys().find(id).await.unwrap().unwrap().last_used_at;

    f.api_keys().record_usage(&[]).await.unwrap();
    f.api_keys()
        .record_usage(&[
            used(a.id, at(10)),
            used(ApiKeyId::generate(), at(50)),
            used(b.id, at(20)),
        ])
        .await
        .unwrap();
    assert_eq!(last_used(a.id).await, Some(at(10)));
    assert_eq!(last_used(b.id).await, Some(at(20)));

    // An older batch arriving late moves nothing back, in the same hour or an earlier one; a
    // newer one moves forward, into a later hour too.
    f.api_keys()
        .record_usage(&[used(a.id, at(5)), used(b.id, at(7_200_000_001))])
        .await
        .unwrap();
    f.api_keys()
        .record_usage(&[used(b.id, at(3_600_000_000))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id).await, Some(at(10)));
    assert_eq!(last_used(b.id).await, Some(at(7_200_000_001)));

    // The same key twice in one batch: the later time wins, in either order.
    f.api_keys()
        .record_usage(&[used(a.id, at(40)), used(a.id, at(30))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id).await, Some(at(40)));
    f.api_keys()
        .record_usage(&[used(ApiKeyId::generate(), at(1))])
        .await
        .unwrap();
    assert_eq!(last_used(untouched.id).await, None);
    let a_read = ApiKey {
        last_used_at: Some(at(40)),
        ..a.clone()
    };
    assert_eq!(f.api_keys().find(a.id).await.unwrap().unwrap(), a_read);
    let listed = f.api_keys().list(org.id, false, None).await.unwrap();
    let listed_a = listed.iter().find(|k| k.id == a.id).unwrap();
    assert_eq!(listed_a, &a_read);

    // A change and a revocation answer it too.
    let renamed = f
        .api_keys()
        .update(
            b.id,
            &ApiKeyChanges {
                name: Some(ApiKeyName::parse("renamed").unwrap()),
                ..ApiKeyChanges::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(renamed.last_used_at, Some(at(7_200_000_001)));
    let revoked = f.api_keys().revoke(a.id, now).await.unwrap();
    assert_eq!(revoked.last_used_at, Some(at(40)));
}

// ---- Values stored under older rules -------------------------------------------------------

/// Rows written before a rule was tightened still load, field for field: an email with a
/// format character, names with a bidirectional control, metadata holding one, a device id
/// made only of dots, a key holding more than 100 scopes. Adapters read stored values with the `from_stored` constructors.
async fn values_stored_under_older_rules_still_load(f: &impl Fixture) {
    let now = clock().now();
    let tag = UserId::generate().as_uuid().simple().to_string();
    let user = User {
        email: Email::from_stored(&format!("old\u{200B}{tag}@example.com")).unwrap(),
        display_name: Some(DisplayName::from_stored("Ada\u{202E}gpj.exe").unwrap()),
        ..user(unique_email("unused"), now)
    };
    f.users().create(&user).await.unwrap();
    assert_eq!(
        f.users().find_by_id(user.id).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        f.users().find_by_email(&user.email).await.unwrap(),
        Some(user.clone())
    );
    let org = Organization {
        name: OrganizationName::from_stored("Acme\u{2066}x").unwrap(),
        ..organization("unused", now)
    };
    f.organizations().create(&org, user.id).await.unwrap();
    assert_eq!(
        f.organizations().find(org.id).await.unwrap(),
        Some(org.clone())
    );
    let device = Device {
        name: DeviceName::from_stored("Frame\u{200F}1").unwrap(),
        metadata: DeviceMetadata::from_stored(serde_json::json!({"k\u{202A}": "v\u{2069}"}))
            .unwrap(),
        ..device(DeviceId::from_stored("..").unwrap(), org.id, now)
    };
    f.devices().register(&device).await.unwrap();
    assert_eq!(
        f.devices().find(&device.id).await.unwrap(),
        Some(device.clone())
    );
    assert_eq!(f.devices().list(org.id).await.unwrap(), vec![device]);
    let key = ApiKey {
        name: ApiKeyName::from_stored("svc\u{202D}").unwrap(),
        scopes: Scopes::from_stored(
            (0..150)
                .map(|i| Scope::parse(&format!("s:{i}")).unwrap())
                .collect(),
        ),
        ..api_key(org.id, now)
    };
    f.api_keys().create(&key).await.unwrap();
    assert_eq!(f.api_keys().find(key.id).await.unwrap(), Some(key.clone()));
    assert_eq!(
        f.api_keys().find_by_hash(&key.key_hash).await.unwrap(),
        Some(key)
    );
}

// ---- Devices -------------------------------------------------------------------------------

/// A fresh device id: `tag`, a dot, then 32 lowercase hex digits.
fn device_id(tag: &str) -> DeviceId {
    DeviceId::parse(&format!("{tag}.{}", UserId::generate().as_uuid().simple())).unwrap()
}

fn device(id: DeviceId, org: OrganizationId, created_at: DateTime<Utc>) -> Device {
    Device {
        id,
        organization_id: org,
        name: DeviceName::parse("Kitchen frame").unwrap(),
        metadata: DeviceMetadata::default(),
        secret_hash: token("device-secret"),
        revoked_at: None,
        created_at,
        last_authenticated_at: None,
        tokens_not_before: None,
    }
}

async fn stored_device(f: &impl Fixture, org: OrganizationId, now: DateTime<Utc>) -> Device {
    let d = device(device_id("frame"), org, now);
    f.devices().register(&d).await.unwrap();
    d
}

/// A registered device reads back field for field: metadata with nested values, optional
/// times to the microsecond; an unknown id answers `None`.
async fn device_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let bare_id = device_id("bare");
    let bare = Device {
        name: DeviceName::from_id(&bare_id),
        ..device(bare_id, org.id, now)
    };
    let metadata = serde_json::json!({
        "location": {"room": "kitchen", "floor": 2, "coords": [52.52, 13.405, -1]},
        "tags": ["frame", "wifi", {"nested": [true, null]}],
        "firmware": "1.4.2-rc.1",
        "enabled": true,
        "retired": null,
        "serial": 9_007_199_254_740_993_u64,
        "note": "Küche ✓ \"quoted\"",
        "empty": {}
    });
    let full = Device {
        metadata: DeviceMetadata::new(metadata.clone()).unwrap(),
        revoked_at: Some(now + Duration::microseconds(123_457)),
        last_authenticated_at: Some(now + Duration::microseconds(999_999)),
        tokens_not_before: Some(now + Duration::seconds(3)),
        ..device(device_id("full"), org.id, now)
    };
    for d in [&bare, &full] {
        f.devices().register(d).await.unwrap();
        assert_eq!(f.devices().find(&d.id).await.unwrap().as_ref(), Some(d));
    }
    let read = f.devices().find(&full.id).await.unwrap().unwrap();
    assert_eq!(read.metadata.to_value(), metadata);
    assert_eq!(read.secret_hash, full.secret_hash);
    assert_eq!(
        f.devices()
            .find(&bare.id)
            .await
            .unwrap()
            .unwrap()
            .metadata
            .as_map()
            .len(),
        0
    );
    assert_eq!(f.devices().find(&device_id("unknown")).await.unwrap(), None);
}

/// Ids are compared byte-exact: ids differing only in case are two devices.
async fn device_ids_byte_exact(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let upper = device_id("Frame-1");
    let lower = DeviceId::parse(&upper.as_str().to_lowercase()).unwrap();
    assert_ne!(upper, lower);
    let (a, b) = (
        device(upper.clone(), org.id, now),
        device(lower.clone(), org.id, now),
    );
    f.devices().register(&a).await.unwrap();
    f.devices().register(&b).await.unwrap();
    assert_eq!(f.devices().find(&upper).await.unwrap(), Some(a.clone()));
    assert_eq!(f.devices().find(&lower).await.unwrap(), Some(b.clone()));
    let shouting = DeviceId::parse(&upper.as_str().to_uppercase()).unwrap();
    assert_eq!(f.devices().find(&shouting).await.unwrap(), None);
    assert_eq!(f.devices().list(org.id).await.unwrap(), vec![a, b]);
    // A change to one leaves the other alone.
    f.devices().revoke(&lower, now).await.unwrap();
    assert_eq!(
        f.devices().find(&upper).await.unwrap().unwrap().revoked_at,
        None
    );
}

/// A device id is unique across the service: registering it again, in the same or in
/// another organization, is `Exists` and changes nothing.
async fn device_id_unique_across_organizations(f: &impl Fixture) {
    let now = clock().now();
    let (org, other_org) = (key_owner(f, now).await, key_owner(f, now).await);
    let first = stored_device(f, org.id, now).await;
    for owner in [other_org.id, org.id] {
        let again = Device {
            name: DeviceName::parse("Impostor").unwrap(),
            ..device(first.id.clone(), owner, now + Duration::seconds(1))
        };
        let err = f.devices().register(&again).await.unwrap_err();
        assert!(matches!(err, RegisterDeviceError::Exists), "{err:?}");
    }
    assert_eq!(
        f.devices().find(&first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(f.devices().list(org.id).await.unwrap(), vec![first]);
    assert!(f.devices().list(other_org.id).await.unwrap().is_empty());
}

/// Of 20 concurrent registrations of one id (from two organizations), exactly one wins and
/// its device is the one stored.
async fn concurrent_device_registrations_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let orgs = [key_owner(f, now).await.id, key_owner(f, now).await.id];
    let id = device_id("race");
    let candidates: Vec<Device> = (0..20)
        .map(|i| device(id.clone(), orgs[i % 2], now))
        .collect();
    let attempts = candidates.iter().map(|d| {
        let repo = f.devices();
        async move { repo.register(d).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for (d, r) in candidates.iter().zip(results) {
        match r {
            Ok(()) => winners.push(d),
            Err(RegisterDeviceError::Exists) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        f.devices().find(&id).await.unwrap().as_ref(),
        Some(winners[0])
    );
    let listed: usize = [
        f.devices().list(orgs[0]).await.unwrap(),
        f.devices().list(orgs[1]).await.unwrap(),
    ]
    .iter()
    .map(Vec::len)
    .sum();
    assert_eq!(listed, 1);
}

/// An organization's devices, revoked ones included, are listed by registration time, then
/// id in byte order (`B` before `a` before `b`); other organizations' devices never.
async fn device_list_order_and_isolation(f: &impl Fixture) {
    let t0 = clock().now();
    let org = key_owner(f, t0).await;
    let other = key_owner(f, t0).await;
    let newest = stored_device(f, org.id, t0 + Duration::seconds(3)).await;
    let oldest = stored_device(f, org.id, t0).await;
    let suffix = UserId::generate().as_uuid().simple().to_string();
    let tie = |prefix: &str| {
        device(
            DeviceId::parse(&format!("{prefix}-tie.{suffix}")).unwrap(),
            org.id,
            t0 + Duration::seconds(1),
        )
    };
    let (tie_b, tie_upper_b, tie_a) = (tie("b"), tie("B"), tie("a"));
    for d in [&tie_b, &tie_upper_b, &tie_a] {
        f.devices().register(d).await.unwrap();
    }
    let theirs = stored_device(f, other.id, t0).await;
    let revoked = f
        .devices()
        .revoke(&tie_a.id, t0 + Duration::seconds(5))
        .await
        .unwrap();

    assert_eq!(
        f.devices().list(org.id).await.unwrap(),
        vec![oldest, tie_upper_b, revoked, tie_b, newest]
    );
    assert_eq!(f.devices().list(other.id).await.unwrap(), vec![theirs]);
    assert!(
        f.devices()
            .list(OrganizationId::generate())
            .await
            .unwrap()
            .is_empty()
    );
}

/// `rotate_secret` replaces the hash of an active device, sets `tokens_not_before`, and
/// answers the device as changed; `tokens_not_before` never moves back (a rotation from an
/// instance whose clock is behind keeps the later time); a revoked device is `AlreadyRevoked`
/// and keeps its hash and time; an unknown one is `NotFound`.
async fn device_rotate_secret(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let d = stored_device(f, org.id, now).await;
    let bystander = stored_device(f, org.id, now).await;
    let (h1, h2, h3) = (token("rotated-1"), token("rotated-2"), token("rotated-3"));
    let whole = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap();

    let rotated = f.devices().rotate_secret(&d.id, &h1, whole).await.unwrap();
    assert_eq!(
        rotated,
        Device {
            secret_hash: h1,
            tokens_not_before: Some(whole),
            ..d.clone()
        }
    );
    assert_eq!(
        f.devices().find(&d.id).await.unwrap(),
        Some(rotated.clone())
    );
    let earlier = whole - Duration::seconds(5);
    let again = f
        .devices()
        .rotate_secret(&d.id, &h2, earlier)
        .await
        .unwrap();
    assert_eq!(
        (again.secret_hash, again.tokens_not_before),
        (h2, Some(whole)),
        "never moves back"
    );
    let later = whole + Duration::seconds(7);
    let third = f.devices().rotate_secret(&d.id, &h3, later).await.unwrap();
    assert_eq!(third.tokens_not_before, Some(later));
    assert_eq!(f.devices().find(&d.id).await.unwrap(), Some(third));
    assert_eq!(
        f.devices().find(&bystander.id).await.unwrap(),
        Some(bystander)
    );

    let revoked = f.devices().revoke(&d.id, now).await.unwrap();
    let err = f
        .devices()
        .rotate_secret(&d.id, &token("too-late"), later + Duration::seconds(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeDeviceError::AlreadyRevoked), "{err:?}");
    let stored = f.devices().find(&d.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.secret_hash, stored.tokens_not_before),
        (h3, Some(later))
    );
    assert_eq!(stored, revoked);

    let err = f
        .devices()
        .rotate_secret(&device_id("unknown"), &token("x"), later)
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeDeviceError::NotFound), "{err:?}");
}

/// Revoking answers the device as revoked at `now`; a second revocation is `AlreadyRevoked`
/// and keeps the first time; an unknown device is `NotFound`.
async fn device_revoke(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let d = stored_device(f, org.id, c.now()).await;
    c.advance(Duration::seconds(7));
    let first = c.now();
    let revoked = f.devices().revoke(&d.id, first).await.unwrap();
    assert_eq!(
        revoked,
        Device {
            revoked_at: Some(first),
            ..d.clone()
        }
    );
    assert_eq!(
        f.devices().find(&d.id).await.unwrap(),
        Some(revoked.clone())
    );
    c.advance(Duration::seconds(1));
    let err = f.devices().revoke(&d.id, c.now()).await.unwrap_err();
    assert!(matches!(err, ChangeDeviceError::AlreadyRevoked), "{err:?}");
    assert_eq!(f.devices().find(&d.id).await.unwrap(), Some(revoked));
    let err = f
        .devices()
        .revoke(&device_id("unknown"), c.now())
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeDeviceError::NotFound), "{err:?}");
}

/// Of 10 concurrent revocations of one device exactly one succeeds, and its time is kept.
async fn concurrent_device_revokes_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let d = stored_device(f, org.id, now).await;
    let attempts = (0..10).map(|i| {
        let repo = f.devices();
        let id = d.id.clone();
        async move { repo.revoke(&id, now + Duration::milliseconds(i)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(revoked) => winners.push(revoked),
            Err(ChangeDeviceError::AlreadyRevoked) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert!(winners[0].revoked_at.is_some());
    let stored = f.devices().find(&d.id).await.unwrap().unwrap();
    assert_eq!(stored, winners[0]);
}

/// `record_authentications` keeps the latest of what is stored and what is given: it sets,
/// moves forward, never back; unknown ids are ignored; an empty batch is fine.
async fn record_authentications_moves_forward(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let (a, b, untouched) = (
        stored_device(f, org.id, now).await,
        stored_device(f, org.id, now).await,
        stored_device(f, org.id, now).await,
    );
    let at = |micros: i64| now + Duration::microseconds(micros);
    let last_seen = async |id: &DeviceId| {
        f.devices()
            .find(id)
            .await
            .unwrap()
            .unwrap()
            .last_authenticated_at
    };

    f.devices().record_authentications(&[]).await.unwrap();
    f.devices()
        .record_authentications(&[
            (a.id.clone(), at(10)),
            (device_id("unknown"), at(50)),
            (b.id.clone(), at(20)),
        ])
        .await
        .unwrap();
    assert_eq!(last_seen(&a.id).await, Some(at(10)));
    assert_eq!(last_seen(&b.id).await, Some(at(20)));

    // An older batch arriving late moves nothing back; a newer one moves forward.
    f.devices()
        .record_authentications(&[(a.id.clone(), at(5)), (b.id.clone(), at(1_000_001))])
        .await
        .unwrap();
    assert_eq!(last_seen(&a.id).await, Some(at(10)));
    assert_eq!(last_seen(&b.id).await, Some(at(1_000_001)));

    // The same device twice in one batch: the later time wins, in either order.
    f.devices()
        .record_authentications(&[(a.id.clone(), at(40)), (a.id.clone(), at(30))])
        .await
        .unwrap();
    assert_eq!(last_seen(&a.id).await, Some(at(40)));
    f.devices()
        .record_authentications(&[(device_id("unknown"), at(1))])
        .await
        .unwrap();
    assert_eq!(last_seen(&untouched.id).await, None);
    assert_eq!(
        f.devices().find(&a.id).await.unwrap().unwrap(),
        Device {
            last_authenticated_at: Some(at(40)),
            ..a
        }
    );
}

// ---- Login attempts ------------------------------------------------------------------------

/// A policy whose window and duration differ, so an adapter mixing them up fails.
fn lockout(threshold: u32) -> LockoutPolicy {
    LockoutPolicy {
        threshold,
        window: Duration::minutes(10),
        duration: Duration::minutes(7),
    }
}

/// An admitted attempt, the `failures`-th of its window, that started no lock.
const fn counted(failures: u32) -> Admission {
    Admission::Admitted(AttemptState {
        failures,
        locked_until: None,
    })
}

/// An admitted attempt, the `failures`-th of its window, that started a lock ending `until`.
const fn locking(failures: u32, until: DateTime<Utc>) -> Admission {
    Admission::Admitted(AttemptState {
        failures,
        locked_until: Some(until),
    })
}

/// A refused attempt: the key is locked until `until`.
const fn refused(until: DateTime<Utc>) -> Admission {
    Admission::Locked { until }
}

/// Records failures for `key` at the clock's time, one second apart, until `key` locks under
/// `policy` (starting from no counter); answers when the lock ends.
async fn lock_out(
    store: &dyn LoginAttemptStore,
    key: &TokenHash,
    c: &ManualClock,
    policy: &LockoutPolicy,
) -> DateTime<Utc> {
    for n in 1..policy.threshold {
        let state = store.begin_attempt(key, c.now(), policy).await.unwrap();
        assert_eq!(state, counted(n));
        c.advance(Duration::seconds(1));
    }
    let state = store.begin_attempt(key, c.now(), policy).await.unwrap();
    let until = c.now() + policy.duration;
    assert_eq!(state, locking(policy.threshold, until));
    until
}

/// Failures within the window count up from 1 without locking below the threshold; an
/// unknown key and a counting one are not locked.
async fn login_failures_count_within_window(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(5));
    let key = token("count");
    assert_eq!(store.check(&key, c.now()).await.unwrap(), None);
    for n in 1..=4 {
        assert_eq!(
            store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
            counted(n)
        );
        assert_eq!(store.check(&key, c.now()).await.unwrap(), None);
        c.advance(Duration::minutes(3));
    }
}

/// The threshold-th failure starts a lock of `duration` from its own time, and `check`
/// answers that end while the lock runs.
async fn login_threshold_failure_locks(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(3));
    let key = token("lock");
    for n in 1..=2 {
        assert_eq!(
            store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
            counted(n)
        );
        c.advance(Duration::minutes(2));
    }
    let at = c.now();
    let until = at + Duration::minutes(7);
    assert_eq!(
        store.begin_attempt(&key, at, &policy).await.unwrap(),
        locking(3, until)
    );
    assert_eq!(store.check(&key, at).await.unwrap(), Some(until));
    assert_eq!(
        store.check(&key, at + Duration::minutes(5)).await.unwrap(),
        Some(until)
    );
}

/// Failures while a lock runs change nothing: the count stays, the lock is neither extended
/// nor restarted, even once the window the lock began in is long over.
async fn login_failures_while_locked_change_nothing(f: &impl Fixture) {
    let (store, c) = (f.login_attempts(), clock());
    // A lock outlasting the window, so "window over" and "lock running" overlap.
    let policy = LockoutPolicy {
        threshold: 2,
        window: Duration::minutes(1),
        duration: Duration::minutes(30),
    };
    let key = token("locked");
    let until = lock_out(store.as_ref(), &key, &c, &policy).await;
    for step in [
        Duration::zero(),
        Duration::seconds(30),
        Duration::minutes(20),
    ] {
        c.advance(step);
        assert_eq!(
            store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
            refused(until),
            "{step}"
        );
        assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(until));
    }
    c.set(until - Duration::microseconds(1));
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        refused(until)
    );
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(until));
}

/// `check` answers the lock only while `now < locked_until`.
async fn login_lock_ends_at_locked_until(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(2));
    let key = token("ends");
    let until = lock_out(store.as_ref(), &key, &c, &policy).await;
    assert_eq!(
        store
            .check(&key, until - Duration::microseconds(1))
            .await
            .unwrap(),
        Some(until)
    );
    assert_eq!(store.check(&key, until).await.unwrap(), None);
    assert_eq!(
        store.check(&key, until + Duration::hours(1)).await.unwrap(),
        None
    );
}

/// Once a lock has ended, the next failure starts a new window at 1, even when the lock
/// ended before the window it began in (here `duration` < `window`); the new window then
/// counts and locks afresh.
async fn login_failure_after_lock_starts_new_window(f: &impl Fixture) {
    let (store, c) = (f.login_attempts(), clock());
    let policy = LockoutPolicy {
        threshold: 3,
        window: Duration::hours(1),
        duration: Duration::minutes(5),
    };
    let key = token("after");
    let until = lock_out(store.as_ref(), &key, &c, &policy).await;
    c.set(until);
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        counted(1)
    );
    assert_eq!(store.check(&key, c.now()).await.unwrap(), None);
    c.advance(Duration::minutes(1));
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        counted(2)
    );
    c.advance(Duration::minutes(1));
    let again = c.now() + policy.duration;
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        locking(3, again)
    );
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(again));
}

/// A window that began more than `window` ago restarts the count at 1 from that failure;
/// a failure exactly `window` after the start still counts in it.
async fn login_window_expiry_restarts_count(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(4));
    let key = token("window");
    let start = c.now();
    for n in 1..=2 {
        assert_eq!(
            store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
            counted(n)
        );
        c.advance(Duration::minutes(1));
    }
    c.set(start + policy.window);
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        counted(3),
        "exactly `window` after the start is still inside it"
    );
    c.advance(Duration::microseconds(1));
    let restart = c.now();
    assert_eq!(
        store.begin_attempt(&key, restart, &policy).await.unwrap(),
        counted(1),
        "the window is over: a new one starts"
    );
    // The new window runs from the restart, not from the first window's start.
    for n in 2..=3 {
        c.advance(Duration::minutes(4));
        assert_eq!(
            store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
            counted(n)
        );
    }
    c.set(restart + policy.window);
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        locking(4, c.now() + policy.duration)
    );
}

/// With a threshold of 1 the first failure of every window locks, including the one that
/// follows an ended lock.
async fn login_threshold_one_locks_every_new_window(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(1));
    let key = token("one");
    let until = c.now() + policy.duration;
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        locking(1, until)
    );
    c.set(until);
    let again = until + policy.duration;
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        locking(1, again)
    );
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(again));
}

/// `reset` forgets the key, lock included: the next failure counts from 1. Resetting an
/// unknown key is fine.
async fn login_reset_clears(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(3));
    let key = token("reset");
    store.reset(&key).await.unwrap();
    let until = lock_out(store.as_ref(), &key, &c, &policy).await;
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(until));
    store.reset(&key).await.unwrap();
    assert_eq!(store.check(&key, c.now()).await.unwrap(), None);
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        counted(1)
    );
    c.advance(Duration::seconds(1));
    store.reset(&key).await.unwrap();
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        counted(1)
    );
}

/// Keys count, lock and reset independently.
async fn login_keys_independent(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(2));
    let (a, b) = (token("a"), token("b"));
    let until = lock_out(store.as_ref(), &a, &c, &policy).await;
    assert_eq!(store.check(&b, c.now()).await.unwrap(), None);
    assert_eq!(
        store.begin_attempt(&b, c.now(), &policy).await.unwrap(),
        counted(1)
    );
    store.reset(&b).await.unwrap();
    assert_eq!(store.check(&a, c.now()).await.unwrap(), Some(until));
    store.reset(&a).await.unwrap();
    assert_eq!(
        store.begin_attempt(&b, c.now(), &policy).await.unwrap(),
        counted(1)
    );
}

/// 50 concurrent attempts for one key add exactly 50: every count from 1 to 50 is answered
/// once, and the next attempt is the 51st.
async fn concurrent_login_failures_none_lost(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(1000));
    let key = token("race");
    let now = c.now();
    let attempts = (0..50).map(|_| {
        let store = store.clone();
        async move { store.begin_attempt(&key, now, &policy).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut counts: Vec<u32> = results
        .into_iter()
        .map(|r| match r.unwrap() {
            Admission::Admitted(AttemptState {
                failures,
                locked_until: None,
            }) => failures,
            other => panic!("not admitted without a lock: {other:?}"),
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=50).collect::<Vec<u32>>());
    assert_eq!(
        store.begin_attempt(&key, now, &policy).await.unwrap(),
        counted(51)
    );
}

/// 50 concurrent attempts for one key (each a microsecond apart) under a threshold of 5:
/// exactly five are admitted, counting 1 to 5, and the fifth starts the lock at its own time;
/// the other 45 are refused with that one lock, which they leave as it was.
async fn concurrent_login_failures_lock_once(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(5));
    let key = token("race-lock");
    let start = c.now();
    let attempts = (0..50).map(|i| {
        let store = store.clone();
        let at = start + Duration::microseconds(i);
        async move { (at, store.begin_attempt(&key, at, &policy).await) }
    });
    let results = futures::future::join_all(attempts).await;
    let mut admitted = Vec::new();
    let mut refusals = Vec::new();
    let mut lock = None;
    for (at, r) in results {
        match r.unwrap() {
            Admission::Admitted(state) => {
                admitted.push(state.failures);
                if let Some(until) = state.locked_until {
                    assert_eq!(state.failures, 5);
                    assert_eq!(
                        until,
                        at + policy.duration,
                        "the lock starts at its attempt"
                    );
                    assert_eq!(lock.replace(until), None, "one lock");
                }
            }
            Admission::Locked { until } => refusals.push(until),
        }
    }
    admitted.sort_unstable();
    assert_eq!(
        admitted,
        vec![1, 2, 3, 4, 5],
        "at most the threshold admitted"
    );
    let Some(until) = lock else {
        panic!("the fifth attempt locks")
    };
    assert_eq!(refusals.len(), 45);
    assert!(refusals.iter().all(|r| *r == until), "{refusals:?}");
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(until));
    c.advance(Duration::minutes(1));
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        refused(until)
    );
}

/// An attempt admitted and then reset (a successful check) leaves nothing behind, even when
/// it was the one that started a lock: the next attempt counts from 1.
async fn login_success_undoes_its_lock(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(3));
    let key = token("undo");
    let until = lock_out(store.as_ref(), &key, &c, &policy).await;
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(until));
    store.reset(&key).await.unwrap();
    assert_eq!(store.check(&key, c.now()).await.unwrap(), None);
    assert_eq!(
        store.begin_attempt(&key, c.now(), &policy).await.unwrap(),
        counted(1)
    );
}

/// The log's entries after `position`.
async fn logged_after(f: &impl Fixture, position: i64) -> Vec<LogEntry> {
    f.events().read(position, &[], 10_000).await.unwrap()
}

/// The actions logged after `position`, each with the cache entry it invalidates.
async fn actions_and_invalidations_after(
    f: &impl Fixture,
    position: i64,
) -> Vec<(EventAction, Option<Invalidation>)> {
    logged_after(f, position)
        .await
        .iter()
        .map(|e| (e.action.unwrap(), e.invalidation.clone()))
        .collect()
}

/// The newest position of the log.
async fn log_head(f: &impl Fixture) -> i64 {
    let all = f.events().read(0, &[], 1_000_000).await.unwrap();
    all.last().map_or(0, |e| e.seq)
}

/// Each change that ends a credential appends its event, with the cache entry every instance
/// must drop, in the same step; a re-hash appends nothing.
async fn ending_changes_append_their_events(f: &impl Fixture) {
    let c = clock();
    let owner = key_owner(f, c.now()).await;
    let start = log_head(f).await;

    let key = stored_key(f, owner.id, c.now()).await;
    f.api_keys().revoke(key.id, c.now()).await.unwrap();
    let old = stored_key(f, owner.id, c.now()).await;
    let new = ApiKey {
        id: ApiKeyId::generate(),
        key_hash: token("rotated"),
        ..old.clone()
    };
    f.api_keys().rotate(old.id, &new, c.now()).await.unwrap();

    let device = stored_device(f, owner.id, c.now()).await;
    let not_before = c.now() + Duration::seconds(1);
    f.devices()
        .rotate_secret(&device.id, &token("secret"), not_before)
        .await
        .unwrap();
    f.devices().revoke(&device.id, c.now()).await.unwrap();

    let u = stored_user(f, c.now()).await;
    let mut sessions = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let s = session_for(&u, c.now());
        let t = token("first");
        f.sessions().create(&s, &t).await.unwrap();
        sessions.push(s.id);
        tokens.push(t);
    }
    assert!(f.sessions().revoke(sessions[0], c.now()).await.unwrap());
    assert_eq!(
        f.sessions()
            .revoke_by_token(&tokens[1], c.now())
            .await
            .unwrap(),
        Some(sessions[1])
    );
    let mut rest = f
        .sessions()
        .revoke_all_for_user(u.id, Some(sessions[3]), c.now())
        .await
        .unwrap();
    rest.sort();
    assert_eq!(rest, vec![sessions[2]]);
    let hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    f.users()
        .update_password(u.id, &hash, PasswordUpdate::Rehash, c.now())
        .await
        .unwrap();
    f.users()
        .update_password(u.id, &hash, PasswordUpdate::Change, c.now())
        .await
        .unwrap();

    let logged = logged_after(f, start).await;
    let seen = actions_and_invalidations_after(f, start).await;
    assert_eq!(
        seen,
        vec![
            (EventAction::ApiKeyCreated, None),
            (
                EventAction::ApiKeyRevoked,
                Some(Invalidation::ApiKey(key.key_hash))
            ),
            (EventAction::ApiKeyCreated, None),
            (
                EventAction::ApiKeyRotated,
                Some(Invalidation::ApiKey(old.key_hash))
            ),
            (
                EventAction::DeviceRegistered,
                Some(Invalidation::Device(device.id.clone()))
            ),
            (
                EventAction::DeviceSecretRotated,
                Some(Invalidation::Device(device.id.clone()))
            ),
            (
                EventAction::DeviceRevoked,
                Some(Invalidation::Device(device.id.clone()))
            ),
            (EventAction::UserRegistered, None),
            (EventAction::LoginSucceeded, None),
            (EventAction::LoginSucceeded, None),
            (EventAction::LoginSucceeded, None),
            (EventAction::LoginSucceeded, None),
            (
                EventAction::SessionReuseDetected,
                Some(Invalidation::Session(sessions[0]))
            ),
            (
                EventAction::SessionEnded,
                Some(Invalidation::Session(sessions[1]))
            ),
            (
                EventAction::SessionEnded,
                Some(Invalidation::Session(sessions[2]))
            ),
            (EventAction::PasswordChanged, None),
        ]
    );
    assert!(
        logged.windows(2).all(|w| w[0].seq < w[1].seq),
        "positions strictly increase: {logged:?}"
    );
    assert!(logged.iter().all(|e| e.at == c.now() || e.at == not_before));
}

/// A change that is refused (already revoked, unknown, a failed rotation) appends nothing.
async fn refused_changes_append_nothing(f: &impl Fixture) {
    let c = clock();
    let owner = key_owner(f, c.now()).await;
    let key = stored_key(f, owner.id, c.now()).await;
    f.api_keys().revoke(key.id, c.now()).await.unwrap();
    let device = stored_device(f, owner.id, c.now()).await;
    f.devices().revoke(&device.id, c.now()).await.unwrap();
    let u = stored_user(f, c.now()).await;
    let s = session_for(&u, c.now());
    let t = token("first");
    f.sessions().create(&s, &t).await.unwrap();
    f.sessions().revoke_by_token(&t, c.now()).await.unwrap();
    let live = stored_key(f, owner.id, c.now()).await;
    let start = log_head(f).await;

    assert!(f.api_keys().revoke(key.id, c.now()).await.is_err());
    assert!(
        f.api_keys()
            .revoke(ApiKeyId::generate(), c.now())
            .await
            .is_err()
    );
    // A rotation whose new key collides with an existing hash fails and changes nothing.
    let clash = ApiKey {
        id: ApiKeyId::generate(),
        ..live.clone()
    };
    assert!(f.api_keys().rotate(live.id, &clash, c.now()).await.is_err());
    assert!(f.devices().revoke(&device.id, c.now()).await.is_err());
    assert!(
        f.devices()
            .rotate_secret(&device.id, &token("s"), c.now())
            .await
            .is_err()
    );
    assert!(!f.sessions().revoke(s.id, c.now()).await.unwrap());
    assert_eq!(
        f.sessions().revoke_by_token(&t, c.now()).await.unwrap(),
        Some(s.id)
    );
    assert!(
        f.sessions()
            .revoke_all_for_user(u.id, None, c.now())
            .await
            .unwrap()
            .is_empty()
    );
    let hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    assert!(
        !f.users()
            .update_password(UserId::generate(), &hash, PasswordUpdate::Change, c.now())
            .await
            .unwrap()
    );
    assert_eq!(logged_after(f, start).await, vec![]);
}

/// `read` gives what lies after a position plus the positions asked for, in order and within
/// the limit; `position_at` and `oldest` bound the log.
async fn event_log_reads_after_and_holes(f: &impl Fixture) {
    let c = clock();
    let owner = key_owner(f, c.now()).await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(stored_key(f, owner.id, c.now()).await);
    }
    let start = log_head(f).await;
    for key in &keys {
        f.api_keys().revoke(key.id, c.now()).await.unwrap();
        c.advance(Duration::seconds(10));
    }
    let all = logged_after(f, start).await;
    assert_eq!(all.len(), 5);
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();

    let page = f.events().read(seqs[2], &[seqs[0]], 10).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seqs[0], seqs[3], seqs[4]]
    );
    let limited = f.events().read(start, &[], 2).await.unwrap();
    assert_eq!(
        limited.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs[..2].to_vec()
    );
    assert_eq!(
        f.events().read(seqs[4], &[], 10).await.unwrap(),
        vec![],
        "nothing after the newest"
    );

    // Events were made 10 s apart: a position at a time between the 2nd and 3rd is the 2nd.
    let second_at = all[1].at;
    assert_eq!(
        f.events()
            .position_at(second_at + Duration::seconds(5))
            .await
            .unwrap(),
        seqs[1]
    );
    assert!(
        f.events()
            .position_at(all[0].at - Duration::days(1))
            .await
            .unwrap()
            < seqs[0]
    );
    let bounds = f.events().bounds().await.unwrap();
    assert!(bounds.oldest.unwrap() <= seqs[0]);
    assert_eq!(bounds.newest, Some(seqs[4]));
}

/// Of concurrent revocations of one key, exactly one appends an event.
async fn concurrent_revokes_append_once(f: &impl Fixture) {
    let c = clock();
    let owner = key_owner(f, c.now()).await;
    let key = stored_key(f, owner.id, c.now()).await;
    let start = log_head(f).await;
    let now = c.now();
    let attempts = (0..16).map(|_| {
        let keys = f.api_keys();
        async move { keys.revoke(key.id, now).await.is_ok() }
    });
    let won = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(won, 1);
    let logged = logged_after(f, start).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].action, Some(EventAction::ApiKeyRevoked));
}

/// The trail lists whole events by organization, by the account they are about and by
/// action, after a position and at most a limit, oldest first; another organization's and
/// another account's events never show.
async fn event_trail_pages_by_organization_user_and_action(f: &impl Fixture) {
    use crate::ports::{EventQuery, EventScope};
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let other = key_owner(f, c.now()).await;
    let mut revoked = Vec::new();
    for _ in 0..3 {
        let key = stored_key(f, org.id, c.now()).await;
        f.api_keys().revoke(key.id, c.now()).await.unwrap();
        revoked.push(key.id.to_string());
    }
    let foreign = stored_key(f, other.id, c.now()).await;
    f.api_keys().revoke(foreign.id, c.now()).await.unwrap();
    let ada = stored_user(f, c.now()).await;
    let bob = stored_user(f, c.now()).await;
    for who in [&ada, &bob] {
        let (session, t) = (
            Session {
                id: SessionId::generate(),
                user_id: who.id,
                created_at: c.now(),
                expires_at: c.now() + Duration::days(1),
                revoked_at: None,
            },
            token("trail"),
        );
        f.sessions().create(&session, &t).await.unwrap();
        assert!(f.sessions().revoke(session.id, c.now()).await.unwrap());
    }
    let list = |scope, after, limit, action: Option<&str>| {
        let query = EventQuery {
            scope,
            after,
            limit,
            action: action.map(str::to_owned),
        };
        let events = f.events();
        async move { events.list(&query).await.unwrap() }
    };

    let trail = list(
        EventScope::Organization(org.id),
        0,
        100,
        Some("api_key.revoked"),
    )
    .await;
    let targets: Vec<&str> = trail.iter().map(|e| e.target.id.as_str()).collect();
    assert_eq!(targets, revoked);
    for event in &trail {
        assert_eq!(event.organization_id, Some(org.id));
        assert_eq!(event.details["key_id"], event.target.id.as_str());
    }
    // Paged: two, then what follows the second.
    let first = list(
        EventScope::Organization(org.id),
        0,
        2,
        Some("api_key.revoked"),
    )
    .await;
    assert_eq!(first.len(), 2);
    let rest = list(
        EventScope::Organization(org.id),
        first[1].seq,
        100,
        Some("api_key.revoked"),
    )
    .await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].target.id, revoked[2]);
    // Every event of the organization is the organization's.
    let all_of_org = list(EventScope::Organization(org.id), 0, 1000, None).await;
    assert!(all_of_org.iter().all(|e| e.organization_id == Some(org.id)));
    assert!(
        !all_of_org
            .iter()
            .any(|e| e.target.id == foreign.id.to_string())
    );

    // Ada's account: her ended session, never Bob's.
    let mine = list(EventScope::User(ada.id), 0, 1000, None).await;
    assert!(
        mine.iter().any(|e| e.action.starts_with("session.")),
        "{mine:?}"
    );
    for event in &mine {
        let about_ada = event.target.id == ada.id.to_string()
            || event.details["user_id"] == ada.id.to_string().as_str();
        assert!(about_ada, "{event:?}");
    }
    // Ascending, and the same events as a read of the whole log shows.
    let everything = list(EventScope::All, 0, 100_000, None).await;
    assert!(everything.windows(2).all(|w| w[0].seq < w[1].seq));
    let read = f.events().read(0, &[], 100_000).await.unwrap();
    assert_eq!(
        everything.iter().map(|e| e.seq).collect::<Vec<_>>(),
        read.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    // Written outside any request: no address or request, and the service's own doing but
    // for a sign-in, which is its user's.
    for event in &everything {
        let expected = if event.action == "user.login_succeeded" {
            crate::model::ActorKind::User
        } else {
            crate::model::ActorKind::System
        };
        assert_eq!(event.actor.kind, expected, "{event:?}");
        assert!(event.ip.is_none() && event.request_id.is_none());
    }
    assert!(
        list(EventScope::All, 0, 100, Some("user.nothing"))
            .await
            .is_empty()
    );
}

/// The whole trail after `position`.
async fn trail_after(f: &impl Fixture, position: i64) -> Vec<StoredEvent> {
    trail_of(f, EventScope::All, position).await
}

/// The trail of `scope` after `position`.
async fn trail_of(f: &impl Fixture, scope: EventScope, position: i64) -> Vec<StoredEvent> {
    f.events()
        .list(&EventQuery {
            scope,
            after: position,
            limit: 10_000,
            action: None,
        })
        .await
        .unwrap()
}

fn actions_of(trail: &[StoredEvent]) -> Vec<&str> {
    trail.iter().map(|e| e.action.as_str()).collect()
}

fn user_target(user: UserId) -> EventTarget {
    EventTarget {
        kind: "user".to_owned(),
        id: user.to_string(),
    }
}

/// A session is opened by a login: `create` appends one `user.login_succeeded` about its
/// user, naming the session, whose actor is that user even outside a request; a refused
/// `create` (an unknown user, a session or token that exists) appends nothing.
async fn session_creation_appends_the_login(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    let s = session_for(&u, c.now());
    let first = token("first");
    f.sessions().create(&s, &first).await.unwrap();

    let trail = trail_after(f, start).await;
    assert_eq!(actions_of(&trail), vec!["user.login_succeeded"]);
    let login = &trail[0];
    assert_eq!(login.target, user_target(u.id));
    assert_eq!(login.actor, EventActor::user(u.id));
    assert_eq!(login.details["session_id"], s.id.to_string());
    assert_eq!(login.details["user_id"], u.id.to_string());
    assert_eq!((login.organization_id, login.at), (None, c.now()));
    assert_eq!((login.ip, login.request_id.as_deref()), (None, None));
    assert_eq!(trail_of(f, EventScope::User(u.id), start).await, trail);

    let head = log_head(f).await;
    let stranger = Session {
        user_id: UserId::generate(),
        ..session_for(&u, c.now())
    };
    assert!(f.sessions().create(&stranger, &token("x")).await.is_err());
    assert!(f.sessions().create(&s, &token("again")).await.is_err());
    assert!(
        f.sessions()
            .create(&session_for(&u, c.now()), &first)
            .await
            .is_err()
    );
    assert_eq!(log_head(f).await, head, "a refused login appends nothing");
}

/// A failed check appends one `user.login_failed`: about the account when there is one,
/// else about the address's fingerprint as an `email` target (nothing else of the address);
/// the failure whose attempt locked the key also appends `user.locked`, unless that lock no
/// longer stands (a success reset the key since). Recording changes no counter.
async fn login_failures_append_their_events(f: &impl Fixture) {
    let (store, c, policy) = (f.login_attempts(), clock(), lockout(3));
    let u = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    let failure = |subject: &LoginSubject, state: Admission| {
        let Admission::Admitted(state) = state else {
            panic!("refused: {state:?}")
        };
        FailedLogin {
            subject: subject.clone(),
            step: LoginStep::Password,
            failures: state.failures,
            locked_until: state.locked_until,
            at: c.now(),
        }
    };

    let nobody = LoginSubject::Address("sha256:00112233445566778899aabbccddeeff".to_owned());
    let unknown = token("nobody");
    let state = store
        .begin_attempt(&unknown, c.now(), &policy)
        .await
        .unwrap();
    store
        .record_failure(&unknown, &failure(&nobody, state))
        .await
        .unwrap();

    let account = LoginSubject::User(u.id);
    let key = u.email.attempt_key();
    let mut until = None;
    for _ in 0..3 {
        let state = store.begin_attempt(&key, c.now(), &policy).await.unwrap();
        let failed = failure(&account, state);
        until = until.or(failed.locked_until);
        store.record_failure(&key, &failed).await.unwrap();
    }
    let until = until.unwrap();

    // The locking attempt's lock was cleared (a success) before its failure was recorded.
    let reset = token("reset");
    let stale = lock_out(store.as_ref(), &reset, &c, &policy).await;
    store.reset(&reset).await.unwrap();
    let failed = FailedLogin {
        failures: 3,
        locked_until: Some(stale),
        ..failure(&nobody, counted(3))
    };
    store.record_failure(&reset, &failed).await.unwrap();

    let trail = trail_after(f, start).await;
    assert_eq!(
        actions_of(&trail),
        vec![
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
            "user.locked",
            "user.login_failed",
        ]
    );
    let email_target = EventTarget {
        kind: "email".to_owned(),
        id: "sha256:00112233445566778899aabbccddeeff".to_owned(),
    };
    assert_eq!(trail[0].target, email_target);
    assert_eq!(
        trail[0].details,
        serde_json::json!({"step": "password", "failures": 1})
    );
    for (event, failures) in trail[1..4].iter().zip(1..) {
        assert_eq!(event.target, user_target(u.id));
        assert_eq!(event.details["failures"], failures);
        assert_eq!(event.details["user_id"], u.id.to_string());
    }
    assert_eq!(trail[4].target, user_target(u.id));
    assert_eq!(
        trail[4].details["locked_until"],
        serde_json::json!(until),
        "{:?}",
        trail[4]
    );
    assert_eq!(trail[5].target, email_target);
    assert!(trail.iter().all(|e| e.actor == EventActor::system()));
    assert!(trail.iter().all(|e| e.organization_id.is_none()));
    for event in &trail {
        let shown = format!("{event:?}");
        assert!(
            !shown.contains(u.email.normalized()) && !shown.contains(u.email.as_str()),
            "{shown}"
        );
    }
    assert_eq!(
        actions_of(&trail_of(f, EventScope::User(u.id), start).await),
        vec![
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
            "user.locked"
        ]
    );

    // No counter moved: the lock stands, the other keys count on.
    assert_eq!(store.check(&key, c.now()).await.unwrap(), Some(until));
    assert_eq!(
        store
            .begin_attempt(&unknown, c.now(), &policy)
            .await
            .unwrap(),
        counted(2)
    );
    assert_eq!(
        store.begin_attempt(&reset, c.now(), &policy).await.unwrap(),
        counted(1)
    );
}

/// `create`, `add_member` and `remove_member` each append one event to their
/// organization's trail (`organization.created` with its first owner, `member.added` and
/// `member.removed` with the member and the role); every refusal appends nothing.
async fn organization_changes_append_their_events(f: &impl Fixture) {
    let now = clock().now();
    let (owner, joiner, outsider) = (
        stored_user(f, now).await,
        stored_user(f, now).await,
        stored_user(f, now).await,
    );
    let start = log_head(f).await;
    let org = stored_org(f, &owner, now).await;
    let repo = f.organizations();
    repo.add_member(&membership(&org, &joiner, Role::Admin, now))
        .await
        .unwrap();

    let head = log_head(f).await;
    let nowhere = organization("Nowhere", now);
    let ghost = user(unique_email("ghost"), now);
    assert!(matches!(
        repo.add_member(&membership(&org, &joiner, Role::Member, now))
            .await,
        Err(AddMemberError::AlreadyMember)
    ));
    assert!(matches!(
        repo.add_member(&membership(&nowhere, &outsider, Role::Member, now))
            .await,
        Err(AddMemberError::NotFound)
    ));
    assert!(matches!(
        repo.add_member(&membership(&org, &ghost, Role::Member, now))
            .await,
        Err(AddMemberError::NotFound)
    ));
    assert!(repo.create(&org, outsider.id).await.is_err(), "id taken");
    assert!(repo.create(&nowhere, ghost.id).await.is_err(), "no owner");
    assert!(matches!(
        repo.remove_member(org.id, outsider.id, now).await,
        Err(RemoveMemberError::NotFound)
    ));
    assert!(matches!(
        repo.remove_member(org.id, owner.id, now).await,
        Err(RemoveMemberError::LastOwner)
    ));
    assert_eq!(log_head(f).await, head, "refusals append nothing");

    let later = now + Duration::seconds(5);
    assert_eq!(
        repo.remove_member(org.id, joiner.id, later).await.unwrap(),
        Role::Admin
    );

    let trail = trail_after(f, start).await;
    assert_eq!(
        actions_of(&trail),
        vec!["organization.created", "member.added", "member.removed"]
    );
    assert_eq!(
        trail[0].target,
        EventTarget {
            kind: "organization".to_owned(),
            id: org.id.to_string(),
        }
    );
    assert_eq!(trail[0].details["user_id"], owner.id.to_string());
    assert_eq!(trail[0].details["role"], "owner");
    assert_eq!(trail[0].details["name"], org.name.as_str());
    for event in &trail[1..] {
        assert_eq!(event.target, user_target(joiner.id));
        assert_eq!(event.details["user_id"], joiner.id.to_string());
        assert_eq!(event.details["role"], "admin");
    }
    assert_eq!(
        trail.iter().map(|e| e.at).collect::<Vec<_>>(),
        vec![now, now, later]
    );
    assert!(trail.iter().all(|e| e.organization_id == Some(org.id)));
    assert!(trail.iter().all(|e| e.actor == EventActor::system()));
    assert_eq!(
        trail_of(f, EventScope::Organization(org.id), start).await,
        trail
    );
    assert_eq!(
        actions_of(&trail_of(f, EventScope::User(joiner.id), start).await),
        vec!["member.added", "member.removed"]
    );
}

/// `create` appends one `api_key.created` to the key's organization's trail: its id, name,
/// scopes and expiry, never its hash or prefix; a refused `create` appends nothing.
async fn api_key_creation_appends_its_event(f: &impl Fixture) {
    let now = clock().now();
    let org = key_owner(f, now).await;
    let start = log_head(f).await;
    let key = ApiKey {
        expires_at: Some(now + Duration::days(7)),
        ..api_key(org.id, now)
    };
    f.api_keys().create(&key).await.unwrap();
    let head = log_head(f).await;
    let clash = ApiKey {
        id: ApiKeyId::generate(),
        ..key.clone()
    };
    assert!(f.api_keys().create(&clash).await.is_err());
    assert!(f.api_keys().create(&key).await.is_err());
    assert_eq!(log_head(f).await, head, "refusals append nothing");

    let trail = trail_of(f, EventScope::Organization(org.id), start).await;
    assert_eq!(actions_of(&trail), vec!["api_key.created"]);
    let created = &trail[0];
    assert_eq!(
        created.target,
        EventTarget {
            kind: "api_key".to_owned(),
            id: key.id.to_string(),
        }
    );
    assert_eq!(
        created.details,
        serde_json::json!({
            "key_id": key.id.to_string(),
            "organization_id": org.id.to_string(),
            "name": "CI deploy",
            "scopes": ["admin", "deploy.write", "keys:read"],
            "expires_at": key.expires_at,
        })
    );
    assert_eq!(created.at, now);
    let shown = format!("{created:?}");
    assert!(!shown.contains(&key.prefix), "{shown}");
    assert!(
        !shown.contains(&hex::encode(key.key_hash.as_bytes())),
        "{shown}"
    );
}

/// Events appended inside a request's audit scope carry its id, the client's address and
/// its caller (`anonymous` until one is named); outside any request they are `system`'s,
/// with neither. Concurrent requests never lend each other their context.
async fn events_carry_the_request_context(f: &impl Fixture) {
    let c = clock();
    let org = key_owner(f, c.now()).await;
    let mut keys = Vec::new();
    for _ in 0..19 {
        keys.push(stored_key(f, org.id, c.now()).await);
    }
    let start = log_head(f).await;
    let v6: std::net::IpAddr = "2001:db8::7".parse().unwrap();
    let v4: std::net::IpAddr = "198.51.100.4".parse().unwrap();
    let (anonymous, named, outside) = (&keys[0], &keys[1], &keys[2]);
    audit::scope(RequestContext::new("req-anon".into(), Some(v6)), async {
        f.api_keys().revoke(anonymous.id, c.now()).await.unwrap();
    })
    .await;
    audit::scope(RequestContext::new("req-key".into(), Some(v4)), async {
        audit::set_actor(RequestActor::ApiKey(outside.id));
        f.api_keys().revoke(named.id, c.now()).await.unwrap();
    })
    .await;
    f.api_keys().revoke(outside.id, c.now()).await.unwrap();

    let trail = trail_after(f, start).await;
    assert_eq!(trail.len(), 3, "{trail:?}");
    assert_eq!(trail[0].actor, EventActor::anonymous());
    assert_eq!(
        (trail[0].ip, trail[0].request_id.as_deref()),
        (Some(v6), Some("req-anon"))
    );
    assert_eq!(trail[1].actor, EventActor::api_key(outside.id));
    assert_eq!(
        (trail[1].ip, trail[1].request_id.as_deref()),
        (Some(v4), Some("req-key"))
    );
    assert_eq!(trail[2].actor, EventActor::system());
    assert_eq!((trail[2].ip, trail[2].request_id.as_deref()), (None, None));

    // Sixteen requests at once, each naming a caller of its own halfway through.
    let head = log_head(f).await;
    let requests = keys[3..].iter().enumerate().map(|(i, key)| {
        let keys = f.api_keys();
        let (now, id) = (c.now(), key.id);
        let ip = std::net::IpAddr::from([10, 0, 0, u8::try_from(i).unwrap()]);
        audit::scope(
            RequestContext::new(format!("req-{id}"), Some(ip)),
            async move {
                futures::future::ready(()).await;
                audit::set_actor(RequestActor::ApiKey(id));
                keys.revoke(id, now).await.unwrap();
            },
        )
    });
    futures::future::join_all(requests).await;
    let trail = trail_after(f, head).await;
    assert_eq!(trail.len(), 16);
    for event in &trail {
        let key = &event.target.id;
        let i = keys[3..]
            .iter()
            .position(|k| k.id.to_string() == *key)
            .unwrap();
        assert_eq!(event.request_id, Some(format!("req-{key}")));
        assert_eq!(event.actor.id.as_deref(), Some(key.as_str()));
        assert_eq!(
            event.ip,
            Some(std::net::IpAddr::from([10, 0, 0, u8::try_from(i).unwrap()]))
        );
    }
}

// ---- Retention -----------------------------------------------------------------------------

/// The policy of the retention tests: the defaults (30 days, 90 days, 15 minutes).
fn retention() -> RetentionPolicy {
    RetentionPolicy {
        retention: Duration::days(30),
        event_retention: Duration::days(90),
        lockout_window: Duration::minutes(15),
    }
}

/// A stored session of `user` from `created_at` to `expires_at`, with its first token.
async fn past_session(
    f: &impl Fixture,
    user: &User,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> (Session, TokenHash) {
    let s = Session {
        id: SessionId::generate(),
        user_id: user.id,
        created_at,
        expires_at,
        revoked_at: None,
    };
    let t = token("past");
    f.sessions().create(&s, &t).await.unwrap();
    (s, t)
}

/// Sessions go `retention` after their end, the earlier of revocation and expiry, with
/// every token they issued; a session ended exactly `retention` ago, one ended later, and
/// every active one stay with all their tokens, also an active session whose first token was
/// rotated long before the cutoff.
async fn prune_sessions_ended_before_retention(f: &impl Fixture) {
    let now = clock().now();
    let policy = retention();
    let cutoff = now - policy.retention;
    let u = stored_user(f, now - Duration::days(400)).await;
    let micro = Duration::microseconds(1);

    // Expired just before the cutoff, after two rotations: three tokens.
    let (expired_out, t0) = past_session(f, &u, cutoff - Duration::days(30), cutoff - micro).await;
    let (t1, t2) = (token("expired-1"), token("expired-2"));
    f.sessions()
        .rotate(&t0, &t1, cutoff - Duration::days(20))
        .await
        .unwrap();
    f.sessions()
        .rotate(&t1, &t2, cutoff - Duration::days(10))
        .await
        .unwrap();
    // Revoked just before the cutoff; it would have expired long after.
    let (revoked_out, r0) =
        past_session(f, &u, cutoff - Duration::days(1), now + Duration::days(60)).await;
    assert!(
        f.sessions()
            .revoke(revoked_out.id, cutoff - micro)
            .await
            .unwrap()
    );
    // Expired before the cutoff, revoked after it (logout-all ends expired sessions too):
    // it ended when it expired.
    let (late_revoked, l0) = past_session(
        f,
        &u,
        cutoff - Duration::days(31),
        cutoff - Duration::days(1),
    )
    .await;
    assert!(
        f.sessions()
            .revoke(late_revoked.id, now - Duration::days(2))
            .await
            .unwrap()
    );

    // Ended exactly at the cutoff, and just after it: kept.
    let (expired_at, e0) = past_session(f, &u, cutoff - Duration::days(30), cutoff).await;
    let (revoked_in, i0) = past_session(f, &u, cutoff - Duration::days(5), now).await;
    assert!(
        f.sessions()
            .revoke(revoked_in.id, cutoff + micro)
            .await
            .unwrap()
    );
    // Active for a year, its first token rotated 100 days ago.
    let (active, a0) =
        past_session(f, &u, now - Duration::days(100), now + Duration::days(265)).await;
    let a1 = token("active-1");
    f.sessions()
        .rotate(&a0, &a1, now - Duration::days(100))
        .await
        .unwrap();

    let report = f.pruner().prune(&policy, now).await.unwrap();
    assert_eq!(
        report,
        PruneReport::Completed(PrunedRows {
            sessions: 3,
            refresh_tokens: 5,
            // The user's `user.registered`, 400 days old, and the login of the session
            // opened 100 days ago: past the event retention.
            events: 2,
            ..PrunedRows::default()
        })
    );
    for (gone, tokens) in [
        (&expired_out, vec![&t0, &t1, &t2]),
        (&revoked_out, vec![&r0]),
        (&late_revoked, vec![&l0]),
    ] {
        assert_eq!(f.sessions().find(gone.id).await.unwrap(), None);
        for t in tokens {
            assert_eq!(
                f.sessions().rotate(t, &token("n"), now).await.unwrap(),
                Rotation::Unknown,
                "the tokens went with their session"
            );
        }
    }
    for (kept, t) in [(&expired_at, &e0), (&revoked_in, &i0)] {
        assert!(f.sessions().find(kept.id).await.unwrap().is_some());
        assert_eq!(
            f.sessions().rotate(t, &token("n"), now).await.unwrap(),
            Rotation::Inactive
        );
    }
    assert_eq!(
        f.sessions().find(active.id).await.unwrap(),
        Some(active.clone())
    );
    assert!(matches!(
        f.sessions().rotate(&a0, &token("n"), now).await.unwrap(),
        Rotation::Reused { session_id, .. } if session_id == active.id
    ));
    assert!(matches!(
        f.sessions().rotate(&a1, &token("a2"), now).await.unwrap(),
        Rotation::Rotated { .. }
    ));

    // A second pass finds nothing more.
    assert_eq!(
        f.pruner().prune(&policy, now).await.unwrap(),
        PruneReport::Completed(PrunedRows::default())
    );
}

/// Lockout counters go once their window is over and their lock, if any, has ended; a
/// counter whose window began exactly `lockout_window` ago, a running window and a running
/// lock stay, and keep counting and refusing as before.
async fn prune_lockout_counters_once_window_and_lock_are_over(f: &impl Fixture) {
    let (store, now) = (f.login_attempts(), clock().now());
    let policy = retention();
    let window = policy.lockout_window;
    // A lock that outlasts the window: "window over" and "lock running" overlap.
    let counting = LockoutPolicy {
        threshold: 3,
        window,
        duration: Duration::hours(1),
    };
    let micro = Duration::microseconds(1);
    let (over, edge, recent, locked, lock_ended) = (
        token("over"),
        token("edge"),
        token("recent"),
        token("locked"),
        token("lock-ended"),
    );
    store
        .begin_attempt(&over, now - window - micro, &counting)
        .await
        .unwrap();
    store
        .begin_attempt(&edge, now - window, &counting)
        .await
        .unwrap();
    store
        .begin_attempt(&recent, now - Duration::minutes(1), &counting)
        .await
        .unwrap();
    let c = ManualClock::new(now - Duration::minutes(20));
    let until = lock_out(store.as_ref(), &locked, &c, &counting).await;
    assert!(until > now, "the lock still runs");
    c.set(now - Duration::hours(3));
    let ended = lock_out(store.as_ref(), &lock_ended, &c, &counting).await;
    assert!(ended <= now - window, "that lock has ended");

    let report = f.pruner().prune(&policy, now).await.unwrap();
    assert_eq!(report.deleted().login_attempts, 2, "{report:?}");
    assert_eq!(report.deleted().total(), 2, "{report:?}");

    assert_eq!(store.check(&locked, now).await.unwrap(), Some(until));
    assert_eq!(
        store.begin_attempt(&locked, now, &counting).await.unwrap(),
        refused(until)
    );
    assert_eq!(
        store.begin_attempt(&edge, now, &counting).await.unwrap(),
        counted(2),
        "exactly `window` after its start, the window still runs"
    );
    assert_eq!(
        store.begin_attempt(&recent, now, &counting).await.unwrap(),
        counted(2)
    );
    // What was deleted starts again at 1, as it would have without the pass.
    assert_eq!(
        store.begin_attempt(&over, now, &counting).await.unwrap(),
        counted(1)
    );
    assert_eq!(
        store
            .begin_attempt(&lock_ended, now, &counting)
            .await
            .unwrap(),
        counted(1)
    );
}

/// Two passes at once delete each row once: one runs and the other is skipped, or (when
/// they did not overlap) the second finds nothing left.
async fn prune_concurrent_passes_delete_once(f: &impl Fixture) {
    let now = clock().now();
    let policy = retention();
    let u = stored_user(f, now - Duration::days(100)).await;
    for _ in 0..20 {
        past_session(f, &u, now - Duration::days(90), now - Duration::days(31)).await;
    }
    let (a, b) = (f.pruner(), f.pruner());
    let (first, second) = futures::future::join(a.prune(&policy, now), b.prune(&policy, now)).await;
    let reports = [first.unwrap(), second.unwrap()];
    let sessions: u64 = reports.iter().map(|r| r.deleted().sessions).sum();
    let tokens: u64 = reports.iter().map(|r| r.deleted().refresh_tokens).sum();
    assert_eq!((sessions, tokens), (20, 20), "{reports:?}");
    assert!(
        reports.contains(&PruneReport::Skipped) || reports.iter().any(|r| r.deleted().total() == 0),
        "{reports:?}"
    );
    assert_eq!(
        f.pruner().prune(&policy, now).await.unwrap(),
        PruneReport::Completed(PrunedRows::default())
    );
}

/// Expired one-time tokens go at the first pass after their expiry, in batches, a token
/// that expires at the pass's time included (it is refused from then on); unexpired tokens
/// stay and still work after the pass.
async fn prune_expired_one_time_tokens_at_once(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    drain_outbox(f, c.now()).await;
    let issued_at = c.now();
    let lifetime = Duration::hours(1);
    let micro = Duration::microseconds(1);
    // Issuing replaces a user's token of the same purpose: one token per user here.
    let mut expired = Vec::new();
    for (i, expires_at) in [
        issued_at + Duration::minutes(1),
        issued_at + Duration::minutes(30),
        issued_at + lifetime - micro,
        issued_at + lifetime,
        issued_at + lifetime,
    ]
    .into_iter()
    .enumerate()
    {
        let u = stored_user(f, issued_at).await;
        let purpose = [
            TokenPurpose::VerifyEmail,
            TokenPurpose::PasswordReset,
            TokenPurpose::ChangeEmail,
        ][i % 3];
        let (_, stored) = one_time(&u, purpose, issued_at);
        let stored = StoredToken {
            expires_at,
            ..stored
        };
        tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
        expired.push((u, purpose));
    }
    let mut live = Vec::new();
    for expires_at in [issued_at + lifetime + micro, issued_at + Duration::hours(2)] {
        let u = stored_user(f, issued_at).await;
        let (token, stored) = one_time(&u, TokenPurpose::PasswordReset, issued_at);
        let stored = StoredToken {
            expires_at,
            ..stored
        };
        tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
        live.push((u, token));
    }

    c.advance(lifetime);
    let policy = retention();
    let report = f.pruner().prune(&policy, c.now()).await.unwrap();
    assert_eq!(report.deleted().one_time_tokens, 5, "{report:?}");
    assert_eq!(report.deleted().total(), 5, "{report:?}");
    for (u, purpose) in &expired {
        assert_eq!(
            tokens.last_issued(u.id, *purpose).await.unwrap(),
            None,
            "{purpose:?} token deleted"
        );
    }
    for (u, token) in &live {
        assert_eq!(
            tokens
                .last_issued(u.id, TokenPurpose::PasswordReset)
                .await
                .unwrap(),
            Some(issued_at)
        );
        assert_eq!(
            tokens
                .consume(&token.hash(), TokenPurpose::PasswordReset, c.now())
                .await
                .unwrap(),
            Some(u.id),
            "an unexpired token still works after a pass"
        );
    }
    assert_eq!(
        f.pruner().prune(&policy, c.now()).await.unwrap(),
        PruneReport::Completed(PrunedRows::default())
    );
    drain_outbox(f, c.now()).await;
}

/// Expired MFA login challenges go at the first pass after their expiry, in batches, also
/// of users who do not log in again; a live challenge stays and is still spent once.
async fn prune_expired_mfa_challenges(f: &impl Fixture) {
    let c = clock();
    let mfa = f.mfa();
    let ttl = Duration::minutes(5);
    let micro = Duration::microseconds(1);
    let (u, v, w) = (
        mfa_user(f, &[]).await,
        mfa_user(f, &[]).await,
        mfa_user(f, &[]).await,
    );
    let made_at = c.now();
    // Five that expire by the pass (one exactly at its time), three of them of one user.
    let mut expired = Vec::new();
    for (owner, at) in [
        (&u, made_at - Duration::minutes(3)),
        (&u, made_at - micro),
        (&u, made_at),
        (&v, made_at),
        (&w, made_at - Duration::minutes(1)),
    ] {
        let t = token("expired-challenge");
        mfa.create_challenge(&t, owner.id, at + ttl).await.unwrap();
        expired.push(t);
    }
    c.advance(ttl);
    let (live, later) = (token("live-challenge"), token("later-challenge"));
    mfa.create_challenge(&live, v.id, made_at + ttl + micro)
        .await
        .unwrap();
    let x = mfa_user(f, &[]).await;
    mfa.create_challenge(&later, x.id, c.now() + ttl)
        .await
        .unwrap();

    let policy = retention();
    let report = f.pruner().prune(&policy, c.now()).await.unwrap();
    assert_eq!(report.deleted().mfa_challenges, 5, "{report:?}");
    assert_eq!(report.deleted().total(), 5, "{report:?}");
    for t in &expired {
        // Asked at a time when it would still be live: gone, not only expired.
        assert_eq!(
            mfa.find_challenge(t, made_at - Duration::minutes(4))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        mfa.find_challenge(&live, c.now()).await.unwrap(),
        Some(v.id)
    );
    assert!(mfa.spend_challenge(&live, c.now()).await.unwrap());
    assert!(!mfa.spend_challenge(&live, c.now()).await.unwrap());
    assert_eq!(
        mfa.find_challenge(&later, c.now()).await.unwrap(),
        Some(x.id)
    );
    assert_eq!(
        f.pruner().prune(&policy, c.now()).await.unwrap(),
        PruneReport::Completed(PrunedRows::default())
    );
}

/// Password-reset requests that no worker handled within `RESET_REQUEST_RETENTION` of being
/// made go, in batches, a claimed one too (its worker then finds it gone and issues nothing);
/// a request made exactly that long ago, and newer ones, stay and are handled as before.
async fn prune_stale_password_reset_requests(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    drain_outbox(f, c.now()).await;
    let u = stored_user(f, c.now()).await;
    let start = c.now();
    let micro = Duration::microseconds(1);
    for at in [
        start - Duration::minutes(10),
        start - Duration::seconds(1),
        start - micro,
    ] {
        tokens.request_reset(&u.email, at).await.unwrap();
    }
    // A stale request a worker has claimed (and has not finished).
    tokens
        .request_reset(&unique_email("leased"), start - Duration::minutes(20))
        .await
        .unwrap();
    let leased = tokens
        .claim_reset_requests(start, 1, Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    tokens.request_reset(&u.email, start).await.unwrap();
    tokens
        .request_reset(&u.email, start + Duration::minutes(1))
        .await
        .unwrap();

    c.advance(RESET_REQUEST_RETENTION);
    let policy = retention();
    let report = f.pruner().prune(&policy, c.now()).await.unwrap();
    assert_eq!(report.deleted().password_reset_requests, 4, "{report:?}");
    assert_eq!(report.deleted().total(), 4, "{report:?}");

    let (_, stored, m) = reset_token(&u.email, c.now());
    assert_eq!(
        tokens
            .fulfil_reset_request(leased[0].id, &stored, &m, Duration::zero())
            .await
            .unwrap(),
        None,
        "the pruned request is gone for its worker too"
    );
    let left = tokens
        .claim_reset_requests(c.now() + Duration::hours(3), 10, Duration::minutes(5))
        .await
        .unwrap();
    let kept: Vec<DateTime<Utc>> = left.iter().map(|r| r.requested_at).collect();
    assert_eq!(kept, vec![start, start + Duration::minutes(1)]);
    assert_eq!(
        tokens
            .fulfil_reset_request(left[0].id, &stored, &m, Duration::zero())
            .await
            .unwrap(),
        Some(AddressIssue::Issued)
    );
    assert_eq!(take_mails(f, c.now()).await.len(), 1);
    assert_eq!(
        f.pruner().prune(&policy, c.now()).await.unwrap(),
        PruneReport::Completed(PrunedRows::default())
    );
}

/// Deleting an account ends its live sessions (each with its event and invalidation),
/// removes its memberships, sessions and tokens, frees its email, and appends `user.deleted`;
/// a second deletion finds nothing.
async fn account_deletion_removes_everything_and_ends_sessions(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let (other, co_owner) = (stored_user(f, c.now()).await, stored_user(f, c.now()).await);
    let member_of = stored_org(f, &other, c.now()).await;
    f.organizations()
        .add_member(&membership(&member_of, &u, Role::Member, c.now()))
        .await
        .unwrap();
    let co_owned = stored_org(f, &co_owner, c.now()).await;
    f.organizations()
        .add_member(&membership(&co_owned, &u, Role::Owner, c.now()))
        .await
        .unwrap();
    let (live, ended, live_token) = (
        session_for(&u, c.now()),
        session_for(&u, c.now()),
        token("live"),
    );
    f.sessions().create(&live, &live_token).await.unwrap();
    f.sessions().create(&ended, &token("ended")).await.unwrap();
    assert!(f.sessions().revoke(ended.id, c.now()).await.unwrap());
    let start = log_head(f).await;

    c.advance(Duration::seconds(1));
    let gone = f.accounts().delete_account(u.id, c.now()).await.unwrap();
    assert_eq!(gone, vec![live.id], "only the live session was ended");

    assert!(f.users().find_by_id(u.id).await.unwrap().is_none());
    assert!(f.users().find_by_email(&u.email).await.unwrap().is_none());
    assert!(f.sessions().find(live.id).await.unwrap().is_none());
    assert!(f.sessions().find(ended.id).await.unwrap().is_none());
    assert!(matches!(
        f.sessions()
            .rotate(&live_token, &token("next"), c.now())
            .await
            .unwrap(),
        Rotation::Unknown
    ));
    assert_eq!(
        f.organizations().role_of(member_of.id, u.id).await.unwrap(),
        None
    );
    assert_eq!(
        f.organizations().role_of(co_owned.id, u.id).await.unwrap(),
        None
    );
    assert_eq!(
        f.organizations()
            .role_of(co_owned.id, co_owner.id)
            .await
            .unwrap(),
        Some(Role::Owner),
        "the other owner stays"
    );
    // The address is free again.
    f.users()
        .create(&user(u.email.clone(), c.now()))
        .await
        .unwrap();

    let appended = f.events().read(start, &[], 100).await.unwrap();
    let actions: Vec<_> = appended.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            Some(EventAction::MemberRemoved),
            Some(EventAction::MemberRemoved),
            Some(EventAction::SessionEnded),
            Some(EventAction::UserDeleted),
            Some(EventAction::UserRegistered),
        ]
    );
    // Each membership's end is in its organization's trail, with the role it had.
    let mut left = vec![
        (member_of.id, Role::Member.as_str()),
        (co_owned.id, Role::Owner.as_str()),
    ];
    left.sort();
    for (event, (org, role)) in appended[..2].iter().zip(left) {
        assert_eq!(event.organization_id, Some(org));
        assert_eq!(event.details["user_id"], u.id.to_string());
        assert_eq!(event.details["role"], role);
    }
    assert_eq!(
        appended[2].invalidation,
        Some(Invalidation::Session(live.id))
    );
    assert_eq!(appended[3].invalidation, None);

    assert!(matches!(
        f.accounts().delete_account(u.id, c.now()).await,
        Err(DeleteAccountError::NotFound)
    ));
    assert_eq!(
        log_head(f).await,
        appended[4].seq,
        "a refused deletion appends nothing"
    );
}

/// The only owner of an organization cannot delete their account; nothing changes.
async fn account_deletion_refuses_the_last_owner_changing_nothing(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let org = stored_org(f, &u, c.now()).await;
    let s = session_for(&u, c.now());
    f.sessions().create(&s, &token("first")).await.unwrap();
    let start = log_head(f).await;
    match f.accounts().delete_account(u.id, c.now()).await {
        Err(DeleteAccountError::LastOwner(refused)) => assert_eq!(refused, org.id),
        other => panic!("expected LastOwner, got {other:?}"),
    }
    assert!(f.users().find_by_id(u.id).await.unwrap().is_some());
    assert_eq!(
        f.sessions().find(s.id).await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(
        f.organizations().role_of(org.id, u.id).await.unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(log_head(f).await, start);
}

/// Of concurrent deletions of one account exactly one succeeds.
async fn concurrent_account_deletions_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let attempts = (0..10).map(|_| {
        let accounts = f.accounts();
        async move { accounts.delete_account(u.id, now).await }
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(DeleteAccountError::NotFound)))
    );
}

/// An owner deleting their account while the other owner is removed: never both, so the
/// organization keeps an owner.
async fn account_deletion_and_owner_removal_keep_an_owner(f: &impl Fixture) {
    let now = clock().now();
    for _round in 0..10 {
        let (a, b) = (stored_user(f, now).await, stored_user(f, now).await);
        let org = stored_org(f, &a, now).await;
        f.organizations()
            .add_member(&membership(&org, &b, Role::Owner, now))
            .await
            .unwrap();
        let (accounts, orgs) = (f.accounts(), f.organizations());
        let (deleted, removed) = futures::future::join(
            async move { accounts.delete_account(a.id, now).await },
            async move { orgs.remove_member(org.id, b.id, now).await },
        )
        .await;
        assert!(
            !(deleted.is_ok() && removed.is_ok()),
            "both owners left: {deleted:?} {removed:?}"
        );
        assert!(
            deleted.is_ok() || removed.is_ok(),
            "{deleted:?} {removed:?}"
        );
        let owners = f
            .organizations()
            .members(org.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.membership.role == Role::Owner)
            .count();
        assert_eq!(owners, 1);
    }
}

// ---- Second factor -------------------------------------------------------------------------

fn sealed(tag: u8) -> crate::model::SealedSecret {
    crate::model::SealedSecret::from_bytes(vec![tag; 48])
}

/// A user whose TOTP factor is enabled at step 1000 with `codes`.
async fn mfa_user(f: &impl Fixture, codes: &[TokenHash]) -> User {
    let now = clock().now();
    let u = stored_user(f, now).await;
    assert!(f.mfa().begin(u.id, &sealed(1), now).await.unwrap());
    assert!(f.mfa().enable(u.id, 1000, codes, now).await.unwrap());
    u
}

/// Pending, restarted, enabled (once, with its event), never replaced while enabled, removed
/// (with its event).
async fn mfa_enrolment_lifecycle(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let mfa = f.mfa();
    assert_eq!(mfa.find(u.id).await.unwrap(), None);
    assert!(
        !mfa.enable(u.id, 1, &[], c.now()).await.unwrap(),
        "nothing pending"
    );
    assert!(mfa.begin(u.id, &sealed(1), c.now()).await.unwrap());
    assert!(
        mfa.begin(u.id, &sealed(2), c.now()).await.unwrap(),
        "pending is replaced"
    );
    let pending = mfa.find(u.id).await.unwrap().unwrap();
    assert_eq!(pending.secret, sealed(2));
    assert!(!pending.is_enabled());
    assert!(
        !mfa.accept_step(u.id, 5).await.unwrap(),
        "pending factors accept no code"
    );
    let start = log_head(f).await;
    assert!(
        mfa.enable(u.id, 7, &[token("code")], c.now())
            .await
            .unwrap()
    );
    assert!(
        !mfa.enable(u.id, 8, &[], c.now()).await.unwrap(),
        "enabled once"
    );
    assert!(
        !mfa.begin(u.id, &sealed(3), c.now()).await.unwrap(),
        "enabled is kept"
    );
    let enabled = mfa.find(u.id).await.unwrap().unwrap();
    assert_eq!(enabled.secret, sealed(2));
    assert_eq!(enabled.last_step, Some(7));
    assert!(enabled.is_enabled());
    let logged = logged_after(f, start).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].action, Some(EventAction::MfaEnabled));

    let start = log_head(f).await;
    assert!(mfa.disable(u.id, c.now()).await.unwrap());
    assert!(!mfa.disable(u.id, c.now()).await.unwrap());
    assert_eq!(mfa.find(u.id).await.unwrap(), None);
    let logged = logged_after(f, start).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].action, Some(EventAction::MfaDisabled));
    // A pending enrolment goes without an event.
    assert!(mfa.begin(u.id, &sealed(4), c.now()).await.unwrap());
    assert!(!mfa.disable(u.id, c.now()).await.unwrap());
    assert_eq!(logged_after(f, start).await.len(), 1);
}

/// Of parallel acceptances of one step exactly one wins; a step at or before the last accepted
/// one never wins again.
async fn mfa_concurrent_step_one_winner(f: &impl Fixture) {
    let u = mfa_user(f, &[]).await;
    let attempts = (0..20).map(|_| {
        let mfa = f.mfa();
        async move { mfa.accept_step(u.id, 1001).await.unwrap() }
    });
    let won = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(won, 1);
    let mfa = f.mfa();
    assert!(!mfa.accept_step(u.id, 1001).await.unwrap());
    assert!(!mfa.accept_step(u.id, 1000).await.unwrap());
    assert!(mfa.accept_step(u.id, 1002).await.unwrap());
    assert_eq!(mfa.find(u.id).await.unwrap().unwrap().last_step, Some(1002));
}

/// A recovery code works once, even when presented in parallel; codes are per user.
async fn mfa_recovery_code_once_concurrently(f: &impl Fixture) {
    let (one, two) = (token("one"), token("two"));
    let u = mfa_user(f, &[one, two]).await;
    let other = mfa_user(f, &[token("other")]).await;
    let now = clock().now();
    assert!(
        !f.mfa()
            .use_recovery_code(other.id, &one, now)
            .await
            .unwrap()
    );
    let attempts = (0..20).map(|_| {
        let mfa = f.mfa();
        async move { mfa.use_recovery_code(u.id, &one, now).await.unwrap() }
    });
    let won = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(won, 1);
    assert!(f.mfa().use_recovery_code(u.id, &two, now).await.unwrap());
    assert!(!f.mfa().use_recovery_code(u.id, &two, now).await.unwrap());
    assert!(
        !f.mfa()
            .use_recovery_code(u.id, &token("never"), now)
            .await
            .unwrap()
    );
}

/// A login challenge is found while live, spent once (in parallel too), dies at its expiry and
/// with the factor.
async fn mfa_challenge_spent_once(f: &impl Fixture) {
    let c = clock();
    let u = mfa_user(f, &[]).await;
    let mfa = f.mfa();
    let (live, expiring, dropped) = (token("live"), token("expiring"), token("dropped"));
    let until = c.now() + Duration::minutes(5);
    mfa.create_challenge(&live, u.id, until).await.unwrap();
    mfa.create_challenge(&expiring, u.id, until).await.unwrap();
    assert_eq!(
        mfa.find_challenge(&live, c.now()).await.unwrap(),
        Some(u.id)
    );
    assert_eq!(
        mfa.find_challenge(&token("x"), c.now()).await.unwrap(),
        None
    );
    assert_eq!(mfa.find_challenge(&expiring, until).await.unwrap(), None);
    assert!(!mfa.spend_challenge(&expiring, until).await.unwrap());
    let now = c.now();
    let attempts = (0..20).map(|_| {
        let mfa = f.mfa();
        async move { mfa.spend_challenge(&live, now).await.unwrap() }
    });
    let won = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(won, 1);
    assert_eq!(mfa.find_challenge(&live, c.now()).await.unwrap(), None);
    mfa.create_challenge(&dropped, u.id, until).await.unwrap();
    assert!(mfa.disable(u.id, c.now()).await.unwrap());
    assert_eq!(mfa.find_challenge(&dropped, c.now()).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Mail outbox

fn mail(subject: &str) -> OutgoingMail {
    OutgoingMail {
        to: unique_email("mail"),
        subject: subject.into(),
        text: format!("text of {subject}"),
        html: format!("<p>html of {subject}</p>"),
    }
}

/// Drains everything `f`'s outbox holds now, so cases do not see each other's mails when
/// fixtures share an outbox.
async fn drain_outbox(f: &impl Fixture, now: DateTime<Utc>) {
    for queued in f
        .outbox()
        .claim_due(now + Duration::days(3650), 10_000, Duration::seconds(1))
        .await
        .unwrap()
    {
        f.outbox().mark_sent(queued.id).await.unwrap();
    }
}

/// A mail comes back as it went in, due mails oldest first, limited; a sent or given-up mail
/// is gone.
async fn outbox_round_trip_oldest_first(f: &impl Fixture) {
    let now = clock().now();
    drain_outbox(f, now).await;
    let outbox = f.outbox();
    let first = mail("first");
    let a = outbox.enqueue(first.clone(), now).await.unwrap();
    let b = outbox.enqueue(mail("second"), now).await.unwrap();
    let c = outbox.enqueue(mail("third"), now).await.unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 3);
    let claimed = outbox
        .claim_due(now, 2, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|q| q.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(claimed[0].mail, first);
    assert_eq!(claimed[0].attempts, 0);
    outbox.mark_sent(a).await.unwrap();
    outbox.give_up(b).await.unwrap();
    outbox.mark_sent(a).await.unwrap(); // unknown now: ignored
    assert_eq!(outbox.pending().await.unwrap(), 1);
    let rest = outbox
        .claim_due(now, 10, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|q| q.id).collect::<Vec<_>>(), [c]);
    outbox.mark_sent(c).await.unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 0);
}

/// A claimed mail is not due again until its lease ends; then it is (its worker died).
async fn outbox_lease_hides_claimed_mail(f: &impl Fixture) {
    let now = clock().now();
    drain_outbox(f, now).await;
    let outbox = f.outbox();
    let id = outbox.enqueue(mail("leased"), now).await.unwrap();
    let lease = Duration::minutes(5);
    assert_eq!(outbox.claim_due(now, 10, lease).await.unwrap().len(), 1);
    assert!(
        outbox
            .claim_due(now + lease - Duration::seconds(1), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let again = outbox.claim_due(now + lease, 10, lease).await.unwrap();
    assert_eq!(again.iter().map(|q| q.id).collect::<Vec<_>>(), [id]);
    outbox.mark_sent(id).await.unwrap();
}

/// A rescheduled mail keeps its failure count and is due at the time given, not before.
async fn outbox_reschedule_counts_and_delays(f: &impl Fixture) {
    let now = clock().now();
    drain_outbox(f, now).await;
    let outbox = f.outbox();
    let id = outbox.enqueue(mail("retry"), now).await.unwrap();
    outbox
        .claim_due(now, 10, Duration::minutes(5))
        .await
        .unwrap();
    let at = now + Duration::seconds(30);
    outbox.reschedule(id, 1, at).await.unwrap();
    assert!(
        outbox
            .claim_due(at - Duration::seconds(1), 10, Duration::minutes(5))
            .await
            .unwrap()
            .is_empty()
    );
    let due = outbox
        .claim_due(at, 10, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    outbox.mark_sent(id).await.unwrap();
}

/// Concurrent claims (as several instances' workers make them) hand each mail out once.
async fn outbox_concurrent_claims_hand_out_once(f: &impl Fixture) {
    let now = clock().now();
    drain_outbox(f, now).await;
    let outbox = f.outbox();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(outbox.enqueue(mail(&format!("m{i}")), now).await.unwrap());
    }
    let claims = futures::future::join_all((0..8).map(|_| {
        let outbox = outbox.clone();
        async move {
            outbox
                .claim_due(now, 3, Duration::minutes(5))
                .await
                .unwrap()
        }
    }))
    .await;
    let mut claimed: Vec<_> = claims.into_iter().flatten().map(|q| q.id).collect();
    // Whatever a claim skipped (a store may skip rows another claim is taking) is still due.
    let rest = outbox
        .claim_due(now, 100, Duration::minutes(5))
        .await
        .unwrap();
    claimed.extend(rest.into_iter().map(|q| q.id));
    claimed.sort();
    let total = claimed.len();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "a mail was handed out twice");
    ids.sort();
    assert_eq!(claimed, ids, "every mail is handed out");
    for id in ids {
        outbox.mark_sent(id).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// One-time tokens

fn one_time(user: &User, purpose: TokenPurpose, now: DateTime<Utc>) -> (OneTimeToken, StoredToken) {
    let mut bytes = [0u8; OneTimeToken::BYTES];
    bytes[..16].copy_from_slice(UserId::generate().as_uuid().as_bytes());
    bytes[16..].copy_from_slice(UserId::generate().as_uuid().as_bytes());
    let token = OneTimeToken::from_random(&bytes);
    let stored = StoredToken {
        hash: token.hash(),
        purpose,
        email: user.email.clone(),
        created_at: now,
        expires_at: now + Duration::hours(1),
    };
    (token, stored)
}

/// A token is handed out once; issuing it queued its mail with it.
async fn one_time_token_works_once_and_queues_its_mail(f: &impl Fixture) {
    let now = clock().now();
    drain_outbox(f, now).await;
    let u = stored_user(f, now).await;
    let (token, stored) = one_time(&u, TokenPurpose::VerifyEmail, now);
    let tokens = f.one_time_tokens();
    tokens.issue(u.id, &stored, &mail("verify")).await.unwrap();
    let queued = f
        .outbox()
        .claim_due(now, 10, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].mail.subject, "verify");
    f.outbox().mark_sent(queued[0].id).await.unwrap();
    assert_eq!(
        tokens
            .last_issued(u.id, TokenPurpose::VerifyEmail)
            .await
            .unwrap(),
        Some(now)
    );
    let hash = token.hash();
    assert_eq!(
        tokens
            .consume(&hash, TokenPurpose::VerifyEmail, now)
            .await
            .unwrap(),
        Some(u.id)
    );
    assert_eq!(
        tokens
            .consume(&hash, TokenPurpose::VerifyEmail, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        tokens
            .consume(
                &OneTimeToken::presented("unknown").hash(),
                TokenPurpose::VerifyEmail,
                now
            )
            .await
            .unwrap(),
        None
    );
}

/// Issuing a token kills the user's older tokens of that purpose, not those of another
/// purpose or another user.
async fn newer_one_time_token_kills_older(f: &impl Fixture) {
    let now = clock().now();
    let (u, other) = (stored_user(f, now).await, stored_user(f, now).await);
    let tokens = f.one_time_tokens();
    let (old, old_stored) = one_time(&u, TokenPurpose::PasswordReset, now);
    let (kept, kept_stored) = one_time(&u, TokenPurpose::VerifyEmail, now);
    let (others, others_stored) = one_time(&other, TokenPurpose::PasswordReset, now);
    let (new, new_stored) = one_time(&u, TokenPurpose::PasswordReset, now + Duration::seconds(1));
    for (owner, t) in [
        (u.id, &old_stored),
        (u.id, &kept_stored),
        (other.id, &others_stored),
        (u.id, &new_stored),
    ] {
        tokens.issue(owner, t, &mail("m")).await.unwrap();
    }
    let at = now + Duration::seconds(2);
    assert_eq!(
        tokens
            .consume(&old.hash(), TokenPurpose::PasswordReset, at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        tokens
            .consume(&new.hash(), TokenPurpose::PasswordReset, at)
            .await
            .unwrap(),
        Some(u.id)
    );
    assert_eq!(
        tokens
            .consume(&kept.hash(), TokenPurpose::VerifyEmail, at)
            .await
            .unwrap(),
        Some(u.id)
    );
    assert_eq!(
        tokens
            .consume(&others.hash(), TokenPurpose::PasswordReset, at)
            .await
            .unwrap(),
        Some(other.id)
    );
    drain_outbox(f, now).await;
}

/// A token presented at or after its expiry is refused.
async fn expired_one_time_token_refused(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let tokens = f.one_time_tokens();
    let (token, stored) = one_time(&u, TokenPurpose::VerifyEmail, now);
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .consume(&token.hash(), TokenPurpose::VerifyEmail, stored.expires_at)
            .await
            .unwrap(),
        None
    );
    // Refused for good, even at an earlier time.
    assert_eq!(
        tokens
            .consume(&token.hash(), TokenPurpose::VerifyEmail, now)
            .await
            .unwrap(),
        None
    );
    drain_outbox(f, now).await;
}

/// A token of one purpose does not serve another (and stays usable for its own).
async fn one_time_token_purposes_separate(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let tokens = f.one_time_tokens();
    let (token, stored) = one_time(&u, TokenPurpose::VerifyEmail, now);
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .consume(&token.hash(), TokenPurpose::PasswordReset, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        tokens
            .consume(&token.hash(), TokenPurpose::VerifyEmail, now)
            .await
            .unwrap(),
        Some(u.id)
    );
    drain_outbox(f, now).await;
}

/// Of concurrent consumes of one token, exactly one gets it.
async fn concurrent_one_time_token_consumes_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let tokens = f.one_time_tokens();
    let (token, stored) = one_time(&u, TokenPurpose::PasswordReset, now);
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    let hash = token.hash();
    let results = futures::future::join_all((0..8).map(|_| {
        let tokens = tokens.clone();
        async move {
            tokens
                .consume(&hash, TokenPurpose::PasswordReset, now)
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_some()).count(), 1);
    drain_outbox(f, now).await;
}

/// The mails `f`'s outbox holds now (claimed, then marked sent).
async fn take_mails(f: &impl Fixture, now: DateTime<Utc>) -> Vec<OutgoingMail> {
    let mut mails = Vec::new();
    for queued in f
        .outbox()
        .claim_due(now + Duration::days(3650), 10_000, Duration::seconds(1))
        .await
        .unwrap()
    {
        f.outbox().mark_sent(queued.id).await.unwrap();
        mails.push(queued.mail);
    }
    mails
}

/// The actions logged after `start`.
async fn actions_after(f: &impl Fixture, start: i64) -> Vec<EventAction> {
    logged_after(f, start)
        .await
        .into_iter()
        .filter_map(|e| e.action)
        .collect()
}

/// An operator's verification sets the time once and records it once; an unknown user is
/// `false`.
async fn mark_email_verified_once(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    assert!(f.users().mark_email_verified(u.id, c.now()).await.unwrap());
    let first = c.now();
    c.advance(Duration::seconds(5));
    assert!(f.users().mark_email_verified(u.id, c.now()).await.unwrap());
    let stored = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(
        stored.email_verified_at,
        Some(first),
        "the first time is kept"
    );
    assert_eq!(
        actions_after(f, start).await,
        vec![EventAction::EmailVerified]
    );
    assert!(
        !f.users()
            .mark_email_verified(UserId::generate(), c.now())
            .await
            .unwrap()
    );
}

/// A verification token verifies the address it was sent to, once; a token naming another
/// address (the account's is no longer it) verifies nothing.
async fn confirm_address_verifies_the_current_address_once(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    let (token, stored) = one_time(&u, TokenPurpose::VerifyEmail, c.now());
    tokens.issue(u.id, &stored, &mail("verify")).await.unwrap();
    c.advance(Duration::seconds(3));
    assert_eq!(
        tokens
            .confirm_address(&token.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Verified(u.id)
    );
    let verified = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(verified.email_verified_at, Some(c.now()));
    assert_eq!(
        tokens
            .confirm_address(&token.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Invalid,
        "a link works once"
    );
    assert_eq!(
        actions_after(f, start).await,
        vec![EventAction::EmailVerified]
    );

    let v = stored_user(f, c.now()).await;
    let (stale, mut stale_stored) = one_time(&v, TokenPurpose::VerifyEmail, c.now());
    stale_stored.email = unique_email("elsewhere");
    tokens.issue(v.id, &stale_stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .confirm_address(&stale.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Invalid
    );
    assert_eq!(
        f.users()
            .find_by_id(v.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified_at,
        None
    );
    // A reset token is not an address token, and stays usable for its own purpose.
    let (reset, reset_stored) = one_time(&v, TokenPurpose::PasswordReset, c.now());
    tokens.issue(v.id, &reset_stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .confirm_address(&reset.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Invalid
    );
    assert_eq!(
        tokens
            .consume(&reset.hash(), TokenPurpose::PasswordReset, c.now())
            .await
            .unwrap(),
        Some(v.id)
    );
    drain_outbox(f, c.now()).await;
}

/// A change-of-address token moves the account to its address, verified; the old address is
/// free; every other link of the account (sent to the old address) dies.
async fn change_of_address_applies_and_kills_older_links(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    let (reset, reset_stored) = one_time(&u, TokenPurpose::PasswordReset, c.now());
    let (verify, verify_stored) = one_time(&u, TokenPurpose::VerifyEmail, c.now());
    let new_address = unique_email("moved");
    let (change, mut change_stored) = one_time(&u, TokenPurpose::ChangeEmail, c.now());
    change_stored.email = new_address.clone();
    for t in [&reset_stored, &verify_stored, &change_stored] {
        tokens.issue(u.id, t, &mail("m")).await.unwrap();
    }
    assert_eq!(
        tokens
            .confirm_address(&change.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Changed(u.id)
    );
    let moved = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(moved.email.as_str(), new_address.as_str());
    assert_eq!(moved.email_verified_at, Some(c.now()));
    assert_eq!(
        f.users()
            .find_by_email(&new_address)
            .await
            .unwrap()
            .map(|x| x.id),
        Some(u.id)
    );
    assert_eq!(f.users().find_by_email(&u.email).await.unwrap(), None);
    let other = user(u.email.clone(), c.now());
    f.users().create(&other).await.unwrap();
    assert_eq!(
        tokens
            .confirm_address(&verify.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Invalid
    );
    let hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    assert_eq!(
        tokens
            .reset_password(&reset.hash(), &hash, c.now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        actions_after(f, start).await,
        vec![
            EventAction::PasswordResetRequested,
            EventAction::EmailChanged,
            EventAction::UserRegistered
        ]
    );
    drain_outbox(f, c.now()).await;
}

/// A change of address to an address another account took meanwhile changes nothing and
/// keeps the token; once the address is free the same token works.
async fn change_of_address_to_a_taken_address_keeps_the_token(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let wanted = unique_email("wanted");
    let (change, mut change_stored) = one_time(&u, TokenPurpose::ChangeEmail, c.now());
    change_stored.email = wanted.clone();
    tokens
        .issue(u.id, &change_stored, &mail("m"))
        .await
        .unwrap();
    let squatter = user(wanted.clone(), c.now());
    f.users().create(&squatter).await.unwrap();
    assert_eq!(
        tokens
            .confirm_address(&change.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Taken
    );
    assert_eq!(f.users().find_by_id(u.id).await.unwrap().unwrap(), u);
    f.accounts()
        .delete_account(squatter.id, c.now())
        .await
        .unwrap();
    assert_eq!(
        tokens
            .confirm_address(&change.hash(), c.now())
            .await
            .unwrap(),
        AddressConfirmation::Changed(u.id)
    );
    drain_outbox(f, c.now()).await;
}

/// Of concurrent uses of one address link, exactly one confirms.
async fn concurrent_address_confirmations_one_winner(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    let (token, mut stored) = one_time(&u, TokenPurpose::ChangeEmail, c.now());
    stored.email = unique_email("race");
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    let hash = token.hash();
    let now = c.now();
    let results = futures::future::join_all((0..8).map(|_| {
        let tokens = tokens.clone();
        async move { tokens.confirm_address(&hash, now).await.unwrap() }
    }))
    .await;
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == AddressConfirmation::Changed(u.id))
            .count(),
        1
    );
    assert!(results.iter().all(|r| matches!(
        r,
        AddressConfirmation::Changed(_) | AddressConfirmation::Invalid
    )));
    assert_eq!(
        actions_after(f, start).await,
        vec![EventAction::EmailChanged]
    );
    drain_outbox(f, now).await;
}

/// A reset sets the hash, ends every live session (an event each, with its invalidation),
/// clears the address's lockout, records `user.password_reset`, and works once.
async fn password_reset_ends_sessions_and_clears_the_lock(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let s = session_for(&u, c.now());
        f.sessions().create(&s, &token("first")).await.unwrap();
        sessions.push(s.id);
    }
    sessions.sort();
    let policy = lockout(3);
    let key = u.email.attempt_key();
    let until = lock_out(f.login_attempts().as_ref(), &key, &c, &policy).await;
    let (reset, stored) = one_time(&u, TokenPurpose::PasswordReset, c.now());
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    let start = log_head(f).await;
    let hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    let done = tokens
        .reset_password(&reset.hash(), &hash, c.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.user, u.id);
    assert_eq!(done.ended, sessions);
    let reset_user = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(reset_user.password_hash, hash);
    for id in &sessions {
        let s = f.sessions().find(*id).await.unwrap().unwrap();
        assert_eq!(s.revoked_at, Some(c.now()));
    }
    assert!(c.now() < until, "still within the lock");
    assert_eq!(
        f.login_attempts()
            .begin_attempt(&key, c.now(), &policy)
            .await
            .unwrap(),
        counted(1),
        "the lock is cleared"
    );
    let seen = actions_and_invalidations_after(f, start).await;
    assert_eq!(
        seen,
        vec![
            (
                EventAction::SessionEnded,
                Some(Invalidation::Session(sessions[0]))
            ),
            (
                EventAction::SessionEnded,
                Some(Invalidation::Session(sessions[1]))
            ),
            (EventAction::PasswordReset, None),
        ]
    );
    assert_eq!(
        tokens
            .reset_password(&reset.hash(), &hash, c.now())
            .await
            .unwrap(),
        None,
        "a link works once"
    );
    drain_outbox(f, c.now()).await;
}

/// An expired reset token, a verification token, and a reset token for an address the
/// account no longer has change nothing.
async fn password_reset_refuses_stale_and_expired_tokens(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    let (expired, stored) = one_time(&u, TokenPurpose::PasswordReset, c.now());
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .reset_password(&expired.hash(), &hash, stored.expires_at)
            .await
            .unwrap(),
        None
    );
    let (verify, stored) = one_time(&u, TokenPurpose::VerifyEmail, c.now());
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .reset_password(&verify.hash(), &hash, c.now())
            .await
            .unwrap(),
        None
    );
    let (stale, mut stored) = one_time(&u, TokenPurpose::PasswordReset, c.now());
    stored.email = unique_email("former");
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    assert_eq!(
        tokens
            .reset_password(&stale.hash(), &hash, c.now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.users().find_by_id(u.id).await.unwrap().unwrap(), u);
    drain_outbox(f, c.now()).await;
}

/// Of concurrent resets with one token, exactly one sets its password.
async fn concurrent_password_resets_one_winner(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let (reset, stored) = one_time(&u, TokenPurpose::PasswordReset, c.now());
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    let hash = reset.hash();
    let now = c.now();
    let results = futures::future::join_all((0..8).map(|i| {
        let tokens = tokens.clone();
        async move {
            let new = PasswordHash::new(format!(
                "$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0Wk{i:03}"
            ));
            tokens
                .reset_password(&hash, &new, now)
                .await
                .unwrap()
                .map(|_| new)
        }
    }))
    .await;
    let winners: Vec<&PasswordHash> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1);
    let reset_user = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(&reset_user.password_hash, winners[0]);
    drain_outbox(f, now).await;
}

/// A reset token for `email` issued at `now`, and its mail.
fn reset_token(email: &Email, now: DateTime<Utc>) -> (OneTimeToken, StoredToken, OutgoingMail) {
    let mut bytes = [0u8; OneTimeToken::BYTES];
    bytes[..16].copy_from_slice(UserId::generate().as_uuid().as_bytes());
    bytes[16..].copy_from_slice(UserId::generate().as_uuid().as_bytes());
    let token = OneTimeToken::from_random(&bytes);
    let stored = StoredToken {
        hash: token.hash(),
        purpose: TokenPurpose::PasswordReset,
        email: email.clone(),
        created_at: now,
        expires_at: now + Duration::hours(1),
    };
    let mail = OutgoingMail {
        to: email.clone(),
        ..mail("reset")
    };
    (token, stored, mail)
}

/// Queues a reset request for `email`, claims it and fulfils it at `now`.
async fn reset_by_address(
    f: &impl Fixture,
    email: &Email,
    now: DateTime<Utc>,
    interval: Duration,
) -> (OneTimeToken, AddressIssue) {
    let tokens = f.one_time_tokens();
    tokens.request_reset(email, now).await.unwrap();
    let claimed = tokens
        .claim_reset_requests(now, 10, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].email.as_str(), email.as_str());
    assert_eq!(claimed[0].requested_at, now);
    let (token, stored, m) = reset_token(email, now);
    let outcome = tokens
        .fulfil_reset_request(claimed[0].id, &stored, &m, interval)
        .await
        .unwrap()
        .unwrap();
    (token, outcome)
}

/// A reset request issues for a known address only, mails the address as stored, keeps the
/// minimum interval (the older link stays good meanwhile), and after it replaces the older
/// link; a handled request is gone.
async fn reset_request_by_address_keeps_interval_and_mails_the_stored_address(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    drain_outbox(f, c.now()).await;
    let interval = Duration::seconds(60);

    let (_, outcome) = reset_by_address(f, &unique_email("nobody"), c.now(), interval).await;
    assert_eq!(outcome, AddressIssue::UnknownAddress);
    assert!(take_mails(f, c.now()).await.is_empty());

    let u = stored_user(f, c.now()).await;
    let typed = Email::parse(&u.email.as_str().to_lowercase()).unwrap();
    assert_ne!(typed.as_str(), u.email.as_str(), "typed in another case");
    let (first, outcome) = reset_by_address(f, &typed, c.now(), interval).await;
    assert_eq!(outcome, AddressIssue::Issued);
    let mails = take_mails(f, c.now()).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to.as_str(), u.email.as_str(), "the stored address");

    c.advance(Duration::seconds(59));
    let (second, outcome) = reset_by_address(f, &typed, c.now(), interval).await;
    assert_eq!(outcome, AddressIssue::TooSoon);
    assert!(take_mails(f, c.now()).await.is_empty());
    assert_eq!(
        tokens
            .consume(&second.hash(), TokenPurpose::PasswordReset, c.now())
            .await
            .unwrap(),
        None
    );

    c.advance(Duration::seconds(1));
    let (third, outcome) = reset_by_address(f, &typed, c.now(), interval).await;
    assert_eq!(outcome, AddressIssue::Issued);
    assert_eq!(take_mails(f, c.now()).await.len(), 1);
    assert_eq!(
        tokens
            .consume(&first.hash(), TokenPurpose::PasswordReset, c.now())
            .await
            .unwrap(),
        None,
        "the newer link killed the older"
    );
    assert_eq!(
        tokens
            .consume(&third.hash(), TokenPurpose::PasswordReset, c.now())
            .await
            .unwrap(),
        Some(u.id)
    );
    assert!(
        tokens
            .claim_reset_requests(c.now() + Duration::days(1), 10, Duration::minutes(5))
            .await
            .unwrap()
            .is_empty(),
        "handled requests are gone"
    );
}

/// A claimed request is hidden until its lease ends, then handed out again (a worker that
/// died); of two fulfilments of one request, one does it.
async fn reset_requests_are_leased_and_fulfilled_once(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    drain_outbox(f, c.now()).await;
    let u = stored_user(f, c.now()).await;
    let lease = Duration::minutes(5);
    for _ in 0..3 {
        tokens.request_reset(&u.email, c.now()).await.unwrap();
        c.advance(Duration::seconds(1));
    }
    let first = tokens
        .claim_reset_requests(c.now(), 2, lease)
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "limited");
    assert!(
        first[0].requested_at < first[1].requested_at,
        "oldest first"
    );
    let rest = tokens
        .claim_reset_requests(c.now(), 10, lease)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "claimed ones are hidden");
    assert!(rest[0].id != first[0].id && rest[0].id != first[1].id);
    c.advance(lease);
    let again = tokens
        .claim_reset_requests(c.now(), 10, lease)
        .await
        .unwrap();
    assert_eq!(again.len(), 3, "a lease ended: handed out again");

    let (_, stored, m) = reset_token(&u.email, c.now());
    let results = futures::future::join_all((0..2).map(|_| {
        let tokens = tokens.clone();
        let (stored, m) = (stored.clone(), m.clone());
        let id = first[0].id;
        async move {
            tokens
                .fulfil_reset_request(id, &stored, &m, Duration::zero())
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_some()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(take_mails(f, c.now()).await.len(), 1);
}

/// Of concurrent fulfilments of requests for one address within the interval, one issues and
/// one mail is queued.
async fn concurrent_reset_requests_issue_one_mail(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    drain_outbox(f, c.now()).await;
    let u = stored_user(f, c.now()).await;
    let now = c.now();
    for _ in 0..8 {
        tokens.request_reset(&u.email, now).await.unwrap();
    }
    let claimed = tokens
        .claim_reset_requests(now, 100, Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 8);
    let results = futures::future::join_all(claimed.into_iter().map(|request| {
        let tokens = tokens.clone();
        let email = u.email.clone();
        async move {
            let (_, stored, m) = reset_token(&email, now);
            tokens
                .fulfil_reset_request(request.id, &stored, &m, Duration::seconds(60))
                .await
                .unwrap()
                .unwrap()
        }
    }))
    .await;
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == AddressIssue::Issued)
            .count(),
        1,
        "{results:?}"
    );
    assert_eq!(take_mails(f, now).await.len(), 1);
}

/// Deleting an account deletes its tokens.
async fn account_deletion_removes_its_tokens(f: &impl Fixture) {
    let c = clock();
    let tokens = f.one_time_tokens();
    let u = stored_user(f, c.now()).await;
    let (_, stored) = one_time(&u, TokenPurpose::PasswordReset, c.now());
    tokens.issue(u.id, &stored, &mail("m")).await.unwrap();
    f.accounts().delete_account(u.id, c.now()).await.unwrap();
    assert_eq!(
        tokens
            .last_issued(u.id, TokenPurpose::PasswordReset)
            .await
            .unwrap(),
        None
    );
    drain_outbox(f, c.now()).await;
}

// ---------------------------------------------------------------------------------------------
// Service administration

/// A stored administrator.
async fn stored_admin(f: &impl Fixture, now: DateTime<Utc>) -> User {
    let u = User {
        is_admin: true,
        ..user(unique_email("admin"), now)
    };
    f.users().create(&u).await.unwrap();
    u
}

/// The last enabled administrator can be neither demoted nor disabled; with a second one, it
/// can; a disabled administrator does not count; unknown users are `NotFound`.
async fn administration_keeps_the_last_administrator(f: &impl Fixture) {
    let c = clock();
    let admin = f.administration();
    let a = stored_admin(f, c.now()).await;
    // Other fixtures' administrators would count: this store starts empty of them.
    assert_eq!(
        admin.set_admin(a.id, false, c.now()).await.unwrap(),
        AdminChange::LastAdministrator
    );
    assert_eq!(
        admin.set_disabled(a.id, true, c.now()).await.unwrap(),
        AdminChange::LastAdministrator
    );
    let b = stored_user(f, c.now()).await;
    let start = log_head(f).await;
    let AdminChange::Done { user, ended } = admin.set_admin(b.id, true, c.now()).await.unwrap()
    else {
        panic!("granted");
    };
    assert!(user.is_admin && ended.is_empty());
    let AdminChange::Done { user, .. } = admin.set_disabled(a.id, true, c.now()).await.unwrap()
    else {
        panic!("a second administrator exists");
    };
    assert!(user.disabled());
    assert_eq!(
        admin.set_admin(b.id, false, c.now()).await.unwrap(),
        AdminChange::LastAdministrator,
        "a disabled administrator does not count"
    );
    assert_eq!(
        actions_after(f, start).await,
        vec![EventAction::AdminGranted, EventAction::UserDisabled]
    );
    // Already so: done, nothing recorded.
    let start = log_head(f).await;
    assert!(matches!(
        admin.set_admin(b.id, true, c.now()).await.unwrap(),
        AdminChange::Done { .. }
    ));
    assert!(actions_after(f, start).await.is_empty());
    assert_eq!(
        admin
            .set_admin(UserId::generate(), true, c.now())
            .await
            .unwrap(),
        AdminChange::NotFound
    );
}

/// Two administrators demoting each other at once, five times over: each time exactly one
/// demotion is done and the other refused.
async fn concurrent_demotions_keep_an_administrator(f: &impl Fixture) {
    let c = clock();
    let admin = f.administration();
    let a = stored_admin(f, c.now()).await;
    let b = stored_admin(f, c.now()).await;
    for _ in 0..5 {
        let results: Vec<AdminChange> = futures::future::join_all([
            admin.set_admin(a.id, false, c.now()),
            admin.set_admin(b.id, false, c.now()),
        ])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let done: Vec<UserId> = results
            .iter()
            .filter_map(|r| match r {
                AdminChange::Done { user, .. } => Some(user.id),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 1, "{results:?}");
        assert!(
            results.contains(&AdminChange::LastAdministrator),
            "{results:?}"
        );
        // Both administrators again for the next round.
        admin.set_admin(done[0], true, c.now()).await.unwrap();
    }
}

/// Disabling ends every live session (an event each) in the same step; enabling restores
/// nothing of them; both are recorded once.
async fn disabling_ends_sessions_and_enabling_restores(f: &impl Fixture) {
    let c = clock();
    let admin = f.administration();
    stored_admin(f, c.now()).await;
    let u = stored_user(f, c.now()).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let s = session_for(&u, c.now());
        f.sessions().create(&s, &token("first")).await.unwrap();
        sessions.push(s.id);
    }
    sessions.sort();
    let start = log_head(f).await;
    let AdminChange::Done { user, ended } = admin.set_disabled(u.id, true, c.now()).await.unwrap()
    else {
        panic!("disabled");
    };
    assert_eq!(user.disabled_at, Some(c.now()));
    assert_eq!(ended, sessions);
    for id in &sessions {
        assert!(
            !f.sessions()
                .find(*id)
                .await
                .unwrap()
                .unwrap()
                .is_active(c.now())
        );
    }
    let AdminChange::Done { user, ended } = admin.set_disabled(u.id, false, c.now()).await.unwrap()
    else {
        panic!("enabled");
    };
    assert!(!user.disabled() && ended.is_empty());
    let seen = actions_and_invalidations_after(f, start).await;
    assert_eq!(
        seen,
        vec![
            (
                EventAction::SessionEnded,
                Some(Invalidation::Session(sessions[0]))
            ),
            (
                EventAction::SessionEnded,
                Some(Invalidation::Session(sessions[1]))
            ),
            (EventAction::UserDisabled, Some(Invalidation::User(u.id))),
            (EventAction::UserEnabled, None),
        ]
    );
    admin.record_login(u.id, c.now()).await.unwrap();
    assert_eq!(
        f.users()
            .find_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .last_login_at,
        Some(c.now())
    );
}

/// The last enabled administrator's account cannot be deleted, changing nothing; of two
/// concurrent deletions of the only two administrators, one is refused.
async fn account_deletion_keeps_the_last_administrator(f: &impl Fixture) {
    let c = clock();
    let a = stored_admin(f, c.now()).await;
    assert!(matches!(
        f.accounts().delete_account(a.id, c.now()).await,
        Err(DeleteAccountError::LastAdministrator)
    ));
    assert_eq!(f.users().find_by_id(a.id).await.unwrap(), Some(a.clone()));
    for _ in 0..3 {
        let b = stored_admin(f, c.now()).await;
        let accounts = f.accounts();
        let results =
            futures::future::join_all([a.id, b.id].map(|id| accounts.delete_account(id, c.now())))
                .await;
        let deleted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(deleted, 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(DeleteAccountError::LastAdministrator))),
            "{results:?}"
        );
        if f.users().find_by_id(a.id).await.unwrap().is_none() {
            // `a` went: make it again so the next round starts alike.
            f.users().create(&a).await.unwrap();
            let admin = f.administration();
            admin.set_admin(b.id, false, c.now()).await.unwrap();
            f.accounts().delete_account(b.id, c.now()).await.unwrap();
        }
    }
}

/// Unlocking clears the address's counter and records `user.unlocked` in one step; an
/// unknown account is `false`.
async fn administration_unlock_clears_the_lock_and_records_it(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let policy = lockout(3);
    let key = u.email.attempt_key();
    lock_out(f.login_attempts().as_ref(), &key, &c, &policy).await;
    let start = log_head(f).await;
    assert!(f.administration().unlock(u.id, c.now()).await.unwrap());
    assert_eq!(
        f.login_attempts()
            .begin_attempt(&key, c.now(), &policy)
            .await
            .unwrap(),
        counted(1)
    );
    assert_eq!(
        actions_after(f, start).await,
        vec![EventAction::UserUnlocked]
    );
    assert!(
        !f.administration()
            .unlock(UserId::generate(), c.now())
            .await
            .unwrap()
    );
}

/// Every organization, by id, in pages.
async fn organizations_list_all_in_pages(f: &impl Fixture) {
    let now = clock().now();
    let owner = stored_user(f, now).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(stored_org(f, &owner, now).await.id);
    }
    ids.sort();
    let orgs = f.organizations();
    let first: Vec<OrganizationId> = orgs
        .list_all(None, 2)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(first, ids[..2]);
    let rest: Vec<OrganizationId> = orgs
        .list_all(Some(ids[1]), 2)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(rest, ids[2..]);
}

/// Listing: id order, `after`, `limit`, a case-insensitive part of the address (wildcards
/// match themselves), and whether a second factor is on.
async fn administration_lists_in_pages(f: &impl Fixture) {
    let c = clock();
    let admin = f.administration();
    let tag = format!("list{}", UserId::generate().as_uuid().simple());
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = user(
            Email::parse(&format!("{tag}.{i}@example.com")).unwrap(),
            c.now(),
        );
        f.users().create(&u).await.unwrap();
        ids.push(u.id);
    }
    ids.sort();
    let page = |after: Option<UserId>, email: &str| UserQuery {
        email: Some(email.to_owned()),
        after,
        limit: 2,
    };
    let first = admin.list(&page(None, &tag)).await.unwrap();
    assert_eq!(
        first.iter().map(|l| l.user.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let second = admin.list(&page(Some(ids[1]), &tag)).await.unwrap();
    assert_eq!(
        second.iter().map(|l| l.user.id).collect::<Vec<_>>(),
        ids[2..]
    );
    assert!(
        admin.list(&page(None, "%")).await.unwrap().is_empty(),
        "% is literal"
    );
    assert!(
        admin.list(&page(None, "_")).await.unwrap().is_empty(),
        "_ is literal"
    );
    assert!(first.iter().all(|l| !l.mfa_enabled));
}

#[cfg(test)]
mod tests {
    /// A `pub` case would escape the `dead_code` check that makes registration compulsory.
    #[test]
    fn no_contract_case_is_public() {
        let source = include_str!("contract.rs");
        assert!(
            !source.contains("\npub async fn"),
            "contract cases are private `async fn`s, registered in `storage_contract_tests!`"
        );
    }
}
