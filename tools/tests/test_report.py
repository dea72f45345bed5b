import tempfile
import unittest
from pathlib import Path

from gatepass_tools import bench, metrics, report
from gatepass_tools.results import Results

COUNTS = dict.fromkeys(bench.COUNTERS, 0)


def row(key: str, rps: int, p99: int, counts=None, **values) -> dict:
    target, surface, mode = key.split(".")[3], key.split(".")[1], key.split(".")[2]
    return {
        "key": key, "scenario": key[0], "target": target, "surface": surface, "mode": mode, "round": "1",
        "requests": rps * 8, "rps": rps, "p50": p99 // 3, "p99": p99, "server_cpu_us": 17.7, "store_cpu_us": 0.0,
        "tool_cpu_pct": 30, "other_cpu_pct": 1, "errors": 0,
        "counted": "-" if counts is None else f"allow {counts['allow']}", "counts": counts, **values,
    }  # fmt: skip


RUN = [
    row("a.grpc.sat.noop.r1", 75201, 3657),
    row("a.grpc.sat.gp.r1", 72033, 3659, {**COUNTS, "allow": 587961, "flushes": 3}),
    row("a.grpc.rate.noop.r1", 37510, 384),
    row("a.grpc.rate.gp.r1", 35580, 428, {**COUNTS, "allow": 300800, "flushes": 2}),
    row("e.http.noflood.gp", 77415, 3600, {**COUNTS, "allow": 619383}, server_cpu_us=11.7),
    row("e.http.flood.gp", 76693, 3000, {**COUNTS, "allow": 613676, "invalid": 24141, "lookups": 811},
        server_cpu_us=11.9, store_cpu_us=0.1),
    row("h.http.sat.envoy.r1", 14000, 4000),
    row("h.http.sat.envoy-noop.r1", 5000, 9000),
    row("h.http.sat.envoy-gp.r1", 5500, 8000, {**COUNTS, "allow": 44000}),
    row("h.http.rate.envoy.r1", 1000, 900),
    row("h.http.rate.envoy-noop.r1", 1000, 2100),
    row("h.http.rate.envoy-gp.r1", 960, 1800, {**COUNTS, "allow": 7680}),
]  # fmt: skip
FACTS = {
    "started_at": "2026-11-22T13:55:32Z",
    "elapsed_seconds": "984",
    "rounds": "1",
    "secs": "8",
    "grpc_half": "37600",
    "http_half": "43067",
    "flood_seconds": "8.02",
    "flood_p99": "4.30ms",
    "flood_connections": "8",
    "flood_delay_ms": "2",
    "token_rows_flood": "2",
    "revision": "3b2a356",
    "e2e_rate": "1000",
    "e2e_rounds": "3",
}
MEMORY = [
    {"tokens": 100000, "cached": 100001, "rss_before": 12768, "rss_after": 53328, "per_token": 415},
    {"tokens": 1000000, "cached": 1000001, "rss_before": 12768, "rss_after": 390384, "per_token": 387},
]


class FiguresTest(unittest.TestCase):
    def test_ratio_difference_fraction(self):
        self.assertEqual(report.ratio(72033, 75201), "95.8 %")
        self.assertEqual(report.ratio(1, 0), "-")
        self.assertEqual(report.ratio(None, 5), "-")
        self.assertEqual(report.difference(428, 384), 44)
        self.assertEqual(report.signed(report.difference(3600, 3760)), "-160")
        self.assertEqual(report.signed(None), "-")
        self.assertEqual(report.fraction(72033, 75201), 0.958)
        self.assertIsNone(report.fraction(3, None))

    def test_verdicts_agree_with_the_figure_shown(self):
        share = report.fraction(94.96, 100)  # shown as 95.0 %
        self.assertEqual(report.percent(share), "95.0 %")
        self.assertEqual(report.verdict(share, ">=", 0.95), "**met**")
        self.assertEqual(report.verdict(51, "<=", 50), "**missed**")
        self.assertEqual(report.verdict(0, "==", 0), "**met**")
        self.assertEqual(report.verdict(None, "<=", 50), "not measured")
        self.assertEqual(report.verdict(3, "<=", None), "not measured")

    def test_minutes(self):
        self.assertEqual(report.minutes("984"), "16.4")


class RenderTest(unittest.TestCase):
    def setUp(self):
        self.text = report.render(Results(RUN), MEMORY, FACTS, "# building\ncargo build\n", bench.selectors(metrics.load()))
        self.lines = self.text.splitlines()

    def line(self, start: str) -> str:
        [found] = [line for line in self.lines if line.startswith(start)]
        return found

    def test_header_and_machine(self):
        self.assertTrue(self.text.startswith("# gatepass benchmarks\n\nWritten by `benches/run` (2026-11-22T13:55:32Z, 16.4 min)"))
        self.assertIn("- gatepass 3b2a356\n", self.text)
        self.assertIn("- CPUs: - (`nproc`), - (`lscpu` model name)\n", self.text)

    def test_rows_compare_with_their_baseline(self):
        self.assertEqual(
            self.line("| a L1 hit, gRPC | gatepass | h2load sat |"),
            "| a L1 hit, gRPC | gatepass | h2load sat | 72033 | 1219 | 3659 | 95.8 % | +2 | 17.7 | 0.0 | 1 | allow 587961 |",
        )
        self.assertEqual(
            self.line("| a L1 hit, gRPC | no-op | h2load 37600/s |"),
            "| a L1 hit, gRPC | no-op | h2load 37600/s | 37510 | 128 | 384 | - | - | 17.7 | 0.0 | 1 | - |",
        )

    def test_scenarios_left_out_show_dashes(self):
        self.assertEqual(
            self.line("| b Redis hit, HTTP | gatepass | wrk+lua -c×-ms |"),
            "| b Redis hit, HTTP | gatepass | wrk+lua -c×-ms | - | - | - | - | - | - | - | - |  |",
        )
        self.assertIn("| Redis hit p99 ≤ 300 µs, light load (2 connections, 2 ms apart) | - µs | not measured |", self.text)

    def test_proxy_rows_and_ratios(self):
        self.assertEqual(
            self.line("| h Envoy ext_authz | Envoy + gatepass | h2load --h1 1000/s |"),
            "| h Envoy ext_authz | Envoy + gatepass | h2load --h1 1000/s | 960 | 600 | 1800 | 96.0 % | -300 | 17.7 | 0.0 | 1 | allow 7680 |",
        )
        self.assertEqual(
            self.line("| Envoy ext_authz (h) |"),
            "| Envoy ext_authz (h) | 110.0 % | -100 / -300 | 35.7 % | +400 / +1200 |",
        )
        self.assertEqual(self.line("| nginx auth_request (f) |"), "| nginx auth_request (f) | - | - / - | - | - / - |")

    def test_shortfall_and_flood(self):
        self.assertIn(
            "their latency is not at that rate): a.grpc.rate.gp.r1 (35580/s of 37600/s), h.http.rate.envoy-gp.r1 (960/s of 1000/s).",
            self.text,
        )
        self.assertIn(
            "24141 random unknown-id tokens in 8.02 s (3010/s, 8 connections paced at 2 ms, p99 4.30ms)", self.text
        )
        self.assertIn("| token lookup statements during the flood | 811 (101/s, 0.03 per junk token) |", self.text)
        # (11.9 − 11.7) µs × 613544 valid checks / 24141 junk checks
        self.assertIn("| CPU per junk check (gatepass / Postgres+Redis), beyond the valid checks' own | 5 µs / 3 µs |", self.text)

    def test_targets(self):
        self.assertIn("| cached check ≥ 95 % of the no-op's throughput, gRPC | 95.8 % | **met** |", self.text)
        self.assertIn("| p99 at half load ≤ baseline p99 + 50 µs, gRPC | +44 µs | **met** |", self.text)
        self.assertIn(
            "| 0 database statements per cached check | 0 token lookups in 888761 cached checks "
            "(and 5 batched last-used writes) | **met** |",
            self.text,
        )
        self.assertIn("| flood: statements bounded by token rows | 811 statements for 2 rows (0.03 per junk token) | **missed** |", self.text)
        self.assertIn("| ≤ 300 bytes per cached token | 415 B at 100000, 387 B at 1000000 | **missed** |", self.text)

    def test_memory_and_metric_names_come_from_metrics_rs(self):
        self.assertIn("| tokens checked | cached (`gatepass_cached_tokens`) |", self.text)
        self.assertIn("| 100000 | 100001 | 12768 | 53328 | 415 |\n| 1000000 |", self.text)
        self.assertIn('`gatepass_store_query_duration_seconds_count{operation="token_lookup"}` deltas', self.text)

    def test_all_runs_and_commands(self):
        self.assertIn("| e.http.flood.gp | 613544 | 76693 | 1000 | 3000 | 11.9 | 30 | 1 | 0 |", self.text)
        self.assertTrue(self.text.endswith("```sh\n# building\ncargo build\n```\n"))


class WriteTest(unittest.TestCase):
    def test_keeps_what_follows_the_marker(self):
        with tempfile.TemporaryDirectory() as directory:
            out = Path(directory, "BENCHMARKS.md")
            out.write_text(f"# old\n\n{report.MARKER}\n\n## History\n\nkept\n\n")
            report.write(out, "# new\n")
            self.assertEqual(out.read_text(), f"# new\n\n{report.MARKER}\n\n## History\n\nkept\n")
            self.assertEqual(sorted(p.name for p in Path(directory).iterdir()), ["BENCHMARKS.md"])

    def test_a_new_file_gets_the_marker(self):
        with tempfile.TemporaryDirectory() as directory:
            out = Path(directory, "BENCHMARKS.md")
            report.write(out, "# new\n")
            self.assertEqual(out.read_text(), f"# new\n\n{report.MARKER}\n")

    def test_the_shipped_file_keeps_its_tail(self):
        shipped = (Path(__file__).resolve().parents[2] / "BENCHMARKS.md").read_text()
        self.assertIn(report.MARKER, shipped)
        self.assertTrue(report.kept_part(shipped))


if __name__ == "__main__":
    unittest.main()
