import io
import tempfile
import unittest
from pathlib import Path

from gatepass_tools import exposition, metrics, promcheck

NAN_SERIES = {"metric": {"surface": "grpc"}, "value": [1700000000, "NaN"]}
HTTP_SERIES = {"metric": {"__name__": "x", "surface": "http", "decision": "allow"}, "value": [1700000000, "0.5"]}


class OutputTest(unittest.TestCase):
    def test_check_lines(self):
        self.assertEqual(promcheck.check_line(True, "traffic", "a == 1"), "ok    traffic   a == 1")
        self.assertEqual(
            promcheck.check_line(False, "promtool", "check rules x", "line one\nline two"),
            "FAIL  promtool  check rules x\n      line one\n      line two",
        )

    def test_tally_prints_each_check_and_sums_up(self):
        out = io.StringIO()
        tally = promcheck.Tally(out)
        tally.report(True, "alert", "one")
        tally.report(False, "traffic", "two", "got 3")
        self.assertEqual(out.getvalue(), "ok    alert     one\nFAIL  traffic   two\n      got 3\n")
        summary = tally.summary()
        self.assertTrue(summary.startswith("checked "))
        self.assertEqual(
            summary, "checked 0 promtool, 0 structure, 0 variable, 0 dashboard, 1 alert, 1 traffic: 1 failed"
        )

    def test_a_clean_run_ends_with_zero_failed(self):
        tally = promcheck.Tally(io.StringIO())
        tally.report(True, "structure", "fine")
        self.assertTrue(tally.summary().endswith(": 0 failed"))


class ApiAnswersTest(unittest.TestCase):
    def test_unwrap_gives_data_or_prometheus_reason(self):
        self.assertEqual(promcheck.unwrap({"status": "success", "data": {"x": 1}}), {"x": 1})
        with self.assertRaisesRegex(ValueError, "bad_data: 1:5: parse error"):
            promcheck.unwrap({"status": "error", "errorType": "bad_data", "error": "1:5: parse error"})

    def test_vector_of_vectors_and_scalars(self):
        self.assertEqual(promcheck.vector({"resultType": "vector", "result": [HTTP_SERIES]}), [HTTP_SERIES])
        self.assertEqual(
            promcheck.vector({"resultType": "scalar", "result": [1, "2"]}), [{"metric": {}, "value": [1, "2"]}]
        )
        with self.assertRaisesRegex(ValueError, "result type matrix"):
            promcheck.vector({"resultType": "matrix", "result": []})


class JudgingTest(unittest.TestCase):
    def test_variable_values(self):
        result = [{"metric": {"job": "gatepass"}}, {"metric": {"job": "node"}}, {"metric": {}}]
        self.assertEqual(promcheck.variable_values(result, "job", "gatepass"), ["gatepass", "node"])
        self.assertEqual(promcheck.variable_values(result, "job", None), ["gatepass", "node"])
        with self.assertRaisesRegex(ValueError, "'other' not among"):
            promcheck.variable_values(result, "job", "other")
        with self.assertRaisesRegex(ValueError, "no series with label instance"):
            promcheck.variable_values(result, "instance", None)

    def test_describe_series(self):
        self.assertEqual(
            promcheck.describe_series([HTTP_SERIES, NAN_SERIES], "{{surface}}"), "2 series: allow/http=0.5, grpc=nan"
        )
        self.assertEqual(
            promcheck.describe_series([{"metric": {}, "value": [0, "3"]}], ""), "1 series: -=3"
        )

    def test_describe_series_refuses_what_a_panel_could_not_show(self):
        with self.assertRaisesRegex(ValueError, "no data"):
            promcheck.describe_series([], "")
        with self.assertRaisesRegex(ValueError, "only NaN"):
            promcheck.describe_series([NAN_SERIES], "")
        with self.assertRaisesRegex(ValueError, r"legend uses \{\{decision\}\}"):
            promcheck.describe_series([HTTP_SERIES, NAN_SERIES], "{{decision}}")

    def test_rules(self):
        rule = {
            "health": "ok",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "s", "description": "d"},
            "duration": 600,
        }
        promcheck.require_healthy(rule)
        promcheck.require_documented(rule)
        with self.assertRaisesRegex(ValueError, "rule health err: boom"):
            promcheck.require_healthy({**rule, "health": "err", "lastError": "boom"})
        for broken, reason in (
            ({**rule, "labels": {}}, "no labels.severity"),
            ({**rule, "annotations": {"summary": "s"}}, "no annotations.description"),
            ({**rule, "duration": 0}, "no for:"),
        ):
            with self.assertRaisesRegex(ValueError, reason):
                promcheck.require_documented(broken)

    def test_holds(self):
        self.assertTrue(promcheck.holds(3, "==", 3))
        self.assertFalse(promcheck.holds(3, "==", 4))
        self.assertTrue(promcheck.holds(1, ">", 0))
        self.assertFalse(promcheck.holds(0, ">", 0))

    def test_rules_found(self):
        output = "Checking dashboards/alerts.yml\n  SUCCESS: 9 rules found\n\n"
        self.assertEqual(promcheck.rules_found(output), 9)
        self.assertEqual(promcheck.rules_found("FAILED:\nparse error"), 0)


class AgainstMetricsRsTest(unittest.TestCase):
    def setUp(self):
        self.catalog = metrics.parse(
            'IntCounterVec::new(Opts::new("gatepass_a_total", "a"), &["x"]);'
            'IntGauge::new("gatepass_b", "b"); ProcessCollector::for_self()'
        )

    def test_exposition_agrees(self):
        scrape = exposition.parse("# TYPE gatepass_a_total counter\n# TYPE gatepass_b gauge\ngatepass_b 1\n")
        self.assertEqual(promcheck.exposition_problems(self.catalog, scrape), [])

    def test_exposition_disagrees(self):
        scrape = exposition.parse("# TYPE gatepass_a_total gauge\n# TYPE gatepass_c counter\n")
        self.assertEqual(
            promcheck.exposition_problems(self.catalog, scrape),
            [
                "gatepass_a_total is a gauge, declared as a counter",
                "gatepass_b is not exposed",
                "gatepass_c is exposed but not declared",
            ],
        )

    def test_undeclared(self):
        names = {"gatepass_a_total", "gatepass_gone_total", "process_open_fds", "up", "node_load1"}
        self.assertEqual(promcheck.undeclared(self.catalog, names), ["gatepass_gone_total", "node_load1"])


class TrafficTest(unittest.TestCase):
    def setUp(self):
        self.expectations = promcheck.traffic_expectations(
            metrics.load(), {"ok": 47, "invalid_token": 12, "missing_token": 8}, 'job="gatepass", instance="i:1"'
        )

    def test_counts_each_reason_sent(self):
        shown = [str(e) for e in self.expectations]
        self.assertEqual(
            shown[:3],
            [
                'sum(gatepass_checks_total{job="gatepass", instance="i:1", surface="http", decision="allow", reason="ok"}) == 47',
                'sum(gatepass_checks_total{job="gatepass", instance="i:1", surface="http", decision="deny", reason="invalid_token"}) == 12',
                'sum(gatepass_checks_total{job="gatepass", instance="i:1", surface="http", decision="deny", reason="missing_token"}) == 8',
            ],
        )
        self.assertIn(
            'sum(gatepass_check_duration_seconds_count{job="gatepass", instance="i:1", surface="http"}) == 67', shown
        )
        self.assertIn('count(gatepass_build_info{job="gatepass", instance="i:1", version=~".+"} == 1) == 1', shown)
        self.assertIn('count(process_cpu_seconds_total{job="gatepass", instance="i:1"}) == 1', shown)

    def test_read_sent_counts_reasons(self):
        with tempfile.TemporaryDirectory() as directory:
            sent = Path(directory, "sent")
            sent.write_text("ok\nok\ninvalid_token\nok\n")
            self.assertEqual(promcheck.read_sent(sent), {"ok": 3, "invalid_token": 1})


class PortsTest(unittest.TestCase):
    def test_free_ports_differ(self):
        ports = promcheck.free_ports(4)
        self.assertEqual(len(set(ports)), 4)


if __name__ == "__main__":
    unittest.main()
