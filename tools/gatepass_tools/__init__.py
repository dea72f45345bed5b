"""The logic of gatepass's shell tools, kept in Python so it has tests.

`scripts/prometheus-check` and `benches/run` only start processes; what they
measure, check and report is here. Metric names are read from
`src/metrics.rs` (see `metrics`), never listed a second time.
"""

from pathlib import Path

#: The repository this package lives in (`tools/gatepass_tools/..`).
REPO_ROOT = Path(__file__).resolve().parents[2]
