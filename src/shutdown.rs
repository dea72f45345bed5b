//! Stopping: the stop signal, the shutdown flag every background task
//! watches, and the drain that counts requests in flight on every surface.
//! Every layer may import it; it imports nothing of gatepass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Requests in flight on every surface, and whether gatepass is draining.
/// Shared by the listeners: HTTP wraps every request in it (as actix-web
/// middleware), gRPC every `Check`.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    inner: Arc<DrainState>,
}

#[derive(Debug, Default)]
struct DrainState {
    in_flight: AtomicUsize,
    draining: AtomicBool,
}

/// How long a drain lasts at least: a request a client wrote just before
/// the signal may still sit unread in its socket.
const DRAIN_AT_LEAST: Duration = Duration::from_millis(250);

impl Drain {
    /// Counts a request until the guard is dropped.
    pub fn enter(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            state: self.inner.clone(),
        }
    }

    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Starts draining, then waits until nothing has been in flight at
    /// some moment after [`DRAIN_AT_LEAST`], or until `deadline`.
    pub(crate) async fn until_quiet(&self, deadline: tokio::time::Instant) {
        self.inner.draining.store(true, Ordering::Release);
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + DRAIN_AT_LEAST)).await;
        while self.inner.in_flight.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<DrainState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// SIGTERM and SIGINT, listened for from the moment this is created: install
/// it before announcing that gatepass serves, so a stop signal sent right
/// after the announcement is handled, not fatal.
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn received(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
