"""cs231n-style Adam with ``beta2`` hard-coded to 0.99, ignoring the config's 0.999.

TARGET = "adam"; rule adam; expected finding: ``hyperparameter-mismatch`` (beta2 behaves like 0.99).
"""

from __future__ import annotations

import numpy as np

TARGET = "adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("hyperparameter-mismatch",)
INFERRED = {"beta2": 0.99}


def adam(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    config["t"] += 1
    b1, b2, t = config["beta1"], 0.99, config["t"]  # BUG: beta2 hard-coded
    config["m"] = b1 * config["m"] + (1 - b1) * dw
    config["v"] = b2 * config["v"] + (1 - b2) * dw**2
    mt = config["m"] / (1 - b1**t)
    vt = config["v"] / (1 - b2**t)
    next_w = w - config["learning_rate"] * mt / (np.sqrt(vt) + config["epsilon"])
    return next_w, config
