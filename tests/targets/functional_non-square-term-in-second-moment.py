"""A functional Adam with L2 weight decay whose penalty ``wd*p`` is added to ``g**2`` in ``v``.

TARGET = "step"; rule adam with ``--hyper weight_decay=0.01``; expected finding:
``non-square-term-in-second-moment``.
"""

from __future__ import annotations

import numpy as np

TARGET = "step"
RULE = "adam"
HYPER: dict[str, object] = {"weight_decay": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("non-square-term-in-second-moment",)


def step(param, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    b1, b2 = betas
    t = state["t"] + 1
    g = grad + weight_decay * param
    m = b1 * state["m"] + (1 - b1) * g
    v = b2 * state["v"] + (1 - b2) * (grad * grad + weight_decay * param)
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), {"t": t, "m": m, "v": v}
