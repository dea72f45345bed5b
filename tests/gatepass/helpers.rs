//! Starts the real application on port 0 against a real Postgres database
//! and provisions what tests need through the real store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatepass::config::{Settings, SettingsArgs};
use gatepass::model::ServiceName;
use gatepass::model::parse_ability_list;
use gatepass::model::{NetList, TokenKind};
use gatepass::server::{self, Running};
use gatepass::store::{
    NewToken, PostgresStore, SanctumOptions, Schema, ServiceChange, Store, StoreOptions,
};
use gatepass::token::{IssuedToken, TokenFormat};
use sqlx::ConnectOptions;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The URL of the database behind a `#[sqlx::test]` pool.
pub fn database_url(pool: &PgPool) -> String {
    pool.connect_options().to_url_lossy().to_string()
}

/// Settings for a test instance: loopback, port 0, one HTTP worker.
pub fn test_settings(database_url: &str, customise: impl FnOnce(&mut SettingsArgs)) -> Settings {
    let mut args = SettingsArgs {
        database_url: Some(database_url.to_owned()),
        grpc_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("[::1]:0".into()),
        ops_addr: Some("127.0.0.1:0".into()),
        http_workers: Some("1".into()),
        database_timeout: Some("500ms".into()),
        shutdown_timeout: Some("5s".into()),
        ..SettingsArgs::default()
    };
    customise(&mut args);
    Settings::load(&args).expect("test settings are valid")
}

pub struct TestApp {
    pub store: Store,
    pub tiers: gatepass::cache::Tiers,
    pub usage_stats: watch::Receiver<gatepass::usage::FlushStats>,
    pub policy: Option<gatepass::policy_file::PolicyHandle>,
    pub running: Option<Running>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ops_addr: SocketAddr,
}

impl TestApp {
    /// Serves against the migrated database behind `pool`.
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, |_| {}).await
    }

    pub async fn spawn_with(pool: PgPool, customise: impl FnOnce(&mut SettingsArgs)) -> Self {
        let settings = test_settings(&database_url(&pool), customise);
        let store = Store::from(PostgresStore::from_pool(pool));
        Self::spawn_on(settings, store).await
    }

    /// Serves with the database behind a [`CuttableLink`], and provisions
    /// the decision table directly (not through the link).
    pub async fn spawn_behind_link(
        pool: PgPool,
        customise: impl FnOnce(&mut SettingsArgs),
    ) -> (Self, CuttableLink, Table) {
        let table = Table::provision(&Store::from(PostgresStore::from_pool(pool.clone()))).await;
        let link = CuttableLink::to(postgres_addr(&pool)).await;
        let options = link.store_options(&pool);
        let settings = test_settings(&options.url, customise);
        let store = Store::connect(&options).expect("store options are valid");
        (Self::spawn_on(settings, store).await, link, table)
    }

    pub async fn spawn_on(settings: Settings, store: Store) -> Self {
        let running = server::start(&settings, store.clone())
            .await
            .expect("gatepass starts");
        Self {
            store,
            tiers: running.tiers.clone(),
            usage_stats: running.usage_stats.clone(),
            policy: running.policy.clone(),
            grpc_addr: running.grpc_addr,
            http_addr: running.http_addr,
            ops_addr: running.ops_addr,
            running: Some(running),
        }
    }

    /// Waits until change notifications are arriving and the index of
    /// existing tokens is loaded.
    pub async fn wait_for_feed(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(self.tiers.feed_connected() && self.tiers.index_loaded()) {
            assert!(
                std::time::Instant::now() < deadline,
                "change feed never connected"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks `token` through the decision core on this instance's tiers,
    /// returning the decision and which tier answered.
    pub async fn check(
        &self,
        token: &str,
    ) -> (
        gatepass::decision::Decision,
        Option<gatepass::cache::Outcome>,
    ) {
        let authorizer = gatepass::check::Authorizer::new(
            self.tiers.clone(),
            None,
            TokenFormat::default(),
            None,
        );
        let header = format!("Bearer {token}");
        let request = gatepass::decision::CheckRequest {
            authorization: gatepass::decision::AuthorizationHeader::One(header.as_bytes()),
            ..Default::default()
        };
        let verdict = authorizer.check(&request).await.expect("check answers");
        (verdict.decision, verdict.outcome)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running
                .stop(Duration::from_secs(5))
                .await
                .expect("clean stop");
        }
    }
}

/// Provisions services and tokens straight through the store.
pub struct Fixtures<'a> {
    pub store: &'a Store,
}

pub struct TokenSpec<'a> {
    pub service: &'a str,
    pub abilities: &'a str,
    pub kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Default for TokenSpec<'_> {
    fn default() -> Self {
        Self {
            service: "billing",
            abilities: "orders:read,inventory:*",
            kind: TokenKind::Access,
            expires_at: None,
        }
    }
}

impl Fixtures<'_> {
    pub async fn service(&self, name: &str, allowlist: &str) -> i64 {
        let (service, _) = self
            .store
            .upsert_service(&ServiceChange {
                name: ServiceName::parse(name).unwrap(),
                description: Some(format!("{name} for tests")),
                ip_allowlist: Some(NetList::parse(allowlist).unwrap()),
            })
            .await
            .unwrap();
        service.id
    }

    /// Issues a token and returns it in plain text with its id.
    pub async fn token(&self, spec: TokenSpec<'_>) -> (String, i64) {
        let secret = TokenFormat::default().generate_secret();
        let info = self
            .store
            .insert_token(&NewToken {
                service: ServiceName::parse(spec.service).unwrap(),
                name: "test".into(),
                digest: secret.digest(),
                abilities: parse_ability_list(spec.abilities).unwrap(),
                kind: spec.kind,
                expires_at: spec.expires_at,
            })
            .await
            .unwrap();
        (IssuedToken::new(info.id, secret).expose(), info.id)
    }

    pub async fn disable(&self, name: &str) {
        self.store
            .set_service_active(&ServiceName::parse(name).unwrap(), false)
            .await
            .unwrap();
    }
}

/// One token for every row of the decision table, on one database.
pub struct Table {
    pub valid: String,
    pub valid_id: i64,
    pub valid_service_id: i64,
    pub revoked: String,
    pub expired: String,
    pub refresh: String,
    pub disabled: String,
    pub allowlisted: String,
    /// A legacy Sanctum token: no prefix, no checksum, looked up by digest.
    pub legacy_without_id: String,
}

impl Table {
    pub async fn provision(store: &Store) -> Self {
        let fixtures = Fixtures { store };
        let valid_service_id = fixtures.service("billing", "").await;
        fixtures.service("retired", "").await;
        fixtures
            .service("office", "10.0.0.0/8, 2001:db8::/32, ::1")
            .await;
        let (valid, valid_id) = fixtures.token(TokenSpec::default()).await;
        let (revoked, revoked_id) = fixtures.token(TokenSpec::default()).await;
        store.revoke_token(revoked_id).await.unwrap();
        let (expired, _) = fixtures
            .token(TokenSpec {
                expires_at: Some(Utc::now() - chrono::Duration::seconds(5)),
                ..TokenSpec::default()
            })
            .await;
        let (refresh, _) = fixtures
            .token(TokenSpec {
                kind: TokenKind::Refresh,
                ..TokenSpec::default()
            })
            .await;
        let (disabled, _) = fixtures
            .token(TokenSpec {
                service: "retired",
                ..TokenSpec::default()
            })
            .await;
        fixtures.disable("retired").await;
        let (allowlisted, _) = fixtures
            .token(TokenSpec {
                service: "office",
                ..TokenSpec::default()
            })
            .await;
        let legacy_without_id = "LegacySanctumTokenWithoutIdOrChecksum0001".to_owned();
        sqlx_insert_legacy(store, &legacy_without_id).await;
        Self {
            valid,
            valid_id,
            valid_service_id,
            revoked,
            expired,
            refresh,
            disabled,
            allowlisted,
            legacy_without_id,
        }
    }

    /// The valid token's id with a wrong secret.
    pub fn wrong_secret(&self) -> String {
        format!(
            "{}|{}",
            self.valid_id, "WrongSecretButWellFormedLegacyShape00000"
        )
    }
}

async fn sqlx_insert_legacy(store: &Store, plain: &str) {
    store
        .insert_token(&NewToken {
            service: ServiceName::parse("billing").unwrap(),
            name: "legacy".into(),
            digest: gatepass::token::TokenDigest::of(plain.as_bytes()),
            abilities: parse_ability_list("*").unwrap(),
            kind: TokenKind::Access,
            expires_at: None,
        })
        .await
        .unwrap();
}

/// A TCP forwarder in front of Postgres or Redis that a test controls, to
/// make a server fail in the ways networks do without touching the shared
/// one: refuse and reset, freeze (sockets stay open, nothing moves), slow.
pub struct CuttableLink {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<LinkMode>>,
}

/// What the link does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Forward,
    /// Open connections are reset, new ones accepted and closed at once.
    Refuse,
    /// Open connections are reset and nothing listens: new connections are
    /// refused by the kernel, as when the server process is gone.
    Closed,
    /// Open and new connections are held open and never forwarded again,
    /// even after the link forwards once more: they are abandoned, as
    /// after a failover or a dead NAT entry.
    Freeze,
    /// Every chunk waits this long in each direction.
    Delay(Duration),
}

impl CuttableLink {
    pub async fn to(target: SocketAddr) -> Self {
        let mut listener = Some(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.as_ref().unwrap().local_addr().unwrap();
        let (mode, _) = watch::channel(LinkMode::Forward);
        let mode = Arc::new(mode);
        let state = mode.clone();
        tokio::spawn(async move {
            let mut modes = state.subscribe();
            loop {
                let Some(open) = listener.as_ref() else {
                    // Closed: nothing listens, the kernel refuses.
                    if modes.wait_for(|m| *m != LinkMode::Closed).await.is_err() {
                        return;
                    }
                    listener = Some(
                        TcpListener::bind(addr)
                            .await
                            .expect("the link's port is free"),
                    );
                    continue;
                };
                let inbound = tokio::select! {
                    accepted = open.accept() => match accepted {
                        Ok((inbound, _)) => inbound,
                        Err(_) => return,
                    },
                    changed = modes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if *modes.borrow_and_update() == LinkMode::Closed {
                            listener = None;
                        }
                        continue;
                    }
                };
                let mut watcher = state.subscribe();
                let current = *watcher.borrow_and_update();
                match current {
                    // Cut: accept and close at once, like a dead server.
                    LinkMode::Refuse | LinkMode::Closed => drop(inbound),
                    LinkMode::Freeze => {
                        tokio::spawn(async move {
                            let _held = inbound;
                            let _ = watcher.wait_for(|_| false).await;
                        });
                    }
                    LinkMode::Forward | LinkMode::Delay(_) => {
                        tokio::spawn(async move {
                            let Ok(outbound) = TcpStream::connect(target).await else {
                                return;
                            };
                            forward(inbound, outbound, watcher).await;
                        });
                    }
                }
            }
        });
        Self { addr, mode }
    }

    /// Resets open connections and refuses new ones.
    pub fn cut(&self) {
        self.set(LinkMode::Refuse);
    }

    pub fn restore(&self) {
        self.set(LinkMode::Forward);
    }

    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// Store options that reach `pool`'s database through this link.
    pub fn store_options(&self, pool: &PgPool) -> StoreOptions {
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .host("127.0.0.1")
            .port(self.addr.port());
        StoreOptions {
            url: options.to_url_lossy().to_string(),
            max_connections: 4,
            timeout: Duration::from_millis(500),
            ..Default::default()
        }
    }
}

/// Pumps both directions until either side closes or the mode says to
/// reset; a freeze stops the pump for good but keeps both sockets open.
async fn forward(inbound: TcpStream, outbound: TcpStream, mut mode: watch::Receiver<LinkMode>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        let (read, to_server) = tokio::select! {
            read = client_read.read(&mut up) => (read, true),
            read = server_read.read(&mut down) => (read, false),
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = *mode.borrow_and_update();
                match current {
                    LinkMode::Refuse | LinkMode::Closed => return,
                    LinkMode::Freeze => break,
                    LinkMode::Forward | LinkMode::Delay(_) => continue,
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            LinkMode::Refuse | LinkMode::Closed => return,
            LinkMode::Freeze => break,
            LinkMode::Delay(delay) => tokio::time::sleep(delay).await,
            LinkMode::Forward => {}
        }
        let written = if to_server {
            server_write.write_all(&up[..n]).await
        } else {
            client_write.write_all(&down[..n]).await
        };
        if written.is_err() {
            return;
        }
    }
    // Frozen: hold every half until the test is over.
    let _held = (client_read, client_write, server_read, server_write);
    let _ = mode.wait_for(|_| false).await;
}

/// The Redis the tests share; each test uses its own key prefix.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let authority = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    authority
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("REDIS_URL is redis://host:port")
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("gatepass-test:{}:", uuid_like())
}

/// 16 random hex digits.
pub fn unique_suffix() -> String {
    uuid_like()
}

/// Reads a `gatepass serve` child's JSON log until it announces its
/// addresses; returns the HTTP and gRPC addresses and a thread collecting
/// the rest of the log.
pub async fn serving_addresses(
    serve: &mut std::process::Child,
) -> (String, String, std::thread::JoinHandle<String>) {
    use std::io::Read;
    let mut stderr = serve.stderr.take().expect("stderr is piped");
    let (chunks_tx, chunks_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer) {
            if n == 0 {
                break;
            }
            let chunk = String::from_utf8_lossy(&buffer[..n]).into_owned();
            all += &chunk;
            let _ = chunks_tx.send(chunk);
        }
        all
    });
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let serving = loop {
        while let Ok(chunk) = chunks_rx.try_recv() {
            seen += &chunk;
        }
        if let Some(line) = seen.lines().find(|l| l.contains("gatepass serving")) {
            break serde_json::from_str::<serde_json::Value>(line).expect("JSON logs");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve never started: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let address = |name: &str| serving["fields"][name].as_str().unwrap().to_owned();
    (address("http"), address("grpc"), reader)
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// Settings arguments for an instance using Redis with `prefix`.
pub fn with_redis(args: &mut SettingsArgs, prefix: &str) {
    args.redis_url = Some(redis_url());
    args.redis_prefix = Some(prefix.to_owned());
}

/// Where the test Postgres listens.
pub fn postgres_addr(pool: &PgPool) -> SocketAddr {
    let options = pool.connect_options();
    let host = match options.get_host() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    format!("{host}:{}", options.get_port())
        .parse()
        .expect("tests reach Postgres over TCP")
}

/// A fresh database of any backend, for the store conformance suite, and
/// which schema gatepass reads it with.
pub struct TestDb {
    db: Db,
    /// Laravel's tables (`GATEPASS_SCHEMA=sanctum`) instead of gatepass's.
    sanctum: bool,
}

enum Db {
    Postgres(PgPool),
    Mysql(MysqlDb),
    Sqlite {
        pool: sqlx::SqlitePool,
        url: String,
        _dir: tempfile::TempDir,
    },
}

impl TestDb {
    fn on(db: Db) -> Self {
        Self { db, sanctum: false }
    }

    /// Laravel's schema, created by Laravel's own Schema builder (PHP), and
    /// gatepass reading it: `store()` is then the sanctum store.
    pub fn with_laravel_schema(mut self) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/gatepass/php/sanctum_app.php"
        );
        let mut php = std::process::Command::new("php")
            .arg(script)
            .arg(self.url())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("php runs (scripts/test installs php-cli and php-laravel-framework)");
        use std::io::Write;
        php.stdin
            .take()
            .expect("stdin")
            .write_all(b"{\"op\":\"schema\"}\n")
            .expect("php reads");
        let output = php.wait_with_output().expect("php exits");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "{}");
        self.sanctum = true;
        self
    }

    /// The empty database `#[sqlx::test(migrations = false)]` made.
    pub async fn postgres(pool: PgPool) -> Self {
        Self::on(Db::Postgres(pool))
    }

    /// A new SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("gatepass.db").display());
        let store = Store::connect(&Self::options(&url)).expect("sqlite url");
        store.migrate().await.expect("sqlite migrations");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite opens");
        Self::on(Db::Sqlite {
            pool,
            url,
            _dir: dir,
        })
    }

    /// A new, empty SQLite file (no gatepass tables), as a Laravel app
    /// would start with.
    pub async fn empty_sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("laravel.db");
        std::fs::File::create(&path).expect("sqlite file");
        let url = format!("sqlite://{}", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite opens");
        Self::on(Db::Sqlite {
            pool,
            url,
            _dir: dir,
        })
    }

    /// The store over this database's Laravel tables, not yet migrated.
    pub fn sanctum_store(&self) -> Store {
        let options = StoreOptions {
            schema: Schema::Sanctum(SanctumOptions::default()),
            ..Self::options(&self.url())
        };
        Store::connect(&options).expect("store url")
    }

    /// The tables, columns, triggers, functions and sequences of the
    /// database, one line each, sorted.
    pub async fn objects(&self) -> Vec<String> {
        let mut objects: Vec<String> = match &self.db {
            Db::Postgres(pool) => sqlx::query_scalar(
                "SELECT c.relkind::text || ' ' || c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' \
                 UNION ALL SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type \
                     || ' ' || is_nullable || ' ' || coalesce(column_default, '') \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal \
                 UNION ALL SELECT 'function ' || p.proname FROM pg_proc p \
                 JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
            )
            .fetch_all(pool)
            .await,
            Db::Mysql(db) => sqlx::query_scalar(
                "SELECT CAST(CONCAT('table ', table_name) AS CHAR) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() \
                 UNION ALL SELECT CAST(CONCAT('column ', table_name, '.', column_name, ' ', \
                     column_type, ' ', is_nullable, ' ', coalesce(column_default, '')) AS CHAR) \
                 FROM information_schema.columns WHERE table_schema = DATABASE() \
                 UNION ALL SELECT CAST(CONCAT('trigger ', trigger_name) AS CHAR) \
                 FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
            )
            .fetch_all(&db.pool)
            .await,
            Db::Sqlite { pool, .. } => sqlx::query_scalar(
                "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master \
                 WHERE name <> 'sqlite_sequence'",
            )
            .fetch_all(pool)
            .await,
        }
        .expect("schema objects");
        objects.sort();
        objects
    }

    /// A database of its own on the MySQL/MariaDB server at `MYSQL_URL`
    /// (default `mysql://root@127.0.0.1:3306/test`), dropped afterwards.
    pub async fn mysql() -> Self {
        let server = mysql_url();
        let name = format!("gatepass_test_{:016x}", rand::random::<u64>());
        let admin = sqlx::MySqlPool::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("MySQL/MariaDB at {server}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("MYSQL_URL names no database: {server}"),
        };
        let pool = sqlx::MySqlPool::connect(&url).await.expect("test database");
        Self::on(Db::Mysql(MysqlDb {
            pool,
            url,
            name,
            server,
        }))
    }

    pub fn url(&self) -> String {
        match &self.db {
            Db::Postgres(pool) => database_url(pool),
            Db::Mysql(db) => db.url.clone(),
            Db::Sqlite { url, .. } => url.clone(),
        }
    }

    fn options(url: &str) -> StoreOptions {
        StoreOptions {
            url: url.to_owned(),
            max_connections: 4,
            timeout: Duration::from_secs(2),
            ..Default::default()
        }
    }

    /// The store as gatepass opens it, migrated.
    pub async fn store(&self) -> Store {
        let store = if self.sanctum {
            self.sanctum_store()
        } else {
            Store::connect(&Self::options(&self.url())).expect("store url")
        };
        store.migrate().await.expect("migrations apply");
        store
    }

    /// Runs plain SQL, as an operator would, binding `id` as the first
    /// parameter when the statement has one.
    pub async fn execute(&self, postgres: &str, mysql: &str, sqlite: &str, id: Option<i64>) {
        match &self.db {
            Db::Mysql(db) => {
                let mut query = sqlx::query(mysql);
                if let Some(id) = id {
                    query = query.bind(id);
                }
                query.execute(&db.pool).await.expect("mysql statement");
            }
            Db::Postgres(pool) => {
                let mut query = sqlx::query(postgres);
                if let Some(id) = id {
                    query = query.bind(id);
                }
                query.execute(pool).await.expect("postgres statement");
            }
            Db::Sqlite { pool, .. } => {
                let mut query = sqlx::query(sqlite);
                if let Some(id) = id {
                    query = query.bind(id);
                }
                query.execute(pool).await.expect("sqlite statement");
            }
        }
    }

    pub async fn token_hash(&self, id: i64) -> Vec<u8> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT token_hash FROM tokens WHERE id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
            }
            Db::Mysql(db) => {
                sqlx::query_scalar("SELECT token_hash FROM tokens WHERE id = ?")
                    .bind(id)
                    .fetch_one(&db.pool)
                    .await
            }
            Db::Sqlite { pool, .. } => {
                sqlx::query_scalar("SELECT token_hash FROM tokens WHERE id = ?1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
            }
        }
        .expect("token row")
    }

    /// Every token row as text, to search for secrets.
    pub async fn dump_tokens(&self) -> String {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM tokens t")
                    .fetch_one(pool)
                    .await
            }
            Db::Mysql(db) => {
                sqlx::query_scalar(
                    "SELECT CAST(group_concat(CONCAT_WS('|', id, name, HEX(token_hash), abilities, \
                     kind, family_id, expires_at) SEPARATOR ' ') AS CHAR) FROM tokens",
                )
                .fetch_one(&db.pool)
                .await
            }
            Db::Sqlite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT group_concat(id || name || quote(token_hash) || abilities || kind \
                 || coalesce(family_id, '') || coalesce(expires_at, ''), ' ') FROM tokens",
                )
                .fetch_one(pool)
                .await
            }
        }
        .expect("token dump")
    }

    /// (token id, family id) in id order.
    pub async fn families(&self) -> Vec<(i64, Option<String>)> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as("SELECT id, family_id::text FROM tokens ORDER BY id")
                    .fetch_all(pool)
                    .await
            }
            Db::Mysql(db) => {
                sqlx::query_as("SELECT id, family_id FROM tokens ORDER BY id")
                    .fetch_all(&db.pool)
                    .await
            }
            Db::Sqlite { pool, .. } => {
                sqlx::query_as("SELECT id, family_id FROM tokens ORDER BY id")
                    .fetch_all(pool)
                    .await
            }
        }
        .expect("families")
    }
}

pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A test's own MySQL database.
#[derive(Debug)]
pub struct MysqlDb {
    pool: sqlx::MySqlPool,
    url: String,
    name: String,
    server: String,
}

impl Drop for MysqlDb {
    /// Drops the database from a thread of its own: a test's runtime may
    /// already be gone.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(admin) = sqlx::MySqlPool::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&admin)
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// A denial's `WWW-Authenticate`, as RFC 6750 §3 writes it: none on 403.
pub fn assert_challenge(status: i32, reason: &str, challenge: Option<&str>) {
    let expected = match (status, reason) {
        (401, "missing_token") => Some(r#"Bearer realm="gatepass""#),
        (401, _) => Some(r#"Bearer realm="gatepass", error="invalid_token""#),
        _ => None,
    };
    assert_eq!(challenge, expected, "{reason}");
}
