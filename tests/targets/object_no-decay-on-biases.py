"""An object-style Adam with L2 weight decay on the weights only (keys starting with ``W``), not the biases.

TARGET = "Adam"; rule adam with ``--hyper weight_decay=0.1`` (on every parameter); expected verdict:
pass, with the convention ``no-decay-on-biases``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"
RULE = "adam"
HYPER: dict[str, object] = {"weight_decay": 0.1}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "no-decay-on-biases"


class Adam:
    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):  # type: ignore[no-untyped-def]
        self.lr, self.beta1, self.beta2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.t += 1
        for k, p in params.items():
            g = grads[k] + self.wd * p if k.startswith("W") else grads[k]
            self.m[k] = m = self.beta1 * self.m.get(k, np.zeros_like(p)) + (1 - self.beta1) * g
            self.v[k] = v = self.beta2 * self.v.get(k, np.zeros_like(p)) + (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
