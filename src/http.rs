//! HTTP surfaces: `/auth` for nginx `auth_request` and Traefik/Caddy forward
//! auth, `/ext-authz/…` for Envoy's HTTP ext_authz mode, and
//! `POST /v1/tokens/refresh`. All translate into the decision core's request
//! and back; they decide nothing themselves.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures_util::future::LocalBoxFuture;

use crate::check::{Authorizer, Refresh, RefreshLifetimes};
use crate::config::IdentityHeaders;
use crate::decision::client_ip::client_behind_proxies;
use crate::decision::{AuthorizationHeader, CheckRequest, Decision, DenyReason};
use crate::metrics::{Metrics, Surface};
use crate::model::{NetList, Requirements};
use crate::shutdown::Drain;
use crate::telemetry::observe_check;

// Header names as constants: looking a header up by `&str` parses the name
// on every request.
const REQUIRE_ALL: HeaderName = HeaderName::from_static("x-gatepass-require-all");
const REQUIRE_ANY: HeaderName = HeaderName::from_static("x-gatepass-require-any");
const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// How the HTTP surface reads requests and writes answers.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub identity_headers: IdentityHeaders,
    pub trusted_proxies: NetList,
    pub refresh_lifetimes: RefreshLifetimes,
}

/// Shared by every HTTP worker.
#[derive(Debug, Clone)]
pub struct HttpState {
    authorizer: Authorizer,
    metrics: Metrics,
    refresh_lifetimes: RefreshLifetimes,
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
            refresh_lifetimes: options.refresh_lifetimes,
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
        .route("/ext-authz/{tail:.*}", web::route().to(envoy_http))
        .route("/v1/tokens/refresh", web::post().to(refresh_tokens));
}

/// nginx `auth_request` and forward auth: the original request is described
/// by `X-Original-*` (nginx) or `X-Forwarded-*` (Traefik, Caddy) headers.
async fn auth_request(request: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    let started = Instant::now();
    let headers = request.headers();
    let method = first_present(headers, &[ORIGINAL_METHOD, FORWARDED_METHOD])
        .unwrap_or_else(|| request.method().as_str().as_bytes());
    let path = first_present(headers, &[ORIGINAL_URI, FORWARDED_URI]).unwrap_or_default();
    let host = first_present(headers, &[FORWARDED_HOST, header::HOST]).unwrap_or_default();
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
    let host = first_present(request.headers(), &[header::HOST]).unwrap_or_default();
    check(
        started,
        &request,
        &state,
        request.method().as_str().as_bytes(),
        host,
        path.as_bytes(),
    )
    .await
}

async fn check(
    started: Instant,
    request: &HttpRequest,
    state: &HttpState,
    method: &[u8],
    host: &[u8],
    path: &[u8],
) -> HttpResponse {
    let headers = request.headers();
    let client_ip = client_ip(request, &state.trusted_proxies);
    let mut requirements = Requirements::default();
    for value in headers.get_all(&REQUIRE_ALL) {
        requirements.require_all(&String::from_utf8_lossy(value.as_bytes()));
    }
    for value in headers.get_all(&REQUIRE_ANY) {
        requirements.require_any(&String::from_utf8_lossy(value.as_bytes()));
    }
    let check = CheckRequest {
        authorization: authorization(headers),
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

/// `POST /v1/tokens/refresh` with `Authorization: Bearer <refresh token>`:
/// the token is spent for a new access token and a new refresh token, as
/// RFC 6749 §5.1 shapes the answer.
async fn refresh_tokens(request: HttpRequest, state: web::Data<HttpState>) -> HttpResponse {
    let check = CheckRequest {
        authorization: authorization(request.headers()),
        client_ip: client_ip(&request, &state.trusted_proxies),
        ..CheckRequest::default()
    };
    match state
        .authorizer
        .refresh(&check, state.refresh_lifetimes)
        .await
    {
        Ok(Refresh::Rotated {
            access, refresh, ..
        }) => {
            let body = serde_json::json!({
                "token_type": "Bearer",
                "access_token": access.expose(),
                "expires_in": state.refresh_lifetimes.access.num_seconds(),
                "refresh_token": refresh.expose(),
                "refresh_token_expires_in": state.refresh_lifetimes.refresh.num_seconds(),
            });
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::PRAGMA, "no-cache"))
                .json(body)
        }
        Ok(Refresh::Deny(reason)) => deny(reason),
        Err(error) => {
            tracing::warn!(%error, "refresh unanswerable: token store unavailable");
            unavailable()
        }
    }
}

/// The client, believing forwarded addresses only from trusted proxies.
pub(crate) fn client_ip(request: &HttpRequest, trusted: &NetList) -> Option<std::net::IpAddr> {
    let headers = request.headers();
    request.peer_addr().and_then(|peer| {
        client_behind_proxies(
            peer.ip(),
            trusted,
            headers.get_all(REAL_IP).map(HeaderValue::as_bytes),
            headers.get_all(FORWARDED_FOR).map(HeaderValue::as_bytes),
        )
    })
}

/// Every `Authorization` header of the request.
pub(crate) fn authorization(headers: &HeaderMap) -> AuthorizationHeader<'_> {
    AuthorizationHeader::from_values(
        headers
            .get_all(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    )
}

pub(crate) fn deny(reason: DenyReason) -> HttpResponse {
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

/// The value of the first of `names` the request carries, as bytes: a
/// value that is not text is still that header, never a reason to read
/// the next one.
fn first_present<'a>(headers: &'a HeaderMap, names: &[HeaderName]) -> Option<&'a [u8]> {
    names
        .iter()
        .find_map(|name| headers.get(name).map(HeaderValue::as_bytes))
}

/// HTTP requests count in the drain through this middleware; while
/// draining, answers carry `Connection: close`.
impl<S, B> Transform<S, ServiceRequest> for Drain
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = Draining<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(Draining {
            service: Rc::new(service),
            drain: self.clone(),
        }))
    }
}

/// The middleware [`Drain`] makes for each HTTP worker.
pub struct Draining<S> {
    service: Rc<S>,
    drain: Drain,
}

impl<S, B> Service<ServiceRequest> for Draining<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let in_flight = self.drain.enter();
        let (service, drain) = (self.service.clone(), self.drain.clone());
        Box::pin(async move {
            let mut response = service.call(request).await?;
            // While draining, clients are told to take their next request
            // elsewhere rather than find this connection closed.
            if drain.draining() {
                response
                    .response_mut()
                    .head_mut()
                    .set_connection_type(ConnectionType::Close);
            }
            drop(in_flight);
            Ok(response)
        })
    }
}
