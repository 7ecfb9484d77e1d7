"""Tests of optcheck.strategies: what each strategy draws, argument validation, the user example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import optcheck
from optcheck import strategies as ost
from optcheck._core.tree import flatten

ROOT = Path(__file__).resolve().parent.parent
RULES = optcheck.rules.names()
FAST = settings(max_examples=30)


def _leaves(tree: Any) -> list[Any]:
    return [leaf for _, leaf in flatten(tree)]


def _find(strategy: st.SearchStrategy[Any], condition: Any) -> Any:
    """An example satisfying ``condition`` (proves the strategy can draw it), deterministic."""
    return find(strategy, condition, settings=settings(max_examples=2000, database=None, derandomize=True))


# ---------------------------------------------------------------------------------------------
# Argument validation: one table of bad calls, each raising InvalidArgument at call time
# ---------------------------------------------------------------------------------------------

P = {"W1": np.zeros((2, 3)), "b1": np.zeros((2, 1))}

BAD_CALLS: list[tuple[str, Any, str]] = [
    (
        "params dtype int",
        lambda: ost.params(dtype=np.int32),
        "dtype=<class 'numpy.int32'> is not a floating dtype",
    ),
    ("params dtype complex", lambda: ost.params(dtype=complex), "is not a floating dtype"),
    ("params dtype junk", lambda: ost.params(dtype="nope"), "dtype='nope' is not a numpy dtype"),
    ("params negative side", lambda: ost.params((3, -1)), "shapes=(3, -1) is not a shape"),
    ("params float side", lambda: ost.params({"W": (2.5, 1)}), "shapes['W']=(2.5, 1) is not a shape"),
    ("params layers short", lambda: ost.params(layers=[4]), "layers=[4] must be a list of at least two"),
    ("params layers zero", lambda: ost.params(layers=[4, 0]), "layers=[4, 0] must be a list"),
    ("params shapes and layers", lambda: ost.params((2,), layers=[1, 2]), "not both"),
    ("params bad style", lambda: ost.params(style="flat"), "style='flat' is invalid"),
    ("params style with shapes", lambda: ost.params((2,), style="array"), "style='array' only applies"),
    ("params array layers", lambda: ost.params(layers=[2, 2], style="array"), "style='array' cannot be used"),
    ("params max_side", lambda: ost.params(max_side=0), "max_side=0 must be in [1, 64]"),
    ("params adversarial", lambda: ost.params(adversarial=1), "adversarial=1 must be True or False"),
    ("params finite_only", lambda: ost.params(finite_only=None), "finite_only=None must be True or False"),
    (
        "elements empty range",
        lambda: ost.params(elements={"min_value": 1.0, "max_value": 0.0}),
        "elements={'min_value': 1.0, 'max_value': 0.0} is invalid for dtype float64",
    ),
    (
        "elements out of float32",
        lambda: ost.params(dtype=np.float32, elements={"min_value": 1e40}),
        "elements={'min_value': 1e+40} is invalid for dtype float32",
    ),
    ("elements junk", lambda: ost.params(elements=[1.0]), "elements=[1.0] must be None"),
    (
        "elements strategy and adversarial",
        lambda: ost.params(elements=st.just(1.0), adversarial=True),
        "pass one or the other",
    ),
    ("xp without asarray", lambda: ost.params(xp=object()), "has no asarray()"),
    ("grads_like strategy", lambda: ost.grads_like(ost.params()), "params must be concrete arrays"),
    ("grads_like list", lambda: ost.grads_like([1.0]), "params is a list; expected a floating-point array"),
    (
        "grads_like int leaf",
        lambda: ost.grads_like({"W1": np.zeros(2, dtype=np.int64)}),
        "params['W1'] has dtype int64; expected a floating-point array",
    ),
    ("grads_like prefix", lambda: ost.grads_like(P, key_prefix=1), "key_prefix=1 must be a string"),
    ("states unknown rule", lambda: ost.states("adamm", P), "rule='adamm': unknown rule 'adamm'"),
    ("states rule type", lambda: ost.states(3, P), "rule=3 must be a rule name"),
    ("states negative step", lambda: ost.states("adam", P, step=-1), "step=-1 must be >= 0"),
    ("states bool step", lambda: ost.states("adam", P, step=True), "step=True must be a whole number"),
    ("states history", lambda: ost.states("adam", P, max_history=-2), "max_history=-2 must be in [0, 100]"),
    ("states bad leaf", lambda: ost.states("adam", {"W": "x"}), "params['W'] is a str"),
    ("hyper unknown rule", lambda: ost.hyperparameters("adamx"), "rule='adamx': unknown rule"),
    (
        "hyper unknown name",
        lambda: ost.hyperparameters("adam", momentum=0.9),
        "adam has no hyperparameter(s) ['momentum']",
    ),
    (
        "hyper bad value",
        lambda: ost.hyperparameters("adam", beta1=1.0),
        "adam: beta1=1.0 is out of range; expected a value in [0, 1)",
    ),
    ("hyper bad betas", lambda: ost.hyperparameters("adam", betas=0.9), "betas=0.9 must be a pair"),
    (
        "hyper conventions",
        lambda: ost.hyperparameters("adam", conventions="yes"),
        "conventions='yes' must be True",
    ),
    ("rules empty", lambda: ost.rules([]), "rule=[] names no rule"),
    ("rules unknown", lambda: ost.rules(["adam", "bogus"]), "rule='bogus': unknown rule"),
    ("elements dtype", lambda: ost.elements(np.int8), "is not a floating dtype"),
    ("magnitude dtype", lambda: ost.magnitude_bounds(np.int8), "is not a floating dtype"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_invalid_argument_eagerly(call: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        call()  # no example is drawn: the check happens when the strategy is built
    assert message in str(info.value)


def test_sgd_nesterov_without_momentum_when_fixed_is_rejected_with_the_rules_message() -> None:
    if "sgd" not in RULES:
        pytest.skip("sgd is not registered yet")
    with pytest.raises(InvalidArgument, match=r"cannot be used together for sgd: .*nesterov"):
        ost.hyperparameters("sgd", nesterov=True, momentum=0.0)


def test_a_drawn_shape_that_is_not_a_shape_is_reported() -> None:
    with pytest.raises(InvalidArgument, match=r"shapes \(drawn\)='x' is not a shape"):
        ost.params(st.just("x")).example()


# ---------------------------------------------------------------------------------------------
# params
# ---------------------------------------------------------------------------------------------


@FAST
@given(ost.params(layers=[4, 3, 2]))
def test_layers_give_the_course_layout_in_order(p: dict[str, np.ndarray]) -> None:
    assert list(p) == ["W1", "b1", "W2", "b2"]
    assert {k: v.shape for k, v in p.items()} == {"W1": (3, 4), "b1": (3, 1), "W2": (2, 3), "b2": (2, 1)}
    assert all(v.dtype == np.float64 for v in p.values())


@FAST
@given(ost.params(layers=[4, 3], style="nested", dtype=np.float32))
def test_nested_layout(p: dict[str, Any]) -> None:
    assert p["fc1"]["weight"].shape == (3, 4) and p["fc1"]["bias"].shape == (3,)
    assert p["fc1"]["weight"].dtype == np.float32


@FAST
@given(ost.params())
def test_drawn_course_layouts_are_small_and_consistent(p: dict[str, np.ndarray]) -> None:
    n = len(p) // 2
    assert list(p) == [k for i in range(1, n + 1) for k in (f"W{i}", f"b{i}")]
    for i in range(1, n + 1):
        w, b = p[f"W{i}"], p[f"b{i}"]
        assert b.shape == (w.shape[0], 1)
        assert max(w.shape) <= 4
        if i > 1:
            assert w.shape[1] == p[f"W{i - 1}"].shape[0]
        assert np.all(np.isfinite(w)) and np.all(np.abs(w) <= 10)


@FAST
@given(ost.params(style="array", max_side=3))
def test_array_style_draws_one_small_array(a: np.ndarray) -> None:
    assert isinstance(a, np.ndarray) and a.ndim <= 2 and all(1 <= d <= 3 for d in a.shape)


@FAST
@given(ost.params({"W": (2, 3), "inner": {"b": ()}}))
def test_fixed_shape_tree(p: dict[str, Any]) -> None:
    assert p["W"].shape == (2, 3) and p["inner"]["b"].shape == ()


@FAST
@given(ost.params(st.sampled_from([(2,), {"a": (1, 2)}])))
def test_shapes_may_be_drawn(p: Any) -> None:
    assert (isinstance(p, np.ndarray) and p.shape == (2,)) or p["a"].shape == (1, 2)


def test_params_can_be_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    p = find(ost.params(layers=[2, 1], xp=torch), lambda p: True)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in p.values())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_adversarial_elements_stay_within_the_magnitude_bounds(dtype: Any) -> None:
    lo, hi = ost.magnitude_bounds(dtype)

    @settings(max_examples=60)
    @given(ost.params(style="array", dtype=dtype, adversarial=True))
    def check(a: np.ndarray) -> None:
        assert a.dtype == dtype
        assert np.all(np.isfinite(a))
        assert np.all(np.abs(a) <= hi * (1 + 1e-3))

    check()
    assert ost.magnitude_bounds(np.float64) == (1e-30, 1e30)
    assert lo <= 1e-4 and hi >= 2.0


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("an exact zero", lambda a: bool(np.any(a == 0))),
        ("a negative zero", lambda a: bool(np.any((a == 0) & np.signbit(a)))),
        ("a subnormal", lambda a: bool(np.any((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))),
        ("a huge value", lambda a: bool(np.any(np.abs(a) >= 1e29))),
        ("a tiny normal value", lambda a: bool(np.any((np.abs(a) >= 1e-30) & (np.abs(a) < 1e-25)))),
        ("mixed signs", lambda a: bool(np.any(a > 0) and np.any(a < 0))),
        ("all negative", lambda a: a.size > 1 and bool(np.all(a < 0))),
    ],
)
def test_adversarial_values_are_drawn(what: str, condition: Any) -> None:
    a = _find(ost.params((3, 2), adversarial=True), condition)
    assert condition(a), what


def test_ordinary_values_have_no_subnormals_or_huge_values() -> None:
    @settings(max_examples=100)
    @given(ost.params((4, 4)))
    def check(a: np.ndarray) -> None:
        assert np.all(np.abs(a) <= 10)
        assert not np.any((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny))

    check()


@pytest.mark.parametrize("adversarial", [False, True])
def test_finite_only_false_draws_nan_and_inf(adversarial: bool) -> None:
    s = ost.params((3,), adversarial=adversarial, finite_only=False)
    assert np.isnan(_find(s, lambda a: bool(np.any(np.isnan(a))))).any()
    assert np.isinf(_find(s, lambda a: bool(np.any(np.isinf(a))))).any()


def test_element_bounds_are_respected_and_adversarial_values_kept_inside() -> None:
    @settings(max_examples=60)
    @given(ost.params((3, 3), elements={"min_value": -1.0, "max_value": 0.0}, adversarial=True))
    def check(a: np.ndarray) -> None:
        assert np.all((a >= -1.0) & (a <= 0.0))

    check()
    a = _find(
        ost.params((3,), elements={"min_value": -1.0, "max_value": 0.0}, adversarial=True),
        lambda a: bool(np.any((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny))),
    )
    assert np.all(a <= 0)


def test_elements_may_be_a_strategy() -> None:
    a = _find(ost.params((2,), elements=st.just(0.25)), lambda a: True)
    assert np.all(a == 0.25)


# ---------------------------------------------------------------------------------------------
# grads_like
# ---------------------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_grads_like_matches_structure_shapes_and_dtypes(data: Any) -> None:
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    p = data.draw(ost.params(style=data.draw(st.sampled_from(["dict", "nested", "array"])), dtype=dtype))
    g = data.draw(ost.grads_like(p, adversarial=True))
    pairs = list(zip(flatten(p), flatten(g), strict=True))
    assert len(pairs) == len(flatten(p)) == len(flatten(g))
    for (pp, pv), (gp, gv) in pairs:
        assert pp == gp and pv.shape == gv.shape and pv.dtype == gv.dtype
        assert gv is not pv


@FAST
@given(ost.grads_like(P, key_prefix="d"))
def test_course_prefix(g: dict[str, np.ndarray]) -> None:
    assert list(g) == ["dW1", "db1"]


def test_grads_like_follows_the_array_library_of_params() -> None:
    torch = pytest.importorskip("torch")
    p = {"w": torch.zeros(2, 3, dtype=torch.float32)}
    g = find(ost.grads_like(p), lambda g: True)
    assert isinstance(g["w"], torch.Tensor) and g["w"].dtype == torch.float32 and g["w"].shape == (2, 3)
    import array_api_strict as xps

    q = {"w": xps.zeros((2,), dtype=xps.float64)}
    h = find(ost.grads_like(q), lambda g: True)
    assert type(h["w"]) is type(q["w"]) and h["w"].dtype == xps.float64


# ---------------------------------------------------------------------------------------------
# states
# ---------------------------------------------------------------------------------------------


def _roles(rule: Any) -> dict[str, str]:
    return dict(type(rule).state_roles)


@pytest.mark.parametrize("name", RULES)
@settings(max_examples=25)
@given(data=st.data())
def test_states_have_the_shape_of_init_and_keep_their_role_constraints(name: str, data: Any) -> None:
    rule = data.draw(ost.rules(name))
    p = data.draw(ost.params(dtype=data.draw(st.sampled_from([np.float32, np.float64]))))
    state = data.draw(ost.states(rule, p, adversarial=data.draw(st.booleans())))
    init = rule.init(p)
    assert set(state) == set(init)
    assert isinstance(state["step"], int) and state["step"] >= 0
    roles = _roles(rule)
    for key in rule.array_keys():
        got, want = flatten(state[key]), flatten(init[key])
        assert [path for path, _ in got] == [path for path, _ in want]
        for (_, s), (_, i) in zip(got, want, strict=True):
            if i is None:
                assert s is None
                continue
            assert s.shape == i.shape and s.dtype == i.dtype
            assert np.all(np.isfinite(s))
            if roles.get(key) in ("second-moment", "max-second-moment", "accumulator"):
                assert np.all(s >= 0), f"{key} < 0"
    if "max_exp_avg_sq" in rule.array_keys() and getattr(rule, "amsgrad_on", "raw") == "raw":
        for (_, m), (_, v) in zip(
            flatten(state["max_exp_avg_sq"]), flatten(state["exp_avg_sq"]), strict=True
        ):
            assert np.all(m >= v)


@pytest.mark.parametrize("name", RULES)
def test_step_zero_is_the_initial_state(name: str) -> None:
    rule = optcheck.rules.get(name)
    state = find(ost.states(rule, P, step=0), lambda s: True)
    init = rule.init(P)
    assert state["step"] == 0
    for key in init:
        for (_, a), (_, b) in zip(flatten(state[key]), flatten(init[key]), strict=True):
            assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("name", RULES)
def test_a_fixed_step_is_the_final_step_count(name: str) -> None:
    rule = optcheck.rules.get(name)

    @settings(max_examples=10)
    @given(ost.states(rule, P, step=7))
    def check(state: dict[str, Any]) -> None:
        assert state["step"] == 7

    check()


@pytest.mark.parametrize("name", RULES)
def test_schedule_states_match_a_real_run(name: str) -> None:
    """The scalar states ``states()`` jumps to equal those of really running the rule."""
    rule = optcheck.rules.get(name)
    scalars = [k for k in type(rule).scalar_states if k != "step"]
    state = rule.init(P)
    zero = {k: np.zeros_like(v) for k, v in P.items()}
    for _ in range(12):
        _, state = rule.step(P, zero, state)

    @settings(max_examples=5)
    @given(ost.states(rule, P, step=12, max_history=0))
    def check(drawn: dict[str, Any]) -> None:
        assert drawn["step"] == 12
        for k in scalars:
            assert drawn[k] == pytest.approx(state[k], rel=1e-15), k

    check()


def test_states_include_zero_tiny_and_huge_second_moments() -> None:
    s = ost.states("adam", P)
    v = lambda st_: np.concatenate([a.ravel() for a in st_["exp_avg_sq"].values()])  # noqa: E731
    zero = _find(s, lambda st_: st_["step"] == 0)
    assert np.all(v(zero) == 0)
    tiny = _find(s, lambda st_: st_["step"] > 0 and 0 < v(st_).max() < 1e-50)
    huge = _find(s, lambda st_: v(st_).max() > 1e50)
    assert 0 < v(tiny).max() < 1e-50 and v(huge).max() > 1e50
    late = _find(s, lambda st_: st_["step"] >= 10**6)
    assert late["step"] == 10**6


def test_amsgrad_state_keeps_the_maximum_above_the_second_moment() -> None:
    rule = optcheck.rules.get("adam", amsgrad=True)

    @settings(max_examples=40)
    @given(ost.states(rule, P, adversarial=True))
    def check(state: dict[str, Any]) -> None:
        for k in P:
            assert np.all(state["max_exp_avg_sq"][k] >= state["exp_avg_sq"][k])

    check()
    strict = _find(
        ost.states(rule, P),
        lambda s: any(np.any(s["max_exp_avg_sq"][k] > s["exp_avg_sq"][k]) for k in P),
    )
    assert strict["step"] >= 2


def test_states_are_fresh_arrays_in_every_example() -> None:
    """A test that writes into its state (as course code does) cannot corrupt the next example."""

    @settings(max_examples=20)
    @given(ost.states("adam", P, step=0))
    def check(state: dict[str, Any]) -> None:
        for v in state["exp_avg_sq"].values():
            assert np.all(v == 0)
            v += 1.0

    check()


def test_states_never_mutate_params() -> None:
    p = {"W1": np.full((2, 2), -1.5), "b1": np.zeros((2, 1))}
    copy = {k: v.copy() for k, v in p.items()}

    @settings(max_examples=20)
    @given(ost.states("adamw", p, adversarial=True))
    def check(state: dict[str, Any]) -> None:
        for k in p:
            np.testing.assert_array_equal(p[k], copy[k])

    check()


# ---------------------------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
@settings(max_examples=60)
@given(data=st.data())
def test_drawn_hyperparameters_are_accepted_by_get(name: str, data: Any) -> None:
    h = data.draw(ost.hyperparameters(name, conventions=data.draw(st.booleans())))
    rule = optcheck.rules.get(name, **h)
    assert rule.hyper == h


def test_conventions_stay_fixed_unless_asked_and_follow_a_rule_value() -> None:
    @settings(max_examples=40)
    @given(ost.hyperparameters("adam"))
    def default(h: dict[str, Any]) -> None:
        assert h["eps_placement"] == "outside-sqrt" and h["amsgrad_on"] == "raw"

    default()

    @settings(max_examples=40)
    @given(ost.hyperparameters(optcheck.rules.get("adam", eps_placement="hat")))
    def anchored(h: dict[str, Any]) -> None:
        assert h["eps_placement"] == "hat"

    anchored()
    assert _find(ost.hyperparameters("adam", conventions=True), lambda h: h["eps_placement"] == "inside-sqrt")


def test_fixed_values_are_pinned() -> None:
    @settings(max_examples=40)
    @given(ost.hyperparameters("adam", lr=0.01, betas=(0.5, 0.75)))
    def check(h: dict[str, Any]) -> None:
        assert (h["lr"], h["beta1"], h["beta2"]) == (0.01, 0.5, 0.75)

    check()


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("beta1 = 0", lambda h: h["beta1"] == 0.0),
        ("beta2 close to 1", lambda h: 1 - 1e-6 <= h["beta2"] < 1),
        ("beta1 close to 0", lambda h: 0 < h["beta1"] <= 1e-3),
        ("eps tiny", lambda h: h["eps"] <= 1e-15),
        ("eps large", lambda h: h["eps"] >= 1e-5),
        ("lr large", lambda h: h["lr"] >= 10),
        ("weight decay absent", lambda h: h["weight_decay"] == 0),
        ("weight decay present", lambda h: h["weight_decay"] > 0),
        ("amsgrad", lambda h: h["amsgrad"]),
    ],
)
def test_hyperparameters_reach_the_edges(what: str, condition: Any) -> None:
    assert condition(_find(ost.hyperparameters("adam"), condition)), what


def test_eps_zero_is_only_drawn_when_fixed() -> None:
    @settings(max_examples=100)
    @given(ost.hyperparameters("adam"))
    def check(h: dict[str, Any]) -> None:
        assert h["eps"] > 0 and h["lr"] > 0

    check()

    @settings(max_examples=5)
    @given(ost.hyperparameters("adam", eps=0.0))
    def fixed(h: dict[str, Any]) -> None:
        assert h["eps"] == 0.0

    fixed()


def test_sgd_nesterov_is_repaired_not_rejected() -> None:
    if "sgd" not in RULES:
        pytest.skip("sgd is not registered yet")
    h = _find(ost.hyperparameters("sgd"), lambda h: h["nesterov"])
    assert h["momentum"] > 0 and h["dampening"] == 0
    optcheck.rules.get("sgd", **h)


@FAST
@given(ost.rules())
def test_rules_draws_configured_rules_of_every_kind(rule: Any) -> None:
    assert isinstance(rule, optcheck.rules.Rule) and rule.name in RULES


# ---------------------------------------------------------------------------------------------
# Health checks and import weight
# ---------------------------------------------------------------------------------------------


@settings(max_examples=50, suppress_health_check=[], deadline=None, database=None)
@given(st.data())
def test_health_checks_pass_at_default_settings(data: Any) -> None:
    rule = data.draw(ost.rules())
    p = data.draw(ost.params(adversarial=True))
    data.draw(ost.states(rule, p, adversarial=True))
    data.draw(ost.grads_like(p, adversarial=True))


def test_health_check_list_is_not_empty() -> None:
    # the test above runs with no suppressed health check; make sure that still means something
    assert HealthCheck.filter_too_much in list(HealthCheck)


def test_import_optcheck_does_not_import_hypothesis() -> None:
    code = "import sys, optcheck; assert 'hypothesis' not in sys.modules; optcheck.strategies; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# ---------------------------------------------------------------------------------------------
# The user example: examples/test_user_rmsprop.py
# ---------------------------------------------------------------------------------------------


def _run_example(impl: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RMSPROP_IMPL": impl, "CI": "true", "PYTHONHASHSEED": "0"}
    env.pop("OPTCHECK_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "examples/test_user_rmsprop.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_user_example_fails_on_the_seed_with_a_shrunk_counterexample() -> None:
    out = _run_example("rmsprop_nan")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "2 failed" in text, text
    # older hypothesis releases say "Falsifying example", newer ones "Failing test case"
    assert "Falsifying example" in text or "Failing test case" in text
    assert "went negative" in text
    assert "moved although its gradient was zero" in text


def test_user_example_passes_on_the_fixed_rmsprop() -> None:
    out = _run_example("rmsprop_fixed")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
