"""``step_sweep``: the error of the numerical derivative against the step (the V-shaped curve)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._tree import Tree, path_str
from ._engine import EPS, Evaluator, estimate_noise
from ._space import FloatArray, Space, is_torch_tensor

__all__ = ["StepSweep", "step_sweep"]


@dataclasses.dataclass(frozen=True)
class StepSweep:
    """The error of numerical derivatives of one entry against the step ``h``.

    * ``where``: the entry (``x['W1'][0, 2]``); ``analytic``: the value of ``grad`` there;
    * ``steps``: the steps tried (absolute, increasing);
    * ``central``, ``forward``: ``|numeric - analytic|`` for central and forward differences at
      each step; ``complex``: the same for the complex step, or ``None`` when ``f`` does not
      accept complex input;
    * ``default_step``: the central-difference step ``check_gradient`` starts from (it takes a
      third, smaller step where the truncation measured there dominates the round-off);
      ``best_step``: the step with the smallest central error;
    * ``noise``: the measured noise of ``f`` (the left arm of the V is about ``noise/h``).

    Round-off makes the error grow like ``noise/h`` to the left, truncation like ``h²`` to the
    right; the bottom of the V is the best step. When the error never drops below some level,
    that level is a disagreement with the analytic value, not a numerical error.
    """

    where: str
    analytic: float
    steps: FloatArray
    central: FloatArray
    forward: FloatArray
    complex: FloatArray | None
    default_step: float
    best_step: float
    noise: float

    def __str__(self) -> str:
        lines = [
            f"Step sweep for {self.where} (analytic {self.analytic:.10g}); noise of f {self.noise:.1e}",
            f"default central step {self.default_step:.1e}; smallest central error at h = {self.best_step:.1e}",
            "",
            f"  {'h':>9}  {'central err':>11}  {'forward err':>11}"
            + ("  complex err" if self.complex is not None else ""),
        ]
        for k, h in enumerate(self.steps):
            row = f"  {h:9.1e}  {self.central[k]:11.1e}  {self.forward[k]:11.1e}"
            if self.complex is not None:
                row += f"  {self.complex[k]:11.1e}"
            lines.append(row)
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """A log-log plot of the errors against ``h`` (needs matplotlib: ``pip install optcheck[plot]``).

        Returns the matplotlib ``Axes``.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                "StepSweep.plot needs matplotlib: pip install 'optcheck[plot]' (or pip install matplotlib)"
            ) from None
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        tiny = np.finfo(np.float64).tiny
        ax.loglog(self.steps, np.maximum(self.central, tiny), "o-", label="central")
        ax.loglog(self.steps, np.maximum(self.forward, tiny), "s--", label="forward", alpha=0.7)
        if self.complex is not None:
            ax.loglog(self.steps, np.maximum(self.complex, tiny), "^:", label="complex step")
        ax.axvline(self.default_step, color="gray", ls=":", label="default central step")
        ax.set_xlabel("step h")
        ax.set_ylabel("|numeric - analytic|")
        ax.set_title(f"numerical derivative error for {self.where}")
        ax.legend()
        return ax


def _select(space: Space, g: FloatArray, key: Any, index: Any) -> int:
    if key is None:
        leaf = 0
        if len(space.leaves) > 1 and index is not None:
            raise UsageError("index= needs key= when x is a dict: say which array the index is in")
    else:
        path = (key,) if isinstance(key, str) else tuple(key)
        matches = [i for i, lf in enumerate(space.leaves) if lf.path == path]
        if not matches:
            known = ", ".join(repr(lf.path[0] if len(lf.path) == 1 else lf.path) for lf in space.leaves)
            raise UsageError(f"key={key!r} is not a key of x; its keys are {known}")
        leaf = matches[0]
    lf = space.leaves[leaf]
    seg = g[lf.offset : lf.stop]
    if index is None:
        finite = np.where(np.isfinite(seg), np.abs(seg), -1.0)
        return lf.offset + int(np.argmax(finite))
    idx = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
    if len(idx) != len(lf.shape) or any(not -n <= i < n for i, n in zip(idx, lf.shape, strict=True)):
        raise UsageError(f"index={index!r} is not an index of {space.key(leaf)}, which has shape {lf.shape}")
    return lf.offset + int(
        np.ravel_multi_index(tuple(int(i) % n for i, n in zip(idx, lf.shape, strict=True)), lf.shape)
    )


def step_sweep(
    f: Callable[[Any], Any],
    x: Tree,
    grad: Tree | Callable[[Any], Tree],
    key: str | tuple[str, ...] | None = None,
    index: int | tuple[int, ...] | None = None,
    *,
    steps: Any = None,
    seed: int = 0,
) -> StepSweep:
    """The error of central, forward and complex-step derivatives of one entry against the step.

    Args:
        f, x, grad: as for :func:`~optcheck.gradcheck.check_gradient`.
        key: the array (a key of ``x``, or a tuple key path for nested dicts); ``None``: the
            first (or only) array.
        index: the entry in that array; ``None``: the entry with the largest ``|grad|``.
        steps: relative steps to try (multiplied by ``max(1, |x_i|)``); default
            ``10**-16 ... 10**0``, three per decade.
        seed: seeds the noise measurement.

    Returns:
        A :class:`StepSweep`; ``print(sweep)`` shows the table, ``sweep.plot()`` draws the V.
    """
    if not callable(f):
        raise UsageTypeError("f must be a callable f(x) -> float")
    seed = _v.check_seed("seed", seed)
    if (
        key is not None
        and not isinstance(key, str)
        and not (isinstance(key, tuple) and all(isinstance(k, str) for k in key))
    ):
        raise _v.UsageTypeError(f"key={key!r} is invalid; expected a key of x (a string) or a tuple key path")
    one_int = isinstance(index, (int, np.integer)) and not isinstance(index, bool)
    ints = isinstance(index, tuple) and all(isinstance(i, (int, np.integer)) for i in index)
    if index is not None and not (one_int or ints):
        raise _v.UsageTypeError(f"index={index!r} is invalid; expected an int or a tuple of ints")
    if steps is not None:
        try:
            given = np.asarray(steps, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise _v.UsageTypeError(
                f"steps={steps!r} is invalid; expected a sequence of relative steps > 0"
            ) from None
        if given.size == 0 or not np.all(np.isfinite(given)) or np.any(given <= 0):
            raise UsageError(
                f"steps={steps!r} is invalid; expected a non-empty sequence of finite relative steps > 0"
            )
    space = Space(x, "x")
    if callable(grad) and not is_torch_tensor(grad) and not isinstance(grad, Mapping):
        grad = grad(space.user_x())
    g, _, _ = space.gradient(grad, "grad")
    i = _select(space, g, key, index)
    ev = Evaluator(f, space, None)
    f0 = ev.real(space.x.copy())
    if not math.isfinite(f0):
        raise UsageError(f"f(x) is {f0} at the given x; the sweep needs a finite loss at x")
    noise, _ = estimate_noise(ev, space, f0, np.random.default_rng(seed))
    noise = max(noise or 0.0, 0.5 * ev.result_eps * abs(f0))
    rel = min(max(noise / abs(f0) if f0 else EPS, EPS), 1e-3)
    s = float(space.scale[i])
    rel_steps = np.logspace(-16, 0, 49) if steps is None else np.asarray(steps, dtype=np.float64).reshape(-1)
    hs = np.sort(rel_steps) * s
    a = float(g[i])
    central = np.empty(hs.size)
    forward = np.empty(hs.size)
    cplx: FloatArray | None = np.empty(hs.size)
    xi = float(space.x[i])
    actual = np.empty(hs.size)
    for k, h in enumerate(hs):
        vec = space.x.copy()
        xp = space.round_to_leaf(np.array([i]), np.array([xi + h]))[0]
        xm = space.round_to_leaf(np.array([i]), np.array([xi - h]))[0]
        vec[i] = xp
        fp = ev.real(vec)
        vec[i] = xm
        fm = ev.real(vec)
        hp, hm = xp - xi, xi - xm
        actual[k] = h
        central[k] = abs((fp - fm) / (hp + hm) - a) if hp + hm > 0 else math.nan
        forward[k] = abs((fp - f0) / hp - a) if hp > 0 else math.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert cplx is not None
            for k, h in enumerate(hs):
                value = ev.complex_at(np.array([i]), np.array([h]))
                cplx[k] = abs(value.imag / h - a)
    except Exception:
        cplx = None
    finite = np.where(np.isfinite(central), central, np.inf)
    return StepSweep(
        where=_where(space, i),
        analytic=a,
        steps=actual,
        central=central,
        forward=forward,
        complex=cplx,
        default_step=rel ** (1 / 3) * s,
        best_step=float(actual[int(np.argmin(finite))]),
        noise=noise,
    )


def _where(space: Space, i: int) -> str:
    leaf = space.leaf_of(i)
    index = space.index_of(i)
    base = path_str(space.name, space.leaves[leaf].path)
    return base if not index else f"{base}[{', '.join(str(j) for j in index)}]"
