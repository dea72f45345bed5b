//! Postgres: the production store.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{ConnectOptions, Connection, Row};

use super::connections::Connections;
use super::rows::{self, Columns, service_columns, token_info_select, token_record_select};
use super::sql::{Statements, shared_statements};
use super::{
    NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor, TokenInfo,
    digests, redact_url, rotated, service_not_found,
};
use crate::model::{NetList, ServiceName, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the triggers of `0002_change_versions_and_notify.sql` notify.
const CHANGE_CHANNEL: &str = "gatepass_invalidate";

const SQL: Statements = Statements {
    applied_migration: "SELECT max(version) FROM _sqlx_migrations WHERE success",
    token_by_id: concat!(token_record_select!(), " WHERE t.id = $1"),
    token_by_digest: concat!(token_record_select!(), " WHERE t.token_hash = $1"),
    token_info_by_id: concat!(token_info_select!(), " WHERE t.id = $1"),
    list_tokens: concat!(
        token_info_select!(),
        " WHERE $1::text IS NULL OR s.name = $1 ORDER BY t.id"
    ),
    list_services: concat!(
        "SELECT ",
        service_columns!(),
        " FROM services ORDER BY name"
    ),
    set_service_active: concat!(
        "UPDATE services SET is_active = $2, updated_at = now() WHERE name = $1 RETURNING ",
        service_columns!()
    ),
    service_exists: "SELECT EXISTS (SELECT 1 FROM services WHERE name = $1)",
    revoke_token: "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1",
    revoke_family: "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now()) \
                    WHERE family_id = (SELECT family_id FROM tokens WHERE id = $1)",
    prune_tokens: "DELETE FROM tokens WHERE expires_at < $1 OR revoked_at < $1",
    token_keys_after: "SELECT id, token_hash FROM tokens WHERE id > $1 ORDER BY id LIMIT $2",
    token_keys_of_service: "SELECT id, token_hash FROM tokens WHERE service_id = $1",
};

/// Postgres columns: lists are arrays (`text[]`, `cidr[]`).
impl Columns for PgRow {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.try_get(column)
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(column)
    }

    fn names(&self, column: &str) -> Result<Vec<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn nets(&self, column: &str) -> Result<NetList, sqlx::Error> {
        Ok(NetList::new(self.try_get(column)?))
    }
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: Arc<Connections<Postgres>>,
    connect: Arc<PgConnectOptions>,
}

impl PostgresStore {
    shared_statements!();

    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|_| StoreError::UnsupportedUrl(redact_url(&options.url)))?
            .application_name("gatepass")
            // Statements are logged by our own spans, never with parameters.
            .disable_statement_logging();
        let (max_connections, timeout) = (options.max_connections, options.timeout);
        let dial = connect.clone();
        let db = Connections::new(
            move || {
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    // No round trip before each query: a dead connection
                    // fails the query, and the check answers UNAVAILABLE,
                    // as for any outage.
                    .test_before_acquire(false)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(dial.clone())
            },
            timeout,
        );
        Ok(Self {
            db: Arc::new(db),
            connect: Arc::new(connect),
        })
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

    /// Whether a new connection reaches the database now, bypassing the
    /// pool (whose idle connections may be the ones that stopped
    /// answering). On success the pool is renewed.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + self.db.timeout();
        let probe = async {
            let mut connection = self.connect.connect().await?;
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            let _ = connection.close().await;
            Ok::<_, sqlx::Error>(())
        };
        tokio::time::timeout_at(deadline, probe)
            .await
            .map_err(|_| StoreError::TimedOut(self.db.timeout()))??;
        self.db.renew();
        Ok(())
    }

    pub async fn upsert_service(
        &self,
        change: &ServiceChange,
    ) -> Result<(Service, bool), StoreError> {
        let allowlist: Option<Vec<IpNet>> = change
            .ip_allowlist
            .as_ref()
            .map(|list| list.nets().to_vec());
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
        let row = self
            .db
            .run(async |conn| {
                sqlx::query(sql)
                    .bind(change.name.as_str())
                    .bind(change.description.as_deref())
                    .bind(allowlist)
                    .fetch_one(conn)
                    .await
            })
            .await?;
        Ok((rows::service(&row)?, row.try_get("inserted")?))
    }

    pub async fn insert_token(&self, token: &NewToken) -> Result<TokenInfo, StoreError> {
        let abilities: Vec<&str> = token.abilities.iter().map(|a| a.as_str()).collect();
        // A refresh token starts a new rotation family.
        let id: Option<i64> = self.db.run(async |conn| sqlx::query_scalar(
            "INSERT INTO tokens (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
             SELECT id, $2, $3, $4, $5, CASE WHEN $5 = 'refresh' THEN gen_random_uuid() END, $6 \
             FROM services WHERE name = $1 RETURNING id",
        )
        .bind(token.service.as_str())
        .bind(&token.name)
        .bind(token.digest.as_bytes().as_slice())
        .bind(abilities)
        .bind(token.kind.as_str())
        .bind(token.expires_at)
        .fetch_optional(conn)
        .await)
        .await?;
        match id {
            Some(id) => self.token_info(id).await,
            None => Err(service_not_found(&token.service)),
        }
    }

    pub async fn rotate_refresh_token(
        &self,
        id: i64,
        access: &Successor,
        refresh: &Successor,
    ) -> Result<Option<Rotated>, StoreError> {
        // One statement: the spend and both inserts commit together, and a
        // concurrent spend of the same token finds it revoked.
        let rows: Vec<(i64, String)> = self.db.run(async |conn| sqlx::query_as(
            "WITH spent AS ( \
                 UPDATE tokens SET revoked_at = now() \
                 WHERE id = $1 AND kind = 'refresh' AND revoked_at IS NULL \
                 RETURNING service_id, name, abilities, family_id \
             ) \
             INSERT INTO tokens (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
             SELECT service_id, name, $2, abilities, 'access', NULL, $3 FROM spent \
             UNION ALL \
             SELECT service_id, name, $4, abilities, 'refresh', family_id, $5 FROM spent \
             RETURNING id, kind",
        )
        .bind(id)
        .bind(access.digest.as_bytes().as_slice())
        .bind(access.expires_at)
        .bind(refresh.digest.as_bytes().as_slice())
        .bind(refresh.expires_at)
        .fetch_all(conn)
        .await)
        .await?;
        Ok(rotated(&rows))
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
