"""A ``torch.optim.Optimizer`` SGD that folds weight decay into ``p.grad`` in place.

TARGET = "MySGD"; rule sgd (``--hyper weight_decay=0.1``); expected finding: ``input-mutated``
(the update itself is right).
"""

from __future__ import annotations

import torch

TARGET = "MySGD"


class MySGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=0.0):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.grad.add_(p, alpha=group["weight_decay"])  # BUG: changes the caller's gradient
                p.add_(p.grad, alpha=-group["lr"])
        return None
