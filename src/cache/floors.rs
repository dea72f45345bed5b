//! Version floors: what keeps a slow cache fill from resurrecting a token.
//!
//! Every change notification raises the floor of what it touched to the
//! change's version. A fill compares what it read against the floors both
//! before and after it writes a cache entry; an invalidation raises the
//! floor *before* it drops entries. Whichever order the two interleave in,
//! an entry read before the change is either refused or dropped. Floors
//! outlive the L2 TTL, so nothing older can still be cached anywhere.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::TokenRecord;
use crate::token::TokenKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Token(TokenKey),
    Service(i64),
    /// Everything (a truncate): no token or service older than this.
    All,
}

#[derive(Debug, Default)]
pub struct Floors {
    /// Subject → (lowest acceptable version, when the floor was raised).
    floors: Mutex<HashMap<Subject, (i64, i64)>>,
}

impl Floors {
    pub fn raise_token(&self, key: TokenKey, version: i64, now_ms: i64) {
        self.raise(Subject::Token(key), version, now_ms);
    }

    pub fn raise_service(&self, id: i64, version: i64, now_ms: i64) {
        self.raise(Subject::Service(id), version, now_ms);
    }

    pub fn raise_all(&self, version: i64, now_ms: i64) {
        self.raise(Subject::All, version, now_ms);
    }

    fn raise(&self, subject: Subject, version: i64, now_ms: i64) {
        let mut floors = self.lock();
        let floor = floors.entry(subject).or_insert((version, now_ms));
        if version >= floor.0 {
            *floor = (version, now_ms);
        }
    }

    /// Whether `record`, found under `key`, is at least as new as every
    /// change announced for it.
    pub fn admits(&self, key: TokenKey, record: &TokenRecord) -> bool {
        let floors = self.lock();
        let below = |subject: Subject, version: i64| {
            floors
                .get(&subject)
                .is_some_and(|&(floor, _)| version < floor)
        };
        let newest = record.version.max(record.service.version);
        !(below(Subject::Token(key), record.version)
            || below(Subject::Token(TokenKey::Id(record.id)), record.version)
            || below(Subject::Service(record.service.id), record.service.version)
            || below(Subject::All, newest))
    }

    /// Whether "no such token" may be believed for `key`: not if the token
    /// was created (or changed) recently.
    pub fn admits_absent(&self, key: TokenKey) -> bool {
        !self.lock().contains_key(&Subject::Token(key))
    }

    /// Forgets floors raised before `before_ms`.
    pub fn prune(&self, before_ms: i64) {
        self.lock()
            .retain(|_, &mut (_, raised)| raised >= before_ms);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, (i64, i64)>> {
        // Every critical section is one map operation: a panic elsewhere
        // cannot leave the map half-updated.
        self.floors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
