"""A functional Adam whose stored counter is capped at 2 (a warm-up cap put on the wrong variable).

TARGET = "adam_step"; rule adam; expected finding: ``bias-correction-wrong-step``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adam_step"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-step",)


def adam_step(param, grad, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad**2
    update = lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return param - update, {"t": min(t, 2), "m": m, "v": v}  # BUG: the counter stops at 2
