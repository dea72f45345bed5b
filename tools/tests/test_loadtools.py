import unittest

from gatepass_tools import loadtools

from .samples import H2LOAD, H2LOAD_DENIED, H2LOAD_LOG, WRK

class H2loadTest(unittest.TestCase):
    def test_summary_and_log(self):
        load = loadtools.parse_h2load(H2LOAD, H2LOAD_LOG)
        self.assertEqual(load, loadtools.Load(2003, 2000.0, 6, 149.0, 198.0))

    def test_non_2xx_answers_are_errors(self):
        load = loadtools.parse_h2load(H2LOAD_DENIED, "")
        self.assertEqual((load.requests, load.errors, load.p50_us, load.p99_us), (400, 800, None, None))

    def test_output_without_a_summary_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "h2load output"):
            loadtools.parse_h2load("connect: Connection refused\n", "")

    def test_nearest_rank_absorbs_float_noise(self):
        values = list(range(1, 301))
        self.assertEqual(loadtools.nearest_rank(values, 0.99), 297)
        self.assertEqual(loadtools.nearest_rank([7], 0.5), 7)
        self.assertEqual(loadtools.nearest_rank([1, 2], 0.5), 1)


class WrkTest(unittest.TestCase):
    def test_summary(self):
        load = loadtools.parse_wrk(WRK)
        self.assertEqual(load, loadtools.Load(79410, 72210.93, 115, 41.0, 3780.0))

    def test_flood_figures(self):
        self.assertEqual(loadtools.wrk_seconds(WRK), 1.10)
        self.assertEqual(loadtools.wrk_percentile(WRK, 99), "3.78ms")
        self.assertIsNone(loadtools.wrk_percentile("no latency table", 99))

    def test_durations(self):
        self.assertEqual(loadtools.duration_us("170.00us"), 170)
        self.assertEqual(loadtools.duration_us("3.78ms"), 3780)
        self.assertEqual(loadtools.duration_us("1.50s"), 1_500_000)
        with self.assertRaises(ValueError):
            loadtools.duration_us("fast")


class TimeTest(unittest.TestCase):
    def test_user_plus_system(self):
        self.assertAlmostEqual(loadtools.cpu_seconds("0.52 1.23\n"), 1.75)


if __name__ == "__main__":
    unittest.main()
