"""optax-style AMSGrad: the running maximum is taken on the bias-corrected second moment.

TARGET = "step"; rule adam with ``--hyper amsgrad=True``; expected verdict: pass, with the
convention ``amsgrad-on-corrected``.
"""

from __future__ import annotations

import numpy as np

TARGET = "step"
RULE = "adam"
HYPER: dict[str, object] = {"amsgrad": True}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "amsgrad-on-corrected"


def step(param, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, amsgrad=True):  # type: ignore[no-untyped-def]
    if state is None:
        z = np.zeros_like(param)
        state = {"t": 0, "m": z, "v": z, "v_max": z}
    b1, b2 = betas
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad * grad
    v_hat = v / (1 - b2**t)
    v_max = np.maximum(state["v_max"], v_hat)
    m_hat = m / (1 - b1**t)
    return param - lr * m_hat / (np.sqrt(v_max) + eps), {"t": t, "m": m, "v": v, "v_max": v_max}
