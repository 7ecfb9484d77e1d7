"""Argument validation (optcheck._core.validate): one table of bad calls, one wording."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from optcheck._core import validate as v
from optcheck._core.errors import ArgumentTypeError, Error, UsageError

BAD: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: v.check_int("every", 0, low=1), UsageError, "every=0 is invalid; expected a whole number >= 1"),
    (
        lambda: v.check_int("every", 1.5, low=1),
        ArgumentTypeError,
        "every=1.5 (a float) is invalid; expected a whole number >= 1",
    ),
    (
        lambda: v.check_int("every", True),
        ArgumentTypeError,
        "every=True (a bool) is invalid; expected a whole number",
    ),
    (
        lambda: v.check_int("k", 11, low=0, high=10),
        UsageError,
        "k=11 is invalid; expected a whole number in [0, 10]",
    ),
    (lambda: v.check_int("k", 11, high=10), UsageError, "k=11 is invalid; expected a whole number <= 10"),
    (
        lambda: v.check_float("lr", -1.0, low=0.0),
        UsageError,
        "lr=-1.0 is invalid; expected a finite number >= 0.0",
    ),
    (lambda: v.check_float("lr", float("nan")), UsageError, "lr=nan is invalid; expected a finite number"),
    (lambda: v.check_float("lr", float("inf")), UsageError, "lr=inf is invalid; expected a finite number"),
    (
        lambda: v.check_float("lr", "0.1"),
        ArgumentTypeError,
        "lr='0.1' (a str) is invalid; expected a finite number",
    ),
    (
        lambda: v.check_float_range("beta", 1.0, 0.0, 1.0, high_open=True),
        UsageError,
        "beta=1.0 is invalid; expected a finite number in [0.0, 1.0)",
    ),
    (
        lambda: v.check_float_range("beta", 0.0, 0.0, 1.0, low_open=True),
        UsageError,
        "beta=0.0 is invalid; expected a finite number in (0.0, 1.0]",
    ),
    (
        lambda: v.check_choice("mode", "rase", ["raise", "warn"]),
        UsageError,
        "mode='rase' is invalid; expected one of ['raise', 'warn']. Did you mean 'raise'?",
    ),
    (
        lambda: v.check_choice("mode", 1, ["raise"]),
        UsageError,
        "mode=1 is invalid; expected one of ['raise']",
    ),
    (
        lambda: v.check_bool("shadow", 1),
        ArgumentTypeError,
        "shadow=1 (a int) is invalid; expected True or False",
    ),
    (
        lambda: v.check_seed("seed", -1),
        UsageError,
        "seed=-1 is invalid; expected None or a whole number >= 0",
    ),
    (
        lambda: v.check_seed("seed", 0.5),
        ArgumentTypeError,
        "seed=0.5 (a float) is invalid; expected None or a whole number >= 0",
    ),
    (lambda: v.check_str("rule", ""), UsageError, "rule='' is invalid; expected a non-empty string"),
    (lambda: v.check_str("rule", 3), ArgumentTypeError, "rule=3 (a int) is invalid; expected a string"),
    (lambda: v.check_callable("fn", 3), ArgumentTypeError, "fn=3 (a int) is invalid; expected a function"),
    (
        lambda: v.check_mapping("overrides", [1]),
        ArgumentTypeError,
        "overrides=[1] (a list) is invalid; expected a dict",
    ),
    (
        lambda: v.check_type("x", 1, str, "a name"),
        ArgumentTypeError,
        "x=1 (a int) is invalid; expected a name",
    ),
]


@pytest.mark.parametrize(("call", "kind", "message"), BAD)
def test_bad_arguments_name_the_argument_the_value_and_what_was_expected(
    call: Callable[[], Any], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match=f"^{re.escape(message)}$") as info:
        call()
    assert isinstance(info.value, Error) and isinstance(info.value, ValueError)


def test_type_errors_are_type_errors_too() -> None:
    with pytest.raises(TypeError):
        v.check_int("n", "3")


def test_good_arguments_come_back_normalised() -> None:
    assert v.check_int("n", np.int64(3), low=1) == 3 and type(v.check_int("n", np.int64(3))) is int
    assert v.check_float("lr", 1) == 1.0 and type(v.check_float("lr", np.float32(0.5))) is float
    assert v.check_float("x", float("inf"), finite=False) == float("inf")
    assert v.check_bool("b", np.bool_(True)) is True
    assert v.check_choice("mode", "warn", ("raise", "warn")) == "warn"
    assert v.check_seed("seed", None) is None and v.check_seed("seed", np.int32(4)) == 4
    assert v.check_str("s", "adam") == "adam"
    assert v.check_mapping("m", {}) == {}


def test_long_values_are_shortened() -> None:
    with pytest.raises(UsageError, match=r"x=\[0, 1, .*\.\.\. is invalid"):
        v.check_choice("x", list(range(100)), [1])
