import unittest

from gatepass_tools import bench, metrics, promcheck
from gatepass_tools.metrics import Pattern, Selector

SNIPPET = """
let latency = HistogramVec::new(
    HistogramOpts::new("demo_latency_seconds", "Latency (s), by route.")
        .buckets(vec![0.1, 1.0]),
    &["route", "status"],
)?;
// let old = IntCounter::new("demo_commented_out_total", "gone")?;
/* IntGauge::new("demo_block_comment", "gone") */
let hits = IntCounterVec::new(Opts::new("demo_hits_total", "Hits (by tier)."), &["tier"])?;
let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
    let counter = IntCounter::new(name, help)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
};
let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
    let gauge = IntGauge::new(name, help)?;
    Ok(gauge)
};
errors: counter("demo_errors_total", "Errors, \\"quoted\\".")?,
up: gauge("demo_up", "1 while up.")?,
"""


class SyntheticSourceTest(unittest.TestCase):
    def setUp(self):
        self.catalog = metrics.parse(SNIPPET)

    def test_reads_constructors_and_helper_calls(self):
        self.assertEqual(
            self.catalog.families,
            {
                "demo_latency_seconds": metrics.Family("demo_latency_seconds", "histogram", ("route", "status")),
                "demo_hits_total": metrics.Family("demo_hits_total", "counter", ("tier",)),
                "demo_errors_total": metrics.Family("demo_errors_total", "counter"),
                "demo_up": metrics.Family("demo_up", "gauge"),
            },
        )
        self.assertFalse(self.catalog.process_collector)

    def test_a_family_declared_twice_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "demo_up is declared twice"):
            metrics.parse(SNIPPET + 'again: gauge("demo_up", "again")?,')

    def test_a_source_without_families_is_an_error(self):
        with self.assertRaises(ValueError):
            metrics.parse("fn main() {}")

    def test_declares_histogram_series_and_nothing_else(self):
        for name in ("demo_latency_seconds_bucket", "demo_latency_seconds_count", "demo_hits_total", "demo_up"):
            self.assertTrue(self.catalog.declares(name), name)
        for name in ("demo_hits_total_count", "demo_latency_seconds_total", "process_cpu_seconds_total"):
            self.assertFalse(self.catalog.declares(name), name)

    def test_selector_refuses_what_the_source_does_not_declare(self):
        with self.assertRaisesRegex(metrics.UndeclaredMetric, "not declared"):
            self.catalog.selector("demo_misses_total")
        with self.assertRaisesRegex(metrics.UndeclaredMetric, "no 'count' series"):
            self.catalog.selector("demo_hits_total", "count")
        with self.assertRaisesRegex(metrics.UndeclaredMetric, "no label surface"):
            self.catalog.selector("demo_hits_total", surface="http")
        self.assertEqual(self.catalog.selector("demo_latency_seconds", "bucket", le="0.1").name, "demo_latency_seconds_bucket")


class SelectorTest(unittest.TestCase):
    def test_matches_series_whose_labels_include_its_own(self):
        selector = Selector("m", (("a", "1"),))
        self.assertTrue(selector.matches("m", {"a": "1", "b": "2"}))
        self.assertFalse(selector.matches("m", {"a": "2"}))
        self.assertFalse(selector.matches("m", {"b": "2"}))
        self.assertFalse(selector.matches("n", {"a": "1"}))

    def test_a_pattern_matches_the_whole_value(self):
        selector = Selector("m", (("version", Pattern(".+")),))
        self.assertTrue(selector.matches("m", {"version": "0.1.0"}))
        self.assertFalse(selector.matches("m", {"version": ""}))

    def test_renders_promql_in_order_and_exposition_sorted(self):
        selector = Selector("m", (("tier", "l1"), ("result", "hit"), ("v", Pattern(".+"))))
        self.assertEqual(selector.promql('job="g"'), 'm{job="g", tier="l1", result="hit", v=~".+"}')
        self.assertEqual(str(selector), 'm{result="hit",tier="l1",v=".+"}')
        self.assertEqual(str(Selector("m")), "m")
        self.assertEqual(Selector("m").promql('job="g"'), 'm{job="g"}')


class RealSourceTest(unittest.TestCase):
    """src/metrics.rs as it is: the families SPEC §9 lists."""

    KNOWN = {
        "gatepass_check_duration_seconds": ("histogram", ("surface", "decision")),
        "gatepass_checks_total": ("counter", ("surface", "decision", "reason")),
        "gatepass_cache_lookups_total": ("counter", ("tier", "result")),
        "gatepass_store_query_duration_seconds": ("histogram", ("operation",)),
        "gatepass_store_errors_total": ("counter", ("operation",)),
        "gatepass_invalidations_total": ("counter", ("kind",)),
        "gatepass_build_info": ("gauge", ("version",)),
        "gatepass_redis_errors_total": ("counter", ()),
        "gatepass_redis_breaker_open": ("gauge", ()),
        "gatepass_change_feed_connected": ("gauge", ()),
        "gatepass_last_used_flushes_total": ("counter", ()),
        "gatepass_last_used_rows_total": ("counter", ()),
        "gatepass_policy_reload_failures_total": ("counter", ()),
        "gatepass_http_client_errors_total": ("counter", ()),
        "gatepass_cached_tokens": ("gauge", ()),
        "gatepass_indexed_tokens": ("gauge", ()),
    }

    def setUp(self):
        self.catalog = metrics.load()

    def test_finds_every_known_family(self):
        found = {f.name: (f.kind, f.labels) for f in self.catalog.families.values()}
        self.assertEqual(found, self.KNOWN)
        self.assertTrue(self.catalog.process_collector)

    def test_the_benchmark_counters_are_declared(self):
        resolved = bench.selectors(self.catalog)
        self.assertEqual(set(resolved), {*bench.COUNTERS, "cached", "indexed"})
        self.assertEqual(str(resolved["lookups"]), 'gatepass_store_query_duration_seconds_count{operation="token_lookup"}')

    def test_the_prometheus_check_expectations_are_declared(self):
        sent = {"ok": 3, "invalid_token": 2}
        expectations = promcheck.traffic_expectations(self.catalog, sent, 'job="gatepass"')
        names = promcheck.grafana.metric_names(e.expr for e in expectations)
        self.assertEqual(promcheck.undeclared(self.catalog, names), [])
        self.assertIn("gatepass_check_duration_seconds_count", names)


if __name__ == "__main__":
    unittest.main()
