//! The gRPC surface, driven by envoy-types' generated client with requests
//! shaped the way Envoy's ext_authz filter builds them.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use sqlx::PgPool;
use tonic::transport::Channel;

use crate::helpers::{Fixtures, Table, TestApp, TokenSpec};

pub const UNAUTHENTICATED: i32 = 16;
pub const PERMISSION_DENIED: i32 = 7;

/// What Envoy sends for `GET /orders/42` from `source_ip`.
pub struct EnvoyCall<'a> {
    headers: Vec<(&'a str, String)>,
    source_ip: &'a str,
    context_extensions: Vec<(&'a str, &'a str)>,
    method: &'a str,
    host: &'a str,
    path: &'a str,
}

impl<'a> EnvoyCall<'a> {
    pub fn new() -> Self {
        Self {
            headers: Vec::new(),
            source_ip: "192.0.2.10",
            context_extensions: Vec::new(),
            method: "GET",
            host: "api.internal",
            path: "/orders/42?expand=lines",
        }
    }

    pub fn bearer(token: &str) -> Self {
        Self::new().header("authorization", format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn source(mut self, ip: &'a str) -> Self {
        self.source_ip = ip;
        self
    }

    pub fn context(mut self, key: &'a str, value: &'a str) -> Self {
        self.context_extensions.push((key, value));
        self
    }

    /// The original request: method, `:authority` and `:path`.
    pub fn route(mut self, method: &'a str, host: &'a str, path: &'a str) -> Self {
        (self.method, self.host, self.path) = (method, host, path);
        self
    }

    pub fn build(self) -> CheckRequest {
        let mut headers: HashMap<String, String> = [
            (":authority", self.host),
            (":path", self.path),
            (":method", self.method),
            (":scheme", "http"),
            ("user-agent", "billing/1.0"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "5c3e8d6e-7c43-4a5e-9d58-1f0f8d1b2c3d"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in self.headers {
            headers.insert(name.to_owned(), value);
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(self.source_ip, 53_211)),
                destination: Some(peer("10.0.0.2", 8000)),
                request: Some(Request {
                    time: None,
                    http: Some(HttpRequest {
                        id: "13043385626347064843".into(),
                        method: self.method.into(),
                        headers,
                        path: self.path.into(),
                        host: self.host.into(),
                        scheme: "http".into(),
                        protocol: "HTTP/1.1".into(),
                        ..Default::default()
                    }),
                }),
                context_extensions: self
                    .context_extensions
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ..Default::default()
            }),
        }
    }
}

fn peer(ip: &str, port: u32) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_owned(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

pub async fn client_at(addr: &str) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects")
}

pub async fn client(app: &TestApp) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(format!("http://{}", app.grpc_addr))
        .await
        .expect("gRPC connects")
}

pub async fn check(
    client: &mut AuthorizationClient<Channel>,
    call: EnvoyCall<'_>,
) -> CheckResponse {
    client
        .check(call.build())
        .await
        .expect("Check answers")
        .into_inner()
}

/// (status code, header name → (value, append)) of an allow.
pub fn allowed_headers(response: &CheckResponse) -> HashMap<String, (String, Option<bool>)> {
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("expected an OkHttpResponse: {response:?}");
    };
    assert_eq!(ok.headers_to_remove, ["authorization"]);
    #[allow(deprecated)]
    ok.headers
        .iter()
        .map(|option| {
            let header = option.header.as_ref().unwrap();
            (
                header.key.clone(),
                (
                    header.value.clone(),
                    option.append.as_ref().map(|b| b.value),
                ),
            )
        })
        .collect()
}

pub fn assert_denied(response: &CheckResponse, code: i32, http: i32, reason: &str) {
    assert_eq!(
        response.status.as_ref().unwrap().code,
        code,
        "{reason}: {response:?}"
    );
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("{reason}: expected a DeniedHttpResponse: {response:?}");
    };
    assert_eq!(denied.status.as_ref().unwrap().code, http, "{reason}");
    let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["error"], reason);
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let challenge = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone());
    crate::helpers::assert_challenge(http, reason, challenge.as_deref());
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn valid_token_is_allowed_with_identity_headers_as_overwrite(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;

    let response = check(&mut client, EnvoyCall::bearer(&table.valid)).await;
    let headers = allowed_headers(&response);
    assert_eq!(
        headers["x-gatepass-service"],
        ("billing".into(), Some(false))
    );
    assert_eq!(
        headers["x-gatepass-service-id"],
        (table.valid_service_id.to_string(), Some(false))
    );
    assert_eq!(
        headers["x-gatepass-token-id"],
        (table.valid_id.to_string(), Some(false))
    );
    assert_eq!(
        headers["x-gatepass-abilities"],
        ("inventory:*,orders:read".into(), Some(false))
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn client_sent_identity_headers_are_overwritten(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;

    let call = EnvoyCall::bearer(&table.valid)
        .header("x-gatepass-service", "admin")
        .header("x-gatepass-abilities", "*");
    let headers = allowed_headers(&check(&mut client, call).await);
    assert_eq!(
        headers["x-gatepass-service"],
        ("billing".into(), Some(false))
    );
    assert_eq!(
        headers["x-gatepass-abilities"],
        ("inventory:*,orders:read".into(), Some(false))
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn every_row_of_the_decision_table_is_denied_with_its_reason(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;
    let huge = format!("1|{}", "a".repeat(64 * 1024));
    let wrong_secret = table.wrong_secret();

    let cases: Vec<(EnvoyCall, i32, i32, &str)> = vec![
        (EnvoyCall::new(), UNAUTHENTICATED, 401, "missing_token"),
        (
            EnvoyCall::new().header("authorization", "Basic dXNlcjpwYXNz"),
            UNAUTHENTICATED,
            401,
            "missing_token",
        ),
        (
            EnvoyCall::bearer("-5|abc"),
            UNAUTHENTICATED,
            401,
            "malformed_token",
        ),
        (
            EnvoyCall::bearer(""),
            UNAUTHENTICATED,
            401,
            "malformed_token",
        ),
        (
            EnvoyCall::bearer(&huge),
            UNAUTHENTICATED,
            401,
            "malformed_token",
        ),
        (
            EnvoyCall::bearer("1|gp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA00000000"),
            UNAUTHENTICATED,
            401,
            "malformed_token",
        ),
        (
            EnvoyCall::bearer("999999|LegacyShapedSecretForAnUnknownId00000"),
            UNAUTHENTICATED,
            401,
            "invalid_token",
        ),
        (
            EnvoyCall::bearer(&wrong_secret),
            UNAUTHENTICATED,
            401,
            "invalid_token",
        ),
        (
            EnvoyCall::bearer(&table.revoked),
            UNAUTHENTICATED,
            401,
            "token_revoked",
        ),
        (
            EnvoyCall::bearer(&table.expired),
            UNAUTHENTICATED,
            401,
            "token_expired",
        ),
        (
            EnvoyCall::bearer(&table.refresh),
            UNAUTHENTICATED,
            401,
            "wrong_token_kind",
        ),
        (
            EnvoyCall::bearer(&table.disabled),
            PERMISSION_DENIED,
            403,
            "service_disabled",
        ),
        (
            EnvoyCall::bearer(&table.allowlisted).source("192.0.2.10"),
            PERMISSION_DENIED,
            403,
            "ip_not_allowed",
        ),
        (
            EnvoyCall::bearer(&table.allowlisted).source("2001:db9::1"),
            PERMISSION_DENIED,
            403,
            "ip_not_allowed",
        ),
        (
            EnvoyCall::bearer(&table.valid).context("require_all", "orders:read,orders:write"),
            PERMISSION_DENIED,
            403,
            "insufficient_ability",
        ),
        (
            EnvoyCall::bearer(&table.valid).context("require_any", "billing:read,admin"),
            PERMISSION_DENIED,
            403,
            "insufficient_ability",
        ),
    ];
    for (call, code, http, reason) in cases {
        let response = check(&mut client, call).await;
        assert_denied(&response, code, http, reason);
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn allowlists_match_ipv4_ipv6_and_mapped_addresses(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;

    for ip in ["10.1.2.3", "2001:db8::77", "::1", "::ffff:10.9.8.7"] {
        let response = check(
            &mut client,
            EnvoyCall::bearer(&table.allowlisted).source(ip),
        )
        .await;
        assert_eq!(
            allowed_headers(&response)["x-gatepass-service"].0,
            "office",
            "{ip}"
        );
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn route_requirements_from_context_extensions_are_enforced(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;

    let call = EnvoyCall::bearer(&table.valid)
        .context("require_all", "orders:read, inventory:write")
        .context("require_any", "billing:read,inventory:read");
    allowed_headers(&check(&mut client, call).await);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn legacy_sanctum_token_without_id_is_looked_up_by_digest(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;

    let response = check(&mut client, EnvoyCall::bearer(&table.legacy_without_id)).await;
    assert_eq!(allowed_headers(&response)["x-gatepass-abilities"].0, "*");
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn client_ip_comes_from_forwarded_for_with_trusted_hops(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| {
        args.grpc_xff_trusted_hops = Some("1".into());
    })
    .await;
    let table = Table::provision(&app.store).await;
    let mut client = client(&app).await;

    // Envoy behind one trusted load balancer appended the LB's address.
    let inside = EnvoyCall::bearer(&table.allowlisted)
        .source("198.51.100.1")
        .header("x-forwarded-for", "203.0.113.9, 10.4.4.4, 198.51.100.1");
    allowed_headers(&check(&mut client, inside).await);
    let spoofed = EnvoyCall::bearer(&table.allowlisted)
        .source("10.0.0.1")
        .header("x-forwarded-for", "10.4.4.4, 203.0.113.9, 10.0.0.1");
    assert_denied(
        &check(&mut client, spoofed).await,
        PERMISSION_DENIED,
        403,
        "ip_not_allowed",
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn unreachable_store_is_unavailable_never_an_allow(pool: PgPool) {
    let (app, link, table) = TestApp::spawn_behind_link(pool, |_| {}).await;
    let mut client = client(&app).await;

    allowed_headers(&check(&mut client, EnvoyCall::bearer(&table.valid)).await);
    link.cut();
    // Tokens never looked up cannot be answered; the cached one still is.
    let unknown = "424242|LegacyShapedSecretForAnUnknownId00000".to_owned();
    for token in [&table.revoked, &unknown] {
        let status = client
            .check(EnvoyCall::bearer(token).build())
            .await
            .expect_err("no answer without the store");
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    allowed_headers(&check(&mut client, EnvoyCall::bearer(&table.valid)).await);
    // Denials that need no lookup still answer.
    assert_denied(
        &check(&mut client, EnvoyCall::new()).await,
        UNAUTHENTICATED,
        401,
        "missing_token",
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_health_reports_serving(pool: PgPool) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let app = TestApp::spawn(pool).await;
    let channel = Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status, 1, "{service:?} is SERVING");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn tokens_issued_with_a_custom_prefix_are_checked_with_it(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |args| args.token_prefix = Some("acme_".into())).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, _) = fixtures.token(TokenSpec::default()).await;
    let mut client = client(&app).await;

    // The fixture issues with the default `gp_` prefix: under `acme_` it is a
    // legacy-looking secret with a valid checksum, so it still resolves.
    allowed_headers(&check(&mut client, EnvoyCall::bearer(&token)).await);
    let forged = token.replace("|gp_", "|acme_");
    assert_denied(
        &check(&mut client, EnvoyCall::bearer(&forged)).await,
        UNAUTHENTICATED,
        401,
        "invalid_token",
    );
    app.stop().await;
}
