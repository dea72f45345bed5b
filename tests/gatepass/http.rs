//! The HTTP surfaces: `/auth` (nginx auth_request, forward auth) and
//! `/ext-authz/…` (Envoy's HTTP mode), over real HTTP.

use reqwest::{Client, Method, StatusCode};
use sqlx::PgPool;

use crate::helpers::{Table, TestApp};

/// A request as nginx's auth subrequest sends it.
fn auth_request(app: &TestApp, token: Option<&str>) -> reqwest::RequestBuilder {
    let request = Client::new()
        .get(app.http_url("/auth"))
        .header("x-original-uri", "/orders/42")
        .header("x-original-method", "GET");
    match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    }
}

async fn assert_denied(response: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(response.status().as_u16(), status, "{reason}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    crate::helpers::assert_challenge(status.into(), reason, challenge.as_deref());
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(response.headers().get("x-gatepass-service").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], reason);
}

fn identity(response: &reqwest::Response) -> (String, String, String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    (
        header("x-gatepass-service"),
        header("x-gatepass-service-id"),
        header("x-gatepass-token-id"),
        header("x-gatepass-abilities"),
    )
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn auth_allows_with_identity_headers_for_any_method(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;

    for method in [Method::GET, Method::POST, Method::DELETE, Method::HEAD] {
        let response = Client::new()
            .request(method.clone(), app.http_url("/auth"))
            .header("authorization", format!("bearer {}", table.valid))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(
            identity(&response),
            (
                "billing".into(),
                table.valid_service_id.to_string(),
                table.valid_id.to_string(),
                "inventory:*,orders:read".into()
            )
        );
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn auth_denies_every_row_of_the_decision_table(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let wrong_secret = table.wrong_secret();

    let cases: Vec<(Option<&str>, u16, &str)> = vec![
        (None, 401, "missing_token"),
        (Some("-5|abc"), 401, "malformed_token"),
        (Some("12|gp_tooShort"), 401, "malformed_token"),
        (
            Some("999999|LegacyShapedSecretForAnUnknownId00000"),
            401,
            "invalid_token",
        ),
        (Some(&wrong_secret), 401, "invalid_token"),
        (Some(&table.revoked), 401, "token_revoked"),
        (Some(&table.expired), 401, "token_expired"),
        (Some(&table.refresh), 401, "wrong_token_kind"),
        (Some(&table.disabled), 403, "service_disabled"),
    ];
    for (token, status, reason) in cases {
        assert_denied(
            auth_request(&app, token).send().await.unwrap(),
            status,
            reason,
        )
        .await;
    }

    let outside = auth_request(&app, Some(&table.allowlisted))
        .header("x-real-ip", "192.0.2.55")
        .send()
        .await
        .unwrap();
    assert_denied(outside, 403, "ip_not_allowed").await;

    let lacking = auth_request(&app, Some(&table.valid))
        .header("x-gatepass-require-all", "orders:read,orders:write")
        .send()
        .await
        .unwrap();
    assert_denied(lacking, 403, "insufficient_ability").await;
    let lacking_any = auth_request(&app, Some(&table.valid))
        .header("x-gatepass-require-any", "admin,billing:read")
        .send()
        .await
        .unwrap();
    assert_denied(lacking_any, 403, "insufficient_ability").await;
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn auth_takes_client_ip_from_trusted_proxies_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;

    // The test talks over ::1, a trusted proxy by default.
    for (real_ip, forwarded, allowed) in [
        (Some("10.2.3.4"), None, true),
        (Some("2001:db8::5"), None, true),
        (None, Some("10.2.3.4"), true),
        (None, Some("10.2.3.4, 192.0.2.1"), false),
        (None, Some("192.0.2.1, 10.2.3.4"), true),
        (Some("192.0.2.1"), Some("10.2.3.4"), false),
    ] {
        let mut request = auth_request(&app, Some(&table.allowlisted));
        if let Some(ip) = real_ip {
            request = request.header("x-real-ip", ip);
        }
        if let Some(list) = forwarded {
            request = request.header("x-forwarded-for", list);
        }
        let status = request.send().await.unwrap().status();
        let expected = if allowed {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "{real_ip:?} {forwarded:?}");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn untrusted_peer_cannot_claim_an_address(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| {
        args.trusted_proxies = Some("10.0.0.0/8".into());
    })
    .await;
    let table = Table::provision(&app.store).await;

    // The peer (::1) is in the allowlist itself, so its own address decides.
    let response = auth_request(&app, Some(&table.allowlisted))
        .header("x-real-ip", "192.0.2.1")
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn ext_authz_answers_exactly_200_for_any_method_and_path(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;

    for (method, path) in [
        (Method::GET, "/ext-authz/orders/42?expand=lines"),
        (Method::PUT, "/ext-authz/"),
        (Method::PATCH, "/ext-authz"),
        (Method::OPTIONS, "/ext-authz/a/b/c"),
    ] {
        let response = Client::new()
            .request(method.clone(), app.http_url(path))
            .header("authorization", format!("Bearer {}", table.valid))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        assert_eq!(identity(&response).0, "billing");
    }

    let denied = Client::new()
        .post(app.http_url("/ext-authz/orders"))
        .header("authorization", format!("Bearer {}", table.revoked))
        .send()
        .await
        .unwrap();
    assert_denied(denied, 401, "token_revoked").await;
    let forbidden = Client::new()
        .get(app.http_url("/ext-authz/orders"))
        .header("authorization", format!("Bearer {}", table.valid))
        .header("x-gatepass-require-all", "admin")
        .send()
        .await
        .unwrap();
    assert_denied(forbidden, 403, "insufficient_ability").await;
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn bad_header_input_is_denied_never_a_server_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;

    let non_utf8 = reqwest::header::HeaderValue::from_bytes(b"Bearer 1|\xff\xfe\xfd").unwrap();
    let response = Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", non_utf8)
        .send()
        .await
        .unwrap();
    assert_denied(response, 401, "malformed_token").await;

    // 64 KiB: refused or denied, never a 5xx.
    let huge = format!("Bearer {}|{}", table.valid_id, "a".repeat(64 * 1024));
    let status = Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", huge)
        .send()
        .await
        .map(|r| r.status());
    match status {
        Ok(status) => assert!(status.is_client_error(), "{status}"),
        Err(error) => assert!(error.is_request() || error.is_connect(), "{error}"),
    }

    let garbage_ip = auth_request(&app, Some(&table.allowlisted))
        .header("x-real-ip", "not-an-ip")
        .header("x-forwarded-for", "also, not, ips")
        .send()
        .await
        .unwrap();
    assert_denied(garbage_ip, 403, "ip_not_allowed").await;
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn unreachable_store_answers_503(pool: PgPool) {
    let (app, link, table) = TestApp::spawn_behind_link(pool, |_| {}).await;

    assert_eq!(
        auth_request(&app, Some(&table.valid))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    link.cut();
    // Never looked up, so not cached: the answer cannot be known.
    let response = auth_request(&app, Some(&table.expired))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("x-gatepass-service").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    let ready = Client::new()
        .get(app.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn health_and_readiness_answer_on_the_ops_port(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.wait_for_feed().await;
    let health = Client::new()
        .get(app.ops_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = Client::new()
        .get(app.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["store"], "ok");
    assert_eq!(body["index"], "loaded");
    app.stop().await;
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    Client::new()
        .post(app.http_url("/v1/tokens/refresh"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn refresh_tokens_rotate_once_and_a_replay_revokes_the_family(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fixtures = crate::helpers::Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (first, _) = fixtures
        .token(crate::helpers::TokenSpec {
            kind: gatepass::model::TokenKind::Refresh,
            abilities: "orders:read",
            ..Default::default()
        })
        .await;

    let response = refresh(&app, &first).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.contains("|gp_") && second.contains("|gp_"));

    // The new access token works where the refresh token never did.
    let checked = auth_request(&app, Some(&access)).send().await.unwrap();
    assert_eq!(checked.status(), StatusCode::OK);
    assert_eq!(identity(&checked).3, "orders:read");
    assert_denied(
        auth_request(&app, Some(&second)).send().await.unwrap(),
        401,
        "wrong_token_kind",
    )
    .await;
    assert_denied(refresh(&app, &access).await, 401, "wrong_token_kind").await;

    // Replaying the spent token revokes its successor too.
    assert_denied(refresh(&app, &first).await, 401, "token_revoked").await;
    assert_denied(refresh(&app, &second).await, 401, "token_revoked").await;
    assert_denied(refresh(&app, "").await, 401, "malformed_token").await;
    let no_token = Client::new()
        .post(app.http_url("/v1/tokens/refresh"))
        .send()
        .await
        .unwrap();
    assert_denied(no_token, 401, "missing_token").await;
    let wrong_method = Client::new()
        .get(app.http_url("/v1/tokens/refresh"))
        .send()
        .await
        .unwrap();
    assert!(wrong_method.status().is_client_error());
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn concurrent_refreshes_of_one_token_issue_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fixtures = crate::helpers::Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, _) = fixtures
        .token(crate::helpers::TokenSpec {
            kind: gatepass::model::TokenKind::Refresh,
            ..Default::default()
        })
        .await;

    let attempts = futures_util::future::join_all((0..8).map(|_| refresh(&app, &token))).await;
    let issued = attempts
        .iter()
        .filter(|response| response.status() == StatusCode::OK)
        .count();
    assert_eq!(issued, 1, "a refresh token is spent exactly once");
    app.stop().await;
}

/// `GATEPASS_ABILITY_WILDCARDS=false`: Sanctum's rule, where `inventory:*`
/// is a literal name and only `*` grants everything.
#[sqlx::test(migrations = "migrations/postgres")]
async fn without_wildcards_a_prefix_star_is_a_literal(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| {
        args.ability_wildcards = Some("false".into());
    })
    .await;
    let fixtures = crate::helpers::Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, _) = fixtures.token(crate::helpers::TokenSpec::default()).await;
    let (star, _) = fixtures
        .token(crate::helpers::TokenSpec {
            abilities: "*",
            ..Default::default()
        })
        .await;
    let checked = |token: &str, required: &str| {
        auth_request(&app, Some(token)).header("x-gatepass-require-all", required.to_owned())
    };
    let literal = checked(&token, "inventory:*").send().await.unwrap();
    assert_eq!(literal.status(), StatusCode::OK);
    let exact = checked(&token, "orders:read").send().await.unwrap();
    assert_eq!(exact.status(), StatusCode::OK);
    let under_prefix = checked(&token, "inventory:write").send().await.unwrap();
    assert_denied(under_prefix, 403, "insufficient_ability").await;
    let everything = checked(&star, "inventory:write").send().await.unwrap();
    assert_eq!(everything.status(), StatusCode::OK);
    app.stop().await;
}
