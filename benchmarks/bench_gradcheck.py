"""Gradient checker benchmark: optcheck.check_gradient, check_layer and check_torch against scipy,
numdifftools and torch.

Usage (from the repository root)::

    python benchmarks/bench_gradcheck.py            # prints the tables, writes benchmarks/results/gradcheck.md

For each test function (float64, exact gradients known), every tool computes a numerical
gradient in the same run:

* optcheck ``check_gradient(..., mode="full")`` with ``method`` auto / central / richardson /
  complex-step (the numerical gradient is ``report.numeric``);
* ``scipy.optimize.approx_fprime`` (forward differences, its default step ``sqrt(eps)``) and
  ``scipy.optimize.check_grad`` (which returns one number, the 2-norm of the difference);
* ``numdifftools.Gradient`` with its defaults (central differences with Richardson extrapolation
  over a sequence of steps);
* ``torch.autograd.gradcheck`` in slow mode (its numerical Jacobian is
  ``torch.autograd.gradcheck._get_numerical_jacobian`` with gradcheck's default ``eps=1e-6``)
  and in fast mode (one random projection, no numerical gradient to compare).

Accuracy is the error of the numerical gradient against the exact one: ``normwise`` is
``max|num - exact| / max|exact|`` (relative to the largest entry) and ``entrywise`` is
``max |num_i - exact_i| / |exact_i|``, which entries near zero dominate. Cost is the number of
calls of ``f`` and the wall time (median of 3 runs; the machines are shared, so compare ratios
within one run). Verdicts: each checker is run on the exact gradient and on the same gradient
with one entry multiplied by ``1 + 1e-3``; torch is given these through a custom
``autograd.Function`` whose backward returns them. Then the localisation case: one
corrupted entry (relative error 1e-3) among 10^6 coordinates of Rosenbrock. Finally, where a
goal is missed, what any finite-difference formula can reach on that function: the error of
stencils with 2 to 10 evaluations per entry at the best step, chosen *knowing the exact
gradient* (a bound no checker can beat with that many evaluations, since it does not know
the answer). Then large layers (a convolution of 4,816 entries and an LSTM step) and float32
(``_gradcheck_layers.py``): forward calls, time and verdicts of ``check_torch`` /
``check_layer`` against ``torch.autograd.gradcheck``, scipy ``check_grad`` and numdifftools.
The load average is printed beside the figures (the machines are shared).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numdifftools as nd  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import torch  # noqa: E402

import optcheck  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import _gradcheck_layers as layers  # noqa: E402

torch.set_num_threads(1)  # tiny tensors: one intra-op thread is faster, and steadier on a shared machine

torch_gradcheck = torch.autograd.gradcheck
# the module (torch.autograd.gradcheck the attribute is the function of the same name)
torch_gradcheck_module = importlib.import_module("torch.autograd.gradcheck")
RESULTS = ROOT / "benchmarks" / "results" / "gradcheck.md"
Array = np.ndarray[Any, Any]
BUG = 1e-3

# ------------------------------------------------------------------------------------------------
# test functions: flat float64 vector in, scalar out; numpy and torch versions and exact gradients
# ------------------------------------------------------------------------------------------------

rng = np.random.default_rng(2024)


@dataclasses.dataclass
class Problem:
    name: str
    x: Array
    f: Callable[[Array], Any]  # numpy (complex-safe unless stated)
    grad: Callable[[Array], Array]
    tf: Callable[[Any], Any]  # torch
    bug_index: int


def _softmax_ce() -> Problem:
    N, D, C = 20, 5, 4
    X = rng.normal(size=(N, D))
    Y = np.eye(C)[rng.integers(0, C, size=N)]
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def f(w: Array) -> Any:
        z = X @ w.reshape(D, C)
        z = z - z.real.max(axis=1, keepdims=True)
        return -np.sum(Y * (z - np.log(np.sum(np.exp(z), axis=1, keepdims=True)))) / N

    def grad(w: Array) -> Array:
        z = X @ w.reshape(D, C)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return (X.T @ (p - Y) / N).ravel()

    def tf(w: Any) -> Any:
        return -(Yt.to(w.dtype) * torch.log_softmax(Xt.to(w.dtype) @ w.reshape(D, C), dim=1)).sum() / N

    return Problem("softmax cross-entropy (20)", rng.normal(size=D * C) * 0.5, f, grad, tf, 7)


def _two_layer() -> Problem:
    d, h, c, m = 4, 6, 3, 10
    X = rng.normal(size=(d, m))
    Y = np.eye(c)[:, rng.integers(0, c, size=m)]
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    sizes = [(h, d), (h, 1), (c, h), (c, 1)]
    cuts = np.cumsum([0] + [a * b for a, b in sizes])

    def unpack(v: Any) -> list[Any]:
        return [v[cuts[k] : cuts[k + 1]].reshape(sizes[k]) for k in range(4)]

    def f(v: Array) -> Any:
        W1, b1, W2, b2 = unpack(v)
        z = W2 @ np.tanh(W1 @ X + b1) + b2
        z = z - z.real.max(axis=0, keepdims=True)
        return -np.sum(Y * (z - np.log(np.sum(np.exp(z), axis=0, keepdims=True)))) / m + 0.35 / m * (
            np.sum(W1**2) + np.sum(W2**2)
        )

    def grad(v: Array) -> Array:
        W1, b1, W2, b2 = unpack(v)
        A1 = np.tanh(W1 @ X + b1)
        z = W2 @ A1 + b2
        p = np.exp(z - z.max(axis=0, keepdims=True))
        p /= p.sum(axis=0, keepdims=True)
        dZ2 = p - Y
        dZ1 = (W2.T @ dZ2) * (1 - A1**2)
        parts = [
            dZ1 @ X.T / m + 0.7 / m * W1,
            dZ1.sum(axis=1, keepdims=True) / m,
            dZ2 @ A1.T / m + 0.7 / m * W2,
            dZ2.sum(axis=1, keepdims=True) / m,
        ]
        return np.concatenate([q.ravel() for q in parts])

    def tf(v: Any) -> Any:
        W1, b1, W2, b2 = unpack(v)
        z = W2 @ torch.tanh(W1 @ Xt.to(v.dtype) + b1) + b2
        return -(Yt.to(v.dtype) * torch.log_softmax(z, dim=0)).sum() / m + 0.35 / m * (
            (W1**2).sum() + (W2**2).sum()
        )

    return Problem("two-layer tanh network (51)", rng.normal(size=int(cuts[-1])) * 0.5, f, grad, tf, 30)


def _logsumexp() -> Problem:
    def f(x: Array) -> Any:
        mx = x.real.max()
        return mx + np.log(np.sum(np.exp(x - mx)))

    def grad(x: Array) -> Array:
        e = np.exp(x - x.max())
        return e / e.sum()

    def tf(x: Any) -> Any:
        return torch.logsumexp(x, dim=0)

    x = rng.uniform(100.0, 300.0, size=40)
    x[np.argsort(x)[-3:]] = x.max() - np.array([0.0, 0.5, 1.0])  # a few entries share the mass
    return Problem("logsumexp, x in [100, 300] (40)", x, f, grad, tf, int(np.argmax(x)))


def _rosenbrock(n: int) -> Problem:
    def f(x: Array) -> Any:
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def grad(x: Array) -> Array:
        g = np.zeros_like(x)
        g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
        g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
        return g

    def tf(x: Any) -> Any:
        return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()

    return Problem(f"Rosenbrock ({n})", rng.uniform(-1.0, 2.0, size=n), f, grad, tf, n // 3)


def _norm_loss() -> Problem:
    A = rng.normal(size=(12, 30))
    b = rng.normal(size=12)
    At, bt = torch.from_numpy(A), torch.from_numpy(b)

    def f(x: Array) -> Any:  # np.linalg.norm takes abs(): not complex-safe
        return np.linalg.norm(A @ x - b) + 0.5 * np.sum(x**2)

    def grad(x: Array) -> Array:
        r = A @ x - b
        return A.T @ r / np.linalg.norm(r) + x

    def tf(x: Any) -> Any:
        return torch.linalg.norm(At.to(x.dtype) @ x - bt.to(x.dtype)) + 0.5 * (x**2).sum()

    return Problem("norm(Ax - b) + sum(x²)/2, not complex-safe (30)", rng.normal(size=30), f, grad, tf, 11)


PROBLEMS = [_softmax_ce(), _two_layer(), _logsumexp(), _rosenbrock(100), _norm_loss()]

# ------------------------------------------------------------------------------------------------
# the tools
# ------------------------------------------------------------------------------------------------


class Counted:
    """``f`` with a call counter."""

    def __init__(self, f: Callable[[Any], Any]) -> None:
        self.f = f
        self.calls = 0

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        return self.f(x)


@dataclasses.dataclass
class Row:
    tool: str
    numeric: Array | None
    evaluations: int
    seconds: float
    verdict_ok: str = "-"
    verdict_bug: str = "-"
    note: str = ""


def timed(run: Callable[[], tuple[Array | None, int]], repeats: int = 3) -> tuple[Array | None, int, float]:
    times = []
    out: tuple[Array | None, int] = (None, 0)
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    return out[0], out[1], statistics.median(times)


def optcheck_row(p: Problem, method: str) -> Row:
    exact = p.grad(p.x)
    bad = exact.copy()
    bad[p.bug_index] *= 1 + BUG

    def run() -> tuple[Array | None, int]:
        c = Counted(p.f)
        r = optcheck.check_gradient(c, p.x, exact, method=method, mode="full")
        run.report = r  # type: ignore[attr-defined]
        return np.asarray(r.numeric), c.calls

    try:
        numeric, evals, secs = timed(run)
    except ValueError as exc:
        return Row(f"optcheck {method}", None, 0, math.nan, note="refused: " + str(exc).split(",")[0][:50])
    report = run.report  # type: ignore[attr-defined]
    bug_report = optcheck.check_gradient(p.f, p.x, bad, method=method, mode="full")
    named = [e.index for e in bug_report.failures] == [(p.bug_index,)]
    note = f"chose {report.method}" if method == "auto" else ""
    return Row(
        f"optcheck {method}",
        numeric,
        evals,
        secs,
        "pass" if report.passed else "FAIL",
        ("fail, names it" if named else "fail") if not bug_report.passed else "pass (missed)",
        note,
    )


def scipy_rows(p: Problem) -> list[Row]:
    exact = p.grad(p.x)

    def run() -> tuple[Array | None, int]:
        c = Counted(p.f)
        return scipy.optimize.approx_fprime(p.x, c), c.calls

    numeric, evals, secs = timed(run)
    rows = [Row("scipy approx_fprime", numeric, evals, secs)]

    def run_cg() -> tuple[Array | None, int]:
        c = Counted(p.f)
        run_cg.value = scipy.optimize.check_grad(c, lambda v: exact, p.x)  # type: ignore[attr-defined]
        return None, c.calls

    _, evals, secs = timed(run_cg)
    bad = exact.copy()
    bad[p.bug_index] *= 1 + BUG
    bug_value = scipy.optimize.check_grad(p.f, lambda v: bad, p.x)
    rows.append(
        Row(
            "scipy check_grad",
            None,
            evals,
            secs,
            f"{run_cg.value:.1e}",  # type: ignore[attr-defined]
            f"{bug_value:.1e}",
            "returns norm(num - grad); no verdict",
        )
    )
    return rows


def numdifftools_row(p: Problem) -> Row:
    def run() -> tuple[Array | None, int]:
        c = Counted(p.f)
        return np.atleast_1d(nd.Gradient(c)(p.x)), c.calls

    numeric, evals, secs = timed(run)
    return Row("numdifftools Gradient", numeric, evals, secs, note="a gradient, no verdict")


def _function_with_grad(p: Problem, grad: Array, counter: Counted) -> Callable[[Any], Any]:
    g = torch.from_numpy(grad)

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            counter.calls += 1
            return p.tf(x)

        @staticmethod
        def backward(ctx: Any, out: Any) -> Any:
            return out * g

    return F.apply  # type: ignore[no-any-return]


def torch_rows(p: Problem) -> list[Row]:
    exact = p.grad(p.x)
    bad = exact.copy()
    bad[p.bug_index] *= 1 + BUG
    rows = []
    for fast in (False, True):
        name = f"torch gradcheck ({'fast' if fast else 'slow'})"

        def verdict(grad: Array, counter: Counted, fast: bool = fast) -> bool:
            x = torch.tensor(p.x, dtype=torch.float64, requires_grad=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bool(
                    torch_gradcheck(
                        _function_with_grad(p, grad, counter), (x,), fast_mode=fast, raise_exception=False
                    )
                )

        def run() -> tuple[Array | None, int]:
            c = Counted(lambda v: None)
            run.ok = verdict(exact, c)  # type: ignore[attr-defined]
            return None, c.calls

        _, evals, secs = timed(run)
        numeric = None
        if not fast:  # the numerical gradient gradcheck's slow mode compares with
            x = torch.tensor(p.x, dtype=torch.float64, requires_grad=True)
            jac = torch_gradcheck_module._get_numerical_jacobian(p.tf, (x,), eps=1e-6)
            numeric = jac[0][0].detach().reshape(-1).numpy()
        caught = not verdict(bad, Counted(lambda v: None))
        rows.append(
            Row(
                name,
                numeric,
                evals,
                secs,
                "pass" if run.ok else "FAIL",  # type: ignore[attr-defined]
                "fail" if caught else "pass (missed)",
                "eps=1e-6, atol=1e-5, rtol=1e-3" if not fast else "one random projection",
            )
        )
    return rows


def accuracy(numeric: Array | None, exact: Array) -> tuple[float, float]:
    if numeric is None:
        return math.nan, math.nan
    err = np.abs(np.asarray(numeric, dtype=np.float64).ravel() - exact)
    normwise = float(np.max(err) / np.max(np.abs(exact)))
    nz = exact != 0
    entrywise = float(np.max(err[nz] / np.abs(exact[nz])))
    return normwise, entrywise


# ------------------------------------------------------------------------------------------------
# what finite differences can reach at all: stencils at the best step, chosen knowing the answer
# ------------------------------------------------------------------------------------------------

# offsets (in units of h) of the evaluations each stencil spends per entry; 0 is f(x), shared
STENCILS: list[tuple[str, list[int]]] = [
    ("central ±h", [-1, 1]),
    ("f(x), ±h, +2h", [0, -1, 1, 2]),
    ("±h, ±2h", [-2, -1, 1, 2]),
    ("±h, ±2h, ±3h", [-3, -2, -1, 1, 2, 3]),
    ("±h ... ±4h", [-4, -3, -2, -1, 1, 2, 3, 4]),
    ("±h ... ±5h", [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]),
]
ORACLE_STEPS = np.logspace(-7.0, -0.5, 53)  # relative to max(1, |x_i|)


def _stencil_weights(offsets: Array) -> Array:
    """Weights ``w`` with ``sum w_j f(x + o_j) = f'(x)`` exactly for polynomials of the stencil's degree."""
    k = offsets.size
    powers = np.vander(offsets, k, increasing=True).T  # row j: offsets**j
    rhs = np.zeros(k)
    rhs[1] = 1.0
    return np.linalg.solve(powers, rhs)


def stencil_floor(p: Problem, offsets: list[int]) -> tuple[float, float, float]:
    """The normwise error of one stencil at the best relative step for all entries together and per
    entry (both chosen knowing the exact gradient), and that common step."""
    exact = p.grad(p.x)
    f0 = p.f(p.x)
    scale = np.maximum(1.0, np.abs(p.x))
    errors = np.empty((ORACLE_STEPS.size, p.x.size))
    for a, t in enumerate(ORACLE_STEPS):
        for i in range(p.x.size):
            moved, values = [], []
            for o in offsets:
                v = p.x.copy()
                v[i] = p.x[i] + o * t * scale[i]
                moved.append(v[i] - p.x[i])  # the displacement after rounding
                values.append(f0 if o == 0 else float(p.f(v)))
            w = _stencil_weights(np.array(moved))
            errors[a, i] = abs(float(np.dot(w, values)) - exact[i])
    top = float(np.max(np.abs(exact)))
    common = errors.max(axis=1) / top
    best = int(np.argmin(common))
    return float(common[best]), float(errors.min(axis=0).max() / top), float(ORACLE_STEPS[best])


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


NOTES = [
    '* The default (`method="auto"`) takes the complex step whenever a probe shows that f carries',
    "  complex input correctly: one evaluation per entry and errors at round-off. For an f that does",
    "  not (the last function takes `np.linalg.norm`, i.e. `abs`), it falls back to central differences:",
    "  2 evaluations per entry and errors around 1e-10, enough for the verdict but not numdifftools'",
    '  2e-13; `method="richardson"` matches that with about 8 evaluations per entry instead of 30',
    "  (3.5x fewer in all). 10x fewer would leave 3 evaluations per entry, start-up included; the",
    "  stencil table shows that the 3-evaluation formula (order 3, the most 3 evaluations and the shared",
    "  f(x) allow) gets no lower than 7e-13 on this function even at the step chosen per entry knowing",
    "  the exact gradient. Only the complex step is that accurate that cheaply, and it needs an f that",
    "  accepts complex input.",
    "* Central differences start from h = eps^(1/3)·max(1, |x_i|). For logsumexp at inputs in the",
    "  hundreds that step (about 2e-3) is far larger than the scale on which f varies (about 1); the",
    "  truncation measured from h and 2h shows it, and a third step where truncation and round-off",
    "  balance brings the error from 1e-7 (the prescribed step alone) to about 3e-10, for 2 more",
    "  evaluations on the few entries that need it. Richardson moves its steps down the same way and",
    "  remembers the step per array.",
    "* Richardson's 1e-12 is missed on logsumexp with inputs in [100, 300] (2.4e-12 with about 8",
    "  evaluations per entry; numdifftools 2.0e-12 with 30): f is about 300, so its float64 round-off",
    "  (measured noise 3e-14) is large next to gradient entries of at most 0.5, and the steps cannot",
    "  grow beyond a few hundredths before truncation takes over (the softmax inside varies on the",
    "  scale 1). The stencil table shows the same floor, 2e-12 to 4e-12, for formulas with 8 to 10",
    "  evaluations per entry at their best common step; only a step chosen per entry knowing the",
    "  answer goes lower.",
    "* torch.autograd.gradcheck uses a fixed absolute step (1e-6) and tolerances atol=1e-5,",
    "  rtol=1e-3: it passes correct float64 gradients but misses a relative error of 1e-3 in one entry,",
    "  and its fast mode tests a single random projection. scipy's check_grad returns one number",
    "  (the 2-norm of the difference) that the user has to judge; numdifftools returns a gradient.",
    "* Wall times are medians of three runs on a shared machine; compare them within one run.",
]


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes), as ``uptime`` prints them."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def fmt(v: float, spec: str = ".1e") -> str:
    return "-" if v != v else format(v, spec)


LAYER_NOTES = [
    "* Calls are calls of the layer's forward (optcheck's set-up included: two determinism calls, the",
    "  noise probe and the method probe). Above 2,000 entries optcheck checks random directions over each",
    '  input and localises failures by group testing; with `mode="full"` it checks every entry (one call',
    "  per entry with the complex step, two with central differences) and costs as much as gradcheck's",
    "  slow mode. gradcheck's slow mode also calls the backward once per output entry to build the",
    "  analytical Jacobian (not counted above; it is in the time).",
    "* scipy's check_grad and numdifftools are given the scalar sum(upstream · layer(inputs)) and the",
    "  backward's vector-Jacobian product; they return a norm and a gradient, which the user has to judge.",
    "* float32: torch.autograd.gradcheck fails every correct function and layer (its step 1e-6 and its",
    "  tolerances suit float64), and its fast mode, on failure, reruns the slow one (hence its calls).",
    "  scipy's check_grad steps by sqrt(float64 eps) = 1.5e-8, below float32's resolution: relative",
    "  errors above 1. numdifftools adapts its steps (errors 1e-5 to 7e-4) but gives no verdict.",
    "  optcheck measures the noise of f (about 1e-8 relative in float32), takes its steps and its",
    "  tolerance from it, and passes every correct case while still naming the planted bugs.",
]


def layer_section(emit: Callable[[str], None], goals: list[tuple[str, bool, str]]) -> None:
    """Large layers (float64), then float32: calls, time and verdicts against the peers."""
    emit()
    emit("## Large layers: a convolution and an LSTM step")
    emit()
    emit(
        "*calls* = calls of the layer's forward; *s* = wall time of one run; *correct* / *planted bug*: the "
        "verdict on autograd's gradients and on a custom backward with a planted bug (the convolution's "
        "weight gradient leaves out the top-left output position; the LSTM's forget gate uses next_c "
        "for prev_c), or the relative error the tool reports."
    )
    for layer in (layers._conv_layer(), layers._lstm_layer()):
        rows = layers.layer_rows(layer)
        if layer.name.startswith("convolution"):
            rows.insert(2, layers.check_layer_row())
        emit()
        emit(f"### {layer.name}, float64 (load {load()})")
        emit()
        emit("| tool | calls | s | correct | planted bug | note |")
        emit("|---|---:|---:|---|---|---|")
        for r in rows:
            emit(f"| {r.tool} | {r.calls} | {fmt(r.seconds, '.2f')} | {r.correct} | {r.bug} | {r.note} |")
        mine = rows[0]
        slow = next(r for r in rows if r.tool == "torch gradcheck (slow)")
        equal = (mine.correct == "pass") == (slow.correct == "pass") and mine.bug.startswith("fail") == (
            slow.bug == "fail"
        )
        goals.append(
            (
                f"{layer.name}: optcheck auto uses >= 10x fewer forward calls than torch gradcheck (slow) at equal verdicts",
                equal and slow.calls >= 10 * mine.calls,
                f"{slow.calls / max(mine.calls, 1):.0f}x fewer ({mine.calls} vs {slow.calls}), verdicts "
                f"{mine.correct}/{mine.bug} vs {slow.correct}/{slow.bug}",
            )
        )
    emit()
    emit("## float32")
    emit()
    emit(
        "The same layers in float32, then the held-in functions (their torch versions) in float32 with "
        "autograd's gradients, which are correct: every checker should pass them. scipy and numdifftools: "
        "the relative error |num - grad| / |grad| of their numerical gradient (no verdict)."
    )
    for layer in (layers._conv_layer(), layers._lstm_layer()):
        rows = layers.layer_rows(layer, torch.float32, with_nd=False)
        if layer.name.startswith("convolution"):
            rows.insert(1, layers.check_layer_row(np.float32))  # after the optcheck rows
        emit()
        emit(f"### {layer.name}, float32 (load {load()})")
        emit()
        emit("| tool | calls | s | correct | planted bug | note |")
        emit("|---|---:|---:|---|---|---|")
        for r in rows:
            emit(f"| {r.tool} | {r.calls} | {fmt(r.seconds, '.2f')} | {r.correct} | {r.bug} | {r.note} |")
        mine = rows[0]
        goals.append(
            (
                f"{layer.name}, float32: optcheck passes the correct layer and names the planted bug",
                mine.correct == "pass" and mine.bug.startswith("fail"),
                f"{mine.correct} / {mine.bug}",
            )
        )
    emit()
    emit(f"### Held-in functions, float32 (load {load()})")
    emit()
    emit(
        "| function | optcheck check_torch | torch gradcheck (slow) | torch gradcheck (fast) | scipy check_grad | numdifftools |"
    )
    emit("|---|---|---|---|---:|---:|")
    f32 = layers.float32_rows(PROBLEMS)
    for name, mine32, slow32, fast32, sc, ndr in f32:
        emit(f"| {name} | {mine32} | {slow32} | {fast32} | {sc} | {ndr} |")
    goals.append(
        (
            "float32 held-in functions: optcheck passes every correct one",
            all(r[1] == "pass" for r in f32),
            f"{sum(r[1] == 'pass' for r in f32)} of {len(f32)} pass; torch gradcheck slow passes "
            f"{sum(r[2] == 'pass' for r in f32)}, fast {sum(r[3] == 'pass' for r in f32)}",
        )
    )
    emit()
    for line in LAYER_NOTES:
        emit(line)


def main() -> int:
    out: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    emit("# Gradient checker: optcheck vs scipy, numdifftools, torch.autograd.gradcheck")
    emit()
    emit(
        f"Run on {platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}, numdifftools {nd.__version__}, torch {torch.__version__}. "
        "Written by `python benchmarks/bench_gradcheck.py`; all figures below come from one run "
        f"(torch with one intra-op thread). Load average at the start: {load()}."
    )
    emit()
    emit(
        "Accuracy of the numerical gradient against the exact one: *normwise* = max(abs(num - exact)) / "
        "max(abs(exact)), *entrywise* = max(abs(num_i - exact_i) / abs(exact_i)) (entries near zero dominate it). "
        "*evals* = calls of f; *ms* = median wall time of 3 runs. *correct* / *1e-3 bug*: the "
        "checker's verdict on the exact gradient, and on it with one entry multiplied by 1 + 1e-3."
    )
    goals: list[tuple[str, bool, str]] = []
    summary: dict[str, dict[str, tuple[float, int]]] = {}
    missed: dict[str, list[str]] = {}
    # warm-up: the first torch.autograd.gradcheck call of a process pays for lazy initialisation
    torch_rows(PROBLEMS[0])
    for p in PROBLEMS:
        exact = p.grad(p.x)
        rows = [optcheck_row(p, m) for m in ("auto", "central", "richardson", "complex-step")]
        rows += [*scipy_rows(p), numdifftools_row(p), *torch_rows(p)]
        emit()
        emit(f"## {p.name}")
        emit()
        emit("| tool | normwise | entrywise | evals | ms | correct | 1e-3 bug | note |")
        emit("|---|---:|---:|---:|---:|---|---|---|")
        summary[p.name] = {}
        for r in rows:
            nw, ew = accuracy(r.numeric, exact)
            summary[p.name][r.tool] = (nw, r.evaluations)
            emit(
                f"| {r.tool} | {fmt(nw)} | {fmt(ew)} | {r.evaluations} | {fmt(r.seconds * 1e3, '.1f')} | "
                f"{r.verdict_ok} | {r.verdict_bug} | {r.note} |"
            )
        s = summary[p.name]
        for method, bound in (("central", 1e-9), ("richardson", 1e-12), ("complex-step", 1e-14)):
            nw, _ = s[f"optcheck {method}"]
            if nw == nw:
                goals.append((f"{p.name}: {method} normwise error <= {bound:g}", nw <= bound, f"{nw:.1e}"))
        nd_err, nd_evals = s["numdifftools Gradient"]
        auto_err, auto_evals = s["optcheck auto"]
        ratio = nd_evals / auto_evals
        goals.append(
            (
                f"{p.name}: optcheck auto uses >= 10x fewer evaluations than numdifftools at equal or better accuracy",
                ratio >= 10 and auto_err <= nd_err,
                f"{ratio:.1f}x fewer ({auto_evals} vs {nd_evals}), error {auto_err:.1e} vs {nd_err:.1e}",
            )
        )
        if auto_err > nd_err:  # auto is not as accurate: the cheapest optcheck method that is
            able = [
                (evals, err, tool)
                for tool, (err, evals) in s.items()
                if tool.startswith("optcheck") and evals > 0 and err <= nd_err
            ]
            if able:
                evals, err, tool = min(able)
                goals.append(
                    (
                        f"{p.name}: the cheapest optcheck method at equal or better accuracy ({tool}) uses "
                        ">= 10x fewer evaluations than numdifftools",
                        nd_evals / evals >= 10,
                        f"{nd_evals / evals:.1f}x fewer ({evals} vs {nd_evals}), error {err:.1e} vs {nd_err:.1e}",
                    )
                )
        missed[p.name] = [text for text, met, _ in goals if not met and text.startswith(p.name)]

    # localisation among 10^6 coordinates
    emit()
    emit("## One corrupted entry among 10^6 (Rosenbrock, relative error 1e-3)")
    emit()
    big = _rosenbrock(1_000_000)
    g = big.grad(big.x)
    k = 654_321
    g[k] *= 1 + BUG
    emit("| tool | evals | s | verdict | names the entry |")
    emit("|---|---:|---:|---|---|")
    for method in ("auto", "central"):
        c = Counted(big.f)
        t = time.perf_counter()
        r = optcheck.check_gradient(c, big.x, g, method=method)
        secs = time.perf_counter() - t
        named = [e.index for e in r.failures] == [(k,)]
        emit(
            f"| optcheck {method} (mode {r.mode}, {r.method}) | {c.calls} | {secs:.1f} | "
            f"{'fail' if not r.passed else 'pass (missed)'} | {'yes: x[' + str(k) + ']' if named else 'no'} |"
        )
        goals.append(
            (
                f"10^6 coordinates, method {method}: the corrupted entry is named with < 500 evaluations",
                named and c.calls < 500,
                f"{c.calls} evaluations",
            )
        )
    counter = Counted(lambda v: None)
    x = torch.tensor(big.x, dtype=torch.float64, requires_grad=True)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = torch_gradcheck(
            _function_with_grad(big, g, counter), (x,), fast_mode=True, raise_exception=False
        )
    secs = time.perf_counter() - t
    emit(
        f"| torch gradcheck (fast) | {counter.calls} | {secs:.1f} | {'pass (missed)' if ok else 'fail'} | no (one projection) |"
    )
    emit("| torch gradcheck (slow) | (2,000,000 needed) | - | not run | - |")
    emit("| numdifftools Gradient | (about 30,000,000 needed) | - | not run | - |")

    emit()
    emit(f"Load average after the held-in functions: {load()}.")
    layer_section(emit, goals)
    emit()
    emit("## What finite differences can reach where a goal is missed")
    emit()
    emit(
        "Normwise error of finite-difference stencils on the functions with a missed goal, at the "
        "relative step (times max(1, |x_i|)) where it is smallest, found by trying "
        f"{ORACLE_STEPS.size} steps from 1e-7 to 0.3 and *comparing with the exact gradient*: "
        "*best common step* uses one step for every entry, *best step per entry* each entry's "
        "luckiest one (it also profits from round-off errors that happen to cancel). A checker does "
        "not know the exact gradient: the last column is a floor for each stencil, which no checker "
        "reaches; choosing steps per entry from measured truncation can beat the common step. "
        "Evaluations per entry do not count f(x), which is shared."
    )
    for p in PROBLEMS:
        if not missed.get(p.name):
            continue
        emit()
        emit(f"### {p.name}")
        emit()
        emit("| stencil | evals per entry | best common step | error there | best step per entry |")
        emit("|---|---:|---:|---:|---:|")
        for name, offsets in STENCILS:
            common, per_entry, t = stencil_floor(p, offsets)
            spent = sum(1 for o in offsets if o != 0)
            emit(f"| {name} | {spent} | {t:.1e} | {common:.1e} | {per_entry:.1e} |")
    emit()
    emit(f"Load average at the end: {load()}.")
    emit()
    emit("## Goals")
    emit()
    emit("| goal | met | measured |")
    emit("|---|---|---|")
    for text, met, measured in goals:
        emit(f"| {text} | {'yes' if met else '**no**'} | {measured} |")
    emit()
    emit("## Reading the figures")
    emit()
    for line in NOTES:
        emit(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
