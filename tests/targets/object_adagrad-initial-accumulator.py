"""An object-style Adagrad whose accumulator starts at 0.1 (optax, Keras).

TARGET = "Adagrad"; rule adagrad; expected verdict: pass, with the convention
``adagrad-initial-accumulator``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adagrad"
RULE = "adagrad"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "adagrad-initial-accumulator"


class Adagrad:
    def __init__(self, lr=1e-2, eps=1e-10):  # type: ignore[no-untyped-def]
        self.lr, self.eps = lr, eps
        self.sum: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k, p in params.items():
            g = grads[k]
            self.sum[k] = self.sum.get(k, np.full_like(p, 0.1)) + g * g
            params[k] = p - self.lr * g / (np.sqrt(self.sum[k]) + self.eps)
