"""Tests of optcheck.gradcheck: the finite-difference gradient checker.

* a bank of smooth functions with known gradients passes under every method;
* a bank of seeded bugs fails and names the right key and index;
* kinks, nondeterminism, float32 noise, the modes, the budget and localisation;
* a table of bad inputs with their pinned messages;
* Hypothesis: random polynomials and compositions with exact gradients pass, and a relative
  perturbation of 1e-4 in one coordinate fails and names that coordinate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import optcheck
from optcheck.gradcheck import GradientError, GradientReport, check_gradient, check_vjp, step_sweep

METHODS = ["auto", "central", "richardson"]
Array = np.ndarray[Any, Any]


# ------------------------------------------------------------------------------------------------
# the bank of smooth functions with known gradients
# ------------------------------------------------------------------------------------------------


def softmax(z: Array, axis: int) -> Array:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_rng = np.random.default_rng(20240601)

# softmax cross-entropy of a linear classifier, W of shape (D, C), data X (N, D)
N_CE, D_CE, C_CE = 20, 5, 4
X_CE = _rng.normal(size=(N_CE, D_CE))
Y_CE = np.eye(C_CE)[_rng.integers(0, C_CE, size=N_CE)]
W_CE = _rng.normal(size=(D_CE, C_CE)) * 0.5


def ce_loss(W: Array) -> Any:
    P = softmax(X_CE @ W, axis=1)
    return -np.sum(Y_CE * np.log(P)) / N_CE


def ce_grad(W: Array, *, scale: float = 1.0 / N_CE) -> Array:
    return X_CE.T @ (softmax(X_CE @ W, axis=1) - Y_CE) * scale


# a two-layer network in course style: parameters["W1"], ..., L2 regularisation on the weights
N_IN, N_H, N_OUT, M = 4, 6, 3, 10
X_NET = _rng.normal(size=(N_IN, M))
Y_NET = np.eye(N_OUT)[:, _rng.integers(0, N_OUT, size=M)]
LAMBD = 0.7
PARAMS = {
    "W1": _rng.normal(size=(N_H, N_IN)) * 0.5,
    "b1": _rng.normal(size=(N_H, 1)) * 0.1,
    "W2": _rng.normal(size=(N_OUT, N_H)) * 0.5,
    "b2": _rng.normal(size=(N_OUT, 1)) * 0.1,
}


def net_loss(p: dict[str, Array]) -> Any:
    A1 = np.tanh(p["W1"] @ X_NET + p["b1"])
    A2 = softmax(p["W2"] @ A1 + p["b2"], axis=0)
    cost = -np.sum(Y_NET * np.log(A2)) / M
    return cost + LAMBD / (2 * M) * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))


def net_grad(p: dict[str, Array], bug: str | None = None) -> dict[str, Array]:
    Z1 = p["W1"] @ X_NET + p["b1"]
    A1 = np.tanh(Z1)
    A2 = softmax(p["W2"] @ A1 + p["b2"], axis=0)
    dZ2 = A2 - Y_NET
    dW2 = dZ2 @ A1.T / M + LAMBD / M * p["W2"]
    db2 = np.sum(dZ2, axis=1, keepdims=True) / M
    if bug == "bias-not-summed":
        db2 = dZ2[:, :1] / M  # the first example's gradient instead of the sum over the batch
    dA1 = p["W2"].T @ dZ2
    dZ1 = dA1 * ((1 - Z1**2) if bug == "activation" else (1 - A1**2))  # tanh' is 1 - tanh²
    dW1 = dZ1 @ X_NET.T / M + (0.0 if bug == "no-regularisation" else LAMBD / M * p["W1"])
    db1 = np.sum(dZ1, axis=1, keepdims=True) / M
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# logsumexp with inputs in the hundreds (its gradient, softmax, has entries down to e^-200)
X_LSE = _rng.uniform(100.0, 300.0, size=40)


def lse(x: Array) -> Any:
    m = x.max()
    return m + np.log(np.sum(np.exp(x - m)))


def lse_grad(x: Array) -> Array:
    return softmax(x, axis=0)


# Rosenbrock in n dimensions
def rosen(x: Array) -> Any:
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_grad(x: Array) -> Array:
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


# batch normalisation (training mode), checked as a layer with check_vjp
B_BN, F_BN = 8, 3
BN_PARAMS = {
    "x": _rng.normal(size=(B_BN, F_BN)) * 2.0 + 1.0,
    "gamma": _rng.normal(size=F_BN),
    "beta": _rng.normal(size=F_BN),
}
DOUT_BN = _rng.normal(size=(B_BN, F_BN))


def batchnorm(p: dict[str, Array], eps: float = 1e-5) -> Array:
    x = p["x"]
    return p["gamma"] * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + p["beta"]


def batchnorm_backward(
    p: dict[str, Array], dout: Array, eps: float = 1e-5, bug: bool = False
) -> dict[str, Array]:
    x = p["x"]
    std = np.sqrt(x.var(0) + eps)
    xhat = (x - x.mean(0)) / std
    n = x.shape[0]
    dxhat = dout * p["gamma"]
    if bug:  # forgets the path through the batch variance
        dx = (n * dxhat - dxhat.sum(0)) / (n * std)
    else:
        dx = (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (n * std)
    return {"x": dx, "gamma": (dout * xhat).sum(0), "beta": dout.sum(0)}


# a logistic loss computed entirely in float32 (data, parameters and arithmetic)
X_F32 = _rng.normal(size=(200, 10)).astype(np.float32)
Y_F32 = np.where(_rng.random(200) > 0.5, 1.0, -1.0).astype(np.float32)
W_F32 = (_rng.normal(size=10) * 0.3).astype(np.float32)


def logistic32(w: Array) -> Any:
    z = Y_F32 * (X_F32 @ np.asarray(w, dtype=np.float32))
    return np.mean(np.logaddexp(np.float32(0.0), -z))


def logistic32_grad(w: Array) -> Array:
    z = Y_F32 * (X_F32 @ np.asarray(w, dtype=np.float32))
    s = np.float32(1.0) / (np.float32(1.0) + np.exp(z))
    return -(X_F32.T @ (Y_F32 * s)) / np.float32(len(Y_F32))


def cubic(a: Any) -> Any:
    return a**3 + np.sin(a)


def cubic_grad(a: Any) -> Any:
    return 3 * a**2 + np.cos(a)


SMOOTH: dict[str, tuple[Callable[[Any], Any], Any, Any]] = {
    "softmax cross-entropy": (ce_loss, W_CE, ce_grad),
    "two-layer network (dict)": (net_loss, PARAMS, net_grad),
    "logsumexp, inputs in the hundreds": (lse, X_LSE, lse_grad),
    "0-d parameter (float)": (cubic, 0.7, cubic_grad),
    "0-d parameter (0-d array)": (cubic, np.array(-1.3), cubic_grad),
    "float32 logistic loss": (logistic32, W_F32, logistic32_grad),
    "nested dict": (
        lambda p: np.sum(p["enc"]["W"] ** 2) * p["scale"],
        {"enc": {"W": np.arange(1.0, 5.0).reshape(2, 2)}, "scale": np.array(1.5)},
        lambda p: {"enc": {"W": 2 * p["enc"]["W"] * p["scale"]}, "scale": np.sum(p["enc"]["W"] ** 2)},
    ),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(SMOOTH))
def test_smooth_bank_passes(name: str, method: str) -> None:
    f, x, grad = SMOOTH[name]
    report = check_gradient(f, x, grad, method=method)
    assert report.passed, str(report)
    assert report.failures == ()
    assert report.complete
    assert report.mode == "full"
    assert report.checked == sum(c.size for c in report.coverage)


@pytest.mark.parametrize("method", METHODS)
def test_batchnorm_layer_passes_with_check_vjp(method: str) -> None:
    report = check_vjp(batchnorm, BN_PARAMS, DOUT_BN, lambda p: batchnorm_backward(p, DOUT_BN), method=method)
    assert report.passed, str(report)
    assert [c.key for c in report.coverage] == ["x['x']", "x['gamma']", "x['beta']"]


def test_batchnorm_missing_variance_path_fails_in_x_only() -> None:
    report = check_vjp(batchnorm, BN_PARAMS, DOUT_BN, lambda p: batchnorm_backward(p, DOUT_BN, bug=True))
    assert not report.passed
    assert {e.key for e in report.failures} == {"x['x']"}


def test_rosenbrock_10000_passes_in_directional_mode() -> None:
    x = np.random.default_rng(3).uniform(-1.0, 2.0, size=10_000)
    report = check_gradient(rosen, x, rosen_grad(x))
    assert report.passed, str(report)
    assert report.mode == "directional"
    assert report.evaluations < 40


def test_numerical_gradient_is_accurate_in_float64() -> None:
    """The numbers behind the verdicts: accuracy of report.numeric against the exact gradient."""
    exact = ce_grad(W_CE)
    for method, bound in (("central", 1e-9), ("richardson", 1e-12), ("complex-step", 1e-14)):
        report = check_gradient(ce_loss, W_CE, exact, method=method)
        err = np.max(np.abs(report.numeric - exact)) / np.max(np.abs(exact))  # relative to the largest entry
        assert err < bound, (method, err)


def _flat(tree: Any) -> Array:
    if isinstance(tree, dict):
        return np.concatenate([_flat(tree[k]) for k in tree])
    return np.ravel(np.asarray(tree, dtype=np.float64))


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("softmax cross-entropy", 1e-12),
        ("two-layer network (dict)", 1e-12),
        # f ≈ 300 rounds to 3e-14 while the largest entry is about 1: round-off sets the floor
        ("logsumexp, inputs in the hundreds", 2e-12),
    ],
)
def test_richardson_is_accurate_and_its_predicted_errors_hold(name: str, bound: float) -> None:
    """Richardson's table (to O(h^8), steps set per array) against the exact gradient, entry by entry."""
    f, x, grad = SMOOTH[name]
    exact = _flat(grad(x))
    report = check_gradient(f, x, grad, method="richardson", mode="full")
    numeric = _flat(report.numeric)
    err = np.abs(numeric - exact)
    assert np.max(err) / np.max(np.abs(exact)) < bound
    # the entries the report lists as worst (largest discrepancy against their tolerance): the
    # predicted error covers the actual error with the verdict's margin
    predicted = np.array([e.predicted_error for e in report.worst if e.index is not None])
    assert predicted.size and np.all(np.isfinite(predicted))
    for e in report.worst:
        assert abs(e.numeric - e.analytic) <= 10 * e.predicted_error, e
    # a modest cost: about 8 evaluations per entry once each array has found its step
    assert report.evaluations <= 10 * exact.size + 40


def test_central_takes_a_balanced_step_where_f_varies_on_a_shorter_scale_than_x() -> None:
    """logsumexp at inputs in the hundreds: h = eps^(1/3)·|x_i| ≈ 2e-3 is far too large for an f
    that varies on the scale 1; the truncation measured from h and 2h sets a third step."""
    exact = lse_grad(X_LSE)
    default = check_gradient(lse, X_LSE, exact, method="central")
    err = np.max(np.abs(default.numeric - exact)) / np.max(np.abs(exact))
    assert err < 1e-9  # the prescribed step alone gives about 1e-7
    # the refined step makes the check sharper: a relative error of 1e-6 in the largest entry is
    # below what the prescribed step can resolve (its truncation, about 5e-8, times kappa)
    top = int(np.argmax(exact))
    bad = exact.copy()
    bad[top] *= 1 + 1e-6
    report = check_gradient(lse, X_LSE, bad, method="central")
    assert [e.index for e in report.failures] == [(top,)], str(report)
    h_default = np.finfo(np.float64).eps ** (1 / 3) * abs(X_LSE[top])
    assert report.failures[0].step < h_default / 4


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_steps_near_the_edge_of_the_domain_of_f(method: str) -> None:
    """log(x) with x down to 1e-5: the larger steps leave the domain (f is nan there). Central
    differences estimate the truncation from h/2 instead of 2h (and then refine the step);
    Richardson moves its window down until f is finite. Both still catch a relative error of 1e-3."""

    def f(v: Array) -> Any:
        with np.errstate(invalid="ignore"):
            return np.sum(np.log(v))

    x = np.array([0.01, 0.1, 1.0, 100.0, 1e-5])
    report = check_gradient(f, x, 1 / x, method=method)
    assert report.passed, str(report)
    assert report.complete
    bad = 1 / x
    bad[0] *= 1 + 1e-3
    report = check_gradient(f, x, bad, method=method)
    assert [e.index for e in report.failures] == [(0,)], str(report)


# ------------------------------------------------------------------------------------------------
# the bank of seeded bugs: each fails and names the right key and index
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_missing_one_over_n_fails_everywhere_with_a_factor_hint(method: str) -> None:
    report = check_gradient(ce_loss, W_CE, lambda W: ce_grad(W, scale=1.0), method=method)
    assert not report.passed
    assert len(report.failures) == W_CE.size
    assert {e.index for e in report.failures} == set(np.ndindex(W_CE.shape))
    assert any(f"{N_CE:.4g} x the numerical gradient" in h for h in report.hints), report.hints


@pytest.mark.parametrize(
    ("bug", "keys"),
    [
        ("no-regularisation", {"x['W1']"}),
        ("activation", {"x['W1']", "x['b1']"}),
        ("bias-not-summed", {"x['b2']"}),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_network_bugs_name_the_right_arrays(bug: str, keys: set[str], method: str) -> None:
    report = check_gradient(net_loss, PARAMS, lambda p: net_grad(p, bug), method=method)
    assert not report.passed
    assert {e.key for e in report.failures} == keys
    good = net_grad(PARAMS)
    bad = net_grad(PARAMS, bug)
    for e in report.failures:
        key = e.key[len("x['") : -2]
        assert e.index is not None
        assert e.numeric == pytest.approx(good[key][e.index], rel=1e-5, abs=1e-9)
    # exactly the wrong entries are named, every one of them
    named = {(e.key, e.index) for e in report.failures}
    wrong = {
        (f"x['{key}']", tuple(int(i) for i in idx))
        for key in good
        for idx in zip(*np.nonzero(~np.isclose(good[key], bad[key], rtol=1e-6, atol=0)), strict=True)
    }
    assert named == wrong


@pytest.mark.parametrize("method", ["auto", "central"])
def test_one_corrupted_coordinate_among_10000_is_named(method: str) -> None:
    x = np.random.default_rng(4).uniform(-1.0, 2.0, size=10_000)
    g = rosen_grad(x)
    g[1234] *= 1 + 1e-3
    report = check_gradient(rosen, x, g, method=method)
    assert not report.passed
    assert report.mode == "directional"
    assert [(e.key, e.index) for e in report.failures] == [("x", (1234,))]
    assert report.evaluations < 200


def test_one_corrupted_coordinate_among_a_million_is_found_with_few_evaluations() -> None:
    rng = np.random.default_rng(5)
    x, a = rng.uniform(-1.0, 2.0, size=1_000_000), rng.normal(size=1_000_000)

    def quartic(v: Array) -> Any:  # cheap to evaluate: keeps this test fast
        v2 = v * v
        return np.sum(v2 * (0.25 * v2 - 1.0) + a * v)

    g = x * x * x - 2.0 * x + a
    g[654_321] *= 1 + 1e-3
    report = check_gradient(quartic, x, g, method="central")
    assert [(e.key, e.index) for e in report.failures] == [("x", (654_321,))]
    assert report.evaluations < 500
    assert "group testing" in report.coverage[0].note


def test_corrupted_entry_in_a_dict_of_matrices_is_localised_to_key_and_index() -> None:
    rng = np.random.default_rng(6)
    p = {"W1": rng.normal(size=(60, 50)), "b1": rng.normal(size=(60, 1))}

    def f(q: dict[str, Array]) -> Any:
        return np.sum(np.tanh(q["W1"]) ** 2) + np.sum(q["b1"] ** 3)

    g = {"W1": 2 * np.tanh(p["W1"]) * (1 - np.tanh(p["W1"]) ** 2), "b1": 3 * p["b1"] ** 2}
    g["W1"][17, 42] *= 1.001
    report = check_gradient(f, p, g)
    assert report.mode == "directional"
    assert [(e.key, e.index) for e in report.failures] == [("x['W1']", (17, 42))]


def test_non_finite_analytic_entries_fail_without_evaluations() -> None:
    x = np.array([1.0, 2.0, 3.0])
    g = 2 * x
    g[1] = np.nan
    report = check_gradient(lambda v: np.sum(v**2), x, g)
    assert [e.index for e in report.failures] == [(1,)]
    assert "not finite" in report.failures[0].note


# ------------------------------------------------------------------------------------------------
# kinks
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_relu_at_zero_with_subgradient_zero_passes_as_a_kink(method: str) -> None:
    x = np.array([0.0, 1.5, -2.0])
    report = check_gradient(lambda v: np.sum(np.maximum(v, 0.0)), x, np.array([0.0, 1.0, 0.0]), method=method)
    assert report.passed, str(report)
    assert [e.index for e in report.nondifferentiable] == [(0,)]
    lo, hi = report.nondifferentiable[0].interval  # type: ignore[misc]
    assert lo == pytest.approx(0.0, abs=1e-6) and hi == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("analytic", [0.0, 1.0, -1.0, 0.3])
def test_abs_at_zero_accepts_any_subgradient(analytic: float) -> None:
    report = check_gradient(lambda v: np.sum(np.abs(v)), np.array([0.0, 2.0]), np.array([analytic, 1.0]))
    assert report.passed, str(report)
    assert [e.index for e in report.nondifferentiable] == [(0,)]


@pytest.mark.parametrize("analytic", [2.0, -1.5])
def test_abs_at_zero_with_a_value_outside_the_one_sided_derivatives_fails(analytic: float) -> None:
    report = check_gradient(lambda v: np.sum(np.abs(v)), np.array([0.0, 2.0]), np.array([analytic, 1.0]))
    assert not report.passed
    (e,) = report.failures
    assert e.index == (0,) and e.interval is not None
    assert e.interval[0] == pytest.approx(-1.0) and e.interval[1] == pytest.approx(1.0)
    assert "outside" in e.note


def test_kink_near_but_not_at_x_still_judges_the_correct_side() -> None:
    h = np.finfo(np.float64).eps ** (1 / 3)
    x = np.array([0.5 * h])  # |x - 0| < h: the central difference straddles the kink
    assert check_gradient(lambda v: np.sum(np.abs(v)), x, np.array([1.0]), method="central").passed
    assert not check_gradient(lambda v: np.sum(np.abs(v)), x, np.array([-1.0]), method="central").passed


# ------------------------------------------------------------------------------------------------
# nondeterminism and noise
# ------------------------------------------------------------------------------------------------


def test_nondeterministic_f_fails_immediately_with_a_message() -> None:
    rng = np.random.default_rng(7)
    x = np.random.default_rng(8).normal(size=10)

    def dropout_loss(v: Array) -> Any:
        mask = rng.random(v.shape) > 0.5  # a fresh mask on every call
        return np.sum((v * mask) ** 2)

    report = check_gradient(dropout_loss, x, 2 * x)
    assert not report.passed
    assert report.evaluations == 2
    assert report.failures == ()
    assert "f is not deterministic" in report.message
    assert "not deterministic" in str(report)
    with pytest.raises(GradientError, match="not deterministic"):
        optcheck.assert_gradient(dropout_loss, x, 2 * x)


def test_float32_function_is_judged_by_its_measured_noise() -> None:
    report = check_gradient(logistic32, W_F32, logistic32_grad, method="central")
    assert report.passed, str(report)
    relative_noise = report.noise / abs(report.f_value)
    assert 1e-9 < relative_noise < 1e-5  # float32 round-off, measured (not assumed from a dtype)
    assert "float32" in str(report)
    # the same loss computed in float64 has float64 noise
    report64 = check_gradient(
        lambda w: np.mean(np.logaddexp(0.0, -Y_F32.astype(np.float64) * (X_F32.astype(np.float64) @ w))),
        W_F32.astype(np.float64),
        lambda w: -(X_F32.T.astype(np.float64) @ (Y_F32 / (1 + np.exp(Y_F32 * (X_F32 @ w))))) / len(Y_F32),
        method="central",
    )
    assert report64.noise / abs(report64.f_value) < 1e-13


def test_float32_function_still_catches_a_real_bug() -> None:
    g = logistic32_grad(W_F32)
    g[3] *= 1.05
    report = check_gradient(logistic32, W_F32, g)
    assert [e.index for e in report.failures] == [(3,)]


def test_auto_prefers_the_complex_step_and_says_why() -> None:
    report = check_gradient(ce_loss, W_CE, ce_grad)
    assert report.method == "complex-step"
    assert "complex" in report.method_reason
    abs_report = check_gradient(
        lambda v: np.sum(np.abs(v) ** 3), np.array([1.0, -2.0]), lambda v: 3 * v * np.abs(v)
    )
    assert abs_report.method == "central"
    assert "not usable" in abs_report.method_reason
    assert abs_report.passed


def test_explicit_complex_step_on_a_non_analytic_f_is_refused() -> None:
    with pytest.raises(ValueError, match="method='complex-step' needs f to accept complex x"):
        check_gradient(lambda v: float(np.sum(v**2)), np.ones(3), 2 * np.ones(3), method="complex-step")


# ------------------------------------------------------------------------------------------------
# modes, budget, report
# ------------------------------------------------------------------------------------------------


def test_sample_mode_checks_k_entries_of_every_array() -> None:
    report = check_gradient(net_loss, PARAMS, net_grad, mode="sample", samples=3)
    assert report.passed
    assert [c.coordinates for c in report.coverage] == [3, 3, 3, 3]
    assert np.sum(np.isfinite(report.numeric["W1"])) == 3


def test_directional_mode_covers_every_array_and_falls_back_to_entries_for_tiny_ones() -> None:
    report = check_gradient(net_loss, PARAMS, net_grad, mode="directional", directions=3)
    assert report.passed
    by_key = {c.key: c for c in report.coverage}
    assert by_key["x['W1']"].directions == 3
    assert by_key["x['b2']"].coordinates == 3  # three entries: checked one by one


def test_max_evaluations_caps_the_cost_and_the_report_says_what_was_covered() -> None:
    x = np.linspace(-1.0, 1.0, 300)
    report = check_gradient(rosen, x, rosen_grad(x), mode="full", method="central", max_evaluations=50)
    assert report.evaluations <= 50
    assert not report.complete
    assert 0 < report.checked < 300
    assert "max_evaluations=50 was reached" in str(report)


def test_auto_switches_to_directional_when_full_would_exceed_the_budget() -> None:
    report = check_gradient(net_loss, PARAMS, net_grad, max_evaluations=40)
    assert report.mode == "directional"
    assert report.evaluations <= 40
    assert report.passed


def test_report_renders_and_serialises() -> None:
    report = check_gradient(net_loss, PARAMS, lambda p: net_grad(p, "bias-not-summed"))
    text = str(report)
    assert text.startswith("Gradient check FAILED: 3 entries disagree (x['b2']")
    for line in ("Checked     :", "Method      :", "Step        :", "Noise of f  :", "Verdict rule:"):
        assert line in text
    assert "x['b2'][0, 0]" in text
    d = report.to_dict()
    json.dumps(d)  # plain Python values only
    assert d["passed"] is False and d["failures"][0]["key"] == "x['b2']"
    assert isinstance(report, GradientReport) and not report


def test_inputs_are_never_mutated_even_if_f_mutates_its_argument() -> None:
    x = {"W": np.arange(6.0).reshape(2, 3)}
    grad = {"W": 2 * x["W"]}
    x_before, g_before = x["W"].copy(), grad["W"].copy()

    def f(p: dict[str, Array]) -> Any:
        value = np.sum(p["W"] ** 2)
        p["W"] *= 0  # hostile: clobbers its input
        return value

    assert check_gradient(f, x, grad).passed
    np.testing.assert_array_equal(x["W"], x_before)
    np.testing.assert_array_equal(grad["W"], g_before)


def test_assert_gradient_raises_gradient_error_with_the_report() -> None:
    assert optcheck.assert_gradient(ce_loss, W_CE, ce_grad).passed
    with pytest.raises(GradientError) as info:
        optcheck.assert_gradient(ce_loss, W_CE, lambda W: ce_grad(W, scale=1.0))
    assert isinstance(info.value, AssertionError)
    assert not info.value.report.passed
    assert str(info.value).startswith("Gradient check FAILED")


def test_step_sweep_shows_the_v() -> None:
    sweep = step_sweep(ce_loss, W_CE, ce_grad)
    k_small = int(np.argmin(np.abs(sweep.steps - 1e-13)))
    k_default = int(np.argmin(np.abs(sweep.steps - sweep.default_step)))
    k_large = int(np.argmin(np.abs(sweep.steps - 1e-1)))
    assert sweep.central[k_default] < 1e-3 * sweep.central[k_small]
    assert sweep.central[k_default] < 1e-3 * sweep.central[k_large]
    assert 1e-8 < sweep.best_step < 1e-3
    assert sweep.complex is not None and np.max(sweep.complex[sweep.steps <= 1e-6]) < 1e-13
    assert "Step sweep for x[" in str(sweep)


def test_step_sweep_selects_key_and_index_and_plots() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    sweep = step_sweep(net_loss, PARAMS, net_grad, key="W2", index=(1, 2))
    assert sweep.where == "x['W2'][1, 2]"
    assert sweep.analytic == net_grad(PARAMS)["W2"][1, 2]
    ax = sweep.plot()
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="key='W3' is not a key of x"):
        step_sweep(net_loss, PARAMS, net_grad, key="W3")


def test_torch_tensors_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    X = torch.randn(4, 5, dtype=torch.float64, generator=gen)

    def f(p: dict[str, Any]) -> Any:
        return torch.tanh(p["W"] @ X).pow(2).sum()

    def grad(p: dict[str, Any]) -> dict[str, Any]:
        w = p["W"].clone().requires_grad_()
        f({"W": w}).backward()
        return {"W": w.grad}

    assert check_gradient(f, {"W": W}, grad).passed
    bad = grad({"W": W})
    bad["W"][2, 1] += 1e-3
    assert [e.index for e in check_gradient(f, {"W": W}, bad).failures] == [(2, 1)]


def test_import_stays_light() -> None:
    code = (
        "import sys, optcheck.gradcheck; "
        "heavy = [m for m in ('torch', 'scipy', 'matplotlib', 'hypothesis', 'pytest') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# bad input: one table, pinned messages
# ------------------------------------------------------------------------------------------------

_x = np.array([0.5, -1.0, 2.0])


def _sq(v: Any) -> Any:
    return np.sum(np.asarray(v) ** 2)


BAD_CALLS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    (
        "f returns an array",
        lambda: check_gradient(lambda v: v**2, _x, 2 * _x),
        ValueError,
        r"f\(x\) returned an array of shape \(3,\); check_gradient needs f to return a scalar loss",
    ),
    (
        "f returns None",
        lambda: check_gradient(lambda v: None, _x, 2 * _x),
        TypeError,
        r"f\(x\) returned None",
    ),
    (
        "f returns a str",
        lambda: check_gradient(lambda v: "0.1", _x, 2 * _x),
        TypeError,
        r"f\(x\) returned a str",
    ),
    (
        "f is nan at x",
        lambda: check_gradient(lambda v: np.sum(v) * np.nan, _x, 2 * _x),
        ValueError,
        r"f\(x\) is nan at the given x; the gradient can only be checked where the loss is finite",
    ),
    (
        "f is inf at x",
        lambda: check_gradient(lambda v: np.inf, _x, 2 * _x),
        ValueError,
        r"f\(x\) is inf at the given x",
    ),
    (
        "grad misses a key",
        lambda: check_gradient(lambda p: _sq(p["W"]) + _sq(p["b"]), {"W": _x, "b": _x[:2]}, {"W": 2 * _x}),
        ValueError,
        r"grad has missing key\(s\) \['b'\] compared with x \(keys \['W', 'b'\]\)",
    ),
    (
        "grad has a wrong shape",
        lambda: check_gradient(lambda p: _sq(p["W"]), {"W": _x.reshape(3, 1)}, {"W": np.ones((1, 2))}),
        ValueError,
        r"grad\['W'\] has shape \(1, 2\) but x\['W'\] has shape \(3, 1\); grad must have the shape of x",
    ),
    (
        "grad is the transpose of a matrix",
        lambda: check_gradient(lambda p: _sq(p["W"]), {"W": np.ones((2, 3))}, {"W": np.ones((3, 2))}),
        ValueError,
        r"grad\['W'\] has shape \(3, 2\) but x\['W'\] has shape \(2, 3\)",
    ),
    (
        "grad is a dict for an array x",
        lambda: check_gradient(_sq, _x, {"x": 2 * _x}),
        ValueError,
        r"grad is a dict but x is an array of shape \(3,\)",
    ),
    (
        "integer x",
        lambda: check_gradient(lambda p: _sq(p["W"]), {"W": np.arange(3)}, {"W": np.zeros(3)}),
        TypeError,
        r"x\['W'\] has integer dtype int64, but finite differences need floating-point values; "
        r"convert it first, e\.g\. x\['W'\] = np\.asarray\(x\['W'\], dtype=np\.float64\)",
    ),
    (
        "boolean x",
        lambda: check_gradient(_sq, np.array([True, False]), np.zeros(2)),
        TypeError,
        r"x has boolean dtype bool",
    ),
    (
        "complex x",
        lambda: check_gradient(_sq, _x + 1j, 2 * _x),
        TypeError,
        r"x has complex dtype complex128; the gradient checker checks real parameters",
    ),
    (
        "empty array",
        lambda: check_gradient(lambda p: _sq(p["W"]), {"W": np.zeros((0, 3))}, {"W": np.zeros((0, 3))}),
        ValueError,
        r"x\['W'\] is empty \(shape \(0, 3\)\); there is nothing to check",
    ),
    ("empty dict", lambda: check_gradient(lambda p: 0.0, {}, {}), ValueError, r"x is an empty dict"),
    (
        "nan in x",
        lambda: check_gradient(_sq, np.array([1.0, np.nan]), np.zeros(2)),
        ValueError,
        r"x contains nan at index \(1,\)",
    ),
    ("f not callable", lambda: check_gradient(3, _x, _x), TypeError, r"f must be a callable f\(x\) -> float"),
    (
        "unknown method",
        lambda: check_gradient(_sq, _x, 2 * _x, method="forward"),
        ValueError,
        r"method='forward' is not one of 'auto', 'central', 'richardson', 'complex-step'",
    ),
    (
        "unknown mode",
        lambda: check_gradient(_sq, _x, 2 * _x, mode="fast"),
        ValueError,
        r"mode='fast' is not one of 'auto', 'full', 'sample', 'directional'",
    ),
    (
        "samples with mode full",
        lambda: check_gradient(_sq, _x, 2 * _x, mode="full", samples=2),
        ValueError,
        r"samples=2 only applies to mode='sample'",
    ),
    (
        "budget too small",
        lambda: check_gradient(_sq, _x, 2 * _x, max_evaluations=2),
        ValueError,
        r"max_evaluations=2 must be at least 4",
    ),
    ("negative rtol", lambda: check_gradient(_sq, _x, 2 * _x, rtol=-1.0), ValueError, r"rtol=-1\.0 must be"),
    (
        "vjp upstream of the wrong shape",
        lambda: check_vjp(lambda v: v**2, _x, np.ones(4), 2 * _x),
        ValueError,
        r"f\(x\) has shape \(3,\) but upstream has shape \(4,\); upstream must have the shape of f's output",
    ),
]


@pytest.mark.parametrize(("name", "call", "exc", "message"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_gives_a_clear_error(
    name: str, call: Callable[[], Any], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message) as info:
        call()
    assert info.value.__cause__ is None or name == "f not callable"
    assert info.value.__suppress_context__ or info.value.__context__ is None


# ------------------------------------------------------------------------------------------------
# Hypothesis: random polynomials and compositions with exact gradients
# ------------------------------------------------------------------------------------------------

OUTER: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "identity": (lambda p: p, lambda p: 1.0),
    "sin": (np.sin, np.cos),
    "exp(p/4)": (lambda p: np.exp(p / 4), lambda p: np.exp(p / 4) / 4),
    "log(1 + p^2)": (lambda p: np.log1p(p**2), lambda p: 2 * p / (1 + p**2)),
    "tanh": (np.tanh, lambda p: 1 - np.tanh(p) ** 2),
}


@st.composite
def problems(draw: st.DrawFn) -> tuple[Callable[[Array], Any], Array, Array]:
    """``f(x) = outer(P(x))`` for a random polynomial P with up to 5 terms in up to 6 variables."""
    n = draw(st.integers(1, 6))
    n_terms = draw(st.integers(1, 5))
    coef = np.array(
        draw(st.lists(st.floats(-3, 3).filter(lambda c: abs(c) > 0.1), min_size=n_terms, max_size=n_terms))
    )
    powers = np.array(
        draw(
            st.lists(st.lists(st.integers(0, 3), min_size=n, max_size=n), min_size=n_terms, max_size=n_terms)
        )
    )
    x = np.array(draw(st.lists(st.floats(-2, 2).filter(lambda v: abs(v) > 1e-3), min_size=n, max_size=n)))
    outer, outer_d = OUTER[draw(st.sampled_from(sorted(OUTER)))]

    def poly(v: Array) -> Any:
        return np.sum(coef * np.prod(v[None, :] ** powers, axis=1))

    def f(v: Array) -> Any:
        return outer(poly(v))

    grad_p = np.zeros(n)
    for c, pw in zip(coef, powers, strict=True):
        for i in range(n):
            if pw[i]:
                others = np.prod([x[j] ** pw[j] for j in range(n) if j != i])
                grad_p[i] += c * pw[i] * x[i] ** (pw[i] - 1) * others
    return f, x, outer_d(poly(x)) * grad_p


@settings(max_examples=40, deadline=None)
@given(problems(), st.sampled_from(METHODS))
def test_random_compositions_with_exact_gradients_pass(problem: Any, method: str) -> None:
    f, x, grad = problem
    report = check_gradient(f, x, grad, method=method)
    assert report.passed, str(report)


@settings(max_examples=40, deadline=None)
@given(problems(), st.sampled_from(METHODS), st.data())
def test_one_perturbed_coordinate_fails_and_is_named(problem: Any, method: str, data: st.DataObject) -> None:
    f, x, grad = problem
    i = data.draw(st.integers(0, x.size - 1))
    # a relative change of 1e-4 can only be seen where it stands well above the error of the
    # finite differences themselves: measure that error here, against the exact gradient, at the
    # checker's default central step and twice it (a precondition independent of the checker)
    e_i = np.eye(x.size)[i]
    h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, abs(x[i]))
    fd_error = max(abs((f(x + m * h * e_i) - f(x - m * h * e_i)) / (2 * m * h) - grad[i]) for m in (1, 2))
    scale = max(1.0, abs(float(f(x))), float(np.max(np.abs(grad))))
    assume(1e-4 * abs(grad[i]) > 100 * fd_error + 1e-9 * scale)
    bad = grad.copy()
    bad[i] *= 1 + 1e-4
    report = check_gradient(f, x, bad, method=method)
    assert [(e.key, e.index) for e in report.failures] == [("x", (i,))], str(report)


@settings(max_examples=20, deadline=None)
@given(problems())
def test_the_strategys_exact_gradients_agree_with_numdifftools(problem: Any) -> None:
    """The property tests above rest on the strategy's gradients: check them with an independent tool."""
    nd = pytest.importorskip("numdifftools")
    f, x, grad = problem
    reference = np.atleast_1d(nd.Gradient(f)(x))
    np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-8 * max(1.0, float(np.max(np.abs(grad)))))


# ------------------------------------------------------------------------------------------------
# course keys, size-1 axes, dtypes, hints and kinks under the complex step (issue 16)
# ------------------------------------------------------------------------------------------------


def _course_net() -> tuple[dict[str, Array], Callable[[dict[str, Array]], Any], dict[str, Array]]:
    rng = np.random.default_rng(16)
    X = rng.normal(size=(3, 7))
    p = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=(4, 1)), "W2": rng.normal(size=(1, 4))}

    def cost(q: dict[str, Array]) -> Any:
        return np.sum((q["W2"] @ np.tanh(q["W1"] @ X + q["b1"])) ** 2) / 7

    A1 = np.tanh(p["W1"] @ X + p["b1"])
    out = p["W2"] @ A1
    dZ1 = (p["W2"].T @ (2 * out / 7)) * (1 - A1**2)
    grads = {"W1": dZ1 @ X.T, "b1": dZ1.sum(axis=1, keepdims=True), "W2": 2 * out @ A1.T / 7}
    return p, cost, grads


@pytest.mark.parametrize(
    ("rename", "said"),
    [
        (lambda k: "d" + k, "prefix 'd'"),
        (lambda k: "grad_" + k, "prefix 'grad_'"),
        (lambda k: k + "_grad", "suffix '_grad'"),
    ],
)
def test_course_gradient_keys_are_matched_and_the_report_says_so(
    rename: Callable[[str], str], said: str
) -> None:
    p, cost, grads = _course_net()
    renamed = {rename(k): v for k, v in reversed(list(grads.items()))}
    report = check_gradient(cost, p, renamed)
    assert report.passed, str(report)
    assert any(said in n and f"grad[{rename('W1')!r}] for x['W1']" in n for n in report.notes), report.notes
    # a bug in one of them is named by the parameter's key, and the hint by the user's gradient key
    renamed[rename("W1")] = renamed[rename("W1")] * 3.0
    bad = check_gradient(cost, p, renamed)
    assert not bad.passed and {e.key for e in bad.failures} == {"x['W1']"}
    assert any(h.startswith(f"grad[{rename('W1')!r}] is 3 x") for h in bad.hints), bad.hints


def test_course_gradients_with_intermediate_results_are_matched_and_the_extras_said() -> None:
    p, cost, grads = _course_net()
    course = {"dZ1": np.zeros((4, 7)), **{"d" + k: v for k, v in grads.items()}, "dA1": np.zeros((4, 7))}
    report = check_gradient(cost, p, course)
    assert report.passed, str(report)
    assert any("'dZ1', 'dA1' name no parameter and were left out" in n for n in report.notes), report.notes


def test_mixed_or_partial_course_keys_still_name_the_missing_keys() -> None:
    p, cost, grads = _course_net()
    with pytest.raises(ValueError, match=r"missing|unexpected"):
        check_gradient(cost, p, {"dW1": grads["W1"], "grad_b1": grads["b1"], "dW2": grads["W2"]})
    with pytest.raises(ValueError, match=r"missing|unexpected"):
        check_gradient(cost, p, {"dW1": grads["W1"], "db1": grads["b1"]})


def test_gradients_differing_by_size_one_axes_are_accepted_with_a_note() -> None:
    rng = np.random.default_rng(3)
    b, c, m = rng.normal(size=4), np.array([[0.7]]), rng.normal(size=(2, 1, 3))
    x = {"b": b, "c": c, "m": m}

    def f(q: dict[str, Array]) -> Any:
        return np.sum(q["b"] ** 2) + np.sum(q["c"] ** 3) + np.sum(np.sin(q["m"]))

    grad = {"b": (2 * b).reshape(1, 4), "c": np.array(3 * 0.49), "m": np.cos(m).reshape(2, 3)}
    report = check_gradient(f, x, grad)
    assert report.passed, str(report)
    notes = " ".join(report.notes)
    assert "grad['b'] has shape (1, 4) and x['b'] has shape (4,)" in notes
    assert "grad['c'] has shape () and x['c'] has shape (1, 1)" in notes
    assert "grad['m'] has shape (2, 3) and x['m'] has shape (2, 1, 3)" in notes
    grad["b"] = grad["b"].copy()
    grad["b"][0, 2] += 1.0
    bad = check_gradient(f, x, grad)
    assert [e.where for e in bad.failures] == ["x['b'][2]"]
    with pytest.raises(ValueError, match=r"grad\['b'\] has shape \(2, 2\) but x\['b'\] has shape \(4,\)"):
        check_gradient(f, x, {**grad, "b": np.ones((2, 2))})


def test_float32_x_is_handed_to_f_in_float32_unless_keep_dtype_is_false() -> None:
    seen: list[str] = []
    w = np.array([0.5, -1.0, 2.0], dtype=np.float32)

    def f(v: Array) -> Any:
        seen.append(v.dtype.name)
        return np.sum(v**2)

    assert check_gradient(f, w, 2 * w).passed
    assert set(seen) <= {"float32", "complex64"} and "float32" in seen
    seen.clear()
    assert check_gradient(f, w, 2 * w, keep_dtype=False).passed
    assert set(seen) <= {"float64", "complex128"} and "float64" in seen
    assert w.dtype == np.float32 and list(w) == [0.5, -1.0, 2.0]
    with pytest.raises(TypeError, match="keep_dtype must be True, False or None"):
        check_gradient(f, w, 2 * w, keep_dtype="yes")  # type: ignore[arg-type]


def test_float32_inputs_giving_a_float64_result_warn() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 4))  # float64 data: the product runs in float64
    w = rng.normal(size=4).astype(np.float32)
    with pytest.warns(UserWarning, match="handed to f as float32, but f returned a float64 result"):
        check_gradient(lambda v: np.sum((X @ v) ** 2), w, 2 * X.T @ (X @ w))
    Xf = X.astype(np.float32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_gradient(lambda v: np.sum((Xf @ v) ** 2), w, 2 * Xf.T @ (Xf @ w))


@pytest.mark.parametrize("method", ["auto", "central", "richardson"])
def test_a_float32_gradient_returned_as_float64_is_judged_at_float32_precision(method: str) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 30)).astype(np.float32)
    y = rng.normal(size=400).astype(np.float32)
    w = (rng.normal(size=30) * 0.3).astype(np.float32)

    def loss(v: Array) -> Any:
        r = X @ v - y
        return np.float32(0.5) * np.mean(r * r)

    grad64 = (X.T @ (X @ w - y) / np.float32(400)).astype(np.float64)  # computed in float32
    report = check_gradient(loss, w, grad64, method=method)
    assert report.passed, str(report)
    assert any("computed at float32 precision" in n for n in report.notes), report.notes
    bad = grad64.copy()
    bad[4] *= 1.05
    assert [e.index for e in check_gradient(loss, w, bad, method=method).failures] == [(4,)]


def test_no_factor_hint_for_a_ratio_near_one() -> None:
    x = np.linspace(0.5, 2.0, 6)
    g = 2 * x * (1 + 1e-6)  # fails (rtol 1e-8) but a ratio of 1.000001 is no factor
    report = check_gradient(lambda v: np.sum(v**2), x, g)
    assert not report.passed
    assert not any("x the numerical gradient" in h for h in report.hints), report.hints


def test_factor_hint_counts_only_entries_whose_true_gradient_is_nonzero() -> None:
    rng = np.random.default_rng(11)
    X = np.abs(rng.normal(size=(5, 8))) + 0.1  # positive inputs
    W = rng.normal(size=(3, 5))
    W[2] = np.abs(W[2])
    W[:2] = -np.abs(W[:2]) - 1.0  # rows 0 and 1 dead: ReLU zero everywhere, true gradient exactly 0

    def loss(w: Array) -> Any:
        return np.sum(np.maximum(w @ X, 0.0) ** 2) / 2

    Z = W @ X
    dW = (np.maximum(Z, 0.0) * (Z > 0)) @ X.T
    assert np.count_nonzero(dW) == 5 and np.all(dW[:2] == 0)
    report = check_gradient(loss, W, 2 * dW)
    assert not report.passed and len(report.failures) == 5
    assert any(h.startswith("grad is 2 x the numerical gradient") for h in report.hints), report.hints


@pytest.mark.parametrize("analytic", [0.0, 1.0, 0.5])
def test_kinks_at_exact_zeros_are_reported_under_the_complex_step_whatever_subgradient(
    analytic: float,
) -> None:
    z = np.array([0.0, 1.5, -2.0, 0.0])
    report = check_gradient(lambda v: np.sum(np.maximum(v, 0.0)), z, np.array([analytic, 1.0, 0.0, analytic]))
    assert report.method == "complex-step"
    assert report.passed, str(report)
    assert [e.index for e in report.nondifferentiable] == [(0,), (3,)]
    assert report.nondifferentiable[0].interval == (0.0, 1.0)
    bad = check_gradient(lambda v: np.sum(np.maximum(v, 0.0)), z, np.array([2.0, 1.0, 0.0, analytic]))
    assert [e.index for e in bad.failures] == [(0,)]
    assert "outside the one-sided derivatives 0 (left) and 1 (right)" in bad.failures[0].note


def test_a_smooth_f_does_not_pay_for_the_kink_probe_per_entry() -> None:
    x = np.linspace(0.1, 1.0, 30)
    report = check_gradient(lambda v: np.sum(np.sin(v)), x, np.cos(x))
    assert report.method == "complex-step" and report.passed
    assert not report.nondifferentiable
    assert report.evaluations < 30 + 20, report.evaluations  # one evaluation per entry plus the set-up
