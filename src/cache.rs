//! The tiered lookup (SPEC §6): L1 in-process, then L2 Redis (optional),
//! then the database, with concurrent misses coalesced and every change
//! announced by the database pushed into both caches.
//!
//! Freshness rests on invalidation, not on TTLs: the TTLs only bound what a
//! lost notification could cost. While the notification feed is down, L1
//! entries count as fresh for [`DEGRADED_TTL_MS`] only and L2 is bypassed,
//! so a revocation still lands within a second. While the database is down,
//! cached tokens are served stale up to `max_stale`; unknown ones are
//! unavailable.

mod flight;
mod floors;
mod intern;
pub mod invalidation;
mod known;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::metrics::{LookupResult, Metrics, Operation, Tier};
use crate::model::TokenRecord;
use crate::store::{Store, StoreError};
use crate::token::TokenKey;
use flight::Flights;
use floors::Floors;
use intern::Interner;
use known::{Indexed, Known};
pub use memory::CachedToken;
use memory::{Hit, Memory};
pub use redis::{Redis, RedisOptions, Stored};

/// How long L1 entries count as fresh while invalidations cannot arrive.
pub const DEGRADED_TTL_MS: i64 = 1_000;
/// How long a lookup of a token the index does not know waits for the
/// index to be complete through the time it was asked: a feed heartbeat
/// (sent when a lookup starts waiting, at most one per
/// [`crate::store::SYNC_EVERY`]) or a poll of the change log away. Below
/// Envoy's shipped ext_authz timeout (250 ms).
const INDEX_WAIT: Duration = Duration::from_millis(200);
/// Database lookups per second for tokens the index could not vouch for in
/// time (before its first load, or while the feed is down) and Redis did
/// not know; past it they are answered unavailable, never allowed and never
/// sent to the database.
const UNSURE_LOOKUPS_PER_SECOND: i64 = 100;
/// Rows read per statement while loading the index.
const INDEX_PAGE: i64 = 10_000;
/// How long a check of a cached token that needs refreshing waits for the
/// refresh before it is answered from the cached entry.
const STALE_REFRESH_WAIT: Duration = Duration::from_millis(20);

/// Where an answer came from; doubles as the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    L1Hit,
    L1Negative,
    L2Hit,
    L2Negative,
    Db,
    DbNegative,
    /// Served past its TTL because the database could not be reached.
    Stale,
    /// A token the index of existing tokens says was not there when it
    /// was asked for: answered unknown without a query (junk of any shape
    /// costs the database nothing).
    Unknown,
}

impl Outcome {
    /// The lookups this answer took, tier by tier, as the metric counts
    /// them.
    pub fn tiers(self) -> &'static [(Tier, LookupResult)] {
        use LookupResult::{Hit, Miss, Negative, Stale};
        match self {
            Self::L1Hit => &[(Tier::L1, Hit)],
            Self::L1Negative => &[(Tier::L1, Negative)],
            Self::L2Hit => &[(Tier::L1, Miss), (Tier::L2, Hit)],
            Self::L2Negative => &[(Tier::L1, Miss), (Tier::L2, Negative)],
            Self::Db => &[(Tier::L1, Miss), (Tier::Db, Hit)],
            Self::DbNegative => &[(Tier::L1, Miss), (Tier::Db, Negative)],
            Self::Stale => &[(Tier::L1, Stale)],
            Self::Unknown => &[(Tier::L1, Negative)],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1Hit => "l1_hit",
            Self::L1Negative => "l1_negative",
            Self::L2Hit => "l2_hit",
            Self::L2Negative => "l2_negative",
            Self::Db => "db",
            Self::DbNegative => "db_negative",
            Self::Stale => "stale",
            Self::Unknown => "unknown",
        }
    }
}

/// The answer of a lookup: the token if one is known, and where from.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub token: Option<CachedToken>,
    pub outcome: Outcome,
    /// Redis was asked and did not know (the database answered).
    pub l2_missed: bool,
}

#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub capacity: usize,
    pub ttl: Duration,
    pub negative_capacity: usize,
    pub negative_ttl: Duration,
    pub max_stale: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(300),
            negative_capacity: 100_000,
            negative_ttl: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
        }
    }
}

type Shared = Result<Lookup, Arc<StoreError>>;

/// The tiers, shared by every surface. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tiers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    metrics: Metrics,
    memory: Memory,
    redis: Option<Redis>,
    flights: Flights<TokenKey, Shared>,
    floors: Floors,
    interner: Interner,
    /// Whether change notifications are arriving.
    feed_connected: AtomicBool,
    /// Entries read before this (unix ms) need a refresh before they are
    /// trusted: the change feed was down when they were read or since.
    trusted_since_ms: AtomicI64,
    /// Which tokens exist.
    known: Known,
    unsure_budget: Budget,
    ttl_ms: i64,
    max_stale_ms: i64,
}

impl Tiers {
    pub fn new(
        store: Store,
        redis: Option<Redis>,
        options: &CacheOptions,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics,
                memory: Memory::new(
                    options.capacity,
                    options.negative_capacity,
                    millis(options.negative_ttl),
                ),
                store,
                redis,
                flights: Flights::new(),
                floors: Floors::default(),
                interner: Interner::default(),
                feed_connected: AtomicBool::new(false),
                trusted_since_ms: AtomicI64::new(0),
                known: Known::default(),
                unsure_budget: Budget::new(UNSURE_LOOKUPS_PER_SECOND),
                ttl_ms: millis(options.ttl),
                max_stale_ms: millis(options.max_stale),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn redis(&self) -> Option<&Redis> {
        self.inner.redis.as_ref()
    }

    /// Tokens cached in L1.
    pub fn cached_tokens(&self) -> usize {
        self.inner.memory.len()
    }

    pub fn feed_connected(&self) -> bool {
        self.inner.feed_connected.load(Ordering::Acquire)
    }

    /// Resolves `key`. The hot path, an L1 hit, takes no lock and does no
    /// I/O.
    pub async fn lookup(&self, key: TokenKey, now_ms: i64) -> Result<Lookup, Arc<StoreError>> {
        let inner = &self.inner;
        let stale = match self.memory_answer(key, now_ms) {
            Ok(lookup) => return Ok(self.answered(lookup)),
            Err(stale) => stale,
        };
        let Some(stale) = stale.filter(|stale| now_ms - stale.fetched_ms <= inner.max_stale_ms)
        else {
            return self
                .fetch_shared(key, now_ms)
                .await
                .map(|l| self.answered(l));
        };
        // A cached token never waits on a database that is down or slow:
        // the refresh goes on in the background, the check is answered
        // from the entry it has.
        if inner.store.is_down() {
            return Ok(self.answered(found(stale, Outcome::Stale)));
        }
        let refresh = self.fetch_shared(key, now_ms);
        match tokio::time::timeout(STALE_REFRESH_WAIT, refresh).await {
            Ok(Ok(lookup)) => Ok(self.answered(lookup)),
            Ok(Err(_)) | Err(_) => Ok(self.answered(found(stale, Outcome::Stale))),
        }
    }

    /// The fetch for `key`, shared with every concurrent caller and run in
    /// a task of its own: a caller that gives up (a stale check that stops
    /// waiting, a client that hangs up) neither cancels it nor makes the
    /// next caller start over.
    fn fetch_shared(&self, key: TokenKey, now_ms: i64) -> impl Future<Output = Shared> + use<> {
        let tiers = self.clone();
        let task = tokio::spawn(async move {
            let inner = &tiers.inner;
            inner.flights.run(key, || tiers.fetch(key, now_ms)).await
        });
        async move {
            match task.await {
                Ok(shared) => shared,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(_) => Err(Arc::new(StoreError::CoolingDown)),
            }
        }
    }

    /// L1's answer for `key`, or the stale entry (if any) when it has none.
    fn memory_answer(&self, key: TokenKey, now_ms: i64) -> Result<Lookup, Option<CachedToken>> {
        let inner = &self.inner;
        let ttl_ms = if self.feed_connected() {
            inner.ttl_ms
        } else {
            DEGRADED_TTL_MS.min(inner.ttl_ms)
        };
        let trusted_since_ms = inner.trusted_since_ms.load(Ordering::Acquire);
        match inner.memory.get(&key, now_ms, ttl_ms, trusted_since_ms) {
            Hit::Fresh(token) => Ok(found(token, Outcome::L1Hit)),
            Hit::Negative(token) => Ok(found_or_absent(token, Outcome::L1Negative)),
            Hit::Stale(token) => Err(Some(token)),
            Hit::Miss => Err(None),
        }
    }

    /// Counts where a lookup was answered (the hot path: atomic adds).
    fn answered(&self, lookup: Lookup) -> Lookup {
        let metrics = &self.inner.metrics;
        for &(tier, result) in lookup.outcome.tiers() {
            metrics.record_lookup(tier, result);
        }
        // Redis was asked before the database answered.
        if lookup.l2_missed {
            metrics.record_lookup(Tier::L2, LookupResult::Miss);
        }
        lookup
    }

    /// L2, then the database; fills the tiers above on the way back.
    async fn fetch(&self, key: TokenKey, now_ms: i64) -> Shared {
        let inner = &self.inner;
        // A caller that missed L1 just before the previous flight filled it
        // and retired starts a new flight: it finds the fill here instead
        // of querying again.
        if let Ok(lookup) = self.memory_answer(key, now_ms) {
            return Ok(lookup);
        }
        // Once per flight, not per caller. Junk reaches neither Redis nor
        // the database. Waiting is worth it only while the feed can bring
        // the index up to date; before the first load, Redis answers what
        // it knows and the database only a budget of lookups.
        let wait = if self.feed_connected() && inner.known.is_loaded() {
            INDEX_WAIT
        } else {
            Duration::ZERO
        };
        let indexed = inner.known.find(&key, now_ms, wait).await;
        if indexed == Indexed::Absent {
            return Ok(found_or_absent(None, Outcome::Unknown));
        }
        let mut l2_missed = false;
        if let Some(redis) = inner.redis.as_ref().filter(|_| self.feed_connected()) {
            match redis.get(key).await {
                Some(Stored::Token(record)) if inner.floors.admits(key, &record) => {
                    let record = inner.interner.intern(*record);
                    let token = CachedToken::new(record, now_ms);
                    let token = self.fill_memory(key, Some(token), now_ms);
                    return Ok(found_or_absent(token, Outcome::L2Hit));
                }
                Some(Stored::Absent) if inner.floors.admits_absent(key) => {
                    self.fill_memory(key, None, now_ms);
                    return Ok(found_or_absent(None, Outcome::L2Negative));
                }
                _ => l2_missed = true,
            }
        }
        if indexed == Indexed::Unsure && !inner.unsure_budget.try_take(now_ms) {
            return Err(Arc::new(StoreError::Overloaded));
        }
        let record = self.read_database(key).await.map_err(Arc::new)?;
        if let Some(record) = &record {
            inner.known.insert(record.id, &record.digest);
        }
        let stored = match &record {
            Some(record) => Stored::Token(Box::new(record.clone())),
            None => Stored::Absent,
        };
        let token = record.map(|record| CachedToken::new(inner.interner.intern(record), now_ms));
        let token = self.fill_memory(key, token, now_ms);
        if let Some(redis) = inner.redis.clone().filter(|_| self.feed_connected()) {
            // Off the request path: the caller has its answer already.
            let tiers = self.clone();
            tokio::spawn(async move { tiers.fill_redis(&redis, key, stored).await });
        }
        let outcome = if token.is_some() {
            Outcome::Db
        } else {
            Outcome::DbNegative
        };
        Ok(Lookup {
            token,
            outcome,
            l2_missed,
        })
    }

    /// Reads until the row is at least as new as every change already
    /// announced for it (a read that began before a change can return
    /// after its notification).
    async fn read_database(&self, key: TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        let store = &self.inner.store;
        let mut attempts = 0;
        loop {
            let started = std::time::Instant::now();
            let record = match key {
                TokenKey::Id(id) => store.find_token_by_id(id).await,
                TokenKey::Digest(digest) => store.find_token_by_digest(&digest).await,
            };
            // Failing fast on a database known to be down is no statement.
            if !matches!(record, Err(StoreError::CoolingDown)) {
                self.inner.metrics.record_store(
                    Operation::TokenLookup,
                    started.elapsed(),
                    record.is_ok(),
                );
            }
            let record = record?;
            attempts += 1;
            let current = match &record {
                Some(record) => self.inner.floors.admits(key, record),
                None => self.inner.floors.admits_absent(key),
            };
            if current || attempts == 3 {
                return Ok(record);
            }
        }
    }

    /// Caches a fill in L1 unless a change overtook it; checked again after
    /// the insert, since an invalidation may land in between (see floors).
    fn fill_memory(
        &self,
        key: TokenKey,
        token: Option<CachedToken>,
        now_ms: i64,
    ) -> Option<CachedToken> {
        let memory = &self.inner.memory;
        if self.admits(key, &token) {
            memory.put(key, token.clone(), now_ms);
            if !self.admits(key, &token) {
                memory.remove_fill(&key, &token);
            }
        }
        token
    }

    async fn fill_redis(&self, redis: &Redis, key: TokenKey, stored: Stored) {
        let admitted = |stored: &Stored| match stored {
            Stored::Token(record) => self.inner.floors.admits(key, record),
            Stored::Absent => self.inner.floors.admits_absent(key),
        };
        if admitted(&stored) {
            redis.put(key, &stored).await;
        }
    }

    fn admits(&self, key: TokenKey, token: &Option<CachedToken>) -> bool {
        match token {
            Some(token) => self.inner.floors.admits(key, &token.record),
            None => self.inner.floors.admits_absent(key),
        }
    }

    /// Reads every token's id and digest into the index, a page per
    /// statement; returns the rows read. The index is then complete through
    /// the load's start. Until one load has completed, no token counts as
    /// unknown.
    pub async fn load_index(&self) -> Result<u64, StoreError> {
        let store = &self.inner.store;
        let started_ms = redis::now_ms();
        let (mut after, mut rows) = (i64::MIN, 0u64);
        loop {
            let page = store.token_keys_after(after, INDEX_PAGE).await?;
            self.inner.known.extend(&page);
            rows += page.len() as u64;
            match page.last() {
                Some((id, _)) if page.len() as i64 == INDEX_PAGE => after = *id,
                _ => break,
            }
        }
        self.inner.known.complete_through(started_ms);
        Ok(rows)
    }

    /// The change feed has delivered everything committed before
    /// `through_ms`, and a load begun on it has finished.
    pub fn index_complete_through(&self, through_ms: i64) {
        self.inner.known.complete_through(through_ms);
    }

    /// Resolves when a lookup waits for the index to catch up: the feed
    /// should prove what it has delivered.
    pub async fn index_wanted(&self) {
        self.inner.known.wanted().await;
    }

    /// The index's rows and the unix ms it is complete through (0: not
    /// loaded), for diagnostics.
    pub fn index_state(&self) -> (u64, i64) {
        let known = &self.inner.known;
        (known.len(), known.complete_through_ms())
    }

    /// Whether the index of existing tokens has been loaded.
    pub fn index_loaded(&self) -> bool {
        self.inner.known.is_loaded()
    }

    /// Token rows in the index.
    pub fn indexed_tokens(&self) -> u64 {
        self.inner.known.len()
    }

    /// A token row changed: raise its floors, then drop it from L1.
    /// Returns the keys to tombstone in L2, which the caller does off its
    /// path (L1 invalidation never waits on Redis).
    pub fn invalidate_token(&self, change: TokenChange, now_ms: i64) -> [TokenKey; 2] {
        let inner = &self.inner;
        inner.known.insert(change.id, &change.digest);
        let keys = [TokenKey::Id(change.id), TokenKey::Digest(change.digest)];
        for key in keys {
            inner.floors.raise_token(key, change.version, now_ms);
            inner.memory.remove_older(&key, change.version);
        }
        keys
    }

    /// A service changed: raise its floor, then drop its tokens from L1. L2
    /// entries carry the service version and are refused by the floor.
    pub fn invalidate_service(&self, id: i64, version: i64, now_ms: i64) {
        self.inner.floors.raise_service(id, version, now_ms);
        self.inner.memory.remove_service(id, version);
    }

    /// Anything may have changed: nothing older than `version` is
    /// believed, from L2 either, and L1 starts over.
    pub fn invalidate_everything(&self, version: i64, now_ms: i64) {
        if version > 0 {
            self.inner.floors.raise_all(version, now_ms);
        }
        self.inner.memory.clear();
    }

    /// Notifications may have been missed: nothing L1 read before now is
    /// trusted without a refresh. Entries stay, so that while the database
    /// is unreachable they can still be served stale.
    pub fn distrust_memory(&self, now_ms: i64) {
        self.inner.trusted_since_ms.store(now_ms, Ordering::Release);
    }

    fn set_feed_connected(&self, connected: bool) {
        self.inner
            .feed_connected
            .store(connected, Ordering::Release);
        self.inner.metrics.set_feed_connected(connected);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn prune_floors(&self, before_ms: i64) {
        self.inner.floors.prune(before_ms);
    }
}

/// A fixed-window rate budget: at most `per_second` takes per second.
#[derive(Debug)]
struct Budget {
    per_second: i64,
    window_start_ms: AtomicI64,
    used: AtomicI64,
}

impl Budget {
    fn new(per_second: i64) -> Self {
        Self {
            per_second,
            window_start_ms: AtomicI64::new(0),
            used: AtomicI64::new(0),
        }
    }

    fn try_take(&self, now_ms: i64) -> bool {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        if now_ms - start >= 1_000
            && self
                .window_start_ms
                .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < self.per_second
    }
}

/// What a token notification says.
#[derive(Debug, Clone, Copy)]
pub struct TokenChange {
    pub id: i64,
    pub version: i64,
    pub digest: crate::token::TokenDigest,
}

fn found(token: CachedToken, outcome: Outcome) -> Lookup {
    found_or_absent(Some(token), outcome)
}

fn found_or_absent(token: Option<CachedToken>, outcome: Outcome) -> Lookup {
    Lookup {
        token,
        outcome,
        l2_missed: false,
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
