//! nginx `auth_request` end to end: a real nginx runs the shipped
//! `nginx/nginx.conf` and `nginx/gatepass.conf`, with only ports and paths
//! changed, between a client, the real gatepass and an upstream that echoes
//! what reaches it. nginx must be installed (`scripts/test` installs it);
//! without it these tests fail, they never skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Fixtures, Table, TestApp, TokenSpec};
use crate::upstream::{Echo, Seen};

/// The nginx binary: on `PATH`, or where Debian puts it.
fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .map(|dir| dir.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|candidate| candidate.is_file())
        .expect(
            "nginx not found on PATH or at /usr/sbin/nginx: install it \
             (apt-get install nginx; scripts/test does) to run the nginx tests",
        )
}

/// Reads a shipped file from `nginx/`.
fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("nginx")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `from`, which the shipped file must contain.
fn swap(conf: String, from: &str, to: &str) -> String {
    assert!(
        conf.contains(from),
        "nginx/nginx.conf no longer has {from:?}"
    );
    conf.replace(from, to)
}

/// The shipped nginx.conf with its ports and paths moved to the test's.
fn templated_config(dir: &Path, port: u16, gatepass: SocketAddr, upstream: SocketAddr) -> String {
    let dir = dir.display();
    let conf = shipped("nginx.conf");
    let conf = swap(conf, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let conf = swap(conf, "127.0.0.1:8080", &gatepass.to_string());
    let conf = swap(conf, "127.0.0.1:9000", &upstream.to_string());
    let conf = swap(conf, "/run/nginx.pid", &format!("{dir}/nginx.pid"));
    let conf = swap(conf, "/var/log/nginx/", &format!("{dir}/"));
    let conf = swap(conf, "/var/lib/nginx/", &format!("{dir}/"));
    assert!(
        !conf.contains("/var/") && !conf.contains("/run/"),
        "a path of nginx/nginx.conf is not templated:\n{conf}"
    );
    conf
}

/// A running nginx; killed when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    async fn start(gatepass: SocketAddr, upstream: SocketAddr) -> Self {
        let binary = nginx_binary();
        // A port picked free can be taken before nginx binds it: try again.
        for _ in 0..3 {
            if let Some(nginx) = Self::try_start(&binary, gatepass, upstream).await {
                return nginx;
            }
        }
        panic!("nginx could not bind a free port three times");
    }

    async fn try_start(binary: &Path, gatepass: SocketAddr, upstream: SocketAddr) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        // Workers drop root privileges and still need the temp paths.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            templated_config(dir.path(), port, gatepass, upstream),
        )
        .unwrap();
        std::fs::write(dir.path().join("gatepass.conf"), shipped("gatepass.conf")).unwrap();
        let base_args = |command: &mut Command| {
            command
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null());
        };

        let mut test = Command::new(binary);
        base_args(&mut test);
        let checked = test.arg("-t").output().expect("nginx -t runs");
        assert!(
            checked.status.success(),
            "nginx -t rejects the shipped configuration:\n{}",
            String::from_utf8_lossy(&checked.stderr)
        );

        let mut run = Command::new(binary);
        base_args(&mut run);
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = run
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Self { child, dir, port };

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                let log = nginx.logs();
                if log.contains("Address already in use") {
                    return None;
                }
                panic!("nginx exited with {status}:\n{log}");
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(nginx);
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10s:\n{}",
                nginx.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|name| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gatepass on IPv4 loopback (nginx's upstream address), an echo upstream
/// and nginx between them.
async fn stack(pool: PgPool) -> (TestApp, Echo, Nginx) {
    let app = TestApp::spawn_with(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let echo = Echo::start().await;
    let nginx = Nginx::start(app.http_addr, echo.addr).await;
    (app, echo, nginx)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts a denial as nginx answers it: the status, a JSON body, and
/// gatepass's `WWW-Authenticate` exactly once on a 401.
async fn assert_denied(
    response: reqwest::Response,
    status: u16,
    challenge: Option<&str>,
    case: &str,
) {
    assert_eq!(response.status().as_u16(), status, "{case}");
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = challenge.into_iter().map(str::to_owned).collect();
    assert_eq!(challenges, expected, "{case}");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json",
        "{case}"
    );
    let body: Value = response.json().await.unwrap();
    let error = if status == 401 {
        "unauthorized"
    } else {
        "forbidden"
    };
    assert_eq!(body["error"], error, "{case}");
}

const NO_CREDENTIAL: &str = r#"Bearer realm="gatepass""#;
const INVALID_TOKEN: &str = r#"Bearer realm="gatepass", error="invalid_token""#;

#[sqlx::test(migrations = "migrations/postgres")]
async fn valid_token_reaches_the_upstream_with_identity_headers_and_without_authorization(
    pool: PgPool,
) {
    let (app, echo, nginx) = stack(pool).await;
    let table = Table::provision(&app.store).await;
    let client = Client::new();

    let seen = Seen::from(
        client
            .get(nginx.url("/orders/42?page=2"))
            .header("authorization", bearer(&table.valid))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.0["method"], "GET");
    assert_eq!(seen.0["uri"], "/orders/42?page=2");
    assert_eq!(seen.one("x-gatepass-service"), "billing");
    assert_eq!(
        seen.one("x-gatepass-service-id"),
        table.valid_service_id.to_string()
    );
    assert_eq!(seen.one("x-gatepass-token-id"), table.valid_id.to_string());
    assert_eq!(seen.one("x-gatepass-abilities"), "inventory:*,orders:read");
    assert_eq!(seen.all("authorization"), Vec::<String>::new());

    // A body still reaches the upstream; only the check goes without it.
    let seen = Seen::from(
        client
            .post(nginx.url("/"))
            .header("authorization", bearer(&table.valid))
            .body("amount=12")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.0["method"], "POST");
    assert_eq!(seen.0["body"], "amount=12");
    assert_eq!(seen.one("x-gatepass-token-id"), table.valid_id.to_string());
    assert_eq!(seen.all("authorization"), Vec::<String>::new());
    assert_eq!(echo.hits(), 2);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn every_denial_reaches_the_client_from_nginx_and_nothing_reaches_the_upstream(pool: PgPool) {
    let (app, echo, nginx) = stack(pool).await;
    let table = Table::provision(&app.store).await;
    let wrong_secret = table.wrong_secret();
    let client = Client::new();

    let cases: Vec<(&str, Option<String>, u16, Option<&str>)> = vec![
        ("missing_token", None, 401, Some(NO_CREDENTIAL)),
        (
            "missing_token (other scheme)",
            Some("Basic dXNlcjpwYXNz".into()),
            401,
            Some(NO_CREDENTIAL),
        ),
        (
            "malformed_token",
            Some(bearer("-5|abc")),
            401,
            Some(INVALID_TOKEN),
        ),
        (
            "invalid_token",
            Some(bearer(&wrong_secret)),
            401,
            Some(INVALID_TOKEN),
        ),
        (
            "token_revoked",
            Some(bearer(&table.revoked)),
            401,
            Some(INVALID_TOKEN),
        ),
        (
            "token_expired",
            Some(bearer(&table.expired)),
            401,
            Some(INVALID_TOKEN),
        ),
        (
            "wrong_token_kind",
            Some(bearer(&table.refresh)),
            401,
            Some(INVALID_TOKEN),
        ),
        ("service_disabled", Some(bearer(&table.disabled)), 403, None),
        // nginx tells gatepass the client is 127.0.0.1, outside the allowlist.
        (
            "ip_not_allowed",
            Some(bearer(&table.allowlisted)),
            403,
            None,
        ),
    ];
    for (case, authorization, status, challenge) in cases {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let mut request = client.request(method.clone(), nginx.url("/orders/7"));
            if let Some(authorization) = &authorization {
                request = request.header("authorization", authorization);
            }
            let response = request.send().await.unwrap();
            assert_denied(response, status, challenge, &format!("{case} {method}")).await;
        }
    }

    // A client cannot talk its way into the allowlist.
    let spoofed = client
        .get(nginx.url("/orders/7"))
        .header("authorization", bearer(&table.allowlisted))
        .header("x-real-ip", "10.1.2.3")
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_denied(spoofed, 403, None, "ip_not_allowed, spoofed address").await;
    assert_eq!(echo.hits(), 0, "a denied request reached the upstream");
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn revoked_token_is_denied_by_nginx_with_www_authenticate(pool: PgPool) {
    let (app, _echo, nginx) = stack(pool).await;
    app.wait_for_feed().await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, id) = fixtures.token(TokenSpec::default()).await;
    let client = Client::new();
    let request = || {
        client
            .get(nginx.url("/orders/1"))
            .header("authorization", bearer(&token))
            .send()
    };
    assert_eq!(request().await.unwrap().status(), StatusCode::OK);

    app.store.revoke_token(id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let denied = loop {
        let response = request().await.unwrap();
        if response.status() != StatusCode::OK {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked token still passed nginx after 5s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_denied(denied, 401, Some(INVALID_TOKEN), "token_revoked").await;
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn spoofed_identity_headers_from_the_client_are_overwritten_upstream(pool: PgPool) {
    let (app, _echo, nginx) = stack(pool).await;
    let table = Table::provision(&app.store).await;
    let client = Client::new();
    let spoof = |request: reqwest::RequestBuilder| {
        request
            .header("x-gatepass-service", "admin")
            .header("X-Gatepass-Service-Id", "1")
            .header("x-gatepass-token-id", "1")
            .header("x-gatepass-abilities", "*")
            .header("x-gatepass-abilities", "gatepass:admin")
    };

    let seen = Seen::from(
        spoof(client.get(nginx.url("/orders/1")))
            .header("authorization", bearer(&table.valid))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.one("x-gatepass-service"), "billing");
    assert_eq!(
        seen.one("x-gatepass-service-id"),
        table.valid_service_id.to_string()
    );
    assert_eq!(seen.one("x-gatepass-token-id"), table.valid_id.to_string());
    assert_eq!(seen.one("x-gatepass-abilities"), "inventory:*,orders:read");

    // A location that opts out of the check still drops them, and the
    // credential.
    let seen = Seen::from(
        spoof(client.get(nginx.url("/public/page")))
            .header("authorization", bearer(&table.valid))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for name in [
        "x-gatepass-service",
        "x-gatepass-service-id",
        "x-gatepass-token-id",
        "x-gatepass-abilities",
        "authorization",
    ] {
        assert_eq!(seen.all(name), Vec::<String>::new(), "{name} on /public/");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn per_location_requirements_are_enforced_and_a_client_cannot_remove_them(pool: PgPool) {
    let (app, echo, nginx) = stack(pool).await;
    let table = Table::provision(&app.store).await;
    let (orders_only, _) = Fixtures { store: &app.store }
        .token(TokenSpec {
            abilities: "orders:read",
            ..TokenSpec::default()
        })
        .await;
    let client = Client::new();
    let status = |path: &'static str, token: &str, extra: Option<(&'static str, &'static str)>| {
        let mut request = client
            .get(nginx.url(path))
            .header("authorization", bearer(token));
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // /orders/ requires orders:read, /admin/ admin:read and admin:write,
    // /inventory/ inventory:read or inventory:write.
    assert_eq!(status("/orders/1", &table.valid, None).await, 200);
    assert_eq!(status("/inventory/1", &table.valid, None).await, 200);
    assert_eq!(status("/orders/1", &orders_only, None).await, 200);
    assert_eq!(status("/inventory/1", &orders_only, None).await, 403);
    assert_eq!(status("/admin/users", &table.valid, None).await, 403);
    let hits = echo.hits();

    for extra in [
        ("x-gatepass-require-all", ""),
        ("x-gatepass-require-all", "orders:read"),
        ("x-gatepass-require-any", "orders:read"),
    ] {
        let response = client
            .get(nginx.url("/admin/users"))
            .header("authorization", bearer(&table.valid))
            .header(extra.0, extra.1)
            .send()
            .await
            .unwrap();
        assert_denied(response, 403, None, &format!("{extra:?}")).await;
        assert_eq!(status("/inventory/1", &orders_only, Some(extra)).await, 403);
    }
    assert_eq!(echo.hits(), hits, "a denied request reached the upstream");

    // The check location itself is not reachable from outside.
    assert_eq!(status("/_gatepass_auth", &table.valid, None).await, 404);
    app.stop().await;
}

/// Asserts nginx's answer when the check could not be made.
async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn gatepass_answering_503_becomes_a_json_503_from_nginx(pool: PgPool) {
    let (app, link, table) = TestApp::spawn_behind_link(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let echo = Echo::start().await;
    let nginx = Nginx::start(app.http_addr, echo.addr).await;
    link.cut();

    // Never looked up, so not cached: gatepass itself answers 503.
    let direct = Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", bearer(&table.expired))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = Client::new()
        .get(nginx.url("/orders/1"))
        .header("authorization", bearer(&table.valid))
        .send()
        .await
        .unwrap();
    assert_unavailable(response).await;
    assert_eq!(echo.hits(), 0);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn stopped_gatepass_becomes_a_json_503_from_nginx(pool: PgPool) {
    let (app, echo, nginx) = stack(pool).await;
    let table = Table::provision(&app.store).await;
    let client = Client::new();
    let request = || {
        client
            .get(nginx.url("/orders/1"))
            .header("authorization", bearer(&table.valid))
            .send()
    };
    // Leaves a kept-alive connection to gatepass in nginx's pool.
    assert_eq!(request().await.unwrap().status(), StatusCode::OK);

    app.stop().await;
    assert_unavailable(request().await.unwrap()).await;
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn gatepass_that_never_answers_becomes_a_json_503_after_the_read_timeout() {
    // Accepts connections and holds them without a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let echo = Echo::start().await;
    let nginx = Nginx::start(silent_addr, echo.addr).await;

    let started = Instant::now();
    let response = Client::new()
        .get(nginx.url("/orders/1"))
        .header("authorization", "Bearer 1|whatever")
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_unavailable(response).await;
    // proxy_read_timeout 3s in gatepass.conf.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(echo.hits(), 0);
    holder.abort();
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn a_failing_upstream_is_not_reported_as_gatepass_unavailable(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let table = Table::provision(&app.store).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nginx = Nginx::start(app.http_addr, closed).await;

    let response = Client::new()
        .get(nginx.url("/orders/1"))
        .header("authorization", bearer(&table.valid))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().get("retry-after").is_none());
    app.stop().await;
}
