"""What diagnosis adds to a failing audit of a dict-style target (issue 7: at most 2 seconds).

For each failing course-style (dict) target, in one process and interleaved rounds:

* the audit as shipped (``optcheck.testing.audit``, in this process), with the time spent
  inside ``optcheck.diagnose.explain`` measured by wrapping it (every call summed);
* the same audit with diagnosis switched off (the audit's lazy import of
  ``optcheck.diagnose`` answers ``None``, as it does when the module is missing): the peer.

The targets: the seed problem (``examples/rmsprop_nan.py``, two bugs, found by the pair search),
four single-bug targets of ``tests/targets/``, and a target whose bug is in no catalog (the
search runs to the end of its budget: the worst case). Figures are medians over the rounds.
Writes ``benchmarks/results/diagnose.md``. Run ``python benchmarks/bench_diagnose.py``
(``--rounds 1`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import optcheck
import optcheck.audit.engine as engine
import optcheck.diagnose as diagnose
from optcheck.testing import audit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "diagnose.md"

UNEXPLAINED = """
import numpy as np


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
    for key in list(parameters):
        k = "d" + key
        v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
        s[k] = beta2 * s[k] + (1 - beta2) * grads[k] ** 2
        v_hat = v[k] / (1 - beta1**t)
        s_hat = s[k] / (1 - beta2**t)
        parameters[key] = parameters[key] - learning_rate * v_hat / (s_hat ** 0.75 + epsilon)  # not in any catalog
    return parameters, v, s
"""


def cases(tmp: Path) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """(label, target, rule, hyper, args) of the failing dict-style targets."""
    t = ROOT / "tests" / "targets"
    unexplained = tmp / "dict_unexplained.py"
    unexplained.write_text(UNEXPLAINED, encoding="utf-8")
    seed_args = {"reg_param": 0.7, "batch_size": 32}
    return [
        ("seed: rmsprop_nan.py (2 bugs, pair search)", f"{ROOT / 'examples' / 'rmsprop_nan.py'}:update_parameters_with_rmsprop",
         "rmsprop", {"alpha": 0.9, "lr": 0.01, "eps": 1e-8}, seed_args),
        ("dict_eps-outside-denominator", f"{t / 'dict_eps-outside-denominator.py'}:update_parameters_with_rmsprop",
         "rmsprop", {}, {}),
        ("dict_decay-rates-swapped", f"{t / 'dict_decay-rates-swapped.py'}:update_parameters_with_adam",
         "adam", {"lr": 0.01}, {}),
        ("dict_bias-correction-compounds", f"{t / 'dict_bias-correction-compounds.py'}:update_parameters_with_adam",
         "adam", {"lr": 0.01}, {}),
        ("dict_state-not-updated", f"{t / 'dict_state-not-updated.py'}:update_parameters_with_adam",
         "adam", {"lr": 0.01}, {}),
        ("a bug in no catalog (full search)", f"{unexplained}:update_parameters_with_adam", "adam", {"lr": 0.01}, {}),
        ("dict_missing-sqrt--biases-only (group search)", f"{t / 'dict_missing-sqrt--biases-only.py'}:update_parameters_with_rmsprop",
         "rmsprop", {"alpha": 0.9, "lr": 0.01}, {}),
        ("dict_second-moment-not-squared--one-array", f"{t / 'dict_second-moment-not-squared--one-array.py'}:update_parameters_with_adam",
         "adam", {"lr": 0.01}, {}),
        ("dict_bias-correction-wrong-beta", f"{t / 'dict_bias-correction-wrong-beta.py'}:update_parameters_with_adam",
         "adam", {"lr": 0.01}, {}),
    ]  # fmt: skip


@contextmanager
def timed_explain() -> Iterator[list[float]]:
    """Sum the time of every ``optcheck.diagnose.explain`` call made inside the block."""
    calls: list[float] = []
    original: Callable[..., Any] = diagnose.explain

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            calls.append(time.perf_counter() - t0)

    diagnose.explain = wrapper  # type: ignore[assignment]
    try:
        yield calls
    finally:
        diagnose.explain = original  # type: ignore[assignment]


@contextmanager
def without_diagnosis() -> Iterator[None]:
    """The audit as it runs when ``optcheck.diagnose`` cannot be imported."""
    original = engine._diagnose_module
    engine._diagnose_module = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        engine._diagnose_module = original  # type: ignore[assignment]


def run_one(
    target: str, rule: str, hyper: dict[str, Any], args: dict[str, Any], examples: int
) -> tuple[float, Any]:
    t0 = time.perf_counter()
    report = audit(target, rule, hyper=hyper, args=args, examples=examples, isolate=False)
    return time.perf_counter() - t0, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per target (default 5)")
    ap.add_argument("--examples", type=int, default=60, help="the audit's --examples (default 60, the CLI's)")
    ns = ap.parse_args()
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, target, rule, hyper, args in cases(Path(tmp)):
            run_one(target, rule, hyper, args, ns.examples)  # warm-up: imports, caches
            with_t, without_t, inside, ncalls = [], [], [], []
            ids: list[str] = []
            for _ in range(ns.rounds):
                with timed_explain() as calls:
                    dt, report = run_one(target, rule, hyper, args, ns.examples)
                with_t.append(dt)
                inside.append(sum(calls))
                ncalls.append(len(calls))
                ids = sorted(
                    {f.id for f in report.findings if f.severity == "error" and f.id in diagnose.CATALOG}
                )
                with without_diagnosis():
                    dt, _ = run_one(target, rule, hyper, args, ns.examples)
                without_t.append(dt)
            med = statistics.median
            rows.append((label, med(without_t), med(with_t), med(inside), max(inside), int(med(ncalls)), ids))
            print(f"{label}: audit {med(without_t):.2f} s without diagnosis, {med(with_t):.2f} s with; "
                  f"explain {med(inside):.3f} s (max {max(inside):.3f} s); named {ids or 'nothing'}", flush=True)  # fmt: skip
    load1 = os.getloadavg()[0]
    lines = [
        "# Diagnosis cost in a failing audit (benchmarks/bench_diagnose.py)",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, optcheck {optcheck.__version__}; {os.cpu_count()} cores, load average "
        f"{load0:.1f} at the start and {load1:.1f} at the end (a shared machine: figures vary from run to run).",
        "",
        f"Each dict-style target audited with `optcheck.testing.audit(..., examples={ns.examples}, isolate=False)`, "
        f"{ns.rounds} interleaved rounds, medians. *Explain* is the time inside `optcheck.diagnose.explain` "
        "(all calls of one audit summed): what diagnosis adds. The peer is the same audit with diagnosis "
        "switched off, measured in the same rounds. Goal (issue 7): diagnosis adds at most 2 s.",
        "",
        "| target | audit without diagnosis (s) | audit with diagnosis (s) | explain, median / max (s) | calls | named |",
        "|---|---|---|---|---|---|",
    ]
    for label, wo, w, ins, mx, nc, ids in rows:
        named = ", ".join(f"`{i}`" for i in ids) or "nothing (`differs-from-reference`)"
        lines.append(f"| {label} | {wo:.2f} | {w:.2f} | {ins:.3f} / {mx:.3f} | {nc} | {named} |")
    worst = max(r[4] for r in rows)
    lines += [
        "",
        f"Largest time inside `explain` in one audit: {worst:.3f} s "
        f"({'within' if worst <= 2.0 else 'over'} the 2 s goal; `explain`'s budget is a count of replayed "
        f"candidates, {engine.DIAGNOSE_BUDGET} in the audit, so its time depends on the machine's load, its "
        "result does not).",
        "The end-to-end difference between the two audit columns is noisier than the direct measure (the "
        "search's shrinking and the target's own runs vary with the load).",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
