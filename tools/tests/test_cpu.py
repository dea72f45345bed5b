import unittest

from gatepass_tools import cpu

from .samples import AFTER, BEFORE, stat


class ParseTest(unittest.TestCase):
    def test_process_ticks_survive_odd_command_names(self):
        self.assertEqual(cpu.process_ticks(stat(7, "tokio-rt (worker) 1", 12, 3)), (7, 15))

    def test_busy_ticks_leave_idle_and_iowait_out(self):
        self.assertEqual(cpu.busy_ticks("cpu  100 10 50 9000 5 3 2 1 0 0"), 166)

    def test_snapshot(self):
        snapshot = cpu.parse_snapshot(BEFORE)
        self.assertEqual(snapshot, cpu.Snapshot(1000.0, 166, 50, {20: 10, 21: 2}))

    def test_a_snapshot_needs_time_and_machine(self):
        with self.assertRaises(ValueError):
            cpu.parse_snapshot("server " + stat(1, "x", 1, 1))
        with self.assertRaises(ValueError):
            cpu.parse_snapshot("time 1\nmachine cpu 1 1 1 1 1 1 1 1\nclock 3")


class UseTest(unittest.TestCase):
    def test_store_ticks_count_new_processes_whole(self):
        before, after = cpu.parse_snapshot(BEFORE), cpu.parse_snapshot(AFTER)
        self.assertEqual(cpu.store_ticks_between(before, after), 10 + 5)

    def test_cpu_use(self):
        before, after = cpu.parse_snapshot(BEFORE), cpu.parse_snapshot(AFTER)
        # 2 s on 2 cores at 100 Hz: 400 ticks of capacity; busy went up by 300.
        use = cpu.cpu_use(before, after, tool_seconds=0.4, requests=1000, hz=100, cpus=2)
        self.assertAlmostEqual(use.server_us, 120 * 1e6 / 100 / 1000)
        self.assertAlmostEqual(use.store_us, 15 * 1e6 / 100 / 1000)
        self.assertAlmostEqual(use.tool_pct, 10)
        self.assertAlmostEqual(use.other_pct, 100 * (300 - 120 - 15 - 40) / 400)

    def test_other_never_goes_negative_and_no_requests_count_as_one(self):
        before, after = cpu.parse_snapshot(BEFORE), cpu.parse_snapshot(AFTER)
        use = cpu.cpu_use(before, after, tool_seconds=5, requests=0, hz=100, cpus=2)
        self.assertEqual(use.other_pct, 0)
        self.assertAlmostEqual(use.server_us, 120 * 1e6 / 100)


if __name__ == "__main__":
    unittest.main()
