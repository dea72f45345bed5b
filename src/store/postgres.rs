//! Postgres: the production store.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgRow, Postgres};
use sqlx::{ConnectOptions, Connection, Row};

use super::connections::Connections;
use super::rows::{self, Columns, scalar_columns, service_columns};
use super::sql::shared_statements;
use super::{
    NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor, TokenInfo,
    digests, redact_url, service_not_found,
};
use crate::model::{Ability, NetList, ServiceName, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the triggers of `0002_change_versions_and_notify.sql` notify.
const CHANGE_CHANNEL: &str = "gatepass_invalidate";

/// How this backend dials.
type DialOptions = PgConnectOptions;

use super::sql::POSTGRES as SQL;

/// Postgres columns: lists are arrays (`text[]`, `cidr[]`).
impl Columns for PgRow {
    scalar_columns!();

    fn names(&self, column: &str) -> Result<Vec<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn nets(&self, column: &str) -> Result<NetList, sqlx::Error> {
        Ok(NetList::new(self.try_get(column)?))
    }
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(super) db: Arc<Connections<Postgres>>,
    connect: Arc<PgConnectOptions>,
}

impl PostgresStore {
    shared_statements!();

    async fn inserted_id(
        insert: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
        conn: &mut sqlx::PgConnection,
    ) -> Result<Option<i64>, sqlx::Error> {
        let row = insert.fetch_optional(conn).await?;
        row.map(|row| row.try_get(0)).transpose()
    }

    /// Lists are arrays: `text[]`, `cidr[]`.
    fn names_param(names: &[Ability]) -> Vec<&str> {
        names.iter().map(Ability::as_str).collect()
    }

    fn nets_param(list: Option<&NetList>) -> Option<Vec<IpNet>> {
        list.map(|list| list.nets().to_vec())
    }

    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|_| StoreError::UnsupportedUrl(redact_url(&options.url)))?
            .application_name("gatepass")
            // Statements are logged by our own spans, never with parameters.
            .disable_statement_logging();
        Ok(Self::over(connect, options))
    }

    /// Wraps an existing pool (tests get theirs from `#[sqlx::test]`);
    /// renewing it keeps the same pool.
    pub fn from_pool(pool: PgPool) -> Self {
        let connect = pool.connect_options();
        let timeout = pool.options().get_acquire_timeout();
        Self {
            db: Arc::new(Connections::new(move || pool.clone(), timeout)),
            connect,
        }
    }

    /// One statement; `xmax = 0` tells an insert from an update.
    async fn upsert(
        conn: &mut sqlx::PgConnection,
        change: &ServiceChange,
        allowlist: Option<Vec<IpNet>>,
    ) -> Result<(PgRow, bool), sqlx::Error> {
        let sql = concat!(
            "INSERT INTO services (name, description, ip_allowlist) \
             VALUES ($1, COALESCE($2, ''), COALESCE($3::cidr[], '{}')) \
             ON CONFLICT (name) DO UPDATE SET \
                 description = COALESCE($2, services.description), \
                 ip_allowlist = COALESCE($3::cidr[], services.ip_allowlist), \
                 updated_at = now() \
             RETURNING ",
            service_columns!(),
            ", (xmax = 0) AS inserted"
        );
        let row = sqlx::query(sql)
            .bind(change.name.as_str())
            .bind(change.description.as_deref())
            .bind(allowlist)
            .fetch_one(conn)
            .await?;
        let inserted = row.try_get("inserted")?;
        Ok((row, inserted))
    }

    /// Writes a batch of last-used times in one statement; never moves a
    /// time backwards.
    pub async fn record_last_used(&self, uses: &[(i64, DateTime<Utc>)]) -> Result<u64, StoreError> {
        let (ids, times): (Vec<i64>, Vec<DateTime<Utc>>) = uses.iter().copied().unzip();
        let result = self
            .db
            .run(async |conn| {
                sqlx::query(
                    "UPDATE tokens SET last_used_at = u.used_at \
             FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, used_at) \
             WHERE tokens.id = u.id \
               AND (tokens.last_used_at IS NULL OR tokens.last_used_at < u.used_at)",
                )
                .bind(ids)
                .bind(times)
                .execute(conn)
                .await
            })
            .await?;
        Ok(result.rows_affected())
    }

    /// Subscribes to the change notifications the triggers send, and to
    /// `heartbeat`, a channel of this instance's own.
    pub async fn listen(&self, heartbeat: &str) -> Result<PgListener, StoreError> {
        let pool = self.db.pool();
        let subscribe = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all([CHANGE_CHANNEL, heartbeat]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let timeout = self.db.timeout();
        tokio::time::timeout(timeout, subscribe)
            .await
            .map_err(|_| StoreError::TimedOut(timeout))?
            .map_err(StoreError::from)
    }

    /// Sends `payload` on `channel`, to prove the feed still delivers.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        self.db
            .lookup(async |conn| {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(conn)
                    .await
            })
            .await
            .map(|_| ())
    }
}
