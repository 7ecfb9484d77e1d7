"""An object-style Adam: ``Adam(lr=..., beta1=..., ...)``, ``opt.step(params, grads)`` updating in place.

TARGET = "Adam"; rule adam; expected verdict: pass.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"


class Adam:
    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
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
            self.v[k] = v = self.beta2 * v + (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
