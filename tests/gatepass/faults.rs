//! The fault suite: gatepass's dependencies killed, restarted, frozen,
//! reset and slowed under load, and gatepass stopped under load. Each test
//! starts its own Redis or reaches Postgres through a link it controls;
//! the shared servers are never touched. Loads are bounded in count and
//! time, on loopback.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatepass::config::SettingsArgs;
use gatepass::decision::{Decision, DenyReason};
use gatepass::store::{PostgresStore, Store};
use reqwest::Client;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{CuttableLink, Fixtures, LinkMode, TestApp, TokenSpec, test_settings};

/// A database of its own for a test on a multi-threaded runtime (which
/// `#[sqlx::test]` does not give): created empty, migrated by gatepass,
/// dropped at the end.
struct FreshDb {
    url: String,
    name: String,
    admin: PgPool,
    pool: PgPool,
}

impl FreshDb {
    async fn create() -> Self {
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .expect("the test Postgres is up");
        let name = format!("gatepass_fault_{}", crate::helpers::unique_suffix());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let (prefix, _) = base
            .rsplit_once('/')
            .expect("DATABASE_URL names a database");
        let url = format!("{prefix}/{name}");
        let store = Store::connect(&gatepass::store::StoreOptions {
            url: url.clone(),
            max_connections: 2,
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .unwrap();
        store.migrate().await.expect("migrations apply");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        Self {
            url,
            name,
            admin,
            pool,
        }
    }

    fn store(&self) -> Store {
        Store::from(PostgresStore::from_pool(self.pool.clone()))
    }

    fn addr(&self) -> SocketAddr {
        crate::helpers::postgres_addr(&self.pool)
    }

    /// The URL of this database through `link`.
    fn url_through(&self, link: &CuttableLink) -> String {
        let options = self
            .pool
            .connect_options()
            .as_ref()
            .clone()
            .host("127.0.0.1")
            .port(link.addr.port());
        use sqlx::ConnectOptions;
        options.to_url_lossy().to_string()
    }

    async fn drop_database(self) {
        self.pool.close().await;
        let _ = sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await;
    }
}

/// A Redis server of the test's own, on a free port, that it can kill
/// with SIGKILL and start again on the same port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = redis::Client::open(self.url()).unwrap();
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn spawn(url: &str, customise: impl FnOnce(&mut SettingsArgs)) -> TestApp {
    let settings = test_settings(url, customise);
    let store = Store::connect(&settings.store).expect("store options are valid");
    TestApp::spawn_on(settings, store).await
}

/// One answer seen by the load.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Instant,
    took: Duration,
    status: u16,
}

/// Checks `tokens` in turn over HTTP from `tasks` keep-alive clients until
/// stopped (at most 60 s), recording every answer.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Load {
    fn start(app: &TestApp, tokens: &[String], tasks: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = app.http_url("/auth");
        let tasks = (0..tasks)
            .map(|task| {
                let (stop, url, tokens) = (stop.clone(), url.clone(), tokens.to_vec());
                tokio::spawn(async move {
                    let client = Client::new();
                    let mut answers = Vec::new();
                    let started = Instant::now();
                    let mut i = task;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(60)
                    {
                        let token = &tokens[i % tokens.len()];
                        i += 1;
                        let at = Instant::now();
                        let status = client
                            .get(&url)
                            .header("authorization", format!("Bearer {token}"))
                            .timeout(Duration::from_secs(5))
                            .send()
                            .await
                            .map_or(0, |response| response.status().as_u16());
                        answers.push(Answer {
                            at,
                            took: at.elapsed(),
                            status,
                        });
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    answers
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all
    }
}

async fn status(client: &Client, app: &TestApp, token: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .get(app.http_url("/auth"))
        .header("authorization", format!("Bearer {token}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_or(0, |response| response.status().as_u16());
    (status, started.elapsed())
}

/// Polls until `token` is allowed; returns how long that took.
async fn until_allowed(client: &Client, app: &TestApp, token: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if status(client, app, token).await.0 == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not allowed again within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn scrape(app: &TestApp) -> String {
    Client::new()
        .get(app.ops_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

const L2_HITS: &str = r#"gatepass_cache_lookups_total{result="hit",tier="l2"}"#;

fn slowest(answers: &[Answer]) -> Duration {
    answers.iter().map(|a| a.took).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_under_load_is_used_again_within_a_second_of_its_return() {
    let db = FreshDb::create().await;
    let mut redis = OwnRedis::start().await;
    let app = spawn(&db.url, |args| {
        args.redis_url = Some(redis.url());
        // Two tokens in L1: the load is served from Redis.
        args.cache_capacity = Some("2".into());
    })
    .await;
    app.wait_for_feed().await;
    let store = db.store();
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(fixtures.token(TokenSpec::default()).await.0);
    }
    let load = Load::start(&app, &tokens, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&scrape(&app).await, L2_HITS) < 20.0 {
        assert!(Instant::now() < deadline, "L2 never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits_while_down = sample(&scrape(&app).await, L2_HITS);
    redis.restart().await;
    let returned = Instant::now();
    let back = loop {
        let text = scrape(&app).await;
        if sample(&text, L2_HITS) > hits_while_down + 5.0 {
            break returned.elapsed();
        }
        assert!(
            returned.elapsed() < Duration::from_secs(5),
            "Redis not used again 5 s after it returned"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let ready: serde_json::Value = Client::new()
        .get(app.ops_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answers = load.finish().await;
    println!(
        "redis kill -9 and restart: {} checks, all 200: {}, Redis used again {back:?} after it returned",
        answers.len(),
        answers.iter().all(|a| a.status == 200)
    );
    assert!(answers.iter().all(|a| a.status == 200), "a check failed");
    assert_eq!(ready["redis"], "ok");
    assert!(back < Duration::from_secs(1), "{back:?}");
    app.stop().await;
    db.drop_database().await;
}

/// What a database fault does to checks, measured under load: cached
/// checks never slower than 50 ms, uncached ones answered 503 within the
/// timeout (fast once gatepass knows the database is down), service back
/// within a second of the database.
async fn database_fault(fault: LinkMode, name: &str) {
    let db = FreshDb::create().await;
    let link = CuttableLink::to(db.addr()).await;
    let timeout = Duration::from_millis(500);
    let app = spawn(&db.url_through(&link), |args| {
        args.database_max_connections = Some("10".into());
        args.database_timeout = Some("500ms".into());
        // Cached entries need refreshing all through the fault.
        args.cache_ttl = Some("100ms".into());
    })
    .await;
    app.wait_for_feed().await;
    let store = db.store();
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let cached = fixtures.token(TokenSpec::default()).await.0;
    let mut uncached = Vec::new();
    for _ in 0..24 {
        uncached.push(fixtures.token(TokenSpec::default()).await.0);
    }
    let client = Client::new();
    assert_eq!(
        until_allowed(&client, &app, &cached, Duration::from_secs(5))
            .await
            .as_secs(),
        0
    );
    let load = Load::start(&app, std::slice::from_ref(&cached), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;

    link.set(fault);
    let fault_began = Instant::now();
    // Twelve at once, with ten connections in the pool; then twelve more.
    let mut rounds = Vec::new();
    for round in uncached.chunks(12) {
        let checks = round.iter().map(|token| status(&client, &app, token));
        let answers = futures_util::future::join_all(checks).await;
        rounds.push(answers);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(fault_began.elapsed())).await;
    link.set(LinkMode::Forward);
    let recovered = until_allowed(&client, &app, &uncached[0], Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answers = load.finish().await;

    let during: Vec<Answer> = answers
        .iter()
        .copied()
        .filter(|a| a.at >= fault_began)
        .collect();
    let worst_uncached = rounds
        .iter()
        .flatten()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    let second_round_worst = rounds[1]
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    println!(
        "{name}: {} cached checks during the fault, slowest {:?}; uncached: statuses {:?}, slowest {worst_uncached:?}, \
         slowest once known down {second_round_worst:?}; 200 again {recovered:?} after the database returned",
        during.len(),
        slowest(&during),
        rounds
            .iter()
            .flatten()
            .map(|(status, _)| *status)
            .collect::<Vec<_>>(),
    );
    assert!(
        answers.iter().all(|a| a.status == 200),
        "a cached check failed"
    );
    assert!(
        slowest(&during) < Duration::from_millis(50),
        "a cached check took {:?}",
        slowest(&during)
    );
    for (status, took) in rounds.iter().flatten() {
        assert_eq!(*status, 503);
        assert!(*took < timeout + Duration::from_millis(250), "{took:?}");
    }
    assert!(
        second_round_worst < Duration::from_millis(50),
        "{second_round_worst:?}"
    );
    assert!(recovered < Duration::from_secs(1), "{recovered:?}");
    app.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_never_hangs_a_check() {
    database_fault(LinkMode::Freeze, "frozen database").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_resets_connections_never_stalls_a_cached_check() {
    database_fault(LinkMode::Refuse, "database resetting connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_gone_never_stalls_a_cached_check() {
    database_fault(LinkMode::Closed, "database gone (connections refused)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_slower_than_the_timeout_never_stalls_a_cached_check() {
    database_fault(
        LinkMode::Delay(Duration::from_millis(400)),
        "database slower than the timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_never_wait_on_a_slow_redis() {
    let db = FreshDb::create().await;
    let redis = OwnRedis::start().await;
    let link = CuttableLink::to(redis.addr()).await;
    let app = spawn(&db.url, |args| {
        args.redis_url = Some(format!("redis://{}", link.addr));
        args.redis_timeout = Some("200ms".into());
    })
    .await;
    app.wait_for_feed().await;
    let store = db.store();
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let token = fixtures.token(TokenSpec::default()).await.0;
        assert!(matches!(app.check(&token).await.0, Decision::Allow(_)));
        tokens.push(token);
    }
    // Every Redis call now takes ~100 ms, well inside its timeout: awaited
    // inline, 40 tombstones would hold the feed for 4 s.
    link.set(LinkMode::Delay(Duration::from_millis(50)));
    sqlx::query("UPDATE tokens SET revoked_at = now()")
        .execute(&db.pool)
        .await
        .unwrap();
    let revoked = Instant::now();
    let denied = tokens.iter().map(|token| async {
        loop {
            let (decision, _) = app.check(token).await;
            if decision == Decision::Deny(DenyReason::TokenRevoked) {
                return;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(6),
                "revocation not applied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    futures_util::future::join_all(denied).await;
    let took = revoked.elapsed();
    println!("20 revocations applied to L1 in {took:?} with Redis answering in ~100 ms");
    assert!(took < Duration::from_secs(1), "{took:?}");
    link.set(LinkMode::Forward);
    app.stop().await;
    db.drop_database().await;
}

/// `gatepass serve` as a process, stopped with SIGTERM while requests are
/// in flight on 64 keep-alive connections and 16 gRPC streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_already_sent_and_flushes_last_used() {
    let db = FreshDb::create().await;
    let store = db.store();
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    for round in 0..5 {
        let (token, id) = fixtures.token(TokenSpec::default()).await;
        let mut serve = Command::new(env!("CARGO_BIN_EXE_gatepass"))
            .arg("serve")
            .env_clear()
            .env("GATEPASS_DATABASE_URL", &db.url)
            .env("GATEPASS_GRPC_ADDR", "127.0.0.1:0")
            .env("GATEPASS_HTTP_ADDR", "127.0.0.1:0")
            .env("GATEPASS_OPS_ADDR", "127.0.0.1:0")
            .env("GATEPASS_HTTP_WORKERS", "2")
            .env("GATEPASS_LOG_FORMAT", "json")
            // Only the final flush writes last_used_at.
            .env("GATEPASS_LAST_USED_FLUSH_INTERVAL", "1h")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (http, grpc, logs) = crate::helpers::serving_addresses(&mut serve).await;

        let mut connections = Vec::new();
        for _ in 0..64 {
            let stream = TcpStream::connect(&http).await.unwrap();
            stream.set_nodelay(true).unwrap();
            connections.push(stream);
        }
        let request = format!(
            "GET /auth HTTP/1.1\r\nHost: gatepass\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        // One exchange each, so every connection is established and idle
        // in keep-alive.
        for stream in &mut connections {
            stream.write_all(request.as_bytes()).await.unwrap();
            assert_eq!(read_status(stream).await, Some(200));
        }
        let grpc_client = crate::grpc::client_at(&grpc).await;
        // Then a request on every connection, and the signal right after
        // the last byte was written.
        for stream in &mut connections {
            stream.write_all(request.as_bytes()).await.unwrap();
        }
        let grpc_checks: Vec<_> = (0..16)
            .map(|_| {
                let mut client = grpc_client.clone();
                let call = crate::grpc::EnvoyCall::bearer(&token).build();
                tokio::spawn(async move { client.check(call).await.map(|r| r.into_inner()) })
            })
            .collect();
        tokio::task::yield_now().await;
        let killed = Command::new("kill")
            .args(["-TERM", &serve.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut answered = 0;
        for stream in &mut connections {
            if read_status(stream).await == Some(200) {
                answered += 1;
            }
        }
        let mut grpc_answered = 0;
        for check in grpc_checks {
            if check
                .await
                .unwrap()
                .is_ok_and(|r| r.status.is_some_and(|s| s.code == 0))
            {
                grpc_answered += 1;
            }
        }
        let exit = tokio::task::spawn_blocking(move || serve.wait().unwrap())
            .await
            .unwrap();
        let logs = logs.join().unwrap();
        let last_used: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT last_used_at FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        println!(
            "SIGTERM round {round}: {answered}/64 HTTP requests in flight answered, {grpc_answered}/16 gRPC, \
             exit {exit:?}, last_used_at {last_used:?}"
        );
        assert_eq!(answered, 64, "{logs}");
        assert_eq!(grpc_answered, 16, "{logs}");
        assert!(exit.success(), "{logs}");
        assert!(
            last_used.is_some(),
            "last_used_at not flushed on shutdown: {logs}"
        );
    }
    db.drop_database().await;
}

/// The status of the next HTTP/1.1 response on `stream` (its body read
/// too), or `None` when the connection closed first.
async fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_flush_the_database_cannot_take_is_bounded_and_counted() {
    let db = FreshDb::create().await;
    let link = CuttableLink::to(db.addr()).await;
    let app = spawn(&db.url_through(&link), |args| {
        args.last_used_flush_interval = Some("1h".into());
        args.shutdown_timeout = Some("1s".into());
    })
    .await;
    app.wait_for_feed().await;
    let store = db.store();
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let client = Client::new();
    for _ in 0..3 {
        let token = fixtures.token(TokenSpec::default()).await.0;
        assert_eq!(status(&client, &app, &token).await.0, 200);
    }
    link.set(LinkMode::Freeze);
    let stats = app.usage_stats.clone();
    let started = Instant::now();
    app.stop().await;
    let took = started.elapsed();
    let lost = stats.borrow().lost;
    println!("stop with a frozen database took {took:?}; {lost} last-used times lost and counted");
    assert_eq!(lost, 3);
    assert!(took < Duration::from_secs(4), "{took:?}");
    link.set(LinkMode::Forward);
    db.drop_database().await;
}
