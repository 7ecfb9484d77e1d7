"""Hypothesis strategies for optimizer inputs: parameters, gradients, valid states, hyperparameters.

``hypothesis.extra.numpy`` knows nothing about optimizers. These strategies do:
which states are valid for a rule (second moments >= 0, an AMSGrad maximum >= the
second moment, a step count consistent with bias correction and the rule's
schedules), which hyperparameters are legal, and which values break update rules
(exact zeros, negative weights with a positive L2 coefficient, mixed signs, tiny and
huge magnitudes, subnormals, signed zeros).

* :func:`params`: one array or a dict of arrays (the course layout ``W1, b1, ...``,
  or torch-style ``{"fc1": {"weight": ..., "bias": ...}}``);
* :func:`grads_like`: gradients with the structure, shapes, dtypes and array library of ``params``;
* :func:`states`: a valid state of a rule for ``params``, reached by running the rule itself;
* :func:`hyperparameters`: keyword arguments for ``optcheck.rules.get``, biased toward the edges;
* :func:`rules`: ``Rule`` values with drawn hyperparameters;
* :func:`elements`: the element strategy behind them, for use with ``hypothesis.extra.numpy``.

Every function validates its arguments when it is called (not when an example is
drawn) and raises :class:`hypothesis.errors.InvalidArgument` showing the bad value.
Everything is drawn from the rules' own metadata (``hyper_specs()``, ``array_keys()``,
``state_roles``), so a new rule needs no change here.

This module imports hypothesis; ``import optcheck`` does not import it.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from ._core import validate as _v
from ._core.tree import Tree, describe, flatten, map_tree, path_str, unflatten
from .rules import Rule, get, names
from .rules._base import Hyper

__all__ = [
    "STEP_CHOICES",
    "elements",
    "grads_like",
    "hyperparameters",
    "magnitude_bounds",
    "params",
    "rules",
    "states",
]

STEP_CHOICES: tuple[int, ...] = (0, 1, 2, 3, 5, 10, 100, 1000, 10**6)
"""The step counts :func:`states` draws from when ``step`` is not given (it shrinks toward 0)."""

# Rules whose only scalar state is ``step`` can start at any step directly; the others
# (NAdam's mu_product, ASGD's eta and mu) are advanced step by step, so their drawn
# step counts stay below this bound.
_MAX_REPLAYED_STEP = 1000

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_STYLES = ("dict", "nested", "array")


# ---------------------------------------------------------------------------------------------
# Argument validation helpers
# ---------------------------------------------------------------------------------------------


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} must be True or False")
    return value


def _check_dtype(dtype: object) -> np.dtype[Any]:
    try:
        dt: np.dtype[Any] = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgument(
            f"dtype={dtype!r} is not a numpy dtype; expected np.float16, np.float32 or np.float64"
        ) from None
    if dt not in _FLOAT_DTYPES:
        raise InvalidArgument(
            f"dtype={dtype!r} is not a floating dtype that update rules accept; "
            "expected np.float16, np.float32 or np.float64"
        )
    return dt


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{name}={value!r} must be a whole number")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidArgument(f"{name}={value!r} must be {rng}")
    return int(value)


def _resolve_rule(rule: object, argname: str = "rule") -> Rule:
    """A ``Rule`` from a rule or a rule name; ``InvalidArgument`` naming ``argname`` otherwise."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        try:
            return get(rule)
        except ValueError as e:
            raise InvalidArgument(f"{argname}={rule!r}: {e}") from None
    raise InvalidArgument(
        f"{argname}={rule!r} must be a rule name (one of {names()}) or an optcheck.rules.Rule, "
        f"got {type(rule).__name__}"
    )


def _check_shape(argname: str, shape: object) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidArgument(
            f"{argname}={shape!r} is not a shape; expected a tuple of non-negative ints such as (3, 4)"
        )
    return tuple(int(d) for d in shape)


def _check_shapes_tree(argname: str, shapes: object) -> Any:
    """A shape tuple, or a (nested) mapping of name -> shape; returned normalised."""
    if isinstance(shapes, Mapping):
        out: dict[str, Any] = {}
        for k, v in shapes.items():
            if not isinstance(k, str):
                raise InvalidArgument(f"{argname} has key {k!r}; parameter names must be strings")
            out[k] = _check_shapes_tree(f"{argname}[{k!r}]", v)
        return out
    return _check_shape(argname, shapes)


def _check_params_tree(params: object, argname: str = "params") -> list[tuple[tuple[str, ...], Any]]:
    """The leaves of a concrete params tree, each checked to be a floating-point array."""
    if isinstance(params, st.SearchStrategy):
        raise InvalidArgument(
            f"{argname} must be concrete arrays, not a strategy ({params!r}); draw them first, e.g. "
            f"@given(st.data()) ... p = draw(params()); g = draw(grads_like(p))"
        )
    try:
        leaves = flatten(params)
    except TypeError as e:
        raise InvalidArgument(f"{argname}: {e}") from None
    from array_api_compat import array_namespace

    libraries: dict[str, Any] = {}
    for path, leaf in leaves:
        where = path_str(argname, path)
        if isinstance(leaf, np.ndarray) and type(leaf) is not np.ndarray:
            try:
                _v.check_array(where, leaf)  # np.matrix and masked arrays
            except TypeError as e:
                raise InvalidArgument(str(e)) from None
        libraries[where] = leaf
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise InvalidArgument(f"{where} is {describe(leaf)}; expected a floating-point array")
        try:
            ok = array_namespace(leaf).isdtype(leaf.dtype, "real floating")
        except TypeError:
            raise InvalidArgument(f"{where} is {describe(leaf)}, which is not an array-API array") from None
        if not ok:
            raise InvalidArgument(
                f"{where} has dtype {leaf.dtype}; expected a floating-point array (float16, float32 or float64)"
            )
    try:
        _v.check_same_namespace(libraries)
    except TypeError as e:
        raise InvalidArgument(str(e)) from None
    return leaves


# ---------------------------------------------------------------------------------------------
# Elements
# ---------------------------------------------------------------------------------------------


def magnitude_bounds(dtype: Any = np.float64) -> tuple[float, float]:
    """The smallest and largest magnitudes the adversarial elements span for ``dtype``.

    ``(max(1e-30, finfo.tiny), min(1e30, finfo.max**0.25 / 2))``, rounded inward to values
    of ``dtype``: for float64 that is 1e-30..1e30; for float32 1e-30..2.1e9 and for float16
    6.1e-5..7.996. The fourth root keeps a product of two squares (Adafactor's row·column
    estimate, a squared L2 term) finite, so the drawn values do not overflow the rule
    itself. Subnormals and the smallest normal number are drawn on top of this range.
    """
    dt = _check_dtype(dtype)
    fi = np.finfo(dt)
    lo = dt.type(max(1e-30, float(fi.tiny)))
    hi = dt.type(min(1e30, float(fi.max) ** 0.25 / 2))
    # both exactly representable in ``dtype``, lo rounded up and hi rounded down
    if float(lo) < max(1e-30, float(fi.tiny)):
        lo = np.nextafter(lo, dt.type(np.inf))
    if float(hi) > min(1e30, float(fi.max) ** 0.25 / 2):
        hi = np.nextafter(hi, dt.type(0))
    return float(lo), float(hi)


def _representable(dt: np.dtype[Any]) -> Callable[[float], float]:
    def cast(x: float) -> float:
        with np.errstate(all="ignore"):
            return float(dt.type(x))

    return cast


def _log_magnitudes(dt: np.dtype[Any], lo: float, hi: float) -> st.SearchStrategy[float]:
    """Signed values whose magnitude is log-uniform in [lo, hi] (shrinks toward +1 when in range)."""
    llo, lhi = math.log10(lo), math.log10(hi)
    exps = st.floats(llo, lhi)
    cast = _representable(dt)

    def build(sign: float, e: float) -> float:
        return cast(sign * min(hi, max(lo, 10.0**e)))

    return st.builds(build, st.sampled_from((1.0, -1.0)), exps)


def _specials(dt: np.dtype[Any], finite_only: bool) -> list[float]:
    fi = np.finfo(dt)
    lo, hi = magnitude_bounds(dt)
    # simple values first: Hypothesis shrinks toward the start of this list, so a
    # counterexample reads W = -1.0 rather than W = -2.2e-308 when either fails
    base = [
        0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        -0.0,
        lo,
        -lo,
        hi,
        -hi,
        float(fi.eps),
        -float(fi.eps),
        float(fi.tiny),
        -float(fi.tiny),
        float(fi.smallest_subnormal),
        -float(fi.smallest_subnormal),
    ]
    if not finite_only:
        base += [math.nan, math.inf, -math.inf]
    cast = _representable(dt)
    out: list[float] = []
    for v in base:
        c = cast(v)
        if not any(
            (c == o and math.copysign(1, c) == math.copysign(1, o)) or (c != c and o != o) for o in out
        ):
            out.append(c)
    return out


def _moderate(dt: np.dtype[Any], finite_only: bool) -> st.SearchStrategy[float]:
    width: Literal[16, 32, 64] = 16 if dt.itemsize == 2 else 32 if dt.itemsize == 4 else 64
    hi = min(10.0, magnitude_bounds(dt)[1])
    s: st.SearchStrategy[float] = st.floats(
        -hi, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=width
    )
    if not finite_only:
        s = st.one_of(s, st.sampled_from((math.nan, math.inf, -math.inf)))
    return s


def elements(
    dtype: Any = np.float64,
    *,
    adversarial: bool = False,
    finite_only: bool = True,
    bounds: Mapping[str, Any] | None = None,
) -> st.SearchStrategy[float]:
    """The values that fill the arrays of :func:`params` and :func:`grads_like`.

    * ``adversarial=False``: ordinary values in [-10, 10] (no subnormals);
    * ``adversarial=True``: a mix of special values (``0.0``, ``-0.0``, ±1, ±0.5, the
      smallest subnormal, the smallest normal number, machine epsilon, the ends of
      :func:`magnitude_bounds`), signed values whose magnitude is log-uniform over
      :func:`magnitude_bounds` (1e-30..1e30 in float64), and ordinary values;
    * ``finite_only=False`` adds NaN, +inf and -inf to either mix;
    * ``bounds``: keyword arguments of :func:`hypothesis.extra.numpy.from_dtype` (for example
      ``{"min_value": -1, "max_value": 1}``); the values drawn stay inside them, and with
      ``adversarial=True`` the special values inside them are mixed in.
    """
    return _elements(dtype, adversarial=adversarial, finite_only=finite_only, bounds=bounds, argname="bounds")


def _elements(
    dtype: Any, *, adversarial: bool, finite_only: bool, bounds: Mapping[str, Any] | None, argname: str
) -> st.SearchStrategy[float]:
    """:func:`elements`; errors about ``bounds`` name it ``argname`` (``elements=`` when it came from there)."""
    dt = _check_dtype(dtype)
    _check_bool("adversarial", adversarial)
    _check_bool("finite_only", finite_only)
    if bounds is not None:
        if not isinstance(bounds, Mapping):
            raise InvalidArgument(
                f"{argname}={bounds!r} must be a dict of from_dtype() keyword "
                "arguments such as {'min_value': -1.0, 'max_value': 1.0}"
            )
        kwargs = dict(bounds)
        kwargs.setdefault("allow_nan", not finite_only)
        kwargs.setdefault("allow_infinity", not finite_only)
        try:
            base = hnp.from_dtype(dt, **kwargs)
            base.validate()
        except (InvalidArgument, TypeError, ValueError, OverflowError) as e:
            raise InvalidArgument(f"{argname}={dict(bounds)!r} is invalid for dtype {dt}: {e}") from None
        if not adversarial:
            return base
        lo = kwargs.get("min_value")
        hi = kwargs.get("max_value")
        inside = [
            v
            for v in _specials(dt, not kwargs["allow_nan"] and not kwargs["allow_infinity"])
            if (v != v and kwargs["allow_nan"])
            or (
                math.isinf(v)
                and kwargs["allow_infinity"]
                and (lo is None or v > lo)
                and (hi is None or v < hi)
            )
            or (
                math.isfinite(v)
                and (lo is None or v >= lo)
                and (hi is None or v <= hi)
                and (kwargs.get("allow_subnormal", True) or v == 0 or abs(v) >= np.finfo(dt).tiny)
            )
        ]
        return st.one_of(st.sampled_from(inside), base) if inside else base
    return _default_elements(dt, adversarial, finite_only)


@functools.cache
def _default_elements(dt: np.dtype[Any], adversarial: bool, finite_only: bool) -> st.SearchStrategy[float]:
    # cached: hypothesis validates a strategy object once, so reusing it keeps draws cheap
    if not adversarial:
        return _moderate(dt, finite_only)
    lo, hi = magnitude_bounds(dt)
    return st.one_of(
        st.sampled_from(_specials(dt, finite_only)),
        _log_magnitudes(dt, lo, hi),
        _moderate(dt, finite_only),
    )


def _element_strategy(
    dt: np.dtype[Any], elements_arg: object, adversarial: bool, finite_only: bool
) -> st.SearchStrategy[float]:
    if isinstance(elements_arg, st.SearchStrategy):
        if adversarial:
            raise InvalidArgument(
                f"elements={elements_arg!r} is a strategy and adversarial=True; pass one or the other "
                "(with elements= a dict of bounds, the adversarial values inside the bounds are mixed in)"
            )
        return elements_arg
    if elements_arg is not None and not isinstance(elements_arg, Mapping):
        raise InvalidArgument(
            f"elements={elements_arg!r} must be None, a hypothesis strategy, or a dict of from_dtype() "
            "keyword arguments such as {'min_value': -1.0, 'max_value': 1.0}"
        )
    return _elements(
        dt, adversarial=adversarial, finite_only=finite_only, bounds=elements_arg, argname="elements"
    )


@functools.lru_cache(maxsize=4096)
def _arrays(
    dt: np.dtype[Any], shape: tuple[int, ...], elems: st.SearchStrategy[float]
) -> st.SearchStrategy[Any]:
    # fill=elems: small arrays are often one repeated value (all zeros, all negative), which is
    # what breaks update rules; the rest are drawn element by element.
    return hnp.arrays(dt, shape, elements=elems, fill=elems)


# ---------------------------------------------------------------------------------------------
# params
# ---------------------------------------------------------------------------------------------


def _ordered_dict(strategies: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """``fixed_dictionaries`` whose result keeps the key order given (W1, b1, W2, b2)."""
    keys = list(strategies)
    return st.fixed_dictionaries(dict(strategies)).map(lambda d: {k: d[k] for k in keys})


def _course_shapes(layers: Sequence[int]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i in range(1, len(layers)):
        out[f"W{i}"] = (layers[i], layers[i - 1])
        out[f"b{i}"] = (layers[i], 1)
    return out


def _nested_shapes(layers: Sequence[int]) -> dict[str, Any]:
    return {
        f"fc{i}": {"weight": (layers[i], layers[i - 1]), "bias": (layers[i],)} for i in range(1, len(layers))
    }


def _check_layers(layers: object) -> list[int]:
    if (
        not isinstance(layers, (list, tuple))
        or len(layers) < 2
        or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in layers)
    ):
        raise InvalidArgument(
            f"layers={layers!r} must be a list of at least two positive layer sizes, such as [4, 3, 2] "
            "(input size first)"
        )
    return [int(n) for n in layers]


def _convert(xp: Any, tree: Tree) -> Tree:
    if xp is None:
        return tree
    return map_tree(lambda a: xp.asarray(a), tree)


def params(
    shapes: Any = None,
    *,
    layers: Sequence[int] | None = None,
    dtype: Any = np.float64,
    style: str | None = None,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = None,
    adversarial: bool = False,
    finite_only: bool = True,
    max_side: int = 4,
    xp: Any = None,
) -> st.SearchStrategy[Any]:
    """Parameters: one array or a (nested) dict of arrays.

    The layout:

    * ``layers=[4, 3, 2]``: the course layout ``{"W1": (3, 4), "b1": (3, 1), "W2": (2, 3),
      "b2": (2, 1)}`` (``style="nested"`` gives ``{"fc1": {"weight": (3, 4), "bias": (3,)}, ...}``);
    * ``shapes=(3, 4)``: one array of that shape; ``shapes={"W": (3, 4), "b": (3,)}``: a dict of
      arrays (nesting allowed); ``shapes`` may also be a strategy drawing either;
    * neither: the shapes are drawn, small (sides 1..``max_side``): ``style="dict"`` (the
      default) draws course layouts with 1 or 2 layers, ``style="nested"`` torch-style layouts,
      ``style="array"`` one array of 0 to 2 dimensions.

    The values: see :func:`elements` (``adversarial``, ``finite_only``, and ``elements`` either a
    strategy or a dict of bounds). ``dtype`` is np.float16, np.float32 or np.float64. ``xp``
    converts the numpy arrays drawn with ``xp.asarray`` (``xp=torch`` gives tensors).
    """
    dt = _check_dtype(dtype)
    _check_bool("adversarial", adversarial)
    _check_bool("finite_only", finite_only)
    _check_int("max_side", max_side, 1, 64)
    if style is not None and style not in _STYLES:
        raise InvalidArgument(f"style={style!r} is invalid; expected one of {_STYLES}")
    if xp is not None and not callable(getattr(xp, "asarray", None)):
        raise InvalidArgument(f"xp={xp!r} has no asarray(); expected an array namespace such as torch")
    elems = _element_strategy(dt, elements, adversarial, finite_only)

    def build(shape_tree: Any) -> st.SearchStrategy[Any]:
        if isinstance(shape_tree, Mapping):
            return _ordered_dict({k: build(v) for k, v in shape_tree.items()})
        return _arrays(dt, shape_tree, elems)

    if layers is not None:
        if shapes is not None:
            raise InvalidArgument(f"pass shapes={shapes!r} or layers={layers!r}, not both")
        sizes = _check_layers(layers)
        if style == "array":
            raise InvalidArgument(
                f"layers={layers!r} builds a dict; style='array' cannot be used with layers"
            )
        tree = _nested_shapes(sizes) if style == "nested" else _course_shapes(sizes)
        return build(tree).map(functools.partial(_convert, xp))
    if shapes is not None:
        if style is not None:
            raise InvalidArgument(
                f"style={style!r} only applies when the shapes are drawn; shapes={shapes!r} already "
                "fixes the layout"
            )
        if isinstance(shapes, st.SearchStrategy):

            def from_drawn(drawn: Any) -> st.SearchStrategy[Any]:
                return build(_check_shapes_tree("shapes (drawn)", drawn))

            return shapes.flatmap(from_drawn).map(functools.partial(_convert, xp))
        return build(_check_shapes_tree("shapes", shapes)).map(functools.partial(_convert, xp))
    sides = st.integers(1, max_side)
    if style == "array":
        drawn: st.SearchStrategy[Any] = hnp.array_shapes(
            min_dims=0, max_dims=2, min_side=1, max_side=max_side
        )
    elif style == "nested":
        drawn = st.lists(sides, min_size=2, max_size=3).map(_nested_shapes)
    else:
        drawn = st.lists(sides, min_size=2, max_size=3).map(_course_shapes)
    return drawn.flatmap(build).map(functools.partial(_convert, xp))


# ---------------------------------------------------------------------------------------------
# grads_like
# ---------------------------------------------------------------------------------------------


def _like(leaf: Any, arr: np.ndarray[Any, Any]) -> Any:
    """``arr`` in the array library (and on the device) of ``leaf``."""
    if isinstance(leaf, np.ndarray):
        return arr
    from array_api_compat import array_namespace, device

    xp = array_namespace(leaf)
    return xp.asarray(arr, device=device(leaf))


def _leaf_arrays(leaf: Any, elems: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    """Arrays shaped like ``leaf``, in its array library."""
    strat = _arrays(_leaf_dtype(leaf), tuple(int(d) for d in leaf.shape), elems)
    return strat if isinstance(leaf, np.ndarray) else strat.map(functools.partial(_like, leaf))


def _leaf_dtype(leaf: Any) -> np.dtype[Any]:
    if isinstance(leaf, np.ndarray):
        return np.dtype(leaf.dtype)
    name = str(leaf.dtype).rsplit(".", 1)[-1]
    return np.dtype(name)


def _prefixed(tree: Tree, prefix: str) -> Tree:
    if not prefix or not isinstance(tree, Mapping):
        return tree
    return {prefix + k: v for k, v in tree.items()}


def grads_like(
    params: Tree,
    *,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = None,
    adversarial: bool = False,
    finite_only: bool = True,
    key_prefix: str = "",
) -> st.SearchStrategy[Any]:
    """Gradients for ``params``: the same structure, shapes, dtypes and array library (and device).

    ``params`` is a concrete tree (draw it first, e.g. with ``draw(params())``).
    The values are drawn as in :func:`elements`. ``key_prefix="d"`` renames the top-level keys
    the way the course does (``{"W1": ...}`` -> ``{"dW1": ...}``).
    """
    leaves = _check_params_tree(params)
    _check_bool("adversarial", adversarial)
    _check_bool("finite_only", finite_only)
    if not isinstance(key_prefix, str):
        raise InvalidArgument(f"key_prefix={key_prefix!r} must be a string such as 'd'")
    per_leaf = []
    cache: dict[np.dtype[Any], st.SearchStrategy[float]] = {}
    for _, leaf in leaves:
        dt = _leaf_dtype(leaf)
        if dt not in cache:
            cache[dt] = _element_strategy(dt, elements, adversarial, finite_only)
        per_leaf.append(_leaf_arrays(leaf, cache[dt]))

    arrays = st.tuples(*per_leaf)

    # a composite, not .map(): Hypothesis then prints the gradients themselves in a
    # falsifying example, not the call that assembled them
    @st.composite
    def gradients(draw: st.DrawFn) -> Tree:
        return _prefixed(unflatten(params, list(draw(arrays))), key_prefix)

    return gradients()


# ---------------------------------------------------------------------------------------------
# states
# ---------------------------------------------------------------------------------------------


def _only_step_scalar(rule: Rule) -> bool:
    return tuple(type(rule).scalar_states) == ("step",)


def _scalars_after(rule: Rule, steps: int) -> dict[str, Any]:
    """The scalar states of ``rule`` after ``steps`` steps (replayed on a one-element proxy)."""
    # rules compare equal whatever their ``ops``: a mutant must not share the reference's entry
    return dict(_scalars_after_cached(rule, rule.ops, steps))


@functools.lru_cache(maxsize=256)
def _scalars_after_cached(rule: Rule, ops: object, steps: int) -> dict[str, Any]:
    proxy = np.zeros((1,))
    zero = np.zeros((1,))
    state = rule.init(proxy)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            _, state = rule.step(proxy, zero, state)
    return {k: state[k] for k in type(rule).scalar_states if k in state}


def _first_step_at_zero(rule: Rule, params: Tree, state: dict[str, Any]) -> dict[str, Any] | None:
    """The state after ``rule``'s first step with zero gradients, or None when it is not finite."""
    zero = unflatten(params, [leaf * 0 for _, leaf in flatten(params)])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, nxt = rule.step(params, zero, state)
    return dict(nxt) if _all_finite(nxt) else None


def _all_finite(state: Mapping[str, Any]) -> bool:
    from array_api_compat import array_namespace

    for v in state.values():
        for _, leaf in flatten(v):
            if leaf is None:
                continue
            if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
                xp = array_namespace(leaf)
                if not bool(xp.all(xp.isfinite(leaf))):
                    return False
            elif isinstance(leaf, float) and not math.isfinite(leaf):
                return False
    return True


_BANDS = ("moderate", "tiny", "huge", "mixed")


@functools.cache
def _band_elements(dt: np.dtype[Any], band: str, adversarial: bool) -> st.SearchStrategy[float]:
    lo, hi = magnitude_bounds(dt)
    if band == "tiny":
        mags = _log_magnitudes(dt, lo, min(hi, lo * 1e3))
    elif band == "huge":
        mags = _log_magnitudes(dt, max(lo, hi * 1e-3), hi)
    elif band == "mixed":
        return elements(dt, adversarial=True)
    else:
        return elements(dt, adversarial=adversarial)
    return st.one_of(mags, st.sampled_from((0.0, -0.0)))


def states(
    rule: Rule | str,
    params: Tree,
    *,
    step: int | st.SearchStrategy[int] | None = None,
    max_history: int = 3,
    adversarial: bool = False,
    finite_only: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """A valid state of ``rule`` for ``params``, as ``rule.init(params)`` would shape it.

    A state is valid when the rule could have reached it, so it is built by running the rule
    itself: starting from ``rule.init(params)``, the step counter is advanced to ``step - k``
    (directly for rules whose only scalar state is ``step``; for rules with other scalar states,
    such as NAdam's ``mu_product`` or ASGD's ``eta``/``mu``, by replaying the schedule), then
    ``k`` (0..``max_history``) steps of ``rule.step`` are taken at ``params`` with drawn gradients.
    Every constraint of the rule therefore holds by construction: second moments >= 0, an
    AMSGrad maximum >= the second moment, Rprop's step sizes within their bounds, Adafactor's
    factored shapes, schedules consistent with ``step``.

    The gradients of that history are drawn in one of four bands, so the states include the
    boundary cases: ``moderate`` values, ``tiny`` ones (about 1e-30: tiny second moments),
    ``huge`` ones (about 1e30 in float64: huge second moments) and the ``mixed`` adversarial
    mix of :func:`elements`. ``step`` (an int or a strategy) fixes the final step count;
    by default it is drawn from :data:`STEP_CHOICES` (capped at 1000 for rules whose schedule is
    replayed). Step 0 gives the initial state (all-zero second moments).

    ``rule`` is a rule name (its defaults) or a ``Rule``. With ``finite_only=True`` (the
    default) a history step that would make the state non-finite is not taken (the state
    stops at the last finite one, with its step count). ``adversarial=True`` draws the
    ``moderate`` band with the adversarial mix too.
    """
    r = _resolve_rule(rule)
    leaves = _check_params_tree(params)
    _check_bool("adversarial", adversarial)
    _check_bool("finite_only", finite_only)
    _check_int("max_history", max_history, 0, 100)
    simple = _only_step_scalar(r)
    cap = None if simple else _MAX_REPLAYED_STEP
    if step is None:
        step_s: st.SearchStrategy[int] = st.sampled_from([s for s in STEP_CHOICES if cap is None or s <= cap])
    elif isinstance(step, st.SearchStrategy):
        step_s = step
    else:
        _check_int("step", step, 0, cap)
        step_s = st.just(int(step))
    try:
        r.init(params)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"params cannot be used with rule {r.name!r}: {e}") from None
    dtypes = sorted({_leaf_dtype(leaf) for _, leaf in leaves}, key=str)

    @st.composite
    def build_state(draw: st.DrawFn) -> dict[str, Any]:
        final = draw(step_s, label="step")
        if isinstance(final, bool) or not isinstance(final, (int, np.integer)) or final < 0:
            raise InvalidArgument(f"step strategy drew {final!r}; expected a whole number >= 0")
        final = int(final)
        if cap is not None and final > cap:
            raise InvalidArgument(
                f"step={final} is too large for rule {r.name!r}, whose schedule state is replayed "
                f"step by step; expected at most {cap}"
            )
        k = draw(st.integers(0, min(max_history, final)), label="history steps")
        start = final - k
        state = r.init(params)  # fresh arrays for every example: a test may write into them
        if start:
            if simple:
                # the first step is taken (with zero gradients), so that the state is one the
                # rule can reach: a convention may make the moments positive from step 1 on
                # (Adafactor's g² + eps1); then the counter is advanced to ``start``
                first = _first_step_at_zero(r, params, state)
                if first is not None:
                    state = first
                state["step"] = start
            else:
                state.update(_scalars_after(r, start))
        for i in range(k):
            band = draw(st.sampled_from(_BANDS), label=f"history {i} band")
            elems = {dt: _band_elements(dt, band, adversarial) for dt in dtypes}
            arrays = draw(
                st.tuples(*(_leaf_arrays(leaf, elems[_leaf_dtype(leaf)]) for _, leaf in leaves)),
                label=f"history {i} grads",
            )
            g = unflatten(params, list(arrays))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, nxt = r.step(params, g, state)
            if finite_only and not _all_finite(nxt):
                break
            state = nxt
        return state

    return build_state()


# ---------------------------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------------------------


def _float_choices(spec: Hyper, anchor: float | None) -> tuple[list[float], st.SearchStrategy[float]]:
    """Edge values and a continuous strategy for a numeric hyperparameter."""
    low, high = spec.low, spec.high
    if low is not None and high is not None:
        span = high - low
        edges = [
            low if not spec.low_open else low + span * 1e-9,
            low + span * 1e-3,
            high - span * 1e-3,
            high if not spec.high_open else high - span * 1e-9,
            high - span * 1e-6,
        ]
        cont = st.floats(low, high, exclude_min=spec.low_open, exclude_max=spec.high_open)
    elif low is not None:
        base = (anchor - low) if anchor is not None and anchor > low else None
        if base is None:
            # the default is the lower bound (weight decay, momentum, lr_decay: "absent");
            # draw it, or a present value up to 1
            edges = [low, low + 1e-6, low + 1.0]
            if not spec.low_open:
                cont = st.one_of(st.just(low), _log_uniform(low, 1e-6, 1.0))
            else:
                edges = edges[1:]
                cont = _log_uniform(low, 1e-6, 1.0)
        else:
            # a positive default (lr, eps): tiny to large around it; the bound itself (lr=0, eps=0)
            # is degenerate (no step, or 0/0 on a zero gradient), pass it as a fixed value to test it
            edges = [low + base * 1e-8, low + base, low + base * 1e4]
            cont = _log_uniform(low, base * 1e-8, base * 1e4)
    elif high is not None:
        a = anchor if anchor is not None else high - 1.0
        edges = [a, high if not spec.high_open else high - 1e-9]
        cont = st.floats(high - 1e3 * (abs(a - high) + 1), high, exclude_max=spec.high_open)
    else:
        a = anchor if anchor is not None else 0.0
        edges = [a, -a, 0.0]
        cont = st.floats(a - 1e3 * (abs(a) + 1), a + 1e3 * (abs(a) + 1))
    # 12 significant digits: 1e-3 * 1e-8 is drawn as 1e-11, not 1.0000000000000001e-11
    edges = [t for t in dict.fromkeys(float(f"{e:.12g}") for e in edges) if _valid(spec, t)]
    if anchor is not None and _valid(spec, anchor) and anchor not in edges:
        edges.insert(0, anchor)
    return edges, cont


def _log_uniform(offset: float, lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: offset + 10.0**e)


def _valid(spec: Hyper, value: Any) -> bool:
    try:
        spec.validate("", value)
    except ValueError:
        return False
    return True


def _hyper_strategy(spec: Hyper, anchor: Any, conventions: bool) -> tuple[st.SearchStrategy[Any], list[Any]]:
    """The strategy of one hyperparameter and its repair candidates (anchor first)."""
    if spec.kind == "bool":
        return st.booleans(), [anchor, not anchor]
    if spec.kind == "choice":
        if spec.convention and not conventions:
            return st.just(anchor), [anchor]
        return st.sampled_from(spec.choices), [anchor, *[c for c in spec.choices if c != anchor]]
    if spec.kind == "int":
        low = int(spec.low) if spec.low is not None else 0
        if spec.low_open and spec.low is not None and low == spec.low:
            low += 1
        a = int(anchor) if anchor is not None else low
        high = int(spec.high) if spec.high is not None else max(a * 10, low + 10)
        if spec.high_open and spec.high is not None and high == spec.high:
            high -= 1
        ints = [v for v in dict.fromkeys([a, low, high]) if low <= v <= high]
        return st.one_of(st.sampled_from(ints), st.integers(low, high)), list(ints)
    if spec.kind == "optional-float":
        numeric = None if anchor is None else float(anchor)
        opt_edges, opt_cont = _float_choices(spec, numeric if numeric is not None else _optional_anchor(spec))
        cands = [anchor, *[e for e in opt_edges if e != anchor]]
        return st.one_of(st.just(None), st.sampled_from(opt_edges), opt_cont), cands
    fl_edges, fl_cont = _float_choices(spec, None if anchor is None else float(anchor))
    return st.one_of(st.sampled_from(fl_edges), fl_cont), [anchor, *[e for e in fl_edges if e != anchor]]


def _optional_anchor(spec: Hyper) -> float:
    if spec.low is not None and spec.high is not None:
        return (spec.low + spec.high) / 2
    if spec.low is not None:
        return spec.low + 1e-3
    if spec.high is not None:
        return spec.high - 1.0
    return 0.0


def _try_build(cls: type[Rule], values: Mapping[str, Any]) -> str | None:
    try:
        cls(**values)
    except (ValueError, TypeError) as e:
        return str(e)
    return None


def _repair(
    cls: type[Rule], values: dict[str, Any], free: Sequence[str], cands: Mapping[str, Sequence[Any]]
) -> dict[str, Any] | None:
    """Make ``values`` satisfy the rule's cross-parameter checks by changing free values only.

    Tried in order: the drawn values; changing one free value to one of its candidates (its
    anchor, then its edges), numbers first, then booleans, then conventions, so that a drawn
    switch (``nesterov=True``, ``momentum_form="ema"``) survives when a number can make room
    for it; all free values reset to their anchors, then one changed again. Deterministic: no
    example is rejected.
    """
    if _try_build(cls, values) is None:
        return values
    kinds = {s.name: s.kind for s in cls.hyper_specs()}
    rank = {"choice": 2, "bool": 1}
    order = sorted(reversed(free), key=lambda n: rank.get(kinds[n], 0))
    for base in (values, {**values, **{n: cands[n][0] for n in free}}):
        if _try_build(cls, base) is None:
            return base
        for n in order:
            for c in cands[n]:
                trial = {**base, n: c}
                if _try_build(cls, trial) is None:
                    return trial
    return None


def hyperparameters(
    rule: Rule | str,
    *,
    conventions: bool = False,
    **fixed: Any,
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for ``optcheck.rules.get(name, **h)``: legal values, biased to the edges.

    Every hyperparameter of the rule is drawn from its spec (``type(rule).hyper_specs()``),
    half the time from its edge values and half from its whole range:

    * bounded on both sides (``beta1``, ``beta2``, ``alpha``...): the bounds themselves when
      closed (``beta = 0``), or values 1e-9 inside them when open (``beta = 1 - 1e-9``),
      values 1e-3 and 1e-6 inside, and anything in between;
    * ``[0, inf)`` with default 0 (``weight_decay``, ``momentum``, ``lr_decay``): absent (0)
      or present, log-uniform in [1e-6, 1];
    * ``[0, inf)`` with a positive default d (``lr``, ``eps``): log-uniform in [1e-8·d, 1e4·d]
      (``eps`` tiny and large, ``lr`` up to 10 for Adam). The bound itself (``lr=0``, ``eps=0``)
      is not drawn: with ``eps=0`` the reference itself divides 0 by 0 on a zero gradient; fix
      it (``eps=0.0``) to test that case;
    * booleans (``amsgrad``, ``nesterov``, ``maximize``, ``decoupled_weight_decay``): both;
    * convention keywords (``eps_placement``...): fixed at the default (or at the value of a
      ``Rule`` passed as ``rule``) unless ``conventions=True``.

    ``rule`` is a rule name or a ``Rule``; a ``Rule``'s own values replace the defaults as the
    anchors. ``fixed`` pins values (``lr=0.01``; ``betas=(b1, b2)`` is accepted). Combinations
    that a rule forbids (``nesterov`` without momentum or with dampening, ...) are repaired
    deterministically by changing a drawn value, never by rejecting the example, so the
    result is always accepted by ``optcheck.rules.get``.
    """
    r = _resolve_rule(rule)
    _check_bool("conventions", conventions)
    cls = type(r)
    specs = cls.hyper_specs()
    by_name = {s.name: s for s in specs}
    fixed = dict(fixed)
    if "betas" in fixed and "beta1" in by_name and "beta2" in by_name:
        betas = fixed.pop("betas")
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise InvalidArgument(f"betas={betas!r} must be a pair (beta1, beta2)") from None
        fixed.setdefault("beta1", b1)
        fixed.setdefault("beta2", b2)
    unknown = [k for k in fixed if k not in by_name]
    if unknown:
        raise InvalidArgument(
            f"{cls.name} has no hyperparameter(s) {unknown}; its hyperparameters are {list(by_name)}"
        )
    for k, v in fixed.items():
        try:
            fixed[k] = by_name[k].validate(cls.name, v)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    anchors = {s.name: getattr(r, s.name) for s in specs}
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    cands: dict[str, list[Any]] = {}
    for s in specs:
        if s.name in fixed:
            strategies[s.name] = st.just(fixed[s.name])
            continue
        strat, cs = _hyper_strategy(s, anchors[s.name], conventions)
        strategies[s.name] = strat
        cands[s.name] = [c for c in dict.fromkeys(cs) if _valid(s, c)]
    free = [s.name for s in specs if s.name not in fixed]
    if _repair(cls, {**anchors, **fixed}, free, cands) is None:
        err = _try_build(cls, {**anchors, **fixed})
        raise InvalidArgument(f"the fixed values {fixed!r} cannot be used together for {cls.name}: {err}")

    def finish(drawn: dict[str, Any]) -> dict[str, Any]:
        values = {
            s.name: (s.validate(cls.name, drawn[s.name]) if _valid(s, drawn[s.name]) else anchors[s.name])
            for s in specs
        }
        repaired = _repair(cls, values, free, cands)
        assert repaired is not None  # the anchors with the fixed values are repairable (checked above)
        return repaired

    return _ordered_dict(strategies).map(finish)


def rules(
    rule: Rule | str | Sequence[str] | None = None, *, conventions: bool = True
) -> st.SearchStrategy[Rule]:
    """``Rule`` values with drawn hyperparameters (see :func:`hyperparameters`).

    ``rule`` is a rule name, a ``Rule``, a list of names, or None for every registered rule
    (``optcheck.rules.names()``). Conventions are drawn too unless ``conventions=False``.
    """
    _check_bool("conventions", conventions)
    if rule is None or (isinstance(rule, (list, tuple)) and not isinstance(rule, str)):
        chosen = names() if rule is None else list(rule)
        if not chosen:
            raise InvalidArgument("rule=[] names no rule; pass None for every registered rule")
        for n in chosen:
            _resolve_rule(n)
        return st.sampled_from(chosen).flatmap(lambda n: rules(n, conventions=conventions))
    r = _resolve_rule(rule)
    cls = type(r)
    return hyperparameters(r, conventions=conventions).map(lambda h: cls(**h))
