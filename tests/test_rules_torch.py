"""Oracle tests: every reference rule against ``torch.optim``, step by step.

For every rule torch has and every case of ``CASES`` (in ``test_rules.py``) whose convention
keywords are torch's (the defaults are torch's by design), in float64 and float32: parameters
of the shapes in ``SHAPES`` (a matrix, a vector, a 0-d array, an empty array and a 3-d array),
``STEPS`` = 50 steps, each step's gradient drawn by Hypothesis (normal, zero, repeated,
sign-flipped, sparse or mixed-scale; see ``test_rules.trajectory``). After every step the
parameters and *every* state entry (``step``, the moments, ``mu_product``, ``eta``, ``mu``,
Adafactor's factors, ...) are compared with the optimizer's ``state``.

Tolerances, and why:

* ``RTOL = 100 × eps(dtype)``: 2.2e-14 in float64, 1.2e-5 in float32. The two
  implementations order a few operations differently (torch's ``lerp`` and ``addcdiv``
  against our ``beta·m + (1 − beta)·g`` and ``m/den``), so each step's result may differ by
  about 2 ulps, and the parameters sum 50 such steps: at most ~100 eps. The worst measured
  over 12 trajectories of every case and dtype was 5 eps (float64) and 7 eps (float32), so a
  real disagreement (an epsilon in the wrong place, a bias correction off by one step)
  shows up far above it.
* the error of an entry is measured against the largest magnitude that entry has had so far
  in the trajectory (per parameter and state key): a rounding error made while a moment was
  large stays in it after it decays, and the parameter ``p − Σ updates`` can cancel to near
  zero. This is a norm-wise criterion, the usual one for iterated floating-point updates.
* centered RMSprop divides by √(v − ḡ²), which cancels when the gradient barely varies (a
  constant gradient gives v − ḡ² = alpha^t·(1 − alpha^t)·g², small next to v): the rounding
  error of v (~eps·v) is then amplified by κ = v/(v − ḡ²) in the denominator, so for the
  parameters and the momentum buffer the tolerance is ``RTOL × κ``, with κ the largest value
  torch's own state has shown so far (κ = 1 for every other rule).
* ``step`` is compared exactly. Under float32 torch keeps NAdam's ``mu_product`` and ASGD's
  ``eta``/``mu`` as float32 tensors (``torch.get_default_dtype()``); the reference keeps
  Python floats, a relative difference of ~1e-7 that the float32 tolerance covers. Under
  float64 the default dtype is set to float64 for the test, as torch's own tests do.
* Adafactor is not run on the empty array: torch divides by zero there (``param.numel()``
  is 0 in ``param.norm(2) / param.numel() ** 0.5``); the reference leaves it unchanged
  (``test_rules.py::test_adafactor_leaves_empty_parameters_unchanged``).

These tests skip cleanly when torch is not installed; CI installs it, so they run there.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optcheck import rules
from optcheck.rules import Rule

torch = pytest.importorskip("torch")

from test_rules import CASES, SHAPES, case_id, step_kinds, trajectory  # noqa: E402

STEPS = 50
RTOL = {dt: 100 * float(np.finfo(dt).eps) for dt in (np.float64, np.float32)}
TORCH_CLASSES = {
    "sgd": "SGD",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "NAdam",
    "radam": "RAdam",
    "asgd": "ASGD",
    "rprop": "Rprop",
    "adafactor": "Adafactor",
}


def is_torch_case(name: str, opts: dict[str, Any]) -> bool:
    """A case torch can run: a rule torch has, every convention keyword at its (torch's) default."""
    if name not in TORCH_CLASSES:
        return False
    specs = {s.name: s for s in rules.rule_class(name).hyper_specs()}
    if name == "adamw" and opts.get("decoupled_weight_decay", True) is False:
        return False  # torch.optim.AdamW has no such switch (it is torch.optim.Adam with weight_decay)
    return all(not specs[k].convention or v == specs[k].default for k, v in opts.items())


TORCH_CASES = [c for c in CASES if is_torch_case(*c)]
DTYPES = [np.float64, np.float32]


def torch_class(name: str) -> Any:
    return getattr(torch.optim, TORCH_CLASSES[name])


def torch_kwargs(rule: Rule) -> dict[str, Any]:
    """The torch.optim keyword arguments of a rule: tuples rebuilt, convention keywords dropped."""
    kw = {s.name: getattr(rule, s.name) for s in type(rule).hyper_specs() if not s.convention}
    for alias, fields in type(rule).tuple_aliases.items():
        kw[alias] = tuple(kw.pop(f) for f in fields)
    if rule.name == "adamw":
        assert kw.pop("decoupled_weight_decay") is True
    return kw


@contextlib.contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def torch_state_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    return np.asarray(value, dtype=np.float64)


class Comparer:
    """Compares our arrays with torch's, each against the largest magnitude it has had so far."""

    def __init__(self, rtol: float) -> None:
        self.rtol = rtol
        self.scale: dict[tuple[str, str], float] = {}
        self.kappa = 1.0  # the conditioning of the step's denominator (centered RMSprop)

    def condition(self, rule: Rule, torch_state: dict[str, Any]) -> None:
        """Raise κ to v/(v − ḡ²) where centered RMSprop's denominator cancels."""
        if rule.name == "rmsprop" and getattr(rule, "centered", False):
            v = torch_state_value(torch_state["square_avg"])
            gbar = torch_state_value(torch_state["grad_avg"])
            w = v - gbar * gbar
            ok = w > 0
            if np.any(ok):
                self.kappa = max(self.kappa, float(np.max(v[ok] / w[ok])))

    def check(self, where: tuple[str, str], step: int, ours: Any, theirs: Any) -> None:
        a = np.asarray(ours, dtype=np.float64)
        b = np.asarray(theirs, dtype=np.float64)
        assert a.shape == b.shape, f"step {step}, {where}: shape {a.shape} vs torch {b.shape}"
        if b.size == 0:
            return
        scale = max(self.scale.get(where, 0.0), float(np.max(np.abs(b))))
        self.scale[where] = scale
        err = float(np.max(np.abs(a - b)))
        rtol = self.rtol * (self.kappa if where[1] in ("param", "momentum_buffer") else 1.0)
        assert err <= rtol * scale or err == 0.0, (
            f"step {step}, {where}: max |ours - torch| = {err:.3g} > {rtol:g} × {scale:.3g}\n"
            f"ours  = {a!r}\ntorch = {b!r}"
        )


def shapes_for(name: str) -> dict[str, tuple[int, ...]]:
    if name == "adafactor":  # torch.optim.Adafactor divides by zero on an empty parameter
        return {k: s for k, s in SHAPES.items() if 0 not in s}
    return SHAPES


FORMS = ["pure", "in-place"]
"""Both forms of the reference step: ``rule.step`` and ``rule.step_`` (on the test's own copies)."""


def run_against_torch(
    rule: Rule,
    params: dict[str, np.ndarray],
    grads_seq: list[dict[str, np.ndarray]],
    dtype: Any,
    state: dict[str, Any] | None = None,
    torch_state: dict[str, dict[str, Any]] | None = None,
    form: str = "pure",
) -> None:
    """Step the rule and torch.optim side by side, comparing everything after every step."""
    if form == "in-place":  # step_ writes into what it is given: give it copies (numpy scalars as 0-d arrays)
        params = {k: np.array(v, copy=True) for k, v in params.items()}
        state = copy.deepcopy(state)
    step = rule.step if form == "pure" else rule.step_
    with default_dtype(dtype):
        tp = {k: torch.tensor(v.copy()) for k, v in params.items()}
        opt = torch_class(rule.name)(list(tp.values()), **torch_kwargs(rule), foreach=False)
        if torch_state is not None:
            for k, s in torch_state.items():
                opt.state[tp[k]] = s
        state = rule.init(params) if state is None else state
        start = int(state["step"])
        cmp = Comparer(RTOL[dtype])
        for i, grads in enumerate(grads_seq, 1):
            params, state = step(params, grads, state)
            for k, g in grads.items():
                tp[k].grad = torch.tensor(g.copy())
            opt.step()
            for k, t in tp.items():
                ts = opt.state[t]
                cmp.condition(rule, ts)
                cmp.check((k, "param"), i, params[k], t.detach().numpy())
                for key in rule.array_keys():
                    ours = state[key][k]
                    if ours is None:
                        assert key not in ts, f"step {i}, {k}: torch keeps {key!r} where we keep None"
                        continue
                    cmp.check((k, key), i, ours, torch_state_value(ts[key]))
                for key in type(rule).scalar_states:
                    if key == "step":
                        if "step" in ts:  # torch's SGD keeps no step
                            assert state["step"] == int(torch_state_value(ts["step"])) == start + i
                        continue
                    want = float(torch_state_value(ts[key]))
                    assert abs(state[key] - want) <= RTOL[dtype] * abs(want), (
                        f"step {i}, {key}: {state[key]} vs {want}"
                    )
                ours_keys = {*rule.array_keys(), *type(rule).scalar_states}
                extra = {k2 for k2, v in ts.items() if v is not None} - ours_keys
                assert not extra, f"torch keeps state {extra} that the reference does not"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize(("name", "opts"), TORCH_CASES, ids=[case_id(c) for c in TORCH_CASES])
@settings(max_examples=3)
@given(seed=st.integers(0, 2**32 - 1), recipes=step_kinds(STEPS))
def test_rule_matches_torch_optim_step_by_step(
    name: str, opts: dict[str, Any], dtype: Any, form: str, seed: int, recipes: list[tuple[str, int, float]]
) -> None:
    rule = rules.get(name, **opts)
    params, grads_seq = trajectory(seed, recipes, dtype=dtype, shapes=shapes_for(name))
    run_against_torch(rule, params, grads_seq, dtype, form=form)


def test_torch_cases_cover_every_option_torch_has() -> None:
    """Every torch rule is run; every torch keyword is exercised (bools both ways, numbers off default)."""
    assert {n for n, _ in TORCH_CASES} == set(TORCH_CLASSES)
    for name in TORCH_CLASSES:
        cls = rules.rule_class(name)
        opts = [o for n, o in TORCH_CASES if n == name]
        torch_params = set(inspect.signature(torch_class(name)).parameters)
        for spec in cls.hyper_specs():
            if spec.convention:
                continue
            alias = next((a for a, fs in cls.tuple_aliases.items() if spec.name in fs), spec.name)
            if alias not in torch_params:
                assert name == "adamw" and spec.name == "decoupled_weight_decay", (name, spec.name)
                continue
            seen = {o.get(spec.name, spec.default) for o in opts}
            if spec.kind == "bool":
                assert seen == {False, True}, f"{name}.{spec.name}: torch cases have only {seen}"
            else:
                assert seen - {spec.default}, f"{name}.{spec.name}: torch cases never change it"
        ours = {s.name for s in cls.hyper_specs()} | set(cls.tuple_aliases)
        skip = {"params", "foreach", "fused", "differentiable", "capturable"}
        missing = torch_params - skip - ours
        assert not missing, (
            f"{name}: torch.optim.{TORCH_CLASSES[name]} takes {sorted(missing)}, the rule does not"
        )


@pytest.mark.parametrize("name", sorted(TORCH_CLASSES))
def test_defaults_are_torchs(name: str) -> None:
    rule = rules.get(name)
    sig = inspect.signature(torch_class(name)).parameters
    for key, value in torch_kwargs(rule).items():
        assert sig[key].default == value, f"{name}.{key}: {value!r}, torch {sig[key].default!r}"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_a_hand_built_state_means_what_it_means_to_torch(dtype: Any, form: str) -> None:
    """Adam started at step 5 with given exp_avg/exp_avg_sq (and amsgrad's max) equals torch loaded alike."""
    rng = np.random.default_rng(7)
    params = {"W": rng.standard_normal((3, 2)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    m = {k: (0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in params.items()}
    v = {k: (0.01 * rng.random(v.shape)).astype(dtype) for k, v in params.items()}
    vmax = {k: (x * 1.5).astype(dtype) for k, x in v.items()}
    state = {"step": 5, "exp_avg": m, "exp_avg_sq": v, "max_exp_avg_sq": vmax}

    def torch_state() -> dict[str, dict[str, Any]]:  # fresh tensors: torch updates its state in place
        with default_dtype(dtype):
            return {
                k: {
                    "step": torch.tensor(5.0),
                    "exp_avg": torch.tensor(m[k].copy()),
                    "exp_avg_sq": torch.tensor(v[k].copy()),
                    "max_exp_avg_sq": torch.tensor(vmax[k].copy()),
                }
                for k in params
            }

    _, grads_seq = trajectory(
        3, [("normal", i, 0.0) for i in range(10)], dtype=dtype, shapes={"W": (3, 2), "b": (3,)}
    )
    rule = rules.get("adam", lr=0.01, amsgrad=True)
    with pytest.raises(AssertionError, match="step 1"):  # the steps are numbered from 1 in the comparer
        run_against_torch(
            rule, params, grads_seq, dtype, state={**state, "step": 0}, torch_state=torch_state(), form=form
        )
    run_against_torch(rule, params, grads_seq, dtype, state=state, torch_state=torch_state(), form=form)
