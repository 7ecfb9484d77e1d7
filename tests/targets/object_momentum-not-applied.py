"""An object-style SGD with momentum that keeps the velocity up to date but steps with the raw gradient.

TARGET = "MomentumSGD"; rule sgd with ``--hyper lr=0.1 --hyper momentum=0.9``; expected finding:
``momentum-not-applied``.
"""

from __future__ import annotations

import numpy as np

TARGET = "MomentumSGD"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9}
ARGS: dict[str, object] = {}
EXPECT = ("momentum-not-applied",)


class MomentumSGD:
    def __init__(self, lr=0.01, momentum=0.9):  # type: ignore[no-untyped-def]
        self.lr, self.momentum = lr, momentum
        self.buf: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k, p in params.items():
            g = grads[k]
            self.buf[k] = g.copy() if k not in self.buf else self.momentum * self.buf[k] + g
            params[k] = p - self.lr * g  # BUG: should be self.buf[k]
