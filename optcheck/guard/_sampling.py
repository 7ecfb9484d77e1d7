"""What the guard copies before a step: :class:`Snapshot`, the sampler and the tree helpers it uses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as _device

from .._core.arrays import copy as _copy
from .._core.arrays import is_array as _is_arraylike
from .._core.arrays import is_torch as _is_torch
from .._core.arrays import shape as _shape
from .._core.arrays import to_numpy
from .._core.tree import Path, Tree, flatten, unflatten

#: A sample drawn for one step: flat indices, full shapes and dtypes by key path.
_Drawn = tuple[dict[Path, Any], dict[Path, tuple[int, ...]], dict[Path, Any]]


class _Sampler:
    """Flat sample indices per key path, the previously bad ones always included."""

    def __init__(self, k: int, seed: int) -> None:
        self.k = k
        self.rng = np.random.default_rng(seed)
        self.bad: dict[Path, list[int]] = {}

    def draw(self, path: Path, n: int) -> np.ndarray | None:
        if n <= self.k:
            return None
        idx = self.rng.integers(0, n, self.k)
        bad = [i for i in self.bad.get(path, ()) if i < n]
        if bad:
            idx = np.concatenate([np.asarray(bad, dtype=idx.dtype), idx])
        idx.sort()  # memory order: a faster gather; a repeated index is harmless
        return idx

    def remember(self, path: Path, flat: int) -> None:
        lst = self.bad.setdefault(path, [])
        if flat not in lst:
            lst.append(flat)
            del lst[:-32]


def _gather(x: Any, idx: np.ndarray, cache: dict[Any, Any]) -> Any:
    if type(x) is np.ndarray:
        return x.reshape(-1).take(idx)
    xp = array_namespace(x)
    dev = _device(x)
    key = (id(xp), str(dev))
    ix = cache.get(key)
    if ix is None:
        ix = xp.asarray(idx, device=dev) if dev is not None else xp.asarray(idx)
        cache[key] = ix
    return xp.take(xp.reshape(x, (-1,)), ix)


@dataclasses.dataclass
class Snapshot:
    """What :meth:`Guard.snapshot` copied before a step.

    ``params``, ``grads`` and ``state`` (rule keys -> trees) are copies of the whole
    arrays, or, when the guard samples, trees of 1-d arrays holding the sampled
    coordinates (``samples`` maps each key path to its flat indices, ``shapes`` and
    ``dtypes`` to the full shapes and dtypes). ``step`` is the step counter before the step.
    """

    params: Tree
    grads: Tree | None
    state: dict[str, Any]
    samples: dict[Path, np.ndarray | None] | None = None
    shapes: dict[Path, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    dtypes: dict[Path, Any] = dataclasses.field(default_factory=dict)
    step: int | None = None


def _copy_tree(tree: Tree) -> Tree:
    leaves = flatten(tree)
    return unflatten(tree, [_copy(x) for _, x in leaves])


def _sample_tree(tree: Tree, samples: Mapping[Path, np.ndarray | None]) -> Tree:
    leaves = []
    for path, x in flatten(tree):
        idx = samples.get(path)
        if idx is None or not _is_arraylike(x):
            leaves.append(_copy(x) if _is_arraylike(x) else x)
        else:
            leaves.append(_gather(x, idx, {}))
    return unflatten(tree, leaves)


def _changed(before: Any, after: Any) -> bool:
    """Whether a tree differs from its value before the step (structure, shape or any entry; NaN equals NaN)."""
    b, a = flatten(before), flatten(after)
    if [p for p, _ in b] != [p for p, _ in a]:
        return True
    for (_, x0), (_, x1) in zip(b, a, strict=True):
        try:
            n0, n1 = np.asarray(to_numpy(x0)), np.asarray(to_numpy(x1))
        except (TypeError, ValueError):
            return x0 is not x1
        if n0.shape != n1.shape or not np.array_equal(n0, n1, equal_nan=n0.dtype.kind in "fc"):
            return True
    return False


def _is_number(x: Any) -> bool:
    if type(x) is np.ndarray or type(x) is dict:
        return False
    if isinstance(x, Mapping):
        return False
    if isinstance(x, (int, float, np.generic)) and not isinstance(x, bool):
        return True
    return _is_arraylike(x) and len(_shape(x)) == 0 and x is not None and _is_torch(x)


def _scalar_step(x: Any) -> int | None:
    if x is None or isinstance(x, Mapping):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return int(v) if math.isfinite(v) and v == int(v) else None


#: The invariants that compare a step with the values before it.
_HISTORY_IDS = frozenset({"update-without-gradient", "update-too-large", "accumulator-decreased"})


_BEFORE_KEYS = frozenset({"params", "grads", "state"})
