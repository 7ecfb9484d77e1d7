"""A functional Adam whose counter starts at 0 and is incremented after the update: t = 0 on the first call.

TARGET = "adam"; rule adam; expected finding: ``bias-correction-wrong-step``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-step",)


def adam(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    t, m, v = state if state is not None else (0, np.zeros_like(param), np.zeros_like(param))
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    with np.errstate(divide="ignore", invalid="ignore"):
        new = param - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return new, (t + 1, m, v)  # BUG: incremented after use
