"""cs231n's Adam (assignment 2, ``optim.py``), correct.

TARGET = "adam"; rule adam; expected verdict: pass (its defaults are lr 1e-3, betas 0.9/0.999, eps 1e-8).
"""

from __future__ import annotations

import numpy as np

TARGET = "adam"


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
    b1, b2, t = config["beta1"], config["beta2"], config["t"]
    config["m"] = b1 * config["m"] + (1 - b1) * dw
    config["v"] = b2 * config["v"] + (1 - b2) * dw**2
    mt = config["m"] / (1 - b1**t)
    vt = config["v"] / (1 - b2**t)
    next_w = w - config["learning_rate"] * mt / (np.sqrt(vt) + config["epsilon"])
    return next_w, config
