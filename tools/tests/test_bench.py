import contextlib
import io
import tempfile
import unittest
from pathlib import Path

from gatepass_tools import bench, exposition, metrics
from gatepass_tools.results import Results, Work, figure, rounded

from .samples import AFTER, BEFORE, H2LOAD, H2LOAD_LOG, WRK

METRICS_BEFORE = """\
gatepass_checks_total{decision="allow",reason="ok",surface="grpc"} 100
gatepass_checks_total{decision="allow",reason="ok",surface="http"} 10
gatepass_cache_lookups_total{result="hit",tier="l1"} 110
gatepass_store_query_duration_seconds_count{operation="token_lookup"} 4
gatepass_cached_tokens 1
"""
METRICS_AFTER = """\
gatepass_checks_total{decision="allow",reason="ok",surface="grpc"} 2100
gatepass_checks_total{decision="allow",reason="ok",surface="http"} 13
gatepass_checks_total{decision="deny",reason="invalid_token",surface="grpc"} 5
gatepass_cache_lookups_total{result="hit",tier="l1"} 2113
gatepass_cache_lookups_total{result="negative",tier="db"} 2
gatepass_store_query_duration_seconds_count{operation="token_lookup"} 6
gatepass_cached_tokens 3
"""
NO_COUNTS = dict.fromkeys(bench.COUNTERS, 0)


def row(key: str, **values) -> dict:
    base = {"key": key, "rps": 100, "p99": 500, "server_cpu_us": 10.0, "surface": "http", "mode": "sat"}
    return {**base, **values}


class CountsTest(unittest.TestCase):
    def test_counts_between_two_scrapes(self):
        counts = bench.counts_between(
            exposition.parse(METRICS_BEFORE), exposition.parse(METRICS_AFTER), bench.selectors(metrics.load())
        )
        self.assertEqual(
            counts, {**NO_COUNTS, "allow": 2003, "invalid": 5, "l1_hit": 2003, "db_negative": 2, "lookups": 2}
        )

    def test_judges_each_expectation(self):
        allowed = {**NO_COUNTS, "allow": 100, "l1_hit": 100}
        self.assertEqual(
            bench.judge_counts(allowed, "allow", 100),
            (True, "allow 100, invalid 0; l1 hit 100, l2 hit 0, db hit 0; lookup statements 0"),
        )
        self.assertFalse(bench.judge_counts(allowed, "allow", 101)[0])
        self.assertTrue(bench.judge_counts({**NO_COUNTS, "invalid": 7}, "deny", 7)[0])
        redis = {**NO_COUNTS, "allow": 100, "l2_hit": 99, "db_hit": 1}
        self.assertTrue(bench.judge_counts(redis, "l2", 100)[0])
        self.assertFalse(bench.judge_counts({**redis, "l2_hit": 98}, "l2", 100)[0])
        self.assertTrue(bench.judge_counts({**NO_COUNTS, "allow": 100, "db_hit": 99}, "db", 100)[0])
        self.assertTrue(bench.judge_counts(NO_COUNTS, "none", 100)[0])

    def test_malformed_or_unavailable_is_never_as_expected(self):
        counts = {**NO_COUNTS, "allow": 10, "malformed": 1, "unavailable": 2, "db_negative": 3}
        ok, text = bench.judge_counts(counts, "none", 10)
        self.assertFalse(ok)
        self.assertEqual(
            text,
            "NOT AS EXPECTED (none): allow 10, invalid 0, malformed 1, unavailable 2; "
            "l1 hit 0, l2 hit 0, db hit 0, db negative 3; lookup statements 0",
        )


class ResultsTest(unittest.TestCase):
    def setUp(self):
        self.results = Results(
            [
                row("a.grpc.sat.noop.r1", rps=75201, p99=None),
                row("a.grpc.sat.noop.r2", rps=75000, p99=300),
                row("a.grpc.sat.noop.r3", rps=80000, p99=None),
                row("a.grpc.sat.gp.r1", rps=70001, other_cpu_pct=0),
                row("a.grpc.sat.gp.r2", rps=70000, other_cpu_pct=1),
                row("a.grpc.sat.gp.rate", rps=1),  # another key, not a round
            ]
        )

    def test_median_of_odd_rounds_is_the_measured_value(self):
        self.assertEqual(self.results.median("a.grpc.sat.noop", "rps"), 75201)

    def test_median_of_even_rounds_is_a_mean_to_one_decimal(self):
        self.assertEqual(self.results.median("a.grpc.sat.gp.r", "rps"), None)
        self.assertEqual(self.results.median("a.grpc.sat.noop", "p99"), 300)
        self.assertEqual(Results(self.results.rows[3:5]).median("a.grpc.sat.gp", "other_cpu_pct"), 0.5)

    def test_median_of_nothing_is_none(self):
        self.assertIsNone(self.results.median("b.http.sat.gp", "rps"))

    def test_a_key_covers_its_rounds(self):
        self.assertEqual(len(self.results.of("a.grpc.sat.gp")), 3)
        self.assertEqual(self.results.last("a.grpc.sat.noop", "rps"), 80000)
        self.assertIsNone(self.results.last("x", "rps"))

    def test_half_rate_and_paced_shape(self):
        self.assertEqual(bench.half_rate(self.results, "a.grpc.sat.noop"), 37600)
        self.assertEqual(bench.half_rate(self.results, "missing"), 0)
        self.assertEqual(bench.paced_shape(5955.5), (12, 2))
        self.assertEqual(bench.paced_shape(0), (1, 2))

    def test_figures_as_printf_shows_them(self):
        self.assertEqual(rounded(2.25, 1), 2.2)
        self.assertEqual(rounded(75201.5, 0), 75202)
        self.assertEqual([figure(v) for v in (None, 7, 17.7, 0.5, 10.0)], ["-", "7", "17.7", "0.5", "10.0"])


class WorkTest(unittest.TestCase):
    def test_round_trip(self):
        with tempfile.TemporaryDirectory() as directory:
            work = Work(directory)
            work.add_result(row("k"))
            work.add_memory_step({"tokens": 1})
            work.add_fact("secs", 8)
            work.add_fact("secs", 2)
            work.add_fact("grpc_sat", "-t 1 -c 8")
            self.assertEqual(work.results().rows, [row("k")])
            self.assertEqual(work.memory_steps(), [{"tokens": 1}])
            self.assertEqual(work.facts(), {"secs": "2", "grpc_sat": "-t 1 -c 8"})
            self.assertEqual(work.command_log(), "")

    def test_an_empty_work_directory(self):
        with tempfile.TemporaryDirectory() as directory:
            self.assertEqual((Work(directory).results().rows, Work(directory).facts()), ([], {}))


class RecordTest(unittest.TestCase):
    """`record` end to end on captured files."""

    def record(self, directory: str, tool: str, output: str, expect: str, gatepass: bool) -> tuple[dict, str]:
        files = Path(directory, "load.txt")
        files.write_text(output)
        Path(f"{files}.lat").write_text(H2LOAD_LOG)
        Path(f"{files}.time").write_text("0.20 0.20\n")
        Path(f"{files}.s0").write_text(BEFORE)
        Path(f"{files}.s1").write_text(AFTER)
        if gatepass:
            Path(f"{files}.m0").write_text(METRICS_BEFORE)
            Path(f"{files}.m1").write_text(METRICS_AFTER)
        args = ["record", "--work", directory, "--files", str(files), "--tool", tool, "--key", "a.grpc.sat.gp.r1",
                "--scenario", "a", "--target", "gp", "--surface", "grpc", "--mode", "sat", "--round", "1",
                "--expect", expect]  # fmt: skip
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            self.assertEqual(bench.main(args), 0)
        [recorded] = Work(directory).results().rows
        return recorded, stderr.getvalue()

    def test_h2load_load_of_gatepass(self):
        with tempfile.TemporaryDirectory() as directory:
            recorded, said = self.record(directory, "h2load", H2LOAD, "allow", gatepass=True)
        self.assertEqual(recorded["requests"], 2003)
        self.assertEqual((recorded["rps"], recorded["p50"], recorded["p99"], recorded["errors"]), (2000, 149, 198, 6))
        self.assertEqual(recorded["counts"]["allow"], 2003)
        self.assertEqual(
            recorded["counted"],
            "allow 2003, invalid 5; l1 hit 2003, l2 hit 0, db hit 0, db negative 2; lookup statements 2",
        )
        self.assertIsInstance(recorded["server_cpu_us"], float)
        self.assertIn("benches/run: a.grpc.sat.gp.r1", said)
        self.assertIn("a.grpc.sat.gp.r1: 6 failed or non-2xx responses", said)

    def test_wrk_load_of_a_baseline(self):
        with tempfile.TemporaryDirectory() as directory:
            recorded, said = self.record(directory, "wrk", WRK, "none", gatepass=False)
        self.assertEqual((recorded["requests"], recorded["rps"], recorded["p99"]), (79410, 72211, 3780))
        self.assertEqual((recorded["counted"], recorded["counts"]), ("-", None))
        self.assertNotIn("failed or non-2xx", said)

    def test_progress_line(self):
        line = bench.progress_line(
            bench.Row("a.http.sat.gp.r1", "a", "gp", "http", "sat", "1", 10, 79421, 189, None, 11.4, 0.0, 5, 2, 0, "-", None)
        )
        self.assertEqual(line, "a.http.sat.gp.r1            79421 req/s  p50    189 µs  p99       - µs  cpu  11.4 µs/req  other 2%")


class MemoryAndMachineTest(unittest.TestCase):
    def test_memory_row(self):
        self.assertEqual(
            bench.memory_row(100000, 100001, 12768, 53328),
            {"tokens": 100000, "cached": 100001, "rss_before": 12768, "rss_after": 53328, "per_token": 415},
        )
        self.assertEqual(bench.memory_row(1, 0, 10, 11)["per_token"], 1024)

    def test_rss_from_status(self):
        self.assertEqual(bench.rss_kib("Name:\tgatepass\nVmHWM:\t  9 kB\nVmRSS:\t   53328 kB\n"), 53328)

    def test_machine_text(self):
        self.assertEqual(bench.lscpu_model("Architecture: x86_64\nModel name:   AMD EPYC  \n"), "AMD EPYC")
        self.assertEqual(bench.lscpu_model(""), "?")
        self.assertEqual(bench.memory_gib("MemTotal:       24641268 kB\n"), "23.5 GiB")
        self.assertEqual(bench.first_words("wrk debian/4.1.0-3+b2 [epoll] Copyright\nUsage", 2), "wrk debian/4.1.0-3+b2")
        self.assertEqual(bench.first_words("", 2), "?")
        self.assertEqual(
            bench.envoy_version("\nenvoy  version: 8a2cd1b5/1.40.0/Clean/RELEASE/BoringSSL\n"), "Envoy 1.40.0"
        )
        self.assertEqual(bench.envoy_version("?"), "?")


class SeriesTest(unittest.TestCase):
    def test_prints_the_exposition_form(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            bench.main(["series", "db_hit"])
        self.assertEqual(out.getvalue(), 'gatepass_cache_lookups_total{result="hit",tier="db"}\n')


if __name__ == "__main__":
    unittest.main()
