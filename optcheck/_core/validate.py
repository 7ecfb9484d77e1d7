"""Argument validation for the public API, with one wording (after hypothesis's ``InvalidArgument``).

Every check names the argument, shows the value given and says what was expected, in one
sentence: ``every=0 is invalid; expected a whole number >= 1``. A value of the wrong type
raises :class:`~optcheck._core.errors.ArgumentTypeError` (a ``TypeError`` and a
:class:`~optcheck._core.errors.UsageError`), a value out of range :class:`UsageError`. Each
check returns the value, normalised (``numpy.int64(3)`` -> ``3``), so a function validates and
reads its argument in one line::

    every = check_int("every", every, low=1)
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .errors import ArgumentTypeError, UsageError

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_float",
    "check_float_range",
    "check_int",
    "check_mapping",
    "check_seed",
    "check_str",
    "check_type",
    "invalid",
]

T = TypeVar("T")


def _given(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def invalid(name: str, value: Any, expected: str, *, hint: str = "", type_error: bool = False) -> UsageError:
    """The error for ``name=value``: ``"name=value is invalid; expected <expected>.<hint>"``.

    ``type_error=True`` gives an :class:`ArgumentTypeError` and adds the type that was given.
    """
    got = f" (a {type(value).__name__})" if type_error else ""
    text = f"{name}={_given(value)}{got} is invalid; expected {expected}"
    if hint:
        text += f". {hint}"
    return (ArgumentTypeError if type_error else UsageError)(text)


def check_type(name: str, value: Any, types: type | tuple[type, ...], expected: str) -> Any:
    """``value`` if it is an instance of ``types``, else :class:`ArgumentTypeError` saying ``expected``."""
    if not isinstance(value, types):
        raise invalid(name, value, expected, type_error=True)
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (numpy's bools too); 0 and 1 are refused."""
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise invalid(name, value, "True or False", type_error=True)


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` when it is a whole number (not a bool, not a float) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise invalid(name, value, _int_range(low, high), type_error=True)
    out = int(value)
    if (low is not None and out < low) or (high is not None and out > high):
        raise invalid(name, value, _int_range(low, high))
    return out


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"a whole number in [{low}, {high}]"
    if low is not None:
        return f"a whole number >= {low}"
    if high is not None:
        return f"a whole number <= {high}"
    return "a whole number"


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a ``float`` when it is a real number (ints accepted, bools not) in the range.

    The range is ``[low, high]``; ``low_open``/``high_open`` exclude an end. NaN is always
    refused, infinities unless ``finite=False``.
    """
    expected = _float_range(low, high, low_open, high_open, finite)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(name, value, expected, type_error=True)
    out = float(value)
    if math.isnan(out) or (finite and math.isinf(out)):
        raise invalid(name, value, expected)
    if low is not None and (out < low or (low_open and out == low)):
        raise invalid(name, value, expected)
    if high is not None and (out > high or (high_open and out == high)):
        raise invalid(name, value, expected)
    return out


def _float_range(low: float | None, high: float | None, low_open: bool, high_open: bool, finite: bool) -> str:
    what = "a finite number" if finite else "a number"
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{what} {'<' if high_open else '<='} {high}"
    return what


def check_float_range(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """``value`` as a finite float in ``[low, high]`` (an end excluded with ``low_open``/``high_open``)."""
    return check_float(name, value, low=low, high=high, low_open=low_open, high_open=high_open)


def check_choice(name: str, value: Any, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``; otherwise the valid ones, and the closest when there is one."""
    options = list(choices)
    for option in options:
        if type(value) is type(option) and value == option:
            return option
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [o for o in options if isinstance(o, str)], n=1)
        if close:
            hint = f"Did you mean {close[0]!r}?"
    raise invalid(name, value, f"one of {options}", hint=hint)


def check_str(name: str, value: Any, *, empty: bool = False) -> str:
    """``value`` if it is a string (non-empty unless ``empty=True``)."""
    if not isinstance(value, str):
        raise invalid(name, value, "a string", type_error=True)
    if not empty and not value.strip():
        raise invalid(name, value, "a non-empty string")
    return value


def check_seed(name: str, value: Any) -> int | None:
    """``None`` or a whole number >= 0 (a seed for ``numpy.random.default_rng``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise invalid(name, value, "None or a whole number >= 0", type_error=True)
    if int(value) < 0:
        raise invalid(name, value, "None or a whole number >= 0")
    return int(value)


def check_callable(name: str, value: Any, expected: str = "a function") -> Callable[..., Any]:
    """``value`` if it can be called."""
    if not callable(value):
        raise invalid(name, value, expected, type_error=True)
    return value  # type: ignore[no-any-return]


def check_mapping(name: str, value: Any, expected: str = "a dict") -> Mapping[Any, Any]:
    """``value`` if it is a mapping (a dict)."""
    if not isinstance(value, Mapping):
        raise invalid(name, value, expected, type_error=True)
    return value
