//! A `CheckRequest` shaped the way Envoy's gRPC ext_authz filter builds one
//! (`CheckRequestUtils::createHttpCheck`): lowercase header keys including the
//! pseudo-headers, `x-forwarded-for` as the HTTP connection manager leaves it
//! with `use_remote_address: true`, the peer in `source.address`, and the
//! merged per-route `context_extensions`.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};

/// What a client sent Envoy, and what Envoy adds, before it asks gatepass.
#[derive(Debug, Clone)]
pub struct EnvoyCheck {
    method: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    source_ip: String,
    context_extensions: HashMap<String, String>,
}

impl EnvoyCheck {
    /// `GET path` to `api.internal` from 192.0.2.10, no credential.
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET".into(),
            host: "api.internal".into(),
            path: path.into(),
            headers: Vec::new(),
            source_ip: "192.0.2.10".into(),
            context_extensions: HashMap::new(),
        }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A request header as the client sent it; Envoy lowercases the name.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The downstream peer address.
    pub fn source(mut self, ip: &str) -> Self {
        self.source_ip = ip.into();
        self
    }

    /// The route's (merged) `check_settings.context_extensions`.
    pub fn context_extensions(mut self, extensions: &HashMap<String, String>) -> Self {
        self.context_extensions = extensions.clone();
        self
    }

    pub fn build(self) -> CheckRequest {
        let mut headers: HashMap<String, String> = [
            (":authority", self.host.as_str()),
            (":path", self.path.as_str()),
            (":method", self.method.as_str()),
            (":scheme", "http"),
            ("user-agent", "billing/1.0"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "5c3e8d6e-7c43-4a5e-9d58-1f0f8d1b2c3d"),
            ("x-envoy-external-address", self.source_ip.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut forwarded_for = None;
        for (name, value) in self.headers {
            if name == "x-forwarded-for" {
                forwarded_for = Some(value);
            } else {
                // Envoy joins repeated headers with ",".
                headers
                    .entry(name)
                    .and_modify(|v| {
                        v.push(',');
                        v.push_str(&value);
                    })
                    .or_insert(value);
            }
        }
        // use_remote_address: true appends the peer to what the client sent.
        let forwarded_for = match forwarded_for {
            Some(sent) => format!("{sent},{}", self.source_ip),
            None => self.source_ip.clone(),
        };
        headers.insert("x-forwarded-for".into(), forwarded_for);
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(&self.source_ip, 53_211)),
                destination: Some(peer("127.0.0.1", 10_000)),
                request: Some(Request {
                    time: None,
                    http: Some(HttpRequest {
                        id: "13043385626347064843".into(),
                        method: self.method,
                        headers,
                        path: self.path,
                        host: self.host,
                        scheme: "http".into(),
                        protocol: "HTTP/1.1".into(),
                        ..Default::default()
                    }),
                }),
                context_extensions: self.context_extensions,
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
