//! The Postgres store against a fresh database per test.

use chrono::{Duration, Utc};
use gatepass::authz::{NetList, TokenKind};
use gatepass::store::{PostgresStore, ServiceChange, ServiceName, Store, StoreError};
use gatepass::token::TokenDigest;
use sqlx::PgPool;

use crate::helpers::{Fixtures, TokenSpec};

fn store(pool: PgPool) -> Store {
    Store::from(PostgresStore::from_pool(pool))
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn lookup_by_id_returns_the_token_with_its_service(pool: PgPool) {
    let store = store(pool);
    let fixtures = Fixtures { store: &store };
    let service_id = fixtures.service("billing", "10.0.0.0/8, 2001:db8::1").await;
    let (plain, id) = fixtures.token(TokenSpec::default()).await;

    let record = store.find_token_by_id(id).await.unwrap().expect("found");
    assert_eq!(record.id, id);
    let secret = plain.split_once('|').unwrap().1;
    assert!(record.digest.matches(&TokenDigest::of(secret.as_bytes())));
    assert_eq!(record.kind, TokenKind::Access);
    assert_eq!(record.abilities.header_value(), "inventory:*,orders:read");
    assert_eq!(record.service.id, service_id);
    assert_eq!(record.service.name, "billing");
    assert!(record.service.is_active);
    assert_eq!(
        record.service.ip_allowlist.to_string(),
        "10.0.0.0/8,2001:db8::1"
    );

    assert!(store.find_token_by_id(id + 1000).await.unwrap().is_none());
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn lookup_by_digest_finds_the_same_row(pool: PgPool) {
    let store = store(pool);
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (plain, id) = fixtures.token(TokenSpec::default()).await;
    let secret = plain.split_once('|').unwrap().1;

    let record = store
        .find_token_by_digest(&TokenDigest::of(secret.as_bytes()))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(record.id, id);
    assert!(
        store
            .find_token_by_digest(&TokenDigest::of(b"unknown"))
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn only_the_digest_is_stored(pool: PgPool) {
    let store = store(pool.clone());
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (plain, id) = fixtures.token(TokenSpec::default()).await;
    let secret = plain.split_once('|').unwrap().1;

    let row: (Vec<u8>, String) =
        sqlx::query_as("SELECT token_hash, name FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row.0, TokenDigest::of(secret.as_bytes()).as_bytes());
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM tokens t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!dump.contains(&secret[3..]), "secret stored in plain text");
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn service_upsert_changes_only_the_fields_given(pool: PgPool) {
    let store = store(pool);
    let name = ServiceName::parse("billing").unwrap();
    let (created, was_created) = store
        .upsert_service(&ServiceChange {
            name: name.clone(),
            description: Some("Billing".into()),
            ip_allowlist: Some(NetList::parse("10.0.0.0/8").unwrap()),
        })
        .await
        .unwrap();
    assert!(was_created);

    let (updated, was_created) = store
        .upsert_service(&ServiceChange {
            name: name.clone(),
            description: None,
            ip_allowlist: Some(NetList::parse("").unwrap()),
        })
        .await
        .unwrap();
    assert!(!was_created);
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.description, "Billing");
    assert!(updated.ip_allowlist.is_empty());
    assert!(updated.updated_at >= created.updated_at);

    let services = store.list_services().await.unwrap();
    assert_eq!(services.len(), 1);
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn disabling_a_service_shows_on_its_tokens(pool: PgPool) {
    let store = store(pool);
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, id) = fixtures.token(TokenSpec::default()).await;

    let name = ServiceName::parse("billing").unwrap();
    let disabled = store.set_service_active(&name, false).await.unwrap();
    assert!(!disabled.is_active);
    assert!(
        !store
            .find_token_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .service
            .is_active
    );
    store.set_service_active(&name, true).await.unwrap();
    assert!(
        store
            .find_token_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .service
            .is_active
    );

    let missing = ServiceName::parse("nobody").unwrap();
    assert!(matches!(
        store.set_service_active(&missing, false).await,
        Err(StoreError::NotFound(_))
    ));
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn tokens_need_an_existing_service(pool: PgPool) {
    let store = store(pool);
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let secret = gatepass::token::TokenFormat::default().generate_secret();
    let result = store
        .insert_token(&gatepass::store::NewToken {
            service: ServiceName::parse("nobody").unwrap(),
            name: "x".into(),
            digest: secret.digest(),
            abilities: vec![],
            kind: TokenKind::Access,
            expires_at: None,
        })
        .await;
    assert!(matches!(result, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store
            .list_tokens(Some(&ServiceName::parse("nobody").unwrap()))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .list_tokens(Some(&ServiceName::parse("billing").unwrap()))
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn revoking_twice_keeps_the_first_revocation(pool: PgPool) {
    let store = store(pool);
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, id) = fixtures.token(TokenSpec::default()).await;

    let first = store.revoke_token(id).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = store.revoke_token(id).await.unwrap();
    assert!(first.revoked_at.is_some());
    assert_eq!(first.revoked_at, second.revoked_at);
    assert!(matches!(
        store.revoke_token(id + 1000).await,
        Err(StoreError::NotFound(_))
    ));
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn prune_deletes_only_long_expired_or_revoked_tokens(pool: PgPool) {
    let store = store(pool);
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, live) = fixtures.token(TokenSpec::default()).await;
    let (_, old_expired) = fixtures
        .token(TokenSpec {
            expires_at: Some(Utc::now() - Duration::hours(48)),
            ..TokenSpec::default()
        })
        .await;
    let (_, recently_expired) = fixtures
        .token(TokenSpec {
            expires_at: Some(Utc::now() - Duration::hours(1)),
            ..TokenSpec::default()
        })
        .await;
    let (_, revoked_now) = fixtures.token(TokenSpec::default()).await;
    store.revoke_token(revoked_now).await.unwrap();

    let pruned = store
        .prune_tokens(Utc::now() - Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let remaining: Vec<i64> = store
        .list_tokens(None)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(remaining, vec![live, recently_expired, revoked_now]);
    assert!(!remaining.contains(&old_expired));
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn refresh_tokens_start_a_family(pool: PgPool) {
    let store = store(pool.clone());
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, refresh) = fixtures
        .token(TokenSpec {
            kind: TokenKind::Refresh,
            ..TokenSpec::default()
        })
        .await;
    let (_, access) = fixtures.token(TokenSpec::default()).await;
    let families: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, family_id::text FROM tokens ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(families[0].0, refresh);
    assert!(families[0].1.is_some());
    assert_eq!(families[1], (access, None));
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn plain_sql_writers_are_read_as_written(pool: PgPool) {
    let store = store(pool.clone());
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, id) = fixtures.token(TokenSpec::default()).await;

    sqlx::query(
        "UPDATE tokens SET revoked_at = now(), abilities = '{a,b, bad ability}' WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE services SET is_active = false, ip_allowlist = '{192.168.0.0/16}' WHERE name = 'billing'")
        .execute(&pool)
        .await
        .unwrap();
    let record = store.find_token_by_id(id).await.unwrap().unwrap();
    assert!(record.revoked_at.is_some());
    assert_eq!(record.abilities.header_value(), "a,b");
    assert!(!record.service.is_active);
    assert_eq!(record.service.ip_allowlist.to_string(), "192.168.0.0/16");
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn ready_once_migrations_are_applied(pool: PgPool) {
    let store = store(pool);
    assert!(store.ready().await.unwrap());
    store.migrate().await.unwrap();
    assert!(store.ready().await.unwrap());
}
