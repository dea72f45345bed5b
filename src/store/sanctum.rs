//! Laravel Sanctum's own tables, read and written in place (SPEC §10):
//! `personal_access_tokens` and the table of the tokenable model (the
//! seed guide's `services`). Laravel's columns are never altered: a row's
//! version lives beside it in `gatepass_row_versions`, `gatepass_` triggers
//! announce every change through the native feeds (NOTIFY on Postgres, the
//! `gatepass_changes` log elsewhere), and the install is bookkept in
//! `gatepass_migrations`, never in sqlx's `_sqlx_migrations`.
//!
//! The statements are built once at start-up, because the services table
//! is a setting; each is written once for the three dialects, from what a
//! [`Dialect`] spells differently.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::feed::ChangeFeed;
use super::rows::{self, Columns};
use super::{
    MysqlStore, NewToken, PostgresStore, Rotated, Service, ServiceChange, SqliteStore, StoreError,
    Successor, TokenInfo, service_not_found,
};
use crate::model::{NetList, ServiceName, TokenKind, TokenRecord};
use crate::token::TokenDigest;

/// What `GATEPASS_SCHEMA=sanctum` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanctumOptions {
    /// The `tokenable_type` of the tokens that count; any other owner's
    /// token (a user's) is unknown to gatepass.
    pub tokenable_type: String,
    /// The table of that model.
    pub services_table: String,
}

impl Default for SanctumOptions {
    fn default() -> Self {
        Self {
            tokenable_type: r"App\Models\Service".to_owned(),
            services_table: "services".to_owned(),
        }
    }
}

impl SanctumOptions {
    pub fn new(tokenable_type: &str, services_table: &str) -> Result<Self, String> {
        if tokenable_type.is_empty() || tokenable_type.len() > 255 {
            return Err("the tokenable type must be 1 to 255 characters".into());
        }
        let mut table = services_table.bytes();
        let identifier = table
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && table.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && services_table.len() <= 64;
        if !identifier {
            return Err(format!(
                "{services_table:?} is not a table name gatepass accepts ([a-z_][a-z0-9_]*, at most 64)"
            ));
        }
        Ok(Self {
            tokenable_type: tokenable_type.to_owned(),
            services_table: services_table.to_owned(),
        })
    }
}

/// The version of the install scripts; bump with a new script.
const INSTALLED_VERSION: i64 = 1;

/// What one SQL dialect spells differently.
struct Dialect {
    /// The n-th bound parameter (MySQL's are positional: every statement
    /// below uses each once, in the order it binds them).
    param: fn(usize) -> String,
    /// An integer column as a signed 64-bit integer (Laravel's ids are
    /// unsigned on MySQL).
    int: fn(&str) -> String,
    /// A Laravel timestamp column as a UTC time.
    time: fn(&str) -> String,
    /// A bound `Y-m-d H:i:s` text as a timestamp column's value.
    time_param: fn(String) -> String,
    /// The time now, as Laravel writes it (UTC, whole seconds).
    now: &'static str,
    install: &'static str,
    undo: &'static str,
    /// Taken before installing or removing, so instances starting together
    /// install once; `release` after success, `abandon` after a failure.
    lock: &'static str,
    release: &'static str,
    abandon: &'static str,
}

const POSTGRES: Dialect = Dialect {
    param: |n| format!("${n}"),
    int: |column| format!("CAST({column} AS BIGINT)"),
    time: |column| format!("(CAST({column} AS timestamp) AT TIME ZONE 'UTC')"),
    time_param: |param| format!("CAST({param} AS timestamp)"),
    now: "date_trunc('second', now() AT TIME ZONE 'UTC')",
    install: include_str!("../../migrations/sanctum/postgres.sql"),
    undo: include_str!("../../migrations/sanctum/postgres-undo.sql"),
    lock: "BEGIN; SELECT pg_advisory_xact_lock(7061746573)",
    release: "COMMIT",
    abandon: "ROLLBACK",
};

const MYSQL: Dialect = Dialect {
    param: |_| "?".to_owned(),
    int: |column| format!("CAST({column} AS SIGNED)"),
    time: |column| format!("CAST({column} AS DATETIME)"),
    time_param: |param| param,
    now: "UTC_TIMESTAMP()",
    install: include_str!("../../migrations/sanctum/mysql.sql"),
    undo: include_str!("../../migrations/sanctum/mysql-undo.sql"),
    // MySQL's DDL commits on its own: a named lock serializes installers.
    lock: "DO GET_LOCK('gatepass_migrations', 60)",
    release: "DO RELEASE_LOCK('gatepass_migrations')",
    abandon: "DO RELEASE_LOCK('gatepass_migrations')",
};

const SQLITE: Dialect = Dialect {
    param: |n| format!("?{n}"),
    int: |column| column.to_owned(),
    time: |column| column.to_owned(),
    time_param: |param| param,
    now: "strftime('%Y-%m-%d %H:%M:%S', 'now')",
    install: include_str!("../../migrations/sanctum/sqlite.sql"),
    undo: include_str!("../../migrations/sanctum/sqlite-undo.sql"),
    lock: "BEGIN IMMEDIATE",
    release: "COMMIT",
    abandon: "ROLLBACK",
};

/// Laravel's timestamp format.
const LARAVEL_TIME: &str = "%Y-%m-%d %H:%M:%S";

fn laravel_time(at: DateTime<Utc>) -> String {
    at.format(LARAVEL_TIME).to_string()
}

/// The statements, in one dialect, over one services table.
struct Statements {
    dialect: &'static Dialect,
    services: String,
    token_by_id: String,
    token_by_digest: String,
    token_info_by_id: String,
    token_id_by_digest: String,
    list_tokens: String,
    list_services: String,
    service_by_name: String,
    service_count: String,
    set_service_active: String,
    update_service: String,
    insert_service: String,
    insert_token: String,
    delete_token: String,
    prune_tokens: String,
    token_keys_after: String,
    token_keys_of_service: String,
    /// Reads no row but names every column gatepass uses: MySQL and SQLite
    /// resolve a trigger's columns only when it fires, so a missing one
    /// must stop the install, not Laravel's next write.
    columns_used: [String; 2],
    applied: &'static str,
    bookkeeping: &'static str,
    record_install: String,
}

impl Statements {
    fn new(dialect: &'static Dialect, services: &str) -> Self {
        let p = dialect.param;
        let (int, time) = (dialect.int, dialect.time);
        let created = time("COALESCE(t.created_at, '1970-01-01 00:00:00')");
        let token_record = format!(
            "SELECT {id} AS id, {version} AS version, t.token AS token_hash, 'access' AS kind, \
             COALESCE(t.abilities, '[]') AS abilities, {expires} AS expires_at, \
             NULL AS revoked_at, {created} AS created_at, {service_id} AS service_id, \
             {service_version} AS service_version, s.name AS service_name, s.is_active, \
             COALESCE(s.ip_allowlist, '') AS ip_allowlist \
             FROM personal_access_tokens t JOIN {services} s ON s.id = t.tokenable_id \
             LEFT JOIN gatepass_row_versions tv ON tv.subject = 't' AND tv.row_id = t.id \
             LEFT JOIN gatepass_row_versions sv ON sv.subject = 's' AND sv.row_id = s.id \
             WHERE t.tokenable_type = {p1}",
            id = int("t.id"),
            version = int("COALESCE(tv.version, 0)"),
            expires = time("t.expires_at"),
            service_id = int("s.id"),
            service_version = int("COALESCE(sv.version, 0)"),
            p1 = p(1),
        );
        let token_info = format!(
            "SELECT {id} AS id, s.name AS service_name, t.name, 'access' AS kind, \
             COALESCE(t.abilities, '[]') AS abilities, {expires} AS expires_at, \
             {last_used} AS last_used_at, NULL AS revoked_at, {created} AS created_at \
             FROM personal_access_tokens t JOIN {services} s ON s.id = t.tokenable_id \
             WHERE t.tokenable_type = {p1}",
            id = int("t.id"),
            expires = time("t.expires_at"),
            last_used = time("t.last_used_at"),
            p1 = p(1),
        );
        let service = format!(
            "SELECT {id} AS id, s.name, COALESCE(s.description, '') AS description, s.is_active, \
             COALESCE(s.ip_allowlist, '') AS ip_allowlist, {created} AS created_at, \
             {updated} AS updated_at FROM {services} s",
            id = int("s.id"),
            created = time("COALESCE(s.created_at, '1970-01-01 00:00:00')"),
            updated = time("COALESCE(s.updated_at, '1970-01-01 00:00:00')"),
        );
        let now = dialect.now;
        Self {
            dialect,
            services: services.to_owned(),
            token_by_id: format!("{token_record} AND t.id = {}", p(2)),
            token_by_digest: format!("{token_record} AND t.token = {}", p(2)),
            token_info_by_id: format!("{token_info} AND t.id = {}", p(2)),
            token_id_by_digest: format!(
                "SELECT {} FROM personal_access_tokens WHERE token = {}",
                int("id"),
                p(1)
            ),
            list_tokens: format!(
                "{token_info} AND COALESCE({}, s.name) = s.name ORDER BY t.id",
                p(2)
            ),
            list_services: format!("{service} ORDER BY s.name"),
            service_by_name: format!("{service} WHERE s.name = {}", p(1)),
            service_count: format!("SELECT COUNT(*) FROM {services} WHERE name = {}", p(1)),
            set_service_active: format!(
                "UPDATE {services} SET is_active = {}, updated_at = {now} WHERE name = {}",
                p(1),
                p(2)
            ),
            update_service: format!(
                "UPDATE {services} SET description = COALESCE({}, description), \
                 ip_allowlist = COALESCE({}, ip_allowlist), updated_at = {now} WHERE name = {}",
                p(1),
                p(2),
                p(3)
            ),
            insert_service: format!(
                "INSERT INTO {services} (name, description, ip_allowlist, is_active, created_at, \
                 updated_at) VALUES ({}, {}, {}, TRUE, {now}, {now})",
                p(1),
                p(2),
                p(3)
            ),
            insert_token: format!(
                "INSERT INTO personal_access_tokens (tokenable_type, tokenable_id, name, token, \
                 abilities, expires_at, created_at, updated_at) \
                 SELECT {}, s.id, {}, {}, {}, {}, {now}, {now} FROM {services} s WHERE s.name = {}",
                p(1),
                p(2),
                p(3),
                p(4),
                (dialect.time_param)(p(5)),
                p(6)
            ),
            delete_token: format!(
                "DELETE FROM personal_access_tokens WHERE id = {} AND tokenable_type = {}",
                p(1),
                p(2)
            ),
            prune_tokens: format!(
                "DELETE FROM personal_access_tokens WHERE tokenable_type = {} AND expires_at < {}",
                p(1),
                (dialect.time_param)(p(2))
            ),
            token_keys_after: format!(
                "SELECT {} AS id, token FROM personal_access_tokens \
                 WHERE tokenable_type = {} AND id > {} ORDER BY id LIMIT {}",
                int("id"),
                p(1),
                p(2),
                p(3)
            ),
            token_keys_of_service: format!(
                "SELECT {} AS id, token FROM personal_access_tokens \
                 WHERE tokenable_type = {} AND tokenable_id = {}",
                int("id"),
                p(1),
                p(2)
            ),
            columns_used: [
                "SELECT id, tokenable_type, tokenable_id, name, token, abilities, last_used_at, \
                 expires_at, created_at, updated_at FROM personal_access_tokens WHERE 1 = 0"
                    .to_owned(),
                format!(
                    "SELECT id, name, description, ip_allowlist, is_active, created_at, \
                     updated_at FROM {services} WHERE 1 = 0"
                ),
            ],
            applied: "SELECT max(version) FROM gatepass_migrations",
            bookkeeping: "CREATE TABLE IF NOT EXISTS gatepass_migrations (\
                 version BIGINT NOT NULL PRIMARY KEY, description VARCHAR(255) NOT NULL, \
                 installed_at VARCHAR(32) NOT NULL)",
            record_install: format!(
                "INSERT INTO gatepass_migrations (version, description, installed_at) \
                 VALUES ({}, {}, {})",
                p(1),
                p(2),
                p(3)
            ),
        }
    }

    fn script(&self, script: &str) -> String {
        script.replace("{services}", &self.services)
    }

    /// One statement writing every `(id, time)` of the batch, never moving
    /// a time backwards. Binds the pairs, the ids, then the pairs again.
    fn record_last_used(&self, batch: usize) -> String {
        let p = self.dialect.param;
        let cases = |first: usize| -> String {
            let whens: String = (0..batch)
                .map(|i| {
                    format!(
                        " WHEN {} THEN {}",
                        p(first + 2 * i),
                        (self.dialect.time_param)(p(first + 2 * i + 1))
                    )
                })
                .collect();
            format!("CASE id{whens} END")
        };
        let ids: Vec<String> = (0..batch).map(|i| p(2 * batch + i + 1)).collect();
        format!(
            "UPDATE personal_access_tokens SET last_used_at = {} WHERE id IN ({}) \
             AND (last_used_at IS NULL OR last_used_at < {})",
            cases(1),
            ids.join(", "),
            cases(3 * batch + 1)
        )
    }
}

/// Rows of Laravel's tables: the digest is hex text, abilities a JSON
/// array that may be NULL, an allowlist comma-separated text. Everything
/// else reads as the backend reads it.
struct LaravelRow<'r, R>(&'r R);

impl<R: Columns> Columns for LaravelRow<'_, R> {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.0.int(column)
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.0.flag(column)
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.0.text(column)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        let hex = self.0.text(column)?;
        TokenDigest::from_hex(&hex)
            .map(|digest| digest.as_bytes().to_vec())
            .ok_or_else(|| rows::decode_error(format!("{column} is not a hex sha256")))
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.0.time(column)
    }

    fn names(&self, column: &str) -> Result<Vec<String>, sqlx::Error> {
        Ok(laravel_abilities(&self.0.text(column)?))
    }

    fn nets(&self, column: &str) -> Result<NetList, sqlx::Error> {
        laravel_allowlist(&self.0.text(column)?)
            .map_err(|e| rows::decode_error(format!("{column}: {e}")))
    }
}

/// Abilities as Sanctum's `json` cast reads them: an array of strings (or
/// an object, whose values `in_array` searches). What Laravel could not
/// match (invalid JSON, a number) grants nothing.
pub fn laravel_abilities(text: &str) -> Vec<String> {
    let strings = |values: Vec<serde_json::Value>| {
        values
            .into_iter()
            .filter_map(|value| match value {
                serde_json::Value::String(name) => Some(name),
                _ => None,
            })
            .collect()
    };
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(values)) => strings(values),
        Ok(serde_json::Value::Object(map)) => strings(map.into_iter().map(|(_, v)| v).collect()),
        _ => Vec::new(),
    }
}

/// The guide's comma-separated allowlist. An address or CIDR with host
/// bits set matches its network, as Symfony's `IpUtils::checkIp` does; an
/// entry that is neither fails the whole row rather than being skipped,
/// so a typo can never widen what a service may reach.
pub fn laravel_allowlist(text: &str) -> Result<NetList, crate::model::InvalidNet> {
    let nets = text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match NetList::parse(entry) {
            Ok(list) => Ok(list.nets().to_vec()),
            Err(crate::model::InvalidNet::HostBitsSet { network, .. }) => Ok(vec![network]),
            Err(other) => Err(other),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetList::new(nets.into_iter().flatten().collect()))
}

/// `(id, token)` rows as keys; a token that is not a hex sha256 cannot
/// match any presented token and is skipped.
fn hex_digests(rows: Vec<(i64, String)>) -> Vec<(i64, TokenDigest)> {
    rows.into_iter()
        .filter_map(|(id, hex)| TokenDigest::from_hex(&hex).map(|digest| (id, digest)))
        .collect()
}

#[derive(Debug, Clone)]
enum Native {
    Postgres(PostgresStore),
    Mysql(MysqlStore),
    Sqlite(SqliteStore),
}

/// A store over a Laravel database: the native backend's connections,
/// probes and change feed, with Laravel's tables.
#[derive(Clone)]
pub struct SanctumStore {
    native: Native,
    sql: Arc<Statements>,
    tokenable_type: Arc<str>,
}

impl std::fmt::Debug for SanctumStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SanctumStore")
            .field("native", &self.native)
            .field("services", &self.sql.services)
            .field("tokenable_type", &self.tokenable_type)
            .finish()
    }
}

/// Runs the same body on whichever backend's connections are in use; the
/// body is compiled once per backend, whose sqlx types differ.
macro_rules! on_native {
    ($self:ident, |$db:ident| $body:expr) => {
        match &$self.native {
            Native::Postgres(store) => {
                let $db = &store.db;
                $body
            }
            Native::Mysql(store) => {
                let $db = &store.db;
                $body
            }
            Native::Sqlite(store) => {
                let $db = &store.db;
                $body
            }
        }
    };
}

/// The row `$statement` finds for the tokenable type and `$key`, read by
/// `$read` (`lookup` or `run`) and mapped by `$map`.
macro_rules! token_row {
    ($self:ident.$read:ident($statement:expr, $key:expr) as $map:path) => {
        on_native!($self, |db| db
            .$read(async |conn| {
                let row = sqlx::query($statement)
                    .bind(&*$self.tokenable_type)
                    .bind($key)
                    .fetch_optional(conn)
                    .await?;
                row.map(|row| $map(&LaravelRow(&row))).transpose()
            })
            .await)
    };
}

fn refresh_unsupported() -> StoreError {
    StoreError::Unsupported("refresh tokens are not part of Laravel Sanctum's schema")
}

impl SanctumStore {
    pub fn postgres(native: PostgresStore, options: &SanctumOptions) -> Self {
        Self::over(Native::Postgres(native), &POSTGRES, options)
    }

    pub fn mysql(native: MysqlStore, options: &SanctumOptions) -> Self {
        Self::over(Native::Mysql(native), &MYSQL, options)
    }

    pub fn sqlite(native: SqliteStore, options: &SanctumOptions) -> Self {
        Self::over(Native::Sqlite(native), &SQLITE, options)
    }

    fn over(native: Native, dialect: &'static Dialect, options: &SanctumOptions) -> Self {
        Self {
            native,
            sql: Arc::new(Statements::new(dialect, &options.services_table)),
            tokenable_type: options.tokenable_type.as_str().into(),
        }
    }

    /// Installs the triggers and tables beside Laravel's, once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.check_laravel_tables().await?;
        let sql = &self.sql;
        let install = sql.script(sql.dialect.install);
        on_native!(self, |db| db
            .run(async |conn| {
                sqlx::raw_sql(sql.dialect.lock).execute(&mut *conn).await?;
                let installed = async {
                    sqlx::raw_sql(sql.bookkeeping).execute(&mut *conn).await?;
                    let applied: Option<i64> = sqlx::query_scalar(sql.applied)
                        .fetch_one(&mut *conn)
                        .await?;
                    if applied.is_none() {
                        sqlx::raw_sql(&install).execute(&mut *conn).await?;
                        sqlx::query(&sql.record_install)
                            .bind(INSTALLED_VERSION)
                            .bind("sanctum triggers, change log and row versions")
                            .bind(laravel_time(Utc::now()))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok::<_, sqlx::Error>(())
                }
                .await;
                let end = match installed {
                    Ok(()) => sql.dialect.release,
                    Err(_) => sql.dialect.abandon,
                };
                sqlx::raw_sql(end).execute(&mut *conn).await?;
                installed
            })
            .await)
    }

    /// Fails, naming what is missing, unless Laravel's tables have every
    /// column gatepass reads.
    async fn check_laravel_tables(&self) -> Result<(), StoreError> {
        let checked = on_native!(self, |db| db
            .run(async |conn| {
                for columns in &self.sql.columns_used {
                    sqlx::query(columns).execute(&mut *conn).await?;
                }
                Ok(())
            })
            .await);
        checked.map_err(|error| match error {
            StoreError::Unavailable(sqlx::Error::Database(cause)) => StoreError::NotFound(format!(
                "not a Laravel Sanctum database gatepass can read (personal_access_tokens as \
                 Sanctum 3 or later creates it, {} with the guide's columns): {}",
                self.sql.services,
                cause.message()
            )),
            other => other,
        })
    }

    /// Removes exactly what [`SanctumStore::migrate`] added.
    pub async fn undo(&self) -> Result<(), StoreError> {
        let sql = &self.sql;
        let undo = sql.script(sql.dialect.undo);
        on_native!(self, |db| db
            .run(async |conn| {
                sqlx::raw_sql(sql.dialect.lock).execute(&mut *conn).await?;
                let removed = sqlx::raw_sql(&undo).execute(&mut *conn).await.map(|_| ());
                let end = match removed {
                    Ok(()) => sql.dialect.release,
                    Err(_) => sql.dialect.abandon,
                };
                sqlx::raw_sql(end).execute(&mut *conn).await?;
                removed
            })
            .await)
    }

    pub async fn ready(&self) -> Result<bool, StoreError> {
        let applied: Option<i64> = on_native!(self, |db| db
            .run(async |conn| sqlx::query_scalar(self.sql.applied).fetch_one(conn).await)
            .await)?;
        Ok(applied == Some(INSTALLED_VERSION))
    }

    pub async fn probe(&self) -> Result<(), StoreError> {
        match &self.native {
            Native::Postgres(store) => store.probe().await,
            Native::Mysql(store) => store.probe().await,
            Native::Sqlite(store) => store.probe().await,
        }
    }

    pub async fn changes(&self) -> Result<ChangeFeed, StoreError> {
        match &self.native {
            Native::Postgres(store) => ChangeFeed::postgres(store).await,
            Native::Mysql(store) => Ok(ChangeFeed::polled(store.changes().await?)),
            Native::Sqlite(store) => Ok(ChangeFeed::polled(store.changes().await?)),
        }
    }

    pub async fn find_token_by_id(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        token_row!(self.lookup(&self.sql.token_by_id, id) as rows::token_record)
    }

    pub async fn find_token_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let hex = digest.to_hex();
        token_row!(self.lookup(&self.sql.token_by_digest, &hex) as rows::token_record)
    }

    /// Updates the service's fields given, or creates it (active).
    pub async fn upsert_service(
        &self,
        change: &ServiceChange,
    ) -> Result<(Service, bool), StoreError> {
        let sql = &self.sql;
        let allowlist = change.ip_allowlist.as_ref().map(ToString::to_string);
        let name = change.name.as_str();
        on_native!(self, |db| db
            .run(async |conn| {
                use sqlx::Connection;
                let mut tx = conn.begin().await?;
                let existing = sqlx::query(&sql.service_by_name)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if existing.is_some() {
                    sqlx::query(&sql.update_service)
                        .bind(change.description.as_deref())
                        .bind(allowlist.as_deref())
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query(&sql.insert_service)
                        .bind(name)
                        .bind(change.description.as_deref().unwrap_or(""))
                        .bind(allowlist.as_deref())
                        .execute(&mut *tx)
                        .await?;
                }
                let row = sqlx::query(&sql.service_by_name)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok((rows::service(&LaravelRow(&row))?, existing.is_none()))
            })
            .await)
    }

    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        on_native!(self, |db| db
            .run(async |conn| {
                let found = sqlx::query(&self.sql.list_services).fetch_all(conn).await?;
                found
                    .iter()
                    .map(|row| rows::service(&LaravelRow(row)))
                    .collect()
            })
            .await)
    }

    pub async fn set_service_active(
        &self,
        name: &ServiceName,
        active: bool,
    ) -> Result<Service, StoreError> {
        let sql = &self.sql;
        let service = on_native!(self, |db| db
            .run(async |conn| {
                sqlx::query(&sql.set_service_active)
                    .bind(active)
                    .bind(name.as_str())
                    .execute(&mut *conn)
                    .await?;
                let row = sqlx::query(&sql.service_by_name)
                    .bind(name.as_str())
                    .fetch_optional(conn)
                    .await?;
                row.map(|row| rows::service(&LaravelRow(&row))).transpose()
            })
            .await)?;
        service.ok_or_else(|| service_not_found(name))
    }

    /// Inserts the token as `createToken` does; its id is read back by its
    /// digest, which Laravel's migration keeps unique.
    pub async fn insert_token(&self, token: &NewToken) -> Result<TokenInfo, StoreError> {
        if token.kind == TokenKind::Refresh {
            return Err(refresh_unsupported());
        }
        let sql = &self.sql;
        let abilities = rows::json_names(&token.abilities);
        let hex = token.digest.to_hex();
        let expires_at = token.expires_at.map(laravel_time);
        let id: Option<i64> = on_native!(self, |db| db
            .run(async |conn| {
                let inserted = sqlx::query(&sql.insert_token)
                    .bind(&*self.tokenable_type)
                    .bind(&token.name)
                    .bind(&hex)
                    .bind(&abilities)
                    .bind(expires_at.as_deref())
                    .bind(token.service.as_str())
                    .execute(&mut *conn)
                    .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(None);
                }
                sqlx::query_scalar(&sql.token_id_by_digest)
                    .bind(&hex)
                    .fetch_optional(conn)
                    .await
            })
            .await)?;
        match id {
            Some(id) => self.token_info(id).await,
            None => Err(service_not_found(&token.service)),
        }
    }

    pub async fn list_tokens(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = &self.sql;
        let tokens: Vec<TokenInfo> = on_native!(self, |db| db
            .run(async |conn| {
                let found = sqlx::query(&sql.list_tokens)
                    .bind(&*self.tokenable_type)
                    .bind(service.map(ServiceName::as_str))
                    .fetch_all(conn)
                    .await?;
                found
                    .iter()
                    .map(|row| rows::token_info(&LaravelRow(row)))
                    .collect::<Result<_, _>>()
            })
            .await)?;
        if let Some(name) = service
            && tokens.is_empty()
        {
            let count: i64 = on_native!(self, |db| db
                .run(async |conn| {
                    sqlx::query_scalar(&sql.service_count)
                        .bind(name.as_str())
                        .fetch_one(conn)
                        .await
                })
                .await)?;
            if count == 0 {
                return Err(service_not_found(name));
            }
        }
        Ok(tokens)
    }

    /// Revocation in Sanctum is deletion (`$token->delete()`): the row is
    /// read, then deleted; what is returned is the row as it was, revoked
    /// now.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let mut info = self.token_info(id).await?;
        on_native!(self, |db| db
            .run(async |conn| {
                sqlx::query(&self.sql.delete_token)
                    .bind(id)
                    .bind(&*self.tokenable_type)
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
            .await)?;
        info.revoked_at = Some(Utc::now());
        Ok(info)
    }

    pub async fn rotate_refresh_token(
        &self,
        _id: i64,
        _access: &Successor,
        _refresh: &Successor,
    ) -> Result<Option<Rotated>, StoreError> {
        Err(refresh_unsupported())
    }

    pub async fn revoke_family(&self, _id: i64) -> Result<u64, StoreError> {
        Err(refresh_unsupported())
    }

    /// Deletes tokens whose `expires_at` is before `before` (what
    /// `sanctum:prune-expired` deletes for them).
    pub async fn prune_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = on_native!(self, |db| db
            .run(async |conn| {
                sqlx::query(&self.sql.prune_tokens)
                    .bind(&*self.tokenable_type)
                    .bind(laravel_time(before))
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .await)?;
        Ok(done)
    }

    /// One statement per 500 tokens, in Laravel's format; a time never
    /// moves backwards.
    pub async fn record_last_used(&self, uses: &[(i64, DateTime<Utc>)]) -> Result<u64, StoreError> {
        let mut written = 0;
        for batch in uses.chunks(500) {
            let statement = self.sql.record_last_used(batch.len());
            written += on_native!(self, |db| db
                .run(async |conn| {
                    let mut update = sqlx::query(&statement);
                    for (id, at) in batch {
                        update = update.bind(*id).bind(laravel_time(*at));
                    }
                    for (id, _) in batch {
                        update = update.bind(*id);
                    }
                    for (id, at) in batch {
                        update = update.bind(*id).bind(laravel_time(*at));
                    }
                    update.execute(conn).await.map(|done| done.rows_affected())
                })
                .await)?;
        }
        Ok(written)
    }

    pub async fn token_keys_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, TokenDigest)>, StoreError> {
        let keys: Vec<(i64, String)> = on_native!(self, |db| db
            .run(async |conn| {
                sqlx::query_as(&self.sql.token_keys_after)
                    .bind(&*self.tokenable_type)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(conn)
                    .await
            })
            .await)?;
        Ok(hex_digests(keys))
    }

    pub async fn token_keys_of_service(
        &self,
        service_id: i64,
    ) -> Result<Vec<(i64, TokenDigest)>, StoreError> {
        let keys: Vec<(i64, String)> = on_native!(self, |db| db
            .run(async |conn| {
                sqlx::query_as(&self.sql.token_keys_of_service)
                    .bind(&*self.tokenable_type)
                    .bind(service_id)
                    .fetch_all(conn)
                    .await
            })
            .await)?;
        Ok(hex_digests(keys))
    }

    async fn token_info(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let info = token_row!(self.run(&self.sql.token_info_by_id, id) as rows::token_info)?;
        info.ok_or_else(|| StoreError::NotFound(format!("token {id} not found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abilities_read_as_sanctum_casts_them() {
        assert_eq!(
            laravel_abilities(r#"["orders:read","*"]"#),
            ["orders:read", "*"]
        );
        assert_eq!(laravel_abilities(r#"{"1":"a","3":"b"}"#), ["a", "b"]);
        assert_eq!(laravel_abilities(r#"["a",7,null]"#), ["a"]);
        for nothing in ["[]", "", "null", "not json", "\"*\"", "7"] {
            assert!(laravel_abilities(nothing).is_empty(), "{nothing}");
        }
        assert_eq!(laravel_abilities(r#"["orders\/read"]"#), ["orders/read"]);
    }

    #[test]
    fn allowlists_read_as_the_guide_writes_them() {
        let list = laravel_allowlist(" 10.0.0.0/8 ,192.0.2.7,, 2001:db8::/32").unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8,192.0.2.7,2001:db8::/32");
        assert!(laravel_allowlist("").unwrap().is_empty());
        assert_eq!(
            laravel_allowlist("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(laravel_allowlist("10.0.0.0/8, office").is_err());
    }

    #[test]
    fn table_names_are_identifiers() {
        assert!(SanctumOptions::new(r"App\Models\Service", "services").is_ok());
        assert!(SanctumOptions::new(r"App\Models\Service", "m2m_clients2").is_ok());
        for bad in [
            "",
            "Services",
            "1x",
            "a-b",
            "x; DROP TABLE y",
            &"x".repeat(65),
        ] {
            assert!(SanctumOptions::new("T", bad).is_err(), "{bad}");
        }
        assert!(SanctumOptions::new("", "services").is_err());
    }

    #[test]
    fn a_batch_binds_each_parameter_once_in_order() {
        let sql = Statements::new(&SQLITE, "services");
        assert_eq!(
            sql.record_last_used(2),
            "UPDATE personal_access_tokens SET last_used_at = CASE id WHEN ?1 THEN ?2 \
             WHEN ?3 THEN ?4 END WHERE id IN (?5, ?6) AND (last_used_at IS NULL OR \
             last_used_at < CASE id WHEN ?7 THEN ?8 WHEN ?9 THEN ?10 END)"
        );
    }
}
