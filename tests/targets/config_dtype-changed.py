"""cs231n-style RMSprop that computes in float32 and returns float32 for float64 inputs.

TARGET = "rmsprop"; rule rmsprop; expected finding: ``dtype-changed``.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop"


def rmsprop(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w, dtype=np.float32))
    dw32 = dw.astype(np.float32)
    config["cache"] = config["decay_rate"] * config["cache"] + (1 - config["decay_rate"]) * dw32**2
    next_w = w.astype(np.float32) - config["learning_rate"] * dw32 / (
        np.sqrt(config["cache"]) + config["epsilon"]
    )
    return next_w, config
