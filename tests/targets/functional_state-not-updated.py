"""A functional RMSprop that computes the new average but returns the state it was given.

TARGET = "rmsprop_step"; rule rmsprop; expected finding: ``state-not-updated``.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop_step"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("state-not-updated",)


def rmsprop_step(param, grad, state, lr=1e-2, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = {"square_avg": np.zeros_like(param)}
    sq = alpha * state["square_avg"] + (1 - alpha) * grad**2
    return param - lr * grad / (np.sqrt(sq) + eps), state  # BUG: the old state
