"""Time of one step of the reference rules on large float32 parameters, against torch.optim.

Usage (from the repository root)::

    python benchmarks/bench_rules.py            # 1M and 10M parameters; writes benchmarks/results/rules.md
    python benchmarks/bench_rules.py --quick    # 1M parameters only, fewer repeats

For ``adam``, ``sgd`` (momentum 0.9) and ``rmsprop``, on one float32 array of 1M and of 10M
entries (CPU), the same process times:

* **optcheck**: ``rule.step(params, grads, state)`` on numpy arrays (pure: it returns new
  parameters and a new state, as the reference must), the state carried from step to step;
* **torch foreach** and **torch single**: ``torch.optim`` with ``foreach=True`` and
  ``foreach=False`` (in place, torch's default thread count; the 1-thread figure of the
  foreach path is shown too, since numpy runs on one thread);
* **numpy in place**: a hand-written in-place numpy step with ``out=`` everywhere (not pure, no
  checks): the floor for numpy, to show what the pure API costs.

Each figure is the best (minimum) of interleaved repeats, as ``timeit`` advises: a step of each
contender in turn, so that a noisy neighbour slows them all alike, and the minimum is the
least disturbed run (the machines are shared; the load average is recorded with the figures).
The ratio is optcheck's time over torch foreach's.
Memory: ``tracemalloc`` sees numpy's allocations; the peak during one step, less the arrays the
step returns (the new parameters and each new state array), divided by the parameter's size,
is the number of parameter-sized temporaries the step holds at once.
Goals (issue 2): optcheck within 1.5x of torch foreach; at most two parameter-sized temporaries.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import optcheck

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "rules.md"

RULES: dict[str, tuple[dict[str, Any], type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adam": ({"lr": 1e-3}, torch.optim.Adam, {"lr": 1e-3}),
    "sgd": ({"lr": 1e-3, "momentum": 0.9}, torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "rmsprop": ({"lr": 1e-3}, torch.optim.RMSprop, {"lr": 1e-3}),
}


def numpy_in_place(name: str, p: np.ndarray, g: np.ndarray) -> Callable[[], None]:
    """A hand-written in-place numpy step (the floor): the same equations, no checks, no copies."""
    m, v, tmp = np.zeros_like(p), np.zeros_like(p), np.empty_like(p)
    t = [0]

    def adam() -> None:
        t[0] += 1
        b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
        np.subtract(g, m, out=tmp)
        np.multiply(tmp, 1 - b1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(g, g, out=tmp)
        np.subtract(tmp, v, out=tmp)
        np.multiply(tmp, 1 - b2, out=tmp)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.multiply(tmp, 1 / np.sqrt(1 - b2 ** t[0]), out=tmp)
        np.add(tmp, eps, out=tmp)
        np.divide(m, tmp, out=tmp)
        np.multiply(tmp, -lr / (1 - b1 ** t[0]), out=tmp)
        np.add(p, tmp, out=p)

    def sgd() -> None:
        t[0] += 1
        if t[0] == 1:
            np.copyto(m, g)
        else:
            np.multiply(m, 0.9, out=m)
            np.add(m, g, out=m)
        np.multiply(m, -1e-3, out=tmp)
        np.add(p, tmp, out=p)

    def rmsprop() -> None:
        np.multiply(g, g, out=tmp)
        np.subtract(tmp, v, out=tmp)
        np.multiply(tmp, 1 - 0.99, out=tmp)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, 1e-8, out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, -1e-3, out=tmp)
        np.add(p, tmp, out=p)

    return {"adam": adam, "sgd": sgd, "rmsprop": rmsprop}[name]


def contenders(name: str, n: int) -> dict[str, Callable[[], None]]:
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    hyper, opt_cls, torch_hyper = RULES[name]
    rule = optcheck.rules.get(name, **hyper)
    box: dict[str, Any] = {"p": p0.copy()}
    box["s"] = rule.init(box["p"])

    def reference() -> None:
        box["p"], box["s"] = rule.step(box["p"], g, box["s"])

    out: dict[str, Callable[[], None]] = {"optcheck": reference}
    for foreach in (True, False):
        tp = torch.from_numpy(p0.copy())
        tp.grad = torch.from_numpy(g.copy())
        opt = opt_cls([tp], foreach=foreach, **torch_hyper)
        out[f"torch {'foreach' if foreach else 'single'}"] = opt.step
    out["numpy in place"] = numpy_in_place(name, p0.copy(), g)
    return out


def time_interleaved(
    fns: dict[str, Callable[[], None]], repeats: int
) -> tuple[dict[str, float], dict[str, int]]:
    """Best seconds per call of each function, calls interleaved (torch foreach also on 1 thread),
    and the median number of minor page faults per call (memory the call touched for the first time)."""
    threads = torch.get_num_threads()
    runs: dict[str, list[float]] = {k: [] for k in [*fns, "torch foreach 1 thread"]}
    faults: dict[str, list[int]] = {k: [] for k in fns}
    for fn in fns.values():  # warm up (first-touch of the state, lazy init)
        fn()
        fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn()
            runs[key].append(time.perf_counter() - t0)
            faults[key].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        fns["torch foreach"]()
        runs["torch foreach 1 thread"].append(time.perf_counter() - t0)
        torch.set_num_threads(threads)
    return {k: min(v) for k, v in runs.items()}, {k: sorted(v)[len(v) // 2] for k, v in faults.items()}


def temporaries(name: str, n: int) -> tuple[float, int]:
    """Parameter-sized temporaries held at once during one step, and how many arrays it returns."""
    rng = np.random.default_rng(1)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    hyper = RULES[name][0]
    rule = optcheck.rules.get(name, **hyper)
    s = rule.init(p)
    for _ in range(2):  # past the first step (sgd's first momentum step is a copy)
        p, s = rule.step(p, g, s)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    p2, s2 = rule.step(p, g, s)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outputs = 1 + len(rule.array_keys())
    del p2, s2
    return (peak - before) / p.nbytes - outputs, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M parameters only, fewer repeats")
    args = parser.parse_args()
    sizes = [1_000_000] if args.quick else [1_000_000, 10_000_000]
    rows = []
    for n in sizes:
        repeats = 15 if args.quick else (60 if n <= 1_000_000 else 30)
        for name in RULES:
            times, faults = time_interleaved(contenders(name, n), repeats)
            temps, outputs = temporaries(name, n)
            rows.append((name, n, times, faults, temps, outputs))
            ratio = times["optcheck"] / times["torch foreach"]
            print(
                f"{name:8s} {n / 1e6:4.0f}M  optcheck {times['optcheck'] * 1e3:7.2f} ms  "
                f"torch foreach {times['torch foreach'] * 1e3:7.2f} ms  ratio {ratio:5.2f}x  "
                f"torch single {times['torch single'] * 1e3:7.2f} ms  "
                f"torch foreach 1 thread {times['torch foreach 1 thread'] * 1e3:7.2f} ms  "
                f"numpy in place {times['numpy in place'] * 1e3:7.2f} ms  temporaries {temps:4.2f}  "
                f"page faults optcheck {faults['optcheck']} torch foreach {faults['torch foreach']}",
                flush=True,
            )
    write(rows, args.quick)


def write(rows: list[tuple[str, int, dict[str, float], dict[str, int], float, int]], quick: bool) -> None:
    lines = [
        "# Reference rules vs torch.optim (one step, float32, CPU)",
        "",
        f"`python benchmarks/bench_rules.py{' --quick' if quick else ''}`; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f} when the run ended. "
        "Best of interleaved repeats, milliseconds per step. "
        "Ratio = optcheck / torch foreach (goal ≤ 1.5). Temporaries = parameter-sized arrays held at once "
        "beyond the step's outputs (goal ≤ 2).",
        "",
        "| rule | params | optcheck (ms) | torch foreach | torch single | torch foreach, 1 thread "
        "| numpy in place (floor) | ratio vs foreach | ratio vs foreach, 1 thread | temporaries | outputs "
        "| page faults per step: optcheck / torch foreach |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, n, t, f, temps, outputs in rows:
        ms = {k: v * 1e3 for k, v in t.items()}
        lines.append(
            f"| {name} | {n / 1e6:.0f}M | {ms['optcheck']:.2f} | {ms['torch foreach']:.2f} | "
            f"{ms['torch single']:.2f} | {ms['torch foreach 1 thread']:.2f} | {ms['numpy in place']:.2f} | "
            f"{t['optcheck'] / t['torch foreach']:.2f}x | {t['optcheck'] / t['torch foreach 1 thread']:.2f}x | "
            f"{temps:.2f} | {outputs} | {f['optcheck']} / {f['torch foreach']} |"
        )
    lines += ["", NOTES]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


NOTES = """\
What the figures mean:

* The reference is pure: every step allocates its outputs (the new parameters and a new
  state, `outputs` arrays of the parameter's size) where torch updates in place, and numpy
  runs one pass per elementwise operation where torch fuses several (`lerp_`, `addcmul_`,
  `addcdiv_`). The hand-written in-place numpy column is the floor for numpy itself.
* Temporaries are counted with `tracemalloc`, which sees numpy's allocations exactly: the
  peak during a step, less the outputs, in parameter sizes. Each `Ops` sub-expression makes
  one array and works in place on it (the running averages in three passes without a
  temporary, the division written into the denominator it made), and the rules never keep
  two temporaries alive at once beyond that.
* Page faults: a 40 MB array (10M float32) is above glibc's largest mmap threshold (32 MB),
  so every parameter-sized allocation is fresh memory that the kernel must fault in and zero
  (numpy also asks for transparent huge pages there). On the virtual machines this project
  runs on, that first touch costs more than the arithmetic, and far more when other jobs
  load the machine; at 1M the freed arrays are reused and no page faults occur. The 10M
  figures therefore measure the allocator and the machine as much as the update rules;
  compare them within one run, and expect them to move between runs.
* torch's default thread count is the machine's; with other jobs running, its threads wait
  for each other, which is why the 1-thread column is shown beside it.
"""


if __name__ == "__main__":
    main()
