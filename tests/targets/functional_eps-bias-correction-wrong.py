"""A functional Adam rewritten in the efficient ε̂ form, but with ε·bc2 where ε·√bc2 is meant.

TARGET = "adam"; rule adam; expected finding: ``eps-bias-correction-wrong``.
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("eps-bias-correction-wrong",)


def adam(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    t, m, v = state if state is not None else (0, 0.0, 0.0)
    t += 1
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    step_size = lr * math.sqrt(bc2) / bc1
    return param - step_size * m / (np.sqrt(v) + eps * bc2), (t, m, v)  # BUG: eps * sqrt(bc2)
