"""CPU time over one load, from raw /proc lines benches/run captures before
and after it (so capturing costs no more than reading a few files).

A snapshot file has one record per line, `<kind> <raw text>`:

    time 1700000000.123456789      (date +%s.%N)
    machine cpu  10 0 20 ...       (the first line of /proc/stat)
    server 1234 (gatepass) S ...   (/proc/<pid>/stat of a measured process)
    store 99 (postgres) S ...      (/proc/<pid>/stat of a Postgres backend or Redis)
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Snapshot:
    time: float
    busy: int
    server: int
    store: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CpuUse:
    """Where the CPU went during a load: server and store per request (µs),
    the load tool and everything else as a share of all cores (%)."""

    server_us: float
    store_us: float
    tool_pct: float
    other_pct: float


def process_ticks(stat: str) -> tuple[int, int]:
    """(pid, utime + stime) of a /proc/<pid>/stat line: the process's own
    CPU ticks, all its threads included. Fields are counted after the
    command name, which may contain spaces and parentheses."""
    pid, _, rest = stat.partition(" (")
    fields = rest.rpartition(") ")[2].split()
    return int(pid), int(fields[11]) + int(fields[12])


def busy_ticks(cpu_line: str) -> int:
    """Ticks all cores spent on anything but idling: user, nice, system,
    irq, softirq and steal of /proc/stat's `cpu` line (idle and iowait not)."""
    values = [int(v) for v in cpu_line.split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal


def parse_snapshot(text: str) -> Snapshot:
    moment, busy, server, store = None, None, 0, {}
    for line in text.splitlines():
        kind, _, raw = line.partition(" ")
        if kind == "time":
            moment = float(raw)
        elif kind == "machine":
            busy = busy_ticks(raw)
        elif kind == "server":
            server += process_ticks(raw)[1]
        elif kind == "store":
            pid, ticks = process_ticks(raw)
            store[pid] = ticks
        else:
            raise ValueError(f"unknown snapshot record {kind!r}")
    if moment is None or busy is None:
        raise ValueError("a snapshot needs a time and a machine line")
    return Snapshot(moment, busy, server, store)


def store_ticks_between(before: Snapshot, after: Snapshot) -> int:
    """Store CPU between two snapshots; a process that appeared in between
    (a new Postgres backend) counts whole, one that ended is lost."""
    return sum(ticks - before.store.get(pid, 0) for pid, ticks in after.store.items())


def cpu_use(before: Snapshot, after: Snapshot, tool_seconds: float, requests: int, hz: int, cpus: int) -> CpuUse:
    requests = max(requests, 1)
    capacity = (after.time - before.time) * hz * cpus
    server = after.server - before.server
    store = store_ticks_between(before, after)
    tool = tool_seconds * hz
    other = max(after.busy - before.busy - server - store - tool, 0)
    return CpuUse(
        server_us=server * 1e6 / hz / requests,
        store_us=store * 1e6 / hz / requests,
        tool_pct=100 * tool / capacity,
        other_pct=100 * other / capacity,
    )
