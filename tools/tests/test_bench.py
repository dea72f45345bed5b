import contextlib
import http.server
import io
import os
import tempfile
import threading
import time
import unittest
import unittest.mock
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


# Captured from gatepass serve (text format, colours on, stderr to a file).
SERVE_LOG = (
    "\x1b[2m2026-12-03T13:35:29.016334Z\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mgatepass::cache::invalidation\x1b[0m"
    "\x1b[2m:\x1b[0m listening for token and service changes\n"
    "\x1b[2m2026-12-03T13:35:29.016962Z\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mgatepass::cache::invalidation\x1b[0m"
    "\x1b[2m:\x1b[0m index of existing tokens loaded \x1b[3mrows\x1b[0m\x1b[2m=\x1b[0m1000002 \x1b[3mtook"
    "\x1b[0m\x1b[2m=\x1b[0m105.235µs\n"
)


class IndexTest(unittest.TestCase):
    def test_rust_durations(self):
        self.assertEqual(bench.duration_seconds("1.234567s"), 1.234567)
        self.assertEqual(bench.duration_seconds("2s"), 2.0)
        self.assertAlmostEqual(bench.duration_seconds("850.1ms"), 0.8501)
        self.assertAlmostEqual(bench.duration_seconds("105.235µs"), 0.000105235)
        self.assertAlmostEqual(bench.duration_seconds("120ns"), 1.2e-7)
        for text in ("1.2", "3m", "fast", ""):
            with self.assertRaises(ValueError):
                bench.duration_seconds(text)

    def test_index_line_in_each_log_format(self):
        rows, seconds = bench.index_load(SERVE_LOG)
        self.assertEqual(rows, 1000002)
        self.assertAlmostEqual(seconds, 0.000105235)
        plain = "2026-12-03T13:35:29Z  INFO gatepass::cache::invalidation: index of existing tokens loaded rows=5 took=1.5s\n"
        self.assertEqual(bench.index_load("other line\n" + plain), (5, 1.5))
        json = (
            '{"timestamp":"2026-12-03T13:35:29Z","level":"INFO","fields":{"message":"index of existing tokens loaded",'
            '"rows":7,"took":"850.1ms"},"target":"gatepass::cache::invalidation"}\n'
        )
        self.assertEqual(bench.index_load(json)[0], 7)
        self.assertAlmostEqual(bench.index_load(json)[1], 0.8501)
        self.assertIsNone(bench.index_load("listening for token and service changes\n"))

    def test_index_command_records_facts(self):
        with tempfile.TemporaryDirectory() as directory:
            files = {name: Path(directory, name) for name in ("log", "status", "m", "few.status", "few.m")}
            files["log"].write_text(SERVE_LOG)
            files["status"].write_text("Name:\tgatepass\nVmRSS:\t   31000 kB\n")
            files["m"].write_text("gatepass_indexed_tokens 1000002\n")
            files["few.status"].write_text("VmRSS:\t   11000 kB\n")
            files["few.m"].write_text("gatepass_indexed_tokens 2\n")
            args = ["index", "--work", directory, "--log", str(files["log"]), "--status", str(files["status"]),
                    "--metrics", str(files["m"]), "--status-few", str(files["few.status"]),
                    "--metrics-few", str(files["few.m"])]  # fmt: skip
            with contextlib.redirect_stderr(io.StringIO()):
                self.assertEqual(bench.main(args), 0)
            facts = Work(directory).facts()
        self.assertEqual(
            facts,
            {"index_log_rows": "1000002", "index_load_seconds": "0.000105", "index_rows": "1000002",
             "index_rss_kib": "31000", "index_rows_few": "2", "index_rss_few_kib": "11000"},
        )  # fmt: skip

    def test_few_row_instance_not_captured(self):
        with tempfile.TemporaryDirectory() as directory:
            log, status, scraped = Path(directory, "log"), Path(directory, "status"), Path(directory, "m")
            log.write_text(SERVE_LOG)
            status.write_text("VmRSS:\t 9 kB\n")
            scraped.write_text("gatepass_indexed_tokens 3\n")
            args = ["index", "--work", directory, "--log", str(log), "--status", str(status), "--metrics", str(scraped),
                    "--status-few", str(Path(directory, "missing"))]  # fmt: skip
            with contextlib.redirect_stderr(io.StringIO()):
                self.assertEqual(bench.main(args), 0)
            facts = Work(directory).facts()
        self.assertEqual((facts["index_rss_few_kib"], facts["index_rows_few"], facts["index_rows"]), ("-", "-", "3"))


def totals(hits: int, misses: int, **others) -> dict:
    return {**NO_COUNTS, "l1_hit": hits, "l1_miss": misses, **others}


class ColdStartTest(unittest.TestCase):
    def test_interval_ratio_needs_enough_lookups(self):
        self.assertEqual(bench.interval_ratio(totals(99, 1)), 0.99)
        self.assertIsNone(bench.interval_ratio(totals(bench.COLD_MIN_LOOKUPS - 1, 0)))

    def test_stops_at_the_first_interval_above_the_ratio(self):
        baseline = totals(0, 0)
        sampled = [
            (100.15, totals(0, 0)),  # nothing yet: no ratio
            (100.30, totals(5, 600, l2_hit=590, lookups=10)),
            (100.45, totals(600, 610, l2_hit=600, lookups=10)),  # 595 hits, 10 misses: 98.3 %
            (100.60, totals(1300, 612, l2_hit=602, lookups=10, allow=1912)),  # 700 / 702: 99.7 %
            (100.75, totals(2000, 612)),  # never read
        ]
        read = iter(sampled)
        seen = bench.cold_start(baseline, 100.0, read)
        self.assertTrue(seen.reached)
        self.assertAlmostEqual(seen.seconds, 0.6)
        self.assertEqual((seen.counts["l2_hit"], seen.counts["lookups"], seen.counts["allow"]), (602, 10, 1912))
        self.assertEqual([(h, m) for _, h, m, _ in seen.samples], [(0, 0), (5, 600), (595, 10), (700, 2)])
        self.assertIsNone(seen.samples[0][3])
        self.assertEqual(next(read)[0], 100.75)  # read lazily: sampling stopped at the pass

    def test_a_ratio_of_exactly_99_percent_has_not_passed(self):
        seen = bench.cold_start(totals(0, 0), 0.0, [(1.0, totals(99, 1)), (2.0, totals(198, 2))])
        self.assertFalse(seen.reached)
        self.assertIsNone(seen.seconds)
        self.assertEqual((seen.elapsed, seen.counts["l1_hit"]), (2.0, 198))

    def test_the_command_samples_a_live_instance(self):
        expositions = iter(
            ["gatepass_cache_lookups_total{result=\"miss\",tier=\"l1\"} 300\n"]
            + [
                f"gatepass_cache_lookups_total{{result=\"hit\",tier=\"l1\"}} {hits}\n"
                "gatepass_cache_lookups_total{result=\"miss\",tier=\"l1\"} 300\n"
                "gatepass_cache_lookups_total{result=\"hit\",tier=\"l2\"} 290\n"
                "gatepass_store_query_duration_seconds_count{operation=\"token_lookup\"} 10\n"
                for hits in range(100, 10000, 100)
            ]
        )

        class Metrics(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = next(expositions).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with tempfile.TemporaryDirectory() as directory:
                baseline, samples = Path(directory, "m0"), Path(directory, "samples.tsv")
                baseline.write_text("gatepass_cache_lookups_total{result=\"miss\",tier=\"l1\"} 0\n")
                args = ["cold-start", "--work", directory, "--metrics-url", f"http://127.0.0.1:{server.server_port}/metrics",
                        "--baseline", str(baseline), "--ready-at", str(time.time()), "--pid", str(os.getpid()),
                        "--limit", "30", "--interval", "0.01", "--samples", str(samples)]  # fmt: skip
                with contextlib.redirect_stderr(io.StringIO()):
                    self.assertEqual(bench.main(args), 0)
                facts = Work(directory).facts()
                intervals = samples.read_text().splitlines()
        finally:
            server.shutdown()
            server.server_close()
        # 300 misses, then 100 hits and no miss per interval: the second scrape passes.
        self.assertEqual(intervals[0], "seconds since ready\tl1 hits\tl1 misses\tratio")
        self.assertEqual([line.split("\t")[1:] for line in intervals[1:]], [["0", "300", "0.0000"], ["100", "0", "1.0000"]])
        self.assertEqual(facts["cold_reached"], "yes")
        self.assertEqual((facts["cold_l1_hit"], facts["cold_l1_miss"], facts["cold_l2_hit"], facts["cold_lookups"]),
                         ("100", "300", "290", "10"))  # fmt: skip
        self.assertLess(float(facts["cold_seconds"]), 30)
        self.assertEqual(facts["cold_min_lookups"], str(bench.COLD_MIN_LOOKUPS))

    def test_the_command_fails_when_the_load_stops(self):
        with tempfile.TemporaryDirectory() as directory:
            baseline = Path(directory, "m0")
            baseline.write_text("")
            with contextlib.redirect_stderr(io.StringIO()) as said:
                with unittest.mock.patch.object(bench, "scrape", return_value=exposition.parse("")):
                    status = bench.main(["cold-start", "--work", directory, "--metrics-url", "http://unused",
                                         "--baseline", str(baseline), "--ready-at", str(time.time()), "--pid", "0",
                                         "--limit", "30", "--interval", "0", "--samples", str(Path(directory, "s"))])  # fmt: skip
        self.assertEqual(status, 1)
        self.assertIn("cold start: the load 0 stopped", said.getvalue())


class FloodTest(unittest.TestCase):
    def test_records_length_and_p99_per_shape(self):
        with tempfile.TemporaryDirectory() as directory:
            output = Path(directory, "flood.txt")
            output.write_text(WRK)
            self.assertEqual(bench.main(["flood", "--work", directory, "--shape", "digest", str(output)]), 0)
            output.write_text("  10 requests in 2.00s, 1KB read\n")
            self.assertEqual(bench.main(["flood", "--work", directory, "--shape", "id", str(output)]), 0)
            facts = Work(directory).facts()
        self.assertEqual(
            facts, {"flood_digest_seconds": "1.1", "flood_digest_p99": "3.78ms", "flood_id_seconds": "2", "flood_id_p99": "-"}
        )


class SeriesTest(unittest.TestCase):
    def test_prints_the_exposition_form(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            bench.main(["series", "db_hit"])
        self.assertEqual(out.getvalue(), 'gatepass_cache_lookups_total{result="hit",tier="db"}\n')


if __name__ == "__main__":
    unittest.main()
