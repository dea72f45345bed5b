//! The built binary against a fresh database, as an operator runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

use crate::helpers::database_url;

struct Gatepass {
    url: String,
}

impl Gatepass {
    fn new(pool: &PgPool) -> Self {
        Self {
            url: database_url(pool),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gatepass"));
        command
            .args(args)
            .env_clear()
            .env("GATEPASS_DATABASE_URL", &self.url)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("gatepass runs");
        assert_no_panic(&output);
        output
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        (text(&output.stdout), text(&output.stderr))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_panic(output: &Output) {
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
}

/// A failure is one line on stderr, nothing on stdout, and the exit code.
fn assert_fails(output: &Output, code: i32, mentions: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(mentions), "{mentions:?} in {stderr}");
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn operator_provisions_issues_checks_revokes_and_prunes(pool: PgPool) {
    let gatepass = Gatepass::new(&pool);

    let (_, stderr) = gatepass.ok(&[
        "service",
        "create",
        "billing",
        "--description",
        "Billing API",
        "--ips",
        "10.0.0.0/8,2001:db8::/32",
    ]);
    assert!(stderr.contains("created service billing"), "{stderr}");
    let (_, stderr) = gatepass.ok(&["service", "create", "billing", "--ips", ""]);
    assert!(stderr.contains("updated service billing"), "{stderr}");

    let (listed, _) = gatepass.ok(&["service", "list"]);
    assert!(listed.lines().next().unwrap().starts_with("ID"));
    assert!(listed.contains("billing") && listed.contains("Billing API"));
    let (json, _) = gatepass.ok(&["service", "list", "--json"]);
    let services: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(services[0]["name"], "billing");
    assert_eq!(services[0]["ip_allowlist"], serde_json::json!([]));

    let (token, stderr) = gatepass.ok(&[
        "token",
        "issue",
        "billing",
        "--name",
        "ci",
        "--abilities",
        "orders:read,inventory:*",
        "--expires-in",
        "30d",
    ]);
    let token = token.strip_suffix('\n').expect("token then newline");
    assert!(!token.contains('\n'), "only the token on stdout");
    let (id, secret) = token.split_once('|').expect("<id>|<secret>");
    assert!(secret.starts_with("gp_") && secret.len() == 51, "{secret}");
    assert!(
        !stderr.contains(secret),
        "the secret is printed once, on stdout"
    );

    let (json, _) = gatepass.ok(&["token", "list", "billing", "--json"]);
    assert!(!json.contains(secret) && !json.contains("hash"));
    let tokens: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(tokens[0]["id"].to_string(), id);
    assert_eq!(tokens[0]["name"], "ci");
    assert_eq!(
        tokens[0]["abilities"],
        serde_json::json!(["inventory:*", "orders:read"])
    );
    assert!(tokens[0]["expires_at"].is_string());
    let (table, _) = gatepass.ok(&["token", "list"]);
    assert!(table.contains("billing") && table.contains("inventory:*,orders:read"));

    let (explained, _) = gatepass.ok(&["check", token, "--require-all", "inventory:write"]);
    assert!(
        explained.starts_with("allow: service billing"),
        "{explained}"
    );
    let denied = gatepass.run(&["check", token, "--require-any", "admin"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(text(&denied.stdout).starts_with("deny: insufficient_ability (403)"));

    let mut from_stdin = gatepass
        .command(&["check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(from_stdin.stdin.take().unwrap(), "{token}").unwrap();
    let from_stdin = from_stdin.wait_with_output().unwrap();
    assert!(from_stdin.status.success());
    assert!(text(&from_stdin.stdout).starts_with("allow:"));

    let (_, stderr) = gatepass.ok(&["token", "revoke", id]);
    assert!(stderr.contains(&format!("revoked token {id}")), "{stderr}");
    let revoked = gatepass.run(&["check", token]);
    assert_eq!(revoked.status.code(), Some(1));
    assert!(text(&revoked.stdout).starts_with("deny: token_revoked (401)"));

    let (_, stderr) = gatepass.ok(&["token", "prune", "--hours", "0"]);
    assert!(stderr.contains("pruned 1 tokens"), "{stderr}");
    let (json, _) = gatepass.ok(&["token", "list", "--json"]);
    assert_eq!(json.trim(), "[]");
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn disabling_a_service_denies_its_tokens(pool: PgPool) {
    let gatepass = Gatepass::new(&pool);
    gatepass.ok(&["service", "create", "billing"]);
    let (token, _) = gatepass.ok(&["token", "issue", "billing"]);
    let token = token.trim();

    let (_, stderr) = gatepass.ok(&["service", "disable", "billing"]);
    assert!(stderr.contains("disabled service billing"));
    let denied = gatepass.run(&["check", token]);
    assert!(text(&denied.stdout).starts_with("deny: service_disabled (403)"));
    gatepass.ok(&["service", "enable", "billing"]);
    let (allowed, _) = gatepass.ok(&["check", token]);
    assert!(
        allowed.starts_with("allow:"),
        "default abilities: {allowed}"
    );
    assert!(allowed.ends_with("abilities *\n"), "{allowed}");
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn refresh_tokens_are_refused_at_the_check(pool: PgPool) {
    let gatepass = Gatepass::new(&pool);
    gatepass.ok(&["service", "create", "billing"]);
    let (token, stderr) = gatepass.ok(&["token", "issue", "billing", "--refresh"]);
    assert!(stderr.contains("issued refresh token"), "{stderr}");
    let denied = gatepass.run(&["check", token.trim()]);
    assert!(text(&denied.stdout).starts_with("deny: wrong_token_kind (401)"));
}

#[sqlx::test(migrations = "migrations/postgres")]
async fn bad_input_is_one_clear_line_and_a_non_zero_exit(pool: PgPool) {
    let gatepass = Gatepass::new(&pool);
    gatepass.ok(&["service", "create", "billing"]);

    let cases: [(&[&str], i32, &str); 10] = [
        (
            &["service", "create", "Bad Name"],
            2,
            "invalid service name",
        ),
        (
            &["service", "create", "x", "--ips", "10.0.0.0/33"],
            2,
            "10.0.0.0/33",
        ),
        (
            &["service", "create", "x", "--ips", "10.1.2.3/8"],
            2,
            "did you mean 10.0.0.0/8",
        ),
        (
            &["service", "disable", "nobody"],
            1,
            "service \"nobody\" not found",
        ),
        (
            &["token", "issue", "nobody"],
            1,
            "service \"nobody\" not found",
        ),
        (
            &["token", "issue", "billing", "--expires-in", "soon"],
            2,
            "expires in",
        ),
        (
            &["token", "issue", "billing", "--abilities", "a b"],
            2,
            "invalid ability",
        ),
        (&["token", "revoke", "abc"], 2, "not a number"),
        (&["token", "revoke", "424242"], 1, "token 424242 not found"),
        (&["check", "1|x", "--ip", "nope"], 2, "not an IP address"),
    ];
    for (args, code, mentions) in cases {
        let output = gatepass.run(args);
        assert_fails(&output, code, mentions);
    }
}

#[test]
fn bad_settings_name_the_setting_and_exit_2() {
    let binary = env!("CARGO_BIN_EXE_gatepass");
    let run = |envs: &[(&str, &str)]| {
        let output = Command::new(binary)
            .args(["service", "list"])
            .env_clear()
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        assert_no_panic(&output);
        output
    };
    let db = (
        "GATEPASS_DATABASE_URL",
        "postgres://postgres@127.0.0.1/test",
    );
    assert_fails(
        &run(&[db, ("GATEPASS_GRPC_ADDR", "nope")]),
        2,
        "GATEPASS_GRPC_ADDR",
    );
    assert_fails(
        &run(&[db, ("GATEPASS_TRUSTED_PROXIES", "10.0.0.0/99")]),
        2,
        "GATEPASS_TRUSTED_PROXIES",
    );
    assert_fails(
        &run(&[db, ("GATEPASS_TOKEN_MAX_AGE", "forever")]),
        2,
        "GATEPASS_TOKEN_MAX_AGE",
    );
    let secret_url = run(&[("GATEPASS_DATABASE_URL", "mongodb://root:hunter2@db/x")]);
    assert_fails(&secret_url, 2, "GATEPASS_DATABASE_URL");
    assert!(!text(&secret_url.stderr).contains("hunter2"));
}

#[test]
fn unreachable_database_is_one_line_and_exit_1() {
    // Port 9 (discard) on loopback: nothing listens there.
    let output = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .args(["service", "list"])
        .env_clear()
        .env(
            "GATEPASS_DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:9/test",
        )
        .env("GATEPASS_DATABASE_TIMEOUT", "2s")
        .output()
        .unwrap();
    assert_no_panic(&output);
    assert_fails(&output, 1, "database unavailable");
    assert!(!text(&output.stderr).contains("hunter2"));
}

#[sqlx::test(migrations = false)]
async fn serve_migrates_and_stops_cleanly_on_sigterm(pool: PgPool) {
    let url = database_url(&pool);
    let mut serve = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .arg("serve")
        .env_clear()
        .env("GATEPASS_DATABASE_URL", &url)
        .env("GATEPASS_GRPC_ADDR", "127.0.0.1:0")
        .env("GATEPASS_HTTP_ADDR", "127.0.0.1:0")
        .env("GATEPASS_OPS_ADDR", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Serving is logged once every listener is bound.
    let mut stderr = std::io::BufReader::new(serve.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "serve exited before serving");
        if line.contains("gatepass serving") {
            break;
        }
    }
    let migrated: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(migrated > 0);

    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
