//! L1: the in-process cache. A hit is two hash lookups' worth of work and no
//! I/O: quick_cache's sharded map, an `Arc` clone and a clock comparison.
//!
//! Found tokens and "no such token" answers live in separate bounded caches,
//! so a flood of junk ids can only churn the negative one. Expired tokens
//! are kept with the negatives: answering `token_expired` from memory keeps
//! a client retrying an expired token off the database, and no positive
//! entry outlives its token's `expires_at`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use quick_cache::sync::Cache;

use crate::model::TokenRecord;
use crate::token::TokenKey;

/// A token as cached, with what last-used batching needs.
#[derive(Debug)]
pub struct CachedToken {
    pub record: Arc<TokenRecord>,
    /// When the record was read from the database (unix ms).
    pub fetched_ms: i64,
    expires_ms: Option<i64>,
    last_used_secs: AtomicI64,
    use_pending: AtomicBool,
}

impl CachedToken {
    pub fn new(record: TokenRecord, fetched_ms: i64) -> Self {
        Self {
            expires_ms: record.expires_at.map(|at| at.timestamp_millis()),
            record: Arc::new(record),
            fetched_ms,
            last_used_secs: AtomicI64::new(0),
            use_pending: AtomicBool::new(false),
        }
    }

    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|expires| expires <= now_ms)
    }

    /// Notes a use. Returns true when the token was not yet waiting to be
    /// flushed, i.e. when the caller must queue it. Hot tokens pay one
    /// relaxed load per check and one store per second.
    pub fn record_use(&self, now_secs: i64) -> bool {
        if self.last_used_secs.load(Ordering::Relaxed) != now_secs {
            self.last_used_secs.store(now_secs, Ordering::Relaxed);
        }
        !self.use_pending.load(Ordering::Relaxed) && !self.use_pending.swap(true, Ordering::AcqRel)
    }

    /// Takes the pending use for flushing: the last second it was used.
    pub fn take_use(&self) -> i64 {
        self.use_pending.store(false, Ordering::Release);
        self.last_used_secs.load(Ordering::Relaxed)
    }
}

/// What L1 knows about a key.
#[derive(Debug)]
pub enum Hit {
    /// Cached and within its TTL.
    Fresh(Arc<CachedToken>),
    /// Known absent (`None`) or expired (`Some`), within the negative TTL.
    Negative(Option<Arc<CachedToken>>),
    /// Cached but past its TTL: refetch, or serve if the database is down.
    Stale(Arc<CachedToken>),
    Miss,
}

#[derive(Debug, Clone)]
struct NegativeEntry {
    token: Option<Arc<CachedToken>>,
    cached_ms: i64,
}

#[derive(Debug)]
pub struct Memory {
    found: Cache<TokenKey, Arc<CachedToken>>,
    negative: Cache<TokenKey, NegativeEntry>,
    negative_ttl_ms: i64,
}

impl Memory {
    pub fn new(capacity: usize, negative_capacity: usize, negative_ttl_ms: i64) -> Self {
        Self {
            found: Cache::new(capacity.max(1)),
            negative: Cache::new(negative_capacity.max(1)),
            negative_ttl_ms,
        }
    }

    /// What L1 knows about `key`; entries read before `trusted_since_ms`
    /// are stale (found) or forgotten (negative), whatever their TTL.
    pub fn get(&self, key: &TokenKey, now_ms: i64, ttl_ms: i64, trusted_since_ms: i64) -> Hit {
        if let Some(token) = self.found.get(key) {
            if token.is_expired(now_ms) {
                self.found.remove(key);
            } else if now_ms < token.fetched_ms + ttl_ms && token.fetched_ms >= trusted_since_ms {
                return Hit::Fresh(token);
            } else {
                return Hit::Stale(token);
            }
        }
        match self.negative.get(key) {
            Some(entry)
                if now_ms < entry.cached_ms + self.negative_ttl_ms
                    && entry.cached_ms >= trusted_since_ms =>
            {
                Hit::Negative(entry.token)
            }
            _ => Hit::Miss,
        }
    }

    /// Caches what the database (or L2) said about `key`.
    pub fn put(&self, key: TokenKey, token: Option<Arc<CachedToken>>, now_ms: i64) {
        match token {
            Some(token) if !token.is_expired(now_ms) => {
                self.negative.remove(&key);
                self.found.insert(key, token);
            }
            token => {
                self.found.remove(&key);
                self.negative.insert(
                    key,
                    NegativeEntry {
                        token,
                        cached_ms: now_ms,
                    },
                );
            }
        }
    }

    /// Drops `key` only if it still holds what `token` says it was filled
    /// with, so a newer entry is never thrown away by an older fill.
    pub fn remove_fill(&self, key: &TokenKey, token: &Option<Arc<CachedToken>>) {
        match token {
            Some(token) => {
                self.found
                    .remove_if(key, |cached| Arc::ptr_eq(cached, token));
                self.negative.remove_if(key, |cached| {
                    cached.token.as_ref().is_some_and(|t| Arc::ptr_eq(t, token))
                });
            }
            None => {
                self.negative
                    .remove_if(key, |cached| cached.token.is_none());
            }
        }
    }

    /// Drops what `key` holds unless it was read at `version` or later
    /// (a fill that already saw the change stays).
    pub fn remove_older(&self, key: &TokenKey, version: i64) {
        self.found
            .remove_if(key, |token| token.record.version < version);
        self.negative.remove_if(key, |entry| {
            entry
                .token
                .as_ref()
                .is_none_or(|token| token.record.version < version)
        });
    }

    /// Drops a service's tokens read before `version`; a scan, but
    /// services change rarely.
    pub fn remove_service(&self, service_id: i64, version: i64) {
        let current = |token: &CachedToken| {
            token.record.service.id != service_id || token.record.service.version >= version
        };
        self.found.retain(|_, token| current(token));
        self.negative
            .retain(|_, entry| entry.token.as_deref().is_none_or(current));
    }

    pub fn clear(&self) {
        self.found.clear();
        self.negative.clear();
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}
