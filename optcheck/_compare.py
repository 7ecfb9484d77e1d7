"""One dtype-aware tolerance, shared by the audit's differential test and diagnosis.

Two arrays *agree* when, leaf by leaf,

* they have the same shape;
* their non-finite entries (NaN, +inf, -inf) sit at the same positions with the
  same value (NaN == NaN counts as agreement: a bug that produces NaN is reproduced
  by a mutant that produces NaN in the same places);
* every finite entry satisfies ``|a - b| <= rtol(dtype) * scale``, where ``scale`` is the
  largest finite magnitude in the two leaves (so entries near zero in a leaf of
  large entries are compared at the leaf's scale, which is the size of the rounding
  error a different but correct order of operations makes there).

Parameters after a step are compared by their *change* from the value before the
step: ``|a - b| <= rtol(dtype) * change + ulps(dtype) * eps(dtype) * scale``, where ``change``
is the largest change in the leaf and :func:`ulps` is 256 (at most ``rtol/eps``: 20 for
float16). Every comparison also allows ``ULPS`` times the dtype's smallest normal number
(absolute): a value computed through the subnormal range has lost its relative precision. A parameter of size 1 moved by lr = 1e-3 is thus
resolved to 1e-10 of the step, not of the parameter (an epsilon added in the wrong
place moves it by lr·ε, far below 1e-10 of the parameter).

``rtol`` depends on the dtype the arrays were computed in: float64 ``1e-10``
(some 10^5 ulps: far above the rounding of a reordered formula, far below the
effect of an epsilon of 1e-8 on a step), float32 ``2e-5``, float16 ``2e-2``,
bfloat16 ``1e-1``; ``ULPS`` is 256.

:func:`compare_trajectory` replays a rule (the reference, a convention or a
mutant) over a recorded :class:`~optcheck._trajectory.Trajectory` step by step
and stops at the first step where they part, or after the first step at which
the target produced a non-finite value (what follows a NaN says nothing more).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._core.arrays import to_numpy as to_numpy
from ._core.tree import Path, Tree, flatten, map_tree, path_str
from ._trajectory import Trajectory, step_tree
from .rules import Rule

__all__ = [
    "Comparison",
    "Divergence",
    "close",
    "compare_trajectory",
    "leaf_error",
    "mismatches",
    "rtol",
    "show_pair",
    "to_numpy",
]

_RTOL = {"float64": 1e-10, "float32": 2e-5, "float16": 2e-2, "bfloat16": 1e-1}

#: Rounding allowance of a parameter compared by its change: this many units in the last place
#: (machine epsilon of the dtype times the largest value of the leaf).
ULPS = 256

#: Exceptions a rule (or mutant) may raise on legal inputs: a division by a zero bias
#: correction, an overflow. Anything else is a bug in optcheck and propagates.
REPLAY_ERRORS = (ZeroDivisionError, OverflowError, FloatingPointError)


_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: Any) -> str:
    try:
        return _NAMES[dtype]
    except (KeyError, TypeError):
        pass
    name = str(dtype).rsplit(".", 1)[-1]  # "torch.float32" -> "float32"
    name = {"double": "float64", "float": "float32", "half": "float16"}.get(name, name)
    with contextlib.suppress(TypeError):
        _NAMES[dtype] = name
    return name


def rtol(dtype: Any) -> float:
    """The relative tolerance for arrays computed in ``dtype`` (numpy or torch dtype, or its name).

    Integer and unknown dtypes get float64's tolerance.
    """
    return _RTOL.get(_dtype_name(dtype), _RTOL["float64"])


def _lowest_precision(*dtypes: Any) -> str:
    names = [_dtype_name(d) for d in dtypes]
    return max(names, key=lambda n: _RTOL.get(n, _RTOL["float64"]))


def _dtype_of(x: Any) -> Any:
    return getattr(x, "dtype", np.asarray(x).dtype)


def _eps(dtype: Any) -> float:
    name = _dtype_name(dtype)
    return {"float32": 1.1920929e-07, "float16": 9.765625e-04, "bfloat16": 7.8125e-03}.get(name, 2.220446e-16)


def _tiny(dtype: Any) -> float:
    """The smallest positive normal number of ``dtype``: below it a value has lost relative precision."""
    name = _dtype_name(dtype)
    return {"float32": 2.0**-126, "float16": 2.0**-14, "bfloat16": 2.0**-126}.get(name, 2.0**-1022)


def ulps(dtype: Any) -> float:
    """Units in the last place of rounding allowed on a parameter compared by its change.

    :data:`ULPS` (256), but never more than the relative tolerance itself, ``rtol/eps``: float32
    gets 168, float16 20, bfloat16 12.8. 256 units of float16 would be a quarter of the parameter,
    hiding every bug smaller than that; 20 keep a bug of a few dozen units resolvable.
    """
    return float(min(ULPS, max(4.0, rtol(dtype) / _eps(dtype))))


def leaf_error(
    target: Any, reference: Any, dtype: Any = None, *, start: Any = None, spread: Any = None
) -> tuple[float, tuple[int, ...] | None]:
    """The disagreement of two arrays in units of the tolerance, and where it is largest.

    Returns ``(error, index)``: ``error <= 1`` means the arrays agree (see the module
    docstring); ``error`` is ``inf`` when their shapes differ or a non-finite entry of
    one is not matched by the same value in the other (``index`` is then the first such
    entry). ``index`` is ``None`` when the arrays are identical. ``dtype`` selects the
    tolerance; by default the lower precision of the two arrays' dtypes.

    ``start`` (the value before the step, for parameters) compares the *changes*: the
    tolerance is then ``rtol`` times the largest change in the leaf plus ``ULPS`` units
    of rounding of the largest value (a step of size lr·1e-3 is resolved to ``rtol``
    of itself, however large the parameter).

    ``spread`` (entrywise, the reference's own rounding: its value in the dtype minus its value
    from the same inputs in float64) widens the tolerance of each entry by twice that amount:
    where the dtype cannot resolve a value (a subnormal intermediate, float16's range), two
    correct implementations may differ by as much as each differs from the exact value.
    """
    if dtype is None:
        dtype = _lowest_precision(_dtype_of(target), _dtype_of(reference))
    a = to_numpy(target)
    b = to_numpy(reference)
    if a.shape != b.shape:
        return math.inf, None
    if a.size == 0:
        return 0.0, None
    a = a.astype(np.float64, copy=False)
    b = b.astype(np.float64, copy=False)
    fa = np.isfinite(a)
    fb = np.isfinite(b)
    both = fa & fb
    if not both.all():
        # Non-finite entries must coincide: NaN with NaN, inf with inf of the same sign.
        bad = fa != fb
        nf = ~fa & ~fb
        with np.errstate(invalid="ignore"):
            bad |= nf & ~((np.isnan(a) & np.isnan(b)) | (a == b))
        if bad.any():
            return math.inf, tuple(int(i) for i in np.argwhere(bad)[0])
    s0 = None
    if start is not None:
        s0 = to_numpy(start).astype(np.float64, copy=False)
        if s0.shape != a.shape:
            raise ValueError(f"start has shape {s0.shape}; expected the shape of the arrays, {a.shape}")
    if not both.any():
        return 0.0, None
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both, np.abs(a - b), 0.0)
    worst = int(np.argmax(diff))
    top = float(diff.flat[worst])
    if top == 0.0:
        return 0.0, None
    scale = max(float(np.max(np.abs(a[both]))), float(np.max(np.abs(b[both]))))
    if s0 is None:
        tol = rtol(dtype) * scale
    else:
        ok = both & np.isfinite(s0)
        change = 0.0
        if ok.any():
            change = max(float(np.max(np.abs(a[ok] - s0[ok]))), float(np.max(np.abs(b[ok] - s0[ok]))))
        tol = rtol(dtype) * change + ulps(dtype) * _eps(dtype) * scale
    # a value computed through the subnormal range (torch's addcdiv forms lr·m first) is known
    # only to the dtype's smallest normal number, times what it was multiplied by afterwards
    tol += ULPS * _tiny(dtype)
    if spread is not None:
        sp = to_numpy(spread).astype(np.float64, copy=False)
        if sp.shape == a.shape:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                allow = tol + 2.0 * np.where(np.isfinite(sp), np.abs(sp), 0.0)
                ratio = np.where(both, diff / allow, 0.0)
            worst = int(np.argmax(ratio))
            return float(ratio.flat[worst]), tuple(int(i) for i in np.unravel_index(worst, a.shape))
    err = top / tol if tol > 0 else math.inf
    return err, tuple(int(i) for i in np.unravel_index(worst, a.shape))


def mismatches(target: Any, reference: Any, dtype: Any = None, *, start: Any = None) -> np.ndarray:
    """The entries where ``target`` and ``reference`` disagree, by the one tolerance of :func:`leaf_error`.

    A boolean array of the arrays' shape (flattened when the shapes differ, all ``True``): an
    entry is marked when its difference exceeds the tolerance :func:`leaf_error` applies to the
    whole leaf, or when it is non-finite in one and not the same non-finite value in the other.
    Nothing is marked when :func:`leaf_error` says the leaves agree. The guard's shadow check
    counts these entries; the audit compares whole leaves with :func:`leaf_error`: one tolerance.
    """
    err, _ = leaf_error(target, reference, dtype, start=start)
    a = to_numpy(target).astype(np.float64, copy=False)
    b = to_numpy(reference).astype(np.float64, copy=False)
    if a.shape != b.shape:
        return np.ones(max(a.size, b.size), dtype=bool)
    if err <= 1.0:
        return np.zeros(a.shape, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        fa, fb = np.isfinite(a), np.isfinite(b)
        both = fa & fb
        diff = np.where(both, np.abs(a - b), 0.0)
        same_nonfinite = ~fa & ~fb & ((np.isnan(a) & np.isnan(b)) | (a == b))
    top = float(np.max(diff)) if diff.size else 0.0
    tol = top / err if math.isfinite(err) and err > 0 else math.inf
    # the leaf's tolerance: the largest difference is err tolerances (finite err); with an
    # infinite err (a non-finite mismatch) the finite entries are judged by leaf_error on them alone
    if not math.isfinite(err) and both.any():
        fe, _ = leaf_error(
            np.where(both, a, 0.0),
            np.where(both, b, 0.0),
            dtype if dtype is not None else _lowest_precision(_dtype_of(target), _dtype_of(reference)),
            start=None if start is None else np.where(both, to_numpy(start).astype(np.float64), 0.0),
        )
        tol = top / fe if fe > 1.0 else math.inf
    bad = np.where(both, diff > tol, ~(both | same_nonfinite))
    return np.asarray(bad, dtype=bool)


def close(a: Any, b: Any, dtype: Any = None, *, start: Any = None) -> bool:
    """Whether arrays ``a`` and ``b`` agree within the tolerance of ``dtype`` (NaN == NaN at the same positions).

    ``start``: the common value before a step; the changes from it are compared (see :func:`leaf_error`).
    """
    return leaf_error(a, b, dtype, start=start)[0] <= 1.0


def _all_finite(tree: Tree) -> bool:
    for _, leaf in flatten(tree):
        arr = to_numpy(leaf)
        if arr.dtype.kind in "fc" and not bool(np.isfinite(arr).all()):
            return False
    return True


def show_pair(a: float, b: float) -> tuple[str, str, str]:
    """``a`` and ``b`` with as many significant digits as it takes to tell them apart (at least 4),
    and their relative difference (``""`` when equal or not both finite).

    ``show_pair(-0.0029483157941, -0.0029483157937)`` gives ``('-0.0029483157941', '-0.0029483157937',
    '1.4e-10')``: printed with the same 10 digits, the two would look equal.
    """
    sa, sb = f"{a:.4g}", f"{b:.4g}"
    for digits in range(4, 18):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            break
    rel = ""
    if math.isfinite(a) and math.isfinite(b) and a != b:
        rel = f"{abs(a - b) / max(abs(a), abs(b)):.2g}"
    return sa, sb, rel


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where a target first parts from a rule.

    ``step`` counts from 1 (the first call of the target); ``what`` is ``"params"`` or
    the rule's state name (``"exp_avg_sq"``); ``path`` the key path in that tree and
    ``index`` the entry (``None`` when the whole step failed). ``target``/``reference``
    are the two values there (``None`` when one side raised or shapes differ).
    ``error`` is the disagreement in units of the tolerance (``inf`` for a NaN
    mismatch). ``reason`` explains a divergence that is not a numeric one.
    """

    trajectory: int
    step: int
    what: str
    path: Path
    index: tuple[int, ...] | None
    target: float | None
    reference: float | None
    error: float
    reason: str = ""

    def where(self, names: Mapping[str, str] | None = None) -> str:
        """The entry in the user's own words: ``parameters['W1'][0, 2]``."""
        names = names or {}
        base = names.get(self.what, self.what)
        text = path_str(base, self.path)
        if self.index:
            text += "[" + ", ".join(str(i) for i in self.index) + "]"
        return text

    def message(self, names: Mapping[str, str] | None = None, versus: str = "the reference") -> str:
        """One sentence: where, at which step, the two values."""
        if self.reason:
            return f"at step {self.step}, {self.reason}"
        if self.target is None or self.reference is None:
            return f"{self.where(names)} differs from {versus} at step {self.step}"
        got, want, rel = show_pair(self.target, self.reference)
        return f"{self.where(names)} is {got} after step {self.step}; {versus} gives {want}" + (
            f" (relative difference {rel})" if rel else ""
        )


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare_trajectory`.

    ``matched``: the rule reproduces every compared step; ``divergence``: the first
    disagreement otherwise; ``max_error``: the largest disagreement (tolerance units)
    over the steps compared; ``steps``: how many steps were compared; ``nonfinite_step``:
    the step at which the comparison stopped because the target produced a non-finite
    value (``None`` if it never did).
    """

    matched: bool
    divergence: Divergence | None
    max_error: float
    steps: int
    nonfinite_step: int | None = None


def _leaf_value(tree: Tree, path: Path, index: tuple[int, ...] | None) -> float | None:
    for p, leaf in flatten(tree):
        if p == path:
            arr = to_numpy(leaf)
            if index is None or arr.ndim != len(index):
                return None
            return float(arr[index])
    return None


def compare_trees(
    target: Tree, reference: Tree, dtype: Any = None, *, start: Tree | None = None, spread: Tree | None = None
) -> tuple[float, Path, tuple[int, ...] | None]:
    """The largest :func:`leaf_error` over two trees of the same structure, with its key path and index.

    A leaf missing from ``target`` counts as a disagreement (``inf``). ``start``: a tree of
    the values before the step (parameters are compared by their change).
    """
    tgt = dict(flatten(target))
    st = dict(flatten(start)) if start is not None else {}
    sp = dict(flatten(spread)) if spread is not None else {}
    worst: tuple[float, Path, tuple[int, ...] | None] = (0.0, (), None)
    for path, ref_leaf in flatten(reference):
        if path not in tgt:
            return math.inf, path, None
        if ref_leaf is None or tgt[path] is None:  # a state entry that does not apply to this leaf
            if ref_leaf is not tgt[path]:
                return math.inf, path, None
            continue
        s0 = st.get(path)
        if s0 is not None and getattr(s0, "shape", None) != getattr(ref_leaf, "shape", None):
            s0 = None
        err, idx = leaf_error(tgt[path], ref_leaf, dtype, start=s0, spread=sp.get(path))
        if err > worst[0]:
            worst = (err, path, idx)
            if math.isinf(err):
                break
    return worst


def compare_trajectory(
    traj: Trajectory,
    rule: Rule | None = None,
    overrides: Mapping[Path, Rule] | None = None,
    *,
    index: int = 0,
    dtype: Any = None,
    compute_dtype: Any = None,
    state0: Mapping[str, Any] | None = None,
    ignore_state: frozenset[str] | set[str] = frozenset(),
    max_steps: int | None = None,
) -> Comparison:
    """Replay ``rule`` (default ``traj.rule`` with ``traj.overrides``) over ``traj`` and compare with the target.

    After each step the parameters, and every array state entry the adapter mapped
    (``traj.states``; scalar entries such as ``step`` and keys in ``ignore_state`` are
    skipped), are compared with :func:`leaf_error`. The replay stops at the first
    disagreement, and after the first step at which the target returned a non-finite
    value. When the target raised at step ``n`` (``traj.error``), the rule must fail
    there too (raise, or give a non-finite value) for the trajectories to agree. A
    rule that raises ``ZeroDivisionError``/``OverflowError`` (a division by a zero
    Python scalar) agrees with a target whose parameters are all non-finite at that
    step (numpy's division by zero).

    ``compute_dtype`` replays in another dtype (the ``float32-compute`` convention);
    ``dtype`` picks the tolerance (default: the lower precision of the target's and
    the replay's arrays). ``max_steps`` compares only the first steps (a quick screen).
    ``index`` is the trajectory's number, for the :class:`Divergence` record.
    """
    if rule is None:
        rule = traj.rule
        if overrides is None:
            overrides = traj.overrides
    params = traj.params0
    if compute_dtype is not None:
        params = _cast_tree(params, compute_dtype)
    if state0 is None:
        state0 = traj.state0
    state: Mapping[str, Any] = rule.init(params) if state0 is None else state0
    if compute_dtype is not None and state0 is not None:
        state = {k: (_cast_tree(v, compute_dtype) if k in rule.array_keys() else v) for k, v in state.items()}
    keys = set(rule.array_keys()) - set(ignore_state)
    n_target = traj.steps
    n = n_target + (1 if traj.error else 0)
    if max_steps is not None:
        n = min(n, max_steps)
    max_err = 0.0
    for k in range(n):
        step = k + 1
        g = traj.grads[k]
        if compute_dtype is not None:
            g = _cast_tree(g, compute_dtype)
        failed: str | None = None
        prev, prev_state = params, state
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                params, state = step_tree(rule, params, g, state, overrides)
        except REPLAY_ERRORS as e:
            failed = f"{type(e).__name__}: {e}"
        if k >= n_target:  # the target raised at this step
            if failed is not None or not (_all_finite(params) and _all_finite(_arrays(state, keys))):
                return Comparison(True, None, max_err, k, None)
            div = Divergence(
                index,
                step,
                "params",
                (),
                None,
                None,
                None,
                math.inf,
                reason=f"the target raised ({traj.error}) but the rule did not",
            )
            return Comparison(False, div, math.inf, k, None)
        t_params = traj.params[k]
        t_state = traj.states[k] if traj.states is not None and k < len(traj.states) else None
        target_finite = _all_finite(t_params) and (t_state is None or _all_finite(_arrays(t_state, keys)))
        if failed is not None:
            # A division by zero in the rule's Python scalars is numpy's inf/NaN everywhere.
            if _none_finite(t_params):
                return Comparison(True, None, max_err, step, step)
            div = Divergence(
                index,
                step,
                "params",
                (),
                None,
                None,
                None,
                math.inf,
                reason=f"the rule raised {failed} but the target returned finite values",
            )
            return Comparison(False, div, math.inf, k, None)
        err, path, idx = compare_trees(t_params, params, dtype, start=prev)
        spread: tuple[Tree, dict[str, Any]] | None = None
        if err > 1.0 and math.isfinite(err):
            spread = _spread(rule, prev, g, prev_state, overrides, params, state, keys)
            if spread is not None:
                err, path, idx = compare_trees(t_params, params, dtype, start=prev, spread=spread[0])
        what = "params"
        if err <= 1.0 and t_state is not None:
            for key in sorted(keys & set(t_state)):
                e2, p2, i2 = compare_trees(t_state[key], state[key], dtype)
                if e2 > 1.0 and math.isfinite(e2):
                    if spread is None:
                        spread = _spread(rule, prev, g, prev_state, overrides, params, state, keys)
                    if spread is not None and key in spread[1]:
                        e2, p2, i2 = compare_trees(t_state[key], state[key], dtype, spread=spread[1][key])
                if e2 > err:
                    err, path, idx, what = e2, p2, i2, key
                if err > 1.0:
                    break
        if err > 1.0:
            tgt_tree = t_params if what == "params" else t_state[what]  # type: ignore[index]
            ref_tree = params if what == "params" else state[what]
            div = Divergence(
                index,
                step,
                what,
                path,
                idx,
                _leaf_value(tgt_tree, path, idx),
                _leaf_value(ref_tree, path, idx),
                err,
            )
            return Comparison(False, div, max(max_err, err), k, None)
        max_err = max(max_err, err)
        if not target_finite:
            return Comparison(True, None, max_err, step, step)
    return Comparison(True, None, max_err, n, None)


def _spread(
    rule: Rule,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any],
    overrides: Mapping[Path, Rule] | None,
    new_params: Tree,
    new_state: Mapping[str, Any],
    keys: set[str],
) -> tuple[Tree, dict[str, Any]] | None:
    """The reference's own rounding in this step: its results minus the same step in float64.

    ``None`` for float64 arrays (nothing to compare with), or when the float64 step fails.
    """
    leaves = [leaf for _, leaf in flatten(new_params)]
    if not leaves or _lowest_precision(*(_dtype_of(x) for x in leaves)) == "float64":
        return None
    up = "float64"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            state64 = {k: (_cast_tree(v, up) if k in rule.array_keys() else v) for k, v in state.items()}
            p64, s64 = step_tree(rule, _cast_tree(params, up), _cast_tree(grads, up), state64, overrides)
    except (*REPLAY_ERRORS, ValueError, TypeError):
        return None

    def minus(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        with np.errstate(all="ignore"):
            return to_numpy(a).astype(np.float64) - to_numpy(b).astype(np.float64)

    def diff(a: Tree, b: Tree) -> Tree:
        fb = dict(flatten(b))
        return {path: minus(leaf, fb.get(path)) for path, leaf in flatten(a)}

    p_spread = _unflat(diff(new_params, p64))
    s_spread = {k: _unflat(diff(new_state[k], s64[k])) for k in keys if k in new_state and k in s64}
    return p_spread, s_spread


def _unflat(by_path: Mapping[Path, Any]) -> Tree:
    """A tree for :func:`compare_trees` from ``{path: leaf}`` (nested dicts keyed by path parts)."""
    if list(by_path) == [()]:
        return by_path[()]
    out: dict[Any, Any] = {}
    for path, leaf in by_path.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = leaf
    return out


def _none_finite(tree: Tree) -> bool:
    for _, leaf in flatten(tree):
        arr = to_numpy(leaf)
        if arr.dtype.kind in "fc" and bool(np.isfinite(arr).any()):
            return False
    return True


def _arrays(state: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: state[k] for k in keys if k in state}


def _cast_tree(tree: Tree, dtype: Any) -> Tree:
    def cast(x: Any) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor):
            return x.to(getattr(torch, _dtype_name(dtype)))
        return np.asarray(x).astype(_dtype_name(dtype))

    return map_tree(cast, tree)
