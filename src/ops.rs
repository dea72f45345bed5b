//! The ops surface: Prometheus metrics, liveness and readiness. The admin
//! API shares the port (`admin.rs`).

use actix_web::{HttpResponse, web};

use crate::cache::Tiers;
use crate::metrics::Readings;
use crate::policy_file::PolicyHandle;

/// What the ops endpoints read.
#[derive(Debug, Clone)]
pub struct OpsState {
    pub tiers: Tiers,
    pub policy: Option<PolicyHandle>,
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Prometheus text exposition.
async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    let metrics = state.tiers.metrics();
    metrics.refresh(Readings {
        cached_tokens: state.tiers.cached_tokens(),
        indexed_tokens: state.tiers.indexed_tokens(),
        policy_reload_failures: state
            .policy
            .as_ref()
            .map_or(0, PolicyHandle::reload_failures),
        http_client_errors: crate::telemetry::http_client_errors(),
    });
    match metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The process is up and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// Ready when the store is reachable, its migrations are current and the
/// index of existing tokens has been loaded once (until then lookups of
/// tokens nobody has cached are rationed). Redis and the change feed are
/// reported, not required: gatepass answers correctly without either.
async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    let index_loaded = state.tiers.index_loaded();
    let (ready, store) = match state.tiers.store().ready().await {
        Ok(true) => (index_loaded, "ok"),
        Ok(false) => (false, "migrations_pending"),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (false, "unreachable")
        }
    };
    let redis = match state.tiers.redis() {
        None => "not_configured",
        Some(redis) if redis.ping().await => "ok",
        Some(_) => "unreachable",
    };
    let feed = if state.tiers.feed_connected() {
        "connected"
    } else {
        "disconnected"
    };
    let index = if index_loaded { "loaded" } else { "loading" };
    let body = format!(
        r#"{{"status":"{}","store":"{store}","redis":"{redis}","change_feed":"{feed}","index":"{index}"}}"#,
        if ready { "ready" } else { "not_ready" }
    );
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.content_type("application/json").body(body)
}
