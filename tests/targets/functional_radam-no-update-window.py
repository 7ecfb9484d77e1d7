"""A functional RAdam that skips the update entirely until the variance can be rectified (ρ_t ≥ 5).

TARGET = "radam_step"; rule radam; expected verdict: pass, with the convention
``radam-no-update-window``.
"""

from __future__ import annotations

import numpy as np

TARGET = "radam_step"
RULE = "radam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "radam-no-update-window"


def radam_step(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    t, m, v = state if state is not None else (0, 0.0, 0.0)
    t += 1
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
    if rho < 5:
        return param, (t, m, v)  # not rectifiable yet: no step
    r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    m_hat = m / (1 - beta1**t)
    step = lr * r * m_hat * np.sqrt(1 - beta2**t) / (np.sqrt(v) + eps)
    return param - step, (t, m, v)
