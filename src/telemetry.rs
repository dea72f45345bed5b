//! Logging, and the one place a finished check is recorded. Nothing here
//! ever sees a token's secret: checks are logged by reason, service name
//! and token id only.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use tracing_subscriber::EnvFilter;

use crate::authz::{CheckError, Decision, Verdict};
use crate::config::{LogFormat, Settings};
use crate::metrics::{Metrics, Surface};

/// Logs to stderr. `serve` logs at the configured level; the other commands
/// only warnings and errors unless a level was set explicitly.
pub fn init(settings: &Settings, serving: bool) {
    let level = if serving || std::env::var_os("GATEPASS_LOG_LEVEL").is_some() {
        settings.log_level.as_str()
    } else {
        "warn"
    };
    // A bare level keeps chatty dependencies at warn; a full directive is
    // taken as written.
    let directive = if level.contains(['=', ',']) {
        level.to_owned()
    } else {
        format!("{level},sqlx=warn,actix_server=warn")
    };
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_err() {
        eprintln!("gatepass: a logger was already installed");
    }
}

/// Records a finished check in the metrics and the log: one line per
/// denial at info (reason, surface, service and token id, never the
/// token), allows at debug, store failures at warn at most once a second.
pub fn observe_check(
    metrics: &Metrics,
    surface: Surface,
    started: Instant,
    result: &Result<Verdict, CheckError>,
) {
    let decision = result.as_ref().map(|verdict| &verdict.decision);
    metrics.record_check(surface, decision, started.elapsed());
    match result {
        Ok(verdict) => {
            let service = verdict.record.as_ref().map(|r| r.service.name.as_str());
            let token_id = verdict.record.as_ref().map(|r| r.id);
            match verdict.decision {
                Decision::Allow(_) => tracing::debug!(
                    surface = surface.as_str(),
                    service,
                    token_id,
                    "check allowed"
                ),
                Decision::Deny(reason) => tracing::info!(
                    surface = surface.as_str(),
                    reason = reason.as_str(),
                    service,
                    token_id,
                    "check denied"
                ),
            }
        }
        Err(error) => {
            static LAST_WARNING_SECS: AtomicI64 = AtomicI64::new(i64::MIN);
            let now = chrono::Utc::now().timestamp();
            let last = LAST_WARNING_SECS.load(Ordering::Relaxed);
            if last != now
                && LAST_WARNING_SECS
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(surface = surface.as_str(), %error, "check unanswerable: token store unavailable");
            }
        }
    }
}
