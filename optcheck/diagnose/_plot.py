"""``--plot FILE.png``: the target's and the reference's trajectories where they first part."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

import numpy as np

from .._compare import REPLAY_ERRORS, compare_trajectory, to_numpy
from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._trajectory import Trajectory, check_trajectory, step_tree
from .._tree import Path, Tree, flatten, path_str
from ..rules import Rule

__all__ = ["plot_divergence"]


def _coord(tree: Tree | None, path: Path, index: tuple[int, ...] | None) -> float:
    if tree is None:
        return math.nan
    for p, leaf in flatten(tree):
        if p == path:
            arr = to_numpy(leaf)
            if arr.size == 0:
                return math.nan
            if index is None or len(index) != arr.ndim:
                return float(arr.reshape(-1)[0])
            try:
                return float(arr[index])
            except IndexError:
                return math.nan
    return math.nan


def _replay(
    traj: Trajectory, rule: Rule, overrides: Mapping[Path, Rule]
) -> list[tuple[Tree, dict[str, Any]]]:
    params = traj.params0
    state: Mapping[str, Any] = rule.init(params) if traj.state0 is None else traj.state0
    out: list[tuple[Tree, dict[str, Any]]] = [(params, dict(state))]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for g in traj.grads[: traj.steps]:
            try:
                params, state = step_tree(rule, params, g, state, overrides)
            except REPLAY_ERRORS:
                break
            out.append((params, dict(state)))
    return out


def _largest_difference(
    traj: Trajectory, ref: list[tuple[Tree, dict[str, Any]]]
) -> tuple[Path, tuple[int, ...]]:
    best: tuple[float, Path, tuple[int, ...]] = (-1.0, (), ())
    if traj.steps == 0 or len(ref) < 2:
        first = flatten(traj.params0)[0]
        return first[0], tuple(0 for _ in to_numpy(first[1]).shape)
    k = min(traj.steps, len(ref) - 1)
    tgt = dict(flatten(traj.params[k - 1]))
    for path, leaf in flatten(ref[k][0]):
        a, b = to_numpy(tgt[path]).astype(np.float64), to_numpy(leaf).astype(np.float64)
        if a.shape != b.shape or a.size == 0:
            continue
        d = np.where(np.isfinite(a - b), np.abs(a - b), np.inf)
        i = int(np.argmax(d))
        if float(d.flat[i]) > best[0]:
            best = (float(d.flat[i]), path, tuple(int(x) for x in np.unravel_index(i, a.shape)))
    return best[1], best[2]


def _mark_nonfinite(ax: Any, steps: list[int], values: list[float], color: str) -> None:
    """Mark the steps where ``values`` is NaN or infinite at the bottom of the axes."""
    bad = [(k, v) for k, v in zip(steps, values, strict=True) if not math.isfinite(v)]
    if not bad:
        return
    xs = [k for k, _ in bad]
    ax.plot(xs, [0.02] * len(xs), "x", color=color, markersize=9, mew=2, transform=ax.get_xaxis_transform())
    for k, v in bad[:1]:
        text = "NaN" if math.isnan(v) else ("+inf" if v > 0 else "-inf")
        ax.annotate(
            f"{text} from step {k}",
            (k, 0.02),
            xycoords=ax.get_xaxis_transform(),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize="small",
            color=color,
        )


def _state_key(rule: Rule, what: str) -> str | None:
    keys = rule.array_keys()
    if what in keys:
        return what
    roles = type(rule).state_roles
    for role in ("second-moment", "accumulator", "max-second-moment", "first-moment", "momentum"):
        for k in keys:
            if roles.get(k) == role:
                return k
    return keys[0] if keys else None


def plot_divergence(
    trajectory: Trajectory,
    reference_rule: Rule | None,
    path: str | os.PathLike[str],
    *,
    names: Mapping[str, str] | None = None,
) -> FilePath:
    """Plot the target's and the reference's values of the first diverging coordinate, step by step.

    The top panel shows the parameter entry where the target first parts from the
    reference (or the entry that differs most at the end, when they never part by more
    than the tolerance); the panel beneath shows the same entry of the rule's state (the
    second moment, e.g. ``S``, where the rule has one), the target's where the audit
    could map it. A dashed line marks the step where they part. ``reference_rule``
    ``None`` means the trajectory's own rule and parameter groups. ``names`` maps roles
    to the user's names (default: the trajectory's). Needs matplotlib (the ``plot``
    extra); returns the path written (PNG, or any format matplotlib infers from the suffix).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plot_divergence needs matplotlib; install it with: pip install 'optcheck[plot]'"
        ) from None
    check_trajectory(trajectory)
    if reference_rule is not None and not isinstance(reference_rule, Rule):
        raise UsageTypeError(
            f"reference_rule is a {type(reference_rule).__name__}; expected an optcheck rule "
            "(optcheck.rules.get(...)) or None"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise _v.UsageTypeError(f"path={path!r} is invalid; expected a file name (a str or a path)")
    out = FilePath(path)
    if not out.parent.exists():
        raise UsageError(f"path={str(path)!r} is invalid: the folder {str(out.parent)!r} does not exist")
    names = dict(trajectory.names) if names is None else _v.check_names("names", names)
    rule = trajectory.rule if reference_rule is None else reference_rule
    overrides = trajectory.overrides if reference_rule is None or reference_rule is trajectory.rule else {}

    comp = compare_trajectory(trajectory, rule, overrides)
    ref = _replay(trajectory, rule, overrides)
    div = comp.divergence
    if div is not None and div.path is not None and (div.what == "params" or div.index is not None):
        p_path, index, what = div.path, div.index, div.what
        if div.what != "params" and not any(p == p_path for p, _ in flatten(trajectory.params0)):
            p_path, index = _largest_difference(trajectory, ref)
    else:
        p_path, index = _largest_difference(trajectory, ref)
        what = "params"
    steps = list(range(trajectory.steps + 1))
    tgt_p = [_coord(trajectory.params0, p_path, index)] + [
        _coord(p, p_path, index) for p in trajectory.params
    ]
    ref_steps = list(range(len(ref)))
    ref_p = [_coord(p, p_path, index) for p, _ in ref]

    skey = _state_key(rule, what)
    nrows = 2 if skey is not None else 1
    fig = Figure(figsize=(7.0, 2.6 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
    pname = names.get("params", "params")
    label = path_str(pname, p_path) + ("[" + ", ".join(map(str, index)) + "]" if index else "")
    ax = axes[0]
    ax.plot(steps, tgt_p, "o-", color="tab:red", label="your update")
    ax.plot(ref_steps, ref_p, "s--", color="tab:blue", label=f"reference ({rule.name})", alpha=0.8)
    _mark_nonfinite(ax, steps, tgt_p, "tab:red")
    _mark_nonfinite(ax, ref_steps, ref_p, "tab:blue")
    ax.set_ylabel(label)
    ax.legend(loc="best", fontsize="small")
    title = f"{rule.name}: {label}"
    if div is not None:
        title += f" parts from the reference at step {div.step}"
        for a in axes:
            a.axvline(div.step, color="0.4", linestyle=":", linewidth=1.2)
        ax.annotate(
            f"step {div.step}",
            (div.step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize="small",
            color="0.3",
        )
    else:
        title += " (no divergence beyond the tolerance)"
    ax.set_title(title, fontsize="medium")
    if skey is not None:
        sname = names.get(skey, skey)
        ax2 = axes[1]
        ref_s = [_coord(s.get(skey), p_path, index) for _, s in ref]
        ax2.plot(ref_steps, ref_s, "s--", color="tab:blue", label=f"reference {sname}", alpha=0.8)
        _mark_nonfinite(ax2, ref_steps, ref_s, "tab:blue")
        if trajectory.states is not None:
            s0 = trajectory.state0 if trajectory.state0 is not None else ref[0][1]
            tgt_s = [_coord(s0.get(skey), p_path, index)]
            tgt_s += [_coord(st.get(skey), p_path, index) for st in trajectory.states]
            ax2.plot(list(range(len(tgt_s))), tgt_s, "o-", color="tab:red", label=f"your {sname}")
            _mark_nonfinite(ax2, list(range(len(tgt_s))), tgt_s, "tab:red")
        ax2.axhline(0.0, color="0.8", linewidth=0.8)
        ax2.set_ylabel(path_str(sname, p_path) + ("[" + ", ".join(map(str, index)) + "]" if index else ""))
        ax2.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    fig.savefig(out, dpi=100)
    return out
