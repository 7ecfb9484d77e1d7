"""A transformers-v4-style AdamW: ε̂ form (lr·√bc2/bc1 and √v + ε), decay applied after the step.

TARGET = "AdamW"; rule adamw with ``--hyper weight_decay=0.01 eps=1e-6``; expected verdict: pass, with
the conventions ``decay-after-step`` (and ``eps-hat``).
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "AdamW"
RULE = "adamw"
HYPER: dict[str, object] = {"weight_decay": 0.01, "eps": 1e-6}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "decay-after-step"


class AdamW:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, correct_bias=True):  # type: ignore[no-untyped-def]
        self.lr, self.betas, self.eps, self.wd, self.correct_bias = lr, betas, eps, weight_decay, correct_bias
        self.state: dict[str, dict[str, object]] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for name, p in params.items():
            grad = grads[name]
            st = self.state.setdefault(
                name, {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
            )
            beta1, beta2 = self.betas
            st["step"] += 1  # type: ignore[operator]
            exp_avg = st["exp_avg"] = beta1 * st["exp_avg"] + (1.0 - beta1) * grad  # type: ignore[operator]
            exp_avg_sq = st["exp_avg_sq"] = beta2 * st["exp_avg_sq"] + (1.0 - beta2) * grad * grad  # type: ignore[operator]
            denom = np.sqrt(exp_avg_sq) + self.eps
            step_size = self.lr
            if self.correct_bias:
                bias_correction1 = 1.0 - beta1 ** st["step"]  # type: ignore[operator]
                bias_correction2 = 1.0 - beta2 ** st["step"]  # type: ignore[operator]
                step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
            p = p - step_size * exp_avg / denom
            if self.wd > 0.0:
                p = p - self.lr * self.wd * p
            params[name] = p
