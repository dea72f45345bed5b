//! Writes one `CheckRequest`, shaped as Envoy's ext_authz filter sends it,
//! as a gRPC message (1-byte compression flag, 4-byte big-endian length,
//! protobuf), for `h2load -d` in `benches/run`.
//!
//!     cargo run --example check_body -- TOKEN body.bin [require_all]
//!
//! The request is `GET /orders/42` from 192.0.2.10 with the headers Envoy
//! forwards (lowercase names, pseudo-headers included), the token as
//! `authorization: Bearer TOKEN` and, when given, a `require_all`
//! context extension as a route would set it.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use prost::Message as _;

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

fn request(token: &str, require_all: Option<&str>) -> CheckRequest {
    let (method, host, path) = ("GET", "api.internal", "/orders/42");
    let headers: HashMap<String, String> = [
        (":authority", host),
        (":path", path),
        (":method", method),
        (":scheme", "http"),
        ("accept", "*/*"),
        ("user-agent", "billing/1.0"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5c3e8d6e-7c43-4a5e-9d58-1f0f8d1b2c3d"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("authorization", &format!("Bearer {token}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("192.0.2.10", 53_211)),
            destination: Some(peer("10.0.0.2", 10_000)),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    id: "13043385626347064843".into(),
                    method: method.into(),
                    headers,
                    path: path.into(),
                    host: host.into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            context_extensions: require_all
                .map(|abilities| ("require_all".to_owned(), abilities.to_owned()))
                .into_iter()
                .collect(),
            ..Default::default()
        }),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [token, out, rest @ ..] = args.as_slice() else {
        return Err("usage: check_body TOKEN OUT_FILE [require_all]".into());
    };
    let message = request(token, rest.first().map(String::as_str)).encode_to_vec();
    let length = u32::try_from(message.len())?;
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&message);
    std::fs::write(out, framed)?;
    Ok(())
}
