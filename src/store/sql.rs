//! What the SQL backends share: the statements every backend runs the same
//! way, written once per dialect as text ([`Statements`]), and the methods
//! that run them, written once here ([`shared_statements!`]) and generated
//! into each backend, whose sqlx types differ.

use super::rows::{service_columns, token_info_select, token_record_select};

/// The SQL of the shared methods, in one dialect. Parameters are
/// positional and in the order the methods bind them.
pub struct Statements {
    /// The highest migration applied successfully.
    pub applied_migration: &'static str,
    /// `token_record_select!` for one id ($1).
    pub token_by_id: &'static str,
    /// `token_record_select!` for one digest ($1).
    pub token_by_digest: &'static str,
    /// `token_info_select!` for one id ($1).
    pub token_info_by_id: &'static str,
    /// `token_info_select!` of one service ($1, or every service when NULL).
    pub list_tokens: &'static str,
    pub list_services: &'static str,
    /// `service_columns!` of service $1.
    pub service_by_name: &'static str,
    /// Active ($1) of service $2.
    pub set_service_active: &'static str,
    /// How many services are named $1.
    pub service_count: &'static str,
    /// Revokes token $1 unless it is revoked already.
    pub revoke_token: &'static str,
    /// Revokes every token of the family of token $1.
    pub revoke_family: &'static str,
    /// Deletes tokens expired or revoked before $1.
    pub prune_tokens: &'static str,
    /// Ids and digests after id $1, at most $2 of them.
    pub token_keys_after: &'static str,
    /// Ids and digests of service id $1.
    pub token_keys_of_service: &'static str,
    /// A token named $1 with digest $2, abilities $3 (as the backend's
    /// `names_param` writes them), kind $4, a new rotation family when $5
    /// (a refresh token), expiry $6, of service $7.
    pub insert_token: &'static str,
    /// Spends refresh token $1: revoked now, if it is a live refresh token.
    pub spend_refresh_token: &'static str,
    /// A successor with digest $1, kind $2, in the family when $3 (a
    /// refresh token), expiry $4, of token $5 (same service, name,
    /// abilities).
    pub insert_successor: &'static str,
}

/// A dialect's [`Statements`], from what differs between dialects: its
/// positional parameters in order (`$1`…, `?1`…, or MySQL's bare `?`;
/// every statement uses each once, in the order it binds them), `now`,
/// a new rotation family's id, the prune condition on one parameter, and
/// how an insert returns its id (`RETURNING id`, or nothing where the
/// driver reports it).
macro_rules! statements {
    (
        parameters: [$p1:literal, $p2:literal, $p3:literal, $p4:literal, $p5:literal,
                     $p6:literal, $p7:literal],
        now: $now:literal, new_family: $new_family:literal, prune: $prune:literal,
        returning_id: $returning_id:literal $(,)?
    ) => {
        $crate::store::sql::Statements {
            applied_migration: "SELECT max(version) FROM _sqlx_migrations WHERE success",
            token_by_id: concat!(token_record_select!(), " WHERE t.id = ", $p1),
            token_by_digest: concat!(token_record_select!(), " WHERE t.token_hash = ", $p1),
            token_info_by_id: concat!(token_info_select!(), " WHERE t.id = ", $p1),
            list_tokens: concat!(
                token_info_select!(),
                " WHERE COALESCE(",
                $p1,
                ", s.name) = s.name ORDER BY t.id"
            ),
            list_services: concat!(
                "SELECT ",
                service_columns!(),
                " FROM services ORDER BY name"
            ),
            service_by_name: concat!(
                "SELECT ",
                service_columns!(),
                " FROM services WHERE name = ",
                $p1
            ),
            set_service_active: concat!(
                "UPDATE services SET is_active = ",
                $p1,
                ", updated_at = ",
                $now,
                " WHERE name = ",
                $p2
            ),
            service_count: concat!("SELECT COUNT(*) FROM services WHERE name = ", $p1),
            revoke_token: concat!(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ",
                $now,
                ") WHERE id = ",
                $p1
            ),
            revoke_family: concat!(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ",
                $now,
                ") \
                 WHERE family_id = (SELECT family_id FROM (SELECT family_id FROM tokens \
                                    WHERE id = ",
                $p1,
                ") AS spent)"
            ),
            prune_tokens: concat!("DELETE FROM tokens WHERE ", $prune),
            token_keys_after: concat!(
                "SELECT id, token_hash FROM tokens WHERE id > ",
                $p1,
                " ORDER BY id LIMIT ",
                $p2
            ),
            token_keys_of_service: concat!(
                "SELECT id, token_hash FROM tokens WHERE service_id = ",
                $p1
            ),
            insert_token: concat!(
                "INSERT INTO tokens \
                     (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
                 SELECT id, ",
                $p1,
                ", ",
                $p2,
                ", ",
                $p3,
                ", ",
                $p4,
                ", \
                        CASE WHEN ",
                $p5,
                " THEN ",
                $new_family,
                " END, ",
                $p6,
                " \
                 FROM services WHERE name = ",
                $p7,
                $returning_id
            ),
            spend_refresh_token: concat!(
                "UPDATE tokens SET revoked_at = ",
                $now,
                " \
                 WHERE id = ",
                $p1,
                " AND kind = 'refresh' AND revoked_at IS NULL"
            ),
            insert_successor: concat!(
                "INSERT INTO tokens \
                     (service_id, name, token_hash, abilities, kind, family_id, expires_at) \
                 SELECT service_id, name, ",
                $p1,
                ", abilities, ",
                $p2,
                ", \
                        CASE WHEN ",
                $p3,
                " THEN family_id END, ",
                $p4,
                " \
                 FROM tokens WHERE id = ",
                $p5,
                $returning_id
            ),
        }
    };
}

pub const POSTGRES: Statements = statements! {
    parameters: ["$1", "$2", "$3", "$4", "$5", "$6", "$7"],
    now: "now()",
    new_family: "gen_random_uuid()",
    prune: "expires_at < $1 OR revoked_at < $1",
    returning_id: " RETURNING id",
};

pub const MYSQL: Statements = statements! {
    parameters: ["?", "?", "?", "?", "?", "?", "?"],
    now: "UTC_TIMESTAMP(6)",
    new_family: "REPLACE(UUID(), '-', '')",
    prune: "LEAST(COALESCE(expires_at, '9999-12-31'), COALESCE(revoked_at, '9999-12-31')) < ?",
    returning_id: "",
};

pub const SQLITE: Statements = statements! {
    parameters: ["?1", "?2", "?3", "?4", "?5", "?6", "?7"],
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    new_family: "lower(hex(randomblob(16)))",
    prune: "julianday(expires_at) < julianday(?1) OR julianday(revoked_at) < julianday(?1)",
    returning_id: " RETURNING id",
};

/// The methods both backends run the same way. Expands inside a backend's
/// `impl`, where `SQL` (its [`Statements`]), `MIGRATOR`, `self.db` (its
/// [`super::connections::Connections`]), `self.connect` and `DialOptions`
/// (how it dials), `Self::names_param` and `Self::nets_param` (how
/// it binds lists),
/// `Self::inserted_id` (how an insert gives its id) and `Self::upsert`
/// (its service upsert) are in scope.
macro_rules! shared_statements {
    () => {
        pub async fn ready(&self) -> Result<bool, StoreError> {
            let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
            let applied: Option<i64> = self
                .db
                .run(async |conn| {
                    sqlx::query_scalar(SQL.applied_migration)
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
                    sqlx::query(SQL.token_by_id)
                        .bind(id)
                        .fetch_optional(conn)
                        .await
                })
                .await?;
            Ok(row.map(|row| rows::token_record(&row)).transpose()?)
        }

        pub async fn find_token_by_digest(
            &self,
            digest: &TokenDigest,
        ) -> Result<Option<TokenRecord>, StoreError> {
            let row = self
                .db
                .lookup(async |conn| {
                    sqlx::query(SQL.token_by_digest)
                        .bind(digest.as_bytes().as_slice())
                        .fetch_optional(conn)
                        .await
                })
                .await?;
            Ok(row.map(|row| rows::token_record(&row)).transpose()?)
        }

        /// A lazy pool over `connect`, kept for probes.
        fn over(connect: DialOptions, options: &StoreOptions) -> Self {
            let db = Connections::lazy(connect.clone(), options.max_connections, options.timeout);
            Self {
                db: Arc::new(db),
                connect: Arc::new(connect),
            }
        }

        /// Creates the service, or updates the fields given. Returns
        /// whether it was created.
        pub async fn upsert_service(
            &self,
            change: &ServiceChange,
        ) -> Result<(Service, bool), StoreError> {
            let allowlist = Self::nets_param(change.ip_allowlist.as_ref());
            let (row, created) = self
                .db
                .run(async |conn| Self::upsert(conn, change, allowlist).await)
                .await?;
            Ok((rows::service(&row)?, created))
        }

        /// Whether a new connection reaches the database now, bypassing
        /// the pool (whose idle connections may be the ones that stopped
        /// answering). On success the pool is renewed.
        pub async fn probe(&self) -> Result<(), StoreError> {
            self.db.probe_with(&self.connect).await
        }

        pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
            let rows = self
                .db
                .run(async |conn| sqlx::query(SQL.list_services).fetch_all(conn).await)
                .await?;
            Ok(rows.iter().map(rows::service).collect::<Result<_, _>>()?)
        }

        pub async fn set_service_active(
            &self,
            name: &ServiceName,
            active: bool,
        ) -> Result<Service, StoreError> {
            let row = self
                .db
                .run(async |conn| {
                    sqlx::query(SQL.set_service_active)
                        .bind(active)
                        .bind(name.as_str())
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(SQL.service_by_name)
                        .bind(name.as_str())
                        .fetch_optional(conn)
                        .await
                })
                .await?;
            match row {
                Some(row) => Ok(rows::service(&row)?),
                None => Err(service_not_found(name)),
            }
        }

        pub async fn list_tokens(
            &self,
            service: Option<&ServiceName>,
        ) -> Result<Vec<TokenInfo>, StoreError> {
            let rows = self
                .db
                .run(async |conn| {
                    sqlx::query(SQL.list_tokens)
                        .bind(service.map(ServiceName::as_str))
                        .fetch_all(conn)
                        .await
                })
                .await?;
            if let Some(name) = service
                && rows.is_empty()
            {
                let count: i64 = self
                    .db
                    .run(async |conn| {
                        sqlx::query_scalar(SQL.service_count)
                            .bind(name.as_str())
                            .fetch_one(conn)
                            .await
                    })
                    .await?;
                if count == 0 {
                    return Err(service_not_found(name));
                }
            }
            Ok(rows
                .iter()
                .map(rows::token_info)
                .collect::<Result<_, _>>()?)
        }

        pub async fn insert_token(&self, token: &NewToken) -> Result<TokenInfo, StoreError> {
            let abilities = Self::names_param(&token.abilities);
            let id = self
                .db
                .run(async |conn| {
                    let insert = sqlx::query(SQL.insert_token)
                        .bind(&token.name)
                        .bind(token.digest.as_bytes().as_slice())
                        .bind(abilities)
                        .bind(token.kind.as_str())
                        .bind(token.kind == crate::model::TokenKind::Refresh)
                        .bind(token.expires_at)
                        .bind(token.service.as_str());
                    Self::inserted_id(insert, conn).await
                })
                .await?;
            match id {
                Some(id) => self.token_info(id).await,
                None => Err(service_not_found(&token.service)),
            }
        }

        /// The spend and both inserts commit together; the spend locks the
        /// row, so a concurrent spend of the same token waits, then finds
        /// it revoked and spends nothing.
        pub async fn rotate_refresh_token(
            &self,
            id: i64,
            access: &Successor,
            refresh: &Successor,
        ) -> Result<Option<Rotated>, StoreError> {
            self.db
                .run(async |conn| {
                    let mut tx = conn.begin().await?;
                    let spent = sqlx::query(SQL.spend_refresh_token)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if spent.rows_affected() != 1 {
                        return Ok(None);
                    }
                    let mut ids = [0; 2];
                    for (slot, (kind, successor)) in ids
                        .iter_mut()
                        .zip([("access", access), ("refresh", refresh)])
                    {
                        let insert = sqlx::query(SQL.insert_successor)
                            .bind(successor.digest.as_bytes().as_slice())
                            .bind(kind)
                            .bind(kind == "refresh")
                            .bind(successor.expires_at)
                            .bind(id);
                        *slot = Self::inserted_id(insert, &mut *tx)
                            .await?
                            .ok_or(sqlx::Error::RowNotFound)?;
                    }
                    tx.commit().await?;
                    Ok(Some(Rotated {
                        access_id: ids[0],
                        refresh_id: ids[1],
                    }))
                })
                .await
        }

        pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
            // Found or not by the read that follows: MySQL counts only the
            // rows a statement changed, and revoking twice changes none.
            self.db
                .run(async |conn| sqlx::query(SQL.revoke_token).bind(id).execute(conn).await)
                .await?;
            self.token_info(id).await
        }

        pub async fn revoke_family(&self, id: i64) -> Result<u64, StoreError> {
            let result = self
                .db
                .run(async |conn| sqlx::query(SQL.revoke_family).bind(id).execute(conn).await)
                .await?;
            Ok(result.rows_affected())
        }

        pub async fn prune_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
            let result = self
                .db
                .run(async |conn| {
                    sqlx::query(SQL.prune_tokens)
                        .bind(before)
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
                    sqlx::query_as(SQL.token_keys_after)
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
                    sqlx::query_as(SQL.token_keys_of_service)
                        .bind(service_id)
                        .fetch_all(conn)
                        .await
                })
                .await?;
            Ok(digests(rows))
        }

        /// Applies migrations. sqlx serializes concurrent runs (an advisory
        /// lock on Postgres, a named lock on MySQL, the write lock on SQLite), so instances
        /// starting together apply each migration once.
        pub async fn migrate(&self) -> Result<(), StoreError> {
            MIGRATOR
                .run(&self.db.pool())
                .await
                .map_err(StoreError::from_migration)
        }

        async fn token_info(&self, id: i64) -> Result<TokenInfo, StoreError> {
            let row = self
                .db
                .run(async |conn| {
                    sqlx::query(SQL.token_info_by_id)
                        .bind(id)
                        .fetch_optional(conn)
                        .await
                })
                .await?;
            match row {
                Some(row) => Ok(rows::token_info(&row)?),
                None => Err(StoreError::NotFound(format!("token {id} not found"))),
            }
        }
    };
}

pub(super) use shared_statements;
