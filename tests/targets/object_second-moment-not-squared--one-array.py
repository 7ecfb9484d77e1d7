"""An RMSprop object with a hand-unrolled update per parameter; b1's average takes |g| instead of g².

TARGET = "RMSprop"; rule rmsprop with ``--hyper alpha=0.9``; expected finding:
``second-moment-not-squared`` (for one array).
"""

from __future__ import annotations

import numpy as np

TARGET = "RMSprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {"alpha": 0.9}
ARGS: dict[str, object] = {}
EXPECT = ("second-moment-not-squared",)


class RMSprop:
    def __init__(self, lr=1e-2, rho=0.9, eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.rho, self.eps = lr, rho, eps
        self.cache: dict[str, np.ndarray] = {}

    def _avg(self, name, x):  # type: ignore[no-untyped-def]
        self.cache[name] = self.rho * self.cache.get(name, np.zeros_like(x)) + (1 - self.rho) * x
        return self.cache[name]

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        c = {
            "W1": self._avg("W1", grads["W1"] ** 2),
            "b1": self._avg("b1", np.abs(grads["b1"])),  # BUG: |g| where g**2 belongs
            "W2": self._avg("W2", grads["W2"] ** 2),
            "b2": self._avg("b2", grads["b2"] ** 2),
        }
        for name in c:
            params[name] = params[name] - self.lr * grads[name] / (np.sqrt(c[name]) + self.eps)
