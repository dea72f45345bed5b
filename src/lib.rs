//! gatepass: edge authentication for machine-to-machine traffic.
//!
//! One process answers "may this request through?" for Envoy (gRPC
//! ext_authz) and nginx (`auth_request`), resolving Sanctum-style reference
//! tokens and handing the upstream the caller's identity.
//!
//! Module map, from the ground up: each module imports only modules listed
//! above it (`tests/gatepass/layering.rs` holds the code to this).
//! - [`token`] — the token format: parse, checksum, generate, digest (pure).
//! - [`duration`] — durations as settings and requests write them (pure).
//! - [`model`] — services, tokens, abilities, networks (plain data).
//! - [`decision`] — `decide()`, bearer credentials, client addresses, route
//!   policies (pure: imports `token` and `model` only).
//! - [`shutdown`] — the stop signal, the shutdown flag, the drain.
//! - [`metrics`] — metric families in an application-owned registry.
//! - [`store`] — the database; the only module with SQL.
//! - [`cache`] — the tiered lookup: L1 memory, L2 Redis, single-flight,
//!   invalidation from database notifications.
//! - [`usage`] — batched `last_used_at`.
//! - [`policy_file`] — the route policy file, loaded and live-reloaded.
//! - [`check`] — a check end to end (lookup, decide, record) and refresh.
//! - [`config`] — settings from flags, environment and file, validated once.
//! - [`telemetry`] — logging, and where a check is recorded.
//! - [`provision`] — provisioning shared by the CLI and the admin API.
//! - [`grpc`] — Envoy's ext_authz `Check` adapter.
//! - [`http`] — `/auth` and `/ext-authz/…` adapters.
//! - [`ops`] — metrics, liveness and readiness endpoints.
//! - [`admin`] — the provisioning API on the ops port.
//! - [`server`] — runs every listener in one process, stops them together.
//! - [`cli`] — the command line.

pub mod admin;
pub mod cache;
pub mod check;
pub mod cli;
pub mod config;
pub mod decision;
pub mod duration;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod policy_file;
pub mod provision;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod usage;
