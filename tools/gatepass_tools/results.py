"""The work directory of one benches/run run and the rows in it.

    results.jsonl   one row per measured load (`bench record`)
    memory.jsonl    one row per step of scenario g (`bench memory`)
    facts.tsv       `name<TAB>value` lines: settings and single figures
    commands.txt    the commands the run ran, secrets replaced (benches/run)
"""

import json
from pathlib import Path


def rounded(value: float, digits: int):
    """`value` as printf would show it with `digits` decimals: an int for 0."""
    shown = f"{value:.{digits}f}"
    return int(shown) if digits == 0 else float(shown)


def figure(value) -> str:
    """A stored figure as the report prints it: "-" when not measured."""
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.1f}"


class Work:
    """The files of one run (see the module's docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.commands = self.path / "commands.txt"
        self._results = self.path / "results.jsonl"
        self._memory = self.path / "memory.jsonl"
        self._facts = self.path / "facts.tsv"

    def add_result(self, row: dict) -> None:
        _append(self._results, json.dumps(row, ensure_ascii=False))

    def add_memory_step(self, row: dict) -> None:
        _append(self._memory, json.dumps(row, ensure_ascii=False))

    def add_fact(self, name: str, value) -> None:
        _append(self._facts, f"{name}\t{value}")

    def results(self) -> "Results":
        return Results([json.loads(line) for line in _lines(self._results)])

    def memory_steps(self) -> list[dict]:
        return [json.loads(line) for line in _lines(self._memory)]

    def facts(self) -> dict[str, str]:
        """The facts recorded, the last value of each name winning."""
        return dict(line.split("\t", 1) for line in _lines(self._facts))

    def command_log(self) -> str:
        return self.commands.read_text(encoding="utf-8") if self.commands.exists() else ""


def _append(file: Path, line: str) -> None:
    with file.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def _lines(file: Path) -> list[str]:
    if not file.exists():
        return []
    return [line for line in file.read_text(encoding="utf-8").splitlines() if line]


class Results:
    """The rows of results.jsonl, by key; a key also names its rounds
    (`a.grpc.sat.gp` covers `a.grpc.sat.gp.r1`, `.r2`, ...)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def of(self, key: str) -> list[dict]:
        return [row for row in self.rows if row["key"] == key or row["key"].startswith(key + ".")]

    def median(self, key: str, column: str):
        """The median of a column over the rounds of `key`: the middle value
        as measured, or the mean of the two middle ones to one decimal; None
        when nothing was measured."""
        values = sorted(row[column] for row in self.of(key) if row[column] is not None)
        if not values:
            return None
        middle = len(values) // 2
        if len(values) % 2:
            return values[middle]
        return rounded((values[middle - 1] + values[middle]) / 2, 1)

    def last(self, key: str, column: str):
        rows = self.of(key)
        return rows[-1][column] if rows else None
