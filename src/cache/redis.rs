//! L2: Redis, shared by every instance (optional).
//!
//! Values are `<version> <payload>`: a token's record as JSON, `-` for "no
//! such token", `x` for a tombstone left by an invalidation. Writes go
//! through a compare-and-set script that refuses anything older than what
//! is stored, so a slow fill can never overwrite a newer state or a
//! tombstone. Every call is bounded by a short timeout and guarded by a
//! circuit breaker: a dead Redis costs a few timeouts, then is skipped
//! while a background probe pings it every 250 ms; the first answer closes
//! the breaker, so a Redis that comes back is used again within a second.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::sync::OnceCell;

use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::store::rows;
use crate::token::TokenKey;

/// Consecutive failures that open the breaker, and how often an open
/// breaker's probe pings Redis.
const BREAKER_THRESHOLD: u32 = 3;
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// At most one error log line per this interval.
const LOG_INTERVAL_MS: i64 = 10_000;

/// ARGV: version, payload, ttl in ms, and "1" for a tombstone. A value
/// replaces one of the same version (a refill), a tombstone does not (the
/// entry already shows the change).
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+) '))
  local version = tonumber(ARGV[1])
  if stored and (stored > version or (ARGV[4] == '1' and stored == version)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return 1
";

#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub prefix: String,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub timeout: Duration,
}

impl Default for RedisOptions {
    /// Everything but where Redis is: no URL means no L2.
    fn default() -> Self {
        Self {
            url: String::new(),
            prefix: "gatepass:".into(),
            ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            timeout: Duration::from_millis(50),
        }
    }
}

/// What L2 holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Token(Box<TokenRecord>),
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid redis url: {0}")]
    Url(String),
}

#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    options: RedisOptions,
    cas: Script,
    breaker: Breaker,
    last_log_ms: AtomicI64,
    metrics: Metrics,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.options.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects lazily: a Redis that is down at start-up is not fatal.
    pub fn new(options: RedisOptions, metrics: Metrics) -> Result<Self, RedisError> {
        let client =
            Client::open(options.url.as_str()).map_err(|e| RedisError::Url(e.to_string()))?;
        let connections = Connections::new(client, options.timeout);
        Ok(Self {
            inner: Arc::new(Inner {
                connections,
                cas: Script::new(CAS_SCRIPT),
                breaker: Breaker::default(),
                last_log_ms: AtomicI64::new(i64::MIN),
                options,
                metrics,
            }),
        })
    }

    /// Errors so far (timeouts, refused connections, bad replies).
    pub fn error_count(&self) -> u64 {
        self.inner.metrics.redis_errors().get()
    }

    /// Whether Redis answers now (within the timeout, breaker permitting).
    pub async fn ping(&self) -> bool {
        self.call(async |conn| redis::cmd("PING").query_async::<String>(conn).await)
            .await
            .is_some()
    }

    /// Whether the breaker is open (calls skipped).
    pub fn breaker_open(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// `None` on a miss, when Redis is unreachable or holds a tombstone.
    pub async fn get(&self, key: TokenKey) -> Option<Stored> {
        let redis_key = self.key(key);
        let reply: String = self
            .call(async |conn| {
                redis::cmd("GET")
                    .arg(&redis_key)
                    .query_async::<Option<String>>(conn)
                    .await
            })
            .await
            .flatten()?;
        let (_, payload) = reply.split_once(' ')?;
        match payload {
            "-" => Some(Stored::Absent),
            "x" => None,
            // Anything that does not read back exactly is a miss.
            json => serde_json::from_str::<serde_json::Map<_, _>>(json)
                .ok()
                .and_then(|columns| rows::token_record(&columns).ok())
                .map(|record| Stored::Token(Box::new(record))),
        }
    }

    /// Stores what the database said, unless Redis already holds something
    /// newer (or a tombstone at least as new).
    pub async fn put(&self, key: TokenKey, stored: &Stored) {
        let (version, payload, ttl) = match stored {
            Stored::Token(record) => (
                record.version.max(record.service.version),
                rows::token_record_columns(record).to_string(),
                self.inner.options.ttl,
            ),
            // "Absent" is the weakest claim: version 0 never overwrites.
            Stored::Absent => (0, "-".to_owned(), self.inner.options.negative_ttl),
        };
        self.compare_and_set(key, version, payload, ttl, false)
            .await;
    }

    /// Leaves a tombstone: nothing older than `version` can be stored
    /// under `key` until the L2 TTL has passed.
    pub async fn bury(&self, key: TokenKey, version: i64) {
        self.compare_and_set(key, version, "x".to_owned(), self.inner.options.ttl, true)
            .await;
    }

    async fn compare_and_set(
        &self,
        key: TokenKey,
        version: i64,
        payload: String,
        ttl: Duration,
        tombstone: bool,
    ) {
        let redis_key = self.key(key);
        let script = self.inner.cas.clone();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call(async |conn| {
            script
                .key(&redis_key)
                .arg(version)
                .arg(payload)
                .arg(ttl_ms)
                .arg(if tombstone { "1" } else { "0" })
                .invoke_async::<i64>(conn)
                .await
        })
        .await;
    }

    fn key(&self, key: TokenKey) -> String {
        let prefix = &self.inner.options.prefix;
        match key {
            TokenKey::Id(id) => format!("{prefix}token:id:{id}"),
            TokenKey::Digest(digest) => format!("{prefix}token:digest:{}", digest.to_hex()),
        }
    }

    /// Runs one command with the timeout and the breaker; `None` when it
    /// failed or was skipped. A connection whose command failed or timed
    /// out is discarded, never handed out again: after a Redis restart the
    /// next calls dial afresh.
    async fn call<T>(
        &self,
        command: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let inner = &self.inner;
        let now = now_ms();
        if inner.breaker.is_open() {
            return None;
        }
        let result = self.attempt(command).await;
        match result {
            Ok(value) => {
                inner.breaker.success();
                Some(value)
            }
            Err(error) => {
                inner.metrics.redis_errors().inc();
                let opened = inner.breaker.failure();
                if opened {
                    inner.metrics.redis_breaker_open().set(1);
                    let redis = self.clone();
                    tokio::spawn(async move { redis.probe_until_up().await });
                }
                self.log(&error, opened, now);
                None
            }
        }
    }

    /// Pings Redis until it answers, then closes the breaker.
    async fn probe_until_up(&self) {
        let mut ticks = tokio::time::interval(PROBE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let pong = self
                .attempt(async |conn| redis::cmd("PING").query_async::<String>(conn).await)
                .await;
            if pong.is_ok() {
                self.inner.breaker.close();
                self.inner.metrics.redis_breaker_open().set(0);
                tracing::info!("redis reachable again");
                return;
            }
        }
    }

    /// One command on this thread's connection, connecting included, within
    /// the timeout.
    async fn attempt<T>(
        &self,
        command: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let inner = &self.inner;
        let timeout = inner.options.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let slot = inner.connections.slot();
        match tokio::time::timeout_at(deadline, inner.connections.connection(&slot)).await {
            Ok(Ok(mut connection)) => {
                match tokio::time::timeout_at(deadline, command(&mut connection)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) => {
                        inner.connections.discard(&slot);
                        Err(error.to_string())
                    }
                    Err(_) => {
                        inner.connections.discard(&slot);
                        Err(format!("timed out after {timeout:?}"))
                    }
                }
            }
            Ok(Err(error)) => Err(format!("no connection: {error}")),
            Err(_) => Err(format!("no connection within {timeout:?}")),
        }
    }

    fn log(&self, error: &str, opened: bool, now: i64) {
        let last = self.inner.last_log_ms.load(Ordering::Relaxed);
        let due = last == i64::MIN || now - last >= LOG_INTERVAL_MS;
        if (due || opened)
            && self
                .inner
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let errors = self.inner.metrics.redis_errors().get();
            tracing::warn!(
                error,
                errors_total = errors,
                breaker_open = opened,
                "redis unavailable; falling through to the database"
            );
        }
    }
}

/// One multiplexed connection per thread that sends commands, dialled on
/// that thread, so that its driver task runs on the runtime of the worker
/// using it: a command and its reply never wake another thread. (A shared
/// pool did: in a profile of the Redis-hit path a third of gatepass's CPU
/// was threads waking each other.) Concurrent commands of one thread
/// pipeline on its connection. Threads beyond [`SLOTS`] share.
struct Connections {
    client: Client,
    timeout: Duration,
    slots: Box<[Mutex<Slot>]>,
}

const SLOTS: usize = 32;

/// A connection being dialled or dialled; replaced, never reset, when a
/// command on it fails, so that callers still holding the old one cannot
/// discard its successor.
type Slot = Arc<OnceCell<MultiplexedConnection>>;

/// The slot a thread uses, and which connection it found there.
struct Held {
    index: usize,
    slot: Slot,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl Connections {
    fn new(client: Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            slots: (0..SLOTS).map(|_| Mutex::default()).collect(),
        }
    }

    fn slot(&self) -> Held {
        let index = THREAD.with(|thread| thread % SLOTS);
        let slot = self.slots[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        Held { index, slot }
    }

    /// A failed or timed-out connection is never handed out again: after a
    /// Redis restart the next command dials afresh.
    fn discard(&self, held: &Held) {
        let mut slot = self.slots[held.index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if Arc::ptr_eq(&slot, &held.slot) {
            *slot = Slot::default();
        }
    }

    async fn connection(&self, held: &Held) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(connection) = held.slot.get() {
            return Ok(connection.clone());
        }
        // Callers on this thread wait for one dial instead of each dialling.
        held.slot
            .get_or_try_init(|| dial(&self.client, self.timeout))
            .await
            .cloned()
    }
}

async fn dial(client: &Client, timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Opens after [`BREAKER_THRESHOLD`] consecutive failures; while open,
/// calls are skipped, and the probe closes it.
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    open: AtomicBool,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Returns true when this failure opened the breaker.
    fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= BREAKER_THRESHOLD && !self.open.swap(true, Ordering::AcqRel)
    }

    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
