"""The guard's fast path: where a step's arrays sit in the user's trees (a plan per structure) and the screens.

:func:`fast_screen` reads the arrays the precise path would check and hands them to
:func:`optcheck.invariants.screen`; anything out of the ordinary is left to the precise path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._core import validate as _v
from .._core.arrays import is_array as _is_arraylike
from .._core.arrays import namespace as _namespace
from .._core.arrays import shape as _shape
from .._core.tree import Path, Tree, flatten
from ..invariants import (
    Context,
    Leaf,
    roles_for,
    screen,
)
from ..invariants import is_scalar_entry as _is_scalar_state
from ..rules import MONOTONE_ROLES
from ._config import _detect_prefix, _rekey
from ._sampling import _BEFORE_KEYS, _HISTORY_IDS, Snapshot, _Drawn, _gather, _scalar_step


class _Bail(Exception):
    """The fast path leaves this step to the precise one (trees that do not line up, a non-array leaf)."""


def _array_leaf(x: Any) -> Any:
    """``x`` when it is an array of a known namespace (as the precise path would take it), else :class:`_Bail`."""
    if type(x) is np.ndarray:
        if x.dtype.kind != "f":
            raise _Bail  # integers, complex, objects, strings: the precise path converts or names them
        return x
    if not _is_arraylike(x) or isinstance(x, np.ndarray):
        raise _Bail  # np.matrix and masked arrays too: the precise path refuses them by name
    _namespace(x)  # TypeError for an array-like of no known namespace (the precise path converts it)
    return x


def _walk(tree: Any, leaves: list[Any]) -> Any:
    """The structure of ``tree`` as a hashable value (keys, and the type of each leaf); appends its leaves.

    The leaves come in :func:`optcheck._tree.flatten` order. Mappings other than ``dict``
    are left to the general path (:class:`_Bail`).
    """
    t = type(tree)
    if t is np.ndarray:
        leaves.append(tree)
        return t
    if t is dict:
        return tuple([(k, _walk(v, leaves)) for k, v in tree.items()])
    if isinstance(tree, Mapping):
        raise _Bail
    leaves.append(tree)
    shape = getattr(tree, "shape", None)
    return t if shape is None else (t, len(shape))  # a 0-d torch tensor may be a step counter


@dataclasses.dataclass
class _Plan:
    """Indices of a step's arrays in the walks (:func:`_walk`) of ``params``, ``grads``, ``state``, ``before``.

    Lists are in the order of the parameters' key paths. ``p0_ix`` is None when the old
    parameters are the new ones (no history, or ``before`` without ``"params"``).
    """

    paths: list[Path]
    g_ix: list[int]
    s1_ix: dict[str, list[int]]
    p0_ix: list[int] | None
    s0_ix: dict[str, list[int]]
    g0_ix: list[int] | None
    step_ix: int | None  # the "step" entry after the step (a single leaf)
    step0_ix: int | None  # the "step" entry of a dict ``before`` (a single leaf)
    counters: list[tuple[str, int, int]]  # scalar state key, index before, index after
    draw: list[tuple[Path, int]]  # sampling: the old parameters in their own order (index into the walk)
    draw_from_before: bool
    roles: dict[str, str]


_NO_PLAN = object()


def _locate(tree: Tree, prefix: str, base: int) -> dict[Path, int]:
    """Key path (with the course prefix removed) -> index of the leaf in the walk (``base`` + position)."""
    out: dict[Path, int] = {}
    for j, (path, _) in enumerate(flatten(tree)):
        if prefix and path:
            path = (path[0][len(prefix) :], *path[1:])
        out[path] = base + j
    return out


def _align(located: Mapping[Path, int], paths: list[Path]) -> list[int]:
    """The indices in the order of ``paths`` (:class:`_Bail` when the trees do not line up)."""
    if len(located) != len(paths) or any(p not in located for p in paths):
        raise _Bail
    return [located[p] for p in paths]


def _make_plan(
    guard: Any,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    before: Snapshot | Mapping[str, Any] | None,
) -> _Plan | None:
    """The plan for one tree structure, resolved as :meth:`Guard._precise` resolves it (None: never fast)."""
    try:
        return _plan(guard, params, grads, state, before)
    except (_Bail, ValueError, TypeError, KeyError, IndexError):
        return None


def _plan(
    guard: Any,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    before: Snapshot | Mapping[str, Any] | None,
) -> _Plan:
    rule = guard.rule
    sampled = guard._sampler is not None
    paths = [path for path, _ in flatten(params)]
    if len(set(paths)) != len(paths):
        raise _Bail
    parts, role_of = guard._state_parts(params, state)
    roles = roles_for(rule, role_of)
    new: dict[str, tuple[Tree, str, int]] = {}  # internal key -> (user's tree, prefix, offset in the walk)
    base = 0
    for _, key, prefix, tree in parts:
        new[key] = (tree, prefix, base)
        base += len(flatten(tree))
    history = before is not None
    old: dict[str, tuple[Tree, str, int]] = {}
    p0_ix: list[int] | None = None
    g0_ix: list[int] | None = None
    step0_ix: int | None = None
    draw = [(path, j) for j, (path, _) in enumerate(flatten(params))]
    draw_from_before = False
    if isinstance(before, Snapshot):
        if sampled and before.samples is None:
            raise _Bail
        p0_ix = _align(_locate(before.params, "", 0), paths)
        base = len(flatten(before.params))
        if before.grads is not None:
            g0_ix = _align(_locate(before.grads, "", base), paths)
            base += len(flatten(before.grads))
        if not isinstance(before.state, dict):
            raise _Bail
        for key, tree in before.state.items():
            old[key] = (tree, "", base)
            base += len(flatten(tree))
    elif before is not None:
        if type(before) is not dict or not before.keys() <= _BEFORE_KEYS:
            raise _Bail
        p_old = before.get("params", params)
        src = p_old if sampled else params
        base = 0
        for part, tree in before.items():
            n = len(flatten(tree))
            if part == "params":
                p0_ix = _align(_locate(tree, "", base), paths)
                draw = [(path, base + j) for j, (path, _) in enumerate(flatten(tree))]
                draw_from_before = True
            elif part == "grads" and tree is not None:
                g0_ix = _align(_locate(tree, _detect_prefix(src, tree), base), paths)
            elif part == "state":
                parts0, _ = guard._state_parts(src, tree)
                offset = base
                for _, key, prefix, sub in parts0:
                    old[key] = (sub, prefix, offset)
                    offset += len(flatten(sub))
            base += n
        if "step" in old and not isinstance(old["step"][0], Mapping):
            step0_ix = old["step"][2]
    values = {key: _rekey(tree, prefix) for key, (tree, prefix, _) in new.items()}
    scalar = {k for k, v in values.items() if _is_scalar_state(rule, k, roles, v)}
    if sampled and any(_is_arraylike(values[k]) for k in scalar):
        raise _Bail  # a counter kept as an array: the precise path decides what to gather
    keys = [k for k in new if k not in scalar and (k in old or not history)]
    s1_ix = {k: _align(_locate(new[k][0], new[k][1], new[k][2]), paths) for k in keys}
    s0_ix = {k: _align(_locate(old[k][0], old[k][1], old[k][2]), paths) for k in keys} if history else {}
    counters = []
    if history:
        for k in new:
            if k in old and k in scalar:
                if isinstance(old[k][0], Mapping):
                    raise _Bail
                counters.append((k, old[k][2], new[k][2]))
    step_ix = new["step"][2] if "step" in new and not isinstance(new["step"][0], Mapping) else None
    gp = _detect_prefix(params, grads)
    return _Plan(
        paths=paths,
        g_ix=_align(_locate(grads, gp, 0), paths),
        s1_ix=s1_ix,
        p0_ix=p0_ix,
        s0_ix=s0_ix,
        g0_ix=g0_ix,
        step_ix=step_ix,
        step0_ix=step0_ix,
        counters=counters,
        draw=draw,
        draw_from_before=draw_from_before,
        roles=roles,
    )


def fast_screen(
    self: Any,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    step: int | None,
    before: Snapshot | Mapping[str, Any] | None,
) -> tuple[bool, _Drawn | None]:
    """Screen one step without building a record: ``(True, _)`` when every invariant provably holds.

    It reads the arrays that :meth:`_precise` would check (the same trees, "before" values,
    step and sample) and hands them to :func:`optcheck.invariants.screen`, whose one-pass
    tests imply that the precise checks find nothing. Where each array sits in the user's
    trees is worked out once per tree structure (a :class:`_Plan`; a training loop passes
    the same structure every step), so a step costs one walk over each tree. Anything out
    of the ordinary (a non-array leaf, trees that do not line up, an invalid argument, a
    screen that trips) is left to :meth:`_precise`, which validates, checks and describes;
    the sample drawn here is returned with ``False`` so that both see the same coordinates.
    """
    drawn: _Drawn | None = None
    try:
        lp: list[Any] = []
        lg: list[Any] = []
        ls: list[Any] = []
        lb: list[Any] = []
        snap = before if type(before) is Snapshot else None
        if snap is not None:
            sig_b: Any = (
                "snapshot",
                _walk(snap.params, lb),
                None if snap.grads is None else _walk(snap.grads, lb),
                _walk(snap.state, lb),
                snap.samples is None,
            )
        elif before is None:
            sig_b = None
        elif type(before) is dict:
            sig_b = ("dict", _walk(before, lb))
        else:
            return False, None
        key = (_walk(params, lp), _walk(grads, lg), None if state is None else _walk(state, ls), sig_b)
        plan = self._plans.get(key, _NO_PLAN)
        if plan is _NO_PLAN:
            plan = _make_plan(self, params, grads, state, before)
            if len({_v.library_of(x) for x in (*lp, *lg, *ls, *lb) if _is_arraylike(x)}) > 1:
                plan = None  # arrays of several libraries: the precise path names them
            if len(self._plans) >= 64:
                self._plans.clear()
            self._plans[key] = plan
        if plan is None:
            return False, None
        assert isinstance(plan, _Plan)
        history = before is not None
        p1 = [_array_leaf(x) for x in lp]
        g = [_array_leaf(lg[j]) for j in plan.g_ix]
        s1 = {k: [_array_leaf(ls[j]) for j in ix] for k, ix in plan.s1_ix.items()}
        p0 = s0 = g0 = None
        if history:
            p0 = p1 if plan.p0_ix is None else [_array_leaf(lb[j]) for j in plan.p0_ix]
            s0 = {k: [_array_leaf(lb[j]) for j in ix] for k, ix in plan.s0_ix.items()}
            g0 = None if plan.g0_ix is None else [_array_leaf(lb[j]) for j in plan.g0_ix]
        if plan.step_ix is not None and (_scalar_step(ls[plan.step_ix]) or 0) < 0:
            return False, None  # a step entry that is not a whole number >= 0: named by the precise path
        if plan.step_ix is not None and _scalar_step(ls[plan.step_ix]) is None:
            return False, None
        if step is None:
            step = None if plan.step_ix is None else _scalar_step(ls[plan.step_ix])
            if step is None:
                if snap is not None:
                    snap_step = snap.step
                else:
                    snap_step = None if plan.step0_ix is None else _scalar_step(lb[plan.step0_ix])
                step = (snap_step + 1) if history and snap_step is not None else self.steps
        counters = [(k, lb[i0], ls[i1]) for k, i0, i1 in plan.counters]
        sampled = self._sampler is not None
        samples: Mapping[Path, Any] = {}
        shapes: Mapping[Path, tuple[int, ...]] = {}
        dtypes: Mapping[Path, Any] = {}
        if sampled:
            if snap is not None:
                assert snap.samples is not None  # a snapshot without samples has no plan here
                samples, shapes, dtypes = snap.samples, snap.shapes, snap.dtypes
            else:
                source = lb if plan.draw_from_before else lp
                drawn = self._draw_pairs([(path, source[j]) for path, j in plan.draw])
                samples, shapes, dtypes = drawn
        roles = plan.roles
        leaves = []
        for i, path in enumerate(plan.paths):
            x1, gi = p1[i], g[i]
            x0 = None if p0 is None else p0[i]
            s1i = {k: v[i] for k, v in s1.items()}
            s0i = {} if s0 is None else {k: v[i] for k, v in s0.items()}
            mut = {} if g0 is None else {"grads": (g0[i], gi)}
            if not sampled:
                base = x1 if x0 is None else x0
                if _shape(gi) != _shape(base):
                    return (
                        False,
                        drawn,
                    )  # a gradient shaped unlike its parameter: named by the precise path
                leaves.append(Leaf(path, _shape(base), base.dtype, x0, x1, gi, s0i, s1i, mut))
                continue
            # sampled: the structure on the full arrays, then the same coordinates of each array
            full = shapes.get(path)
            if full is None or _shape(x1) != full or x1.dtype != dtypes[path] or _shape(gi) != full:
                return False, drawn
            if any(_shape(x) != full for x in s1i.values()):
                return False, drawn
            idx = samples.get(path)
            lazy: dict[str, Callable[[], Any]] = {}
            if idx is not None:
                cache: dict[Any, Any] = {}
                x1, gi = _gather(x1, idx, cache), _gather(gi, idx, cache)
                s1i = {k: _gather(x, idx, cache) for k, x in s1i.items()}
                if snap is None:
                    # the "before" arrays are whole: check their layout, gather what the screens read
                    if x0 is not None:
                        if _shape(x0) != full:
                            return False, drawn
                        x0 = _gather(x0, idx, cache)
                    if mut:
                        if _shape(mut["grads"][0]) != full:
                            return False, drawn
                        mut = {"grads": (_gather(mut["grads"][0], idx, cache), gi)}
                    whole, s0i = s0i, {}
                    for k, x in whole.items():
                        if _shape(x) != full or x.dtype != s1i[k].dtype:
                            return False, drawn
                        if roles.get(k) in MONOTONE_ROLES:
                            s0i[k] = _gather(x, idx, cache)
                        else:
                            lazy[k] = functools.partial(_gather, x, idx, cache)
                elif mut:
                    mut = {"grads": (mut["grads"][0], gi)}
            leaves.append(
                Leaf(path, full, dtypes[path], x0, x1, gi, s0i, s1i, mut, sample=idx, lazy_s0=lazy or None)
            )
        ctx = Context(
            rule=self.rule,
            roles=roles,
            names={},
            key_prefix={},
            step=step,
            skip=self.skip if history else self.skip | _HISTORY_IDS,
            leaf_rules=self.overrides,
        )
        return screen(ctx, leaves, counters), drawn
    except (_Bail, ValueError, TypeError, IndexError, KeyError):
        return False, drawn
