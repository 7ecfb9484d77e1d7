"""A functional Adam that bias-corrects m but uses the raw second moment v.

TARGET = "adam_update"; rule adam; expected finding: ``missing-bias-correction``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adam_update"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("missing-bias-correction",)


def adam_update(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    t, m, v = state if state is not None else (0, 0.0, 0.0)
    t += 1
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    return param - lr * (m / (1 - beta1**t)) / (np.sqrt(v) + eps), (t, m, v)  # BUG: v not corrected
