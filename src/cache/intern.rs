//! Shares what many cached tokens have in common, the service record and
//! the set of abilities, so a million tokens of one service hold one copy
//! of each. Used when a fill enters L1, never on a hit.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use crate::model::{Abilities, ServiceRecord, TokenRecord};

#[derive(Debug, Default)]
pub struct Interner {
    /// By (service id, version): the version changes with the content.
    services: Mutex<HashMap<(i64, i64), Weak<ServiceRecord>>>,
    /// By the sorted header value, which names the set.
    abilities: Mutex<HashMap<String, Weak<Abilities>>>,
}

impl Interner {
    pub fn intern(&self, mut record: TokenRecord) -> TokenRecord {
        let service_key = (record.service.id, record.service.version);
        record.service = share(&self.services, service_key, record.service);
        let abilities_key = record.abilities.header_value().to_owned();
        record.abilities = share(&self.abilities, abilities_key, record.abilities);
        record
    }
}

/// The live copy under `key`, or `value` as the new one.
fn share<K: Eq + Hash, V>(map: &Mutex<HashMap<K, Weak<V>>>, key: K, value: Arc<V>) -> Arc<V> {
    // One map operation per critical section: nothing can be left half done.
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return live;
    }
    // Forget copies no cached token holds any more, now and then.
    if map.len() >= 1024 && map.len().is_power_of_two() {
        map.retain(|_, copy| copy.strong_count() > 0);
    }
    map.insert(key, Arc::downgrade(&value));
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_ability_list;
    use crate::model::{NetList, TokenKind};
    use crate::token::TokenDigest;

    fn record(id: i64, service_version: i64, abilities: &str) -> TokenRecord {
        TokenRecord {
            id,
            version: 1,
            digest: TokenDigest::of(b"x"),
            kind: TokenKind::Access,
            abilities: Arc::new(Abilities::new(parse_ability_list(abilities).unwrap())),
            expires_at: None,
            revoked_at: None,
            created_at: chrono::Utc::now(),
            service: Arc::new(ServiceRecord {
                id: 3,
                version: service_version,
                name: "billing".into(),
                is_active: true,
                ip_allowlist: NetList::default(),
            }),
            last_use: Default::default(),
        }
    }

    #[test]
    fn equal_parts_are_shared_and_changed_ones_are_not() {
        let interner = Interner::default();
        let first = interner.intern(record(1, 7, "a,b"));
        let second = interner.intern(record(2, 7, "b,a"));
        assert!(Arc::ptr_eq(&first.service, &second.service));
        assert!(Arc::ptr_eq(&first.abilities, &second.abilities));
        let changed = interner.intern(record(3, 8, "a"));
        assert!(!Arc::ptr_eq(&first.service, &changed.service));
        assert!(!Arc::ptr_eq(&first.abilities, &changed.abilities));
        assert!(!changed.service.name.is_empty());
    }
}
