"""What the load tools print, read into numbers: h2load's summary and its
per-request log, wrk's summary, and bash's `time` of the tool."""

import re
from dataclasses import dataclass

#: wrk's latency units, in microseconds.
_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}


@dataclass(frozen=True)
class Load:
    """One load as the tool saw it. Latencies in µs, None when the tool
    answered nothing to measure them on."""

    requests: int
    rps: float
    errors: int
    p50_us: float | None
    p99_us: float | None


def _search(pattern: str, output: str, tool: str) -> re.Match:
    found = re.search(pattern, output, re.M)
    if not found:
        raise ValueError(f"{tool} output has no line matching {pattern!r}")
    return found


def nearest_rank(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile; the 0.999999 (not a ceiling) keeps float
    noise such as 0.99 * 300 = 297.00000000000006 from moving up a rank."""
    return sorted_values[int(len(sorted_values) * fraction + 0.999999) - 1]


def latency_percentiles(log: str) -> tuple[float | None, float | None]:
    """p50 and p99 (µs) of an h2load `--log-file` (start time, status, µs
    until the end of the response; tab-separated), answered requests only:
    h2load writes status 0 (or less) for a request that got no answer."""
    latencies = sorted(
        float(fields[2])
        for fields in (line.split("\t") for line in log.splitlines())
        if len(fields) >= 3 and float(fields[1]) > 0
    )
    if not latencies:
        return None, None
    return nearest_rank(latencies, 0.50), nearest_rank(latencies, 0.99)


def parse_h2load(output: str, log: str) -> Load:
    """h2load's summary; failed, errored and timed-out requests and 3xx, 4xx
    and 5xx answers are errors. Percentiles come from its request log, as
    its summary has none."""
    rps = _search(r"^finished in \S+, ([\d.]+) req/s", output, "h2load")
    requests = _search(
        r"^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        output,
        "h2load",
    )
    codes = _search(r"^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output, "h2load")
    done, *failures = (int(n) for n in requests.groups())
    p50, p99 = latency_percentiles(log)
    return Load(done, float(rps.group(1)), sum(failures) + sum(int(n) for n in codes.groups()), p50, p99)


def duration_us(text: str) -> float:
    """A wrk duration (`170.00us`, `3.78ms`, `1.02s`) in µs."""
    found = re.fullmatch(r"([\d.]+)([a-z]+)", text)
    if not found or found.group(2) not in _UNITS_US:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNITS_US[found.group(2)]


def wrk_percentile(output: str, percent: int) -> str | None:
    """wrk's `--latency` line for `percent`, as printed (`3.78ms`)."""
    found = re.search(rf"^\s*{percent}%\s+(\S+)", output, re.M)
    return found.group(1) if found else None


def wrk_seconds(output: str) -> float:
    """How long wrk's load lasted, from `N requests in 8.02s, ...`."""
    return float(_search(r"^\s*\d+ requests in ([\d.]+)s\b", output, "wrk").group(1))


def parse_wrk(output: str) -> Load:
    """wrk's summary; socket errors and non-2xx/3xx answers are errors."""
    requests = int(_search(r"^\s*(\d+) requests in ", output, "wrk").group(1))
    rps = float(_search(r"^Requests/sec:\s+([\d.]+)", output, "wrk").group(1))
    errors = 0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    p50, p99 = (wrk_percentile(output, percent) for percent in (50, 99))
    return Load(
        requests, rps, errors, duration_us(p50) if p50 else None, duration_us(p99) if p99 else None
    )


def cpu_seconds(time_output: str) -> float:
    """User plus system seconds from bash's `time` with TIMEFORMAT='%U %S'."""
    user, system = time_output.split()[-2:]
    return float(user) + float(system)
