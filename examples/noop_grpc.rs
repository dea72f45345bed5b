//! The gRPC baseline of `benches/run`: an `Authorization/Check` server that
//! decides nothing and answers every request OK with the same four identity
//! headers and `headers_to_remove` as gatepass's allow. Same stack as
//! gatepass's gRPC surface (tonic on Tokio's multi-threaded runtime, one
//! worker per CPU, TCP_NODELAY), so the gap between the two is what a check
//! costs. It also answers `grpc.health.v1.Health` (SERVING), so Envoy's
//! health check of the shipped `envoy/envoy.yaml` sees it as it sees gatepass.
//!
//!     cargo run --release --example noop_grpc -- 127.0.0.1:50052

use std::net::SocketAddr;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Built per request, as gatepass builds its answer.
        let headers = vec![
            overwrite("x-gatepass-service", "bench"),
            overwrite("x-gatepass-service-id", "1"),
            overwrite("x-gatepass-token-id", "1"),
            overwrite("x-gatepass-abilities", "orders:read,orders:write"),
        ];
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove: vec!["authorization".to_owned()],
                ..Default::default()
            })),
            dynamic_metadata: None,
        }))
    }
}

#[allow(deprecated)]
fn overwrite(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// The subscriber gatepass installs (`GATEPASS_LOG_LEVEL=info`, text, stderr).
/// Without one, `tracing` falls back to the `log` crate and formats every
/// span tonic and h2 open, which would make the baseline slower than it is.
fn logging() {
    let filter = tracing_subscriber::EnvFilter::new("info,sqlx=warn,actix_server=warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50052".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("noop_grpc: listening on {}", listener.local_addr()?);
    let (_health_reporter, health_service) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(Noop))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}
