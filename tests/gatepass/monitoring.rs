//! The monitoring files in `dashboards/` (Grafana dashboard, Prometheus
//! alert rules and their unit tests) proved against real components by
//! `scripts/prometheus-check`: this build of gatepass serves real traffic, a
//! real Prometheus scrapes its `/metrics`, and every dashboard and alert
//! expression is evaluated through Prometheus' HTTP API. The script installs
//! Debian's `prometheus` package when it is missing; when it cannot, this
//! test fails, it never skips. Needs Redis at `REDIS_URL` (as the rest of
//! the suite), not Postgres.

use std::path::Path;
use std::process::Command;

/// Upper bound on the whole check; the script bounds every wait itself.
const LIMIT: &str = "600s";

#[test]
fn dashboard_and_alerts_hold_against_real_gatepass_and_prometheus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts").join("prometheus-check");
    // `timeout` sends SIGTERM first, so the script's trap stops what it
    // started (gatepass, Prometheus) even when it runs over.
    let output = Command::new("timeout")
        .args(["--kill-after=20s", LIMIT, "bash"])
        .arg(&script)
        .env("GATEPASS_BIN", env!("CARGO_BIN_EXE_gatepass"))
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        output.status,
    );
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("checked "))
        .unwrap_or_else(|| panic!("no summary line in the output:\n{stdout}\n{stderr}"));
    assert!(summary.ends_with(": 0 failed"), "{summary}");
    println!("{stdout}");
}
