"""Tests for optcheck._core.validate: each check accepts the good values and names the argument on bad ones."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from optcheck._core import validate as v
from optcheck._core.errors import Error, UsageError, UsageTypeError


def _raises(fn: Any, *args: Any, match: str, exc: type[BaseException] = UsageError, **kw: Any) -> str:
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert re.search(match, msg), msg
    assert info.value.__cause__ is None and info.value.__suppress_context__  # raised `from None`
    return msg


def test_usage_type_error_is_both_value_and_type_error() -> None:
    err = UsageTypeError("x")
    assert isinstance(err, UsageError) and isinstance(err, ValueError)
    assert isinstance(err, TypeError) and isinstance(err, Error)


@pytest.mark.parametrize(
    ("value", "kw", "exc"),
    [
        ("3", {}, UsageTypeError),
        (1.5, {}, UsageTypeError),
        (3.0, {}, UsageTypeError),
        (True, {}, UsageTypeError),
        (None, {}, UsageTypeError),
        ([1], {}, UsageTypeError),
        (-1, {"low": 0}, UsageError),
        (11, {"low": 0, "high": 10}, UsageError),
    ],
)
def test_check_int_refuses(value: Any, kw: dict[str, Any], exc: type[Exception]) -> None:
    msg = _raises(
        v.check_int, "every", value, match=r"^every\b.*is invalid; expected a whole number", exc=exc, **kw
    )
    assert f"every={value!r}" in msg or "got a list" in msg  # the value given is shown


def test_check_int_accepts() -> None:
    assert v.check_int("n", 3) == 3
    assert v.check_int("n", np.int64(4), low=0) == 4 and type(v.check_int("n", np.int64(4))) is int
    assert v.check_int("n", None, optional=True) is None
    assert v.check_int("n", 10, low=0, high=10) == 10


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), "0.1", [0.1], 1j, True, None, -1.0],
)
def test_check_float_refuses(value: Any) -> None:
    _raises(
        v.check_float,
        "lr",
        value,
        low=0.0,
        match=r"^lr\b.*is invalid; expected a finite real number in \[0, inf\)",
    )


def test_check_float_accepts_and_bounds() -> None:
    assert v.check_float("lr", 1) == 1.0 and isinstance(v.check_float("lr", 1), float)
    assert v.check_float("lr", np.float32(0.5)) == 0.5
    assert v.check_float("b", float("inf"), finite=False) == float("inf")
    assert v.check_float("b", None, optional=True) is None
    _raises(v.check_float, "beta", 1.0, low=0.0, high=1.0, high_open=True, match=r"\[0, 1\)")
    _raises(v.check_float, "eps", 0.0, low=0.0, low_open=True, match=r"\(0, inf\)")


def test_check_bool() -> None:
    assert v.check_bool("shadow", True) is True and v.check_bool("shadow", np.bool_(False)) is False
    for bad in (1, 0, "yes", None, [True]):
        _raises(
            v.check_bool,
            "shadow",
            bad,
            match=r"^shadow\b.*is invalid; expected True or False",
            exc=UsageTypeError,
        )


def test_check_choice() -> None:
    assert v.check_choice("mode", "raise", ("raise", "warn")) == "raise"
    msg = _raises(
        v.check_choice,
        "mode",
        "rasie",
        ("raise", "warn"),
        match=r"^mode\b.*is invalid; expected one of 'raise', 'warn'",
    )
    assert "Did you mean 'raise'?" in msg
    _raises(v.check_choice, "mode", 3, ("raise", "warn"), match="mode", exc=UsageTypeError)
    _raises(v.check_choice, "mode", ["raise"], ("raise", "warn"), match="mode", exc=UsageTypeError)
    _raises(v.check_choice, "flag", 1, (True, False), match="flag")  # 1 is not True


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (-1, UsageError),
        (1.5, UsageTypeError),
        ("x", UsageTypeError),
        (True, UsageTypeError),
        (float("nan"), UsageTypeError),
        (None, UsageTypeError),
    ],
)
def test_check_seed_refuses(value: Any, exc: type[Exception]) -> None:
    _raises(v.check_seed, "seed", value, match=r"^seed\b.*is invalid; expected a whole number >= 0", exc=exc)


def test_check_seed_accepts() -> None:
    assert v.check_seed("seed", 0) == 0
    assert v.check_seed("seed", 2**70) == 2**70  # numpy's SeedSequence takes any size
    np.random.default_rng(v.check_seed("seed", 2**70))
    g = np.random.default_rng(0)
    assert v.check_seed("seed", g, generator=True) is g
    _raises(v.check_seed, "seed", g, match="seed", exc=UsageTypeError)
    assert v.check_seed("seed", None, optional=True) is None


def test_check_callable() -> None:
    assert v.check_callable("f", len) is len
    for bad in (None, 3, "f"):
        _raises(
            v.check_callable, "f", bad, match=r"^f\b.*is invalid; expected a function", exc=UsageTypeError
        )


def test_check_names_and_mapping() -> None:
    assert v.check_names("names", {"params": "P"}, keys={"params", "grads"}) == {"params": "P"}
    assert v.check_names("names", None) == {}
    _raises(v.check_names, "names", 3, match=r"^names\b.*is invalid; expected a dict", exc=UsageTypeError)
    _raises(v.check_names, "names", "x", match=r"^names\b.*is invalid", exc=UsageTypeError)
    _raises(v.check_names, "names", ["params"], match=r"^names\b.*is invalid", exc=UsageTypeError)
    _raises(
        v.check_names, "names", {"params": 3}, match=r"^names\['params'\]=3 is invalid; expected a string"
    )
    _raises(v.check_names, "names", {3: "P"}, match=r"^names is invalid; its key 3 is a int")
    _raises(
        v.check_names,
        "names",
        {"bogus": "P"},
        keys={"params", "grads"},
        match=r"^names has unexpected key\(s\) \['bogus'\]; expected keys among \['grads', 'params'\]",
    )
    out = v.check_mapping("hyper", {"lr": 1}, value_check=lambda where, x: v.check_float(where, x))
    assert out == {"lr": 1.0}
    _raises(
        v.check_mapping,
        "hyper",
        {"lr": "x"},
        value_check=lambda where, x: v.check_float(where, x),
        match=r"^hyper\['lr'\]='x' is invalid",
    )


def test_check_str_seq() -> None:
    assert v.check_str_seq("skip", ["a", "b"]) == ("a", "b")
    assert v.check_str_seq("skip", ("a",), choices={"a", "b"}) == ("a",)
    assert v.check_str_seq("skip", None) == ()
    msg = _raises(
        v.check_str_seq,
        "skip",
        "grads",
        match=r"^skip\b.*is invalid; expected a list or tuple of strings",
        exc=UsageTypeError,
    )
    assert "skip=['grads']" in msg
    _raises(v.check_str_seq, "skip", 3, match=r"^skip\b.*is invalid", exc=UsageTypeError)
    _raises(v.check_str_seq, "skip", {"a": 1}, match=r"^skip\b.*is invalid", exc=UsageTypeError)
    _raises(
        v.check_str_seq, "skip", [3], match=r"^skip\[0\]=3 is invalid; expected a string", exc=UsageTypeError
    )
    msg = _raises(
        v.check_str_seq,
        "skip",
        ["non-finit"],
        choices={"non-finite"},
        match=r"^skip\[0\]='non-finit' is invalid",
    )
    assert "Did you mean 'non-finite'?" in msg


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_check_array_policies() -> None:
    a = np.ones((2, 3))
    assert v.check_array("x", a) is a
    msg = _raises(
        v.check_array,
        "params",
        np.asmatrix(a),
        ("W",),
        match=r"^params\['W'\] is a numpy.matrix",
        exc=UsageTypeError,
    )
    assert "np.asarray(params['W'])" in msg and "matrix product" in msg
    m = np.ma.masked_array(a, mask=np.eye(2, 3, dtype=bool))
    msg = _raises(
        v.check_array, "grads", m, ("W",), match=r"^grads\['W'\] is a numpy masked array", exc=UsageTypeError
    )
    assert ".filled(" in msg
    _raises(v.check_array, "x", a.astype(object), match=r"^x has dtype object \(object\)", exc=UsageTypeError)
    _raises(v.check_array, "x", a.astype(str), match=r"^x has dtype <U32 \(string\)", exc=UsageTypeError)
    _raises(
        v.check_array,
        "x",
        a.astype(int),
        real_float=True,
        match=r"^x has dtype int64: expected a real floating",
        exc=UsageTypeError,
    )
    _raises(
        v.check_array,
        "x",
        a.astype(complex),
        real_float=True,
        match=r"^x has dtype complex128",
        exc=UsageTypeError,
    )
    assert v.check_array("x", a.astype(int)) is not None  # integers are numbers where floats are not required
    msg = _raises(
        v.check_array, "x", [1.0, 2.0], match=r"^x is a list; expected an array", exc=UsageTypeError
    )
    assert "np.asarray(x)" in msg
    _raises(v.check_array, "x", None, match=r"^x is None; expected an array", exc=UsageTypeError)
    assert v.check_array("x", 2.0, numbers_ok=True) == 2.0
    _raises(
        v.check_array,
        "x",
        True,
        numbers_ok=True,
        match=r"^x is a bool; expected an array",
        exc=UsageTypeError,
    )


def test_check_array_never_mutates_or_copies() -> None:
    a = np.arange(6.0).reshape(2, 3)
    a.setflags(write=False)
    assert v.check_array("x", a, real_float=True) is a
    out = v.check_tree("params", {"W": a})
    assert out[0][1] is a


def test_check_tree() -> None:
    tree = {"W": np.ones((2, 3)), "layer": {"b": np.zeros(3)}}
    assert [p for p, _ in v.check_tree("params", tree)] == [("W",), ("layer", "b")]
    _raises(
        v.check_tree,
        "params",
        None,
        match=r"^params=None is invalid; expected an array or a dict of arrays",
        exc=UsageTypeError,
    )
    assert v.check_tree("grads", None, optional=True) == []
    _raises(
        v.check_tree,
        "params",
        {},
        allow_empty=False,
        match=r"^params\b.*is invalid; expected at least one array",
    )
    _raises(
        v.check_tree, "params", {1: np.ones(2)}, match=r"^params has the key 1, a int", exc=UsageTypeError
    )
    _raises(
        v.check_tree,
        "params",
        {"W": [1.0]},
        match=r"^params\['W'\] is a list; expected an array",
        exc=UsageTypeError,
    )
    _raises(
        v.check_tree,
        "params",
        [{"W": np.ones(2)}],
        match=r"^params\b.*is invalid.*parameter groups",
        exc=UsageTypeError,
    )
    _raises(v.check_tree, "params", "abc", match=r"^params is a str; expected an array", exc=UsageTypeError)


def test_check_same_namespace_and_structure_with_torch() -> None:
    torch = pytest.importorskip("torch")
    mixed = {"W": np.ones((2, 3)), "b": torch.zeros(3)}
    _raises(
        v.check_tree,
        "params",
        mixed,
        match=r"^params\['b'\] is a torch tensor but params\['W'\] is a numpy array",
        exc=UsageTypeError,
    )
    _raises(
        v.check_same_structure,
        {"params": {"W": np.ones(2)}, "grads": {"W": torch.ones(2)}},
        match=r"^grads\['W'\] is a torch tensor but params\['W'\] is a numpy array",
        exc=UsageTypeError,
    )
    v.check_same_namespace({"a": torch.ones(1), "b": 2.0})  # numbers mix with anything


def test_check_same_structure() -> None:
    p = {"W": np.ones((2, 3)), "b": np.ones(3)}
    rows = v.check_same_structure(
        {"params": p, "grads": {"W": np.ones((2, 3)), "b": np.ones(3)}, "momentum": None}
    )
    assert [path for path, _ in rows] == [("W",), ("b",)] and len(rows[0][1]) == 2
    _raises(
        v.check_same_structure,
        {"params": p, "grads": {"W": np.ones((3, 2)), "b": np.ones(3)}},
        match=r"^grads\['W'\] has shape \(3, 2\) but params\['W'\] has shape \(2, 3\)",
    )
    _raises(
        v.check_same_structure,
        {"params": p, "grads": {"W": np.ones((2, 3))}},
        match=r"^grads has missing key\(s\) \['b'\] compared with params",
    )
    _raises(
        v.check_same_structure,
        {"params": p, "grads": {**p, "z": np.ones(1)}},
        match=r"^grads has unexpected key\(s\) \['z'\] compared with params",
    )
    _raises(
        v.check_same_structure,
        {"params": p, "grads": np.ones(3)},
        match=r"^grads is a numpy array of shape \(3,\) and dtype float64 but params is a dict",
    )
    assert v.check_same_structure({"a": np.ones(2), "b": np.ones(3)}, shapes=False)


def test_describe_value() -> None:
    assert v.describe_value(None) == "None"
    assert v.describe_value("x") == "the str 'x'"
    assert v.describe_value(np.ones((2, 3))) == "a numpy array of shape (2, 3) and dtype float64"
    assert v.describe_value(int) == "the class builtins.int"
    assert v.describe_value({"a": 1}) == "a dict with keys ['a']"
