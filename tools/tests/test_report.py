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
    row("e.http.flood-id.gp", 76693, 3000, {**COUNTS, "allow": 613676, "invalid": 24141, "lookups": 811},
        server_cpu_us=11.9, store_cpu_us=0.1),
    row("e.http.flood-digest.gp", 70000, 3900, {**COUNTS, "allow": 560000, "invalid": 22000, "lookups": 0},
        server_cpu_us=13.0, store_cpu_us=0.0),
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
    "flood_id_seconds": "8.02",
    "flood_id_p99": "4.30ms",
    "flood_digest_seconds": "8",
    "flood_digest_p99": "5.10ms",
    "flood_connections": "8",
    "flood_delay_ms": "2",
    "token_rows_flood_id": "2",
    "token_rows_flood_digest": "3",
    "index_log_rows": "1000002",
    "index_load_seconds": "1.234567",
    "index_rows": "1000002",
    "index_rss_kib": "31000",
    "index_rows_few": "2",
    "index_rss_few_kib": "11000",
    "cold_tokens": "20000",
    "cold_connections": "8",
    "cold_delay_ms": "1",
    "cold_interval": "0.15",
    "cold_limit": "60",
    "cold_min_lookups": "50",
    "cold_reached": "yes",
    "cold_seconds": "4.051",
    "cold_elapsed": "4.051",
    "cold_allow": "20400",
    "cold_unavailable": "0",
    "cold_l1_hit": "402",
    "cold_l1_miss": "19998",
    "cold_l2_hit": "19990",
    "cold_lookups": "8",
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
        self.assertIn("| | with id | id-less |\n|---|---|---|\n", self.text)
        self.assertIn(
            "| flood: length, junk answered per second, p99 (its wrk) | 8.02 s, 3010/s, p99 4.30ms | 8 s, 2750/s, p99 5.10ms |",
            self.text,
        )
        self.assertIn("| junk answered `invalid_token` / `malformed_token` | 24141 / 0 | 22000 / 0 |", self.text)
        self.assertIn("| token lookup statements during the flood | 811 (101/s) | 0 (0/s) |", self.text)
        self.assertIn("| statements per junk token | 0.03 | 0.00 |", self.text)
        self.assertIn("| token rows | 2 | 3 |", self.text)
        # (11.9 − 11.7) µs × 613544 valid checks / 24141 junk checks; (13.0 − 11.7) × 560000 / 22000
        self.assertIn(
            "| CPU per junk check (gatepass / Postgres+Redis), beyond the valid checks' own | 5 µs / 3 µs | 33 µs / 0 µs |",
            self.text,
        )
        self.assertIn("| valid-check throughput vs no flood | 99.1 % | 90.4 % |", self.text)
        self.assertIn("CPU per valid check without a flood (gatepass): 11.7 µs.", self.text)
        self.assertEqual(
            self.line("| e valid, flood id-less |"),
            "| e valid, flood id-less | gatepass | wrk sat + flood | 70000 | 1300 | 3900 | 90.4 % | +300 | 13.0 | 0.0 | 1 | allow 560000 |",
        )

    def test_targets(self):
        self.assertIn("| cached check ≥ 95 % of the no-op's throughput, gRPC | 95.8 % | **met** |", self.text)
        self.assertIn("| p99 at half load ≤ baseline p99 + 50 µs, gRPC | +44 µs | **met** |", self.text)
        self.assertIn(
            "| 0 database statements per cached check | 0 token lookups in 888761 cached checks "
            "(and 5 batched last-used writes) | **met** |",
            self.text,
        )
        self.assertIn(
            "| flood with id: statements bounded by token rows | 811 statements for 2 rows (0.03 per junk token) | **missed** |",
            self.text,
        )
        self.assertIn("| flood with id: valid-check throughput ≥ 90 % of no flood | 99.1 % | **met** |", self.text)
        self.assertIn(
            "| flood id-less: statements bounded by token rows | 0 statements for 3 rows (0.00 per junk token) | **met** |",
            self.text,
        )
        self.assertIn("| flood id-less: valid-check throughput ≥ 90 % of no flood | 90.4 % | **met** |", self.text)
        self.assertIn(
            "- Reported, no target: the index of existing tokens, 1000002 rows, takes 20.5 B of RSS per row and loaded"
            " in 1.235 s (g); a new instance with Redis warm passed a 99 % L1 hit ratio 4.05 s after ready, over 20000"
            " tokens, with 19990 L2 hits and 8 database token lookups meanwhile (i).",
            self.text,
        )
        self.assertIn("| ≤ 300 bytes per cached token | 415 B at 100000, 387 B at 1000000 | **missed** |", self.text)

    def test_memory_and_metric_names_come_from_metrics_rs(self):
        self.assertIn("| tokens checked | cached (`gatepass_cached_tokens`) |", self.text)
        self.assertIn("| 100000 | 100001 | 12768 | 53328 | 415 |\n| 1000000 |", self.text)
        self.assertIn('`gatepass_store_query_duration_seconds_count{operation="token_lookup"}` deltas', self.text)

    def test_index(self):
        self.assertIn("### Index of existing tokens (g)\n", self.text)
        self.assertIn("| rows loaded (log line) / indexed (`gatepass_indexed_tokens`) | 1000002 / 1000002 |", self.text)
        self.assertIn("| load time (log line) | 1.235 s |", self.text)
        self.assertIn("| RSS just ready: 2 rows / 1000002 rows | 11000 KiB / 31000 KiB |\n| RSS difference | +20000 KiB |", self.text)
        # (31000 − 11000) KiB × 1024 / 1000000 rows
        self.assertIn("| bytes per row (RSS difference over the rows' difference) | 20.5 |", self.text)

    def test_cold_start(self):
        self.assertIn("over the first 20000 tokens of b's list while `/metrics` was read every 0.15 s", self.text)
        # 20000 tokens at (402 + 19998) lookups / 4.051 s
        self.assertIn("only after one full cycle (here about 4.0 s at the rate measured): the token count is chosen", self.text)
        self.assertIn("| L1 hit ratio of an interval above 99 %, after ready | 4.05 s |", self.text)
        self.assertIn("| L1 hits / misses meanwhile | 402 / 19998 |", self.text)
        self.assertIn("| checks a second meanwhile (L1 lookups over the time) | 5036 |", self.text)
        self.assertIn("| L2 hits meanwhile | 19990 |\n| database token lookups meanwhile (statements) | 8 |", self.text)
        self.assertIn("(at least 50 lookups); the figures run from ready to the end of the", self.text)

    def test_cold_start_not_reached_and_not_measured(self):
        facts = {**FACTS, "cold_reached": "no", "cold_seconds": "-", "cold_elapsed": "60.1"}
        text = report.render(Results(RUN), MEMORY, facts, "", bench.selectors(metrics.load()))
        self.assertIn("| L1 hit ratio of an interval above 99 %, after ready | not reached in 60.1 s |", text)
        self.assertIn("a new instance with Redis warm did not pass a 99 % L1 hit ratio within 60.1 s of ready, over", text)
        facts = {k: v for k, v in FACTS.items() if not k.startswith(("cold_", "index_"))}
        text = report.render(Results(RUN), MEMORY, facts, "", bench.selectors(metrics.load()))
        self.assertIn("| L1 hit ratio of an interval above 99 %, after ready | - s |", text)
        self.assertIn("| L1 hits / misses meanwhile | - / - |\n| checks a second meanwhile (L1 lookups over the time) | - |", text)
        self.assertIn("a new instance with Redis warm passed a 99 % L1 hit ratio - s after ready, over - tokens", text)
        self.assertIn("| bytes per row (RSS difference over the rows' difference) | - |", text)
        self.assertIn("(here about - s at", text)
        self.assertIn("| RSS difference | - KiB |", text)

    def test_index_bytes_per_row(self):
        figures = report.Figures(Results([]), [], FACTS)
        self.assertEqual(figures.index_bytes_per_row(), 20.5)
        self.assertIsNone(report.Figures(Results([]), [], {**FACTS, "index_rows": "2"}).index_bytes_per_row())
        self.assertIsNone(report.Figures(Results([]), [], {**FACTS, "index_rss_few_kib": "-"}).index_bytes_per_row())

    def test_flood_shapes_are_those_of_bench(self):
        self.assertEqual(tuple(shape for shape, _, _ in report.FLOODS), bench.FLOOD_SHAPES)

    def test_all_runs_and_commands(self):
        self.assertIn("| e.http.flood-id.gp | 613544 | 76693 | 1000 | 3000 | 11.9 | 30 | 1 | 0 |", self.text)
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
