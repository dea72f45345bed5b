//! The shipped Envoy configurations, `envoy/envoy.yaml` (gRPC ext_authz) and
//! `envoy/envoy-http.yaml` (HTTP ext_authz), checked two ways without an
//! Envoy binary:
//!
//! - against Envoy's v3 API, from the .proto files envoy-types ships
//!   ([`api`]): every field name, value type, `@type` payload, deprecation and
//!   protoc-gen-validate rule, then the gatepass-relevant settings through
//!   envoy-types' generated types;
//! - against the real gatepass: what these configurations make Envoy send
//!   ([`check::EnvoyCheck`] for gRPC, a plain request for HTTP) gets the
//!   answers the configurations rely on.

mod api;
pub mod check;

use std::collections::{BTreeMap, HashMap};

use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::config::core::v3::http_uri::HttpUpstreamType;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, ApiVersion};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as NetworkFilterConfig;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{Route, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ext_authz::Services;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ext_authz_per_route::Override;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthz, ExtAuthzPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::ListStringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::v3::StatusCode;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::{Any, Duration};
use gatepass::model::parse_ability_list;
use gatepass::config::IdentityHeaders;
use prost_reflect::prost::Name;
use sqlx::PgPool;

use self::api::{EnvoyApi, envoy_api};
use self::check::EnvoyCheck;
use crate::helpers::{Fixtures, TestApp, TokenSpec};

const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
const ROUTER: &str = "envoy.filters.http.router";
/// The only `context_extensions` keys gatepass reads (src/grpc.rs).
const GATEPASS_KEYS: [&str; 2] = ["require_all", "require_any"];
const PERMISSION_DENIED: i32 = 7;

fn shipped(name: &str) -> String {
    let path = format!("{}/envoy/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// A shipped file as Envoy would load it, as envoy-types' typed Bootstrap.
fn load(name: &str) -> Bootstrap {
    let message = envoy_api()
        .load_bootstrap(&shipped(name))
        .unwrap_or_else(|problems| {
            panic!("envoy/{name} is not a valid Envoy v3 bootstrap:\n{problems}")
        });
    EnvoyApi::typed(&message)
}

/// `yaml` with the first occurrence of `from` outside a comment replaced by `to`.
fn edited(yaml: &str, from: &str, to: &str) -> String {
    let at = yaml
        .match_indices(from)
        .map(|(at, _)| at)
        .find(|&at| {
            let line_start = yaml[..at].rfind('\n').map_or(0, |i| i + 1);
            !yaml[line_start..at].contains('#')
        })
        .unwrap_or_else(|| panic!("{from:?} is in the configuration, outside comments"));
    format!("{}{to}{}", &yaml[..at], &yaml[at + from.len()..])
}

fn unpack<T: prost_reflect::prost::Message + Default + Name>(any: &Any) -> T {
    assert_eq!(any.type_url, T::type_url(), "@type");
    T::decode(any.value.as_slice()).expect("payload decodes")
}

fn seconds(duration: Option<&Duration>) -> f64 {
    let duration = duration.expect("duration is set");
    duration.seconds as f64 + f64::from(duration.nanos) / 1e9
}

/// The one HTTP connection manager of the one listener.
fn connection_manager(bootstrap: &Bootstrap) -> HttpConnectionManager {
    let resources = bootstrap
        .static_resources
        .as_ref()
        .expect("static_resources");
    let [listener] = resources.listeners.as_slice() else {
        panic!("one listener");
    };
    let [chain] = listener.filter_chains.as_slice() else {
        panic!("one filter chain");
    };
    let [filter] = chain.filters.as_slice() else {
        panic!("one network filter");
    };
    assert_eq!(filter.name, "envoy.filters.network.http_connection_manager");
    let Some(NetworkFilterConfig::TypedConfig(any)) = &filter.config_type else {
        panic!("HCM has a typed_config");
    };
    unpack(any)
}

/// The HTTP filter chain must be exactly ext_authz, then the router: a filter
/// before ext_authz could act on an unauthenticated request.
fn ext_authz_filter(hcm: &HttpConnectionManager) -> ExtAuthz {
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [EXT_AUTHZ, ROUTER]);
    let filter = &hcm.http_filters[0];
    assert!(!filter.disabled, "ext_authz runs on every route by default");
    let Some(HttpFilterConfig::TypedConfig(any)) = &filter.config_type else {
        panic!("ext_authz has a typed_config");
    };
    unpack(any)
}

fn virtual_hosts(hcm: &HttpConnectionManager) -> &[VirtualHost] {
    let Some(RouteSpecifier::RouteConfig(config)) = &hcm.route_specifier else {
        panic!("an inline route_config");
    };
    &config.virtual_hosts
}

fn per_route(config: &HashMap<String, Any>) -> Option<ExtAuthzPerRoute> {
    config.get(EXT_AUTHZ).map(unpack)
}

/// How ext_authz treats one route, with the virtual host's settings merged
/// in as Envoy merges them (the most specific `disabled` wins; context
/// extension keys from the route override the virtual host's).
struct RouteAuthz {
    /// `prefix:/orders` or `path:/healthz`.
    matcher: String,
    /// A request path this route matches.
    sample_path: String,
    disabled: bool,
    context_extensions: HashMap<String, String>,
    request_headers_to_remove: Vec<String>,
    cluster: String,
}

fn routes(hcm: &HttpConnectionManager) -> Vec<RouteAuthz> {
    let mut routes = Vec::new();
    for host in virtual_hosts(hcm) {
        for route in &host.routes {
            routes.push(route_authz(host, route));
        }
    }
    routes
}

fn route_authz(host: &VirtualHost, route: &Route) -> RouteAuthz {
    let (matcher, sample_path) = match route
        .r#match
        .as_ref()
        .and_then(|m| m.path_specifier.as_ref())
    {
        Some(PathSpecifier::Prefix(prefix)) => (
            format!("prefix:{prefix}"),
            format!("{}/42?expand=lines", prefix.trim_end_matches('/')),
        ),
        Some(PathSpecifier::Path(path)) => (format!("path:{path}"), path.clone()),
        other => panic!("routes match by prefix or path, not {other:?}"),
    };
    let mut disabled = false;
    let mut context_extensions = HashMap::new();
    for config in [
        per_route(&host.typed_per_filter_config),
        per_route(&route.typed_per_filter_config),
    ]
    .into_iter()
    .flatten()
    {
        match config
            .r#override
            .expect("ExtAuthzPerRoute sets disabled or check_settings")
        {
            Override::Disabled(value) => disabled = value,
            Override::CheckSettings(settings) => {
                context_extensions.extend(settings.context_extensions)
            }
        }
    }
    let Some(Action::Route(action)) = &route.action else {
        panic!("{matcher}: routes forward to a cluster");
    };
    let Some(ClusterSpecifier::Cluster(cluster)) = &action.cluster_specifier else {
        panic!("{matcher}: routes name one cluster");
    };
    let mut request_headers_to_remove = host.request_headers_to_remove.clone();
    request_headers_to_remove.extend(route.request_headers_to_remove.iter().cloned());
    RouteAuthz {
        matcher,
        sample_path,
        disabled,
        context_extensions,
        request_headers_to_remove,
        cluster: cluster.clone(),
    }
}

fn cluster<'a>(bootstrap: &'a Bootstrap, name: &str) -> &'a Cluster {
    bootstrap
        .static_resources
        .as_ref()
        .expect("static_resources")
        .clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("cluster {name} is defined"))
}

/// The single endpoint of a static cluster, as `ip:port`.
fn endpoint(cluster: &Cluster) -> String {
    let assignment = cluster.load_assignment.as_ref().expect("load_assignment");
    let [locality] = assignment.endpoints.as_slice() else {
        panic!("{}: one locality", cluster.name);
    };
    let [lb_endpoint] = locality.lb_endpoints.as_slice() else {
        panic!("{}: one endpoint", cluster.name);
    };
    let Some(HostIdentifier::Endpoint(endpoint)) = &lb_endpoint.host_identifier else {
        panic!("{}: an endpoint", cluster.name);
    };
    socket_address(endpoint.address.as_ref())
}

fn socket_address(address: Option<&Address>) -> String {
    let Some(AddressKind::SocketAddress(socket)) = address.and_then(|a| a.address.as_ref()) else {
        panic!("a socket address");
    };
    let Some(PortSpecifier::PortValue(port)) = socket.port_specifier else {
        panic!("a port number");
    };
    format!("{}:{port}", socket.address)
}

fn exact_patterns(list: Option<&ListStringMatcher>) -> Vec<String> {
    list.expect("header list is set")
        .patterns
        .iter()
        .map(|matcher| match &matcher.match_pattern {
            Some(MatchPattern::Exact(name)) if !matcher.ignore_case => name.clone(),
            other => panic!("header lists use exact, lowercase names: {other:?}"),
        })
        .collect()
}

/// What both configurations share: an edge HCM that does not let a path
/// trick pick a route, ext_authz failing closed with 503, `/healthz` open
/// without identity headers, every route forwarding to a defined cluster.
fn assert_common(bootstrap: &Bootstrap, hcm: &HttpConnectionManager, ext_authz: &ExtAuthz) {
    assert_eq!(hcm.use_remote_address.as_ref().map(|b| b.value), Some(true));
    assert_eq!(hcm.normalize_path.as_ref().map(|b| b.value), Some(true));
    assert!(hcm.merge_slashes);

    assert_eq!(ext_authz.transport_api_version, ApiVersion::V3 as i32);
    assert!(!ext_authz.failure_mode_allow, "fail closed");
    assert_eq!(
        ext_authz.status_on_error.as_ref().map(|s| s.code),
        Some(StatusCode::ServiceUnavailable as i32)
    );
    assert!(ext_authz.include_peer_certificate);
    assert!(ext_authz.filter_enabled.is_none() && ext_authz.deny_at_disable.is_none());
    assert!(
        !ext_authz.clear_route_cache,
        "gatepass's headers must not reroute"
    );

    let routes = routes(hcm);
    let healthz: Vec<&RouteAuthz> = routes.iter().filter(|r| r.disabled).collect();
    let [healthz] = healthz.as_slice() else {
        panic!("exactly one route without ext_authz");
    };
    assert_eq!(healthz.matcher, "path:/healthz");
    let names = IdentityHeaders::default();
    for name in [
        &names.service,
        &names.service_id,
        &names.token_id,
        &names.abilities,
    ] {
        assert!(
            healthz.request_headers_to_remove.contains(name),
            "/healthz drops a client-sent {name}"
        );
    }
    assert!(healthz.context_extensions.is_empty());
    for route in &routes {
        cluster(bootstrap, &route.cluster);
    }
    assert!(
        routes
            .last()
            .is_some_and(|r| r.matcher == "prefix:/" && !r.disabled),
        "the catch-all route is last and checked"
    );
}

#[test]
fn grpc_config_is_a_valid_envoy_v3_bootstrap_with_the_settings_gatepass_relies_on() {
    let bootstrap = load("envoy.yaml");
    let hcm = connection_manager(&bootstrap);
    let ext_authz = ext_authz_filter(&hcm);
    assert_common(&bootstrap, &hcm, &ext_authz);
    // gatepass's default GATEPASS_GRPC_XFF_TRUSTED_HOPS is 0; the two must agree.
    assert_eq!(hcm.xff_num_trusted_hops, 0);

    let Some(Services::GrpcService(grpc)) = &ext_authz.services else {
        panic!("ext_authz calls a gRPC service");
    };
    assert_eq!(seconds(grpc.timeout.as_ref()), 0.25);
    let Some(TargetSpecifier::EnvoyGrpc(target)) = &grpc.target_specifier else {
        panic!("envoy_grpc");
    };
    assert_eq!(target.cluster_name, "gatepass");
    // Unset, so Envoy sends every header, authorization included.
    assert!(ext_authz.allowed_headers.is_none());

    let gatepass = cluster(&bootstrap, "gatepass");
    assert_eq!(endpoint(gatepass), "127.0.0.1:50051");
    let options: HttpProtocolOptions = unpack(
        gatepass
            .typed_extension_protocol_options
            .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
            .expect("protocol options for gatepass"),
    );
    let Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) =
        options.upstream_protocol_options
    else {
        panic!("explicit_http_config");
    };
    assert!(
        matches!(
            explicit.protocol_config,
            Some(ProtocolConfig::Http2ProtocolOptions(_))
        ),
        "gRPC needs HTTP/2"
    );

    let routes = routes(&hcm);
    let mut requirements = BTreeMap::new();
    for route in routes.iter().filter(|r| !r.disabled) {
        for (key, value) in &route.context_extensions {
            assert!(
                GATEPASS_KEYS.contains(&key.as_str()),
                "{}: gatepass ignores context extension {key:?}",
                route.matcher
            );
            let abilities = parse_ability_list(value)
                .unwrap_or_else(|error| panic!("{}: {key}={value:?}: {error}", route.matcher));
            assert!(!abilities.is_empty(), "{}: {key} is empty", route.matcher);
        }
        requirements.insert(route.matcher.clone(), route.context_extensions.clone());
    }
    let expect = |matcher: &str, key: &str, value: &str| {
        assert_eq!(
            requirements[matcher].get(key).map(String::as_str),
            Some(value),
            "{matcher}"
        );
    };
    expect("prefix:/orders", "require_all", "orders:read");
    expect("prefix:/admin", "require_all", "admin");
    expect(
        "prefix:/inventory",
        "require_any",
        "inventory:read,inventory:write",
    );
    assert!(requirements["prefix:/"].is_empty());
}

#[test]
fn http_config_is_a_valid_envoy_v3_bootstrap_with_the_settings_gatepass_relies_on() {
    let bootstrap = load("envoy-http.yaml");
    let hcm = connection_manager(&bootstrap);
    let ext_authz = ext_authz_filter(&hcm);
    assert_common(&bootstrap, &hcm, &ext_authz);

    let Some(Services::HttpService(http)) = &ext_authz.services else {
        panic!("ext_authz calls an HTTP service");
    };
    let uri = http.server_uri.as_ref().expect("server_uri");
    assert_eq!(uri.uri, "http://127.0.0.1:8080");
    assert_eq!(seconds(uri.timeout.as_ref()), 0.25);
    let Some(HttpUpstreamType::Cluster(cluster_name)) = &uri.http_upstream_type else {
        panic!("server_uri names a cluster");
    };
    assert_eq!(
        endpoint(cluster(&bootstrap, cluster_name)),
        "127.0.0.1:8080"
    );
    assert_eq!(
        http.path_prefix, "/ext-authz",
        "gatepass serves /ext-authz/…"
    );
    assert!(http.path_override.is_empty());

    let sent = exact_patterns(ext_authz.allowed_headers.as_ref());
    assert!(sent.iter().any(|h| h == "authorization"));
    assert!(sent.iter().any(|h| h == "x-forwarded-for"));
    for spoofable in [
        "x-real-ip",
        "x-gatepass-require-all",
        "x-gatepass-require-any",
    ] {
        assert!(
            !sent.iter().any(|h| h == spoofable),
            "{spoofable} is not forwarded from clients"
        );
    }

    let response = http
        .authorization_response
        .as_ref()
        .expect("authorization_response");
    let names = IdentityHeaders::default();
    let mut upstream = exact_patterns(response.allowed_upstream_headers.as_ref());
    upstream.sort();
    let mut identity = vec![
        names.service,
        names.service_id,
        names.token_id,
        names.abilities,
    ];
    identity.sort();
    assert_eq!(
        upstream, identity,
        "exactly gatepass's identity headers reach the upstream"
    );
    assert!(
        response.allowed_upstream_headers_to_append.is_none(),
        "overwrite, never append"
    );
    let client = exact_patterns(response.allowed_client_headers.as_ref());
    for name in ["www-authenticate", "content-type"] {
        assert!(
            client.iter().any(|h| h == name),
            "{name} reaches the client on deny"
        );
    }

    // Envoy ignores context_extensions for an HTTP service: none may
    // pretend to protect a route.
    for route in routes(&hcm) {
        assert!(
            route.context_extensions.is_empty(),
            "{}: context_extensions do nothing in HTTP mode",
            route.matcher
        );
        assert!(
            route
                .request_headers_to_remove
                .iter()
                .any(|h| h == "authorization"),
            "{}: the token does not travel upstream",
            route.matcher
        );
    }
}

/// Why Envoy would refuse the shipped file `name` with `from` edited to `to`.
fn rejection(name: &str, from: &str, to: &str) -> String {
    match envoy_api().load_bootstrap(&edited(&shipped(name), from, to)) {
        Ok(_) => panic!("{name}: {from:?} -> {to:?} was accepted"),
        Err(problems) => problems,
    }
}

/// Edits of the shipped files that Envoy would refuse to load, each with
/// (part of) the reason it must be refused for.
fn assert_rejected(name: &str, edits: &[(&str, &str, &str)]) {
    for (from, to, reason) in edits {
        let problems = rejection(name, from, to);
        assert!(
            problems.contains(reason),
            "{name}: {from:?} -> {to:?}: expected {reason:?} in:\n{problems}"
        );
    }
}

/// Edits that misspell a field name (the edited text starts with it).
fn assert_misspelt(name: &str, edits: &[(&str, &str)]) {
    for (from, to) in edits {
        let field = to.split(':').next().unwrap_or_default();
        let problems = rejection(name, from, to);
        assert!(
            problems.contains(&format!("unrecognized field name '{field}'")),
            "{name}: {from:?} -> {to:?}: expected {field:?} to be unknown in:\n{problems}"
        );
    }
}

#[test]
fn misspelt_fields_are_rejected_also_inside_typed_configs() {
    assert_misspelt(
        "envoy.yaml",
        &[
            // In ExtAuthz, inside the HCM's typed_config.
            ("failure_mode_allow: false", "failure_mode_alow: false"),
            ("include_peer_certificate:", "include_peer_certificates:"),
            ("status_on_error:", "status_on_eror:"),
            // In the HCM, the listener's typed_config.
            ("stat_prefix: ingress", "stats_prefix: ingress"),
            // In ExtAuthzPerRoute, a typed_per_filter_config map value.
            ("check_settings:", "check_setting:"),
            ("context_extensions:", "context_extension:"),
            // In HttpProtocolOptions, a typed_extension_protocol_options value.
            ("explicit_http_config:", "explicit_http_configs:"),
            // Plain Bootstrap fields.
            ("connect_timeout: 0.25s", "connection_timeout: 0.25s"),
        ],
    );
    assert_misspelt(
        "envoy-http.yaml",
        &[
            ("path_prefix: /ext-authz", "path_prefx: /ext-authz"),
            ("allowed_upstream_headers:", "allowed_upstream_header:"),
        ],
    );
    // A misspelt @type names no message Envoy knows.
    assert_rejected(
        "envoy.yaml",
        &[(
            "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz\n",
            "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth\n",
            "message 'envoy.extensions.filters.http.ext_authz.v3.ExtAuth' not found",
        )],
    );
}

#[test]
fn mistyped_values_are_rejected() {
    assert_rejected(
        "envoy.yaml",
        &[
            (
                "failure_mode_allow: false",
                "failure_mode_allow: \"no\"",
                "failure_mode_allow: invalid type: string \"no\", expected a boolean",
            ),
            (
                "timeout: 0.25s",
                "timeout: 250ms",
                "grpc_service.timeout: failed to parse duration",
            ),
            (
                "code: ServiceUnavailable",
                "code: Unavailable",
                "status_on_error.code",
            ),
            (
                "transport_api_version: V3",
                "transport_api_version: V4",
                "transport_api_version",
            ),
            (
                "require_all: orders:read",
                "require_all: [orders:read]",
                "context_extensions",
            ),
            ("port_value: 50051", "port_value: fifty", "port_value"),
            (
                "include_peer_certificate: true",
                "include_peer_certificate: {}",
                "include_peer_certificate",
            ),
        ],
    );
}

#[test]
fn rules_envoy_enforces_on_load_are_checked_too() {
    assert_rejected(
        "envoy.yaml",
        &[
            // protoc-gen-validate rules: string min_len, required oneof,
            // enum defined_only, duration gt, repeated min_items, pattern.
            (
                "cluster_name: gatepass }",
                "cluster_name: \"\" }",
                "envoy_grpc.cluster_name: must be at least 1",
            ),
            (
                "disabled: true",
                "check_settings: null",
                "one of disabled, check_settings is required",
            ),
            (
                "code: ServiceUnavailable",
                "code: 999",
                "status_on_error.code: 999 is not a defined",
            ),
            (
                "interval: 5s",
                "interval: 0s",
                "health_checks[0].interval: 0s is out of range",
            ),
            (
                "domains: [\"*\"]",
                "domains: []",
                "virtual_hosts[0].domains: needs at least 1 entries",
            ),
            (
                "prefix: /orders,",
                "path_separated_prefix: /orders/,",
                "match.path_separated_prefix: \"/orders/\" does not match",
            ),
            // Of two equal keys one would win silently: refused.
            (
                "failure_mode_allow: false\n",
                "failure_mode_allow: false\n                      failure_mode_allow: true\n",
                "duplicate entry with key \"failure_mode_allow\"",
            ),
        ],
    );
    assert_rejected(
        "envoy-http.yaml",
        &[
            // A required duration; a deprecated field (the older place of
            // allowed_headers).
            ("timeout: 0.25s\n", "\n", "server_uri.timeout: required"),
            (
                "path_prefix: /ext-authz\n",
                "path_prefix: /ext-authz\n                        authorization_request: { allowed_headers: { patterns: [ { exact: x-forwarded-for } ] } }\n",
                "authorization_request.allowed_headers: deprecated field",
            ),
        ],
    );
}

async fn grpc_client(app: &TestApp) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{}", app.grpc_addr))
        .await
        .expect("gRPC connects")
}

fn allowed(response: &CheckResponse) -> bool {
    let status = response.status.as_ref().map_or(-1, |s| s.code);
    match (&response.http_response, status) {
        (Some(HttpResponse::OkResponse(ok)), 0) => {
            assert_eq!(
                ok.headers_to_remove,
                ["authorization"],
                "the token does not travel upstream"
            );
            true
        }
        _ => false,
    }
}

fn deny_reason(response: &CheckResponse) -> (i32, i32, String) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("expected a denial: {response:?}");
    };
    let body: serde_json::Value = serde_json::from_str(&denied.body).expect("JSON body");
    (
        response.status.as_ref().map_or(-1, |s| s.code),
        denied.status.as_ref().map_or(-1, |s| s.code),
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Token abilities that satisfy `extensions`, one set per `require_any`
/// alternative; and sets that each miss something.
fn ability_sets(extensions: &HashMap<String, String>) -> (Vec<String>, Vec<String>) {
    let split = |key: &str| -> Vec<String> {
        extensions
            .get(key)
            .map(|list| {
                list.split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = split("require_all");
    let any = split("require_any");
    let with = |extra: Option<&String>| -> String {
        let mut set: Vec<String> = all.clone();
        set.extend(extra.cloned());
        if set.is_empty() {
            set.push("unrelated:read".into());
        }
        set.join(",")
    };
    let holding: Vec<String> = if any.is_empty() {
        vec![with(None)]
    } else {
        any.iter().map(|a| with(Some(a))).collect()
    };
    let mut lacking = Vec::new();
    if !all.is_empty() || !any.is_empty() {
        lacking.push("unrelated:read".to_owned());
    }
    if !any.is_empty() && !all.is_empty() {
        lacking.push(all.join(","));
    }
    if all.len() > 1 || (!all.is_empty() && !any.is_empty()) {
        let mut missing_one = all[1..].to_vec();
        missing_one.extend(any.first().cloned());
        lacking.push(missing_one.join(","));
    }
    (holding, lacking)
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn every_route_requirement_in_the_grpc_config_is_enforced_by_gatepass(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let mut client = grpc_client(&app).await;
    let hcm = connection_manager(&load("envoy.yaml"));

    let mut checked = 0;
    for route in routes(&hcm).into_iter().filter(|r| !r.disabled) {
        let (holding, lacking) = ability_sets(&route.context_extensions);
        for abilities in &holding {
            let (token, _) = fixtures
                .token(TokenSpec {
                    abilities,
                    ..TokenSpec::default()
                })
                .await;
            let request = EnvoyCheck::get(&route.sample_path)
                .bearer(&token)
                .context_extensions(&route.context_extensions)
                .build();
            let response = client
                .check(request)
                .await
                .expect("Check answers")
                .into_inner();
            assert!(
                allowed(&response),
                "{} with abilities {abilities}: expected allow, got {response:?}",
                route.matcher
            );
            checked += 1;
        }
        for abilities in &lacking {
            let (token, _) = fixtures
                .token(TokenSpec {
                    abilities,
                    ..TokenSpec::default()
                })
                .await;
            let request = EnvoyCheck::get(&route.sample_path)
                .method("POST")
                .bearer(&token)
                .context_extensions(&route.context_extensions)
                .build();
            let response = client
                .check(request)
                .await
                .expect("Check answers")
                .into_inner();
            assert_eq!(
                deny_reason(&response),
                (PERMISSION_DENIED, 403, "insufficient_ability".to_owned()),
                "{} with abilities {abilities}",
                route.matcher
            );
            checked += 1;
        }
        // No token: the route is never open.
        let request = EnvoyCheck::get(&route.sample_path)
            .context_extensions(&route.context_extensions)
            .build();
        let response = client
            .check(request)
            .await
            .expect("Check answers")
            .into_inner();
        assert_eq!(
            deny_reason(&response).2,
            "missing_token",
            "{}",
            route.matcher
        );
    }
    assert!(
        checked >= 8,
        "the config has routes with requirements ({checked} checks)"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn the_allowlist_sees_the_peer_envoy_reports_not_a_client_sent_forwarded_for(pool: PgPool) {
    // envoy.yaml: use_remote_address with no trusted hops; gatepass: its
    // default GATEPASS_GRPC_XFF_TRUSTED_HOPS=0, so source.address decides.
    let app = TestApp::spawn(pool).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("office", "192.0.2.0/24").await;
    let (token, _) = fixtures
        .token(TokenSpec {
            service: "office",
            abilities: "*",
            ..TokenSpec::default()
        })
        .await;
    let mut client = grpc_client(&app).await;

    let spoofed = EnvoyCheck::get("/orders/42")
        .bearer(&token)
        .source("198.51.100.7")
        .header("X-Forwarded-For", "192.0.2.10")
        .build();
    let response = client
        .check(spoofed)
        .await
        .expect("Check answers")
        .into_inner();
    assert_eq!(
        deny_reason(&response),
        (PERMISSION_DENIED, 403, "ip_not_allowed".to_owned())
    );

    let inside = EnvoyCheck::get("/orders/42")
        .bearer(&token)
        .source("192.0.2.10")
        .build();
    let response = client
        .check(inside)
        .await
        .expect("Check answers")
        .into_inner();
    assert!(allowed(&response), "{response:?}");
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn the_http_config_exchange_with_gatepass_gives_envoy_what_it_forwards(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (token, token_id) = fixtures.token(TokenSpec::default()).await;

    let bootstrap = load("envoy-http.yaml");
    let ext_authz = ext_authz_filter(&connection_manager(&bootstrap));
    let Some(Services::HttpService(http)) = &ext_authz.services else {
        panic!("ext_authz calls an HTTP service");
    };
    let response_rules = http
        .authorization_response
        .as_ref()
        .expect("authorization_response");
    let upstream = exact_patterns(response_rules.allowed_upstream_headers.as_ref());
    let to_client = exact_patterns(response_rules.allowed_client_headers.as_ref());
    let client = reqwest::Client::new();
    // What Envoy sends for `DELETE /orders/42?x=1` from 192.0.2.10: the
    // original method, path_prefix + path, Host, Authorization, and the
    // allowed x-forwarded-for as use_remote_address leaves it.
    let envoy_asks = |authorization: Option<String>| {
        let url = app.http_url(&format!("{}/orders/42?x=1", http.path_prefix));
        let mut request = client
            .request(reqwest::Method::DELETE, url)
            .header("host", "api.internal")
            .header("content-length", "0")
            .header("x-forwarded-for", "192.0.2.10");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };

    let allow = envoy_asks(Some(format!("Bearer {token}")))
        .await
        .expect("gatepass answers");
    assert_eq!(allow.status(), 200, "Envoy allows on exactly 200");
    for name in &upstream {
        assert!(
            allow.headers().contains_key(name.as_str()),
            "gatepass answers {name}; without it a client-sent {name} would reach the upstream"
        );
    }
    assert_eq!(
        allow.headers()["x-gatepass-token-id"],
        token_id.to_string().as_str()
    );

    let deny = envoy_asks(None).await.expect("gatepass answers");
    assert_eq!(deny.status(), 401);
    for name in ["www-authenticate", "content-type"] {
        assert!(
            deny.headers().contains_key(name),
            "gatepass's 401 carries {name}"
        );
        assert!(
            to_client.iter().any(|h| h == name),
            "and Envoy passes {name} on"
        );
    }
    app.stop().await;
}
