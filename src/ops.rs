//! The ops surface: liveness and readiness (metrics and the admin API come
//! with later issues).

use actix_web::{HttpResponse, web};

use crate::store::Store;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The process is up and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// The store is reachable and its migrations are current.
async fn readyz(store: web::Data<Store>) -> HttpResponse {
    let (ready, store_state) = match store.ready().await {
        Ok(true) => (true, "ok"),
        Ok(false) => (false, "migrations_pending"),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (false, "unreachable")
        }
    };
    let body = format!(
        r#"{{"status":"{}","store":"{store_state}"}}"#,
        if ready { "ready" } else { "not_ready" }
    );
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.content_type("application/json").body(body)
}
