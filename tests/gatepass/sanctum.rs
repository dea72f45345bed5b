//! A Laravel database read in place (SPEC §10), against a real Laravel:
//! PHP with Debian's Laravel components creates the schema with Laravel's
//! Schema builder and writes services and tokens with Eloquent
//! (`php/sanctum_app.php`), and decides as Sanctum's guard, `tokenCan` and
//! the guide's RestrictServiceIp middleware would. Every test runs on
//! Postgres, MySQL/MariaDB and SQLite.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use gatepass::decision::{Decision, DenyReason};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, test_settings, unique_prefix, with_redis};

/// Generates `postgres::<test>`, `mysql::<test>` and `sqlite::<test>`.
macro_rules! on_every_backend {
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
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::helpers::TestDb::mysql().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::helpers::TestDb::empty_sqlite().await).await;
                }
            )*
        }
    };
}

on_every_backend!(
    gatepass_decides_as_laravel_does,
    eloquent_changes_reach_two_instances_within_a_second,
    migrate_adds_only_gatepass_objects_and_undo_removes_exactly_them,
    tokens_gatepass_issues_work_in_laravel,
    cached_checks_do_not_reach_the_database,
    laravel_last_used_writes_are_not_announced,
    a_database_without_expires_at_is_refused_before_anything_is_installed,
    an_unreadable_allowlist_entry_fails_closed,
);

/// The Laravel application: one PHP process, fed JSON commands.
struct Laravel {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Laravel {
    fn start(db: &TestDb) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/gatepass/php/sanctum_app.php"
        );
        let mut child = Command::new("php")
            .arg(script)
            .arg(db.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("php runs (scripts/test installs php-cli and php-laravel-framework)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn call(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("php reads");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("php answers");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("php answered {line:?} to {command}: {e}"));
        assert!(answer.get("error").is_none(), "{command} → {answer}");
        answer
    }

    /// The Laravel schema, with the guide's services `billing` (allowlist)
    /// and `ledger` (inactive) and a user.
    fn with_schema(db: &TestDb) -> (Self, i64, i64, i64) {
        let mut laravel = Self::start(db);
        laravel.call(json!({"op": "schema"}));
        let billing = laravel.call(json!({"op": "service", "name": "billing",
            "description": "Billing", "ip_allowlist": "10.0.0.0/8, 192.0.2.7"}))["id"]
            .as_i64()
            .unwrap();
        let ledger =
            laravel.call(json!({"op": "service", "name": "ledger", "is_active": false}))["id"]
                .as_i64()
                .unwrap();
        let user = laravel.call(json!({"op": "user", "name": "alice"}))["id"]
            .as_i64()
            .unwrap();
        (laravel, billing, ledger, user)
    }

    fn token(&mut self, spec: Value) -> Value {
        let mut command = json!({"op": "token", "owner": "service"});
        for (key, value) in spec.as_object().expect("an object") {
            command[key] = value.clone();
        }
        self.call(command)
    }
}

impl Drop for Laravel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sanctum's `expiration` in both: minutes.
const EXPIRATION_MINUTES: i64 = 60;

async fn gatepass_on(
    db: &TestDb,
    customise: impl FnOnce(&mut gatepass::config::SettingsArgs),
) -> TestApp {
    let store = db.sanctum_store();
    store
        .migrate()
        .await
        .expect("gatepass installs beside Laravel");
    let settings = test_settings(&db.url(), |args| {
        args.schema = Some("sanctum".into());
        args.sanctum_expiration = Some(EXPIRATION_MINUTES.to_string());
        customise(args);
    });
    let app = TestApp::spawn_on(settings, store).await;
    app.wait_for_feed().await;
    app
}

/// What gatepass's `/auth` answers a request from `ip` for `ability`.
async fn gatepass_status(app: &TestApp, token: &str, ip: &str, ability: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-real-ip", ip);
    if let Some(ability) = ability {
        request = request.header("x-gatepass-require-all", ability);
    }
    request
        .send()
        .await
        .expect("gatepass answers")
        .status()
        .as_u16()
}

/// Laravel fails a request whose token has NULL abilities once a route
/// asks `tokenCan` (PHP 8 raises a TypeError: a 500); gatepass denies it.
fn as_gatepass_answers(laravel_status: u64) -> u16 {
    match laravel_status {
        500 => 403,
        status => status as u16,
    }
}

async fn gatepass_decides_as_laravel_does(db: TestDb) {
    let (mut laravel, billing, ledger, user) = Laravel::with_schema(&db);
    let app = gatepass_on(&db, |_| {}).await;
    let exact = laravel.token(json!({"owner_id": billing, "abilities": ["orders:read"]}));
    let star = laravel.token(json!({"owner_id": billing, "abilities": ["*"]}));
    let null = laravel.token(json!({"owner_id": billing, "abilities": null}));
    let literal = laravel.token(json!({"owner_id": billing, "abilities": ["orders:*"]}));
    let expired = laravel.token(json!({"owner_id": billing, "expires_in_minutes": -1}));
    let aged = laravel.token(json!({"owner_id": billing}));
    laravel.call(json!({"op": "age", "id": aged["id"], "minutes": EXPIRATION_MINUTES + 1}));
    let users = laravel.token(json!({"owner": "user", "owner_id": user}));
    let inactive = laravel.token(json!({"owner_id": ledger}));
    let v2 = laravel.token(json!({"owner_id": billing, "shape": "v2"}));
    let prefixed = laravel.token(json!({"owner_id": billing, "prefix": "acme_live_"}));
    let plain = |token: &Value| token["plain"].as_str().unwrap().to_owned();
    let id_less = |token: &Value| token["secret"].as_str().unwrap().to_owned();
    let wrong_secret = {
        let token = plain(&exact);
        let (id, secret) = token.split_once('|').unwrap();
        format!("{id}|{}", secret.chars().rev().collect::<String>())
    };
    let tampered_checksum = {
        let token = plain(&star);
        let flipped = if token.ends_with('0') { '1' } else { '0' };
        format!("{}{flipped}", &token[..token.len() - 1])
    };
    let inside = "10.1.2.3";
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("exact ability", plain(&exact), inside, Some("orders:read")),
        (
            "missing ability",
            plain(&exact),
            inside,
            Some("orders:write"),
        ),
        ("no ability asked", plain(&exact), inside, None),
        ("* grants any", plain(&star), inside, Some("orders:write")),
        (
            "NULL abilities, ability asked",
            plain(&null),
            inside,
            Some("orders:read"),
        ),
        ("NULL abilities, none asked", plain(&null), inside, None),
        (
            "orders:* is a literal",
            plain(&literal),
            inside,
            Some("orders:read"),
        ),
        (
            "orders:* held literally",
            plain(&literal),
            inside,
            Some("orders:*"),
        ),
        ("expired by expires_at", plain(&expired), inside, None),
        ("expired by expiration minutes", plain(&aged), inside, None),
        ("a user's token", plain(&users), inside, None),
        ("an inactive service", plain(&inactive), inside, None),
        ("allowlist: inside a CIDR", plain(&star), inside, None),
        (
            "allowlist: the listed address",
            plain(&star),
            "192.0.2.7",
            None,
        ),
        ("allowlist: outside", plain(&star), "172.16.0.1", None),
        ("allowlist: IPv6 outside", plain(&star), "2001:db8::1", None),
        ("v2 token", plain(&v2), inside, Some("orders:read")),
        ("id-less v4", id_less(&star), inside, Some("orders:read")),
        ("id-less v2", id_less(&v2), inside, None),
        ("prefixed", plain(&prefixed), inside, Some("orders:read")),
        ("wrong secret", wrong_secret, inside, None),
        ("tampered checksum", tampered_checksum, inside, None),
        (
            "unknown id",
            "999999|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN".into(),
            inside,
            None,
        ),
        ("not a number before |", "x|abc".into(), inside, None),
    ];
    let mut table = Vec::new();
    for (case, token, ip, ability) in &cases {
        let laravel_status = laravel.call(json!({"op": "decide", "token": token, "ip": ip,
            "ability": ability, "expiration": EXPIRATION_MINUTES}))["status"]
            .as_u64()
            .unwrap();
        let expected = as_gatepass_answers(laravel_status);
        // Twice: from the database, then from the cache.
        for _ in 0..2 {
            let status = gatepass_status(&app, token, ip, *ability).await;
            table.push(format!(
                "{case}: laravel {laravel_status}, gatepass {status}"
            ));
            assert_eq!(status, expected, "{case}:\n{}", table.join("\n"));
        }
    }
    let allowed = table
        .iter()
        .filter(|row| row.ends_with("gatepass 200"))
        .count();
    println!(
        "{}: {} cases agree with Laravel ({} allowed)",
        db.url().split(':').next().unwrap_or(""),
        cases.len(),
        allowed / 2
    );
    assert!(
        allowed > 0 && allowed < table.len(),
        "a table that cannot fail"
    );
    app.stop().await;
}

async fn time_until(app: &TestApp, token: &str, wanted: impl Fn(&Decision) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let (decision, _) = app.check(token).await;
        if wanted(&decision) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {decision:?} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn denied(reason: DenyReason) -> impl Fn(&Decision) -> bool {
    move |decision| matches!(decision, Decision::Deny(denied) if *denied == reason)
}

fn allowed(decision: &Decision) -> bool {
    matches!(decision, Decision::Allow(_))
}

/// Two instances sharing Redis; every change made by Eloquent, from the
/// PHP process, reaches both within a second.
async fn eloquent_changes_reach_two_instances_within_a_second(db: TestDb) {
    let (mut laravel, billing, _, _) = Laravel::with_schema(&db);
    laravel.call(json!({"op": "service_update", "id": billing, "ip_allowlist": null}));
    let prefix = unique_prefix();
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(gatepass_on(&db, |args| with_redis(args, &prefix)).await);
    }
    let mut deletes = Vec::new();
    for _ in 0..50 {
        let token = laravel.token(json!({"owner_id": billing}));
        let plain = token["plain"].as_str().unwrap();
        for (instance, app) in instances.iter().enumerate() {
            for _ in 0..2 {
                let (decision, outcome) = app.check(plain).await;
                assert!(
                    allowed(&decision),
                    "instance {instance}: {decision:?} from {outcome:?}, index {:?}",
                    app.tiers.index_state()
                );
            }
        }
        laravel.call(json!({"op": "delete", "id": token["id"]}));
        let committed = Instant::now();
        for app in &instances {
            time_until(app, plain, denied(DenyReason::InvalidToken)).await;
        }
        deletes.push(committed.elapsed());
    }
    deletes.sort();
    let (median, max) = (deletes[deletes.len() / 2], deletes[deletes.len() - 1]);
    println!(
        "{}: 50 Eloquent deletes reached both instances: median {median:?}, max {max:?}",
        db.url().split(':').next().unwrap_or("")
    );
    assert!(max < Duration::from_secs(1), "{max:?}");

    // Abilities, the active flag and the allowlist, changed by Eloquent.
    let token = laravel.token(json!({"owner_id": billing, "abilities": ["*"]}));
    let plain = token["plain"].as_str().unwrap();
    let settle = async |wanted: &dyn Fn(&Decision) -> bool| {
        let committed = Instant::now();
        for app in &instances {
            time_until(app, plain, wanted).await;
        }
        assert!(committed.elapsed() < Duration::from_secs(1));
    };
    for app in &instances {
        assert!(allowed(&app.check(plain).await.0));
    }
    laravel.call(json!({"op": "abilities", "id": token["id"], "abilities": []}));
    settle(&|decision: &Decision| match decision {
        Decision::Allow(record) => record.abilities.header_value().is_empty(),
        Decision::Deny(_) => false,
    })
    .await;
    laravel.call(json!({"op": "service_update", "id": billing, "is_active": false}));
    settle(&denied(DenyReason::ServiceDisabled)).await;
    laravel.call(json!({"op": "service_update", "id": billing, "is_active": true}));
    settle(&allowed).await;
    // These checks carry no client address: any allowlist shuts them out.
    laravel.call(json!({"op": "service_update", "id": billing, "ip_allowlist": "192.0.2.0/24"}));
    settle(&denied(DenyReason::IpNotAllowed)).await;
    laravel.call(json!({"op": "service_update", "id": billing, "ip_allowlist": ""}));
    settle(&allowed).await;
    for app in instances {
        app.stop().await;
    }
}

async fn migrate_adds_only_gatepass_objects_and_undo_removes_exactly_them(db: TestDb) {
    let (mut laravel, billing, _, _) = Laravel::with_schema(&db);
    let before = db.objects().await;
    let store = db.sanctum_store();
    store.migrate().await.expect("installs");
    store.migrate().await.expect("a second run changes nothing");
    let after = db.objects().await;
    let added: Vec<&String> = after.iter().filter(|o| !before.contains(o)).collect();
    let removed: Vec<&String> = before.iter().filter(|o| !after.contains(o)).collect();
    assert!(
        removed.is_empty(),
        "migrate changed Laravel's objects: {removed:?}"
    );
    assert!(!added.is_empty());
    for object in &added {
        let name = object.split(' ').nth(1).unwrap_or("");
        // SQLite names a primary key's index after its table.
        let name = name.strip_prefix("sqlite_autoindex_").unwrap_or(name);
        assert!(
            name.starts_with("gatepass_"),
            "not a gatepass_ object: {object}"
        );
    }
    assert!(
        after.iter().all(|o| !o.contains("_sqlx_migrations")),
        "{after:?}"
    );
    assert!(store.ready().await.unwrap());

    // Laravel keeps working with the triggers in place.
    let token = laravel.token(json!({"owner_id": billing}));
    laravel.call(json!({"op": "abilities", "id": token["id"], "abilities": ["x"]}));
    laravel.call(json!({"op": "delete", "id": token["id"]}));

    store.undo_sanctum().await.expect("undo");
    assert_eq!(db.objects().await, before);
    assert!(store.ready().await.is_err() || !store.ready().await.unwrap());
    // And again with nothing left to remove.
    store.undo_sanctum().await.expect("undo twice");
    let token = laravel.token(json!({"owner_id": billing}));
    laravel.call(json!({"op": "delete", "id": token["id"]}));
}

fn gatepass_cli(db: &TestDb, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .args(args)
        .env_clear()
        .env("GATEPASS_DATABASE_URL", db.url())
        .env("GATEPASS_SCHEMA", "sanctum")
        .output()
        .expect("gatepass runs");
    assert!(
        output.status.success(),
        "gatepass {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// `gatepass service create` and `token issue` write Laravel's rows: the
/// token authenticates in Laravel as the service, `tokenCan` agrees, and
/// a revoke from gatepass is a delete Laravel sees.
async fn tokens_gatepass_issues_work_in_laravel(db: TestDb) {
    let (mut laravel, _, _, _) = Laravel::with_schema(&db);
    gatepass_cli(&db, &["migrate"]);
    gatepass_cli(&db, &["service", "create", "orders", "--ips", "10.0.0.0/8"]);
    let plain = gatepass_cli(
        &db,
        &[
            "token",
            "issue",
            "orders",
            "--name",
            "edge",
            "--abilities",
            "orders:read,orders:*",
            "--expires-in",
            "1h",
        ],
    );
    let plain = plain.trim();
    assert!(!plain.starts_with("gp_") && plain.contains('|'), "{plain}");
    let answer = laravel.call(json!({"op": "decide", "token": plain, "ip": "10.9.9.9",
        "ability": "orders:read", "expiration": null}));
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["service"], "orders");
    let asked = ["orders:read", "orders:*", "orders:write", "billing:read"];
    let laravel_can = laravel.call(json!({"op": "can", "token": plain, "abilities": asked}));
    let app = gatepass_on(&db, |_| {}).await;
    for (ability, can) in asked
        .iter()
        .zip(laravel_can["abilities"].as_array().unwrap())
    {
        let status = gatepass_status(&app, plain, "10.9.9.9", Some(ability)).await;
        assert_eq!(
            status == 200,
            can.as_bool().unwrap(),
            "{ability}: gatepass {status}"
        );
    }
    let rows = laravel.call(json!({"op": "raw", "sql":
        "SELECT tokenable_type, name, abilities, expires_at FROM personal_access_tokens"}));
    let row = &rows["rows"][0];
    assert_eq!(row["tokenable_type"], r"App\Models\Service");
    assert_eq!(row["abilities"], r#"["orders:*","orders:read"]"#);
    let expires_at = row["expires_at"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(expires_at, "%Y-%m-%d %H:%M:%S").is_ok(),
        "Laravel's format: {expires_at}"
    );

    // The admin API writes the same rows.
    gatepass_cli(&db, &["service", "create", "ops"]);
    let admin = gatepass_cli(
        &db,
        &["token", "issue", "ops", "--abilities", "gatepass:admin"],
    );
    let admin_api = |method: reqwest::Method, path: &str, body: Value| {
        reqwest::Client::new()
            .request(method, app.ops_url(&format!("/admin/v1{path}")))
            .header("authorization", format!("Bearer {}", admin.trim()))
            .json(&body)
            .send()
    };
    let created = admin_api(
        reqwest::Method::PUT,
        "/services/shipping",
        json!({"ip_allowlist": ["192.0.2.0/24"]}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let issued: Value = admin_api(
        reqwest::Method::POST,
        "/tokens",
        json!({"service": "shipping", "abilities": ["parcels:read"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let from_api = issued["token"].as_str().expect("a token");
    let answer = laravel.call(
        json!({"op": "decide", "token": from_api, "ip": "192.0.2.10",
        "ability": "parcels:read", "expiration": null}),
    );
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["service"], "shipping");
    let answer = laravel.call(json!({"op": "decide", "token": from_api, "ip": "10.0.0.1",
        "ability": "parcels:read", "expiration": null}));
    assert_eq!(
        answer["status"], 403,
        "the allowlist reads in Laravel: {answer}"
    );

    let id = plain.split('|').next().unwrap();
    gatepass_cli(&db, &["token", "revoke", id]);
    let answer = laravel.call(json!({"op": "decide", "token": plain, "ip": "10.9.9.9",
        "ability": null, "expiration": null}));
    assert_eq!(answer["status"], 401, "{answer}");
    time_until(&app, plain, denied(DenyReason::InvalidToken)).await;
    app.stop().await;
}

/// 10 000 checks of one token cost one lookup, and the last-used time is
/// written in one batched statement, in Laravel's format.
async fn cached_checks_do_not_reach_the_database(db: TestDb) {
    let (mut laravel, billing, _, _) = Laravel::with_schema(&db);
    laravel.call(json!({"op": "service_update", "id": billing, "ip_allowlist": null}));
    let app = gatepass_on(&db, |args| {
        args.last_used_flush_interval = Some("100ms".into());
    })
    .await;
    let token = laravel.token(json!({"owner_id": billing}));
    let plain = token["plain"].as_str().unwrap();
    let before = app.store.lookup_count();
    let authorizer = gatepass::check::Authorizer::new(
        app.tiers.clone(),
        None,
        gatepass::token::TokenFormat::new("").unwrap(),
        None,
    );
    let header = format!("Bearer {plain}");
    for _ in 0..10_000 {
        let request = gatepass::decision::CheckRequest {
            authorization: gatepass::decision::AuthorizationHeader::One(header.as_bytes()),
            ..Default::default()
        };
        let verdict = authorizer.check(&request).await.expect("check answers");
        assert!(allowed(&verdict.decision));
    }
    let lookups = app.store.lookup_count() - before;
    println!(
        "{}: 10000 cached checks, {lookups} database lookup(s)",
        db.url().split(':').next().unwrap_or("")
    );
    assert_eq!(lookups, 1);

    // One check through the server records a use, flushed in a batch.
    assert_eq!(gatepass_status(&app, plain, "10.0.0.1", None).await, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = laravel.call(json!({"op": "raw", "sql": format!(
            "SELECT last_used_at FROM personal_access_tokens WHERE id = {}", token["id"])}));
        if let Some(used) = rows["rows"][0]["last_used_at"].as_str() {
            assert!(
                chrono::NaiveDateTime::parse_from_str(used, "%Y-%m-%d %H:%M:%S").is_ok(),
                "Laravel's format: {used}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// Laravel's guard writes `last_used_at` on every request it
/// authenticates; those writes must not reach gatepass's feed (nor bump a
/// version), or an app still using `auth:sanctum` would flush every cache.
async fn laravel_last_used_writes_are_not_announced(db: TestDb) {
    let (mut laravel, billing, _, _) = Laravel::with_schema(&db);
    let store = db.sanctum_store();
    store.migrate().await.expect("installs");
    let token = laravel.token(json!({"owner_id": billing}));
    let id = token["id"].as_i64().unwrap();
    let version = store
        .find_token_by_id(id)
        .await
        .unwrap()
        .expect("found")
        .version;
    let mut feed = store.changes().await.expect("feed");
    laravel.call(json!({"op": "used", "id": id}));
    laravel.call(json!({"op": "service_update", "id": billing, "description": "renamed"}));
    let quiet = tokio::time::timeout(Duration::from_millis(400), feed.next()).await;
    assert!(quiet.is_err(), "announced: {quiet:?}");
    let record = store.find_token_by_id(id).await.unwrap().expect("found");
    assert_eq!(record.version, version);
    laravel.call(json!({"op": "abilities", "id": id, "abilities": ["x"]}));
    let change = tokio::time::timeout(Duration::from_secs(1), feed.next())
        .await
        .expect("a decision change is announced")
        .expect("feed works")
        .expect("feed connected");
    assert!(
        matches!(change, gatepass::store::Change::Token { id: changed, .. } if changed == id),
        "{change:?}"
    );
}

/// Sanctum before 3.0 had no `expires_at`: the install refuses such a
/// database, naming the column, and leaves it as it was.
async fn a_database_without_expires_at_is_refused_before_anything_is_installed(db: TestDb) {
    let tokens = "CREATE TABLE personal_access_tokens (id BIGINT PRIMARY KEY, \
        tokenable_type VARCHAR(255) NOT NULL, tokenable_id BIGINT NOT NULL, name VARCHAR(255), \
        token VARCHAR(64) NOT NULL, abilities TEXT, last_used_at TIMESTAMP NULL, \
        created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL)";
    let services = "CREATE TABLE services (id BIGINT PRIMARY KEY, name VARCHAR(255), \
        description TEXT, ip_allowlist VARCHAR(255), is_active BOOLEAN, \
        created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL)";
    db.execute(tokens, tokens, tokens, None).await;
    db.execute(services, services, services, None).await;
    let before = db.objects().await;
    let error = db.sanctum_store().migrate().await.expect_err("refused");
    assert!(error.to_string().contains("expires_at"), "{error}");
    assert_eq!(db.objects().await, before);
}

/// Where Symfony's IpUtils would skip an entry it cannot read, gatepass
/// refuses to read the service at all (a documented difference): a typo
/// never widens access, and the check answers 503.
async fn an_unreadable_allowlist_entry_fails_closed(db: TestDb) {
    let (mut laravel, billing, _, _) = Laravel::with_schema(&db);
    laravel
        .call(json!({"op": "service_update", "id": billing, "ip_allowlist": "10.0.0.0/8, office"}));
    let token = laravel.token(json!({"owner_id": billing}));
    let plain = token["plain"].as_str().unwrap();
    let answer = laravel.call(json!({"op": "decide", "token": plain, "ip": "10.1.2.3",
        "ability": null, "expiration": null}));
    assert_eq!(answer["status"], 200, "IpUtils skips the entry: {answer}");
    let app = gatepass_on(&db, |_| {}).await;
    assert_eq!(gatepass_status(&app, plain, "10.1.2.3", None).await, 503);
    laravel.call(json!({"op": "service_update", "id": billing, "ip_allowlist": "10.0.0.0/8"}));
    let deadline = Instant::now() + Duration::from_secs(1);
    while gatepass_status(&app, plain, "10.1.2.3", None).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the fixed allowlist was not read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
}
