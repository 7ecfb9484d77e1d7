"""BertAdam (pytorch-pretrained-bert): per-tensor gradient clipping, decoupled decay, no bias correction.

TARGET = "BertAdam"; rule adamw with ``--hyper weight_decay=0.01 eps=1e-6``; expected finding:
``missing-bias-correction`` (the clipping is a convention, named alongside).
"""

from __future__ import annotations

import numpy as np

TARGET = "BertAdam"
RULE = "adamw"
HYPER: dict[str, object] = {"weight_decay": 0.01, "eps": 1e-6}
ARGS: dict[str, object] = {}
EXPECT = ("missing-bias-correction",)


class BertAdam:
    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, e=1e-6, weight_decay=0.01, max_grad_norm=1.0):  # type: ignore[no-untyped-def]
        self.lr, self.b1, self.b2, self.e = lr, b1, b2, e
        self.weight_decay, self.max_grad_norm = weight_decay, max_grad_norm
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k, p in params.items():
            grad = grads[k]
            st = self.state.setdefault(k, {"next_m": np.zeros_like(p), "next_v": np.zeros_like(p)})
            norm = float(np.sqrt(np.sum(grad * grad)))
            clip = self.max_grad_norm / (norm + 1e-6)
            if clip < 1:
                grad = grad * clip
            st["next_m"] = self.b1 * st["next_m"] + (1 - self.b1) * grad
            st["next_v"] = self.b2 * st["next_v"] + (1 - self.b2) * grad * grad
            update = st["next_m"] / (np.sqrt(st["next_v"]) + self.e)  # no bias correction
            update = update + self.weight_decay * p
            params[k] = p - self.lr * update
