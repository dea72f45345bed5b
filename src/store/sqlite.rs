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
    self, Columns, decode_error, scalar_columns, service_columns, token_info_select,
    token_record_select,
};
use super::sql::{Statements, shared_statements, statements};
use super::{
    Change, NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor,
    TokenInfo, digests, redact_url, service_not_found,
};
use crate::model::{Ability, NetList, ServiceName, TokenRecord};
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

const SQL: Statements = statements! {
    parameters: ["?1", "?2", "?3", "?4", "?5", "?6", "?7"],
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    new_family: "lower(hex(randomblob(16)))",
    prune: "julianday(expires_at) < julianday(?1) OR julianday(revoked_at) < julianday(?1)",
    returning_id: " RETURNING id",
};

/// SQLite columns: timestamps are RFC 3339 text, lists are JSON arrays of
/// strings.
impl Columns for SqliteRow {
    scalar_columns!();

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

    async fn inserted_id<'q>(
        insert: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
        conn: &mut sqlx::SqliteConnection,
    ) -> Result<Option<i64>, sqlx::Error> {
        let row = insert.fetch_optional(conn).await?;
        row.map(|row| row.try_get(0)).transpose()
    }

    /// Lists of names are JSON arrays.
    fn names_param(names: &[Ability]) -> String {
        let names: Vec<&str> = names.iter().map(Ability::as_str).collect();
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
    }

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
