//! HTTP surfaces: `/auth` for nginx `auth_request` and Traefik/Caddy forward
//! auth, `/ext-authz/…` for Envoy's HTTP ext_authz mode. Both translate into
//! the decision core's request and back; they decide nothing themselves.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};

use crate::authz::client_ip::client_behind_proxies;
use crate::authz::{Authorizer, CheckRequest, Decision, DenyReason, NetList, Requirements};
use crate::config::IdentityHeaders;
use crate::metrics::{Metrics, Surface};
use crate::telemetry::observe_check;

const REQUIRE_ALL: &str = "x-gatepass-require-all";
const REQUIRE_ANY: &str = "x-gatepass-require-any";

/// How the HTTP surface reads requests and writes answers.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub identity_headers: IdentityHeaders,
    pub trusted_proxies: NetList,
}

/// Shared by every HTTP worker.
#[derive(Debug, Clone)]
pub struct HttpState {
    authorizer: Authorizer,
    metrics: Metrics,
    identity: Arc<IdentityHeaderNames>,
    trusted_proxies: Arc<NetList>,
}

/// Header names parsed once, not per response.
#[derive(Debug)]
struct IdentityHeaderNames {
    service: HeaderName,
    service_id: HeaderName,
    token_id: HeaderName,
    abilities: HeaderName,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid identity header name: {0}")]
pub struct InvalidHeaderName(String);

impl HttpState {
    pub fn new(
        authorizer: Authorizer,
        options: HttpOptions,
        metrics: Metrics,
    ) -> Result<Self, InvalidHeaderName> {
        let name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeaderName(name.to_owned()))
        };
        let names = &options.identity_headers;
        Ok(Self {
            authorizer,
            metrics,
            identity: Arc::new(IdentityHeaderNames {
                service: name(&names.service)?,
                service_id: name(&names.service_id)?,
                token_id: name(&names.token_id)?,
                abilities: name(&names.abilities)?,
            }),
            trusted_proxies: Arc::new(options.trusted_proxies),
        })
    }
}

/// Mounts the auth routes; any method is accepted on both.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/auth", web::route().to(auth_request))
        .route("/ext-authz", web::route().to(envoy_http))
        .route("/ext-authz/{tail:.*}", web::route().to(envoy_http));
}

/// nginx `auth_request` and forward auth: the original request is described
/// by `X-Original-*` (nginx) or `X-Forwarded-*` (Traefik, Caddy) headers.
async fn auth_request(request: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    let started = Instant::now();
    let headers = request.headers();
    let method = first_text(headers, &["x-original-method", "x-forwarded-method"])
        .unwrap_or_else(|| request.method().as_str());
    let path = first_text(headers, &["x-original-uri", "x-forwarded-uri"]).unwrap_or("");
    let host = first_text(headers, &["x-forwarded-host", "host"]).unwrap_or("");
    check(started, &request, &state, method, host, path).await
}

/// Envoy's HTTP ext_authz mode: the original method, and the original path
/// below the configured `path_prefix`.
async fn envoy_http(request: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    let started = Instant::now();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .strip_prefix("/ext-authz")
        .filter(|rest| !rest.is_empty())
        .unwrap_or("/");
    let host = first_text(request.headers(), &["host"]).unwrap_or("");
    check(
        started,
        &request,
        &state,
        request.method().as_str(),
        host,
        path,
    )
    .await
}

async fn check(
    started: Instant,
    request: &HttpRequest,
    state: &HttpState,
    method: &str,
    host: &str,
    path: &str,
) -> HttpResponse {
    let headers = request.headers();
    let client_ip = request.peer_addr().and_then(|peer| {
        client_behind_proxies(
            peer.ip(),
            &state.trusted_proxies,
            first_text(headers, &["x-real-ip"]),
            forwarded_for(headers).as_deref(),
        )
    });
    let mut requirements = Requirements::default();
    for value in headers.get_all(REQUIRE_ALL) {
        requirements.require_all(&String::from_utf8_lossy(value.as_bytes()));
    }
    for value in headers.get_all(REQUIRE_ANY) {
        requirements.require_any(&String::from_utf8_lossy(value.as_bytes()));
    }
    let check = CheckRequest {
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        client_ip,
        method,
        host,
        path,
        requirements,
    };
    let result = state.authorizer.check(&check).await;
    observe_check(&state.metrics, Surface::Http, started, &result);
    match result.map(|verdict| verdict.decision) {
        Ok(Decision::Allow(record)) => {
            let names = &state.identity;
            let mut response = HttpResponse::Ok();
            response
                .insert_header((names.service.clone(), record.service.name.as_str()))
                .insert_header((names.service_id.clone(), record.service.id))
                .insert_header((names.token_id.clone(), record.id))
                .insert_header((names.abilities.clone(), record.abilities.header_value()));
            response.finish()
        }
        Ok(Decision::Deny(reason)) => deny(reason),
        Err(_) => unavailable(),
    }
}

fn deny(reason: DenyReason) -> HttpResponse {
    let status = StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = HttpResponseBuilder::new(status);
    if let Some(challenge) = reason.www_authenticate() {
        response.insert_header((header::WWW_AUTHENTICATE, challenge));
    }
    response
        .content_type("application/json")
        .body(reason.json_body())
}

/// The answer cannot be known: never an allow.
pub fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, "1"))
        .content_type("application/json")
        .body(r#"{"error":"temporarily_unavailable","error_description":"the token store cannot be reached"}"#)
}

/// The first of `names` present with a UTF-8 value.
fn first_text<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
}

/// `X-Forwarded-For` as one list, also when a proxy sent several lines.
fn forwarded_for(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let mut lines = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    let first = lines.next()?;
    match lines.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first},{second}");
            for line in lines {
                joined.push(',');
                joined.push_str(line);
            }
            Some(Cow::Owned(joined))
        }
    }
}
