"""An object-style RMSprop that ignores its ``lr`` argument and uses 0.001.

TARGET = "RMSprop"; rule rmsprop (lr 0.01); expected finding: ``hyperparameter-mismatch`` (lr behaves
like 0.001).
"""

from __future__ import annotations

import numpy as np

TARGET = "RMSprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("hyperparameter-mismatch",)
INFERRED = {"lr": 0.001}


class RMSprop:
    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr = 0.001  # BUG: the argument is ignored
        self.alpha, self.eps = alpha, eps
        self.sq: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k, p in params.items():
            g = grads[k]
            self.sq[k] = self.alpha * self.sq.get(k, np.zeros_like(p)) + (1 - self.alpha) * g * g
            params[k] = p - self.lr * g / (np.sqrt(self.sq[k]) + self.eps)
