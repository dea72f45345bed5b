//! What the SQL backends share: the statements every backend runs the same
//! way, written once per dialect as text ([`Statements`]), and the methods
//! that run them, written once here ([`shared_statements!`]) and generated
//! into each backend, whose sqlx types differ.

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
    /// Name ($1), active ($2); returns `service_columns!`.
    pub set_service_active: &'static str,
    /// Whether a service named $1 exists.
    pub service_exists: &'static str,
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
}

/// The methods both backends run the same way. Expands inside a backend's
/// `impl`, where `SQL` (its [`Statements`]), `MIGRATOR` and `self.db` (its
/// [`super::connections::Connections`]) are in scope.
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
                        .bind(name.as_str())
                        .bind(active)
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
                let exists: bool = self
                    .db
                    .run(async |conn| {
                        sqlx::query_scalar(SQL.service_exists)
                            .bind(name.as_str())
                            .fetch_one(conn)
                            .await
                    })
                    .await?;
                if !exists {
                    return Err(service_not_found(name));
                }
            }
            Ok(rows
                .iter()
                .map(rows::token_info)
                .collect::<Result<_, _>>()?)
        }

        pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
            let result = self
                .db
                .run(async |conn| sqlx::query(SQL.revoke_token).bind(id).execute(conn).await)
                .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("token {id} not found")));
            }
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
        /// lock on Postgres, the write lock on SQLite), so instances
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
