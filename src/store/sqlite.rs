//! SQLite: the embedded default. One file, WAL mode and a busy timeout so
//! `serve` and the CLI share it safely. Changes are read from the
//! `gatepass_changes` log that triggers append to (SQLite has no
//! LISTEN/NOTIFY).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, Sqlite};

use super::changelog::{PolledChanges, Prune, ReadAfter, changes_from_log};
use super::connections::Connections;
use super::rows::{
    self, Columns, json_list_columns, json_list_params, scalar_columns, service_columns,
};
use super::sql::shared_statements;
use super::{
    NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor, TokenInfo,
    digests, redact_url, service_not_found,
};
use crate::model::{Ability, NetList, ServiceName, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// The time now, written as every timestamp column is: RFC 3339, UTC.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// How this backend dials.
type DialOptions = SqliteConnectOptions;

use super::sql::SQLITE as SQL;

/// SQLite columns: timestamps are RFC 3339 text, lists are JSON arrays of
/// strings.
impl Columns for SqliteRow {
    scalar_columns!();

    json_list_columns!();
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) db: Arc<Connections<Sqlite>>,
    connect: Arc<SqliteConnectOptions>,
}

impl SqliteStore {
    shared_statements!();
    json_list_params!();

    async fn inserted_id<'q>(
        insert: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
        conn: &mut sqlx::SqliteConnection,
    ) -> Result<Option<i64>, sqlx::Error> {
        let row = insert.fetch_optional(conn).await?;
        row.map(|row| row.try_get(0)).transpose()
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
        Ok(Self::over(connect, options))
    }

    /// Insert or update in one transaction, telling which it was.
    async fn upsert(
        conn: &mut sqlx::SqliteConnection,
        change: &ServiceChange,
        allowlist: Option<String>,
    ) -> Result<(SqliteRow, bool), sqlx::Error> {
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
        let upserted = match inserted {
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
        Ok(upserted)
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

    changes_from_log! {
        // A change's id is its version (the triggers set one from the other).
        read: "SELECT id, subject, row_id, id, token_hash FROM gatepass_changes \
               WHERE id > ?1 ORDER BY id LIMIT ?2",
        prune: ["DELETE FROM gatepass_changes \
                 WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')"],
    }
}
