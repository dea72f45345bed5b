//! The provisioning API on the ops port (`/admin/v1/…`): what the CLI does,
//! over HTTP and JSON, for callers holding a token with `gatepass:admin`.
//! Every request is authorized by the same decision core as a check.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::check::Authorizer;
use crate::decision::{CheckRequest, Decision};
use crate::http::{authorization, client_ip, deny, unavailable};
use crate::model::{NetList, Requirements};
use crate::provision::{self, ProvisionError, TokenRequest};
use crate::store::StoreError;

/// The ability an admin token must hold.
pub const ADMIN_ABILITY: &str = "gatepass:admin";

/// What admin handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub authorizer: Authorizer,
    pub trusted_proxies: NetList,
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/admin/v1")
            .route("/services", web::get().to(list_services))
            .route("/services/{name}", web::put().to(save_service))
            .route("/services/{name}/disable", web::post().to(disable_service))
            .route("/services/{name}/enable", web::post().to(enable_service))
            .route("/tokens", web::get().to(list_tokens))
            .route("/tokens", web::post().to(issue_token))
            .route("/tokens/prune", web::post().to(prune_tokens))
            .route("/tokens/{id}/revoke", web::post().to(revoke_token)),
    );
}

/// Answers `Err` with the denial (or 503) unless the caller may administer.
async fn authorize(request: &HttpRequest, state: &AdminState) -> Result<String, HttpResponse> {
    let mut requirements = Requirements::default();
    requirements.require_all(ADMIN_ABILITY);
    let check = CheckRequest {
        authorization: authorization(request.headers()),
        client_ip: client_ip(request, &state.trusted_proxies),
        method: request.method().as_str().as_bytes(),
        path: request.path().as_bytes(),
        requirements,
        ..CheckRequest::default()
    };
    match state.authorizer.check(&check).await {
        Ok(verdict) => match verdict.decision {
            Decision::Allow(record) => Ok(format!("{}/{}", record.service.name, record.id)),
            Decision::Deny(reason) => Err(deny(reason)),
        },
        Err(_) => Err(unavailable()),
    }
}

fn respond(result: Result<serde_json::Value, ProvisionError>, status: StatusCode) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::build(status).json(body),
        Err(ProvisionError::Invalid(message)) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", &message)
        }
        Err(ProvisionError::Store(StoreError::NotFound(message))) => {
            error(StatusCode::NOT_FOUND, "not_found", &message)
        }
        Err(ProvisionError::Store(store)) => {
            tracing::warn!(error = %store, "admin request failed");
            unavailable()
        }
    }
}

fn error(status: StatusCode, code: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": code,
        "error_description": description,
    }))
}

fn json<T: serde::Serialize>(value: T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A 400 that says what is wrong with a JSON body.
fn bad_body(problem: serde_json::Error) -> HttpResponse {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &problem.to_string(),
    )
}

async fn list_services(request: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(denied) = authorize(&request, &state).await {
        return denied;
    }
    let services = state.authorizer.tiers().store().list_services().await;
    respond(services.map(json).map_err(Into::into), StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceBody {
    description: Option<String>,
    ip_allowlist: Option<Vec<String>>,
}

async fn save_service(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    let admin = match authorize(&request, &state).await {
        Ok(admin) => admin,
        Err(denied) => return denied,
    };
    let fields: ServiceBody = if bytes.is_empty() {
        ServiceBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(fields) => fields,
            Err(problem) => return bad_body(problem),
        }
    };
    let ips = fields.ip_allowlist.map(|list| list.join(","));
    let store = state.authorizer.tiers().store();
    match provision::save_service(store, &name, fields.description, ips.as_deref()).await {
        Ok((service, created)) => {
            tracing::info!(
                admin,
                service = service.name.as_str(),
                created,
                "service saved"
            );
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            respond(Ok(json(service)), status)
        }
        Err(error) => respond(Err(error), StatusCode::OK),
    }
}

async fn disable_service(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> HttpResponse {
    set_active(request, state, &name, false).await
}

async fn enable_service(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> HttpResponse {
    set_active(request, state, &name, true).await
}

async fn set_active(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: &str,
    active: bool,
) -> HttpResponse {
    let admin = match authorize(&request, &state).await {
        Ok(admin) => admin,
        Err(denied) => return denied,
    };
    let store = state.authorizer.tiers().store();
    let result = provision::set_service_active(store, name, active).await;
    if result.is_ok() {
        tracing::info!(admin, service = name, active, "service activity changed");
    }
    respond(result.map(json), StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct TokenFilter {
    service: Option<String>,
}

async fn list_tokens(
    request: HttpRequest,
    state: web::Data<AdminState>,
    filter: web::Query<TokenFilter>,
) -> HttpResponse {
    if let Err(denied) = authorize(&request, &state).await {
        return denied;
    }
    let store = state.authorizer.tiers().store();
    let tokens = provision::list_tokens(store, filter.service.as_deref()).await;
    respond(tokens.map(json), StatusCode::OK)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    service: String,
    #[serde(default = "default_token_name")]
    name: String,
    #[serde(default = "default_abilities")]
    abilities: Vec<String>,
    expires_in: Option<String>,
    #[serde(default)]
    refresh: bool,
}

fn default_token_name() -> String {
    "default".to_owned()
}

fn default_abilities() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Answers the plain-text token once, in the body of the 201.
async fn issue_token(
    request: HttpRequest,
    state: web::Data<AdminState>,
    bytes: web::Bytes,
) -> HttpResponse {
    let admin = match authorize(&request, &state).await {
        Ok(admin) => admin,
        Err(denied) => return denied,
    };
    let fields: TokenBody = match serde_json::from_slice(&bytes) {
        Ok(fields) => fields,
        Err(problem) => return bad_body(problem),
    };
    if fields.abilities.iter().any(|a| a.contains(',')) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "an ability cannot contain ','",
        );
    }
    let abilities = fields.abilities.join(",");
    let token_request = TokenRequest {
        service: &fields.service,
        name: &fields.name,
        abilities: &abilities,
        expires_in: fields.expires_in.as_deref(),
        refresh: fields.refresh,
    };
    let store = state.authorizer.tiers().store();
    let format = state.authorizer.format();
    match provision::issue_token(store, format, &token_request).await {
        Ok((issued, info)) => {
            tracing::info!(
                admin,
                service = info.service.as_str(),
                token_id = info.id,
                "token issued"
            );
            let mut body = json(&info);
            body["token"] = serde_json::Value::String(issued.expose());
            HttpResponse::Created()
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .json(body)
        }
        Err(error) => respond(Err(error), StatusCode::OK),
    }
}

async fn revoke_token(
    request: HttpRequest,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
    let admin = match authorize(&request, &state).await {
        Ok(admin) => admin,
        Err(denied) => return denied,
    };
    let store = state.authorizer.tiers().store();
    let result = provision::revoke_token(store, &id).await;
    if let Ok(info) = &result {
        tracing::info!(admin, token_id = info.id, "token revoked");
    }
    respond(result.map(json), StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct PruneQuery {
    hours: Option<u32>,
}

async fn prune_tokens(
    request: HttpRequest,
    state: web::Data<AdminState>,
    query: web::Query<PruneQuery>,
) -> HttpResponse {
    if let Err(denied) = authorize(&request, &state).await {
        return denied;
    }
    let store = state.authorizer.tiers().store();
    let pruned = provision::prune_tokens(store, query.hours.unwrap_or(24)).await;
    respond(
        pruned.map(|pruned| serde_json::json!({ "pruned": pruned })),
        StatusCode::OK,
    )
}
