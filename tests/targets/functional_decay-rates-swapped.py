"""A functional RMSprop with ``alpha`` and ``1 - alpha`` swapped in the squared-gradient average.

TARGET = "rmsprop_step"; rule rmsprop; expected finding: ``decay-rates-swapped``.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop_step"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("decay-rates-swapped",)


def rmsprop_step(param, grad, state, lr=1e-2, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
    sq = np.zeros_like(param) if state is None else state["square_avg"]
    sq = (1 - alpha) * sq + alpha * grad**2  # BUG: swapped
    return param - lr * grad / (np.sqrt(sq) + eps), {"square_avg": sq}
