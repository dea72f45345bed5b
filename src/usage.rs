//! `last_used_at` without a write per request (SPEC §6): checks mark the
//! cached token, a background task writes every token used since the last
//! flush in one statement per interval, whatever the load, and once more on
//! shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::metrics::{Metrics, Operation};
use crate::model::TokenRecord;
use crate::store::Store;

/// Hands used tokens to the flusher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    queue: mpsc::UnboundedSender<Arc<TokenRecord>>,
}

impl UsageRecorder {
    /// Marks a use. Only a token's first use since the last flush is
    /// queued; the rest are one relaxed atomic load. Never blocks.
    pub fn record(&self, token: &Arc<TokenRecord>, now_secs: i64) {
        if token.last_use.mark(now_secs) {
            let _ = self.queue.send(token.clone());
        }
    }
}

/// Counts of what the flusher has written, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub statements: u64,
    pub rows: u64,
    /// Tokens whose last use the final flush on shutdown could not write.
    pub lost: u64,
}

/// Creates a recorder and the flusher task that drains it.
pub fn start(
    store: Store,
    interval: Duration,
    final_bound: Duration,
    shutdown: watch::Receiver<bool>,
    stats: watch::Sender<FlushStats>,
    metrics: Metrics,
) -> (UsageRecorder, tokio::task::JoinHandle<()>) {
    let (queue, used) = mpsc::unbounded_channel();
    let flusher = Flusher {
        store,
        metrics,
        used,
        pending: HashMap::new(),
        stats,
    };
    let task = tokio::spawn(flusher.run(interval, final_bound, shutdown));
    (UsageRecorder { queue }, task)
}

struct Flusher {
    store: Store,
    metrics: Metrics,
    used: mpsc::UnboundedReceiver<Arc<TokenRecord>>,
    /// Token id → last use (unix seconds), kept across failed flushes.
    pending: HashMap<i64, i64>,
    stats: watch::Sender<FlushStats>,
}

impl Flusher {
    /// Flushes every `interval` until `shutdown`, then once more within
    /// `final_bound`; what that last flush cannot write is logged as lost.
    async fn run(
        mut self,
        interval: Duration,
        final_bound: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => { self.flush().await; }
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            }
        }
        let written = tokio::time::timeout(final_bound, self.flush()).await;
        if !matches!(written, Ok(true)) {
            let lost = (self.pending.len() + self.used.len()) as u64;
            self.stats.send_modify(|stats| stats.lost += lost);
            tracing::warn!(
                tokens = lost,
                "last-used times lost on shutdown: the database did not take the final flush in time"
            );
        }
    }

    /// Writes what is pending; true when nothing is left pending.
    async fn flush(&mut self) -> bool {
        while let Ok(token) = self.used.try_recv() {
            let used_at = token.last_use.take();
            let latest = self.pending.entry(token.id).or_insert(used_at);
            *latest = (*latest).max(used_at);
        }
        if self.pending.is_empty() {
            return true;
        }
        let uses: Vec<(i64, DateTime<Utc>)> = self
            .pending
            .iter()
            .filter_map(|(&id, &secs)| DateTime::from_timestamp(secs, 0).map(|at| (id, at)))
            .collect();
        let started = std::time::Instant::now();
        let written = self.store.record_last_used(&uses).await;
        self.metrics
            .record_store(Operation::LastUsedFlush, started.elapsed(), written.is_ok());
        match written {
            Ok(rows) => {
                self.pending.clear();
                self.metrics.record_flush(rows);
                self.stats.send_modify(|stats| {
                    stats.statements += 1;
                    stats.rows += rows;
                });
                true
            }
            // Kept for the next interval; bounded by the number of tokens.
            Err(error) => {
                tracing::warn!(%error, tokens = uses.len(), "cannot record last-used times; will retry");
                false
            }
        }
    }
}
