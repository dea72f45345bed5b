"""Captured outputs the tests read, shared between them."""

# Captured from h2load 1.52.0 and wrk 4.1.0 against nginx on loopback.
H2LOAD = """\
starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 1.00s, 2000.00 req/s, 88.02KB/s
requests: 2003 total, 2006 started, 2003 done, 2000 succeeded, 3 failed, 3 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 88.02KB (90132) total, 70.31KB (72000) headers (space savings 40.98%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:       17us       231us        73us        24us    80.45%
"""
H2LOAD_DENIED = """\
finished in 1.99s, 200.85 req/s, 66.10KB/s
requests: 400 total, 400 started, 400 done, 0 succeeded, 400 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 400 4xx, 0 5xx
"""
# start (µs since epoch), status, µs to the end of the response.
H2LOAD_LOG = "".join(f"17962373344897{i:02d}\t200\t{latency}\n" for i, latency in enumerate(range(100, 200)))
H2LOAD_LOG += "1796237334489800\t0\t5\n"  # a request that got no answer
WRK = """\
Running 1s test @ http://127.0.0.1:17998/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    43.61us   63.05us   2.05ms   99.49%
    Req/Sec    72.72k   791.31    73.95k    63.64%
  Latency Distribution
     50%   41.00us
     75%   46.00us
     90%   49.00us
     99%    3.78ms
  79410 requests in 1.10s, 8.33MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 100
Requests/sec:  72210.93
Transfer/sec:      7.57MB
"""


def stat(pid: int, comm: str, utime: int, stime: int) -> str:
    """A /proc/<pid>/stat line with the given times (fields 14 and 15)."""
    return f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 4 0 12345"


BEFORE = "\n".join(
    [
        "time 1000.0",
        "machine cpu  100 10 50 9000 5 3 2 1 0 0",
        "server " + stat(10, "gatepass", 40, 10),
        "store " + stat(20, "postgres", 5, 5),
        "store " + stat(21, "redis-server", 1, 1),
    ]
)
AFTER = "\n".join(
    [
        "time 1002.0",
        "machine cpu  300 10 150 9100 5 3 2 1 0 0",
        "server " + stat(10, "gatepass", 140, 30),
        "store " + stat(20, "postgres", 15, 5),
        "store " + stat(22, "postgres", 3, 2),
    ]
)
