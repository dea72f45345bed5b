//! The provisioning API on the ops port (`/admin/v1/…`): what the CLI does,
//! over HTTP and JSON, for callers holding a token with `gatepass:admin`.
//! Every request is authorized by the same decision core as a check.

use actix_web::dev::Payload;
use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;

use crate::check::Authorizer;
use crate::decision::{CheckRequest, Decision};
use crate::http::{authorization, client_ip, deny, unavailable};
use crate::model::{Ability, TokenKind};
use crate::model::{NetList, Requirements};
use crate::provision::{self, Lifetime, ProvisionError, TokenRequest};
use crate::store::{ServiceChange, Store, StoreError};

/// The ability an admin token must hold.
pub const ADMIN_ABILITY: &str = "gatepass:admin";

/// What admin handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub authorizer: Authorizer,
    pub store: Store,
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

/// A caller allowed to administer: a token holding [`ADMIN_ABILITY`],
/// checked by the same decision core as every check. Handlers that take
/// one run only for such callers; everyone else gets the denial (or 503).
#[derive(Debug)]
pub struct Admin {
    /// `<service>/<token id>`, for the audit line of each change.
    caller: String,
}

impl FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let state = request
                .app_data::<web::Data<AdminState>>()
                .expect("the admin routes are served with their state");
            let mut requirements = Requirements::default();
            requirements.require_all(ADMIN_ABILITY);
            let check = CheckRequest {
                authorization: authorization(request.headers()),
                client_ip: client_ip(&request, &state.trusted_proxies),
                method: request.method().as_str().as_bytes(),
                path: request.path().as_bytes(),
                requirements,
                ..CheckRequest::default()
            };
            let refused = match state.authorizer.check(&check).await {
                Ok(verdict) => match verdict.decision {
                    Decision::Allow(record) => {
                        return Ok(Admin {
                            caller: format!("{}/{}", record.service.name, record.id),
                        });
                    }
                    Decision::Deny(reason) => deny(reason),
                },
                Err(_) => unavailable(),
            };
            Err(InternalError::from_response("not an admin", refused).into())
        })
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

async fn list_services(_: Admin, state: web::Data<AdminState>) -> HttpResponse {
    let services = state.store.list_services().await;
    respond(services.map(json).map_err(Into::into), StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceBody {
    description: Option<String>,
    ip_allowlist: Option<Vec<String>>,
}

async fn save_service(
    admin: Admin,
    state: web::Data<AdminState>,
    name: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    let fields: ServiceBody = if bytes.is_empty() {
        ServiceBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(fields) => fields,
            Err(problem) => return bad_body(problem),
        }
    };
    let change = provision::parse_service_name(&name).and_then(|name| {
        let ip_allowlist = fields
            .ip_allowlist
            .map(|entries| provision::parse_allowlist(&entries.join(",")))
            .transpose()?;
        Ok(ServiceChange {
            name,
            description: fields.description,
            ip_allowlist,
        })
    });
    let saved = match change {
        Ok(change) => provision::save_service(&state.store, &change).await,
        Err(error) => Err(error),
    };
    match saved {
        Ok((service, created)) => {
            tracing::info!(
                admin = admin.caller,
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
    admin: Admin,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> HttpResponse {
    set_active(admin, &state, &name, false).await
}

async fn enable_service(
    admin: Admin,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> HttpResponse {
    set_active(admin, &state, &name, true).await
}

async fn set_active(admin: Admin, state: &AdminState, name: &str, active: bool) -> HttpResponse {
    let result = match provision::parse_service_name(name) {
        Ok(name) => provision::set_service_active(&state.store, &name, active).await,
        Err(error) => Err(error),
    };
    if result.is_ok() {
        tracing::info!(
            admin = admin.caller,
            service = name,
            active,
            "service activity changed"
        );
    }
    respond(result.map(json), StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct TokenFilter {
    service: Option<String>,
}

async fn list_tokens(
    _: Admin,
    state: web::Data<AdminState>,
    filter: web::Query<TokenFilter>,
) -> HttpResponse {
    let tokens = match filter.service.as_deref().map(provision::parse_service_name) {
        Some(Err(error)) => Err(error),
        Some(Ok(name)) => provision::list_tokens(&state.store, Some(&name)).await,
        None => provision::list_tokens(&state.store, None).await,
    };
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

impl TokenBody {
    fn into_request(self) -> Result<TokenRequest, ProvisionError> {
        let invalid = |message: String| ProvisionError::Invalid(message);
        if self.abilities.iter().any(|a| a.contains(',')) {
            return Err(invalid("an ability cannot contain ','".to_owned()));
        }
        let abilities = self
            .abilities
            .iter()
            .map(|name| Ability::parse(name.trim()))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(TokenRequest {
            service: provision::parse_service_name(&self.service)?,
            name: self.name,
            abilities,
            lifetime: self
                .expires_in
                .as_deref()
                .map(Lifetime::parse)
                .transpose()?,
            kind: if self.refresh {
                TokenKind::Refresh
            } else {
                TokenKind::Access
            },
        })
    }
}

/// Answers the plain-text token once, in the body of the 201.
async fn issue_token(
    admin: Admin,
    state: web::Data<AdminState>,
    bytes: web::Bytes,
) -> HttpResponse {
    let request = match serde_json::from_slice::<TokenBody>(&bytes) {
        Ok(fields) => fields.into_request(),
        Err(problem) => return bad_body(problem),
    };
    let format = state.authorizer.format();
    let issued = match request {
        Ok(request) => provision::issue_token(&state.store, format, request).await,
        Err(error) => Err(error),
    };
    match issued {
        Ok((issued, info)) => {
            tracing::info!(
                admin = admin.caller,
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
    admin: Admin,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
    let result = match provision::parse_token_id(&id) {
        Ok(id) => provision::revoke_token(&state.store, id).await,
        Err(error) => Err(error),
    };
    if let Ok(info) = &result {
        tracing::info!(admin = admin.caller, token_id = info.id, "token revoked");
    }
    respond(result.map(json), StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct PruneQuery {
    hours: Option<u32>,
}

async fn prune_tokens(
    _: Admin,
    state: web::Data<AdminState>,
    query: web::Query<PruneQuery>,
) -> HttpResponse {
    let pruned = provision::prune_tokens(&state.store, query.hours.unwrap_or(24)).await;
    respond(
        pruned.map(|pruned| serde_json::json!({ "pruned": pruned })),
        StatusCode::OK,
    )
}
