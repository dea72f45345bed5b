//! Polling a trigger-written change log (SQLite, MySQL: no LISTEN/NOTIFY).
//! Rows are `(id, subject, row_id, version, token_hash)`; ids grow, but on
//! a database with concurrent writers a row can commit after a row with a
//! higher id was read. So an id skipped over is waited for (re-read on
//! every poll) for [`GAP_WAIT`] before it counts as a rolled-back write.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use tokio::sync::watch;

use super::StoreError;
use super::feed::{self, Change};
use crate::token::TokenDigest;

/// How often the log is read: well inside the one-second bound.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long a skipped id is waited for: longer than any transaction that
/// writes tokens should stay open.
const GAP_WAIT: Duration = Duration::from_secs(30);
/// Polls between two deletions of old log rows.
const PRUNE_EVERY: u64 = 10_000;
/// Rows read per poll at most.
pub const LOG_PAGE: i64 = 1_000;

/// One row of the log.
pub type LogRow = (i64, String, i64, i64, Option<Vec<u8>>);

/// Reads the rows with an id above its argument, in id order, at most
/// [`LOG_PAGE`].
pub type ReadAfter = Box<dyn Fn(i64) -> BoxFuture<'static, Result<Vec<LogRow>, StoreError>> + Send>;
/// Deletes log rows old enough that no feed still needs them.
pub type Prune = Box<dyn Fn() -> BoxFuture<'static, Result<(), StoreError>> + Send>;

/// The `changes` method of a backend with a change log: subscribes after
/// the log's current end, reads it with `$read` (rows after one
/// parameter, in id order) and prunes it with each of `$prune`.
macro_rules! changes_from_log {
    (read: $read:literal, prune: [$($prune:literal),+ $(,)?] $(,)?) => {
        /// Starts reading the change log after its current end.
        pub async fn changes(&self) -> Result<PolledChanges, StoreError> {
            let last: Option<i64> = self
                .db
                .run(async |conn| {
                    sqlx::query_scalar("SELECT max(id) FROM gatepass_changes")
                        .fetch_one(conn)
                        .await
                })
                .await?;
            let (reader, pruner) = (self.db.clone(), self.db.clone());
            let read_after: ReadAfter = Box::new(move |after| {
                let db = reader.clone();
                Box::pin(async move {
                    db.lookup(async |conn| {
                        sqlx::query_as($read)
                            .bind(after)
                            .bind(super::changelog::LOG_PAGE)
                            .fetch_all(conn)
                            .await
                    })
                    .await
                })
            });
            let prune: Prune = Box::new(move || {
                let db = pruner.clone();
                Box::pin(async move {
                    db.run(async |conn| {
                        $(sqlx::query($prune).execute(&mut *conn).await?;)+
                        Ok(())
                    })
                    .await
                })
            });
            Ok(PolledChanges::new(last.unwrap_or(0), read_after, prune))
        }
    };
}

pub(super) use changes_from_log;

pub struct PolledChanges {
    read_after: ReadAfter,
    prune: Prune,
    /// Every id up to here was read or given up on, except `waiting`.
    last_seen: i64,
    /// Skipped ids, with when they were first missed.
    waiting: BTreeMap<i64, Instant>,
    pending: VecDeque<Change>,
    /// When the poll whose changes are in `pending` began.
    pending_from_poll_at_ms: Option<i64>,
    polls: u64,
}

impl std::fmt::Debug for PolledChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledChanges")
            .field("last_seen", &self.last_seen)
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

impl PolledChanges {
    /// Starts after `last_seen`, the end of the log when subscribing.
    pub fn new(last_seen: i64, read_after: ReadAfter, prune: Prune) -> Self {
        Self {
            read_after,
            prune,
            last_seen,
            waiting: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_from_poll_at_ms: None,
            polls: 0,
        }
    }

    /// The next change, polling the log until there is one. A poll sees
    /// every change committed before it began: once all it found have been
    /// returned (the caller asks again), `delivered_through` moves to then.
    pub async fn next(
        &mut self,
        delivered_through: &watch::Sender<i64>,
    ) -> Result<Change, StoreError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(change);
            }
            if let Some(began_ms) = self.pending_from_poll_at_ms.take() {
                feed::advance(delivered_through, began_ms);
            }
            let from = self
                .waiting
                .keys()
                .next()
                .map_or(self.last_seen, |first| first - 1);
            let began_ms = feed::now_ms();
            let rows = (self.read_after)(from).await?;
            // A full page may have left later rows unread: no proof then.
            let complete = (rows.len() as i64) < LOG_PAGE;
            self.absorb(rows, Instant::now());
            if self.pending.is_empty() {
                if complete {
                    feed::advance(delivered_through, began_ms);
                }
                self.polls += 1;
                if self.polls.is_multiple_of(PRUNE_EVERY) {
                    (self.prune)().await?;
                }
                tokio::time::sleep(POLL_EVERY).await;
            } else if complete {
                self.pending_from_poll_at_ms = Some(began_ms);
            }
        }
    }

    fn absorb(&mut self, rows: Vec<LogRow>, now: Instant) {
        for (id, subject, row_id, version, hash) in rows {
            let awaited = self.waiting.remove(&id).is_some();
            if id <= self.last_seen && !awaited {
                continue;
            }
            for skipped in self.last_seen + 1..id {
                self.waiting.insert(skipped, now);
            }
            self.last_seen = self.last_seen.max(id);
            // Bytes (the native schema) or hex text (Laravel's `token`).
            let digest = hash.as_deref().and_then(|hash| {
                TokenDigest::from_bytes(hash).or_else(|| {
                    std::str::from_utf8(hash)
                        .ok()
                        .and_then(TokenDigest::from_hex)
                })
            });
            self.pending.push_back(match (subject.as_str(), digest) {
                ("t", Some(digest)) => Change::Token {
                    id: row_id,
                    version,
                    digest,
                },
                ("s", _) => Change::Service {
                    id: row_id,
                    version,
                },
                _ => Change::Everything { version },
            });
        }
        self.waiting
            .retain(|_, missed| now.duration_since(*missed) < GAP_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> PolledChanges {
        let read_after: ReadAfter = Box::new(|_| Box::pin(async { Ok(Vec::new()) }));
        let prune: Prune = Box::new(|| Box::pin(async { Ok(()) }));
        PolledChanges::new(10, read_after, prune)
    }

    fn row(id: i64) -> LogRow {
        (id, "s".into(), id * 100, id, None)
    }

    fn versions(log: &mut PolledChanges) -> Vec<i64> {
        log.pending
            .drain(..)
            .map(|change| match change {
                Change::Service { version, .. } => version,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_row_that_commits_late_is_still_read_once() {
        let mut log = log();
        let now = Instant::now();
        log.absorb(vec![row(11), row(13)], now);
        assert_eq!(versions(&mut log), [11, 13]);
        assert!(log.waiting.contains_key(&12));
        // The next read starts below the gap and sees 11 and 13 again.
        log.absorb(vec![row(11), row(12), row(13)], now);
        assert_eq!(versions(&mut log), [12]);
        assert!(log.waiting.is_empty());
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up_on() {
        let mut log = log();
        let now = Instant::now();
        log.absorb(vec![row(12)], now);
        log.absorb(vec![row(12)], now + GAP_WAIT);
        assert!(log.waiting.is_empty());
        assert_eq!(versions(&mut log), [12]);
    }
}
