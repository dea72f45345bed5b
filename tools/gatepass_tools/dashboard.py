"""The Grafana dashboard (dashboards/gatepass.json) read without Grafana:
its structure, its queries, and its PromQL with Grafana's variables replaced
by what Grafana would put there, so Prometheus can evaluate it."""

import re
from dataclasses import dataclass

#: Every panel and target must use the dashboard's datasource variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana 9 and later.
MIN_SCHEMA_VERSION = 36
GRID_COLUMNS = 24

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC_NAME = re.compile(r"\b(gatepass_\w+|process_\w+|up)\b")


@dataclass(frozen=True)
class Target:
    """One query of a panel."""

    panel: str
    ref_id: str
    expr: str
    legend: str


def grafana_values(job: str, instance: str) -> dict[str, str]:
    """What Grafana substitutes for the variables the dashboard may use,
    with its variables set to this job and instance."""
    return {"__rate_interval": "1m", "__interval": "15s", "job": job, "instance": instance}


def substitute(expr: str, values: dict[str, str]) -> str:
    """`expr` with `$name`, `${name}`, `${name:format}` and `[[name]]`
    replaced; an unknown variable is an error, not left for Prometheus to
    reject with a less helpful message."""

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise ValueError(f"unknown Grafana variable ${name}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def expected_unit(expr: str) -> str | None:
    """The panel unit an expression's shape calls for (latency quantiles in
    seconds, shares as percentunit, rates as ops), or None when any will do."""
    if expr.startswith("histogram_quantile"):
        return "s"
    if "process_cpu_seconds_total" in expr or re.search(r"\)\s*/\s*sum", expr):
        return "percentunit"
    if re.match(r"sum( by \([^)]*\))? \(rate\(gatepass_\w+_(total|count)", expr):
        return "ops"
    return None


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def structure_problems(dashboard: dict) -> list[str]:
    """What keeps the dashboard from importing cleanly or from following
    its own conventions; empty when nothing does."""
    problems = []
    if dashboard.get("schemaVersion", 0) < MIN_SCHEMA_VERSION:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} < {MIN_SCHEMA_VERSION}")
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("uid and title are required")
    declared = variables(dashboard)
    datasource = declared.get("datasource", {})
    if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problems.append("no datasource variable of type datasource for prometheus")
    if "instance" not in declared and "job" not in declared:
        problems.append("no instance or job variable")
    ids = set()
    for panel in dashboard.get("panels", []):
        if panel.get("id") in ids:
            problems.append(f"{_where(panel)}: duplicate id")
        ids.add(panel.get("id"))
        problems += _panel_problems(panel)
    return problems


def _where(panel: dict) -> str:
    return f"panel {panel.get('id')} {panel.get('title')!r}"


def _panel_problems(panel: dict) -> list[str]:
    where = _where(panel)
    problems = []
    grid = panel.get("gridPos", {})
    if not all(k in grid for k in "hwxy") or grid["x"] + grid["w"] > GRID_COLUMNS:
        problems.append(f"{where}: gridPos {grid}")
    if panel.get("type") == "row":
        return problems
    if panel.get("datasource") != DATASOURCE:
        problems.append(f"{where}: datasource {panel.get('datasource')}, expected {DATASOURCE}")
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{where}: no targets")
    refs = [t.get("refId") for t in targets]
    if len(set(refs)) != len(refs) or None in refs:
        problems.append(f"{where}: refIds {refs}")
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    if not unit:
        problems.append(f"{where}: no unit")
    for target in targets:
        if target.get("datasource") != DATASOURCE:
            problems.append(f"{where} {target.get('refId')}: datasource {target.get('datasource')}")
        want = expected_unit(target.get("expr", ""))
        if want and unit != want:
            problems.append(f"{where}: unit {unit!r}, expected {want!r} for {target.get('expr')}")
    return problems


def query_variables(dashboard: dict) -> list[tuple[str, str]]:
    """(name, definition) of each variable Grafana fills with a query."""
    found = []
    for name, variable in variables(dashboard).items():
        if variable.get("type") != "query":
            continue
        definition = variable.get("query")
        if isinstance(definition, dict):
            definition = definition.get("query")
        found.append((name, definition or ""))
    return found


def label_values(definition: str) -> tuple[str, str]:
    """(selector, label) of `label_values(<selector>, <label>)`, the only
    variable query this check can evaluate."""
    match = _LABEL_VALUES.fullmatch(definition)
    if not match:
        raise ValueError("only label_values(<selector>, <label>) is checked")
    return match.group(1), match.group(2)


def targets(dashboard: dict) -> list[Target]:
    return [
        Target(panel.get("title"), target.get("refId"), target.get("expr", ""), target.get("legendFormat", ""))
        for panel in dashboard.get("panels", [])
        for target in panel.get("targets") or []
    ]


def legend_labels(legend: str) -> list[str]:
    """The labels a legend format such as `{{surface}} {{decision}}` shows."""
    return _LEGEND_LABEL.findall(legend)


def metric_names(exprs) -> set[str]:
    """Metric names the PromQL expressions read (gatepass's, the process
    collector's, and Prometheus's `up`), string literals left out."""
    return set(_METRIC_NAME.findall(_STRING.sub('""', " ".join(exprs))))
