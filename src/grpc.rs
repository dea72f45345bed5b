//! Envoy's gRPC ext_authz surface: `envoy.service.auth.v3.Authorization/Check`.
//! Translates a `CheckRequest` into the decision core's request and the
//! decision back into a `CheckResponse`; decides nothing itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{
    Address, CheckRequest as EnvoyCheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

use crate::check::Authorizer;
use crate::config::IdentityHeaders;
use crate::decision::client_ip::client_behind_envoy;
use crate::decision::{AuthorizationHeader, CheckRequest, Decision, DenyReason};
use crate::metrics::{Metrics, Surface};
use crate::model::{Requirements, TokenRecord};
use crate::shutdown::Drain;
use crate::telemetry::observe_check;

pub use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer};

/// gRPC status codes used in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// How the gRPC surface reads requests and writes answers.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    pub identity_headers: IdentityHeaders,
    pub remove_headers: Vec<String>,
    pub xff_trusted_hops: u32,
}

#[derive(Debug, Clone)]
pub struct ExtAuthz {
    authorizer: Authorizer,
    options: Arc<GrpcOptions>,
    metrics: Metrics,
    drain: Drain,
}

impl ExtAuthz {
    pub fn new(
        authorizer: Authorizer,
        options: GrpcOptions,
        metrics: Metrics,
        drain: Drain,
    ) -> Self {
        Self {
            authorizer,
            options: Arc::new(options),
            metrics,
            drain,
        }
    }

    pub fn into_server(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<EnvoyCheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let _in_flight = self.drain.enter();
        let envoy = request.into_inner();
        let check = self.translate(&envoy);
        let result = self.authorizer.check(&check).await;
        observe_check(&self.metrics, Surface::Grpc, started, &result);
        match result {
            Ok(verdict) => Ok(Response::new(self.respond(&verdict.decision))),
            Err(_) => Err(Status::unavailable("token store unavailable")),
        }
    }
}

impl ExtAuthz {
    fn translate<'a>(&self, envoy: &'a EnvoyCheckRequest) -> CheckRequest<'a> {
        let attributes = envoy.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let source = attributes
            .and_then(|a| a.source.as_ref())
            .and_then(|peer| peer.address.as_ref())
            .and_then(|address| match address.address.as_ref()? {
                Address::SocketAddress(socket) => socket.address.parse::<IpAddr>().ok(),
                _ => None,
            });
        let client_ip = client_behind_envoy(
            source,
            self.options.xff_trusted_hops,
            header_values(http, "x-forwarded-for"),
        );
        let extensions = attributes.map(|a| &a.context_extensions);
        let mut requirements = Requirements::default();
        if let Some(extensions) = extensions {
            add_requirements(&mut requirements, extensions);
        }
        CheckRequest {
            authorization: AuthorizationHeader::from_values(header_values(http, "authorization")),
            client_ip,
            method: http.map_or(&[], |http| http.method.as_bytes()),
            host: http.map_or(&[], |http| http.host.as_bytes()),
            path: http.map_or(&[], |http| http.path.as_bytes()),
            requirements,
        }
    }

    fn respond(&self, decision: &Decision) -> CheckResponse {
        match decision {
            Decision::Allow(record) => self.allow(record),
            Decision::Deny(reason) => deny(*reason),
        }
    }

    fn allow(&self, record: &TokenRecord) -> CheckResponse {
        let names = &self.options.identity_headers;
        let identity = [
            ("service", record.service.name.clone()),
            ("service_id", record.service.id.to_string()),
            ("token_id", record.id.to_string()),
            ("abilities", record.abilities.header_value().to_owned()),
        ];
        let headers = [
            &names.service,
            &names.service_id,
            &names.token_id,
            &names.abilities,
        ]
        .into_iter()
        .zip(&identity)
        .map(|(name, (_, value))| overwrite(name, value.clone()))
        .collect();
        // The same identity for Envoy's own filters (access log, RBAC, rate
        // limits), in the ext_authz filter's metadata namespace.
        let metadata = Struct {
            fields: identity
                .into_iter()
                .map(|(key, value)| {
                    let value = Value {
                        kind: Some(Kind::StringValue(value)),
                    };
                    (key.to_owned(), value)
                })
                .collect(),
        };
        CheckResponse {
            status: Some(rpc::Status {
                code: OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove: self.options.remove_headers.clone(),
                ..Default::default()
            })),
            dynamic_metadata: Some(metadata),
        }
    }
}

fn deny(reason: DenyReason) -> CheckResponse {
    let code = if reason.is_unauthenticated() {
        UNAUTHENTICATED
    } else {
        PERMISSION_DENIED
    };
    let mut headers = vec![overwrite("content-type", "application/json".to_owned())];
    if let Some(challenge) = reason.www_authenticate() {
        headers.push(overwrite("www-authenticate", challenge.to_owned()));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: reason.as_str().to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(reason.http_status()),
            }),
            headers,
            body: reason.json_body(),
        })),
        dynamic_metadata: None,
    }
}

/// A header Envoy sets, replacing any value the client sent. Both the
/// deprecated `append = false` (read first by Envoy when present, and the
/// only field older Envoys know) and `append_action` say "overwrite".
#[allow(deprecated)]
fn overwrite(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// Every value of header `name` (lowercase): Envoy sends lowercase names
/// in `headers`, one value per name with repeated headers joined by `,`,
/// or, with `encode_raw_headers`, one `header_map` entry per header line
/// with its raw bytes.
fn header_values<'a>(
    http: Option<&'a envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest>,
    name: &'a str,
) -> impl DoubleEndedIterator<Item = &'a [u8]> {
    let joined = http
        .and_then(|http| http.headers.get(name))
        .map(String::as_bytes);
    let raw = http
        .and_then(|http| http.header_map.as_ref())
        .map_or(&[][..], |map| map.headers.as_slice())
        .iter()
        .filter(move |header| header.key.eq_ignore_ascii_case(name))
        .map(|header| {
            if header.raw_value.is_empty() {
                header.value.as_bytes()
            } else {
                header.raw_value.as_slice()
            }
        });
    joined.into_iter().chain(raw)
}

/// Per-route requirements Envoy passes as `context_extensions`.
fn add_requirements(requirements: &mut Requirements, extensions: &HashMap<String, String>) {
    if let Some(all) = extensions.get("require_all") {
        requirements.require_all(all);
    }
    if let Some(any) = extensions.get("require_any") {
        requirements.require_any(any);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_carry_status_body_and_challenge() {
        let response = deny(DenyReason::TokenRevoked);
        assert_eq!(response.status.as_ref().unwrap().code, UNAUTHENTICATED);
        let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("expected a denied response");
        };
        assert_eq!(denied.status.unwrap().code, 401);
        assert!(denied.body.contains("token_revoked"));
        assert!(denied.headers.iter().any(|h| {
            let header = h.header.as_ref().unwrap();
            header.key == "www-authenticate" && header.value.contains("invalid_token")
        }));

        let forbidden = deny(DenyReason::IpNotAllowed);
        assert_eq!(forbidden.status.unwrap().code, PERMISSION_DENIED);
    }
}
