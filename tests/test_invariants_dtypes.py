"""The invariants stay silent on the reference rules themselves, in every floating dtype (issue 13).

Each rule, at its defaults and at extreme valid hyperparameters, is stepped in float16, float32
and float64 (and bfloat16 with torch) on random gradients, and :func:`optcheck.invariants.check_update`
— what the guard runs at every step — must find nothing: the bounds (``update-too-large``) and
the rounding allowances are derived from the dtype, so a correct step is never reported.

The gradients are drawn with magnitudes in ``[1e-2, 1e2]`` for float16 (down to 1e-30 for float32
and float64), and never so small that the rule's ``(1 − β)·g²`` falls below a few subnormals of the
dtype: there it underflows to zero on the first step, and torch's own Adam then divides by
``eps = 1e-8``, which float16 cannot hold either (it is 0 there). That is a real non-finite value
(reported, rightly), not a false report.

The budget is bounded for CI (a few hundred steps per rule and dtype); the 10,000-step run is
``benchmarks/bench_dtype_silence.py``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from optcheck import rules
from optcheck.invariants import check_update

#: Extreme but valid hyperparameters of each rule (decay rates near their ends, tiny and large lr).
EXTREME: dict[str, list[dict[str, Any]]] = {
    "sgd": [
        {"lr": 1.0, "momentum": 0.999, "nesterov": True},
        {"lr": 1e-6, "momentum": 0.9, "dampening": 0.9},
    ],
    "adagrad": [{"lr": 1.0, "eps": 1e-12}, {"lr": 1e-6, "lr_decay": 1.0, "weight_decay": 0.5}],
    "rmsprop": [{"alpha": 0.0, "lr": 1.0}, {"alpha": 0.9999, "centered": True, "momentum": 0.99}],
    "adadelta": [{"rho": 0.0}, {"rho": 0.9999, "lr": 10.0}],
    "adam": [{"beta1": 0.0, "beta2": 0.0, "lr": 1.0}, {"beta1": 0.999, "beta2": 0.9999, "amsgrad": True}],
    "adamw": [{"beta1": 0.99, "beta2": 0.99999, "weight_decay": 1.0}, {"lr": 1.0, "eps": 1e-3}],
    "adamax": [{"beta1": 0.0, "beta2": 0.0}, {"beta1": 0.999, "beta2": 0.9999, "lr": 1.0}],
    "nadam": [{"beta1": 0.0, "beta2": 0.999}, {"beta1": 0.99, "beta2": 0.9999, "momentum_decay": 0.1}],
    "radam": [{"beta2": 0.9}, {"beta1": 0.0, "beta2": 0.99999}],
    "asgd": [{"lr": 1.0, "lambd": 0.1, "alpha": 1.0, "t0": 1}],
    "rprop": [{"etaminus": 0.1, "etaplus": 3.0, "step_size_max": 1.0}],
    "adafactor": [{"beta2_decay": -0.1, "d": 1.0}, {"lr": 1.0, "eps2": 0.1}],
    "lion": [{"beta1": 0.0, "beta2": 0.0, "lr": 1.0}, {"beta1": 0.999, "beta2": 0.9999}],
}

CASES = [(name, {}) for name in rules.names()] + [(n, h) for n in rules.names() for h in EXTREME.get(n, [])]
DTYPES = ["float16", "float32", "float64"]


def _smallest_complement(rule: rules.Rule) -> float:
    rates = [
        1.0 - float(getattr(rule, s.name))
        for s in type(rule).hyper_specs()
        if s.kind == "float" and s.low == 0.0 and s.high == 1.0 and getattr(rule, s.name) is not None
    ]
    return max(min(rates, default=1.0), 1e-300)


def _grads(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, rule: rules.Rule) -> np.ndarray:
    low = -2.0 if dtype == "float16" else -30.0
    tiny = float(np.finfo(dtype).smallest_subnormal)
    low = max(low, 0.5 * np.log10(8.0 * tiny / _smallest_complement(rule)))
    mag = 10.0 ** rng.uniform(low, 2.0, size=shape)
    return (mag * rng.choice([-1.0, 1.0], size=shape)).astype(dtype)


def run_silently(name: str, hyper: dict[str, Any], dtype: str, steps: int, seed: int = 0) -> list[str]:
    """Step the reference rule ``steps`` times in ``dtype``; the ids of any violations found."""
    rule = rules.get(name, **hyper)
    rng = np.random.default_rng(seed)
    params: Any = {"W": rng.normal(size=(3, 4)).astype(dtype), "b": rng.normal(size=(4,)).astype(dtype)}
    state = rule.init(params)
    found: list[str] = []
    for k in range(steps):
        grads = {key: _grads(rng, p.shape, dtype, rule) for key, p in params.items()}
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            new_params, new_state = rule.step(params, grads, state)
            viols = check_update(rule, params, grads, state, new_params, new_state, step=k + 1)
        found += [f"{v.id} at step {k + 1}: {v.message}" for v in viols]
        if found:
            break
        params, state = new_params, new_state
    return found


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "hyper"), CASES, ids=[f"{n}-{h}" for n, h in CASES])
def test_the_invariants_are_silent_on_the_reference_in_every_dtype(
    name: str, hyper: dict[str, Any], dtype: str
) -> None:
    assert run_silently(name, hyper, dtype, steps=60) == []


def test_float16_adam_first_step_with_a_subnormal_second_moment_is_not_too_large() -> None:
    """torch.optim.Adam in float16 gives this step too: v = 0.001·g² is subnormal for |g| < 0.25."""
    for name in ("adam", "adamw"):
        rule = rules.get(name)
        p = np.zeros(4, dtype=np.float16)  # no rounding of p to hide behind
        g = np.array([-0.01668, 0.1609, 0.1405, 0.02339], dtype=np.float16)
        state = rule.init(p)
        new_p, new_state = rule.step(p, g, state)
        assert float(np.max(np.abs(new_p))) > 1.001 * rule.hyper["lr"]  # above the exact bound
        assert [v.id for v in check_update(rule, p, g, state, new_p, new_state, step=1)] == []


def test_a_float16_step_twice_the_bound_is_still_too_large() -> None:
    """The allowance is rounding-sized: a step of 2·lr (missing bias correction of v) is caught."""
    rule = rules.get("adam", lr=0.01)
    p = np.array([1.0, -1.0, 0.5], dtype=np.float16)
    g = np.array([1.0, -2.0, 0.5], dtype=np.float16)
    state = rule.init(p)
    wrong = (p - np.float16(0.02) * np.sign(g)).astype(np.float16)  # 2·lr: twice the first step
    _, new_state = rule.step(p, g, state)
    ids = [v.id for v in check_update(rule, p, g, state, wrong, new_state, step=1)]
    assert "update-too-large" in ids


def test_bfloat16_with_torch_is_silent_too() -> None:
    torch = pytest.importorskip("torch")
    for name in ("adam", "rmsprop", "sgd"):
        rule = rules.get(name, **({"momentum": 0.9} if name == "sgd" else {}))
        gen = torch.Generator().manual_seed(0)
        p = torch.randn(4, 3, generator=gen).to(torch.bfloat16)
        state = rule.init(p)
        for k in range(30):
            mag = 10 ** (torch.rand(4, 3, generator=gen) * 4 - 2)
            g = (mag * torch.sign(torch.randn(4, 3, generator=gen))).to(torch.bfloat16)
            new_p, new_state = rule.step(p, g, state)
            assert check_update(rule, p, g, state, new_p, new_state, step=k + 1) == [], (name, k)
            p, state = new_p, new_state


def test_a_step_counted_from_zero_is_named_by_the_guard() -> None:
    """A course loop ``for t in range(n)`` with Adam: the first call divides by 1 − β^0 = 0."""
    import optcheck

    guard = optcheck.Guard(rules.get("adam"), mode=lambda violations: None)
    params = {"W1": np.array([[0.5, -0.2]]), "b1": np.array([[0.1]])}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    s = {k: np.zeros_like(p) for k, p in params.items()}
    grads = {k: np.full_like(p, 0.3) for k, p in params.items()}
    t = 0  # BUG: counts from 0
    before = {"params": dict(params), "state": {"exp_avg": dict(v), "exp_avg_sq": dict(s)}}
    with np.errstate(all="ignore"):
        for k in params:
            v[k] = 0.9 * v[k] + 0.1 * grads[k]
            s[k] = 0.999 * s[k] + 0.001 * grads[k] ** 2
            params[k] = params[k] - 1e-3 * (v[k] / (1 - 0.9**t)) / (np.sqrt(s[k] / (1 - 0.999**t)) + 1e-8)
    found = guard.check(
        params=params, grads=grads, state={"exp_avg": v, "exp_avg_sq": s}, step=t, before=before
    )
    nonfinite = [f for f in found if f.id == "non-finite" and "params" in f.where]
    assert nonfinite
    assert "bias-correction-wrong-step" in nonfinite[0].message
    assert nonfinite[0].hint.startswith("bias-correction-wrong-step")
    # the same NaN at a later step is not blamed on the counter
    assert all(
        "bias-correction-wrong-step" not in f.message
        for f in guard.check(
            params=params, grads=grads, state={"exp_avg": v, "exp_avg_sq": s}, step=3, before=before
        )
    )
