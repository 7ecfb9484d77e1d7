"""A functional Adam that computes ``t = state["t"] + 1`` but returns the old ``t``: the counter is frozen at 1.

TARGET = "step"; rule adam; expected finding: ``bias-correction-wrong-step``.
"""

from __future__ import annotations

import numpy as np

TARGET = "step"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-step",)


def step(param, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    b1, b2 = betas
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad * grad
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), {"t": state["t"], "m": m, "v": v}  # BUG: old t
