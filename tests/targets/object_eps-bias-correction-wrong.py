"""An Adam object in the ε̂ form whose ε̂ is ε·(1 − β2^t) instead of ε·√(1 − β2^t).

TARGET = "Adam"; rule adam; expected finding: ``eps-bias-correction-wrong``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("eps-bias-correction-wrong",)


class Adam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.t += 1
        b1, b2 = self.betas
        eps_hat = self.eps * (1 - b2**self.t)  # BUG: the square root of (1 - b2**t) is meant
        alpha = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for k, p in params.items():
            g = grads[k]
            self.m[k] = b1 * self.m.get(k, np.zeros_like(p)) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, np.zeros_like(p)) + (1 - b2) * g**2
            params[k] = p - alpha * self.m[k] / (np.sqrt(self.v[k]) + eps_hat)
