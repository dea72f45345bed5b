//! Which tokens exist: every token id, and a fingerprint of every digest,
//! in memory. A presented token that is in neither is junk, or a token
//! issued moments ago whose notification has not arrived yet; the tiers
//! send only a bounded number of those to the database, so junk of any
//! shape cannot drive it at line rate.
//!
//! Loaded from the store when the change feed connects (after subscribing,
//! so a row inserted meanwhile is either read or announced) and kept by
//! every token notification. Rows are only ever added: a deleted token
//! left behind costs at most one lookup per negative TTL, and a reload
//! after a lost feed adds what was missed.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use roaring::RoaringTreemap;

use crate::token::{TokenDigest, TokenKey};

/// The index. Only misses of L1 read it.
#[derive(Debug, Default)]
pub struct Known {
    sets: RwLock<Sets>,
    /// False until the first complete load: until then nothing is
    /// known to be absent.
    loaded: AtomicBool,
}

#[derive(Debug, Default)]
struct Sets {
    ids: RoaringTreemap,
    digests: HashSet<u64, BuildHasherDefault<Fingerprint>>,
}

impl Known {
    /// `Some(false)` when `key` is known not to exist; `None` before the
    /// first load, when nothing can be said.
    pub fn contains(&self, key: &TokenKey) -> Option<bool> {
        if !self.loaded.load(Ordering::Acquire) {
            return None;
        }
        let sets = self
            .sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(match key {
            TokenKey::Id(id) => sets.ids.contains(id_bits(*id)),
            TokenKey::Digest(digest) => sets.digests.contains(&fingerprint(digest)),
        })
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

    /// Every row of the store has been added at least once.
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
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

    #[test]
    fn nothing_is_absent_until_loaded() {
        let known = Known::default();
        let digest = TokenDigest::of(b"secret");
        assert_eq!(known.contains(&TokenKey::Id(1)), None);
        known.extend(&[(1, digest)]);
        assert_eq!(known.contains(&TokenKey::Id(2)), None);
        known.mark_loaded();
        assert_eq!(known.contains(&TokenKey::Id(1)), Some(true));
        assert_eq!(known.contains(&TokenKey::Digest(digest)), Some(true));
        assert_eq!(known.contains(&TokenKey::Id(2)), Some(false));
        let other = TokenDigest::of(b"other");
        assert_eq!(known.contains(&TokenKey::Digest(other)), Some(false));
        known.insert(2, &other);
        assert_eq!(known.contains(&TokenKey::Id(2)), Some(true));
        assert_eq!(known.contains(&TokenKey::Digest(other)), Some(true));
        assert_eq!(known.len(), 2);
    }
}
