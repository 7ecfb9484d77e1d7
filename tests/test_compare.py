"""Tests of optcheck._compare: the one tolerance shared by the audit and diagnosis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optcheck._compare import close, compare_trajectory, leaf_error, rtol, to_numpy
from optcheck._trajectory import Trajectory, replay
from optcheck.rules import get


def test_rtol_depends_on_the_dtype() -> None:
    assert rtol(np.float64) == 1e-10
    assert rtol(np.dtype("float32")) == 2e-5
    assert rtol("float16") > rtol("float32") > rtol("float64")
    assert rtol("int64") == rtol("float64")


def test_nan_at_the_same_places_agrees_and_elsewhere_does_not() -> None:
    a = np.array([1.0, np.nan, np.inf, -np.inf])
    assert close(a, a.copy())
    assert leaf_error(a, np.array([1.0, np.nan, np.inf, np.inf]))[0] == math.inf
    err, where = leaf_error(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert err == math.inf and where == (1,)
    assert leaf_error(np.array([1.0, 2.0]), np.array([1.0, np.nan]))[1] == (1,)


def test_shapes_must_agree() -> None:
    assert leaf_error(np.ones((3, 1)), np.ones(3)) == (math.inf, None)


def test_the_tolerance_is_relative_to_the_leaf_scale() -> None:
    ref = np.array([1.0, 1e-9])
    assert close(ref + np.array([0.0, 5e-11]), ref)  # 5e-11 < 1e-10 * 1
    assert not close(ref + np.array([0.0, 5e-10]), ref)
    assert leaf_error(ref, ref) == (0.0, None)
    assert close(ref.astype(np.float32) * (1 + 1e-6), ref.astype(np.float32))


def test_parameters_are_compared_by_their_change() -> None:
    start = np.array([1.0, -2.0])
    ref = start - 1e-3 * np.array([1.0, -1.0])
    bumped = ref + 1e-11  # lr*eps of a misplaced epsilon: 1e-8 of the step, 1e-11 of the parameter
    assert close(bumped, ref)  # invisible at the parameter's scale
    assert not close(bumped, ref, start=start)  # visible at the step's
    assert close(ref + 1e-15, ref, start=start)  # rounding of the parameter itself is allowed
    with pytest.raises(ValueError, match="start has shape"):
        leaf_error(ref, ref, start=np.ones(3))


def test_torch_tensors_are_compared_without_importing_torch_here() -> None:
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, float("nan")], dtype=torch.bfloat16)
    assert to_numpy(t).dtype == np.float32
    assert close(torch.tensor([1.0, 2.0], dtype=torch.float64), np.array([1.0, 2.0]))
    assert not close(torch.tensor([1.0, 2.1]), np.array([1.0, 2.0]))


# ---------------------------------------------------------------------------------------------
# compare_trajectory
# ---------------------------------------------------------------------------------------------


def _adam_course(
    parameters: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    v: dict[str, Any],
    s: dict[str, Any],
    t: int,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """A correct course-style Adam, written in another order of operations than the reference."""
    for k in parameters:
        v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
        s[k] = beta2 * s[k] + (1 - beta2) * np.square(grads[k])
        v_hat = v[k] / (1 - beta1**t)
        s_hat = s[k] / (1 - beta2**t)
        parameters[k] = parameters[k] - lr * v_hat / (np.sqrt(s_hat) + eps)


def _run_course_adam(
    params0: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]], dtype: Any
) -> Trajectory:
    p = {k: a.astype(dtype) for k, a in params0.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    s = {k: np.zeros_like(a) for k, a in p.items()}
    outs, states = [], []
    for t, g in enumerate(grads, start=1):
        _adam_course(p, {k: a.astype(dtype) for k, a in g.items()}, v, s, t)
        outs.append(dict(p))
        states.append({"exp_avg": dict(v), "exp_avg_sq": dict(s)})
    p0 = {k: a.astype(dtype) for k, a in params0.items()}
    gs = [{k: a.astype(dtype) for k, a in g.items()} for g in grads]
    return Trajectory(get("adam"), p0, gs, outs, states=states)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_a_correct_implementation_in_another_order_agrees_over_many_steps(
    seed: int, scale: float, dtype: Any
) -> None:
    rng = np.random.default_rng(seed)
    params0 = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=(4,))}
    grads = [{k: rng.normal(size=a.shape) * scale for k, a in params0.items()} for _ in range(40)]
    comp = compare_trajectory(_run_course_adam(params0, grads, dtype))
    assert comp.matched, comp.divergence
    assert comp.steps == 40 and comp.max_error < 0.1  # far inside the tolerance


def test_a_misplaced_epsilon_is_caught_even_on_large_parameters() -> None:
    rule = get("rmsprop")
    rng = np.random.default_rng(0)
    params0 = {"W": rng.normal(size=(3, 3)) * 100}
    grads = [{"W": rng.normal(size=(3, 3))} for _ in range(3)]
    out = replay(rule, params0, grads)
    drifted = [{"W": p["W"] - rule.hyper["lr"] * rule.hyper["eps"] * (i + 1)} for i, (p, _) in enumerate(out)]
    comp = compare_trajectory(Trajectory(rule, params0, grads, drifted))
    assert not comp.matched and comp.divergence is not None and comp.divergence.step == 1


def test_comparison_stops_after_the_first_non_finite_step() -> None:
    rule = get("adam")
    params0 = {"W": np.ones(3)}
    grads = [{"W": np.ones(3)} for _ in range(3)]
    out = replay(rule, params0, grads)
    target = [out[0][0], {"W": np.array([np.nan, 1.0, 1.0])}, {"W": np.full(3, 7.0)}]
    comp = compare_trajectory(Trajectory(rule, params0, grads, target))
    assert not comp.matched and comp.divergence is not None
    assert comp.divergence.step == 2 and comp.divergence.index == (0,) and comp.divergence.error == math.inf
    assert "parameters['W'][0]" in comp.divergence.message({"params": "parameters"})


def test_a_rule_that_divides_by_zero_agrees_with_a_target_that_returned_nan_everywhere() -> None:
    from optcheck.diagnose import CATALOG

    rule = get("adam")
    counter_from_zero = next(
        v for v in CATALOG["bias-correction-wrong-step"].variants(rule) if "starting at 0" in v.label
    ).apply(rule)
    params0 = {"W": np.ones(3)}
    grads = [{"W": np.ones(3)}]
    all_nan = Trajectory(rule, params0, grads, [{"W": np.full(3, np.nan)}])
    assert compare_trajectory(all_nan, counter_from_zero, {}).matched
    partly = Trajectory(rule, params0, grads, [{"W": np.array([np.nan, 1.0, 1.0])}])
    comp = compare_trajectory(partly, counter_from_zero, {})
    assert (
        not comp.matched
        and comp.divergence is not None
        and "raised ZeroDivisionError" in comp.divergence.reason
    )


def test_a_target_that_raised_agrees_only_with_a_rule_that_fails_there_too() -> None:
    rule = get("adam")
    params0 = {"W": np.ones(3)}
    grads = [{"W": np.ones(3)}, {"W": np.ones(3)}]
    out = replay(rule, params0, grads)
    raised = Trajectory(rule, params0, grads, [out[0][0]], error="ZeroDivisionError: float division by zero")
    comp = compare_trajectory(raised)
    assert not comp.matched and comp.divergence is not None and "the target raised" in comp.divergence.reason
    assert comp.divergence.step == 2


def test_mapped_states_are_compared_and_can_be_ignored() -> None:
    rule = get("adam")
    params0 = {"W": np.ones(3)}
    grads = [{"W": np.arange(3.0)}]
    out = replay(rule, params0, grads)
    states = [{"exp_avg": {"W": out[0][1]["exp_avg"]["W"] * 2}, "exp_avg_sq": out[0][1]["exp_avg_sq"]}]
    traj = Trajectory(rule, params0, grads, [out[0][0]], states=states)
    comp = compare_trajectory(traj)
    assert not comp.matched and comp.divergence is not None and comp.divergence.what == "exp_avg"
    assert compare_trajectory(traj, ignore_state={"exp_avg"}).matched


# ---------------------------------------------------------------------------------------------
# Issue 13: the tolerance derived from the dtype (float16's range, subnormal intermediates)
# ---------------------------------------------------------------------------------------------


def test_float16_tolerance_resolves_a_bug_of_a_few_ulps() -> None:
    """float16, p ≈ 1, lr = 0.02 (20 ulps of p): a step with the wrong sign is caught.

    The float64-sized allowance of 256 ulps would be a quarter of p in float16 and hide it;
    the allowance is at most rtol/eps (20 ulps for float16).
    """
    import optcheck._compare as compare_mod

    rule = get("adam", lr=0.02)
    p0 = {"W": np.array([1.0, -0.75, 0.5], dtype=np.float16)}
    grads = [{"W": np.array([0.5, -1.0, 0.25], dtype=np.float16)}]
    ((ref_p, _),) = replay(rule, p0, grads)
    wrong = {"W": (p0["W"] + (p0["W"] - ref_p["W"])).astype(np.float16)}  # uphill
    assert not compare_trajectory(Trajectory(rule, p0, grads, [wrong])).matched
    assert compare_trajectory(Trajectory(rule, p0, grads, [ref_p])).matched
    assert compare_mod.ulps("float16") == pytest.approx(20.48) and compare_mod.ulps("float64") == 256
    # with 256 ulps of float16 it would have passed
    scale = float(np.max(np.abs(ref_p["W"].astype(np.float64))))
    assert abs(float(np.max(np.abs(wrong["W"] - ref_p["W"])))) < 256 * 2.0**-10 * scale


def test_float32_torch_adam_with_subnormal_intermediates_matches_the_reference() -> None:
    """torch's addcdiv forms lr·m first, subnormal for tiny gradients: not a disagreement."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for _ in range(60):
        p0 = {"w": np.zeros(5, dtype=np.float32)}
        gs = [
            {"w": (rng.normal(size=5) * 10.0 ** rng.uniform(-45, -30)).astype(np.float32)} for _ in range(3)
        ]
        t = torch.nn.Parameter(torch.from_numpy(p0["w"].copy()))
        opt = torch.optim.Adam([t], lr=1e-3, foreach=False)
        outs = []
        for g in gs:
            t.grad = torch.from_numpy(g["w"].copy())
            opt.step()
            outs.append({"w": t.detach().numpy().copy()})
        comp = compare_trajectory(Trajectory(get("adam"), p0, gs, outs))
        assert comp.matched, comp.divergence


def test_mismatches_marks_the_entries_beyond_the_one_tolerance() -> None:
    from optcheck._compare import leaf_error, mismatches

    ref = np.linspace(-1.0, 1.0, 8)
    assert not mismatches(ref * (1 + 1e-14), ref).any()  # rounding: leaf_error agrees, nothing marked
    bad = ref.copy()
    bad[3] += 1e-3
    bad[5] = np.nan
    mask = mismatches(bad, ref)
    assert mask.tolist() == [i in (3, 5) for i in range(8)]
    assert leaf_error(bad, ref)[0] > 1
    same_nan = ref.copy()
    same_nan[2] = np.nan
    assert not mismatches(same_nan, same_nan.copy()).any()


def test_mismatches_compares_parameters_by_their_change() -> None:
    from optcheck._compare import mismatches

    p0 = np.full(4, 1e6)
    step = np.array([1e-3, -2e-3, 3e-3, 0.0])
    ref = p0 + step
    got = ref.copy()
    assert not mismatches(got, ref, start=p0).any()
    got[1] = (
        p0[1] + 2 * step[1]
    )  # twice the step: 2e-3 off on a value of 1e6, far beyond the change's tolerance
    assert mismatches(got, ref, start=p0).tolist() == [False, True, False, False]


def test_mismatches_of_different_shapes_marks_everything() -> None:
    from optcheck._compare import mismatches

    assert mismatches(np.zeros(3), np.zeros(4)).all()
