//! Hostile input, sent as an attacker would: raw bytes on a socket to the
//! HTTP surfaces, hand-built CheckRequests to gRPC. Every row gets a 4xx
//! or a clean gRPC answer, never a 5xx, a dropped connection or a hang,
//! and never an allow that a clean request of the same meaning would not
//! get.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use gatepass::cache::Outcome;
use gatepass::token::{IssuedToken, TokenFormat};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::grpc::{EnvoyCall, PERMISSION_DENIED, UNAUTHENTICATED, client};
use crate::helpers::{Fixtures, Table, TestApp, TokenSpec};

const POLICY: &str = r#"
[[rule]]
path_prefix = "/admin/"
require_all = ["admin"]

[[rule]]
host = "admin.internal"
require_all = ["admin"]

[[rule]]
methods = ["DELETE"]
path_prefix = "/orders/"
require_all = ["orders:delete"]

[[rule]]
path = "/**/a/**/b/**/c/**/d/**/e"
require_all = ["deep"]
"#;

/// What the table's tokens are for.
struct Tokens {
    /// billing: `orders:read,inventory:*`, any address.
    valid: String,
    /// A service fenced to the loopback addresses the tests connect from.
    loopback_only: String,
    table: Table,
}

async fn provision(app: &TestApp) -> Tokens {
    let table = Table::provision(&app.store).await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("local", "127.0.0.1, ::1").await;
    let (loopback_only, _) = fixtures
        .token(TokenSpec {
            service: "local",
            ..TokenSpec::default()
        })
        .await;
    Tokens {
        valid: table.valid.clone(),
        loopback_only,
        table,
    }
}

async fn spawn_with_policy(pool: PgPool) -> (TestApp, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), POLICY).unwrap();
    let path = file.path().display().to_string();
    let app = TestApp::spawn_with(pool, |args| args.policy_file = Some(path)).await;
    (app, file)
}

/// One HTTP/1.1 request as raw bytes, answered and closed.
fn raw_request(target: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: gatepass\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.extend_from_slice(name);
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

/// Sends `request` and returns the status of the answer. Panics when the
/// connection closes without one or nothing comes back within 10 s (a
/// pinned worker).
async fn status_of(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server may answer and close before reading everything we send.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let Ok(read) =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await
    else {
        return Err("no answer within 10 s".into());
    };
    if read.is_err() && answer.is_empty() {
        return Err("connection reset without an answer".into());
    }
    let head = String::from_utf8_lossy(&answer);
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))
}

/// What the row is, the request target, its headers, the status expected.
type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a [u8], &'a [u8])>, u16);

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn hostile_http_requests_get_the_strictest_answer(pool: PgPool) {
    let (app, _policy) = spawn_with_policy(pool).await;
    let tokens = provision(&app).await;
    let valid = bearer(&tokens.valid);
    let fenced = bearer(&tokens.loopback_only);
    let auth: &[u8] = b"authorization";
    let joined = format!("Bearer {}, Bearer junk", tokens.valid);
    let uri: &[u8] = b"x-original-uri";
    let deep_path = format!("/auth?{}", "/a/b/c/d".repeat(640));
    let deep_uri = "/a/b/c/d".repeat(640);
    let huge_requirement = "x,".repeat(50_000);
    let long_token = format!("Bearer 1|{}", "a".repeat(64 * 1024));
    let many_headers: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
        .map(|i| (format!("x-filler-{i}").into_bytes(), b"1".to_vec()))
        .collect();

    let mut cases: Vec<Case> = vec![
        ("clean allow", b"/auth".to_vec(), vec![(auth, &valid)], 200),
        (
            "non-UTF-8 credential",
            b"/auth".to_vec(),
            vec![(auth, b"Bearer \xff\xfe")],
            401,
        ),
        (
            "raw UTF-8 under /admin/",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, "/admin/café".as_bytes())],
            403,
        ),
        (
            "percent-encoded UTF-8 under /admin/",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, b"/admin/caf%C3%A9")],
            403,
        ),
        (
            "invalid UTF-8 under /admin/",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, b"/admin/\xff\xfe")],
            403,
        ),
        (
            "invalid byte in the /admin segment",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, b"/admin\xff/x")],
            403,
        ),
        (
            "dot segments around an invalid byte",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, b"/x/\xff/../../admin/users")],
            403,
        ),
        (
            "encoded invalid byte",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, b"/admin/%ff")],
            403,
        ),
        (
            "encoded NUL",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, b"/admin/%00")],
            403,
        ),
        (
            "forward-auth URI with invalid UTF-8",
            b"/auth".to_vec(),
            vec![(auth, &valid), (b"x-forwarded-uri", b"/admin/\xff")],
            403,
        ),
        (
            "unreadable X-Original-URI does not fall back to X-Forwarded-Uri",
            b"/auth".to_vec(),
            vec![
                (auth, &valid),
                (uri, b"/admin/\xff"),
                (b"x-forwarded-uri", b"/public"),
            ],
            403,
        ),
        (
            "method with an invalid byte",
            b"/auth".to_vec(),
            vec![
                (auth, &valid),
                (uri, b"/orders/7"),
                (b"x-original-method", b"DEL\xffETE"),
            ],
            403,
        ),
        (
            "host with an invalid byte",
            b"/auth".to_vec(),
            vec![(auth, &valid), (b"x-forwarded-host", b"admin.internal\xff")],
            403,
        ),
        (
            "exponential glob path",
            b"/auth".to_vec(),
            vec![(auth, &valid), (uri, deep_uri.as_bytes())],
            200,
        ),
        (
            "loopback service, clean",
            b"/auth".to_vec(),
            vec![(auth, &fenced)],
            200,
        ),
        (
            "unreadable X-Real-IP from a trusted proxy",
            b"/auth".to_vec(),
            vec![(auth, &fenced), (b"x-real-ip", b"\xff")],
            403,
        ),
        (
            "X-Real-IP with a trailing invalid byte",
            b"/auth".to_vec(),
            vec![(auth, &fenced), (b"x-real-ip", b"::1\xff")],
            403,
        ),
        (
            "X-Real-IP sent twice",
            b"/auth".to_vec(),
            vec![
                (auth, &fenced),
                (b"x-real-ip", b"::1"),
                (b"x-real-ip", b"::1"),
            ],
            403,
        ),
        (
            "unreadable X-Forwarded-For",
            b"/auth".to_vec(),
            vec![(auth, &fenced), (b"x-forwarded-for", b"\xff")],
            403,
        ),
        (
            "client junk before the appended client",
            b"/auth".to_vec(),
            vec![(auth, &fenced), (b"x-forwarded-for", b"\xff, 10.9.9.9")],
            403,
        ),
        (
            "garbage X-Forwarded-For",
            b"/auth".to_vec(),
            vec![(auth, &fenced), (b"x-forwarded-for", b"not an address")],
            403,
        ),
        (
            "X-Forwarded-For over two lines",
            b"/auth".to_vec(),
            vec![
                (auth, &fenced),
                (b"x-forwarded-for", b"::1"),
                (b"x-forwarded-for", b"192.0.2.1"),
            ],
            403,
        ),
        (
            "valid credential first, junk second",
            b"/auth".to_vec(),
            vec![(auth, &valid), (auth, b"Bearer junk")],
            401,
        ),
        (
            "junk credential first, valid second",
            b"/auth".to_vec(),
            vec![(auth, b"Bearer junk"), (auth, &valid)],
            401,
        ),
        (
            "two credentials joined by a comma",
            b"/auth".to_vec(),
            vec![(auth, joined.as_bytes())],
            401,
        ),
        (
            "overflowing id",
            b"/auth".to_vec(),
            vec![(auth, b"Bearer 99999999999999999999|abc")],
            401,
        ),
        (
            "negative id",
            b"/auth".to_vec(),
            vec![(auth, b"Bearer -1|abc")],
            401,
        ),
        (
            "64 KiB credential",
            b"/auth".to_vec(),
            vec![(auth, long_token.as_bytes())],
            401,
        ),
        (
            "100 KB requirement header",
            b"/auth".to_vec(),
            vec![
                (auth, &valid),
                (b"x-gatepass-require-all", huge_requirement.as_bytes()),
            ],
            403,
        ),
        (
            "non-UTF-8 requirement",
            b"/auth".to_vec(),
            vec![(auth, &valid), (b"x-gatepass-require-any", b"orders:\xff")],
            403,
        ),
        (
            "NUL in a header",
            b"/auth".to_vec(),
            vec![(auth, &valid), (b"x-original-uri", b"/a\x00b")],
            400,
        ),
        (
            "Envoy HTTP path through the exponential glob",
            format!("/ext-authz{}", deep_path.trim_start_matches("/auth?")).into_bytes(),
            vec![(auth, &valid)],
            200,
        ),
    ];
    let mut numerous: Vec<(&[u8], &[u8])> = vec![(auth, &valid)];
    numerous.extend(
        many_headers
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice())),
    );
    cases.push(("200 headers", b"/auth".to_vec(), numerous, 431));
    let oversized = "x".repeat(140 * 1024);
    cases.push((
        "140 KB of headers",
        b"/auth".to_vec(),
        vec![(auth, &valid), (b"x-filler", oversized.as_bytes())],
        431,
    ));

    let mut wrong = Vec::new();
    for (what, target, headers, expected) in cases {
        let started = Instant::now();
        let status = status_of(app.http_addr, &raw_request(&target, &headers)).await;
        println!("{what}: {status:?} in {:?}", started.elapsed());
        if status != Ok(expected) {
            wrong.push(format!("{what}: {status:?}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The clean request still works afterwards: no worker is pinned.
    let status = status_of(app.http_addr, &raw_request(b"/auth", &[(auth, &valid)])).await;
    assert_eq!(status, Ok(200));
    drop(tokens.table);
    app.stop().await;
}

/// A CheckRequest whose headers arrive raw, as Envoy sends them with
/// `encode_raw_headers: true`.
fn with_raw_headers(mut request: CheckRequest, headers: &[(&str, &[u8])]) -> CheckRequest {
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("an HTTP request");
    http.header_map = Some(HeaderMap {
        headers: headers
            .iter()
            .map(|(key, value)| HeaderValue {
                key: (*key).to_owned(),
                raw_value: value.to_vec(),
                ..Default::default()
            })
            .collect(),
    });
    request
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn hostile_check_requests_get_the_strictest_answer(pool: PgPool) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), POLICY).unwrap();
    let path = file.path().display().to_string();
    let app = TestApp::spawn_with(pool, |args| {
        args.policy_file = Some(path);
        args.grpc_xff_trusted_hops = Some("1".into());
    })
    .await;
    let tokens = provision(&app).await;
    let mut grpc = client(&app).await;
    let valid = format!("Bearer {}", tokens.valid);
    let fenced = format!("Bearer {}", tokens.loopback_only);
    let deep = "/a/b/c/d".repeat(640);
    let huge = "x".repeat(64 * 1024);

    // (what, request, expected CheckResponse status code; 0 = allow)
    let cases: Vec<(&str, CheckRequest, i32)> = vec![
        ("clean allow", EnvoyCall::bearer(&tokens.valid).build(), 0),
        (
            "empty CheckRequest",
            CheckRequest::default(),
            UNAUTHENTICATED,
        ),
        (
            "attributes without a request",
            CheckRequest {
                attributes: Some(Default::default()),
            },
            UNAUTHENTICATED,
        ),
        (
            "comma-joined repeated credentials",
            EnvoyCall::new()
                .header("authorization", format!("{valid},Bearer junk"))
                .build(),
            UNAUTHENTICATED,
        ),
        (
            "raw header map with two credentials",
            with_raw_headers(
                EnvoyCall::new().build(),
                &[
                    ("authorization", valid.as_bytes()),
                    ("authorization", b"Bearer junk"),
                ],
            ),
            UNAUTHENTICATED,
        ),
        (
            "a credential in both header forms",
            with_raw_headers(
                EnvoyCall::bearer(&tokens.valid).build(),
                &[("authorization", b"Bearer junk")],
            ),
            UNAUTHENTICATED,
        ),
        (
            "raw non-UTF-8 credential",
            with_raw_headers(
                EnvoyCall::new().build(),
                &[("authorization", b"Bearer \xff\xfe")],
            ),
            UNAUTHENTICATED,
        ),
        (
            "raw credential, allowed",
            with_raw_headers(
                EnvoyCall::new().build(),
                &[("authorization", valid.as_bytes())],
            ),
            0,
        ),
        (
            "raw UTF-8 under /admin/",
            EnvoyCall::bearer(&tokens.valid)
                .route("GET", "api.internal", "/admin/café")
                .build(),
            PERMISSION_DENIED,
        ),
        (
            "exponential glob path",
            EnvoyCall::bearer(&tokens.valid)
                .route("GET", "api.internal", &deep)
                .build(),
            0,
        ),
        (
            "64 KiB header value",
            EnvoyCall::bearer(&tokens.valid)
                .header("x-filler", huge.clone())
                .build(),
            0,
        ),
        (
            "64 KiB credential",
            EnvoyCall::new()
                .header("authorization", format!("Bearer {huge}"))
                .build(),
            UNAUTHENTICATED,
        ),
        (
            "trusted hop: real client inside the fence",
            EnvoyCall::new()
                .header("authorization", fenced.clone())
                .header("x-forwarded-for", "::1, 10.0.0.1")
                .build(),
            0,
        ),
        (
            "trusted hop: unreadable entry is no fallback to the source",
            with_raw_headers(
                EnvoyCall::new().source("::1").build(),
                &[
                    ("authorization", fenced.as_bytes()),
                    ("x-forwarded-for", b"\xff, 10.0.0.1"),
                ],
            ),
            PERMISSION_DENIED,
        ),
        (
            "trusted hop: garbage entry",
            EnvoyCall::new()
                .source("::1")
                .header("authorization", fenced.clone())
                .header("x-forwarded-for", "garbage, 10.0.0.1")
                .build(),
            PERMISSION_DENIED,
        ),
        (
            "100 KB requirement",
            EnvoyCall::bearer(&tokens.valid)
                .context(
                    "require_all",
                    Box::leak("y,".repeat(50_000).into_boxed_str()),
                )
                .build(),
            PERMISSION_DENIED,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, request, expected) in cases {
        let started = Instant::now();
        let Ok(answer) = tokio::time::timeout(Duration::from_secs(10), grpc.check(request)).await
        else {
            wrong.push(format!("{what}: no answer within 10 s"));
            continue;
        };
        let response = answer
            .unwrap_or_else(|status| panic!("{what}: {status:?}"))
            .into_inner();
        let code = response.status.as_ref().map_or(-1, |status| status.code);
        let allowed = matches!(response.http_response, Some(HttpResponse::OkResponse(_)));
        println!("{what}: code {code} in {:?}", started.elapsed());
        if code != expected || allowed != (expected == 0) {
            wrong.push(format!("{what}: code {code}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn junk_tokens_of_either_shape_stay_off_the_database(pool: PgPool) {
    let (app, table) = {
        let store =
            gatepass::store::Store::from(gatepass::store::PostgresStore::from_pool(pool.clone()));
        let table = Table::provision(&store).await;
        (TestApp::spawn(pool).await, table)
    };
    app.wait_for_feed().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.tiers.index_loaded() {
        assert!(Instant::now() < deadline, "index never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Existing tokens of both shapes resolve.
    assert_eq!(app.check(&table.valid).await.1, Some(Outcome::Db));
    assert_eq!(
        app.check(&table.legacy_without_id).await.1,
        Some(Outcome::Db)
    );

    // 24 alphanumerics and no `|`, looked up by digest; and ids that were
    // never issued, with well-formed secrets.
    let junk_without_id: Vec<String> = (0..1_000)
        .map(|i| format!("JunkWithoutAnId{i:09}"))
        .collect();
    let junk_with_id: Vec<String> = (0..1_000)
        .map(|i| IssuedToken::new(1_000 + i, TokenFormat::default().generate_secret()).expose())
        .collect();
    for (shape, junk) in [
        ("without an id", &junk_without_id),
        ("with an id", &junk_with_id),
    ] {
        let before = app.store.lookup_count();
        let started = Instant::now();
        let answers =
            futures_util::future::join_all(junk.iter().map(|token| app.check(token))).await;
        for (decision, outcome) in answers {
            assert!(matches!(decision, gatepass::decision::Decision::Deny(_)));
            assert_eq!(outcome, Some(Outcome::Unknown), "{shape}");
        }
        let lookups = app.store.lookup_count() - before;
        println!(
            "1000 junk tokens {shape} in {:?}: {lookups} lookups",
            started.elapsed()
        );
        assert_eq!(lookups, 0, "junk tokens {shape} reached the database");
    }
    // Valid tokens still resolve, from memory.
    assert_eq!(app.check(&table.valid).await.1, Some(Outcome::L1Hit));
    app.stop().await;
}

/// Before the index of existing tokens is loaded (and whenever the change
/// feed cannot prove it complete) nothing is known to be absent: a flood
/// then gets a ration of database lookups and is answered unavailable past
/// it, never allowed and never sent on to the database.
#[sqlx::test(migrations = "migrations/postgres")]
async fn junk_before_the_index_is_loaded_is_rationed_and_never_allowed(pool: PgPool) {
    let store =
        gatepass::store::Store::from(gatepass::store::PostgresStore::from_pool(pool.clone()));
    let table = Table::provision(&store).await;
    // No change feed runs for these tiers: the index is never loaded.
    let tiers = gatepass::cache::Tiers::new(
        store.clone(),
        None,
        &gatepass::cache::CacheOptions::default(),
        gatepass::metrics::Metrics::new().unwrap(),
    );
    let authorizer =
        gatepass::check::Authorizer::new(tiers.clone(), None, TokenFormat::default(), None);
    let check = |token: String| {
        let authorizer = authorizer.clone();
        async move {
            let header = format!("Bearer {token}");
            let request = gatepass::decision::CheckRequest {
                authorization: gatepass::decision::AuthorizationHeader::One(header.as_bytes()),
                ..Default::default()
            };
            authorizer
                .check(&request)
                .await
                .map(|verdict| verdict.decision)
        }
    };
    assert!(!tiers.index_loaded());

    let junk: Vec<String> = (0..2_000)
        .map(|i| IssuedToken::new(1_000 + i, TokenFormat::default().generate_secret()).expose())
        .collect();
    let before = store.lookup_count();
    let started = Instant::now();
    let answers = futures_util::future::join_all(junk.into_iter().map(check)).await;
    let took = started.elapsed();
    let lookups = store.lookup_count() - before;
    let unavailable = answers.iter().filter(|answer| answer.is_err()).count();
    let denied = answers
        .iter()
        .filter(|answer| matches!(answer, Ok(gatepass::decision::Decision::Deny(_))))
        .count();
    println!(
        "2000 junk tokens before the index loaded, in {took:?}: {lookups} lookups, {denied} denied, {unavailable} unavailable"
    );
    assert_eq!(denied + unavailable, 2_000, "a junk token was allowed");
    // 100 a second, in windows of a second: two windows at most in 2 s.
    assert!(took < Duration::from_secs(2), "the flood took {took:?}");
    assert!(lookups <= 200, "{lookups} lookups for junk");
    assert!(
        unavailable >= 1_800,
        "only {unavailable} answered unavailable"
    );
    assert_eq!(denied as u64, lookups);

    // Once loaded, a token in the index goes to the database whatever the
    // ration says, so a flood never locks a real token out.
    tiers.load_index().await.unwrap();
    assert!(tiers.index_loaded());
    assert!(matches!(
        check(table.valid.clone()).await,
        Ok(gatepass::decision::Decision::Allow(_))
    ));
}
