"""The Prometheus text exposition format, as gatepass's /metrics serves it.

Read into samples instead of matched as text, so a series is found by its
labels whatever their order, and several series can be summed.
"""

import re
from dataclasses import dataclass, field

from .metrics import Selector

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_TYPE = re.compile(r"#\s*TYPE\s+(\S+)\s+(\S+)")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Exposition:
    """The samples of one scrape and the `# TYPE` of each family."""

    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)

    def total(self, selector: Selector) -> float:
        """The sum over the series `selector` matches; 0 when none does, as a
        counter that has not been exposed yet has counted nothing."""
        return sum(s.value for s in self.samples if selector.matches(s.name, s.labels))


def parse(text: str) -> Exposition:
    """Reads an exposition; raises ValueError on a line that is not one."""
    exposition = Exposition()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            declared = _TYPE.fullmatch(line)
            if declared:
                exposition.types[declared.group(1)] = declared.group(2)
            continue
        sample = _SAMPLE.fullmatch(line)
        if not sample:
            raise ValueError(f"line {number} is not a sample: {line!r}")
        name, labels, value = sample.groups()
        exposition.samples.append(Sample(name, _labels(labels or "", number), float(value)))
    return exposition


def _labels(text: str, number: int) -> dict[str, str]:
    labels = {}
    position = 0
    while position < len(text):
        pair = _LABEL.match(text, position)
        if not pair:
            raise ValueError(f"line {number}: cannot read labels {text!r}")
        labels[pair.group(1)] = re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], pair.group(2))
        position = pair.end()
    return labels
