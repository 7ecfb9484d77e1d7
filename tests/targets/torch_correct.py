"""A ``torch.optim.Optimizer`` subclass implementing RMSprop with L2 weight decay, correct.

TARGET = "MyRMSprop"; rule rmsprop; expected verdict: pass.
"""

from __future__ import annotations

import torch

TARGET = "MyRMSprop"


class MyRMSprop(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                sq = state["square_avg"]
                sq.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                p.addcdiv_(g, sq.sqrt().add_(group["eps"]), value=-group["lr"])
        return loss
