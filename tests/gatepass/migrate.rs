//! Migrations: applied by `gatepass migrate` and at start-up, safe when
//! several instances start at once.

use std::process::Command;

use sqlx::PgPool;

use crate::helpers::database_url;

#[sqlx::test(migrations = false)]
async fn two_migrate_runs_in_parallel_both_succeed(pool: PgPool) {
    let url = database_url(&pool);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_gatepass"))
            .arg("migrate")
            .env_clear()
            .env("GATEPASS_DATABASE_URL", &url)
            .spawn()
            .expect("gatepass runs")
    };
    let (first, second) = (spawn(), spawn());
    for mut child in [first, second] {
        assert!(child.wait().unwrap().success());
    }

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    let known = std::fs::read_dir("migrations/postgres").unwrap().count() as i64;
    assert_eq!(applied, known);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name IN ('services', 'tokens') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(tables, ["services", "tokens"]);

    // A third run is a no-op.
    let status = Command::new(env!("CARGO_BIN_EXE_gatepass"))
        .arg("migrate")
        .env_clear()
        .env("GATEPASS_DATABASE_URL", &url)
        .status()
        .unwrap();
    assert!(status.success());
}
