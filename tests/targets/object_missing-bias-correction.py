"""An object-style Adam that corrects the second moment but forgets the first (BERT's AdamWeightDecay had neither).

TARGET = "Adam"; rule adam; expected finding: ``missing-bias-correction``.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("missing-bias-correction",)


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
            self.m[k] = m = self.beta1 * self.m.get(k, np.zeros_like(p)) + (1 - self.beta1) * g
            self.v[k] = v = self.beta2 * self.v.get(k, np.zeros_like(p)) + (1 - self.beta2) * g * g
            v_hat = v / (1 - self.beta2**self.t)
            params[k] = p - self.lr * m / (np.sqrt(v_hat) + self.eps)  # BUG: m not corrected
