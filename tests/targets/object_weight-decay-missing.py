"""An object-style SGD that takes ``weight_decay`` and never uses it.

TARGET = "SGD"; rule sgd with ``--hyper lr=0.1 --hyper weight_decay=0.01``; expected finding:
``weight-decay-missing``.
"""

from __future__ import annotations

TARGET = "SGD"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "weight_decay": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("weight-decay-missing",)


class SGD:
    def __init__(self, lr=0.01, weight_decay=0.0):  # type: ignore[no-untyped-def]
        self.lr = lr
        self.weight_decay = weight_decay  # stored, never read

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for k in params:
            params[k] = params[k] - self.lr * grads[k]
