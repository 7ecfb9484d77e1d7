"""The parameters being checked, as one float64 vector, and the way back to the user's layout.

:class:`Space` validates ``x`` (an array, a 0-d value or a nested dict of arrays), keeps its
values as one read-only float64 vector, and builds the tree ``f`` is called with at any
perturbed vector. Numpy leaves are handed to ``f`` as fresh float64 (or complex128) arrays, or
in their own float32/float16 dtype (complex64) with ``keep_dtype``;
torch tensors keep their own dtype and device (torch code is dtype-strict, so a float32 model
cannot be fed float64 inputs), and the perturbation actually applied is then the one that
survives rounding to that dtype (:meth:`Space.round_to_leaf`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._tree import Path, Tree, describe, flatten, path_str, unflatten, zip_trees

__all__ = ["Leaf", "Space", "is_torch_tensor", "to_numpy"]

FloatArray = NDArray[np.float64]


def is_torch_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch (einops style: look in ``sys.modules``)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any) -> Any:
    """A numpy view of ``x``: torch tensors are detached and moved to the CPU, the rest go through ``np.asarray``."""
    if is_torch_tensor(x):
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(x)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One array of ``x``: where it sits in the flat vector and how ``f`` wants it back."""

    path: Path
    shape: tuple[int, ...]
    offset: int
    size: int
    dtype: np.dtype[Any]  # the dtype ``f`` receives (float64 for numpy leaves)
    torch_dtype: Any = None  # for torch leaves: the tensor's dtype
    device: Any = None  # for torch leaves: the tensor's device

    @property
    def stop(self) -> int:
        """One past the last flat index of this leaf."""
        return self.offset + self.size

    @property
    def is_torch(self) -> bool:
        """Whether ``f`` receives this leaf as a torch tensor."""
        return self.torch_dtype is not None


def _first_bad(values: NDArray[Any]) -> str:
    bad = np.argwhere(~np.isfinite(values))
    where = tuple(int(i) for i in bad[0]) if bad.size else ()
    count = int(np.count_nonzero(~np.isfinite(values)))
    first = float(values[where])
    if not where:
        return str(first)
    more = f" ({count} non-finite entries)" if count > 1 else ""
    return f"{first} at index {where}{more}"


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


class Space:
    """``x`` as one float64 vector, with the leaves' key paths, shapes and dtypes.

    Raises ``TypeError`` for non-floating leaves (integers, booleans, complex, objects)
    and ``ValueError`` for empty or non-finite ones, naming the key path.
    """

    def __init__(
        self, x: Tree, name: str = "x", *, keep_dtype: bool | None = None, bare: bool = False
    ) -> None:
        self.name = name
        self.bare = bare and isinstance(x, Mapping)
        self.structure = x
        self.notes: list[str] = []  # remarks for the report (size-1 axes accepted, dtypes kept)
        if isinstance(x, Mapping) and not x:
            raise UsageError(f"{name} is an empty dict; there are no parameters to check")
        leaves: list[Leaf] = []
        chunks: list[FloatArray] = []
        offset = 0
        for path, value in flatten(x, name=name):
            where = path_str(name, path)
            if isinstance(value, np.ndarray) and type(value) is not np.ndarray:
                _v.check_array(where, value)  # np.matrix (whose * is a matrix product), masked arrays
            if isinstance(value, Mapping):  # pragma: no cover - flatten never yields mappings
                raise UsageTypeError(f"{where} is a dict; expected an array")
            torch_dtype = device = None
            if is_torch_tensor(value):
                if value.is_complex() or not value.is_floating_point():
                    raise UsageTypeError(
                        f"{where} is a torch tensor of dtype {value.dtype}; finite differences need "
                        f"real floating-point values: pass {where}.double()"
                    )
                if str(value.dtype) == "torch.bfloat16":
                    raise UsageTypeError(
                        f"{where} is a bfloat16 tensor; numpy cannot hold bfloat16 values, so pass "
                        f"{where}.float() (and compute f in float32) or {where}.double()"
                    )
                torch_dtype, device = value.dtype, value.device
                arr = to_numpy(value)
                eval_dtype = np.dtype(np.float64) if value.dtype.itemsize >= 8 else arr.dtype
            else:
                if isinstance(value, (str, bytes)) or value is None:
                    raise UsageTypeError(
                        f"{where} is {describe(value)}; expected an array of floating-point numbers"
                    )
                try:
                    arr = np.asarray(value)
                except Exception as exc:  # ragged lists and the like
                    raise UsageTypeError(
                        f"{where} could not be converted to an array ({exc}); expected an array of floats"
                    ) from None
                eval_dtype = np.dtype(np.float64)
                if arr.dtype.kind == "f" and arr.dtype.itemsize < 8 and keep_dtype is not False:
                    eval_dtype = arr.dtype  # float32/float16 code is checked in its own precision
            kind = arr.dtype.kind
            if kind in "iub":
                what = "boolean" if kind == "b" else "integer"
                raise UsageTypeError(
                    f"{where} has {what} dtype {arr.dtype}, but finite differences need floating-point "
                    f"values; convert it first, e.g. {where} = np.asarray({where}, dtype=np.float64)"
                )
            if kind == "c":
                raise UsageTypeError(
                    f"{where} has complex dtype {arr.dtype}; the gradient checker checks real parameters "
                    "(it makes the complex perturbations itself, for method='complex-step')"
                )
            if kind != "f":
                raise UsageTypeError(
                    f"{where} is an array of dtype {arr.dtype}; expected an array of floating-point numbers"
                )
            if arr.size == 0:
                raise UsageError(
                    f"{where} is empty (shape {arr.shape}); there is nothing to check: leave it out of {name}"
                )
            flat = np.asarray(arr, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(flat)):
                raise UsageError(
                    f"{where} contains {_first_bad(np.asarray(arr, dtype=np.float64))}; the gradient can only "
                    "be checked at a point where every parameter is finite"
                )
            leaves.append(
                Leaf(
                    path=path,
                    shape=tuple(int(d) for d in arr.shape),
                    offset=offset,
                    size=int(arr.size),
                    dtype=eval_dtype,
                    torch_dtype=torch_dtype,
                    device=device,
                )
            )
            chunks.append(flat)
            offset += int(arr.size)
        self.leaves: tuple[Leaf, ...] = tuple(leaves)
        self.n = offset
        vec = np.concatenate(chunks) if len(chunks) > 1 else chunks[0].copy()
        vec.flags.writeable = False
        self.x: FloatArray = vec
        scale = np.maximum(1.0, np.abs(vec))
        scale.flags.writeable = False
        self.scale: FloatArray = scale
        self._starts = np.array([leaf.offset for leaf in self.leaves])
        self._needs_rounding = any(leaf.dtype != np.float64 for leaf in self.leaves)

    # -- names -----------------------------------------------------------------
    def key(self, leaf: int) -> str:
        """The user's name for leaf number ``leaf``: ``x['W1']`` (or ``x`` for a single array).

        With ``bare`` (the inputs of a layer), the first key is the name itself: ``w``, ``x``.
        """
        return self.key_path(self.leaves[leaf].path)

    def leaf_of(self, flat_index: int) -> int:
        """The leaf that holds flat index ``flat_index``."""
        return int(np.searchsorted(self._starts, flat_index, side="right") - 1)

    def index_of(self, flat_index: int) -> tuple[int, ...]:
        """The index of flat index ``flat_index`` within its own leaf (``()`` for 0-d leaves)."""
        leaf = self.leaves[self.leaf_of(flat_index)]
        if not leaf.shape:
            return ()
        return tuple(int(i) for i in np.unravel_index(flat_index - leaf.offset, leaf.shape))

    # -- values ----------------------------------------------------------------
    def round_to_leaf(self, idx: NDArray[np.intp], values: FloatArray) -> FloatArray:
        """``values`` (meant for flat indices ``idx``) rounded to the dtype ``f`` receives them in."""
        if not self._needs_rounding:
            return values
        out = values.copy()
        owners = np.searchsorted(self._starts, idx, side="right") - 1
        for k in np.unique(owners):
            leaf = self.leaves[int(k)]
            if leaf.dtype != np.float64:
                sel = owners == k
                out[sel] = values[sel].astype(leaf.dtype).astype(np.float64)
        return np.asarray(out, dtype=np.float64)

    def tree(self, vec: NDArray[Any]) -> Tree:
        """The tree ``f`` is called with at the flat vector ``vec`` (real or complex); always fresh arrays."""
        complex_ = np.iscomplexobj(vec)
        dtype = np.complex128 if complex_ else np.float64
        return self._wrap([np.array(vec[lf.offset : lf.stop], dtype=dtype) for lf in self.leaves], complex_)

    def tree_at(self, sel: slice | NDArray[np.intp], values: FloatArray, imag: bool = False) -> Tree:
        """The tree at ``x`` with the entries ``sel`` replaced by ``values`` (``imag``: ``x + 1j·values`` there).

        ``sel`` is a slice of flat indices (a range) or an array of flat indices; only the
        leaves it touches are changed, every leaf is a fresh array.
        """
        dtype = np.complex128 if imag else np.float64
        segs: list[NDArray[Any]] = []
        for lf in self.leaves:
            seg: NDArray[Any] = np.array(self.x[lf.offset : lf.stop], dtype=dtype)
            if isinstance(sel, slice):
                lo, hi = max(sel.start, lf.offset), min(sel.stop, lf.stop)
                if lo < hi:
                    part = values[lo - sel.start : hi - sel.start]
                    if imag:
                        seg[lo - lf.offset : hi - lf.offset] += 1j * part
                    else:
                        seg[lo - lf.offset : hi - lf.offset] = part
            else:
                inside = (sel >= lf.offset) & (sel < lf.stop)
                if np.any(inside):
                    where = sel[inside] - lf.offset
                    if imag:
                        seg[where] += 1j * values[inside]
                    else:
                        seg[where] = values[inside]
            segs.append(seg)
        return self._wrap(segs, imag)

    def _wrap(self, segs: list[NDArray[Any]], complex_: bool) -> Tree:
        parts: list[Any] = []
        for leaf, seg in zip(self.leaves, segs, strict=True):
            arr = seg.reshape(leaf.shape)
            if not leaf.is_torch and leaf.dtype != np.float64:
                arr = arr.astype(np.complex64 if complex_ else leaf.dtype)
            if leaf.is_torch:
                import torch  # only reached when the user passed tensors, so torch is loaded already

                dtype = leaf.torch_dtype
                if complex_:
                    dtype = torch.complex128 if leaf.torch_dtype.itemsize >= 8 else torch.complex64
                parts.append(torch.as_tensor(arr, dtype=dtype, device=leaf.device))
            else:
                parts.append(arr)
        return unflatten(self.structure, parts)

    def split(self, vec: FloatArray) -> Tree:
        """``vec`` laid out like ``x``, as float64 numpy arrays (for reports)."""
        return unflatten(
            self.structure,
            [np.array(vec[leaf.offset : leaf.stop]).reshape(leaf.shape) for leaf in self.leaves],
        )

    def user_x(self) -> Tree:
        """A copy of ``x`` in the user's own types (for calling a ``grad`` callable)."""
        parts = []
        for _, value in flatten(self.structure):
            if is_torch_tensor(value):
                parts.append(value.detach().clone())
            else:
                parts.append(np.array(value, copy=True))
        return unflatten(self.structure, parts)

    # -- the analytic gradient ---------------------------------------------------
    def gradient(self, grad: Tree, name: str) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Validate ``grad`` against ``x`` and flatten it.

        Returns ``(g, eps, rms)``: the gradient as a float64 vector, the machine epsilon of the
        dtype each entry was given in (its own round-off), and the root-mean-square of the
        finite entries of the leaf each entry belongs to (the scale of its array).
        """
        pairs = zip_trees({self.name: self.structure, name: grad})
        g = np.empty(self.n)
        eps = np.empty(self.n)
        rms = np.empty(self.n)
        for leaf, (path, (_, gv)) in zip(self.leaves, pairs, strict=True):
            where = path_str(name, path)
            if isinstance(gv, np.ndarray) and type(gv) is not np.ndarray:
                _v.check_array(where, gv)  # np.matrix, masked arrays (their hidden entries would be compared)
            if isinstance(gv, (str, bytes)) or gv is None:
                raise UsageTypeError(
                    f"{where} is {describe(gv)}; expected an array with the shape of {self.key_path(path)}"
                )
            try:
                arr = to_numpy(gv)
            except Exception as exc:
                raise UsageTypeError(f"{where} could not be converted to an array ({exc})") from None
            shape = tuple(int(d) for d in arr.shape)
            if shape != leaf.shape and _squeezed(shape) == _squeezed(leaf.shape):
                self.notes.append(
                    f"{where} has shape {shape} and {self.key_path(path)} has shape {leaf.shape}: they differ "
                    "only by axes of size 1, so the gradient was compared entry by entry in the shape of "
                    f"{self.key_path(path)}"
                )
                arr = np.reshape(arr, leaf.shape)
                shape = leaf.shape
            if shape != leaf.shape:
                raise UsageError(
                    f"{where} has shape {shape} but {self.key_path(path)} has shape {leaf.shape}; "
                    f"{name} must have the shape of {self.name}"
                )
            kind = arr.dtype.kind
            if kind == "c":
                raise UsageTypeError(f"{where} has complex dtype {arr.dtype}; expected a real gradient")
            if kind not in "fiu":
                raise UsageTypeError(
                    f"{where} has dtype {arr.dtype}; expected an array of floating-point numbers"
                )
            seg = slice(leaf.offset, leaf.stop)
            g[seg] = np.asarray(arr, dtype=np.float64).reshape(-1)
            eps[seg] = np.finfo(arr.dtype).eps if kind == "f" else np.finfo(np.float64).eps
            finite = g[seg][np.isfinite(g[seg])]
            rms[seg] = float(np.sqrt(np.mean(finite**2))) if finite.size else 0.0
        return g, eps, rms

    def key_path(self, path: Path) -> str:
        """``x['W1']`` for a key path (``W1`` with ``bare``)."""
        if self.bare and path:
            return path_str(str(path[0]), path[1:])
        return path_str(self.name, path)

    @property
    def low_precision(self) -> bool:
        """Whether some leaf is handed to ``f`` in a dtype with less precision than float64."""
        return self._needs_rounding

    def input_eps(self) -> FloatArray:
        """Per flat entry, the machine epsilon of the dtype ``f`` receives it in."""
        out = np.empty(self.n)
        for leaf in self.leaves:
            out[leaf.offset : leaf.stop] = float(np.finfo(leaf.dtype).eps)
        return out
