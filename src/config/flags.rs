//! Every setting as a flag and environment variable, as clap reads them:
//! raw text, so the config file can fill what neither gives. Their
//! defaults are appended to the help from [`super::shown_defaults`].

use std::path::PathBuf;

/// Every setting as a flag (with its environment variable). All optional
/// here; [`Settings::load`] applies the file and the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// TOML file with settings; keys are the variable names in lowercase
    /// without `GATEPASS_` (for example `grpc_addr = "0.0.0.0:50051"`)
    #[arg(long, env = "GATEPASS_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: postgres://user@host/db or sqlite://path.db
    #[arg(
        long,
        env = "GATEPASS_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Most database connections per process
    #[arg(long, env = "GATEPASS_DATABASE_MAX_CONNECTIONS", global = true)]
    pub database_max_connections: Option<String>,
    /// How long a check waits for the database before answering UNAVAILABLE
    #[arg(long, env = "GATEPASS_DATABASE_TIMEOUT", global = true)]
    pub database_timeout: Option<String>,
    /// Whose tables hold the tokens: gatepass's own, or a Laravel Sanctum database's (sanctum)
    #[arg(long, env = "GATEPASS_SCHEMA", global = true)]
    pub schema: Option<String>,
    /// Sanctum schema: the tokenable_type of the tokens that count
    #[arg(long, env = "GATEPASS_SANCTUM_TOKENABLE_TYPE", global = true)]
    pub sanctum_tokenable_type: Option<String>,
    /// Sanctum schema: the table of that model
    #[arg(long, env = "GATEPASS_SANCTUM_SERVICES_TABLE", global = true)]
    pub sanctum_services_table: Option<String>,
    /// Sanctum schema: sanctum.expiration, minutes from created_at after which a token is expired
    #[arg(long, env = "GATEPASS_SANCTUM_EXPIRATION", global = true)]
    pub sanctum_expiration: Option<String>,
    /// Redis URL for the shared L2 cache, redis://host:port/db
    #[arg(
        long,
        env = "GATEPASS_REDIS_URL",
        global = true,
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// Key prefix in Redis, so deployments can share one
    #[arg(long, env = "GATEPASS_REDIS_PREFIX", global = true)]
    pub redis_prefix: Option<String>,
    /// How long Redis keeps a cached token
    #[arg(long, env = "GATEPASS_REDIS_TTL", global = true)]
    pub redis_ttl: Option<String>,
    /// Bound on connecting to Redis and on each command
    #[arg(long, env = "GATEPASS_REDIS_TIMEOUT", global = true)]
    pub redis_timeout: Option<String>,
    /// Tokens kept in memory (L1)
    #[arg(long, env = "GATEPASS_CACHE_CAPACITY", global = true)]
    pub cache_capacity: Option<String>,
    /// How long an L1 entry is trusted without a change notification
    #[arg(long, env = "GATEPASS_CACHE_TTL", global = true)]
    pub cache_ttl: Option<String>,
    /// Unknown or expired tokens remembered in memory
    #[arg(long, env = "GATEPASS_NEGATIVE_CACHE_CAPACITY", global = true)]
    pub negative_cache_capacity: Option<String>,
    /// How long an unknown token is remembered, in memory and Redis
    #[arg(long, env = "GATEPASS_NEGATIVE_CACHE_TTL", global = true)]
    pub negative_cache_ttl: Option<String>,
    /// While the database is down, cached tokens keep validating this long after they were read
    #[arg(long, env = "GATEPASS_CACHE_MAX_STALE", global = true)]
    pub cache_max_stale: Option<String>,
    /// Lifetime of access tokens issued by POST /v1/tokens/refresh
    #[arg(long, env = "GATEPASS_REFRESH_ACCESS_TTL", global = true)]
    pub refresh_access_ttl: Option<String>,
    /// Lifetime of refresh tokens issued by POST /v1/tokens/refresh
    #[arg(long, env = "GATEPASS_REFRESH_TOKEN_TTL", global = true)]
    pub refresh_token_ttl: Option<String>,
    /// How often last-used times are written, in one statement
    #[arg(long, env = "GATEPASS_LAST_USED_FLUSH_INTERVAL", global = true)]
    pub last_used_flush_interval: Option<String>,
    /// gRPC listen address (Envoy ext_authz, gRPC health)
    #[arg(long, env = "GATEPASS_GRPC_ADDR", global = true)]
    pub grpc_addr: Option<String>,
    /// HTTP listen address (/auth, /ext-authz/)
    #[arg(long, env = "GATEPASS_HTTP_ADDR", global = true)]
    pub http_addr: Option<String>,
    /// Ops listen address (/healthz, /readyz)
    #[arg(long, env = "GATEPASS_OPS_ADDR", global = true)]
    pub ops_addr: Option<String>,
    /// Worker threads of the HTTP surface
    #[arg(long, env = "GATEPASS_HTTP_WORKERS", global = true)]
    pub http_workers: Option<String>,
    /// Prefix of generated token secrets
    #[arg(long, env = "GATEPASS_TOKEN_PREFIX", global = true)]
    pub token_prefix: Option<String>,
    /// Deny tokens older than this whatever their expires_at, e.g. 90d
    #[arg(long, env = "GATEPASS_TOKEN_MAX_AGE", global = true)]
    pub token_max_age: Option<String>,
    /// Whether `prefix:*` grants every ability under `prefix:` (false: Laravel Sanctum's rule, where only `*` is a wildcard)
    #[arg(long, env = "GATEPASS_ABILITY_WILDCARDS", global = true)]
    pub ability_wildcards: Option<String>,
    /// HTTP peers whose X-Real-IP / X-Forwarded-For are believed
    #[arg(long, env = "GATEPASS_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// gRPC: take the client from x-forwarded-for past this many trusted hops
    #[arg(long, env = "GATEPASS_GRPC_XFF_TRUSTED_HOPS", global = true)]
    pub grpc_xff_trusted_hops: Option<String>,
    /// Route policy file (TOML rules: host, methods, path → required abilities); reloaded on change
    #[arg(long, env = "GATEPASS_POLICY_FILE", global = true)]
    pub policy_file: Option<String>,
    /// Header carrying the service name upstream
    #[arg(long, env = "GATEPASS_HEADER_SERVICE", global = true)]
    pub header_service: Option<String>,
    /// Header carrying the service id upstream
    #[arg(long, env = "GATEPASS_HEADER_SERVICE_ID", global = true)]
    pub header_service_id: Option<String>,
    /// Header carrying the token id upstream
    #[arg(long, env = "GATEPASS_HEADER_TOKEN_ID", global = true)]
    pub header_token_id: Option<String>,
    /// Header carrying the abilities upstream
    #[arg(long, env = "GATEPASS_HEADER_ABILITIES", global = true)]
    pub header_abilities: Option<String>,
    /// gRPC: headers Envoy removes before the upstream
    #[arg(long, env = "GATEPASS_REMOVE_HEADERS", global = true)]
    pub remove_headers: Option<String>,
    /// Log filter: error, warn, info, debug, trace or a tracing directive
    #[arg(long, env = "GATEPASS_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Log format: text or json
    #[arg(long, env = "GATEPASS_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// How long shutdown waits for in-flight checks
    #[arg(long, env = "GATEPASS_SHUTDOWN_TIMEOUT", global = true)]
    pub shutdown_timeout: Option<String>,
}
