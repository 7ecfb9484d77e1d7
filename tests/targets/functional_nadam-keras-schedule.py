"""NAdam with Keras 3's momentum schedule ``mu_t = beta1 * (1 - 0.5 * 0.96**t)``.

TARGET = "step"; rule nadam; expected verdict: pass, with the convention ``nadam-keras-schedule``.
"""

from __future__ import annotations

import numpy as np

TARGET = "step"
RULE = "nadam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "nadam-keras-schedule"


def step(param, grad, state, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "mu_product": 1.0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    b1, b2 = betas
    t = state["t"] + 1
    mu = b1 * (1 - 0.5 * 0.96**t)
    mu_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
    mu_product = state["mu_product"] * mu
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad**2
    den = np.sqrt(v / (1 - b2**t)) + eps
    param = param - lr * (1 - mu) / (1 - mu_product) * grad / den
    param = param - lr * mu_next / (1 - mu_product * mu_next) * m / den
    return param, {"t": t, "mu_product": mu_product, "m": m, "v": v}
