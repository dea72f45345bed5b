import copy
import json
import unittest

from gatepass_tools import REPO_ROOT, metrics, promcheck
from gatepass_tools import dashboard as grafana

VALUES = grafana.grafana_values("gatepass", "127.0.0.1:9464")
DS = grafana.DATASOURCE


def minimal_dashboard() -> dict:
    return {
        "uid": "gp",
        "title": "gatepass",
        "schemaVersion": 37,
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "job", "type": "query", "query": {"query": "label_values(gatepass_build_info, job)"}},
                {"name": "instance", "type": "query", "query": 'label_values(up{job=~"$job"}, instance)'},
            ]
        },
        "panels": [
            {"id": 1, "type": "row", "title": "Row", "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}},
            {
                "id": 2,
                "type": "timeseries",
                "title": "Checks",
                "datasource": DS,
                "gridPos": {"h": 8, "w": 12, "x": 12, "y": 1},
                "fieldConfig": {"defaults": {"unit": "ops"}},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": DS,
                        "expr": 'sum by (surface) (rate(gatepass_checks_total{job=~"$job"}[$__rate_interval]))',
                        "legendFormat": "{{ surface }}",
                    }
                ],
            },
        ],
    }


class SubstituteTest(unittest.TestCase):
    def test_replaces_every_variable_syntax(self):
        expr = 'rate(x{job=~"$job", instance=~"${instance:regex}"}[$__rate_interval]) [[__interval]]'
        self.assertEqual(
            grafana.substitute(expr, VALUES), 'rate(x{job=~"gatepass", instance=~"127.0.0.1:9464"}[1m]) 15s'
        )

    def test_an_unknown_variable_is_an_error(self):
        with self.assertRaisesRegex(ValueError, r"unknown Grafana variable \$tenant"):
            grafana.substitute('x{tenant="$tenant"}', VALUES)


class ExpectedUnitTest(unittest.TestCase):
    def test_units_follow_the_expression(self):
        cases = {
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))": "s",
            "sum(rate(a_total[1m])) / sum(rate(b_total[1m]))": "percentunit",
            "rate(process_cpu_seconds_total[1m])": "percentunit",
            "sum by (surface) (rate(gatepass_checks_total[1m]))": "ops",
            "sum by (op) (rate(gatepass_store_query_duration_seconds_count[1m]))": "ops",
            "max(gatepass_redis_breaker_open)": None,
        }
        for expr, unit in cases.items():
            self.assertEqual(grafana.expected_unit(expr), unit, expr)


class StructureTest(unittest.TestCase):
    def test_a_well_formed_dashboard_has_no_problem(self):
        self.assertEqual(grafana.structure_problems(minimal_dashboard()), [])

    def test_reports_each_problem(self):
        board = minimal_dashboard()
        board["schemaVersion"] = 30
        panel = board["panels"][1]
        panel["id"] = 1
        panel["gridPos"]["w"] = 13
        panel["fieldConfig"]["defaults"]["unit"] = "s"
        panel["targets"].append({"refId": "A", "datasource": {"uid": "other"}, "expr": "up"})
        problems = "\n".join(grafana.structure_problems(board))
        for wanted in ("schemaVersion 30 < 36", "duplicate id", "gridPos", "refIds ['A', 'A']",
                       "A: datasource {'uid': 'other'}", "unit 's', expected 'ops'"):  # fmt: skip
            self.assertIn(wanted, problems)

    def test_needs_a_prometheus_datasource_variable(self):
        board = minimal_dashboard()
        board["templating"]["list"][0]["query"] = "loki"
        self.assertEqual(grafana.structure_problems(board), ["no datasource variable of type datasource for prometheus"])

    def test_a_panel_without_targets_or_unit(self):
        board = copy.deepcopy(minimal_dashboard())
        del board["panels"][1]["targets"], board["panels"][1]["fieldConfig"]
        problems = grafana.structure_problems(board)
        self.assertEqual(problems, ["panel 2 'Checks': no targets", "panel 2 'Checks': no unit"])


class QueriesTest(unittest.TestCase):
    def test_query_variables_and_their_label_values(self):
        found = grafana.query_variables(minimal_dashboard())
        self.assertEqual(
            found,
            [("job", "label_values(gatepass_build_info, job)"), ("instance", 'label_values(up{job=~"$job"}, instance)')],
        )
        self.assertEqual(grafana.label_values(found[1][1]), ('up{job=~"$job"}', "instance"))
        with self.assertRaisesRegex(ValueError, "only label_values"):
            grafana.label_values("query_result(up)")

    def test_targets_and_legends(self):
        [target] = grafana.targets(minimal_dashboard())
        self.assertEqual((target.panel, target.ref_id), ("Checks", "A"))
        self.assertEqual(grafana.legend_labels(target.legend), ["surface"])
        self.assertEqual(grafana.legend_labels("{{surface}} / {{ decision }}"), ["surface", "decision"])

    def test_metric_names_leave_strings_out(self):
        exprs = ['sum(rate(gatepass_checks_total{reason="gatepass_fake_total"}[5m]))', "up == 0", "process_open_fds"]
        self.assertEqual(grafana.metric_names(exprs), {"gatepass_checks_total", "up", "process_open_fds"})


class ShippedDashboardTest(unittest.TestCase):
    """dashboards/gatepass.json, checked without Prometheus."""

    def setUp(self):
        self.board = json.loads((REPO_ROOT / "dashboards" / "gatepass.json").read_text())

    def test_has_no_structure_problem(self):
        self.assertEqual(grafana.structure_problems(self.board), [])

    def test_reads_only_metrics_gatepass_exports(self):
        names = grafana.metric_names(t.expr for t in grafana.targets(self.board))
        self.assertEqual(promcheck.undeclared(metrics.load(), names), [])

    def test_every_expression_substitutes(self):
        for target in grafana.targets(self.board):
            self.assertNotIn("$", grafana.substitute(target.expr, VALUES), target.expr)
        for _, definition in grafana.query_variables(self.board):
            grafana.substitute(grafana.label_values(definition)[0], VALUES)


if __name__ == "__main__":
    unittest.main()
