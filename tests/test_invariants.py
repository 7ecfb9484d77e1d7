"""Tests of optcheck.invariants: each invariant fires on a minimal bad case and stays silent on
the reference rules' own trajectories."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optcheck
from optcheck import invariants as inv
from optcheck.invariants import InvariantError, Violation, check_update

BACKENDS = ("numpy", "array_api_strict", "torch")


def _asarray(backend: str) -> Any:
    """The ``asarray`` of ``backend``; the test is skipped when that library is not installed."""
    if backend == "numpy":
        return np.asarray
    if backend == "torch":
        return pytest.importorskip("torch").as_tensor
    return pytest.importorskip(backend).asarray


def _ids(vs: list[Violation]) -> list[str]:
    return [v.id for v in vs]


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def test_violation_to_dict_is_strict_json() -> None:
    (v,) = inv.non_finite({"W1": np.array([[1.0, np.nan], [np.inf, -np.inf]])}, name="params")
    d = v.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["counts"] == {"nan": 1, "posinf": 1, "neginf": 1}
    assert d["value"] == "nan" and d["index"] == [0, 1] and d["path"] == ["W1"]
    assert str(v) == f"{v.message} {v.hint}"


def test_invariant_error_is_a_floating_point_error_with_the_violations() -> None:
    vs = inv.non_finite(np.array([np.nan]), name="x")
    with pytest.raises(FloatingPointError) as info:
        inv.raise_if(vs)
    assert isinstance(info.value, InvariantError)
    assert info.value.violations == vs
    assert str(info.value).startswith("x is non-finite: 1 NaN of 1 entries; first at (0,): nan.")
    assert inv.raise_if([]) == []


# ---------------------------------------------------------------------------
# Each invariant on a minimal bad case (and silent on the good one)
# ---------------------------------------------------------------------------


def test_non_finite_tells_became_from_already() -> None:
    before = {"W": np.array([1.0, 2.0, 3.0])}
    after = {"W": np.array([1.0, np.nan, np.inf])}
    (v,) = inv.non_finite(after, name="params", before=before, step=4)
    assert v.id == "non-finite" and v.became is True and v.where == "params['W']"
    assert v.counts == {"nan": 1, "posinf": 1} and v.count == 2 and v.index == (1,) and v.step == 4
    assert (
        v.message
        == "params['W'] became non-finite at step 4: 1 NaN, 1 +inf of 3 entries; first at (1,): nan."
    )
    (w,) = inv.non_finite(after, name="params", before={"W": np.array([1.0, 2.0, np.nan])}, step=4)
    assert w.became is False and w.index == (2,)
    assert "was already non-finite on input at step 4" in w.message
    assert inv.non_finite(before, name="params") == []


def test_negative_second_moment_pins_the_seed_message() -> None:
    S = {"dW1": np.array([[0.1, -2.1e-4], [0.3, -1e-5]])}
    g = {"dW1": np.array([[0.5, 0.013], [0.2, 0.001]])}
    W = {"dW1": np.array([[1.0, -0.41], [0.5, -0.2]])}
    (v,) = inv.negative_second_moment(S, name="S", grads=g, params=W, step=3)
    assert v.message == (
        "S['dW1'] is negative at step 3: 2 of 4 entries < 0; first at (0, 1): S=-0.00021 (g=0.013, p=-0.41)."
    )
    assert v.hint == (
        "A term that is not a square was added to the squared gradient (for example an L2 penalty "
        "proportional to W, which is negative wherever W is). Add the penalty to the gradient before "
        "squaring: S = β·S + (1−β)·(g + λW)², and step with (g + λW)."
    )
    assert v.count == 2 and v.counts == {"negative": 2} and v.related == {"g": 0.013, "p": -0.41}
    assert inv.negative_second_moment({"dW1": np.abs(S["dW1"])}, name="S") == []


def test_centered_second_moment_separates_rounding_from_bugs() -> None:
    mean = np.array([1.0, 1.0, 2.0])
    v = np.array([1.0 - 1e-17, 0.5, 4.0 + 1e-9])  # rounding, a real violation, fine
    vs = inv.negative_second_moment(v, name="square_avg", mean=mean)
    assert _ids(vs) == ["negative-second-moment"]
    assert vs[0].index == (1,) and vs[0].count == 1
    (r,) = inv.negative_second_moment(np.array([1.0 - 2**-52]), name="square_avg", mean=np.array([1.0]))
    assert r.id == "sqrt-of-negative" and "by rounding" in r.message and "√max(" in r.hint


def test_sqrt_of_negative() -> None:
    (v,) = inv.sqrt_of_negative({"a": np.array([0.0, 1.0, -3.0])}, name="den", step=2)
    assert v.id == "sqrt-of-negative" and v.index == (2,) and v.value == -3.0 and v.where == "den['a']"
    assert inv.sqrt_of_negative(np.array([0.0, 2.0])) == []


@pytest.mark.parametrize("kind", ["accumulator", "max-second-moment"])
def test_accumulator_decreased(kind: str) -> None:
    (v,) = inv.accumulator_decreased(np.array([1.0, 2.0]), np.array([1.5, 1.0]), name="S", kind=kind)
    assert v.id == "accumulator-decreased" and v.index == (1,) and v.value == 1.0
    assert "went from 2 to 1" in v.message
    assert ("max(" in v.hint) == (kind == "max-second-moment")
    assert inv.accumulator_decreased(np.array([1.0]), np.array([1.0]), kind=kind) == []
    with pytest.raises(ValueError, match="kind='sum' is invalid"):
        inv.accumulator_decreased(np.array([1.0]), np.array([1.0]), kind="sum")


@pytest.mark.parametrize(("a", "b", "bad"), [(3, 4, False), (3, 3, True), (3, 5, True), (0, 1, False)])
def test_step_not_incremented(a: int, b: int, bad: bool) -> None:
    vs = inv.step_not_incremented(a, b)
    assert bool(vs) == bad
    if bad:
        assert (
            vs[0].message == f"state['step'] went from {a} to {b} in one update; it must grow by exactly one."
        )


def test_update_without_gradient_is_the_epsilon_outside_signature() -> None:
    p = {"b1": np.array([0.5, -1.0, 2.0])}
    g = {"b1": np.array([0.1, 0.0, 0.0])}
    new = {"b1": np.array([0.49, -1.0 - 1e-10, 2.0])}
    (v,) = inv.update_without_gradient(p, g, new, name="parameters", step=5)
    assert v.id == "update-without-gradient" and v.index == (1,) and v.count == 1
    assert v.where == "parameters['b1']" and "ε added outside the division" in v.hint
    # a momentum that is not zero explains the move
    assert inv.update_without_gradient(p, g, new, momentum={"b1": np.array([0.0, 0.3, 0.0])}) == []


def test_update_too_large() -> None:
    p, new = np.array([0.0, 1.0]), np.array([0.001, 1.003])
    (v,) = inv.update_too_large(p, new, bound=0.001)
    assert v.id == "update-too-large" and v.index == (1,)
    assert inv.update_too_large(p, new, bound=0.003) == []
    assert inv.update_too_large(p, new, bound=0.001, decay=0.002) == []  # 0.001 + 0.002*|1|
    with pytest.raises(ValueError, match="bound=-1 is invalid"):
        inv.update_too_large(p, new, bound=-1)


def test_shape_and_dtype_changed() -> None:
    before = {"b1": np.zeros((4, 1), np.float32)}
    after = {"b1": np.zeros((4, 4), np.float64)}
    (s,) = inv.shape_changed(before, after, name="parameters", step=1)
    assert s.message == "parameters['b1'] changed shape from (4, 1) to (4, 4) at step 1."
    assert "broadcast" in s.hint and "(4,)" in s.hint
    (d,) = inv.dtype_changed(before, after, name="parameters")
    assert d.message == "parameters['b1'] changed dtype from float32 to float64."
    assert inv.shape_changed(before, before) == [] and inv.dtype_changed(before, before) == []


def test_input_mutated() -> None:
    g = {"dW1": np.array([1.0, np.nan, 3.0])}
    snap = {"dW1": g["dW1"].copy()}
    assert inv.input_mutated(snap, g, name="grads") == []  # NaN where it was: unchanged
    g["dW1"][2] += 1.0
    (v,) = inv.input_mutated(snap, g, name="grads", step=2)
    assert v.id == "input-mutated" and v.where == "grads['dW1']" and v.index == (2,)
    assert "was 3, now 4" in v.message


# ---------------------------------------------------------------------------
# check_update
# ---------------------------------------------------------------------------


def _adam_case(dtype: Any = np.float64) -> tuple[Any, ...]:
    rule = optcheck.rules.get("adam", lr=0.01)
    rng = np.random.default_rng(0)
    p = {"W1": rng.normal(size=(3, 2)).astype(dtype), "b1": rng.normal(size=(3, 1)).astype(dtype)}
    g = {k: rng.normal(size=v.shape).astype(dtype) for k, v in p.items()}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    return rule, p, g, s, p2, s2


def test_check_update_names_the_users_arrays_course_layout() -> None:
    rule, p, g, s, p2, s2 = _adam_case()
    s2 = dict(s2, exp_avg_sq={k: v - 1.0 for k, v in s2["exp_avg_sq"].items()})
    g_course = {"d" + k: v for k, v in g.items()}
    vs = check_update(
        rule,
        p,
        g,
        s,
        p2,
        s2,
        names={"params": "parameters", "grads": "grads", "second-moment": "S"},
        key_prefix={"grads": "d", "exp_avg_sq": "d"},
    )
    assert _ids(vs) == ["negative-second-moment", "negative-second-moment"]
    assert [v.where for v in vs] == ["S['dW1']", "S['db1']"]
    assert vs[0].related["g"] == pytest.approx(g_course["dW1"][0, 0])
    assert vs[0].step == 1


def test_check_update_step_counter_and_skip() -> None:
    rule, p, g, s, p2, s2 = _adam_case()
    frozen = dict(s2, step=0)
    vs = check_update(rule, p, g, s, p2, frozen, step=1)
    assert _ids(vs) == ["step-not-incremented"]
    assert check_update(rule, p, g, s, p2, frozen, step=1, skip=["step-not-incremented"]) == []
    with pytest.raises(ValueError, match="unknown invariant"):
        check_update(rule, p, g, s, p2, s2, skip=["nan"])


def test_check_update_monotone_states() -> None:
    rule = optcheck.rules.get("adam", amsgrad=True)
    p = np.array([1.0, 2.0])
    s = rule.init(p)
    p1, s1 = rule.step(p, np.array([1.0, 1.0]), s)
    p2, s2 = rule.step(p1, np.array([0.0, 0.0]), s1)
    assert check_update(rule, p1, np.zeros(2), s1, p2, s2) == []
    bad = dict(s2, max_exp_avg_sq=s2["exp_avg_sq"])  # overwritten instead of the running max
    vs = check_update(rule, p1, np.zeros(2), s1, p2, bad, skip=["update-too-large"])
    assert _ids(vs) == ["accumulator-decreased"] and vs[0].where == "state['max_exp_avg_sq']"
    assert "max(" in vs[0].hint


def test_check_update_input_mutated_and_structure() -> None:
    rule, p, g, s, p2, s2 = _adam_case()
    snap = {k: v.copy() for k, v in g.items()}
    g["W1"] *= 2.0
    vs = check_update(rule, p, g, s, p2, s2, before={"grads": snap})
    assert _ids(vs) == ["input-mutated"]
    p3 = dict(p2, b1=p2["b1"] + np.zeros(3))  # (3, 1) + (3,) -> (3, 3)
    vs = check_update(rule, p, snap, s, p3, s2)
    assert _ids(vs) == ["shape-changed"] and vs[0].where == "params['b1']"


def test_check_update_update_too_large_uses_the_rules_bound() -> None:
    rule, p, g, s, _p2, s2 = _adam_case()
    a, b = rule.update_bound(1)  # type: ignore[misc]
    assert a == pytest.approx(0.01) and b == 0.0
    # no bias correction: the first step is sqrt(1 - beta2)/(1 - beta1) = 0.316 of lr ... times 10
    m, v = s2["exp_avg"], s2["exp_avg_sq"]
    course = {k: p[k] - 0.01 * m[k] / (np.sqrt(v[k]) + 1e-8) for k in p}
    vs = check_update(rule, p, g, s, course, s2)
    assert set(_ids(vs)) == {"update-too-large"}
    assert "(3.16·lr)" in vs[0].message


def test_adam_bound_is_cauchy_schwarz() -> None:
    rule = optcheck.rules.get("adam", lr=1.0)
    b1, b2 = 0.9, 0.999
    for t in (1, 2, 10, 1000):
        gamma = b1**2 / b2
        series = sum(gamma**k for k in range(t))
        want = (1 - b1) * np.sqrt((1 - b2**t) * series) / ((1 - b1**t) * np.sqrt(1 - b2))
        assert rule.update_bound(t)[0] == pytest.approx(want)  # type: ignore[index]
    # the worst case is attained: g_i proportional to (beta1/beta2)^(t-i)
    t = 6
    g = np.array([(b1 / b2) ** (t - i) for i in range(1, t + 1)])
    p, s = np.zeros(1), rule.init(np.zeros(1))
    for gi in g:
        p_new, s = optcheck.rules.get("adam", lr=1.0, eps=0.0).step(p, np.array([gi]), s)
        step = abs(float(p_new[0] - p[0]))
        p = p_new
    assert step == pytest.approx(rule.update_bound(t)[0], rel=1e-12)  # type: ignore[index]


def test_check_update_without_a_rule_runs_the_rule_free_checks() -> None:
    p = {"w": np.array([1.0, 2.0])}
    new = {"w": np.array([1.0, np.nan])}
    vs = check_update(None, p, p, {}, new, {})
    assert _ids(vs) == ["non-finite"] and vs[0].became is True


def test_non_finite_gradient_is_reported_first() -> None:
    rule, p, g, s, _p2, _s2 = _adam_case()
    g = dict(g, W1=np.full((3, 2), np.nan))
    with np.errstate(invalid="ignore"):
        p3, s3 = rule.step(p, g, s)
    vs = check_update(rule, p, g, s, p3, s3)
    assert vs[0].id == "non-finite" and vs[0].where == "grads['W1']"
    assert "backward pass" in vs[0].hint


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends(backend: str) -> None:
    asarray = _asarray(backend)
    rule = optcheck.rules.get("rmsprop", lr=0.01, alpha=0.9)
    p = {"W": asarray(np.array([[1.0, -2.0], [0.5, 0.25]]))}
    g = {"W": asarray(np.array([[0.1, 0.0], [0.3, -0.2]]))}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    assert check_update(rule, p, g, s, p2, s2) == []
    bad = dict(s2, square_avg={"W": s2["square_avg"]["W"] - 0.01})
    vs = check_update(rule, p, g, s, p2, bad, names={"square_avg": "S"})
    assert _ids(vs) == ["negative-second-moment"]
    assert vs[0].where == "S['W']" and vs[0].count == 4 and vs[0].index == (0, 0)
    nan_p = {"W": p2["W"] * asarray(np.array([[1.0, np.nan], [1.0, 1.0]]))}
    vs = check_update(rule, p, g, s, nan_p, s2)
    assert _ids(vs) == ["non-finite"] and vs[0].index == (0, 1) and vs[0].became is True


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_bad_input_names_the_key() -> None:
    rule, p, g, s, p2, s2 = _adam_case()
    with pytest.raises(ValueError, match=r"grads\['b1'\] is a str; expected an array"):
        check_update(rule, p, dict(g, b1="oops"), s, p2, s2)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['b1'\]"):
        check_update(rule, p, {"W1": g["W1"]}, s, p2, s2)
    with pytest.raises(ValueError, match=r"before has unexpected key\(s\) \['param'\]"):
        check_update(rule, p, g, s, p2, s2, before={"param": p})
    with pytest.raises(TypeError, match="rule must be an optcheck Rule"):
        check_update("adam", p, g, s, p2, s2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x\['a'\] is a NoneType"):
        inv.non_finite({"a": None}, name="x")
    # lists and numbers are array-like
    assert inv.non_finite({"a": [1.0, 2.0], "b": 3.0}) == []


def test_checks_never_mutate_inputs() -> None:
    rule, p, g, s, p2, s2 = _adam_case()
    copies = [{k: v.copy() for k, v in t.items()} for t in (p, g, p2)]
    check_update(rule, p, g, s, p2, s2, before={"grads": g})
    for tree, copy in zip((p, g, p2), copies, strict=True):
        for k in tree:
            np.testing.assert_array_equal(tree[k], copy[k])


# ---------------------------------------------------------------------------
# Silent on the reference rules' own trajectories (every registered rule)
# ---------------------------------------------------------------------------

_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "sgd": [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}],
    "adam": [{}, {"amsgrad": True}, {"beta1": 0.0}, {"weight_decay": 0.1}, {"eps_placement": "hat"}],
    "adamw": [{}, {"amsgrad": True, "amsgrad_on": "corrected"}],
    "rmsprop": [{}, {"centered": True}, {"momentum": 0.9, "centered": True}],
    "adagrad": [{}, {"lr_decay": 0.1, "initial_accumulator_value": 0.1}],
    "lion": [{}, {"weight_decay": 0.1}],
}
_CASES = [(name, i) for name in optcheck.rules.names() for i in range(len(_CONFIGS.get(name, [{}])))]


@settings(max_examples=60)
@given(
    case=st.sampled_from(_CASES),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-6, 3),
    zero_frac=st.floats(0, 0.5),
)
def test_silent_on_reference_trajectories(
    case: tuple[str, int], dtype: Any, seed: int, log_scale: float, zero_frac: float
) -> None:
    name, i = case
    rule = optcheck.rules.get(name, **_CONFIGS.get(name, [{}])[i])
    rng = np.random.default_rng(seed)
    p = {"W": rng.normal(size=(4, 3)).astype(dtype), "b": rng.normal(size=(3,)).astype(dtype)}
    s = rule.init(p)
    for _ in range(60):
        scale = 10.0 ** (log_scale + rng.uniform(-1, 1))
        g = {
            k: (rng.normal(size=v.shape) * scale * (rng.random(v.shape) >= zero_frac)).astype(dtype)
            for k, v in p.items()
        }
        p2, s2 = rule.step(p, g, s)
        vs = check_update(rule, p, g, s, p2, s2)
        assert vs == [], str(vs[0])
        p, s = p2, s2


def test_chunked_fast_paths_see_every_entry() -> None:
    n = 2 * inv._CHUNK + 7  # several chunks and a ragged end
    p = np.zeros(n, np.float32)
    moved = p.copy()
    moved[-1] = 0.5
    (v,) = inv.update_too_large(p, moved, bound=0.1)
    assert v.index == (n - 1,)
    nan = p.copy()
    nan[inv._CHUNK + 3] = np.nan
    assert inv.update_too_large(p, nan, bound=0.1) == []  # a NaN step is non-finite's business
    g = np.ones(n, np.float32)
    g[-2] = 0.0
    assert inv.update_without_gradient(p, g, moved) == []  # the entry that moved has a gradient
    moved2 = p.copy()
    moved2[-2] = 1e-3
    (w,) = inv.update_without_gradient(p, g, moved2)
    assert w.index == (n - 2,)


# ---------------------------------------------------------------------------
# One-pass screens (the fast path of check_update and the guard): they never change the answer
# ---------------------------------------------------------------------------


def _precise(fn: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """``fn`` with the screens switched off (every check builds its records the slow way), as dicts."""
    with mock.patch.object(inv, "screen", lambda *a: False):
        return [v.to_dict() for v in fn(*args, **kwargs)]


def _dicts(vs: list[Violation]) -> list[dict[str, Any]]:
    return [v.to_dict() for v in vs]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_screen_overflowing_sum_of_finite_values_is_not_non_finite(backend: str, dtype: str) -> None:
    big = float(np.finfo(dtype).max) / 2
    x = _asarray(backend)(np.array([big, big, big, -big, 1.0], dtype=dtype))  # sum and x·x overflow
    xp = inv._xp(x)
    with np.errstate(over="ignore"):
        assert not np.isfinite(float(xp.sum(x)))
    rule = optcheck.rules.get("sgd", lr=0.0)
    p = {"w": x}
    g = {"w": _asarray(backend)(np.array([big, big, -big, big, 1.0], dtype=dtype))}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    with np.errstate(all="raise"):  # the screens' own overflow is neither raised nor warned about
        assert inv._all_finite(xp, x) is True
        assert inv.non_finite({"w": x}) == []
        assert check_update(rule, p, g, s, p2, s2) == []
        assert (
            optcheck.Guard(rule).check(params=p2, grads=g, state=s2, before={"params": p, "state": s}) == []
        )
    if backend == "numpy":  # the pair dot g·p overflows too; each array is then checked on its own
        with np.errstate(all="ignore"):
            assert inv._all_finite_many([g["w"], x]) is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_screen_infinities_that_cancel_in_the_sum_are_reported(backend: str) -> None:
    asarray = _asarray(backend)
    for values, counts, first in [
        ([np.inf, -np.inf, 1.0], {"posinf": 1, "neginf": 1}, 0),  # inf + -inf = NaN, still caught
        ([1.0, np.nan, np.inf, -np.inf], {"nan": 1, "posinf": 1, "neginf": 1}, 1),
    ]:
        x = asarray(np.array(values))
        (v,) = inv.non_finite({"w": x}, name="params")
        assert v.counts == counts and v.index == (first,)
    if backend == "numpy":
        with np.errstate(all="ignore"):
            # a pair dot a·b where a has +inf and -inf: the products cancel to NaN, not to a finite sum
            a, b = np.array([np.inf, -np.inf, 2.0]), np.array([1.0, 1.0, 3.0])
            assert inv._all_finite_many([a, b]) is False
            # a non-finite entry facing a zero gives NaN (inf·0), in either array of the pair
            assert inv._all_finite_many([np.array([0.0, 1.0]), np.array([np.inf, 1.0])]) is False
            assert inv._all_finite_many([np.array([np.nan, 1.0]), np.array([0.0, 1.0])]) is False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_screen_pair_dot_finds_a_single_bad_entry_anywhere(dtype: Any) -> None:
    """Every position (the first, a middle one, the ragged SIMD tail) in either array of a pair."""
    n = 1037
    with np.errstate(all="ignore"):
        for bad in (np.nan, np.inf, -np.inf):
            for j in (0, 517, n - 1):
                for which in (0, 1):
                    arrays = [np.ones(n, dtype), np.zeros(n, dtype)]
                    arrays[which][j] = bad
                    assert inv._all_finite_many(arrays) is False
        assert inv._all_finite_many([np.ones(n, dtype), np.zeros(n, dtype)]) is True


def test_screen_second_moment_bit_patterns() -> None:
    top32 = np.finfo(np.float32).max
    assert inv._nonneg_clear(np, np.array([0.0, 1.0, top32], np.float32)) == (True, True)
    # -0.0 is not below zero (precise check agrees) but its bit pattern is large: only the screen trips
    assert inv._nonneg_clear(np, np.array([0.0, -0.0, 1.0])) == (True, False)
    assert inv.negative_second_moment(np.array([0.0, -0.0, 1.0])) == []
    # the smallest negative float32 is reported
    tiny = np.array([1.0, -1e-45], np.float32)
    assert tiny[1] < 0
    (v,) = inv.negative_second_moment(tiny, name="S")
    assert v.index == (1,) and v.count == 1
    # NaN and +inf: not negative, but not proven finite either (non-finite reports them)
    assert inv._nonneg_clear(np, np.array([np.nan, 1.0])) == (True, False)
    assert inv._nonneg_clear(np, np.array([np.inf, 1.0])) == (True, False)
    rule = optcheck.rules.get("rmsprop", lr=0.01)
    p, g = {"w": np.ones(3)}, {"w": np.ones(3)}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    for bad in (np.nan, np.inf):
        sq = s2["square_avg"]["w"].copy()
        sq[1] = bad
        vs = check_update(rule, p, g, s, p2, dict(s2, square_avg={"w": sq}))
        assert _ids(vs) == ["non-finite"] and vs[0].where == "state['square_avg']['w']"
        assert _dicts(vs) == _precise(check_update, rule, p, g, s, p2, dict(s2, square_avg={"w": sq}))


_N = 2 * inv._CHUNK + 7  # several screen chunks and a ragged end
_MID = inv._CHUNK + 3  # in the second chunk


def test_screen_negative_zero_gradient_is_a_zero_gradient() -> None:
    rule = optcheck.rules.get("rmsprop", lr=0.01)
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=_N).astype(np.float32)}
    g = {"w": rng.normal(size=_N).astype(np.float32)}
    g["w"][-2] = -0.0
    g["w"][5] = 0.0
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    assert inv._has_zero(np, g["w"]) and not inv._has_zero(np, np.ones(_N, np.float32))
    assert check_update(rule, p, g, s, p2, s2) == []  # zero gradient, no move: fine
    moved = p2["w"].copy()
    moved[-2] += np.float32(1e-3)  # ε outside the division, at the −0.0 gradient only
    vs = check_update(rule, p, g, s, {"w": moved}, s2)
    assert _ids(vs) == ["update-without-gradient"] and vs[0].index == (_N - 2,) and vs[0].count == 1
    assert _dicts(vs) == _precise(check_update, rule, p, g, s, {"w": moved}, s2)


def test_screen_zero_gradient_with_momentum_is_not_a_move_without_gradient() -> None:
    rule = optcheck.rules.get("sgd", lr=0.01, momentum=0.9)
    rng = np.random.default_rng(1)
    p = {"w": rng.normal(size=_N)}
    s = rule.init(p)
    p, s = rule.step(p, {"w": rng.normal(size=_N)}, s)  # a momentum everywhere
    g = {"w": rng.normal(size=_N)}
    g["w"][[3, _MID, _N - 1]] = 0.0
    p2, s2 = rule.step(p, g, s)
    assert check_update(rule, p, g, s, p2, s2) == []
    # where the momentum is zero too, a move is the bug
    s_zero = dict(s, momentum_buffer={"w": s["momentum_buffer"]["w"].copy()})
    s_zero["momentum_buffer"]["w"][_MID] = 0.0
    p3, s3 = rule.step(p, g, s_zero)
    moved = p3["w"].copy()
    moved[_MID] += 1e-6
    vs = check_update(rule, p, g, s_zero, {"w": moved}, s3)
    assert _ids(vs) == ["update-without-gradient"] and vs[0].index == (_MID,)
    assert _dicts(vs) == _precise(check_update, rule, p, g, s_zero, {"w": moved}, s3)


def test_screen_update_too_large_with_decoupled_decay() -> None:
    rule = optcheck.rules.get("adamw", lr=0.1, weight_decay=0.5)
    p = {"w": np.full(_N, 100.0)}  # b·|p| = 0.1·0.5·100 = 5 ≫ a
    g = {"w": np.ones(_N)}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    a, b = rule.update_bound(1)  # type: ignore[misc]
    assert check_update(rule, p, g, s, p2, s2) == []
    within = p["w"] - (a + 0.5 * b * 100.0)  # above a, within a + b·|p|
    assert check_update(rule, p, g, s, {"w": within}, s2) == []
    beyond = within.copy()
    beyond[-1] = 100.0 - 2 * (a + b * 100.0)
    vs = check_update(rule, p, g, s, {"w": beyond}, s2)
    assert _ids(vs) == ["update-too-large"] and vs[0].index == (_N - 1,) and vs[0].count == 1
    assert _dicts(vs) == _precise(check_update, rule, p, g, s, {"w": beyond}, s2)


def test_screen_accumulator_and_mutation_on_several_chunks() -> None:
    rule = optcheck.rules.get("adagrad", lr=0.01)
    rng = np.random.default_rng(2)
    p = {"w": rng.normal(size=_N).astype(np.float32)}
    g = {"w": rng.normal(size=_N).astype(np.float32)}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    summed = s2["sum"]["w"].copy()
    summed[-1] = -0.0  # below the old sum (which is 0 + g² > 0) yet not negative
    vs = check_update(rule, p, g, s2, p2, dict(s2, sum={"w": summed}, step=2))
    assert "accumulator-decreased" in _ids(vs)
    assert _dicts(vs) == _precise(check_update, rule, p, g, s2, p2, dict(s2, sum={"w": summed}, step=2))
    copy = {"w": g["w"].copy()}
    g["w"][-1] += 1.0  # written in place after the copy
    vs = check_update(rule, p, g, s, p2, s2, before={"grads": copy})
    assert _ids(vs) == ["input-mutated"] and vs[0].index == (_N - 1,)


_KINDS = ["nan", "inf", "-inf", "cancel", "negative", "-0.0", "zero", "jump", "huge", "halve", "step"]


@settings(max_examples=40, deadline=None)
@given(
    case=st.sampled_from(_CASES),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(_KINDS),
    where=st.sampled_from(["params", "grads", "state"]),
)
def test_screens_never_change_the_answer(
    case: tuple[str, int], dtype: Any, seed: int, kind: str, where: str
) -> None:
    """check_update with the screens equals check_update without them, on a corrupted step of every rule."""
    name, i = case
    rule = optcheck.rules.get(name, **_CONFIGS.get(name, [{}])[i])
    rng = np.random.default_rng(seed)
    p = {"W": rng.normal(size=(4, 3)).astype(dtype), "b": rng.normal(size=(70,)).astype(dtype)}
    s = rule.init(p)
    for _ in range(3):
        g = {k: (rng.normal(size=v.shape) * (rng.random(v.shape) > 0.2)).astype(dtype) for k, v in p.items()}
        with np.errstate(all="ignore"):
            p2, s2 = rule.step(p, g, s)
        p, s = p2, s2
    g = {k: (rng.normal(size=v.shape) * (rng.random(v.shape) > 0.2)).astype(dtype) for k, v in p.items()}
    with np.errstate(all="ignore"):
        p2, s2 = rule.step(p, g, s)
    trees = {"params": dict(p2), "grads": dict(g)}
    arrays = [k for k in rule.array_keys() if isinstance(s2.get(k), dict)]
    if where == "state" and arrays:
        trees["state"] = dict(s2[arrays[0]])
    target = trees.get(where, trees["params"])
    leaf = "b" if target["b"] is not None else "W"  # Adafactor keeps no factored state for a vector
    if target[leaf] is None:
        target = trees["params"]
    x = target[leaf].copy()
    j = int(rng.integers(0, x.size))
    with np.errstate(all="ignore"):
        if kind in ("nan", "inf", "-inf"):
            x[j] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
        elif kind == "cancel":
            x[j], x[(j + 1) % x.size] = np.inf, -np.inf
        elif kind == "negative":
            x[j] = -abs(x[j]) - 1e-3
        elif kind in ("-0.0", "zero"):
            x[j] = -0.0 if kind == "-0.0" else 0.0
        elif kind == "jump":
            x[j] += 10.0
        elif kind == "huge":
            x[:] = np.finfo(dtype).max
        elif kind == "halve":
            x *= 0.5
    target[leaf] = x
    new_state = dict(s2)
    if "state" in trees:
        new_state[arrays[0]] = trees["state"]
    if kind == "step":
        new_state["step"] = s2["step"] + 1
    with np.errstate(all="ignore"):
        fast = check_update(rule, p, trees["grads"], s, trees["params"], new_state)
        slow = _precise(check_update, rule, p, trees["grads"], s, trees["params"], new_state)
    assert _dicts(fast) == slow


def test_screen_gradient_and_its_partner_are_read_to_the_last_chunk() -> None:
    rule = optcheck.rules.get("adam", lr=0.01)
    rng = np.random.default_rng(3)
    p = {"w": rng.normal(size=_N).astype(np.float32)}
    g = {"w": rng.normal(size=_N).astype(np.float32)}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    assert check_update(rule, p, g, s, p2, s2) == []
    for where in ("grads", "exp_avg"):
        bad_g = {"w": g["w"].copy()}
        bad_m = {"w": s2["exp_avg"]["w"].copy()}
        (bad_g if where == "grads" else bad_m)["w"][_N - 1] = np.nan
        vs = check_update(rule, p, bad_g, s, p2, dict(s2, exp_avg=bad_m))
        assert vs and vs[0].id == "non-finite" and vs[0].index == (_N - 1,)
        assert _dicts(vs) == _precise(check_update, rule, p, bad_g, s, p2, dict(s2, exp_avg=bad_m))


def test_a_state_entry_the_rule_does_not_keep_is_skipped() -> None:
    """Adafactor keeps no factored state for a vector (``row_var`` is None): nothing to check there."""
    rule = optcheck.rules.get("adafactor")
    p, g = np.ones(3), np.full(3, 0.5)
    s = rule.init(p)
    assert s["row_var"] is None
    p2, s2 = rule.step(p, g, s)
    assert check_update(rule, p, g, s, p2, s2) == []
    assert optcheck.Guard(rule).check(params=p2, grads=g, state=s2, before={"params": p, "state": s}) == []
    bad = dict(s2, variance=-s2["variance"])
    assert _ids(check_update(rule, p, g, s, p2, bad))[0] == "negative-second-moment"
