"""An Adam that clips each parameter's gradient to norm 1 inside its step (BertAdam's max_grad_norm),
bias correction included.

TARGET = "ClippedAdam"; rule adam; expected verdict: pass, with the convention
``per-tensor-gradient-clipping``.
"""

from __future__ import annotations

import numpy as np

TARGET = "ClippedAdam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "per-tensor-gradient-clipping"


class ClippedAdam:
    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, e=1e-8, max_grad_norm=1.0):  # type: ignore[no-untyped-def]
        self.lr, self.b1, self.b2, self.e, self.max_grad_norm = lr, b1, b2, e, max_grad_norm
        self.t = 0
        self.next_m: dict[str, np.ndarray] = {}
        self.next_v: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.t += 1
        for k, p in params.items():
            g = grads[k]
            norm = float(np.sqrt(np.sum(g * g)))
            coef = self.max_grad_norm / (norm + 1e-6)
            if coef < 1:
                g = g * coef
            m = self.next_m[k] = self.b1 * self.next_m.get(k, 0.0) + (1 - self.b1) * g
            v = self.next_v[k] = self.b2 * self.next_v.get(k, 0.0) + (1 - self.b2) * g * g
            m_hat = m / (1 - self.b1**self.t)
            v_hat = v / (1 - self.b2**self.t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.e)
