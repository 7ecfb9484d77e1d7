"""Overhead of optcheck.watch and optcheck.trap on a real torch CPU training step, against set_detect_anomaly.

One training step = forward + backward + ``torch.optim.Adam.step()`` of an MLP
784-1024-256-10 (1,068,298 float32 parameters) on a batch of 128 random inputs. Variants,
each with its own model and optimizer (same initial weights), measured in one process in
interleaved rounds (so that they share the machine's load):

* ``plain``: the unguarded step;
* ``watch``: ``optcheck.watch(opt)`` checking every parameter entry at every step;
* ``watch(sample=1024)``: 1024 coordinates of each parameter and its state per step;
* ``trap(model)``: the step inside ``with optcheck.trap(model):`` (forward and tensor hooks);
* ``set_detect_anomaly(True)``: torch's own anomaly mode, the peer;
* floors (not guards): ``floor: read once`` copies the parameters before the step (what any
  check of the step's size must keep) and reads each array a full check must see once
  after it (one max-reduction over p, p − p_before, g, exp_avg, exp_avg_sq);
  ``floor: gather 1024`` gathers 1024 coordinates of the same arrays before and after.

Overhead = median step time of the variant / median plain step time − 1 (and the same with
minima, the least disturbed figures on a shared machine). Goals (issue 14): watch ≤ +10%,
sampled ≤ +2%, trap ≤ +15%. The machine load (``uptime``) is printed and written beside the
figures. Writes ``benchmarks/results/watch.md``; ``python benchmarks/report.py`` puts it on
the benchmarks page. Run ``python benchmarks/bench_watch.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import optcheck

RESULTS = Path(__file__).resolve().parent / "results" / "watch.md"
SIZES = (784, 1024, 256, 10)
BATCH = 128

VARIANTS: tuple[tuple[str, str], ...] = (
    ("watch", "<= +10%"),
    ("floor: read once", "(floor for watch)"),
    ("watch(sample=1024)", "<= +2%"),
    ("floor: gather 1024", "(floor for sample)"),
    ("trap(model)", "<= +15%"),
    ("set_detect_anomaly(True)", "(peer)"),
)


def uptime() -> str:
    """``uptime``'s line (the load averages), or os.getloadavg() where there is no uptime."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def make(
    variant: str, seed: int = 0, sizes: tuple[int, ...] = SIZES
) -> Callable[[int], tuple[list[float], list[float]]]:
    """A closure running ``k`` training steps of one variant; returns the wall and process CPU time of each."""
    torch.manual_seed(seed)
    layers: list[Any] = []
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, sizes[0], generator=gen)
    y = torch.randint(0, sizes[-1], (BATCH,), generator=gen)
    params = list(model.parameters())
    if variant == "watch":
        optcheck.watch(opt, names=model)
    elif variant == "watch(sample=1024)":
        optcheck.watch(opt, names=model, sample=1024)
    gen_idx = torch.Generator().manual_seed(seed + 2)
    kept: list[Any] = []

    def before_step() -> None:
        if variant == "floor: read once":
            kept[:] = [p.detach().clone() for p in params]
        elif variant == "floor: gather 1024":
            kept[:] = []
            for p in params:
                idx = torch.randint(0, p.numel(), (1024,), generator=gen_idx)
                state = opt.state.get(p) or {}
                kept.append(
                    (idx, [t.reshape(-1)[idx] for t in (p.detach(), p.grad, *state.values()) if t.dim()])
                )

    def after_step() -> None:
        if variant == "floor: read once":
            for p, p0 in zip(params, kept, strict=True):
                state = opt.state[p]
                for t in (p.detach(), p.detach() - p0, p.grad, state["exp_avg"], state["exp_avg_sq"]):
                    t.max()
        elif variant == "floor: gather 1024":
            for p, (idx, _) in zip(params, kept, strict=True):
                state = opt.state[p]
                for t in (p.detach(), p.grad, state["exp_avg"], state["exp_avg_sq"]):
                    t.reshape(-1)[idx].max()

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        if variant == "trap(model)":
            with optcheck.trap(model):
                yield
        elif variant == "set_detect_anomaly(True)":
            with torch.autograd.set_detect_anomaly(True):
                yield
        else:
            yield

    def run(k: int) -> tuple[list[float], list[float]]:
        times, cpu = [], []
        with around():
            for _ in range(k):
                t0, c0 = time.perf_counter(), time.process_time()
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                before_step()
                opt.step()
                after_step()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        return times, cpu

    return run


def measure(steps: int, rounds: int, sizes: tuple[int, ...]) -> dict[str, tuple[list[float], list[float]]]:
    """Per variant: the wall times and the process CPU times of every step, in interleaved rounds."""
    names = ["plain", *(v for v, _ in VARIANTS)]
    runs = {name: make(name, sizes=sizes) for name in names}
    for run in runs.values():
        run(3)  # warm up (and the watch's first, state-building step)
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for _ in range(rounds):
        for name, run in runs.items():
            wall, cpu = run(steps)
            out[name][0].extend(wall)
            out[name][1].extend(cpu)
    return out


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small model and few rounds (smoke test)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 8)")
    ap.add_argument("--steps", type=int, default=5, help="steps of each variant per round")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update results/watch.md")
    args = ap.parse_args(argv)
    sizes = (64, 128, 10) if args.quick else SIZES
    rounds = args.rounds or (2 if args.quick else 8)
    n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    load_start = uptime()
    print(f"uptime at start: {load_start}", flush=True)
    series = measure(args.steps, rounds, sizes)
    load_end = uptime()
    print(f"uptime at end:   {load_end}", flush=True)
    base_med = statistics.median(series["plain"][0])
    base_min = min(series["plain"][0])
    base_cpu = statistics.median(series["plain"][1])
    arch = "-".join(str(s) for s in sizes)
    lines = [
        "# torch watch and trap overhead (benchmarks/bench_watch.py)",
        "",
        f"One training step: MLP {arch} ({n_params:,} float32 parameters), batch {BATCH}, forward + backward + "
        f"`torch.optim.Adam.step()` on the CPU; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. {rounds} interleaved "
        f"rounds of {args.steps} steps per variant in one process.",
        "",
        f"Machine load (`uptime`) at the start: `{load_start}`; at the end: `{load_end}`. With a load above "
        "the number of cores the wall times mostly measure waiting for a core; the process CPU time (user + "
        "system of this process, all its threads) is the better guide to the cost on an idle machine.",
        "",
        "Overhead = step time of the variant / step time of the plain step − 1: process CPU time median over "
        "median, wall time median over median and minimum over minimum. The floors are not guards: what any "
        "full check must do at least (keep the parameters before the step, read each array once after it), "
        "and what any `sample=1024` check must do (gather 1024 coordinates of each array before and after).",
        "",
        "| variant | CPU ms per step (median) | overhead (CPU median) | wall ms (median / min) "
        "| overhead (wall median) | overhead (wall min) | goal |",
        "|---|---|---|---|---|---|---|",
        f"| plain step | {base_cpu * 1e3:.2f} | | {base_med * 1e3:.2f} / {base_min * 1e3:.2f} | | | |",
    ]
    for name, goal in VARIANTS:
        wall, cpu = series[name]
        med, mn, c = statistics.median(wall), min(wall), statistics.median(cpu)
        lines.append(
            f"| {name} | {c * 1e3:.2f} | {c / base_cpu - 1:+.1%} | {med * 1e3:.2f} / {mn * 1e3:.2f} "
            f"| {med / base_med - 1:+.1%} | {mn / base_min - 1:+.1%} | {goal} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
