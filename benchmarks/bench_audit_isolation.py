"""What isolation costs: the seed audit (README command 1) before and after issue 15.

Usage (from the repository root)::

    python benchmarks/bench_audit_isolation.py --baseline /path/to/a/checkout/of/104e547 [--runs 3]

Runs ``python -m optcheck audit examples/rmsprop_nan.py:update_parameters_with_rmsprop --rule
rmsprop --hyper alpha=0.9 --hyper lr=0.01 --arg reg_param=0.7 --arg batch_size=32`` from a
fresh interpreter, alternately with this checkout and the baseline checkout on ``PYTHONPATH``
(each run in its own copy of the working directory), and prints the median wall time of each,
their ratio (goal: at most 1.20), and the machine's load average before and after. Both
checkouts audit the same target file (this checkout's ``examples/rmsprop_nan.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "audit",
    str(ROOT / "examples" / "rmsprop_nan.py") + ":update_parameters_with_rmsprop",
    "--rule",
    "rmsprop",
    "--hyper",
    "alpha=0.9",
    "--hyper",
    "lr=0.01",
    "--arg",
    "reg_param=0.7",
    "--arg",
    "batch_size=32",
]


def run_once(checkout: Path) -> tuple[float, int]:
    """Wall seconds and exit status of one audit with ``checkout`` first on ``PYTHONPATH``."""
    env = dict(os.environ, PYTHONPATH=str(checkout), NO_COLOR="1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "optcheck", *ARGS], cwd=checkout, env=env, capture_output=True, text=True
    )
    return time.perf_counter() - t0, proc.returncode


def main() -> None:
    """Interleave runs of both checkouts and print the medians and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, type=Path, help="a checkout of the commit to compare with")
    ap.add_argument("--runs", type=int, default=3)
    ns = ap.parse_args()
    load0 = os.getloadavg()
    times: dict[str, list[float]] = {"baseline": [], "this": []}
    codes: dict[str, set[int]] = {"baseline": set(), "this": set()}
    for _ in range(ns.runs):
        for name, checkout in (("baseline", ns.baseline.resolve()), ("this", ROOT)):
            dt, rc = run_once(checkout)
            times[name].append(dt)
            codes[name].add(rc)
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in ("baseline", "this"):
        print(
            f"{k:9s} median {med[k]:6.2f} s  runs {[round(t, 2) for t in times[k]]}  exit {sorted(codes[k])}"
        )
    print(f"ratio this/baseline: {med['this'] / med['baseline']:.2f} (goal <= 1.20)")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
