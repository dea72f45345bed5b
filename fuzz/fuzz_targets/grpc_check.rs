#![no_main]
//! The gRPC surface end to end (README "Decision", "Surfaces"): arbitrary
//! bytes decoded as an Envoy `CheckRequest` (prost) go through
//! `ExtAuthz::check` (the tonic `Authorization` trait) over a real SQLite
//! store, provisioned once per process in a temporary directory with the
//! tokens of fuzz/src/fixtures.rs (fixed secrets, so the corpus keeps
//! carrying valid ones). Each request is checked twice: with
//! `xff_trusted_hops` 0 and 1.
//! - nothing panics; the answer is a `CheckResponse` (never a `Status`:
//!   the store is local and healthy) with code 0 and an `OkHttpResponse`,
//!   or 16 / 7 with a 401 / 403 `DeniedHttpResponse`;
//! - an allow only ever happens when the request carries exactly one
//!   `authorization` value (`headers["authorization"]` plus every
//!   `header_map` entry of that name), without a comma, that is
//!   `Bearer <token>` for a live provisioned token, in the form
//!   `<id>|<secret>` or, looked up by digest, `<secret>`; when that token's
//!   service allowlist admits the client (computed with the reference of
//!   fuzz/src/reference.rs) and its abilities meet `context_extensions`'
//!   `require_all` / `require_any`. The allow names that token's id and
//!   service and strips `authorization`;
//! - conversely such a request is allowed, and exactly a revoked,
//!   expired, refresh or disabled-service token gets its own denial.
//!
//! Ids with leading zeros (`01|<secret>` is token 1) are accepted, as
//! Sanctum accepts them (its id check is `ctype_digit`); with
//! GATEPASS_FUZZ_STRICT=1 the target reports them, to find where.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{Address, CheckRequest, CheckResponse, HttpResponse};
use gatepass::model::parse_ability_list;
use gatepass::check::Authorizer;
use gatepass::model::{NetList, TokenKind};
use gatepass::cache::{CacheOptions, Tiers};
use gatepass::config::IdentityHeaders;
use gatepass::grpc::{Authorization, ExtAuthz, GrpcOptions};
use gatepass::metrics::Metrics;
use gatepass::shutdown::Drain;
use gatepass::model::ServiceName;
use gatepass::store::{NewToken, ServiceChange, Store, StoreOptions};
use gatepass::token::{TokenDigest, TokenFormat};
use gatepass_fuzz::fixtures::{self, SERVICES, State, Token};
use gatepass_fuzz::reference;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

struct World {
    runtime: tokio::runtime::Runtime,
    /// (xff_trusted_hops, surface)
    surfaces: Vec<(u32, ExtAuthz)>,
    tokens: Vec<Token>,
    strict: bool,
}

/// A directory of this process's own; those of processes that are gone
/// are removed first (libFuzzer exits without running destructors).
fn database_dir() -> PathBuf {
    let root = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("gatepass-fuzz-")) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(format!("gatepass-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = database_dir();
        let tokens = fixtures::tokens();
        let surfaces = runtime.block_on(async {
            let store = Store::connect(&StoreOptions {
                url: format!("sqlite://{}", dir.join("gatepass.db").display()),
                max_connections: 1,
                timeout: Duration::from_secs(1),
                ..StoreOptions::default()
            })
            .expect("store options");
            store.migrate().await.expect("migrations");
            provision(&store, &tokens).await;
            let metrics = Metrics::new().expect("metrics");
            let tiers = Tiers::new(store, None, &CacheOptions::default(), metrics.clone());
            let authorizer = Authorizer::new(tiers, None, TokenFormat::default(), None);
            [0, 1]
                .into_iter()
                .map(|hops| {
                    let options = GrpcOptions {
                        identity_headers: IdentityHeaders::default(),
                        remove_headers: vec!["authorization".to_owned()],
                        xff_trusted_hops: hops,
                    };
                    (hops, ExtAuthz::new(authorizer.clone(), options, metrics.clone(), Drain::default()))
                })
                .collect()
        });
        World {
            runtime,
            surfaces,
            tokens,
            strict: std::env::var_os("GATEPASS_FUZZ_STRICT").is_some_and(|v| v == "1"),
        }
    })
}

async fn provision(store: &Store, tokens: &[Token]) {
    for service in &SERVICES {
        let name = ServiceName::parse(service.name).expect("service name");
        store
            .upsert_service(&ServiceChange {
                name: name.clone(),
                description: Some("fuzzing".into()),
                ip_allowlist: Some(NetList::parse(service.allowlist).expect("allowlist")),
            })
            .await
            .expect("service");
        if !service.active {
            store.set_service_active(&name, false).await.expect("disable");
        }
    }
    for token in tokens {
        let info = store
            .insert_token(&NewToken {
                service: ServiceName::parse(token.service).expect("service name"),
                name: format!("fuzz-{}", token.id),
                digest: TokenDigest::of(token.secret.as_bytes()),
                abilities: parse_ability_list(token.abilities).expect("abilities"),
                kind: if token.state == State::Refresh {
                    TokenKind::Refresh
                } else {
                    TokenKind::Access
                },
                expires_at: (token.state == State::Expired)
                    .then(|| chrono::Utc::now() - chrono::Duration::days(1)),
            })
            .await
            .expect("token");
        assert_eq!(info.id, token.id, "tokens are inserted in id order into a fresh database");
        if token.state == State::Revoked {
            store.revoke_token(token.id).await.expect("revoke");
        }
    }
}

fuzz_target!(
    init: {
        gatepass_fuzz::seeds::write_if_asked("grpc_check");
        world();
    },
    |data: &[u8]| {
        let Ok(request) = CheckRequest::decode(data) else {
            return;
        };
        let world = world();
        for (hops, surface) in &world.surfaces {
            let answer = world
                .runtime
                .block_on(surface.check(tonic::Request::new(request.clone())));
            let response = match answer {
                Ok(response) => response.into_inner(),
                Err(status) => panic!("Check failed with {status:?} for {request:?}"),
            };
            check(world, *hops, &request, &response);
        }
    }
);

/// Every value of header `name`: `headers[name]` (Envoy sends lowercase
/// names there, repeated headers joined by `,`), then each `header_map`
/// entry of that name, any case (its raw value when set).
fn header_values<'a>(request: &'a CheckRequest, name: &str) -> Vec<&'a [u8]> {
    let Some(http) = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Vec::new();
    };
    let mut values: Vec<&[u8]> = http.headers.get(name).map(String::as_bytes).into_iter().collect();
    if let Some(map) = &http.header_map {
        for header in &map.headers {
            if header.key.eq_ignore_ascii_case(name) {
                values.push(if header.raw_value.is_empty() {
                    header.value.as_bytes()
                } else {
                    &header.raw_value
                });
            }
        }
    }
    values
}

fn source(request: &CheckRequest) -> Option<IpAddr> {
    let address = request
        .attributes
        .as_ref()?
        .source
        .as_ref()?
        .address
        .as_ref()?
        .address
        .as_ref()?;
    match address {
        Address::SocketAddress(socket) => socket.address.parse().ok(),
        _ => None,
    }
}

/// The provisioned token `presented` is, and whether only through an id
/// with leading zeros.
fn presented_token<'a>(world: &'a World, presented: &[u8]) -> Option<(&'a Token, bool)> {
    world.tokens.iter().find_map(|token| {
        if presented == token.plain().as_bytes() || presented == token.secret.as_bytes() {
            return Some((token, false));
        }
        let (id, secret) = presented.split_at(presented.iter().position(|&b| b == b'|')?);
        let zeros = (2..=19).contains(&id.len())
            && id[0] == b'0'
            && id.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(id).ok()?.parse::<i64>().ok()? == token.id;
        (zeros && &secret[1..] == token.secret.as_bytes()).then_some((token, true))
    })
}

fn check(world: &World, hops: u32, request: &CheckRequest, response: &CheckResponse) {
    let status = response.status.as_ref().expect("CheckResponse.status");
    let authorization = header_values(request, "authorization");
    let presented = match authorization.as_slice() {
        [value] if !value.contains(&b',') => reference::bearer(value),
        _ => None,
    };
    let token = presented.and_then(|p| presented_token(world, p));
    let client = reference::client_behind_envoy(
        source(request),
        hops,
        &header_values(request, "x-forwarded-for"),
    );
    let mut requirements = reference::Requirements::default();
    if let Some(extensions) = request.attributes.as_ref().map(|a| &a.context_extensions) {
        if let Some(all) = extensions.get("require_all") {
            requirements.require_all(all);
        }
        if let Some(any) = extensions.get("require_any") {
            requirements.require_any(any);
        }
    }
    let admitted = |token: &Token| {
        let list = NetList::parse(fixtures::allowlist_of(token.service)).expect("allowlist");
        let held: Vec<&str> = token.abilities.split(',').collect();
        list.admits(client) && requirements.satisfied_by(&held)
    };
    let case = || {
        format!(
            "hops {hops}: authorization {:?}, client {client:?}, requirements {requirements:?}; answer {response:?}",
            authorization.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>()
        )
    };

    match (status.code, &response.http_response) {
        (0, Some(HttpResponse::OkResponse(ok))) => {
            let Some((token, zeros)) = token else {
                panic!("allowed without a provisioned token: {}", case());
            };
            assert!(
                !(zeros && world.strict),
                "allowed token {} presented with leading zeros in its id: {}",
                token.id,
                case()
            );
            assert_eq!(token.state, State::Live, "allowed a dead token: {}", case());
            assert!(admitted(token), "allowed past the allowlist or the requirements: {}", case());
            let header = |name: &str| {
                ok.headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == name)
                    .map(|h| h.value.clone())
            };
            assert_eq!(header("x-gatepass-token-id"), Some(token.id.to_string()), "{}", case());
            assert_eq!(header("x-gatepass-service"), Some(token.service.to_owned()), "{}", case());
            assert_eq!(ok.headers_to_remove, ["authorization"], "{}", case());
        }
        (16 | 7, Some(HttpResponse::DeniedResponse(denied))) => {
            let http = denied.status.as_ref().map(|s| s.code);
            assert_eq!(http, Some(if status.code == 16 { 401 } else { 403 }), "{}", case());
            if let Some((token, zeros)) = token {
                match token.state.denial() {
                    None => assert!(
                        !admitted(token) || (zeros && world.strict),
                        "a live token within its allowlist and abilities was denied: {}",
                        case()
                    ),
                    Some(reason) => assert_eq!(status.message, reason, "{}", case()),
                }
            }
        }
        _ => panic!("not an allow nor a denial: {}", case()),
    }
}
