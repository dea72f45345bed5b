import unittest

from gatepass_tools import exposition
from gatepass_tools.metrics import Selector

# As the prometheus crate writes it (labels sorted), trimmed.
SCRAPE = """\
# HELP gatepass_checks_total Checks answered, by surface, decision and reason.
# TYPE gatepass_checks_total counter
gatepass_checks_total{decision="allow",reason="ok",surface="grpc"} 5
gatepass_checks_total{decision="allow",reason="ok",surface="http"} 7
gatepass_checks_total{decision="deny",reason="invalid_token",surface="http"} 2
# HELP gatepass_check_duration_seconds Time to answer a check.
# TYPE gatepass_check_duration_seconds histogram
gatepass_check_duration_seconds_bucket{decision="allow",surface="http",le="0.00005"} 3
gatepass_check_duration_seconds_bucket{decision="allow",surface="http",le="+Inf"} 7
gatepass_check_duration_seconds_sum{decision="allow",surface="http"} 0.00042
gatepass_check_duration_seconds_count{decision="allow",surface="http"} 7
# TYPE gatepass_cached_tokens gauge
gatepass_cached_tokens 12
gatepass_build_info{version="0.1.0"} 1 1700000000000
odd{text="a \\"quoted\\" \\\\ back\\nslash",empty=""} NaN
"""


class ParseTest(unittest.TestCase):
    def setUp(self):
        self.scrape = exposition.parse(SCRAPE)

    def test_reads_types(self):
        self.assertEqual(
            self.scrape.types,
            {
                "gatepass_checks_total": "counter",
                "gatepass_check_duration_seconds": "histogram",
                "gatepass_cached_tokens": "gauge",
            },
        )

    def test_reads_samples_with_labels_values_and_timestamps(self):
        self.assertEqual(len(self.scrape.samples), 10)
        bucket = self.scrape.samples[4]
        self.assertEqual(bucket.name, "gatepass_check_duration_seconds_bucket")
        self.assertEqual(bucket.labels, {"decision": "allow", "surface": "http", "le": "+Inf"})
        self.assertEqual(self.scrape.samples[8].value, 1)

    def test_unescapes_label_values(self):
        odd = self.scrape.samples[-1]
        self.assertEqual(odd.labels, {"text": 'a "quoted" \\ back\nslash', "empty": ""})
        self.assertNotEqual(odd.value, odd.value)  # NaN

    def test_total_sums_the_matching_series(self):
        allow = Selector("gatepass_checks_total", (("decision", "allow"), ("reason", "ok")))
        self.assertEqual(self.scrape.total(allow), 12)
        self.assertEqual(self.scrape.total(Selector("gatepass_cached_tokens")), 12)
        self.assertEqual(self.scrape.total(Selector("gatepass_check_duration_seconds_count")), 7)

    def test_total_of_a_series_not_exposed_is_zero(self):
        self.assertEqual(self.scrape.total(Selector("gatepass_checks_total", (("surface", "none"),))), 0)

    def test_a_line_that_is_no_sample_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "line 2"):
            exposition.parse("a 1\nnot a sample at all\n")
        with self.assertRaisesRegex(ValueError, "labels"):
            exposition.parse('a{b="1" c="2"} 1\n')


if __name__ == "__main__":
    unittest.main()
