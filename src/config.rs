//! Settings (SPEC §7): flags, then `GATEPASS_*` environment variables, then
//! an optional TOML file, then defaults; validated once into typed values.
//! A bad value is an error that names the setting.

mod flags;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{CacheOptions, RedisOptions};
use crate::check::RefreshLifetimes;
use crate::duration;
use crate::model::{AbilityMatching, NetList};
use crate::store::{SanctumOptions, Schema, StoreOptions, redact_url};
use crate::token::TokenFormat;
pub use flags::SettingsArgs;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            setting: format!("GATEPASS_{}", key.to_ascii_uppercase()),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// Names of the headers that carry the caller's identity upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub service: String,
    pub service_id: String,
    pub token_id: String,
    pub abilities: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            service: "x-gatepass-service".into(),
            service_id: "x-gatepass-service-id".into(),
            token_id: "x-gatepass-token-id".into(),
            abilities: "x-gatepass-abilities".into(),
        }
    }
}

/// Validated settings. [`Settings::default`] holds every default once:
/// loading falls back to it and `--help` shows it ([`shown_defaults`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreOptions,
    pub cache: CacheOptions,
    pub redis: Option<RedisOptions>,
    pub last_used_flush_interval: Duration,
    pub refresh_lifetimes: RefreshLifetimes,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub http_workers: usize,
    pub token_format: TokenFormat,
    pub token_max_age: Option<Duration>,
    pub ability_matching: AbilityMatching,
    pub trusted_proxies: NetList,
    pub grpc_xff_trusted_hops: u32,
    pub policy_file: Option<PathBuf>,
    pub identity_headers: IdentityHeaders,
    pub remove_headers: Vec<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            store: StoreOptions::default(),
            cache: CacheOptions::default(),
            redis: None,
            last_used_flush_interval: Duration::from_secs(10),
            refresh_lifetimes: RefreshLifetimes::default(),
            grpc_addr: addr(50051),
            http_addr: addr(8080),
            ops_addr: addr(9464),
            http_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            token_format: TokenFormat::default(),
            token_max_age: None,
            ability_matching: AbilityMatching::Wildcards,
            trusted_proxies: NetList::loopback(),
            grpc_xff_trusted_hops: 0,
            policy_file: None,
            identity_headers: IdentityHeaders::default(),
            remove_headers: vec!["authorization".to_owned()],
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The default of each setting that has one, as `--help` shows it: the
/// flag's id and the value written as a user would write it.
pub fn shown_defaults() -> Vec<(&'static str, String)> {
    let d = Settings::default();
    let redis = RedisOptions::default();
    let show = duration::show;
    let lifetime = |lifetime: chrono::Duration| show(lifetime.to_std().unwrap_or_default());
    vec![
        ("database_url", d.store.url),
        (
            "database_max_connections",
            d.store.max_connections.to_string(),
        ),
        ("database_timeout", show(d.store.timeout)),
        ("schema", "gatepass".into()),
        (
            "sanctum_tokenable_type",
            SanctumOptions::default().tokenable_type,
        ),
        (
            "sanctum_services_table",
            SanctumOptions::default().services_table,
        ),
        ("sanctum_expiration", "none".into()),
        ("redis_url", "none, L1 only".into()),
        ("redis_prefix", redis.prefix),
        ("redis_ttl", show(redis.ttl)),
        ("redis_timeout", show(redis.timeout)),
        ("cache_capacity", d.cache.capacity.to_string()),
        ("cache_ttl", show(d.cache.ttl)),
        (
            "negative_cache_capacity",
            d.cache.negative_capacity.to_string(),
        ),
        ("negative_cache_ttl", show(d.cache.negative_ttl)),
        ("cache_max_stale", show(d.cache.max_stale)),
        ("refresh_access_ttl", lifetime(d.refresh_lifetimes.access)),
        ("refresh_token_ttl", lifetime(d.refresh_lifetimes.refresh)),
        ("last_used_flush_interval", show(d.last_used_flush_interval)),
        ("grpc_addr", d.grpc_addr.to_string()),
        ("http_addr", d.http_addr.to_string()),
        ("ops_addr", d.ops_addr.to_string()),
        (
            "http_workers",
            format!("{}, the number of CPUs", d.http_workers),
        ),
        (
            "token_prefix",
            format!("{}, empty in the sanctum schema", d.token_format.prefix()),
        ),
        ("token_max_age", "none".into()),
        (
            "ability_wildcards",
            format!(
                "{}, false in the sanctum schema",
                d.ability_matching == AbilityMatching::Wildcards
            ),
        ),
        ("trusted_proxies", d.trusted_proxies.to_string()),
        (
            "grpc_xff_trusted_hops",
            format!("{} = source address", d.grpc_xff_trusted_hops),
        ),
        ("header_service", d.identity_headers.service),
        ("header_service_id", d.identity_headers.service_id),
        ("header_token_id", d.identity_headers.token_id),
        ("header_abilities", d.identity_headers.abilities),
        ("remove_headers", d.remove_headers.join(",")),
        ("log_level", d.log_level),
        ("log_format", d.log_format.as_str().into()),
        ("shutdown_timeout", show(d.shutdown_timeout)),
    ]
}

impl Settings {
    pub fn load(args: &SettingsArgs) -> Result<Self, ConfigError> {
        let mut source = Source::open(args.config.as_deref())?;
        let a = args;
        let d = Settings::default();
        let database_url = source
            .take("database_url", &a.database_url)?
            .filter(|url| !url.is_empty())
            .unwrap_or(d.store.url);
        let supported = [
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
            "sqlite:",
        ]
        .iter()
        .any(|scheme| database_url.starts_with(scheme));
        if !supported {
            return Err(ConfigError::new(
                "database_url",
                format!(
                    "{} is not a postgres://, mysql:// or sqlite: URL",
                    redact_url(&database_url)
                ),
            ));
        }
        let schema = schema(&mut source, a)?;
        // Sanctum's own defaults: tokens as Laravel issues them, abilities
        // as Laravel matches them.
        let (default_format, default_matching) = match schema {
            Schema::Gatepass => (d.token_format, d.ability_matching),
            Schema::Sanctum(_) => (
                TokenFormat::new("").expect("the empty prefix is valid"),
                AbilityMatching::Exact,
            ),
        };
        let sanctum_expiration = source
            .take("sanctum_expiration", &a.sanctum_expiration)?
            .map(|raw| match raw.trim().parse::<u32>() {
                Ok(minutes) if minutes > 0 => Ok(Duration::from_secs(u64::from(minutes) * 60)),
                _ => Err(ConfigError::new(
                    "sanctum_expiration",
                    format!("{raw:?}: expected a whole number of minutes above 0"),
                )),
            })
            .transpose()?;
        let cache = CacheOptions {
            capacity: source.parse(
                "cache_capacity",
                &a.cache_capacity,
                d.cache.capacity,
                positive,
            )?,
            ttl: source.parse("cache_ttl", &a.cache_ttl, d.cache.ttl, duration::parse)?,
            negative_capacity: source.parse(
                "negative_cache_capacity",
                &a.negative_cache_capacity,
                d.cache.negative_capacity,
                positive,
            )?,
            negative_ttl: source.parse(
                "negative_cache_ttl",
                &a.negative_cache_ttl,
                d.cache.negative_ttl,
                duration::parse,
            )?,
            max_stale: source.parse(
                "cache_max_stale",
                &a.cache_max_stale,
                d.cache.max_stale,
                duration::parse,
            )?,
        };
        let settings = Settings {
            store: StoreOptions {
                url: database_url,
                max_connections: source.parse(
                    "database_max_connections",
                    &a.database_max_connections,
                    d.store.max_connections,
                    positive,
                )?,
                timeout: source.parse(
                    "database_timeout",
                    &a.database_timeout,
                    d.store.timeout,
                    duration::parse,
                )?,
                schema,
            },
            redis: redis_options(&mut source, a, cache.negative_ttl)?,
            cache,
            refresh_lifetimes: RefreshLifetimes {
                access: source.parse(
                    "refresh_access_ttl",
                    &a.refresh_access_ttl,
                    d.refresh_lifetimes.access,
                    lifetime,
                )?,
                refresh: source.parse(
                    "refresh_token_ttl",
                    &a.refresh_token_ttl,
                    d.refresh_lifetimes.refresh,
                    lifetime,
                )?,
            },
            last_used_flush_interval: source.parse(
                "last_used_flush_interval",
                &a.last_used_flush_interval,
                d.last_used_flush_interval,
                |raw| match duration::parse(raw)? {
                    interval if interval.is_zero() => Err("must be above 0".to_owned()),
                    interval => Ok(interval),
                },
            )?,
            grpc_addr: source.parse("grpc_addr", &a.grpc_addr, d.grpc_addr, parse_addr)?,
            http_addr: source.parse("http_addr", &a.http_addr, d.http_addr, parse_addr)?,
            ops_addr: source.parse("ops_addr", &a.ops_addr, d.ops_addr, parse_addr)?,
            http_workers: source.parse(
                "http_workers",
                &a.http_workers,
                d.http_workers,
                positive,
            )?,
            token_format: source.parse("token_prefix", &a.token_prefix, default_format, |raw| {
                TokenFormat::new(raw).map_err(|e| e.to_string())
            })?,
            ability_matching: source.parse(
                "ability_wildcards",
                &a.ability_wildcards,
                default_matching,
                |raw| match raw {
                    "true" => Ok(AbilityMatching::Wildcards),
                    "false" => Ok(AbilityMatching::Exact),
                    _ => Err("expected true or false".to_owned()),
                },
            )?,
            // Sanctum's expiration is a maximum age; the stricter one wins.
            token_max_age: source
                .take("token_max_age", &a.token_max_age)?
                .map(|raw| duration::parse(&raw).map_err(|e| ConfigError::new("token_max_age", e)))
                .transpose()?
                .into_iter()
                .chain(sanctum_expiration)
                .min(),
            trusted_proxies: source.parse(
                "trusted_proxies",
                &a.trusted_proxies,
                d.trusted_proxies,
                |raw| NetList::parse(raw).map_err(|e| e.to_string()),
            )?,
            grpc_xff_trusted_hops: source.parse(
                "grpc_xff_trusted_hops",
                &a.grpc_xff_trusted_hops,
                d.grpc_xff_trusted_hops,
                |raw| {
                    raw.parse()
                        .map_err(|_| "expected a whole number".to_owned())
                },
            )?,
            policy_file: source
                .take("policy_file", &a.policy_file)?
                .map(PathBuf::from),
            identity_headers: IdentityHeaders {
                service: source.header(
                    "header_service",
                    &a.header_service,
                    &d.identity_headers.service,
                )?,
                service_id: source.header(
                    "header_service_id",
                    &a.header_service_id,
                    &d.identity_headers.service_id,
                )?,
                token_id: source.header(
                    "header_token_id",
                    &a.header_token_id,
                    &d.identity_headers.token_id,
                )?,
                abilities: source.header(
                    "header_abilities",
                    &a.header_abilities,
                    &d.identity_headers.abilities,
                )?,
            },
            remove_headers: source.parse(
                "remove_headers",
                &a.remove_headers,
                d.remove_headers,
                |raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(header_name)
                        .collect()
                },
            )?,
            log_level: source.parse("log_level", &a.log_level, d.log_level, |raw| {
                tracing_subscriber::EnvFilter::try_new(raw)
                    .map(|_| raw.to_owned())
                    .map_err(|e| e.to_string())
            })?,
            log_format: source.parse(
                "log_format",
                &a.log_format,
                d.log_format,
                |raw| match raw {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected text or json".to_owned()),
                },
            )?,
            shutdown_timeout: source.parse(
                "shutdown_timeout",
                &a.shutdown_timeout,
                d.shutdown_timeout,
                duration::parse,
            )?,
        };
        source.reject_unknown()?;
        Ok(settings)
    }
}

fn schema(source: &mut Source, a: &SettingsArgs) -> Result<Schema, ConfigError> {
    let d = SanctumOptions::default();
    let kind = source.take("schema", &a.schema)?;
    let tokenable_type = source
        .take("sanctum_tokenable_type", &a.sanctum_tokenable_type)?
        .unwrap_or(d.tokenable_type);
    let services_table = source
        .take("sanctum_services_table", &a.sanctum_services_table)?
        .unwrap_or(d.services_table);
    match kind.as_deref().map(str::trim) {
        None | Some("" | "gatepass") => Ok(Schema::Gatepass),
        Some("sanctum") => SanctumOptions::new(&tokenable_type, &services_table)
            .map(Schema::Sanctum)
            .map_err(|message| ConfigError::new("sanctum_services_table", message)),
        Some(other) => Err(ConfigError::new(
            "schema",
            format!("{other:?}: expected gatepass or sanctum"),
        )),
    }
}

fn redis_options(
    source: &mut Source,
    a: &SettingsArgs,
    negative_ttl: Duration,
) -> Result<Option<RedisOptions>, ConfigError> {
    let d = RedisOptions::default();
    let url = source.take("redis_url", &a.redis_url)?;
    let prefix = source
        .take("redis_prefix", &a.redis_prefix)?
        .unwrap_or(d.prefix);
    let ttl = source.parse("redis_ttl", &a.redis_ttl, d.ttl, duration::parse)?;
    let timeout = source.parse(
        "redis_timeout",
        &a.redis_timeout,
        d.timeout,
        duration::parse,
    )?;
    let Some(url) = url.filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    if !url.starts_with("redis://") {
        return Err(ConfigError::new(
            "redis_url",
            format!("{} is not a redis:// URL", redact_url(&url)),
        ));
    }
    Ok(Some(RedisOptions {
        url,
        prefix,
        ttl,
        negative_ttl,
        timeout,
    }))
}

/// Where values come from once flags and the environment (merged by clap)
/// are absent: the config file.
struct Source {
    file: toml::Table,
    path: Option<PathBuf>,
}

impl Source {
    fn open(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self {
                file: toml::Table::new(),
                path: None,
            });
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config", format!("{}: {e}", path.display())))?;
        let file = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::new("config", format!("{}: {e}", path.display())))?;
        Ok(Self {
            file,
            path: Some(path.to_owned()),
        })
    }

    fn take(&mut self, key: &str, flag: &Option<String>) -> Result<Option<String>, ConfigError> {
        let from_file = self.file.remove(key);
        if let Some(value) = flag {
            return Ok(Some(value.clone()));
        }
        match from_file {
            None => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text)),
            Some(toml::Value::Integer(number)) => Ok(Some(number.to_string())),
            Some(toml::Value::Boolean(flag)) => Ok(Some(flag.to_string())),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(text) => Ok(text),
                    _ => Err(ConfigError::new(key, "expected a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|items| Some(items.join(","))),
            Some(_) => Err(ConfigError::new(key, "expected a string or a number")),
        }
    }

    fn parse<T>(
        &mut self,
        key: &str,
        flag: &Option<String>,
        default: T,
        parser: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.take(key, flag)? {
            None => Ok(default),
            Some(raw) => parser(raw.trim())
                .map_err(|message| ConfigError::new(key, format!("{raw:?}: {message}"))),
        }
    }

    fn header(
        &mut self,
        key: &str,
        flag: &Option<String>,
        default: &str,
    ) -> Result<String, ConfigError> {
        self.parse(key, flag, default.to_owned(), header_name)
    }

    fn reject_unknown(self) -> Result<(), ConfigError> {
        match self.file.keys().next() {
            None => Ok(()),
            Some(key) => Err(ConfigError::new(
                "config",
                format!(
                    "{}: unknown setting {key:?}",
                    self.path.as_deref().unwrap_or(Path::new("-")).display()
                ),
            )),
        }
    }
}

/// A token lifetime: above zero, within what dates can hold.
fn lifetime(raw: &str) -> Result<chrono::Duration, String> {
    let duration = duration::parse(raw)?;
    match chrono::Duration::from_std(duration) {
        Ok(lifetime) if !duration.is_zero() && lifetime < chrono::Duration::days(36_500) => {
            Ok(lifetime)
        }
        _ => Err("expected a lifetime above 0 and under 100 years".to_owned()),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| "expected an address such as 0.0.0.0:8080 or [::]:8080".to_owned())
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(raw: &str) -> Result<T, String> {
    match raw.parse::<T>() {
        Ok(value) if value > T::default() => Ok(value),
        _ => Err("expected a whole number above 0".to_owned()),
    }
}

/// A lowercase HTTP header name (Envoy and HTTP/2 want lowercase).
fn header_name(raw: &str) -> Result<String, String> {
    let valid = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err("expected a header name from [A-Za-z0-9_-]".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SettingsArgs {
        SettingsArgs {
            database_url: Some("postgres://postgres@127.0.0.1/test".into()),
            ..SettingsArgs::default()
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let settings = Settings::load(&args()).unwrap();
        assert_eq!(settings.grpc_addr, addr(50051));
        assert_eq!(settings.http_addr, addr(8080));
        assert_eq!(settings.ops_addr, addr(9464));
        assert!(settings.redis.is_none());
        assert_eq!(settings.cache.ttl, Duration::from_secs(300));
        assert_eq!(settings.last_used_flush_interval, Duration::from_secs(10));
        assert_eq!(settings.token_format.prefix(), "gp_");
        assert_eq!(settings.identity_headers, IdentityHeaders::default());
        assert_eq!(settings.remove_headers, ["authorization"]);
        assert!(
            settings
                .trusted_proxies
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(settings.trusted_proxies.contains("::1".parse().unwrap()));
    }

    #[test]
    fn loading_nothing_gives_the_defaults() {
        let loaded = Settings::load(&SettingsArgs::default()).unwrap();
        assert_eq!(format!("{loaded:?}"), format!("{:?}", Settings::default()));
    }

    #[test]
    fn bad_values_name_their_setting() {
        type Mutation = fn(&mut SettingsArgs);
        let cases: [(Mutation, &str); 5] = [
            (|a| a.grpc_addr = Some("nope".into()), "GATEPASS_GRPC_ADDR"),
            (
                |a| a.trusted_proxies = Some("10.0.0.0/33".into()),
                "GATEPASS_TRUSTED_PROXIES",
            ),
            (
                |a| a.token_max_age = Some("soon".into()),
                "GATEPASS_TOKEN_MAX_AGE",
            ),
            (
                |a| a.database_url = Some("mongodb://x".into()),
                "GATEPASS_DATABASE_URL",
            ),
            (|a| a.log_format = Some("xml".into()), "GATEPASS_LOG_FORMAT"),
        ];
        for (mutate, setting) in cases {
            let mut bad = args();
            mutate(&mut bad);
            let error = Settings::load(&bad).unwrap_err();
            assert_eq!(error.setting, setting, "{error}");
        }
    }

    #[test]
    fn file_fills_what_flags_leave_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatepass.toml");
        std::fs::write(
            &path,
            "http_addr = \"127.0.0.1:9999\"\ngrpc_addr = \"127.0.0.1:1\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let mut with_file = args();
        with_file.config = Some(path.clone());
        with_file.grpc_addr = Some("127.0.0.1:2".into());
        let settings = Settings::load(&with_file).unwrap();
        assert_eq!(settings.http_addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(settings.grpc_addr, "127.0.0.1:2".parse().unwrap());
        assert!(
            settings
                .trusted_proxies
                .contains("10.1.1.1".parse().unwrap())
        );

        std::fs::write(&path, "htp_addr = \"127.0.0.1:9999\"\n").unwrap();
        let error = Settings::load(&with_file).unwrap_err();
        assert!(error.message.contains("htp_addr"), "{error}");
    }

    #[test]
    fn database_password_never_appears_in_errors() {
        let mut bad = args();
        bad.database_url = Some("mongodb://root:hunter2@db/x".into());
        let error = Settings::load(&bad).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
