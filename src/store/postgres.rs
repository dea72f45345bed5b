//! Postgres: the production store.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::migrate::Migrator;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{ConnectOptions, Connection, Row};

use super::connections::Connections;
use super::{
    NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor, TokenInfo,
    digests, redact_url, rotated, service_not_found,
};
use crate::model::{Abilities, NetList, ServiceName, ServiceRecord, TokenKind, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the triggers of `0002_change_versions_and_notify.sql` notify.
const CHANGE_CHANNEL: &str = "gatepass_invalidate";

// Column lists as macros so every statement is one `&'static str`, built
// at compile time rather than per query.
macro_rules! token_record_select {
    () => {
        "SELECT t.id, t.version, t.token_hash, t.kind, t.abilities, t.expires_at, \
         t.revoked_at, t.created_at, s.id AS service_id, s.version AS service_version, \
         s.name AS service_name, s.is_active, s.ip_allowlist \
         FROM tokens t JOIN services s ON s.id = t.service_id"
    };
}

macro_rules! token_info_columns {
    () => {
        "t.id, s.name AS service_name, t.name, t.kind, t.abilities, t.expires_at, \
         t.last_used_at, t.revoked_at, t.created_at"
    };
}

macro_rules! service_columns {
    () => {
        "id, name, description, is_active, ip_allowlist, created_at, updated_at"
    };
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: Arc<Connections<Postgres>>,
    connect: Arc<PgConnectOptions>,
}

impl PostgresStore {
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

    /// Applies migrations. sqlx holds a Postgres advisory lock while it
    /// migrates, so instances starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.db.pool())
            .await
            .map_err(StoreError::from_migration)
    }

    pub async fn ready(&self) -> Result<bool, StoreError> {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = self
            .db
            .run(async |conn| {
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(conn)
                    .await
            })
            .await?;
        Ok(applied == Some(latest))
    }

    pub async fn find_token_by_id(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        let sql = concat!(token_record_select!(), " WHERE t.id = $1");
        let row = self
            .db
            .lookup(async |conn| sqlx::query(sql).bind(id).fetch_optional(conn).await)
            .await?;
        Ok(row.map(|row| token_record(&row)).transpose()?)
    }

    pub async fn find_token_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let sql = concat!(token_record_select!(), " WHERE t.token_hash = $1");
        let row = self
            .db
            .lookup(async |conn| {
                sqlx::query(sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        Ok(row.map(|row| token_record(&row)).transpose()?)
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
        Ok((service(&row)?, row.try_get("inserted")?))
    }

    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let sql = concat!(
            "SELECT ",
            service_columns!(),
            " FROM services ORDER BY name"
        );
        let rows = self
            .db
            .run(async |conn| sqlx::query(sql).fetch_all(conn).await)
            .await?;
        Ok(rows.iter().map(service).collect::<Result<_, _>>()?)
    }

    pub async fn set_service_active(
        &self,
        name: &ServiceName,
        active: bool,
    ) -> Result<Service, StoreError> {
        let sql = concat!(
            "UPDATE services SET is_active = $2, updated_at = now() WHERE name = $1 RETURNING ",
            service_columns!()
        );
        let row = self
            .db
            .run(async |conn| {
                sqlx::query(sql)
                    .bind(name.as_str())
                    .bind(active)
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        match row {
            Some(row) => Ok(service(&row)?),
            None => Err(service_not_found(name)),
        }
    }

    pub async fn insert_token(&self, token: &NewToken) -> Result<TokenInfo, StoreError> {
        let abilities: Vec<&str> = token.abilities.iter().map(|a| a.as_str()).collect();
        // A refresh token starts a new rotation family.
        let sql = concat!(
            "WITH t AS ( \
                 INSERT INTO tokens (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
                 SELECT id, $2, $3, $4, $5, \
                        CASE WHEN $5 = 'refresh' THEN gen_random_uuid() END, $6 \
                 FROM services WHERE name = $1 \
                 RETURNING * \
             ) SELECT ",
            token_info_columns!(),
            " FROM t JOIN services s ON s.id = t.service_id"
        );
        let row = self
            .db
            .run(async |conn| {
                sqlx::query(sql)
                    .bind(token.service.as_str())
                    .bind(&token.name)
                    .bind(token.digest.as_bytes().as_slice())
                    .bind(abilities)
                    .bind(token.kind.as_str())
                    .bind(token.expires_at)
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        match row {
            Some(row) => Ok(token_info(&row)?),
            None => Err(service_not_found(&token.service)),
        }
    }

    pub async fn list_tokens(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = concat!(
            "SELECT ",
            token_info_columns!(),
            " FROM tokens t JOIN services s ON s.id = t.service_id \
             WHERE $1::text IS NULL OR s.name = $1 ORDER BY t.id"
        );
        let rows = self
            .db
            .run(async |conn| {
                sqlx::query(sql)
                    .bind(service.map(ServiceName::as_str))
                    .fetch_all(conn)
                    .await
            })
            .await?;
        if let Some(name) = service
            && rows.is_empty()
        {
            self.require_service(name).await?;
        }
        Ok(rows.iter().map(token_info).collect::<Result<_, _>>()?)
    }

    pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let sql = concat!(
            "WITH t AS ( \
                 UPDATE tokens SET revoked_at = COALESCE(revoked_at, now()) \
                 WHERE id = $1 RETURNING * \
             ) SELECT ",
            token_info_columns!(),
            " FROM t JOIN services s ON s.id = t.service_id"
        );
        let row = self
            .db
            .run(async |conn| sqlx::query(sql).bind(id).fetch_optional(conn).await)
            .await?;
        match row {
            Some(row) => Ok(token_info(&row)?),
            None => Err(StoreError::NotFound(format!("token {id} not found"))),
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

    pub async fn revoke_family(&self, id: i64) -> Result<u64, StoreError> {
        let result = self
            .db
            .run(async |conn| {
                sqlx::query(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE family_id = (SELECT family_id FROM tokens WHERE id = $1)",
                )
                .bind(id)
                .execute(conn)
                .await
            })
            .await?;
        Ok(result.rows_affected())
    }

    pub async fn prune_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = self
            .db
            .run(async |conn| {
                sqlx::query("DELETE FROM tokens WHERE expires_at < $1 OR revoked_at < $1")
                    .bind(before)
                    .execute(conn)
                    .await
            })
            .await?;
        Ok(result.rows_affected())
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

    pub async fn token_keys_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, TokenDigest)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .db
            .run(async |conn| {
                sqlx::query_as(
                    "SELECT id, token_hash FROM tokens WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await
            })
            .await?;
        Ok(digests(rows))
    }

    pub async fn token_keys_of_service(
        &self,
        service_id: i64,
    ) -> Result<Vec<(i64, TokenDigest)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .db
            .run(async |conn| {
                sqlx::query_as("SELECT id, token_hash FROM tokens WHERE service_id = $1")
                    .bind(service_id)
                    .fetch_all(conn)
                    .await
            })
            .await?;
        Ok(digests(rows))
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

    async fn require_service(&self, name: &ServiceName) -> Result<(), StoreError> {
        let exists: bool = self
            .db
            .run(async |conn| {
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM services WHERE name = $1)")
                    .bind(name.as_str())
                    .fetch_one(conn)
                    .await
            })
            .await?;
        if exists {
            Ok(())
        } else {
            Err(service_not_found(name))
        }
    }
}

fn decode_error(message: &str) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

fn token_kind(row: &PgRow) -> Result<TokenKind, sqlx::Error> {
    let kind: &str = row.try_get("kind")?;
    TokenKind::parse(kind).ok_or_else(|| decode_error("unknown token kind"))
}

fn token_record(row: &PgRow) -> Result<TokenRecord, sqlx::Error> {
    let hash: &[u8] = row.try_get("token_hash")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        digest: TokenDigest::from_bytes(hash)
            .ok_or_else(|| decode_error("token_hash is not 32 bytes"))?,
        kind: token_kind(row)?,
        abilities: std::sync::Arc::new(Abilities::from_stored(row.try_get("abilities")?)),
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
        service: std::sync::Arc::new(ServiceRecord {
            id: row.try_get("service_id")?,
            version: row.try_get("service_version")?,
            name: row.try_get("service_name")?,
            is_active: row.try_get("is_active")?,
            ip_allowlist: NetList::new(row.try_get("ip_allowlist")?),
        }),
    })
}

fn token_info(row: &PgRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        service: row.try_get("service_name")?,
        name: row.try_get("name")?,
        kind: token_kind(row)?.as_str(),
        abilities: row.try_get("abilities")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn service(row: &PgRow) -> Result<Service, sqlx::Error> {
    Ok(Service {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        is_active: row.try_get("is_active")?,
        ip_allowlist: NetList::new(row.try_get("ip_allowlist")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
