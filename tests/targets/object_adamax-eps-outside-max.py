"""An Adamax object that keeps eps out of the running max and adds it to the denominator.

TARGET = "Adamax"; rule adamax; expected verdict: pass, with the convention ``adamax-eps-outside-max``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adamax"
RULE = "adamax"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "adamax-eps-outside-max"


class Adamax:
    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.u: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.t += 1
        b1, b2 = self.betas
        for k in params:
            g = grads[k]
            m = self.m[k] = b1 * self.m.get(k, 0.0) + (1 - b1) * g
            u = self.u[k] = np.maximum(b2 * self.u.get(k, np.zeros_like(g)), np.abs(g))
            params[k] = params[k] - self.lr / (1 - b1**self.t) * m / (u + self.eps)
