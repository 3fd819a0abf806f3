//! `OrganizationService` access rules, including the service administrator, on the
//! in-memory stores.

use std::sync::Arc;

use auth_core::memory::{ManualClock, MemoryOrganizationRepository, MemoryUserRepository};
use auth_core::model::{Email, OrganizationName, PasswordHash, Role, User, UserId};
use auth_core::ports::{Clock as _, UserRepository as _};
use auth_core::{Caller, OrganizationError, OrganizationService};

async fn user(
    users: &MemoryUserRepository,
    now: chrono::DateTime<chrono::Utc>,
    admin: bool,
) -> User {
    let u = User {
        id: UserId::generate(),
        email: Email::parse(&format!("u{}@example.com", UserId::generate())).unwrap(),
        display_name: None,
        password_hash: PasswordHash::new("$2b$04$x".into()),
        is_admin: admin,
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    };
    users.create(&u).await.unwrap();
    u
}

#[tokio::test]
async fn service_administrators_act_on_any_organization_and_others_see_404() {
    let clock = Arc::new(ManualClock::starting_now());
    let users = Arc::new(MemoryUserRepository::new());
    let orgs = OrganizationService::new(
        Arc::new(MemoryOrganizationRepository::new(users.clone())),
        users.clone(),
        clock.clone(),
    );
    let now = clock.now();
    let owner = user(&users, now, false).await;
    let admin = user(&users, now, true).await;
    let stranger = user(&users, now, false).await;
    let newcomer = user(&users, now, false).await;
    let org = orgs
        .create(owner.id, OrganizationName::parse("Acme").unwrap())
        .await
        .unwrap();

    let as_admin = Caller {
        user: admin.id,
        is_admin: true,
    };
    let as_stranger = Caller {
        user: stranger.id,
        is_admin: false,
    };
    assert_eq!(orgs.get(as_admin, org.id).await.unwrap(), org);
    assert!(matches!(
        orgs.get(as_stranger, org.id).await,
        Err(OrganizationError::NotFound)
    ));
    assert_eq!(orgs.members(as_admin, org.id).await.unwrap().len(), 1);
    let added = orgs
        .add_member(as_admin, org.id, &newcomer.email, Role::Admin)
        .await
        .unwrap();
    assert_eq!(added.membership.role, Role::Admin);
    assert!(matches!(
        orgs.add_member(as_stranger, org.id, &stranger.email, Role::Member)
            .await,
        Err(OrganizationError::NotFound)
    ));
    // The administrator may remove an owner (not an organization admin), but never the last.
    assert!(matches!(
        orgs.remove_member(as_admin, org.id, owner.id).await,
        Err(OrganizationError::LastOwner)
    ));
    let as_org_admin = Caller {
        user: newcomer.id,
        is_admin: false,
    };
    assert!(matches!(
        orgs.remove_member(as_org_admin, org.id, owner.id).await,
        Err(OrganizationError::Forbidden)
    ));
    orgs.remove_member(as_admin, org.id, newcomer.id)
        .await
        .unwrap();
    assert!(matches!(
        orgs.get(as_org_admin, org.id).await,
        Err(OrganizationError::NotFound)
    ));
}

#[tokio::test]
async fn membership_rules_for_owners_admins_and_members() {
    let clock = Arc::new(ManualClock::starting_now());
    let users = Arc::new(MemoryUserRepository::new());
    let orgs = OrganizationService::new(
        Arc::new(MemoryOrganizationRepository::new(users.clone())),
        users.clone(),
        clock.clone(),
    );
    let now = clock.now();
    let owner = user(&users, now, false).await;
    let admin = user(&users, now, false).await;
    let member = user(&users, now, false).await;
    let org = orgs
        .create(owner.id, OrganizationName::parse("Acme").unwrap())
        .await
        .unwrap();
    let caller = |u: &User| Caller {
        user: u.id,
        is_admin: false,
    };
    assert_eq!(
        orgs.list_mine(owner.id).await.unwrap(),
        vec![(org.clone(), Role::Owner)]
    );
    assert_eq!(
        orgs.find_user(&admin.email).await.unwrap().map(|u| u.id),
        Some(admin.id)
    );
    orgs.add_member(caller(&owner), org.id, &admin.email, Role::Admin)
        .await
        .unwrap();
    orgs.add_member(caller(&admin), org.id, &member.email, Role::Member)
        .await
        .unwrap();
    assert!(matches!(
        orgs.add_member(caller(&owner), org.id, &member.email, Role::Admin)
            .await,
        Err(OrganizationError::AlreadyMember)
    ));
    let nobody = Email::parse("nobody@example.com").unwrap();
    assert!(matches!(
        orgs.add_member(caller(&owner), org.id, &nobody, Role::Member)
            .await,
        Err(OrganizationError::NotFound)
    ));
    // A plain member sees the organization but manages nothing.
    assert_eq!(orgs.get(caller(&member), org.id).await.unwrap(), org);
    assert_eq!(
        orgs.members(caller(&member), org.id).await.unwrap().len(),
        3
    );
    assert!(matches!(
        orgs.add_member(caller(&member), org.id, &owner.email, Role::Member)
            .await,
        Err(OrganizationError::Forbidden)
    ));
    assert!(matches!(
        orgs.remove_member(caller(&member), org.id, admin.id).await,
        Err(OrganizationError::Forbidden)
    ));
    assert_eq!(
        orgs.list_mine(member.id).await.unwrap(),
        vec![(org.clone(), Role::Member)]
    );
    // Removing someone who is not a member, or from an organization that does not exist.
    assert!(matches!(
        orgs.remove_member(caller(&owner), org.id, UserId::generate())
            .await,
        Err(OrganizationError::NotFound)
    ));
    assert!(matches!(
        orgs.get(caller(&owner), auth_core::model::OrganizationId::generate())
            .await,
        Err(OrganizationError::NotFound)
    ));
    // An admin removes a member; the owner removes the admin; the last owner stays.
    orgs.remove_member(caller(&admin), org.id, member.id)
        .await
        .unwrap();
    orgs.remove_member(caller(&owner), org.id, admin.id)
        .await
        .unwrap();
    assert!(matches!(
        orgs.remove_member(caller(&owner), org.id, owner.id).await,
        Err(OrganizationError::LastOwner)
    ));
    assert!(orgs.list_mine(member.id).await.unwrap().is_empty());
}
