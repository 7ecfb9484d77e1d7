"""Overhead of optcheck.Guard inside a numpy Adam loop, against torch's anomaly detection.

Measured in one process, in interleaved rounds:

1. a numpy float32 Adam loop (gradient of a quadratic, ``g = p - target``, then
   ``optcheck.rules.get("adam").step``) on 1M and 10M parameters: unguarded, with a
   full :class:`optcheck.Guard` check each step, and with ``sample=1024``;
2. two floors, measured after the same step: the cost of reading each array a full check
   must see once (one numpy max-reduction over each of p, p_new, g, m, v: the memory
   traffic alone), and the cost of drawing 1024 indices and gathering those coordinates
   of the same five arrays (what any ``sample=1024`` check must do);
3. a torch CPU loop (an MLP forward/backward + ``torch.optim.Adam``): plain, and under
   ``torch.autograd.set_detect_anomaly(True)``.

Every variant keeps its own loop state; one round runs ``steps`` iterations of each
variant in turn, and the rounds repeat, so that all variants share the machine's load.
Guard cost = time inside ``guard.check`` / time of the unguarded iteration (gradient + Adam
step), reported twice: minimum over minimum (the least disturbed figures) and median
over median. Goals (issue 3): full checks at most 15% of the step time, ``sample=1024``
at most 2%. Writes the table to ``benchmarks/results/guard.md``. Run
``python benchmarks/bench_guard.py`` (``--quick`` for a smoke run, ``--rounds N``).
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

#: k iterations -> per-iteration seconds of (iteration, check) wall-clock and (iteration, check) thread CPU time
Run = Callable[[int], tuple[list[float], list[float], list[float], list[float]]]


def numpy_loop(n: int, variant: str, seed: int = 0) -> Run:
    """A closure running ``k`` Adam steps of the given variant.

    Returns per-iteration seconds of the whole iteration (gradient, step, check) and of the
    check alone (or of the floor's work), in wall-clock time and in this thread's CPU time.
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
    draw = np.random.default_rng(seed + 1)

    def after(p: Any, g: Any, s: Any, p2: Any, s2: Any) -> None:
        if guard is not None:
            guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s})
        elif variant == "floor: read once":
            for x in (p, p2, g, s2["exp_avg"], s2["exp_avg_sq"]):
                np.maximum.reduce(x)
        elif variant == "floor: gather 1024":
            idx = np.sort(draw.integers(0, n, 1024))
            for x in (p, p2, g, s2["exp_avg"], s2["exp_avg_sq"]):
                x.take(idx)

    def run(k: int) -> tuple[list[float], list[float], list[float], list[float]]:
        p, s = box["p"], box["s"]
        total, checks, cpu_total, cpu_checks = [], [], [], []
        for _ in range(k):
            t0, c0 = time.perf_counter(), time.thread_time()
            g = p - target
            p2, s2 = rule.step(p, g, s)
            t1, c1 = time.perf_counter(), time.thread_time()
            after(p, g, s, p2, s2)
            t2, c2 = time.perf_counter(), time.thread_time()
            total.append(t2 - t0)
            checks.append(t2 - t1)
            cpu_total.append(c2 - c0)
            cpu_checks.append(c2 - c1)
            p, s = p2, s2
        box["p"], box["s"] = p, s
        return total, checks, cpu_total, cpu_checks

    return run


def torch_loop(anomaly: bool, seed: int = 0) -> Run:
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

    def run(k: int) -> tuple[list[float], list[float], list[float], list[float]]:
        total, cpu = [], []
        with torch.autograd.set_detect_anomaly(anomaly):
            for _ in range(k):
                t0, c0 = time.perf_counter(), time.process_time()  # torch may use several threads
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                total.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        return total, [0.0] * k, cpu, [0.0] * k

    return run


def measure(runs: dict[str, Run], steps: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per variant: minimum and median of the iteration time and of the check time, wall and CPU.

    Variants run in interleaved rounds (after one warm-up round) so that they share the
    machine's load. The minimum over many iterations is the figure least disturbed by other
    processes on a shared machine; the median is the typical iteration. The CPU time of the
    thread leaves out the time other processes held the core (it still includes their
    effect on the shared caches).
    """
    for run in runs.values():
        run(max(1, steps // 2))
    series: dict[str, list[list[float]]] = {name: [[], [], [], []] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            for acc, values in zip(series[name], run(steps), strict=True):
                acc.extend(values)
    return {
        name: {
            "min": min(total),
            "median": statistics.median(total),
            "check_min": min(check),
            "check_median": statistics.median(check),
            "cpu_min": min(cpu_total),
            "cpu_check_min": min(cpu_check),
        }
        for name, (total, check, cpu_total, cpu_check) in series.items()
    }


VARIANTS = (
    ("full", "<= 15%"),
    ("floor: read once", "(reference)"),
    ("sample=1024", "<= 2%"),
    ("floor: gather 1024", "(reference)"),
)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few rounds (smoke test)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9, quick 2)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update results/guard.md")
    args = ap.parse_args(argv)
    sizes = [10_000, 100_000] if args.quick else [1_000_000, 10_000_000]
    rounds = args.rounds or (2 if args.quick else 9)
    lines = [
        "# Guard overhead (benchmarks/bench_guard.py)",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}; {rounds} interleaved rounds in one process; "
        f"load average at start {os.getloadavg()[0]:.1f} (a shared machine: figures vary from run to run).",
        "",
        "Guard cost = time inside `guard.check` / time of the unguarded iteration (gradient + Adam step):",
        "wall-clock minimum / minimum (the least disturbed figures), median / median, and the minima of",
        "this thread's CPU time (which leaves out the time other jobs held the core). Loop overhead =",
        "median guarded iteration / median unguarded iteration − 1. The floors are not guards: the cost",
        "of reading once each array a full check must see, and of gathering 1024 coordinates of each.",
        "",
        "| loop | parameters | step min / median (ms) | guard cost (min) | guard cost (median) "
        "| guard cost (CPU min) | loop overhead (median) | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        steps = 20 if n <= 1_000_000 else 4
        runs = {v: numpy_loop(n, v) for v in ("none", *(name for name, _ in VARIANTS))}
        t = measure(runs, steps, rounds)
        base = t["none"]
        for variant, goal in VARIANTS:
            v = t[variant]
            cost_min = v["check_min"] / base["min"]
            cost_med = v["check_median"] / base["median"]
            cost_cpu = v["cpu_check_min"] / base["cpu_min"]
            over = v["median"] / base["median"] - 1
            label = f"numpy Adam + Guard {variant}" if goal.startswith("<=") else f"numpy Adam, {variant}"
            lines.append(
                f"| {label} | {n:,} float32 | {base['min'] * 1e3:.2f} / {base['median'] * 1e3:.2f} | "
                f"{cost_min:.1%} ({v['check_min'] * 1e3:.3f} ms) | "
                f"{cost_med:.1%} ({v['check_median'] * 1e3:.3f} ms) | "
                f"{cost_cpu:.1%} ({v['cpu_check_min'] * 1e3:.3f} of {base['cpu_min'] * 1e3:.2f} ms) | "
                f"{over:+.1%} | {goal} |"
            )
            print(lines[-1], flush=True)
    try:
        import torch
    except ImportError:  # pragma: no cover
        lines.append("| torch MLP + Adam, detect_anomaly | - | - | torch not installed | - | - | - | - |")
    else:
        truns = {"plain": torch_loop(False), "anomaly": torch_loop(True)}
        t = measure(truns, 3 if args.quick else 10, rounds)
        cost = t["anomaly"]["min"] / t["plain"]["min"] - 1
        cost_med = t["anomaly"]["median"] / t["plain"]["median"] - 1
        cost_cpu = t["anomaly"]["cpu_min"] / t["plain"]["cpu_min"] - 1
        lines.append(
            f"| torch MLP 784-512-512-10 + torch.optim.Adam, batch 128, under "
            f"set_detect_anomaly(True) | 669,706 float32 | {t['plain']['min'] * 1e3:.2f} / "
            f"{t['plain']['median'] * 1e3:.2f} | {cost:+.1%} (min vs min) | {cost_med:+.1%} (median vs median) "
            f"| {cost_cpu:+.1%} (process CPU, min vs min) | {cost_med:+.1%} | (peer) |"
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
