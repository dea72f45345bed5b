//! MySQL and MariaDB. Sessions run in UTC; lists are JSON text; changes
//! are read from the `gatepass_changes` log the triggers append to (no
//! LISTEN/NOTIFY), waiting for ids that commit late.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::changelog::{PolledChanges, Prune, ReadAfter, changes_from_log};
use super::connections::Connections;
use super::rows::{self, Columns, json_list_columns, json_list_params, scalar_columns};
use super::sql::shared_statements;
use super::{
    NewToken, Rotated, Service, ServiceChange, StoreError, StoreOptions, Successor, TokenInfo,
    digests, redact_url, service_not_found,
};
use crate::model::{Ability, NetList, ServiceName, TokenRecord};
use crate::token::TokenDigest;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/mysql");

/// How this backend dials.
type DialOptions = MySqlConnectOptions;

use super::sql::MYSQL as SQL;

/// MySQL columns: lists are JSON arrays in text columns.
impl Columns for MySqlRow {
    scalar_columns!();
    json_list_columns!();
}

#[derive(Debug, Clone)]
pub struct MysqlStore {
    pub(super) db: Arc<Connections<MySql>>,
    connect: Arc<MySqlConnectOptions>,
}

impl MysqlStore {
    shared_statements!();

    /// The id the server reports for the row an insert wrote.
    async fn inserted_id<'q>(
        insert: sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>,
        conn: &mut sqlx::MySqlConnection,
    ) -> Result<Option<i64>, sqlx::Error> {
        let done = insert.execute(conn).await?;
        Ok((done.rows_affected() > 0).then(|| done.last_insert_id() as i64))
    }

    json_list_params!();

    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = MySqlConnectOptions::from_str(&options.url)
            .map_err(|_| StoreError::UnsupportedUrl(redact_url(&options.url)))?
            .timezone(Some("+00:00".to_owned()))
            .charset("utf8mb4")
            .disable_statement_logging();
        Ok(Self::over(connect, options))
    }

    /// One statement for the whole batch, as a JSON array of pairs.
    pub async fn record_last_used(&self, uses: &[(i64, DateTime<Utc>)]) -> Result<u64, StoreError> {
        let batch: Vec<(i64, String)> = uses
            .iter()
            .map(|(id, at)| (*id, at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()))
            .collect();
        let batch = serde_json::to_string(&batch).unwrap_or_else(|_| "[]".into());
        let result = self
            .db
            .run(async |conn| {
                sqlx::query(
                    "UPDATE tokens JOIN JSON_TABLE(?, '$[*]' COLUMNS ( \
                         id BIGINT PATH '$[0]', used_at DATETIME(6) PATH '$[1]')) AS u \
                         ON tokens.id = u.id \
                     SET tokens.last_used_at = u.used_at \
                     WHERE tokens.last_used_at IS NULL OR tokens.last_used_at < u.used_at",
                )
                .bind(batch)
                .execute(conn)
                .await
            })
            .await?;
        Ok(result.rows_affected())
    }

    /// One statement: MySQL reports 1 affected row for an insert and 2 for
    /// an update of an existing name.
    async fn upsert(
        conn: &mut sqlx::MySqlConnection,
        change: &ServiceChange,
        allowlist: Option<String>,
    ) -> Result<(MySqlRow, bool), sqlx::Error> {
        let upsert = sqlx::query(
            "INSERT INTO services (name, description, ip_allowlist) \
             VALUES (?, COALESCE(?, ''), COALESCE(?, '[]')) \
             ON DUPLICATE KEY UPDATE description = COALESCE(?, description), \
                 ip_allowlist = COALESCE(?, ip_allowlist), updated_at = UTC_TIMESTAMP(6)",
        )
        .bind(change.name.as_str())
        .bind(change.description.as_deref())
        .bind(allowlist.as_deref())
        .bind(change.description.as_deref())
        .bind(allowlist.as_deref())
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query(SQL.service_by_name)
            .bind(change.name.as_str())
            .fetch_one(conn)
            .await?;
        Ok((row, upsert.rows_affected() == 1))
    }

    changes_from_log! {
        read: "SELECT id, subject, row_id, version, token_hash FROM gatepass_changes \
               WHERE id > ? ORDER BY id LIMIT ?",
        // The newest version row stays: it carries the counter over a
        // restart of servers that recompute it from the table.
        prune: [
            "DELETE FROM gatepass_changes WHERE at < UTC_TIMESTAMP(6) - INTERVAL 1 DAY",
            "DELETE FROM gatepass_versions WHERE id < \
             (SELECT newest FROM (SELECT max(id) AS newest FROM gatepass_versions) AS v)",
        ],
    }
}
