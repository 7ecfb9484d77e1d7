"""An object-style momentum SGD in the course's EMA form ``v = beta*v + (1-beta)*g; p -= lr*v``.

TARGET = "Momentum"; rule sgd with ``--hyper lr=0.1 --hyper momentum=0.9``; expected verdict:
pass, with the convention ``momentum-ema``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Momentum"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "momentum-ema"


class Momentum:
    def __init__(self, lr=0.01, momentum=0.9):  # type: ignore[no-untyped-def]
        self.lr, self.beta = lr, momentum
        self.v: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k, p in params.items():
            self.v[k] = self.beta * self.v.get(k, np.zeros_like(p)) + (1 - self.beta) * grads[k]
            params[k] = p - self.lr * self.v[k]
