//! The store conformance suite: every test runs against Postgres,
//! MySQL/MariaDB and the embedded SQLite store alike, each on a fresh database, through the same
//! `Store` API gatepass uses, and most of them again on a Laravel database
//! (the sanctum schema). Plain SQL is written once per dialect.

use std::time::Instant;

use chrono::{Duration, Utc};
use gatepass::model::ServiceName;
use gatepass::model::{NetList, TokenKind};
use gatepass::store::{Change, ServiceChange, StoreError};
use gatepass::token::TokenDigest;

use crate::helpers::{Fixtures, TestDb, TokenSpec};

/// Generates `postgres::<test>`, `mysql::<test>` and `sqlite::<test>` for each test function.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $test(pool: sqlx::PgPool) {
                    super::$test(crate::helpers::TestDb::postgres(pool).await).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::helpers::TestDb::mysql().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::helpers::TestDb::sqlite().await).await;
                }
            )*
        }
    };
}

/// The same, on a Laravel database read with `GATEPASS_SCHEMA=sanctum`
/// (Laravel's schema made by Laravel's Schema builder): the tests whose
/// meaning does not depend on gatepass's own tables. (Revocation, pruning,
/// refresh tokens and plain-SQL writers of Laravel's tables are in
/// `tests/gatepass/sanctum.rs`.)
macro_rules! sanctum_conformance {
    ($($test:ident),* $(,)?) => {
        mod sanctum_postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $test(pool: sqlx::PgPool) {
                    let db = crate::helpers::TestDb::postgres(pool).await;
                    super::$test(db.with_laravel_schema()).await;
                }
            )*
        }
        mod sanctum_mysql {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::helpers::TestDb::mysql().await.with_laravel_schema()).await;
                }
            )*
        }
        mod sanctum_sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = crate::helpers::TestDb::empty_sqlite().await;
                    super::$test(db.with_laravel_schema()).await;
                }
            )*
        }
    };
}

sanctum_conformance!(
    lookup_by_id_returns_the_token_with_its_service,
    lookup_by_digest_finds_the_same_row,
    service_upsert_changes_only_the_fields_given,
    disabling_a_service_shows_on_its_tokens,
    tokens_need_an_existing_service,
    ready_once_migrations_are_applied,
    last_used_is_written_in_one_batch_and_never_moves_back,
);

conformance!(
    lookup_by_id_returns_the_token_with_its_service,
    lookup_by_digest_finds_the_same_row,
    only_the_digest_is_stored,
    service_upsert_changes_only_the_fields_given,
    disabling_a_service_shows_on_its_tokens,
    tokens_need_an_existing_service,
    revoking_twice_keeps_the_first_revocation,
    prune_deletes_only_long_expired_or_revoked_tokens,
    refresh_tokens_start_a_family,
    plain_sql_writers_are_read_as_written,
    ready_once_migrations_are_applied,
    last_used_is_written_in_one_batch_and_never_moves_back,
    every_writer_is_announced_on_the_change_feed,
    last_used_writes_are_not_announced,
    refresh_rotation_is_single_use_and_keeps_the_family,
);

async fn lookup_by_id_returns_the_token_with_its_service(db: TestDb) {
    let store = db.store().await;
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

async fn lookup_by_digest_finds_the_same_row(db: TestDb) {
    let store = db.store().await;
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

async fn only_the_digest_is_stored(db: TestDb) {
    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (plain, id) = fixtures.token(TokenSpec::default()).await;
    let secret = plain.split_once('|').unwrap().1;

    assert_eq!(
        db.token_hash(id).await,
        TokenDigest::of(secret.as_bytes()).as_bytes()
    );
    let dump = db.dump_tokens().await;
    assert!(dump.contains("test"), "the dump reads the rows: {dump}");
    assert!(!dump.contains(&secret[3..]), "secret stored in plain text");
}

async fn service_upsert_changes_only_the_fields_given(db: TestDb) {
    let store = db.store().await;
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

async fn disabling_a_service_shows_on_its_tokens(db: TestDb) {
    let store = db.store().await;
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

async fn tokens_need_an_existing_service(db: TestDb) {
    let store = db.store().await;
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

async fn revoking_twice_keeps_the_first_revocation(db: TestDb) {
    let store = db.store().await;
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

async fn prune_deletes_only_long_expired_or_revoked_tokens(db: TestDb) {
    let store = db.store().await;
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

async fn refresh_tokens_start_a_family(db: TestDb) {
    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, refresh) = fixtures
        .token(TokenSpec {
            kind: TokenKind::Refresh,
            ..TokenSpec::default()
        })
        .await;
    let (_, access) = fixtures.token(TokenSpec::default()).await;
    let families = db.families().await;
    assert_eq!(families[0].0, refresh);
    assert!(families[0].1.is_some());
    assert_eq!(families[1], (access, None));
}

async fn plain_sql_writers_are_read_as_written(db: TestDb) {
    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, id) = fixtures.token(TokenSpec::default()).await;

    db.execute(
        "UPDATE tokens SET revoked_at = now(), abilities = '{a,b, bad ability}' WHERE id = $1",
        "UPDATE tokens SET revoked_at = UTC_TIMESTAMP(6), abilities = '[\"a\",\"b\",\"bad ability\"]' WHERE id = ?",
        "UPDATE tokens SET revoked_at = datetime('now'), abilities = '[\"a\",\"b\",\"bad ability\"]' WHERE id = ?1",
        Some(id),
    )
    .await;
    db.execute(
        "UPDATE services SET is_active = false, ip_allowlist = '{192.168.0.0/16}' WHERE name = 'billing'",
        "UPDATE services SET is_active = 0, ip_allowlist = '[\"192.168.0.0/16\"]' WHERE name = 'billing'",
        "UPDATE services SET is_active = 0, ip_allowlist = '[\"192.168.0.0/16\"]' WHERE name = 'billing'",
        None,
    )
    .await;
    let record = store.find_token_by_id(id).await.unwrap().unwrap();
    assert!(record.revoked_at.is_some());
    assert_eq!(record.abilities.header_value(), "a,b");
    assert!(!record.service.is_active);
    assert_eq!(record.service.ip_allowlist.to_string(), "192.168.0.0/16");
}

async fn ready_once_migrations_are_applied(db: TestDb) {
    let store = db.store().await;
    assert!(store.ready().await.unwrap());
    store.migrate().await.unwrap();
    assert!(store.ready().await.unwrap());
}

async fn last_used_is_written_in_one_batch_and_never_moves_back(db: TestDb) {
    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, first) = fixtures.token(TokenSpec::default()).await;
    let (_, second) = fixtures.token(TokenSpec::default()).await;
    let later = Utc::now() - Duration::seconds(5);
    let earlier = later - Duration::hours(1);

    let written = store
        .record_last_used(&[(first, later), (second, earlier)])
        .await
        .unwrap();
    assert_eq!(written, 2);
    let moved_back = store.record_last_used(&[(first, earlier)]).await.unwrap();
    assert_eq!(moved_back, 0);
    let tokens = store.list_tokens(None).await.unwrap();
    let used = |id| {
        tokens
            .iter()
            .find(|t| t.id == id)
            .and_then(|t| t.last_used_at)
            .expect("last_used_at set")
    };
    assert_eq!(used(first).timestamp(), later.timestamp());
    assert_eq!(used(second).timestamp(), earlier.timestamp());
}

/// Reads the feed until `wanted` shows up; every writer must be announced
/// within a second.
async fn expect_change(feed: &mut gatepass::store::ChangeFeed, wanted: impl Fn(&Change) -> bool) {
    let deadline = Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let change = tokio::time::timeout(remaining, feed.next())
            .await
            .expect("announced within a second")
            .expect("feed works")
            .expect("feed connected");
        if wanted(&change) {
            return;
        }
    }
}

async fn every_writer_is_announced_on_the_change_feed(db: TestDb) {
    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    let service_id = fixtures.service("billing", "").await;
    let (_, id) = fixtures.token(TokenSpec::default()).await;
    let mut feed = store.changes().await.unwrap();
    let token_change = |id: i64| move |change: &Change| matches!(change, Change::Token { id: changed, .. } if *changed == id);
    let service_change =
        move |change: &Change| matches!(change, Change::Service { id, .. } if *id == service_id);

    store.revoke_token(id).await.unwrap();
    expect_change(&mut feed, token_change(id)).await;

    let (_, plain_sql) = fixtures.token(TokenSpec::default()).await;
    expect_change(&mut feed, token_change(plain_sql)).await;
    db.execute(
        "UPDATE tokens SET revoked_at = now() WHERE id = $1",
        "UPDATE tokens SET revoked_at = UTC_TIMESTAMP(6) WHERE id = ?",
        "UPDATE tokens SET revoked_at = datetime('now') WHERE id = ?1",
        Some(plain_sql),
    )
    .await;
    expect_change(&mut feed, token_change(plain_sql)).await;

    db.execute(
        "UPDATE services SET is_active = false WHERE name = 'billing'",
        "UPDATE services SET is_active = 0 WHERE name = 'billing'",
        "UPDATE services SET is_active = 0 WHERE name = 'billing'",
        None,
    )
    .await;
    expect_change(&mut feed, service_change).await;
    store
        .upsert_service(&ServiceChange {
            name: ServiceName::parse("billing").unwrap(),
            description: None,
            ip_allowlist: Some(NetList::parse("10.0.0.0/8").unwrap()),
        })
        .await
        .unwrap();
    expect_change(&mut feed, service_change).await;

    // Versions grow with every change, and the record carries them.
    let record = store.find_token_by_id(plain_sql).await.unwrap().unwrap();
    let (_, newer) = fixtures.token(TokenSpec::default()).await;
    let newer = store.find_token_by_id(newer).await.unwrap().unwrap();
    assert!(newer.version > record.version);
    assert!(record.service.version > 0);
}

async fn last_used_writes_are_not_announced(db: TestDb) {
    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, id) = fixtures.token(TokenSpec::default()).await;
    let version = store.find_token_by_id(id).await.unwrap().unwrap().version;
    let mut feed = store.changes().await.unwrap();

    store.record_last_used(&[(id, Utc::now())]).await.unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(400), feed.next()).await;
    assert!(quiet.is_err(), "a last-used write was announced: {quiet:?}");
    assert_eq!(
        store.find_token_by_id(id).await.unwrap().unwrap().version,
        version
    );
}

async fn refresh_rotation_is_single_use_and_keeps_the_family(db: TestDb) {
    use gatepass::store::Successor;

    let store = db.store().await;
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (_, spent) = fixtures
        .token(TokenSpec {
            kind: TokenKind::Refresh,
            abilities: "orders:read",
            ..TokenSpec::default()
        })
        .await;
    let (_, access) = fixtures.token(TokenSpec::default()).await;
    let successor = |seed: &[u8]| Successor {
        digest: TokenDigest::of(seed),
        expires_at: Some(Utc::now() + Duration::hours(1)),
    };

    let rotated = store
        .rotate_refresh_token(spent, &successor(b"a1"), &successor(b"r1"))
        .await
        .unwrap()
        .expect("a live refresh token rotates");
    let new_access = store
        .find_token_by_id(rotated.access_id)
        .await
        .unwrap()
        .unwrap();
    let new_refresh = store
        .find_token_by_id(rotated.refresh_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new_access.kind, TokenKind::Access);
    assert_eq!(new_refresh.kind, TokenKind::Refresh);
    assert_eq!(new_access.abilities.header_value(), "orders:read");
    assert!(new_access.digest.matches(&TokenDigest::of(b"a1")));
    assert!(
        store
            .find_token_by_id(spent)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let families = db.families().await;
    let family = |id| families.iter().find(|(t, _)| *t == id).unwrap().1.clone();
    assert_eq!(family(rotated.refresh_id), family(spent));
    assert!(family(spent).is_some());
    assert_eq!(family(rotated.access_id), None);

    // Spent, or not a refresh token at all: nothing is issued.
    for id in [spent, access] {
        let again = store
            .rotate_refresh_token(id, &successor(b"a2"), &successor(b"r2"))
            .await
            .unwrap();
        assert_eq!(again, None);
    }
    // Revoking the family reaches the successor.
    assert_eq!(store.revoke_family(spent).await.unwrap(), 2);
    let successor_row = store
        .find_token_by_id(rotated.refresh_id)
        .await
        .unwrap()
        .unwrap();
    assert!(successor_row.revoked_at.is_some());
    assert!(
        store
            .find_token_by_id(access)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
}
