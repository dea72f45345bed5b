//! One mapping per record, from whatever holds its columns: a Postgres
//! row, a SQLite row, or the JSON object a record is cached as in Redis.
//! Each holder only says how it reads one column of each kind
//! ([`Columns`]); a new column touches this file and, if it is of a new
//! kind, one method per holder.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Service, TokenInfo};
use crate::model::{Abilities, LastUse, NetList, ServiceRecord, TokenKind, TokenRecord};
use crate::token::TokenDigest;

/// How one holder of rows reads a column of each kind. Errors are
/// `sqlx::Error::Decode` (or the column's own error): a row that does not
/// read back exactly is an error, never a guess.
pub trait Columns {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    /// A list of names (abilities).
    fn names(&self, column: &str) -> Result<Vec<String>, sqlx::Error>;
    /// A list of networks (an allowlist).
    fn nets(&self, column: &str) -> Result<NetList, sqlx::Error>;
}

/// The [`Columns`] methods every sqlx row reads with `try_get` alike.
macro_rules! scalar_columns {
    () => {
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
    };
}

pub(super) use scalar_columns;

/// The list methods of [`Columns`] for rows that keep lists as JSON arrays
/// of strings in text columns (SQLite, MySQL).
macro_rules! json_list_columns {
    () => {
        fn names(&self, column: &str) -> Result<Vec<String>, sqlx::Error> {
            let text: String = self.try_get(column)?;
            serde_json::from_str(&text).map_err(|e| rows::decode_error(format!("{column}: {e}")))
        }

        fn nets(&self, column: &str) -> Result<NetList, sqlx::Error> {
            let entries = self.names(column)?;
            NetList::parse(&entries.join(","))
                .map_err(|e| rows::decode_error(format!("{column}: {e}")))
        }
    };
}

pub(super) use json_list_columns;

/// How backends that keep lists as JSON text bind them.
macro_rules! json_list_params {
    () => {
        fn names_param(names: &[Ability]) -> String {
            rows::json_names(names)
        }

        fn nets_param(list: Option<&NetList>) -> Option<String> {
            list.map(rows::json_nets)
        }
    };
}

pub(super) use json_list_params;

/// Names as a JSON array, for backends that keep lists so.
pub fn json_names(names: &[crate::model::Ability]) -> String {
    let names: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

/// Networks as a JSON array of strings.
pub fn json_nets(list: &NetList) -> String {
    let nets: Vec<String> = list.nets().iter().map(ToString::to_string).collect();
    serde_json::to_string(&nets).unwrap_or_else(|_| "[]".into())
}

pub fn decode_error(message: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(message.into().into())
}

fn required_time(row: &impl Columns, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    row.time(column)?
        .ok_or_else(|| decode_error(format!("{column} is NULL")))
}

fn token_kind(row: &impl Columns) -> Result<TokenKind, sqlx::Error> {
    TokenKind::parse(&row.text("kind")?).ok_or_else(|| decode_error("unknown token kind"))
}

/// The columns of [`token_record`], joined from `tokens t` and `services s`.
macro_rules! token_record_select {
    () => {
        "SELECT t.id, t.version, t.token_hash, t.kind, t.abilities, t.expires_at, \
         t.revoked_at, t.created_at, s.id AS service_id, s.version AS service_version, \
         s.name AS service_name, s.is_active, s.ip_allowlist \
         FROM tokens t JOIN services s ON s.id = t.service_id"
    };
}

/// The columns of [`token_info`].
macro_rules! token_info_select {
    () => {
        "SELECT t.id, s.name AS service_name, t.name, t.kind, t.abilities, t.expires_at, \
         t.last_used_at, t.revoked_at, t.created_at \
         FROM tokens t JOIN services s ON s.id = t.service_id"
    };
}

/// The columns of [`service`].
macro_rules! service_columns {
    () => {
        "id, name, description, is_active, ip_allowlist, created_at, updated_at"
    };
}

pub(super) use {service_columns, token_info_select, token_record_select};

pub fn token_record(row: &impl Columns) -> Result<TokenRecord, sqlx::Error> {
    let digest = TokenDigest::from_bytes(&row.bytes("token_hash")?)
        .ok_or_else(|| decode_error("token_hash is not 32 bytes"))?;
    Ok(TokenRecord {
        id: row.int("id")?,
        version: row.int("version")?,
        digest,
        kind: token_kind(row)?,
        abilities: Arc::new(Abilities::from_stored(row.names("abilities")?)),
        expires_at: row.time("expires_at")?,
        revoked_at: row.time("revoked_at")?,
        created_at: required_time(row, "created_at")?,
        service: Arc::new(ServiceRecord {
            id: row.int("service_id")?,
            version: row.int("service_version")?,
            name: row.text("service_name")?,
            is_active: row.flag("is_active")?,
            ip_allowlist: row.nets("ip_allowlist")?,
        }),
        last_use: LastUse::default(),
    })
}

pub fn token_info(row: &impl Columns) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: row.int("id")?,
        service: row.text("service_name")?,
        name: row.text("name")?,
        kind: token_kind(row)?.as_str(),
        abilities: row.names("abilities")?,
        expires_at: row.time("expires_at")?,
        last_used_at: row.time("last_used_at")?,
        revoked_at: row.time("revoked_at")?,
        created_at: required_time(row, "created_at")?,
    })
}

pub fn service(row: &impl Columns) -> Result<Service, sqlx::Error> {
    Ok(Service {
        id: row.int("id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        is_active: row.flag("is_active")?,
        ip_allowlist: row.nets("ip_allowlist")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

/// A token record as the columns [`token_record`] reads, for holders that
/// are written by gatepass itself (the Redis cache).
pub fn token_record_columns(record: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "version": record.version,
        "token_hash": record.digest.to_hex(),
        "kind": record.kind.as_str(),
        "abilities": record.abilities.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "created_at": record.created_at,
        "service_id": record.service.id,
        "service_version": record.service.version,
        "service_name": record.service.name,
        "is_active": record.service.is_active,
        "ip_allowlist": record.service.ip_allowlist.to_string(),
    })
}

/// The JSON object [`token_record_columns`] writes, read back.
impl Columns for serde_json::Map<String, serde_json::Value> {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        json_column(self, column)?
            .as_i64()
            .ok_or_else(|| decode_error(format!("{column} is not an integer")))
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        json_column(self, column)?
            .as_bool()
            .ok_or_else(|| decode_error(format!("{column} is not a boolean")))
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        json_value(self, column)
    }

    /// Written as hex.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        let hex: String = json_value(self, column)?;
        TokenDigest::from_hex(&hex)
            .map(|digest| digest.as_bytes().to_vec())
            .ok_or_else(|| decode_error(format!("{column} is not a hex digest")))
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        json_value(self, column)
    }

    fn names(&self, column: &str) -> Result<Vec<String>, sqlx::Error> {
        json_value(self, column)
    }

    fn nets(&self, column: &str) -> Result<NetList, sqlx::Error> {
        NetList::parse(&self.text(column)?).map_err(|e| decode_error(format!("{column}: {e}")))
    }
}

fn json_column<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    column: &str,
) -> Result<&'a serde_json::Value, sqlx::Error> {
    object
        .get(column)
        .ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))
}

fn json_value<T: serde::de::DeserializeOwned>(
    object: &serde_json::Map<String, serde_json::Value>,
    column: &str,
) -> Result<T, sqlx::Error> {
    T::deserialize(json_column(object, column)?).map_err(|e| decode_error(format!("{column}: {e}")))
}
