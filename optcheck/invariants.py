"""Invariants an update rule must keep, checked at the moment they break.

Every check is a pure function over arrays or (nested) dicts of arrays (numpy,
``array_api_strict``, torch tensors on any device) and returns a list of
:class:`Violation` records, empty when everything holds. The checks are written
against the array API: on the fast path only one boolean per array crosses to
the host, and on a violation only the few entries the message quotes.

The invariants, by id (``docs/invariants.md`` has the full list with messages):

* ``non-finite``: NaN or inf in params, grads, state or the update; an array that
  *became* non-finite in this step is told apart from one that already was on input;
* ``negative-second-moment``: a second moment (or its running maximum) below zero; for
  centered RMSprop, v − ḡ² below zero by more than rounding;
* ``sqrt-of-negative``: the argument of a square root is negative (centered RMSprop's
  v − ḡ² rounding below zero);
* ``accumulator-decreased``: Adagrad's sum of squares or AMSGrad's maximum went down;
* ``step-not-incremented``: the step counter did not grow by exactly one;
* ``update-without-gradient``: zero gradient, no momentum and no decay, yet the parameter
  moved (the signature of epsilon added outside the division); judged only when every
  momentum-like state of the rule is among the states given (a hidden first moment may move
  the parameter, and its value is unknown);
* ``update-too-large``: a coordinate moved further than the rule's bound
  (:meth:`optcheck.rules.Rule.update_bound`: about lr for Adam, exactly lr for Lion);
* ``shape-changed``, ``dtype-changed``: an array came back with another shape or dtype;
* ``input-mutated``: an input that must not change (the gradients) was changed in place;
* ``differs-from-reference``: raised by :class:`optcheck.Guard` with ``shadow=True``.

:func:`check_update` runs every invariant that applies to one step of a rule; the
guard, the audit and the property tests all go through it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ._core import validate as _v
from ._core.arrays import namespace
from ._core.errors import Error, UsageError
from ._core.message import count_first, first_at
from ._core.message import fmt_index as fmt_index
from ._core.message import fmt_number as fmt_number
from ._core.message import related_text as _related_text
from ._core.tree import Path, Tree, describe, path_str
from .rules import Rule
from .rules._base import MONOTONE_ROLES, NONNEGATIVE_ROLES, ROLES

__all__ = [
    "INVARIANTS",
    "REGISTRY",
    "Invariant",
    "InvariantError",
    "InvariantWarning",
    "Violation",
    "accumulator_decreased",
    "check_update",
    "dtype_changed",
    "input_mutated",
    "negative_second_moment",
    "non_finite",
    "raise_if",
    "registry_markdown",
    "shape_changed",
    "sqrt_of_negative",
    "step_not_incremented",
    "update_too_large",
    "update_without_gradient",
]

Array = Any

INVARIANTS: tuple[str, ...] = (
    "shape-changed",
    "dtype-changed",
    "input-mutated",
    "step-not-incremented",
    "negative-second-moment",
    "sqrt-of-negative",
    "accumulator-decreased",
    "non-finite",
    "update-without-gradient",
    "update-too-large",
    "differs-from-reference",
)
"""Every invariant id, in the order a report lists them (causes before consequences)."""

#: State roles (``Rule.state_roles``, defined in :data:`optcheck.rules._base.ROLES`) and what the
#: invariants do with them: never negative, never decreasing, carrying motion without a gradient.
KNOWN_ROLES = frozenset(ROLES)
MOVING_ROLES = frozenset({"first-moment", "momentum"})
COUNTER_ROLES = frozenset({"counter"})

#: Slack on :meth:`Rule.update_bound`: a step may exceed the bound by this factor (plus rounding).
UPDATE_SLACK = 1.001


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def _json_float(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken invariant, found in one array.

    * ``id``: the stable kebab-case name of the invariant (see :data:`INVARIANTS`);
    * ``where``: the user's own name and key path (``S['dW1']``); ``path``: the key path of
      the parameter it belongs to (``("W1",)``), when it belongs to one;
    * ``step``: the step at which it broke, when known;
    * ``shape``, ``dtype``: of the array (its full shape, also when only a sample was checked);
    * ``count``: how many entries are bad; ``counts`` breaks it down (``nan``, ``posinf``,
      ``neginf``, ``negative``, ...); ``size``: how many entries were checked;
    * ``index``: the first bad index (n-d); ``value``: the array's value there;
    * ``related``: the values of the related inputs at that index (``g``, ``S``, ``W``, ...);
    * ``became``: for ``non-finite`` and ``negative-second-moment``, whether the array went
      bad in this step (``True``), was already bad on input (``False``) or unknown (``None``);
    * ``sampled``: whether only a sample of the entries was checked;
    * ``message``: one plain sentence; ``hint``: the likely cause and the fix.
    """

    id: str
    where: str
    message: str
    hint: str = ""
    path: tuple[str, ...] | None = None
    step: int | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    count: int = 0
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    size: int | None = None
    index: tuple[int, ...] | None = None
    value: float | None = None
    related: Mapping[str, float] = dataclasses.field(default_factory=dict)
    became: bool | None = None
    sampled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``)."""
        return {
            "id": self.id,
            "where": self.where,
            "path": None if self.path is None else list(self.path),
            "step": self.step,
            "shape": None if self.shape is None else list(self.shape),
            "dtype": self.dtype,
            "count": self.count,
            "counts": dict(self.counts),
            "size": self.size,
            "index": None if self.index is None else list(self.index),
            "value": _json_float(self.value),
            "related": {k: _json_float(v) for k, v in self.related.items()},
            "became": self.became,
            "sampled": self.sampled,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


def sort_violations(violations: Iterable[Violation]) -> list[Violation]:
    order = {k: i for i, k in enumerate(INVARIANTS)}

    def key(v: Violation) -> tuple[int, int]:
        # a non-finite *input* is a cause, reported before everything it explains
        if v.id == "non-finite" and v.became is False:
            return (-1, 0)
        return (order.get(v.id, len(order)), 0)

    return sorted(violations, key=key)


def _render(violations: list[Violation]) -> str:
    if not violations:
        return "no invariant was violated"
    first = violations[0]
    lines = [first.message]
    if first.hint:
        lines.append(f"Hint: {first.hint}")
    rest = violations[1:]
    if rest:
        shown = "; ".join(f"{v.id} in {v.where}" for v in rest[:6])
        more = f" and {len(rest) - 6} more" if len(rest) > 6 else ""
        lines.append(f"Also at this step: {shown}{more}.")
    return "\n".join(lines)


class InvariantError(Error, FloatingPointError):
    """An update broke an invariant. ``.violations`` holds the :class:`Violation` records, first cause first.

    The message is the first violation's sentence and hint, then a one-line list of
    the others.
    """

    def __init__(self, violations: Iterable[Violation], message: str | None = None) -> None:
        self.violations: list[Violation] = list(violations)
        super().__init__(message if message is not None else _render(self.violations))


class InvariantWarning(RuntimeWarning):
    """The warning :class:`optcheck.Guard` issues in ``mode="warn"``."""


def raise_if(violations: list[Violation]) -> list[Violation]:
    """Raise :class:`InvariantError` when ``violations`` is not empty; return it otherwise (empty)."""
    if not isinstance(violations, (list, tuple)) or not all(isinstance(v, Violation) for v in violations):
        raise _v.UsageTypeError(
            f"violations is invalid: expected a list of Violation records (what the checkers return), "
            f"got {_v.describe_value(violations)}."
        )
    if violations:
        raise InvariantError(sort_violations(violations))
    return violations


# ---------------------------------------------------------------------------
# Array helpers (array API; numpy, array_api_strict and torch tensors)
# ---------------------------------------------------------------------------


_xp = namespace


def _as_array(x: Any, where: str, allow_none: bool = False) -> Array:
    """An array for a leaf: arrays pass through; numbers and lists of numbers become numpy arrays.

    ``None`` (a state entry a rule does not keep for this parameter) stays ``None``.
    """
    if x is None and allow_none:
        return None
    if type(x) is np.ndarray and x.dtype.kind in "biuf":
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type):
        _v.check_array(where, x)  # np.matrix, masked arrays, object/string dtypes: a named error
        if type(x) is np.ndarray:
            return x
        try:
            array_namespace(x)
        except TypeError:
            arr = np.asarray(x)
            if arr.dtype.kind not in "biuf":
                raise _v.UsageTypeError(f"{where} is {describe(x)}; expected a numeric array") from None
            return arr
        return x
    if isinstance(x, (bool, int, float, np.number, list, tuple)):
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError):
            arr = np.asarray(None)
        if arr.dtype.kind in "biuf":
            return arr  # a number, or a list of numbers, read as a numpy array
    raise _v.UsageTypeError(
        f"{where} is {describe(x)}; expected an array (numpy array, torch tensor) or a number"
    )


def _shape(x: Array) -> tuple[int, ...]:
    if type(x) is np.ndarray:
        return x.shape  # type: ignore[no-any-return]
    return tuple(int(d) for d in x.shape)


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _is_float(xp: Any, x: Array) -> bool:
    try:
        return bool(xp.isdtype(x.dtype, "real floating"))
    except (AttributeError, TypeError):  # pragma: no cover - very old namespaces
        return bool(np.dtype(x.dtype).kind == "f")


def _flat(xp: Any, x: Array) -> Array:
    return xp.reshape(x, (-1,))


def _to_float(x: Any) -> float:
    return float(x)


# float dtype -> (unsigned integer view, largest bit pattern of a finite value >= +0.0)
_FINITE_BITS: dict[np.dtype[Any], tuple[type[np.unsignedinteger[Any]], int]] = {
    np.dtype(np.float32): (np.uint32, 0x7F7FFFFF),
    np.dtype(np.float64): (np.uint64, 0x7FEFFFFFFFFFFFFF),
}


def _np_float(x: Any) -> bool:
    """A C-contiguous numpy float32/float64 array (the arrays the one-pass numpy screens handle)."""
    return type(x) is np.ndarray and x.dtype in _FINITE_BITS and x.flags.c_contiguous


def _all_finite(xp: Any, x: Array) -> bool:
    """Whether every entry of ``x`` is finite (exact).

    One pass on the happy path: a sum (numpy: the BLAS dot x·x) is finite iff every entry
    is, unless it overflows; only then are the entries looked at one by one.
    """
    with np.errstate(all="ignore"):  # the overflow or NaN of the screen is not the user's warning
        return _all_finite_quiet(xp, x)


def _all_finite_quiet(xp: Any, x: Array) -> bool:
    if xp is np:
        if x.dtype.kind not in "fc":
            return True
        if _np_float(x) and x.size:
            # one BLAS pass: x·x is finite iff every entry is (unless it overflows; then look closer)
            flat = x.reshape(-1)
            if math.isfinite(float(flat.dot(flat))):
                return True
        return bool(np.isfinite(x).all())
    if not _is_float(xp, x):
        return True
    # a NaN or an infinity makes the sum non-finite (+inf + -inf is NaN); a finite sum proves them absent
    if math.isfinite(float(xp.sum(x))):
        return True
    return bool(xp.all(xp.isfinite(x)))


def _all_finite_many(arrays: list[Array]) -> bool:
    """Whether every entry of every array is finite (exact); numpy float arrays go two to a BLAS dot.

    a·b is finite only if every a_i and b_i is: a NaN or an infinity turns its product into
    NaN (times 0) or ±inf, and a sum with a non-finite term is non-finite. When a pair's dot
    is not finite (or overflows), each array is checked on its own. Call it under
    ``np.errstate(all="ignore")`` (as :func:`screen` does).
    """
    single: list[Array] = []
    paired: dict[tuple[Any, int], Array] = {}
    for x in arrays:
        if _np_float(x) and x.size:
            key = (x.dtype, x.size)
            other = paired.pop(key, None)
            if other is None:
                paired[key] = x
                continue
            a, b = other.reshape(-1), x.reshape(-1)
            if math.isfinite(float(a.dot(b))):
                continue
            single.extend((other, x))
        else:
            single.append(x)
    single.extend(paired.values())
    return all(_all_finite_quiet(_xp(x), x) for x in single)


_CHUNK = 1 << 18  # numpy fast paths work through flat chunks of this many entries (L2-sized temporaries)

_SCRATCH = threading.local()


def _scratch(dtype: Any, n: int) -> np.ndarray:
    """A per-thread reusable 1-d buffer of at least ``n`` entries (screens allocate nothing per call)."""
    bufs: dict[Any, np.ndarray] | None = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    buf = bufs.get(dtype)
    if buf is None or buf.shape[0] < n:
        buf = bufs[dtype] = np.empty(max(n, 1), dtype)
    return buf[:n]


def _np_chunks(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """Flat, aligned chunks of C-contiguous numpy arrays of one shape (views, no copies)."""
    flats = [a.reshape(-1) for a in arrays]
    n = flats[0].shape[0]
    for start in range(0, n, _CHUNK):
        yield tuple(f[start : start + _CHUNK] for f in flats)


def _np_contiguous(*arrays: Any) -> bool:
    return all(type(a) is np.ndarray and a.flags.c_contiguous for a in arrays)


def _count_first(xp: Any, mask: Array) -> tuple[int, int]:
    """How many entries of a boolean mask are set and the flat index of the first one (-1: none)."""
    flat = _flat(xp, mask)
    if xp is np:
        n = int(np.count_nonzero(flat))
        return n, (int(np.argmax(flat)) if n else -1)
    as_int = xp.astype(flat, xp.int64)
    n = int(xp.sum(as_int))
    if not n:
        return 0, -1
    return n, int(xp.argmax(xp.astype(flat, xp.int8)))


def _at(xp: Any, x: Array | None, j: int) -> float | None:
    if x is None:
        return None
    flat = _flat(xp, x)
    if j < 0 or j >= int(flat.shape[0]):
        return None
    return _to_float(flat[j])


# ---------------------------------------------------------------------------
# The step record the invariants run on
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Leaf:
    """One parameter's arrays for one step (full arrays, or 1-d gathers at ``sample``).

    ``p0``/``p1``: the parameter before/after; ``g``: the gradient; ``s0``/``s1``: state
    entries before/after by rule key; ``mut``: label -> (snapshot, now) pairs for the
    inputs that must not change. ``sample``: flat indices into the full arrays (None: full).
    """

    path: Path
    shape: tuple[int, ...]
    dtype: Any
    p0: Array | None
    p1: Array | None
    g: Array | None
    s0: dict[str, Array]
    s1: dict[str, Array]
    mut: dict[str, tuple[Array, Array]]
    sample: np.ndarray | None = None
    skip_elementwise: bool = False
    finite: set[str] = dataclasses.field(default_factory=set)  # state keys already known finite
    # state entries before the step that are fetched only when a screen needs them (key -> loader)
    lazy_s0: Mapping[str, Callable[[], Array]] | None = None

    def before_state(self) -> dict[str, Array]:
        """``s0``, completed with the lazily fetched entries (fetched once)."""
        if self.lazy_s0:
            for key, load in self.lazy_s0.items():
                if key not in self.s0:
                    self.s0[key] = load()
            self.lazy_s0 = None
        return self.s0

    def aligned(self, arr: Array) -> bool:
        """Whether ``arr`` is laid out like the parameter (not a factored state such as Adafactor's)."""
        want = (int(self.sample.shape[0]),) if self.sample is not None else self.shape
        return _shape(arr) == want

    def index(self, j: int, arr: Array | None = None) -> tuple[int, ...]:
        """The n-d index in the full array of entry ``j`` of ``arr`` (default: shaped like the parameter)."""
        if arr is not None and not self.aligned(arr):
            shape = _shape(arr)
            return tuple(int(i) for i in np.unravel_index(j, shape)) if shape else ()
        flat = int(self.sample[j]) if self.sample is not None else j
        if not self.shape:
            return ()
        return tuple(int(i) for i in np.unravel_index(flat, self.shape))

    def entries(self, arr: Array | None = None) -> str:
        """``"32 entries"`` or ``"1024 sampled entries"``, for messages."""
        sampled = self.sample is not None and (arr is None or self.aligned(arr))
        return f"{self.count(arr)} {'sampled ' if sampled else ''}entries"

    def count(self, arr: Array | None = None) -> int:
        """How many entries of ``arr`` were checked."""
        if arr is not None and not self.aligned(arr):
            return _size(_shape(arr))
        return self.n

    def flat_index(self, j: int) -> int:
        return int(self.sample[j]) if self.sample is not None else j

    @property
    def n(self) -> int:
        return int(self.sample.shape[0]) if self.sample is not None else _size(self.shape)


@dataclasses.dataclass
class Context:
    """Names, roles and the rule for rendering and deciding what applies."""

    rule: Rule | None
    roles: dict[str, str]  # state key -> role
    names: Mapping[str, str]  # "params", "grads", state keys or roles -> user's names
    key_prefix: Mapping[str, str]
    step: int | None
    skip: frozenset[str]
    leaf_rules: Mapping[Path, Rule] = dataclasses.field(default_factory=dict)

    def name(self, what: str) -> str:
        if what in self.names:
            return self.names[what]
        role = self.roles.get(what)
        if role is not None and role in self.names:
            return self.names[role]
        if what in ("params", "grads"):
            return what
        return f"state[{what!r}]"

    def where(self, what: str, path: Path) -> str:
        prefix = self.key_prefix.get(what, "")
        if prefix and path:
            path = (prefix + path[0], *path[1:])
        return path_str(self.name(what), path)

    def label(self, what: str, path: Path) -> str:
        """A short label for related values: ``g``, the user's state name, ``W``/``b``/``p``."""
        if what == "grads":
            return "g"
        if what == "params":
            last = path[-1] if path else ""
            return last[:1] if last[:1] in ("W", "w", "b") else "p"
        n = self.name(what)
        return n if n.isidentifier() else what

    def at_step(self) -> str:
        return f" at step {self.step}" if self.step is not None else ""

    def rule_for(self, path: Path) -> Rule | None:
        return self.leaf_rules.get(path, self.rule)


def _related(
    ctx: Context, leaf: Leaf, j: int, skip: Collection[str] = (), arr: Array | None = None
) -> dict[str, float]:
    out: dict[str, float] = {}
    if arr is not None and not leaf.aligned(arr):
        return out
    xp = None
    for label, arr in (("grads", leaf.g), ("params", leaf.p0 if leaf.p0 is not None else leaf.p1)):
        if arr is None or label in skip:
            continue
        xp = xp or _xp(arr)
        v = _at(xp, arr, j)
        if v is not None:
            out[ctx.label(label, leaf.path)] = v
    for key, arr in leaf.s0.items():
        if key in skip or _shape(arr) != _shape(leaf.p0 if leaf.p0 is not None else arr):
            continue
        v = _at(_xp(arr), arr, j)
        if v is not None:
            out[ctx.label(key, leaf.path)] = v
    return out


# ---------------------------------------------------------------------------
# The invariants, on step records
# ---------------------------------------------------------------------------


def _nonfinite_counts(xp: Any, x: Array) -> tuple[dict[str, int], int]:
    with np.errstate(invalid="ignore"):
        nan = xp.isnan(x)
        pinf = x == math.inf
        ninf = x == -math.inf
    counts = {}
    first = -1
    for label, mask in (("nan", nan), ("posinf", pinf), ("neginf", ninf)):
        n, j = _count_first(xp, mask)
        if n:
            counts[label] = n
            first = j if first < 0 else min(first, j)
    return counts, first


_COUNT_WORDS = {"nan": "NaN", "posinf": "+inf", "neginf": "-inf"}


def _counts_text(counts: Mapping[str, int], entries: str) -> str:
    parts = [f"{c} {_COUNT_WORDS.get(k, k)}" for k, c in counts.items()]
    return f"{', '.join(parts)} of {entries}"


def _nonfinite_hint(ctx: Context, leaf: Leaf, what: str, j: int, became: bool | None) -> str:
    torch_arrays = type(leaf.g).__module__.startswith("torch") or type(leaf.p1).__module__.startswith("torch")
    if what == "grads":
        where = (
            "run the forward and backward pass under `with optcheck.trap(model):` to stop at the module that "
            "produced it"
            if torch_arrays
            else "run the forward and backward pass under optcheck.trap() to stop at the line that produced it"
        )
        return (
            "The gradient is non-finite before the optimizer runs, so the fault is in the loss or the "
            f"backward pass (log of 0, exp overflow, a division by zero); {where}."
        )
    if became is False:
        return (
            "The fault happened before this step: at an earlier step (check every step, every=1) or in "
            "the values passed in."
        )
    # became non-finite in this step: look at the inputs at that index for the cause
    g = _at(_xp(leaf.g), leaf.g, j) if leaf.g is not None else None
    if g is not None and not math.isfinite(g):
        return "The gradient at this entry is non-finite; fix the loss or the backward pass first."
    if ctx.step == 0 and _bias_corrected(ctx.rule_for(leaf.path)):
        return _STEP_ZERO_HINT
    for key, arr in leaf.s1.items():
        role = ctx.roles.get(key)
        if (role in NONNEGATIVE_ROLES and _shape(arr) == leaf.shape) or (
            leaf.sample is not None and role in NONNEGATIVE_ROLES
        ):
            v = _at(_xp(arr), arr, j)
            if v is not None and v < 0:
                return (
                    f"{ctx.where(key, leaf.path)} is negative at this entry ({fmt_number(v)}), so its square root "
                    "is NaN; see the negative-second-moment violation for the cause."
                )
            if v == 0 and g == 0:
                return (
                    "0/0: the gradient and the second moment are both 0 at this entry; epsilon must be "
                    "added to the denominator, g/(√S + ε), not after the division."
                )
    last = (
        "recompute the step with the reference rule (optcheck.watch(optimizer, shadow=True)) to see which "
        "state entry differs first"
        if torch_arrays
        else "run the update under optcheck.trap() to stop at the line that produced it"
    )
    return (
        "An operation produced NaN or inf in this step: a square root of a negative number, 0/0, a "
        f"division by zero or an overflow (float32 overflows near 3.4e38); {last}."
    )


#: The t = 0 start of a bias-corrected rule, named as the diagnosis catalog names it.
_STEP_ZERO_HINT = (
    "bias-correction-wrong-step: this call is step 0, so the bias correction 1 − β^t is 1 − β^0 = 0 and "
    "m/(1 − β1^t) divides by zero. Count steps from 1: t ← t + 1 before the update (or pass t + 1), so "
    "that t = 1 on the first call."
)

_BIAS_CORRECTED: dict[Rule, bool] = {}


def _bias_corrected(rule: Rule | None) -> bool:
    """Whether ``rule`` divides by a bias correction ``1 − β^t`` (probed once through its ``Ops`` hook)."""
    if rule is None:
        return False
    if rule not in _BIAS_CORRECTED:
        calls: list[float] = []

        class _Record(type(rule.ops)):  # type: ignore[misc]
            def bias_correction(self, beta: float, t: float) -> float:
                calls.append(t)
                return float(super().bias_correction(beta, t))

        try:
            p = np.array([0.5])
            with np.errstate(all="ignore"):
                probe = rule.with_ops(_Record())
                probe.step(p, np.array([1.0]), probe.init(p))
        except (ValueError, TypeError, ZeroDivisionError, FloatingPointError, NotImplementedError):
            calls.clear()
        _BIAS_CORRECTED[rule] = bool(calls)
        if len(_BIAS_CORRECTED) > 256:
            _BIAS_CORRECTED.clear()
    return _BIAS_CORRECTED.get(rule, False)


def _check_nonfinite(
    ctx: Context, leaf: Leaf, what: str, x: Array | None, before: Array | None, out: list[Violation]
) -> None:
    if x is None:
        return
    xp = _xp(x)
    if _all_finite(xp, x):
        return
    counts, j = _nonfinite_counts(xp, x)
    became: bool | None = None
    if before is not None and _shape(before) == _shape(x):
        bxp = _xp(before)
        if _all_finite(bxp, before):
            became = True
        else:
            bj = _nonfinite_counts(bxp, before)[1]
            became = False
            j = bj
    if what == "grads":
        became = None
    where = ctx.where(what, leaf.path)
    n = int(sum(counts.values()))
    value = _at(xp, x if became is not False else before, j)
    related = _related(ctx, leaf, j, skip=() if what == "params" else (what,), arr=x)
    idx = leaf.index(j, x)
    total = _counts_text(counts, leaf.entries(x))
    if what == "grads":
        msg = (
            f"{where} is non-finite{ctx.at_step()}: {total}; first at {fmt_index(idx)}: {fmt_number(value)}."
        )
    elif became is False:
        msg = (
            f"{where} was already non-finite on input{ctx.at_step()}: {total} after the step; "
            f"first at {fmt_index(idx)}: {fmt_number(value)} before the step."
        )
    else:
        verb = "became non-finite" if became else "is non-finite"
        msg = (
            f"{where} {verb}{ctx.at_step()}: {total}; first at {fmt_index(idx)}: {fmt_number(value)}"
            f"{_related_text(related, before=True)}."
        )
        if ctx.step == 0 and what == "params" and _bias_corrected(ctx.rule_for(leaf.path)):
            msg += " Likely cause: bias-correction-wrong-step (a step counted from 0: 1 − β^0 = 0)."
    out.append(
        Violation(
            id="non-finite",
            where=where,
            path=leaf.path,
            message=msg,
            hint=_nonfinite_hint(ctx, leaf, what, j, became),
            step=ctx.step,
            shape=leaf.shape,
            dtype=_dtype_name(leaf.dtype),
            count=n,
            counts=counts,
            size=leaf.count(x),
            index=idx,
            value=value,
            related=related,
            became=became,
            sampled=leaf.sample is not None,
        )
    )


_NEGATIVE_HINT = (
    "A term that is not a square was added to the squared gradient (for example an L2 penalty "
    "proportional to W, which is negative wherever W is). Add the penalty to the gradient before "
    "squaring: {S} = β·{S} + (1−β)·(g + λW)², and step with (g + λW)."
)

_NEGATIVE_HINTS = {
    "norm": (
        "An infinity norm is a maximum of absolute values, {S} = max(β2·{S}, |g| + ε); the absolute value "
        "was left out or a signed term was mixed in."
    ),
    "step-size": (
        "Step sizes are only multiplied by η₊ > 1 or 0 < η₋ < 1 and clamped to [step_min, step_max]; a "
        "negative one means the gradient's sign was mixed into {S}."
    ),
}


def _check_negative(ctx: Context, leaf: Leaf, key: str, out: list[Violation]) -> None:
    x = leaf.s1.get(key)
    if x is None:
        return
    xp = _xp(x)
    if xp is not np and not _is_float(xp, x):
        return
    if xp is np:
        if x.size == 0:
            return
        low = x.min()
        if low >= 0:
            if x.max() < math.inf:
                leaf.finite.add(key)  # min >= 0 and max < inf: no NaN, no inf
            return
        if not low < 0:
            return  # NaN: reported by non-finite
    elif not bool(xp.any(x < 0)):
        return
    mask = x < 0
    n, j = _count_first(xp, mask)
    if not n:
        return
    before = leaf.s0.get(key)
    became: bool | None = None
    if before is not None and _shape(before) == _shape(x):
        bxp = _xp(before)
        nb, bj = _count_first(bxp, before < 0)
        became = nb == 0
        if not became:
            j = bj
    where = ctx.where(key, leaf.path)
    label = ctx.label(key, leaf.path)
    value = _at(xp, x if became is not False else before, j)
    related = _related(ctx, leaf, j, skip=(key,), arr=x)
    idx = leaf.index(j, x)
    what = (
        "became negative"
        if became
        else ("was already negative on input" if became is False else "is negative")
    )
    of = f"{n} of {leaf.entries(x)} < 0"
    first = first_at(idx, f"{label}={fmt_number(value)}")
    msg = f"{where} {what}{ctx.at_step()}: {of}; {first}{_related_text(related)}."
    hint = _NEGATIVE_HINTS.get(ctx.roles.get(key, ""), _NEGATIVE_HINT).format(S=label)
    if became is False:
        hint = (
            "It went negative before this step (second moments start at 0 and only average squares). " + hint
        )
    out.append(
        Violation(
            id="negative-second-moment",
            where=where,
            path=leaf.path,
            message=msg,
            hint=hint,
            step=ctx.step,
            shape=leaf.shape,
            dtype=_dtype_name(leaf.dtype),
            count=n,
            counts={"negative": n},
            size=leaf.count(x),
            index=idx,
            value=value,
            related=related,
            became=became,
            sampled=leaf.sample is not None,
        )
    )


def _check_centered(ctx: Context, leaf: Leaf, vkey: str, mkey: str, out: list[Violation]) -> None:
    v, m = leaf.s1.get(vkey), leaf.s1.get(mkey)
    if v is None or m is None or _shape(v) != _shape(m):
        return
    xp = _xp(v)
    with np.errstate(invalid="ignore", over="ignore"):
        arg = v - m * m
        if xp is np:
            if arg.size == 0 or not (arg.min() < 0):
                return
        elif not bool(xp.any(arg < 0)):
            return
        eps = (
            float(np.finfo(_dtype_name(leaf.dtype)).eps)
            if _dtype_name(leaf.dtype) in ("float16", "float32", "float64")
            else 1e-2
        )
        tol = (xp.abs(v) + m * m) * (8 * eps)
        beyond = arg < -tol
    vname, mname = ctx.where(vkey, leaf.path), ctx.where(mkey, leaf.path)
    vl, ml = ctx.label(vkey, leaf.path), ctx.label(mkey, leaf.path)
    n_bad, j_bad = _count_first(xp, beyond)
    n_neg, j_neg = _count_first(xp, arg < 0)
    if n_bad:
        j = j_bad
        idx = leaf.index(j)
        related = {vl: _at(xp, v, j), ml: _at(xp, m, j), **_related(ctx, leaf, j, skip=(vkey, mkey))}
        out.append(
            Violation(
                id="negative-second-moment",
                where=vname,
                path=leaf.path,
                message=(
                    f"{vname} − {mname}² fell below zero by more than rounding{ctx.at_step()}: {n_bad} of "
                    f"{leaf.entries()}; first at {fmt_index(idx)}: {vl} − {ml}² = {fmt_number(_at(xp, arg, j))}"
                    f"{_related_text({k: x for k, x in related.items() if x is not None})}."
                ),
                hint=(
                    f"{vl} must average the squares of the same gradients that {ml} averages, with the same "
                    f"decay: {vl} = α·{vl} + (1−α)·g², {ml} = α·{ml} + (1−α)·g; a different decay or a term "
                    f"that is not a square in {vl} breaks {vl} ≥ {ml}²."
                ),
                step=ctx.step,
                shape=leaf.shape,
                dtype=_dtype_name(leaf.dtype),
                count=n_bad,
                counts={"negative": n_bad},
                size=leaf.n,
                index=idx,
                value=_at(xp, arg, j),
                related={k: x for k, x in related.items() if x is not None},
                sampled=leaf.sample is not None,
            )
        )
    elif n_neg:
        j = j_neg
        idx = leaf.index(j)
        value = _at(xp, arg, j)
        out.append(
            Violation(
                id="sqrt-of-negative",
                where=vname,
                path=leaf.path,
                message=(
                    f"The argument of the square root in centered RMSprop, {vname} − {mname}², is negative"
                    f"{ctx.at_step()} by rounding: {n_neg} of {leaf.entries()}; first at {fmt_index(idx)}: "
                    f"{fmt_number(value)} ({vl}={fmt_number(_at(xp, v, j))}, {ml}={fmt_number(_at(xp, m, j))})."
                ),
                hint=(
                    f"{vl} − {ml}² is a variance, ≥ 0 in exact arithmetic, but rounding pushes it below zero when "
                    f"the gradient is nearly constant; clamp it, √max({vl} − {ml}², 0), or add ε inside the root."
                ),
                step=ctx.step,
                shape=leaf.shape,
                dtype=_dtype_name(leaf.dtype),
                count=n_neg,
                counts={"negative": n_neg},
                size=leaf.n,
                index=idx,
                value=value,
                related={vl: _at(xp, v, j) or 0.0, ml: _at(xp, m, j) or 0.0},
                sampled=leaf.sample is not None,
            )
        )


_MONOTONE_HINT = {
    "accumulator": (
        "An accumulator of squared gradients can only grow ({S} += g²): a term that is not a square was "
        "added (for example an L2 penalty proportional to W); add it to the gradient before squaring, "
        "{S} += (g + λW)², or {S} was reset or decayed."
    ),
    "max-second-moment": (
        "AMSGrad keeps the running maximum, {S} = max({S}, v); it was overwritten with the current v "
        "(or v was decayed before the maximum was taken)."
    ),
}


def _check_monotone(ctx: Context, leaf: Leaf, key: str, out: list[Violation]) -> None:
    a, b = leaf.s0.get(key), leaf.s1.get(key)
    if a is None or b is None or _shape(a) != _shape(b):
        return
    xp = _xp(b)
    with np.errstate(invalid="ignore"):
        dec = b < a
    n, j = _count_first(xp, dec)
    if not n:
        return
    where = ctx.where(key, leaf.path)
    label = ctx.label(key, leaf.path)
    idx = leaf.index(j, b)
    old, new = _at(xp, a, j), _at(xp, b, j)
    related = _related(ctx, leaf, j, skip=(key,), arr=b)
    role = ctx.roles.get(key, "accumulator")
    out.append(
        Violation(
            id="accumulator-decreased",
            where=where,
            path=leaf.path,
            message=(
                f"{where} decreased{ctx.at_step()}: {n} of {leaf.entries(b)}; "
                f"{first_at(idx, f'{label} went from {fmt_number(old)} to {fmt_number(new)}')}"
                f"{_related_text(related, before=True)}."
            ),
            hint=_MONOTONE_HINT.get(role, _MONOTONE_HINT["accumulator"]).format(S=label),
            step=ctx.step,
            shape=leaf.shape,
            dtype=_dtype_name(leaf.dtype),
            count=n,
            counts={"decreased": n},
            size=leaf.count(b),
            index=idx,
            value=new,
            related={label + " before": old or 0.0, **related} if old is not None else related,
            sampled=leaf.sample is not None,
        )
    )


def _check_mutated(ctx: Context, leaf: Leaf, what: str, out: list[Violation]) -> None:
    pair = leaf.mut.get(what)
    if pair is None:
        return
    before, now = pair
    if _shape(before) != _shape(now):
        return
    xp = _xp(now)
    with np.errstate(invalid="ignore"):
        same = before == now
        if xp is np:
            if bool(same.all()):
                return
            changed = ~(same | (np.isnan(before) & np.isnan(now)))
        else:
            if bool(xp.all(same)):
                return
            changed = ~(same | (xp.isnan(before) & xp.isnan(now)))
    n, j = _count_first(xp, changed)
    if not n:
        return
    where = ctx.where(what, leaf.path)
    idx = leaf.index(j)
    old, new = _at(_xp(before), before, j), _at(xp, now, j)
    fix = {
        "grads": f"compute into a new array instead, for example g = {where} + λ·W, and leave {where} as it was.",
        "params": "return new arrays instead of writing into the ones passed in, or use a guard without before= copies.",
    }.get(what, "compute into new arrays and leave the inputs as they were.")
    out.append(
        Violation(
            id="input-mutated",
            where=where,
            path=leaf.path,
            message=(
                f"{where} was changed in place during the update{ctx.at_step()}: {n} of {leaf.entries()}; "
                f"{first_at(idx, f'was {fmt_number(old)}, now {fmt_number(new)}')}."
            ),
            hint=f"The update function wrote into an input that must not change; {fix}",
            step=ctx.step,
            shape=leaf.shape,
            dtype=_dtype_name(leaf.dtype),
            count=n,
            counts={"changed": n},
            size=leaf.n,
            index=idx,
            value=new,
            related={"before": old} if old is not None else {},
            sampled=leaf.sample is not None,
        )
    )


def _has_zero(xp: Any, g: Array) -> bool:
    """Whether some entry of ``g`` equals 0 (exact; ``-0.0`` counts).

    numpy float arrays: two integer reductions over the bit patterns, allocating nothing
    (+0.0 is the smallest unsigned pattern, −0.0 the smallest signed one).
    """
    if _np_float(g):
        if not g.size:
            return False
        flat = g.reshape(-1)
        uint = _FINITE_BITS[g.dtype][0]
        sint = np.int32 if uint is np.uint32 else np.int64
        return int(flat.view(uint).min()) == 0 or int(flat.view(sint).min()) == int(np.iinfo(sint).min)
    if _np_contiguous(g):
        return any(bool((c == 0).any()) for (c,) in _np_chunks(g))
    return bool(xp.any(g == 0))


def _np_grad_screen(g: np.ndarray, partner: np.ndarray | None) -> tuple[bool, bool]:
    """(every entry of ``g`` and ``partner`` finite, some entry of ``g`` is 0), in one read of each.

    For C-contiguous numpy float arrays of one size and dtype, chunk by chunk: the dot
    g·partner (or g·g) and, while the chunk of g is in cache, the two bit-pattern minima of
    :func:`_has_zero`. A non-finite or overflowing dot sends each array to the exact check.
    """
    uint = _FINITE_BITS[g.dtype][0]
    sint = np.int32 if uint is np.uint32 else np.int64
    smallest = int(np.iinfo(sint).min)
    gf = g.reshape(-1)
    pf = gf if partner is None else partner.reshape(-1)
    acc = 0.0
    zero = False
    for start in range(0, gf.shape[0], _CHUNK):
        gc = gf[start : start + _CHUNK]
        acc += float(gc.dot(pf[start : start + _CHUNK]))
        if not zero:
            zero = (
                int(np.minimum.reduce(gc.view(uint))) == 0
                or int(np.minimum.reduce(gc.view(sint))) == smallest
            )
    if math.isfinite(acc):
        return True, zero
    finite = _all_finite_quiet(np, g) and (partner is None or _all_finite_quiet(np, partner))
    return finite, zero


def _moving_states(ctx: Context, leaf: Leaf, s0: Mapping[str, Array]) -> list[Array]:
    """The momentum-like states before the step (shaped like the parameter): they move it without a gradient."""
    return [s for key, s in s0.items() if ctx.roles.get(key) in MOVING_ROLES and _shape(s) == _shape(leaf.p0)]


def _moved_mask(xp: Any, p0: Array, p1: Array, g: Array, moving: list[Array]) -> Array:
    """Entries with a zero gradient and zero momenta whose parameter moved to a finite value."""
    zero = g == 0
    for s in moving:
        zero = zero & (s == 0)
    with np.errstate(invalid="ignore"):
        moved = zero & ~((p1 == p0) | (xp.isnan(p0) & xp.isnan(p1)))
        # a NaN produced at a zero gradient is reported by non-finite; this check is about finite moves
        moved = moved & xp.isfinite(p1)
    return moved


def _check_no_grad_move(ctx: Context, leaf: Leaf, out: list[Violation]) -> None:
    p0, p1, g = leaf.p0, leaf.p1, leaf.g
    if p0 is None or p1 is None or g is None or _shape(p0) != _shape(p1) or _shape(g) != _shape(p0):
        return
    xp = _xp(g)
    if not _has_zero(xp, g):
        return
    rule = ctx.rule_for(leaf.path)
    if rule is not None and any(
        ctx.roles.get(k) in MOVING_ROLES and k not in leaf.s0 for k in rule.array_keys()
    ):
        return  # a momentum the target keeps to itself may move p without a gradient: not judged
    moved = _moved_mask(xp, p0, p1, g, _moving_states(ctx, leaf, leaf.s0))
    n, j = _count_first(xp, moved)
    if not n:
        return
    where = ctx.where("params", leaf.path)
    idx = leaf.index(j)
    before, after = _at(xp, p0, j), _at(xp, p1, j)
    delta = None if before is None or after is None else after - before
    related = _related(ctx, leaf, j)
    rule = ctx.rule_for(leaf.path)
    extra = ""
    if rule is not None and delta is not None:
        lr, eps = rule.hyper.get("lr"), rule.hyper.get("eps")
        if isinstance(lr, float) and isinstance(eps, float) and lr > 0 and eps > 0:
            extra = f" (lr·ε = {fmt_number(lr * eps)})"
    out.append(
        Violation(
            id="update-without-gradient",
            where=where,
            path=leaf.path,
            message=(
                f"{where} moved{ctx.at_step()} although its gradient is zero there: {n} of {leaf.entries()}; "
                f"first at {fmt_index(idx)}: moved by {fmt_number(delta)}{extra}{_related_text(related, before=True)}."
            ),
            hint=(
                "With a zero gradient, no momentum and no weight decay the step must be 0; a constant move of "
                "about lr·ε is the signature of ε added outside the division: use g/(√S + ε), not g/√S + ε."
            ),
            step=ctx.step,
            shape=leaf.shape,
            dtype=_dtype_name(leaf.dtype),
            count=n,
            counts={"moved": n},
            size=leaf.n,
            index=idx,
            value=delta,
            related=related,
            sampled=leaf.sample is not None,
        )
    )


def _max_abs_step(xp: Any, p0: Array, p1: Array) -> float:
    """max |p1 − p0| over all entries, NaN when a difference is NaN.

    numpy: one pass through a reused cache-sized buffer (nothing allocated per call).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        if _np_contiguous(p0, p1) and p0.dtype == p1.dtype:
            f0, f1 = p0.reshape(-1), p1.reshape(-1)
            n = f0.shape[0]
            buf = _scratch(p1.dtype, min(n, _CHUNK))
            big = 0.0
            for start in range(0, n, _CHUNK):
                c1 = f1[start : start + _CHUNK]
                d = buf[: c1.shape[0]]
                np.subtract(c1, f0[start : start + _CHUNK], out=d)
                hi, lo = float(np.maximum.reduce(d)), float(np.minimum.reduce(d))
                if math.isnan(hi) or math.isnan(lo):
                    return math.nan
                big = max(big, hi, -lo)
            return big
        return _to_float(xp.max(xp.abs(p1 - p0)))


def _too_large_mask(
    xp: Any, p0: Array, p1: Array, a: float, b: float, dtype: Any
) -> tuple[Array, Array, Array]:
    """(over, d, limit): entries whose finite step d = p1 − p0 exceeds ``a + b·|p0|`` (with slack and rounding)."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = p1 - p0
        absd = xp.abs(d)
        name = _dtype_name(dtype)
        ulp = float(np.finfo(name).eps) if name in ("float16", "float32", "float64") else 1e-2
        limit = (
            UPDATE_SLACK * a + b * UPDATE_SLACK * xp.abs(p0) + 2 * ulp * xp.maximum(xp.abs(p0), xp.abs(p1))
        )
        over = (absd > limit) & xp.isfinite(d)
    return over, d, limit


#: (machine epsilon, smallest subnormal) of the floating dtypes a step may be computed in.
_FLOAT_INFO = {
    "float64": (2.0**-52, 2.0**-1074),
    "float32": (2.0**-23, 2.0**-149),
    "float16": (2.0**-10, 2.0**-24),
    "bfloat16": (2.0**-7, 2.0**-133),
}


def _rounding_allowance(xp: Any, rule: Rule | None, g: Array | None, dtype: Any, a: float) -> Any:
    """How much further than the exact-arithmetic bound ``a`` a step computed in ``dtype`` may move.

    Derived from the dtype, not a widened constant: a step is a handful of rounded operations
    (8 units of the dtype's epsilon), and a second moment ``v ≥ c·g²`` (``c`` the smallest
    ``1 − β`` of the rule's decay rates) computed near the subnormal range carries an absolute
    rounding of about the smallest subnormal ``q`` per operation: relative ``r = 2q/(c·g²)``,
    which enlarges ``m/√v`` by ``1/√(1 − r) − 1``. Where ``r ≥ 1/2`` (v may round to a fraction
    of itself, or to zero) the dtype does not bound the step at all. float16 Adam's correct
    first step with ``|g| < 0.25`` has a subnormal ``v``: this is what lets it pass.
    """
    info = _FLOAT_INFO.get(_dtype_name(dtype))
    if info is None:
        return 0.0
    eps, q = info
    extra: Any = 8.0 * eps * a
    if rule is None or g is None:
        return extra
    roles = type(rule).state_roles
    normalised = ("second-moment", "accumulator", "max-second-moment")
    if not any(roles.get(k) in normalised for k in rule.array_keys()):
        return extra
    rates = [
        1.0 - float(getattr(rule, s.name))
        for s in type(rule).hyper_specs()
        if s.kind == "float" and s.low == 0.0 and s.high == 1.0 and getattr(rule, s.name) is not None
    ]
    c = max(min(rates, default=1.0), 1e-300)
    with np.errstate(all="ignore"):
        g64 = xp.astype(g, xp.float64) if hasattr(xp, "astype") else g.astype(np.float64)
        r = (2.0 * q) / (c * (g64 * g64))
        safe = xp.where(r < 0.5, r, xp.zeros_like(r))
        factor = xp.where(r < 0.5, 1.0 / xp.sqrt(1.0 - safe) - 1.0, xp.full_like(r, math.inf))
    return extra + a * factor


def _check_too_large(ctx: Context, leaf: Leaf, bound: tuple[float, float], out: list[Violation]) -> None:
    p0, p1 = leaf.p0, leaf.p1
    if p0 is None or p1 is None or _shape(p0) != _shape(p1):
        return
    a, b = bound
    xp = _xp(p1)
    if _size(_shape(p1)) == 0:
        return
    big = _max_abs_step(xp, p0, p1)
    if math.isnan(big) or (b == 0 and big <= UPDATE_SLACK * a):
        return  # NaN updates are reported by non-finite
    # exact test only on suspicion: allow the slack and the rounding of p1 = p0 + d
    over, d, limit = _too_large_mask(xp, p0, p1, a, b, leaf.dtype)
    rule = ctx.rule_for(leaf.path)
    if bool(xp.any(over)):
        extra = _rounding_allowance(xp, rule, leaf.g, leaf.dtype, a)
        with np.errstate(invalid="ignore", over="ignore"):
            limit = limit + extra
            over = over & (xp.abs(d) > limit)
    n, j = _count_first(xp, over)
    if not n:
        return
    where = ctx.where("params", leaf.path)
    idx = leaf.index(j)
    delta = _at(xp, d, j)
    lim = _at(xp, limit, j)
    related = _related(ctx, leaf, j)
    rule = ctx.rule_for(leaf.path)
    rname = rule.name if rule is not None else "the rule"
    lr = rule.hyper.get("lr") if rule is not None else None
    ratio = (
        f" ({fmt_number(abs(delta) / lr)}·lr)"
        if delta is not None and isinstance(lr, float) and lr > 0
        else ""
    )
    out.append(
        Violation(
            id="update-too-large",
            where=where,
            path=leaf.path,
            message=(
                f"{where} moved further than {rname} allows{ctx.at_step()}: {n} of {leaf.entries()}; first at "
                f"{fmt_index(idx)}: moved by {fmt_number(delta)}{ratio}, bound {fmt_number(lim)}{_related_text(related, before=True)}."
            ),
            hint=(
                "The step is bounded by about lr for this rule; a larger one usually means a missing or wrong "
                "bias correction (divide m by 1−β1^t and v by 1−β2^t with t counted from 1, not (1−β)^t), "
                "β and 1−β swapped, the square root left out of the denominator, or lr applied twice."
            ),
            step=ctx.step,
            shape=leaf.shape,
            dtype=_dtype_name(leaf.dtype),
            count=n,
            counts={"too-large": n},
            size=leaf.n,
            index=idx,
            value=delta,
            related=related,
            sampled=leaf.sample is not None,
        )
    )


def check_structure(
    ctx: Context, what: str, path: Path, s0: tuple[int, ...], dtype0: Any, after: Array, out: list[Violation]
) -> bool:
    """shape-changed / dtype-changed between an input (its shape ``s0`` and dtype) and its output.

    Returns True when the shapes differ.
    """
    s1 = _shape(after)
    if s0 == s1 and after.dtype == dtype0:
        return False
    where = ctx.where(what, path)
    changed = False
    if s0 != s1:
        changed = True
        if len(s0) == 2 and 1 in s0 and len(s1) == 2 and s1[0] == s1[1] == max(s0):
            hint = (
                f"An array of shape {s0} was combined with one of shape ({max(s0)},) and broadcast to {s1}; "
                "keep the parameter's shape (use keepdims=True in the sums, or reshape the vector)."
            )
        else:
            hint = (
                "The update must return arrays of the parameter's shape; look for broadcasting between arrays "
                "of different shapes or a sum over the wrong axis."
            )
        out.append(
            Violation(
                id="shape-changed",
                where=where,
                path=path or None,
                message=f"{where} changed shape from {s0} to {s1}{ctx.at_step()}.",
                hint=hint,
                step=ctx.step,
                shape=s1,
                dtype=_dtype_name(after.dtype),
                size=_size(s1),
            )
        )
    if after.dtype != dtype0:
        out.append(
            Violation(
                id="dtype-changed",
                where=where,
                path=path or None,
                message=(
                    f"{where} changed dtype from {_dtype_name(dtype0)} to {_dtype_name(after.dtype)}"
                    f"{ctx.at_step()}."
                ),
                hint=(
                    "A value of another precision was mixed in (a float64 numpy scalar or array in float32 "
                    "arithmetic, or an integer array); keep the arithmetic in the parameter's dtype or cast back "
                    "with .astype(p.dtype)."
                ),
                step=ctx.step,
                shape=s1,
                dtype=_dtype_name(after.dtype),
                size=_size(s1),
            )
        )
    return changed


def _check_counter(ctx: Context, key: str, old: Any, new: Any, out: list[Violation]) -> None:
    try:
        a, b = float(old), float(new)
    except (TypeError, ValueError):
        return
    if b == a + 1:
        return
    where = ctx.where(key, ())
    out.append(
        Violation(
            id="step-not-incremented",
            where=where,
            message=f"{where} went from {fmt_number(a)} to {fmt_number(b)} in one update; it must grow by exactly one.",
            hint=(
                "Increment the step counter once per update, before the bias corrections use it (it is 0 in a "
                "fresh state and 1 during the first step); a frozen or doubly advanced counter makes 1 − β^t "
                "wrong."
            ),
            step=ctx.step,
            count=1,
            value=b,
            related={"before": a},
        )
    )


# ---------------------------------------------------------------------------
# Which invariants apply
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _moves_without_gradient(rule: Rule) -> bool:
    """Whether ``rule`` moves a coordinate whose gradient and momentum are zero (decay, ASGD's shrinkage).

    Probed on a tiny float64 array: coordinate 1 sees a zero gradient for three steps (or past
    the rule's :meth:`~optcheck.rules.Rule.phase_steps`)
    while coordinate 0 sees nonzero ones. Elementwise rules only (state shaped like params).
    """
    p: Any = np.array([0.5, -1.5])
    try:
        state = rule.init(p)
        for k in rule.array_keys():
            if state[k] is None or _shape(state[k]) != (2,):
                return True  # factored state (adafactor): coordinates are not independent
        # past the rule's change of form too (RAdam's window without updates), cycling the gradients
        steps = max(3, rule.phase_steps() + 1)
        for i in range(steps):
            g0 = (1.0, -0.5, 0.25)[i % 3]
            with np.errstate(all="ignore"):
                p2, state = rule.step(p, np.array([g0, 0.0]), state)
            if p2[1] != -1.5:
                return True
            p = p2
    except (ValueError, TypeError, ZeroDivisionError, FloatingPointError, NotImplementedError):
        return True
    return False


def roles_for(rule: Rule | None, roles: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = dict(type(rule).state_roles) if rule is not None else {}
    if roles:
        for k, r in roles.items():
            if r not in KNOWN_ROLES:
                raise UsageError(
                    f"roles[{k!r}] = {r!r} is not a known role; expected one of {sorted(KNOWN_ROLES)}"
                )
            out[k] = r
    return out


def _centered_pair(rule: Rule | None, roles: Mapping[str, str]) -> tuple[str, str] | None:
    """(second moment, mean gradient) keys for a rule with ``centered=True`` (RMSprop)."""
    if rule is None or getattr(rule, "centered", False) is not True:
        return None
    keys = set(rule.array_keys())
    v = [k for k in keys if roles.get(k) == "second-moment"]
    m = [k for k in keys if roles.get(k) == "first-moment"]
    if len(v) == 1 and len(m) == 1:
        return v[0], m[0]
    return None


# ---------------------------------------------------------------------------
# Applicability: when each invariant applies, stated once (the screens and the checks both ask)
# ---------------------------------------------------------------------------


def _on(ctx: Context, invariant_id: str) -> bool:
    """Whether ``invariant_id`` is checked at all (not in ``skip``)."""
    return invariant_id not in ctx.skip


def applies_counter(ctx: Context, key: str) -> bool:
    """``step-not-incremented`` applies to a state entry whose role is a counter."""
    return _on(ctx, "step-not-incremented") and ctx.roles.get(key) in COUNTER_ROLES


def applies_nonnegative(ctx: Context, key: str) -> bool:
    """``negative-second-moment`` applies to a state entry whose role is never negative."""
    return _on(ctx, "negative-second-moment") and ctx.roles.get(key) in NONNEGATIVE_ROLES


def applies_monotone(ctx: Context, key: str) -> bool:
    """``accumulator-decreased`` applies to an accumulator or a running maximum."""
    return _on(ctx, "accumulator-decreased") and ctx.roles.get(key) in MONOTONE_ROLES


def applies_centered(ctx: Context, leaf: Leaf) -> tuple[str, str] | None:
    """``sqrt-of-negative`` (centered RMSprop's v − ḡ²): the (second moment, mean) keys, or None."""
    if {"negative-second-moment", "sqrt-of-negative"} <= ctx.skip:
        return None
    return _centered_pair(ctx.rule_for(leaf.path), ctx.roles)


def applies_no_grad_move(ctx: Context, leaf: Leaf) -> bool:
    """``update-without-gradient`` applies to rules that keep a coordinate still without gradient."""
    rule = ctx.rule_for(leaf.path)
    return rule is not None and _on(ctx, "update-without-gradient") and not _moves(rule)


def applies_too_large(ctx: Context, leaf: Leaf) -> tuple[float, float] | None:
    """``update-too-large``: the rule's bound on a step at this step number, or None."""
    rule = ctx.rule_for(leaf.path)
    if rule is None or not _on(ctx, "update-too-large"):
        return None
    t = ctx.step
    return rule.update_bound(t) if t is not None and t >= 1 else None


# ---------------------------------------------------------------------------
# Screens: decide "every invariant holds" in one pass per array, allocating nothing
# ---------------------------------------------------------------------------
#
# A screen returns True only when the matching check in ``run_checks`` would report nothing; on
# False the precise checks run and build the records. Each screen is either the precise
# check's own early exit or a one-pass test that implies it (a finite dot product, the
# largest bit pattern of a non-negative float, the largest step), so the records and
# messages never depend on the screens.

_MOVES: dict[int, tuple[Rule, bool]] = {}


def _moves(rule: Rule) -> bool:
    """:func:`_moves_without_gradient` by identity (hashing a rule's fields costs more than the lookup)."""
    hit = _MOVES.get(id(rule))
    if hit is not None and hit[0] is rule:
        return hit[1]
    value = _moves_without_gradient(rule)
    if len(_MOVES) >= 256:
        _MOVES.clear()
    _MOVES[id(rule)] = (rule, value)
    return value


def _nonneg_clear(xp: Any, x: Array) -> tuple[bool, bool]:
    """(no entry < 0 as :func:`_check_negative` sees it, every entry proven finite).

    numpy float arrays: one unsigned-integer maximum over the bit patterns; every pattern at
    most that of the largest finite float is a finite value ≥ +0.0 (−0.0, negatives, NaN and
    inf all have larger patterns), so one reduction proves both.
    """
    if xp is np:
        if x.size == 0:
            return True, True
        if _np_float(x):
            uint, top = _FINITE_BITS[x.dtype]
            if int(x.reshape(-1).view(uint).max()) <= top:
                return True, True
        low = x.min()
        return not low < 0, False  # a NaN minimum is non-finite's business, as in _check_negative
    if not _is_float(xp, x):
        return True, False
    if _size(_shape(x)) and float(xp.min(x)) >= 0:
        return True, False
    return not bool(xp.any(x < 0)), False


def _any_less(xp: Any, b: Array, a: Array) -> bool:
    """Whether some entry of ``b`` is below the same entry of ``a`` (NaN compares false)."""
    with np.errstate(invalid="ignore"):
        if _np_contiguous(a, b) and a.size > _CHUNK:
            buf = _scratch(np.dtype(bool), _CHUNK)
            return any(bool(np.less(cb, ca, out=buf[: cb.shape[0]]).any()) for cb, ca in _np_chunks(b, a))
        return bool(xp.any(b < a))


def _all_equal(xp: Any, before: Array, now: Array) -> bool:
    """Whether every entry is unchanged (the early exit of :func:`_check_mutated`; NaN counts as changed)."""
    with np.errstate(invalid="ignore"):
        if _np_contiguous(before, now) and before.size > _CHUNK:
            buf = _scratch(np.dtype(bool), _CHUNK)
            return all(
                bool(np.equal(c0, c1, out=buf[: c0.shape[0]]).all()) for c0, c1 in _np_chunks(before, now)
            )
        same = before == now
        return bool(same.all()) if xp is np else bool(xp.all(same))


def _too_large_any(xp: Any, p0: Array, p1: Array, a: float, b: float, dtype: Any) -> bool:
    """Whether :func:`_check_too_large`'s exact test flags an entry (numpy: chunk by chunk)."""
    if _np_contiguous(p0, p1) and p0.dtype == p1.dtype:
        return any(bool(_too_large_mask(np, c0, c1, a, b, dtype)[0].any()) for c0, c1 in _np_chunks(p0, p1))
    return bool(xp.any(_too_large_mask(xp, p0, p1, a, b, dtype)[0]))


def _no_grad_move_clear(ctx: Context, leaf: Leaf, has_zero: bool | None = None) -> bool:
    """Whether :func:`_check_no_grad_move` reports nothing (numpy: the exact mask only on chunks with a zero).

    ``has_zero``: whether the gradient has a zero entry, when already known.
    """
    p0, p1, g = leaf.p0, leaf.p1, leaf.g
    if p0 is None or p1 is None or g is None or _shape(p0) != _shape(p1) or _shape(g) != _shape(p0):
        return True
    xp = _xp(g)
    if not (_has_zero(xp, g) if has_zero is None else has_zero):
        return True
    moving = _moving_states(ctx, leaf, leaf.before_state())
    if any(_np_float(s) and not _has_zero(np, s) for s in moving):
        return True  # a momentum with no zero entry moves every coordinate
    arrays = (g, p0, p1, *moving)
    if _np_contiguous(*arrays) and all(_shape(s) == _shape(g) for s in moving):
        # the mask is elementwise and False wherever g != 0: evaluate it at the zeros only
        for gc, c0, c1, *ms in _np_chunks(*arrays):
            at = np.flatnonzero(gc == 0)
            if at.size and bool(_moved_mask(np, c0[at], c1[at], gc[at], [m[at] for m in ms]).any()):
                return False
        return True
    return not bool(xp.any(_moved_mask(xp, p0, p1, g, moving)))


def _centered_clear(leaf: Leaf, vkey: str, mkey: str) -> bool:
    """The early exit of :func:`_check_centered`: v − m² is nowhere below zero."""
    v, m = leaf.s1.get(vkey), leaf.s1.get(mkey)
    if v is None or m is None or _shape(v) != _shape(m):
        return True
    xp = _xp(v)
    with np.errstate(invalid="ignore", over="ignore"):
        arg = v - m * m
        if xp is np:
            return bool(arg.size == 0 or not (arg.min() < 0))
        return not bool(xp.any(arg < 0))


def _screen_leaf(ctx: Context, leaf: Leaf) -> bool:
    """Whether every check :func:`run_checks` makes on ``leaf`` would report nothing (False: it may report)."""
    skip = ctx.skip
    p0, p1, g = leaf.p0, leaf.p1, leaf.g
    # structure (a changed shape or dtype is left to the precise checks)
    if p0 is not None and p1 is not None and (_shape(p0) != _shape(p1) or p0.dtype != p1.dtype):
        return False
    for key, x in leaf.s1.items():
        x0 = leaf.s0.get(key)
        if x0 is not None and (_shape(x0) != _shape(x) or x0.dtype != x.dtype):
            return False
    if "input-mutated" not in skip:
        for before, now in leaf.mut.values():
            if _shape(before) == _shape(now) and not _all_equal(_xp(now), before, now):
                return False
    finite_known: set[str] = set()
    for key, x in leaf.s1.items():
        if applies_nonnegative(ctx, key):
            clear, finite = _nonneg_clear(_xp(x), x)
            if not clear:
                return False
            if finite:
                finite_known.add(key)
        if applies_monotone(ctx, key):
            x0 = leaf.s0.get(key)
            if x0 is not None and _shape(x0) == _shape(x) and _any_less(_xp(x), x, x0):
                return False
    centered = applies_centered(ctx, leaf)
    if centered is not None and not _centered_clear(leaf, *centered):
        return False
    p1_finite = p1 is None
    if p0 is not None and p1 is not None:
        bound = applies_too_large(ctx, leaf)
        if bound is not None and _size(_shape(p1)):
            a, b = bound
            xp = _xp(p1)
            big = _max_abs_step(xp, p0, p1)
            # every step finite implies every new parameter finite (a non-finite p1 gives a non-finite step)
            p1_finite = math.isfinite(big)
            if big > UPDATE_SLACK * a and _too_large_any(xp, p0, p1, a, b, leaf.dtype):
                return False  # (a NaN step is not "too large": non-finite reports it)
    zero_check = applies_no_grad_move(ctx, leaf)
    g_zero: bool | None = None
    if "non-finite" not in skip:
        need: list[Array] = []
        if not p1_finite:
            need.append(p1)
        need.extend(x for key, x in leaf.s1.items() if key not in finite_known)
        if g is not None and zero_check and _np_float(g) and g.size:
            # the gradient is read once for both its finiteness and its zeros (with a partner's finiteness)
            partner = next(
                (x for x in need if _np_float(x) and x.dtype == g.dtype and x.size == g.size), None
            )
            finite, g_zero = _np_grad_screen(g, partner)
            if not finite:
                return False
            need = [x for x in need if x is not partner]
        elif g is not None:
            need.append(g)
        if not _all_finite_many(need):
            return False
    if zero_check:
        return _no_grad_move_clear(ctx, leaf, g_zero)
    return True


def screen(ctx: Context, leaves: list[Leaf], counters: list[tuple[str, Any, Any]]) -> bool:
    """Whether :func:`run_checks` would return no violation (False: run it to find and describe them)."""
    with np.errstate(all="ignore"):  # a screen's overflow or NaN is not the user's warning
        return _screen_quiet(ctx, leaves, counters)


def _screen_quiet(ctx: Context, leaves: list[Leaf], counters: list[tuple[str, Any, Any]]) -> bool:
    if "step-not-incremented" not in ctx.skip:
        for key, old, new in counters:
            if ctx.roles.get(key) in COUNTER_ROLES:
                try:
                    a, b = float(old), float(new)
                except (TypeError, ValueError):
                    continue
                if b != a + 1:
                    return False
    return all(_screen_leaf(ctx, leaf) for leaf in leaves)


def run_checks(ctx: Context, leaves: list[Leaf], counters: list[tuple[str, Any, Any]]) -> list[Violation]:
    if screen(ctx, leaves, counters):
        return []
    out: list[Violation] = []
    skip = ctx.skip
    for key, old, new in counters:
        if applies_counter(ctx, key):
            _check_counter(ctx, key, old, new, out)
    for leaf in leaves:
        # structure
        if (
            leaf.p0 is not None
            and leaf.p1 is not None
            and check_structure(ctx, "params", leaf.path, _shape(leaf.p0), leaf.p0.dtype, leaf.p1, out)
        ):
            leaf.skip_elementwise = True
        for key in leaf.s1:
            if key in leaf.s0 and check_structure(
                ctx, key, leaf.path, _shape(leaf.s0[key]), leaf.s0[key].dtype, leaf.s1[key], out
            ):
                leaf.skip_elementwise = True
        if "shape-changed" in skip or "dtype-changed" in skip:
            out[:] = [v for v in out if v.id not in skip]
        if "input-mutated" not in skip:
            for what in leaf.mut:
                _check_mutated(ctx, leaf, what, out)
        # inputs: a non-finite gradient is a cause
        if "non-finite" not in skip:
            _check_nonfinite(ctx, leaf, "grads", leaf.g, None, out)
        if leaf.skip_elementwise:
            for key, arr in leaf.s1.items():
                if "non-finite" not in skip:
                    _check_nonfinite(ctx, leaf, key, arr, None, out)
            continue
        # state invariants
        centered = applies_centered(ctx, leaf)
        for key in leaf.s1:
            if applies_nonnegative(ctx, key):
                _check_negative(ctx, leaf, key, out)
            if applies_monotone(ctx, key):
                _check_monotone(ctx, leaf, key, out)
        if centered is not None:
            n0 = len(out)
            _check_centered(ctx, leaf, *centered, out)
            out[n0:] = [v for v in out[n0:] if v.id not in skip]
        # outputs
        if "non-finite" not in skip:
            _check_nonfinite(ctx, leaf, "params", leaf.p1, leaf.p0, out)
            for key, arr in leaf.s1.items():
                if key not in leaf.finite:
                    _check_nonfinite(ctx, leaf, key, arr, leaf.s0.get(key), out)
        if applies_no_grad_move(ctx, leaf):
            _check_no_grad_move(ctx, leaf, out)
        bound = applies_too_large(ctx, leaf)
        if bound is not None:
            _check_too_large(ctx, leaf, bound, out)
    return sort_violations(out)


# ---------------------------------------------------------------------------
# The registry: each invariant's applicability, screen and precise check side by side
# ---------------------------------------------------------------------------


def _applies_pair(ctx: Context, leaf: Leaf) -> bool:
    """``shape-changed``/``dtype-changed`` apply to every input with its output."""
    return leaf.p0 is not None and leaf.p1 is not None


def _applies_mutated(ctx: Context, leaf: Leaf) -> bool:
    """``input-mutated`` applies when a copy of an input was taken before the step."""
    return _on(ctx, "input-mutated") and bool(leaf.mut)


def _applies_always(ctx: Context, leaf: Leaf) -> bool:
    """``non-finite`` applies to every array."""
    return _on(ctx, "non-finite")


@dataclasses.dataclass(frozen=True)
class Invariant:
    """One invariant with everything about it side by side.

    * ``id``: the stable name (:data:`INVARIANTS` lists them in report order);
    * ``checks``: what it checks, in one or two sentences; ``hint``: the likely cause and the fix;
    * ``applies``: the one predicate that says when it applies (the fast screens and the precise
      checks of :func:`check_update` both ask it);
    * ``screen``: the one-pass test that proves it holds without building a record (fast path),
      or ``None`` when the shared finiteness pass or the precise check's own early exit covers it;
    * ``describe``: the precise check that finds the entries and writes the :class:`Violation`;
    * ``doc_order``: its place in the documentation's table (most common first).

    ``differs-from-reference`` has no checker here: a :class:`~optcheck.guard.Guard` with
    ``shadow=True`` and the audit report it, by the one tolerance of ``optcheck._compare``.
    """

    id: str
    checks: str
    hint: str
    applies: Callable[..., Any] | None
    screen: Callable[..., Any] | None
    describe: Callable[..., Any] | None
    doc_order: int


REGISTRY: tuple[Invariant, ...] = (
    Invariant(
        id="shape-changed",
        checks="An output has another shape than its input.",
        hint="Broadcasting: a (n, 1) bias combined with a (n,) vector becomes (n, n); keep the parameter's shape.",
        applies=_applies_pair,
        screen=None,
        describe=check_structure,
        doc_order=7,
    ),
    Invariant(
        id="dtype-changed",
        checks="An output has another dtype than its input.",
        hint="A float64 scalar or array mixed into float32 arithmetic; cast back or keep the dtype.",
        applies=_applies_pair,
        screen=None,
        describe=check_structure,
        doc_order=8,
    ),
    Invariant(
        id="input-mutated",
        checks="An input that must not change (the gradients, by default) was changed in place; needs a copy taken before the step (`before=`).",
        hint="The update wrote into its argument, e.g. `grads['dW1'] += λ·W`; compute into a new array.",
        applies=_applies_mutated,
        screen=_all_equal,
        describe=_check_mutated,
        doc_order=9,
    ),
    Invariant(
        id="step-not-incremented",
        checks="The step counter did not grow by exactly one.",
        hint="Increment t once per update, before the bias corrections use it; a frozen or doubly advanced counter makes 1 − β^t wrong.",
        applies=applies_counter,
        screen=None,
        describe=_check_counter,
        doc_order=4,
    ),
    Invariant(
        id="negative-second-moment",
        checks="A state entry whose role is never negative (`second-moment`, `max-second-moment`, `accumulator`, `norm`, `step-size`) is < 0. For centered RMSprop, v − ḡ² below zero by more than rounding (8 ulp of v + ḡ²).",
        hint="A term that is not a square was added to the squared gradient (an L2 penalty λW is the usual one): add it to the gradient before squaring, S = β·S + (1−β)·(g + λW)², and step with (g + λW).",
        applies=applies_nonnegative,
        screen=_nonneg_clear,
        describe=_check_negative,
        doc_order=1,
    ),
    Invariant(
        id="sqrt-of-negative",
        checks="An argument about to go into a square root is negative: centered RMSprop's v − ḡ² below zero within rounding, or any array passed to `sqrt_of_negative`.",
        hint="v − ḡ² is a variance, ≥ 0 only in exact arithmetic; clamp it, √max(v − ḡ², 0), or add ε inside the root.",
        applies=applies_centered,
        screen=_centered_clear,
        describe=_check_centered,
        doc_order=2,
    ),
    Invariant(
        id="accumulator-decreased",
        checks="An `accumulator` (Adagrad's sum) or a `max-second-moment` (AMSGrad's maximum) went down.",
        hint="A sum of squares only grows: a non-square term was added, or the state was reset; AMSGrad's maximum was overwritten with the current v.",
        applies=applies_monotone,
        screen=_any_less,
        describe=_check_monotone,
        doc_order=3,
    ),
    Invariant(
        id="non-finite",
        checks="NaN, +inf or −inf in params, grads, state or the update. `became=True`: the array went non-finite in this step; `False`: it already was on input.",
        hint="A non-finite gradient: the loss or the backward pass. Became non-finite: √ of a negative second moment, 0/0 (ε must go in the denominator), overflow; the hint looks at the inputs at that entry to say which.",
        applies=_applies_always,
        screen=_all_finite_many,
        describe=_check_nonfinite,
        doc_order=0,
    ),
    Invariant(
        id="update-without-gradient",
        checks="A parameter entry moved although its gradient, its momentum and (for the rule) its weight decay are zero. Applies to rules that keep such an entry still, which optcheck finds by probing the rule once on a tiny array.",
        hint="A constant move of about lr·ε is the signature of ε added outside the division: g/(√S + ε), not g/√S + ε.",
        applies=applies_no_grad_move,
        screen=_no_grad_move_clear,
        describe=_check_no_grad_move,
        doc_order=5,
    ),
    Invariant(
        id="update-too-large",
        checks="An entry moved further than `rule.update_bound(t)` allows (×1.001, plus two ulp of the parameter). For Adam the bound is lr·(1−β1)·√bc2·√(Σ_{k<t}(β1²/β2)^k)/(bc1·√(1−β2)) (Cauchy–Schwarz; lr at t = 1, at most about 7.3·lr with the defaults), plus lr·λ·\\|p\\| for decoupled decay. It holds for states the rule built from `init`: skip it for made-up states.",
        hint="A missing or wrong bias correction (1−β^t with t from 1, not (1−β)^t), β and 1−β swapped, the square root left out, lr applied twice.",
        applies=applies_too_large,
        screen=_too_large_any,
        describe=_check_too_large,
        doc_order=6,
    ),
    Invariant(
        id="differs-from-reference",
        checks="Reported by a [`Guard`][optcheck.guard.Guard] with `shadow=True`: the step differs from the reference rule recomputed on sampled coordinates, beyond the dtype's tolerance (on the step, not the parameter, so an ε misplaced by 1e-8 shows in float64).",
        hint="A misplaced ε, another momentum or weight-decay convention, or a bug: `python -m optcheck audit` names it.",
        applies=None,
        screen=None,
        describe=None,
        doc_order=10,
    ),
)
"""Every invariant, in report order (``tuple(i.id for i in REGISTRY) == INVARIANTS``)."""


def registry_markdown() -> str:
    """The table of ``docs/invariants.md`` ("The list"), written from :data:`REGISTRY`."""
    lines = ["| id | what it checks | hint (the likely cause and the fix) |", "|---|---|---|"]
    for inv in sorted(REGISTRY, key=lambda i: i.doc_order):
        lines.append(f"| `{inv.id}` | {inv.checks} | {inv.hint} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


def _leaves_for(
    trees: Mapping[str, Tree],
    owner: str,
    names: Mapping[str, str] | None = None,
    allow_none: Collection[str] = (),
    same_shape: Collection[str] | None = None,
    required: Collection[str] = (),
    complex_ok: Collection[str] = (),
) -> list[tuple[Path, dict[str, Array]]]:
    """Zip trees of the same structure and turn every leaf into an array.

    ``names`` maps each tree's label to the argument it came from (``"new_params"``,
    ``"state['exp_avg']"``): every error names the argument and the key path. Trees in
    ``same_shape`` (default: all) must have the shapes of ``owner``'s leaves; all leaves must
    come from one array library. Trees in ``required`` must not be ``None``; complex leaves are
    refused (their order, and so every ``<`` below, means nothing) except in ``complex_ok``.
    Raises ``UsageError`` (``UsageTypeError`` for a wrong type).
    """
    for k in (owner, *required):
        if trees.get(k) is None:
            raise _v.UsageTypeError(
                f"{(names or {}).get(k, k)}=None is invalid; expected an array or a dict of arrays."
            )
    present = {k: v for k, v in trees.items() if v is not None}
    shown = {k: (names or {}).get(k, k) for k in present}
    rows = _v.check_same_structure(present, shapes=False, namespace=False, labels=shown)
    strict = set(present) - {owner} if same_shape is None else set(same_shape) & set(present)
    out = []
    libraries: dict[str, Any] = {}
    for path, leaves in rows:
        arrs = {}
        for label, leaf in zip(present, leaves, strict=True):
            where = path_str(shown[label], path)
            arr = arrs[label] = _as_array(leaf, where, allow_none=label in allow_none)
            if arr is not None and label not in complex_ok and _is_complex(arr):
                raise _v.UsageTypeError(
                    f"{where} has dtype {arr.dtype}; expected real numbers (complex entries have no order)"
                )
            if arr is not None and not isinstance(leaf, (int, float, np.number)):
                libraries.setdefault(where, arr)
        if owner in arrs and arrs[owner] is not None:
            want = _shape(arrs[owner])
            for label in strict:
                arr = arrs.get(label)
                if arr is not None and _shape(arr) != want:
                    raise UsageError(
                        f"{path_str(shown[label], path)} has shape {_shape(arr)} but "
                        f"{path_str(shown[owner], path)} has shape {want}: expected {shown[label]} to have "
                        f"the shapes of {shown[owner]}."
                    )
        out.append((path, arrs))
    _v.check_same_namespace(libraries)
    return out


def _is_complex(x: Array) -> bool:
    dtype = x.dtype
    if isinstance(dtype, np.dtype):
        return dtype.kind == "c"
    return bool(getattr(dtype, "is_complex", False)) or "complex" in str(dtype)


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise _v.UsageTypeError(
            f"name is invalid: expected a string (how messages call the array), got {_v.describe_value(name)}."
        )
    return name


def _single(
    fn: Callable[[Context, Leaf, list[Violation]], None], ctx: Context, leaves: list[Leaf]
) -> list[Violation]:
    out: list[Violation] = []
    for leaf in leaves:
        fn(ctx, leaf, out)
    return sort_violations(out)


def _simple_ctx(name: str, what: str, step: int | None, role: str | None = None) -> Context:
    roles = {what: role} if role else {}
    return Context(rule=None, roles=roles, names={what: name}, key_prefix={}, step=step, skip=frozenset())


def non_finite(
    x: Tree, *, name: str = "x", before: Tree | None = None, step: int | None = None
) -> list[Violation]:
    """``non-finite``: NaN, +inf or -inf entries in ``x`` (an array or a nested dict of arrays).

    With ``before`` (the same array before the step) the violation tells whether the
    array became non-finite in this step (``became=True``) or already was (``False``).
    """
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    # the array is named as the caller names it (``name``, "x" by default)
    rows = _leaves_for({"x": x, "before": before}, "x", {"x": name}, complex_ok=("x", "before"))
    ctx = _simple_ctx(name, "state", step)
    ctx.names = {"state": name}
    out: list[Violation] = []
    for path, a in rows:
        arr = a["x"]
        leaf = Leaf(
            path,
            _shape(arr),
            arr.dtype,
            None,
            None,
            None,
            {"state": a.get("before")} if "before" in a else {},
            {"state": arr},
            {},
        )
        _check_nonfinite(ctx, leaf, "state", arr, a.get("before"), out)
    return sort_violations(out)


def negative_second_moment(
    v: Tree,
    *,
    name: str = "v",
    before: Tree | None = None,
    grads: Tree | None = None,
    params: Tree | None = None,
    mean: Tree | None = None,
    step: int | None = None,
) -> list[Violation]:
    """``negative-second-moment``: entries of a second moment ``v`` below zero.

    ``grads`` and ``params`` (same structure) are quoted at the first bad index. With
    ``mean`` (centered RMSprop's mean gradient ḡ), checks v − ḡ² instead: below −rounding
    is ``negative-second-moment``, below zero within rounding is ``sqrt-of-negative``.
    """
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    rows = _leaves_for(
        {"v": v, "before": before, "grads": grads, "params": params, "mean": mean},
        "v",
        {"v": name, "before": "before", "grads": "grads", "params": "params", "mean": "mean"},
    )
    roles = {"v": "second-moment", "mean": "first-moment"}
    ctx = Context(
        rule=None, roles=roles, names={"v": name, "mean": "mean"}, key_prefix={}, step=step, skip=frozenset()
    )
    out: list[Violation] = []
    for path, a in rows:
        s1 = {"v": a["v"]}
        s0 = {"v": a["before"]} if "before" in a else {}
        if "mean" in a:
            s1["mean"] = a["mean"]
        leaf = Leaf(path, _shape(a["v"]), a["v"].dtype, a.get("params"), None, a.get("grads"), s0, s1, {})
        if "mean" in a:
            _check_centered(ctx, leaf, "v", "mean", out)
        else:
            _check_negative(ctx, leaf, "v", out)
    return sort_violations(out)


def sqrt_of_negative(x: Tree, *, name: str = "x", step: int | None = None) -> list[Violation]:
    """``sqrt-of-negative``: entries of ``x``, an argument about to go into a square root, below zero."""
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    rows = _leaves_for({"x": x}, "x", {"x": name})
    out: list[Violation] = []
    for path, a in rows:
        arr = a["x"]
        xp = _xp(arr)
        with np.errstate(invalid="ignore"):
            n, j = _count_first(xp, arr < 0)
        if not n:
            continue
        where = path_str(name, path)
        idx = tuple(int(i) for i in np.unravel_index(j, _shape(arr))) if _shape(arr) else ()
        value = _at(xp, arr, j)
        out.append(
            Violation(
                id="sqrt-of-negative",
                where=where,
                message=(
                    f"{where} goes into a square root but is negative{'' if step is None else f' at step {step}'}: "
                    f"{count_first(n, _size(_shape(arr)), idx, fmt_number(value))}."
                ),
                hint=(
                    "Only a sum or average of squares may go into the root; clamp a difference that is ≥ 0 only "
                    "in exact arithmetic (√max(x, 0)), or find the term that is not a square."
                ),
                step=step,
                shape=_shape(arr),
                dtype=_dtype_name(arr.dtype),
                count=n,
                counts={"negative": n},
                size=_size(_shape(arr)),
                index=idx,
                value=value,
            )
        )
    return out


def accumulator_decreased(
    before: Tree,
    after: Tree,
    *,
    name: str = "S",
    kind: str = "accumulator",
    grads: Tree | None = None,
    params: Tree | None = None,
    step: int | None = None,
) -> list[Violation]:
    """``accumulator-decreased``: entries of a never-decreasing state that went down.

    ``kind`` is ``"accumulator"`` (Adagrad's sum of squares) or ``"max-second-moment"``
    (AMSGrad's running maximum); it selects the hint.
    """
    kind = _v.check_choice("kind", kind, sorted(MONOTONE_ROLES))
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    rows = _leaves_for(
        {"after": after, "before": before, "grads": grads, "params": params},
        "after",
        {"after": "after", "before": "before", "grads": "grads", "params": "params"},
        required=("before",),
    )
    ctx = Context(rule=None, roles={"s": kind}, names={"s": name}, key_prefix={}, step=step, skip=frozenset())
    leaves = [
        Leaf(
            path,
            _shape(a["after"]),
            a["after"].dtype,
            a.get("params"),
            None,
            a.get("grads"),
            {"s": a["before"]},
            {"s": a["after"]},
            {},
        )
        for path, a in rows
    ]
    return _single(lambda c, leaf, o: _check_monotone(c, leaf, "s", o), ctx, leaves)


def step_not_incremented(before: Any, after: Any, *, name: str = "state['step']") -> list[Violation]:
    """``step-not-incremented``: the step counter did not grow by exactly one (numbers or 0-d arrays)."""
    ctx = Context(
        rule=None, roles={"step": "counter"}, names={"step": name}, key_prefix={}, step=None, skip=frozenset()
    )
    out: list[Violation] = []
    _check_name(name)
    for label, x in (("before", before), ("after", after)):
        _check_count(label, x)
    _check_counter(ctx, "step", before, after, out)
    return out


def _check_count(label: str, x: Any) -> None:
    """A step counter's value: a real number (or one-element numeric array), not NaN, not a string or bool."""
    value = x
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type):
        _v.check_array(label, x)
        if _size(_shape(x)) != 1 or _v.library_of(x) not in ("numpy", "torch"):
            raise _v.UsageTypeError(
                f"{label} is invalid: expected a number (the step counter), got {_v.describe_value(x)}."
            )
        value = x.item() if hasattr(x, "item") else float(x)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise _v.UsageTypeError(
            f"{label} is invalid: expected a number (the step counter), got {_v.describe_value(x)}."
        )
    if not math.isfinite(float(value)):
        raise UsageError(f"{label} is invalid: expected a finite number (the step counter), got {value!r}.")


def update_without_gradient(
    params: Tree,
    grads: Tree,
    new_params: Tree,
    *,
    momentum: Tree | None = None,
    name: str = "params",
    step: int | None = None,
) -> list[Violation]:
    """``update-without-gradient``: a parameter entry moved although its gradient (and ``momentum``) is zero.

    Only meaningful for a rule without weight decay (a decayed parameter moves with a
    zero gradient); :func:`check_update` decides that from the rule.
    """
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    rows = _leaves_for(
        {"params": params, "grads": grads, "new": new_params, "momentum": momentum},
        "params",
        {"params": "params", "grads": "grads", "new": "new_params", "momentum": "momentum"},
        required=("grads", "new"),
    )
    ctx = Context(
        rule=None,
        roles={"momentum": "momentum"},
        names={"params": name},
        key_prefix={},
        step=step,
        skip=frozenset(),
    )
    leaves = [
        Leaf(
            path,
            _shape(a["params"]),
            a["params"].dtype,
            a["params"],
            a["new"],
            a["grads"],
            {"momentum": a["momentum"]} if "momentum" in a else {},
            {},
            {},
        )
        for path, a in rows
    ]
    return _single(_check_no_grad_move, ctx, leaves)


def update_too_large(
    params: Tree,
    new_params: Tree,
    *,
    bound: float,
    decay: float = 0.0,
    name: str = "params",
    step: int | None = None,
) -> list[Violation]:
    """``update-too-large``: entries that moved by more than ``bound + decay·|p|`` (times 1.001, plus rounding)."""
    bound = _v.check_float("bound", bound, low=0.0)
    decay = _v.check_float("decay", decay, low=0.0)
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    rows = _leaves_for(
        {"params": params, "new": new_params},
        "params",
        {"params": "params", "new": "new_params"},
        required=("new",),
    )
    ctx = Context(rule=None, roles={}, names={"params": name}, key_prefix={}, step=step, skip=frozenset())
    leaves = [
        Leaf(path, _shape(a["params"]), a["params"].dtype, a["params"], a["new"], None, {}, {}, {})
        for path, a in rows
    ]
    return _single(lambda c, leaf, o: _check_too_large(c, leaf, (float(bound), float(decay)), o), ctx, leaves)


def shape_changed(
    before: Tree, after: Tree, *, name: str = "params", step: int | None = None
) -> list[Violation]:
    """``shape-changed``: leaves of ``after`` whose shape differs from the same leaf of ``before``."""
    return [v for v in _structure(before, after, name, step) if v.id == "shape-changed"]


def dtype_changed(
    before: Tree, after: Tree, *, name: str = "params", step: int | None = None
) -> list[Violation]:
    """``dtype-changed``: leaves of ``after`` whose dtype differs from the same leaf of ``before``."""
    return [v for v in _structure(before, after, name, step) if v.id == "dtype-changed"]


def _structure(before: Tree, after: Tree, name: str, step: int | None) -> list[Violation]:
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    # a different shape or dtype is the finding here, not a usage error
    rows = _leaves_for(
        {"before": before, "after": after},
        "before",
        same_shape=(),
        required=("after",),
        complex_ok=("before", "after"),
    )
    ctx = Context(rule=None, roles={}, names={"x": name}, key_prefix={}, step=step, skip=frozenset())
    out: list[Violation] = []
    for path, a in rows:
        check_structure(ctx, "x", path, _shape(a["before"]), a["before"].dtype, a["after"], out)
    return out


def input_mutated(
    before: Tree, after: Tree, *, name: str = "grads", step: int | None = None
) -> list[Violation]:
    """``input-mutated``: entries of an input that changed during the update (``before`` is a copy taken first).

    NaN in the same place in both counts as unchanged.
    """
    name = _check_name(name)
    step = _v.check_int("step", step, low=0, optional=True)
    rows = _leaves_for(
        {"before": before, "after": after},
        "before",
        same_shape=(),
        required=("after",),
        complex_ok=("before", "after"),
    )
    ctx = Context(rule=None, roles={}, names={"x": name}, key_prefix={}, step=step, skip=frozenset())
    out: list[Violation] = []
    for path, a in rows:
        b, n = a["before"], a["after"]
        if _shape(b) != _shape(n):
            out.extend(v for v in _structure(b, n, name, step) if v.id == "shape-changed")
            continue
        leaf = Leaf(path, _shape(n), n.dtype, None, None, None, {}, {}, {"x": (b, n)})
        _check_mutated(ctx, leaf, "x", out)
    return out


def check_update(
    rule: Rule | None,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    new_params: Tree,
    new_state: Mapping[str, Any] | None,
    *,
    before: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
    step: int | None = None,
    roles: Mapping[str, str] | None = None,
    key_prefix: Mapping[str, str] | None = None,
    immutable: Collection[str] = ("grads",),
    skip: Collection[str] = (),
    overrides: Mapping[Path, Rule] | None = None,
) -> list[Violation]:
    """Every invariant that applies to one step ``(params, grads, state) -> (new_params, new_state)``.

    * ``rule``: the reference :class:`~optcheck.rules.Rule` the step implements (or ``None``:
      only the rule-free checks run). Its ``state_roles`` say which state entries are second
      moments (must be ≥ 0), accumulators (must not decrease), momenta and counters; its
      :meth:`~optcheck.rules.Rule.update_bound` bounds the step; whether it moves a parameter
      with a zero gradient is probed once on a tiny array (weight decay, ASGD's shrinkage).
    * ``params``, ``grads``, ``state``: the inputs of the step; ``state`` and ``new_state``
      are dicts keyed by the rule's state names (``{"step": 3, "exp_avg_sq": tree, ...}``),
      with array entries shaped like ``params``.
    * ``before``: copies of the inputs taken before the step, ``{"params": ..., "grads": ...,
      "state": ...}``. When given they are the "before" values (needed when the update wrote
      into its inputs), and each input named in ``immutable`` (default: the gradients) is
      compared with its copy for ``input-mutated``.
    * ``names``: the user's names for messages, keyed by ``"params"``, ``"grads"``, a state
      key or a role: ``{"params": "parameters", "exp_avg_sq": "S"}`` makes ``where`` read
      ``S['dW1']`` together with ``key_prefix={"exp_avg_sq": "d"}`` (the course layout, where
      ``S['dW1']`` belongs to ``parameters['W1']``).
    * ``step``: the step number for messages and bounds (default: ``new_state["step"]``).
    * ``roles``: extra or overriding state roles (state key -> role).
    * ``skip``: invariant ids not to check; ``overrides``: per-leaf rules (parameter groups).

    The update-too-large bound holds for states the rule built from ``rule.init``; skip
    that id when the state was made up. Pure: never mutates or keeps the arrays. Returns
    the violations, causes first (see :data:`INVARIANTS`).
    """
    ctx, leaves, counters = prepare(
        rule,
        params,
        grads,
        state,
        new_params,
        new_state,
        before=before,
        names=names,
        step=step,
        roles=roles,
        key_prefix=key_prefix,
        immutable=immutable,
        skip=skip,
        overrides=overrides,
    )
    return run_checks(ctx, leaves, counters)


def prepare(
    rule: Rule | None,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    new_params: Tree,
    new_state: Mapping[str, Any] | None,
    *,
    before: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
    step: int | None = None,
    roles: Mapping[str, str] | None = None,
    key_prefix: Mapping[str, str] | None = None,
    immutable: Collection[str] = ("grads",),
    skip: Collection[str] = (),
    overrides: Mapping[Path, Rule] | None = None,
    history: bool = True,
    labels: Mapping[str, str] | None = None,
    state_keys: Mapping[str, str] | None = None,
) -> tuple[Context, list[Leaf], list[tuple[str, Any, Any]]]:
    """Validate the arguments of :func:`check_update` and build the step records.

    Errors name the arguments of :func:`check_update` (``new_params``, ``state['exp_avg']``);
    a front end with other argument names passes ``labels`` (``{"new_params": "params",
    "new_state": "state", "before['params']": ...}``) and ``state_keys`` (state key -> the
    user's key, ``{"square_avg": "S"}``).

    ``history=False``: only the values after the step are known (``params``/``state`` are
    ignored); the records then have no "before" values.
    """
    if rule is not None and not isinstance(rule, Rule):
        hint = f" Pass optcheck.rules.get({rule!r})." if isinstance(rule, str) else ""
        raise _v.UsageTypeError(
            f"rule must be an optcheck Rule (optcheck.rules.get(name)) or None, got {_v.describe_value(rule)}.{hint}"
        )
    skip = _v.check_str_seq("skip", skip)
    unknown = sorted(set(skip) - set(INVARIANTS))
    if unknown:
        raise UsageError(
            f"skip={sorted(skip)} names unknown invariant(s) {unknown}; expected ids from {list(INVARIANTS)}"
        )
    immutable = _v.check_str_seq("immutable", immutable, choices=("params", "grads", "state"))
    names = _v.check_names("names", names)
    key_prefix = _v.check_names("key_prefix", key_prefix)
    roles = _v.check_names("roles", roles)
    before = _v.check_mapping("before", before, keys=("params", "grads", "state"))
    overrides = _v.check_mapping(
        "overrides", overrides, key_type=(str, tuple), value_check=_check_override_rule
    )
    role_map = roles_for(rule, roles)

    def arg(a: str) -> str:
        return (labels or {}).get(a, a)

    def user_key(k: str) -> str:
        return (state_keys or {}).get(k, k)

    state = _check_state_arg(arg("state"), state, rule, state_keys)
    new_state = _check_state_arg(arg("new_state"), new_state, rule, state_keys)
    in_before = "state" in before and before["state"] is not None
    state0_name = arg("before['state']") if in_before else arg("state")
    state0 = _check_state_arg(state0_name, before["state"], rule, state_keys) if in_before else state
    p_old = before.get("params", params)
    p_old_name = arg("before['params']") if "params" in before else arg("params")
    step = _v.check_int("step", step, low=0, optional=True)
    if step is None:
        s = new_state.get("step")
        try:
            step = int(float(s)) if s is not None else None
        except (TypeError, ValueError):
            step = None
    names = dict(names or {})
    ctx = Context(
        rule=rule,
        roles=role_map,
        names=names,
        key_prefix=dict(key_prefix or {}),
        step=step,
        skip=frozenset(skip),
        leaf_rules=dict(overrides or {}),
    )
    scalar = {k for k in new_state if is_scalar_entry(rule, k, role_map, new_state[k])}
    array_keys = [k for k in new_state if k not in scalar and (k in state0 or not history)]
    counters = (
        [(k, state0[k], new_state[k]) for k in new_state if k in state0 and k in scalar] if history else []
    )
    for label, tree in (("params", p_old), ("grads", grads), ("new_params", new_params)):
        if tree is None and (history or label != "params"):
            shown = p_old_name if label == "params" else arg(label)
            raise _v.UsageTypeError(f"{shown} is invalid: expected an array or a dict of arrays, got None.")
    trees: dict[str, Tree] = {"params": p_old, "new_params": new_params, "grads": grads}
    # errors name the argument each tree came from
    label_names = {"params": p_old_name, "new_params": arg("new_params"), "grads": arg("grads")}
    if not history:
        trees["params"] = new_params
        label_names["params"] = arg("new_params")
    for k in array_keys:
        trees[f"s0:{k}"] = state0[k] if history else None
        trees[f"s1:{k}"] = new_state[k]
        label_names[f"s0:{k}"] = f"{state0_name}[{user_key(k)!r}]"
        label_names[f"s1:{k}"] = f"{arg('new_state')}[{user_key(k)!r}]"
    mut_pairs: list[tuple[str, str, str]] = []
    for what in immutable:
        if what not in before or what == "state":
            continue
        current = {"params": params, "grads": grads}.get(what)
        if current is None:
            continue
        trees[f"mut0:{what}"] = before[what]
        trees[f"mut1:{what}"] = current
        label_names[f"mut0:{what}"] = arg(f"before[{what!r}]")
        label_names[f"mut1:{what}"] = arg(what)
        mut_pairs.append((what, f"mut0:{what}", f"mut1:{what}"))
    # the gradient belongs to the parameter: same shape (a changed parameter or state shape is a finding)
    strict = ["grads", *(f"mut0:{w}" for w, _, _ in mut_pairs)] if history else ["grads"]
    rows = _leaves_for(
        trees,
        "params",
        label_names,
        allow_none=[k for k in trees if k[:3] in ("s0:", "s1:")],
        same_shape=strict,
        complex_ok=["new_params", *(k for k in trees if k[:3] == "s1:")],  # a changed dtype is the finding
    )
    leaves = []
    for path, a in rows:
        p0 = a["params"]
        leaves.append(
            Leaf(
                path=path,
                shape=_shape(p0),
                dtype=p0.dtype,
                p0=p0 if history else None,
                p1=a["new_params"],
                g=a["grads"],
                s0={k: a[f"s0:{k}"] for k in array_keys if a.get(f"s0:{k}") is not None},
                s1={k: a[f"s1:{k}"] for k in array_keys if a.get(f"s1:{k}") is not None},
                mut={w: (a[b0], a[b1]) for w, b0, b1 in mut_pairs},
            )
        )
    return ctx, leaves, counters


def _check_override_rule(where: str, value: Any) -> Any:
    if not isinstance(value, Rule):
        raise _v.UsageTypeError(
            f"{where} is invalid: expected an optcheck Rule (rule.replace(...) with other hyperparameters), "
            f"got {_v.describe_value(value)}."
        )
    return value


def _check_state_arg(
    name: str, state: Any, rule: Rule | None, state_keys: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A state argument of :func:`check_update`: ``None`` or a dict with string keys; scalar entries are numbers."""
    out = _v.check_mapping(name, state, what="a dict of state entries ({'step': 3, 'exp_avg': tree, ...})")
    scalar_keys = set(rule.scalar_states) if rule is not None else {"step"}
    for key in scalar_keys & set(out):
        value = out[key]
        where = f"{name}[{(state_keys or {}).get(key, key)!r}]"
        if key == "step" and isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            if value < 0:
                raise UsageError(f"{where} is invalid: expected a whole number >= 0, got {value!r}.")
            continue
        _check_count(where, value)
        if key == "step" and (float(value) != int(float(value)) or float(value) < 0):
            raise UsageError(f"{where} is invalid: expected a whole number >= 0, got {value!r}.")
    return out


def is_scalar_entry(rule: Rule | None, key: str, roles: Mapping[str, str], x: Any) -> bool:
    """Whether state entry ``key`` is a number (the step counter, a schedule) rather than a tree."""
    if isinstance(x, Mapping):
        return False
    if rule is not None:
        if key in rule.scalar_states:
            return True
        if key in rule.array_keys():
            return False
    if roles.get(key) in COUNTER_ROLES or roles.get(key) == "schedule":
        return True
    return isinstance(x, (int, float, np.generic)) and not isinstance(x, bool)
