"""optcheck's own property suite: every registered rule keeps its invariants on drawn inputs.

For each rule in ``optcheck.rules.names()`` (so a new rule is covered without a change here),
Hypothesis draws the hyperparameters and conventions (:func:`optcheck.strategies.rules`), the
parameters (course, nested or single-array layouts, float64 or float32, adversarial values),
a valid state (:func:`optcheck.strategies.states`: step counts up to 10**6, tiny and huge
second moments) and a gradient for each of several steps; every step is checked with
:func:`optcheck.invariants.check_update` (non-finite values appearing, negative second
moments, decreasing accumulators, the step counter, moves without a gradient, steps larger
than the rule's bound, shape/dtype changes, mutated inputs).

The overflow envelope. The strategies promise values that do not overflow the rule itself:
magnitudes up to :func:`optcheck.strategies.magnitude_bounds` (1e30 in float64, 2.1e9 in
float32; squared for second moments and accumulators). A step whose inputs are all inside
that envelope must raise no floating-point
warning and produce nothing non-finite. With extreme but legal hyperparameters a rule can
carry its parameters outside the envelope (RMSprop with ``alpha=1`` never updates its second
moment and steps by ``g/eps``: 2e9/1e-16 in one step); from such a step on, float32 may
overflow exactly as torch.optim would, so the ``non-finite`` check is not asserted for it and
the trajectory ends at the first non-finite value. Every other invariant is still checked.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optcheck
from optcheck import strategies as ost
from optcheck._core.tree import flatten, map_tree
from optcheck.invariants import check_update

RULES = optcheck.rules.names()
STEPS = 3


def _draw_case(data: Any, name: str, dtype: Any) -> tuple[Any, Any, dict[str, Any]]:
    rule = data.draw(ost.rules(name), label="rule")
    style = data.draw(st.sampled_from(["dict", "nested", "array"]), label="style")
    params = data.draw(ost.params(style=style, dtype=dtype, adversarial=True), label="params")
    state = data.draw(ost.states(rule, params, adversarial=True), label="state")
    return rule, params, state


def _arrays(*trees: Any) -> list[np.ndarray]:
    out = []
    for tree in trees:
        for _, leaf in flatten(tree):
            if isinstance(leaf, np.ndarray):
                out.append(leaf)
    return out


SQUARED_ROLES = ("second-moment", "max-second-moment", "accumulator")


def _inside_envelope(rule: Any, dtype: Any, params: Any, grads: Any, state: dict[str, Any]) -> bool:
    """Whether every input of a step is within the strategies' magnitude bound.

    Second moments and accumulators hold squares, so their bound is the square of it.
    """
    hi = ost.magnitude_bounds(dtype)[1]
    roles = type(rule).state_roles
    arrays = [(a, hi) for a in _arrays(params, grads)]
    for key, tree in state.items():
        if key != "step":
            bound = hi * hi if roles.get(key) in SQUARED_ROLES else hi
            arrays += [(a, bound) for a in _arrays(tree)]
    return all(np.all(np.abs(a) <= bound) for a, bound in arrays)


def _all_finite(*trees: Any) -> bool:
    return all(np.all(np.isfinite(a)) for a in _arrays(*trees))


FORMS = ["pure", "in-place"]


def _step(rule: Any, form: str, params: Any, grads: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``rule.step``, or ``rule.step_`` on copies (the checks compare with the inputs afterwards)."""
    if form == "pure":
        return rule.step(params, grads, state)  # type: ignore[no-any-return]
    own_params = map_tree(lambda x: np.array(x, copy=True), params)  # numpy scalars as 0-d arrays
    own_state = {
        k: v if k in type(rule).scalar_states else map_tree(lambda x: None if x is None else np.array(x), v)
        for k, v in state.items()
    }
    return rule.step_(own_params, grads, own_state)  # type: ignore[no-any-return]


def _centered_rounding(rule: Any, violations: list[Any]) -> bool:
    """Whether ``violations`` are centered RMSprop's √(v − ḡ²) of a rounding-negative argument
    (and the non-finite parameters that follow from it), named as such by the checker."""
    if not violations or not getattr(rule, "centered", False):
        return False
    ids = {v.id for v in violations}
    if "sqrt-of-negative" not in ids or not ids <= {"sqrt-of-negative", "non-finite"}:
        return False
    return all("by rounding" in v.message for v in violations if v.id == "sqrt-of-negative")


def _run_steps(data: Any, rule: Any, params: Any, state: dict[str, Any], dtype: Any, form: str) -> None:
    for k in range(STEPS):
        grads = data.draw(ost.grads_like(params, adversarial=True), label=f"grads at step {k + 1}")
        inside = _inside_envelope(rule, dtype, params, grads, state)
        before = copy.deepcopy({"params": params, "grads": grads, "state": state})
        with warnings.catch_warnings():
            # inside the envelope the reference itself must not overflow or divide 0 by 0
            warnings.simplefilter("error" if inside else "ignore")
            with np.errstate(all="warn" if inside else "ignore"):
                new_params, new_state = _step(rule, form, params, grads, state)
        skip = () if inside else ("non-finite",)
        violations = check_update(rule, params, grads, state, new_params, new_state, before=before, skip=skip)
        if _centered_rounding(rule, violations):
            # torch's centered RMSprop takes √(v − ḡ²) without a clamp, so when the gradient is
            # nearly constant rounding can make the argument negative (mxnet PR #6235): the
            # reference equals torch there, and the checker must name exactly that cause
            return
        assert not violations, "\n".join(str(v) for v in violations)
        if not _all_finite(new_params, {key: v for key, v in new_state.items() if key != "step"}):
            assert not inside
            return
        params, state = new_params, new_state


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", RULES)
@settings(max_examples=40)
@given(data=st.data())
def test_rule_keeps_its_invariants_float64(name: str, form: str, data: Any) -> None:
    rule, params, state = _draw_case(data, name, np.float64)
    _run_steps(data, rule, params, state, np.float64, form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", RULES)
@settings(max_examples=25)
@given(data=st.data())
def test_rule_keeps_its_invariants_float32(name: str, form: str, data: Any) -> None:
    rule, params, state = _draw_case(data, name, np.float32)
    _run_steps(data, rule, params, state, np.float32, form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", RULES)
@settings(max_examples=25)
@given(data=st.data())
def test_drawn_states_are_accepted_and_stay_valid(name: str, form: str, data: Any) -> None:
    """A state drawn by ``states()`` is accepted by ``rule.step`` and passes the invariants after it."""
    rule = data.draw(ost.rules(name), label="rule")
    params = data.draw(ost.params(), label="params")
    state = data.draw(ost.states(rule, params), label="state")
    assert set(state) == set(rule.init(params))
    grads = data.draw(ost.grads_like(params), label="grads")
    new_params, new_state = _step(rule, form, params, grads, state)
    assert new_state["step"] == state["step"] + 1
    assert not check_update(rule, params, grads, state, new_params, new_state)
