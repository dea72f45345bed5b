//! The tokens the gRPC target provisions, with fixed secrets so that the
//! committed corpus keeps carrying valid credentials from one run to the
//! next, and Envoy-shaped `CheckRequest`s (tests/gatepass/grpc.rs's
//! `EnvoyCall`: lowercase header names, pseudo-headers, the source socket
//! address) for its seeds.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use gatepass::token::checksum;

/// What makes a provisioned token allowed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Allowed, when the route's requirements and the service's allowlist
    /// hold.
    Live,
    Revoked,
    Expired,
    Refresh,
    ServiceDisabled,
}

impl State {
    /// The only answer a request carrying exactly this token may get, when
    /// it is not live.
    pub fn denial(self) -> Option<&'static str> {
        match self {
            Self::Live => None,
            Self::Revoked => Some("token_revoked"),
            Self::Expired => Some("token_expired"),
            Self::Refresh => Some("wrong_token_kind"),
            Self::ServiceDisabled => Some("service_disabled"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    /// Its row id in a fresh database: tokens are inserted in this order.
    pub id: i64,
    pub service: &'static str,
    pub abilities: &'static str,
    pub state: State,
    /// Everything after `<id>|`.
    pub secret: String,
}

impl Token {
    /// `<id>|<secret>`, as `token issue` prints it.
    pub fn plain(&self) -> String {
        format!("{}|{}", self.id, self.secret)
    }
}

/// A service and its allowlist; `active` false is disabled.
pub struct ServiceSpec {
    pub name: &'static str,
    pub allowlist: &'static str,
    pub active: bool,
}

pub const SERVICES: [ServiceSpec; 3] = [
    ServiceSpec {
        name: "fuzz",
        allowlist: "",
        active: true,
    },
    ServiceSpec {
        name: "locked",
        allowlist: "10.0.0.0/8, 2001:db8::/32",
        active: true,
    },
    ServiceSpec {
        name: "off",
        allowlist: "",
        active: false,
    },
];

/// A generated-shape secret with a fixed entropy: `gp_`, 40 alphanumerics
/// starting with `seed`, their crc32b.
fn generated(seed: &str) -> String {
    let entropy = format!("{seed:0<40}");
    assert_eq!(entropy.len(), 40);
    format!("gp_{entropy}{}", checksum(entropy.as_bytes()))
}

/// The provisioned tokens, in insertion order (ids 1, 2, ...).
pub fn tokens() -> Vec<Token> {
    let token = |id, service, abilities, state, secret| Token {
        id,
        service,
        abilities,
        state,
        secret,
    };
    vec![
        token(1, "fuzz", "orders:read", State::Live, generated("FuzzReader")),
        token(2, "fuzz", "*", State::Live, generated("FuzzAdmin")),
        token(3, "fuzz", "*", State::Revoked, generated("FuzzRevoked")),
        token(4, "locked", "orders:*", State::Live, generated("FuzzLocked")),
        // An older Sanctum secret: no prefix, no checksum.
        token(
            5,
            "fuzz",
            "orders:read,inventory:*",
            State::Live,
            "LegacySanctumSecretWithoutAnyChecksum123".to_owned(),
        ),
        token(6, "fuzz", "*", State::Refresh, generated("FuzzRefresh")),
        token(7, "fuzz", "*", State::Expired, generated("FuzzExpired")),
        token(8, "off", "*", State::ServiceDisabled, generated("FuzzDisabled")),
    ]
}

pub fn allowlist_of(service: &str) -> &'static str {
    SERVICES
        .iter()
        .find(|s| s.name == service)
        .map_or("", |s| s.allowlist)
}

/// An Envoy `CheckRequest`, built the way tests/gatepass/grpc.rs's
/// `EnvoyCall` builds one.
#[derive(Debug, Clone)]
pub struct Call {
    pub headers: Vec<(String, String)>,
    /// `header_map` entries (Envoy's `encode_raw_headers`): key, raw value.
    pub raw_headers: Option<Vec<(String, Vec<u8>)>>,
    pub source_ip: String,
    pub context_extensions: Vec<(String, String)>,
    pub method: String,
    pub host: String,
    pub path: String,
}

impl Default for Call {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            raw_headers: None,
            source_ip: "192.0.2.10".into(),
            context_extensions: Vec::new(),
            method: "GET".into(),
            host: "api.internal".into(),
            path: "/orders/42?expand=lines".into(),
        }
    }
}

impl Call {
    pub fn bearer(token: &str) -> Self {
        Self::default().header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn raw(mut self, name: &str, value: &[u8]) -> Self {
        self.raw_headers
            .get_or_insert_with(Vec::new)
            .push((name.into(), value.to_vec()));
        self
    }

    pub fn source(mut self, ip: &str) -> Self {
        self.source_ip = ip.into();
        self
    }

    pub fn context(mut self, key: &str, value: &str) -> Self {
        self.context_extensions.push((key.into(), value.into()));
        self
    }

    pub fn route(mut self, method: &str, host: &str, path: &str) -> Self {
        (self.method, self.host, self.path) = (method.into(), host.into(), path.into());
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        let header_map = self.raw_headers.map(|raw| HeaderMap {
            headers: raw
                .into_iter()
                .map(|(key, raw_value)| HeaderValue {
                    key,
                    value: String::new(),
                    raw_value,
                })
                .collect(),
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(&self.source_ip, 53_211)),
                destination: Some(peer("10.0.0.2", 8000)),
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
                        header_map,
                        ..Default::default()
                    }),
                }),
                context_extensions: self.context_extensions.into_iter().collect(),
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
