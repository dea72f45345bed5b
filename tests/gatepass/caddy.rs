//! Caddy `forward_auth` end to end: a real Caddy (Debian's) runs the shipped
//! `caddy/Caddyfile`, with only its ports changed, between a client, the real
//! gatepass and an upstream that echoes what reaches it. Caddy must be
//! installed (`scripts/test` installs it); without it these tests fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tokio::net::TcpStream;

use crate::helpers::{Fixtures, Table, TestApp, TokenSpec};
use crate::upstream::{self, Echo, Seen, binary_on_path, free_port};

fn caddy_binary() -> PathBuf {
    binary_on_path("caddy", "apt-get install caddy")
}

fn swap(config: String, from: &str, to: &str) -> String {
    upstream::swap("caddy/Caddyfile", config, from, to)
}

struct Caddy {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Caddy {
    async fn start(gatepass: SocketAddr, upstream: SocketAddr) -> Self {
        for _ in 0..3 {
            if let Some(caddy) = Self::try_start(gatepass, upstream).await {
                return caddy;
            }
        }
        panic!("caddy could not bind free ports three times");
    }

    async fn try_start(gatepass: SocketAddr, upstream: SocketAddr) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("caddy/Caddyfile"))
                .expect("caddy/Caddyfile");
        let conf = swap(shipped, "localhost:2019", &format!("localhost:{admin}"));
        let conf = swap(conf, "http://:8000", &format!("http://127.0.0.1:{port}"));
        let conf = swap(conf, "127.0.0.1:8080", &gatepass.to_string());
        let conf = swap(conf, "127.0.0.1:9000", &upstream.to_string());
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
        let child = Command::new(caddy_binary())
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("caddy starts");
        let mut caddy = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = caddy.child.try_wait().unwrap() {
                if caddy.logs().contains("address already in use") {
                    return None;
                }
                panic!("caddy exited with {status}:\n{}", caddy.logs());
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(caddy);
            }
            assert!(
                Instant::now() < deadline,
                "caddy did not listen within 10s:\n{}",
                caddy.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gatepass on IPv4 loopback, an echo upstream and Caddy between them.
async fn stack(
    pool: PgPool,
    customise: impl FnOnce(&mut gatepass::config::SettingsArgs),
) -> (TestApp, Echo, Caddy) {
    let app = TestApp::spawn_with(pool, |args| {
        args.http_addr = Some("127.0.0.1:0".into());
        customise(args);
    })
    .await;
    let echo = Echo::start().await;
    let caddy = Caddy::start(app.http_addr, echo.addr).await;
    (app, echo, caddy)
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn a_valid_token_reaches_the_upstream_with_identity_and_without_authorization(pool: PgPool) {
    let (app, echo, caddy) = stack(pool, |_| {}).await;
    let table = Table::provision(&app.store).await;
    let response = Client::new()
        .get(caddy.url("/orders/7?x=1"))
        .header("authorization", format!("Bearer {}", table.valid))
        .header("x-gatepass-service", "admin")
        .header("x-gatepass-abilities", "*")
        .send()
        .await
        .unwrap();
    let seen = Seen::from(response).await;
    assert_eq!(seen.one("x-gatepass-service"), "billing");
    assert_eq!(seen.one("x-gatepass-token-id"), table.valid_id.to_string());
    assert_eq!(
        seen.one("x-gatepass-service-id"),
        table.valid_service_id.to_string()
    );
    assert_eq!(seen.one("x-gatepass-abilities"), "inventory:*,orders:read");
    assert!(
        seen.all("authorization").is_empty(),
        "the secret went upstream"
    );
    assert_eq!(seen.0["uri"], "/orders/7?x=1");
    assert_eq!(echo.hits(), 1);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn denials_reach_the_client_as_gatepass_wrote_them_and_nothing_reaches_the_upstream(
    pool: PgPool,
) {
    let (app, echo, caddy) = stack(pool, |_| {}).await;
    let table = Table::provision(&app.store).await;
    let cases: [(Option<&str>, u16, &str); 4] = [
        (None, 401, "missing_token"),
        (Some(&table.revoked), 401, "token_revoked"),
        (Some(&table.expired), 401, "token_expired"),
        (Some(&table.disabled), 403, "service_disabled"),
    ];
    for (token, status, reason) in cases {
        let mut request = Client::new().get(caddy.url("/orders"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{reason}");
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .collect();
        assert_eq!(
            challenges.len(),
            usize::from(status == 401),
            "{reason}: {challenges:?}"
        );
        let body: Value = response.json().await.expect("gatepass's JSON body");
        assert!(body["error_description"].is_string(), "{body}");
        assert!(body.to_string().contains(reason), "{reason}: {body}");
    }
    assert_eq!(echo.hits(), 0);
    app.stop().await;
}

/// The route policy sees the path Caddy forwards in `X-Forwarded-Uri`.
#[sqlx::test(migrations = "migrations/postgres")]
async fn route_policies_apply_to_the_uri_caddy_forwards(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\npath = \"/admin/**\"\nrequire_all = [\"admin\"]\n",
    )
    .unwrap();
    let (app, echo, caddy) = stack(pool, |args| {
        args.policy_file = Some(policy.display().to_string());
    })
    .await;
    let fixtures = Fixtures { store: &app.store };
    fixtures.service("billing", "").await;
    let (reader, _) = fixtures.token(TokenSpec::default()).await;
    let (admin, _) = fixtures
        .token(TokenSpec {
            abilities: "admin",
            ..TokenSpec::default()
        })
        .await;
    let get = |path: &str, token: &str| {
        Client::new()
            .get(caddy.url(path))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    assert_eq!(get("/admin/users", &reader).await.unwrap().status(), 403);
    assert_eq!(get("/orders", &reader).await.unwrap().status(), 200);
    assert_eq!(get("/admin/users", &admin).await.unwrap().status(), 200);
    assert_eq!(echo.hits(), 2);
    app.stop().await;
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn a_stopped_gatepass_is_an_error_never_an_allow(pool: PgPool) {
    let (app, echo, caddy) = stack(pool, |_| {}).await;
    let table = Table::provision(&app.store).await;
    app.stop().await;
    let response = Client::new()
        .get(caddy.url("/orders"))
        .header("authorization", format!("Bearer {}", table.valid))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(echo.hits(), 0);
}
