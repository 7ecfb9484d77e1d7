"""cs231n's SGD with momentum: the velocity form ``v = mu*v - lr*dw; w += v`` (convention momentum-velocity).

TARGET = "sgd_momentum"; rule sgd with momentum (``--hyper momentum=0.9 --hyper lr=0.01``);
expected verdict: pass (with a constant learning rate the velocity form equals torch's).
"""

from __future__ import annotations

import numpy as np

TARGET = "sgd_momentum"


def sgd_momentum(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    next_w = w + v
    config["velocity"] = v
    return next_w, config
