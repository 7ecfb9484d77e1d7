"""An RMSprop object with a separate code path for bias vectors, which divides by v instead of √v.

TARGET = "RMSprop"; rule rmsprop; expected finding: ``missing-sqrt`` (on the biases only).
"""

from __future__ import annotations

import numpy as np

TARGET = "RMSprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("missing-sqrt",)


class RMSprop:
    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.sq: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for name, p in params.items():
            g = grads[name]
            sq = self.sq[name] = self.alpha * self.sq.get(name, np.zeros_like(p)) + (1 - self.alpha) * g * g
            if name.startswith("b"):
                params[name] = p - self.lr * g / (sq + self.eps)  # BUG: the bias path forgot the sqrt
            else:
                params[name] = p - self.lr * g / (np.sqrt(sq) + self.eps)
