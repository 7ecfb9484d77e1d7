"""An Adam object whose step counter stops at 3 (``self.t = min(self.t + 1, 3)``, a warm-up cap gone wrong).

TARGET = "Adam"; rule adam; expected finding: ``bias-correction-wrong-step``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-step",)


class Adam:
    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.t = min(self.t + 1, 3)  # BUG: the counter stops at 3
        for k, p in params.items():
            g = grads[k]
            self.m[k] = m = self.beta1 * self.m.get(k, np.zeros_like(p)) + (1 - self.beta1) * g
            self.v[k] = v = self.beta2 * self.v.get(k, np.zeros_like(p)) + (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
