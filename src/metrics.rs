//! Metric families (SPEC §9), registered into a registry the application
//! owns. Every label value comes from a closed set, and every series a
//! check touches is resolved once at start-up, so recording on the hot path
//! is a few atomic adds: no allocation, no lock, no label hashing.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::decision::{Decision, DenyReason};

/// Buckets fine enough to tell 50 µs from 500 µs, up to a second.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The surface a check came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Grpc,
    Http,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// Tier and result of a cache lookup, the `gatepass_cache_lookups_total`
/// labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
    Db,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    Negative,
    Stale,
}

const TIERS: [(Tier, &str); 3] = [(Tier::L1, "l1"), (Tier::L2, "l2"), (Tier::Db, "db")];
const RESULTS: [(LookupResult, &str); 4] = [
    (LookupResult::Hit, "hit"),
    (LookupResult::Miss, "miss"),
    (LookupResult::Negative, "negative"),
    (LookupResult::Stale, "stale"),
];

/// Database operations timed by `gatepass_store_query_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    TokenLookup,
    LastUsedFlush,
}

impl Operation {
    fn index(self) -> usize {
        self as usize
    }
}

const OPERATIONS: [&str; 2] = ["token_lookup", "last_used_flush"];

/// What a change notification was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    Token,
    Service,
    Everything,
}

const INVALIDATIONS: [&str; 3] = ["token", "service", "everything"];

/// The handles one surface records a check into.
#[derive(Debug)]
struct SurfaceMetrics {
    /// By decision: allow, deny, error.
    duration: [Histogram; 3],
    allowed: IntCounter,
    denied: Vec<IntCounter>,
    unavailable: IntCounter,
}

/// Every metric gatepass exports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    grpc: SurfaceMetrics,
    http: SurfaceMetrics,
    lookups: [[IntCounter; 4]; 3],
    store_duration: [Histogram; 2],
    store_errors: [IntCounter; 2],
    redis_errors: IntCounter,
    redis_breaker_open: IntGauge,
    invalidations: [IntCounter; 3],
    feed_connected: IntGauge,
    flushes: IntCounter,
    flushed_rows: IntCounter,
    policy_reload_failures: IntCounter,
    http_client_errors: IntCounter,
    cached_tokens: IntGauge,
    indexed_tokens: IntGauge,
}

/// Values that live elsewhere, read at each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readings {
    pub cached_tokens: usize,
    pub indexed_tokens: u64,
    pub policy_reload_failures: u64,
    pub http_client_errors: u64,
}

impl Metrics {
    /// Registers every family into a new registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let register =
            |collector: Box<dyn prometheus::core::Collector>| registry.register(collector);

        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gatepass_check_duration_seconds",
                "Time to answer a check, by surface and decision.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["surface", "decision"],
        )?;
        let checks = IntCounterVec::new(
            Opts::new(
                "gatepass_checks_total",
                "Checks answered, by surface, decision and reason.",
            ),
            &["surface", "decision", "reason"],
        )?;
        let surface = |surface: Surface| SurfaceMetrics {
            duration: ["allow", "deny", "error"]
                .map(|decision| duration.with_label_values(&[surface.as_str(), decision])),
            allowed: checks.with_label_values(&[surface.as_str(), "allow", "ok"]),
            denied: DenyReason::ALL
                .iter()
                .map(|reason| {
                    checks.with_label_values(&[surface.as_str(), "deny", reason.as_str()])
                })
                .collect(),
            unavailable: checks.with_label_values(&[surface.as_str(), "error", "unavailable"]),
        };
        let (grpc, http) = (surface(Surface::Grpc), surface(Surface::Http));
        register(Box::new(duration))?;
        register(Box::new(checks))?;

        let lookups_vec = IntCounterVec::new(
            Opts::new(
                "gatepass_cache_lookups_total",
                "Token lookups by tier and result.",
            ),
            &["tier", "result"],
        )?;
        let lookups = TIERS.map(|(_, tier)| {
            RESULTS.map(|(_, result)| lookups_vec.with_label_values(&[tier, result]))
        });
        register(Box::new(lookups_vec))?;

        let store_duration_vec = HistogramVec::new(
            HistogramOpts::new(
                "gatepass_store_query_duration_seconds",
                "Time of database statements, by operation.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )?;
        let store_errors_vec = IntCounterVec::new(
            Opts::new(
                "gatepass_store_errors_total",
                "Database statements that failed, by operation.",
            ),
            &["operation"],
        )?;
        let store_duration = OPERATIONS.map(|op| store_duration_vec.with_label_values(&[op]));
        let store_errors = OPERATIONS.map(|op| store_errors_vec.with_label_values(&[op]));
        register(Box::new(store_duration_vec))?;
        register(Box::new(store_errors_vec))?;

        let invalidations_vec = IntCounterVec::new(
            Opts::new(
                "gatepass_invalidations_total",
                "Change notifications applied to the caches, by kind.",
            ),
            &["kind"],
        )?;
        let invalidations = INVALIDATIONS.map(|kind| invalidations_vec.with_label_values(&[kind]));
        register(Box::new(invalidations_vec))?;

        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let build_info = IntGaugeVec::new(
            Opts::new("gatepass_build_info", "Always 1; the version in a label."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            inner: Arc::new(Inner {
                grpc,
                http,
                lookups,
                store_duration,
                store_errors,
                invalidations,
                redis_errors: counter(
                    "gatepass_redis_errors_total",
                    "Redis calls that failed or timed out.",
                )?,
                redis_breaker_open: gauge(
                    "gatepass_redis_breaker_open",
                    "1 while calls to an unreachable Redis are skipped.",
                )?,
                feed_connected: gauge(
                    "gatepass_change_feed_connected",
                    "1 while change notifications from the database arrive.",
                )?,
                flushes: counter(
                    "gatepass_last_used_flushes_total",
                    "Batched last_used_at statements written.",
                )?,
                flushed_rows: counter(
                    "gatepass_last_used_rows_total",
                    "Token rows whose last_used_at was written.",
                )?,
                policy_reload_failures: counter(
                    "gatepass_policy_reload_failures_total",
                    "Route policy reloads refused because the file was invalid.",
                )?,
                http_client_errors: counter(
                    "gatepass_http_client_errors_total",
                    "HTTP connections broken by their client: requests that could not be parsed (answered 400), connections closed mid-answer.",
                )?,
                cached_tokens: gauge(
                    "gatepass_cached_tokens",
                    "Tokens held in the in-process cache.",
                )?,
                indexed_tokens: gauge(
                    "gatepass_indexed_tokens",
                    "Token rows in the in-memory index of existing tokens.",
                )?,
                registry,
            }),
        })
    }

    /// Records one check: its latency and its decision (`None`: the answer
    /// could not be known).
    pub fn record_check(&self, surface: Surface, answer: Option<&Decision>, elapsed: Duration) {
        let metrics = match surface {
            Surface::Grpc => &self.inner.grpc,
            Surface::Http => &self.inner.http,
        };
        let seconds = elapsed.as_secs_f64();
        match answer {
            Some(Decision::Allow(_)) => {
                metrics.duration[0].observe(seconds);
                metrics.allowed.inc();
            }
            Some(Decision::Deny(reason)) => {
                metrics.duration[1].observe(seconds);
                metrics.denied[reason.index()].inc();
            }
            None => {
                metrics.duration[2].observe(seconds);
                metrics.unavailable.inc();
            }
        }
    }

    pub fn record_lookup(&self, tier: Tier, result: LookupResult) {
        self.inner.lookups[tier as usize][result as usize].inc();
    }

    pub fn record_store(&self, operation: Operation, elapsed: Duration, ok: bool) {
        self.inner.store_duration[operation.index()].observe(elapsed.as_secs_f64());
        if !ok {
            self.inner.store_errors[operation.index()].inc();
        }
    }

    pub fn redis_errors(&self) -> &IntCounter {
        &self.inner.redis_errors
    }

    pub fn redis_breaker_open(&self) -> &IntGauge {
        &self.inner.redis_breaker_open
    }

    pub fn record_invalidation(&self, kind: Invalidation) {
        self.inner.invalidations[kind as usize].inc();
    }

    pub fn set_feed_connected(&self, connected: bool) {
        self.inner.feed_connected.set(i64::from(connected));
    }

    pub fn record_flush(&self, rows: u64) {
        self.inner.flushes.inc();
        self.inner.flushed_rows.inc_by(rows);
    }

    /// Brings values that live elsewhere up to date; called per scrape.
    pub fn refresh(&self, readings: Readings) {
        let inner = &self.inner;
        inner
            .cached_tokens
            .set(i64::try_from(readings.cached_tokens).unwrap_or(i64::MAX));
        inner
            .indexed_tokens
            .set(i64::try_from(readings.indexed_tokens).unwrap_or(i64::MAX));
        catch_up(
            &inner.policy_reload_failures,
            readings.policy_reload_failures,
        );
        catch_up(&inner.http_client_errors, readings.http_client_errors);
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Raises a counter to a total counted elsewhere.
fn catch_up(counter: &IntCounter, total: u64) {
    let counted = counter.get();
    if total > counted {
        counter.inc_by(total - counted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_and_encode_with_closed_label_sets() {
        let metrics = Metrics::new().unwrap();
        metrics.record_check(
            Surface::Http,
            Some(&Decision::Deny(DenyReason::TokenRevoked)),
            Duration::from_micros(40),
        );
        metrics.record_lookup(Tier::L1, LookupResult::Miss);
        metrics.record_lookup(Tier::Db, LookupResult::Hit);
        metrics.record_lookup(Tier::L2, LookupResult::Miss);
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            r#"gatepass_checks_total{decision="deny",reason="token_revoked",surface="http"} 1"#
        ));
        assert!(text.contains(r#"gatepass_cache_lookups_total{result="miss",tier="l1"} 1"#));
        assert!(text.contains(r#"gatepass_cache_lookups_total{result="hit",tier="db"} 1"#));
        assert!(text.contains(r#"gatepass_cache_lookups_total{result="miss",tier="l2"} 1"#));
        assert!(text.contains(
            r#"gatepass_check_duration_seconds_bucket{decision="deny",surface="http",le="0.00005"} 1"#
        ));
        assert!(text.contains("gatepass_build_info{version="));
        // Every series exists from the start, at zero.
        assert!(text.contains(
            r#"gatepass_checks_total{decision="error",reason="unavailable",surface="grpc"} 0"#
        ));
    }
}
