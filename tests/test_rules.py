"""Tests of :mod:`optcheck.rules` that need no torch.optim: the registry, argument validation,
bad structures, the properties every rule must have (on numpy, ``array_api_strict`` and torch
tensors), the convention keywords against written-out equations of the libraries that use
them, and Lion against a written-out loop of the paper's equations.

``CASES`` is the one table of (rule, options) that drives every parametrised test here and the
torch oracle in ``test_rules_torch.py``; ``test_cases_cover_every_rule_and_option`` fails when
a rule, an option or a convention value is missing from it, so a new rule is covered by
construction.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optcheck
from optcheck import rules
from optcheck._core.tree import flatten, map_tree
from optcheck.rules import NONNEGATIVE_ROLES, ROLES, Ops, Rule

# ---------------------------------------------------------------------------------------------
# The case table
# ---------------------------------------------------------------------------------------------

CASES: list[tuple[str, dict[str, Any]]] = [
    ("sgd", {}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "maximize": True}),
    ("sgd", {"momentum": 0.9, "momentum_form": "ema"}),
    ("sgd", {"momentum": 0.9, "momentum_form": "velocity", "weight_decay": 0.1}),
    ("sgd", {"momentum": 0.9, "momentum_form": "velocity", "nesterov": True}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.1, "weight_decay_form": "decoupled"}),
    ("adagrad", {}),
    ("adagrad", {"lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.1}),
    ("adagrad", {"lr": 0.1, "eps": 1e-3, "maximize": True}),
    ("adagrad", {"eps_placement": "inside-sqrt", "initial_accumulator_value": 0.1}),
    ("rmsprop", {}),
    ("rmsprop", {"alpha": 0.9, "centered": True}),
    ("rmsprop", {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.1}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "eps": 1e-6, "maximize": True}),
    ("rmsprop", {"eps_placement": "inside-sqrt", "centered": True, "momentum": 0.5}),
    ("rmsprop", {"square_avg_init": "ones", "momentum": 0.5}),
    ("adadelta", {}),
    ("adadelta", {"lr": 0.5, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.1, "maximize": True}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "amsgrad": True}),
    ("adam", {"weight_decay": 0.1, "maximize": True}),
    ("adam", {"decoupled_weight_decay": True, "weight_decay": 0.1, "amsgrad": True}),
    ("adam", {"eps_placement": "inside-sqrt"}),
    ("adam", {"eps_placement": "hat", "amsgrad": True}),
    ("adam", {"amsgrad": True, "amsgrad_on": "corrected"}),
    ("adam", {"amsgrad": True, "amsgrad_on": "corrected", "eps_placement": "inside-sqrt"}),
    ("adam", {"decoupled_weight_decay": True, "weight_decay": 0.1, "decay_when": "after-step"}),
    ("adamw", {}),
    ("adamw", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}),
    ("adamw", {"maximize": True}),
    ("adamw", {"decoupled_weight_decay": False}),
    ("adamw", {"eps_placement": "inside-sqrt", "amsgrad": True, "amsgrad_on": "corrected"}),
    ("adamw", {"eps_placement": "hat"}),
    ("adamw", {"eps_placement": "hat", "decay_when": "after-step"}),
    ("adamax", {}),
    ("adamax", {"lr": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4, "weight_decay": 0.1, "maximize": True}),
    ("adamax", {"eps_placement": "outside-max", "eps": 1e-4}),
    ("nadam", {}),
    (
        "nadam",
        {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "momentum_decay": 0.01},
    ),
    ("nadam", {"decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True}),
    ("nadam", {"momentum_schedule": "keras"}),
    ("nadam", {"momentum_schedule": "constant"}),
    ("nadam", {"momentum_schedule": "mlcommons", "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("radam", {}),
    ("radam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    ("radam", {"decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True}),
    ("radam", {"eps_placement": "outside-sqrt", "rectify_when": "rho>=5"}),
    (
        "radam",
        {
            "unrectified": "none",
            "rectify_when": "rho>=5",
            "decoupled_weight_decay": True,
            "weight_decay": 0.1,
        },
    ),
    ("asgd", {}),
    ("asgd", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 3, "weight_decay": 0.1, "maximize": True}),
    ("rprop", {}),
    (
        "rprop",
        {
            "lr": 0.1,
            "etaminus": 0.3,
            "etaplus": 1.5,
            "step_size_min": 1e-3,
            "step_size_max": 0.2,
            "maximize": True,
        },
    ),
    ("adafactor", {}),
    ("adafactor", {"eps1_placement": "add", "eps1": 1e-30}),
    (
        "adafactor",
        {
            "lr": 0.05,
            "beta2_decay": -0.5,
            "eps1": 1e-6,
            "eps2": 1e-2,
            "d": 2.0,
            "weight_decay": 0.1,
            "maximize": True,
        },
    ),
    ("lion", {}),
    ("lion", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "weight_decay": 0.1, "maximize": True}),
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    """A readable pytest id: ``adam-amsgrad=True-eps_placement=hat``."""
    name, opts = case
    return "-".join([name, *(f"{k}={v}" for k, v in opts.items())])


CASE_IDS = [case_id(c) for c in CASES]

# ---------------------------------------------------------------------------------------------
# Generated inputs: Hypothesis draws, for each step, what kind of gradient comes next
# ---------------------------------------------------------------------------------------------

EPS64 = float(np.finfo(np.float64).eps)
SHAPES: dict[str, tuple[int, ...]] = {"W": (3, 2), "b": (3,), "s": (), "e": (0,), "T": (2, 2, 3)}
KINDS = ("normal", "zeros", "repeat", "flip", "sparse", "mixed-scale")


def step_kinds(steps: int) -> st.SearchStrategy[list[tuple[str, int, float]]]:
    """A strategy for ``steps`` gradient recipes: (kind, seed, log10 of the scale)."""
    one = st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32 - 1), st.floats(-3.0, 2.0))
    return st.lists(one, min_size=steps, max_size=steps)


def trajectory(
    seed: int,
    recipes: list[tuple[str, int, float]],
    dtype: Any = np.float64,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Initial parameters and one gradient tree per recipe (numpy arrays of ``dtype``).

    ``zeros``, ``repeat`` (the previous gradient again) and ``flip`` (its negation) are the
    cases that exercise zero states, Rprop's sign logic and cancellations.
    """
    shapes = SHAPES if shapes is None else shapes
    rng = np.random.default_rng(seed)
    params = {k: (rng.standard_normal(s) * 10 ** rng.uniform(-1, 1)).astype(dtype) for k, s in shapes.items()}
    out: list[dict[str, np.ndarray]] = []
    prev = {k: np.zeros(s, dtype) for k, s in shapes.items()}
    for kind, kseed, log_scale in recipes:
        r = np.random.default_rng(kseed)
        scale = 10.0**log_scale
        if kind == "zeros":
            g = {k: np.zeros(s) for k, s in shapes.items()}
        elif kind == "repeat":
            g = {k: v.copy() for k, v in prev.items()}
        elif kind == "flip":
            g = {k: -v for k, v in prev.items()}
        elif kind == "sparse":
            g = {k: r.standard_normal(s) * scale * (r.random(s) < 0.5) for k, s in shapes.items()}
        elif kind == "mixed-scale":
            g = {k: r.standard_normal(s) * 10 ** r.uniform(-3, 2, size=s) for k, s in shapes.items()}
        else:
            g = {k: r.standard_normal(s) * scale for k, s in shapes.items()}
        g = {k: np.asarray(v, dtype=dtype) for k, v in g.items()}
        out.append(g)
        prev = g
    return params, out


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

BACKENDS = ["numpy", "array_api_strict", "torch"]


def to_backend(tree: Any, backend: str) -> Any:
    """A deep copy of a numpy tree on ``backend`` (``None`` leaves stay ``None``)."""

    def conv(x: Any) -> Any:
        if x is None or not hasattr(x, "shape"):
            return x
        x = np.array(x, copy=True)
        if backend == "numpy":
            return x
        if backend == "array_api_strict":
            xs = pytest.importorskip("array_api_strict")
            return xs.asarray(x, copy=True)
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x)

    return map_tree(conv, tree)


def to_numpy(tree: Any) -> Any:
    """A numpy copy of a tree of any backend (numbers and ``None`` stay as they are)."""

    def conv(x: Any) -> Any:
        if x is None or not hasattr(x, "shape"):
            return x
        if type(x).__module__.startswith("torch"):
            return x.detach().cpu().numpy().copy()
        if type(x).__module__.startswith("array_api_strict"):
            import array_api_strict as xs

            return np.array(xs.asarray(x)._array, copy=True)
        return np.array(x, copy=True)

    return map_tree(conv, tree)


def shares_memory(a: Any, b: Any) -> bool:
    """Whether two leaves (numpy arrays or torch tensors) overlap in memory."""
    if a is None or b is None or not hasattr(a, "shape") or not hasattr(b, "shape"):
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.shares_memory(a, b))
    if type(a).__module__.startswith("torch") and type(b).__module__.startswith("torch"):
        if a.numel() == 0 or b.numel() == 0:
            return a is b
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
    return a is b


def leaves(tree: Any) -> list[Any]:
    return [leaf for _, leaf in flatten(tree)]


def state_leaves(rule: Rule, state: dict[str, Any]) -> list[Any]:
    return [leaf for key in rule.array_keys() for leaf in leaves(state[key]) if leaf is not None]


def assert_trees_equal(a: Any, b: Any, *, rtol: float = 0.0, what: str = "") -> None:
    """Two numpy trees equal leaf by leaf (bitwise with rtol=0; NaN equals NaN)."""
    fa, fb = flatten(a), flatten(b)
    assert [p for p, _ in fa] == [p for p, _ in fb], what
    for (path, x), (_, y) in zip(fa, fb, strict=True):
        if x is None or y is None:
            assert x is None and y is None, f"{what}{path}"
            continue
        if rtol == 0:
            np.testing.assert_array_equal(x, y, err_msg=f"{what}{path}", strict=True)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=f"{what}{path}", equal_nan=True)


# ---------------------------------------------------------------------------------------------
# The registry and the case table
# ---------------------------------------------------------------------------------------------

EXPECTED_NAMES = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "lion",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
]


def test_names_lists_the_13_rules() -> None:
    assert rules.names() == EXPECTED_NAMES
    assert optcheck.rules.names() == EXPECTED_NAMES


def test_get_returns_the_rule_with_its_hyperparameters_and_rebuilds_from_hyper() -> None:
    rule = rules.get("Adam ", lr=0.01, betas=(0.8, 0.99))
    assert isinstance(rule, rules.Adam)
    assert (rule.lr, rule.beta1, rule.beta2) == (0.01, 0.8, 0.99)
    assert rules.get(rule.name, **rule.hyper) == rule
    assert rules.get("rprop", etas=(0.4, 1.3), step_sizes=(1e-5, 10)).hyper["etaplus"] == 1.3
    assert rules.get("adafactor", eps=(1e-30, 1e-3)).eps1 == 1e-30
    assert rule.replace(lr=0.5).lr == 0.5
    assert rule.replace(betas=(0.5, 0.6)).hyper["beta2"] == 0.6
    with pytest.raises(ValueError, match=r"adam: lr=-1\.0 is out of range"):
        rule.replace(lr=-1.0)
    with pytest.raises(
        ValueError, match=re.escape("adam: unknown hyperparameter(s) ['lrr']; adam takes ['lr', ")
    ):
        rule.replace(lrr=0.1)


def test_rules_are_immutable_values() -> None:
    rule = rules.get("sgd", momentum=0.9)
    with pytest.raises(AttributeError):
        rule.lr = 0.5  # type: ignore[misc]
    assert rule == rules.get("sgd", momentum=0.9)
    assert hash(rule) == hash(rules.get("sgd", momentum=0.9))
    assert rule != rules.get("sgd", momentum=0.8)


def test_cases_cover_every_rule_and_option() -> None:
    """Every rule has cases; every bool both ways, every convention value, every number off its default."""
    for name in rules.names():
        cls = rules.rule_class(name)
        opts = [o for n, o in CASES if n == name]
        assert opts, f"{name} has no entry in CASES"
        for spec in cls.hyper_specs():
            seen = {o.get(spec.name, spec.default) for o in opts}
            if spec.kind == "bool":
                assert seen == {False, True}, f"{name}.{spec.name}: CASES has only {seen}"
            elif spec.kind == "choice":
                assert seen == set(spec.choices), f"{name}.{spec.name}: CASES has only {seen}"
            else:
                assert seen - {spec.default}, (
                    f"{name}.{spec.name}: CASES never changes it from {spec.default}"
                )


def test_state_roles_name_every_state_entry_with_a_known_role() -> None:
    for name, opts in CASES:
        rule = rules.get(name, **opts)
        keys = (*type(rule).scalar_states, *rule.array_keys())
        for key in keys:
            role = type(rule).state_roles.get(key)
            assert role in ROLES, f"{name}: state entry {key!r} has role {role!r}"
    assert rules.get("adagrad").state_roles["sum"] in rules.MONOTONE_ROLES
    assert rules.get("adam", amsgrad=True).state_roles["max_exp_avg_sq"] in rules.MONOTONE_ROLES
    assert rules.get("adamax").state_roles["exp_inf"] not in rules.MONOTONE_ROLES


def test_array_keys_follow_the_options() -> None:
    assert rules.get("sgd").array_keys() == ()
    assert rules.get("sgd", momentum=0.9).array_keys() == ("momentum_buffer",)
    assert rules.get("rmsprop").array_keys() == ("square_avg",)
    assert rules.get("rmsprop", centered=True, momentum=0.1).array_keys() == (
        "square_avg",
        "grad_avg",
        "momentum_buffer",
    )
    assert rules.get("adam").array_keys() == ("exp_avg", "exp_avg_sq")
    assert rules.get("adam", amsgrad=True).array_keys() == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def test_init_builds_the_documented_state() -> None:
    params = {"W1": np.ones((2, 3)), "b1": np.ones(2)}
    s = rules.get("adagrad", initial_accumulator_value=0.1).init(params)
    assert s["step"] == 0
    np.testing.assert_array_equal(s["sum"]["W1"], np.full((2, 3), 0.1))
    s = rules.get("rprop", lr=0.3).init(params)
    np.testing.assert_array_equal(s["step_size"]["b1"], np.full(2, 0.3))
    np.testing.assert_array_equal(s["prev"]["b1"], np.zeros(2))
    s = rules.get("asgd", lr=0.2).init(params)
    assert (s["eta"], s["mu"]) == (0.2, 1.0)
    assert rules.get("nadam").init(params)["mu_product"] == 1.0
    s = rules.get("adafactor").init(
        {"W": np.ones((4, 3)), "b": np.ones(3), "T": np.ones((2, 4, 3), np.float32)}
    )
    assert s["row_var"]["W"].shape == (4, 1) and s["col_var"]["W"].shape == (1, 3)
    assert s["row_var"]["T"].shape == (2, 4, 1) and s["col_var"]["T"].shape == (2, 1, 3)
    assert s["row_var"]["T"].dtype == np.float32
    assert s["variance"]["W"] is None and s["row_var"]["b"] is None and s["variance"]["b"].shape == (3,)


# ---------------------------------------------------------------------------------------------
# Bad hyperparameters: one table of bad calls, each with the message it must give
# ---------------------------------------------------------------------------------------------

BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("adam", {"beta1": 1.0}, "adam: beta1=1.0 is out of range; expected a value in [0, 1)"),
    ("adam", {"beta2": -0.1}, "adam: beta2=-0.1 is out of range; expected a value in [0, 1)"),
    ("adam", {"lr": -0.001}, "adam: lr=-0.001 is out of range; expected a value in [0, inf)"),
    ("adam", {"eps": -1e-8}, "adam: eps=-1e-08 is out of range; expected a value in [0, inf)"),
    ("adam", {"lr": math.nan}, "adam: lr=nan is invalid; expected a finite number in [0, inf)"),
    ("adam", {"lr": math.inf}, "adam: lr=inf is invalid; expected a finite number in [0, inf)"),
    ("adam", {"lr": "0.1"}, "adam: lr='0.1' is invalid; expected a number in [0, inf)"),
    ("adam", {"weight_decay": -0.1}, "adam: weight_decay=-0.1 is out of range; expected a value in [0, inf)"),
    ("adam", {"amsgrad": 1}, "adam: amsgrad=1 is invalid; expected True or False"),
    (
        "adam",
        {"eps_placement": "inside"},
        "adam: eps_placement='inside' is invalid; expected one of 'outside-sqrt', 'inside-sqrt', 'hat'",
    ),
    (
        "adam",
        {"amsgrad": True, "amsgrad_on": "corrected", "eps_placement": "hat"},
        "adam: amsgrad_on='corrected' keeps the maximum of the bias-corrected v, so eps_placement='hat'",
    ),
    ("adam", {"betas": (0.9,)}, "adam: betas=(0.9,) is invalid; expected a tuple (beta1, beta2)"),
    ("adam", {"betas": 0.9}, "adam: betas=0.9 is invalid; expected a tuple (beta1, beta2)"),
    ("adam", {"betas": (0.9, 0.99), "beta1": 0.8}, "adam: beta1 given twice, in betas= and as beta1="),
    ("adam", {"betas": (0.9, 1.5)}, "adam: beta2=1.5 is out of range; expected a value in [0, 1)"),
    ("adam", {"learnin_rate": 0.1}, "adam: unknown hyperparameter(s) ['learnin_rate']; adam takes ['lr',"),
    (
        "adamw",
        {"weight_decay": -1.0},
        "adamw: weight_decay=-1.0 is out of range; expected a value in [0, inf)",
    ),
    ("sgd", {"momentum": -0.1}, "sgd: momentum=-0.1 is out of range; expected a value in [0, inf)"),
    ("sgd", {"dampening": 1.5}, "sgd: dampening=1.5 is out of range; expected a value in [0, 1]"),
    (
        "sgd",
        {"nesterov": True},
        "sgd: nesterov=True needs momentum > 0 and dampening=0, got momentum=0.0, dampening=0.0",
    ),
    (
        "sgd",
        {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
        "sgd: nesterov=True needs momentum > 0 and dampening=0, got momentum=0.9, dampening=0.1",
    ),
    (
        "sgd",
        {"momentum": 0.9, "dampening": 0.5, "momentum_form": "velocity"},
        "sgd: dampening=0.5 only applies to momentum_form='torch', got momentum_form='velocity'",
    ),
    (
        "sgd",
        {"momentum": 1.0, "momentum_form": "ema"},
        "sgd: momentum=1.0 is out of range for momentum_form='ema'",
    ),
    (
        "sgd",
        {"momentum": 0.9, "momentum_form": "ema", "nesterov": True},
        "sgd: nesterov=True is not defined for momentum_form='ema'",
    ),
    (
        "sgd",
        {"momentum_form": "keras"},
        "sgd: momentum_form='keras' is invalid; expected one of 'torch', 'ema', 'velocity'",
    ),
    ("sgd", {"betas": (0.9, 0.99)}, "sgd: unknown hyperparameter(s) ['betas']"),
    ("sgd", {"momentun": 0.9}, "Did you mean 'momentum'?"),
    ("adagrad", {"lr_decay": -1}, "adagrad: lr_decay=-1 is out of range; expected a value in [0, inf)"),
    (
        "adagrad",
        {"initial_accumulator_value": -0.1},
        "adagrad: initial_accumulator_value=-0.1 is out of range; expected a value in [0, inf)",
    ),
    ("rmsprop", {"alpha": 1.5}, "rmsprop: alpha=1.5 is out of range; expected a value in [0, 1]"),
    ("rmsprop", {"momentum": -0.5}, "rmsprop: momentum=-0.5 is out of range; expected a value in [0, inf)"),
    ("adadelta", {"rho": 1.1}, "adadelta: rho=1.1 is out of range; expected a value in [0, 1]"),
    ("adamax", {"beta2": 1.0}, "adamax: beta2=1.0 is out of range; expected a value in [0, 1)"),
    (
        "nadam",
        {"momentum_decay": -0.1},
        "nadam: momentum_decay=-0.1 is out of range; expected a value in [0, inf)",
    ),
    (
        "nadam",
        {"momentum_schedule": "keras", "momentum_decay": 0.01},
        "nadam: momentum_decay=0.01 is only used by momentum_schedule='torch'",
    ),
    (
        "radam",
        {"rectify_when": ">5"},
        "radam: rectify_when='>5' is invalid; expected one of 'rho>5', 'rho>=5'",
    ),
    ("asgd", {"t0": -1}, "asgd: t0=-1 is out of range; expected a value in [0, inf)"),
    ("asgd", {"lambd": -1e-4}, "asgd: lambd=-0.0001 is out of range; expected a value in [0, inf)"),
    ("rprop", {"etaminus": 1.0}, "rprop: etaminus=1.0 is out of range; expected a value in (0, 1)"),
    ("rprop", {"etaplus": 1.0}, "rprop: etaplus=1.0 is out of range; expected a value in (1, inf)"),
    ("rprop", {"etas": (0.5,)}, "rprop: etas=(0.5,) is invalid; expected a tuple (etaminus, etaplus)"),
    (
        "rprop",
        {"step_sizes": (1.0, 0.5)},
        "rprop: step_size_min=1.0 is larger than step_size_max=0.5; expected step_size_min <= step_size_max",
    ),
    ("adafactor", {"d": 0.5}, "adafactor: d=0.5 is out of range; expected a value in [1, inf)"),
    (
        "adafactor",
        {"beta2_decay": 0.5},
        "adafactor: beta2_decay=0.5 is out of range; expected a value in (-inf, 0]",
    ),
    (
        "adafactor",
        {"eps1": -1.0},
        "adafactor: eps1=-1.0 is out of range; expected a value in [0, inf) or None",
    ),
    (
        "adafactor",
        {"eps": (None, -1e-3)},
        "adafactor: eps2=-0.001 is out of range; expected a value in [0, inf)",
    ),
    ("lion", {"beta1": 1.0}, "lion: beta1=1.0 is out of range; expected a value in [0, 1)"),
    ("adamm", {}, "unknown rule 'adamm'; expected one of ['adadelta', "),
    ("adamm", {}, "Did you mean 'adam'?"),
]


@pytest.mark.parametrize(
    ("name", "hyper", "message"), BAD_CALLS, ids=[f"{n}-{m[:40]}" for n, _, m in BAD_CALLS]
)
def test_get_rejects_bad_hyperparameters_naming_value_and_range(
    name: str, hyper: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        rules.get(name, **hyper)
    # one clean message: not chained to an internal error
    assert info.value.__cause__ is None and (
        info.value.__context__ is None or info.value.__suppress_context__
    )


def test_rule_class_rejects_a_non_string_name() -> None:
    with pytest.raises(TypeError, match=re.escape("rule name must be a string, got int 3")):
        rules.rule_class(3)  # type: ignore[arg-type]


def test_a_rule_class_validates_when_built_directly() -> None:
    with pytest.raises(ValueError, match=re.escape("rmsprop: eps=-1.0 is out of range")):
        rules.RMSprop(eps=-1.0)
    with pytest.raises(TypeError, match=re.escape("ops must be an optcheck.rules.Ops")):
        rules.Adam(ops="mine")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Bad structures, shapes, dtypes and states: one table, each with the message it must give
# ---------------------------------------------------------------------------------------------


def _course_params() -> dict[str, np.ndarray]:
    return {"W1": np.ones((2, 3)), "b1": np.zeros(2)}


def _bad_step_inputs() -> list[tuple[str, str, Callable[[], tuple[Any, Any, Any]], type[Exception], str]]:
    P = _course_params
    adam = "adam"

    def with_state(
        name: str, change: Callable[[dict[str, Any]], None], params: Callable[[], Any] = P
    ) -> Callable[[], tuple[Any, Any, Any]]:
        def build() -> tuple[Any, Any, Any]:
            p = params()
            s = rules.get(name).init(p)
            change(s)
            return p, map_tree(lambda x: x * 0.1, p), s

        return build

    def grads(g: Any) -> Callable[[], tuple[Any, Any, Any]]:
        return lambda: (P(), g, rules.get(adam).init(P()))

    return [
        (
            "grads missing a key",
            adam,
            grads({"W1": np.ones((2, 3))}),
            ValueError,
            "grads has missing key(s) ['b1'] compared with params (keys ['W1', 'b1']); "
            "grads must have the same keys as params",
        ),
        (
            "grads with an extra key",
            adam,
            grads({"W1": np.ones((2, 3)), "b1": np.ones(2), "b2": np.ones(2)}),
            ValueError,
            "grads has unexpected key(s) ['b2'] compared with params",
        ),
        (
            "grads of the wrong shape",
            adam,
            grads({"W1": np.ones((3, 2)), "b1": np.ones(2)}),
            ValueError,
            "grads['W1'] has shape (3, 2) but params['W1'] has shape (2, 3); grads must have the shape of "
            "the parameter they belong to",
        ),
        (
            "grads broadcastable but not equal",
            adam,
            grads({"W1": np.ones((2, 3)), "b1": np.ones((2, 1))}),
            ValueError,
            "grads['b1'] has shape (2, 1) but params['b1'] has shape (2,)",
        ),
        (
            "grads of an integer dtype",
            adam,
            grads({"W1": np.ones((2, 3), dtype=np.int64), "b1": np.ones(2)}),
            TypeError,
            "grads['W1'] has dtype int64; update rules need floating-point arrays",
        ),
        (
            "grads of another float dtype",
            adam,
            grads({"W1": np.ones((2, 3), dtype=np.float32), "b1": np.ones(2)}),
            TypeError,
            "grads['W1'] has dtype float32 but params['W1'] has dtype float64; cast the gradient to the "
            "parameter's dtype",
        ),
        (
            "grads as a list",
            adam,
            grads({"W1": [[1.0, 2.0, 3.0]] * 2, "b1": np.ones(2)}),
            TypeError,
            "grads['W1'] is a list; expected an array (numpy array or torch tensor)",
        ),
        (
            "grads as a dict where params is an array",
            adam,
            lambda: (np.ones(3), {"W": np.ones(3)}, rules.get(adam).init(np.ones(3))),
            ValueError,
            "grads is a dict but params is an array of shape (3,) and dtype float64; grads must have the "
            "structure of params",
        ),
        (
            "params of an integer dtype",
            "sgd",
            lambda: ({"W1": np.ones(2, dtype=np.int32)}, {"W1": np.ones(2)}, {"step": 0}),
            TypeError,
            "params['W1'] has dtype int32; update rules need floating-point arrays",
        ),
        (
            "state not a dict",
            adam,
            lambda: (P(), P(), [1, 2]),
            TypeError,
            "adam: state must be a dict (from rule.init(params)), got list",
        ),
        (
            "state missing an entry",
            adam,
            with_state(adam, lambda s: s.pop("exp_avg_sq")),
            ValueError,
            "adam: state is missing ['exp_avg_sq']; a adam state has the keys ['exp_avg', 'exp_avg_sq', "
            "'step'] (rule.init(params) builds one)",
        ),
        (
            "state with an unexpected entry",
            adam,
            with_state(adam, lambda s: s.update(max_exp_avg_sq=s["exp_avg_sq"])),
            ValueError,
            "adam: state has unexpected key(s) ['max_exp_avg_sq']",
        ),
        (
            "state entry missing a parameter",
            adam,
            with_state(adam, lambda s: s["exp_avg"].pop("b1")),
            ValueError,
            "state['exp_avg'] has missing key(s) ['b1'] compared with params",
        ),
        (
            "state entry of the wrong shape",
            adam,
            with_state(adam, lambda s: s["exp_avg"].update(W1=np.zeros(3))),
            ValueError,
            "state['exp_avg']['W1'] has shape (3,) but params['W1'] has shape (2, 3); expected state shape (2, 3)",
        ),
        (
            "state entry of the wrong dtype",
            adam,
            with_state(adam, lambda s: s["exp_avg_sq"].update(b1=np.zeros(2, np.float32))),
            TypeError,
            "state['exp_avg_sq']['b1'] has dtype float32 but params['b1'] has dtype float64",
        ),
        (
            "state entry that is not an array",
            adam,
            with_state(adam, lambda s: s["exp_avg_sq"].update(b1=0.0)),
            TypeError,
            "state['exp_avg_sq']['b1'] is a float; expected an array of shape (2,)",
        ),
        (
            "negative step",
            adam,
            with_state(adam, lambda s: s.update(step=-1)),
            ValueError,
            "state['step'] must be a whole number >= 0, got -1",
        ),
        (
            "fractional step",
            adam,
            with_state(adam, lambda s: s.update(step=1.5)),
            ValueError,
            "state['step'] must be a whole number >= 0, got 1.5",
        ),
        (
            "step that is not a number",
            adam,
            with_state(adam, lambda s: s.update(step="3")),
            TypeError,
            "state['step'] must be a whole number >= 0, got '3'",
        ),
        (
            "scalar state that is not a number",
            "nadam",
            with_state("nadam", lambda s: s.update(mu_product=None)),
            TypeError,
            "state['mu_product'] must be a number, got a NoneType: None",
        ),
        (
            "adafactor state where none applies",
            "adafactor",
            with_state("adafactor", lambda s: s["variance"].update(W1=np.zeros((2, 3)))),
            ValueError,
            "state['variance']['W1'] is an array of shape (2, 3) and dtype float64 but adafactor keeps no "
            "'variance' for params['W1'] (shape (2, 3)); expected None there",
        ),
        (
            "adafactor row_var of the wrong shape",
            "adafactor",
            with_state("adafactor", lambda s: s["row_var"].update(W1=np.zeros((2, 3)))),
            ValueError,
            "state['row_var']['W1'] has shape (2, 3) but params['W1'] has shape (2, 3); expected state shape (2, 1)",
        ),
    ]


BAD_STEPS = _bad_step_inputs()


@pytest.mark.parametrize(
    ("what", "name", "build", "exc", "message"), BAD_STEPS, ids=[b[0] for b in BAD_STEPS]
)
def test_step_rejects_bad_structures_naming_key_shapes_and_dtypes(
    what: str, name: str, build: Callable[[], tuple[Any, Any, Any]], exc: type[Exception], message: str
) -> None:
    params, grads, state = build()
    rule = rules.get(name)
    with pytest.raises(exc, match=re.escape(message)) as info:
        rule.step(params, grads, state)
    # one clean message: raised from None, not chained to an internal error
    assert info.value.__cause__ is None and (
        info.value.__context__ is None or info.value.__suppress_context__
    )


def test_init_rejects_non_float_and_non_array_params() -> None:
    with pytest.raises(
        TypeError, match=re.escape("params['b1'] has dtype int64; update rules need floating")
    ):
        rules.get("sgd").init({"W1": np.ones(2), "b1": np.zeros(2, dtype=np.int64)})
    with pytest.raises(TypeError, match=re.escape("params['W1'] is a float; expected an array")):
        rules.get("sgd").init({"W1": 1.0})
    # the message names the argument (issue 15), not an anonymous "tree"
    with pytest.raises(TypeError, match=re.escape("params has the key 1, a int: expected string keys")):
        rules.get("sgd").init({1: np.ones(2)})


def test_mixing_array_libraries_is_an_error_naming_both() -> None:
    torch = pytest.importorskip("torch")
    rule = rules.get("adam")
    p = {"W": np.ones(3)}
    with pytest.raises(
        TypeError, match=re.escape("grads['W'] is a torch.Tensor but params['W'] is a numpy.ndarray")
    ):
        rule.step(p, {"W": torch.ones(3, dtype=torch.float64)}, rule.init(p))


# ---------------------------------------------------------------------------------------------
# Properties along generated trajectories, on every backend
# ---------------------------------------------------------------------------------------------


def _run(
    rule: Rule, params: Any, grads_seq: list[Any], state: Any = None
) -> Iterator[tuple[Any, Any, Any, Any, Any]]:
    """Yield (params, grads, state, new_params, new_state) for each step."""
    state = rule.init(params) if state is None else state
    for grads in grads_seq:
        new_params, new_state = rule.step(params, grads, state)
        yield params, grads, state, new_params, new_state
        params, state = new_params, new_state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
@settings(max_examples=2)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(5))
def test_every_step_keeps_structure_is_pure_and_keeps_its_invariants(
    backend: str, name: str, opts: dict[str, Any], seed: int, recipes: list[tuple[str, int, float]]
) -> None:
    """Structure, shape and dtype kept; inputs untouched; no aliasing; step += 1; roles hold."""
    rule = rules.get(name, **opts)
    roles = type(rule).state_roles
    p0, gs = trajectory(seed, recipes, dtype=np.float32 if seed % 2 else np.float64)
    params = to_backend(p0, backend)
    state = rule.init(params)
    for g in gs:
        grads = to_backend(g, backend)
        before = to_numpy({"params": params, "grads": grads, **state})
        new_params, new_state = rule.step(params, grads, state)
        # the inputs are untouched
        assert_trees_equal(
            to_numpy({"params": params, "grads": grads, **state}), before, what="input changed: "
        )
        # structure, shapes, dtypes and the array type are kept
        assert [p for p, _ in flatten(new_params)] == [p for p, _ in flatten(params)]
        for (path, a), (_, b) in zip(flatten(new_params), flatten(params), strict=True):
            assert type(a) is type(b) and tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype, path
        assert set(new_state) == set(state)
        for key in rule.array_keys():
            for (path, a), (_, b) in zip(flatten(new_state[key]), flatten(state[key]), strict=True):
                if b is None:
                    assert a is None, (key, path)
                else:
                    assert type(a) is type(b) and tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype, (
                        key,
                        path,
                    )
        assert new_state["step"] == state["step"] + 1 and isinstance(new_state["step"], int)
        # no output aliases an input or another output
        ins = leaves(params) + leaves(grads) + state_leaves(rule, state)
        outs = leaves(new_params) + state_leaves(rule, new_state)
        for i, out in enumerate(outs):
            assert not any(shares_memory(out, x) for x in ins), f"output {i} aliases an input"
            assert not any(shares_memory(out, x) for x in outs[i + 1 :]), f"output {i} aliases another output"
        # roles: non-negative entries stay non-negative; monotone ones never decrease
        for key in rule.array_keys():
            role = roles[key]
            for (path, a), (_, b) in zip(
                flatten(to_numpy(new_state[key])), flatten(before[key]), strict=True
            ):
                if a is None:
                    continue
                if role in NONNEGATIVE_ROLES:
                    assert np.all(a >= 0), f"{key}{path} became negative ({role})"
                if role in rules.MONOTONE_ROLES:
                    assert np.all(a >= b), f"{key}{path} decreased ({role})"
        params, state = new_params, new_state


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
@settings(max_examples=2)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(5))
def test_every_backend_computes_what_numpy_computes(
    backend: str, name: str, opts: dict[str, Any], seed: int, recipes: list[tuple[str, int, float]]
) -> None:
    """One implementation: array_api_strict (numpy underneath) bitwise, torch to a few ulps."""
    rule = rules.get(name, **opts)
    p0, gs = trajectory(seed, recipes)
    ref = list(_run(rule, p0, gs))
    other = list(_run(rule, to_backend(p0, backend), [to_backend(g, backend) for g in gs]))
    # torch's elementwise kernels are correctly rounded like numpy's, but reductions (Adafactor's
    # means and norms) may sum in another order: a few ulps per step (100 eps over 5 steps).
    rtol = 0.0 if backend == "array_api_strict" else 100 * float(np.finfo(np.float64).eps)
    for (_, _, _, p_ref, s_ref), (_, _, _, p_other, s_other) in zip(ref, other, strict=True):
        assert_trees_equal(to_numpy(p_other), p_ref, rtol=rtol, what="params ")
        for key in s_ref:
            if key in rule.array_keys():
                assert_trees_equal(to_numpy(s_other[key]), s_ref[key], rtol=rtol, what=f"{key} ")
            else:
                assert s_other[key] == s_ref[key]


MAXIMIZE_CASES = [c for c in CASES if c[1].get("maximize")]


@pytest.mark.parametrize(("name", "opts"), MAXIMIZE_CASES, ids=[case_id(c) for c in MAXIMIZE_CASES])
@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(6))
def test_maximize_equals_minimising_the_negated_gradient(
    name: str, opts: dict[str, Any], seed: int, recipes: list[tuple[str, int, float]]
) -> None:
    rule = rules.get(name, **opts)
    minimise = rule.replace(maximize=False)
    p0, gs = trajectory(seed, recipes)
    a = list(_run(rule, p0, gs))
    b = list(_run(minimise, p0, [map_tree(np.negative, g) for g in gs]))
    for (*_, pa, sa), (*_, pb, sb) in zip(a, b, strict=True):
        assert_trees_equal(pa, pb)
        for key in sa:
            assert_trees_equal(sa[key], sb[key], what=key)


@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
@settings(max_examples=3)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(6))
def test_a_dict_of_arrays_equals_stepping_each_array_alone(
    name: str, opts: dict[str, Any], seed: int, recipes: list[tuple[str, int, float]]
) -> None:
    rule = rules.get(name, **opts)
    p0, gs = trajectory(seed, recipes)
    together = list(_run(rule, p0, gs))
    for key in p0:
        alone = list(_run(rule, p0[key], [g[key] for g in gs]))
        for (*_, pt, st_), (*_, pa, sa) in zip(together, alone, strict=True):
            assert_trees_equal(pt[key], pa, what=key)
            for skey in rule.array_keys():
                assert_trees_equal(st_[skey][key], sa[skey], what=f"{skey}[{key}]")
            for skey in type(rule).scalar_states:
                assert st_[skey] == sa[skey]


def _nested(tree: dict[str, Any]) -> dict[str, Any]:
    return {"layer1": {"W": tree["W"], "b": tree["b"]}, "other": {"s": tree["s"], "deep": {"T": tree["T"]}}}


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_nested_dicts_keep_their_structure(name: str) -> None:
    rule = rules.get(name)
    p0, gs = trajectory(0, [("normal", 1, 0.0), ("normal", 2, 0.0)])
    flat = list(_run(rule, p0, gs))
    nested = list(_run(rule, _nested(p0), [_nested(g) for g in gs]))
    for (*_, pf, sf), (*_, pn, sn) in zip(flat, nested, strict=True):
        assert_trees_equal(pn, _nested(pf))
        for key in rule.array_keys():
            assert_trees_equal(sn[key], _nested(sf[key]))


ZERO_GRAD_CASES = [
    c for c in CASES if c[0] in ("sgd", "adam", "rmsprop", "adagrad") and c[1].get("weight_decay", 0) == 0
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "opts"), ZERO_GRAD_CASES, ids=[case_id(c) for c in ZERO_GRAD_CASES])
@settings(max_examples=3)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 5))
def test_zero_gradient_without_decay_leaves_parameters_unchanged(
    backend: str, name: str, opts: dict[str, Any], seed: int, steps: int
) -> None:
    rule = rules.get(name, **opts)
    p0, gs = trajectory(seed, [("zeros", 0, 0.0)] * steps)
    for _, _, _, new_params, _ in _run(rule, to_backend(p0, backend), [to_backend(g, backend) for g in gs]):
        assert_trees_equal(to_numpy(new_params), p0)


@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_inputs_never_crash_a_rule(name: str, opts: dict[str, Any], bad: float) -> None:
    import warnings

    rule = rules.get(name, **opts)
    p0, gs = trajectory(3, [("normal", 1, 0.0), ("normal", 2, 0.0), ("normal", 3, 0.0)])
    gs[0]["W"][0, 0] = bad
    gs[1]["b"][1] = bad
    p0["T"][0, 0, 0] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a RuntimeWarning reaches the caller
        for *_, new_params, new_state in _run(rule, p0, gs):
            assert new_params["W"].shape == (3, 2) and new_state["step"] >= 1


@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
def test_a_late_step_never_crashes_a_rule(name: str, opts: dict[str, Any]) -> None:
    """A hand-built state at step 10**9: powers like beta**t and t**decay stay finite floats."""
    rule = rules.get(name, **opts)
    p0, gs = trajectory(4, [("normal", 1, 0.0)])
    state = {**rule.init(p0), "step": 10**9}
    new_params, new_state = rule.step(p0, gs[0], state)
    assert new_state["step"] == 10**9 + 1
    assert all(np.all(np.isfinite(x)) for x in leaves(new_params))


def test_extreme_valid_hyperparameters_never_crash() -> None:
    """Python float powers overflow with an OverflowError; the rules turn that into the limit value."""
    rule = rules.get("asgd", lr=1.0, lambd=1.0, alpha=7500.0, t0=0.01)
    p, g = np.ones(2), np.ones(2)
    _, s = rule.step(p, g, rule.init(p))
    assert s["eta"] == 0.0
    adam = rules.get("adam", beta1=0.9, beta2=0.001)
    _, s = adam.step(p, g, {**adam.init(p), "step": 1000})
    assert s["step"] == 1001


# ---------------------------------------------------------------------------------------------
# Specific behaviour
# ---------------------------------------------------------------------------------------------


def test_a_hand_built_state_starts_adam_at_step_5() -> None:
    """A state written by hand is a plain dict: step 5 means bias corrections of step 6."""
    p = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([0.5])}
    g = {"W1": np.array([[0.1, 0.2]]), "b1": np.array([-0.3])}
    m = {"W1": np.array([[0.01, 0.02]]), "b1": np.array([0.0])}
    v = {"W1": np.array([[1e-3, 2e-3]]), "b1": np.array([1e-4])}
    state = {"step": 5, "exp_avg": m, "exp_avg_sq": v}
    new_p, new_s = rules.get("adam", lr=0.1).step(p, g, state)
    assert new_s["step"] == 6
    for k in p:
        m6 = 0.9 * m[k] + 0.1 * g[k]
        v6 = 0.999 * v[k] + 0.001 * g[k] ** 2
        want = p[k] - 0.1 * (m6 / (1 - 0.9**6)) / (np.sqrt(v6 / (1 - 0.999**6)) + 1e-8)
        np.testing.assert_allclose(new_p[k], want, rtol=1e-14)
        np.testing.assert_allclose(new_s["exp_avg"][k], m6, rtol=1e-14)
    # the state is a value: the caller's dicts are untouched
    assert state["step"] == 5 and m["W1"][0, 0] == 0.01


def test_a_zero_dimensional_array_stays_an_array() -> None:
    rule = rules.get("adam")
    p, s = rule.step(np.array(1.0), np.array(0.5), rule.init(np.array(1.0)))
    assert isinstance(p, np.ndarray) and p.shape == ()
    assert isinstance(s["exp_avg"], np.ndarray) and s["exp_avg"].shape == ()


def test_torch_tensors_in_torch_tensors_out() -> None:
    torch = pytest.importorskip("torch")
    rule = rules.get("adamw", amsgrad=True)
    p = {"W": torch.ones(2, 3), "b": torch.zeros(3)}
    g = {"W": torch.full((2, 3), 0.5), "b": torch.ones(3)}
    new_p, new_s = rule.step(p, g, rule.init(p))
    assert isinstance(new_p["W"], torch.Tensor) and new_p["W"].dtype == torch.float32
    assert isinstance(new_s["max_exp_avg_sq"]["b"], torch.Tensor)
    assert torch.equal(p["W"], torch.ones(2, 3))


def test_sgd_first_momentum_step_uses_the_gradient_without_dampening() -> None:
    rule = rules.get("sgd", lr=1.0, momentum=0.9, dampening=0.5)
    _, s = rule.step(np.zeros(2), np.array([1.0, -2.0]), rule.init(np.zeros(2)))
    np.testing.assert_array_equal(s["momentum_buffer"], [1.0, -2.0])
    _, s = rule.step(np.zeros(2), np.array([1.0, -2.0]), s)
    np.testing.assert_allclose(s["momentum_buffer"], [0.9 + 0.5, -1.8 - 1.0])


def test_rprop_skips_a_coordinate_once_when_its_gradient_changes_sign() -> None:
    rule = rules.get("rprop", lr=0.1)
    p = np.zeros(3)
    s = rule.init(p)
    p, s = rule.step(p, np.array([1.0, 1.0, 0.0]), s)
    np.testing.assert_allclose(p, [-0.1, -0.1, 0.0])
    p, s = rule.step(p, np.array([1.0, -1.0, 2.0]), s)
    np.testing.assert_allclose(s["step_size"], [0.12, 0.05, 0.1])
    np.testing.assert_allclose(p, [-0.22, -0.1, -0.1])  # the flipped coordinate did not move
    np.testing.assert_array_equal(s["prev"], [1.0, 0.0, 2.0])


def test_lion_moves_every_coordinate_by_exactly_lr() -> None:
    rule = rules.get("lion", lr=0.01)
    p0, gs = trajectory(5, [("mixed-scale", i, 0.0) for i in range(5)], shapes={"W": (4, 5)})
    for params, _, _, new_params, _ in _run(rule, p0, gs):
        np.testing.assert_allclose(np.abs(new_params["W"] - params["W"]), 0.01, rtol=1e-12)


def test_adafactor_leaves_empty_parameters_unchanged() -> None:
    rule = rules.get("adafactor")
    p = {"E": np.zeros((0, 3)), "e": np.zeros(0)}
    new_p, s = rule.step(p, p, rule.init(p))
    assert new_p["E"].shape == (0, 3) and s["col_var"]["E"].shape == (1, 3)


# ---------------------------------------------------------------------------------------------
# Conventions and Lion against written-out equations (plain numpy loops, float64)
# ---------------------------------------------------------------------------------------------


def ref_adam(p, gs, lr, b1, b2, eps, eps_placement="outside-sqrt", amsgrad=False, amsgrad_on="raw"):  # type: ignore[no-untyped-def]
    """Adam as the libraries write it: torch/optax (outside), course notebooks (inside), Keras (hat)."""
    m = v = vmax = np.zeros_like(p)
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        if amsgrad and amsgrad_on == "corrected":  # optax.amsgrad: max of the corrected v
            vmax = np.maximum(vmax, v / bc2)
            v_raw, v_hat = None, vmax
        elif amsgrad:
            vmax = np.maximum(vmax, v)
            v_raw, v_hat = vmax, vmax / bc2
        else:
            v_raw, v_hat = v, v / bc2
        if eps_placement == "outside-sqrt":
            p = p - lr * (m / bc1) / (np.sqrt(v_hat) + eps)
        elif eps_placement == "inside-sqrt":
            p = p - lr * (m / bc1) / np.sqrt(v_hat + eps)
        else:  # Keras: alpha = lr*sqrt(1 - beta_2_power)/(1 - beta_1_power); p -= m*alpha/(sqrt(v) + eps)
            p = p - (m * (lr * np.sqrt(bc2) / bc1)) / (np.sqrt(v_raw) + eps)
    return p


def ref_keras_rmsprop(p, gs, lr, rho, eps, momentum=0.0, centered=False):  # type: ignore[no-untyped-def]
    """keras.optimizers.RMSprop.update_step, eps inside the root and lr inside the momentum buffer."""
    vel = avg = mom = np.zeros_like(p)
    for g in gs:
        vel = rho * vel + (1 - rho) * g * g
        if centered:
            avg = rho * avg + (1 - rho) * g
            den = vel - avg * avg + eps
        else:
            den = vel + eps
        inc = lr * g / np.sqrt(den)
        if momentum > 0:
            mom = momentum * mom + inc
            p = p - mom
        else:
            p = p - inc
    return p


def ref_keras_adagrad(p, gs, lr, eps, initial):  # type: ignore[no-untyped-def]
    acc = np.full_like(p, initial)
    for g in gs:
        acc = acc + g * g
        p = p - lr * g / np.sqrt(acc + eps)
    return p


def ref_course_momentum(p, gs, lr, beta):  # type: ignore[no-untyped-def]
    """The course form: v = beta*v + (1 - beta)*dW from v = 0; W = W - lr*v."""
    v = np.zeros_like(p)
    for g in gs:
        v = beta * v + (1 - beta) * g
        p = p - lr * v
    return p


def ref_keras_sgd(p, gs, lr, momentum, nesterov=False, wd=0.0):  # type: ignore[no-untyped-def]
    """keras.optimizers.SGD: m = momentum*m - lr*g; p += momentum*m - lr*g (nesterov) or p += m."""
    m = np.zeros_like(p)
    for g in gs:
        g = g + wd * p
        m = momentum * m - lr * g
        p = p + (momentum * m - lr * g if nesterov else m)
    return p


def ref_nadam(p, gs, lr, b1, b2, eps, schedule):  # type: ignore[no-untyped-def]
    """Keras 3 Nadam (u_t = b1(1 - 0.5*0.96^t)) and optax.nadam (constant b1), as they write it."""
    m = v = np.zeros_like(p)
    u_product = 1.0
    for t, g in enumerate(gs, 1):
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        v_hat = v / (1 - b2**t)
        if schedule == "keras":
            u_t = b1 * (1.0 - 0.5 * 0.96**t)
            u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
            u_product = u_product * u_t
            m_hat = u_t1 * m / (1 - u_product * u_t1) + (1 - u_t) * g / (1 - u_product)
        else:  # optax scale_by_adam(nesterov=True)
            m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def ref_optax_radam(p, gs, lr, b1, b2, eps, threshold=5.0):  # type: ignore[no-untyped-def]
    m = v = np.zeros_like(p)
    ro_inf = 2.0 / (1 - b2) - 1
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        ro = ro_inf - 2 * t * b2**t / (1 - b2**t)
        if ro >= threshold:
            r = np.sqrt((ro - 4) * (ro - 2) * ro_inf / ((ro_inf - 4) * (ro_inf - 2) * ro))
            p = p - lr * r * m_hat / (np.sqrt(v_hat) + eps)
        else:
            p = p - lr * m_hat
    return p


def ref_lion(p, gs, lr, b1, b2, wd):  # type: ignore[no-untyped-def]
    """Chen et al. (2023), Algorithm 2, written out: the update interpolates, the momentum decays."""
    m = np.zeros_like(p)
    for g in gs:
        c = b1 * m + (1 - b1) * g
        p = p - lr * (np.sign(c) + wd * p)
        m = b2 * m + (1 - b2) * g
    return p


CONVENTION_REFERENCES: list[tuple[str, dict[str, Any], Callable[..., Any]]] = [
    ("adam", {"eps_placement": "outside-sqrt"}, lambda p, gs: ref_adam(p, gs, 0.01, 0.9, 0.999, 1e-3)),
    (
        "adam",
        {"eps_placement": "inside-sqrt"},
        lambda p, gs: ref_adam(p, gs, 0.01, 0.9, 0.999, 1e-3, "inside-sqrt"),
    ),
    ("adam", {"eps_placement": "hat"}, lambda p, gs: ref_adam(p, gs, 0.01, 0.9, 0.999, 1e-3, "hat")),
    (
        "adam",
        {"eps_placement": "hat", "amsgrad": True},
        lambda p, gs: ref_adam(p, gs, 0.01, 0.9, 0.999, 1e-3, "hat", amsgrad=True),
    ),
    (
        "adam",
        {"amsgrad": True, "amsgrad_on": "corrected"},
        lambda p, gs: ref_adam(p, gs, 0.01, 0.9, 0.999, 1e-3, amsgrad=True, amsgrad_on="corrected"),
    ),
    (
        "adam",
        {"amsgrad": True, "amsgrad_on": "corrected", "eps_placement": "inside-sqrt"},
        lambda p, gs: ref_adam(
            p, gs, 0.01, 0.9, 0.999, 1e-3, "inside-sqrt", amsgrad=True, amsgrad_on="corrected"
        ),
    ),
    (
        "rmsprop",
        {"eps_placement": "inside-sqrt", "alpha": 0.9},
        lambda p, gs: ref_keras_rmsprop(p, gs, 0.01, 0.9, 1e-3),
    ),
    (
        "rmsprop",
        {"eps_placement": "inside-sqrt", "alpha": 0.9, "centered": True, "momentum": 0.5},
        lambda p, gs: ref_keras_rmsprop(p, gs, 0.01, 0.9, 1e-3, momentum=0.5, centered=True),
    ),
    (
        "adagrad",
        {"eps_placement": "inside-sqrt", "initial_accumulator_value": 0.1},
        lambda p, gs: ref_keras_adagrad(p, gs, 0.01, 1e-3, 0.1),
    ),
    ("sgd", {"momentum": 0.9, "momentum_form": "ema"}, lambda p, gs: ref_course_momentum(p, gs, 0.01, 0.9)),
    (
        "sgd",
        {"momentum": 0.9, "momentum_form": "velocity", "weight_decay": 0.1},
        lambda p, gs: ref_keras_sgd(p, gs, 0.01, 0.9, wd=0.1),
    ),
    (
        "sgd",
        {"momentum": 0.9, "momentum_form": "velocity", "nesterov": True},
        lambda p, gs: ref_keras_sgd(p, gs, 0.01, 0.9, nesterov=True),
    ),
    (
        "nadam",
        {"momentum_schedule": "keras"},
        lambda p, gs: ref_nadam(p, gs, 0.01, 0.9, 0.999, 1e-3, "keras"),
    ),
    (
        "nadam",
        {"momentum_schedule": "constant"},
        lambda p, gs: ref_nadam(p, gs, 0.01, 0.9, 0.999, 1e-3, "constant"),
    ),
    (
        "radam",
        {"eps_placement": "outside-sqrt", "rectify_when": "rho>=5"},
        lambda p, gs: ref_optax_radam(p, gs, 0.01, 0.9, 0.999, 1e-3),
    ),
    ("lion", {}, lambda p, gs: ref_lion(p, gs, 0.01, 0.9, 0.99, 0.0)),
    (
        "lion",
        {"beta1": 0.8, "beta2": 0.9, "weight_decay": 0.1, "lr": 0.003},
        lambda p, gs: ref_lion(p, gs, 0.003, 0.8, 0.9, 0.1),
    ),
]


@pytest.mark.parametrize(
    ("name", "opts", "reference"),
    CONVENTION_REFERENCES,
    ids=[case_id((n, o)) for n, o, _ in CONVENTION_REFERENCES],
)
@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(30))
def test_conventions_and_lion_match_the_written_out_equations(
    name: str,
    opts: dict[str, Any],
    reference: Callable[..., Any],
    seed: int,
    recipes: list[tuple[str, int, float]],
) -> None:
    """30 steps in float64; the loops round differently from the rules: ~2 ulps per step, 100 eps in all."""
    defaults = {"lr": 0.01, "eps": 1e-3} if name != "lion" else {"lr": 0.01}
    if name in ("lion", "sgd"):
        defaults.pop("eps", None)
    rule = rules.get(name, **{**defaults, **opts})
    p0, gs = trajectory(seed, recipes, shapes={"W": (3, 4), "s": ()})
    *_, (_, _, _, p_end, _) = _run(rule, p0, gs)
    for key in p0:
        want = reference(p0[key], [g[key] for g in gs])
        scale = max(np.max(np.abs(want)), np.max(np.abs(p0[key])))
        np.testing.assert_allclose(p_end[key], want, rtol=0, atol=100 * EPS64 * scale, err_msg=key)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(20))
def test_velocity_momentum_equals_torch_momentum_for_a_constant_lr(
    seed: int, recipes: list[tuple[str, int, float]]
) -> None:
    """velocity = -lr·buf step by step, and the parameters agree (Keras vs torch)."""
    for nesterov in (False, True):
        torch_form = rules.get("sgd", lr=0.05, momentum=0.9, nesterov=nesterov)
        velocity = torch_form.replace(momentum_form="velocity")
        p0, gs = trajectory(seed, recipes, shapes={"W": (5,)})
        for (*_, pa, sa), (*_, pb, sb) in zip(_run(torch_form, p0, gs), _run(velocity, p0, gs), strict=True):
            scale = np.max(np.abs(pa["W"]))
            np.testing.assert_allclose(pb["W"], pa["W"], rtol=0, atol=100 * EPS64 * scale)
            v, buf = sb["momentum_buffer"]["W"], sa["momentum_buffer"]["W"]
            np.testing.assert_allclose(v, -0.05 * buf, rtol=0, atol=100 * EPS64 * np.max(np.abs(v)))


def test_keras_nadam_schedule_is_torch_with_momentum_decay_one() -> None:
    p0, gs = trajectory(1, [("normal", i, 0.0) for i in range(20)])
    *_, (_, _, _, pa, _) = _run(rules.get("nadam", momentum_schedule="keras"), p0, gs)
    *_, (_, _, _, pb, _) = _run(rules.get("nadam", momentum_decay=1.0), p0, gs)
    assert_trees_equal(pa, pb)


# ---------------------------------------------------------------------------------------------
# The Ops hooks
# ---------------------------------------------------------------------------------------------


def _op_calls() -> list[tuple[str, Callable[[Ops, Any, np.ndarray, np.ndarray], Any]]]:
    return [
        ("neg", lambda o, xp, a, b: o.neg(a)),
        ("l2", lambda o, xp, a, b: o.l2(a, b, 0.1)),
        ("decay", lambda o, xp, a, b: o.decay(a, 0.1, 0.1)),
        ("square", lambda o, xp, a, b: o.square(a)),
        ("second_moment_input", lambda o, xp, a, b: o.second_moment_input(a, b, 0.1)),
        ("ema", lambda o, xp, a, b: o.ema(a, b, 0.9)),
        ("ema0", lambda o, xp, a, b: o.ema(a, b, 0.0)),
        ("accumulate", lambda o, xp, a, b: o.accumulate(a, b)),
        ("sqrt", lambda o, xp, a, b: o.sqrt(xp, np.abs(a))),
        ("div_eps", lambda o, xp, a, b: o.div_eps(a, b, 1e-3)),
        ("descend", lambda o, xp, a, b: o.descend(a, b, 0.1)),
        ("momentum", lambda o, xp, a, b: o.momentum(a, b, 0.9, 0.1)),
        ("momentum_init", lambda o, xp, a, b: o.momentum_init(a, 0.1)),
        ("nesterov", lambda o, xp, a, b: o.nesterov(a, b, 0.9)),
        ("maximum", lambda o, xp, a, b: o.maximum(xp, a, b)),
        ("variance", lambda o, xp, a, b: o.variance(a, b)),
        ("inf_norm", lambda o, xp, a, b: o.inf_norm(xp, a, b, 0.9, 1e-8)),
        ("sign", lambda o, xp, a, b: o.sign(xp, a)),
    ]


@pytest.mark.parametrize(("op", "call"), _op_calls(), ids=[n for n, _ in _op_calls()])
def test_ops_return_new_arrays_and_never_mutate_their_arguments(
    op: str, call: Callable[[Ops, Any, np.ndarray, np.ndarray], Any]
) -> None:
    import array_api_compat.numpy as xp

    a = np.array([1.0, -2.0, 3.0])
    b = np.array([0.5, 0.25, -4.0])
    a0, b0 = a.copy(), b.copy()
    out = call(rules.DEFAULT_OPS, xp, a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    assert not np.shares_memory(out, a) and not np.shares_memory(out, b)


def test_ops_compute_their_documented_sub_expressions() -> None:
    import array_api_compat.numpy as xp

    o = rules.DEFAULT_OPS
    a, b = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    np.testing.assert_allclose(o.ema(a, b, 0.9), 0.9 * a + 0.1 * b)
    np.testing.assert_allclose(o.div_eps(a, b, 0.5), a / (b + 0.5))
    np.testing.assert_allclose(o.descend(a, b, 0.1), a - 0.1 * b)
    np.testing.assert_allclose(o.momentum(a, b, 0.9, 0.25), 0.9 * a + 0.75 * b)
    np.testing.assert_allclose(o.nesterov(a, b, 0.9), a + 0.9 * b)
    np.testing.assert_allclose(o.variance(b, a), b - a * a)
    np.testing.assert_allclose(o.inf_norm(xp, b, a, 0.5, 0.1), np.maximum(0.5 * b, np.abs(a) + 0.1))
    np.testing.assert_allclose(o.l2(a, b, 0.1), a + 0.1 * b)
    np.testing.assert_allclose(o.decay(a, 0.1, 0.5), a * 0.95)
    assert o.bias_correction(0.9, 2) == pytest.approx(0.19) and o.next_step(4) == 5
    assert o.l2(a, b, 0.0) is a and o.decay(a, 0.1, 0.0) is a  # documented: no decay, no copy


class _Recorder(Ops):
    """Ops that records which hooks a rule calls."""

    def __init__(self) -> None:
        self.called: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if callable(attr) and not name.startswith("_") and name in Ops.__dict__:
            object.__getattribute__(self, "called").add(name)
        return attr


# The hooks each rule's sub-expressions go through, for the default options of CASES plus the
# options that switch a branch on: the diagnosis mutants replace exactly these.
HOOKS: dict[str, set[str]] = {
    "sgd": {"neg", "l2", "momentum_init", "momentum", "nesterov", "descend", "next_step"},
    "adagrad": {
        "l2",
        "second_moment_input",
        "square",
        "accumulate",
        "sqrt",
        "div_eps",
        "descend",
        "next_step",
    },
    "rmsprop": {
        "l2",
        "second_moment_input",
        "square",
        "ema",
        "variance",
        "sqrt",
        "div_eps",
        "momentum",
        "descend",
        "next_step",
    },
    "adadelta": {"l2", "second_moment_input", "square", "ema", "sqrt", "div_eps", "descend", "next_step"},
    "adam": {
        "l2",
        "ema",
        "second_moment_input",
        "square",
        "maximum",
        "sqrt",
        "div_eps",
        "bias_correction",
        "descend",
        "next_step",
    },
    "adamw": {
        "decay",
        "ema",
        "second_moment_input",
        "square",
        "sqrt",
        "div_eps",
        "bias_correction",
        "descend",
        "next_step",
    },
    "adamax": {"l2", "ema", "inf_norm", "div_eps", "bias_correction", "descend", "next_step"},
    "nadam": {
        "l2",
        "ema",
        "second_moment_input",
        "square",
        "sqrt",
        "div_eps",
        "bias_correction",
        "descend",
        "next_step",
    },
    "radam": {
        "l2",
        "ema",
        "second_moment_input",
        "square",
        "sqrt",
        "div_eps",
        "bias_correction",
        "descend",
        "next_step",
    },
    "asgd": {"l2", "decay", "descend", "ema", "next_step"},
    "rprop": {"sign", "descend", "next_step"},
    "adafactor": {"decay", "second_moment_input", "square", "ema", "div_eps", "sqrt", "descend", "next_step"},
    "lion": {"ema", "sign", "decay", "descend", "next_step"},
}
HOOK_OPTIONS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.9, "nesterov": True, "maximize": True},
    "rmsprop": {"centered": True, "momentum": 0.5},
    "adam": {"amsgrad": True, "weight_decay": 0.1},
    "asgd": {"t0": 0},
}


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_every_rule_computes_its_sub_expressions_through_ops(name: str) -> None:
    rec = _Recorder()
    rule = rules.get(name, **HOOK_OPTIONS.get(name, {})).with_ops(rec)
    p0, gs = trajectory(0, [("normal", i, 0.0) for i in range(8)])  # radam rectifies from step 6
    for _ in _run(rule, p0, gs):
        pass
    want = HOOKS[name]
    assert want <= rec.called, f"{name} never called {sorted(want - rec.called)}"


def test_a_mutant_changes_the_result_and_the_reference_is_untouched() -> None:
    class EpsOutside(Ops):
        def div_eps(self, num: Any, den: Any, eps: float) -> Any:
            return num / den + eps

    rule = rules.get("rmsprop", eps=0.1)
    mutant = rule.with_ops(EpsOutside())
    p, g = np.ones(3), np.full(3, 0.5)
    assert mutant == rule  # the same hyperparameters: ops is not a hyperparameter
    a, _ = rule.step(p, g, rule.init(p))
    b, _ = mutant.step(p, g, rule.init(p))
    assert not np.allclose(a, b)
    assert rule.ops is rules.DEFAULT_OPS


# ---------------------------------------------------------------------------------------------
# The docs page carries the conventions table generated from the metadata
# ---------------------------------------------------------------------------------------------


def test_docs_rules_page_carries_the_catalog_and_table_generated_from_the_rules() -> None:
    from optcheck.rules._catalog import conventions_table, render, rule_catalog

    page = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    assert render(page) == page, "docs/rules.md is stale: run `python -m optcheck.rules._catalog --write`"
    assert conventions_table() in page and rule_catalog() in page
    for name in rules.names():
        assert f"### `{name}`" in page
    for spec in rules.Adam.hyper_specs():
        if spec.convention:
            assert all(v in page for v in spec.library.values())


def test_hyper_specs_and_copy_of_a_rule() -> None:
    rule = rules.get("adam")
    spec = {s.name: s for s in type(rule).hyper_specs()}
    assert (
        spec["eps_placement"].convention
        and "torch.optim.Adam" in spec["eps_placement"].library["outside-sqrt"]
    )
    assert spec["beta1"].range_text() == "[0, 1)"
    assert copy.deepcopy(rule) == rule
