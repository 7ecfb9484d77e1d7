"""Fuzz optcheck's public Python API with bad arguments and classify what comes back.

Run it standalone (it needs numpy and torch; hypothesis for the strategies)::

    PYTHONPATH=. python benchmarks/fuzz_api.py            # summary table
    PYTHONPATH=. python benchmarks/fuzz_api.py --show raw,wrong --json out.json

Every public entry point is called once with a valid set of arguments (which must succeed:
the fuzzer checks its own fixtures), then once per *kind of bad call*: one argument replaced by a
bad value from a catalogue (``None``, wrong types, strings where sequences are expected,
``names=3``, ``roles="x"``, trees mixing numpy and torch, ``np.matrix``, masked arrays, object
dtype, mismatched shapes and keys, bad seeds, non-finite hyperparameters, empty trees,
inconsistent trajectories, ...). Each outcome is classified:

* ``named``: a ``TypeError``/``ValueError`` (``optcheck.UsageError``) raised by optcheck's own
  code whose message names the argument (the needle for the argument, e.g. ``seed`` or
  ``params['W']``);
* ``raw``: any other exception: one raised from inside numpy, torch or another library, a
  ``KeyError``/``IndexError``/``AttributeError``/..., a message that does not name the argument,
  or a call that hung past the per-call time limit;
* ``wrong``: the call returned, but the answer is wrong (a violation missed, NaN where the
  computation is defined, a result different from the same call on clean input), or the
  user's arrays were mutated;
* ``accepted``: the call returned and nothing shows the answer is wrong, although the input
  should have been refused;
* ``ok``: the call returned for an input that is legitimately acceptable (``expect="either"``).

The script also runs against older versions of optcheck (it uses only public names; entry points
that do not exist are skipped), which is how the before/after counts were measured.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None  # type: ignore[assignment]

import optcheck
from optcheck import rules as R

CALL_TIMEOUT_S = 30.0
PKG_DIR = os.path.dirname(os.path.abspath(optcheck.__file__))

# ---------------------------------------------------------------------------------------------
# Fixtures: valid values every call starts from
# ---------------------------------------------------------------------------------------------


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def make_params() -> dict[str, np.ndarray]:
    rng = _rng()
    return {"W": rng.normal(size=(2, 3)), "b": rng.normal(size=(3,))}


def make_grads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(99)
    return {"W": rng.normal(size=(2, 3)), "b": rng.normal(size=(3,))}


ADAM = R.get("adam", lr=0.01)
P0 = make_params()
G0 = make_grads()
S0 = ADAM.init(P0)
P1, S1 = ADAM.step(P0, G0, S0)


def fresh() -> dict[str, Any]:
    """Independent copies of the valid fixtures (params, grads, state before and after)."""
    return {
        "P0": copy.deepcopy(P0),
        "G0": copy.deepcopy(G0),
        "S0": copy.deepcopy(S0),
        "P1": copy.deepcopy(P1),
        "S1": copy.deepcopy(S1),
    }


def _with_leaf(tree: dict[str, Any], key: str, leaf: Any) -> dict[str, Any]:
    out = dict(tree)
    out[key] = leaf
    return out


def _masked(x: np.ndarray) -> np.ndarray:
    m = np.ma.masked_array(x.copy(), mask=np.zeros(x.shape, bool))
    m.mask.flat[0] = True
    m.data.flat[0] = np.inf  # what a masked entry may hold: it must not leak into a result
    return m


def _obj(x: np.ndarray) -> np.ndarray:
    out = x.astype(object)
    out.flat[0] = float("nan")
    return out


def bad_trees(
    ref: dict[str, np.ndarray],
    *,
    optional: bool = False,
    int_ok: bool = False,
    standalone: bool = False,
    list_ok: bool = False,
) -> list[tuple[str, Any, str]]:
    """``(label, value, expect)`` for a tree argument shaped like ``ref``.

    ``expect`` is ``"refuse"`` (a named error is the only right answer) or ``"either"``.
    ``standalone``: the argument is the only tree of the call (``Rule.init(params)``), so a
    tree of another structure (keys, shapes) is a valid input, not a mismatch.
    """
    st = "either" if standalone else "refuse"
    # the invariant checkers and the guard document that a list of numbers is read as an array
    W = ref["W"]
    out: list[tuple[str, Any, str]] = []
    if not optional:
        out.append(("None", None, "refuse"))
    out += [
        # a number, or a list of numbers, is documented as read as an array by the checkers and the guard
        ("int 3", 3, "either" if list_ok and standalone else "refuse"),
        ("string", "abc", "refuse"),
        ("list of floats", [1.0, 2.0], "either" if list_ok and standalone else "refuse"),
        ("tuple of arrays", (ref["W"], ref["b"]), "refuse"),
        ("set", {1.0, 2.0}, "refuse"),
        ("empty dict", {}, st),
        ("missing key", {"W": W.copy()}, st),
        ("extra key", {**copy.deepcopy(ref), "zz": np.ones(2)}, st),
        ("non-string key", {1: W.copy(), "b": ref["b"].copy()}, "refuse"),
        ("leaf transposed shape", _with_leaf(copy.deepcopy(ref), "W", W.T.copy()), st),
        (
            "leaf is a list",
            _with_leaf(copy.deepcopy(ref), "W", W.tolist()),
            "either" if list_ok else "refuse",
        ),
        ("leaf is None", _with_leaf(copy.deepcopy(ref), "W", None), "refuse"),
        ("leaf is a string", _with_leaf(copy.deepcopy(ref), "W", "x"), "refuse"),
        ("np.matrix leaf", _with_leaf(copy.deepcopy(ref), "W", np.asmatrix(W.copy())), "refuse"),
        ("masked-array leaf", _with_leaf(copy.deepcopy(ref), "W", _masked(W)), "refuse"),
        ("object-dtype leaf", _with_leaf(copy.deepcopy(ref), "W", _obj(W)), "refuse"),
        ("string-dtype leaf", _with_leaf(copy.deepcopy(ref), "W", W.astype(str)), "refuse"),
        ("complex leaf", _with_leaf(copy.deepcopy(ref), "W", W.astype(complex)), "refuse"),
        (
            "int leaf",
            _with_leaf(copy.deepcopy(ref), "W", np.ones(W.shape, dtype=np.int64)),
            "either" if int_ok else "refuse",
        ),
        ("nested one level deeper", {"W": {"x": W.copy()}, "b": ref["b"].copy()}, st),
    ]
    if torch is not None:
        out.append(("torch leaf among numpy", _with_leaf(copy.deepcopy(ref), "W", torch.tensor(W)), "refuse"))
    return out


def bad_arrays(ref: np.ndarray, *, int_ok: bool = True) -> list[tuple[str, Any, str]]:
    """``(label, value, expect)`` for an argument that is one array shaped like ``ref``."""
    out: list[tuple[str, Any, str]] = [
        ("None", None, "refuse"),
        ("int 3", 3, "refuse"),
        ("string", "abc", "refuse"),
        ("nested list", ref.tolist(), "refuse"),
        ("dict", {"W": ref.copy()}, "refuse"),
        ("transposed shape", ref.T.copy(), "refuse"),
        ("np.matrix", np.asmatrix(ref.copy()), "refuse"),
        ("masked array", _masked(ref), "refuse"),
        ("object dtype", _obj(ref), "refuse"),
        ("string dtype", ref.astype(str), "refuse"),
        ("complex", ref.astype(complex), "refuse"),
        ("int dtype", np.ones(ref.shape, dtype=np.int64), "either" if int_ok else "refuse"),
    ]
    if torch is not None:
        out.append(("torch tensor among numpy", torch.tensor(ref), "refuse"))
    return out


def _torch_tree(tree: dict[str, np.ndarray]) -> Any:
    assert torch is not None
    return {k: torch.tensor(v) for k, v in tree.items()}


BAD_INT = [
    ("string '3'", "3", "refuse"),
    ("float 1.5", 1.5, "refuse"),
    ("negative -1", -1, "refuse"),
    ("bool True", True, "refuse"),
    ("nan", float("nan"), "refuse"),
    ("list [1]", [1], "refuse"),
]
BAD_SEED = [
    ("seed -1", -1, "refuse"),
    ("seed 2**70", 2**70, "either"),
    ("seed 1.5", 1.5, "refuse"),
    ("seed 'x'", "x", "refuse"),
    ("seed True", True, "refuse"),
    ("seed nan", float("nan"), "refuse"),
    ("seed [1, 2]", [1, 2], "either"),
]
BAD_FLOAT = [
    ("nan", float("nan"), "refuse"),
    ("inf", float("inf"), "refuse"),
    ("-inf", float("-inf"), "refuse"),
    ("string", "x", "refuse"),
    ("list", [0.1], "refuse"),
    ("complex", 1j, "refuse"),
    ("bool", True, "refuse"),
]
BAD_NAME_MAP = [
    ("int 3", 3, "refuse"),
    ("string 'x'", "x", "refuse"),
    ("list", ["params"], "refuse"),
    ("value int", {"params": 3}, "refuse"),
    ("key int", {3: "P"}, "refuse"),
]
BAD_STR_SEQ = [
    ("string where a sequence is expected", "grads", "refuse"),
    ("int 3", 3, "refuse"),
    ("list of ints", [3], "refuse"),
    ("unknown name", ["bogus"], "refuse"),
    ("None inside", [None], "refuse"),
]
BAD_BOOL = [
    ("string 'yes'", "yes", "refuse"),
    ("None", None, "refuse"),
    ("int 2", 2, "refuse"),
    ("list", [True], "refuse"),
]
BAD_CHOICE = [
    ("int 3", 3, "refuse"),
    ("None", None, "refuse"),
    ("unknown string", "bogus", "refuse"),
    ("list", ["x"], "refuse"),
    ("bytes", b"x", "refuse"),
]
BAD_CALLABLE = [
    ("None", None, "refuse"),
    ("int 3", 3, "refuse"),
    ("string", "f", "refuse"),
]


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    entry: str  # the public entry point, e.g. "Rule.step"
    arg: str  # the argument replaced
    label: str  # what the bad value is
    call: Callable[[], Any]
    needles: tuple[str, ...]  # the message must contain one of these (the argument's name)
    expect: str = "refuse"  # or "either"
    wrong: Callable[[Any], str | None] | None = None  # given the result, why it is wrong (None: fine)


@dataclasses.dataclass
class Outcome:
    case: Case
    kind: str  # named, raw, wrong, accepted, ok, skipped
    detail: str
    exc_type: str = ""
    seconds: float = 0.0


CASES: list[Case] = []
VALID: dict[str, Callable[[], Any]] = {}  # entry point -> a valid call (checked first)


def entry(name: str, valid: Callable[[], Any]) -> None:
    VALID[name] = valid


def add(
    entry_name: str,
    arg: str,
    cases: list[tuple[str, Any, str]],
    build: Callable[[Any], Callable[[], Any]],
    *,
    needles: tuple[str, ...] | None = None,
    wrong: Callable[[str, Any], Callable[[Any], str | None] | None] | None = None,
) -> None:
    """One Case per bad value: ``build(value)`` returns the call."""
    for label, value, expect in cases:
        CASES.append(
            Case(
                entry=entry_name,
                arg=arg,
                label=label,
                call=build(value),
                needles=needles or (arg,),
                expect=expect,
                wrong=wrong(label, value) if wrong is not None else None,
            )
        )


def has(obj: Any, *path: str) -> bool:
    for p in path:
        if not hasattr(obj, p):
            return False
        obj = getattr(obj, p)
    return True


def _finite_tree(x: Any) -> bool:
    if isinstance(x, dict):
        return all(_finite_tree(v) for v in x.values())
    try:
        return bool(np.all(np.isfinite(np.asarray(x, dtype=float))))
    except Exception:
        return False


def _same_tree(a: Any, b: Any, rtol: float = 1e-12) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
            return False
        return all(_same_tree(a[k], b[k], rtol) for k in a)
    try:
        aa = np.asarray(a, dtype=float)
        bb = np.asarray(b, dtype=float)
    except Exception:
        return False
    return aa.shape == bb.shape and bool(np.allclose(aa, bb, rtol=rtol, atol=0, equal_nan=True))


# ---------------------------------------------------------------------------------------------
# The catalogue, entry point by entry point
# ---------------------------------------------------------------------------------------------


def build_catalogue() -> None:
    CASES.clear()
    VALID.clear()

    # -- rules.get, rule classes, Rule.replace ------------------------------------------------
    entry("rules.get", lambda: R.get("adam", lr=0.01))
    add("rules.get", "name", BAD_CHOICE, lambda v: lambda: R.get(v), needles=("rule", "name"))
    for label, value, expect in [*BAD_FLOAT, ("negative", -1.0, "refuse"), ("None", None, "refuse")]:
        CASES.append(Case("rules.get", "lr", label, (lambda v=value: R.get("adam", lr=v)), ("lr",), expect))
    for label, value in [
        ("string", "ab"),
        ("one value", (0.9,)),
        ("three", (0.9, 0.9, 0.9)),
        ("int", 3),
        ("nan", (float("nan"), 0.9)),
    ]:
        CASES.append(
            Case("rules.get", "betas", label, (lambda v=value: R.get("adam", betas=v)), ("betas", "beta1"))
        )
    CASES.append(
        Case("rules.get", "hyper", "unknown hyperparameter", lambda: R.get("adam", lrr=0.1), ("lrr",))
    )
    if has(R, "rule_class"):
        entry("rules.rule_class", lambda: R.rule_class("adam"))
        add(
            "rules.rule_class",
            "name",
            BAD_CHOICE,
            lambda v: lambda: R.rule_class(v),
            needles=("rule", "name"),
        )

    for name in R.names():
        cls = R.rule_class(name) if has(R, "rule_class") else type(R.get(name))
        specs = cls.hyper_specs()
        floats = [s for s in specs if s.kind in ("float", "optional-float")]
        bools = [s for s in specs if s.kind == "bool"]
        choices = [s for s in specs if s.kind == "choice"]
        ename = f"rules.{cls.__name__}"
        entry(ename, lambda cls=cls: cls())
        for s in floats[:2]:
            for label, value, expect in BAD_FLOAT:
                CASES.append(
                    Case(
                        ename,
                        s.name,
                        label,
                        (lambda cls=cls, s=s, v=value: cls(**{s.name: v})),
                        (s.name,),
                        expect,
                    )
                )
        for s in bools[:1]:
            for label, value, expect in BAD_BOOL:
                if value is None:
                    continue
                CASES.append(
                    Case(
                        ename,
                        s.name,
                        label,
                        (lambda cls=cls, s=s, v=value: cls(**{s.name: v})),
                        (s.name,),
                        expect,
                    )
                )
        for s in choices[:1]:
            for label, value, expect in BAD_CHOICE:
                CASES.append(
                    Case(
                        ename,
                        s.name,
                        label,
                        (lambda cls=cls, s=s, v=value: cls(**{s.name: v})),
                        (s.name,),
                        expect,
                    )
                )
        CASES.append(Case(ename, "ops", "ops='x'", (lambda cls=cls: cls(ops="x")), ("ops",)))

    entry("Rule.replace", lambda: ADAM.replace(lr=0.1))
    for label, value, expect in BAD_FLOAT:
        CASES.append(Case("Rule.replace", "lr", label, (lambda v=value: ADAM.replace(lr=v)), ("lr",), expect))
    CASES.append(
        Case("Rule.replace", "hyper", "unknown hyperparameter", lambda: ADAM.replace(lrr=0.1), ("lrr",))
    )

    # -- Rule.init / Rule.step / Rule.step_ ------------------------------------------------------
    def wrong_vs_clean(label: str, value: Any) -> Callable[[Any], str | None] | None:
        """For matrix/masked leaves: the result must equal the clean ndarray computation."""
        if "matrix" not in label and "masked" not in label:
            return None

        def check(result: Any) -> str | None:
            f = fresh()
            clean_p, _ = ADAM.step(f["P0"], f["G0"], f["S0"])
            new_p = result[0] if isinstance(result, tuple) else result
            if not _finite_tree(new_p):
                return "non-finite result where the same step on plain arrays is finite"
            if isinstance(result, tuple) and not _same_tree(new_p, clean_p):
                return "result differs from the same step on plain ndarrays"
            return None

        return check

    entry("Rule.init", lambda: ADAM.init(fresh()["P0"]))
    add("Rule.init", "params", bad_trees(P0, standalone=True), lambda v: lambda: ADAM.init(v))
    entry("Rule.step", lambda: ADAM.step(**_step_kwargs()))
    for arg, ref in (("params", P0), ("grads", G0)):
        add(
            "Rule.step",
            arg,
            bad_trees(ref),
            lambda v, arg=arg: lambda: ADAM.step(**{**_step_kwargs(), arg: v}),
            wrong=wrong_vs_clean,
        )
    add("Rule.step", "state", _bad_states(), lambda v: lambda: ADAM.step(**{**_step_kwargs(), "state": v}))
    if torch is not None:
        CASES.append(
            Case(
                "Rule.step",
                "params",
                "all-torch params with numpy grads",
                lambda: ADAM.step(_torch_tree(P0), make_grads(), ADAM.init(_torch_tree(P0))),
                ("params", "grads"),
            )
        )
    if has(ADAM, "step_"):

        def step_inplace(**kw: Any) -> Any:
            return ADAM.step_(**kw)  # type: ignore[attr-defined]

        entry("Rule.step_", lambda: step_inplace(**_step_kwargs()))
        for arg, ref in (("params", P0), ("grads", G0)):
            add(
                "Rule.step_",
                arg,
                bad_trees(ref),
                lambda v, arg=arg: lambda: step_inplace(**{**_step_kwargs(), arg: v}),
            )
        add(
            "Rule.step_",
            "state",
            _bad_states(),
            lambda v: lambda: step_inplace(**{**_step_kwargs(), "state": v}),
        )

        def read_only() -> Any:
            kw = _step_kwargs()
            kw["params"]["W"].setflags(write=False)
            return step_inplace(**kw)

        def aliased() -> Any:
            kw = _step_kwargs()
            kw["state"]["exp_avg"]["W"] = kw["params"]["W"]  # one array written twice
            return step_inplace(**kw)

        def frozen_state() -> Any:
            import types

            kw = _step_kwargs()
            kw["state"] = types.MappingProxyType(kw["state"])
            return step_inplace(**kw)

        CASES.append(Case("Rule.step_", "params", "read-only array", read_only, ("params['W']", "params")))
        CASES.append(Case("Rule.step_", "state", "array shared with params", aliased, ("state", "params")))
        CASES.append(Case("Rule.step_", "state", "a read-only mapping", frozen_state, ("state",)))

    # -- invariants ----------------------------------------------------------------------------
    inv = optcheck.invariants

    def nonempty_expected(
        what: str, *labels: str
    ) -> Callable[[str, Any], Callable[[Any], str | None] | None]:
        def make(label: str, value: Any) -> Callable[[Any], str | None] | None:
            if not any(w in label for w in labels):
                return None

            def check(result: Any) -> str | None:
                if isinstance(result, list) and not result:
                    return f"returned no violation although the input holds {what}"
                return None

            return check

        return make

    entry("invariants.non_finite", lambda: inv.non_finite(fresh()["P1"], name="params"))
    add(
        "invariants.non_finite",
        "x",
        bad_trees(P0, int_ok=True, standalone=True, list_ok=True),
        lambda v: lambda: inv.non_finite(v),
        wrong=nonempty_expected("a NaN", "object-dtype"),
    )
    add(
        "invariants.non_finite",
        "name",
        [("int", 3, "refuse"), ("None", None, "refuse")],
        lambda v: lambda: inv.non_finite(fresh()["P1"], name=v),
    )
    add("invariants.non_finite", "step", BAD_INT, lambda v: lambda: inv.non_finite(fresh()["P1"], step=v))
    add(
        "invariants.non_finite",
        "before",
        bad_trees(P0, optional=True, int_ok=True, list_ok=True),
        lambda v: lambda: inv.non_finite(fresh()["P1"], before=v),
    )

    neg = {"W": -np.ones((2, 3)), "b": -np.ones(3)}
    entry(
        "invariants.negative_second_moment", lambda: inv.negative_second_moment(fresh()["S1"]["exp_avg_sq"])
    )
    add(
        "invariants.negative_second_moment",
        "v",
        bad_trees(P0, int_ok=True, standalone=True, list_ok=True),
        lambda v: lambda: inv.negative_second_moment(v),
    )
    add(
        "invariants.negative_second_moment",
        "grads",
        bad_trees(G0, optional=True, int_ok=True, list_ok=True),
        lambda v: lambda: inv.negative_second_moment(copy.deepcopy(neg), grads=v),
    )
    add(
        "invariants.negative_second_moment",
        "before",
        bad_trees(P0, optional=True, int_ok=True, list_ok=True),
        lambda v: lambda: inv.negative_second_moment(copy.deepcopy(neg), before=v),
    )
    add(
        "invariants.negative_second_moment",
        "step",
        BAD_INT,
        lambda v: lambda: inv.negative_second_moment(copy.deepcopy(neg), step=v),
    )

    entry("invariants.sqrt_of_negative", lambda: inv.sqrt_of_negative(fresh()["S1"]["exp_avg_sq"]))
    add(
        "invariants.sqrt_of_negative",
        "x",
        bad_trees(P0, int_ok=True, standalone=True, list_ok=True),
        lambda v: lambda: inv.sqrt_of_negative(v),
    )

    acc_before = {"W": np.full((2, 3), 5.0), "b": np.full(3, 5.0)}
    acc_after_bad_shape = {"W": np.full((3, 2), 1.0), "b": np.full(3, 1.0)}
    acc_after_bad_size = {"W": np.full((2, 3), 6.0), "b": np.full(2, 1.0)}
    entry(
        "invariants.accumulator_decreased",
        lambda: inv.accumulator_decreased(copy.deepcopy(acc_before), copy.deepcopy(acc_before)),
    )
    add(
        "invariants.accumulator_decreased",
        "after",
        [
            *bad_trees(acc_before, int_ok=True, list_ok=True),
            ("decreased, shape (3, 2) vs (2, 3)", acc_after_bad_shape, "refuse"),
            ("decreased, different size", acc_after_bad_size, "refuse"),
        ],
        lambda v: lambda: inv.accumulator_decreased(copy.deepcopy(acc_before), v),
        wrong=nonempty_expected("a decrease", "decreased,"),
    )
    add(
        "invariants.accumulator_decreased",
        "before",
        bad_trees(acc_before, int_ok=True, list_ok=True),
        lambda v: lambda: inv.accumulator_decreased(v, copy.deepcopy(acc_before)),
    )
    add(
        "invariants.accumulator_decreased",
        "kind",
        BAD_CHOICE[:2],
        lambda v: (
            lambda: inv.accumulator_decreased(copy.deepcopy(acc_before), copy.deepcopy(acc_before), kind=v)
        ),
    )

    entry("invariants.step_not_incremented", lambda: inv.step_not_incremented(1, 2))
    add(
        "invariants.step_not_incremented",
        "after",
        [
            ("string", "2", "refuse"),
            ("None", None, "refuse"),
            ("float 2.5", 2.5, "refuse"),
            ("array of 2", np.array([2, 3]), "refuse"),
            ("nan", float("nan"), "refuse"),
        ],
        lambda v: lambda: inv.step_not_incremented(1, v),
        wrong=lambda label, v: lambda r: "returned no violation for a non-integer step" if r == [] else None,
    )
    add(
        "invariants.step_not_incremented",
        "before",
        [("string", "1", "refuse"), ("None", None, "refuse"), ("list", [1], "refuse")],
        lambda v: lambda: inv.step_not_incremented(v, 2),
    )

    moved = {"W": P0["W"] + 1.0, "b": P0["b"] + 1.0}
    zero_g = {"W": np.zeros((2, 3)), "b": np.zeros(3)}
    zero_g_bad = {"W": np.zeros((3, 2)), "b": np.zeros(3)}
    zero_g_small = {"W": np.zeros((2, 3)), "b": np.zeros(1)}
    entry(
        "invariants.update_without_gradient",
        lambda: inv.update_without_gradient(copy.deepcopy(P0), copy.deepcopy(zero_g), copy.deepcopy(moved)),
    )
    add(
        "invariants.update_without_gradient",
        "grads",
        [
            *bad_trees(zero_g, int_ok=True, list_ok=True),
            ("zero grads shaped (3, 2)", zero_g_bad, "refuse"),
            ("zero grads of size 1", zero_g_small, "refuse"),
        ],
        lambda v: lambda: inv.update_without_gradient(copy.deepcopy(P0), v, copy.deepcopy(moved)),
        wrong=nonempty_expected("a move without gradient", "zero grads"),
    )
    add(
        "invariants.update_without_gradient",
        "new_params",
        bad_trees(P0, int_ok=True, list_ok=True),
        lambda v: lambda: inv.update_without_gradient(copy.deepcopy(P0), copy.deepcopy(zero_g), v),
    )
    add(
        "invariants.update_without_gradient",
        "momentum",
        bad_trees(P0, optional=True, int_ok=True, list_ok=True),
        lambda v: (
            lambda: inv.update_without_gradient(
                copy.deepcopy(P0), copy.deepcopy(zero_g), copy.deepcopy(moved), momentum=v
            )
        ),
    )

    entry(
        "invariants.update_too_large",
        lambda: inv.update_too_large(copy.deepcopy(P0), copy.deepcopy(moved), bound=0.5),
    )
    add(
        "invariants.update_too_large",
        "new_params",
        bad_trees(P0, int_ok=True, list_ok=True),
        lambda v: lambda: inv.update_too_large(copy.deepcopy(P0), v, bound=0.5),
    )
    add(
        "invariants.update_too_large",
        "bound",
        [*BAD_FLOAT, ("negative", -1.0, "refuse"), ("None", None, "refuse")],
        lambda v: lambda: inv.update_too_large(copy.deepcopy(P0), copy.deepcopy(moved), bound=v),
    )
    add(
        "invariants.update_too_large",
        "decay",
        [*BAD_FLOAT, ("negative", -1.0, "refuse")],
        lambda v: lambda: inv.update_too_large(copy.deepcopy(P0), copy.deepcopy(moved), bound=0.5, decay=v),
    )

    for fname in ("input_mutated", "shape_changed", "dtype_changed"):
        fn = getattr(inv, fname)
        ename = f"invariants.{fname}"
        entry(ename, lambda fn=fn: fn(copy.deepcopy(P0), copy.deepcopy(P0)))
        add(
            ename,
            "after",
            bad_trees(P0, int_ok=True, list_ok=True),
            lambda v, fn=fn: lambda: fn(copy.deepcopy(P0), v),
        )
        add(
            ename,
            "before",
            bad_trees(P0, int_ok=True, list_ok=True),
            lambda v, fn=fn: lambda: fn(v, copy.deepcopy(P0)),
        )
        # for these checkers a different shape or dtype (or changed values) is the finding, not bad input
        expected_ids = {
            "input_mutated": {"leaf transposed shape": "shape-changed", "int leaf": "input-mutated"},
            "shape_changed": {"leaf transposed shape": "shape-changed"},
            "dtype_changed": {"complex leaf": "dtype-changed", "int leaf": "dtype-changed"},
        }[fname]
        for case in CASES:
            if case.entry == ename and case.label in ("leaf transposed shape", "complex leaf", "int leaf"):
                case.expect = "either"
                want = expected_ids.get(case.label)
                if want is not None:
                    case.wrong = lambda r, want=want: (
                        None if any(getattr(x, "id", "") == want for x in r) else f"missed {want}"
                    )
    CASES.append(
        Case(
            "invariants.input_mutated",
            "after",
            "changed, shape (3, 2) vs (2, 3)",
            lambda: inv.input_mutated(copy.deepcopy(P0), {"W": P0["W"].T + 1.0, "b": P0["b"].copy()}),
            ("after", "before"),
            "either",
            wrong=lambda r: "returned no violation for a changed array" if r == [] else None,
        )
    )

    entry("invariants.raise_if", lambda: inv.raise_if([]))
    add(
        "invariants.raise_if",
        "violations",
        [
            ("None", None, "refuse"),
            ("int", 3, "refuse"),
            ("string", "x", "refuse"),
            ("list of str", ["x"], "refuse"),
        ],
        lambda v: lambda: inv.raise_if(v),
    )

    # check_update
    def cu(**kw: Any) -> Any:
        f = fresh()
        base = dict(
            rule=ADAM, params=f["P0"], grads=f["G0"], state=f["S0"], new_params=f["P1"], new_state=f["S1"]
        )
        base.update(kw)
        return inv.check_update(**base)

    entry("invariants.check_update", lambda: cu())
    for arg, ref in (("params", P0), ("grads", G0), ("new_params", P1)):
        add(
            "invariants.check_update",
            arg,
            bad_trees(ref, list_ok=True),
            lambda v, arg=arg: lambda: cu(**{arg: v}),
            needles=(arg,),
        )
    # wrong-shape zero grads with moved params: update-without-gradient must not be missed
    CASES.append(
        Case(
            "invariants.check_update",
            "grads",
            "zero grads of the wrong shape",
            lambda: cu(
                rule=R.get("sgd", lr=0.1),
                state={"step": 0},
                new_state={"step": 1},
                grads=copy.deepcopy(zero_g_bad),
                new_params=copy.deepcopy(moved),
            ),
            ("grads",),
            wrong=lambda r: (
                "missed update-without-gradient"
                if not any(getattr(x, "id", "") == "update-without-gradient" for x in r)
                else None
            ),
        )
    )
    add(
        "invariants.check_update",
        "state",
        _bad_states(optional=True),
        lambda v: lambda: cu(state=v),
        needles=("state",),
    )
    add(
        "invariants.check_update",
        "new_state",
        _bad_states(optional=True),
        lambda v: lambda: cu(new_state=v),
        needles=("new_state", "state"),
    )
    add(
        "invariants.check_update",
        "rule",
        [
            ("int", 3, "refuse"),
            ("unknown name", "bogus", "refuse"),
            ("a class", R.Adam, "refuse"),
            ("list", ["adam"], "refuse"),
        ],
        lambda v: lambda: cu(rule=v),
    )
    add("invariants.check_update", "names", BAD_NAME_MAP, lambda v: lambda: cu(names=v))
    add(
        "invariants.check_update",
        "roles",
        [*BAD_NAME_MAP, ("unknown role", {"exp_avg": "bogus-role"}, "refuse")],
        lambda v: lambda: cu(roles=v),
    )
    add("invariants.check_update", "key_prefix", BAD_NAME_MAP, lambda v: lambda: cu(key_prefix=v))
    add("invariants.check_update", "skip", BAD_STR_SEQ, lambda v: lambda: cu(skip=v))
    add("invariants.check_update", "step", BAD_INT, lambda v: lambda: cu(step=v))
    add(
        "invariants.check_update",
        "before",
        [("int", 3, "refuse"), ("string", "x", "refuse"), ("unknown key", {"bogus": 1}, "refuse")],
        lambda v: lambda: cu(before=v),
    )
    add(
        "invariants.check_update",
        "overrides",
        [("int", 3, "refuse"), ("value not a rule", {("W",): 3}, "refuse"), ("string", "x", "refuse")],
        lambda v: lambda: cu(overrides=v),
    )

    def immutable_string() -> Any:
        # the update changed grads in place: immutable="grads" (a string) must not hide it
        f = fresh()
        before = {"grads": copy.deepcopy(f["G0"])}
        g = f["G0"]
        g["W"] += 1.0
        return inv.check_update(ADAM, f["P0"], g, f["S0"], f["P1"], f["S1"], before=before, immutable="grads")

    CASES.append(
        Case(
            "invariants.check_update",
            "immutable",
            "string 'grads' where a sequence is expected",
            immutable_string,
            ("immutable",),
            wrong=lambda r: (
                "missed the in-place change to grads"
                if not any(getattr(x, "id", "") == "input-mutated" for x in r)
                else None
            ),
        )
    )
    add(
        "invariants.check_update",
        "immutable",
        [x for x in BAD_STR_SEQ if x[0] != "string where a sequence is expected"],
        lambda v: lambda: cu(immutable=v),
    )
    # state errors must name the user's key, not an internal label
    bad_state = copy.deepcopy(S1)
    bad_state["exp_avg"] = {"W": np.zeros((3, 2)), "b": np.zeros(3)}
    CASES.append(
        Case(
            "invariants.check_update",
            "new_state",
            "state['exp_avg'] leaf of the wrong shape",
            lambda: cu(new_state=copy.deepcopy(bad_state)),
            ("new_state['exp_avg']", "state['exp_avg']"),
        )
    )

    # -- Guard ---------------------------------------------------------------------------------
    Guard = optcheck.Guard
    entry("Guard", lambda: Guard("adam", lr=0.01))
    add(
        "Guard",
        "rule",
        [
            ("int", 3, "refuse"),
            ("unknown", "bogus", "refuse"),
            ("class", R.Adam, "refuse"),
            ("list", ["adam"], "refuse"),
        ],
        lambda v: lambda: Guard(v),
    )
    add("Guard", "mode", BAD_CHOICE, lambda v: lambda: Guard("adam", mode=v))
    add(
        "Guard",
        "every",
        [*BAD_INT, ("zero", 0, "refuse"), ("None", None, "refuse")],
        lambda v: lambda: Guard("adam", every=v),
    )
    add("Guard", "sample", [*BAD_INT, ("zero", 0, "refuse")], lambda v: lambda: Guard("adam", sample=v))
    add("Guard", "seed", BAD_SEED, lambda v: lambda: Guard("adam", sample=2, seed=v))
    add(
        "Guard",
        "seed",
        [("seed -1 without sample", -1, "refuse"), ("seed 'x' without sample", "x", "refuse")],
        lambda v: lambda: Guard("adam", seed=v),
    )
    add(
        "Guard",
        "names",
        [*BAD_NAME_MAP, ("unknown key", {"bogus": "P"}, "refuse")],
        lambda v: lambda: Guard("adam", names=v),
    )
    add(
        "Guard",
        "roles",
        [*BAD_NAME_MAP, ("unknown role", {"S": "bogus"}, "refuse")],
        lambda v: lambda: Guard("adam", roles=v),
    )
    add("Guard", "skip", BAD_STR_SEQ, lambda v: lambda: Guard("adam", skip=v))
    add("Guard", "shadow", BAD_BOOL, lambda v: lambda: Guard("adam", shadow=v))
    add(
        "Guard",
        "shadow_sample",
        [*BAD_INT, ("zero", 0, "refuse")],
        lambda v: lambda: Guard("adam", shadow=True, shadow_sample=v),
    )
    add(
        "Guard",
        "overrides",
        [
            ("int", 3, "refuse"),
            ("string", "x", "refuse"),
            ("value int", {"b": 3}, "refuse"),
            ("unknown hyper", {"b": {"lrr": 0}}, "refuse"),
            ("bad value", {"b": {"lr": float("nan")}}, "refuse"),
            ("unknown key", {3: {"lr": 0.1}}, "refuse"),
        ],
        lambda v: lambda: Guard("adam", overrides=v),
    )
    add("Guard", "lr", BAD_FLOAT, lambda v: lambda: Guard("adam", lr=v))

    def gcheck(**kw: Any) -> Any:
        f = fresh()
        g = Guard("adam", lr=0.01)
        base = dict(
            params=f["P1"], grads=f["G0"], state=f["S1"], before={"params": f["P0"], "state": f["S0"]}
        )
        base.update(kw)
        return g.check(**base)

    entry("Guard.check", lambda: gcheck())
    add("Guard.check", "params", bad_trees(P1, list_ok=True), lambda v: lambda: gcheck(params=v))
    add("Guard.check", "grads", bad_trees(G0, list_ok=True), lambda v: lambda: gcheck(grads=v))
    add(
        "Guard.check",
        "grads",
        [
            (f"{lab} (no before)", v, e)
            for lab, v, e in bad_trees(G0, list_ok=True)
            if "shape" in lab or "key" in lab or "torch" in lab
        ],
        lambda v: lambda: gcheck(grads=v, before=None),
    )
    add("Guard.check", "state", _bad_states(optional=True, guard=True), lambda v: lambda: gcheck(state=v))
    add("Guard.check", "step", BAD_INT, lambda v: lambda: gcheck(step=v))
    add(
        "Guard.check",
        "before",
        [
            ("int", 3, "refuse"),
            ("string", "x", "refuse"),
            ("unknown key", {"bogus": 1}, "refuse"),
            ("params None", {"params": None}, "refuse"),
            ("params wrong shape", {"params": {"W": np.zeros((3, 2)), "b": np.zeros(3)}}, "refuse"),
            ("params missing key", {"params": {"W": np.zeros((2, 3))}}, "refuse"),
            ("state int", {"params": copy.deepcopy(P0), "state": 3}, "refuse"),
        ],
        lambda v: lambda: gcheck(before=v),
    )

    def gsnap(**kw: Any) -> Any:
        f = fresh()
        g = Guard("adam", lr=0.01)
        base = dict(params=f["P0"], grads=f["G0"], state=f["S0"])
        base.update(kw)
        return g.snapshot(**base)

    entry("Guard.snapshot", lambda: gsnap())
    add(
        "Guard.snapshot",
        "params",
        bad_trees(P0, standalone=True, list_ok=True),
        lambda v: lambda: gsnap(params=v),
    )
    add(
        "Guard.snapshot",
        "grads",
        bad_trees(G0, optional=True, list_ok=True),
        lambda v: lambda: gsnap(grads=v),
    )
    add("Guard.snapshot", "state", _bad_states(optional=True, guard=True), lambda v: lambda: gsnap(state=v))

    # -- guarded, trap ---------------------------------------------------------------------------
    def sgd_update(params: Any, grads: Any, lr: float = 0.1) -> Any:
        return {k: params[k] - lr * grads[k] for k in params}

    guarded = optcheck.guarded
    entry("guarded", lambda: guarded(sgd_update, "sgd", lr=0.1)(fresh()["P0"], fresh()["G0"]))
    add("guarded", "update_fn", BAD_CALLABLE, lambda v: lambda: guarded(v, "sgd"))
    add(
        "guarded",
        "rule",
        [("int", 3, "refuse"), ("unknown", "bogus", "refuse"), ("list", ["sgd"], "refuse")],
        lambda v: lambda: guarded(sgd_update, v),
    )
    add("guarded", "mode", BAD_CHOICE, lambda v: lambda: guarded(sgd_update, "sgd", mode=v))
    add(
        "guarded",
        "every",
        [*BAD_INT, ("zero", 0, "refuse")],
        lambda v: lambda: guarded(sgd_update, "sgd", every=v),
    )
    add("guarded", "seed", BAD_SEED, lambda v: lambda: guarded(sgd_update, "sgd", sample=2, seed=v))
    add("guarded", "roles", BAD_NAME_MAP, lambda v: lambda: guarded(sgd_update, "sgd", roles=v))
    add("guarded", "skip", BAD_STR_SEQ, lambda v: lambda: guarded(sgd_update, "sgd", skip=v))
    add(
        "guarded(...)(params, grads)",
        "params",
        bad_trees(P0, list_ok=True),
        lambda v: lambda: guarded(sgd_update, "sgd", lr=0.1)(v, make_grads()),
        needles=("params",),
    )
    add(
        "guarded(...)(params, grads)",
        "grads",
        bad_trees(G0, list_ok=True),
        lambda v: lambda: guarded(sgd_update, "sgd", lr=0.1)(make_params(), v),
        needles=("grads",),
    )

    trap = optcheck.trap

    def use_trap(**kw: Any) -> Any:
        with trap(**kw):
            return np.float64(1.0) + 1.0

    entry("trap", lambda: use_trap())
    for arg in ("invalid", "divide", "overflow", "underflow"):
        add(
            "trap",
            arg,
            [x for x in BAD_BOOL if x[1] is not None],
            lambda v, arg=arg: lambda: use_trap(**{arg: v}),
        )

    # -- gradcheck -------------------------------------------------------------------------------
    gc = importlib.import_module("optcheck.gradcheck")

    def fx(x: Any) -> Any:
        return float(np.sum(x["W"] ** 2) + np.sum(np.sin(x["b"])))

    def gx(x: Any) -> Any:
        return {"W": 2 * x["W"], "b": np.cos(x["b"])}

    X0 = {"W": np.linspace(-1, 1, 6).reshape(2, 3), "b": np.linspace(0.1, 0.3, 3)}

    for fname in ("check_gradient", "assert_gradient"):
        fn = getattr(gc, fname)
        ename = fname

        def call(fn: Any = fn, **kw: Any) -> Any:
            base = dict(f=fx, x=copy.deepcopy(X0), grad=gx(X0))
            base.update(kw)
            return fn(**base)

        entry(ename, lambda call=call: call())
        add(ename, "f", BAD_CALLABLE, lambda v, call=call: lambda: call(f=v))
        add(ename, "x", bad_trees(X0, standalone=True), lambda v, call=call: lambda: call(x=v))
        add(ename, "grad", bad_trees(X0, int_ok=True), lambda v, call=call: lambda: call(grad=v))
        add(ename, "method", BAD_CHOICE, lambda v, call=call: lambda: call(method=v))
        add(ename, "mode", BAD_CHOICE, lambda v, call=call: lambda: call(mode=v))
        add(
            ename,
            "samples",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v, call=call: lambda: call(samples=v, mode="sample"),
        )
        add(
            ename,
            "directions",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v, call=call: lambda: call(directions=v, mode="directional"),
        )
        add(
            ename,
            "rtol",
            [*BAD_FLOAT, ("negative", -1.0, "refuse")],
            lambda v, call=call: lambda: call(rtol=v),
        )
        add(ename, "seed", BAD_SEED, lambda v, call=call: lambda: call(seed=v))
        add(
            ename,
            "max_evaluations",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v, call=call: lambda: call(max_evaluations=v),
        )
        add(
            ename,
            "f",
            [
                ("returns a string", lambda x: "x", "refuse"),
                ("returns an array", lambda x: x["W"], "refuse"),
                ("returns None", lambda x: None, "refuse"),
            ],
            lambda v, call=call: lambda: call(f=v),
        )
        add(
            ename,
            "grad",
            [
                ("callable returning None", lambda x: None, "refuse"),
                (
                    "callable returning wrong shape",
                    lambda x: {"W": np.zeros((3, 2)), "b": np.zeros(3)},
                    "refuse",
                ),
            ],
            lambda v, call=call: lambda: call(grad=v),
        )

    def f_layer(x: Any) -> Any:
        return np.tanh(x)

    xl = np.linspace(-1, 1, 6).reshape(2, 3)
    up = np.linspace(0.5, 1.5, 6).reshape(2, 3)

    def vjp(**kw: Any) -> Any:
        base = dict(f=f_layer, x=xl.copy(), upstream=up.copy(), dx=up * (1 - np.tanh(xl) ** 2))
        base.update(kw)
        return gc.check_vjp(**base)

    entry("check_vjp", lambda: vjp())
    bad_arr = bad_arrays(xl)
    add("check_vjp", "x", bad_arr, lambda v: lambda: vjp(x=v))
    add("check_vjp", "upstream", bad_arr, lambda v: lambda: vjp(upstream=v))
    add("check_vjp", "dx", bad_arr, lambda v: lambda: vjp(dx=v))
    add("check_vjp", "f", BAD_CALLABLE, lambda v: lambda: vjp(f=v))
    add("check_vjp", "seed", BAD_SEED, lambda v: lambda: vjp(seed=v))

    def sweep(**kw: Any) -> Any:
        base = dict(f=fx, x=copy.deepcopy(X0), grad=gx(X0), key="W", index=(0, 1))
        base.update(kw)
        return gc.step_sweep(**base)

    entry("step_sweep", lambda: sweep())
    add("step_sweep", "x", bad_trees(X0, standalone=True), lambda v: lambda: sweep(x=v))
    add("step_sweep", "grad", bad_trees(X0), lambda v: lambda: sweep(grad=v))
    add(
        "step_sweep",
        "key",
        [("unknown", "zz", "refuse"), ("int", 3, "refuse"), ("list", ["W"], "refuse")],
        lambda v: lambda: sweep(key=v),
    )
    add(
        "step_sweep",
        "index",
        [
            ("out of range", (5, 5), "refuse"),
            ("string", "x", "refuse"),
            ("float", 1.5, "refuse"),
            ("too many", (0, 0, 0), "refuse"),
            ("negative big", -100, "refuse"),
        ],
        lambda v: lambda: sweep(index=v),
    )
    add(
        "step_sweep",
        "steps",
        [
            ("string", "x", "refuse"),
            ("negative", [-1e-3], "refuse"),
            ("empty", [], "refuse"),
            ("nan", [float("nan")], "refuse"),
        ],
        lambda v: lambda: sweep(steps=v),
    )
    add("step_sweep", "seed", BAD_SEED, lambda v: lambda: sweep(seed=v))

    # -- diagnose ------------------------------------------------------------------------------
    dg = importlib.import_module("optcheck.diagnose")
    tj = importlib.import_module("optcheck._trajectory")
    Traj = tj.Trajectory

    def traj(**kw: Any) -> Any:
        rule = R.get("adam", lr=0.01)
        p0 = make_params()
        grads = [make_grads(), make_grads()]
        params = []
        p, s = p0, rule.init(p0)
        for g in grads:
            p, s = rule.step(p, g, s)
            params.append({k: v * 1.01 for k, v in p.items()})  # a buggy target
        base = dict(rule=rule, params0=p0, grads=grads, params=params)
        base.update(kw)
        return Traj(**base)

    for fname in ("explain", "identify"):
        fn = getattr(dg, fname)

        def call_d(fn: Any = fn, **kw: Any) -> Any:
            base: dict[str, Any] = dict(trajectories=[traj()])
            base.update(kw)
            return fn(**base)

        entry(fname, lambda call_d=call_d: call_d(budget=50))
        bad_traj = [
            ("None", None, "refuse"),
            ("empty list", [], "refuse"),
            ("int", 3, "refuse"),
            ("string", "x", "refuse"),
            ("list of ints", [3], "refuse"),
            ("a single trajectory, not a list", traj(), "refuse"),
            ("params one step fewer than grads", [traj(params=[make_params()])], "either"),
            (
                "grads keys differ from params0",
                [traj(grads=[{"W": np.ones((2, 3))}, {"W": np.ones((2, 3))}])],
                "refuse",
            ),
            ("grads shape differs", [traj(grads=[{"W": np.ones((3, 2)), "b": np.ones(3)}] * 2)], "refuse"),
            ("params keys differ", [traj(params=[{"W": np.ones((2, 3))}] * 2)], "refuse"),
            ("params shape differs", [traj(params=[{"W": np.ones((3, 2)), "b": np.ones(3)}] * 2)], "refuse"),
            ("rule is a string", [traj(rule="adam")], "refuse"),
            ("params0 is None", [traj(params0=None)], "refuse"),
            ("grads not a list", [traj(grads=make_grads())], "refuse"),
            ("params0 object dtype", [traj(params0={"W": _obj(P0["W"]), "b": P0["b"].copy()})], "refuse"),
            ("state0 missing keys", [traj(state0={"step": 0})], "refuse"),
            ("two trajectories of different rules", [traj(), traj(rule=R.get("sgd", lr=0.1))], "either"),
            (
                "params with torch leaves",
                [traj(params=[_torch_tree(make_params())] * 2)] if torch is not None else [traj()],
                "refuse" if torch is not None else "either",
            ),
        ]
        add(
            fname,
            "trajectories",
            bad_traj,
            lambda v, call_d=call_d: lambda: call_d(trajectories=v, budget=50),
        )
        add(
            fname,
            "budget",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v, call_d=call_d: lambda: call_d(budget=v),
        )

    if importlib.util.find_spec("matplotlib") is not None:
        tmpdir = tempfile.mkdtemp(prefix="fuzz_plot_")

        def plot(**kw: Any) -> Any:
            base = dict(
                trajectory=traj(), reference_rule=R.get("adam", lr=0.01), path=os.path.join(tmpdir, "p.png")
            )
            base.update(kw)
            return dg.plot_divergence(**base)

        entry("plot_divergence", lambda: plot())
        add(
            "plot_divergence",
            "trajectory",
            [("None", None, "refuse"), ("list", [traj()], "refuse"), ("int", 3, "refuse")],
            lambda v: lambda: plot(trajectory=v),
        )
        add(
            "plot_divergence",
            "reference_rule",
            [("int", 3, "refuse"), ("string", "bogus", "refuse")],
            lambda v: lambda: plot(reference_rule=v),
        )
        add(
            "plot_divergence",
            "path",
            [
                ("None", None, "refuse"),
                ("int", 3, "refuse"),
                ("missing dir", os.path.join(tmpdir, "no", "such", "p.png"), "refuse"),
            ],
            lambda v: lambda: plot(path=v),
        )
        add("plot_divergence", "names", BAD_NAME_MAP, lambda v: lambda: plot(names=v))

    # -- testing.audit / assert_matches_rule ---------------------------------------------------
    testing = importlib.import_module("optcheck.testing")
    for fname in ("audit", "assert_matches_rule"):
        fn = getattr(testing, fname)

        def call_a(fn: Any = fn, **kw: Any) -> Any:
            base: dict[str, Any] = dict(
                target=sgd_update, rule="sgd", isolate=False, examples=2, steps=2, seed=0, lr=0.1
            )
            base.update(kw)
            return fn(**base)

        entry(fname, lambda call_a=call_a: call_a())
        add(
            fname,
            "target",
            [
                ("None", None, "refuse"),
                ("int", 3, "refuse"),
                ("string without :", "nosuchmodule_xyz", "refuse"),
                ("list", [sgd_update], "refuse"),
            ],
            lambda v, call_a=call_a: lambda: call_a(target=v),
        )
        add(
            fname,
            "rule",
            [("int", 3, "refuse"), ("unknown", "bogus", "refuse"), ("list", ["sgd"], "refuse")],
            lambda v, call_a=call_a: lambda: call_a(rule=v),
        )
        add(
            fname,
            "seed",
            [s for s in BAD_SEED if s[2] == "refuse"],
            lambda v, call_a=call_a: lambda: call_a(seed=v),
        )
        add(
            fname,
            "examples",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v, call_a=call_a: lambda: call_a(examples=v),
        )
        add(
            fname,
            "steps",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v, call_a=call_a: lambda: call_a(steps=v),
        )
        add(fname, "style", BAD_CHOICE[:3], lambda v, call_a=call_a: lambda: call_a(style=v))
        add(
            fname,
            "timeout",
            [*BAD_FLOAT, ("negative", -1.0, "refuse")],
            lambda v, call_a=call_a: lambda: call_a(timeout=v),
        )
        add(fname, "args", BAD_NAME_MAP[:3], lambda v, call_a=call_a: lambda: call_a(args=v))
        add(fname, "hyper", BAD_NAME_MAP[:3], lambda v, call_a=call_a: lambda: call_a(hyper=v))
        add(
            fname,
            "lr",
            [x for x in BAD_FLOAT if x[0] != "bool"],
            lambda v, call_a=call_a: lambda: call_a(lr=v),
        )
        add(
            fname,
            "isolate",
            [("string", "yes", "refuse"), ("int 2", 2, "refuse")],
            lambda v, call_a=call_a: lambda: call_a(isolate=v),
        )

    # the audit's own entry point (what the CLI and testing.audit call)
    audit_pkg = importlib.import_module("optcheck.audit")
    run_audit = getattr(audit_pkg, "run_audit", None)
    if run_audit is not None:

        def call_r(**kw: Any) -> Any:
            base: dict[str, Any] = dict(
                target=sgd_update, rule="sgd", isolate=False, examples=2, steps=2, seed=0, hyper={"lr": 0.1}
            )
            base.update(kw)
            return run_audit(**base)

        entry("audit.run_audit", lambda: call_r())
        add(
            "audit.run_audit",
            "target",
            [("None", None, "refuse"), ("int", 3, "refuse")],
            lambda v: lambda: call_r(target=v),
        )
        add(
            "audit.run_audit",
            "rule",
            [("int", 3, "refuse"), ("unknown", "bogus", "refuse")],
            lambda v: lambda: call_r(rule=v),
        )
        add(
            "audit.run_audit",
            "seed",
            [s for s in BAD_SEED if s[2] == "refuse"],
            lambda v: lambda: call_r(seed=v),
        )
        add(
            "audit.run_audit",
            "examples",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v: lambda: call_r(examples=v),
        )
        add("audit.run_audit", "steps", [*BAD_INT, ("zero", 0, "refuse")], lambda v: lambda: call_r(steps=v))
        add(
            "audit.run_audit",
            "timeout",
            [*BAD_FLOAT, ("negative", -1.0, "refuse")],
            lambda v: lambda: call_r(timeout=v),
        )
        add("audit.run_audit", "args", BAD_NAME_MAP[:3], lambda v: lambda: call_r(args=v))
        add("audit.run_audit", "hyper", BAD_NAME_MAP[:3], lambda v: lambda: call_r(hyper=v))
        add("audit.run_audit", "style", BAD_CHOICE[:3], lambda v: lambda: call_r(style=v))
        add(
            "audit.run_audit",
            "isolate",
            [("string", "yes", "refuse"), ("int 2", 2, "refuse")],
            lambda v: lambda: call_r(isolate=v),
        )
        add(
            "audit.run_audit",
            "max_time",
            [*BAD_FLOAT, ("negative", -1.0, "refuse")],
            lambda v: lambda: call_r(max_time=v),
            needles=("max_time", "max-time"),  # the value checks speak in the CLI flag's words
        )
        add(
            "audit.run_audit",
            "progress",
            [("int", 3, "refuse"), ("string", "x", "refuse")],
            lambda v: lambda: call_r(progress=v),
        )

    # -- strategies ------------------------------------------------------------------------------
    if importlib.util.find_spec("hypothesis") is not None:
        stg = importlib.import_module("optcheck.strategies")

        def draw(strategy: Any) -> Any:
            from hypothesis import HealthCheck, given, settings

            out: list[Any] = []

            @settings(
                max_examples=1, database=None, suppress_health_check=list(HealthCheck), derandomize=True
            )
            @given(strategy)
            def run(x: Any) -> None:
                out.append(x)

            run()
            return out[0]

        entry("strategies.params", lambda: draw(stg.params(layers=[2, 3])))
        add(
            "strategies.params",
            "layers",
            [
                ("int", 3, "refuse"),
                ("string", "23", "refuse"),
                ("negative", [2, -1], "refuse"),
                ("floats", [2.5, 3], "refuse"),
                ("empty", [], "refuse"),
            ],
            lambda v: lambda: draw(stg.params(layers=v)),
        )
        add(
            "strategies.params",
            "dtype",
            [("string", "bogus", "refuse"), ("int dtype", np.int64, "refuse"), ("object", object, "refuse")],
            lambda v: lambda: draw(stg.params(layers=[2, 3], dtype=v)),
        )
        add(
            "strategies.params",
            "style",
            BAD_CHOICE,
            lambda v: lambda: draw(stg.params(layers=[2, 3], style=v)),
        )
        add(
            "strategies.params",
            "max_side",
            [*BAD_INT, ("zero", 0, "refuse")],
            lambda v: lambda: draw(stg.params(layers=[2, 3], max_side=v)),
        )
        add(
            "strategies.params",
            "shapes",
            [
                ("string", "x", "refuse"),
                ("negative", (-1, 2), "refuse"),
                ("int", 3.5, "refuse"),
                ("dict of str", {"W": "x"}, "refuse"),
            ],
            lambda v: lambda: draw(stg.params(shapes=v)),
        )
        add(
            "strategies.params",
            "adversarial",
            [x for x in BAD_BOOL if x[1] is not None],
            lambda v: lambda: draw(stg.params(layers=[2, 3], adversarial=v)),
        )
        entry("strategies.grads_like", lambda: draw(stg.grads_like(make_params())))
        add(
            "strategies.grads_like",
            "params",
            bad_trees(P0, standalone=True),
            lambda v: lambda: draw(stg.grads_like(v)),
        )
        add(
            "strategies.grads_like",
            "key_prefix",
            [("int", 3, "refuse"), ("None", None, "refuse")],
            lambda v: lambda: draw(stg.grads_like(make_params(), key_prefix=v)),
        )
        entry("strategies.states", lambda: draw(stg.states("adam", make_params())))
        add(
            "strategies.states",
            "rule",
            [("int", 3, "refuse"), ("unknown", "bogus", "refuse"), ("None", None, "refuse")],
            lambda v: lambda: draw(stg.states(v, make_params())),
        )
        add(
            "strategies.states",
            "params",
            bad_trees(P0, standalone=True),
            lambda v: lambda: draw(stg.states("adam", v)),
        )
        add(
            "strategies.states",
            "step",
            BAD_INT,
            lambda v: lambda: draw(stg.states("adam", make_params(), step=v)),
        )
        add(
            "strategies.states",
            "max_history",
            BAD_INT,
            lambda v: lambda: draw(stg.states("adam", make_params(), max_history=v)),
        )
        entry("strategies.hyperparameters", lambda: draw(stg.hyperparameters("adam")))
        add(
            "strategies.hyperparameters",
            "rule",
            [("int", 3, "refuse"), ("unknown", "bogus", "refuse"), ("None", None, "refuse")],
            lambda v: lambda: draw(stg.hyperparameters(v)),
        )
        add(
            "strategies.hyperparameters",
            "lr",
            [x for x in BAD_FLOAT if x[0] != "bool"],
            lambda v: lambda: draw(stg.hyperparameters("adam", lr=v)),
        )
        entry("strategies.rules", lambda: draw(stg.rules("adam")))
        add(
            "strategies.rules",
            "rule",
            [
                ("int", 3, "refuse"),
                ("unknown", "bogus", "refuse"),
                ("list with unknown", ["adam", "bogus"], "refuse"),
                ("empty list", [], "refuse"),
            ],
            lambda v: lambda: draw(stg.rules(v)),
        )
        entry("strategies.elements", lambda: draw(stg.elements()))
        add(
            "strategies.elements",
            "dtype",
            [("string", "bogus", "refuse"), ("int dtype", np.int64, "refuse"), ("None", None, "refuse")],
            lambda v: lambda: draw(stg.elements(v)),
        )
        add(
            "strategies.elements",
            "bounds",
            [("int", 3, "refuse"), ("unknown key", {"bogus": 1}, "refuse"), ("string", "x", "refuse")],
            lambda v: lambda: draw(stg.elements(bounds=v)),
        )
        entry("strategies.magnitude_bounds", lambda: stg.magnitude_bounds())
        add(
            "strategies.magnitude_bounds",
            "dtype",
            [("string", "bogus", "refuse"), ("int dtype", np.int64, "refuse"), ("None", None, "refuse")],
            lambda v: lambda: stg.magnitude_bounds(v),
        )

    # -- newer entry points: covered when they exist -------------------------------------------
    _newer_entry_points()

    # -- inputs that are legitimate for a checker: the answer is a finding (checked), not an error
    either("invariants.non_finite", "x", "complex leaf")  # complex NaN is NaN
    either("invariants.non_finite", "before", "complex leaf")
    either("invariants.step_not_incremented", "after", "float 2.5", want="step-not-incremented")
    either("invariants.check_update", "grads", "int leaf")
    either("invariants.check_update", "new_params", "leaf transposed shape", want="shape-changed")
    either("invariants.check_update", "new_params", "complex leaf", want="dtype-changed")
    either("invariants.check_update", "new_params", "int leaf", want="dtype-changed")
    either("invariants.check_update", "state", "entry is None")  # a state entry a rule keeps for no leaf
    either("invariants.check_update", "state", "missing key")  # fewer entries, fewer checks
    either("invariants.check_update", "new_state", "entry is None")
    either("invariants.check_update", "new_state", "missing key")
    # the gradient checker reads lists of numbers and torch tensors as arrays (documented), and
    # compares in float64 whatever the gradient's library: the answer is the same
    for entry_name in ("check_gradient", "assert_gradient", "step_sweep"):
        either(entry_name, "x", "leaf is a list")
        for label in ("leaf is a list", "torch leaf among numpy", "int leaf"):
            either(entry_name, "grad", label)
    for arg in ("x", "upstream", "dx"):
        either("check_vjp", arg, "nested list")
        either("check_vjp", arg, "torch tensor among numpy")
    # None is the documented default of these arguments
    either("strategies.params", "style", "None")
    either("strategies.elements", "dtype", "None")  # np.dtype(None) is float64
    either("strategies.magnitude_bounds", "dtype", "None")
    # integer gradients are read as numbers by the guard (as by the checkers); the snapshot only copies,
    # and Guard.check judges what it copied (a state entry unlike params may be a factored state)
    either("Guard.check", "grads", "int leaf")
    either("guarded(...)(params, grads)", "grads", "int leaf")
    for arg in ("params", "grads"):
        either("Guard.snapshot", arg, "complex leaf")
        either("Guard.snapshot", arg, "int leaf")
    for label in ("entry wrong shape", "entry missing key", "entry is None", "entry is an int"):
        either("Guard.snapshot", "state", label)


def either(entry_name: str, arg: str, label: str, *, want: str | None = None) -> None:
    """Mark a case as legitimately accepted; with ``want``, the result must report that invariant id."""
    found = [c for c in CASES if (c.entry, c.arg, c.label) == (entry_name, arg, label)]
    for case in found:
        case.expect = "either"
        if want is not None:
            case.wrong = lambda r, want=want: (
                None
                if isinstance(r, list) and any(getattr(x, "id", "") == want for x in r)
                else f"missed {want}"
            )


def _newer_entry_points() -> None:
    """watch, check_layer, check_torch: covered once they exist (signatures read at run time)."""
    for public in ("watch", "check_layer", "check_torch"):
        try:
            fn = getattr(optcheck, public)
        except AttributeError:
            fn = None
        if fn is None:
            gc = importlib.import_module("optcheck.gradcheck")
            fn = getattr(gc, public, None)
        if fn is None:
            continue
        hook = globals().get(f"_cases_{public}")
        if hook is not None:
            hook(fn)


def affine_forward(x: Any, w: Any, b: Any) -> Any:
    """A user's layer in the (out, cache) convention (cs231n)."""
    return x @ w + b, (x, w, b)


def affine_backward(dout: Any, cache: Any) -> Any:
    x, w, _ = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def torch_loss(x: Any) -> Any:
    return (x**2).sum() + x.sin().sum()


def _cases_check_layer(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)

    def call(**kw: Any) -> Any:
        base: dict[str, Any] = dict(
            forward=affine_forward, backward=affine_backward, inputs=(x.copy(), w.copy(), b.copy())
        )
        base.update(kw)
        return fn(**base)

    entry("check_layer", lambda: call())
    add("check_layer", "forward", BAD_CALLABLE, lambda v: lambda: call(forward=v))
    add("check_layer", "backward", BAD_CALLABLE, lambda v: lambda: call(backward=v))
    bad_inputs: list[tuple[str, Any, str]] = [
        ("None", None, "refuse"),
        ("string", "x", "refuse"),
        ("np.matrix input", (np.asmatrix(x), w.copy(), b.copy()), "refuse"),
        ("masked input", (_masked(x), w.copy(), b.copy()), "refuse"),
        ("object-dtype input", (_obj(x), w.copy(), b.copy()), "refuse"),
        ("empty tuple", (), "refuse"),
    ]
    if torch is not None:
        bad_inputs.append(("torch input among numpy", (torch.tensor(x), w.copy(), b.copy()), "refuse"))
    add("check_layer", "inputs", bad_inputs, lambda v: lambda: call(inputs=v))
    add(
        "check_layer",
        "upstream",
        [
            ("string", "x", "refuse"),
            ("wrong shape", np.ones((4, 2)), "refuse"),
            ("np.matrix", np.asmatrix(np.ones((2, 4))), "refuse"),
        ],
        lambda v: lambda: call(upstream=v),
    )
    add(
        "check_layer",
        "names",
        [
            ("int", 3, "refuse"),
            ("string where a sequence is expected", "xwb", "refuse"),
            ("list of ints", [1, 2, 3], "refuse"),
            ("too few", ["x"], "refuse"),
        ],
        lambda v: lambda: call(names=v),
    )
    add(
        "check_layer",
        "wrt",
        [("int", 3, "refuse"), ("unknown name", ["zz"], "refuse")],
        lambda v: lambda: call(wrt=v),
    )
    add(
        "check_layer",
        "reset",
        [("int", 3, "refuse"), ("string", "f", "refuse")],
        lambda v: lambda: call(reset=v),
    )
    add("check_layer", "convention", BAD_CHOICE, lambda v: lambda: call(convention=v))
    add("check_layer", "method", BAD_CHOICE, lambda v: lambda: call(method=v))
    add("check_layer", "seed", BAD_SEED, lambda v: lambda: call(seed=v))
    add("check_layer", "rtol", [*BAD_FLOAT, ("negative", -1.0, "refuse")], lambda v: lambda: call(rtol=v))
    add(
        "check_layer",
        "max_evaluations",
        [*BAD_INT, ("zero", 0, "refuse")],
        lambda v: lambda: call(max_evaluations=v),
    )


def _cases_check_torch(fn: Callable[..., Any]) -> None:
    if torch is None:
        return

    def x0() -> Any:
        return torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)

    def call(*inputs: Any, **kw: Any) -> Any:
        return fn(kw.pop("fn", torch_loss), *(inputs or (x0(),)), **kw)

    entry("check_torch", lambda: call())
    add("check_torch", "fn", BAD_CALLABLE, lambda v: lambda: call(fn=v))
    add(
        "check_torch",
        "inputs",
        [
            ("string", "x", "refuse"),
            ("None", None, "refuse"),
            ("object-dtype numpy", _obj(np.ones(5)), "refuse"),
            ("integer tensor", torch.arange(5), "refuse"),
        ],
        lambda v: lambda: call(v),
    )
    add(
        "check_torch",
        "upstream",
        [("string", "x", "refuse"), ("wrong shape", torch.ones(3), "refuse")],
        lambda v: lambda: call(fn=lambda x: x * 2, upstream=v),
    )
    add(
        "check_torch",
        "names",
        [
            ("int", 3, "refuse"),
            ("string where a sequence is expected", "x", "refuse"),
            ("list of ints", [1], "refuse"),
        ],
        lambda v: lambda: call(names=v),
    )
    add(
        "check_torch",
        "raise_exception",
        [("string", "yes", "refuse"), ("int 2", 2, "refuse")],
        lambda v: lambda: call(raise_exception=v),
    )
    add("check_torch", "seed", BAD_SEED, lambda v: lambda: call(seed=v))
    add(
        "check_torch",
        "eps",
        [*BAD_FLOAT, ("negative", -1e-6, "refuse"), ("zero", 0.0, "refuse")],
        lambda v: lambda: call(eps=v),
    )
    add("check_torch", "atol", [*BAD_FLOAT, ("negative", -1.0, "refuse")], lambda v: lambda: call(atol=v))
    add("check_torch", "method", BAD_CHOICE, lambda v: lambda: call(method=v))


def _cases_watch(fn: Callable[..., Any]) -> None:
    if torch is None:
        return

    def call(**kw: Any) -> Any:
        p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        opt = kw.pop("optimizer", None) or torch.optim.Adam([p], lr=0.01)
        handle = fn(opt, **kw)
        remove = getattr(handle, "remove", None)
        if remove is not None:
            remove()
        return handle

    entry("watch", lambda: call())
    add(
        "watch",
        "optimizer",
        [
            ("int", 3, "refuse"),
            ("string", "adam", "refuse"),
            ("list of tensors", [torch.ones(2)], "refuse"),
            ("a class", torch.optim.Adam, "refuse"),
        ],
        lambda v: lambda: call(optimizer=v),
    )
    add(
        "watch",
        "rule",
        [("int", 3, "refuse"), ("unknown", "bogus", "refuse"), ("list", ["adam"], "refuse")],
        lambda v: lambda: call(rule=v),
    )
    add("watch", "mode", BAD_CHOICE, lambda v: lambda: call(mode=v))
    add("watch", "sample", [*BAD_INT, ("zero", 0, "refuse")], lambda v: lambda: call(sample=v))
    add("watch", "every", [*BAD_INT, ("zero", 0, "refuse")], lambda v: lambda: call(every=v))
    add("watch", "shadow", [x for x in BAD_BOOL if x[1] is not None], lambda v: lambda: call(shadow=v))
    add(
        "watch",
        "names",
        [("int", 3, "refuse"), ("string", "x", "refuse"), ("list of ints", [3], "refuse")],
        lambda v: lambda: call(names=v),
    )


def _step_kwargs() -> dict[str, Any]:
    f = fresh()
    return {"params": f["P0"], "grads": f["G0"], "state": f["S0"]}


def _bad_states(*, optional: bool = False, guard: bool = False) -> list[tuple[str, Any, str]]:
    s = copy.deepcopy(S0)
    out: list[tuple[str, Any, str]] = []
    if not optional:
        out.append(("None", None, "refuse"))
    out += [
        ("int", 3, "refuse"),
        ("string", "x", "refuse"),
        ("list", [s["exp_avg"]], "refuse"),
        ("step -1", {**s, "step": -1}, "refuse"),
        ("step 1.5", {**s, "step": 1.5}, "refuse"),
        ("step 'x'", {**s, "step": "x"}, "refuse"),
        ("step None", {**s, "step": None}, "refuse"),
        ("entry wrong shape", {**s, "exp_avg": {"W": np.zeros((3, 2)), "b": np.zeros(3)}}, "refuse"),
        ("entry missing key", {**s, "exp_avg": {"W": np.zeros((2, 3))}}, "refuse"),
        ("entry object dtype", {**s, "exp_avg_sq": {"W": _obj(np.ones((2, 3))), "b": np.ones(3)}}, "refuse"),
        ("entry is None", {**s, "exp_avg": None}, "refuse"),
        ("entry is an int", {**s, "exp_avg": 3}, "refuse"),
    ]
    if not guard:
        out += [("missing key", {"step": 0, "exp_avg": s["exp_avg"]}, "refuse")]
    if torch is not None:
        out.append(("torch entry among numpy", {**s, "exp_avg": _torch_tree(s["exp_avg"])}, "refuse"))
    return out


# ---------------------------------------------------------------------------------------------
# Running and classifying
# ---------------------------------------------------------------------------------------------


class _Timeout(BaseException):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _raised_in_optcheck(exc: BaseException) -> tuple[bool, str]:
    """Whether the innermost frame of the traceback is optcheck's own code (and where it is)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return True, "?"
    fname = last.tb_frame.f_code.co_filename
    where = f"{os.path.basename(fname)}:{last.tb_lineno}"
    return os.path.abspath(fname).startswith(PKG_DIR), where


_WORD = "(?<![A-Za-z0-9_]){}(?![A-Za-z0-9_])"
VERDICTS = ("InvariantError", "GradientError")
USER_FUNCS = frozenset(
    {"sgd_update", "fx", "gx", "f_layer", "<lambda>", "affine_forward", "affine_backward", "torch_loss"}
)


def _from_user_code(exc: BaseException) -> bool:
    """Whether the exception came out of a function of the *user's* (here: this script's), called by optcheck."""
    tb = exc.__traceback__
    seen_optcheck = False
    while tb is not None:
        code = tb.tb_frame.f_code
        if os.path.abspath(code.co_filename).startswith(PKG_DIR):
            seen_optcheck = True
        elif seen_optcheck and code.co_filename == __file__ and code.co_name in USER_FUNCS:
            return True
        tb = tb.tb_next
    return False


def names_argument(message: str, needles: tuple[str, ...]) -> bool:
    return any(re.search(_WORD.format(re.escape(n)), message, re.IGNORECASE) for n in needles)


RAW_TYPES = (
    KeyError,
    IndexError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
    RecursionError,
    NotImplementedError,
    StopIteration,
    AssertionError,
    SystemError,
    UnboundLocalError,
    NameError,
)


def _snapshot_fixtures() -> list[Any]:
    return [copy.deepcopy(x) for x in (P0, G0, S0, P1, S1)]


def _fixtures_intact(saved: list[Any]) -> bool:
    return all(_same_tree_exact(a, b) for a, b in zip(saved, (P0, G0, S0, P1, S1), strict=True))


def _same_tree_exact(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same_tree_exact(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    return bool(a == b)


def classify(case: Case) -> Outcome:
    saved = _snapshot_fixtures()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _time_limit(CALL_TIMEOUT_S):
                result = case.call()
    except _Timeout:
        return Outcome(
            case, "raw", f"no answer within {CALL_TIMEOUT_S:g} s", "Timeout", time.perf_counter() - t0
        )
    except Exception as exc:
        dt = time.perf_counter() - t0
        msg = str(exc)
        if isinstance(exc, KeyError) and exc.args:
            msg = str(exc.args[0])
        mine, where = _raised_in_optcheck(exc)
        etype = type(exc).__name__
        first = msg.strip().splitlines()[0] if msg.strip() else ""
        if _from_user_code(exc):
            return Outcome(
                case,
                "ok",
                f"the user's own function raised {etype} (passed through): {first[:150]}",
                etype,
                dt,
            )
        if etype in VERDICTS:
            return Outcome(case, "ok", f"a verdict, not a crash: {etype}: {first[:150]}", etype, dt)
        if isinstance(exc, RAW_TYPES) and not isinstance(exc, getattr(optcheck, "Error", ())):
            return Outcome(case, "raw", f"{etype} at {where}: {first[:200]}", etype, dt)
        if not isinstance(exc, (TypeError, ValueError)) and not isinstance(
            exc, getattr(optcheck, "Error", ())
        ):
            return Outcome(case, "raw", f"{etype} at {where}: {first[:200]}", etype, dt)
        if not mine:
            return Outcome(case, "raw", f"{etype} from {where}: {first[:200]}", etype, dt)
        if not names_argument(msg, case.needles):
            return Outcome(case, "raw", f"{etype} not naming {case.needles[0]!r}: {first[:200]}", etype, dt)
        return Outcome(case, "named", f"{etype}: {first[:200]}", etype, dt)
    dt = time.perf_counter() - t0
    if not _fixtures_intact(saved):
        _restore(saved)
        return Outcome(case, "wrong", "mutated the caller's arrays", "", dt)
    if case.wrong is not None:
        try:
            why = case.wrong(result)
        except Exception as exc:
            why = f"result unusable: {type(exc).__name__}: {exc}"
        if why:
            return Outcome(case, "wrong", why, "", dt)
    if case.expect == "either":
        return Outcome(case, "ok", "returned (acceptable)", "", dt)
    if _reported_as_finding(result, case.needles):
        return Outcome(case, "ok", "reported as a violation naming the argument", "", dt)
    return Outcome(case, "accepted", "returned without refusing", "", dt)


def _reported_as_finding(result: Any, needles: tuple[str, ...]) -> bool:
    """A checker that returns violations naming the argument has answered (the change is the finding)."""
    if not isinstance(result, list) or not result:
        return False
    texts = [f"{getattr(v, 'where', '')} {getattr(v, 'message', '')}" for v in result if hasattr(v, "id")]
    return any(names_argument(t, needles) for t in texts)


def _restore(saved: list[Any]) -> None:
    for target, value in zip((P0, G0, S0, P1, S1), saved, strict=True):
        target.clear()
        target.update(value)


def run(only: str | None = None, quiet: bool = False) -> tuple[list[Outcome], list[str]]:
    build_catalogue()
    broken: list[str] = []
    for name, call in VALID.items():
        if only and not re.search(only, name):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with _time_limit(CALL_TIMEOUT_S):
                    call()
        except BaseException as exc:
            if name in ("assert_matches_rule",) and isinstance(exc, AssertionError):
                continue
            broken.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
    outcomes = []
    for case in CASES:
        if only and not re.search(only, case.entry):
            continue
        outcomes.append(classify(case))
        if not quiet:
            print(".", end="", flush=True, file=sys.stderr)
    if not quiet:
        print(file=sys.stderr)
    return outcomes, broken


KINDS = ("named", "raw", "wrong", "accepted", "ok")


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    per: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = per.setdefault(o.case.entry, dict.fromkeys(KINDS, 0))
        row[o.kind] += 1
    totals = dict.fromkeys(KINDS, 0)
    for row in per.values():
        for k in KINDS:
            totals[k] += row[k]
    usage = sum(
        1
        for o in outcomes
        if o.kind == "named"
        and o.exc_type
        in (
            "UsageError",
            "TypeError",
            "InvalidArgument",
            "AuditUsageError",
            "InvariantError",
            "GradientError",
        )
    )
    return {
        "entry_points": len(per),
        "cases": len(outcomes),
        "totals": totals,
        "named_with_error_class": usage,
        "per_entry": per,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="regex on entry point names")
    ap.add_argument(
        "--show", default="raw,wrong", help="comma-separated kinds to list in detail ('' for none)"
    )
    ap.add_argument("--json", help="write every outcome to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any call is raw or wrong")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    outcomes, broken = run(a.only, a.quiet)
    summary = summarise(outcomes)
    print(f"optcheck {getattr(optcheck, '__version__', '?')} from {PKG_DIR}")
    if broken:
        print("VALID CALLS THAT FAILED (fixtures or API changed):")
        for b in broken:
            print("  ", b)
    print(f"{'entry point':44s} " + " ".join(f"{k:>8s}" for k in KINDS))
    for name, row in summary["per_entry"].items():
        print(f"{name:44s} " + " ".join(f"{row[k]:8d}" for k in KINDS))
    t = summary["totals"]
    print(f"{'TOTAL':44s} " + " ".join(f"{t[k]:8d}" for k in KINDS))
    print(
        f"{summary['cases']} kinds of bad call over {summary['entry_points']} entry points: "
        f"{t['named']} named, {t['raw']} raw, {t['wrong']} wrong, {t['accepted']} accepted, {t['ok']} acceptable returns "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    show = [s for s in a.show.split(",") if s]
    for kind in show:
        rows = [o for o in outcomes if o.kind == kind]
        if rows:
            print(f"\n--- {kind} ({len(rows)}) ---")
            for o in rows:
                print(f"[{o.case.entry}] {o.case.arg} = {o.case.label}: {o.detail}")
    if a.json:
        data = {
            "summary": summary,
            "broken_valid_calls": broken,
            "outcomes": [
                {
                    "entry": o.case.entry,
                    "arg": o.case.arg,
                    "label": o.case.label,
                    "kind": o.kind,
                    "detail": o.detail,
                    "exception": o.exc_type,
                    "seconds": round(o.seconds, 4),
                }
                for o in outcomes
            ],
        }
        with open(a.json, "w") as fh:
            json.dump(data, fh, indent=1)
    if a.strict and (t["raw"] or t["wrong"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
