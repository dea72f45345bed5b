//! One integration test binary: the real application against real
//! Postgres. Needs `DATABASE_URL` (for `#[sqlx::test]`); `scripts/test`
//! sets it and starts Postgres when it is down.

mod admin;
mod cache;
mod caddy;
mod cli;
mod envoy;
mod faults;
mod grpc;
mod helpers;
mod hostile;
mod http;
mod laravel;
mod layering;
mod migrate;
mod monitoring;
mod nginx;
mod policy;
mod sanctum;
mod store;
mod telemetry;
mod upstream;
