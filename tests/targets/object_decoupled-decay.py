"""A fairseq-style Adam: named Adam, but its weight decay is decoupled (p ← p − lr·λ·p before the step).

TARGET = "FairseqAdam"; rule adam with ``--hyper weight_decay=0.01``; expected verdict: pass, with the
convention ``decoupled-decay``.
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "FairseqAdam"
RULE = "adam"
HYPER: dict[str, object] = {"weight_decay": 0.01}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "decoupled-decay"


class FairseqAdam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):  # type: ignore[no-untyped-def]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.state: dict[str, dict[str, object]] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        beta1, beta2 = self.betas
        for k, p in params.items():
            grad = grads[k]
            st = self.state.setdefault(k, {"step": 0, "m": np.zeros_like(p), "v": np.zeros_like(p)})
            st["step"] += 1  # type: ignore[operator]
            m = st["m"] = beta1 * st["m"] + (1 - beta1) * grad  # type: ignore[operator]
            v = st["v"] = beta2 * st["v"] + (1 - beta2) * grad * grad  # type: ignore[operator]
            denom = np.sqrt(v) + self.eps
            bc1 = 1 - beta1 ** st["step"]  # type: ignore[operator]
            bc2 = 1 - beta2 ** st["step"]  # type: ignore[operator]
            step_size = self.lr * math.sqrt(bc2) / bc1
            if self.weight_decay != 0:
                p = p - self.weight_decay * self.lr * p
            params[k] = p - step_size * m / denom
