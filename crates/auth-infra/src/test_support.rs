//! Isolated Postgres databases for tests.
//!
//! `DATABASE_URL` names a server the tests may create databases on (the test script starts a
//! throwaway one). The first test to arrive migrates a template database, named after a
//! digest of the migrations, under an advisory lock; every test then gets its own copy
//! (`CREATE DATABASE … TEMPLATE`, about 0.1 s), dropped when the test ends. Tests therefore
//! run in parallel, in one process or many.
#![expect(
    clippy::expect_used,
    reason = "test support: failing loudly is the point"
)]

use diesel::{Connection as _, RunQueryDsl as _};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use uuid::Uuid;

use crate::postgres::{DbPool, PoolSettings, build_pool, run_migrations};

type SyncPg = AsyncConnectionWrapper<AsyncPgConnection>;

const TEMPLATE_LOCK_KEY: i64 = 0x6175_7468_7465_6d70;

/// The server tests run against.
///
/// # Panics
/// When `DATABASE_URL` is not set: the test command starts a Postgres and sets it.
#[must_use]
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a Postgres server for these tests (scripts/test.sh starts one)",
    )
}

fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if !url[..i].ends_with('/') => {
            let (base, rest) = url.split_at(i);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{db}{query}")
        }
        _ => format!("{}/{db}", url.trim_end_matches('/')),
    }
}

fn template_name() -> String {
    format!("auth_tmpl_{}", env!("AUTH_MIGRATIONS_DIGEST"))
}

/// A database of its own for one test, dropped with this value.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    server: String,
}

impl TestDb {
    /// Creates a fresh, migrated database.
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created.
    pub async fn new() -> Self {
        let server = server_url();
        let name = format!("auth_t_{}", Uuid::now_v7().simple());
        let url = with_database(&server, &name);
        let template = template_name();
        let (server_c, template_c, name_c) = (server.clone(), template.clone(), name.clone());
        let needs_migration = tokio::task::spawn_blocking(move || {
            let mut admin = SyncPg::establish(&server_c).expect("connect to DATABASE_URL");
            diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
                .execute(&mut admin)
                .expect("take template lock");
            let exists = diesel::sql_query(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{template_c}'"
            ))
            .execute(&mut admin)
            .expect("look up template")
                == 1;
            if !exists {
                diesel::sql_query(format!("CREATE DATABASE {template_c}"))
                    .execute(&mut admin)
                    .expect("create template");
            }
            (admin, exists)
        })
        .await
        .expect("join");
        let (mut admin, exists) = needs_migration;
        if !exists {
            run_migrations(&with_database(&server, &template))
                .await
                .expect("migrate template");
        }
        tokio::task::spawn_blocking(move || {
            diesel::sql_query(format!("CREATE DATABASE {name_c} TEMPLATE {template}"))
                .execute(&mut admin)
                .expect("copy template");
            diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
                .execute(&mut admin)
                .expect("release template lock");
        })
        .await
        .expect("join");
        Self { name, url, server }
    }

    /// Creates a fresh database with no schema at all (for migration tests).
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created.
    pub async fn empty() -> Self {
        let server = server_url();
        let name = format!("auth_t_{}", Uuid::now_v7().simple());
        let url = with_database(&server, &name);
        let (server_c, name_c) = (server.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let mut admin = SyncPg::establish(&server_c).expect("connect to DATABASE_URL");
            diesel::sql_query(format!("CREATE DATABASE {name_c}"))
                .execute(&mut admin)
                .expect("create database");
        })
        .await
        .expect("join");
        Self { name, url, server }
    }

    /// URL of this test's database.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on this test's database.
    ///
    /// # Panics
    /// When the pool cannot be built.
    #[must_use]
    pub fn pool(&self) -> DbPool {
        build_pool(&self.url, PoolSettings::default()).expect("build pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Dropping needs a connection of its own; do it on a plain thread so it works from
        // inside or outside a runtime.
        let dropped = std::thread::spawn(move || {
            let mut admin = SyncPg::establish(&server).ok()?;
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}
