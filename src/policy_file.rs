//! The route policy file: loaded at start-up (a bad file refuses to
//! start), then re-read when it changes, keeping the policy in force when
//! the new file is bad. The rules themselves are [`crate::decision::policy`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::decision::policy::Policy;
use crate::shutdown::stopped;

/// How often the file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

/// Reads and compiles a policy file.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let error = |message: String| PolicyError {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    Policy::parse(&text).map_err(error)
}

/// The live policy: read on every check without a lock, swapped whole on
/// reload. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    current: Arc<ArcSwap<Policy>>,
    reload_failures: Arc<AtomicU64>,
    path: PathBuf,
}

impl PolicyHandle {
    /// Loads the file; an invalid file is an error (start-up refuses it).
    pub fn open(path: &Path) -> Result<Self, PolicyError> {
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(load(path)?)),
            reload_failures: Arc::default(),
            path: path.to_owned(),
        })
    }

    pub fn current(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.current.load()
    }

    /// Reloads that were refused because the new file was invalid.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Re-reads the file whenever its modification time or size changes,
    /// until `shutdown`. A bad file keeps the previous policy in force.
    pub async fn watch(self, mut shutdown: watch::Receiver<bool>) {
        let mut seen = fingerprint(&self.path);
        let mut ticks = tokio::time::interval(RELOAD_EVERY);
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => return,
                _ = ticks.tick() => {}
            }
            let now = fingerprint(&self.path);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.path) {
                Ok(policy) => {
                    tracing::info!(path = %self.path.display(), rules = policy.rule_count(), "route policy reloaded");
                    self.current.store(Arc::new(policy));
                }
                Err(error) => {
                    self.reload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, "route policy not reloaded; keeping the previous one");
                }
            }
        }
    }
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}
