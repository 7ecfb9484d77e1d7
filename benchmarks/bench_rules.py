"""One step of every reference rule on large float32 parameters, timed the way a user times it.

Usage (from the repository root)::

    python benchmarks/bench_rules.py               # 1M and 10M parameters; writes benchmarks/results/rules.md
    python benchmarks/bench_rules.py --quick       # 1M parameters only, fewer repeats
    python benchmarks/bench_rules.py --rules adam,sgd --sizes 1e7 --no-write

What is timed is the public call, as a user makes it, on one float32 numpy array (CPU), the
state carried from step to step:

* **pure**: ``params, state = rule.step(params, grads, state)`` (new arrays every step);
* **in place**: ``rule.step_(params, grads, state)`` (writes into ``params`` and ``state``);
* **torch foreach** / **torch single**: ``opt.step()`` of ``torch.optim`` with ``foreach=True``
  and ``foreach=False`` on a tensor of the same size, ``torch.set_num_threads(2)`` (and, for
  context on a loaded machine, the foreach step on one thread);
* for Lion, which torch does not have: a hand-written in-place numpy step (**numpy floor**);
* **bandwidth floor**: the bytes the equations must move (each parameter-sized input read
  once, each output written once: params, grads and the state arrays) divided by the copy
  bandwidth measured in the same run (``np.copyto`` at the same size).

The hyperparameters are the defaults, except SGD with momentum 0.9 (and each rule's torch
counterpart gets the same ones). Each repeat runs every contender once, in turn
(interleaved, so that a noisy neighbour slows them alike); the figure is the **median** of
the repeats (the minimum would pick the one lucky repeat and hide what allocation costs).
The load average is printed before and after, and written with the results.

A second table times the three rules of issue 17 on a dict tree (the course layout, three
arrays summing to the same size), where ``rule.step`` walks the tree.

Memory: the parameter-sized temporaries one step holds beyond its outputs, from
``tracemalloc`` (numpy reports its allocations to it), at 1M parameters.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import subprocess
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
THREADS = 2

#: optcheck hyperparameters per rule (defaults unless listed); torch gets the same ones.
HYPER: dict[str, dict[str, Any]] = {"sgd": {"lr": 1e-3, "momentum": 0.9}}
TORCH: dict[str, str] = {
    "sgd": "SGD",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "NAdam",
    "radam": "RAdam",
    "asgd": "ASGD",
    "rprop": "Rprop",
    "adafactor": "Adafactor",
}
GOAL_IN_PLACE, GOAL_PURE = 1.5, 2.5


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def torch_kwargs(rule: optcheck.rules.Rule) -> dict[str, Any]:
    """The rule's hyperparameters under torch's names (tuples joined again)."""
    hyper = dict(rule.hyper)
    out: dict[str, Any] = {}
    for alias, fields in type(rule).tuple_aliases.items():
        out[alias] = tuple(hyper.pop(f) for f in fields)
    for spec in type(rule).hyper_specs():
        if spec.convention or spec.name not in hyper:
            continue
        out[spec.name] = hyper[spec.name]
    if rule.name == "adamw":
        out.pop("decoupled_weight_decay", None)
    return out


def lion_numpy(p: np.ndarray, g: np.ndarray, rule: Any) -> Callable[[], None]:
    """Lion written by hand with numpy in place (no checks, one scratch array): the floor for numpy."""
    m, tmp = np.zeros_like(p), np.empty_like(p)
    b1, b2, lr = rule.beta1, rule.beta2, rule.lr

    def step() -> None:
        np.subtract(g, m, out=tmp)  # c = m + (1 - b1)(g - m)
        np.multiply(tmp, 1 - b1, out=tmp)
        np.add(tmp, m, out=tmp)
        np.sign(tmp, out=tmp)
        np.multiply(tmp, -lr, out=tmp)
        np.add(p, tmp, out=p)
        np.subtract(g, m, out=tmp)  # m = m + (1 - b2)(g - m)
        np.multiply(tmp, 1 - b2, out=tmp)
        np.add(m, tmp, out=m)

    return step


def contenders(name: str, params: Any, grads: Any) -> tuple[dict[str, Callable[[], None]], int]:
    """The calls to time for one rule, and the number of parameter-sized arrays its equations move."""
    rule = optcheck.rules.get(name, **HYPER.get(name, {}))
    leaves = [params] if isinstance(params, np.ndarray) else list(params.values())
    gleaves = [grads] if isinstance(grads, np.ndarray) else list(grads.values())
    pure = {"p": _copy(params)}
    pure["s"] = rule.init(pure["p"])
    inpl = {"p": _copy(params)}
    inpl["s"] = rule.init(inpl["p"])

    def step_pure() -> None:
        pure["p"], pure["s"] = rule.step(pure["p"], grads, pure["s"])

    def step_in_place() -> None:
        rule.step_(inpl["p"], grads, inpl["s"])

    fns: dict[str, Callable[[], None]] = {"pure": step_pure, "in place": step_in_place}
    if name in TORCH:
        cls = getattr(torch.optim, TORCH[name])
        for foreach in (True, False):
            tp = [torch.from_numpy(x.copy()) for x in leaves]
            for t, g in zip(tp, gleaves, strict=True):
                t.grad = torch.from_numpy(g.copy())
            opt = cls(tp, foreach=foreach, **torch_kwargs(rule))
            fns["torch foreach" if foreach else "torch single"] = opt.step
            if foreach:
                fns["torch foreach, 1 thread"] = _one_thread(opt.step)
    elif isinstance(params, np.ndarray):
        fns["numpy floor"] = lion_numpy(params.copy(), grads, rule)
    state = rule.init(params)
    n_state = sum(
        1
        for k in rule.array_keys()
        for _, x in optcheck._tree.flatten(state[k])
        if x is not None and x.size == leaves[0].size
    ) // len(leaves)
    moved = (2 + n_state) + (1 + n_state)  # read p, g, the state; write p, the state
    return fns, moved


def _one_thread(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run with ``torch.set_num_threads(1)`` (context for a loaded machine; not a goal)."""

    def run() -> None:
        torch.set_num_threads(1)
        try:
            fn()
        finally:
            torch.set_num_threads(THREADS)

    return run


def _copy(tree: Any) -> Any:
    if isinstance(tree, np.ndarray):
        return tree.copy()
    return {k: v.copy() for k, v in tree.items()}


def time_interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, the calls interleaved (rotating the order)."""
    for fn in fns.values():  # warm up: first touch of the state, lazy initialisation
        fn()
        fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            fns[key]()
            runs[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def copy_seconds(n: int, repeats: int) -> float:
    """Median time of ``np.copyto`` between two existing float32 arrays of ``n`` entries."""
    a = np.ones(n, np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def page_faults(fn: Callable[[], None], repeats: int = 3) -> int:
    """Median minor page faults per call (memory touched for the first time)."""
    out = []
    for _ in range(repeats):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return int(statistics.median(out))


def temporaries(name: str, n: int) -> tuple[float, float]:
    """Parameter-sized temporaries held at the peak of one step beyond its outputs: (pure, in place)."""
    rule = optcheck.rules.get(name, **HYPER.get(name, {}))
    rng = np.random.default_rng(1)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    s = rule.init(p)
    for _ in range(2):  # past the first step (sgd's first momentum buffer is a copy)
        p, s = rule.step(p, g, s)
    out = []
    for in_place in (False, True):
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        if in_place:
            rule.step_(p, g, s)
            outputs = 0
        else:
            p2, s2 = rule.step(p, g, s)
            outputs = p2.nbytes + sum(
                x.nbytes for k in rule.array_keys() if isinstance(x := s2[k], np.ndarray)
            )
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append((peak - base - outputs) / p.nbytes)
    return out[0], out[1]


def dict_tree(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The course layout, three arrays summing to ``n`` entries."""
    shapes = {"W1": (n // 2 // 1000, 1000), "b1": (n // 4,), "W2": (n // 4 // 500, 500)}
    return {k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M parameters only, fewer repeats")
    parser.add_argument("--rules", default="", help="comma-separated rule names (default: all 13)")
    parser.add_argument("--sizes", default="", help="comma-separated sizes, e.g. 1e6,1e7")
    parser.add_argument(
        "--repeats", type=int, default=0, help="repeats per size (default 15 at 1M, 7 at 10M)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    names = args.rules.split(",") if args.rules else optcheck.rules.names()
    sizes = (
        [int(float(x)) for x in args.sizes.split(",")]
        if args.sizes
        else ([1_000_000] if args.quick else [1_000_000, 10_000_000])
    )
    load_before = uptime()
    print(load_before, flush=True)
    rows: list[dict[str, Any]] = []
    tree_rows: list[dict[str, Any]] = []
    for n in sizes:
        repeats = args.repeats or (5 if args.quick else (15 if n <= 1_000_000 else 7))
        rng = np.random.default_rng(0)
        p = rng.standard_normal(n, dtype=np.float32)
        g = rng.standard_normal(n, dtype=np.float32)
        bw_s = copy_seconds(n, 9)
        bandwidth = 2 * p.nbytes / bw_s
        for name in names:
            fns, moved = contenders(name, p, g)
            t = time_interleaved(fns, repeats)
            faults = page_faults(fns["pure"])
            floor = moved * p.nbytes / bandwidth
            temps = temporaries(name, 1_000_000) if n == sizes[0] else (float("nan"), float("nan"))
            peer = t.get("torch foreach", t.get("numpy floor"))
            row = {
                "name": name,
                "n": n,
                "t": t,
                "floor": floor,
                "moved": moved,
                "faults": faults,
                "temps": temps,
            }
            rows.append(row)
            print(
                f"{name:9s} {n / 1e6:4.0f}M  "
                + "  ".join(f"{k} {v * 1e3:8.2f} ms" for k, v in t.items())
                + f"  floor {floor * 1e3:6.2f} ms  in place/peer {t['in place'] / peer:5.2f}x  "
                f"pure/peer {t['pure'] / peer:5.2f}x  in place/floor {t['in place'] / floor:5.2f}x  "
                f"faults/pure step {faults}  temporaries pure {temps[0]:.2f} in place {temps[1]:.2f}",
                flush=True,
            )
        if n == max(sizes) and not args.quick:
            for name in [x for x in ("adam", "sgd", "rmsprop") if x in names]:
                tp = dict_tree(n, np.random.default_rng(1))
                tg = dict_tree(n, np.random.default_rng(2))
                fns, _ = contenders(name, tp, tg)
                t = time_interleaved(fns, repeats)
                tree_rows.append({"name": name, "n": sum(x.size for x in tp.values()), "t": t})
                print(f"{name:9s} dict tree  " + "  ".join(f"{k} {v * 1e3:8.2f} ms" for k, v in t.items()))
    load_after = uptime()
    print(load_after, flush=True)
    if not args.no_write:
        write(rows, tree_rows, load_before, load_after, args)


def _ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


def write(
    rows: list[dict[str, Any]],
    tree_rows: list[dict[str, Any]],
    load_before: str,
    load_after: str,
    args: argparse.Namespace,
) -> None:
    hp = np._core.multiarray._get_madvise_hugepage() if hasattr(np, "_core") else "unknown"
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        thp = "unknown"
    cmd = "python benchmarks/bench_rules.py" + (" --quick" if args.quick else "")
    lines = [
        "# Reference rules vs torch.optim (one step, float32, CPU)",
        "",
        f"`{cmd}`; torch {torch.__version__} with {THREADS} threads (`torch.set_num_threads({THREADS})`), "
        f"numpy {np.__version__}, {platform.machine()}, {len(os.sched_getaffinity(0))} cores; numpy advises "
        f"huge pages: {hp}; transparent huge pages: `{thp}`.",
        "",
        f"Load before the run: `{load_before}`  ",
        f"Load after the run: `{load_after}`",
        "",
        "Median of interleaved repeats, milliseconds per step, of the public call: `rule.step` (pure) and "
        "`rule.step_` (in place) against `torch.optim` with `foreach=True` and `foreach=False` (Lion: a "
        "hand-written in-place numpy step). Floor = bytes the equations move (arrays read + written, "
        "column `arrays`) ÷ the copy bandwidth measured in the same run. Goals (issue 17): in place ≤ "
        f"{GOAL_IN_PLACE}× torch foreach, pure ≤ {GOAL_PURE}×.",
        "",
        "| rule | params | pure | in place | torch foreach | torch single | torch foreach, 1 thread | floor "
        "| arrays | in place / foreach | pure / foreach | in place / floor | pure / floor "
        "| goals (in place, pure) | in place / foreach, 1 thread | page faults per pure step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    met_all = True
    for r in rows:
        t = r["t"]
        peer_name = "torch foreach" if "torch foreach" in t else "numpy floor"
        peer = t[peer_name]
        a, b = t["in place"] / peer, t["pure"] / peer
        ok_a, ok_b = a <= GOAL_IN_PLACE, b <= GOAL_PURE
        met_all &= ok_a and ok_b
        goals = f"{'met' if ok_a else 'NOT met'}, {'met' if ok_b else 'NOT met'}"
        fe = _ms(t["torch foreach"]) if "torch foreach" in t else f"— (numpy floor {_ms(peer)})"
        single = _ms(t["torch single"]) if "torch single" in t else "—"
        one = t.get("torch foreach, 1 thread")
        one_ms = "—" if one is None else _ms(one)
        one_ratio = "—" if one is None else f"{t['in place'] / one:.2f}×"
        lines.append(
            f"| {r['name']} | {r['n'] / 1e6:.0f}M | {_ms(t['pure'])} | {_ms(t['in place'])} | {fe} | {single} "
            f"| {one_ms} | {_ms(r['floor'])} | {r['moved']} | {a:.2f}× | {b:.2f}× "
            f"| {t['in place'] / r['floor']:.2f}× | {t['pure'] / r['floor']:.2f}× | {goals} | {one_ratio} "
            f"| {r['faults']} |"
        )
    lines += ["", f"All goals met in this run: {'yes' if met_all else 'no'}.", ""]
    if tree_rows:
        lines += [
            "## A dict tree (W1, b1, W2: the same number of parameters)",
            "",
            "| rule | params | pure | in place | torch foreach | torch single | pure / foreach | in place / foreach |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in tree_rows:
            t = r["t"]
            lines.append(
                f"| {r['name']} | {r['n'] / 1e6:.0f}M | {_ms(t['pure'])} | {_ms(t['in place'])} "
                f"| {_ms(t['torch foreach'])} | {_ms(t['torch single'])} "
                f"| {t['pure'] / t['torch foreach']:.2f}× | {t['in place'] / t['torch foreach']:.2f}× |"
            )
        lines.append("")
    temps = [r for r in rows if r["temps"][0] == r["temps"][0]]
    if temps:
        lines += [
            "## Memory",
            "",
            "Parameter-sized temporaries held at the peak of one step beyond its outputs (`tracemalloc`, "
            "1M float32 parameters; goal ≤ 2 pure, ≤ 1 in place). Large numpy arrays are stepped in blocks "
            f"of {optcheck.rules._base.CHUNK_BYTES // 1024} KiB per array, so the temporaries are a few blocks.",
            "",
            "| rule | pure | in place |",
            "|---|---|---|",
            *(f"| {r['name']} | {r['temps'][0]:.3f} | {r['temps'][1]:.3f} |" for r in temps),
            "",
        ]
    lines += [NOTES]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


NOTES = """\
## What the figures mean

* **Pure vs in place.** `rule.step` must return new arrays: at 10M float32 each output is a
  40 MB allocation, above glibc's largest mmap threshold (32 MB), so every step maps fresh
  memory that the kernel faults in and zeroes (column: page faults per pure step). On this
  virtual machine that kernel time, not the arithmetic, is most of a pure step at 10M, and
  it grows with the machine's load. Faulting in 2 MB huge pages (numpy's default advice for
  arrays of 4 MB and more) cost about 2.4 times the CPU time of 4 KB pages here (211 ms vs
  89 ms of CPU per Adam step, measured alternately in one process), so the pure step
  allocates its outputs without that advice (hence ~10k faults per 40 MB output). At 1M the
  freed arrays are reused and no page faults occur. `rule.step_` allocates nothing
  parameter-sized.
* **Load.** torch runs two threads on this two-core machine; when other jobs load it, an
  operation waits for both threads, and torch slows down far more than single-threaded
  numpy: the ratios of a loaded run flatter optcheck. The column "torch foreach, 1 thread"
  (not a goal) shows the comparison that load distorts least.
* **Blocks.** Both forms step large contiguous numpy arrays in blocks of a few hundred KB,
  so that the intermediate arrays the equations make stay in the CPU cache; every element
  goes through the same operations either way (the in-place form is bit-identical to the
  pure one, which a test checks for every rule).
* **numpy vs torch.** numpy runs one pass per operation on one thread; torch fuses some
  operations (`lerp_`, `addcmul_`, `addcdiv_`) and here uses two threads.
* **The old figures.** Until issue 17 this benchmark reported the *minimum* of the repeats
  and ran torch with the machine's default threads on a loaded machine: the minimum picked
  the rare pure step whose fresh memory was cheap to fault in, and torch's two threads
  contending with other jobs made torch several times slower than on one thread (78 ms vs
  38 ms for Adam at 10M), so optcheck looked faster than torch. A user timing
  `P, st = rule.step(P, g, st)` sees the typical step, which is what the median shows.
"""


if __name__ == "__main__":
    main()
