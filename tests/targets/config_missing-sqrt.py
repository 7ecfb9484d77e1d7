"""cs231n-style RMSprop dividing by the cache itself instead of its square root.

TARGET = "rmsprop"; rule rmsprop; expected finding: ``missing-sqrt``.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("missing-sqrt",)


def rmsprop(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    dr = config["decay_rate"]
    config["cache"] = dr * config["cache"] + (1 - dr) * dw**2
    next_w = w - config["learning_rate"] * dw / (config["cache"] + config["epsilon"])  # BUG: no sqrt
    return next_w, config
