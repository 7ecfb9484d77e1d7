"""Hard-coded hyperparameters: fit what the target takes no argument for, from its own trajectories.

A course RMSprop that writes ``beta2 = 0.999`` in its body is not wrong because torch's
default is 0.99. Before judging, the audit fits every *free* hyperparameter of the rule (one
the target takes no argument for and the user did not give) on the probe trajectories: a
small set of common values plus a closed-form estimate (the learning rate from the first
step, by least squares), coordinate by coordinate, twice. A candidate's score is the fraction
of parameter entries, over every step of every probe, that the reference reproduces (a bug
that touches some entries, such as an L2 term added to the weights' squares, leaves the others
to decide), then its largest disagreement. The budget is counted in evaluations (replays of
the reference), never in seconds, so the same audit fits the same values on any machine.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._core.tree import Path, flatten
from .._trajectory import Trajectory, step_tree
from ..rules import Rule

__all__ = ["FIT_BUDGET", "Fit", "candidates", "fit_free", "fittable"]

#: Replays of the reference one fit may spend (all free hyperparameters together).
FIT_BUDGET = 160

#: Relative agreement an entry needs to count as reproduced while fitting (looser than the audit's
#: tolerance: the fit ranks candidates, the audit judges afterwards with its own tolerance).
FIT_RTOL = 1e-6

_DECAYS = (0.9, 0.99, 0.999, 0.95, 0.98, 0.8, 0.5, 0.0, 0.995, 0.9999)
_EPS = (1e-8, 1e-7, 1e-6, 1e-10, 1e-5, 1e-4, 1e-3, 1e-12, 1e-16, 0.0)
_LRS = (1e-3, 1e-2, 1e-1, 1.0, 3e-4, 5e-4, 5e-3, 2e-3, 3e-3, 0.05, 0.5)


@dataclasses.dataclass
class Fit:
    """The outcome of :func:`fit_free`: the rule with the fitted values and what was decided.

    ``values``: free hyperparameter -> value used; ``changed``: those that differ from the
    rule's default; ``score``: the fraction of entries reproduced; ``evaluations``: replays spent.
    """

    rule: Rule
    values: dict[str, Any]
    changed: dict[str, Any]
    score: float
    evaluations: int
    worst: float = 0.0


def fittable(rule: Rule, name: str) -> bool:
    """Whether ``name`` is a hyperparameter a fit may set: the learning rate, a decay rate, momentum, epsilon."""
    spec = {s.name: s for s in type(rule).hyper_specs()}.get(name)
    if spec is None or spec.kind != "float" or getattr(spec, "convention", False):
        return False
    if name == "momentum":  # the heart of SGD; an optional extra elsewhere (RMSprop), never hard-coded there
        return rule.name == "sgd"
    return name in ("lr", "eps", "alpha", "rho", "beta1", "beta2", "beta3")


def candidates(name: str, current: float) -> list[float]:
    """The values tried for ``name``: the current value first, then the common ones."""
    if name == "lr":
        common: Sequence[float] = _LRS
    elif name == "eps":
        common = _EPS
    else:
        common = _DECAYS
    out = [current]
    for v in common:
        if v not in out:
            out.append(v)
    return out


def _lr_estimate(rule: Rule, traj: Trajectory, overrides: Mapping[Path, Rule]) -> float | None:
    """The learning rate that best explains the target's first step (least squares, steps linear in lr)."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p1, _ = step_tree(rule, traj.params0, traj.grads[0], rule.init(traj.params0), overrides)
    except (ValueError, TypeError, FloatingPointError, ZeroDivisionError, OverflowError):
        return None
    num = den = 0.0
    for (_, ref), (_, tgt), (_, p0) in zip(
        flatten(p1), flatten(traj.params[0]), flatten(traj.params0), strict=False
    ):
        dr = np.asarray(ref, dtype=np.float64) - np.asarray(p0, dtype=np.float64)
        dt = np.asarray(tgt, dtype=np.float64) - np.asarray(p0, dtype=np.float64)
        ok = np.isfinite(dr) & np.isfinite(dt)
        num += float(np.sum(dr[ok] * dt[ok]))
        den += float(np.sum(dr[ok] * dr[ok]))
    if den <= 0 or num <= 0:
        return None
    lr = float(rule.hyper["lr"]) * num / den
    return float(f"{lr:.3g}")


def _score(
    rule: Rule, trajs: Sequence[Trajectory], overrides_for: Callable[[Rule, Any], Mapping[Path, Rule]]
) -> tuple[float, float]:
    """(fraction of entries reproduced, minus the largest relative disagreement).

    The entries are the parameters' and, where the trajectory carries the target's states under
    the rule's names, the states' after every step.
    """
    agree = total = 0
    worst = 0.0
    for traj in trajs:
        overrides = overrides_for(rule, traj.params0)
        params: Any = traj.params0
        state: Any = rule.init(params)
        starts = [np.asarray(p, dtype=np.float64) for _, p in flatten(traj.params0)]
        for k in range(traj.steps):
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    params, state = step_tree(rule, params, traj.grads[k], state, overrides)
            except (ValueError, TypeError, FloatingPointError, ZeroDivisionError, OverflowError):
                return (0.0, -math.inf)
            # parameters are compared by how far they moved from the start, so that a small step is
            # judged against its own size, not against the size of the parameter
            pairs = [
                (np.asarray(r, dtype=np.float64) - p0, np.asarray(t, dtype=np.float64) - p0)
                for (_, r), (_, t), p0 in zip(flatten(params), flatten(traj.params[k]), starts, strict=False)
            ]
            if traj.states is not None and k < len(traj.states):
                for key, tree in traj.states[k].items():
                    if key in state and not isinstance(tree, float):
                        pairs += [
                            (r, t) for (_, r), (_, t) in zip(flatten(state[key]), flatten(tree), strict=False)
                        ]
            for ref, tgt in pairs:
                r = np.asarray(ref, dtype=np.float64)
                t = np.asarray(tgt, dtype=np.float64)
                if r.shape != t.shape:
                    return (0.0, -math.inf)
                with np.errstate(all="ignore"):
                    scale = np.maximum(np.abs(r), np.abs(t))
                    diff = np.abs(r - t)
                    ok = np.isfinite(r) & np.isfinite(t) & (diff <= FIT_RTOL * np.maximum(scale, 1e-12))
                agree += int(ok.sum())
                total += r.size
                fin = np.isfinite(r) & np.isfinite(t)
                if fin.any():
                    rel = diff[fin] / np.maximum(scale[fin], 1e-300)
                    worst = max(worst, float(rel.max()))
    return (agree / total if total else 0.0, -worst)


def fit_free(
    rule: Rule,
    free: Sequence[str],
    trajs: Sequence[Trajectory],
    overrides_for: Callable[[Rule, Any], Mapping[Path, Rule]],
    budget: int = FIT_BUDGET,
) -> Fit:
    """Fit the ``free`` hyperparameters of ``rule`` to the target's trajectories ``trajs`` (see the module)."""
    names = [n for n in free if fittable(rule, n)]
    # epsilon last and only when it makes every entry agree: a bug in where epsilon goes (or any
    # other bug) must not be absorbed by a tiny fitted epsilon
    order = [n for n in sorted(names, key=lambda n: n != "lr") if n != "eps"]
    evaluations = 1
    best_rule = rule
    best = _score(rule, trajs, overrides_for)
    usable = [t for t in trajs if t.steps]
    for _ in range(2):
        improved = False
        for name in order:
            current = best_rule.hyper[name]
            tries = candidates(name, current)
            if name == "lr" and usable:
                est = _lr_estimate(best_rule, usable[0], overrides_for(best_rule, usable[0].params0))
                if est is not None and est not in tries:
                    tries.insert(1, est)
            for v in tries[1:]:
                if evaluations >= budget:
                    break
                try:
                    cand = best_rule.replace(**{name: v})
                except (ValueError, TypeError):
                    continue
                evaluations += 1
                sc = _score(cand, trajs, overrides_for)
                if sc > best:
                    best, best_rule, improved = sc, cand, True
        if not improved or evaluations >= budget:
            break
    if "eps" in names and best[0] < 1.0:
        for v in candidates("eps", best_rule.hyper["eps"])[1:]:
            if evaluations >= budget:
                break
            try:
                cand = best_rule.replace(eps=v)
            except (ValueError, TypeError):
                continue
            evaluations += 1
            sc = _score(cand, trajs, overrides_for)
            if sc[0] == 1.0:
                best, best_rule = sc, cand
                break
    values = {n: best_rule.hyper[n] for n in names}
    changed = {n: v for n, v in values.items() if v != rule.hyper[n]}
    return Fit(best_rule, values, changed, best[0], evaluations, best[1])
