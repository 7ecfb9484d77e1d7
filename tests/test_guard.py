"""Tests of optcheck.guard: Guard, guarded and trap, on the seed problem and beyond."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optcheck
from optcheck import Guard, InvariantError, guarded, trap
from optcheck.invariants import InvariantWarning, Violation

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import rmsprop_fixed  # noqa: E402
import rmsprop_nan  # noqa: E402

SEED_ERROR = """\
S['dW1'] became negative at step 1: 11 of 32 entries < 0; first at (0, 3): S=-0.00202 (g=0.00161, W=-0.921).
Hint: A term that is not a square was added to the squared gradient (for example an L2 penalty proportional \
to W, which is negative wherever W is). Add the penalty to the gradient before squaring: \
S = β·S + (1−β)·(g + λW)², and step with (g + λW).
Also at this step: negative-second-moment in S['dW2']; non-finite in parameters['W1']; non-finite in \
parameters['W2']."""

COURSE_DECAY = {
    "weight_decay": 0.7 / 32,
    "overrides": {"b1": {"weight_decay": 0.0}, "b2": {"weight_decay": 0.0}},
}


def _asarray(backend: str) -> Any:
    """The ``asarray`` of ``backend``; the test is skipped when that library is not installed."""
    if backend == "numpy":
        return np.asarray
    if backend == "torch":
        return pytest.importorskip("torch").as_tensor
    return pytest.importorskip(backend).asarray


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTCHECK_GUARD", raising=False)


# ---------------------------------------------------------------------------
# The seed problem
# ---------------------------------------------------------------------------


def test_seed_loop_stops_at_the_first_bad_step_with_the_pinned_message() -> None:
    update = guarded(rmsprop_nan.update_parameters_with_rmsprop, rule="rmsprop", alpha=0.9, lr=0.01)
    with pytest.raises(InvariantError) as info, np.errstate(invalid="ignore"):
        rmsprop_nan.train(update=update)
    assert str(info.value) == SEED_ERROR
    first = info.value.violations[0]
    assert (first.id, first.where, first.step, first.count, first.index) == (
        "negative-second-moment",
        "S['dW1']",
        1,
        11,
        (0, 3),
    )
    assert first.related["g"] == pytest.approx(0.0016051, rel=1e-4)
    assert first.related["W"] == pytest.approx(-0.92147, rel=1e-4)
    # the value is exactly what the bug computes: S = 0.1*(g^2 + (0.7/32)*W)
    assert first.value == pytest.approx(0.1 * (first.related["g"] ** 2 + 0.7 / 32 * first.related["W"]))
    assert update.guard.checked == 1  # type: ignore[attr-defined]


def test_fixed_loop_runs_clean_with_shadow_and_parameter_groups() -> None:
    update = guarded(
        rmsprop_fixed.update_parameters_with_rmsprop,
        rule="rmsprop",
        alpha=0.9,
        lr=0.01,
        shadow=True,
        **COURSE_DECAY,
    )
    costs = rmsprop_nan.train(update=update, steps=200)
    assert np.isfinite(costs).all() and costs[-1] < costs[0]
    assert update.guard.checked == 200  # type: ignore[attr-defined]
    assert update.guard.violations == []  # type: ignore[attr-defined]


def _eps_outside(
    parameters: Any, grads: Any, S: Any, learning_rate: float = 0.01, beta: float = 0.9, epsilon: float = 1e-8
) -> Any:
    """The seed's second bug alone: epsilon added after the division."""
    for k in parameters:
        g = grads["d" + k]
        S["d" + k] = beta * S["d" + k] + (1 - beta) * g**2
        parameters[k] = parameters[k] - learning_rate * (g / np.sqrt(S["d" + k]) + epsilon)
    return parameters, S


def test_shadow_catches_epsilon_outside_the_division_without_nan() -> None:
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(4, 3)), "b1": np.zeros((4, 1))}
    S = {"d" + k: np.zeros_like(v) for k, v in params.items()}
    update = guarded(_eps_outside, rule="rmsprop", alpha=0.9, lr=0.01, eps=1e-8, shadow=True, mode="off")
    update.guard.mode = "raise"  # type: ignore[attr-defined]
    grads = {"d" + k: rng.normal(size=v.shape) for k, v in params.items()}
    with pytest.raises(InvariantError) as info:
        update(params, grads, S)
    ids = {v.id for v in info.value.violations}
    assert ids == {"differs-from-reference"}
    v = info.value.violations[0]
    assert v.where == "parameters['W1']" and v.related["reference"] != v.value
    # tiny (about lr·ε plus lr·ε·|g|/S), far below what a loss curve shows, and no NaN anywhere
    assert 1e-10 <= abs(v.value - v.related["reference"]) < 1e-8


def test_epsilon_outside_moves_a_parameter_whose_gradient_is_zero() -> None:
    params = {"W1": np.array([[1.0, 2.0]])}
    S = {"dW1": np.array([[0.5, 0.5]])}
    update = guarded(_eps_outside, rule="rmsprop", alpha=0.9, lr=0.01, eps=1e-8)
    with pytest.raises(InvariantError) as info:
        update(params, {"dW1": np.array([[0.3, 0.0]])}, S)
    (v,) = info.value.violations
    assert v.id == "update-without-gradient" and v.index == (0, 1)
    assert v.value == pytest.approx(-1e-10, rel=1e-3)
    assert "(lr·ε = 1e-10)" in v.message


# ---------------------------------------------------------------------------
# Calling conventions of guarded
# ---------------------------------------------------------------------------


def _course_adam(parameters: Any, grads: Any, v: Any, s: Any, t: int, learning_rate: float = 0.01) -> Any:
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for k in parameters:
        g = grads["d" + k]
        v["d" + k] = beta1 * v["d" + k] + (1 - beta1) * g
        s["d" + k] = beta2 * s["d" + k] + (1 - beta2) * g**2
        vc = v["d" + k] / (1 - beta1**t)
        sc = s["d" + k] / (1 - beta2**t)
        parameters[k] = parameters[k] - learning_rate * vc / (np.sqrt(sc) + eps)
    return parameters, v, s


def test_course_adam_v_s_t_is_mapped_and_matches_the_reference() -> None:
    rng = np.random.default_rng(1)
    params = {"W1": rng.normal(size=(3, 2)), "b1": np.zeros((3, 1))}
    v = {"d" + k: np.zeros_like(x) for k, x in params.items()}
    s = {"d" + k: np.zeros_like(x) for k, x in params.items()}
    update = guarded(_course_adam, rule="adam", lr=0.01, shadow=True)
    for t in range(1, 30):
        grads = {"d" + k: rng.normal(size=x.shape) for k, x in params.items()}
        params, v, s = update(params, grads, v, s, t)
    assert update.guard.checked == 29  # type: ignore[attr-defined]


def test_course_adam_without_bias_correction_is_too_large() -> None:
    def no_correction(parameters: Any, grads: Any, v: Any, s: Any, t: int) -> None:
        for k in parameters:
            g = grads["d" + k]
            v["d" + k] = 0.9 * v["d" + k] + 0.1 * g
            s["d" + k] = 0.999 * s["d" + k] + 0.001 * g**2
            parameters[k] -= 0.01 * v["d" + k] / (np.sqrt(s["d" + k]) + 1e-8)

    params = {"W1": np.array([[1.0, -1.0]])}
    v = {"dW1": np.zeros((1, 2))}
    s = {"dW1": np.zeros((1, 2))}
    update = guarded(no_correction, rule="adam", lr=0.01)
    with pytest.raises(InvariantError) as info:
        update(params, {"dW1": np.array([[0.5, 0.2]])}, v, s, 1)
    v0 = info.value.violations[0]
    assert v0.id == "update-too-large" and "(3.16·lr)" in v0.message and v0.step == 1


def test_gradient_mutated_in_place_is_reported() -> None:
    def sneaky(parameters: Any, grads: Any, S: Any) -> Any:
        for k in parameters:
            grads["d" + k] += 0.1 * parameters[k]  # L2 written into the caller's gradient
            S["d" + k] = 0.9 * S["d" + k] + 0.1 * grads["d" + k] ** 2
            parameters[k] = parameters[k] - 0.01 * grads["d" + k] / (np.sqrt(S["d" + k]) + 1e-8)
        return parameters, S

    params = {"W1": np.array([[1.0, -2.0]])}
    update = guarded(sneaky, rule="rmsprop", lr=0.01, alpha=0.9, weight_decay=0.1)
    with pytest.raises(InvariantError) as info:
        update(params, {"dW1": np.array([[0.3, 0.1]])}, {"dW1": np.zeros((1, 2))})
    (v,) = info.value.violations
    assert v.id == "input-mutated" and v.where == "grads['dW1']" and v.count == 2


def test_guarded_keeps_the_function_and_passes_results_through() -> None:
    update = guarded(
        rmsprop_fixed.update_parameters_with_rmsprop, rule="rmsprop", alpha=0.9, lr=0.01, **COURSE_DECAY
    )
    assert update.__name__ == "update_parameters_with_rmsprop"
    assert update.__doc__ == rmsprop_fixed.update_parameters_with_rmsprop.__doc__
    params = {"W1": np.ones((2, 2)), "b1": np.zeros((2, 1))}
    S = rmsprop_fixed.initialize_rmsprop(params)
    grads = {"dW1": np.full((2, 2), 0.5), "db1": np.full((2, 1), 0.1)}
    out = update(params, grads, S, batch_size=32)
    assert isinstance(out, tuple) and out[0] is params and out[1] is S


def test_unknown_state_name_asks_for_roles_when_the_target_changes_it() -> None:
    def two_states(parameters: Any, grads: Any, foo: Any, bar: Any) -> None:
        foo["dW"] += grads["dW"]
        bar["dW"] += grads["dW"] ** 2

    update = guarded(two_states, rule="adam")
    p = {"W": np.ones(2)}
    with pytest.raises(
        ValueError, match=r"cannot tell which adam state 'foo' is; pass roles=\{'foo': \.\.\.\}"
    ):
        update(p, {"dW": np.ones(2)}, {"dW": np.zeros(2)}, {"dW": np.zeros(2)})
    ok = guarded(two_states, rule="adam", roles={"foo": "exp_avg", "bar": "second-moment"})
    ok(p, {"dW": np.ones(2)}, {"dW": np.zeros(2)}, {"dW": np.zeros(2)})  # named: checked as adam's states


def test_unknown_state_name_left_alone_is_ignored_with_a_note() -> None:
    def two_states(parameters: Any, grads: Any, foo: Any, bar: Any) -> None:
        return None

    update = guarded(two_states, rule="adam")
    p = {"W": np.ones(2)}
    update(p, {"dW": np.ones(2)}, {"dW": np.zeros(2)}, {"dW": np.zeros(2)})  # nothing moved, nothing wrong
    assert update.guard.notes == [  # type: ignore[attr-defined]
        "'foo' is none of adam's states and the target never changed it; it was ignored",
        "'bar' is none of adam's states and the target never changed it; it was ignored",
    ]


# ---------------------------------------------------------------------------
# Guard.check in a pure loop, on every backend
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch"])
@pytest.mark.parametrize("sample", [None, 3])
def test_guard_check_pure_loop(backend: str, sample: int | None) -> None:
    asarray = _asarray(backend)
    rule = optcheck.rules.get("adam", lr=0.01, amsgrad=True)
    rng = np.random.default_rng(2)
    p = {"W": asarray(rng.normal(size=(4, 5))), "b": asarray(rng.normal(size=(5,)))}
    s = rule.init(p)
    guard = Guard(rule, sample=sample)
    for _ in range(10):
        g = {k: asarray(rng.normal(size=tuple(v.shape))) for k, v in p.items()}
        p2, s2 = rule.step(p, g, s)
        assert guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s}) == []
        p, s = p2, s2
    bad = dict(s2, max_exp_avg_sq={k: v * 0.5 for k, v in s2["max_exp_avg_sq"].items()})
    g = {k: asarray(np.zeros(tuple(v.shape))) for k, v in p.items()}
    p3, s3 = rule.step(p, g, s)
    with pytest.raises(InvariantError) as info:
        guard.check(
            params=p3,
            grads=g,
            state=dict(s3, max_exp_avg_sq=bad["max_exp_avg_sq"]),
            before={"params": p, "state": s},
        )
    v = info.value.violations[0]
    assert v.id == "accumulator-decreased" and v.where == "state['max_exp_avg_sq']['W']"
    assert v.step == 11 and v.sampled == (sample is not None)
    if sample is not None:
        assert "sampled entries" in v.message


def test_sample_always_includes_the_previously_bad_coordinates() -> None:
    guard = Guard("rmsprop", sample=2, seed=0)
    p, g, S0 = np.ones(1000), np.ones(1000), np.zeros(1000)
    # step 1: everything negative, so the 2 random coordinates find some index j
    snap = guard.snapshot(params=p, grads=g, state={"S": S0})
    with pytest.raises(InvariantError) as info:
        guard.check(params=p - 0.01, grads=g, state={"S": np.full(1000, -1.0)}, before=snap)
    (j,) = info.value.violations[0].index
    assert info.value.violations[0].size == 2
    # later steps: only j is negative; 2 random coordinates of 1000 would miss it, the guard does not
    S_bad = np.full(1000, 0.1)
    S_bad[j] = -1.0
    for _ in range(5):
        snap = guard.snapshot(params=p, grads=g, state={"S": S0})
        with pytest.raises(InvariantError) as info:
            guard.check(params=p - 0.01, grads=g, state={"S": S_bad}, before=snap)
        assert info.value.violations[0].index == (j,)
        assert "of 3 sampled entries" in info.value.violations[0].message


def test_seed_loop_in_sample_mode_stops_at_the_same_step() -> None:
    update = guarded(rmsprop_nan.update_parameters_with_rmsprop, rule="rmsprop", alpha=0.9, lr=0.01, sample=8)
    with pytest.raises(InvariantError) as info, np.errstate(invalid="ignore"):
        rmsprop_nan.train(update=update)
    v = info.value.violations[0]
    assert (v.id, v.where, v.step, v.sampled) == ("negative-second-moment", "S['dW1']", 1, True)
    assert "sampled entries < 0" in v.message and v.size is not None and v.size <= 8


def test_shadow_tracks_schedule_scalars_the_user_does_not_keep() -> None:
    rule = optcheck.rules.get("nadam", lr=0.01)
    guard = Guard(rule, shadow=True)
    rng = np.random.default_rng(3)
    p = rng.normal(size=50)
    state = rule.init(p)
    for _ in range(12):
        g = rng.normal(size=50)
        p2, s2 = rule.step(p, g, state)
        before = {"params": p, "state": {"m": state["exp_avg"], "v": state["exp_avg_sq"]}}
        assert (
            guard.check(params=p2, grads=g, state={"m": s2["exp_avg"], "v": s2["exp_avg_sq"]}, before=before)
            == []
        )
        p, state = p2, s2
    # the same loop with Adam's update instead of NAdam's is told apart
    adam = optcheck.rules.get("adam", lr=0.01)
    a2, as2 = adam.step(
        p, g, {"step": state["step"], "exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg_sq"]}
    )
    before = {"params": p, "state": {"m": state["exp_avg"], "v": state["exp_avg_sq"]}}
    with pytest.raises(InvariantError) as info:
        guard.check(params=a2, grads=g, state={"m": as2["exp_avg"], "v": as2["exp_avg_sq"]}, before=before)
    assert info.value.violations[0].id == "differs-from-reference"


def test_every_n_checks_only_every_nth_step() -> None:
    seen: list[int] = []
    guard = Guard("rmsprop", every=3, mode=lambda vs: seen.append(vs[0].step))
    p, S = np.ones(2), np.zeros(2)
    for _ in range(7):
        guard.check(params=p, grads=np.ones(2), state={"S": S - 1.0})
    assert guard.steps == 7 and guard.checked == 3 and seen == [1, 4, 7]


# ---------------------------------------------------------------------------
# Modes and the environment variable
# ---------------------------------------------------------------------------


def _bad_check(guard: Guard) -> list[Violation]:
    return guard.check(params=np.ones(2), grads=np.ones(2), state={"S": np.array([-1.0, 1.0])})


def test_modes(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(InvariantWarning, match=r"S is negative at step 1: 1 of 2 entries < 0") as rec:
        vs = _bad_check(Guard("rmsprop", mode="warn"))
    assert vs and rec[0].filename == __file__
    with caplog.at_level(logging.WARNING, logger="optcheck"):
        assert _bad_check(Guard("rmsprop", mode="log"))
    assert "S is negative at step 1" in caplog.text
    got: list[list[Violation]] = []
    _bad_check(Guard("rmsprop", mode=got.append))
    assert got and got[0][0].id == "negative-second-moment"
    assert _bad_check(Guard("rmsprop", mode="off")) == []


def test_environment_overrides_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTCHECK_GUARD", "off")
    assert _bad_check(Guard("rmsprop", mode="raise")) == []
    monkeypatch.setenv("OPTCHECK_GUARD", "warn")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        _bad_check(Guard("rmsprop"))
    assert rec and issubclass(rec[0].category, InvariantWarning)
    monkeypatch.setenv("OPTCHECK_GUARD", "loud")
    with pytest.raises(
        ValueError,
        match=r"OPTCHECK_GUARD='loud' is invalid; expected one of \['raise', 'warn', 'log', 'off'\]",
    ):
        Guard("rmsprop")


# ---------------------------------------------------------------------------
# Construction errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rule": "rmsprp"}, r"unknown rule 'rmsprp'; expected one of \[.*'rmsprop'.*\]"),
        ({"rule": "adam", "roles": {"S": "square"}}, r"roles\['S'\] = 'square' is neither a adam state"),
        ({"roles": {"S": "square"}}, r"roles\['S'\] = 'square' is not a role; expected one of \["),
        ({"rule": "adam", "betas1": 0.9}, r"adam: unknown hyperparameter\(s\) \['betas1'\]"),
        ({"lr": 0.1}, r"hyperparameters \['lr'\] were given without a rule"),
        ({"rule": "adam", "mode": "loud"}, r"mode='loud' is invalid"),
        ({"rule": "adam", "every": 0}, r"every=0 is invalid; expected a whole number >= 1"),
        ({"rule": "adam", "sample": 0}, r"sample=0 is invalid"),
        ({"shadow": True}, r"shadow=True needs a rule"),
        ({"rule": "adam", "skip": ["nan"]}, r"skip names unknown invariant\(s\) \['nan'\]"),
        (
            {"rule": "adam", "overrides": {"b1": {"decay": 0}}},
            r"overrides\['b1'\] has unknown hyperparameter",
        ),
    ],
)
def test_construction_errors(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Guard(**kwargs)


def test_guard_never_mutates_or_keeps_user_arrays() -> None:
    import gc
    import weakref

    rule = optcheck.rules.get("rmsprop", lr=0.01)
    p = {"W": np.array([1.0, -2.0])}
    g = {"W": np.array([0.5, 0.5])}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    copies = [x.copy() for x in (p["W"], g["W"], p2["W"], s2["square_avg"]["W"])]
    guard = Guard(rule, shadow=True)
    guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s})
    for x, c in zip((p["W"], g["W"], p2["W"], s2["square_avg"]["W"]), copies, strict=True):
        np.testing.assert_array_equal(x, c)
    ref = weakref.ref(p2["W"])
    del p2, s2
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------------------
# trap
# ---------------------------------------------------------------------------


def test_trap_names_the_users_source_line() -> None:
    with pytest.raises(InvariantError) as info, trap():
        rmsprop_nan.train()
    msg = str(info.value)
    assert msg.startswith("numpy: invalid value encountered in sqrt at ")
    assert msg.endswith(
        'rmsprop_nan.py:51: parameters[W] = parameters[W] - learning_rate * (dW / np.sqrt(S["d" + W]) + epsilon)'
    )
    assert isinstance(info.value, FloatingPointError)


def test_trap_restores_numpy_state_and_is_a_decorator() -> None:
    before = np.geterr()

    @trap()
    def divide() -> Any:
        return np.array([1.0]) / np.array([0.0])

    with pytest.raises(InvariantError, match="divide by zero"):
        divide()
    assert np.geterr() == before
    with trap(divide=False):
        assert np.isinf(np.array([1.0]) / np.array([0.0])).all()
    with pytest.raises(ValueError, match=r"invalid=1 is invalid; expected True or False"), trap(invalid=1):  # type: ignore[arg-type]
        pass


# ---------------------------------------------------------------------------
# The fast path: clean steps build no record; the screens never change the answer
# ---------------------------------------------------------------------------


def _no_precise(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: Guard, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a clean step went down the precise path")

    monkeypatch.setattr(Guard, "_precise", fail)


@pytest.mark.parametrize("sample", [None, 5])
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch"])
def test_clean_steps_are_screened_without_building_records(
    monkeypatch: pytest.MonkeyPatch, backend: str, sample: int | None
) -> None:
    asarray = _asarray(backend)
    _no_precise(monkeypatch)
    rule = optcheck.rules.get("adam", lr=0.01, amsgrad=True)
    rng = np.random.default_rng(4)
    p = {"W": asarray(rng.normal(size=(4, 5))), "b": asarray(rng.normal(size=(50,)))}
    s = rule.init(p)
    guard = Guard(rule, sample=sample)
    for _ in range(8):
        # some exact zeros in the gradient: the momentum keeps those coordinates moving
        g = {
            k: asarray(rng.normal(size=tuple(v.shape)) * (rng.random(tuple(v.shape)) > 0.2))
            for k, v in p.items()
        }
        p2, s2 = rule.step(p, g, s)
        assert guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s}) == []
        p, s = p2, s2
    assert guard.checked == 8


@pytest.mark.parametrize("sample", [None, 8])
def test_guarded_course_loop_is_screened_without_building_records(
    monkeypatch: pytest.MonkeyPatch, sample: int | None
) -> None:
    _no_precise(monkeypatch)
    update = guarded(
        rmsprop_fixed.update_parameters_with_rmsprop,
        rule="rmsprop",
        alpha=0.9,
        lr=0.01,
        sample=sample,
        **COURSE_DECAY,
    )
    rmsprop_nan.train(update=update, steps=20)
    assert update.guard.checked == 20  # type: ignore[attr-defined]


def _records(vs: list[Violation]) -> list[dict[str, Any]]:
    return [v.to_dict() for v in vs]


@pytest.mark.parametrize("sample", [None, 7, 64])
@pytest.mark.parametrize("before_kind", ["dict", "snapshot", "none"])
def test_guard_screens_never_change_the_answer(sample: int | None, before_kind: str) -> None:
    """Two guards with the same seed, one with the fast path switched off, over corrupted steps."""
    rule = optcheck.rules.get("adam", lr=0.01, amsgrad=True)
    rng = np.random.default_rng(5)
    p = {"W": rng.normal(size=(30, 20)).astype(np.float32), "b": rng.normal(size=(20,)).astype(np.float32)}
    s = rule.init(p)
    fast, slow = (Guard(rule, sample=sample, seed=1, mode=lambda vs: None) for _ in range(2))
    slow._fast = lambda *a: (False, None)  # type: ignore[method-assign]
    kinds = ["none", "nan", "inf", "negative", "-0.0", "jump", "decrease", "step", "none"]
    for t in range(3 * len(kinds)):
        kind = kinds[t % len(kinds)]
        g = {
            k: (rng.normal(size=v.shape) * (rng.random(v.shape) > 0.2)).astype(np.float32)
            for k, v in p.items()
        }
        p2, s2 = rule.step(p, g, s)
        new_p, new_s = dict(p2), {k: (dict(v) if isinstance(v, dict) else v) for k, v in s2.items()}
        j = int(rng.integers(0, 600))
        w = new_p["W"].copy().reshape(-1)
        v = new_s["exp_avg_sq"]["W"].copy().reshape(-1)
        mx = new_s["max_exp_avg_sq"]["W"].copy().reshape(-1)
        with np.errstate(all="ignore"):
            if kind in ("nan", "inf"):
                w[j] = np.nan if kind == "nan" else np.inf
            elif kind in ("negative", "-0.0"):
                v[j] = -1e-3 if kind == "negative" else -0.0
            elif kind == "jump":
                w[j] += 1.0
            elif kind == "decrease":
                mx[j] *= 0.5
            elif kind == "step":
                new_s["step"] += 1
        new_p["W"] = w.reshape(30, 20)
        new_s["exp_avg_sq"]["W"] = v.reshape(30, 20)
        new_s["max_exp_avg_sq"]["W"] = mx.reshape(30, 20)
        found = []
        for guard in (fast, slow):
            if before_kind == "snapshot":
                before: Any = guard.snapshot(params=p, grads=g, state=s)
            else:
                before = {"params": p, "state": s} if before_kind == "dict" else None
            found.append(_records(guard.check(params=new_p, grads=g, state=new_s, before=before)))
        assert found[0] == found[1], (t, kind)
        p, s = p2, s2


def test_a_changed_tree_structure_is_validated_again() -> None:
    """The fast path remembers where the arrays sit per tree structure; a new structure is resolved anew."""
    rule = optcheck.rules.get("rmsprop", lr=0.01)
    guard = Guard(rule)
    p = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    g = {"W": np.full((2, 2), 0.5), "b": np.full(2, 0.1)}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    assert guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s}) == []
    with pytest.raises(ValueError, match=r"missing key\(s\) \['b'\]"):
        guard.check(params=p2, grads={"W": g["W"]}, state=s2, before={"params": p, "state": s})
    # keys in another order, then a leaf given as a list: the same answers as a fresh guard
    g_reordered = {"b": g["b"], "W": g["W"]}
    assert guard.check(params=p2, grads=g_reordered, state=s2, before={"params": p, "state": s}) == []
    bad = dict(s2, square_avg={"W": s2["square_avg"]["W"], "b": [-1.0, 0.5]})
    with pytest.raises(InvariantError) as info:
        guard.check(params=p2, grads=g, state=bad, before={"params": p, "state": s})
    with pytest.raises(InvariantError) as fresh:
        Guard(rule).check(params=p2, grads=g, state=bad, before={"params": p, "state": s})
    assert str(info.value) == str(fresh.value)
    assert info.value.violations[0].where == "state['square_avg']['b']"


@pytest.mark.parametrize("sample", [None, 2])
def test_screened_steps_keep_no_reference_to_user_arrays(sample: int | None) -> None:
    import gc
    import weakref

    rule = optcheck.rules.get("adam", lr=0.01)
    p = {"W": np.array([1.0, -2.0, 0.5])}
    g = {"W": np.array([0.5, 0.5, -0.25])}
    s = rule.init(p)
    p2, s2 = rule.step(p, g, s)
    guard = Guard(rule, sample=sample)
    assert guard.check(params=p2, grads=g, state=s2, before={"params": p, "state": s}) == []
    refs = [weakref.ref(x) for x in (p2["W"], s2["exp_avg"]["W"], s2["exp_avg_sq"]["W"], g["W"])]
    del p2, s2, g
    gc.collect()
    assert [r() for r in refs] == [None] * 4


# ---------------------------------------------------------------------------
# guarded reads the hyperparameters the call passes
# ---------------------------------------------------------------------------


def _course_adam_l2(
    parameters: Any,
    grads: Any,
    v: Any,
    s: Any,
    t: int,
    learning_rate: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    lambd: float = 0.7,
    m: int = 32,
) -> Any:
    """The course's Adam with the L2 term of the cost, (λ/m)·W on the weights only: correct."""
    for k in parameters:
        g = grads["d" + k] + ((lambd / m) * parameters[k] if k.startswith("W") else 0.0)
        v["d" + k] = beta1 * v["d" + k] + (1 - beta1) * g
        s["d" + k] = beta2 * s["d" + k] + (1 - beta2) * g**2
        v_hat = v["d" + k] / (1 - beta1**t)
        s_hat = s["d" + k] / (1 - beta2**t)
        parameters[k] = parameters[k] - learning_rate * v_hat / (np.sqrt(s_hat) + epsilon)
    return parameters, v, s


def test_guarded_course_l2_adam_has_no_false_alarm_in_the_shadow_check() -> None:
    """The audit binds λ and m from the signature; the guard reads them from the call the same way."""
    rng = np.random.default_rng(3)
    params = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=(4, 1)), "W2": rng.normal(size=(1, 4))}
    update = guarded(_course_adam_l2, rule="adam", shadow=True)
    v = {"d" + k: np.zeros_like(x) for k, x in params.items()}
    s = {"d" + k: np.zeros_like(x) for k, x in params.items()}
    for t in range(1, 6):
        grads = {"d" + k: rng.normal(size=x.shape) for k, x in params.items()}
        params, v, s = update(params, grads, v, s, t, learning_rate=0.02)
    guard = update.guard  # type: ignore[attr-defined]
    assert guard.checked == 5 and guard.violations == []
    assert guard.rule.lr == 0.02 and guard.rule.weight_decay == pytest.approx(0.7 / 32)
    assert guard.overrides[("b1",)].weight_decay == 0.0 and ("W2",) not in guard.overrides


def test_guarded_course_l2_adam_with_the_decay_on_the_biases_too_is_flagged() -> None:
    def decays_biases(
        parameters: Any, grads: Any, v: Any, s: Any, t: int, lambd: float = 0.7, m: int = 32
    ) -> Any:
        for k in parameters:
            g = grads["d" + k] + (lambd / m) * parameters[k]  # the biases are decayed too
            v["d" + k] = 0.9 * v["d" + k] + 0.1 * g
            s["d" + k] = 0.999 * s["d" + k] + 0.001 * g**2
            parameters[k] = parameters[k] - 0.01 * (v["d" + k] / (1 - 0.9**t)) / (
                np.sqrt(s["d" + k] / (1 - 0.999**t)) + 1e-8
            )
        return parameters, v, s

    rng = np.random.default_rng(4)
    params = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=(4, 1)) + 5.0}
    update = guarded(decays_biases, rule="adam", lr=0.01, shadow=True)
    v = {"d" + k: np.zeros_like(x) for k, x in params.items()}
    s = {"d" + k: np.zeros_like(x) for k, x in params.items()}
    grads = {"d" + k: 1e-3 * rng.normal(size=x.shape) for k, x in params.items()}
    with pytest.raises(InvariantError, match=r"parameters\['b1'\] differs from adam"):
        update(params, grads, v, s, 1)


def test_two_spellings_in_the_call_must_agree() -> None:
    def upd(parameters: Any, grads: Any, lr: float = 0.01, learning_rate: float = 0.02) -> None:
        return None

    with pytest.raises(ValueError, match=r"lr=0\.01 and the call's learning_rate=0\.02 both set lr"):
        guarded(upd, rule="sgd")({"W": np.ones(2)}, {"dW": np.ones(2)})
