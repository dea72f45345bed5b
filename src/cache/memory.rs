//! L1: the in-process cache. A hit is two hash lookups' worth of work and no
//! I/O: quick_cache's sharded map, an `Arc` clone and a clock comparison.
//!
//! Found tokens and "no such token" answers live in separate bounded caches,
//! so a flood of junk ids can only churn the negative one. Expired tokens
//! are kept with the negatives: answering `token_expired` from memory keeps
//! a client retrying an expired token off the database, and no positive
//! entry outlives its token's `expires_at`.

use std::sync::Arc;

use quick_cache::sync::Cache;

use crate::model::TokenRecord;
use crate::token::{TokenDigest, TokenKey};

/// A token as cached: the shared record and when it was read. Sixteen
/// bytes in the cache's slot; the record is the entry's one allocation.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub record: Arc<TokenRecord>,
    /// When the record was read from the database or Redis (unix ms).
    pub fetched_ms: i64,
}

impl CachedToken {
    pub fn new(record: TokenRecord, fetched_ms: i64) -> Self {
        Self {
            record: Arc::new(record),
            fetched_ms,
        }
    }

    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.record
            .expires_at
            .is_some_and(|expires| expires.timestamp_millis() <= now_ms)
    }

    /// Whether both were filled from the same read.
    fn same_fill(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.record, &other.record)
    }
}

/// What L1 knows about a key.
#[derive(Debug)]
pub enum Hit {
    /// Cached and within its TTL.
    Fresh(CachedToken),
    /// Known absent (`None`) or expired (`Some`), within the negative TTL.
    Negative(Option<CachedToken>),
    /// Cached but past its TTL: refetch, or serve if the database is down.
    Stale(CachedToken),
    Miss,
}

#[derive(Debug, Clone)]
struct NegativeEntry {
    token: Option<CachedToken>,
    cached_ms: i64,
}

#[derive(Debug)]
pub struct Memory {
    found: Keyed<CachedToken>,
    negative: Keyed<NegativeEntry>,
    negative_ttl_ms: i64,
}

/// One cache per key shape, so that an entry for a token with an id (nearly
/// all of them) is keyed by 8 bytes, not by a 40-byte enum.
#[derive(Debug)]
struct Keyed<V: Clone> {
    by_id: Cache<i64, V>,
    by_digest: Cache<TokenDigest, V>,
}

impl<V: Clone> Keyed<V> {
    /// Each shape may fill `capacity`: memory is taken as entries arrive.
    fn new(capacity: usize) -> Self {
        Self {
            by_id: Cache::new(capacity),
            by_digest: Cache::new(capacity),
        }
    }

    fn get(&self, key: &TokenKey) -> Option<V> {
        match key {
            TokenKey::Id(id) => self.by_id.get(id),
            TokenKey::Digest(digest) => self.by_digest.get(digest),
        }
    }

    fn insert(&self, key: TokenKey, value: V) {
        match key {
            TokenKey::Id(id) => self.by_id.insert(id, value),
            TokenKey::Digest(digest) => self.by_digest.insert(digest, value),
        }
    }

    fn remove(&self, key: &TokenKey) {
        match key {
            TokenKey::Id(id) => drop(self.by_id.remove(id)),
            TokenKey::Digest(digest) => drop(self.by_digest.remove(digest)),
        }
    }

    fn remove_if(&self, key: &TokenKey, condition: impl FnOnce(&V) -> bool) {
        match key {
            TokenKey::Id(id) => drop(self.by_id.remove_if(id, condition)),
            TokenKey::Digest(digest) => drop(self.by_digest.remove_if(digest, condition)),
        }
    }

    fn retain(&self, keep: impl Fn(&V) -> bool) {
        self.by_id.retain(|_, value| keep(value));
        self.by_digest.retain(|_, value| keep(value));
    }

    fn clear(&self) {
        self.by_id.clear();
        self.by_digest.clear();
    }

    fn len(&self) -> usize {
        self.by_id.len() + self.by_digest.len()
    }
}

impl Memory {
    pub fn new(capacity: usize, negative_capacity: usize, negative_ttl_ms: i64) -> Self {
        Self {
            found: Keyed::new(capacity.max(1)),
            negative: Keyed::new(negative_capacity.max(1)),
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
    pub fn put(&self, key: TokenKey, token: Option<CachedToken>, now_ms: i64) {
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
    pub fn remove_fill(&self, key: &TokenKey, token: &Option<CachedToken>) {
        match token {
            Some(token) => {
                self.found.remove_if(key, |cached| cached.same_fill(token));
                self.negative.remove_if(key, |cached| {
                    cached.token.as_ref().is_some_and(|t| t.same_fill(token))
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
        self.found.retain(|token| current(token));
        self.negative
            .retain(|entry| entry.token.as_ref().is_none_or(current));
    }

    pub fn clear(&self) {
        self.found.clear();
        self.negative.clear();
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.len() == 0
    }
}
