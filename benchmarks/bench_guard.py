"""Overhead of optcheck.Guard inside a numpy Adam loop, against torch's anomaly detection.

Measured in one process, in interleaved rounds (median of the rounds):

1. a numpy float32 Adam loop (gradient of a quadratic, ``g = p - target``, then
   ``optcheck.rules.get("adam").step``) on 1M and 10M parameters: unguarded, with a
   full :class:`optcheck.Guard` check each step, and with ``sample=1024``;
2. a torch CPU loop (an MLP forward/backward + ``torch.optim.Adam``): plain, and under
   ``torch.autograd.set_detect_anomaly(True)``.

Goals (issue 3): full checks at most 15% of the step time, ``sample=1024`` at most 2%.
Writes the table to ``benchmarks/results/guard.md``. Run ``python benchmarks/bench_guard.py``
(``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import optcheck

RESULTS = Path(__file__).resolve().parent / "results" / "guard.md"


def numpy_loop(n: int, variant: str, seed: int = 0) -> Callable[[int], tuple[list[float], list[float]]]:
    """A closure running ``k`` Adam steps of the given variant.

    Returns per-iteration seconds of the whole iteration (gradient, step, check) and of the
    check alone.
    """
    rng = np.random.default_rng(seed)
    rule = optcheck.rules.get("adam", lr=1e-3)
    target = rng.normal(size=n).astype(np.float32)
    box: dict[str, Any] = {"p": rng.normal(size=n).astype(np.float32)}
    box["s"] = rule.init(box["p"])
    guard = None
    if variant == "full":
        guard = optcheck.Guard(rule)
    elif variant == "sample=1024":
        guard = optcheck.Guard(rule, sample=1024)

    def run(k: int) -> tuple[list[float], list[float]]:
        p, s = box["p"], box["s"]
        total, checks = [], []
        for _ in range(k):
            t0 = time.perf_counter()
            g = p - target
            p2, s2 = rule.step(p, g, s)
            t1 = time.perf_counter()
            if guard is not None:
                guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s})
            t2 = time.perf_counter()
            total.append(t2 - t0)
            checks.append(t2 - t1)
            p, s = p2, s2
        box["p"], box["s"] = p, s
        return total, checks

    return run


def torch_loop(anomaly: bool, seed: int = 0) -> Callable[[int], tuple[list[float], list[float]]]:
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))

    def run(k: int) -> tuple[list[float], list[float]]:
        total = []
        with torch.autograd.set_detect_anomaly(anomaly):
            for _ in range(k):
                t0 = time.perf_counter()
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                total.append(time.perf_counter() - t0)
        return total, [0.0] * k

    return run


def measure(
    runs: dict[str, Callable[[int], tuple[list[float], list[float]]]], steps: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Per variant: the median and the minimum iteration time, and the minimum and median check time.

    Variants run in interleaved rounds (after one warm-up round) so that they share the
    machine's load. The minimum over many iterations is the figure least disturbed by other
    processes on a shared machine; the median is shown beside it.
    """
    for run in runs.values():
        run(max(1, steps // 2))
    total: dict[str, list[float]] = {name: [] for name in runs}
    check: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t, c = run(steps)
            total[name].extend(t)
            check[name].extend(c)
    return {
        name: {
            "median": statistics.median(total[name]),
            "min": min(total[name]),
            "check_min": min(check[name]),
            "check_median": statistics.median(check[name]),
        }
        for name in runs
    }


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few rounds (smoke test)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update results/guard.md")
    args = ap.parse_args(argv)
    sizes = [10_000, 100_000] if args.quick else [1_000_000, 10_000_000]
    rounds = 2 if args.quick else 7
    lines = [
        "# Guard overhead (benchmarks/bench_guard.py)",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}; {rounds} interleaved rounds in one process; "
        f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine: "
        "figures vary from run to run).",
        "",
        "Guard cost = time inside `guard.check` / time of the unguarded iteration (gradient + Adam step),",
        "both the minimum over all iterations; loop overhead = median guarded iteration / median unguarded",
        "iteration − 1 (noisier on a loaded machine).",
        "",
        "| loop | parameters | iteration min / median (ms) | guard cost (min) | loop overhead (median) | goal |",
        "|---|---|---|---|---|---|",
    ]
    for n in sizes:
        steps = 20 if n <= 1_000_000 else 4
        runs = {v: numpy_loop(n, v) for v in ("none", "full", "sample=1024")}
        t = measure(runs, steps, rounds)
        base = t["none"]
        for variant, goal in (("full", "<= 15%"), ("sample=1024", "<= 2%")):
            cost = t[variant]["check_min"] / base["min"]
            over = t[variant]["median"] / base["median"] - 1
            lines.append(
                f"| numpy Adam + Guard {variant} | {n:,} float32 | {base['min'] * 1e3:.2f} / "
                f"{base['median'] * 1e3:.2f} | {cost:.1%} ({t[variant]['check_min'] * 1e3:.3f} ms) | "
                f"{over:+.1%} | {goal} |"
            )
            print(lines[-1], flush=True)
    try:
        import torch
    except ImportError:  # pragma: no cover
        lines.append("| torch MLP + Adam, detect_anomaly | - | - | torch not installed | - | - |")
    else:
        truns = {"plain": torch_loop(False), "anomaly": torch_loop(True)}
        t = measure(truns, 3 if args.quick else 10, rounds)
        cost = t["anomaly"]["min"] / t["plain"]["min"] - 1
        over = t["anomaly"]["median"] / t["plain"]["median"] - 1
        lines.append(
            f"| torch MLP 784-512-512-10 + torch.optim.Adam, batch 128, under "
            f"set_detect_anomaly(True) | 669,706 float32 | {t['plain']['min'] * 1e3:.2f} / "
            f"{t['plain']['median'] * 1e3:.2f} | {cost:+.1%} (min vs min) | {over:+.1%} | (peer) |"
        )
        print(lines[-1], flush=True)
        lines.append("")
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads.")
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    return text


if __name__ == "__main__":
    main()
