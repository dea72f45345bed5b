//! Logging, and the one place a finished check is recorded. Nothing here
//! ever sees a token's secret: checks are logged by reason, service name
//! and token id only.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::check::{CheckError, Verdict};
use crate::config::{LogFormat, Settings};
use crate::decision::Decision;
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
    // taken as written. Below debug, actix's reports of clients that sent
    // a malformed request (logged by actix at error) are counted, not
    // written: a client must not be able to page the operator.
    let directive = if level.contains(['=', ',']) {
        level.to_owned()
    } else if matches!(level, "debug" | "trace") {
        format!("{level},sqlx=warn,actix_server=warn")
    } else {
        format!("{level},sqlx=warn,actix_server=warn,{CLIENT_ERRORS_TARGET}=off")
    };
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match settings.log_format {
        LogFormat::Text => output.with_filter(filter).boxed(),
        LogFormat::Json => output.json().with_filter(filter).boxed(),
    };
    let counting = ClientErrorCounter
        .with_filter(Targets::new().with_target(CLIENT_ERRORS_TARGET, Level::WARN));
    let installed = tracing_subscriber::registry()
        .with(output)
        .with(counting)
        .try_init();
    if installed.is_err() {
        eprintln!("gatepass: a logger was already installed");
    }
}

/// Where actix-http reports HTTP/1 connections that a client broke: a
/// request it could not parse (answered 400 by actix), a connection closed
/// mid-answer.
const CLIENT_ERRORS_TARGET: &str = "actix_http::h1::dispatcher";

static HTTP_CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// HTTP connections broken by their client (malformed requests included)
/// since start-up.
pub fn http_client_errors() -> u64 {
    HTTP_CLIENT_ERRORS.load(Ordering::Relaxed)
}

struct ClientErrorCounter;

impl<S: Subscriber> Layer<S> for ClientErrorCounter {
    fn on_event(&self, _event: &Event<'_>, _context: Context<'_, S>) {
        HTTP_CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records a finished check in the metrics and the log: one line per
/// denial of a token gatepass found (reason, surface, service and token
/// id, never the token) at info; denials that name no token (missing,
/// malformed, unknown: what a junk flood sends) at most one line a second,
/// with how many were left out; allows at debug; store failures at warn at
/// most once a second. The counters count every check.
pub fn observe_check(
    metrics: &Metrics,
    surface: Surface,
    started: Instant,
    result: &Result<Verdict, CheckError>,
) {
    static ANONYMOUS_DENIALS: OncePerSecond = OncePerSecond::new();
    static STORE_FAILURES: OncePerSecond = OncePerSecond::new();
    let decision = result.as_ref().ok().map(|verdict| &verdict.decision);
    metrics.record_check(surface, decision, started.elapsed());
    let now_secs = chrono::Utc::now().timestamp();
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
                Decision::Deny(reason) if verdict.record.is_some() => tracing::info!(
                    surface = surface.as_str(),
                    reason = reason.as_str(),
                    service,
                    token_id,
                    "check denied"
                ),
                Decision::Deny(reason) => {
                    if let Some(left_out) = ANONYMOUS_DENIALS.admit(now_secs) {
                        tracing::info!(
                            surface = surface.as_str(),
                            reason = reason.as_str(),
                            left_out,
                            "check denied"
                        );
                    }
                }
            }
        }
        Err(error) => {
            if STORE_FAILURES.admit(now_secs).is_some() {
                tracing::warn!(surface = surface.as_str(), %error, "check unanswerable: token store unavailable");
            }
        }
    }
}

/// Lets one event a second through and counts the rest.
struct OncePerSecond {
    second: AtomicI64,
    left_out: AtomicU64,
}

impl OncePerSecond {
    const fn new() -> Self {
        Self {
            second: AtomicI64::new(i64::MIN),
            left_out: AtomicU64::new(0),
        }
    }

    /// `Some(events left out since the last one let through)` for the first
    /// event of a second, `None` for the others.
    fn admit(&self, now_secs: i64) -> Option<u64> {
        let last = self.second.load(Ordering::Relaxed);
        if last != now_secs
            && self
                .second
                .compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::OncePerSecond;

    #[test]
    fn one_event_a_second_gets_through_with_the_count_of_the_rest() {
        let limit = OncePerSecond::new();
        assert_eq!(limit.admit(10), Some(0));
        assert_eq!(limit.admit(10), None);
        assert_eq!(limit.admit(10), None);
        assert_eq!(limit.admit(11), Some(2));
        assert_eq!(limit.admit(11), None);
        assert_eq!(limit.admit(12), Some(1));
    }
}
