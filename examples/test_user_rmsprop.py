"""A learner's own property tests for their own RMSprop, written with optcheck's strategies.

The update function under test is the course-style ``update_parameters_with_rmsprop``
of ``rmsprop_fixed.py`` (the default) or, with ``RMSPROP_IMPL=rmsprop_nan``, the seed
problem's buggy one::

    python -m pytest examples/test_user_rmsprop.py                           # passes
    RMSPROP_IMPL=rmsprop_nan python -m pytest examples/test_user_rmsprop.py  # fails, shrunk

Two properties that any RMSprop must keep, whatever the weights and gradients:

* ``S`` stays >= 0, so that its square root exists (an L2 term added to the *squared*
  gradient makes ``S`` negative as soon as a weight is negative and its gradient small);
* with no regularisation, a zero gradient leaves a parameter where it is (epsilon added
  after the division moves every parameter by ``learning_rate * epsilon``, or makes NaN).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import optcheck
from optcheck import strategies as ost

impl = importlib.import_module(os.environ.get("RMSPROP_IMPL", "rmsprop_fixed"))
update = impl.update_parameters_with_rmsprop

LR, BETA, EPS, REG, BATCH = 0.01, 0.9, 1e-8, 0.7, 32

# optcheck's reference RMSprop with the same decay, used only to draw accumulators S that an
# RMSprop can really reach (any step count, tiny and huge values, exact zeros).
REFERENCE = optcheck.rules.get("rmsprop", alpha=BETA, lr=LR, eps=EPS)


def draw_S(data: Any, parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    state = data.draw(ost.states(REFERENCE, parameters), label="reference state")
    return {"d" + k: v for k, v in state["square_avg"].items()}  # the course names: S["dW1"]


@settings(max_examples=100)
@given(data=st.data())
def test_S_stays_non_negative(data: Any) -> None:
    parameters = data.draw(ost.params(adversarial=True), label="parameters")
    S = draw_S(data, parameters)
    for step in range(1, 4):
        grads = data.draw(ost.grads_like(parameters, adversarial=True, key_prefix="d"), label=f"grads {step}")
        parameters, S = update(dict(parameters), grads, dict(S), LR, BETA, EPS, REG, BATCH)
        for k, s in S.items():
            assert not np.any(s < 0), f"S[{k!r}] went negative at step {step}: {s.ravel()}"


@settings(max_examples=100)
@given(data=st.data())
def test_zero_gradient_without_regularisation_does_not_move(data: Any) -> None:
    parameters = data.draw(ost.params(adversarial=True), label="parameters")
    S = draw_S(data, parameters)
    grads = {"d" + k: np.zeros_like(v) for k, v in parameters.items()}
    new, _ = update(dict(parameters), grads, dict(S), LR, BETA, EPS, 0.0, BATCH)
    for k in parameters:
        assert np.array_equal(new[k], parameters[k]), (
            f"parameters[{k!r}] moved although its gradient was zero: {parameters[k].ravel()} -> {new[k].ravel()}"
        )
