"""A ``torch.optim.Optimizer`` Adam whose ``weight_decay`` is in the defaults but never applied.

TARGET = "MyAdam"; rule adam with ``--hyper weight_decay=0.01``; expected finding: ``weight-decay-missing``.
"""

from __future__ import annotations

import math

import torch

TARGET = "MyAdam"
RULE = "adam"
HYPER: dict[str, object] = {"weight_decay": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("weight-decay-missing",)


class MyAdam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad  # BUG: group["weight_decay"] is never added
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - b2**t)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - b1**t))
        return None
