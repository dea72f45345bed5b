//! Persistence: the only place with SQL. [`Store`] hides which database
//! backs it (Postgres, MySQL/MariaDB, or the embedded SQLite default) and
//! which schema: gatepass's own tables, or a Laravel Sanctum database's
//! read in place (`store/sanctum.rs`).

mod changelog;
mod connections;
mod feed;
mod mysql;
mod postgres;
pub mod rows;
mod sanctum;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{Ability, NetList, ServiceName, TokenKind, TokenRecord};
use crate::token::TokenDigest;
pub use feed::{Change, ChangeFeed, HEARTBEAT_EVERY, SYNC_EVERY, advance};
pub use mysql::MysqlStore;
pub use postgres::PostgresStore;
pub use sanctum::{SanctumOptions, SanctumStore};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    NotFound(String),
    #[error("unsupported database url {0:?}: use postgres://, mysql:// or sqlite:")]
    UnsupportedUrl(String),
    #[error("database unreachable; gatepass is probing it")]
    CoolingDown,
    #[error("database did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("too many lookups of tokens not yet known to exist; retry")]
    Overloaded,
}

impl StoreError {
    /// Whether this means the database cannot be reached (rather than a
    /// row that does not decode, or a missing service).
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Unavailable(error) => !matches!(
                error,
                sqlx::Error::Decode(_)
                    | sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::TypeNotFound { .. }
                    | sqlx::Error::RowNotFound
            ),
            Self::TimedOut(_) | Self::CoolingDown => true,
            Self::Migrate(_)
            | Self::NotFound(_)
            | Self::UnsupportedUrl(_)
            | Self::Unsupported(_)
            | Self::Overloaded => false,
        }
    }

    /// A migration that could not reach the database is an outage, not a
    /// broken migration.
    fn from_migration(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(cause) => Self::Unavailable(cause),
            other => Self::Migrate(other),
        }
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// Bound on waiting for a connection, so a dead database turns into a
    /// quick UNAVAILABLE instead of a hung check.
    pub timeout: Duration,
    pub schema: Schema,
}

/// Which tables hold services and tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Schema {
    /// gatepass's own `services` and `tokens`.
    #[default]
    Gatepass,
    /// A Laravel Sanctum database's `personal_access_tokens` (SPEC §10).
    Sanctum(SanctumOptions),
}

impl Default for StoreOptions {
    /// The embedded store, created next to where gatepass runs.
    fn default() -> Self {
        Self {
            url: "sqlite://gatepass.db".into(),
            max_connections: 10,
            timeout: Duration::from_secs(1),
            schema: Schema::Gatepass,
        }
    }
}

/// A service as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    #[serde(serialize_with = "serialize_nets")]
    pub ip_allowlist: NetList,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn serialize_nets<S: serde::Serializer>(nets: &NetList, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(
        nets.to_string()
            .split(',')
            .filter(|entry| !entry.is_empty()),
    )
}

/// Fields of `service create`; `None` leaves an existing value alone.
#[derive(Debug, Clone)]
pub struct ServiceChange {
    pub name: ServiceName,
    pub description: Option<String>,
    pub ip_allowlist: Option<NetList>,
}

/// A token row as operators see it: never the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub abilities: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A token to insert; the caller generated the secret and keeps it.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub service: ServiceName,
    pub name: String,
    pub digest: TokenDigest,
    pub abilities: Vec<Ability>,
    pub kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token issued by a refresh: its digest and expiry; service, name and
/// abilities are the spent refresh token's.
#[derive(Debug, Clone)]
pub struct Successor {
    pub digest: TokenDigest,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The ids a rotation issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub access_id: i64,
    pub refresh_id: i64,
}

/// The database behind gatepass. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Token lookups sent to the database, for tests and metrics.
    lookups: Arc<AtomicU64>,
    health: Arc<Health>,
}

#[derive(Debug, Clone)]
enum Backend {
    Postgres(PostgresStore),
    Mysql(MysqlStore),
    Sqlite(SqliteStore),
    Sanctum(SanctumStore),
}

/// Calls the same method on whichever backend is in use.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match &$self.backend {
            Backend::Postgres(store) => store.$method($($arg),*).await,
            Backend::Mysql(store) => store.$method($($arg),*).await,
            Backend::Sqlite(store) => store.$method($($arg),*).await,
            Backend::Sanctum(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens a connection pool lazily: nothing is dialled until first use,
    /// so start-up reports a dead database from `migrate`, with its cause.
    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let url = options.url.as_str();
        let native = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(PostgresStore::connect(options)?)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let options = StoreOptions {
                url: url.replacen("mariadb://", "mysql://", 1),
                ..options.clone()
            };
            Backend::Mysql(MysqlStore::connect(&options)?)
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite(SqliteStore::connect(options)?)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let backend = match (&options.schema, native) {
            (Schema::Gatepass, native) => native,
            (Schema::Sanctum(sanctum), Backend::Postgres(native)) => {
                Backend::Sanctum(SanctumStore::postgres(native, sanctum))
            }
            (Schema::Sanctum(sanctum), Backend::Mysql(native)) => {
                Backend::Sanctum(SanctumStore::mysql(native, sanctum))
            }
            (Schema::Sanctum(sanctum), Backend::Sqlite(native)) => {
                Backend::Sanctum(SanctumStore::sqlite(native, sanctum))
            }
            (Schema::Sanctum(_), sanctum @ Backend::Sanctum(_)) => sanctum,
        };
        Ok(Self {
            backend,
            lookups: Arc::default(),
            health: Arc::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())
    }

    /// Removes what `migrate` added to a Laravel database, and nothing
    /// else (`gatepass migrate --undo-sanctum`).
    pub async fn undo_sanctum(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sanctum(store) => store.undo().await,
            _ => Err(StoreError::Unsupported(
                "--undo-sanctum needs GATEPASS_SCHEMA=sanctum",
            )),
        }
    }

    /// Reachable, and every migration this build knows is applied.
    pub async fn ready(&self) -> Result<bool, StoreError> {
        dispatch!(self.ready())
    }

    /// Token lookups this store has sent to the database so far.
    pub fn lookup_count(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Looks a token up by id. While the database is known to be down,
    /// fails at once: checks never wait on a database that is not there
    /// (a background probe finds it again).
    pub async fn find_token_by_id(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        self.health.pass()?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = dispatch!(self.find_token_by_id(id));
        self.observe(found)
    }

    pub async fn find_token_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.health.pass()?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = dispatch!(self.find_token_by_digest(digest));
        self.observe(found)
    }

    /// Whether lookups are failing fast because the database is down.
    pub fn is_down(&self) -> bool {
        self.health.down.load(Ordering::Acquire)
    }

    /// A lookup that found the database unreachable marks it down and
    /// starts the probe that marks it up again.
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result
            && error.is_outage()
            && !self.health.down.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(%error, "database unreachable: lookups fail fast until a probe succeeds");
            let store = self.clone();
            tokio::spawn(async move { store.probe_until_up().await });
        }
        result
    }

    async fn probe_until_up(&self) {
        let mut ticks = tokio::time::interval(PROBE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let probed = match &self.backend {
                Backend::Postgres(store) => store.probe().await,
                Backend::Mysql(store) => store.probe().await,
                Backend::Sqlite(store) => store.probe().await,
                Backend::Sanctum(store) => store.probe().await,
            };
            if probed.is_ok() {
                self.health.down.store(false, Ordering::Release);
                tracing::info!("database reachable again");
                return;
            }
        }
    }

    /// Creates the service, or updates the fields given. Returns the
    /// service and whether it was created.
    pub async fn upsert_service(
        &self,
        change: &ServiceChange,
    ) -> Result<(Service, bool), StoreError> {
        dispatch!(self.upsert_service(change))
    }

    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        dispatch!(self.list_services())
    }

    pub async fn set_service_active(
        &self,
        name: &ServiceName,
        active: bool,
    ) -> Result<Service, StoreError> {
        dispatch!(self.set_service_active(name, active))
    }

    pub async fn insert_token(&self, token: &NewToken) -> Result<TokenInfo, StoreError> {
        dispatch!(self.insert_token(token))
    }

    pub async fn list_tokens(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        dispatch!(self.list_tokens(service))
    }

    /// Revokes the token; revoking twice keeps the first revocation time.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        dispatch!(self.revoke_token(id))
    }

    /// Spends refresh token `id` and issues its successors in one step: the
    /// refresh token is revoked, an access token and a new refresh token of
    /// the same family, service and abilities are inserted. `None` when the
    /// token was already spent (or is not a live refresh token): reuse.
    pub async fn rotate_refresh_token(
        &self,
        id: i64,
        access: &Successor,
        refresh: &Successor,
    ) -> Result<Option<Rotated>, StoreError> {
        dispatch!(self.rotate_refresh_token(id, access, refresh))
    }

    /// Revokes every token of `id`'s refresh family; returns how many.
    pub async fn revoke_family(&self, id: i64) -> Result<u64, StoreError> {
        dispatch!(self.revoke_family(id))
    }

    /// Deletes tokens that expired or were revoked before `before`.
    pub async fn prune_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.prune_tokens(before))
    }

    /// Writes last-used times in one statement.
    pub async fn record_last_used(&self, uses: &[(i64, DateTime<Utc>)]) -> Result<u64, StoreError> {
        dispatch!(self.record_last_used(uses))
    }

    /// Ids and digests of up to `limit` tokens with ids above `after`, in
    /// id order (to load the index of existing tokens page by page).
    pub async fn token_keys_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, TokenDigest)>, StoreError> {
        dispatch!(self.token_keys_after(after, limit))
    }

    /// Ids and digests of a service's tokens (to drop them from L2).
    pub async fn token_keys_of_service(
        &self,
        service_id: i64,
    ) -> Result<Vec<(i64, TokenDigest)>, StoreError> {
        dispatch!(self.token_keys_of_service(service_id))
    }

    /// Subscribes to changes made by any writer, plain SQL included.
    pub async fn changes(&self) -> Result<ChangeFeed, StoreError> {
        match &self.backend {
            Backend::Postgres(store) => ChangeFeed::postgres(store).await,
            Backend::Mysql(store) => Ok(ChangeFeed::polled(store.changes().await?)),
            Backend::Sqlite(store) => Ok(ChangeFeed::polled(store.changes().await?)),
            Backend::Sanctum(store) => store.changes().await,
        }
    }
}

impl From<PostgresStore> for Store {
    fn from(store: PostgresStore) -> Self {
        Self {
            backend: Backend::Postgres(store),
            lookups: Arc::default(),
            health: Arc::default(),
        }
    }
}

/// Reads the `(id, kind)` rows a rotation inserted.
/// `(id, token_hash)` rows as keys; a hash that is not 32 bytes (written by
/// plain SQL) cannot match any token and is skipped.
fn digests(rows: Vec<(i64, Vec<u8>)>) -> Vec<(i64, TokenDigest)> {
    rows.into_iter()
        .filter_map(|(id, hash)| TokenDigest::from_bytes(&hash).map(|digest| (id, digest)))
        .collect()
}

fn service_not_found(name: &ServiceName) -> StoreError {
    StoreError::NotFound(format!("service \"{name}\" not found"))
}

/// How often a database that went down is probed with a new connection.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Whether the database is known to be down.
#[derive(Debug, Default)]
struct Health {
    down: AtomicBool,
}

impl Health {
    fn pass(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Acquire) {
            Err(StoreError::CoolingDown)
        } else {
            Ok(())
        }
    }
}

/// A database URL fit for an error message: the password is hidden.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let credentials = &rest[..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_validated() {
        for good in ["billing", "order-service", "a", "svc.v2_x"] {
            assert!(ServiceName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Billing", "-x", "with space", "é", &"x".repeat(65)] {
            assert!(ServiceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://user:hunter2@db:5432/gp"),
            "postgres://user:***@db:5432/gp"
        );
        assert_eq!(redact_url("postgres://db/gp"), "postgres://db/gp");
    }
}
