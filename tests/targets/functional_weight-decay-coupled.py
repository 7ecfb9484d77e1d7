"""A functional AdamW that adds ``weight_decay * param`` to the gradient instead of decaying the weights.

TARGET = "adamw_step"; rule adamw with ``--hyper lr=0.01 --hyper weight_decay=0.1``; expected
finding: ``weight-decay-coupled``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adamw_step"
RULE = "adamw"
HYPER: dict[str, object] = {"lr": 0.01, "weight_decay": 0.1}
ARGS: dict[str, object] = {}
EXPECT = ("weight-decay-coupled",)


def adamw_step(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"step": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    t = state["step"] + 1
    g = grad + weight_decay * param
    m = beta1 * state["m"] + (1 - beta1) * g
    v = beta2 * state["v"] + (1 - beta2) * g**2
    update = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return param - lr * update, {"step": t, "m": m, "v": v}
