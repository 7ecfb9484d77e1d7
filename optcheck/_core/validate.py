"""Argument validation for every public function: one wording, one place.

Each ``check_*`` function takes the argument's name as the user wrote it (``"seed"``,
``"params"``, ``"names"``) and the value, and either returns the value (normalised where
said) or raises one clean error, ``from None``, whose message names the argument (and the key
path inside a tree), what was expected and what was given, in the manner of Hypothesis's
``InvalidArgument``::

    seed=-1 is invalid; expected a whole number >= 0, got -1.
    params['W'] is a numpy.matrix: expected a numpy ndarray (np.matrix's * is a matrix product); pass np.asarray(params['W']).

A value of the wrong *type* raises :class:`~optcheck._core.errors.UsageTypeError`, which is both
a :class:`~optcheck._core.errors.UsageError` (a ``ValueError``) and a ``TypeError``; a value of
the right type but out of range raises :class:`~optcheck._core.errors.UsageError`.

Policies (the same at every entry point):

* ``np.matrix`` is **rejected**: its ``*`` is a matrix product, so update rules written with ``*``
  compute something else (NaN or a wrong shape). The message says to pass ``np.asarray(x)``.
* masked arrays are **rejected**: a masked entry has no value an optimizer could use, and its
  data (often ``inf`` or garbage) would leak into results. The message says to pass
  ``x.filled(value)`` or ``np.asarray(x)``.
* object, string, bytes, void and datetime dtypes are rejected; complex and integer dtypes are
  rejected where floating point is required (``real_float=True``) and accepted elsewhere.
* a tree mixing array libraries (numpy leaves next to torch tensors) is rejected, naming the
  first leaf of each library.
* a string where a sequence of names is expected (``skip="grads"``) is rejected (it would be
  read as the letters ``g, r, a, d, s``).

Nothing here mutates or copies a user's array. torch is recognised through ``sys.modules``,
never imported.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import UsageError, UsageTypeError

__all__ = [
    "UsageError",
    "UsageTypeError",
    "check_array",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_float",
    "check_int",
    "check_mapping",
    "check_names",
    "check_same_namespace",
    "check_same_structure",
    "check_seed",
    "check_str_seq",
    "check_tree",
    "describe_value",
    "is_plain_tree",
    "library_of",
    "path_str",
    "same_layout",
]

Path = tuple[str, ...]

# ---------------------------------------------------------------------------------------------
# Wording
# ---------------------------------------------------------------------------------------------


def path_str(name: str, path: Sequence[Any] = ()) -> str:
    """A key path the way a user writes it: ``path_str("grads", ("dW1",))`` -> ``grads['dW1']``."""
    return name + "".join(f"[{k!r}]" for k in path)


def _short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a user's object whose repr fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def library_of(x: Any) -> str:
    """The array library a leaf belongs to, for messages: ``"numpy"``, ``"torch"``, ``"python"``, or its module."""
    if isinstance(x, (np.ndarray, np.generic)):
        return "numpy"
    if isinstance(x, (bool, int, float, complex)):
        return "python"
    module = type(x).__module__ or ""
    return module.split(".")[0] or type(x).__name__


def describe_value(x: Any) -> str:
    """What a value is, in a few words: ``a numpy array of shape (2, 3) and dtype float64``, ``the str 'x'``."""
    if isinstance(x, np.ma.MaskedArray):
        return f"a numpy masked array of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, np.matrix):
        return f"a numpy.matrix of shape {tuple(x.shape)} and dtype {x.dtype}"
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type):
        try:
            shape = tuple(int(d) for d in x.shape)
        except (TypeError, ValueError):
            shape = x.shape
        what = "array" if library_of(x) != "torch" else "tensor"
        return f"a {library_of(x)} {what} of shape {shape} and dtype {x.dtype}"
    if x is None:
        return "None"
    if isinstance(x, type):
        return f"the class {x.__module__}.{x.__qualname__}"
    if isinstance(x, (bool, int, float, complex, str, bytes)):
        return f"the {type(x).__name__} {_short_repr(x)}"
    if isinstance(x, Mapping):
        return f"a {type(x).__name__} with keys {_short_repr(list(x))}"
    if isinstance(x, (list, tuple, set, frozenset)):
        return f"a {type(x).__name__} of {len(x)} item(s)"
    return f"a {type(x).__module__}.{type(x).__qualname__}"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic))


def _invalid(where: str, expected: str, value: Any, *, type_error: bool, hint: str = "") -> Exception:
    if _is_scalar(value):
        msg = f"{where}={_short_repr(value)} is invalid; expected {expected}."
    else:
        msg = f"{where} is invalid; expected {expected}, got {describe_value(value)}."
    if hint:
        msg += " " + hint
    err = UsageTypeError(msg) if type_error else UsageError(msg)
    err.__suppress_context__ = True  # one clean message, as with ``raise ... from None``
    return err


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    optional: bool = False,
) -> Any:
    """``value`` as an ``int`` in ``[low, high]`` (``None`` passes through when ``optional``).

    Integral numpy integers are accepted; bools, floats (even ``3.0``) and strings are not.
    """
    if value is None and optional:
        return None
    rng = _int_range(low, high)
    expected = f"a whole number{rng}" + (" or None" if optional else "")
    if not _is_int(value):
        raise _invalid(name, expected, value, type_error=True)
    v = operator.index(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise _invalid(name, expected, value, type_error=False)
    return v


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    optional: bool = False,
) -> Any:
    """``value`` as a ``float`` in the range (ints accepted, bools and strings not; NaN never)."""
    if value is None and optional:
        return None
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = (
        f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    )
    expected = (
        ("a finite " if finite else "a ") + f"real number in {interval}" + (" or None" if optional else "")
    )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise _invalid(name, expected, value, type_error=True)
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise _invalid(name, expected, value, type_error=False)
    bad_low = low is not None and (v < low or (low_open and v == low))
    bad_high = high is not None and (v > high or (high_open and v == high))
    if bad_low or bad_high:
        raise _invalid(name, expected, value, type_error=False)
    return v


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool`` (``True``/``False`` or numpy's; not 0/1, not strings)."""
    if not isinstance(value, (bool, np.bool_)):
        raise _invalid(name, "True or False", value, type_error=True)
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared by equality, types first: ``1`` is not ``True``)."""
    options = tuple(choices)
    expected = "one of " + ", ".join(_short_repr(c) for c in options)
    for c in options:
        if type(c) is type(value) and c == value:
            return value
    type_error = not any(isinstance(value, type(c)) for c in options)
    hint = ""
    if isinstance(value, str):
        import difflib

        close = difflib.get_close_matches(value, [c for c in options if isinstance(c, str)], n=1)
        if close:
            hint = f"Did you mean {close[0]!r}?"
    raise _invalid(name, expected, value, type_error=type_error, hint=hint)


def check_seed(name: str, value: Any, *, generator: bool = False, optional: bool = False) -> Any:
    """A seed for ``np.random.default_rng``: a whole number >= 0 (or a ``np.random.Generator`` when ``generator``).

    Refuses what numpy's ``SeedSequence`` would refuse with its own wording (negative numbers,
    floats, strings), and bools, which numpy would silently take as 0 or 1.
    """
    if value is None and optional:
        return None
    if generator and isinstance(value, np.random.Generator):
        return value
    expected = "a whole number >= 0" + (" or a numpy.random.Generator" if generator else "")
    if optional:
        expected += " or None"
    if not _is_int(value):
        raise _invalid(name, expected, value, type_error=True)
    v = operator.index(value)
    if v < 0:
        raise _invalid(name, expected, value, type_error=False)
    return v


def check_callable(name: str, value: Any, *, what: str = "a function") -> Any:
    """``value`` if it is callable."""
    if not callable(value) or isinstance(value, (str, bytes)):
        raise _invalid(name, f"{what} (a callable)", value, type_error=True)
    return value


# ---------------------------------------------------------------------------------------------
# Containers of names
# ---------------------------------------------------------------------------------------------


def check_mapping(
    name: str,
    value: Any,
    *,
    keys: Collection[str] | None = None,
    key_type: type | tuple[type, ...] = str,
    value_check: Callable[[str, Any], Any] | None = None,
    optional: bool = True,
    what: str = "a dict",
) -> dict[Any, Any]:
    """``value`` as a new ``dict`` (``None`` -> ``{}`` when ``optional``), keys and values checked.

    ``keys`` restricts the allowed keys (the message lists them); ``value_check(where, v)``
    checks and may normalise each value, where ``where`` is ``name[key]``.
    """
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise _invalid(name, what + (" or None" if optional else ""), value, type_error=True)
    out: dict[Any, Any] = {}
    if keys is not None:
        bad = [k for k in value if k not in keys]
        if bad:
            raise UsageError(
                f"{name} has unexpected key(s) {bad}; expected keys among {sorted(keys)}."
            ) from None
    for k, v in value.items():
        if not isinstance(k, key_type) or isinstance(k, bool):
            kinds = key_type if isinstance(key_type, tuple) else (key_type,)
            expected = " or ".join(t.__name__ for t in kinds)
            raise UsageTypeError(
                f"{name} is invalid; its key {_short_repr(k)} is a {type(k).__name__}; expected {expected} keys."
            ) from None
        out[k] = value_check(path_str(name, (k,)), v) if value_check is not None else v
    return out


def _check_str_value(where: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _invalid(where, "a string", v, type_error=True)
    return v


def check_names(name: str, value: Any, *, keys: Collection[str] | None = None) -> dict[str, str]:
    """A mapping from strings to strings (``names={"params": "parameters"}``, ``roles={"S": "square_avg"}``)."""
    return check_mapping(
        name, value, keys=keys, value_check=_check_str_value, what="a dict of strings to strings"
    )


def check_str_seq(
    name: str, value: Any, *, choices: Collection[str] | None = None, optional: bool = True
) -> tuple[str, ...]:
    """A sequence (list, tuple, set) of strings, each among ``choices`` when given; a bare string is refused."""
    if value is None and optional:
        return ()
    expected = "a list or tuple of strings"
    if choices is not None:
        expected += f" among {sorted(choices)}"
    if isinstance(value, (str, bytes)):
        raise _invalid(
            name, expected, value, type_error=True, hint=f"Write {name}=[{value!r}] for a single name."
        )
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise _invalid(name, expected, value, type_error=True)
    out = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, str):
            raise _invalid(
                where,
                "a string" + (f" among {sorted(choices)}" if choices is not None else ""),
                item,
                type_error=True,
            )
        if choices is not None and item not in choices:
            import difflib

            close = difflib.get_close_matches(item, list(choices), n=1)
            hint = f"Did you mean {close[0]!r}?" if close else ""
            raise _invalid(where, f"one of {sorted(choices)}", item, type_error=False, hint=hint)
        out.append(item)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Arrays and trees
# ---------------------------------------------------------------------------------------------

_BAD_KINDS = {
    "O": "object",
    "U": "string",
    "S": "bytes",
    "V": "void (structured)",
    "M": "datetime",
    "m": "timedelta",
}


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def check_array(
    name: str,
    x: Any,
    path: Sequence[Any] = (),
    *,
    real_float: bool = False,
    numbers_ok: bool = False,
) -> Any:
    """``x`` itself if it is a usable array (numpy ndarray, torch tensor, other array-API array).

    Refuses ``np.matrix`` and masked arrays (see the module's policies), non-numeric dtypes
    (object, strings, ...), lists and other non-arrays. ``real_float``: only real floating-point
    dtypes (what update rules compute in). ``numbers_ok``: a Python or numpy number is accepted
    as a 0-d leaf (some checkers take a scalar state such as a step size).
    """
    where = path_str(name, path)
    if isinstance(x, np.ndarray) and type(x) is not np.ndarray:
        if isinstance(x, np.matrix):
            raise UsageTypeError(
                f"{where} is a numpy.matrix of shape {tuple(x.shape)}: expected a numpy ndarray, because "
                f"np.matrix's * is a matrix product, not elementwise; pass np.asarray({where})."
            ) from None
        if isinstance(x, np.ma.MaskedArray):
            raise UsageTypeError(
                f"{where} is a numpy masked array of shape {tuple(x.shape)}: expected a plain ndarray, because "
                f"masked entries have no value an optimizer can use; pass {where}.filled(value) "
                f"(or np.asarray({where}) to use the underlying data)."
            ) from None
    is_arr = hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)
    if not is_arr:
        if numbers_ok and isinstance(x, (numbers.Real, np.number)) and not isinstance(x, (bool, np.bool_)):
            return x
        expected = "an array (numpy array or torch tensor)" + (" or a number" if numbers_ok else "")
        hint = f" Convert it with np.asarray({where})." if isinstance(x, (list, tuple)) else ""
        given = "None" if x is None else f"a {type(x).__name__}"
        err = UsageTypeError(f"{where} is {given}; expected {expected}.{hint}")
        err.__suppress_context__ = True
        raise err
    if isinstance(x, np.ndarray):
        kind = x.dtype.kind
    elif isinstance(x, np.generic):
        kind = np.dtype(x.dtype).kind
    elif _is_torch(x):
        kind = (
            "f"
            if x.dtype.is_floating_point
            else ("c" if x.dtype.is_complex else ("b" if x.dtype == sys.modules["torch"].bool else "i"))
        )
    else:
        try:
            kind = np.dtype(x.dtype).kind
        except TypeError:
            kind = "f" if "float" in str(x.dtype) else ("c" if "complex" in str(x.dtype) else "i")
    if kind in _BAD_KINDS:
        raise UsageTypeError(
            f"{where} has dtype {x.dtype} ({_BAD_KINDS[kind]}): expected a numeric array"
            + (" of floating-point numbers" if real_float else "")
            + f"; convert it with {where}.astype(np.float64)."
        ) from None
    if real_float and kind != "f":
        raise UsageTypeError(
            f"{where} has dtype {x.dtype}: expected a real floating-point array (float16/32/64); "
            f"convert it with {where}.astype(np.float64) (numpy) or .double() (torch)."
        ) from None
    return x


def check_tree(
    name: str,
    tree: Any,
    *,
    real_float: bool = False,
    numbers_ok: bool = False,
    allow_empty: bool = True,
    optional: bool = False,
) -> list[tuple[Path, Any]]:
    """The leaves of ``tree`` (an array, or a dict of string keys to trees) with their key paths.

    Every leaf is checked with :func:`check_array`, every key must be a string, and all leaves
    must come from one array library (:func:`check_same_namespace`). ``None`` is refused unless
    ``optional`` (then ``[]``); an empty dict is refused unless ``allow_empty``.
    """
    if tree is None:
        if optional:
            return []
        raise _invalid(name, "an array or a dict of arrays", tree, type_error=True)
    out: list[tuple[Path, Any]] = []
    _walk(name, tree, (), out, real_float=real_float, numbers_ok=numbers_ok)
    if not out and not allow_empty:
        raise UsageError(f"{name} is invalid; expected at least one array, got an empty dict.") from None
    if len({type(leaf) for _, leaf in out}) > 1:  # the usual case, one leaf type, needs no more
        check_same_namespace({path_str(name, p): leaf for p, leaf in out})
    return out


def _walk(
    name: str, node: Any, path: Path, out: list[tuple[Path, Any]], *, real_float: bool, numbers_ok: bool
) -> None:
    if type(node) is np.ndarray and node.dtype.kind in _PLAIN_KINDS[real_float]:
        out.append((path, node))  # the usual case, checked cheaply
        return
    if isinstance(node, Mapping):
        for k, v in node.items():
            if not isinstance(k, str):
                raise UsageTypeError(
                    f"{path_str(name, path)} has the key {_short_repr(k)}, a {type(k).__name__}: expected "
                    "string keys (optcheck trees are dicts with string keys, like {'W1': ..., 'b1': ...})."
                ) from None
            _walk(name, v, (*path, k), out, real_float=real_float, numbers_ok=numbers_ok)
        return
    if (
        not path
        and isinstance(node, (list, tuple, set, frozenset))
        and node
        and all(isinstance(v, Mapping) for v in node)
    ):
        raise UsageTypeError(
            f"{name} is invalid; expected an array or a dict of arrays, got {describe_value(node)} of dicts; "
            "optcheck reads parameter groups as one dict (merge them, or use overrides= for per-group settings)."
        ) from None
    out.append((path, check_array(name, node, path, real_float=real_float, numbers_ok=numbers_ok)))


_PLAIN_KINDS = {False: "fiucb", True: "f"}  # ndarray kinds check_array passes without more ado


def is_plain_tree(tree: Any) -> bool:
    """Whether ``tree`` is a dict (string keys) of plain float ndarrays and numbers: nothing to refuse.

    A cheap test for callers on a hot path (the guard, once per step), which run the full
    :func:`check_tree` (and so a named error) only when this says no.
    """
    t = type(tree)
    if t is np.ndarray:
        return tree.dtype.kind == "f"  # type: ignore[no-any-return]
    if t is dict:
        return all(type(k) is str and is_plain_tree(v) for k, v in tree.items())
    return t is float or t is int


def same_layout(a: Any, b: Any) -> bool:
    """Whether trees ``a`` and ``b`` have the same keys (in any order) and leaf shapes: a cheap test."""
    if type(a) is dict:
        if type(b) is not dict or a.keys() != b.keys():
            return False
        return all(same_layout(v, b[k]) for k, v in a.items())
    if type(b) is dict:
        return False
    return getattr(a, "shape", None) == getattr(b, "shape", None)


def check_same_namespace(leaves: Mapping[str, Any]) -> None:
    """Refuse leaves from different array libraries (``{"params['W']": ndarray, "grads['W']": tensor}``).

    Python numbers are neutral (they combine with any library).
    """
    first: dict[str, str] = {}
    for where, leaf in leaves.items():
        lib = library_of(leaf)
        if lib == "python":
            continue
        first.setdefault(lib, where)
        if len(first) > 1:
            (lib_a, where_a), (lib_b, where_b) = list(first.items())[:2]
            raise UsageTypeError(
                f"{where_b} is a {lib_b} {'tensor' if lib_b == 'torch' else 'array'} but {where_a} is a {lib_a} "
                f"{'tensor' if lib_a == 'torch' else 'array'}: expected every array from one library; "
                "convert them all to one (np.asarray(t.detach().cpu()) or torch.as_tensor(a))."
            ) from None


def _shape_of(x: Any) -> tuple[int, ...] | None:
    if type(x) is np.ndarray:
        return x.shape  # type: ignore[no-any-return]
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    return tuple(int(d) for d in shape)


def check_same_structure(
    trees: Mapping[str, Any],
    *,
    shapes: bool = True,
    namespace: bool = True,
    labels: Mapping[str, str] | None = None,
) -> list[tuple[Path, tuple[Any, ...]]]:
    """Walk several trees that must share keys (and shapes): ``(path, leaves)`` per leaf.

    ``trees`` maps each argument's name to its tree; the first gives the structure. A missing
    or extra key, a dict where the first has an array, a different shape (``shapes``) or a
    different array library (``namespace``) raises, naming both arguments and the key path.
    ``None`` trees are skipped (optional arguments). ``labels`` gives the name shown in messages
    for a key of ``trees`` (default: the key itself).
    """
    named = {k: v for k, v in trees.items() if v is not None}
    names = [(labels or {}).get(k, k) for k in named]
    values = list(named.values())
    out: list[tuple[Path, tuple[Any, ...]]] = []
    if not names:
        return out

    def walk(nodes: list[Any], path: Path) -> None:
        first = nodes[0]
        first_map = isinstance(first, Mapping)
        for n, other in zip(names[1:], nodes[1:], strict=True):
            if isinstance(other, Mapping) != first_map:
                what_first = "a dict" if first_map else describe_value(first)
                what_other = "a dict" if isinstance(other, Mapping) else describe_value(other)
                raise UsageError(
                    f"{path_str(n, path)} is {what_other} but {path_str(names[0], path)} is {what_first}: "
                    f"expected {n} to have the structure of {names[0]}."
                ) from None
            if first_map:
                missing = [k for k in first if k not in other]
                extra = [k for k in other if k not in first]
                if missing or extra:
                    parts = []
                    if missing:
                        parts.append(f"missing key(s) {missing}")
                    if extra:
                        parts.append(f"unexpected key(s) {extra}")
                    raise UsageError(
                        f"{path_str(n, path)} has {' and '.join(parts)} compared with "
                        f"{path_str(names[0], path)} (keys {list(first)}); expected {n} to have the same keys."
                    ) from None
        if first_map:
            for k in first:
                if not isinstance(k, str):
                    raise UsageTypeError(
                        f"{path_str(names[0], path)} has the key {_short_repr(k)}, a {type(k).__name__}: expected "
                        "string keys (optcheck trees are dicts with string keys, like {'W1': ..., 'b1': ...})."
                    ) from None
                walk([node[k] for node in nodes], (*path, k))
            return
        if shapes:
            s0 = _shape_of(first)
            for n, other in zip(names[1:], nodes[1:], strict=True):
                s = _shape_of(other)
                if s0 is not None and s is not None and s != s0:
                    raise UsageError(
                        f"{path_str(n, path)} has shape {s} but {path_str(names[0], path)} has shape {s0}: "
                        f"expected {n} to have the shapes of {names[0]}."
                    ) from None
        out.append((path, tuple(nodes)))

    walk(values, ())
    if namespace:
        leaves: dict[str, Any] = {}
        for path, nodes in out:
            for n, leaf in zip(names, nodes, strict=True):
                leaves[path_str(n, path)] = leaf
        check_same_namespace(leaves)
    return out
