//! The provisioning API on the ops port, driven as an operator's tooling
//! would: JSON over HTTP with a `gatepass:admin` token.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{Fixtures, TestApp, TokenSpec};

struct Admin<'a> {
    app: &'a TestApp,
    token: String,
}

impl Admin<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Client::new()
            .request(method, self.app.ops_url(&format!("/admin/v1{path}")))
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

async fn admin_app(pool: PgPool) -> (TestApp, String, String) {
    let app = TestApp::spawn(pool).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("ops", "").await;
    let (admin, _) = fixtures
        .token(TokenSpec {
            service: "ops",
            abilities: "gatepass:admin",
            ..TokenSpec::default()
        })
        .await;
    let (reader, _) = fixtures
        .token(TokenSpec {
            service: "ops",
            abilities: "orders:read",
            ..TokenSpec::default()
        })
        .await;
    (app, admin, reader)
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn only_gatepass_admin_tokens_may_provision(pool: PgPool) {
    let (app, _admin, reader) = admin_app(pool).await;
    let anonymous = Client::new()
        .get(app.ops_url("/admin/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let not_admin = Admin {
        app: &app,
        token: reader,
    };
    let (status, body) = not_admin.call(Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_ability");
    let (status, _) = not_admin
        .call(
            Method::POST,
            "/tokens",
            Some(json!({"service": "ops", "abilities": ["*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn an_operator_provisions_issues_and_revokes_over_http(pool: PgPool) {
    let (app, token, _) = admin_app(pool).await;
    app.wait_for_feed().await;
    let admin = Admin { app: &app, token };

    let (status, service) = admin
        .call(
            Method::PUT,
            "/services/billing",
            Some(json!({"description": "Billing API", "ip_allowlist": ["10.0.0.0/8", "::1"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{service}");
    assert_eq!(service["ip_allowlist"], json!(["10.0.0.0/8", "::1"]));
    let (status, service) = admin
        .call(
            Method::PUT,
            "/services/billing",
            Some(json!({"ip_allowlist": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(service["description"], "Billing API");
    assert_eq!(service["ip_allowlist"], json!([]));

    let (status, issued) = admin
        .call(
            Method::POST,
            "/tokens",
            Some(json!({"service": "billing", "name": "ci", "abilities": ["orders:read"], "expires_in": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let plain = issued["token"].as_str().unwrap().to_owned();
    assert!(issued["expires_at"].is_string());
    let id = issued["id"].as_i64().unwrap();
    let auth = |token: String| {
        let url = app.http_url("/auth");
        async move {
            Client::new()
                .get(url)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(auth(plain.clone()).await, StatusCode::OK);

    let (status, tokens) = admin
        .call(Method::GET, "/tokens?service=billing", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens.as_array().unwrap().len(), 1);
    assert!(
        !tokens
            .to_string()
            .contains(plain.split_once('|').unwrap().1)
    );
    let (status, services) = admin.call(Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(services.as_array().unwrap().len(), 2);

    let (status, revoked) = admin
        .call(Method::POST, &format!("/tokens/{id}/revoke"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let start = Instant::now();
    while auth(plain.clone()).await != StatusCode::UNAUTHORIZED {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "revocation not enforced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (status, disabled) = admin
        .call(Method::POST, "/services/billing/disable", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disabled["is_active"], false);
    let (status, enabled) = admin
        .call(Method::POST, "/services/billing/enable", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(enabled["is_active"], true);
    let (status, pruned) = admin
        .call(Method::POST, "/tokens/prune?hours=0", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pruned["pruned"], 1);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn bad_admin_requests_are_clear_errors(pool: PgPool) {
    let (app, token, _) = admin_app(pool).await;
    let admin = Admin { app: &app, token };

    let cases = [
        (
            Method::PUT,
            "/services/Bad%20Name",
            None,
            StatusCode::BAD_REQUEST,
            "invalid service name",
        ),
        (
            Method::PUT,
            "/services/billing",
            Some(json!({"ip_allowlist": ["10.1.2.3/8"]})),
            StatusCode::BAD_REQUEST,
            "did you mean 10.0.0.0/8",
        ),
        (
            Method::PUT,
            "/services/billing",
            Some(json!({"colour": "red"})),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            Method::POST,
            "/tokens",
            Some(json!({"service": "nobody"})),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            Method::POST,
            "/tokens",
            Some(json!({"service": "ops", "abilities": ["a,b"]})),
            StatusCode::BAD_REQUEST,
            "','",
        ),
        (
            Method::POST,
            "/tokens",
            Some(json!({"service": "ops", "expires_in": "soon"})),
            StatusCode::BAD_REQUEST,
            "expires in",
        ),
        (
            Method::POST,
            "/tokens/abc/revoke",
            None,
            StatusCode::BAD_REQUEST,
            "not a number",
        ),
        (
            Method::POST,
            "/tokens/424242/revoke",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            Method::POST,
            "/services/nobody/disable",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ];
    for (method, path, body, status, mentions) in cases {
        let (got, answer) = admin.call(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(mentions)),
            "{method} {path}: {answer}"
        );
    }
    let (status, _) = admin.call(Method::POST, "/tokens", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}
