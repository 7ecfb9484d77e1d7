"""The long run of ``tests/test_invariants_dtypes.py``: 10,000 steps of every rule, at its defaults
and at extreme valid hyperparameters, in float16, float32 and float64, through the invariants the
guard runs at every step. Prints, per dtype, how many (rule, hyperparameters) runs stayed silent
and the first violation of any that did not, with the wall time (report the machine load beside it).

    python benchmarks/bench_dtype_silence.py [--steps 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_invariants_dtypes import CASES, DTYPES, run_silently


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    for dtype in DTYPES:
        t0 = time.perf_counter()
        loud = []
        for name, hyper in CASES:
            found = run_silently(name, hyper, dtype, steps=args.steps)
            if found:
                loud.append(f"{name}{hyper}: {found[0]}")
        took = time.perf_counter() - t0
        print(
            f"{dtype}: {len(CASES) - len(loud)}/{len(CASES)} runs silent over {args.steps} steps ({took:.1f} s)"
        )
        for line in loud:
            print("   ", line[:300])


if __name__ == "__main__":
    main()
