"""What scripts/prometheus-check verifies, once the script has started a
gatepass, sent it traffic and started a Prometheus scraping it.

    python3 -m gatepass_tools.promcheck free-ports 4
    python3 -m gatepass_tools.promcheck wait-up --prometheus URL --job JOB --ops URL
    python3 -m gatepass_tools.promcheck settle --prometheus URL --job JOB --sent FILE
    python3 -m gatepass_tools.promcheck verify --prometheus URL --metrics-url URL ...

`verify` prints one line per check and then `checked <counts>: <n> failed`,
and exits non-zero when any check failed. The functions that judge what
Prometheus answered take plain values, so they are tested without one.
"""

import argparse
import collections
import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import dashboard as grafana
from . import exposition, metrics

#: Kinds of check, in the order they run and the summary counts them.
CHECK_KINDS = ("promtool", "structure", "variable", "dashboard", "alert", "traffic")
#: Prometheus' own metric, read by the alert rules.
PROMETHEUS_METRICS = {"up"}
#: How many series a dashboard line shows the values of.
SHOWN_SERIES = 6
PREFIX = "prometheus-check"


# --- output -------------------------------------------------------------------


def check_line(ok: bool, kind: str, label: str, detail: str = "") -> str:
    """One check as printed: verdict, kind, what was checked, and why it
    failed (indented) when it did."""
    line = f"{'ok  ' if ok else 'FAIL'}  {kind:9} {label}"
    return "".join([line, *(f"\n      {part}" for part in detail.splitlines())])


class Tally:
    """Prints each check as it is judged and counts them, by kind and failed."""

    def __init__(self, out=sys.stdout):
        self.out = out
        self.checked = dict.fromkeys(CHECK_KINDS, 0)
        self.failed = 0

    def report(self, ok: bool, kind: str, label: str, detail: str = "") -> None:
        self.checked[kind] += 1
        self.failed += not ok
        print(check_line(ok, kind, label, detail), file=self.out, flush=True)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in self.checked.items())
        return f"checked {counts}: {self.failed} failed"


# --- Prometheus' HTTP API -----------------------------------------------------


def unwrap(body: dict):
    """The `data` of an API answer; an error answer raises ValueError with
    Prometheus' own explanation (a PromQL parse error, say)."""
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]


def vector(data: dict) -> list[dict]:
    """An instant query's result as a list of series; a scalar is one series
    without labels."""
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    if data["resultType"] != "vector":
        raise ValueError(f"result type {data['resultType']}, expected a vector")
    return data["result"]


class Prometheus:
    """The few API calls the checks make."""

    def __init__(self, url: str, timeout: float = 10):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def api(self, path: str, **params):
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)  # 400 and 422 carry the reason
        return unwrap(body)

    def instant(self, expr: str) -> list[dict]:
        return vector(self.api("query", query=expr))

    def has_data(self, expr: str) -> bool:
        """Whether `expr` returns a series now; False while Prometheus is not
        answering, so it can be polled."""
        try:
            return bool(self.instant(expr))
        except (OSError, ValueError):
            return False

    def alerting_rules(self) -> list[dict]:
        return [
            rule for group in self.api("rules")["groups"] for rule in group["rules"] if rule["type"] == "alerting"
        ]


def wait_until(condition, seconds: float, interval: float = 0.2) -> bool:
    """Polls `condition` until it holds, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


# --- judging answers ----------------------------------------------------------


def finite(series: dict) -> bool:
    return not math.isnan(float(series["value"][1]))


def variable_values(result: list[dict], label: str, current: str | None) -> list[str]:
    """The values a `label_values` variable offers; an error when it offers
    none, or not the one Grafana would select (`current`)."""
    values = sorted({series["metric"].get(label) for series in result} - {None})
    if not values:
        raise ValueError(f"no series with label {label}")
    if current is not None and current not in values:
        raise ValueError(f"{current!r} not among {values}")
    return values


def describe_series(result: list[dict], legend: str) -> str:
    """What a panel query returned, shortly; an error when a panel would show
    nothing, only NaN, or a legend naming a label the series lack."""
    if not result:
        raise ValueError("no data")
    if not any(finite(series) for series in result):
        raise ValueError(f"only NaN values: {result}")
    for wanted in grafana.legend_labels(legend):
        missing = [series["metric"] for series in result if wanted not in series["metric"]]
        if missing:
            raise ValueError(f"legend uses {{{{{wanted}}}}}, absent from {missing[0]}")
    values = ", ".join(
        f"{'/'.join(v for k, v in sorted(s['metric'].items()) if k != '__name__') or '-'}={float(s['value'][1]):.6g}"
        for s in result[:SHOWN_SERIES]
    )
    return f"{len(result)} series: {values}"


def require_healthy(rule: dict) -> None:
    if rule.get("health") != "ok":
        raise ValueError(f"rule health {rule.get('health')}: {rule.get('lastError')}")


def require_documented(rule: dict) -> None:
    """An alert an operator can act on: a severity, a summary and a
    description, and a `for:` so one bad scrape does not page."""
    if "severity" not in rule.get("labels", {}):
        raise ValueError("no labels.severity")
    for annotation in ("summary", "description"):
        if not rule.get("annotations", {}).get(annotation):
            raise ValueError(f"no annotations.{annotation}")
    if not rule.get("duration"):
        raise ValueError("no for:")


def holds(got: float, op: str, want: float) -> bool:
    return got == want if op == "==" else got > want


def rules_found(promtool_output: str) -> int:
    """The rule count of `promtool check rules`, 0 when it printed none."""
    found = re.search(r"SUCCESS: (\d+) rules found", promtool_output)
    return int(found.group(1)) if found else 0


def exposition_problems(catalog: metrics.Catalog, scraped: exposition.Exposition) -> list[str]:
    """Where /metrics and src/metrics.rs disagree: a family declared but not
    exposed or exposed with another type, or a gatepass family exposed but
    not declared there."""
    problems = []
    for family in catalog.families.values():
        exposed = scraped.types.get(family.name)
        if exposed is None:
            problems.append(f"{family.name} is not exposed")
        elif exposed != family.kind:
            problems.append(f"{family.name} is a {exposed}, declared as a {family.kind}")
    extra = sorted(name for name in scraped.types if name.startswith("gatepass_") and name not in catalog.families)
    problems += [f"{name} is exposed but not declared" for name in extra]
    return problems


def undeclared(catalog: metrics.Catalog, names) -> list[str]:
    """The metric names among `names` that gatepass does not export."""
    return sorted(name for name in names if name not in PROMETHEUS_METRICS and not catalog.declares(name))


@dataclass(frozen=True)
class Expectation:
    """An instant query whose single value must compare with `want`."""

    expr: str
    op: str
    want: float

    def __str__(self) -> str:
        return f"{self.expr} {self.op} {self.want:g}"


def traffic_expectations(catalog: metrics.Catalog, sent: dict[str, int], target: str) -> list[Expectation]:
    """What gatepass must have counted after the traffic the script sent
    (`sent`: checks by the `gatepass_checks_total` reason they count as),
    read through Prometheus for the series of `target` (`job=..., instance=...`)."""

    def sum_of(family: str, suffix: str | None = None, **labels: str) -> str:
        return f"sum({catalog.selector(family, suffix, **labels).promql(target)})"

    def one(aggregate: str, family: str, **labels: str) -> str:
        return f"{aggregate}({catalog.selector(family, **labels).promql(target)})"

    checks, lookups = "gatepass_checks_total", "gatepass_cache_lookups_total"
    store = "gatepass_store_query_duration_seconds"
    expected = [Expectation(sum_of(checks, surface="http", decision="allow", reason="ok"), "==", sent.get("ok", 0))]
    for reason in sorted(set(sent) - {"ok"}):
        expected.append(Expectation(sum_of(checks, surface="http", decision="deny", reason=reason), "==", sent[reason]))
    expected += [
        Expectation(sum_of("gatepass_check_duration_seconds", "count", surface="http"), "==", sum(sent.values())),
        Expectation(sum_of(checks, surface="grpc"), "==", 0),
        Expectation(sum_of(checks, decision="error"), "==", 0),
        Expectation(sum_of(lookups, tier="l1", result="hit"), ">", 0),
        Expectation(sum_of(lookups, tier="l1", result="miss"), ">", 0),
        Expectation(sum_of(lookups, tier="l1", result="negative"), ">", 0),
        Expectation(sum_of(lookups, tier="l2", result="hit"), ">", 0),
        # Every token's first lookup asks Redis, which has nothing yet.
        Expectation(sum_of(lookups, tier="l2", result="miss"), ">", 0),
        Expectation(sum_of(lookups, tier="db", result="hit"), ">", 0),
        Expectation(sum_of(store, "count", operation="token_lookup"), ">", 0),
        Expectation(sum_of(store, "count", operation="last_used_flush"), ">", 0),
        Expectation(sum_of("gatepass_store_errors_total"), "==", 0),
        Expectation(sum_of("gatepass_redis_errors_total"), "==", 0),
        Expectation(one("max", "gatepass_redis_breaker_open"), "==", 0),
        Expectation(one("min", "gatepass_change_feed_connected"), "==", 1),
        Expectation(sum_of("gatepass_invalidations_total", kind="token"), ">", 0),
        Expectation(sum_of("gatepass_invalidations_total", kind="service"), ">", 0),
        Expectation(sum_of("gatepass_last_used_flushes_total"), ">", 0),
        Expectation(sum_of("gatepass_last_used_rows_total"), ">", 0),
        Expectation(sum_of("gatepass_policy_reload_failures_total"), "==", 0),
        Expectation(one("count", "gatepass_cached_tokens"), "==", 1),
        Expectation(
            f"count({catalog.selector('gatepass_build_info', version=metrics.Pattern('.+')).promql(target)} == 1)",
            "==",
            1,
        ),
        Expectation(sum_of("process_resident_memory_bytes"), ">", 0),
        # Whole seconds in the prometheus crate: only its presence is certain.
        Expectation(one("count", "process_cpu_seconds_total"), "==", 1),
    ]
    return expected


def read_sent(path: Path) -> dict[str, int]:
    """Checks sent, by reason: the script writes one reason per check."""
    return dict(collections.Counter(path.read_text(encoding="utf-8").split()))


# --- the checks ---------------------------------------------------------------


def promtool(*args: str, stdin: str | None = None) -> tuple[bool, str]:
    done = subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, check=False)
    return done.returncode == 0, done.stdout + done.stderr


def check_promtool(tally: Tally, args, metrics_text: str) -> int:
    """promtool's own checks; returns the number of rules it found."""
    ok, rules_output = promtool("check", "rules", args.alerts)
    tally.report(ok, "promtool", f"check rules {args.alerts}", "" if ok else rules_output)
    ok, output = promtool("test", "rules", args.alert_tests)
    tally.report(ok, "promtool", f"test rules {args.alert_tests}", "" if ok else output)
    ok, output = promtool("check", "metrics", stdin=metrics_text)
    tally.report(ok, "promtool", f"check metrics < {args.metrics_url}", "" if ok else output)
    return rules_found(rules_output)


def check_structure(tally: Tally, catalog, metrics_text: str, board: dict, board_name: str, rules) -> None:
    try:
        problems = exposition_problems(catalog, exposition.parse(metrics_text))
    except ValueError as error:
        problems = [str(error)]
    tally.report(
        not problems,
        "structure",
        f"/metrics exposes the {len(catalog.families)} families of src/metrics.rs, with their types",
        "; ".join(problems),
    )
    problems = grafana.structure_problems(board)
    tally.report(
        not problems,
        "structure",
        f"dashboard {board_name} (schemaVersion {board.get('schemaVersion')}, {len(board.get('panels', []))} panels)",
        "; ".join(problems),
    )
    exprs = [target.expr for target in grafana.targets(board)] + [rule["query"] for rule in rules]
    names = grafana.metric_names(exprs)
    missing = undeclared(catalog, names)
    tally.report(
        not missing,
        "structure",
        f"the {len(names)} metrics the dashboard and alert rules read are gatepass's or Prometheus'",
        f"not declared in src/metrics.rs: {', '.join(missing)}" if missing else "",
    )


def check_variables(tally: Tally, prometheus: Prometheus, board: dict, values: dict[str, str]) -> None:
    for name, definition in grafana.query_variables(board):
        label = f"${name} = {definition}"
        try:
            selector, label_name = grafana.label_values(definition)
            result = prometheus.instant(grafana.substitute(selector, values))
            offered = variable_values(result, label_name, values.get(name))
            tally.report(True, "variable", f"{label} -> {offered}")
        except ValueError as error:
            tally.report(False, "variable", label, str(error))


def check_targets(tally: Tally, prometheus: Prometheus, board: dict, values: dict[str, str]) -> None:
    for target in grafana.targets(board):
        label = f"{target.panel!r} {target.ref_id}: {target.expr}"
        try:
            result = prometheus.instant(grafana.substitute(target.expr, values))
            tally.report(True, "dashboard", f"{label}\n      {describe_series(result, target.legend)}")
        except ValueError as error:
            tally.report(False, "dashboard", label, str(error))


def check_rules(tally: Tally, prometheus: Prometheus, rules: list[dict], promtool_count: int, job: str) -> None:
    tally.report(
        len(rules) == promtool_count and promtool_count > 0,
        "alert",
        f"Prometheus loaded {len(rules)} alerting rules (promtool counted {promtool_count})",
    )
    for rule in rules:
        label = f"{rule['name']}: {' '.join(rule['query'].split())}"
        try:
            require_healthy(rule)
            result = prometheus.instant(rule["query"])
            require_documented(rule)
            tally.report(True, "alert", f"{label} -> {len(result)} firing/pending series now, state {rule['state']}")
        except ValueError as error:
            tally.report(False, "alert", label, str(error))
    for name in sorted(grafana.metric_names(rule["query"] for rule in rules)):
        try:
            present = prometheus.instant(f'count({{__name__="{name}", job="{job}"}})')
            if not present:
                raise ValueError("no such series scraped from gatepass")
            tally.report(True, "alert", f"metric {name} exists ({present[0]['value'][1]} series)")
        except ValueError as error:
            tally.report(False, "alert", f"metric {name} used by the alert rules", str(error))


def check_traffic(tally: Tally, prometheus: Prometheus, expectations: list[Expectation]) -> None:
    for expectation in expectations:
        try:
            result = prometheus.instant(expectation.expr)
            if not result:
                raise ValueError("no data")
            got = float(result[0]["value"][1])
            ok = holds(got, expectation.op, expectation.want)
            tally.report(ok, "traffic", str(expectation), "" if ok else f"got {got:g}")
        except ValueError as error:
            tally.report(False, "traffic", str(expectation), str(error))


def verify(args) -> int:
    """Every check, one line each, then the summary; 1 when any failed."""
    catalog = metrics.load()
    prometheus = Prometheus(args.prometheus)
    target = f'job="{args.job}", instance="{args.instance}"'
    try:
        with urllib.request.urlopen(args.metrics_url, timeout=5) as response:
            metrics_text = response.read().decode()
    except OSError as error:
        return fail(f"cannot read {args.metrics_url}: {error}")
    board = json.loads(Path(args.dashboard).read_text(encoding="utf-8"))
    values = grafana.grafana_values(args.job, args.instance)
    rules = prometheus.alerting_rules()
    tally = Tally()
    rule_count = check_promtool(tally, args, metrics_text)
    check_structure(tally, catalog, metrics_text, board, Path(args.dashboard).name, rules)
    check_variables(tally, prometheus, board, values)
    check_targets(tally, prometheus, board, values)
    check_rules(tally, prometheus, rules, rule_count, args.job)
    check_traffic(tally, prometheus, traffic_expectations(catalog, read_sent(Path(args.sent)), target))
    print(tally.summary(), flush=True)
    return 1 if tally.failed else 0


# --- waiting and ports, for the script ---------------------------------------


def fail(message: str) -> int:
    print(f"{PREFIX}: FAIL: {message}", file=sys.stderr)
    return 1


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: held open together so that
    they differ, then released for the servers to bind."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_up(args) -> int:
    prometheus = Prometheus(args.prometheus, timeout=5)
    if wait_until(lambda: prometheus.has_data(f'up{{job="{args.job}"}} == 1'), 30):
        return 0
    return fail(f"Prometheus did not scrape {args.ops}/metrics within 30 s")


def settle(args) -> int:
    """Waits until Prometheus has scraped every check the script sent and a
    last_used flush, then for a few more scrapes and rule evaluations."""
    catalog = metrics.load()
    prometheus = Prometheus(args.prometheus, timeout=5)
    job = f'job="{args.job}"'
    total = sum(read_sent(Path(args.sent)).values())
    checks = catalog.selector("gatepass_checks_total").promql(job)
    if not wait_until(lambda: prometheus.has_data(f"sum({checks}) == {total}"), 30):
        return fail(f"Prometheus did not see all {total} checks within 30 s")
    rows = catalog.selector("gatepass_last_used_rows_total").promql(job)
    if not wait_until(lambda: prometheus.has_data(f"{rows} > 0"), 30):
        return fail("no last_used flush was scraped within 30 s")
    time.sleep(3)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m gatepass_tools.promcheck", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ports = commands.add_parser("free-ports", help="print free loopback ports")
    ports.add_argument("count", type=int)
    for name, help_text in (
        ("wait-up", "wait until Prometheus scrapes the job"),
        ("settle", "wait until Prometheus has seen the traffic"),
        ("verify", "run every check"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--prometheus", required=True, help="Prometheus' base URL")
        command.add_argument("--job", default="gatepass")
        if name == "wait-up":
            command.add_argument("--ops", required=True, help="gatepass's ops URL, for the message")
        if name in ("settle", "verify"):
            command.add_argument("--sent", required=True, help="file of the reasons of the checks sent")
        if name == "verify":
            command.add_argument("--instance", required=True)
            command.add_argument("--metrics-url", required=True)
            command.add_argument("--dashboard", required=True)
            command.add_argument("--alerts", required=True)
            command.add_argument("--alert-tests", required=True)
    args = parser.parse_args(argv)
    if args.command == "free-ports":
        print(*free_ports(args.count))
        return 0
    return {"wait-up": wait_up, "settle": settle, "verify": verify}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
