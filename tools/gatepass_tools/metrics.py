"""The metric families gatepass exports, read from `src/metrics.rs`.

The Rust source is the one list of metric names. The tools parse it instead
of repeating it, and every name a tool reads goes through `Catalog.selector`,
so a family renamed or dropped in Rust stops the tools (and their tests) with
a clear message instead of leaving them checking series that never exist.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT

METRICS_RS = REPO_ROOT / "src" / "metrics.rs"

#: The prometheus crate's metric types, by the type Prometheus calls them.
KINDS = {
    "Counter": "counter",
    "CounterVec": "counter",
    "IntCounter": "counter",
    "IntCounterVec": "counter",
    "Gauge": "gauge",
    "GaugeVec": "gauge",
    "IntGauge": "gauge",
    "IntGaugeVec": "gauge",
    "Histogram": "histogram",
    "HistogramVec": "histogram",
}
#: Series a histogram family is exposed as, `<family>_<suffix>`.
HISTOGRAM_SUFFIXES = ("bucket", "sum", "count")
#: Families of the prometheus crate's process collector. Their names live in
#: the crate, not in src/metrics.rs: only their prefix can be checked.
PROCESS_PREFIX = "process_"

STRING = r'"(?:[^"\\]|\\.)*"'
_STRING = re.compile(STRING)
_COMMENT_OR_STRING = re.compile(STRING + r"|//[^\n]*|/\*.*?\*/", re.S)
_CONSTRUCTOR = re.compile(r"\b(" + "|".join(KINDS) + r")::new\(")
# A closure `|name: &str, help: &str| ... IntCounter::new(name, help)` that
# registers one unlabelled metric per call, such as `counter(...)` in metrics.rs.
_HELPER = re.compile(
    r"let\s+(\w+)\s*=\s*\|\s*name\s*:\s*&str\s*,[^|]*\|[^;]*?\b(" + "|".join(KINDS) + r")::new\(\s*name\b"
)


class UndeclaredMetric(LookupError):
    """A tool asked for a metric, suffix or label src/metrics.rs does not
    declare: the tool is out of date with the Rust source."""


class Pattern(str):
    """A label value matched as a regular expression (`=~`), not exactly."""


@dataclass(frozen=True)
class Family:
    """One metric family: its name, Prometheus type and label names."""

    name: str
    kind: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selector:
    """The series of one name whose labels include `labels`.

    Labels keep the order they were given in, so PromQL built from a selector
    reads as written; `str()` gives the exposition form, labels sorted as the
    prometheus crate writes them.
    """

    name: str
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        """Whether a scraped series (name and labels) is one of these."""
        if name != self.name:
            return False
        for label, wanted in self.labels:
            value = labels.get(label)
            if value is None:
                return False
            if isinstance(wanted, Pattern):
                if not re.fullmatch(wanted, value):
                    return False
            elif value != wanted:
                return False
        return True

    def promql(self, *matchers: str) -> str:
        """A PromQL selector: `matchers` (such as `job="gatepass"`) first."""
        own = [f'{label}{"=~" if isinstance(value, Pattern) else "="}"{value}"' for label, value in self.labels]
        return f"{self.name}{{{', '.join([*matchers, *own])}}}"

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        pairs = ",".join(f'{label}="{value}"' for label, value in sorted(self.labels))
        return f"{self.name}{{{pairs}}}"


@dataclass(frozen=True)
class Catalog:
    """Every family src/metrics.rs registers."""

    families: dict[str, Family]
    process_collector: bool

    def declares(self, series: str) -> bool:
        """Whether a series name belongs to a family gatepass exports."""
        if series in self.families:
            return True
        if self.process_collector and series.startswith(PROCESS_PREFIX):
            return True
        stem, _, suffix = series.rpartition("_")
        family = self.families.get(stem)
        return family is not None and family.kind == "histogram" and suffix in HISTOGRAM_SUFFIXES

    def selector(self, family: str, suffix: str | None = None, **labels: str) -> Selector:
        """A selector of `family` (`<family>_<suffix>` for a histogram's
        series), refused unless src/metrics.rs declares that family, suffix
        and those label names."""
        name = f"{family}_{suffix}" if suffix else family
        if family.startswith(PROCESS_PREFIX) and self.process_collector and not labels and not suffix:
            return Selector(name)  # named by the crate: only the collector's presence is known
        declared = self.families.get(family)
        if declared is None:
            raise UndeclaredMetric(f"{family} is not declared in src/metrics.rs")
        if suffix is not None and (declared.kind != "histogram" or suffix not in HISTOGRAM_SUFFIXES):
            raise UndeclaredMetric(f"{name}: {family} is a {declared.kind}, it has no {suffix!r} series")
        allowed = set(declared.labels) | ({"le"} if suffix == "bucket" else set())
        unknown = sorted(set(labels) - allowed)
        if unknown:
            raise UndeclaredMetric(f"{family} has no label {', '.join(unknown)} (declared: {', '.join(declared.labels)})")
        return Selector(name, tuple(labels.items()))


def parse(source: str) -> Catalog:
    """The families a Rust source registers, as metrics.rs declares them:
    `<Type>::new(Opts::new("name", ...), &["label", ...])` and calls of
    helper closures such as `counter("name", "help")`."""
    code = _without_comments(source)
    families: dict[str, Family] = {}
    for family in [*_constructed(code), *_helper_calls(code)]:
        if family.name in families:
            raise ValueError(f"{family.name} is declared twice")
        families[family.name] = family
    if not families:
        raise ValueError("no metric family found")
    return Catalog(families, "ProcessCollector::for_self" in code)


def load(path: Path = METRICS_RS) -> Catalog:
    """The catalog of the repository's src/metrics.rs (or of `path`)."""
    return parse(Path(path).read_text(encoding="utf-8"))


def _without_comments(code: str) -> str:
    """The code with its comments removed, strings kept: a family mentioned
    in a comment is not a family."""
    return _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", code)


def _arguments(code: str, open_paren: int) -> str:
    """The text between the parenthesis at `open_paren` and its match."""
    depth = 0
    index = open_paren
    while index < len(code):
        char = code[index]
        if char == '"':
            index = _STRING.match(code, index).end()
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return code[open_paren + 1 : index]
        index += 1
    raise ValueError(f"unbalanced parenthesis at offset {open_paren}")


def _literals(text: str) -> list[str]:
    return [literal[1:-1] for literal in _STRING.findall(text)]


def _constructed(code: str):
    """Families built with a literal name, such as
    `IntCounterVec::new(Opts::new("name", "help"), &["label"])`."""
    for match in _CONSTRUCTOR.finditer(code):
        arguments = _arguments(code, match.end() - 1)
        names = _literals(arguments)
        if not names:
            continue  # `IntCounter::new(name, help)` inside a helper closure
        label_lists = re.findall(r"&\[([^\]]*)\]", arguments)
        labels = tuple(_literals(label_lists[-1])) if label_lists else ()
        yield Family(names[0], KINDS[match.group(1)], labels)


def _helper_calls(code: str):
    """Families registered through a helper closure, such as
    `counter("gatepass_redis_errors_total", "help")`."""
    for helper in _HELPER.finditer(code):
        name, kind = helper.group(1), KINDS[helper.group(2)]
        for call in re.finditer(rf"\b{name}\(\s*({STRING})", code):
            yield Family(call.group(1)[1:-1], kind)
