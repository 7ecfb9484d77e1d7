"""The guard's precise path: every invariant on one step, with the records that describe what broke."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._core.arrays import is_array as _is_arraylike
from .._core.arrays import shape as _shape
from .._core.errors import UsageError
from .._core.tree import Path, Tree, flatten, unflatten
from ..invariants import (
    Context,
    Violation,
    check_structure,
    prepare,
    run_checks,
    sort_violations,
)
from ._config import (
    _detect_prefix,
    _rekey,
)
from ._sampling import (
    Snapshot,
    _Drawn,
    _gather,
    _is_number,
    _sample_tree,
    _scalar_step,
)
from ._shadow import shadow_check

# errors from the shared checks name the arguments of Guard.check (not those of check_update)
_GUARD_LABELS = {
    "new_params": "params",
    "new_state": "state",
    "state": "before['state']",
    "params": "before['params']",
}
_GUARD_LABELS_AFTER_ONLY = {**_GUARD_LABELS, "before['params']": "params", "params": "params"}


def precise_check(
    self: Any,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    step: int | None,
    before: Snapshot | Mapping[str, Any] | None,
    drawn: _Drawn | None,
    *,
    param_name: str | None = None,
    grads_name: str | None = None,
) -> list[Violation]:
    """Every invariant, with the records that describe what broke (``drawn``: the sample to use)."""
    trees, role_of, snames, prefixes = self._split_state(params, state)
    gp = _detect_prefix(params, grads)
    if gp:
        prefixes["grads"] = gp
    grads_k = _rekey(grads, gp)
    names = {
        "params": param_name or self.names.get("params", "params"),
        "grads": grads_name or self.names.get("grads", "grads"),
        **snames,
    }
    # before values
    snap: Snapshot | None = before if isinstance(before, Snapshot) else None
    if snap is None and before is not None:
        if not isinstance(before, Mapping):
            raise UsageError(
                f"before must be a Snapshot (guard.snapshot(...)) or a dict, got {type(before).__name__}"
            )
        bad = sorted(set(before) - {"params", "grads", "state"})
        if bad:
            raise UsageError(
                f"before has unexpected key(s) {bad}; expected some of ['grads', 'params', 'state']"
            )
        if self._sampler is not None:
            snap = self._snapshot(
                params=before.get("params", params),
                grads=before.get("grads"),
                state=before.get("state"),
                drawn=drawn,
            )
        else:
            s0, _, _, _ = self._split_state(params, before.get("state"), "before['state']")
            bg = before.get("grads")
            snap = Snapshot(
                params=before.get("params", params),
                grads=None if bg is None else _rekey(bg, _detect_prefix(params, bg)),
                state=s0,
                step=_scalar_step(s0.get("step")),
            )
    if step is None:
        step = _scalar_step(trees.get("step"))
        if step is None:
            step = (snap.step + 1) if snap is not None and snap.step is not None else self.steps
    history = snap is not None
    new_state = dict(trees)
    skip = self.skip
    if not history:
        # only the values after the step: no step-over-step invariants
        skip = skip | {"update-without-gradient", "update-too-large", "accumulator-decreased"}
    pre: list[Violation] = []
    samples = snap.samples if snap is not None else None
    if self._sampler is not None and samples is None and snap is None:
        samples, shapes, dtypes = drawn if drawn is not None else self._draw(params)
    elif snap is not None and samples is not None:
        shapes, dtypes = snap.shapes, snap.dtypes
    if samples is not None:
        # sampled: structure checks on the full arrays, then gather the same coordinates
        params_s, new_state, keep = gather_after(
            self, params, new_state, samples, shapes, dtypes, names, prefixes, step, pre
        )
        g_s = _sample_tree(grads_k, samples)
        old_p = snap.params if snap is not None else params_s
        before_map: dict[str, Any] = {"params": old_p, "state": snap.state if snap is not None else {}}
        if snap is not None and snap.grads is not None:
            before_map["grads"] = snap.grads
        ctx, leaves, counters = prepare(
            self.rule,
            old_p,
            g_s,
            before_map["state"],
            params_s,
            new_state,
            before=before_map,
            names=names,
            step=step,
            roles=role_of,
            key_prefix=prefixes,
            skip=skip,
            overrides=self.overrides,
            history=history,
            labels=_GUARD_LABELS if history else _GUARD_LABELS_AFTER_ONLY,
            state_keys=snames,
        )
        for leaf in leaves:
            leaf.shape = shapes[leaf.path]
            leaf.dtype = dtypes[leaf.path]
            leaf.sample = samples.get(leaf.path)
        leaves = [leaf for leaf in leaves if leaf.path in keep]
    else:
        old_p = snap.params if snap is not None else params
        before_map = {"params": old_p, "state": snap.state if snap is not None else {}}
        if snap is not None and snap.grads is not None:
            before_map["grads"] = snap.grads
        ctx, leaves, counters = prepare(
            self.rule,
            old_p,
            grads_k,
            before_map["state"],
            params,
            new_state,
            before=before_map,
            names=names,
            step=step,
            roles=role_of,
            key_prefix=prefixes,
            skip=skip,
            overrides=self.overrides,
            history=history,
            labels=_GUARD_LABELS if history else _GUARD_LABELS_AFTER_ONLY,
            state_keys=snames,
        )
    found = run_checks(ctx, leaves, counters)
    if self.shadow and snap is not None and "differs-from-reference" not in self.skip:
        found.extend(shadow_check(self, ctx, leaves, step))
    found = sort_violations([*pre, *found])
    if self._sampler is not None:
        for v in found:
            ok = v.path is not None and v.index is not None and v.shape and len(v.index) == len(v.shape)
            if ok and all(0 <= i < d for i, d in zip(v.index, v.shape, strict=True)):  # type: ignore[arg-type]
                self._sampler.remember(v.path, int(np.ravel_multi_index(v.index, v.shape)))  # type: ignore[arg-type]
    return found


def gather_after(
    self: Any,
    params: Tree,
    new_state: dict[str, Any],
    samples: Mapping[Path, np.ndarray | None],
    shapes: Mapping[Path, tuple[int, ...]],
    dtypes: Mapping[Path, Any],
    names: Mapping[str, str],
    prefixes: Mapping[str, str],
    step: int | None,
    out: list[Violation],
) -> tuple[Tree, dict[str, Any], set[Path]]:
    ctx = Context(rule=self.rule, roles={}, names=names, key_prefix=prefixes, step=step, skip=self.skip)
    keep: set[Path] = set()
    shapes_ok: dict[Path, bool] = {}
    for path, p in flatten(params):
        full = shapes.get(path)
        if full is None:
            continue
        changed = check_structure(ctx, "params", path, full, dtypes[path], p, out)
        shapes_ok[path] = not changed
        if not changed:
            keep.add(path)
    out[:] = [v for v in out if v.id not in self.skip]
    for key, tree in new_state.items():
        if _is_number(tree):
            continue
        for path, x in flatten(tree):
            full = shapes.get(path)
            if full is not None and _shape(x) != full and shapes_ok.get(path, False):
                check_structure(ctx, key, path, full, getattr(x, "dtype", None), x, out)
                keep.discard(path)

    def gather_tree(tree: Tree) -> Tree:
        leaves = []
        for path, x in flatten(tree):
            idx = samples.get(path)
            ok = path in keep and _is_arraylike(x) and _shape(x) == shapes.get(path)
            if idx is None or not ok:
                leaves.append(x)  # not gathered: a shape-changed leaf (reported) or a non-array
            else:
                leaves.append(_gather(x, idx, {}))
        return unflatten(tree, leaves)

    params_s = gather_tree(params)
    state_s = {k: (v if _is_number(v) else gather_tree(v)) for k, v in new_state.items()}
    return params_s, state_s, keep
