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
use super::rows::{
    self, Columns, decode_error, service_columns, token_info_select, token_record_select,
};
use super::sql::{Statements, shared_statements};
use super::{
    Change, NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor,
    TokenInfo, digests, redact_url, rotated, service_not_found,
};
use crate::model::{NetList, ServiceName, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How often the change log is read: well inside the one-second bound.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Change-log rows older than this are deleted now and then.
const KEEP_CHANGES: &str = "-1 day";

/// The time now, written as every timestamp column is: RFC 3339, UTC.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

const SQL: Statements = Statements {
    applied_migration: "SELECT max(version) FROM _sqlx_migrations WHERE success",
    token_by_id: concat!(token_record_select!(), " WHERE t.id = ?1"),
    token_by_digest: concat!(token_record_select!(), " WHERE t.token_hash = ?1"),
    token_info_by_id: concat!(token_info_select!(), " WHERE t.id = ?1"),
    list_tokens: concat!(
        token_info_select!(),
        " WHERE ?1 IS NULL OR s.name = ?1 ORDER BY t.id"
    ),
    list_services: concat!(
        "SELECT ",
        service_columns!(),
        " FROM services ORDER BY name"
    ),
    set_service_active: concat!(
        "UPDATE services SET is_active = ?2, updated_at = ",
        now!(),
        " WHERE name = ?1 RETURNING ",
        service_columns!()
    ),
    service_exists: "SELECT EXISTS (SELECT 1 FROM services WHERE name = ?1)",
    revoke_token: concat!(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ",
        now!(),
        ") WHERE id = ?1"
    ),
    revoke_family: concat!(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ",
        now!(),
        ") WHERE family_id = (SELECT family_id FROM tokens WHERE id = ?1)"
    ),
    prune_tokens: "DELETE FROM tokens WHERE julianday(expires_at) < julianday(?1) \
                   OR julianday(revoked_at) < julianday(?1)",
    token_keys_after: "SELECT id, token_hash FROM tokens WHERE id > ?1 ORDER BY id LIMIT ?2",
    token_keys_of_service: "SELECT id, token_hash FROM tokens WHERE service_id = ?1",
};

/// SQLite columns: timestamps are RFC 3339 text, lists are JSON arrays of
/// strings.
impl Columns for SqliteRow {
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
        let text: &str = self.try_get(column)?;
        serde_json::from_str(text).map_err(|e| decode_error(format!("{column}: {e}")))
    }

    fn nets(&self, column: &str) -> Result<NetList, sqlx::Error> {
        let entries = self.names(column)?;
        NetList::parse(&entries.join(",")).map_err(|e| decode_error(format!("{column}: {e}")))
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Connections<Sqlite>>,
}

impl SqliteStore {
    shared_statements!();

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
                        let sql = concat!(
                            "UPDATE services SET description = COALESCE(?2, description), \
                             ip_allowlist = COALESCE(?3, ip_allowlist), updated_at = ",
                            now!(),
                            " WHERE name = ?1 RETURNING ",
                            service_columns!()
                        );
                        let row = sqlx::query(sql)
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
        Ok((rows::service(&row)?, created))
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

    pub async fn rotate_refresh_token(
        &self,
        id: i64,
        access: &Successor,
        refresh: &Successor,
    ) -> Result<Option<Rotated>, StoreError> {
        // The spend takes the write lock first, so a concurrent spend of the
        // same token waits, then finds it revoked.
        let sql = concat!(
            "UPDATE tokens SET revoked_at = ",
            now!(),
            " WHERE id = ?1 AND kind = 'refresh' AND revoked_at IS NULL \
             RETURNING service_id, name, abilities, family_id"
        );
        self.db.run(async |conn| {
        let mut tx = conn.begin().await?;
        let spent: Option<(i64, String, String, Option<String>)> = sqlx::query_as(sql)
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
