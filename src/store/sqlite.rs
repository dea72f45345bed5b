//! SQLite: the embedded default. One file, WAL mode and a busy timeout so
//! `serve` and the CLI share it safely. Changes are read from the
//! `gatepass_changes` log that triggers append to (SQLite has no
//! LISTEN/NOTIFY).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, Sqlite};

use super::connections::Connections;
use super::{
    Change, NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor,
    TokenInfo, digests, redact_url, rotated, service_not_found,
};
use crate::model::{Abilities, NetList, ServiceName, ServiceRecord, TokenKind, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How often the change log is read: well inside the one-second bound.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Change-log rows older than this are deleted now and then.
const KEEP_CHANGES: &str = "-1 day";

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

macro_rules! token_record_select {
    () => {
        "SELECT t.id, t.version, t.token_hash, t.kind, t.abilities, t.expires_at, \
         t.revoked_at, t.created_at, s.id AS service_id, s.version AS service_version, \
         s.name AS service_name, s.is_active, s.ip_allowlist \
         FROM tokens t JOIN services s ON s.id = t.service_id"
    };
}

macro_rules! token_info_select {
    () => {
        "SELECT t.id, s.name AS service_name, t.name, t.kind, t.abilities, t.expires_at, \
         t.last_used_at, t.revoked_at, t.created_at \
         FROM tokens t JOIN services s ON s.id = t.service_id"
    };
}

macro_rules! service_columns {
    () => {
        "id, name, description, is_active, ip_allowlist, created_at, updated_at"
    };
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Connections<Sqlite>>,
}

impl SqliteStore {
    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(&options.url)
            .map_err(|_| StoreError::UnsupportedUrl(redact_url(&options.url)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Writers from other processes (the CLI) hold the lock briefly.
            .busy_timeout(Duration::from_secs(5))
            .disable_statement_logging();
        let (max_connections, timeout) = (options.max_connections, options.timeout);
        let db = Connections::new(
            move || {
                SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .test_before_acquire(false)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(connect.clone())
            },
            timeout,
        );
        Ok(Self { db: Arc::new(db) })
    }

    /// Whether the file answers now; a local file has no idle connections
    /// to distrust, so the pool is kept.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.db
            .lookup(async |conn| sqlx::query("SELECT 1").execute(conn).await)
            .await
            .map(|_| ())
    }

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
        let row = self
            .db
            .lookup(async |conn| {
                sqlx::query(concat!(token_record_select!(), " WHERE t.id = ?1"))
                    .bind(id)
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        Ok(row.map(|row| token_record(&row)).transpose()?)
    }

    pub async fn find_token_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = self
            .db
            .lookup(async |conn| {
                sqlx::query(concat!(token_record_select!(), " WHERE t.token_hash = ?1"))
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
        let allowlist = change.ip_allowlist.as_ref().map(nets_json);
        let (row, created) = self
            .db
            .run(async |conn| {
                let mut tx = conn.begin().await?;
                let inserted = sqlx::query(concat!(
                    "INSERT INTO services (name, description, ip_allowlist) \
             VALUES (?1, COALESCE(?2, ''), COALESCE(?3, '[]')) \
             ON CONFLICT (name) DO NOTHING RETURNING ",
                    service_columns!()
                ))
                .bind(change.name.as_str())
                .bind(change.description.as_deref())
                .bind(allowlist.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
                let (row, created) = match inserted {
                    Some(row) => (row, true),
                    None => {
                        let sql = format!(
                            "UPDATE services SET description = COALESCE(?2, description), \
                     ip_allowlist = COALESCE(?3, ip_allowlist), updated_at = {NOW} \
                     WHERE name = ?1 RETURNING {}",
                            service_columns!()
                        );
                        let row = sqlx::query(&sql)
                            .bind(change.name.as_str())
                            .bind(change.description.as_deref())
                            .bind(allowlist.as_deref())
                            .fetch_one(&mut *tx)
                            .await?;
                        (row, false)
                    }
                };
                tx.commit().await?;
                Ok((row, created))
            })
            .await?;
        Ok((service(&row)?, created))
    }

    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let rows = self
            .db
            .run(async |conn| {
                sqlx::query(concat!(
                    "SELECT ",
                    service_columns!(),
                    " FROM services ORDER BY name"
                ))
                .fetch_all(conn)
                .await
            })
            .await?;
        Ok(rows.iter().map(service).collect::<Result<_, _>>()?)
    }

    pub async fn set_service_active(
        &self,
        name: &ServiceName,
        active: bool,
    ) -> Result<Service, StoreError> {
        let sql = format!(
            "UPDATE services SET is_active = ?2, updated_at = {NOW} WHERE name = ?1 RETURNING {}",
            service_columns!()
        );
        let row = self
            .db
            .run(async |conn| {
                sqlx::query(&sql)
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
        let abilities = serde_json::to_string(&abilities).unwrap_or_else(|_| "[]".into());
        // A refresh token starts a new rotation family.
        let id: Option<i64> = self.db.run(async |conn| sqlx::query_scalar(
            "INSERT INTO tokens (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
             SELECT id, ?2, ?3, ?4, ?5, \
                    CASE WHEN ?5 = 'refresh' THEN lower(hex(randomblob(16))) END, ?6 \
             FROM services WHERE name = ?1 RETURNING id",
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

    pub async fn list_tokens(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self
            .db
            .run(async |conn| {
                sqlx::query(concat!(
                    token_info_select!(),
                    " WHERE ?1 IS NULL OR s.name = ?1 ORDER BY t.id"
                ))
                .bind(service.map(ServiceName::as_str))
                .fetch_all(conn)
                .await
            })
            .await?;
        if let Some(name) = service
            && rows.is_empty()
        {
            let exists: bool = self
                .db
                .run(async |conn| {
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM services WHERE name = ?1)")
                        .bind(name.as_str())
                        .fetch_one(conn)
                        .await
                })
                .await?;
            if !exists {
                return Err(service_not_found(name));
            }
        }
        Ok(rows.iter().map(token_info).collect::<Result<_, _>>()?)
    }

    pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let sql =
            format!("UPDATE tokens SET revoked_at = COALESCE(revoked_at, {NOW}) WHERE id = ?1");
        let result = self
            .db
            .run(async |conn| sqlx::query(&sql).bind(id).execute(conn).await)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id} not found")));
        }
        self.token_info(id).await
    }

    pub async fn rotate_refresh_token(
        &self,
        id: i64,
        access: &Successor,
        refresh: &Successor,
    ) -> Result<Option<Rotated>, StoreError> {
        // The spend takes the write lock first, so a concurrent spend of the
        // same token waits, then finds it revoked.
        let sql = format!(
            "UPDATE tokens SET revoked_at = {NOW} \
             WHERE id = ?1 AND kind = 'refresh' AND revoked_at IS NULL \
             RETURNING service_id, name, abilities, family_id"
        );
        self.db.run(async |conn| {
        let mut tx = conn.begin().await?;
        let spent: Option<(i64, String, String, Option<String>)> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((service_id, name, abilities, family)) = spent else {
            return Ok(None);
        };
        let mut rows = Vec::with_capacity(2);
        for (kind, successor, family) in [
            ("access", access, None),
            ("refresh", refresh, family.as_deref()),
        ] {
            let row: (i64, String) = sqlx::query_as(
                "INSERT INTO tokens (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id, kind",
            )
            .bind(service_id)
            .bind(&name)
            .bind(successor.digest.as_bytes().as_slice())
            .bind(&abilities)
            .bind(kind)
            .bind(family)
            .bind(successor.expires_at)
            .fetch_one(&mut *tx)
            .await?;
            rows.push(row);
        }
        tx.commit().await?;
        Ok(rotated(&rows))
        }).await
    }

    pub async fn revoke_family(&self, id: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, {NOW}) \
             WHERE family_id = (SELECT family_id FROM tokens WHERE id = ?1)"
        );
        let result = self
            .db
            .run(async |conn| sqlx::query(&sql).bind(id).execute(conn).await)
            .await?;
        Ok(result.rows_affected())
    }

    pub async fn prune_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = self
            .db
            .run(async |conn| {
                sqlx::query(
                    "DELETE FROM tokens WHERE julianday(expires_at) < julianday(?1) \
             OR julianday(revoked_at) < julianday(?1)",
                )
                .bind(before)
                .execute(conn)
                .await
            })
            .await?;
        Ok(result.rows_affected())
    }

    /// One statement for the whole batch, as a JSON array of pairs.
    pub async fn record_last_used(&self, uses: &[(i64, DateTime<Utc>)]) -> Result<u64, StoreError> {
        let batch: Vec<(i64, String)> = uses
            .iter()
            .map(|(id, at)| (*id, at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
            .collect();
        let batch = serde_json::to_string(&batch).unwrap_or_else(|_| "[]".into());
        let result = self.db.run(async |conn| sqlx::query(
            "UPDATE tokens SET last_used_at = u.used_at \
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS used_at \
                   FROM json_each(?1)) AS u \
             WHERE tokens.id = u.id \
               AND (tokens.last_used_at IS NULL \
                    OR julianday(tokens.last_used_at) < julianday(u.used_at))",
        )
        .bind(batch)
        .execute(conn)
        .await)
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
                    "SELECT id, token_hash FROM tokens WHERE id > ?1 ORDER BY id LIMIT ?2",
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
                sqlx::query_as("SELECT id, token_hash FROM tokens WHERE service_id = ?1")
                    .bind(service_id)
                    .fetch_all(conn)
                    .await
            })
            .await?;
        Ok(digests(rows))
    }

    /// Starts reading the change log after its current end.
    pub async fn changes(&self) -> Result<SqliteChanges, StoreError> {
        let last: Option<i64> = self
            .db
            .run(async |conn| {
                sqlx::query_scalar("SELECT max(id) FROM gatepass_changes")
                    .fetch_one(conn)
                    .await
            })
            .await?;
        Ok(SqliteChanges {
            db: self.db.clone(),
            last_seen: last.unwrap_or(0),
            pending: VecDeque::new(),
            polls: 0,
        })
    }

    async fn token_info(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let row = self
            .db
            .run(async |conn| {
                sqlx::query(concat!(token_info_select!(), " WHERE t.id = ?1"))
                    .bind(id)
                    .fetch_one(conn)
                    .await
            })
            .await?;
        Ok(token_info(&row)?)
    }
}

/// A cursor over the change log.
#[derive(Debug)]
pub struct SqliteChanges {
    db: Arc<Connections<Sqlite>>,
    last_seen: i64,
    pending: VecDeque<Change>,
    polls: u64,
}

impl SqliteChanges {
    /// The next change, polling the log until there is one.
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(change);
            }
            let rows: Vec<(i64, String, i64, Option<Vec<u8>>)> = self
                .db
                .lookup(async |conn| {
                    sqlx::query_as(
                        "SELECT id, subject, row_id, token_hash FROM gatepass_changes \
                 WHERE id > ?1 ORDER BY id LIMIT 1000",
                    )
                    .bind(self.last_seen)
                    .fetch_all(conn)
                    .await
                })
                .await?;
            for (version, subject, row_id, hash) in rows {
                self.last_seen = version;
                let digest = hash.as_deref().and_then(TokenDigest::from_bytes);
                self.pending.push_back(match (subject.as_str(), digest) {
                    ("t", Some(digest)) => Change::Token {
                        id: row_id,
                        version,
                        digest,
                    },
                    ("s", _) => Change::Service {
                        id: row_id,
                        version,
                    },
                    _ => Change::Everything { version },
                });
            }
            if self.pending.is_empty() {
                self.polls += 1;
                if self.polls.is_multiple_of(10_000) {
                    let sql = format!(
                        "DELETE FROM gatepass_changes WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '{KEEP_CHANGES}')"
                    );
                    self.db
                        .run(async |conn| sqlx::query(&sql).execute(conn).await)
                        .await?;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }
}

fn nets_json(list: &NetList) -> String {
    let nets: Vec<String> = list.nets().iter().map(IpNet::to_string).collect();
    serde_json::to_string(&nets).unwrap_or_else(|_| "[]".into())
}

fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

fn json_strings(row: &SqliteRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: &str = row.try_get(column)?;
    serde_json::from_str(text).map_err(|e| decode_error(format!("{column}: {e}")))
}

fn allowlist(row: &SqliteRow) -> Result<NetList, sqlx::Error> {
    let entries = json_strings(row, "ip_allowlist")?;
    NetList::parse(&entries.join(",")).map_err(|e| decode_error(format!("ip_allowlist: {e}")))
}

fn token_kind(row: &SqliteRow) -> Result<TokenKind, sqlx::Error> {
    let kind: &str = row.try_get("kind")?;
    TokenKind::parse(kind).ok_or_else(|| decode_error("unknown token kind".into()))
}

fn token_record(row: &SqliteRow) -> Result<TokenRecord, sqlx::Error> {
    let hash: &[u8] = row.try_get("token_hash")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        digest: TokenDigest::from_bytes(hash)
            .ok_or_else(|| decode_error("token_hash is not 32 bytes".into()))?,
        kind: token_kind(row)?,
        abilities: std::sync::Arc::new(Abilities::from_stored(json_strings(row, "abilities")?)),
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
        service: std::sync::Arc::new(ServiceRecord {
            id: row.try_get("service_id")?,
            version: row.try_get("service_version")?,
            name: row.try_get("service_name")?,
            is_active: row.try_get("is_active")?,
            ip_allowlist: allowlist(row)?,
        }),
    })
}

fn token_info(row: &SqliteRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        service: row.try_get("service_name")?,
        name: row.try_get("name")?,
        kind: token_kind(row)?.as_str(),
        abilities: json_strings(row, "abilities")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn service(row: &SqliteRow) -> Result<Service, sqlx::Error> {
    Ok(Service {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        is_active: row.try_get("is_active")?,
        ip_allowlist: allowlist(row)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
