"""A functional Adam: ``step(param, grad, state, lr, betas, eps) -> (param, state)``, ``state=None`` first.

TARGET = "step"; rule adam; expected verdict: pass.
"""

from __future__ import annotations

import numpy as np

TARGET = "step"


def step(param, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    b1, b2 = betas
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad * grad
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), {"t": t, "m": m, "v": v}
