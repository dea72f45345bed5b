//! The change feed: what the database announces (Postgres notifications,
//! or the SQLite change log polled), read as [`Change`]s, the heartbeat
//! that tells a silent feed from a quiet one, and how far the feed is
//! known to have delivered everything.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::StoreError;
use super::changelog::PolledChanges;
use super::postgres::PostgresStore;
use crate::token::TokenDigest;

/// A change that can alter decisions, as the database announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Token {
        id: i64,
        version: i64,
        digest: TokenDigest,
    },
    Service {
        id: i64,
        version: i64,
    },
    /// Anything may have changed (a table was truncated, or a payload could
    /// not be read); nothing older than `version` may be believed.
    Everything {
        version: i64,
    },
}

impl Change {
    /// Reads a trigger payload: `t:<id>:<version>:<hex>`, `s:<id>:<version>`
    /// or `flush:<version>`. Anything unreadable counts as
    /// [`Change::Everything`] with no version floor.
    pub fn parse(payload: &str) -> Change {
        let mut parts = payload.split(':');
        let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("t"), Some(id), Some(version), Some(hex)) => {
                match (id.parse(), version.parse(), TokenDigest::from_hex(hex)) {
                    (Ok(id), Ok(version), Some(digest)) => Some(Change::Token {
                        id,
                        version,
                        digest,
                    }),
                    _ => None,
                }
            }
            (Some("s"), Some(id), Some(version), None) => match (id.parse(), version.parse()) {
                (Ok(id), Ok(version)) => Some(Change::Service { id, version }),
                _ => None,
            },
            (Some("flush"), Some(version), None, None) => version
                .parse()
                .ok()
                .map(|version| Change::Everything { version }),
            _ => None,
        };
        parsed.unwrap_or(Change::Everything { version: 0 })
    }
}

/// A live subscription to [`Change`]s: Postgres notifications, or the
/// SQLite change log.
#[derive(Debug)]
pub struct ChangeFeed {
    feed: Feed,
    /// Unix ms before which every committed change has been returned by
    /// [`ChangeFeed::next`] (0: nothing proven yet).
    delivered_through: watch::Sender<i64>,
}

#[derive(Debug)]
enum Feed {
    Postgres {
        listener: Box<sqlx::postgres::PgListener>,
        heartbeat: Heartbeat,
    },
    /// A trigger-written log, polled (SQLite, MySQL).
    Polled(PolledChanges),
}

/// A Postgres listener's socket can go silent without an error (a
/// failover, a dead NAT entry): notifications would just stop. So the
/// feed notifies a channel of its own every second and counts itself lost
/// when its own notifications stop arriving. Notifications arrive in
/// commit order, so a heartbeat heard back, which carries the time it was
/// sent, also proves every change committed before then was delivered.
#[derive(Debug)]
struct Heartbeat {
    store: PostgresStore,
    channel: String,
    last_heard: std::time::Instant,
}

/// How often the feed proves it still delivers, and how long it may stay
/// silent before it counts as lost.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SILENT_FOR: Duration = Duration::from_millis(2_500);
/// The least time between two [`ChangeFeed::sync`] calls while lookups
/// wait for the feed to catch up with them: at most 20 heartbeats a second,
/// whatever the number of lookups waiting.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

impl ChangeFeed {
    /// The next change. `Ok(None)` or an error means the feed was lost and
    /// changes may have been missed: drop it and subscribe again.
    pub async fn next(&mut self) -> Result<Option<Change>, StoreError> {
        match &mut self.feed {
            Feed::Postgres {
                listener,
                heartbeat,
            } => loop {
                let Some(notification) = listener.try_recv().await? else {
                    return Ok(None);
                };
                if notification.channel() == heartbeat.channel {
                    heartbeat.last_heard = std::time::Instant::now();
                    if let Ok(sent_ms) = notification.payload().parse() {
                        advance(&self.delivered_through, sent_ms);
                    }
                    continue;
                }
                return Ok(Some(Change::parse(notification.payload())));
            },
            Feed::Polled(changes) => changes.next(&self.delivered_through).await.map(Some),
        }
    }

    /// Follows the time before which every committed change has been
    /// delivered.
    pub fn delivered_through(&self) -> watch::Receiver<i64> {
        self.delivered_through.subscribe()
    }

    /// Asks for proof of delivery soon: a heartbeat now (Postgres); a
    /// polled log proves it with every poll anyway.
    pub fn sync(&self) {
        if let Feed::Postgres { heartbeat, .. } = &self.feed {
            heartbeat.send();
        }
    }

    /// Called every [`HEARTBEAT_EVERY`]: false when the feed has gone
    /// silent and must be dropped. Sends the next heartbeat off the
    /// caller's path. (A polled change log needs none: every poll is a
    /// bounded query whose failure ends the feed.)
    pub fn pulse(&mut self) -> bool {
        match &mut self.feed {
            Feed::Postgres { heartbeat, .. } => {
                if heartbeat.last_heard.elapsed() > SILENT_FOR {
                    return false;
                }
                heartbeat.send();
                true
            }
            Feed::Polled(_) => true,
        }
    }
}

impl Heartbeat {
    /// Notifies our channel with the time, off the caller's path.
    fn send(&self) {
        let (store, channel) = (self.store.clone(), self.channel.clone());
        let sent_ms = now_ms().to_string();
        tokio::spawn(async move {
            let _ = store.notify(&channel, &sent_ms).await;
        });
    }
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Moves a time through which something is complete forward, never back.
pub fn advance(delivered_through: &watch::Sender<i64>, through_ms: i64) {
    delivered_through.send_if_modified(|current| {
        let later = through_ms > *current;
        if later {
            *current = through_ms;
        }
        later
    });
}

/// A channel name no other instance uses, so heartbeats cost every
/// instance only its own.
fn heartbeat_channel() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let suffix: String = (0..16)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect();
    format!("gatepass_heartbeat_{suffix}")
}

impl ChangeFeed {
    pub(super) async fn postgres(store: &PostgresStore) -> Result<Self, StoreError> {
        let channel = heartbeat_channel();
        let listener = store.listen(&channel).await?;
        Ok(Self {
            feed: Feed::Postgres {
                listener: Box::new(listener),
                heartbeat: Heartbeat {
                    store: store.clone(),
                    channel,
                    last_heard: std::time::Instant::now(),
                },
            },
            delivered_through: watch::Sender::new(0),
        })
    }

    pub(super) fn polled(changes: PolledChanges) -> Self {
        Self {
            feed: Feed::Polled(changes),
            delivered_through: watch::Sender::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_payloads_parse_and_junk_flushes_everything() {
        let digest = TokenDigest::of(b"x");
        let hex = digest.to_hex();
        assert_eq!(
            Change::parse(&format!("t:12:99:{hex}")),
            Change::Token {
                id: 12,
                version: 99,
                digest
            }
        );
        assert_eq!(
            Change::parse("s:3:100"),
            Change::Service {
                id: 3,
                version: 100
            }
        );
        assert_eq!(
            Change::parse("flush:77"),
            Change::Everything { version: 77 }
        );
        for junk in ["flush", "", "t:1:2", "s:x:1", "t:1:2:zz", "s:1:2:3"] {
            assert_eq!(
                Change::parse(junk),
                Change::Everything { version: 0 },
                "{junk}"
            );
        }
    }
}
