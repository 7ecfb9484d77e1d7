"""A timm-style NAdamW: decoupled decay, then lr/bc1·(β1·m + (1 − β1)·g)/(√v/√bc2 + ε).

TARGET = "NAdamW"; rule nadam with ``--hyper decoupled_weight_decay=True weight_decay=0.01 lr=1e-3``;
expected verdict: pass, with the convention ``nadamw-mlcommons``.
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "NAdamW"
RULE = "nadam"
HYPER: dict[str, object] = {"decoupled_weight_decay": True, "weight_decay": 0.01, "lr": 1e-3}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "nadamw-mlcommons"


class NAdamW:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):  # type: ignore[no-untyped-def]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.step_t = 0
        self.exp_avg: dict[str, np.ndarray] = {}
        self.exp_avg_sq: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.step_t += 1
        beta1, beta2 = self.betas
        for k, param in params.items():
            grad = grads[k]
            param = param * (1.0 - self.lr * self.weight_decay)
            exp_avg = self.exp_avg.get(k, np.zeros_like(param))
            exp_avg = exp_avg + (grad - exp_avg) * (1 - beta1)  # lerp
            exp_avg_sq = beta2 * self.exp_avg_sq.get(k, np.zeros_like(param)) + (1 - beta2) * grad * grad
            self.exp_avg[k], self.exp_avg_sq[k] = exp_avg, exp_avg_sq
            step_size = self.lr / (1 - beta1**self.step_t)
            denom = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2**self.step_t) + self.eps
            nesterov = exp_avg * beta1 + grad * (1 - beta1)
            params[k] = param - step_size * nesterov / denom
