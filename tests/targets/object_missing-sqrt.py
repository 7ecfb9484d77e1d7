"""An object-style Adagrad dividing by the accumulated sum instead of its square root.

TARGET = "Adagrad"; rule adagrad; expected finding: ``missing-sqrt``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adagrad"
RULE = "adagrad"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("missing-sqrt",)


class Adagrad:
    def __init__(self, lr=1e-2, eps=1e-10):  # type: ignore[no-untyped-def]
        self.lr, self.eps = lr, eps
        self.sum: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k, p in params.items():
            g = grads[k]
            self.sum[k] = self.sum.get(k, np.zeros_like(p)) + g * g
            params[k] = p - self.lr * g / (self.sum[k] + self.eps)  # BUG: no sqrt
