//! Connections to the database, for every backend: each use is bounded in
//! time, waiting for a connection included, and a connection that ran out
//! of time is closed on the spot.
//!
//! Why closed: sqlx pings a connection returned in the middle of a
//! statement before pooling it again, with no bound of its own, so on a
//! database that stopped answering (a failover, a dead NAT entry) every
//! abandoned statement would hold a pool slot for good. And why the pool
//! can be renewed: after such an outage the idle connections are the frozen
//! ones; a fresh pool dials the database as it is now.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::time::{Instant, timeout_at};

use super::StoreError;

/// The longest any statement other than a lookup may take (provisioning,
/// pruning, the last-used flush), whatever `GATEPASS_DATABASE_TIMEOUT` is.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Connections<DB: Database> {
    current: ArcSwap<Pool<DB>>,
    open: Box<dyn Fn() -> Pool<DB> + Send + Sync>,
    /// Bound on a lookup, and on waiting for a connection.
    timeout: Duration,
}

impl<DB: Database> std::fmt::Debug for Connections<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Connections<DB> {
    /// A lazy pool over `dial` (nothing is dialled until first use) that
    /// sends no round trip before each query: a dead connection fails the
    /// query, and the check answers UNAVAILABLE, as for any outage.
    pub fn lazy(
        dial: <DB::Connection as sqlx::Connection>::Options,
        max_connections: u32,
        timeout: Duration,
    ) -> Self {
        Self::new(
            move || {
                sqlx::pool::PoolOptions::<DB>::new()
                    .max_connections(max_connections)
                    .test_before_acquire(false)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(dial.clone())
            },
            timeout,
        )
    }

    /// Whether a new connection over `dial` reaches the database now,
    /// bypassing the pool (whose idle connections may be the ones that
    /// stopped answering). On success the pool is renewed.
    pub async fn probe_with(
        &self,
        dial: &<DB::Connection as sqlx::Connection>::Options,
    ) -> Result<(), StoreError> {
        use sqlx::{ConnectOptions, Connection};
        let probe = async {
            let mut connection = dial.connect().await?;
            connection.ping().await?;
            let _ = connection.close().await;
            Ok::<_, sqlx::Error>(())
        };
        tokio::time::timeout(self.timeout, probe)
            .await
            .map_err(|_| StoreError::TimedOut(self.timeout))??;
        self.renew();
        Ok(())
    }

    /// `open` builds a lazy pool (nothing is dialled until first use); it
    /// is called again on [`Connections::renew`].
    pub fn new(open: impl Fn() -> Pool<DB> + Send + Sync + 'static, timeout: Duration) -> Self {
        Self {
            current: ArcSwap::from_pointee(open()),
            open: Box::new(open),
            timeout,
        }
    }

    /// The pool in use now.
    pub fn pool(&self) -> Pool<DB> {
        Pool::clone(&self.current.load())
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a lookup: bounded by the configured timeout.
    pub async fn lookup<T>(
        &self,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        self.run_within(self.timeout, work).await
    }

    /// Runs any other statement (or transaction): bounded by
    /// [`STATEMENT_TIMEOUT`].
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        self.run_within(STATEMENT_TIMEOUT.max(self.timeout), work)
            .await
    }

    async fn run_within<T>(
        &self,
        bound: Duration,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + bound;
        let pool = self.pool();
        let mut connection = bounded(deadline, bound, pool.acquire()).await??;
        match timeout_at(deadline, work(&mut connection)).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                close_now(connection);
                Err(StoreError::TimedOut(bound))
            }
        }
    }

    /// Replaces the pool with a fresh one; statements running on the old
    /// one finish there, its idle connections are dropped with it.
    pub fn renew(&self) {
        self.current.store(Arc::new((self.open)()));
    }
}

/// Drops the socket without a word to the server: a graceful close would
/// wait on the very connection that stopped answering.
fn close_now<DB: Database>(connection: PoolConnection<DB>) {
    drop(connection.detach());
}

async fn bounded<T>(
    deadline: Instant,
    bound: Duration,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<Result<T, sqlx::Error>, StoreError> {
    timeout_at(deadline, work)
        .await
        .map_err(|_| StoreError::TimedOut(bound))
}
