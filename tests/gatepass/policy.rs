//! The route policy file through both surfaces: matching, live reload, and
//! refusal of bad files.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use sqlx::PgPool;

use crate::grpc::{EnvoyCall, PERMISSION_DENIED, allowed_headers, assert_denied, check, client};
use crate::helpers::{Fixtures, TestApp, TokenSpec, database_url};

const POLICY: &str = r#"
[[rule]]
path = "/admin/**"
require_all = ["admin"]

[[rule]]
host = "*.internal"
methods = ["DELETE"]
path_prefix = "/orders/"
require_all = ["orders:delete"]

[[rule]]
path_prefix = "/orders/"
require_any = ["orders:read", "orders:write"]
"#;

async fn app_with_policy(pool: PgPool, path: &Path) -> (TestApp, String) {
    let file = path.display().to_string();
    let app = TestApp::spawn_with(pool, |args| args.policy_file = Some(file)).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, _) = fixtures
        .token(TokenSpec {
            abilities: "orders:read",
            ..TokenSpec::default()
        })
        .await;
    (app, token)
}

async fn auth_status(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn route_rules_apply_to_grpc_and_http_alike(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let (app, token) = app_with_policy(pool, &path).await;
    let mut grpc = client(&app).await;

    let allowed = EnvoyCall::bearer(&token).route("GET", "api.internal", "/orders/7?x=1");
    allowed_headers(&check(&mut grpc, allowed).await);
    for (method, host, path) in [
        ("GET", "api.internal", "/admin/users"),
        ("GET", "api.internal", "/orders/../admin/users"),
        ("GET", "api.internal", "/orders/..%2Fadmin/users"),
        ("DELETE", "api.internal:443", "/orders/7"),
    ] {
        let call = EnvoyCall::bearer(&token).route(method, host, path);
        assert_denied(
            &check(&mut grpc, call).await,
            PERMISSION_DENIED,
            403,
            "insufficient_ability",
        );
    }
    // Outside *.internal the DELETE rule does not match; the next one does.
    let call = EnvoyCall::bearer(&token).route("DELETE", "example.com", "/orders/7");
    allowed_headers(&check(&mut grpc, call).await);

    // nginx (X-Original-*), Traefik (X-Forwarded-*), Envoy's HTTP mode.
    let nginx = [
        ("x-original-uri", "/orders/7"),
        ("x-original-method", "GET"),
    ];
    assert_eq!(auth_status(&app, &token, &nginx).await, StatusCode::OK);
    let nginx_admin = [("x-original-uri", "/admin/x"), ("x-original-method", "GET")];
    assert_eq!(
        auth_status(&app, &token, &nginx_admin).await,
        StatusCode::FORBIDDEN
    );
    let traefik_admin = [
        ("x-forwarded-uri", "/admin/x"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-host", "api.internal"),
    ];
    assert_eq!(
        auth_status(&app, &token, &traefik_admin).await,
        StatusCode::FORBIDDEN
    );
    let envoy_http = Client::new()
        .get(app.http_url("/ext-authz/admin/x"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(envoy_http.status(), StatusCode::FORBIDDEN);
    // A client cannot remove a route requirement by sending its own.
    let override_attempt = [
        ("x-original-uri", "/admin/x"),
        ("x-gatepass-require-all", ""),
    ];
    assert_eq!(
        auth_status(&app, &token, &override_attempt).await,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn policy_reloads_on_change_and_a_bad_file_keeps_the_old_one(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let (app, token) = app_with_policy(pool, &path).await;
    let reports = [("x-original-uri", "/reports/1")];
    assert_eq!(auth_status(&app, &token, &reports).await, StatusCode::OK);

    let stricter = format!("{POLICY}\n[default]\nrequire_all = [\"reports:read\"]\n");
    std::fs::write(&path, stricter).unwrap();
    let start = Instant::now();
    while auth_status(&app, &token, &reports).await != StatusCode::FORBIDDEN {
        assert!(start.elapsed() < Duration::from_secs(5), "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let policy = app.policy.clone().expect("policy configured");
    assert_eq!(policy.reload_failures(), 0);
    std::fs::write(
        &path,
        "[[rule]]\npath = \"/reports/**\"\nrequire_all = [\"a b\"]\n",
    )
    .unwrap();
    let start = Instant::now();
    while policy.reload_failures() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "bad file not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stricter policy is still in force.
    assert_eq!(
        auth_status(&app, &token, &reports).await,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn bad_policy_at_start_up_exits_2_naming_the_line(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[[rule]]\npath = \"/a\"\n\n[[rule]]\npath = \"/b\"\npath_prefix = \"/c\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .arg("serve")
        .env_clear()
        .env("GATEPASS_DATABASE_URL", database_url(&pool))
        .env("GATEPASS_GRPC_ADDR", "127.0.0.1:0")
        .env("GATEPASS_HTTP_ADDR", "127.0.0.1:0")
        .env("GATEPASS_OPS_ADDR", "127.0.0.1:0")
        .env("GATEPASS_POLICY_FILE", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GATEPASS_POLICY_FILE"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn check_command_explains_route_requirements(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let url = database_url(&pool);
    let store = gatepass::store::Store::from(gatepass::store::PostgresStore::from_pool(pool));
    let fixtures = Fixtures { store: &store };
    fixtures.service("billing", "").await;
    let (token, _) = fixtures
        .token(TokenSpec {
            abilities: "orders:read",
            ..TokenSpec::default()
        })
        .await;
    let check = |route_path: &str| {
        Command::new(env!("CARGO_BIN_EXE_gatepass"))
            .args(["check", &token, "--path", route_path])
            .env_clear()
            .env("GATEPASS_DATABASE_URL", &url)
            .env("GATEPASS_POLICY_FILE", &path)
            .output()
            .unwrap()
    };
    assert!(check("/orders/1").status.success());
    let admin = check("/admin/users");
    assert_eq!(admin.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&admin.stdout).starts_with("deny: insufficient_ability"));
}
