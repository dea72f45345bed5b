//! The cache tiers (L1 memory, L2 Redis, single-flight, invalidation,
//! batched last-used) against real Postgres and Redis.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
use gatepass::cache::Outcome;
use gatepass::check::Authorizer;
use gatepass::decision::{CheckRequest, Decision, DenyReason};
use gatepass::token::TokenFormat;
use sqlx::PgPool;

use crate::helpers::{
    CuttableLink, Fixtures, Table, TestApp, TestDb, TokenSpec, database_url, redis_addr, redis_url,
    test_settings, unique_prefix, with_redis,
};

const UNKNOWN: &str = "424242|LegacyShapedSecretForAnUnknownId00000";

fn reason(decision: &Decision) -> Option<DenyReason> {
    match decision {
        Decision::Allow(_) => None,
        Decision::Deny(reason) => Some(*reason),
    }
}

async fn redis_get(key: &str) -> Option<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Waits until L2 holds something for `key` (fills are written off the
/// request path).
async fn wait_for_redis(key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = redis_get(key).await {
            return value;
        }
        assert!(Instant::now() < deadline, "{key} never reached Redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until `app` denies `token` with `expected`; returns how long it took.
async fn time_until_denied(app: &TestApp, token: &str, expected: DenyReason) -> Duration {
    let start = Instant::now();
    loop {
        let (decision, _) = app.check(token).await;
        if reason(&decision) == Some(expected) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {decision:?} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn median_and_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

async fn two_instances(pool: &PgPool) -> (TestApp, TestApp, String) {
    let prefix = unique_prefix();
    let a = TestApp::spawn_with(pool.clone(), |args| with_redis(args, &prefix)).await;
    let b = TestApp::spawn_with(pool.clone(), |args| with_redis(args, &prefix)).await;
    a.wait_for_feed().await;
    b.wait_for_feed().await;
    (a, b, prefix)
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn every_tier_reports_hits_misses_and_negatives(pool: PgPool) {
    // Issued before the instances start: loaded with the index, and
    // announced to neither.
    let seed = TestApp::spawn(pool.clone()).await;
    Fixtures { store: &seed.store }.service("billing", "").await;
    let (gone, gone_id) = Fixtures { store: &seed.store }
        .token(TokenSpec::default())
        .await;
    seed.stop().await;
    let (a, b, prefix) = two_instances(&pool).await;
    let table = Table::provision(&a.store).await;

    let (decision, outcome) = a.check(&table.valid).await;
    assert!(matches!(decision, Decision::Allow(_)));
    assert_eq!(outcome, Some(Outcome::Db));
    assert_eq!(a.check(&table.valid).await.1, Some(Outcome::L1Hit));

    wait_for_redis(&format!("{prefix}token:id:{}", table.valid_id)).await;
    let (decision, outcome) = b.check(&table.valid).await;
    assert!(matches!(decision, Decision::Allow(_)));
    assert_eq!(outcome, Some(Outcome::L2Hit));
    assert_eq!(b.check(&table.valid).await.1, Some(Outcome::L1Hit));

    // An id no row has is answered from the index, by neither tier.
    for app in [&a, &b] {
        let (decision, outcome) = app.check(UNKNOWN).await;
        assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
        assert_eq!(outcome, Some(Outcome::Unknown));
    }
    // A row deleted without its notification (lost while the feed was
    // down) stays in the index: the database says so once, Redis then.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM tokens WHERE id = $1")
        .bind(gone_id)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (decision, outcome) = a.check(&gone).await;
    assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
    assert_eq!(outcome, Some(Outcome::DbNegative));
    assert_eq!(a.check(&gone).await.1, Some(Outcome::L1Negative));
    wait_for_redis(&format!("{prefix}token:id:{gone_id}")).await;
    let (decision, outcome) = b.check(&gone).await;
    assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
    assert_eq!(outcome, Some(Outcome::L2Negative));

    // A wrong secret for a cached id is denied from memory.
    let (decision, outcome) = a.check(&table.wrong_secret()).await;
    assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
    assert_eq!(outcome, Some(Outcome::L1Hit));
    // Legacy tokens without an id are cached by digest.
    assert_eq!(a.check(&table.legacy_without_id).await.1, Some(Outcome::Db));
    assert_eq!(
        a.check(&table.legacy_without_id).await.1,
        Some(Outcome::L1Hit)
    );
    // Malformed tokens never reach a tier.
    assert_eq!(a.check("-1|x").await.1, None);
    a.stop().await;
    b.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn two_hundred_concurrent_misses_make_one_query(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, _) = fixtures.token(TokenSpec::default()).await;

    let before = app.store.lookup_count();
    let checks = (0..200).map(|_| app.check(&token));
    let results = join_all(checks).await;
    assert!(results.iter().all(|(d, _)| matches!(d, Decision::Allow(_))));
    assert_eq!(app.store.lookup_count() - before, 1);
    let db_answers = results
        .iter()
        .filter(|(_, outcome)| *outcome == Some(Outcome::Db))
        .count();
    assert!(db_answers >= 1, "the leader and its waiters report `db`");
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn junk_ids_cannot_evict_good_entries(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| {
        // Room for the good tokens in every shard; the junk is 40x the
        // negative cache.
        args.cache_capacity = Some("1000".into());
        args.negative_cache_capacity = Some("50".into());
    })
    .await;
    // Until the change feed is up, entries count as fresh for a second only.
    app.wait_for_feed().await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let (token, _) = fixtures.token(TokenSpec::default()).await;
        assert_eq!(app.check(&token).await.1, Some(Outcome::Db));
        tokens.push(token);
    }
    // At once, as a flood comes: an unknown token's answer waits for the
    // change feed to prove it was not issued meanwhile.
    let junk: Vec<String> = (1_000_000..1_002_000)
        .map(|id| format!("{id}|LegacyShapedSecretForAnUnknownId00000"))
        .collect();
    for (decision, _) in join_all(junk.iter().map(|junk| app.check(junk))).await {
        assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
    }
    for token in &tokens {
        assert_eq!(app.check(token).await.1, Some(Outcome::L1Hit));
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn no_entry_outlives_the_tokens_expiry(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let expires_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let (token, _) = fixtures
        .token(TokenSpec {
            expires_at: Some(expires_at),
            ..TokenSpec::default()
        })
        .await;

    assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
    assert_eq!(app.check(&token).await.1, Some(Outcome::L1Hit));
    let wait = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let (decision, outcome) = app.check(&token).await;
    assert_eq!(reason(&decision), Some(DenyReason::TokenExpired));
    assert_eq!(outcome, Some(Outcome::Db));
    // Expired tokens are remembered with the negatives: no query per retry.
    let before = app.store.lookup_count();
    let (decision, outcome) = app.check(&token).await;
    assert_eq!(reason(&decision), Some(DenyReason::TokenExpired));
    assert_eq!(outcome, Some(Outcome::L1Negative));
    assert_eq!(app.store.lookup_count(), before);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn redis_on_a_closed_port_falls_through_to_the_database(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| {
        args.redis_url = Some("redis://127.0.0.1:1".into());
    })
    .await;
    let table = Table::provision(&app.store).await;

    let start = Instant::now();
    assert!(matches!(
        app.check(&table.valid).await.0,
        Decision::Allow(_)
    ));
    assert_eq!(
        reason(&app.check(&table.revoked).await.0),
        Some(DenyReason::TokenRevoked)
    );
    assert_eq!(
        reason(&app.check(UNKNOWN).await.0),
        Some(DenyReason::InvalidToken)
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    let redis = app.tiers.redis().expect("redis configured");
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis.error_count() == 0 {
        assert!(Instant::now() < deadline, "redis errors are counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn redis_shut_down_mid_test_keeps_checks_correct(pool: PgPool) {
    let link = CuttableLink::to(redis_addr()).await;
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(pool, |args| {
        args.redis_url = Some(format!("redis://{}", link.addr));
        args.redis_prefix = Some(prefix.clone());
    })
    .await;
    app.wait_for_feed().await;
    let table = Table::provision(&app.store).await;

    assert!(matches!(
        app.check(&table.valid).await.0,
        Decision::Allow(_)
    ));
    wait_for_redis(&format!("{prefix}token:id:{}", table.valid_id)).await;
    link.cut();
    assert!(matches!(
        app.check(&table.valid).await.0,
        Decision::Allow(_)
    ));
    for (token, expected) in [
        (&table.revoked, DenyReason::TokenRevoked),
        (&table.expired, DenyReason::TokenExpired),
        (&table.disabled, DenyReason::ServiceDisabled),
    ] {
        assert_eq!(reason(&app.check(token).await.0), Some(expected));
    }
    assert!(app.tiers.redis().unwrap().error_count() > 0);
    link.restore();
    assert_eq!(
        reason(&app.check(&table.refresh).await.0),
        Some(DenyReason::WrongTokenKind)
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn revocations_reach_every_instance_within_one_second(pool: PgPool) {
    let (a, b, _) = two_instances(&pool).await;
    let fixtures = Fixtures { store: &a.store };
    fixtures.service("billing", "").await;
    let url = database_url(&pool);

    let mut through_cli = Vec::new();
    let mut through_sql = Vec::new();
    for round in 0..100 {
        let (token, id) = fixtures.token(TokenSpec::default()).await;
        for app in [&a, &b] {
            assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
            assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
        }
        let committed = if round % 2 == 0 {
            let status = Command::new(env!("CARGO_BIN_EXE_gatepass"))
                .args(["token", "revoke", &id.to_string()])
                .env_clear()
                .env("GATEPASS_DATABASE_URL", &url)
                .output()
                .unwrap();
            assert!(status.status.success());
            Instant::now()
        } else {
            sqlx::query("UPDATE tokens SET revoked_at = now() WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            Instant::now()
        };
        let _ = time_until_denied(&b, &token, DenyReason::TokenRevoked).await;
        let _ = time_until_denied(&a, &token, DenyReason::TokenRevoked).await;
        let elapsed = committed.elapsed();
        if round % 2 == 0 {
            through_cli.push(elapsed);
        } else {
            through_sql.push(elapsed);
        }
    }
    let (cli_median, cli_max) = median_and_max(through_cli);
    let (sql_median, sql_max) = median_and_max(through_sql);
    println!(
        "revocation reached both instances: CLI median {cli_median:?} max {cli_max:?}; \
         plain SQL median {sql_median:?} max {sql_max:?} (50 each)"
    );
    assert!(cli_max < Duration::from_secs(1), "{cli_max:?}");
    assert!(sql_max < Duration::from_secs(1), "{sql_max:?}");
    a.stop().await;
    b.stop().await;
}

/// MySQL has no notifications: both instances poll the change log. Half
/// the tokens are revoked, half deleted (as Eloquent's `$token->delete()`
/// does), each by plain SQL from another connection.
#[tokio::test]
async fn mysql_revocations_and_deletes_reach_every_instance_within_one_second() {
    let db = TestDb::mysql().await;
    let prefix = unique_prefix();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let settings = test_settings(&db.url(), |args| with_redis(args, &prefix));
        let app = TestApp::spawn_on(settings, db.store().await).await;
        app.wait_for_feed().await;
        instances.push(app);
    }
    let fixtures = Fixtures {
        store: &instances[0].store,
    };
    fixtures.service("billing", "").await;
    let (mut revoked, mut deleted) = (Vec::new(), Vec::new());
    for round in 0..100 {
        let (token, id) = fixtures.token(TokenSpec::default()).await;
        for app in &instances {
            assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
            assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
        }
        let (sql, expected) = if round % 2 == 0 {
            (
                "UPDATE tokens SET revoked_at = UTC_TIMESTAMP(6) WHERE id = ?",
                DenyReason::TokenRevoked,
            )
        } else {
            ("DELETE FROM tokens WHERE id = ?", DenyReason::InvalidToken)
        };
        db.execute("", sql, "", Some(id)).await;
        let committed = Instant::now();
        for app in &instances {
            let _ = time_until_denied(app, &token, expected).await;
        }
        let elapsed = committed.elapsed();
        if round % 2 == 0 {
            revoked.push(elapsed);
        } else {
            deleted.push(elapsed);
        }
    }
    let (revoked_median, revoked_max) = median_and_max(revoked);
    let (deleted_median, deleted_max) = median_and_max(deleted);
    println!(
        "mysql: reached both instances: revoke median {revoked_median:?} max {revoked_max:?}; \
         delete median {deleted_median:?} max {deleted_max:?} (50 each)"
    );
    assert!(revoked_max < Duration::from_secs(1), "{revoked_max:?}");
    assert!(deleted_max < Duration::from_secs(1), "{deleted_max:?}");
    for app in instances {
        app.stop().await;
    }
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn plain_sql_service_changes_reach_both_instances(pool: PgPool) {
    let (a, b, _) = two_instances(&pool).await;
    let table = Table::provision(&a.store).await;
    for app in [&a, &b] {
        assert!(matches!(
            app.check(&table.valid).await.0,
            Decision::Allow(_)
        ));
        assert_eq!(app.check(&table.valid).await.1, Some(Outcome::L1Hit));
    }
    let denied = |expected| move |decision: &Decision| reason(decision) == Some(expected);
    let allowed = |decision: &Decision| matches!(decision, Decision::Allow(_));

    execute(
        &pool,
        "UPDATE services SET is_active = false WHERE name = 'billing'",
    )
    .await;
    settles_within_a_second([&a, &b], &table.valid, denied(DenyReason::ServiceDisabled)).await;
    execute(
        &pool,
        "UPDATE services SET is_active = true WHERE name = 'billing'",
    )
    .await;
    settles_within_a_second([&a, &b], &table.valid, allowed).await;

    // These checks carry no client address: any allowlist shuts them out.
    execute(
        &pool,
        "UPDATE services SET ip_allowlist = '{192.0.2.0/24}' WHERE name = 'billing'",
    )
    .await;
    settles_within_a_second([&a, &b], &table.valid, denied(DenyReason::IpNotAllowed)).await;
    execute(
        &pool,
        "UPDATE services SET ip_allowlist = '{}' WHERE name = 'billing'",
    )
    .await;
    settles_within_a_second([&a, &b], &table.valid, allowed).await;

    execute(
        &pool,
        "UPDATE tokens SET abilities = '{nothing}' WHERE name = 'test'",
    )
    .await;
    settles_within_a_second([&a, &b], &table.valid, |decision| {
        matches!(decision, Decision::Allow(record) if record.abilities.header_value() == "nothing")
    })
    .await;
    a.stop().await;
    b.stop().await;
}

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

/// Polls each instance until its decision on `token` is `wanted`; every
/// one must get there within a second of the call.
async fn settles_within_a_second(
    apps: [&TestApp; 2],
    token: &str,
    wanted: impl Fn(&Decision) -> bool,
) {
    let start = Instant::now();
    for app in apps {
        loop {
            let (decision, _) = app.check(token).await;
            if wanted(&decision) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(1), "{decision:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn no_revoke_versus_fill_race_resurrects_a_token(pool: PgPool) {
    const RACES: usize = 1000;
    let (a, b, prefix) = two_instances(&pool).await;
    let fixtures = Fixtures { store: &a.store };
    fixtures.service("billing", "").await;
    let mut tokens = Vec::with_capacity(RACES);
    for _ in 0..RACES {
        tokens.push(fixtures.token(TokenSpec::default()).await);
    }

    // Each race: both instances fill from cold while the token is revoked.
    for chunk in tokens.chunks(50) {
        let races = chunk.iter().map(|(token, id)| {
            let pool = pool.clone();
            let (a, b) = (&a, &b);
            async move {
                let revoke = async {
                    sqlx::query("UPDATE tokens SET revoked_at = now() WHERE id = $1")
                        .bind(*id)
                        .execute(&pool)
                        .await
                        .unwrap();
                };
                tokio::join!(a.check(token), b.check(token), revoke, a.check(token));
            }
        });
        join_all(races).await;
    }
    // Every revocation has committed; give propagation its bound.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A third instance starts cold and can only read L2 and the database.
    let c = TestApp::spawn_with(pool.clone(), |args| with_redis(args, &prefix)).await;
    let mut resurrected = Vec::new();
    for (token, id) in &tokens {
        for (name, app) in [("a", &a), ("b", &b), ("c", &c)] {
            let (decision, outcome) = app.check(token).await;
            if reason(&decision) != Some(DenyReason::TokenRevoked) {
                resurrected.push((name, *id, outcome));
            }
        }
    }
    assert!(resurrected.is_empty(), "{resurrected:?}");
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn ten_thousand_checks_write_last_used_in_batches(pool: PgPool) {
    let interval = Duration::from_millis(500);
    let app = TestApp::spawn_with(pool.clone(), |args| {
        args.last_used_flush_interval = Some("500ms".into());
    })
    .await;
    app.wait_for_feed().await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, id) = fixtures.token(TokenSpec::default()).await;
    let (other, other_id) = fixtures.token(TokenSpec::default()).await;

    let client = reqwest::Client::new();
    let lookups_before = app.store.lookup_count();
    let start = Instant::now();
    for i in 0..10_000 {
        let token = if i % 2 == 0 { &token } else { &other };
        let response = client
            .get(app.http_url("/auth"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let elapsed = start.elapsed();
    let lookups = app.store.lookup_count() - lookups_before;
    // One fill per token; every other check is answered from memory.
    assert!(
        lookups <= 2 + 2 * (elapsed.as_secs() / 300),
        "{lookups} lookups"
    );
    tokio::time::sleep(interval * 2).await;

    let stats = *app.usage_stats.borrow();
    let intervals = (elapsed + interval * 2).as_millis() / interval.as_millis() + 1;
    assert!(stats.statements >= 1, "{stats:?}");
    assert!(
        u128::from(stats.statements) <= intervals,
        "{stats:?} over {elapsed:?}: more than one statement per interval"
    );
    let used: Vec<(i64, Option<chrono::DateTime<Utc>>)> =
        sqlx::query_as("SELECT id, last_used_at FROM tokens WHERE id = ANY($1) ORDER BY id")
            .bind(vec![id, other_id])
            .fetch_all(&pool)
            .await
            .unwrap();
    for (_, last_used) in &used {
        let last_used = last_used.expect("last_used_at is set");
        assert!(Utc::now() - last_used < chrono::Duration::seconds(30));
    }
    println!(
        "10000 checks in {elapsed:?}: {lookups} token lookups, {} last-used statements, {} rows",
        stats.statements, stats.rows
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn last_used_is_flushed_on_shutdown(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |args| {
        args.last_used_flush_interval = Some("1h".into());
    })
    .await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, id) = fixtures.token(TokenSpec::default()).await;
    let response = reqwest::Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;

    let used: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(used.is_some());
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn cached_tokens_survive_a_database_outage_and_service_resumes(pool: PgPool) {
    let (app, link, table) = TestApp::spawn_behind_link(pool, |args| {
        args.cache_ttl = Some("100ms".into());
        args.cache_max_stale = Some("3s".into());
    })
    .await;
    app.wait_for_feed().await;
    let authorizer = Authorizer::new(app.tiers.clone(), None, TokenFormat::default(), None);
    let check = |token: &str| {
        let header = format!("Bearer {token}");
        let authorizer = authorizer.clone();
        async move {
            let request = CheckRequest {
                authorization: gatepass::decision::AuthorizationHeader::One(header.as_bytes()),
                ..Default::default()
            };
            authorizer
                .check(&request)
                .await
                .map(|verdict| (verdict.decision, verdict.outcome))
        }
    };

    assert!(matches!(
        app.check(&table.valid).await.0,
        Decision::Allow(_)
    ));
    link.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (decision, outcome) = check(&table.valid).await.expect("served stale");
    assert!(matches!(decision, Decision::Allow(_)));
    assert_eq!(outcome, Some(Outcome::Stale));
    assert!(
        check(UNKNOWN).await.is_err(),
        "unknown tokens are unavailable"
    );

    link.restore();
    let restored = Instant::now();
    loop {
        match check(UNKNOWN).await {
            Ok((decision, _)) => {
                assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
                break;
            }
            Err(_) => {
                assert!(restored.elapsed() < Duration::from_secs(1), "no recovery");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    println!(
        "answered again {:?} after the database returned",
        restored.elapsed()
    );

    // Past the maximum staleness, a cached token is no longer vouched for.
    assert!(matches!(
        app.check(&table.valid).await.0,
        Decision::Allow(_)
    ));
    link.cut();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(check(&table.valid).await.is_err());
    link.restore();
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn a_lost_change_feed_still_lets_revocations_through(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.wait_for_feed().await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, id) = fixtures.token(TokenSpec::default()).await;
    assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
    assert_eq!(app.check(&token).await.1, Some(Outcome::L1Hit));

    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "the listener connection was found");
    sqlx::query("UPDATE tokens SET revoked_at = now() WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let took = time_until_denied(&app, &token, DenyReason::TokenRevoked).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    app.wait_for_feed().await;
    app.stop().await;
}

#[tokio::test]
async fn embedded_sqlite_enforces_a_cli_revocation_within_one_second() {
    let db = crate::helpers::TestDb::sqlite().await;
    let url = db.url();
    let store = db.store().await;
    let app = TestApp::spawn_on(crate::helpers::test_settings(&url, |_| {}), store).await;
    app.wait_for_feed().await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;

    let mut took = Vec::new();
    for _ in 0..10 {
        let (token, id) = fixtures.token(TokenSpec::default()).await;
        assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
        assert_eq!(app.check(&token).await.1, Some(Outcome::L1Hit));
        let revoke = Command::new(env!("CARGO_BIN_EXE_gatepass"))
            .args(["token", "revoke", &id.to_string()])
            .env_clear()
            .env("GATEPASS_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(revoke.status.success(), "{revoke:?}");
        took.push(time_until_denied(&app, &token, DenyReason::TokenRevoked).await);
    }
    let (median, max) = median_and_max(took);
    println!("sqlite: CLI revocation enforced by serve in median {median:?}, max {max:?}");
    assert!(max < Duration::from_secs(1), "{max:?}");
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn a_flood_of_invented_ids_stays_off_the_database(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.wait_for_feed().await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (valid, _) = fixtures.token(TokenSpec::default()).await;
    assert!(matches!(app.check(&valid).await.0, Decision::Allow(_)));

    let before = app.store.lookup_count();
    let start = Instant::now();
    let junk: Vec<String> = (0..5_000i64)
        .map(|id| format!("{}|LegacyShapedSecretForAnUnknownId00000", 10_000_000 + id))
        .collect();
    let flood = join_all(junk.iter().map(|junk| app.check(junk)));
    // A token issued during the flood is accepted on its first check,
    // whether or not its notification has arrived.
    let issued_during = async {
        let (fresh, _) = fixtures.token(TokenSpec::default()).await;
        app.check(&fresh).await.0
    };
    let (answers, fresh) = tokio::join!(flood, issued_during);
    for (decision, outcome) in answers {
        assert_eq!(reason(&decision), Some(DenyReason::InvalidToken));
        assert_eq!(outcome, Some(Outcome::Unknown));
    }
    assert!(matches!(fresh, Decision::Allow(_)), "{fresh:?}");
    let queries = app.store.lookup_count() - before;
    println!(
        "5000 invented ids in {:?}: {queries} database lookups",
        start.elapsed()
    );
    // The token issued during the flood, once.
    assert_eq!(queries, 1, "junk reached the database");
    assert_eq!(app.check(&valid).await.1, Some(Outcome::L1Hit));
    app.stop().await;
}
