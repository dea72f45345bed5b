//! What gatepass knows about callers, as plain data: services, tokens and
//! their abilities, networks. No I/O and no decisions; every layer above
//! reads these types.

mod abilities;
mod nets;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::token::TokenDigest;
pub use abilities::{
    Abilities, Ability, AbilityMatching, InvalidAbility, Requirements, parse_ability_list,
};
pub use nets::{InvalidNet, NetList};

/// A calling system, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub id: i64,
    /// Bumped on every change that can alter a decision (cache ordering).
    pub version: i64,
    pub name: String,
    pub is_active: bool,
    pub ip_allowlist: NetList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            _ => None,
        }
    }
}

/// A token row together with its service: everything a decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    /// Bumped on every change that can alter a decision (cache ordering).
    pub version: i64,
    pub digest: TokenDigest,
    pub kind: TokenKind,
    /// Shared by every cached token with the same abilities.
    pub abilities: Arc<Abilities>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Shared by every cached token of the service.
    pub service: Arc<ServiceRecord>,
    /// Uses seen by this process, not yet written.
    pub last_use: LastUse,
}

/// The last second this process saw a token used, and whether that use
/// still waits to be written to `last_used_at` (batched, SPEC §6): one
/// word in the record, so that every cached copy shares it and a hot token
/// costs one relaxed load per check. Not part of what the token is: a copy
/// starts unused, and records compare equal whatever it says.
#[derive(Debug, Default)]
pub struct LastUse(AtomicI64);

const USE_PENDING: i64 = 1;

impl LastUse {
    /// Notes a use at `now_secs`. True when the token was not yet waiting
    /// to be written, i.e. when the caller must queue it.
    pub fn mark(&self, now_secs: i64) -> bool {
        let marked = (now_secs << 1) | USE_PENDING;
        if self.0.load(Ordering::Relaxed) == marked {
            return false;
        }
        self.0.swap(marked, Ordering::AcqRel) & USE_PENDING == 0
    }

    /// Takes the pending use for writing: the last second it was used.
    pub fn take(&self) -> i64 {
        self.0.fetch_and(!USE_PENDING, Ordering::AcqRel) >> 1
    }
}

impl Clone for LastUse {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for LastUse {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LastUse {}

/// A service name: 1 to 64 characters from `[a-z0-9._-]`, starting with a
/// letter or digit, so it is safe in headers, logs and shell scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid service name {0:?}: use 1 to 64 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit"
)]
pub struct InvalidServiceName(pub String);

impl ServiceName {
    pub fn parse(name: &str) -> Result<Self, InvalidServiceName> {
        let bytes = name.as_bytes();
        let valid = (1..=64).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes.iter().all(|&b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidServiceName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::LastUse;

    #[test]
    fn a_use_is_queued_once_until_taken() {
        let last_use = LastUse::default();
        assert!(last_use.mark(100));
        assert!(!last_use.mark(100));
        assert!(!last_use.mark(101), "still pending: not queued twice");
        assert_eq!(last_use.take(), 101);
        assert!(last_use.clone().mark(102), "a copy starts unused");
        assert!(last_use.mark(101), "taken: the next use is queued again");
        assert_eq!(last_use.take(), 101);
        assert!(LastUse::default() == last_use);
    }
}
