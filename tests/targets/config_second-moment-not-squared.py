"""cs231n-style RMSprop whose cache accumulates ``dw`` instead of ``dw**2`` (NaN from the square root).

TARGET = "rmsprop"; rule rmsprop; expected finding: ``second-moment-not-squared``.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("second-moment-not-squared",)


def rmsprop(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    dr = config["decay_rate"]
    config["cache"] = dr * config["cache"] + (1 - dr) * dw  # BUG: not squared
    next_w = w - config["learning_rate"] * dw / (np.sqrt(config["cache"]) + config["epsilon"])
    return next_w, config
