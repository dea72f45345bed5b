//! gatepass: edge authentication for machine-to-machine traffic.
//!
//! One process answers "may this request through?" for Envoy (gRPC
//! ext_authz) and nginx (`auth_request`), resolving Sanctum-style reference
//! tokens and handing the upstream the caller's identity.
//!
//! Module map:
//! - [`token`] — the token format: parse, checksum, generate, digest (pure).
//! - [`authz`] — the decision core, with abilities and client addresses.
//! - [`cache`] — the tiered lookup: L1 memory, L2 Redis, single-flight,
//!   invalidation from database notifications.
//! - [`usage`] — batched `last_used_at`.
//! - [`store`] — the database; the only module with SQL.
//! - [`grpc`] — Envoy's ext_authz `Check` adapter.
//! - [`http`] — `/auth` and `/ext-authz/…` adapters.
//! - [`ops`] — metrics, liveness and readiness.
//! - [`admin`] — the provisioning API on the ops port.
//! - [`metrics`] — metric families in an application-owned registry.
//! - [`server`] — runs every listener in one process, stops them together.
//! - [`config`] — settings from flags, environment and file, validated once.
//! - [`provision`] — provisioning shared by the CLI and the admin API.
//! - [`cli`] — the command line.
//! - [`telemetry`] — logging.

pub mod admin;
pub mod authz;
pub mod cache;
pub mod cli;
pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod provision;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod usage;
