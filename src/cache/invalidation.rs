//! Pushes every change the database announces into the caches.
//!
//! Why Postgres `LISTEN/NOTIFY` and not Redis pub/sub: the triggers fire for
//! every writer (gatepass, the CLI, an operator's plain SQL, another
//! application), notifications are delivered on commit and in commit order,
//! and the feed needs no Redis, which is optional. When the feed is lost,
//! L1 entries count as fresh for one second only until it is back; on
//! reconnect every entry read before needs a refresh, because changes may
//! have been missed (the entries stay, to be served stale while the
//! database is unreachable).
//!
//! L1 is invalidated inline, in notification order; tombstones for L2 are
//! written by a task of their own, so a slow or dead Redis never delays
//! this instance's invalidations.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Redis, Tiers, TokenChange};
use crate::metrics::Invalidation;
use crate::store::{Change, HEARTBEAT_EVERY, SYNC_EVERY};
use crate::token::TokenKey;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true.
pub async fn run(tiers: Tiers, floor_ttl: Duration, mut shutdown: watch::Receiver<bool>) {
    let burials = tiers.redis().cloned().map(Burials::start);
    let mut retry = RETRY_MIN;
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut pulse = tokio::time::interval(HEARTBEAT_EVERY);
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let connected = tokio::select! {
            _ = crate::shutdown::stopped(&mut shutdown) => return,
            feed = tiers.store().changes() => feed,
        };
        let mut feed = match connected {
            Ok(feed) => feed,
            Err(error) => {
                if retry == RETRY_MIN {
                    tracing::warn!(%error, "cannot subscribe to changes; retrying");
                }
                tokio::select! {
                    _ = crate::shutdown::stopped(&mut shutdown) => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        // Whatever changed while we were not listening is unknown.
        tiers.distrust_memory(super::redis::now_ms());
        // Subscribed first: a token inserted from here on is announced, one
        // inserted before is read. Off the feed's path, so invalidations
        // keep flowing while a large table loads. What the feed delivers
        // completes the index only once a load begun on it has finished.
        let mut loading = tokio::spawn(load_index(tiers.clone()));
        let (mut load_finished, mut index_loaded) = (false, false);
        let mut delivered = feed.delivered_through();
        // A lookup waiting for the index asks for a proof of delivery: a
        // heartbeat at once, or SYNC_EVERY after the last one, which every
        // lookup waiting by then shares.
        let (mut synced_at, mut sync_due) = (None::<Instant>, None::<Instant>);
        tiers.set_feed_connected(true);
        retry = RETRY_MIN;
        tracing::info!("listening for token and service changes");
        loop {
            tokio::select! {
                _ = crate::shutdown::stopped(&mut shutdown) => return,
                loaded = &mut loading, if !load_finished => {
                    load_finished = true;
                    index_loaded = loaded.is_ok();
                }
                Ok(()) = delivered.changed(), if index_loaded => {
                    tiers.index_complete_through(*delivered.borrow_and_update());
                }
                _ = tiers.index_wanted(), if index_loaded && sync_due.is_none() => {
                    sync_due = Some(synced_at.map_or_else(Instant::now, |at| at + SYNC_EVERY));
                }
                _ = sleep_until_due(sync_due) => {
                    feed.sync();
                    (synced_at, sync_due) = (Some(Instant::now()), None);
                }
                _ = prune.tick() => {
                    let ttl_ms = i64::try_from(floor_ttl.as_millis()).unwrap_or(i64::MAX);
                    tiers.prune_floors(super::redis::now_ms().saturating_sub(ttl_ms));
                }
                _ = pulse.tick() => if !feed.pulse() {
                    tiers.set_feed_connected(false);
                    tracing::warn!("the change feed went silent; reconnecting");
                    break;
                },
                change = feed.next() => match change {
                    Ok(Some(change)) => apply(&tiers, burials.as_ref(), change),
                    Ok(None) | Err(_) => {
                        tiers.set_feed_connected(false);
                        tracing::warn!("lost the change feed; reconnecting");
                        break;
                    }
                },
            }
        }
        loading.abort();
    }
}

/// Sleeps until `due`; never resolves without one.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Loads the index of existing tokens, retrying until it has.
async fn load_index(tiers: Tiers) {
    let mut retry = RETRY_MIN;
    loop {
        let started = std::time::Instant::now();
        match tiers.load_index().await {
            Ok(rows) => {
                tracing::info!(rows, took = ?started.elapsed(), "index of existing tokens loaded");
                return;
            }
            Err(error) => {
                if retry == RETRY_MIN {
                    tracing::warn!(%error, "cannot load the index of existing tokens; retrying");
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

fn apply(tiers: &Tiers, burials: Option<&Burials>, change: Change) {
    let now_ms = super::redis::now_ms();
    tiers.metrics().record_invalidation(match change {
        Change::Token { .. } => Invalidation::Token,
        Change::Service { .. } => Invalidation::Service,
        Change::Everything { .. } => Invalidation::Everything,
    });
    match change {
        Change::Token {
            id,
            version,
            digest,
        } => {
            let keys = tiers.invalidate_token(
                TokenChange {
                    id,
                    version,
                    digest,
                },
                now_ms,
            );
            if let Some(burials) = burials {
                for key in keys {
                    burials.bury(key, version);
                }
            }
        }
        Change::Service { id, version } => {
            tiers.invalidate_service(id, version, now_ms);
            if let Some(burials) = burials.cloned() {
                // Tombstone the service's tokens in L2, off the feed's path.
                let store = tiers.store().clone();
                tokio::spawn(async move {
                    match store.token_keys_of_service(id).await {
                        Ok(keys) => {
                            for (token_id, digest) in keys {
                                burials.bury(TokenKey::Id(token_id), version);
                                burials.bury(TokenKey::Digest(digest), version);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, service_id = id, "cannot list a changed service's tokens")
                        }
                    }
                });
            }
        }
        Change::Everything { version } => tiers.invalidate_everything(version, now_ms),
    }
}

/// Tombstones waiting to be written to Redis, in order, by one task. The
/// queue is unbounded but each entry is a key and a version, and the task
/// drains it as fast as Redis answers (or as fast as the breaker skips it).
#[derive(Debug, Clone)]
struct Burials {
    queue: mpsc::UnboundedSender<(TokenKey, i64)>,
}

impl Burials {
    fn start(redis: Redis) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<(TokenKey, i64)>();
        tokio::spawn(async move {
            while let Some((key, version)) = pending.recv().await {
                redis.bury(key, version).await;
            }
        });
        Self { queue }
    }

    fn bury(&self, key: TokenKey, version: i64) {
        let _ = self.queue.send((key, version));
    }
}
