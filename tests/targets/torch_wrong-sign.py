"""A ``torch.optim.Optimizer`` RMSprop whose ``addcdiv_`` has ``value=+lr``: it climbs the loss.

TARGET = "MyRMSprop"; rule rmsprop; expected finding: ``wrong-sign``.
"""

from __future__ import annotations

import torch

TARGET = "MyRMSprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("wrong-sign",)


class MyRMSprop(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                sq = state["square_avg"]
                sq.mul_(group["alpha"]).addcmul_(p.grad, p.grad, value=1 - group["alpha"])
                p.addcdiv_(p.grad, sq.sqrt().add_(group["eps"]), value=group["lr"])  # BUG: +lr
        return None
