"""BENCHMARKS.md, written from one benches/run run: its results rows, the
memory steps of scenario g, the facts the run recorded and the commands it
ran. Every figure is computed here from those, nothing is typed in.

Figures shown as "-" were not measured (a scenario left out of the run).
Ratios are rounded to three decimals before they are judged against a
target, so a verdict always agrees with the figure printed next to it.
"""

import re
from pathlib import Path

from .metrics import Selector
from .results import Results, figure, rounded

#: benches/run rewrites BENCHMARKS.md above this line and keeps what follows.
MARKER = "<!-- benches/run writes everything above this line; what follows is kept -->"
#: A fixed-rate load below this share of its rate did not hold it.
RATE_KEPT = 0.97
NOT_MEASURED = "-"

#: The rows of the results table: label, server, load (facts in braces), key, baseline key.
TABLE = [
    ("a L1 hit, gRPC", "no-op", "h2load sat", "a.grpc.sat.noop", None),
    ("a L1 hit, gRPC", "gatepass", "h2load sat", "a.grpc.sat.gp", "a.grpc.sat.noop"),
    ("a L1 hit, gRPC", "no-op", "h2load {grpc_half}/s", "a.grpc.rate.noop", None),
    ("a L1 hit, gRPC", "gatepass", "h2load {grpc_half}/s", "a.grpc.rate.gp", "a.grpc.rate.noop"),
    ("a L1 hit, HTTP", "no-op", "wrk sat", "a.http.sat.noop", None),
    ("a L1 hit, HTTP", "gatepass", "wrk sat", "a.http.sat.gp", "a.http.sat.noop"),
    ("a L1 hit, HTTP", "no-op", "h2load --h1 {http_half}/s", "a.http.rate.noop", None),
    ("a L1 hit, HTTP", "gatepass", "h2load --h1 {http_half}/s", "a.http.rate.gp", "a.http.rate.noop"),
    ("b Redis hit, HTTP", "no-op", "wrk+lua sat", "b.http.sat.noop", None),
    ("b Redis hit, HTTP", "gatepass", "wrk+lua sat", "b.http.sat.gp", "b.http.sat.noop"),
    ("b Redis hit, HTTP", "no-op", "wrk+lua {b_connections}c×{b_delay_ms}ms", "b.http.paced.noop", None),
    ("b Redis hit, HTTP", "gatepass", "wrk+lua {b_connections}c×{b_delay_ms}ms", "b.http.paced.gp", "b.http.paced.noop"),
    ("b Redis hit, HTTP", "no-op", "wrk+lua 2c×2ms", "b.http.light.noop", None),
    ("b Redis hit, HTTP", "gatepass", "wrk+lua 2c×2ms", "b.http.light.gp", "b.http.light.noop"),
    ("c database, HTTP", "no-op", "wrk+lua sat", "c.http.sat.noop", None),
    ("c database, HTTP", "gatepass", "wrk+lua sat", "c.http.sat.gp", "c.http.sat.noop"),
    ("c database, HTTP", "no-op", "wrk+lua {c_connections}c×{c_delay_ms}ms", "c.http.paced.noop", None),
    ("c database, HTTP", "gatepass", "wrk+lua {c_connections}c×{c_delay_ms}ms", "c.http.paced.gp", "c.http.paced.noop"),
    ("c database, HTTP", "no-op", "wrk+lua 2c×2ms", "c.http.light.noop", None),
    ("c database, HTTP", "gatepass", "wrk+lua 2c×2ms", "c.http.light.gp", "c.http.light.noop"),
    ("d deny, gRPC", "no-op", "h2load sat", "d.grpc.sat.noop", None),
    ("d deny, gRPC", "gatepass", "h2load sat", "d.grpc.sat.gp", "d.grpc.sat.noop"),
    ("d deny, HTTP", "no-op", "wrk sat", "d.http.sat.noop", None),
    ("d deny, HTTP", "gatepass", "wrk sat", "d.http.sat.gp", "d.http.sat.noop"),
    ("e valid, no flood", "gatepass", "wrk sat", "e.http.noflood.gp", None),
    ("e valid, flood with id", "gatepass", "wrk sat + flood", "e.http.flood-id.gp", "e.http.noflood.gp"),
    ("e valid, flood id-less", "gatepass", "wrk sat + flood", "e.http.flood-digest.gp", "e.http.noflood.gp"),
    ("f nginx, unchecked route", "nginx", "wrk sat", "f.http.sat.nginx", None),
    ("f nginx auth_request", "nginx + no-op", "wrk sat", "f.http.sat.nginx-noop", "f.http.sat.nginx"),
    ("f nginx auth_request", "nginx + gatepass", "wrk sat", "f.http.sat.nginx-gp", "f.http.sat.nginx-noop"),
    ("f nginx, unchecked route", "nginx", "h2load --h1 {e2e_rate}/s", "f.http.rate.nginx", None),
    ("f nginx auth_request", "nginx + no-op", "h2load --h1 {e2e_rate}/s", "f.http.rate.nginx-noop", "f.http.rate.nginx"),
    ("f nginx auth_request", "nginx + gatepass", "h2load --h1 {e2e_rate}/s", "f.http.rate.nginx-gp", "f.http.rate.nginx-noop"),
    ("f nginx auth_request, no keepalive", "nginx + gatepass", "wrk sat", "f.http.sat.nginx-gp-close", "f.http.sat.nginx-gp"),
    ("f nginx auth_request, no keepalive", "nginx + gatepass", "h2load --h1 {e2e_rate}/s", "f.http.rate.nginx-gp-close", "f.http.rate.nginx-gp"),
    ("h Envoy, unchecked route", "Envoy", "wrk sat", "h.http.sat.envoy", None),
    ("h Envoy ext_authz", "Envoy + no-op", "wrk sat", "h.http.sat.envoy-noop", "h.http.sat.envoy"),
    ("h Envoy ext_authz", "Envoy + gatepass", "wrk sat", "h.http.sat.envoy-gp", "h.http.sat.envoy-noop"),
    ("h Envoy, unchecked route", "Envoy", "h2load --h1 {e2e_rate}/s", "h.http.rate.envoy", None),
    ("h Envoy ext_authz", "Envoy + no-op", "h2load --h1 {e2e_rate}/s", "h.http.rate.envoy-noop", "h.http.rate.envoy"),
    ("h Envoy ext_authz", "Envoy + gatepass", "h2load --h1 {e2e_rate}/s", "h.http.rate.envoy-gp", "h.http.rate.envoy-noop"),
]  # fmt: skip
#: The proxies of scenarios f and h: name, and the key of the proxy without
#: auth (`-noop` and `-gp` added: with the no-op auth server, with gatepass).
PROXIES = [("nginx auth_request (f)", "f.http.{mode}.nginx"), ("Envoy ext_authz (h)", "h.http.{mode}.envoy")]
#: The junk of scenario e by flood.lua's BENCH_FLOOD_SHAPE (bench.FLOOD_SHAPES):
#: shape, its name in the report, the key of the valid load during it.
FLOODS = [("id", "with id", "e.http.flood-id.gp"), ("digest", "id-less", "e.http.flood-digest.gp")]


# --- figures ------------------------------------------------------------------


def number(text) -> float | None:
    """A fact or figure as a number; None when it was not measured."""
    if text is None or text in (NOT_MEASURED, ""):
        return None
    return float(text)


def us(value) -> str:
    return NOT_MEASURED if value is None else f"{value:.0f}"


def ratio(value, base) -> str:
    """`value` as a percentage of `base`."""
    if value is None or not base:
        return NOT_MEASURED
    return f"{100 * value / base:.1f} %"


def difference(value, base) -> int | None:
    """value − base in whole µs, as shown."""
    if value is None or base is None:
        return None
    return rounded(value - base, 0)


def signed(value: int | None) -> str:
    return NOT_MEASURED if value is None else f"{value:+d}"


def fraction(value, base) -> float | None:
    """value / base rounded to three decimals, as judged."""
    if value is None or not base:
        return None
    return rounded(value / base, 3)


def percent(share: float | None) -> str:
    return NOT_MEASURED if share is None else f"{share * 100:.1f} %"


def shown(value, pattern: str) -> str:
    return NOT_MEASURED if value is None else format(value, pattern)


def verdict(value, op: str, limit) -> str:
    if value is None or limit is None:
        return "not measured"
    met = {"<=": value <= limit, ">=": value >= limit, "==": value == limit}[op]
    return "**met**" if met else "**missed**"


def table_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def minutes(seconds) -> str:
    return f"{float(seconds) / 60:.1f}"


class Figures:
    """The figures of the report, computed from one run's records."""

    def __init__(self, results: Results, memory: list[dict], facts: dict[str, str]):
        self.results = results
        self.memory = memory
        self.facts = facts
        self.floods = {shape: results.last(key, "counts") or {} for shape, _, key in FLOODS}

    def fact(self, name: str) -> str:
        return self.facts.get(name, NOT_MEASURED)

    def median(self, key: str, column: str):
        return self.results.median(key, column)

    def flood_count(self, shape: str, counter: str) -> int | None:
        return self.floods[shape].get(counter)

    def flood_seconds(self, shape: str) -> float | None:
        return number(self.facts.get(f"flood_{shape}_seconds"))

    def scenario_a_total(self, counter: str) -> int | None:
        """A counter summed over every scenario-a load of gatepass."""
        rows = [row for row in self.results.rows if re.match(r"a\..*\.gp\.", row["key"]) and row["counts"]]
        return sum(row["counts"][counter] for row in rows) if rows else None

    def junk_cpu(self, shape: str, key: str, column: str) -> str:
        """What one junk check of `shape` cost (µs): CPU during its flood
        (the valid load `key`) beyond what the valid checks cost per check
        without it, over the junk answered."""
        during, base = self.median(key, column), self.median("e.http.noflood.gp", column)
        valid, junk = self.median(key, "requests"), self.flood_count(shape, "invalid")
        if during is None or base is None or valid is None or not junk:
            return NOT_MEASURED
        return f"{(during - base) * valid / junk:.0f}"

    def rate_of(self, row: dict) -> str:
        """The rate a fixed-rate load was asked for."""
        if row["scenario"] in ("f", "h"):
            return self.fact("e2e_rate")
        return self.fact("grpc_half" if row["surface"] == "grpc" else "http_half")

    def shortfall(self) -> str:
        """Fixed-rate loads that fell short of their rate."""
        short = []
        for row in self.results.rows:
            if row["mode"] != "rate":
                continue
            rate = self.rate_of(row)
            if number(rate) is not None and row["rps"] < RATE_KEPT * number(rate):
                short.append(f"{row['key']} ({row['rps']}/s of {rate}/s)")
        return ", ".join(short) or "none"

    def row(self, label: str, server: str, load: str, key: str, base: str | None) -> str:
        """A row of the results table: medians over the rounds of `key`,
        compared with `base`."""
        rps, p99 = self.median(key, "rps"), self.median(key, "p99")
        against, delta = NOT_MEASURED, NOT_MEASURED
        if base:
            against = ratio(rps, self.median(base, "rps"))
            delta = signed(difference(p99, self.median(base, "p99")))
        cells = [
            label, server, load.format(**self.loads()),
            us(rps), us(self.median(key, "p50")), us(p99), against, delta,
            figure(self.median(key, "server_cpu_us")), figure(self.median(key, "store_cpu_us")),
            figure(self.median(key, "other_cpu_pct")), self.results.last(key, "counted") or "",
        ]  # fmt: skip
        return table_row(cells)

    def loads(self) -> dict[str, str]:
        names = ("grpc_half", "http_half", "b_connections", "b_delay_ms", "c_connections", "c_delay_ms", "e2e_rate")
        return {name: self.fact(name) for name in names}

    def worst_bytes_per_token(self) -> int | None:
        return max((row["per_token"] for row in self.memory), default=None)

    def index_rss_delta(self) -> int | None:
        """KiB the instance on the bulk rows holds more than the one on few rows."""
        rss, rss_few = number(self.fact("index_rss_kib")), number(self.fact("index_rss_few_kib"))
        return None if rss is None or rss_few is None else int(rss - rss_few)

    def index_bytes_per_row(self) -> float | None:
        """Resident memory of the index per row (B): the RSS of the instance
        just ready on the bulk rows minus that of the one on few rows, over
        the rows one indexed more than the other."""
        rss, rss_few = number(self.fact("index_rss_kib")), number(self.fact("index_rss_few_kib"))
        rows, rows_few = number(self.fact("index_rows")), number(self.fact("index_rows_few"))
        if None in (rss, rss_few, rows, rows_few) or rows <= rows_few:
            return None
        return rounded((rss - rss_few) * 1024 / (rows - rows_few), 1)

    def cold_reached(self) -> bool:
        """Whether the cold instance's L1 hit ratio passed 99 % ("-" counts
        as reached: its seconds show "-")."""
        return self.fact("cold_reached") != "no"

    def cold_seconds(self) -> str:
        """When the cold instance's L1 hit ratio passed 99 %, as shown."""
        if not self.cold_reached():
            return f"not reached in {shown(number(self.fact('cold_elapsed')), '.1f')} s"
        return f"{shown(number(self.fact('cold_seconds')), '.2f')} s"

    def cold_outcome(self) -> str:
        """What the cold instance's L1 hit ratio did, as a sentence part."""
        if not self.cold_reached():
            elapsed = shown(number(self.fact("cold_elapsed")), ".1f")
            return f"did not pass a 99 % L1 hit ratio within {elapsed} s of ready"
        return f"passed a 99 % L1 hit ratio {self.cold_seconds()} after ready"

    def cold_rate(self) -> float | None:
        """Checks a second the cold instance answered while it was watched."""
        lookups = [number(self.fact(f"cold_{name}")) for name in ("l1_hit", "l1_miss")]
        elapsed = number(self.fact("cold_elapsed"))
        if None in lookups or not elapsed:
            return None
        return (lookups[0] + lookups[1]) / elapsed


# --- the document -------------------------------------------------------------


def machine(f: Figures) -> str:
    return "\n".join(
        [
            f"- CPUs: {f.fact('cpus')} (`nproc`), {f.fact('cpu_model')} (`lscpu` model name)",
            f"- memory: {f.fact('memory')}; kernel {f.fact('kernel')}",
            f"- {f.fact('rustc')}; {f.fact('cargo')}",
            f"- {f.fact('h2load')}; {f.fact('wrk')}; {f.fact('nginx')}; {f.fact('envoy')}",
            f"- PostgreSQL {f.fact('postgres')}; {f.fact('redis')}",
            f"- gatepass {f.fact('revision')}",
            f"- load average before / after the run: {f.fact('load_before')} / {f.fact('load_after')}",
        ]
    )


def results_section(f: Figures) -> str:
    rows = "\n".join(f.row(*row) for row in TABLE)
    return f"""## Results

Medians over {f.fact('rounds')} interleaved rounds for scenario a and {f.fact('e2e_rounds')} for f and h, one run otherwise.
Each load lasted {f.fact('secs')} s. In f and h the no-op rows are compared with the proxy alone and the gatepass rows with the proxy and the no-op.

| scenario | server | load | req/s | p50 µs | p99 µs | req/s vs baseline | Δp99 µs vs baseline | server CPU µs/req | Postgres+Redis CPU µs/req | other CPU % | gatepass counted |
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}

- Fixed-rate loads that did not reach 97 % of their rate (the client could not keep up, so their latency is not at that rate): {f.shortfall()}.
- Deny vs allow (gatepass, saturation): gRPC {ratio(f.median('d.grpc.sat.gp', 'rps'), f.median('a.grpc.sat.gp', 'rps'))}, HTTP {ratio(f.median('d.http.sat.gp', 'rps'), f.median('a.http.sat.gp', 'rps'))} of the allow throughput. Every denial of a token gatepass found (d: a known id, a wrong secret) writes one log line (info); the log had {f.fact('deny_log_bytes')} bytes after scenario d.
"""


def latency_change(f: Figures, key: str, base: str) -> str:
    """p50 and p99 of `key` minus those of `base`, in µs."""
    p50 = signed(difference(f.median(key, "p50"), f.median(base, "p50")))
    p99 = signed(difference(f.median(key, "p99"), f.median(base, "p99")))
    return f"{p50} / {p99}"


def proxy_section(f: Figures) -> str:
    rows = []
    for name, key in PROXIES:
        sat, rate = key.format(mode="sat"), key.format(mode="rate")
        cells = [
            name,
            ratio(f.median(f"{sat}-gp", "rps"), f.median(f"{sat}-noop", "rps")),
            latency_change(f, f"{rate}-gp", f"{rate}-noop"),
            ratio(f.median(f"{sat}-noop", "rps"), f.median(sat, "rps")),
            latency_change(f, f"{rate}-noop", rate),
        ]
        rows.append(table_row(cells))
    table = "\n".join(rows)
    return f"""### End to end (f, h)

What gatepass can change is its share of the auth hop (gatepass against the
no-op auth server behind the same proxy); what the hop itself costs (the
no-op against the proxy alone) is the least any auth server adds behind
that proxy.
Medians of the rows above; latency at {f.fact('e2e_rate')} requests/s.

| proxy | gatepass / no-op, req/s at saturation | gatepass − no-op, p50 / p99 µs | no-op / no auth, req/s at saturation | no-op − no auth, p50 / p99 µs |
|---|---|---|---|---|
{table}
"""


def flood_section(f: Figures) -> str:
    def cells(figure_of) -> str:
        return " | ".join(figure_of(shape, key) for shape, _, key in FLOODS)

    def length(shape: str, _key: str) -> str:
        seconds, junk = f.flood_seconds(shape), f.flood_count(shape, "invalid")
        rate = shown(fraction(junk, seconds), ".0f")
        return f"{f.fact(f'flood_{shape}_seconds')} s, {rate}/s, p99 {f.fact(f'flood_{shape}_p99')}"

    def counted(*counters: str):
        return lambda shape, _key: " / ".join(shown(f.flood_count(shape, c), "d") for c in counters)

    def statements(shape: str, _key: str) -> str:
        count = f.flood_count(shape, "lookups")
        return f"{shown(count, 'd')} ({shown(fraction(count, f.flood_seconds(shape)), '.0f')}/s)"

    def per_junk(shape: str, _key: str) -> str:
        return shown(fraction(f.flood_count(shape, "lookups"), f.flood_count(shape, "invalid")), ".2f")

    def cpu(shape: str, key: str) -> str:
        return f"{f.junk_cpu(shape, key, 'server_cpu_us')} µs / {f.junk_cpu(shape, key, 'store_cpu_us')} µs"

    def valid(_shape: str, key: str) -> str:
        return ratio(f.median(key, "rps"), f.median("e.http.noflood.gp", "rps"))

    heading = " | ".join(name for _, name, _ in FLOODS)
    return f"""### Flood (e)

The saturating valid load of a, once alone and once next to each flood: {f.fact('flood_connections')} connections paced at {f.fact('flood_delay_ms')} ms sending random junk, with id (`<12-digit id>|gp_<40 random><crc32>`, ids that do not exist) or id-less (40 random `[A-Za-z0-9]` and no `|`, looked up by digest like a Sanctum token without its id). Statements are gatepass's own token-lookup count over the valid load.

| | {heading} |
|---|{"---|" * len(FLOODS)}
| flood: length, junk answered per second, p99 (its wrk) | {cells(length)} |
| valid checks during the flood (allow counter) | {cells(counted('allow'))} |
| junk answered `invalid_token` / `malformed_token` | {cells(counted('invalid', 'malformed'))} |
| token lookup statements during the flood | {cells(statements)} |
| statements per junk token | {cells(per_junk)} |
| token rows | {cells(lambda shape, _key: f.fact(f'token_rows_flood_{shape}'))} |
| CPU per junk check (gatepass / Postgres+Redis), beyond the valid checks' own | {cells(cpu)} |
| valid-check throughput vs no flood | {cells(valid)} |

CPU per valid check without a flood (gatepass): {figure(f.median('e.http.noflood.gp', 'server_cpu_us'))} µs.
"""


def memory_section(f: Figures, cached: Selector) -> str:
    columns = ("tokens", "cached", "rss_before", "rss_after", "per_token")
    rows = "".join(table_row(str(step[c]) for c in columns) + "\n" for step in f.memory)
    return f"""### Memory (g)

| tokens checked | cached (`{cached}`) | RSS before KiB | RSS after KiB | bytes per cached token |
|---|---|---|---|---|
{rows}"""


def index_section(f: Figures, indexed: Selector) -> str:
    return f"""### Index of existing tokens (g)

The instance of g just ready (`/readyz` said the index was loaded; nothing checked yet) on the database holding the bulk token rows, and one with the same settings just ready on that database before the bulk insert. Rows and load time from the start-up log line `index of existing tokens loaded`; RSS is VmRSS of `/proc/<pid>/status`.

| | value |
|---|---|
| rows loaded (log line) / indexed (`{indexed}`) | {f.fact('index_log_rows')} / {f.fact('index_rows')} |
| load time (log line) | {shown(number(f.fact('index_load_seconds')), '.3f')} s |
| RSS just ready: {f.fact('index_rows_few')} rows / {f.fact('index_rows')} rows | {f.fact('index_rss_few_kib')} KiB / {f.fact('index_rss_kib')} KiB |
| RSS difference | {signed(f.index_rss_delta())} KiB |
| bytes per row (RSS difference over the rows' difference) | {shown(f.index_bytes_per_row(), '.1f')} |
"""


def cold_section(f: Figures) -> str:
    rate = f.cold_rate()
    tokens = number(f.fact("cold_tokens"))
    cycle = None if rate is None or tokens is None or not rate else tokens / rate
    return f"""### Cold start (i)

A new gatepass (empty L1 of the default capacity; Redis warm: b's key prefix, filled by b's first pass) got ready with no traffic, and at once a paced load ({f.fact('cold_connections')} connections, each waiting {f.fact('cold_delay_ms')} ms between requests, `wrk -s tokens.lua`) cycled over the first {f.fact('cold_tokens')} tokens of b's list while `/metrics` was read every {f.fact('cold_interval')} s. A token is an L1 hit only from its second request on, so the ratio of L1 hits in an interval can pass 99 % only after one full cycle (here about {shown(cycle, '.1f')} s at the rate measured): the token count is chosen for a cycle of a few seconds.

| | value |
|---|---|
| tokens cycling | {f.fact('cold_tokens')} |
| L1 hit ratio of an interval above 99 %, after ready | {f.cold_seconds()} |
| L1 hits / misses meanwhile | {f.fact('cold_l1_hit')} / {f.fact('cold_l1_miss')} |
| checks a second meanwhile (L1 lookups over the time) | {shown(rate, '.0f')} |
| allowed / `unavailable` meanwhile | {f.fact('cold_allow')} / {f.fact('cold_unavailable')} |
| L2 hits meanwhile | {f.fact('cold_l2_hit')} |
| database token lookups meanwhile (statements) | {f.fact('cold_lookups')} |
"""


def targets_section(f: Figures) -> str:
    grpc_ratio = fraction(f.median("a.grpc.sat.gp", "rps"), f.median("a.grpc.sat.noop", "rps"))
    http_ratio = fraction(f.median("a.http.sat.gp", "rps"), f.median("a.http.sat.noop", "rps"))
    grpc_dp99 = difference(f.median("a.grpc.rate.gp", "p99"), f.median("a.grpc.rate.noop", "p99"))
    http_dp99 = difference(f.median("a.http.rate.gp", "p99"), f.median("a.http.rate.noop", "p99"))
    b_p99, b_light = f.median("b.http.paced.gp", "p99"), f.median("b.http.light.gp", "p99")
    c_p99, c_light = f.median("c.http.paced.gp", "p99"), f.median("c.http.light.gp", "p99")
    lookups, checks, flushes = (f.scenario_a_total(c) for c in ("lookups", "allow", "flushes"))
    per_token = ", ".join(f"{r['per_token']} B at {r['tokens']}" for r in f.memory) or NOT_MEASURED
    floods = []
    for shape, name, key in FLOODS:
        statements, junk = f.flood_count(shape, "lookups"), f.flood_count(shape, "invalid")
        rows = f.fact(f"token_rows_flood_{shape}")
        share = fraction(f.median(key, "rps"), f.median("e.http.noflood.gp", "rps"))
        measured = f"{shown(statements, 'd')} statements for {rows} rows ({shown(fraction(statements, junk), '.2f')} per junk token)"
        floods += [
            f"| flood {name}: statements bounded by token rows | {measured} | {verdict(statements, '<=', number(rows))} |",
            f"| flood {name}: valid-check throughput ≥ 90 % of no flood | {percent(share)} | {verdict(share, '>=', 0.90)} |",
        ]
    flood_rows = "\n".join(floods)
    return f"""## Targets

| target | measured | |
|---|---|---|
| cached check ≥ 95 % of the no-op's throughput, gRPC | {percent(grpc_ratio)} | {verdict(grpc_ratio, ">=", 0.95)} |
| cached check ≥ 95 % of the no-op's throughput, HTTP | {percent(http_ratio)} | {verdict(http_ratio, ">=", 0.95)} |
| p99 at half load ≤ baseline p99 + 50 µs, gRPC | {signed(grpc_dp99)} µs | {verdict(grpc_dp99, "<=", 50)} |
| p99 at half load ≤ baseline p99 + 50 µs, HTTP | {signed(http_dp99)} µs | {verdict(http_dp99, "<=", 50)} |
| Redis hit p99 ≤ 300 µs, light load (2 connections, 2 ms apart) | {us(b_light)} µs | {verdict(b_light, "<=", 300)} |
| Redis hit p99 ≤ 300 µs, half of gatepass's saturation rate | {us(b_p99)} µs | {verdict(b_p99, "<=", 300)} |
| database path p99 ≤ 1 ms, light load | {us(c_light)} µs | {verdict(c_light, "<=", 1000)} |
| database path p99 ≤ 1 ms, half of gatepass's saturation rate | {us(c_p99)} µs | {verdict(c_p99, "<=", 1000)} |
| 0 database statements per cached check | {shown(lookups, 'd')} token lookups in {shown(checks, 'd')} cached checks (and {shown(flushes, 'd')} batched last-used writes) | {verdict(lookups, "==", 0)} |
{flood_rows}
| ≤ 300 bytes per cached token | {per_token} | {verdict(f.worst_bytes_per_token(), "<=", 300)} |

- Reported, no target: the index of existing tokens, {f.fact('index_rows')} rows, takes {shown(f.index_bytes_per_row(), '.1f')} B of RSS per row and loaded in {shown(number(f.fact('index_load_seconds')), '.3f')} s (g); a new instance with Redis warm {f.cold_outcome()}, over {f.fact('cold_tokens')} tokens, with {f.fact('cold_l2_hit')} L2 hits and {f.fact('cold_lookups')} database token lookups meanwhile (i).
"""


def method_section(f: Figures, lookups: Selector, cached: Selector, indexed: Selector) -> str:
    return f"""## How the scenarios are built

- **Servers.** gatepass is the release build (`cargo build --release`),
  run with `gatepass serve` against a fresh Postgres database
  (`{f.fact('postgres_url')}/gatepass_bench_<pid>`, dropped at the end) and, where stated,
  Redis at `{f.fact('redis_url')}` under a key prefix of its own; log level `info`
  (the default), stderr to a file. The baselines are
  `examples/noop_grpc.rs` (tonic + envoy-types, answers OK with the same
  four identity headers and `headers_to_remove`, as many Tokio workers as
  CPUs, TCP_NODELAY as gatepass) and `examples/noop_http.rs` (actix-web,
  200 with the same headers, {f.fact('cpus')} workers as gatepass's default), and nginx
  with `return 204`.
- **Requests.** gRPC: one CheckRequest shaped as Envoy's (lowercase headers,
  `:authority`, `:path`, `:method`, `source.address.socket_address`,
  context extension `require_all: orders:read`), written gRPC-framed by
  `examples/check_body.rs` and posted by `h2load -d` over h2c. HTTP:
  `GET /auth` with `Authorization: Bearer …` and the headers nginx's
  subrequest adds (`X-Original-Method`, `X-Original-URI`,
  `X-Gatepass-Require-All: orders:read`). The token of a, d, e, f is a
  real one from `gatepass token issue`; b, c, g and i use legacy-shaped tokens
  `<id>|s<n>` inserted with plain SQL (`sha256(('s'||n)::bytea)`).
- **Saturation**: gRPC `h2load {f.fact('grpc_sat')} -D {f.fact('secs')}` (8 connections × 16
  streams, as Envoy workers multiplex checks); HTTP `wrk {f.fact('http_sat')}` (nginx
  keeps 32 keep-alive connections to gatepass). **Fixed rate** (a): half the
  no-op's saturation throughput, with `h2load --rps` over {f.fact('rate_connections')}
  connections and one request in flight each (`--h1` for HTTP: wrk2 is not
  packaged, and wrk can only pace in whole milliseconds per connection).
  Few connections keep h2load's per-connection timers (which fire in
  bursts) from dominating p99; 4 could not hold the gRPC rate. h2load measures from the moment a
  request is sent, so a slow answer delays the next request instead of
  counting the wait (coordinated omission): p99 here is a service time at
  that rate, not an open-loop latency. Percentiles: h2load `--log-file`
  (per request), wrk `--latency`.
- **a, L1 hit**: one token, checked once before, so every measured check is
  an L1 hit (the counters column shows it). Rounds alternate which server
  goes first.
- **b, Redis hit**: gatepass with `GATEPASS_CACHE_CAPACITY=1` and Redis; a
  first, unmeasured pass sends each of {f.fact('l2_tokens')} tokens once (database
  reads; gatepass fills Redis behind each answer: {f.fact('l2_keys')} keys), then the
  measured loads cycle through the same tokens (`wrk -s tokens.lua`), so
  every check misses L1 and hits Redis. Paced: {f.fact('b_connections')} connections, each
  waiting {f.fact('b_delay_ms')} ms between requests (wrk Lua `delay`), about half the
  saturation rate.
- **c, database**: no Redis, `GATEPASS_CACHE_CAPACITY=1`, cycling through
  {f.fact('db_tokens')} other tokens: every check is one Postgres query. Paced like b.
- **d, deny**: the id of the benchmark token with the secret of another
  (well-formed, checksum valid, wrong digest): `invalid_token` from L1.
- **e, flood**: the valid load of a (wrk, 32 connections, saturating), once
  alone and once during each flood: `wrk -s flood.lua` sending random
  tokens of one shape (`BENCH_FLOOD_SHAPE`): with id, well-formed
  (`<12-digit id>|gp_<40 random>` with a correct CRC-32) for ids that do
  not exist; id-less, 40 random `[A-Za-z0-9]` without `|` (a legacy
  token gatepass looks up by digest). Redis configured as in production.
  Statements are `{lookups}` deltas from `/metrics` over the valid load,
  compared with the rows of `tokens` counted before each flood.
- **f, nginx**: the shipped `nginx/nginx.conf` and `nginx/gatepass.conf`,
  changed only in ports and paths as `tests/gatepass/nginx.rs` does, in
  front of an upstream nginx answering `return 204`; one nginx sends its
  auth subrequests to gatepass, another to the no-op HTTP server. No auth
  is `GET /public/42` (the shipped file's unchecked location, proxied to
  the same upstream), the other two `GET /orders/42` (requires
  `orders:read`) with the token of a; at saturation (`wrk {f.fact('http_sat')}`) and at
  {f.fact('e2e_rate')} requests/s (`h2load --h1`, {f.fact('rate_connections')} connections, as a),
  {f.fact('e2e_rounds')} rounds, each starting with the next of the three. "No keepalive" is
  the gatepass nginx with the two `keepalive 32;` lines removed (a new TCP
  connection to gatepass and to the upstream per request), one round,
  compared with the shipped file. Server CPU counts the proxy's processes,
  the upstream's and the auth server's.
- **h, Envoy**: the shipped `envoy/envoy.yaml` run by {f.fact('envoy')} with one
  worker (`--concurrency 1 --disable-hot-restart`), changed only in ports
  (and its listener on loopback) as `tests/gatepass/envoy.rs` does;
  ext_authz asks gatepass's gRPC listener or the no-op gRPC server (which
  also answers Envoy's gRPC health check). No auth is `GET /healthz` (the
  shipped file's route with ext_authz disabled); the rest as f. The access
  log line and the per-service rate limit of the shipped file stay on (the
  benchmark's service is not limited).
- **g, memory**: gatepass with `GATEPASS_CACHE_CAPACITY={f.fact('mem_capacity')}`, no
  Redis, last-used flushed every second; VmRSS from `/proc/<pid>/status`
  after a warm-up on one token, then after checking each token once (wrk
  over the token list until gatepass counted that many database reads), and
  after the following flush. Bytes per token = (RSS after − RSS before) /
  `{cached}`. Index of existing tokens: VmRSS and `{indexed}` of that
  instance as soon as `/readyz` reports `"index":"loaded"`, and of one
  with the same settings started (and stopped) before the bulk insert,
  when the database held the benchmark's few tokens; bytes per row = RSS
  difference / indexed rows' difference. Rows and load time are gatepass's
  start-up log line `index of existing tokens loaded rows=… took=…`.
- **i, cold start**: right after b, the scenario-b instance stopped, a new
  gatepass with Redis under b's key prefix (so Redis holds b's fills) and
  an empty L1 of default capacity; once `/readyz` says ready (polled every
  0.1 s), `wrk -s tokens.lua` over the first {f.fact('cold_tokens')} tokens of b's list,
  {f.fact('cold_connections')} connections each waiting {f.fact('cold_delay_ms')} ms, and `/metrics` every {f.fact('cold_interval')} s: per
  interval, L1 hits / (hits + misses) of `gatepass_cache_lookups_total`
  (at least {f.fact('cold_min_lookups')} lookups); the figures run from ready to the end of the
  first interval above 99 %, or to {f.fact('cold_limit')} s (not reached). L2 hits and
  token-lookup statements are that instance's counters over the same time.
- **CPU**: utime+stime from `/proc/<pid>/stat` (all threads) over the load,
  divided by the requests the tool completed. Postgres+Redis: this run's
  Postgres backends and the (shared) redis-server.
- **Counters**: `/metrics` scraped before and after every gatepass load:
  decisions, the tier that answered, and token-lookup statements. A load
  whose counts do not match its scenario says NOT AS EXPECTED.
"""


def all_runs_section(f: Figures, commands: str) -> str:
    columns = ("requests", "rps", "p50", "p99", "server_cpu_us", "tool_cpu_pct", "other_cpu_pct", "errors")
    rows = "\n".join(table_row([row["key"], *(figure(row[c]) for c in columns)]) for row in f.results.rows)
    return f"""## All runs

| key | requests | req/s | p50 µs | p99 µs | server CPU µs/req | load tool CPU % | other CPU % | errors/non-2xx |
|---|---|---|---|---|---|---|---|---|
{rows}

## Commands this run ran

```sh
{commands.rstrip(chr(10))}
```
"""


def render(results: Results, memory: list[dict], facts: dict[str, str], commands: str, selectors) -> str:
    """The generated part of BENCHMARKS.md (everything above MARKER)."""
    f = Figures(results, memory, facts)
    return f"""# gatepass benchmarks

Written by `benches/run` ({f.fact('started_at')}, {minutes(f.fact('elapsed_seconds'))} min): every figure
below comes from that one run, gatepass and its baselines measured side by
side with the same tool and flags. Run it again with `benches/run` (by hand;
never part of CI or the test suite). How each scenario is built and what the
columns mean is explained after the tables.

## Machine

{machine(f)}

**The load tools run on the same 2 cores as the servers** (loopback, one
load thread each). Saturation figures are therefore "what this box does with
the tool on it", not a server's capacity alone; the ratios to the no-op
baselines are the meaningful figures. Other work on the machine shows in the
`other CPU` column (share of both cores used by processes that are neither
the server, the load tool, nor Postgres/Redis); rows above ~10 % were
disturbed.

{results_section(f)}
{proxy_section(f)}
{flood_section(f)}
{memory_section(f, selectors["cached"])}
{index_section(f, selectors["indexed"])}
{cold_section(f)}
{targets_section(f)}
{method_section(f, selectors["lookups"], selectors["cached"], selectors["indexed"])}
{all_runs_section(f, commands)}"""


def kept_part(existing: str) -> str:
    """What follows MARKER in an existing BENCHMARKS.md, kept by a rewrite."""
    lines = existing.split("\n")
    if MARKER not in lines:
        return ""
    return "\n".join(lines[lines.index(MARKER) + 1 :]).rstrip("\n")


def document(generated: str, existing: str) -> str:
    """The whole file: the generated part, MARKER, and what was kept."""
    kept = kept_part(existing)
    return f"{generated}\n{MARKER}\n" + (f"{kept}\n" if kept else "")


def write(path: Path, generated: str) -> None:
    """Rewrites `path` through a temporary file, so a failure leaves the
    previous version whole."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(document(generated, existing), encoding="utf-8")
    temporary.replace(path)
