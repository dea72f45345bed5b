//! Which tokens exist: every token id, and a fingerprint of every digest,
//! in memory, and the time through which that is complete. A presented
//! token the index does not know, asked after a time the index is complete
//! through, does not exist: it is answered without a query, whatever its
//! shape, so junk costs the database nothing.
//!
//! Loaded from the store when the change feed connects (after subscribing,
//! so a row inserted meanwhile is either read or announced) and kept by
//! every token notification. Complete through the start of the last load,
//! and, once a load begun on the current feed has finished, through every
//! point the feed proves it has delivered everything committed before (a
//! heartbeat heard back, a poll of the change log). A token issued moments
//! ago waits for that proof (a heartbeat or a poll away) instead of being
//! refused. Rows are only ever added: a deleted token left behind costs at
//! most one lookup per negative TTL, and a reload after a lost feed adds
//! what was missed.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::time::Duration;

use roaring::RoaringTreemap;
use tokio::sync::{Notify, watch};

use crate::token::{TokenDigest, TokenKey};

/// The index. Only misses of L1 read it.
#[derive(Debug)]
pub struct Known {
    sets: RwLock<Sets>,
    /// Unix ms through which every committed token row is in `sets`; 0
    /// until the first load has finished, when nothing is known to be
    /// absent. Lookups waiting for it to pass their time subscribe.
    complete_through: watch::Sender<i64>,
    /// Raised by a lookup that starts waiting: the feed should prove what
    /// it has delivered.
    wanted: Notify,
}

impl Default for Known {
    fn default() -> Self {
        Self {
            sets: RwLock::default(),
            complete_through: watch::Sender::new(0),
            wanted: Notify::new(),
        }
    }
}

/// What the index says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    Exists,
    /// No such row was committed before the token was asked for.
    Absent,
    /// The index was not complete through the time asked in time (still
    /// loading, or the feed is down): only the database can tell.
    Unsure,
}

#[derive(Debug, Default)]
struct Sets {
    ids: RoaringTreemap,
    digests: HashSet<u64, BuildHasherDefault<Fingerprint>>,
}

impl Known {
    pub fn contains(&self, key: &TokenKey) -> bool {
        let sets = self
            .sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match key {
            TokenKey::Id(id) => sets.ids.contains(id_bits(*id)),
            TokenKey::Digest(digest) => sets.digests.contains(&fingerprint(digest)),
        }
    }

    /// Whether `key` existed when it was asked for (`asked_ms`), waiting up
    /// to `wait` for the index to be complete through that time.
    pub async fn find(&self, key: &TokenKey, asked_ms: i64, wait: Duration) -> Indexed {
        if self.contains(key) {
            return Indexed::Exists;
        }
        if *self.complete_through.borrow() < asked_ms && !wait.is_zero() {
            let mut complete = self.complete_through.subscribe();
            self.wanted.notify_one();
            let settled = complete.wait_for(|through| *through >= asked_ms || self.contains(key));
            let _ = tokio::time::timeout(wait, settled).await;
        }
        if self.contains(key) {
            Indexed::Exists
        } else if *self.complete_through.borrow() >= asked_ms {
            Indexed::Absent
        } else {
            Indexed::Unsure
        }
    }

    /// Every token row committed before `through_ms` is in the index.
    pub fn complete_through(&self, through_ms: i64) {
        crate::store::advance(&self.complete_through, through_ms);
    }

    /// Resolves when a lookup has started waiting for the index to catch
    /// up with its time (at once if one did since the last call).
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Records that a token row with this id and digest exists.
    pub fn insert(&self, id: i64, digest: &TokenDigest) {
        let mut sets = self
            .sets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sets.ids.insert(id_bits(id));
        sets.digests.insert(fingerprint(digest));
    }

    /// Adds a page of rows read from the store.
    pub fn extend(&self, rows: &[(i64, TokenDigest)]) {
        let mut sets = self
            .sets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (id, digest) in rows {
            sets.ids.insert(id_bits(*id));
            sets.digests.insert(fingerprint(digest));
        }
    }

    pub fn complete_through_ms(&self) -> i64 {
        *self.complete_through.borrow()
    }

    /// Whether a load has finished.
    pub fn is_loaded(&self) -> bool {
        *self.complete_through.borrow() > 0
    }

    /// Rows indexed (deleted ones included until a restart).
    pub fn len(&self) -> u64 {
        self.sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .ids
            .len()
    }
}

/// Ids are positive in practice; a negative one written by plain SQL
/// maps to its own distinct value.
fn id_bits(id: i64) -> u64 {
    id as u64
}

/// The first eight bytes of a SHA-256: uniformly distributed, so they are
/// their own hash, and two digests share them with odds of 1 in 2^64 (a
/// shared fingerprint only costs a lookup that finds nothing).
fn fingerprint(digest: &TokenDigest) -> u64 {
    let bytes = digest.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

/// A hasher that passes a fingerprint through unchanged.
#[derive(Debug, Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test]
    async fn nothing_is_absent_before_the_time_it_is_complete_through() {
        let known = Known::default();
        let digest = TokenDigest::of(b"secret");
        assert_eq!(
            known.find(&TokenKey::Id(1), 5, NO_WAIT).await,
            Indexed::Unsure
        );
        known.extend(&[(1, digest)]);
        assert_eq!(
            known.find(&TokenKey::Id(1), 5, NO_WAIT).await,
            Indexed::Exists
        );
        assert_eq!(
            known.find(&TokenKey::Id(2), 5, NO_WAIT).await,
            Indexed::Unsure
        );
        assert!(!known.is_loaded());
        known.complete_through(10);
        assert!(known.is_loaded());
        assert_eq!(
            known.find(&TokenKey::Id(2), 10, NO_WAIT).await,
            Indexed::Absent
        );
        assert_eq!(
            known.find(&TokenKey::Digest(digest), 10, NO_WAIT).await,
            Indexed::Exists
        );
        let other = TokenDigest::of(b"other");
        assert_eq!(
            known.find(&TokenKey::Digest(other), 10, NO_WAIT).await,
            Indexed::Absent
        );
        // Asked after the index is complete through: not known yet.
        assert_eq!(
            known.find(&TokenKey::Id(2), 11, NO_WAIT).await,
            Indexed::Unsure
        );
        known.complete_through(9);
        assert_eq!(
            known.find(&TokenKey::Id(2), 10, NO_WAIT).await,
            Indexed::Absent
        );
        known.insert(2, &other);
        assert_eq!(
            known.find(&TokenKey::Id(2), 11, NO_WAIT).await,
            Indexed::Exists
        );
        assert_eq!(known.len(), 2);
    }

    #[tokio::test]
    async fn a_lookup_waits_for_the_index_to_catch_up_with_it() {
        let known = std::sync::Arc::new(Known::default());
        known.complete_through(10);
        let waiting = {
            let known = known.clone();
            tokio::spawn(async move {
                known
                    .find(&TokenKey::Id(7), 20, Duration::from_secs(5))
                    .await
            })
        };
        // The waiting lookup asked for a proof.
        tokio::time::timeout(Duration::from_secs(5), known.wanted())
            .await
            .expect("a waiting lookup wants a proof");
        known.insert(7, &TokenDigest::of(b"new"));
        known.complete_through(25);
        assert_eq!(waiting.await.unwrap(), Indexed::Exists);

        let waiting = {
            let known = known.clone();
            tokio::spawn(async move {
                known
                    .find(&TokenKey::Id(8), 30, Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        known.complete_through(31);
        assert_eq!(waiting.await.unwrap(), Indexed::Absent);

        let started = std::time::Instant::now();
        let gave_up = known
            .find(&TokenKey::Id(9), 40, Duration::from_millis(30))
            .await;
        assert_eq!(gave_up, Indexed::Unsure);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
