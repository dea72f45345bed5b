//! What operators see: metrics, health, readiness and logs, and that no
//! secret ever reaches the logs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;
use sqlx::PgPool;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::grpc::{EnvoyCall, check, client};
use crate::helpers::{CuttableLink, Table, TestApp, database_url, postgres_addr};

async fn scrape(app: &TestApp) -> String {
    Client::new()
        .get(app.ops_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series in a scrape, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn metrics_count_checks_decisions_and_cache_tiers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.wait_for_feed().await;
    let table = Table::provision(&app.store).await;
    let mut grpc = client(&app).await;

    for _ in 0..3 {
        check(&mut grpc, EnvoyCall::bearer(&table.valid)).await;
    }
    check(&mut grpc, EnvoyCall::bearer(&table.revoked)).await;
    let http = Client::new()
        .get(app.http_url("/auth"))
        .header("authorization", "Bearer -1|junk")
        .send()
        .await
        .unwrap();
    assert_eq!(http.status(), 401);

    let text = scrape(&app).await;
    let series = |s: &str| sample(&text, s);
    assert_eq!(
        series(r#"gatepass_checks_total{decision="allow",reason="ok",surface="grpc"}"#),
        3.0
    );
    assert_eq!(
        series(r#"gatepass_checks_total{decision="deny",reason="token_revoked",surface="grpc"}"#),
        1.0
    );
    assert_eq!(
        series(r#"gatepass_checks_total{decision="deny",reason="malformed_token",surface="http"}"#),
        1.0
    );
    assert_eq!(
        series(r#"gatepass_check_duration_seconds_count{decision="allow",surface="grpc"}"#),
        3.0
    );
    assert_eq!(
        series(r#"gatepass_cache_lookups_total{result="hit",tier="db"}"#),
        2.0
    );
    assert_eq!(
        series(r#"gatepass_cache_lookups_total{result="hit",tier="l1"}"#),
        2.0
    );
    assert_eq!(
        series(r#"gatepass_cache_lookups_total{result="miss",tier="l1"}"#),
        2.0
    );
    assert_eq!(
        series(r#"gatepass_store_query_duration_seconds_count{operation="token_lookup"}"#),
        2.0
    );
    assert_eq!(series("gatepass_cached_tokens"), 2.0);
    assert_eq!(series("gatepass_change_feed_connected"), 1.0);
    assert!(series("process_resident_memory_bytes") > 0.0);
    assert!(text.contains("gatepass_build_info{version=\""));
    // Labels come from closed sets: no token, path or service name.
    let allowed = [
        "surface",
        "decision",
        "reason",
        "tier",
        "result",
        "operation",
        "kind",
        "version",
        "le",
    ];
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else {
            continue;
        };
        let labels = labels.split('}').next().unwrap();
        for pair in labels.split(',') {
            let (name, value) = pair.split_once('=').unwrap();
            assert!(allowed.contains(&name), "unexpected label {name} in {line}");
            assert!(!value.contains("billing") && !value.contains('/'), "{line}");
        }
    }

    // A revocation arrives as an invalidation.
    app.store.revoke_token(table.valid_id).await.unwrap();
    let start = Instant::now();
    while sample(
        &scrape(&app).await,
        r#"gatepass_invalidations_total{kind="token"}"#,
    ) < 1.0
    {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no invalidation counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn grpc_health_follows_the_store_and_readiness_reports_redis(pool: PgPool) {
    let (app, link, _table) = TestApp::spawn_behind_link(pool, |_| {}).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |service: &'static str| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    const SERVING: i32 = 1;
    const NOT_SERVING: i32 = 2;
    assert_eq!(status("envoy.service.auth.v3.Authorization").await, SERVING);

    link.cut();
    let start = Instant::now();
    while status("envoy.service.auth.v3.Authorization").await != NOT_SERVING {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never NOT_SERVING"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("").await, NOT_SERVING);
    let ready = Client::new()
        .get(app.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["store"], "unreachable");
    assert_eq!(body["redis"], "not_configured");

    link.restore();
    let start = Instant::now();
    while status("").await != SERVING {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never SERVING again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = health.check(HealthCheckRequest::default()).await;
    app.stop().await;
}

/// Runs a command, returning (stdout, stderr); asserts success if `ok`.
fn run(url: &str, args: &[&str], stdin: Option<&str>) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .args(args)
        .env_clear()
        .env("GATEPASS_DATABASE_URL", url)
        .env("GATEPASS_LOG_LEVEL", "trace")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn no_secret_ever_reaches_the_logs(pool: PgPool) {
    let link = CuttableLink::to(postgres_addr(&pool)).await;
    let url = database_url(&pool);
    let linked_url = link.store_options(&pool).url;

    // Provision through the CLI, collecting its stderr.
    let mut cli_logs = String::new();
    let mut secrets = Vec::new();
    for args in [
        &["service", "create", "billing", "--ips", ""][..],
        &["service", "create", "retired"],
    ] {
        cli_logs += &run(&url, args, None).1;
    }
    let mut issue = |service: &str, extra: &[&str]| {
        let mut args = vec!["token", "issue", service];
        args.extend_from_slice(extra);
        let (token, stderr) = run(&url, &args, None);
        cli_logs += &stderr;
        let token = token.trim().to_owned();
        secrets.push(token.split_once('|').unwrap().1.to_owned());
        token
    };
    let valid = issue("billing", &["--abilities", "orders:read"]);
    let revoked = issue("billing", &[]);
    let expired = issue("billing", &["--expires-in", "1s"]);
    let refresh = issue("billing", &["--refresh"]);
    let disabled = issue("retired", &[]);
    let unused = issue("billing", &[]);
    for args in [
        &["service", "disable", "retired"][..],
        &["token", "revoke", revoked.split_once('|').unwrap().0],
        &["token", "list"],
        &["token", "list", "--json"],
        &["service", "list", "--json"],
    ] {
        let (stdout, stderr) = run(&url, args, None);
        cli_logs += &stdout;
        cli_logs += &stderr;
    }
    let (stdout, stderr) = run(&url, &["check", &valid, "--require-all", "nope"], None);
    cli_logs += &stdout;
    cli_logs += &stderr;
    let (stdout, stderr) = run(&url, &["check", "-"], Some(&valid));
    cli_logs += &stdout;
    cli_logs += &stderr;
    std::thread::sleep(Duration::from_millis(1100));

    // Serve with every log line enabled, through the cuttable link.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .arg("serve")
        .env_clear()
        .env("GATEPASS_DATABASE_URL", &linked_url)
        .env("GATEPASS_GRPC_ADDR", "127.0.0.1:0")
        .env("GATEPASS_HTTP_ADDR", "127.0.0.1:0")
        .env("GATEPASS_OPS_ADDR", "127.0.0.1:0")
        .env("GATEPASS_LOG_LEVEL", "trace")
        .env("GATEPASS_LOG_FORMAT", "json")
        .env("GATEPASS_DATABASE_TIMEOUT", "300ms")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = serve.stderr.take().unwrap();
    let (logs_tx, logs_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stderr.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    all += &chunk;
                    let _ = logs_tx.send(chunk);
                }
            }
        }
        all
    });
    // The serving line carries the addresses.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let serving = loop {
        // Never block this runtime: it also drives the link to Postgres.
        while let Ok(chunk) = logs_rx.try_recv() {
            seen += &chunk;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(line) = seen.lines().find(|l| l.contains("gatepass serving")) {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "serve never started: {seen}");
    };
    let http = serving["fields"]["http"].as_str().unwrap().to_owned();
    let grpc_addr = serving["fields"]["grpc"].as_str().unwrap().to_owned();

    let auth = |token: String| {
        let http = http.clone();
        async move {
            Client::new()
                .get(format!("http://{http}/auth"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(auth(valid.clone()).await, 200);
    for token in [&revoked, &expired, &refresh, &disabled] {
        assert!(auth(token.clone()).await.is_client_error());
    }
    let wrong = format!("{}|{}", valid.split_once('|').unwrap().0, secrets[5]);
    assert_eq!(auth(wrong).await, 401);
    assert_eq!(auth(format!("x{}", secrets[0])).await, 401);
    let mut grpc = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .map(envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new)
        .unwrap();
    grpc.check(EnvoyCall::bearer(&valid).build()).await.unwrap();
    grpc.check(EnvoyCall::bearer(&revoked).build())
        .await
        .unwrap();
    // The error path: the database goes away, an uncached token is asked.
    link.cut();
    assert_eq!(auth(unused.clone()).await, 503);
    assert!(
        grpc.check(EnvoyCall::bearer(&unused).build())
            .await
            .is_err()
    );
    link.restore();

    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exited = tokio::task::spawn_blocking(move || serve.wait().unwrap());
    assert!(exited.await.unwrap().success());
    let serve_logs = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();

    for secret in &secrets {
        assert!(
            !serve_logs.contains(secret.as_str()),
            "a secret reached serve's logs"
        );
        assert!(
            !cli_logs.contains(secret.as_str()),
            "a secret reached the CLI's output"
        );
        // Not even the entropy without its prefix and checksum.
        assert!(!serve_logs.contains(&secret[3..43]));
    }
    assert!(
        !serve_logs.to_lowercase().contains("bearer"),
        "{serve_logs}"
    );
    // Denials are logged with reason, surface, service and token id.
    let revoked_id = revoked.split_once('|').unwrap().0;
    let denial = serve_logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["fields"]["reason"] == "token_revoked" && line["fields"]["surface"] == "http"
        })
        .expect("a token_revoked denial is logged");
    assert_eq!(denial["level"], "INFO");
    assert_eq!(denial["fields"]["service"], "billing");
    assert_eq!(denial["fields"]["token_id"].to_string(), revoked_id);
    assert!(serve_logs.contains("check unanswerable"));
    assert!(serve_logs.contains("check allowed"));
}

#[tokio::test]
async fn malformed_http_requests_are_counted_not_logged_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .arg("serve")
        .env_clear()
        .env(
            "GATEPASS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gatepass.db").display()),
        )
        .env("GATEPASS_GRPC_ADDR", "127.0.0.1:0")
        .env("GATEPASS_HTTP_ADDR", "127.0.0.1:0")
        .env("GATEPASS_OPS_ADDR", "127.0.0.1:0")
        .env("GATEPASS_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = serve.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer) {
            if n == 0 {
                break;
            }
            let chunk = String::from_utf8_lossy(&buffer[..n]).into_owned();
            all += &chunk;
            let _ = lines_tx.send(chunk);
        }
        all
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let serving = loop {
        while let Ok(chunk) = lines_rx.try_recv() {
            seen += &chunk;
        }
        if let Some(line) = seen.lines().find(|l| l.contains("gatepass serving")) {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "serve never started: {seen}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let http = serving["fields"]["http"].as_str().unwrap().to_owned();
    let ops = serving["fields"]["ops"].as_str().unwrap().to_owned();

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let malformed: [&[u8]; 3] = [
        b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /a\x00b\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /auth HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    ];
    for request in malformed {
        let mut stream = tokio::net::TcpStream::connect(&http).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{request:?}");
    }
    let scrape = Client::new()
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sample(&scrape, "gatepass_http_client_errors_total") >= 3.0,
        "{scrape}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(serve.wait().unwrap().success());
    let logs = reader.join().unwrap();
    // JSON log lines, and the plain first-steps hint for an empty store.
    assert!(!logs.contains("ERROR") && !logs.contains("WARN"), "{logs}");
    assert!(!logs.contains("stream error"), "{logs}");
}
