"""benches/run's measuring and bookkeeping, behind a small command line.

benches/run starts the servers and runs the loads; around each load it
captures raw inputs (the tool's output, /proc snapshots, /metrics scrapes)
and calls `record`, which turns them into one row of results. `report`
turns the rows into BENCHMARKS.md (see `report`).

The work directory (--work) is described in `results`. The files of one
load share a prefix (`--files`): the tool's output at the prefix itself,
then `.lat` (h2load's request log), `.time` (bash's `time` of the tool),
`.s0`/`.s1` (snapshots, see `cpu`) and, when gatepass served the load,
`.m0`/`.m1` (its /metrics before and after).
"""

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from . import REPO_ROOT, cpu, exposition, loadtools, metrics, report
from .results import Results, Work, figure, rounded

PREFIX = "benches/run"

#: The gatepass counters a load is judged by: (family, histogram suffix, labels).
COUNTERS = {
    "allow": ("gatepass_checks_total", None, {"decision": "allow", "reason": "ok"}),
    "invalid": ("gatepass_checks_total", None, {"decision": "deny", "reason": "invalid_token"}),
    "malformed": ("gatepass_checks_total", None, {"decision": "deny", "reason": "malformed_token"}),
    "unavailable": ("gatepass_checks_total", None, {"decision": "error", "reason": "unavailable"}),
    "l1_hit": ("gatepass_cache_lookups_total", None, {"tier": "l1", "result": "hit"}),
    "l1_miss": ("gatepass_cache_lookups_total", None, {"tier": "l1", "result": "miss"}),
    "l2_hit": ("gatepass_cache_lookups_total", None, {"tier": "l2", "result": "hit"}),
    "db_hit": ("gatepass_cache_lookups_total", None, {"tier": "db", "result": "hit"}),
    "db_negative": ("gatepass_cache_lookups_total", None, {"tier": "db", "result": "negative"}),
    "lookups": ("gatepass_store_query_duration_seconds", "count", {"operation": "token_lookup"}),
    "flushes": ("gatepass_store_query_duration_seconds", "count", {"operation": "last_used_flush"}),
}
#: The gauge scenario g divides memory by.
CACHED_TOKENS = ("gatepass_cached_tokens", None, {})
#: The gauge of rows in the index of existing tokens (scenario g).
INDEXED_TOKENS = ("gatepass_indexed_tokens", None, {})

#: What a load's counters must show, by the `expect` benches/run gives it.
EXPECTATIONS = {
    "allow": lambda c, n: c["allow"] >= n,
    "deny": lambda c, n: c["invalid"] >= n,
    "l2": lambda c, n: c["l2_hit"] >= n * 99 // 100 and c["allow"] >= n,
    "db": lambda c, n: c["db_hit"] >= n * 99 // 100 and c["allow"] >= n,
    "none": lambda c, n: True,
}
#: Expectations under which failed or non-2xx answers are worth a warning.
ANSWERS_MUST_SUCCEED = ("allow", "l2", "db")

#: Paced loads: each connection waits this long between requests.
PACED_DELAY_MS = 2

#: The shapes of junk scenario e floods with (flood.lua's BENCH_FLOOD_SHAPE).
FLOOD_SHAPES = ("id", "digest")
#: gatepass's start-up line once its index of existing tokens is loaded.
INDEX_LOADED = "index of existing tokens loaded"
#: Scenario i: the per-interval L1 hit ratio a cold instance must pass, and
#: the fewest L1 lookups an interval needs for its ratio to count.
COLD_RATIO = 0.99
COLD_MIN_LOOKUPS = 50


def say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def selectors(catalog: metrics.Catalog) -> dict[str, metrics.Selector]:
    """The counters and the cached-tokens gauge, resolved against
    src/metrics.rs (a name it no longer declares stops the run here)."""
    wanted = {**COUNTERS, "cached": CACHED_TOKENS, "indexed": INDEXED_TOKENS}
    return {name: catalog.selector(family, suffix, **labels) for name, (family, suffix, labels) in wanted.items()}


def totals(scraped: exposition.Exposition, resolved) -> dict[str, int]:
    """What gatepass had counted at one scrape, by counter."""
    return {name: int(scraped.total(resolved[name])) for name in COUNTERS}


def counts_between(before: exposition.Exposition, after: exposition.Exposition, resolved) -> dict[str, int]:
    """What gatepass counted between two scrapes, by counter."""
    return difference(totals(before, resolved), totals(after, resolved))


def difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counter totals of `after` minus those of `before`."""
    return {name: after[name] - before[name] for name in after}


def judge_counts(counts: dict[str, int], expect: str, requests: int) -> tuple[bool, str]:
    """Whether the counters show what the scenario expects (and nothing
    malformed or unavailable), and the text the report shows for them."""
    text = f"allow {counts['allow']}, invalid {counts['invalid']}"
    if counts["malformed"] > 0:
        text += f", malformed {counts['malformed']}"
    if counts["unavailable"] > 0:
        text += f", unavailable {counts['unavailable']}"
    text += f"; l1 hit {counts['l1_hit']}, l2 hit {counts['l2_hit']}, db hit {counts['db_hit']}"
    if counts["db_negative"] > 0:
        text += f", db negative {counts['db_negative']}"
    text += f"; lookup statements {counts['lookups']}"
    ok = EXPECTATIONS[expect](counts, requests) and counts["malformed"] == 0 and counts["unavailable"] == 0
    return ok, text if ok else f"NOT AS EXPECTED ({expect}): {text}"


def half_rate(results: Results, key: str) -> int:
    """Half the median throughput of `key`: the fixed rate of scenario a."""
    return int((results.median(key, "rps") or 0) / 2)


def paced_shape(rate: float) -> tuple[int, int]:
    """(connections, delay ms) for about `rate` requests per second, each
    connection sending one request every PACED_DELAY_MS."""
    return max(int(rate * PACED_DELAY_MS / 1000 + 0.5), 1), PACED_DELAY_MS


# --- one load -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One measured load, as results.jsonl holds it."""

    key: str
    scenario: str
    target: str
    surface: str
    mode: str
    round: str
    requests: int
    rps: int
    p50: int | None
    p99: int | None
    server_cpu_us: float
    store_cpu_us: float
    tool_cpu_pct: int
    other_cpu_pct: int
    errors: int
    counted: str
    counts: dict | None


def read(path: str) -> str:
    """A captured file; a tool's output may hold bytes that are not UTF-8."""
    return Path(path).read_text(encoding="utf-8", errors="replace")


def measure_row(args, catalog: metrics.Catalog) -> Row:
    """The row of one load, from the files around it (`--files`, see the
    module's docstring); warns about what the counters or the tool show
    went wrong."""
    files = args.files
    if args.tool == "h2load":
        load = loadtools.parse_h2load(read(files), read(files + ".lat"))
    else:
        load = loadtools.parse_wrk(read(files))
    use = cpu.cpu_use(
        cpu.parse_snapshot(read(files + ".s0")),
        cpu.parse_snapshot(read(files + ".s1")),
        loadtools.cpu_seconds(read(files + ".time")),
        load.requests,
        os.sysconf("SC_CLK_TCK"),
        len(os.sched_getaffinity(0)),
    )
    counted, counts = "-", None
    if Path(files + ".m0").exists():
        counts = counts_between(
            exposition.parse(read(files + ".m0")), exposition.parse(read(files + ".m1")), selectors(catalog)
        )
        ok, counted = judge_counts(counts, args.expect, load.requests)
        if not ok:
            say(counted)
    if load.errors > 0 and args.expect in ANSWERS_MUST_SUCCEED:
        say(f"{args.key}: {load.errors} failed or non-2xx responses")
    latency = [None if v is None else rounded(v, 0) for v in (load.p50_us, load.p99_us)]
    return Row(
        args.key, args.scenario, args.target, args.surface, args.mode, args.round,
        load.requests, rounded(load.rps, 0), *latency,
        rounded(use.server_us, 1), rounded(use.store_us, 1), rounded(use.tool_pct, 0), rounded(use.other_pct, 0),
        load.errors, counted, counts,
    )  # fmt: skip


def progress_line(row: Row) -> str:
    return (
        f"{row.key:<24} {row.rps:>8} req/s  p50 {figure(row.p50):>6} µs  p99 {figure(row.p99):>7} µs"
        f"  cpu {row.server_cpu_us:>5} µs/req  other {row.other_cpu_pct}%"
    )


# --- /metrics, live -----------------------------------------------------------


def scrape(url: str) -> exposition.Exposition:
    with urllib.request.urlopen(url, timeout=5) as response:
        return exposition.parse(response.read().decode())


def running(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_count(url: str, selector: metrics.Selector, start: float, count: int, pid: int) -> bool:
    """Waits until gatepass counted `count` more than `start`; False if the
    load `pid` stopped first."""
    while True:
        time.sleep(0.5)
        if scrape(url).total(selector) - start >= count:
            return True
        if not running(pid):
            return False


def wait_flush(url: str, selector: metrics.Selector, seconds: float = 11) -> None:
    """Waits for gatepass's next last-used flush, at most one interval plus
    a margin (nothing pending means no flush), so the flush of what one load
    used does not land in the next load."""
    before = scrape(url).total(selector)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if scrape(url).total(selector) > before:
            return


# --- scenarios g and e -------------------------------------------------------


def rss_kib(status: str) -> int:
    """VmRSS of a /proc/<pid>/status."""
    return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))


def memory_row(count: int, cached: int, rss_before: int, rss_after: int) -> dict:
    """One step of scenario g: bytes of resident memory per cached token."""
    per_token = rounded((rss_after - rss_before) * 1024 / (cached if cached > 0 else 1), 0)
    return {"tokens": count, "cached": cached, "rss_before": rss_before, "rss_after": rss_after, "per_token": per_token}


#: Colours the text log format writes around field names and levels.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Units of a Rust `Duration` as `{:?}` prints it, in seconds.
_DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "μs": 1e-6, "us": 1e-6, "ns": 1e-9}


def duration_seconds(text: str) -> float:
    """A Rust `Duration` as `{:?}` prints it (`1.234567s`, `850.1ms`,
    `105.235µs`, `120ns`) in seconds."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zµμ]+)", text)
    if not found or found.group(2) not in _DURATION_UNITS:
        raise ValueError(f"not a Rust Duration: {text!r}")
    return float(found.group(1)) * _DURATION_UNITS[found.group(2)]


def index_load(log: str) -> tuple[int, float] | None:
    """(rows, seconds) of the last `index of existing tokens loaded` line of
    a gatepass log, in the text format (`rows=1000002 took=1.23s`, with or
    without colours) or the JSON one; None when the log has no such line."""
    for line in reversed(log.splitlines()):
        plain = _ANSI.sub("", line)
        if INDEX_LOADED not in plain:
            continue
        rows = re.search(r'\brows"?\s*[=:]\s*(\d+)', plain)
        took = re.search(r'\btook"?\s*[=:]\s*"?([^\s",}]+)', plain)
        if rows and took:
            return int(rows.group(1)), duration_seconds(took.group(1))
    return None


# --- scenario i ---------------------------------------------------------------


@dataclass(frozen=True)
class ColdStart:
    """What a new instance counted from the moment it was ready: until the
    first interval whose L1 hit ratio passed COLD_RATIO (`reached`), or
    until sampling gave up. `samples` are (seconds since ready, L1 hits,
    L1 misses, ratio or None) per interval."""

    reached: bool
    seconds: float | None
    elapsed: float
    counts: dict
    samples: list


def interval_ratio(counted: dict[str, int]) -> float | None:
    """The L1 hit ratio of one interval's counts; None when it saw fewer
    than COLD_MIN_LOOKUPS L1 lookups (too few to judge)."""
    lookups = counted["l1_hit"] + counted["l1_miss"]
    return counted["l1_hit"] / lookups if lookups >= COLD_MIN_LOOKUPS else None


def cold_start(baseline: dict[str, int], ready_at: float, sampled) -> ColdStart:
    """Walks `sampled`, (time, counter totals) pairs taken after `baseline`
    (the totals when the instance got ready at `ready_at`), and stops at the
    first interval whose L1 hit ratio is above COLD_RATIO. `sampled` is read
    lazily, so a live sampler stops there too."""
    previous, moment, current, rows = baseline, ready_at, baseline, []
    for moment, current in sampled:
        ratio = interval_ratio(difference(previous, current))
        hits, misses = (current[name] - previous[name] for name in ("l1_hit", "l1_miss"))
        rows.append((moment - ready_at, hits, misses, ratio))
        previous = current
        if ratio is not None and ratio > COLD_RATIO:
            return ColdStart(True, moment - ready_at, moment - ready_at, difference(baseline, current), rows)
    return ColdStart(False, None, moment - ready_at, difference(baseline, current), rows)


class LoadStopped(RuntimeError):
    """The load a sampler watches ended before the sampling did."""


def live_totals(url: str, resolved, deadline: float, interval: float, pid: int):
    """Counter totals of gatepass every `interval` seconds, with the time
    each was read (time.time()), until `deadline`; raises LoadStopped when
    the load `pid` stops first."""
    while True:
        time.sleep(interval)
        counted = totals(scrape(url), resolved)
        now = time.time()
        yield now, counted
        if now >= deadline:
            return
        if not running(pid):
            raise LoadStopped(f"the load {pid} stopped")


# --- the machine --------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False)


def revision() -> str:
    """The commit measured, and whether src/ differs from it."""
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "?"
    changed = git("diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock").returncode != 0
    return head.stdout.strip() + (" with uncommitted changes in src/" if changed else "")


def output_of(*command: str) -> str:
    """What a command prints (stdout and stderr), "?" when it cannot run."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).strip() or "?"


def first_words(text: str, count: int) -> str:
    return " ".join(text.splitlines()[0].split()[:count]) if text.strip() else "?"


def lscpu_model(lscpu: str) -> str:
    found = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    return found.group(1).strip() if found else "?"


def memory_gib(meminfo: str) -> str:
    kib = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
    return f"{kib / 1048576:.1f} GiB"


def envoy_version(text: str) -> str:
    """`envoy --version` as "Envoy 1.40.0"."""
    found = re.search(r"version: \S+?/(\d+\.\d+\.\d+)/", text)
    return f"Envoy {found.group(1)}" if found else "?"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_facts(nginx: str, postgres_url: str) -> dict[str, str]:
    """What the report says about the machine and the software measured."""
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": lscpu_model(output_of("lscpu")),
        "memory": memory_gib(Path("/proc/meminfo").read_text()),
        "kernel": os.uname().release,
        "rustc": output_of("rustc", "--version"),
        "cargo": output_of("cargo", "--version"),
        "h2load": output_of("h2load", "--version").splitlines()[0],
        "wrk": first_words(output_of("wrk", "-v"), 2),
        "nginx": output_of(nginx, "-v"),
        "envoy": envoy_version(output_of("envoy", "--version")),
        "postgres": output_of("psql", postgres_url, "-Atqc", "SHOW server_version"),
        "redis": first_words(output_of("redis-server", "--version"), 3),
        "revision": revision(),
        "load_before": load_average(),
    }


# --- the command line ---------------------------------------------------------


def command_record(args) -> int:
    row = measure_row(args, metrics.load())
    Work(args.work).add_result(asdict(row))
    say(progress_line(row))
    return 0


def command_half_rate(args) -> int:
    print(half_rate(Work(args.work).results(), args.key))
    return 0


def command_paced_shape(args) -> int:
    """The paced shape for half the saturation throughput of `key`."""
    print(*paced_shape((Work(args.work).results().last(args.key, "rps") or 0) / 2))
    return 0


def command_series(args) -> int:
    print(selectors(metrics.load())[args.counter])
    return 0


def command_counter(args) -> int:
    print(int(scrape(args.metrics_url).total(selectors(metrics.load())[args.counter])))
    return 0


def command_wait_count(args) -> int:
    selector = selectors(metrics.load())[args.counter]
    if wait_count(args.metrics_url, selector, args.start, args.count, args.pid):
        return 0
    say(f"the load {args.pid} stopped before gatepass counted {args.count} more {selector}")
    return 1


def command_wait_flush(args) -> int:
    wait_flush(args.metrics_url, selectors(metrics.load())["flushes"])
    return 0


def command_memory(args) -> int:
    cached = int(exposition.parse(read(args.metrics)).total(selectors(metrics.load())["cached"]))
    row = memory_row(args.count, cached, rss_kib(read(args.status_before)), rss_kib(read(args.status_after)))
    Work(args.work).add_memory_step(row)
    say(
        f"memory: {row['cached']} cached tokens, RSS {row['rss_before']} -> {row['rss_after']} KiB,"
        f" {row['per_token']} bytes per token"
    )
    return 0


def command_flood(args) -> int:
    """The length and p99 of one shape's flood, as its wrk printed them."""
    output = read(args.output)
    work = Work(args.work)
    work.add_fact(f"flood_{args.shape}_seconds", f"{loadtools.wrk_seconds(output):g}")
    work.add_fact(f"flood_{args.shape}_p99", loadtools.wrk_percentile(output, 99) or "-")
    return 0


def ready_facts(status: str | None, scraped: str | None, resolved) -> tuple[object, object]:
    """(VmRSS KiB, rows indexed) of an instance just ready, "-" for what
    was not captured."""
    rss, rows = "-", "-"
    if status and Path(status).exists():
        rss = rss_kib(read(status))
    if scraped and Path(scraped).exists():
        rows = int(exposition.parse(read(scraped)).total(resolved["indexed"]))
    return rss, rows


def command_index(args) -> int:
    """Scenario g's index figures: rows and load time from the instance's
    log line, its RSS and indexed rows just ready, and those of the
    instance on the few-row database."""
    work = Work(args.work)
    deadline = time.monotonic() + 5  # the line follows readiness by microseconds
    loaded = index_load(read(args.log))
    while loaded is None and time.monotonic() < deadline:
        time.sleep(0.1)
        loaded = index_load(read(args.log))
    if loaded is None:
        say(f"no '{INDEX_LOADED}' line in {args.log}")
    resolved = selectors(metrics.load())
    rss, rows = ready_facts(args.status, args.metrics, resolved)
    rss_few, rows_few = ready_facts(args.status_few, args.metrics_few, resolved)
    figures = {
        "index_log_rows": loaded[0] if loaded else "-",
        "index_load_seconds": f"{loaded[1]:.6f}" if loaded else "-",
        "index_rows": rows,
        "index_rss_kib": rss,
        "index_rows_few": rows_few,
        "index_rss_few_kib": rss_few,
    }
    for name, value in figures.items():
        work.add_fact(name, value)
    say(
        f"index: {figures['index_rows']} rows indexed, loaded in {figures['index_load_seconds']} s;"
        f" RSS just ready {rss} KiB against {rss_few} KiB with {rows_few} rows"
    )
    return 0


def command_cold_start(args) -> int:
    """Scenario i: samples gatepass's counters until the per-interval L1
    hit ratio passes COLD_RATIO or `--limit` seconds after ready; records
    the figures as facts and the intervals in `--samples`."""
    resolved = selectors(metrics.load())
    baseline = totals(exposition.parse(read(args.baseline)), resolved)
    sampled = live_totals(args.metrics_url, resolved, args.ready_at + args.limit, args.interval, args.pid)
    try:
        seen = cold_start(baseline, args.ready_at, sampled)
    except LoadStopped as stopped:
        say(f"cold start: {stopped} before the sampling ended")
        return 1
    Path(args.samples).write_text(
        "seconds since ready\tl1 hits\tl1 misses\tratio\n"
        + "".join(f"{t:.3f}\t{h}\t{m}\t{'-' if r is None else f'{r:.4f}'}\n" for t, h, m, r in seen.samples),
        encoding="utf-8",
    )
    work = Work(args.work)
    work.add_fact("cold_min_lookups", COLD_MIN_LOOKUPS)
    work.add_fact("cold_reached", "yes" if seen.reached else "no")
    work.add_fact("cold_seconds", "-" if seen.seconds is None else f"{seen.seconds:.3f}")
    work.add_fact("cold_elapsed", f"{seen.elapsed:.3f}")
    for name in ("allow", "invalid", "unavailable", "l1_hit", "l1_miss", "l2_hit", "db_hit", "lookups"):
        work.add_fact(f"cold_{name}", seen.counts[name])
    when = f"after {seen.seconds:.2f} s" if seen.reached else f"not within {seen.elapsed:.1f} s"
    say(
        f"cold start: L1 hit ratio above {COLD_RATIO:.0%} {when}; meanwhile l2 hits {seen.counts['l2_hit']},"
        f" token lookups {seen.counts['lookups']}, checks allowed {seen.counts['allow']}"
    )
    return 0


def command_machine(args) -> int:
    work = Work(args.work)
    for name, value in machine_facts(args.nginx, args.postgres).items():
        work.add_fact(name, value)
    return 0


def command_report(args) -> int:
    work = Work(args.work)
    work.add_fact("load_after", load_average())
    work.add_fact("elapsed_seconds", args.elapsed_seconds)
    text = report.render(
        work.results(), work.memory_steps(), work.facts(), work.command_log(), selectors(metrics.load())
    )
    report.write(Path(args.out), text)
    print(text, end="")
    say(f"wrote {args.out} in {report.minutes(args.elapsed_seconds)} min")
    return 0


COMMANDS = {
    "record": command_record,
    "half-rate": command_half_rate,
    "paced-shape": command_paced_shape,
    "series": command_series,
    "counter": command_counter,
    "wait-count": command_wait_count,
    "wait-flush": command_wait_flush,
    "memory": command_memory,
    "flood": command_flood,
    "index": command_index,
    "cold-start": command_cold_start,
    "machine": command_machine,
    "report": command_report,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python3 -m gatepass_tools.bench", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, work: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        if work:
            sub.add_argument("--work", required=True, help="the run's work directory")
        return sub

    record = command("record", "append the row of one load to results.jsonl")
    record.add_argument("--files", required=True, help="prefix of the load's files")
    record.add_argument("--tool", required=True, choices=("h2load", "wrk"))
    for name in ("key", "scenario", "target", "surface", "mode", "round"):
        record.add_argument(f"--{name}", required=True)
    record.add_argument("--expect", required=True, choices=sorted(EXPECTATIONS))

    for name, help_text in (("half-rate", "half the median req/s of KEY"), ("paced-shape", "connections and delay")):
        sub = command(name, help_text)
        sub.add_argument("key")

    series = command("series", "the exposition form of a counter", work=False)
    series.add_argument("counter", choices=sorted([*COUNTERS, "cached", "indexed"]))
    counter = command("counter", "a counter's value now", work=False)
    counter.add_argument("counter", choices=sorted(COUNTERS))
    counter.add_argument("--metrics-url", required=True)
    wait = command("wait-count", "wait until gatepass counted COUNT more", work=False)
    wait.add_argument("counter", choices=sorted(COUNTERS))
    wait.add_argument("--metrics-url", required=True)
    wait.add_argument("--start", required=True, type=float, help="the counter before the load")
    wait.add_argument("--count", required=True, type=int)
    wait.add_argument("--pid", required=True, type=int, help="the load, which must keep running")
    flush = command("wait-flush", "wait for gatepass's next last-used flush", work=False)
    flush.add_argument("--metrics-url", required=True)

    memory = command("memory", "append one step of scenario g to memory.jsonl")
    memory.add_argument("--count", required=True, type=int, help="tokens checked so far")
    memory.add_argument("--status-before", required=True, help="/proc/<pid>/status before any token")
    memory.add_argument("--status-after", required=True, help="/proc/<pid>/status now")
    memory.add_argument("--metrics", required=True, help="/metrics now")
    flood = command("flood", "record one flood shape's duration and p99")
    flood.add_argument("--shape", required=True, choices=FLOOD_SHAPES)
    flood.add_argument("output", help="what the flood's wrk printed")
    index = command("index", "record the index figures of scenario g")
    index.add_argument("--log", required=True, help="the log of the instance on the bulk rows")
    index.add_argument("--status", required=True, help="its /proc/<pid>/status just ready")
    index.add_argument("--metrics", required=True, help="its /metrics just ready")
    index.add_argument("--status-few", help="/proc/<pid>/status of the instance on few rows, just ready")
    index.add_argument("--metrics-few", help="/metrics of the instance on few rows, just ready")
    cold = command("cold-start", "sample a new instance's L1 hit ratio (scenario i)")
    cold.add_argument("--metrics-url", required=True)
    cold.add_argument("--baseline", required=True, help="its /metrics when it got ready")
    cold.add_argument("--ready-at", required=True, type=float, help="when it got ready (seconds since the epoch)")
    cold.add_argument("--pid", required=True, type=int, help="the load, which must keep running")
    cold.add_argument("--limit", required=True, type=float, help="give up this many seconds after ready")
    cold.add_argument("--interval", type=float, default=0.15, help="seconds between samples")
    cold.add_argument("--samples", required=True, help="file for the intervals sampled")
    machine = command("machine", "record what the report says about the machine")
    machine.add_argument("--nginx", required=True)
    machine.add_argument("--postgres", required=True, help="a database URL psql can query")
    written = command("report", "write BENCHMARKS.md and print it")
    written.add_argument("--out", required=True)
    written.add_argument("--elapsed-seconds", required=True, type=int)
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
