"""An object-style Adam whose L2 term enters the second moment but not the first moment or the step.

TARGET = "Adam"; rule adam with ``--hyper weight_decay=0.01``; expected finding:
``weight-decay-in-second-moment-only``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"
RULE = "adam"
HYPER: dict[str, object] = {"weight_decay": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("weight-decay-in-second-moment-only",)


class Adam:
    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):  # type: ignore[no-untyped-def]
        self.lr, self.beta1, self.beta2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.t += 1
        for k, p in params.items():
            g = grads[k]
            m = self.m.get(k, np.zeros_like(p))
            v = self.v.get(k, np.zeros_like(p))
            self.m[k] = m = self.beta1 * m + (1 - self.beta1) * g
            self.v[k] = v = self.beta2 * v + (1 - self.beta2) * (g + self.wd * p) ** 2
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
