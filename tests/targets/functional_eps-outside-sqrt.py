"""optax-style RAdam: epsilon added to the bias-corrected root, ``r_t * m_hat / (sqrt(v_hat) + eps)``.

torch's RAdam adds epsilon before the bias correction (``sqrt(1 - beta2**t) * m_hat / (sqrt(v) +
eps)``). TARGET = "radam_step"; rule radam; expected verdict: pass, with the convention
``eps-outside-sqrt``.
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "radam_step"
RULE = "radam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "eps-outside-sqrt"
STEPS = 8


def radam_step(param, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    b1, b2 = betas
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad**2
    m_hat = m / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t > 5:
        r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        v_hat = v / (1 - b2**t)
        param = param - lr * r * m_hat / (np.sqrt(v_hat) + eps)
    else:
        param = param - lr * m_hat
    return param, {"t": t, "m": m, "v": v}
