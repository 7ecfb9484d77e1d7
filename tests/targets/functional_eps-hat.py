"""Keras/TF-style Adam: the bias corrections folded into the step size, epsilon added to ``sqrt(v)``.

``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``; ``p -= lr_t * m / (sqrt(v) + eps)`` (the
"epsilon hat" form). TARGET = "step"; rule adam; expected verdict: pass, with the convention ``eps-hat``.
"""

from __future__ import annotations

import numpy as np

TARGET = "step"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "eps-hat"


def step(param, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    b1, b2 = betas
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad * grad
    lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return param - lr_t * m / (np.sqrt(v) + eps), {"t": t, "m": m, "v": v}
